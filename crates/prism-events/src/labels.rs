//! Prophesee bounding-box labels (`*_bbox.npy`): read both dtype variants, write the RVT one.
//!
//! The files are NumPy structured arrays. Two layouts exist in the wild:
//! - Gen1 original: `ts <u8, x y w h <f4, class_id u1, confidence <f4, track_id <u4` (packed, 37 bytes);
//! - 1Mpx / RVT `BBOX_DTYPE`: `t <i8, x y w h <f4, class_id <u4, track_id <u4, class_confidence <f4`
//!   (40 bytes).
//!
//! The reader takes field names, types and offsets from the header's `descr`, so field order,
//! padding and integer / float widths may vary. The parser is hand written (a small Python-literal
//! reader) and never panics on malformed input.

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
    std::fs::write(path, encode_bbox_npy(labels)).map_err(|e| EventError::io(path, e))
}

/// The bytes of a `.npy` file holding `labels` with RVT's `BBOX_DTYPE`.
pub fn encode_bbox_npy(labels: &[BoxLabel]) -> Vec<u8> {
    let dict = format!(
        "{{'descr': [('t', '<i8'), ('x', '<f4'), ('y', '<f4'), ('w', '<f4'), ('h', '<f4'), \
         ('class_id', '<u4'), ('track_id', '<u4'), ('class_confidence', '<f4'), ('', '|V4')], \
         'fortran_order': False, 'shape': ({},), }}",
        labels.len()
    );
    // Magic (6) + version (2) + length (2) + dict + padding + '\n', a multiple of 64 bytes.
    let unpadded = MAGIC.len() + 2 + 2 + dict.len() + 1;
    let header_len = dict.len() + 1 + (64 - unpadded % 64) % 64;
    let mut out = Vec::with_capacity(10 + header_len + labels.len() * 40);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    // The dict is a few hundred bytes, far below u16::MAX.
    out.extend_from_slice(&(header_len as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(10 + header_len - 1, b' ');
    out.push(b'\n');
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
    out
}

/// Decodes the bytes of a bbox `.npy` file; the error is a human-readable reason.
pub fn parse_bbox_npy(bytes: &[u8]) -> Result<Vec<BoxLabel>, String> {
    let (header, data) = split_header(bytes)?;
    let dict = match parse_literal(header)? {
        Literal::Dict(entries) => entries,
        _ => return Err("header is not a dict".into()),
    };
    let get = |key: &str| dict.iter().find(|(k, _)| k == key).map(|(_, v)| v);
    let descr = get("descr").ok_or("header has no 'descr'")?;
    let fields = match descr {
        Literal::List(items) => layout_fields(items)?,
        Literal::Str(s) => {
            return Err(format!("dtype '{s}' is not a structured array of boxes"));
        }
        _ => return Err("'descr' is neither a list nor a string".into()),
    };
    let itemsize = fields.iter().map(|f| f.offset + f.size).max().unwrap_or(0);
    let count = match get("shape").ok_or("header has no 'shape'")? {
        Literal::Tuple(dims) | Literal::List(dims) => {
            dims.iter().try_fold(1usize, |acc, d| match d {
                Literal::Int(n) if *n >= 0 => usize::try_from(*n)
                    .ok()
                    .and_then(|n| acc.checked_mul(n))
                    .ok_or_else(|| "shape is too large".to_string()),
                _ => Err("shape holds a non-integer or negative dimension".to_string()),
            })?
        }
        _ => return Err("'shape' is not a tuple".into()),
    };
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

/// Checks magic and version, returns the header dict text and the data after it.
fn split_header(bytes: &[u8]) -> Result<(&str, &[u8]), String> {
    if bytes.len() < 10 || !bytes.starts_with(MAGIC) {
        return Err("not a .npy file (no \\x93NUMPY magic)".into());
    }
    let (len, start) = match bytes[6] {
        1 => (
            usize::from(u16::from_le_bytes([bytes[8], bytes[9]])),
            10usize,
        ),
        2 | 3 if bytes.len() >= 12 => {
            let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (
                usize::try_from(len).map_err(|_| "header length too large")?,
                12,
            )
        }
        v => return Err(format!("unsupported .npy version {v}.{}", bytes[7])),
    };
    let end = start
        .checked_add(len)
        .filter(|&end| end <= bytes.len())
        .ok_or("header runs past the end of the file")?;
    let header = std::str::from_utf8(&bytes[start..end]).map_err(|_| "header is not UTF-8")?;
    Ok((header, &bytes[end..]))
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

/// Lays out the fields of a structured `descr` list sequentially, as NumPy does.
fn layout_fields(items: &[Literal]) -> Result<Vec<Field>, String> {
    let mut fields = Vec::with_capacity(items.len());
    let mut offset = 0usize;
    for item in items {
        let Literal::Tuple(parts) = item else {
            return Err("a 'descr' entry is not a tuple".into());
        };
        let name = match parts.first() {
            Some(Literal::Str(s)) => s.clone(),
            // `(('title', 'name'), type)`: the second string is the field name.
            Some(Literal::Tuple(t)) => match t.get(1) {
                Some(Literal::Str(s)) => s.clone(),
                _ => return Err("a titled field lacks its name".into()),
            },
            _ => return Err("a 'descr' entry lacks a field name".into()),
        };
        let (size, scalar, mut unusable) = match parts.get(1) {
            Some(Literal::Str(ty)) => {
                type_string(ty).map_err(|e| format!("field '{name}': {e}"))?
            }
            Some(Literal::List(sub)) => {
                let sub = layout_fields(sub)?;
                let size = sub.iter().map(|f| f.offset + f.size).max().unwrap_or(0);
                (
                    size,
                    Scalar::Other,
                    Some("nested structured type".to_string()),
                )
            }
            _ => return Err(format!("field '{name}' has no type")),
        };
        let mut size = size;
        if let Some(shape) = parts.get(2) {
            let dims = match shape {
                Literal::Tuple(d) | Literal::List(d) => d.clone(),
                other => vec![other.clone()],
            };
            for d in dims {
                match d {
                    Literal::Int(n) if (0..=1 << 20).contains(&n) => {
                        size = size.checked_mul(n as usize).ok_or("field size overflows")?;
                    }
                    _ => return Err(format!("field '{name}' has a bad sub-array shape")),
                }
            }
            unusable.get_or_insert_with(|| "sub-array fields are not supported".into());
        }
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

/// Size, scalar kind and (when not decodable) the reason, of a type string like `<f4`.
fn type_string(ty: &str) -> Result<(usize, Scalar, Option<String>), String> {
    let (order, rest) = match ty.chars().next() {
        Some(c @ ('<' | '>' | '|' | '=')) => (c, &ty[1..]),
        _ => ('|', ty),
    };
    let mut chars = rest.chars();
    let kind = chars.next().ok_or_else(|| format!("empty type '{ty}'"))?;
    let digits: String = chars
        .as_str()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let n: usize = digits.parse().map_err(|_| format!("unknown type '{ty}'"))?;
    if n > 1 << 20 {
        return Err(format!("type '{ty}' is too large"));
    }
    let size = if kind == 'U' { n * 4 } else { n };
    let scalar = match (kind, n) {
        ('i', 1 | 2 | 4 | 8) => Scalar::Int {
            signed: true,
            size: n,
        },
        ('u' | 'b', 1 | 2 | 4 | 8) => Scalar::Int {
            signed: false,
            size: n,
        },
        ('f', 4 | 8) => Scalar::Float { size: n },
        _ => Scalar::Other,
    };
    let unusable = match scalar {
        Scalar::Other => Some(format!("type '{ty}' is not an integer or float32/64")),
        _ if order == '>' && n > 1 => Some(format!("big-endian type '{ty}' is not supported")),
        _ => None,
    };
    Ok((size, scalar, unusable))
}

// ---------------------------------------------------------------------------------------------
// Python literal reader for the header dict

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Str(String),
    Int(i64),
    Bool,
    None,
    List(Vec<Literal>),
    Tuple(Vec<Literal>),
    Dict(Vec<(String, Literal)>),
}

/// Nesting deeper than this is rejected; real headers nest three levels.
const MAX_DEPTH: usize = 16;

fn parse_literal(text: &str) -> Result<Literal, String> {
    let mut p = LiteralParser {
        s: text.as_bytes(),
        i: 0,
    };
    let value = p.value(0)?;
    p.skip_ws();
    if p.i != p.s.len() {
        return Err(format!(
            "unexpected text after the header dict at byte {}",
            p.i
        ));
    }
    Ok(value)
}

struct LiteralParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl LiteralParser<'_> {
    fn skip_ws(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }

    fn fail<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("header: {what} at byte {}", self.i))
    }

    fn value(&mut self, depth: usize) -> Result<Literal, String> {
        if depth > MAX_DEPTH {
            return self.fail("nesting too deep");
        }
        match self.peek() {
            Some(b'{') => self.dict(depth),
            Some(b'[') => Ok(Literal::List(self.sequence(b']', depth)?)),
            Some(b'(') => Ok(Literal::Tuple(self.sequence(b')', depth)?)),
            Some(q @ (b'\'' | b'"')) => self.string(q).map(Literal::Str),
            Some(c) if c == b'-' || c == b'+' || c.is_ascii_digit() => self.int(),
            Some(c) if c.is_ascii_alphabetic() => self.word(),
            Some(_) => self.fail("unexpected character"),
            None => self.fail("unexpected end"),
        }
    }

    fn dict(&mut self, depth: usize) -> Result<Literal, String> {
        self.i += 1;
        let mut entries = Vec::new();
        loop {
            match self.peek() {
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Literal::Dict(entries));
                }
                Some(q @ (b'\'' | b'"')) => {
                    let key = self.string(q)?;
                    if self.peek() != Some(b':') {
                        return self.fail("expected ':'");
                    }
                    self.i += 1;
                    let value = self.value(depth + 1)?;
                    entries.push((key, value));
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {}
                        _ => return self.fail("expected ',' or '}'"),
                    }
                }
                _ => return self.fail("expected a string key"),
            }
        }
    }

    fn sequence(&mut self, close: u8, depth: usize) -> Result<Vec<Literal>, String> {
        self.i += 1;
        let mut items = Vec::new();
        loop {
            if self.peek() == Some(close) {
                self.i += 1;
                return Ok(items);
            }
            items.push(self.value(depth + 1)?);
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(c) if c == close => {}
                _ => return self.fail("expected ',' or a closing bracket"),
            }
        }
    }

    fn string(&mut self, quote: u8) -> Result<String, String> {
        self.i += 1;
        let start = self.i;
        while let Some(&c) = self.s.get(self.i) {
            if c == quote {
                let text = std::str::from_utf8(&self.s[start..self.i]).map_err(|_| "bad UTF-8")?;
                self.i += 1;
                return Ok(text.to_string());
            }
            if c == b'\\' {
                return self.fail("escapes in strings are not supported");
            }
            self.i += 1;
        }
        self.fail("unterminated string")
    }

    fn int(&mut self) -> Result<Literal, String> {
        let start = self.i;
        if matches!(self.s.get(self.i), Some(b'-' | b'+')) {
            self.i += 1;
        }
        while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        // Python 2 era headers may write `3L`.
        let digits = std::str::from_utf8(&self.s[start..self.i]).map_err(|_| "bad UTF-8")?;
        if self.s.get(self.i) == Some(&b'L') {
            self.i += 1;
        }
        digits
            .parse()
            .map(Literal::Int)
            .or_else(|_| self.fail("bad integer"))
    }

    fn word(&mut self) -> Result<Literal, String> {
        let start = self.i;
        while self.s.get(self.i).is_some_and(u8::is_ascii_alphanumeric) {
            self.i += 1;
        }
        match &self.s[start..self.i] {
            b"True" | b"False" => Ok(Literal::Bool),
            b"None" => Ok(Literal::None),
            _ => self.fail("unknown word"),
        }
    }
}
