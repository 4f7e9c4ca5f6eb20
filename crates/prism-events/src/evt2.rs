//! Prophesee EVT 2.0 `.raw` decoder: 32-bit little-endian words, type in bits 31-28.
//!
//! `CD_OFF` (0x0) / `CD_ON` (0x1) carry `ts[27:22]` (6 LSB of the time), `x[21:11]`, `y[10:0]`;
//! `EVT_TIME_HIGH` (0x8) carries time bits 33..6, so `t = (time_high << 6) + ts`. As in openeb,
//! CD words before the first TIME_HIGH are skipped, and the 34-bit time wraps are counted when a
//! TIME_HIGH falls below the previous one by at least `MAX_BASE - (10 << 6)`.
//! `EXT_TRIGGER` (0xA), `OTHERS` (0xE) and `CONTINUED` (0xF) are skipped; undefined types are
//! skipped and counted in [`ReaderStats::unknown_words`]. 1-3 trailing bytes are a
//! [`EventError::Corrupt`] error, raised after every complete word has been decoded.

use std::path::Path;

use crate::block::BlockReader;
use crate::chunk::EventChunk;
use crate::error::{EventError, Result};
use crate::header::Header;
use crate::policy::{update_stats, Gate};
use crate::reader::{EventReader, Format, ReaderOptions, ReaderStats, SensorSize};
use crate::seek_index::{SeekIndex, BYTE_STRIDE};

/// Largest time TIME_HIGH can set: `((1 << 28) - 1) << 6` µs.
const MAX_BASE: i64 = ((1 << 28) - 1) << 6;
/// One loop of the 34-bit time: 2^34 µs.
const TIME_LOOP: i64 = MAX_BASE + (1 << 6);
const LOOP_THRESHOLD: i64 = MAX_BASE - (10 << 6);

/// Decoder state between words; copied into the seek index at TIME_HIGH words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct State {
    /// `time_high << 6` plus counted loops (µs).
    time_high: i64,
    loops: i64,
    has_time: bool,
}

impl State {
    #[inline(always)]
    fn time_high(&mut self, word: u32) {
        let mut t = (i64::from(word & 0x0FFF_FFFF) << 6) + self.loops * TIME_LOOP;
        if self.time_high > t && self.time_high - t >= LOOP_THRESHOLD {
            t += TIME_LOOP;
            self.loops += 1;
        }
        self.time_high = t;
        self.has_time = true;
    }
}

/// Streams CD events out of an EVT 2.0 file.
pub struct Evt2Reader {
    src: BlockReader,
    state: State,
    gate: Gate,
    index: SeekIndex<State>,
    unknown_words: u64,
    data_offset: u64,
    sensor: Option<SensorSize>,
    chunk_events: usize,
    stats: ReaderStats,
}

impl Evt2Reader {
    pub fn open(path: &Path, options: ReaderOptions) -> Result<Self> {
        let header = Header::read(path)?;
        if let Some(enc) = header.raw_encoding() {
            if enc != "2.0" && enc != "2" {
                return Err(EventError::BadHeader {
                    path: path.to_path_buf(),
                    reason: format!("the header declares EVT {enc}, not EVT 2.0"),
                });
            }
        }
        let sensor = header.geometry(path)?.or(options.sensor_size);
        Ok(Self {
            src: BlockReader::open(path, header.data_offset)?,
            state: State::default(),
            gate: Gate::new(&options, sensor),
            index: SeekIndex::new(BYTE_STRIDE),
            unknown_words: 0,
            data_offset: header.data_offset,
            sensor,
            chunk_events: options.chunk_events.max(1),
            stats: ReaderStats::default(),
        })
    }

