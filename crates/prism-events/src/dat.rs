//! Prophesee `.dat` decoder (Gen1 / 1Mpx `*_td.dat`).
//!
//! Layout: `% key value` header lines, then one event-type byte and one event-size byte (must be
//! 8), then 8-byte little-endian records: `u32 t` (µs) and a `u32` word with `x` = bits 0-13,
//! `y` = bits 14-27, `p` = bit 28. A file with no header lines is bare records, as RVT's
//! `parse_header` assumes; it is read only when the caller names the format and gives the sensor
//! size (the sniffer refuses it: any bytes parse as records).
//!
//! Policies: the u32 time wraps every 2^32 µs; a timestamp that falls by more than 2^31 from
//! the previous record is a wrap and 2^32 is added. The type byte 0x0E (external triggers) is
//! refused, other type bytes are accepted (RVT ignores it). A truncated trailing record is a
//! [`EventError::Corrupt`] error naming its offset, raised after every complete record has been
//! returned. Seeking resumes at the last point of a seek index built while reading whose running
//! maximum time is below the target, then skips forward; it is exact also when time goes
//! backwards (see `seek_index.rs`).

use std::path::Path;

use crate::block::BlockReader;
use crate::chunk::EventChunk;
use crate::error::{EventError, Result};
use crate::header::Header;
use crate::policy::{update_stats, Gate};
use crate::reader::{EventReader, Format, ReaderOptions, ReaderStats, SensorSize};
use crate::seek_index::{SeekIndex, BYTE_STRIDE};

const RECORD: usize = 8;
/// Event type byte of an external-trigger file: not CD events.
const TYPE_EXT_TRIGGER: u8 = 0x0E;
const HALF_WRAP: u32 = 1 << 31;
const WRAP: i64 = 1 << 32;

/// Time unwrapping state.
#[derive(Debug, Clone, Copy, Default)]
struct Clock {
    /// Added to each raw u32 timestamp: `wraps * 2^32`.
    offset: i64,
    prev: Option<u32>,
}

impl Clock {
    #[inline(always)]
    fn unwrap(&mut self, raw: u32) -> i64 {
        if let Some(prev) = self.prev {
            if raw < prev && prev - raw > HALF_WRAP {
                self.offset += WRAP;
            }
        }
        self.prev = Some(raw);
        self.offset + i64::from(raw)
    }
}

/// Streams CD events out of a `.dat` file.
pub struct DatReader {
    src: BlockReader,
    clock: Clock,
    gate: Gate,
    data_offset: u64,
    records: u64,
    /// Resume points, recorded as the file is read (also while a seek skips ahead).
    index: SeekIndex<Clock>,
    sensor: Option<SensorSize>,
    chunk_events: usize,
    stats: ReaderStats,
}

impl DatReader {
    pub fn open(path: &Path, options: ReaderOptions) -> Result<Self> {
        let header = Header::read(path)?;
        let mut src = BlockReader::open(path, header.data_offset)?;
        let file_len = src.file_len()?;
        let bad = |reason: String| EventError::BadHeader {
            path: path.to_path_buf(),
            reason,
        };
        let data_offset = if header.lines.is_empty() {
            if options.sensor_size.is_none() {
                return Err(bad(
                    "no `%` header, so no sensor size: bare records are read only with the sensor \
                     size given (`--sensor WxH`)"
                        .into(),
                ));
            }
            0
        } else {
            if file_len < header.data_offset + 2 {
                return Err(bad(format!(
                    "the header ends at byte {} without the event type and size bytes",
                    header.data_offset
                )));
            }
            let mut type_size = [0u8; 2];
            src.read_at(header.data_offset, &mut type_size)?;
            let [ev_type, ev_size] = type_size;
            if usize::from(ev_size) != RECORD {
                return Err(bad(format!(
                    "event size byte at offset {} is {ev_size}, expected 8",
                    header.data_offset + 1
                )));
            }
            if ev_type == TYPE_EXT_TRIGGER {
                return Err(bad(
                    "event type 0x0E: external triggers, not CD events".into()
                ));
            }
            header.data_offset + 2
        };
        src.seek(data_offset)?;
        let sensor = header.geometry(path)?.or(options.sensor_size);
        Ok(Self {
            src,
            clock: Clock::default(),
            gate: Gate::new(&options, sensor),
            data_offset,
            records: (file_len.saturating_sub(data_offset)) / RECORD as u64,
            index: SeekIndex::new(BYTE_STRIDE),
            sensor,
            chunk_events: options.chunk_events.max(1),
            stats: ReaderStats::default(),
        })
    }

    /// Number of complete records in the file.
    pub fn record_count(&self) -> u64 {
        self.records
    }

