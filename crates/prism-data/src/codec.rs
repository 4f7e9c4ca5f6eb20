//! The histogram file of a prepared sequence (`histograms.bin`): every window's `u8` tensor,
//! each compressed on its own so a reader can decode any one window without the others.
//!
//! Stacked histograms are sparse (a 50 ms window touches a few percent of the cells), so each
//! window is stored as zero runs: `varint(zeros before) value` for every non-zero cell, then
//! `varint(trailing zeros)`. That is about two bytes per non-zero cell, typically 10-20x smaller
//! than the raw tensor, and decodes at memory speed. A window that would not shrink is stored raw.
//!
//! Layout, little-endian:
//!
//! ```text
//! magic    b"PRSMHIST"
//! version  u32 (1)
//! windows  u64            number of windows T
//! cells    u64            cells per window, C * H * W
//! checksum u64            of the offset table and the payload
//! offsets  (T + 1) x u64  byte offsets of each window in the payload; offsets[0] = 0
//! payload  per window: mode u8 (0 raw, 1 zero runs), then its data
//! ```

use crate::error::{DataError, Result};

const MAGIC: &[u8; 8] = b"PRSMHIST";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 8 + 8 + 8;
const MODE_RAW: u8 = 0;
const MODE_RUNS: u8 = 1;

/// Windows of one sequence, each compressed on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedHistograms {
    cells: usize,
    offsets: Vec<u64>,
    payload: Vec<u8>,
}

impl EncodedHistograms {
    /// No windows yet; each will hold `cells` values.
    pub fn new(cells: usize) -> Self {
        Self {
            cells,
            offsets: vec![0],
            payload: Vec::new(),
        }
    }

    /// Encodes the windows of a dense `[T, cells]` buffer.
    pub fn from_dense(dense: &[u8], cells: usize) -> Result<Self> {
        let mut out = Self::new(cells);
        if cells == 0 {
            return Ok(out);
        }
        if dense.len() % cells != 0 {
            return Err(DataError::Invalid(format!(
                "{} histogram bytes are not a whole number of {cells}-cell windows",
                dense.len()
            )));
        }
        for window in dense.chunks_exact(cells) {
            out.push_window(window)?;
        }
        Ok(out)
    }

    pub fn cells(&self) -> usize {
        self.cells
    }

    pub fn num_windows(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Compressed size of the payload in bytes.
    pub fn payload_len(&self) -> usize {
        self.payload.len()
    }

    /// Appends one window of exactly `cells` values.
    pub fn push_window(&mut self, window: &[u8]) -> Result<()> {
        if window.len() != self.cells {
            return Err(DataError::Invalid(format!(
                "window of {} cells, expected {}",
                window.len(),
                self.cells
            )));
        }
        let start = self.payload.len();
        self.payload.push(MODE_RUNS);
        encode_runs(window, &mut self.payload);
        if self.payload.len() - start > window.len() + 1 {
            self.payload.truncate(start);
            self.payload.push(MODE_RAW);
            self.payload.extend_from_slice(window);
        }
        self.offsets.push(self.payload.len() as u64);
        Ok(())
    }

    /// Decodes window `i` into `dst` (`cells` values, overwritten).
    pub fn decode_window(&self, i: usize, dst: &mut [u8]) -> Result<(), CodecError> {
        let (Some(&a), Some(&b)) = (self.offsets.get(i), self.offsets.get(i + 1)) else {
            return Err(CodecError::NoWindow {
                index: i,
                windows: self.num_windows(),
            });
        };
        let data = usize::try_from(a)
            .ok()
            .zip(usize::try_from(b).ok())
            .and_then(|(a, b)| self.payload.get(a..b))
            .ok_or(CodecError::Offsets {
                index: i,
                start: a,
                end: b,
            })?;
        if dst.len() != self.cells {
            return Err(CodecError::Destination {
                cells: dst.len(),
                expected: self.cells,
            });
        }
        match data.split_first() {
            Some((&MODE_RAW, raw)) if raw.len() == self.cells => {
                dst.copy_from_slice(raw);
                Ok(())
            }
            Some((&MODE_RAW, raw)) => Err(CodecError::RawSize {
                index: i,
                bytes: raw.len(),
                expected: self.cells,
            }),
            Some((&MODE_RUNS, runs)) => {
                dst.fill(0);
                decode_runs(runs, dst).map_err(|source| CodecError::Runs { index: i, source })
            }
            Some((&mode, _)) => Err(CodecError::Mode { index: i, mode }),
            None if self.cells == 0 => Ok(()),
            None => Err(CodecError::NoData { index: i }),
        }
    }

    /// The file bytes (header, offsets, payload).
    pub fn to_bytes(&self) -> Vec<u8> {
        let offsets: Vec<u8> = self.offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
        let mut out = Vec::with_capacity(HEADER_LEN + offsets.len() + self.payload.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(self.num_windows() as u64).to_le_bytes());
        out.extend_from_slice(&(self.cells as u64).to_le_bytes());
        out.extend_from_slice(&checksum(&offsets, &self.payload).to_le_bytes());
        out.extend_from_slice(&offsets);
        out.extend_from_slice(&self.payload);
        out
    }

    /// Parses and checks a file: header, checksum, offsets. Windows are decoded on demand.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CodecError> {
        let header = bytes
            .get(..HEADER_LEN)
            .ok_or(CodecError::ShortHeader { bytes: bytes.len() })?;
        if &header[..8] != MAGIC {
            return Err(CodecError::Magic);
        }
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&header[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let mut v = [0u8; 4];
        v.copy_from_slice(&header[8..12]);
        let version = u32::from_le_bytes(v);
        if version != VERSION {
            return Err(CodecError::Version { version });
        }
        let (windows, cells, sum) = (u64_at(12), u64_at(20), u64_at(28));
        let cells = usize::try_from(cells).map_err(|_| CodecError::TooLarge("cell count"))?;
        let table_len = usize::try_from(windows)
            .ok()
            .and_then(|w| w.checked_add(1))
            .and_then(|n| n.checked_mul(8))
            .ok_or(CodecError::TooLarge("window count"))?;
        let rest = &bytes[HEADER_LEN..];
        if rest.len() < table_len {
            return Err(CodecError::Truncated {
                windows,
                table_len,
                left: rest.len(),
            });
        }
        let (table, payload) = rest.split_at(table_len);
        if checksum(table, payload) != sum {
            return Err(CodecError::Checksum);
        }
        let offsets: Vec<u64> = table
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                u64::from_le_bytes(b)
            })
            .collect();
        if offsets.first() != Some(&0)
            || offsets.windows(2).any(|w| w[0] > w[1])
            || offsets.last() != Some(&(payload.len() as u64))
        {
            return Err(CodecError::OffsetTable);
        }
        Ok(Self {
            cells,
            offsets,
            payload: payload.to_vec(),
        })
    }
}

