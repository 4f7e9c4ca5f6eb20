//! KServe v2 / Triton HTTP messages (JSON, and the binary tensor data extension), and prism's
//! streaming-events message.
//!
//! Only `FP32` tensors are accepted: prism models take and give float32. `data` may be flat or
//! nested row-major, as the protocol allows. With the binary tensor data extension a request is
//! its JSON (`Inference-Header-Content-Length` bytes) followed by the raw little-endian tensors
//! of the inputs that give `binary_data_size`, in order; a response is built the same way for
//! the outputs asked for as binary.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::TensorInfo;

#[derive(Debug, Deserialize)]
pub struct InferRequest {
    #[serde(default)]
    pub id: Option<String>,
    pub inputs: Vec<InferInput>,
    /// Outputs to return (all when absent).
    #[serde(default)]
    pub outputs: Option<Vec<RequestedOutput>>,
    #[serde(default)]
    pub parameters: RequestParameters,
}

/// The request parameters prism reads; others are ignored, as the protocol allows.
#[derive(Debug, Default, Deserialize)]
pub struct RequestParameters {
    /// Every output as binary data after the JSON (the binary tensor data extension).
    #[serde(default)]
    pub binary_data_output: bool,
    /// The sequence (one client's stream of windows) whose recurrent state this request
    /// continues, as Triton's sequence batcher takes it: a number or a string; 0 or "" is none.
    #[serde(default)]
    pub sequence_id: Option<SequenceId>,
    /// Start the sequence: its state begins at zero (an existing one is restarted).
    #[serde(default)]
    pub sequence_start: bool,
    /// End the sequence after this request: its state is freed.
    #[serde(default)]
    pub sequence_end: bool,
}

/// A sequence id: Triton takes unsigned integers and strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(untagged)]
pub enum SequenceId {
    Number(u64),
    Text(String),
}

impl SequenceId {
    /// 0 and "" mean "no sequence" in the protocol.
    pub fn is_none(&self) -> bool {
        matches!(self, Self::Number(0)) || matches!(self, Self::Text(t) if t.is_empty())
    }
}

impl std::fmt::Display for SequenceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Text(t) => write!(f, "{t:?}"),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct InferInput {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    /// Absent when the tensor comes as binary data after the JSON.
    #[serde(default)]
    pub data: Option<Value>,
    #[serde(default)]
    pub parameters: InputParameters,
}

#[derive(Debug, Default, Deserialize)]
pub struct InputParameters {
    /// Bytes of this input in the binary data after the JSON (binary tensor data extension).
    #[serde(default)]
    pub binary_data_size: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub struct RequestedOutput {
    pub name: String,
    #[serde(default)]
    pub parameters: OutputParameters,
}

#[derive(Debug, Default, Deserialize)]
pub struct OutputParameters {
    /// This output as binary data after the JSON; absent: as the request's
    /// `binary_data_output` says.
    #[serde(default)]
    pub binary_data: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct InferResponse<'a> {
    pub model_name: &'a str,
    pub model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub outputs: Vec<OutputTensor<'a>>,
}

#[derive(Debug, Serialize)]
pub struct OutputTensor<'a> {
    pub name: &'a str,
    pub shape: &'a [usize],
    pub datatype: &'static str,
    /// Absent when the tensor follows the JSON as binary data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<&'a [f32]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<BinaryDataSize>,
}

/// `{"binary_data_size": n}`: the tensor's bytes in the binary data after the JSON.
#[derive(Debug, Serialize)]
pub struct BinaryDataSize {
    pub binary_data_size: usize,
}

#[derive(Debug, Serialize)]
pub struct TensorMetadata<'a> {
    pub name: &'a str,
    pub datatype: &'static str,
    /// `-1` for dynamic axes.
    pub shape: Vec<i64>,
}

impl<'a> From<&'a TensorInfo> for TensorMetadata<'a> {
    fn from(t: &'a TensorInfo) -> Self {
        Self {
            name: &t.name,
            datatype: "FP32",
            shape: t.shape.iter().map(|d| d.map_or(-1, |d| d as i64)).collect(),
        }
    }
}

/// A chunk of one client stream's events (`POST /v2/models/{name}/streams/{id}/events`).
#[derive(Debug, Deserialize)]
pub struct EventsRequest {
    #[serde(default)]
    pub t: Vec<i64>,
    #[serde(default)]
    pub x: Vec<u16>,
    #[serde(default)]
    pub y: Vec<u16>,
    #[serde(default)]
    pub p: Vec<u8>,
    /// End of the stream: run the last windows and forget the stream.
    #[serde(default)]
    pub finish: bool,
}

#[derive(Debug, Serialize)]
pub struct EventsResponse {
    /// The windows that held events or detections, in order.
    pub windows: Vec<WindowJson>,
    /// Windows that ran with no event and no detection (the quiet part of a short pause): counted,
    /// not listed.
    pub empty_windows: usize,
    /// Pauses longer than the server's gap limit: each ended the sequence and reset the state;
    /// the windows after it count from 0 again.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<GapJson>,
}

