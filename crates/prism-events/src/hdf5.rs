//! HDF5 event files, read with the pure-Rust `rust-hdf5` crate (no libhdf5).
//!
//! Two layouts, both `events/{x,y,p,t}` 1-D integer datasets of equal length:
//! - RVT input (`*_td.h5`): optional `events/height` / `events/width` scalars give the sensor.
//! - DSEC (`events.h5`): `t` is relative; a root `t_offset` scalar makes it absolute
//!   (`t + t_offset`). Its `ms_to_idx` array is not used: it points to the right event only
//!   when time never goes backwards, and a seek must be exact either way.
//!
//! Columns are read in bounded slices (hyperslabs of `BLOCK` events), so memory stays bounded
//! on any file; chunked and deflate-compressed datasets are decoded by the crate. `p` is clipped
//! to `{0, 1}` (`p <= 0` is OFF, RVT clips negative polarities to 0). A seek resumes at the last
//! point of a seek index (built while reading) whose running maximum time is below the
//! target, then scans the `t` column alone up to the first event it keeps: exact also when time
//! goes backwards, and a far seek on a fresh reader costs one read of `t` up to the target.
//! HDF5 has no meaningful byte offsets, so errors about single events give the event's index in
//! the `offset` field.

use std::path::{Path, PathBuf};

use rust_hdf5::{DatatypeMessage, H5Dataset, H5File};

use crate::chunk::EventChunk;
use crate::error::{EventError, Result};
use crate::policy::{update_stats, Gate};
use crate::reader::{EventReader, Format, ReaderOptions, ReaderStats, SensorSize};
use crate::seek_index::SeekIndex;

/// Events read from each column per HDF5 slice.
const BLOCK: usize = 1 << 16;

/// Integer storage types a column may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IntKind {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
}

/// One integer dataset, read as `i64` whatever its stored width.
struct Column {
    name: &'static str,
    ds: H5Dataset,
    kind: IntKind,
    len: usize,
}

/// Runs calls into `rust-hdf5`, turning a panic inside that crate into an error. It indexes
/// some malformed structures without a bounds check (fuzzing found an array datatype whose
/// base type starts past the end of its message, `datatype.rs`, 0.7.9), and a corrupt file
/// must be an error, not a crash. Nothing of the reader is used after a caught panic: the call
/// that panicked returns the error, and so does the reader's open or read.
fn guarded<T>(path: &Path, what: &str, call: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_hdf5_panic(call).unwrap_or_else(|reason| Err(hdf5_err(path, what, reason)))
}

/// Runs `call`, which uses `rust-hdf5`, and turns a panic inside it into the reason to report
/// (`malformed file: ...`). For other crates reading HDF5 files (prism-data reads RVT's
/// preprocessed histograms): the same protection this module's readers have.
pub fn catch_hdf5_panic<T>(call: impl FnOnce() -> T) -> std::result::Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        format!("malformed file: the HDF5 reader failed on it ({message})")
    })
}

/// True for a panic raised inside `rust-hdf5`, which this module's readers catch and return as
/// an error. A program's panic hook can stay quiet about those (`prism` does): the user sees
/// the error, not a panic message.
pub fn is_caught_panic(info: &std::panic::PanicHookInfo<'_>) -> bool {
    info.location()
        .is_some_and(|l| l.file().replace('\\', "/").contains("/rust-hdf5-"))
}

fn hdf5_err(path: &Path, what: &str, err: impl std::fmt::Display) -> EventError {
    EventError::Hdf5 {
        path: path.to_path_buf(),
        reason: format!("{what}: {err}"),
    }
}

impl Column {
    fn open(file: &H5File, path: &Path, name: &'static str) -> Result<Self> {
        let ds = file.dataset(name).map_err(|e| hdf5_err(path, name, e))?;
        let kind = match ds.datatype().map_err(|e| hdf5_err(path, name, e))? {
            DatatypeMessage::FixedPoint { size, signed, .. } => match (size, signed) {
                (1, false) => IntKind::U8,
                (1, true) => IntKind::I8,
                (2, false) => IntKind::U16,
                (2, true) => IntKind::I16,
                (4, false) => IntKind::U32,
                (4, true) => IntKind::I32,
                (8, false) => IntKind::U64,
                (8, true) => IntKind::I64,
                _ => {
                    return Err(hdf5_err(
                        path,
                        name,
                        format!("unsupported integer size {size}"),
                    ))
                }
            },
            other => {
                return Err(hdf5_err(
                    path,
                    name,
                    format!("expected an integer dataset, found {other:?}"),
                ))
            }
        };
        let shape = ds.shape();
        let len = match shape.as_slice() {
            [] => 1,
            [n] => *n,
            _ => {
                return Err(hdf5_err(
                    path,
                    name,
                    format!("expected one dimension, found shape {shape:?}"),
                ))
            }
        };
        Ok(Self {
            name,
            ds,
            kind,
            len,
        })
    }

