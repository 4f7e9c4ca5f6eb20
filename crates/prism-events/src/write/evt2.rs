//! EVT 2.0 `.raw` writer: 32-bit words, a TIME_HIGH word whenever `t >> 6` changes, CD words.

use std::io::Write;
use std::path::Path;

use super::{check_chunk_shape, put, raw_header, EventCheck, EventWriter};
use crate::chunk::EventChunk;
use crate::error::Result;
use crate::reader::SensorSize;

const CD_OFF: u32 = 0x0;
const CD_ON: u32 = 0x1;
const TIME_HIGH: u32 = 0x8;
/// x and y have 11 bits each.
const MAX_COORD: u16 = (1 << 11) - 1;
/// TIME_HIGH carries t bits 33..6, so t stays below 2^34 µs (about 4.8 hours).
const MAX_T: i64 = (1 << 34) - 1;

/// Streams CD events into an EVT 2.0 file.
pub struct Evt2Writer<W: Write> {
    out: W,
    check: EventCheck,
    /// `t >> 6` of the last TIME_HIGH word, none before the first.
    time_high: Option<i64>,
    buf: Vec<u8>,
}

impl Evt2Writer<std::io::BufWriter<std::fs::File>> {
    /// Creates `path` and writes the header.
    pub fn create(path: &Path, sensor: SensorSize) -> Result<Self> {
        Self::new(super::create_file(path)?, path, sensor)
    }
}

impl<W: Write> Evt2Writer<W> {
    /// Writes the header to `out`; `name` labels errors.
    pub fn new(mut out: W, name: &Path, sensor: SensorSize) -> Result<Self> {
        let check = EventCheck::new(name.to_path_buf(), sensor, MAX_COORD, MAX_T)?;
        put(
            &mut out,
            raw_header("2.0", "EVT2", sensor).as_bytes(),
            &check,
        )?;
        Ok(Self {
            out,
            check,
            time_high: None,
            buf: Vec::new(),
        })
    }

    /// The underlying writer, after [`EventWriter::finish`].
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> EventWriter for Evt2Writer<W> {
    fn write_chunk(&mut self, chunk: &EventChunk) -> Result<()> {
        check_chunk_shape(&self.check.path, chunk)?;
        self.buf.clear();
        for i in 0..chunk.len() {
            self.check.check(chunk, i)?;
            let t = chunk.t[i];
            let high = t >> 6;
            if self.time_high != Some(high) {
                self.time_high = Some(high);
                let word = TIME_HIGH << 28 | (high as u32 & 0x0FFF_FFFF);
                self.buf.extend_from_slice(&word.to_le_bytes());
            }
            let kind = if chunk.p[i] == 1 { CD_ON } else { CD_OFF };
            let word = kind << 28
                | ((t & 63) as u32) << 22
                | u32::from(chunk.x[i]) << 11
                | u32::from(chunk.y[i]);
            self.buf.extend_from_slice(&word.to_le_bytes());
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