/// A gap that ended the stream's sequence: the last event before it and the first after, µs.
#[derive(Debug, Serialize)]
pub struct GapJson {
    pub last_us: i64,
    pub next_us: i64,
}

#[derive(Debug, Serialize)]
pub struct WindowJson {
    pub index: u64,
    pub start_us: i64,
    pub end_us: i64,
    pub num_events: usize,
    pub detections: Vec<DetectionJson>,
}

/// A detection as `prism infer` and the server write it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DetectionJson {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    pub score: f32,
    pub class_id: usize,
    pub class: String,
}

impl DetectionJson {
    pub fn new(d: &prism_core::Detection, classes: &[String]) -> Self {
        Self {
            x1: d.bbox.x1,
            y1: d.bbox.y1,
            x2: d.bbox.x2,
            y2: d.bbox.y2,
            score: d.score,
            class_id: d.class_id,
            class: prism_core::detection::class_name(classes, d.class_id).into_owned(),
        }
    }
}

/// A request body that does not follow the protocol; the server answers it 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    #[error("input `{input}`: {value} is not a number")]
    NotANumber { input: String, value: String },
    #[error("input `{input}`: datatype FP32 needs numbers, found {found}")]
    NotNumbers { input: String, found: &'static str },
    #[error("input `{input}`: {bytes} bytes of binary data is not a whole number of FP32 values")]
    BinaryNotF32 { input: String, bytes: u64 },
    #[error("binary events: {bytes} bytes, too short for the event count")]
    NoCount { bytes: usize },
    #[error("binary events: {events} events need 4 + 13 x {events} = {need} bytes, the body has {bytes}")]
    Length {
        events: usize,
        need: u128,
        bytes: usize,
    },
}

/// Flattens `data` (numbers, possibly nested arrays) into `out`; errors name the first bad value.
pub fn flatten_f32(data: &Value, out: &mut Vec<f32>, input: &str) -> Result<(), ProtocolError> {
    match data {
        Value::Number(n) => {
            let v = n.as_f64().ok_or_else(|| ProtocolError::NotANumber {
                input: input.to_string(),
                value: n.to_string(),
            })?;
            out.push(v as f32);
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(|v| flatten_f32(v, out, input)),
        other => Err(ProtocolError::NotNumbers {
            input: input.to_string(),
            found: match other {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::String(_) => "a string",
                _ => "an object",
            },
        }),
    }
}

/// Reads little-endian float32 values (an FP32 tensor of the binary tensor data extension).
pub fn f32_from_le_bytes(bytes: &[u8], input: &str) -> Result<Vec<f32>, ProtocolError> {
    f32_from_le_parts(&[bytes], input)
}

/// As [`f32_from_le_bytes`], for bytes that arrived in pieces (`parts`, in order, of any
/// lengths; a value may straddle two): one pass over them, with no zero-filling first. On a
/// multi-megabyte tensor that pass is bound by memory bandwidth, so each copy saved counts.
pub fn f32_from_le_parts(parts: &[&[u8]], input: &str) -> Result<Vec<f32>, ProtocolError> {
    let bytes: usize = parts.iter().map(|p| p.len()).sum();
    if bytes % 4 != 0 {
        return Err(ProtocolError::BinaryNotF32 {
            input: input.to_string(),
            bytes: bytes as u64,
        });
    }
    let mut values = Vec::with_capacity(bytes / 4);
    // The first bytes of a value split between two pieces.
    let mut straddling = [0u8; 4];
    let mut held = 0;
    for &part in parts {
        let mut part = part;
        if held > 0 {
            let take = (4 - held).min(part.len());
            straddling[held..held + take].copy_from_slice(&part[..take]);
            held += take;
            part = &part[take..];
            if held < 4 {
                continue;
            }
            values.push(f32::from_le_bytes(straddling));
        }
        let whole = part.len() / 4 * 4;
        extend_f32_le(&mut values, &part[..whole]);
        held = part.len() - whole;
        straddling[..held].copy_from_slice(&part[whole..]);
    }
    Ok(values)
}

/// Appends the little-endian float32 values in `bytes` (a multiple of 4 long) to `values`:
/// straight from `bytes` when they are 4-byte aligned, else through a small aligned buffer
/// that stays in the cache.
fn extend_f32_le(values: &mut Vec<f32>, bytes: &[u8]) {
    const BLOCK: usize = 4096;
    let start = values.len();
    if let Ok(aligned) = bytemuck::try_cast_slice::<u8, f32>(bytes) {
        values.extend_from_slice(aligned);
    } else {
        let mut staging = [0f32; BLOCK];
        for block in bytes.chunks(4 * BLOCK) {
            let staged = &mut staging[..block.len() / 4];
            bytemuck::cast_slice_mut::<f32, u8>(staged).copy_from_slice(block);
            values.extend_from_slice(staged);
        }
    }
    if cfg!(target_endian = "big") {
        values[start..]
            .iter_mut()
            .for_each(|v| *v = f32::from_bits(u32::from_le(v.to_bits())));
    }
}

/// Appends `values` as little-endian float32 bytes.
pub fn f32_to_le_bytes(values: &[f32], out: &mut Vec<u8>) {
    if cfg!(target_endian = "little") {
        out.extend_from_slice(bytemuck::cast_slice(values));
    } else {
        out.reserve(4 * values.len());
        values
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    }
}

/// Decodes the binary events body: `n` (u32), then `t` (n × i64), `x` (n × u16), `y` (n × u16),
/// `p` (n × u8), all little-endian: `4 + 13 n` bytes.
pub fn decode_binary_events(body: &[u8], finish: bool) -> Result<EventsRequest, ProtocolError> {
    let (head, rest) = body
        .split_first_chunk::<4>()
        .ok_or(ProtocolError::NoCount { bytes: body.len() })?;
    let n = u32::from_le_bytes(*head) as usize;
    let need = 4 + 13 * n as u128;
    if rest.len() as u128 + 4 != need {
        return Err(ProtocolError::Length {
            events: n,
            need,
            bytes: body.len(),
        });
    }
    let (t, rest) = rest.split_at(8 * n);
    let (x, rest) = rest.split_at(2 * n);
    let (y, p) = rest.split_at(2 * n);
    let u16s = |b: &[u8]| {
        b.chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect()
    };
    Ok(EventsRequest {
        t: t.chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect(),
        x: u16s(x),
        y: u16s(y),
        p: p.to_vec(),
        finish,
    })
}

/// Encodes events in the layout [`decode_binary_events`] reads (for clients and tests).
pub fn encode_binary_events(t: &[i64], x: &[u16], y: &[u16], p: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 13 * t.len());
    out.extend_from_slice(&(t.len() as u32).to_le_bytes());
    t.iter()
        .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    x.iter()
        .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    y.iter()
        .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    out.extend_from_slice(p);
    out
}