    /// Elements `start .. start + count` as `i64` (u64 values above `i64::MAX` saturate).
    fn read(&self, path: &Path, start: usize, count: usize, out: &mut Vec<i64>) -> Result<()> {
        guarded(path, self.name, || {
            self.read_unguarded(path, start, count, out)
        })
    }

    fn read_unguarded(
        &self,
        path: &Path,
        start: usize,
        count: usize,
        out: &mut Vec<i64>,
    ) -> Result<()> {
        out.clear();
        if count == 0 {
            return Ok(());
        }
        let err = |e: rust_hdf5::Hdf5Error| hdf5_err(path, self.name, e);
        let scalar = self.ds.shape().is_empty();
        macro_rules! read_as {
            ($t:ty) => {{
                let values: Vec<$t> = if scalar {
                    self.ds.read_raw::<$t>().map_err(err)?
                } else {
                    self.ds.read_slice::<$t>(&[start], &[count]).map_err(err)?
                };
                out.extend(
                    values
                        .into_iter()
                        .map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
                );
            }};
        }
        match self.kind {
            IntKind::U8 => read_as!(u8),
            IntKind::I8 => read_as!(i8),
            IntKind::U16 => read_as!(u16),
            IntKind::I16 => read_as!(i16),
            IntKind::U32 => read_as!(u32),
            IntKind::I32 => read_as!(i32),
            IntKind::U64 => read_as!(u64),
            IntKind::I64 => read_as!(i64),
        }
        if out.len() != count {
            return Err(hdf5_err(
                path,
                self.name,
                format!("read {} values, expected {count}", out.len()),
            ));
        }
        Ok(())
    }

    /// A scalar (or the first element).
    fn scalar(&self, path: &Path) -> Result<i64> {
        let mut v = Vec::with_capacity(1);
        self.read(path, 0, 1, &mut v)?;
        v.first()
            .copied()
            .ok_or_else(|| hdf5_err(path, self.name, "empty scalar"))
    }
}

/// The four event columns, decoded one block at a time.
#[derive(Default)]
struct Block {
    /// Index of the first event in the block.
    start: usize,
    x: Vec<i64>,
    y: Vec<i64>,
    p: Vec<i64>,
    t: Vec<i64>,
}

/// Streams events out of an HDF5 file.
pub struct Hdf5Reader {
    path: PathBuf,
    x: Column,
    y: Column,
    p: Column,
    t: Column,
    t_offset: i64,
    /// Number of events.
    len: usize,
    /// Index of the next event to decode.
    next: usize,
    block: Block,
    /// Resume points every `BLOCK` events, recorded as the file is read.
    index: SeekIndex<()>,
    /// The `t` slice a seek scans.
    scan_t: Vec<i64>,
    gate: Gate,
    sensor: Option<SensorSize>,
    chunk_events: usize,
    stats: ReaderStats,
}

/// Opens an optional dataset: `None` when the file has no such name.
fn optional(file: &H5File, path: &Path, name: &'static str) -> Result<Option<Column>> {
    if !file
        .dataset_names()
        .iter()
        .any(|n| n.trim_start_matches('/') == name)
    {
        return Ok(None);
    }
    Column::open(file, path, name).map(Some)
}

impl Hdf5Reader {
    pub fn open(path: &Path, options: ReaderOptions) -> Result<Self> {
        guarded(path, "open", || Self::open_unguarded(path, options))
    }

