//! Prophesee `.dat` writer: `% ` header, type byte 0x0C (EventCD), size byte 8, 8-byte records.

use std::io::Write;
use std::path::Path;

use super::{check_chunk_shape, put, EventCheck, EventWriter};
use crate::chunk::EventChunk;
use crate::error::Result;
use crate::reader::SensorSize;

/// DAT event type byte for CD events.
const EVENT_CD: u8 = 0x0C;
/// x and y have 14 bits each.
const MAX_COORD: u16 = (1 << 14) - 1;

/// Streams CD events into a `.dat` file. Timestamps are u32 µs, so at most about 71.6 minutes.
pub struct DatWriter<W: Write> {
    out: W,
    check: EventCheck,
    buf: Vec<u8>,
}

impl DatWriter<std::io::BufWriter<std::fs::File>> {
    /// Creates `path` and writes the header.
    pub fn create(path: &Path, sensor: SensorSize) -> Result<Self> {
        Self::new(super::create_file(path)?, path, sensor)
    }
}

impl<W: Write> DatWriter<W> {
    /// Writes the header to `out`; `name` labels errors.
    pub fn new(mut out: W, name: &Path, sensor: SensorSize) -> Result<Self> {
        let check = EventCheck::new(name.to_path_buf(), sensor, MAX_COORD, i64::from(u32::MAX))?;
        let header = format!(
            "% Data file containing CD events\n% Version 2\n% Width {}\n% Height {}\n",
            sensor.width, sensor.height
        );
        put(&mut out, header.as_bytes(), &check)?;
        put(&mut out, &[EVENT_CD, 8], &check)?;
        Ok(Self {
            out,
            check,
            buf: Vec::new(),
        })
    }

    /// The underlying writer, after [`EventWriter::finish`].
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> EventWriter for DatWriter<W> {
    fn write_chunk(&mut self, chunk: &EventChunk) -> Result<()> {
        check_chunk_shape(&self.check.path, chunk)?;
        self.buf.clear();
        for i in 0..chunk.len() {
            self.check.check(chunk, i)?;
            let word =
                u32::from(chunk.x[i]) | u32::from(chunk.y[i]) << 14 | u32::from(chunk.p[i]) << 28;
            // `check` bounded t to 0..=u32::MAX.
            self.buf
                .extend_from_slice(&(chunk.t[i] as u32).to_le_bytes());
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
