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
use crate::chunk::{fill_by_index, EventChunk, Slots};
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
    decoder: Decoder,
    data_offset: u64,
    sensor: Option<SensorSize>,
    chunk_events: usize,
    stats: ReaderStats,
}

/// Everything but the byte source, so the block can be borrowed while the decoder mutates.
struct Decoder {
    state: State,
    gate: Gate,
    index: SeekIndex<State>,
    unknown_words: u64,
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
            decoder: Decoder {
                state: State::default(),
                gate: Gate::new(&options, sensor),
                index: SeekIndex::new(BYTE_STRIDE),
                unknown_words: 0,
            },
            data_offset: header.data_offset,
            sensor,
            chunk_events: options.chunk_events.max(1),
            stats: ReaderStats::default(),
        })
    }

    /// Decodes until `n == limit` or the end of the file.
    fn fill(&mut self, out: &mut EventChunk, limit: usize, n: &mut usize) -> Result<()> {
        let path = self.src.path().to_path_buf();
        let mut slots = Slots::of(out);
        while *n < limit {
            let bytes = self.src.available();
            if bytes.len() < 4 {
                if self.src.refill()? {
                    continue;
                }
                let left = self.src.available().len();
                if left == 0 || *n > 0 {
                    // End of file, or a truncated word reported by the next call.
                    break;
                }
                return Err(EventError::Corrupt {
                    path,
                    offset: self.src.offset(),
                    reason: format!(
                        "truncated 32-bit word at the end of the file ({left} of 4 bytes)"
                    ),
                });
            }
            let offset = self.src.offset();
            let used = self
                .decoder
                .decode(bytes, offset, &mut slots, n, limit, &path)?;
            self.src.consume(used);
        }
        Ok(())
    }
}

impl Decoder {
    /// Decodes whole words of `bytes` (at file offset `offset`) into `slots` until
    /// `n == limit`; returns the bytes consumed.
    ///
    /// A run of CD words under one TIME_HIGH goes through [`fast_run`]; a run it turns down,
    /// and every other word, goes through [`Decoder::one_word`], which applies every rule.
    fn decode(
        &mut self,
        bytes: &[u8],
        offset: u64,
        slots: &mut Slots,
        n: &mut usize,
        limit: usize,
        path: &Path,
    ) -> Result<usize> {
        let words = bytes.len() / 4;
        let word_at = |k: usize| {
            u32::from_le_bytes([
                bytes[4 * k],
                bytes[4 * k + 1],
                bytes[4 * k + 2],
                bytes[4 * k + 3],
            ])
        };
        let at = |k: usize| offset + 4 * k as u64;
        let mut k = 0;
        while k < words && *n < limit {
            let w = word_at(k);
            if is_cd(w) && self.state.has_time && !self.gate.skipping() {
                let room = (limit - *n).min(FAST_RUN);
                let run = cd_words(&bytes[4 * k..], room);
                let taken = run >= MIN_FAST_RUN
                    && fast_run(
                        &bytes[4 * k..4 * (k + run)],
                        self.state.time_high,
                        &mut self.gate,
                        slots,
                        *n,
                    );
                if taken {
                    *n += run;
                } else {
                    for j in k..k + run {
                        self.one_word(word_at(j), at(j), slots, n, path)?;
                    }
                }
                k += run;
                continue;
            }
            self.one_word(w, at(k), slots, n, path)?;
            k += 1;
        }
        Ok(4 * k)
    }

    /// One word under every rule: the time-order and bounds policy for a CD event, the seek
    /// index at a TIME_HIGH, undefined words counted.
    fn one_word(
        &mut self,
        w: u32,
        at: u64,
        slots: &mut Slots,
        n: &mut usize,
        path: &Path,
    ) -> Result<()> {
        match w >> 28 {
            kind @ (0x0 | 0x1) => {
                if !self.state.has_time {
                    return Ok(());
                }
                let t = self.state.time_high + i64::from((w >> 22) & 0x3F);
                if let Some(t) = self.gate.admit_time(t, 1, at, path)? {
                    let (x, y) = ((w >> 11) & 0x7FF, w & 0x7FF);
                    if self.gate.in_bounds(x, y) {
                        slots.put(*n, t, x as u16, y as u16, kind as u8);
                        *n += 1;
                    } else {
                        self.gate.reject(x, y, at, path)?;
                    }
                }
            }
            0x8 => {
                let before = self.state;
                self.state.time_high(w);
                self.index.record(at, self.gate.max_seen(), before);
            }
            0xA | 0xE | 0xF => {}
            _ => self.unknown_words += 1,
        }
        Ok(())
    }
}