/// A stored histogram file or window that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    #[error("{bytes} bytes, shorter than the {HEADER_LEN}-byte header")]
    ShortHeader { bytes: usize },
    #[error("not a prism histogram file (bad magic)")]
    Magic,
    #[error("format version {version}, this build reads {VERSION}")]
    Version { version: u32 },
    #[error("{0} too large")]
    TooLarge(&'static str),
    #[error(
        "truncated: {windows} windows need a {table_len}-byte offset table, {left} bytes left"
    )]
    Truncated {
        windows: u64,
        table_len: usize,
        left: usize,
    },
    #[error("checksum mismatch (file truncated or damaged)")]
    Checksum,
    #[error("offset table is inconsistent with the payload")]
    OffsetTable,
    #[error("window {index} of {windows}")]
    NoWindow { index: usize, windows: usize },
    #[error("window {index}: offsets {start}..{end} outside the payload")]
    Offsets { index: usize, start: u64, end: u64 },
    #[error("destination holds {cells} cells, windows {expected}")]
    Destination { cells: usize, expected: usize },
    #[error("window {index}: raw window of {bytes} bytes, expected {expected}")]
    RawSize {
        index: usize,
        bytes: usize,
        expected: usize,
    },
    #[error("window {index}: {source}")]
    Runs {
        index: usize,
        #[source]
        source: RunError,
    },
    #[error("window {index}: unknown mode {mode}")]
    Mode { index: usize, mode: u8 },
    #[error("window {index}: no data")]
    NoData { index: usize },
}

/// A run-length window that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    #[error("zero run past the end of the window")]
    PastEnd,
    #[error("data ends inside a window")]
    EndsInsideWindow,
    #[error("zero value in a run list")]
    ZeroValue,
    #[error("{bytes} bytes left after the window")]
    LeftOver { bytes: usize },
    #[error("data ends inside a run length")]
    EndsInsideLength,
    #[error("run length longer than 64 bits")]
    LengthTooLong,
}

/// Zero runs as in the module documentation; `out` gets the encoded bytes appended.
fn encode_runs(window: &[u8], out: &mut Vec<u8>) {
    let mut run = 0usize;
    let mut i = 0;
    while i < window.len() {
        // Skip zero words quickly: most of a histogram is zeros.
        if let Some(word) = window.get(i..i + 8) {
            if word.iter().all(|&v| v == 0) {
                run += 8;
                i += 8;
                continue;
            }
        }
        let v = window[i];
        if v == 0 {
            run += 1;
        } else {
            put_varint(out, run as u64);
            out.push(v);
            run = 0;
        }
        i += 1;
    }
    if run > 0 {
        put_varint(out, run as u64);
    }
}

