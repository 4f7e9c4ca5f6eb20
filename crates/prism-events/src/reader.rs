//! The one streaming API over every event file format.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::chunk::EventChunk;
use crate::error::{EventError, Result};

/// The on-disk formats prism reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Prophesee `.dat` (Gen1 / 1Mpx `_td.dat`): `% ` header lines, then 8-byte records.
    Dat,
    /// Prophesee EVT 2.0 `.raw`: 32-bit words.
    Evt2,
    /// Prophesee EVT 3.0 `.raw`: 16-bit stateful words.
    Evt3,
    /// HDF5 with `events/{x,y,p,t}` (RVT input layout, DSEC layout with `ms_to_idx` / `t_offset`).
    Hdf5,
    /// iniVation AEDAT 4.0 `.aedat4`: compressed flatbuffer packets; the polarity-event stream.
    Aedat4,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Dat => "Prophesee DAT",
            Format::Evt2 => "EVT 2.0 raw",
            Format::Evt3 => "EVT 3.0 raw",
            Format::Hdf5 => "HDF5 events",
            Format::Aedat4 => "AEDAT 4.0",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    /// The short names users type: `dat`, `evt2`, `evt3`, `hdf5` (or `h5`), `aedat4`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "dat" => Ok(Format::Dat),
            "evt2" => Ok(Format::Evt2),
            "evt3" => Ok(Format::Evt3),
            "hdf5" | "h5" => Ok(Format::Hdf5),
            "aedat4" | "aedat" => Ok(Format::Aedat4),
            other => Err(format!(
                "unknown event format `{other}`: one of dat, evt2, evt3, hdf5, aedat4"
            )),
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Sensor width and height in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SensorSize {
    pub width: u16,
    pub height: u16,
}

/// What a reader does when a timestamp is smaller than the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeOrder {
    /// Clamp to the running maximum, as RVT's `_correct_time` does; each repair is counted in
    /// [`ReaderStats::time_repairs`].
    #[default]
    Clamp,
    /// Stop with [`EventError::TimeBackwards`].
    Error,
}

/// What a reader does with an event outside the sensor the file declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutOfBounds {
    /// Stop with [`EventError::OutOfBounds`]: a file that breaks its own geometry is corrupt.
    #[default]
    Error,
    /// Drop the event and count it in [`ReaderStats::dropped_out_of_bounds`].
    Drop,
}

/// How a reader decodes; the defaults follow RVT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderOptions {
    /// Most events one [`EventReader::read_chunk`] call returns. Bounds memory on any file size.
    pub chunk_events: usize,
    pub time_order: TimeOrder,
    pub out_of_bounds: OutOfBounds,
    /// Sensor size to assume when the file does not declare one (EVT2 files often do not).
    pub sensor_size: Option<SensorSize>,
    /// The format the user names; `None` tells it from the file's content ([`sniff_format`]).
    /// A DAT file without a header is read only when named, with [`Self::sensor_size`].
    pub format: Option<Format>,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        Self {
            chunk_events: 1 << 16,
            time_order: TimeOrder::Clamp,
            out_of_bounds: OutOfBounds::Error,
            sensor_size: None,
            format: None,
        }
    }
}

/// What a reader has seen so far; `prism data inspect` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReaderStats {
    pub events: u64,
    /// Timestamps clamped to the running maximum ([`TimeOrder::Clamp`]).
    pub time_repairs: u64,
    pub dropped_out_of_bounds: u64,
    /// Words of a type the format does not define, skipped (EVT2 / EVT3), as openeb does.
    pub unknown_words: u64,
    pub first_t: Option<i64>,
    pub last_t: Option<i64>,
}

/// A decoder that streams events out of a file in bounded chunks.
pub trait EventReader: Send {
    fn format(&self) -> Format;

    /// Sensor size from the file (or from [`ReaderOptions::sensor_size`]), if known.
    fn sensor_size(&self) -> Option<SensorSize>;

    /// Clears `out` and fills it with the next events, at most [`ReaderOptions::chunk_events`].
    /// Returns `Ok(false)` (and an empty chunk) at the end of the file.
    fn read_chunk(&mut self, out: &mut EventChunk) -> Result<bool>;

    /// Positions the reader so that the next event returned is the first with `t >= t_us`.
    fn seek_time(&mut self, t_us: i64) -> Result<()>;

    fn stats(&self) -> &ReaderStats;