    /// Decodes whole words of `bytes` (at file offset `offset`) until `out` holds `limit`
    /// events; returns the bytes consumed.
    #[allow(clippy::too_many_arguments)]
    fn decode(
        state: &mut State,
        gate: &mut Gate,
        index: &mut SeekIndex<State>,
        unknown: &mut u64,
        bytes: &[u8],
        offset: u64,
        out: &mut EventChunk,
        limit: usize,
        path: &Path,
    ) -> Result<usize> {
        let mut st = *state;
        let mut used = 0;
        let mut result = Ok(());
        let whole = bytes.len() / 4 * 4;
        // After a run the fast path turned down, its words go one by one up to here.
        let mut slow_until = 0;
        while used < whole {
            if out.len() >= limit {
                break;
            }
            let w = u32::from_le_bytes([
                bytes[used],
                bytes[used + 1],
                bytes[used + 2],
                bytes[used + 3],
            ]);
            // A run of CD words under one TIME_HIGH: in one pass when no policy is needed.
            if w >> 28 <= 1 && st.has_time && used >= slow_until {
                let room = (limit - out.len()).min(FAST_RUN);
                let run = bytes[used..whole]
                    .chunks_exact(4)
                    .take(room)
                    .take_while(|b| b[3] >> 4 <= 1)
                    .count();
                if run >= MIN_FAST_RUN
                    && fast_run(&bytes[used..used + 4 * run], st.time_high, gate, out)
                {
                    used += 4 * run;
                    continue;
                }
                slow_until = used + 4 * run;
            }
            let at = offset + used as u64;
            used += 4;
            match w >> 28 {
                kind @ (0x0 | 0x1) => {
                    if !st.has_time {
                        continue;
                    }
                    let t = st.time_high + i64::from((w >> 22) & 0x3F);
                    match gate.admit_time(t, 1, at, path) {
                        Ok(Some(t)) => {
                            if let Err(e) = gate.push(
                                out,
                                t,
                                (w >> 11) & 0x7FF,
                                w & 0x7FF,
                                kind as u8,
                                at,
                                path,
                            ) {
                                result = Err(e);
                                break;
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                }
                0x8 => {
                    let before = st;
                    st.time_high(w);
                    index.record(at, gate.max_seen(), before);
                }
                0xA | 0xE | 0xF => {}
                _ => *unknown += 1,
            }
        }
        *state = st;
        result.map(|()| used)
    }
}

/// Most CD words [`fast_run`] takes at once, and the fewest worth its checking pass.
const FAST_RUN: usize = 512;
const MIN_FAST_RUN: usize = 8;

/// A run of CD words under one TIME_HIGH in one pass: when their 6-bit times never fall, the
/// first time is at or after the time gate's running maximum (no repair, no seek skipping) and
/// every pixel is inside the sensor, the events are appended column by column and `true` is
/// returned. Otherwise nothing changes and the caller decodes word by word, which applies every
/// policy: the output is the same either way.
fn fast_run(words: &[u8], time_high: i64, gate: &mut Gate, out: &mut EventChunk) -> bool {
    if gate.skipping() {
        return false;
    }
    let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let (width, height) = (gate.width, gate.height);
    let (mut ordered, mut inside, mut last) = (true, true, 0u32);
    for b in words.chunks_exact(4) {
        let w = word(b);
        let ts = (w >> 22) & 0x3F;
        ordered &= ts >= last;
        last = ts;
        inside &= ((w >> 11) & 0x7FF) < width && (w & 0x7FF) < height;
    }
    let first = time_high + i64::from((word(words) >> 22) & 0x3F);
    if !(ordered && inside) || first < gate.running_max() {
        return false;
    }
    let all = words.chunks_exact(4);
    out.t.extend(
        all.clone()
            .map(|b| time_high + i64::from((word(b) >> 22) & 0x3F)),
    );
    out.x
        .extend(all.clone().map(|b| ((word(b) >> 11) & 0x7FF) as u16));
    out.y.extend(all.clone().map(|b| (word(b) & 0x7FF) as u16));
    out.p.extend(all.map(|b| (word(b) >> 28) as u8));
    gate.set_running_max(time_high + i64::from(last));
    true
}

impl EventReader for Evt2Reader {
    fn format(&self) -> Format {
        Format::Evt2
    }

    fn sensor_size(&self) -> Option<SensorSize> {
        self.sensor
    }

    fn read_chunk(&mut self, out: &mut EventChunk) -> Result<bool> {
        out.clear();
        let limit = self.chunk_events;
        let path = self.src.path().to_path_buf();
        while out.len() < limit {
            let bytes = self.src.available();
            if bytes.len() < 4 {
                if self.src.refill()? {
                    continue;
                }
                if self.src.available().is_empty() {
                    break;
                }
                if out.is_empty() {
                    return Err(EventError::Corrupt {
                        path,
                        offset: self.src.offset(),
                        reason: format!(
                            "truncated 32-bit word at the end of the file ({} of 4 bytes)",
                            self.src.available().len()
                        ),
                    });
                }
                break; // deliver what we have; the next call reports the truncation
            }
            let offset = self.src.offset();
            let used = Self::decode(
                &mut self.state,
                &mut self.gate,
                &mut self.index,
                &mut self.unknown_words,
                bytes,
                offset,
                out,
                limit,
                &path,
            )?;
            self.src.consume(used);
        }
        update_stats(&mut self.stats, &self.gate, out);
        self.stats.unknown_words = self.unknown_words;
        Ok(!out.is_empty())
    }

    fn seek_time(&mut self, t_us: i64) -> Result<()> {
        let (offset, max_before, state) = match self.index.resume_point(t_us) {
            Some(p) => (p.offset, p.max_before, p.state),
            None => (self.data_offset, i64::MIN, State::default()),
        };
        self.src.seek(offset)?;
        self.state = state;
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
