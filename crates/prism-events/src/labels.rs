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

/// A bbox `.npy` file that cannot be read as boxes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabelsError {
    #[error("not a .npy file (no \\x93NUMPY magic)")]
    NoMagic,
    #[error("not a readable .npy file: {0}")]
    Npy(std::io::Error),
    #[error("dtype '{0}' is not a structured array of boxes")]
    NotRecords(String),
    #[error("dtype '{0}' is not an integer array")]
    NotIntegers(String),
    #[error("shape {0:?} is not one-dimensional")]
    NotOneDimensional(Vec<u64>),
    #[error("{0} is too large")]
    TooLarge(&'static str),
    /// A header numpy itself would not write: too long, or nested deeper than a dtype needs.
    #[error("the .npy header {0}")]
    BadHeader(String),
    #[error("data holds {bytes} bytes, shape needs {count} x {itemsize} = {needed}")]
    Truncated {
        bytes: usize,
        count: usize,
        itemsize: usize,
        needed: usize,
    },
    /// A field the boxes need is absent (the names it may have, `' or '`-joined).
    #[error("missing field '{0}'")]
    MissingField(String),
    #[error("field '{field}': {problem}")]
    Field {
        field: String,
        problem: FieldProblem,
    },
}

/// Why one field of the records cannot be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldProblem {
    #[error("type '{0}' is not an integer or float32/64")]
    NotNumeric(String),
    #[error("big-endian type '{0}' is not supported")]
    BigEndian(String),
    #[error("sub-array fields are not supported")]
    SubArray,
    #[error("nested structured type")]
    Nested,
    #[error("has no fixed size")]
    NoSize,
    #[error("lies outside the record")]
    OutsideRecord,
    #[error("value {0} does not fit the field's type")]
    OutOfRange(String),
    #[error("value {0} is not a finite time")]
    NotATime(f64),
    #[error("value {0} is not an integer")]
    NotAnInteger(f64),
}

/// RVT's `BBOX_DTYPE` with its trailing padding (itemsize 40), as NumPy writes it.
const RVT_BBOX_DESCR: &str =
    "[('t', '<i8'), ('x', '<f4'), ('y', '<f4'), ('w', '<f4'), ('h', '<f4'), \
     ('class_id', '<u4'), ('track_id', '<u4'), ('class_confidence', '<f4'), ('', '|V4')]";