    /// Decodes whole records of `bytes` (at file offset `offset`) until `out` holds `limit`
    /// events; returns the bytes consumed. Blocks of records go through [`fast_block`] when
    /// they can, record by record otherwise.
    fn decode(
        &mut self,
        bytes_at: u64,
        limit: usize,
        out: &mut EventChunk,
        path: &Path,
    ) -> Result<usize> {
        let bytes = self.src.available();
        let whole = bytes.len() / RECORD * RECORD;
        let mut clock = self.clock;
        let mut used = 0;
        while used < whole && out.len() < limit {
            let n = FAST_BLOCK
                .min(limit - out.len())
                .min((whole - used) / RECORD);
            let block = &bytes[used..used + n * RECORD];
            if fast_block(block, &mut clock, &mut self.gate, out) {
                used += block.len();
                continue;
            }
            for rec in block.chunks_exact(RECORD) {
                let raw = u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]);
                let w = u32::from_le_bytes([rec[4], rec[5], rec[6], rec[7]]);
                let at = bytes_at + used as u64;
                used += RECORD;
                let t = clock.unwrap(raw);
                let admitted = self.gate.admit_time(t, 1, at, path).and_then(|t| match t {
                    Some(t) => {
                        let (x, y, p) = (w & 0x3FFF, (w >> 14) & 0x3FFF, ((w >> 28) & 1) as u8);
                        self.gate.push(out, t, x, y, p, at, path)
                    }
                    None => Ok(()),
                });
                if let Err(e) = admitted {
                    self.clock = clock;
                    return Err(e);
                }
            }
        }
        self.clock = clock;
        Ok(used)
    }
}

/// Records the fast path takes at once: small enough to stay in L1, large enough that the
/// per-block checks cost nothing per event.
const FAST_BLOCK: usize = 512;

/// The common case in one pass: when every record of `block` keeps time non-decreasing from
/// the previous record (so no wrap and no repair), starts at or after the time gate's running
/// maximum (no seek skipping), and lies inside the sensor, the events are appended column by
/// column and `true` is returned. Otherwise nothing changes and the caller decodes the block
/// record by record, which applies every policy: the output is the same either way.
fn fast_block(block: &[u8], clock: &mut Clock, gate: &mut Gate, out: &mut EventChunk) -> bool {
    let Some(prev) = clock.prev else {
        return false;
    };
    if block.is_empty() || gate.skipping() {
        return false;
    }
    // The records as `u64`s first (time in the low half, the event word in the high half):
    // the passes below then vectorize on whole lanes.
    let mut buffer = [0u64; FAST_BLOCK];
    let records = &mut buffer[..block.len() / RECORD];
    for (r, b) in records.iter_mut().zip(block.chunks_exact(RECORD)) {
        *r = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    }
    let records = &*records;
    let raw = |r: u64| r as u32;
    let word = |r: u64| (r >> 32) as u32;
    let Some(&last_record) = records.last() else {
        return false;
    };
    let last = raw(last_record);
    let ordered = records
        .iter()
        .zip(records.iter().skip(1))
        .fold(raw(records[0]) >= prev, |ok, (&a, &b)| {
            ok & (raw(a) <= raw(b))
        });
    let (width, height) = (gate.width, gate.height);
    let inside = records.iter().fold(true, |ok, &r| {
        let w = word(r);
        ok & ((w & 0x3FFF) < width) & (((w >> 14) & 0x3FFF) < height)
    });
    let first = clock.offset + i64::from(raw(records[0]));
    if !(ordered && inside) || first < gate.running_max() {
        return false;
    }
    let offset = clock.offset;
    out.t
        .extend(records.iter().map(|&r| offset + i64::from(raw(r))));
    out.x
        .extend(records.iter().map(|&r| (word(r) & 0x3FFF) as u16));
    out.y
        .extend(records.iter().map(|&r| ((word(r) >> 14) & 0x3FFF) as u16));
    out.p
        .extend(records.iter().map(|&r| ((word(r) >> 28) & 1) as u8));
    clock.prev = Some(last);
    gate.set_running_max(offset + i64::from(last));
    true
}

impl EventReader for DatReader {
    fn format(&self) -> Format {
        Format::Dat
    }

    fn sensor_size(&self) -> Option<SensorSize> {
        self.sensor
    }

    fn read_chunk(&mut self, out: &mut EventChunk) -> Result<bool> {
        out.clear();
        let limit = self.chunk_events;
        let path = self.src.path().to_path_buf();
        while out.len() < limit {
            let available = self.src.available().len();
            if available < RECORD {
                if self.src.refill()? {
                    continue;
                }
                let left = self.src.available().len();
                if left == 0 {
                    break;
                }
                if out.is_empty() {
                    return Err(EventError::Corrupt {
                        path,
                        offset: self.src.offset(),
                        reason: format!(
                            "truncated record at the end of the file ({left} of 8 bytes)"
                        ),
                    });
                }
                break; // deliver what we have; the next call reports the truncation
            }
            let offset = self.src.offset();
            self.index.record(offset, self.gate.max_seen(), self.clock);
            let used = self.decode(offset, limit, out, &path)?;
            self.src.consume(used);
        }
        update_stats(&mut self.stats, &self.gate, out);
        Ok(!out.is_empty())
    }

    fn seek_time(&mut self, t_us: i64) -> Result<()> {
        let (offset, max_before, clock) = match self.index.resume_point(t_us) {
            Some(p) => (p.offset, p.max_before, p.state),
            None => (self.data_offset, i64::MIN, Clock::default()),
        };
        self.src.seek(offset)?;
        self.clock = clock;
        self.gate.seek(t_us, max_before);
        Ok(())
    }

    fn stats(&self) -> &ReaderStats {
        &self.stats
    }

    fn progress(&self) -> (u64, u64) {
        self.src.progress()
    }
}
