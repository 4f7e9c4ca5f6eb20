//! `.npy` reading and writing of tensors handed to and from the Python runtimes, through `npyz`.

use std::io::{BufReader, BufWriter};
use std::path::Path;

use burn::tensor::{DType, TensorData};
use npyz::WriterBuilder;

use crate::error::{ExportError, Result};

fn io(path: &Path) -> impl Fn(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `values` as a C-order array of `shape`.
fn write_values<T: npyz::AutoSerialize>(
    path: &Path,
    shape: &[usize],
    values: Vec<T>,
) -> Result<()> {
    let file = std::fs::File::create(path).map_err(io(path))?;
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(BufWriter::new(file))
        .begin_nd()
        .map_err(io(path))?;
    writer.extend(values).map_err(io(path))?;
    writer.finish().map_err(io(path))
}

/// Write `data` to `path` as `.npy`.
pub fn write(path: &Path, data: &TensorData) -> Result<()> {
    let shape = data.shape().to_vec();
    let values = |what: &str| ExportError::Verify(format!("{}: {what}", path.display()));
    macro_rules! write_as {
        ($t:ty) => {
            write_values(path, &shape, data.iter::<$t>().collect::<Vec<$t>>())
        };
    }
    match data.dtype() {
        DType::F32 | DType::Flex32 => write_as!(f32),
        DType::F64 => write_as!(f64),
        DType::I64 => write_as!(i64),
        DType::I32 => write_as!(i32),
        DType::I16 => write_as!(i16),
        DType::I8 => write_as!(i8),
        DType::U8 => write_as!(u8),
        DType::Bool(_) => write_as!(bool),
        other => Err(values(&format!("no .npy type for {other:?}"))),
    }
}

/// Read a `.npy` file written by numpy (C order).
pub fn read(path: &Path) -> Result<TensorData> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let npy = npyz::NpyFile::new(BufReader::new(file)).map_err(io(path))?;
    let bad = |why: String| ExportError::Verify(format!("{}: {why}", path.display()));
    if npy.order() == npyz::Order::Fortran {
        return Err(bad("fortran order".into()));
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let descr = match npy.dtype() {
        npyz::DType::Plain(ty) => ty.to_string(),
        other => return Err(bad(format!("dtype {}", other.descr()))),
    };
    macro_rules! read_as {
        ($t:ty) => {
            TensorData::new(npy.into_vec::<$t>().map_err(io(path))?, shape)
        };
    }
    Ok(match descr.as_str() {
        "<f4" => read_as!(f32),
        "<f8" => read_as!(f64),
        "<i8" => read_as!(i64),
        "<i4" => read_as!(i32),
        "<i2" => read_as!(i16),
        "|i1" => read_as!(i8),
        "|u1" => read_as!(u8),
        "|b1" => read_as!(bool),
        other => return Err(bad(format!("dtype {other}"))),
    })
}