    fn open_unguarded(path: &Path, options: ReaderOptions) -> Result<Self> {
        let file = H5File::open(path).map_err(|e| hdf5_err(path, "open", e))?;
        let x = Column::open(&file, path, "events/x")?;
        let y = Column::open(&file, path, "events/y")?;
        let p = Column::open(&file, path, "events/p")?;
        let t = Column::open(&file, path, "events/t")?;
        let len = t.len;
        for c in [&x, &y, &p] {
            if c.len != len {
                return Err(hdf5_err(
                    path,
                    c.name,
                    format!("has {} events but events/t has {len}", c.len),
                ));
            }
        }
        let t_offset = match optional(&file, path, "t_offset")? {
            Some(c) => c.scalar(path)?,
            None => 0,
        };
        let size = |name| -> Result<Option<u16>> {
            optional(&file, path, name)?
                .map(|c| {
                    let v = c.scalar(path)?;
                    u16::try_from(v)
                        .map_err(|_| hdf5_err(path, name, format!("sensor size {v} out of range")))
                })
                .transpose()
        };
        let declared = match (size("events/width")?, size("events/height")?) {
            (Some(width), Some(height)) => Some(SensorSize { width, height }),
            _ => None,
        };
        let sensor = declared.or(options.sensor_size);
        Ok(Self {
            path: path.to_path_buf(),
            x,
            y,
            p,
            t,
            t_offset,
            len,
            next: 0,
            block: Block::default(),
            index: SeekIndex::new(BLOCK as u64),
            scan_t: Vec::new(),
            gate: Gate::new(&options, sensor).counting_events(),
            sensor,
            chunk_events: options.chunk_events.max(1),
            stats: ReaderStats::default(),
        })
    }

    /// Number of events in the file.
    pub fn event_count(&self) -> usize {
        self.len
    }

    /// Makes sure the block holds event `self.next`.
    fn load_block(&mut self) -> Result<()> {
        let b = &self.block;
        if self.next >= b.start && self.next < b.start + b.t.len() {
            return Ok(());
        }
        let start = self.next;
        let count = BLOCK.min(self.len - start);
        self.index.record(start as u64, self.gate.max_seen(), ());
        self.block.start = start;
        self.x.read(&self.path, start, count, &mut self.block.x)?;
        self.y.read(&self.path, start, count, &mut self.block.y)?;
        self.p.read(&self.path, start, count, &mut self.block.p)?;
        self.t.read(&self.path, start, count, &mut self.block.t)?;
        Ok(())
    }

    /// After a seek: moves `next` to the first event the gate keeps, reading `t` alone and
    /// recording resume points on the way.
    fn skip_to_target(&mut self) -> Result<()> {
        let target = self.gate.skip_target();
        while self.gate.skipping() && self.next < self.len {
            let start = self.next;
            let count = BLOCK.min(self.len - start);
            self.index.record(start as u64, self.gate.max_seen(), ());
            self.t.read(&self.path, start, count, &mut self.scan_t)?;
            for (k, &stored) in self.scan_t.iter().enumerate() {
                let t = stored.saturating_add(self.t_offset);
                if t >= target {
                    // Left for `read_chunk`, whose gate keeps it and ends the skip.
                    self.next = start + k;
                    return Ok(());
                }
                self.gate.note_skipped(t);
            }
            self.next = start + count;
        }
        Ok(())
    }
}

impl EventReader for Hdf5Reader {
    fn format(&self) -> Format {
        Format::Hdf5
    }

    fn sensor_size(&self) -> Option<SensorSize> {
        self.sensor
    }

    fn read_chunk(&mut self, out: &mut EventChunk) -> Result<bool> {
        out.clear();
        let path = self.path.clone();
        if self.gate.skipping() {
            self.skip_to_target()?;
        }
        while out.len() < self.chunk_events && self.next < self.len {
            self.load_block()?;
            let b = &self.block;
            let from = self.next - b.start;
            let take = (b.t.len() - from).min(self.chunk_events - out.len());
            for k in from..from + take {
                let index = (b.start + k) as u64;
                let t = b.t[k].saturating_add(self.t_offset);
                let Some(t) = self.gate.admit_time(t, 1, index, &path)? else {
                    continue;
                };
                let (x, y) = (b.x[k], b.y[k]);
                let p = u8::from(b.p[k] > 0);
                let fits = |v: i64| u32::try_from(v).ok().filter(|&v| v <= u32::from(u16::MAX));
                match (fits(x), fits(y)) {
                    (Some(x), Some(y)) => self.gate.push(out, t, x, y, p, index, &path)?,
                    _ => {
                        let clamp = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
                        self.gate.reject(clamp(x), clamp(y), index, &path)?;
                    }
                }
            }
            self.next += take;
        }
        update_stats(&mut self.stats, &self.gate, out);
        Ok(!out.is_empty())
    }

    fn seek_time(&mut self, t_us: i64) -> Result<()> {
        let (start, max_before) = match self.index.resume_point(t_us) {
            Some(p) => (usize::try_from(p.offset).unwrap_or(self.len), p.max_before),
            None => (0, i64::MIN),
        };
        self.next = start.min(self.len);
        self.gate.seek(t_us, max_before);
        Ok(())
    }

    fn stats(&self) -> &ReaderStats {
        &self.stats
    }

    fn progress(&self) -> (u64, u64) {
        (self.next as u64, self.len as u64)
    }
}
