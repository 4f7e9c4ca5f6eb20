//! Event-file writers: Prophesee `.dat`, EVT 2.0 `.raw` and EVT 3.0 `.raw`.
//!
//! Every writer streams: [`EventWriter::write_chunk`] any number of times, then
//! [`EventWriter::finish`] to flush. Events must come in non-decreasing time order and inside the
//! sensor; anything else is an error, never a silently different file. What one writer produces,
//! [`crate::open`] reads back to the same events.

mod dat;
mod evt2;
mod evt3;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::chunk::EventChunk;
use crate::error::{EventError, OffsetUnit, Result};
use crate::reader::SensorSize;

pub use dat::DatWriter;
pub use evt2::Evt2Writer;
pub use evt3::Evt3Writer;

/// The formats prism can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteFormat {
    Dat,
    Evt2,
    Evt3,
}

impl WriteFormat {
    /// File extension without the dot: `dat` or `raw`.
    pub fn extension(self) -> &'static str {
        match self {
            WriteFormat::Dat => "dat",
            WriteFormat::Evt2 | WriteFormat::Evt3 => "raw",
        }
    }
}

impl From<WriteFormat> for crate::reader::Format {
    fn from(format: WriteFormat) -> Self {
        match format {
            WriteFormat::Dat => Self::Dat,
            WriteFormat::Evt2 => Self::Evt2,
            WriteFormat::Evt3 => Self::Evt3,
        }
    }
}

/// A streaming event-file encoder.
pub trait EventWriter {
    /// Appends the events of `chunk`; they must not go back in time from the previous ones.
    fn write_chunk(&mut self, chunk: &EventChunk) -> Result<()>;

    /// Flushes everything to the underlying file. Call once, after the last chunk.
    fn finish(&mut self) -> Result<()>;

    /// Events written so far.
    fn events_written(&self) -> u64;
}

/// Creates `path` and returns a writer of `format` for a `sensor`-sized recording.
pub fn create(
    path: impl AsRef<Path>,
    format: WriteFormat,
    sensor: SensorSize,
) -> Result<Box<dyn EventWriter>> {
    let path = path.as_ref();
    Ok(match format {
        WriteFormat::Dat => Box::new(DatWriter::create(path, sensor)?),
        WriteFormat::Evt2 => Box::new(Evt2Writer::create(path, sensor)?),
        WriteFormat::Evt3 => Box::new(Evt3Writer::create(path, sensor)?),
    })
}

/// Opens `path` for writing behind a buffer.
fn create_file(path: &Path) -> Result<BufWriter<File>> {
    File::create(path)
        .map(|f| BufWriter::with_capacity(1 << 16, f))
        .map_err(|e| EventError::io(path, e))
}

/// What every writer checks per event: sensor bounds, polarity, time order and time range.
#[derive(Debug)]
struct EventCheck {
    /// Names the output in errors.
    path: PathBuf,
    sensor: SensorSize,
    /// Largest timestamp the format can carry (inclusive).
    max_t: i64,
    last_t: i64,
    written: u64,
}

impl EventCheck {
    /// `max_coord` is the largest x or y the format can encode.
    fn new(path: PathBuf, sensor: SensorSize, max_coord: u16, max_t: i64) -> Result<Self> {
        if sensor.width == 0 || sensor.height == 0 {
            return Err(EventError::InvalidArgument(format!(
                "{}: sensor size {}x{} is empty",
                path.display(),
                sensor.width,
                sensor.height
            )));
        }
        if sensor.width - 1 > max_coord || sensor.height - 1 > max_coord {
            return Err(EventError::InvalidArgument(format!(
                "{}: sensor {}x{} exceeds the format's {} pixel limit",
                path.display(),
                sensor.width,
                sensor.height,
                u32::from(max_coord) + 1
            )));
        }
        Ok(Self {
            path,
            sensor,
            max_t,
            last_t: 0,
            written: 0,
        })
    }

    /// Validates event `i` of `chunk` and records its time.
    #[inline]
    fn check(&mut self, chunk: &EventChunk, i: usize) -> Result<()> {
        let (t, x, y, p) = (chunk.t[i], chunk.x[i], chunk.y[i], chunk.p[i]);
        if x >= self.sensor.width || y >= self.sensor.height {
            return Err(EventError::OutOfBounds {
                path: self.path.clone(),
                offset: self.written,
                unit: OffsetUnit::Event,
                x: u32::from(x),
                y: u32::from(y),
                width: self.sensor.width,
                height: self.sensor.height,
            });
        }
        if t < self.last_t {
            return Err(EventError::TimeBackwards {
                path: self.path.clone(),
                offset: self.written,
                unit: OffsetUnit::Event,
                prev: self.last_t,
                t,
            });
        }
        if t > self.max_t {
            return Err(EventError::InvalidArgument(format!(
                "{}: event {} at t={t} µs is beyond the format's limit of {} µs",
                self.path.display(),
                self.written,
                self.max_t
            )));
        }
        if p > 1 {
            return Err(EventError::InvalidArgument(format!(
                "{}: event {} has polarity {p}, expected 0 or 1",
                self.path.display(),
                self.written
            )));
        }
        self.last_t = t;
        self.written += 1;
        Ok(())
    }

    fn io(&self, e: std::io::Error) -> EventError {
        EventError::io(&self.path, e)
    }
}

/// Checks that the four arrays of a chunk have one length.
fn check_chunk_shape(path: &Path, chunk: &EventChunk) -> Result<()> {
    let n = chunk.t.len();
    if chunk.x.len() != n || chunk.y.len() != n || chunk.p.len() != n {
        return Err(EventError::InvalidArgument(format!(
            "{}: chunk arrays differ in length (t {}, x {}, y {}, p {})",
            path.display(),
            n,
            chunk.x.len(),
            chunk.y.len(),
            chunk.p.len()
        )));
    }
    Ok(())
}

/// The ASCII header shared by the EVT 2.0 and 3.0 raw files.
fn raw_header(version: &str, format: &str, sensor: SensorSize) -> String {
    let (w, h) = (sensor.width, sensor.height);
    format!("% evt {version}\n% format {format};height={h};width={w}\n% geometry {w}x{h}\n% end\n")
}

/// Writes `bytes` to `out`, naming `path` on failure.
fn put(out: &mut impl Write, bytes: &[u8], check: &EventCheck) -> Result<()> {
    out.write_all(bytes).map_err(|e| check.io(e))
}