/// CD_OFF or CD_ON: an event word.
#[inline(always)]
fn is_cd(w: u32) -> bool {
    w >> 28 <= 1
}

/// Most CD words [`fast_run`] takes at once, and the fewest worth its checking pass.
const FAST_RUN: usize = 512;
const MIN_FAST_RUN: usize = 8;

/// How many of the first `limit` words of `bytes` are CD words before the first other word.
/// Blocks of 16 words are tested at once (vectorized).
fn cd_words(bytes: &[u8], limit: usize) -> usize {
    const BLOCK: usize = 16;
    let bytes = &bytes[..4 * limit.min(bytes.len() / 4)];
    let mut k = 0;
    for block in bytes.chunks_exact(4 * BLOCK) {
        // The type is the top nibble of each word's last byte.
        if block
            .chunks_exact(4)
            .fold(false, |any, w| any | (w[3] >> 4 > 1))
        {
            break;
        }
        k += BLOCK;
    }
    let rest = &bytes[4 * k..];
    k + rest
        .chunks_exact(4)
        .position(|w| w[3] >> 4 > 1)
        .unwrap_or(rest.len() / 4)
}

/// A run of CD words under one TIME_HIGH, written into `slots` from slot `at` on column by
/// column. When their 6-bit times never fall, the first time is at or after the time gate's
/// running maximum (no repair, no seek skipping) and every pixel is inside the sensor, `true`
/// is returned. Otherwise the caller decodes the words one by one over the same slots, which
/// applies every policy: the output is the same either way.
fn fast_run(bytes: &[u8], time_high: i64, gate: &mut Gate, slots: &mut Slots, at: usize) -> bool {
    // The words as `u32`s first: the column passes then vectorize on whole lanes.
    let mut buffer = [0u32; FAST_RUN];
    let words = &mut buffer[..bytes.len() / 4];
    for (w, b) in words.iter_mut().zip(bytes.chunks_exact(4)) {
        *w = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    let words = &*words;
    let end = at + words.len();
    let (t_out, x_out) = (&mut slots.t[at..end], &mut slots.x[at..end]);
    let (y_out, p_out) = (&mut slots.y[at..end], &mut slots.p[at..end]);
    let ts = |w: u32| ((w >> 22) & 0x3F) as i32;
    for (t, &w) in t_out.iter_mut().zip(words) {
        *t = time_high + i64::from(ts(w));
    }
    for (x, &w) in x_out.iter_mut().zip(words) {
        *x = ((w >> 11) & 0x7FF) as u16;
    }
    for (y, &w) in y_out.iter_mut().zip(words) {
        *y = (w & 0x7FF) as u16;
    }
    for (p, &w) in p_out.iter_mut().zip(words) {
        *p = (w >> 28) as u8;
    }
    let ordered = words
        .iter()
        .zip(words.iter().skip(1))
        .fold(true, |ok, (&a, &b)| ok & (ts(a) <= ts(b)));
    // Coordinates are below 2^11, so they compare as `i16` (SSE2 has a signed 16-bit max).
    let max_of = |v: &[u16]| v.iter().fold(0i16, |m, &c| m.max(c as i16)) as u32;
    let inside = max_of(x_out) < gate.width && max_of(y_out) < gate.height;
    let (Some(&first), Some(&last)) = (t_out.first(), t_out.last()) else {
        return false;
    };
    if !(ordered && inside) || first < gate.running_max() {
        return false;
    }
    gate.set_running_max(last);
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
        let limit = self.chunk_events;
        fill_by_index(out, limit, |out, n| self.fill(out, limit, n))?;
        update_stats(&mut self.stats, &self.decoder.gate, out);
        self.stats.unknown_words = self.decoder.unknown_words;
        Ok(!out.is_empty())
    }

    fn seek_time(&mut self, t_us: i64) -> Result<()> {
        let (offset, max_before, state) = match self.decoder.index.resume_point(t_us) {
            Some(p) => (p.offset, p.max_before, p.state),
            None => (self.data_offset, i64::MIN, State::default()),
        };
        self.src.seek(offset)?;
        self.decoder.state = state;
        self.decoder.gate.seek(t_us, max_before);
        Ok(())
    }

    fn stats(&self) -> &ReaderStats {
        &self.stats
    }

    fn progress(&self) -> (u64, u64) {
        self.src.progress()
    }
}