    /// How far the reader is through the file: `(done, total)` in bytes for the binary formats,
    /// in events for HDF5. For progress bars; `done == total` at the end.
    fn progress(&self) -> (u64, u64);
}

/// Reads every remaining event into one chunk. Meant for small files and tests.
pub fn read_all(reader: &mut dyn EventReader) -> Result<EventChunk> {
    let mut all = EventChunk::default();
    let mut chunk = EventChunk::default();
    while reader.read_chunk(&mut chunk)? {
        all.extend_from(&chunk);
    }
    Ok(all)
}

/// Opens `path` with default options, choosing the decoder from the file's content.
pub fn open(path: impl AsRef<Path>) -> Result<Box<dyn EventReader>> {
    open_with(path, ReaderOptions::default())
}

/// Opens `path` with the decoder of [`ReaderOptions::format`], or, when it names none, the one
/// the file's content calls for (see [`sniff_format`]).
pub fn open_with(path: impl AsRef<Path>, options: ReaderOptions) -> Result<Box<dyn EventReader>> {
    let path = path.as_ref();
    if options.chunk_events == 0 {
        return Err(EventError::InvalidArgument(
            "chunk_events must be at least 1".into(),
        ));
    }
    let format = match options.format {
        Some(format) => format,
        None => sniff_format(path)?,
    };
    Ok(match format {
        Format::Dat => Box::new(crate::dat::DatReader::open(path, options)?),
        Format::Evt2 => Box::new(crate::evt2::Evt2Reader::open(path, options)?),
        Format::Evt3 => Box::new(crate::evt3::Evt3Reader::open(path, options)?),
        Format::Hdf5 => Box::new(crate::hdf5::Hdf5Reader::open(path, options)?),
        Format::Aedat4 => Box::new(crate::aedat4::Aedat4Reader::open(path, options)?),
    })
}

const HDF5_MAGIC: &[u8; 8] = b"\x89HDF\r\n\x1a\n";

/// Tells the format from the first bytes of a file, never from its name alone.
///
/// HDF5 and AEDAT 4.0 by their signatures; `.raw` by its `% evt 2.0` / `% evt 3.0` / `% format EVT…` header line;
/// `.dat` by a `% ` header without such a line. A file without a header is refused even when it is
/// named `.dat`: bare 8-byte records cannot be told from any other bytes (random bytes would decode
/// to junk events), so such a file is read only when the user names the format and the sensor size
/// ([`ReaderOptions::format`], [`ReaderOptions::sensor_size`]).
pub fn sniff_format(path: &Path) -> Result<Format> {
    let mut head = Vec::with_capacity(4096);
    File::open(path)
        .and_then(|f| f.take(64 * 1024).read_to_end(&mut head))
        .map_err(|e| EventError::io(path, e))?;
    if head.starts_with(HDF5_MAGIC) {
        return Ok(Format::Hdf5);
    }
    if head.starts_with(crate::aedat4::MAGIC) {
        return Ok(Format::Aedat4);
    }
    let unknown = |reason: &str| EventError::UnknownFormat {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    if head.first() == Some(&b'%') {
        for line in head
            .split(|&b| b == b'\n')
            .take_while(|l| l.first() == Some(&b'%'))
        {
            let line = String::from_utf8_lossy(line).to_ascii_lowercase();
            let line = line.trim_start_matches('%').trim();
            if line.starts_with("evt 3") || line.starts_with("format evt3") {
                return Ok(Format::Evt3);
            }
            if line.starts_with("evt 2") || line.starts_with("format evt2") {
                if line.starts_with("evt 2.1") || line.starts_with("format evt21") {
                    return Err(unknown("EVT 2.1 raw files are not supported"));
                }
                return Ok(Format::Evt2);
            }
        }
        return Ok(Format::Dat);
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some(ext) if ext.eq_ignore_ascii_case("dat") => Err(unknown(
            "a .dat file without a `%` header: bare records cannot be told from other bytes; \
             name the format and the sensor size to read it (`--format dat --sensor WxH`)",
        )),
        Some(ext) if ext.eq_ignore_ascii_case("raw") => Err(unknown(
            "a .raw file without a `% evt` / `% format` header line; its encoding cannot be told",
        )),
        Some(ext) if ext.eq_ignore_ascii_case("aedat4") => Err(unknown(
            "no `#!AER-DAT4.0` magic at the start of an .aedat4 file",
        )),
        _ => Err(unknown("no `%` header and no HDF5 or AEDAT 4.0 signature")),
    }
}
