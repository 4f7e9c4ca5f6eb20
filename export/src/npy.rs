//! Minimal `.npy` (format 1.0) reading and writing for handing tensors to Python runtimes.

use std::io::Write;
use std::path::Path;

use burn::tensor::{DType, TensorData};

use crate::error::{ExportError, Result};

fn descr(dtype: DType) -> Option<&'static str> {
    Some(match dtype {
        DType::F32 | DType::Flex32 => "<f4",
        DType::F64 => "<f8",
        DType::I64 => "<i8",
        DType::I32 => "<i4",
        DType::I16 => "<i2",
        DType::I8 => "|i1",
        DType::U8 => "|u1",
        DType::Bool(_) => "|b1",
        _ => return None,
    })
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Write `data` to `path` as `.npy`.
pub fn write(path: &Path, data: &TensorData) -> Result<()> {
    let d = descr(data.dtype())
        .ok_or_else(|| ExportError::Verify(format!("no .npy type for {:?}", data.dtype())))?;
    let shape = data.shape();
    let dims = match shape.len() {
        0 => "()".to_string(),
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{d}', 'fortran_order': False, 'shape': {dims}, }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.as_bytes().len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    let bytes: Vec<u8> = match data.dtype() {
        DType::Bool(_) if data.as_bytes().len() != data.num_elements() => data
            .try_to_vec::<bool>()
            .map_err(|e| ExportError::Verify(format!("{e:?}")))?
            .into_iter()
            .map(u8::from)
            .collect(),
        _ => data.as_bytes().to_vec(),
    };
    out.extend_from_slice(&bytes);
    let mut f = std::fs::File::create(path).map_err(io(path))?;
    f.write_all(&out).map_err(io(path))
}

/// Read a `.npy` file written by numpy (C order, little-endian).
pub fn read(path: &Path) -> Result<TensorData> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let bad = |why: &str| ExportError::Verify(format!("{}: {why}", path.display()));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file"));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[start..start + hlen]).map_err(|_| bad("header"))?;
    if header.contains("'fortran_order': True") {
        return Err(bad("fortran order"));
    }
    let field = |key: &str| -> Option<&str> {
        let i = header.find(key)? + key.len();
        Some(header[i..].trim_start_matches([':', ' ', '\'']))
    };
    let descr = field("'descr'")
        .and_then(|s| s.split('\'').next())
        .ok_or_else(|| bad("descr"))?;
    let shape_s = field("'shape'").ok_or_else(|| bad("shape"))?;
    let inner = shape_s.trim_start_matches('(');
    let inner = &inner[..inner.find(')').ok_or_else(|| bad("shape"))?];
    let shape: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad("dim")))
        .collect::<Result<_>>()?;
    let dtype = match descr {
        "<f4" => DType::F32,
        "<f8" => DType::F64,
        "<i8" => DType::I64,
        "<i4" => DType::I32,
        "<i2" => DType::I16,
        "|i1" => DType::I8,
        "|u1" => DType::U8,
        "|b1" => DType::Bool(burn::tensor::BoolStore::Native),
        other => return Err(bad(&format!("dtype {other}"))),
    };
    let payload = bytes[start + hlen..].to_vec();
    if matches!(dtype, DType::Bool(_)) {
        let v: Vec<bool> = payload.iter().map(|b| *b != 0).collect();
        return Ok(TensorData::new(v, shape));
    }
    Ok(TensorData::from_bytes_vec(payload, shape, dtype))
}
