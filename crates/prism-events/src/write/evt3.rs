//! EVT 3.0 `.raw` writer: 16-bit stateful words.
//!
//! Time is sent as TIME_HIGH (bits 23..12) and TIME_LOW (bits 11..0) of a 24-bit time base that
//! wraps every 2^24 µs. Decoders count wraps by seeing TIME_HIGH drop by nearly a full period, so
//! for every wrap the writer emits TIME_HIGH 4095 then 0 (as a sensor's periodic TIME_HIGH words
//! would), which keeps absolute time exact over any gap and any duration.
//!
//! Events with one timestamp, row and polarity and increasing x are packed into
//! VECT_BASE_X + VECT_12 / VECT_8 words, as real sensors do; isolated events use ADDR_X.
//! Event order is kept exactly, so a decoder returns the events in the order they were written.

use std::io::Write;
use std::path::Path;

use super::{check_chunk_shape, put, raw_header, EventCheck, EventWriter};
use crate::chunk::EventChunk;
use crate::error::Result;
use crate::reader::SensorSize;

const ADDR_Y: u16 = 0x0;
const ADDR_X: u16 = 0x2;
const VECT_BASE_X: u16 = 0x3;
const VECT_12: u16 = 0x4;
const VECT_8: u16 = 0x5;
const TIME_LOW: u16 = 0x6;
const TIME_HIGH: u16 = 0x8;
/// x and y have 11 bits each.
const MAX_COORD: u16 = (1 << 11) - 1;
/// Fewest events in a 12-pixel span worth a vector (VECT_BASE_X + VECT_12 = 2 words).
const MIN_VECTOR_EVENTS: usize = 3;

#[inline]
fn word(kind: u16, payload: u16) -> [u8; 2] {
    (kind << 12 | payload).to_le_bytes()
}

/// Streams CD events into an EVT 3.0 file.
pub struct Evt3Writer<W: Write> {
    out: W,
    check: EventCheck,
    /// `t >> 12` (absolute, wraps included) of the current time base; none before the first.
    time_high: Option<i64>,
    /// TIME_LOW sent since the last TIME_HIGH.
    time_low: Option<u16>,
    /// Row sent by the last ADDR_Y.
    y: Option<u16>,
    buf: Vec<u8>,
}

impl Evt3Writer<std::io::BufWriter<std::fs::File>> {
    /// Creates `path` and writes the header.
    pub fn create(path: &Path, sensor: SensorSize) -> Result<Self> {
        Self::new(super::create_file(path)?, path, sensor)
    }
}

impl<W: Write> Evt3Writer<W> {
    /// Writes the header to `out`; `name` labels errors.
    pub fn new(mut out: W, name: &Path, sensor: SensorSize) -> Result<Self> {
        let check = EventCheck::new(name.to_path_buf(), sensor, MAX_COORD, i64::MAX)?;
        put(
            &mut out,
            raw_header("3.0", "EVT3", sensor).as_bytes(),
            &check,
        )?;
        Ok(Self {
            out,
            check,
            time_high: None,
            time_low: None,
            y: None,
            buf: Vec::new(),
        })
    }

    /// The underlying writer, after [`EventWriter::finish`].
    pub fn into_inner(self) -> W {
        self.out
    }

    /// Emits the TIME_HIGH / TIME_LOW words that bring the decoder's time to `t`.
    fn set_time(&mut self, t: i64) {
        let high = t >> 12;
        if self.time_high != Some(high) {
            let wraps = match self.time_high {
                None => high >> 12,
                Some(prev) => (high >> 12) - (prev >> 12),
            };
            for _ in 0..wraps {
                self.buf.extend_from_slice(&word(TIME_HIGH, 0xFFF));
                self.buf.extend_from_slice(&word(TIME_HIGH, 0));
            }
            self.buf
                .extend_from_slice(&word(TIME_HIGH, (high & 0xFFF) as u16));
            self.time_high = Some(high);
            self.time_low = None;
        }
        let low = (t & 0xFFF) as u16;
        if self.time_low != Some(low) {
            self.buf.extend_from_slice(&word(TIME_LOW, low));
            self.time_low = Some(low);
        }
    }

    /// Encodes the x coordinates of one run (same t, y, polarity; strictly increasing x).
    fn put_run(&mut self, xs: &[u16], polarity: u16) {
        let mut k = 0;
        while k < xs.len() {
            let base = xs[k];
            let in_span = xs[k..].iter().take_while(|&&x| x < base + 12).count();
            if in_span < MIN_VECTOR_EVENTS {
                self.buf
                    .extend_from_slice(&word(ADDR_X, polarity << 11 | base));
                k += 1;
                continue;
            }
            self.buf
                .extend_from_slice(&word(VECT_BASE_X, polarity << 11 | base));
            let mut block = base;
            // One VECT word per block while the next block still holds an event.
            while k < xs.len() && xs[k] < block + 12 {
                let mut mask = 0u16;
                while k < xs.len() && xs[k] < block + 12 {
                    mask |= 1 << (xs[k] - block);
                    k += 1;
                }
                if k == xs.len() && mask < 1 << 8 {
                    self.buf.extend_from_slice(&word(VECT_8, mask));
                    block += 8;
                } else {
                    self.buf.extend_from_slice(&word(VECT_12, mask));
                    block += 12;
                }
            }
        }
    }
}

impl<W: Write> EventWriter for Evt3Writer<W> {
    fn write_chunk(&mut self, chunk: &EventChunk) -> Result<()> {
        check_chunk_shape(&self.check.path, chunk)?;
        self.buf.clear();
        let mut xs = Vec::new();
        let mut i = 0;
        while i < chunk.len() {
            self.check.check(chunk, i)?;
            let (t, y, p) = (chunk.t[i], chunk.y[i], chunk.p[i]);
            // The run: following events at the same t, y, p with increasing x.
            let mut j = i + 1;
            while j < chunk.len()
                && chunk.t[j] == t
                && chunk.y[j] == y
                && chunk.p[j] == p
                && chunk.x[j] > chunk.x[j - 1]
            {
                self.check.check(chunk, j)?;
                j += 1;
            }
            self.set_time(t);
            if self.y != Some(y) {
                self.buf.extend_from_slice(&word(ADDR_Y, y));
                self.y = Some(y);
            }
            xs.clear();
            xs.extend_from_slice(&chunk.x[i..j]);
            self.put_run(&xs, u16::from(p));
            i = j;
        }
        put(&mut self.out, &self.buf, &self.check)
    }

    fn finish(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| self.check.io(e))
    }

    fn events_written(&self) -> u64 {
        self.check.written
    }
}