/// Decodes zero runs into `dst` (already zeroed); every byte must be used.
fn decode_runs(mut data: &[u8], dst: &mut [u8]) -> Result<(), RunError> {
    let mut pos = 0usize;
    while pos < dst.len() {
        let run = take_varint(&mut data)?;
        pos = usize::try_from(run)
            .ok()
            .and_then(|r| pos.checked_add(r))
            .filter(|&p| p <= dst.len())
            .ok_or(RunError::PastEnd)?;
        if pos == dst.len() {
            break;
        }
        let (&v, rest) = data.split_first().ok_or(RunError::EndsInsideWindow)?;
        if v == 0 {
            return Err(RunError::ZeroValue);
        }
        dst[pos] = v;
        pos += 1;
        data = rest;
    }
    if !data.is_empty() {
        return Err(RunError::LeftOver { bytes: data.len() });
    }
    Ok(())
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn take_varint(data: &mut &[u8]) -> Result<u64, RunError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = data.split_first().ok_or(RunError::EndsInsideLength)?;
        *data = rest;
        v |= u64::from(b & 0x7F) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(RunError::LengthTooLong)
}

/// A fast 64-bit checksum (word-wise multiply-rotate hash): catches truncation and damage.
fn checksum(table: &[u8], payload: &[u8]) -> u64 {
    fn hash(bytes: &[u8], mut h: u64) -> u64 {
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            h = (h.rotate_left(23) ^ u64::from_le_bytes(b)).wrapping_mul(K);
        }
        for &b in words.remainder() {
            h = (h.rotate_left(23) ^ u64::from(b)).wrapping_mul(K);
        }
        (h ^ bytes.len() as u64).wrapping_mul(K) ^ (h >> 29)
    }
    hash(payload, hash(table, 0x5052_534D))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(windows: &[Vec<u8>], cells: usize) -> Result<(), crate::DataError> {
        let mut enc = EncodedHistograms::new(cells);
        for w in windows {
            enc.push_window(w)?;
        }
        let back = EncodedHistograms::from_bytes(&enc.to_bytes())?;
        assert_eq!(back, enc);
        let mut dst = vec![7u8; cells];
        for (i, w) in windows.iter().enumerate() {
            back.decode_window(i, &mut dst)?;
            assert_eq!(&dst, w, "window {i}");
        }
        Ok(())
    }

    #[test]
    fn sparse_dense_and_edge_windows() -> Result<(), crate::DataError> {
        let mut sparse = vec![0u8; 1000];
        sparse[0] = 3;
        sparse[517] = 10;
        sparse[999] = 1;
        let dense: Vec<u8> = (0..1000).map(|i| (i % 11) as u8).collect();
        let zeros = vec![0u8; 1000];
        let tail = {
            let mut t = vec![0u8; 1000];
            t[998] = 2;
            t
        };
        roundtrip(&[sparse, dense, zeros, tail], 1000)?;
        roundtrip(&[], 5)?;
        roundtrip(&[vec![], vec![]], 0)?;
        Ok(())
    }

    #[test]
    fn sparse_windows_shrink() -> Result<(), DataError> {
        let mut w = vec![0u8; 20 * 64 * 80];
        for i in (0..w.len()).step_by(37) {
            w[i] = 1 + (i % 10) as u8;
        }
        let enc = EncodedHistograms::from_dense(&w, w.len())?;
        assert!(
            enc.payload_len() * 10 < w.len(),
            "{} bytes",
            enc.payload_len()
        );
        Ok(())
    }

    #[test]
    fn damage_is_detected() -> Result<(), DataError> {
        let mut w = vec![0u8; 256];
        w[10] = 4;
        let bytes = EncodedHistograms::from_dense(&[w.clone(), w].concat(), 256)?.to_bytes();
        for cut in [0, 10, HEADER_LEN, bytes.len() - 1] {
            assert!(
                EncodedHistograms::from_bytes(&bytes[..cut]).is_err(),
                "cut {cut}"
            );
        }
        let mut flipped = bytes.clone();
        let last = flipped.len() - 2;
        flipped[last] ^= 0x10;
        assert!(EncodedHistograms::from_bytes(&flipped).is_err());
        Ok(())
    }

    #[test]
    fn bad_runs_are_errors() {
        let mut dst = vec![0u8; 4];
        assert!(decode_runs(&[5], &mut dst).is_err()); // run past the end
        assert!(decode_runs(&[1], &mut dst).is_err()); // ends inside the window
        assert!(decode_runs(&[0, 0], &mut dst).is_err()); // zero value
        assert!(decode_runs(&[4, 9], &mut dst).is_err()); // trailing bytes
        assert!(decode_runs(&[0xFF; 11], &mut dst).is_err()); // endless varint
        assert!(decode_runs(&[1, 2, 2], &mut dst).is_ok());
        assert_eq!(dst, [0, 2, 0, 0]);
    }
}
