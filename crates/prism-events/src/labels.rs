//! Prophesee bounding-box labels (`*_bbox.npy`): read both dtype variants, write the RVT one.
//!
//! The files are NumPy structured arrays. Two layouts exist in the wild:
//! - Gen1 original: `ts <u8, x y w h <f4, class_id u1, confidence <f4, track_id <u4` (packed, 37 bytes);
//! - 1Mpx / RVT `BBOX_DTYPE`: `t <i8, x y w h <f4, class_id <u4, track_id <u4, class_confidence <f4`
//!   (40 bytes).
//!
//! The header is parsed by `npyz`; the reader then takes field names, types and offsets from its
//! structured dtype, so field order, padding and integer / float widths may vary (that mapping is
//! prism's: npyz's record reading wants one fixed Rust type per layout). Malformed input is an
//! error, never a panic.

use std::path::Path;

use crate::error::{EventError, Result};

/// One ground-truth box: top-left corner `(x, y)`, size `(w, h)` in pixels, at time `t` (µs).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BoxLabel {
    pub t: i64,
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
    pub class_id: u32,
    pub track_id: u32,
    /// `class_confidence` (1Mpx) or `confidence` (Gen1); 1 for ground truth.
    pub confidence: f32,
}

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// RVT's `BBOX_DTYPE` with its trailing padding (itemsize 40), as NumPy writes it.
const RVT_BBOX_DESCR: &str =
    "[('t', '<i8'), ('x', '<f4'), ('y', '<f4'), ('w', '<f4'), ('h', '<f4'), \
     ('class_id', '<u4'), ('track_id', '<u4'), ('class_confidence', '<f4'), ('', '|V4')]";

/// Reads a Prophesee bbox `.npy` file in either dtype variant.
pub fn read_bbox_npy(path: impl AsRef<Path>) -> Result<Vec<BoxLabel>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| EventError::io(path, e))?;
    parse_bbox_npy(&bytes).map_err(|reason| EventError::Labels {
        path: path.to_path_buf(),
        reason,
    })
}

/// Writes `labels` as a `.npy` structured array with RVT's `BBOX_DTYPE` (itemsize 40).
pub fn write_bbox_npy(path: impl AsRef<Path>, labels: &[BoxLabel]) -> Result<()> {
    let path = path.as_ref();
    let bytes = encode_bbox_npy(labels).map_err(|source| EventError::io(path, source))?;
    std::fs::write(path, bytes).map_err(|e| EventError::io(path, e))
}

/// The bytes of a `.npy` file holding `labels` with RVT's `BBOX_DTYPE`; the header is npyz's.
pub fn encode_bbox_npy(labels: &[BoxLabel]) -> std::io::Result<Vec<u8>> {
    use npyz::WriterBuilder;
    let dtype = npyz::DType::parse(RVT_BBOX_DESCR)?;
    let mut out = npyz::WriteOptions::new_header_only()
        .dtype(dtype)
        .shape(&[labels.len() as u64])
        .writer(Vec::with_capacity(128 + labels.len() * 40))
        .write_header_only()?;
    for b in labels {
        out.extend_from_slice(&b.t.to_le_bytes());
        for v in [b.x, b.y, b.w, b.h] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&b.class_id.to_le_bytes());
        out.extend_from_slice(&b.track_id.to_le_bytes());
        out.extend_from_slice(&b.confidence.to_le_bytes());
        out.extend_from_slice(&[0; 4]); // trailing padding: RVT's dtype has itemsize 40
    }
    Ok(out)
}

/// Decodes the bytes of a bbox `.npy` file; the error is a human-readable reason.
pub fn parse_bbox_npy(bytes: &[u8]) -> Result<Vec<BoxLabel>, String> {
    if !bytes.starts_with(MAGIC) {
        return Err("not a .npy file (no \\x93NUMPY magic)".into());
    }
    let file = npyz::NpyFile::new(bytes).map_err(|e| format!("not a readable .npy file: {e}"))?;
    let header = file.header();
    let fields = match header.dtype() {
        npyz::DType::Record(fields) => layout_fields(&fields)?,
        npyz::DType::Plain(ty) => {
            return Err(format!("dtype '{ty}' is not a structured array of boxes"));
        }
        npyz::DType::Array(..) => return Err("the dtype is an array, not a record of boxes".into()),
    };
    let count = header
        .shape()
        .iter()
        .try_fold(1usize, |acc, &d| {
            usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
        })
        .ok_or("shape is too large")?;
    let data = file.into_inner();
    let itemsize = fields.iter().map(|f| f.offset + f.size).max().unwrap_or(0);
    let needed = count
        .checked_mul(itemsize)
        .ok_or("shape times itemsize overflows")?;
    if data.len() < needed {
        return Err(format!(
            "data holds {} bytes, shape needs {count} x {itemsize} = {needed}",
            data.len()
        ));
    }
    let pick = |names: &[&str]| fields.iter().find(|f| names.contains(&f.name.as_str()));
    let require = |names: &[&str]| {
        pick(names).ok_or_else(|| format!("missing field '{}'", names.join("' or '")))
    };
    let t = require(&["t", "ts"])?;
    let [x, y, w, h] = [
        require(&["x"])?,
        require(&["y"])?,
        require(&["w"])?,
        require(&["h"])?,
    ];
    let class_id = require(&["class_id"])?;
    let track_id = pick(&["track_id"]);
    let confidence = pick(&["class_confidence", "confidence"]);

    let mut labels = Vec::with_capacity(count);
    for record in data.chunks_exact(itemsize.max(1)).take(count) {
        labels.push(BoxLabel {
            t: t.read(record)?.as_i64(&t.name)?,
            x: x.read(record)?.as_f32(),
            y: y.read(record)?.as_f32(),
            w: w.read(record)?.as_f32(),
            h: h.read(record)?.as_f32(),
            class_id: class_id.read(record)?.as_u32(&class_id.name)?,
            track_id: match track_id {
                Some(f) => f.read(record)?.as_u32(&f.name)?,
                None => 0,
            },
            confidence: match confidence {
                Some(f) => f.read(record)?.as_f32(),
                None => 1.0,
            },
        });
    }
    Ok(labels)
}