/// Test bodies as a sender might split them: `bytes` cut at each of `cuts` (taken modulo its
/// length, in any order; empty pieces allowed).
#[cfg(test)]
pub(super) fn cut_into_parts<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    at.sort_unstable();
    let mut parts = Vec::new();
    let mut from = 0;
    for &to in &at {
        parts.push(&bytes[from..to]);
        from = to;
    }
    parts.push(&bytes[from..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_events_round_trip_and_reject_bad_lengths() {
        let body = encode_binary_events(&[1, -2], &[3, 4], &[5, 6], &[0, 1]);
        assert_eq!(body.len(), 4 + 26);
        let r = decode_binary_events(&body, true).map_err(|e| e.to_string());
        let r = r
            .as_ref()
            .map(|r| (r.t.clone(), r.x.clone(), r.y.clone(), r.p.clone(), r.finish));
        assert_eq!(
            r,
            Ok((vec![1, -2], vec![3, 4], vec![5, 6], vec![0, 1], true))
        );
        assert!(decode_binary_events(&body[..29], false).is_err());
        assert!(decode_binary_events(&[1, 0], false).is_err());
        assert!(decode_binary_events(&[255, 255, 255, 255], false).is_err());
    }

    /// Floats cut into pieces anywhere (mid-value, empty pieces, unaligned starts) read back
    /// as the values written; a length that is not whole floats is refused.
    #[test]
    fn floats_read_back_from_pieces_cut_anywhere() {
        use proptest::prelude::*;
        proptest!(|(values in proptest::collection::vec(any::<f32>(), 0..3000),
                    cuts in proptest::collection::vec(any::<usize>(), 0..12),
                    shift in 0usize..4)| {
            let mut bytes = Vec::new();
            f32_to_le_bytes(&values, &mut bytes);
            let expected: Vec<u32> = values.iter().map(|v| v.to_bits()).collect();
            // An unaligned start: the same bytes, `shift` bytes into a buffer.
            let mut shifted = vec![0u8; shift];
            shifted.extend_from_slice(&bytes);
            let bytes = &shifted[shift..];
            let parts = cut_into_parts(bytes, &cuts);
            let read = f32_from_le_parts(&parts, "x").map_err(|e| e.to_string());
            let read_bits = read.map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>());
            prop_assert_eq!(read_bits, Ok(expected.clone()));
            let whole = f32_from_le_bytes(bytes, "x").map_err(|e| e.to_string());
            prop_assert_eq!(whole.map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>()), Ok(expected));
            if !bytes.is_empty() {
                prop_assert!(f32_from_le_parts(&[&bytes[1..]], "x").is_err());
            }
        });
    }

    /// Little-endian means little-endian: 1.0 is 00 00 80 3f.
    #[test]
    fn floats_are_little_endian_on_the_wire() {
        let mut bytes = Vec::new();
        f32_to_le_bytes(&[1.0, -2.5], &mut bytes);
        assert_eq!(bytes, [0, 0, 0x80, 0x3f, 0, 0, 0x20, 0xc0]);
        let back = f32_from_le_parts(&[&bytes[..3], &bytes[3..]], "x").map_err(|e| e.to_string());
        assert_eq!(back, Ok(vec![1.0, -2.5]));
    }
}