/// Reads a Prophesee bbox `.npy` file in either dtype variant.
pub fn read_bbox_npy(path: impl AsRef<Path>) -> Result<Vec<BoxLabel>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| EventError::io(path, e))?;
    parse_bbox_npy(&bytes).map_err(|source| EventError::Labels {
        path: path.to_path_buf(),
        source,
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
pub fn parse_bbox_npy(bytes: &[u8]) -> Result<Vec<BoxLabel>, LabelsError> {
    if !bytes.starts_with(MAGIC) {
        return Err(LabelsError::NoMagic);
    }
    check_header(bytes)?;
    let file = npyz::NpyFile::new(bytes).map_err(LabelsError::Npy)?;
    let header = file.header();
    let fields = match header.dtype() {
        npyz::DType::Record(fields) => layout_fields(&fields)?,
        npyz::DType::Plain(ty) => return Err(LabelsError::NotRecords(ty.to_string())),
        other @ npyz::DType::Array(..) => return Err(LabelsError::NotRecords(other.descr())),
    };
    let count = header
        .shape()
        .iter()
        .try_fold(1usize, |acc, &d| {
            usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
        })
        .ok_or(LabelsError::TooLarge("the shape"))?;
    let data = file.into_inner();
    let itemsize = fields.iter().map(|f| f.offset + f.size).max().unwrap_or(0);
    let needed = count
        .checked_mul(itemsize)
        .ok_or(LabelsError::TooLarge("the shape times the itemsize"))?;
    if data.len() < needed {
        return Err(LabelsError::Truncated {
            bytes: data.len(),
            count,
            itemsize,
            needed,
        });
    }
    let pick = |names: &[&str]| fields.iter().find(|f| names.contains(&f.name.as_str()));
    let require =
        |names: &[&str]| pick(names).ok_or_else(|| LabelsError::MissingField(names.join("' or '")));
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
            t: t.read_with(record, Value::as_i64)?,
            x: x.read(record)?.as_f32(),
            y: y.read(record)?.as_f32(),
            w: w.read(record)?.as_f32(),
            h: h.read(record)?.as_f32(),
            class_id: class_id.read_with(record, Value::as_u32)?,
            track_id: match track_id {
                Some(f) => f.read_with(record, Value::as_u32)?,
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

/// Decodes a 1-D little-endian integer `.npy` array (any width up to 8 bytes) as `i64`: the index
/// and timestamp arrays RVT's preprocessing writes beside its labels. Unsigned values above
/// `i64::MAX` are an error. The header gets the same checks as a bbox file's.
pub fn parse_int_npy(bytes: &[u8]) -> Result<Vec<i64>, LabelsError> {
    if !bytes.starts_with(MAGIC) {
        return Err(LabelsError::NoMagic);
    }
    check_header(bytes)?;
    let file = npyz::NpyFile::new(bytes).map_err(LabelsError::Npy)?;
    let header = file.header();
    let dtype = header.dtype();
    let (signed, size) = match &dtype {
        npyz::DType::Plain(ty) => match scalar_of(ty) {
            (Scalar::Int { signed, size }, None) => (signed, size),
            (_, Some(problem)) => {
                return Err(LabelsError::Field {
                    field: "array".into(),
                    problem,
                })
            }
            _ => return Err(LabelsError::NotIntegers(ty.to_string())),
        },
        other => return Err(LabelsError::NotIntegers(other.descr())),
    };
    let count = match header.shape() {
        [n] => usize::try_from(*n).map_err(|_| LabelsError::TooLarge("the shape"))?,
        shape => return Err(LabelsError::NotOneDimensional(shape.to_vec())),
    };
    let data = file.into_inner();
    let needed = count
        .checked_mul(size)
        .ok_or(LabelsError::TooLarge("the shape times the itemsize"))?;
    if data.len() < needed {
        return Err(LabelsError::Truncated {
            bytes: data.len(),
            count,
            itemsize: size,
            needed,
        });
    }
    data.chunks_exact(size)
        .take(count)
        .map(|raw| {
            let mut le = [0u8; 8];
            le[..size].copy_from_slice(raw);
            let negative = signed && raw[size - 1] & 0x80 != 0;
            if negative {
                le[size..].fill(0xff);
            }
            let value = u64::from_le_bytes(le);
            if signed {
                Ok(value as i64)
            } else {
                i64::try_from(value).map_err(|_| LabelsError::Field {
                    field: "array".into(),
                    problem: FieldProblem::OutOfRange(value.to_string()),
                })
            }
        })
        .collect()
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
    unusable: Option<FieldProblem>,
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

    fn as_i64(self) -> Result<i64, FieldProblem> {
        match self {
            Value::I(v) => i64::try_from(v).map_err(|_| FieldProblem::OutOfRange(v.to_string())),
            Value::F(v) if v.is_finite() && v.abs() < 9.2e18 => Ok(v.round() as i64),
            Value::F(v) => Err(FieldProblem::NotATime(v)),
        }
    }

    fn as_u32(self) -> Result<u32, FieldProblem> {
        let v = match self {
            Value::I(v) => v,
            Value::F(v) if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e12 => v as i128,
            Value::F(v) => return Err(FieldProblem::NotAnInteger(v)),
        };
        u32::try_from(v).map_err(|_| FieldProblem::OutOfRange(v.to_string()))
    }
}

impl Field {
    /// The field's value converted by `convert`; its problems name the field.
    fn read_with<T>(
        &self,
        record: &[u8],
        convert: fn(Value) -> Result<T, FieldProblem>,
    ) -> Result<T, LabelsError> {
        convert(self.read(record)?).map_err(|problem| LabelsError::Field {
            field: self.name.clone(),
            problem,
        })
    }

    fn read(&self, record: &[u8]) -> Result<Value, LabelsError> {
        let problem = |problem: FieldProblem| LabelsError::Field {
            field: self.name.clone(),
            problem,
        };
        if let Some(why) = &self.unusable {
            return Err(problem(why.clone()));
        }
        let bytes = record
            .get(self.offset..self.offset + self.size)
            .ok_or_else(|| problem(FieldProblem::OutsideRecord))?;
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
            Scalar::Other => return Err(problem(FieldProblem::NotNumeric(self.name.clone()))),
        })
    }
}

/// Lays out the fields of a structured dtype sequentially, as NumPy does.
fn layout_fields(items: &[npyz::Field]) -> Result<Vec<Field>, LabelsError> {
    let mut fields = Vec::with_capacity(items.len());
    let mut offset = 0usize;
    for item in items {
        let name = item.name.clone();
        let size = item.dtype.num_bytes().ok_or_else(|| LabelsError::Field {
            field: name.clone(),
            problem: FieldProblem::NoSize,
        })?;
        let (scalar, unusable) = match &item.dtype {
            npyz::DType::Plain(ty) => scalar_of(ty),
            npyz::DType::Array(..) => (Scalar::Other, Some(FieldProblem::SubArray)),
            npyz::DType::Record(_) => (Scalar::Other, Some(FieldProblem::Nested)),
        };
        fields.push(Field {
            name,
            offset,
            size,
            scalar,
            unusable,
        });
        offset = offset
            .checked_add(size)
            .ok_or(LabelsError::TooLarge("the record"))?;
    }
    Ok(fields)
}

/// The scalar kind of a type like `<f4` and, when it cannot be decoded as a number, why.
fn scalar_of(ty: &npyz::TypeStr) -> (Scalar, Option<FieldProblem>) {
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
        Scalar::Other => Some(FieldProblem::NotNumeric(ty.to_string())),
        _ if ty.endianness() == Endianness::Big && size > 1 => {
            Some(FieldProblem::BigEndian(ty.to_string()))
        }
        _ => None,
    };
    (scalar, unusable)
}

/// numpy's own limit on the header it reads (`max_header_size` of `numpy.lib.format`).
const MAX_HEADER_BYTES: usize = 10_000;
/// Brackets a box dtype header nests: the dict, the descr list, a field tuple, a sub-shape.
const MAX_HEADER_NESTING: usize = 6;

/// Refuses headers that numpy would not write before the header parser sees them: one with
/// dozens of nested brackets made npyz's parser run for seconds on a 400-byte file (found by
/// the `labels` fuzz target).
fn check_header(bytes: &[u8]) -> Result<(), LabelsError> {
    let bad = |why: String| LabelsError::BadHeader(why);
    let (len, start) = match bytes.get(6) {
        Some(1) => (
            bytes
                .get(8..10)
                .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]]))),
            10,
        ),
        Some(2 | 3) => (
            bytes
                .get(8..12)
                .and_then(|b| usize::try_from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok()),
            12,
        ),
        // npyz reports unknown versions and truncated files itself.
        _ => return Ok(()),
    };
    let Some(len) = len else { return Ok(()) };
    if len > MAX_HEADER_BYTES {
        return Err(bad(format!(
            "is {len} bytes long; numpy reads at most {MAX_HEADER_BYTES}"
        )));
    }
    let header = bytes.get(start..).unwrap_or_default();
    let header = header.get(..len).unwrap_or(header);
    let mut depth = 0usize;
    for &b in header {
        match b {
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_HEADER_NESTING {
                    return Err(bad(format!(
                        "nests brackets more than {MAX_HEADER_NESTING} deep (a box dtype needs 3)"
                    )));
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}