// ---------------------------------------------------------------------------------------------
// Field layout

/// A scalar field type from a NumPy type string such as `<u8` or `|u1`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scalar {
    Int {
        signed: bool,
        size: usize,
    },
    Float {
        size: usize,
    },
    /// Any other type: skipped, only its size matters.
    Other,
}

/// One named field of the record with its byte offset.
#[derive(Debug)]
struct Field {
    name: String,
    offset: usize,
    size: usize,
    scalar: Scalar,
    /// Why this field cannot be decoded as a number (big-endian, sub-array, ...), if so.
    unusable: Option<String>,
}

/// A decoded field value before conversion to the [`BoxLabel`] type.
#[derive(Debug, Clone, Copy)]
enum Value {
    I(i128),
    F(f64),
}

impl Value {
    fn as_f32(self) -> f32 {
        match self {
            Value::I(v) => v as f32,
            Value::F(v) => v as f32,
        }
    }

    fn as_i64(self, name: &str) -> Result<i64, String> {
        match self {
            Value::I(v) => {
                i64::try_from(v).map_err(|_| format!("field '{name}' value {v} does not fit i64"))
            }
            Value::F(v) if v.is_finite() && v.abs() < 9.2e18 => Ok(v.round() as i64),
            Value::F(v) => Err(format!("field '{name}' value {v} is not a finite time")),
        }
    }

    fn as_u32(self, name: &str) -> Result<u32, String> {
        let v = match self {
            Value::I(v) => v,
            Value::F(v) if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e12 => v as i128,
            Value::F(v) => return Err(format!("field '{name}' value {v} is not an integer")),
        };
        u32::try_from(v).map_err(|_| format!("field '{name}' value {v} does not fit u32"))
    }
}

impl Field {
    fn read(&self, record: &[u8]) -> Result<Value, String> {
        if let Some(why) = &self.unusable {
            return Err(format!("field '{}': {why}", self.name));
        }
        let bytes = record
            .get(self.offset..self.offset + self.size)
            .ok_or_else(|| format!("field '{}' lies outside the record", self.name))?;
        let mut buf = [0u8; 8];
        buf[..bytes.len().min(8)].copy_from_slice(&bytes[..bytes.len().min(8)]);
        let raw = u64::from_le_bytes(buf);
        Ok(match self.scalar {
            Scalar::Int { signed: false, .. } => Value::I(i128::from(raw)),
            Scalar::Int { signed: true, size } => {
                let shift = 64 - 8 * size as u32;
                Value::I(i128::from(((raw << shift) as i64) >> shift))
            }
            Scalar::Float { size: 4 } => Value::F(f64::from(f32::from_bits(raw as u32))),
            Scalar::Float { .. } => Value::F(f64::from_bits(raw)),
            Scalar::Other => return Err(format!("field '{}' is not a number", self.name)),
        })
    }
}

/// Lays out the fields of a structured dtype sequentially, as NumPy does.
fn layout_fields(items: &[npyz::Field]) -> Result<Vec<Field>, String> {
    let mut fields = Vec::with_capacity(items.len());
    let mut offset = 0usize;
    for item in items {
        let name = item.name.clone();
        let size = item
            .dtype
            .num_bytes()
            .ok_or_else(|| format!("field '{name}' has no fixed size"))?;
        let (scalar, unusable) = match &item.dtype {
            npyz::DType::Plain(ty) => scalar_of(ty),
            npyz::DType::Array(..) => (
                Scalar::Other,
                Some("sub-array fields are not supported".to_string()),
            ),
            npyz::DType::Record(_) => (Scalar::Other, Some("nested structured type".to_string())),
        };
        fields.push(Field {
            name,
            offset,
            size,
            scalar,
            unusable,
        });
        offset = offset.checked_add(size).ok_or("record size overflows")?;
    }
    Ok(fields)
}

/// The scalar kind of a type like `<f4` and, when it cannot be decoded as a number, why.
fn scalar_of(ty: &npyz::TypeStr) -> (Scalar, Option<String>) {
    use npyz::{Endianness, TypeChar};
    let size = usize::try_from(ty.size_field()).unwrap_or(usize::MAX);
    let scalar = match (ty.type_char(), size) {
        (TypeChar::Int, 1 | 2 | 4 | 8) => Scalar::Int { signed: true, size },
        (TypeChar::Uint | TypeChar::Bool, 1 | 2 | 4 | 8) => Scalar::Int {
            signed: false,
            size,
        },
        (TypeChar::Float, 4 | 8) => Scalar::Float { size },
        _ => Scalar::Other,
    };
    let unusable = match scalar {
        Scalar::Other => Some(format!("type '{ty}' is not an integer or float32/64")),
        _ if ty.endianness() == Endianness::Big && size > 1 => {
            Some(format!("big-endian type '{ty}' is not supported"))
        }
        _ => None,
    };
    (scalar, unusable)
}
