//! Prophesee EVT 3.0 `.raw` decoder: 16-bit little-endian stateful words.
//!
//! Follows openeb 5.1.1's reference decoder: words before the first `EVT_TIME_HIGH` are skipped;
//! the 24-bit time base wraps every 2^24 µs and loops are counted when a new `TIME_HIGH` falls
//! below the previous one by at least `MAX_BASE - (10 << 12)`. `CONTINUED_4/12`, `EXT_TRIGGER`,
//! `IMU` and `OTHERS` words are skipped; word types the format does not define (0x1, 0x9, 0xB,
//! 0xC) are skipped and counted in [`ReaderStats::unknown_words`], as openeb ignores them.
//! A trailing odd byte is a [`EventError::Corrupt`] error, raised after every complete word has
//! been decoded.
//!
//! Speed: words are decoded straight from a reused 1 MiB block; vector words expand their
//! validity mask with `trailing_zeros`. A vector word that does not fit in the caller's chunk
//! is split: the rest of its mask waits in `pending` for the next chunk.

use std::path::Path;

use crate::block::BlockReader;
use crate::chunk::EventChunk;
use crate::error::{EventError, Result};
use crate::header::Header;
use crate::policy::{update_stats, Gate};
use crate::reader::{EventReader, Format, ReaderOptions, ReaderStats, SensorSize};
use crate::seek_index::{SeekIndex, BYTE_STRIDE};

/// EVT 3.0 word types, the top 4 bits of each 16-bit word (Prophesee's EVT 3.0 documentation).
mod word {
    /// `EVT_ADDR_Y`: y (bits 0-10) of the events that follow.
    pub const ADDR_Y: u16 = 0x0;
    /// `EVT_ADDR_X`: one event at x (bits 0-10), polarity bit 11.
    pub const ADDR_X: u16 = 0x2;
    /// `VECT_BASE_X`: x of the next vector word, polarity bit 11.
    pub const VECT_BASE_X: u16 = 0x3;
    /// `VECT_12`: events at the set bits of a 12-pixel mask.
    pub const VECT_12: u16 = 0x4;
    /// `VECT_8`: events at the set bits of an 8-pixel mask.
    pub const VECT_8: u16 = 0x5;
    /// `EVT_TIME_LOW`: the low 12 bits of the time.
    pub const TIME_LOW: u16 = 0x6;
    /// `CONTINUED_4`: payload of an `OTHERS` word (skipped).
    pub const CONTINUED_4: u16 = 0x7;
    /// `EVT_TIME_HIGH`: the high 12 bits of the time base.
    pub const TIME_HIGH: u16 = 0x8;
    /// `EXT_TRIGGER`.
    pub const EXT_TRIGGER: u16 = 0xA;
    /// `OTHERS`: IMU and the like (skipped).
    pub const OTHERS: u16 = 0xE;
    /// `CONTINUED_12`: payload of an `OTHERS` word (skipped).
    pub const CONTINUED_12: u16 = 0xF;

    /// The type of `w`.
    #[inline(always)]
    pub const fn of(w: u16) -> u16 {
        w >> 12
    }

    /// Types the format does not define (0x1, 0x9, 0xB, 0xC): skipped and counted, as openeb does.
    #[inline]
    pub const fn is_undefined(w: u16) -> bool {
        matches!(of(w), 0x1 | 0x9 | 0xB | 0xC)
    }
}

/// Largest time base a TIME_HIGH word can set: `((1 << 12) - 1) << 12` µs.
const MAX_BASE: i64 = ((1 << 12) - 1) << 12;
/// Duration of one time-base loop: 2^24 µs.
const TIME_LOOP: i64 = MAX_BASE + (1 << 12);
/// A TIME_HIGH this far below the previous one is a wrap, not noise.
const LOOP_THRESHOLD: i64 = MAX_BASE - (10 << 12);

/// Decoder state between two words; a copy of it at a TIME_HIGH word lets a seek resume there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct State {
    /// Time base including counted loops (µs).
    time_base: i64,
    /// `loops * 2^24`: what the counted loops add to a TIME_HIGH value.
    loop_base: i64,
    /// Timestamp of the next CD event (µs).
    t: i64,
    y: u16,
    base_x: u16,
    pol: u8,
    /// A TIME_HIGH has been seen: events may be emitted.
    has_time: bool,
}

impl State {
    /// Applies a TIME_HIGH word, counting a loop when the base falls far enough.
    #[inline(always)]
    fn time_high(&mut self, word: u16) {
        let mut base = (i64::from(word & 0xFFF) << 12) + self.loop_base;
        let wrapped = (self.time_base > base) & (self.time_base - base >= LOOP_THRESHOLD);
        if wrapped {
            base += TIME_LOOP;
            self.loop_base += TIME_LOOP;
        }
        self.time_base = base;
        self.t = base;
        self.has_time = true;
    }

    /// Applies any word to the state without emitting; returns the validity mask and width of
    /// the events it carries (`(0, 0)` for words that carry none).
    #[inline(always)]
    fn apply(&mut self, w: u16) -> (u32, u16) {
        match word::of(w) {
            word::ADDR_Y => self.y = w & 0x7FF,
            word::ADDR_X => return (1, 0),
            word::VECT_BASE_X => {
                self.base_x = w & 0x7FF;
                self.pol = ((w >> 11) & 1) as u8;
            }
            word::VECT_12 => return (u32::from(w & 0xFFF), 12),
            word::VECT_8 => return (u32::from(w & 0xFF), 8),
            word::TIME_LOW => self.t = self.time_base + i64::from(w & 0xFFF),
            word::TIME_HIGH => self.time_high(w),
            _ => {}
        }
        (0, 0)
    }
}

/// The rest of a vector word that did not fit in the previous chunk.
#[derive(Debug, Clone, Copy, Default)]
struct Pending {
    mask: u32,
    base_x: u16,
    y: u16,
    pol: u8,
    t: i64,
    offset: u64,
}

/// The caller's chunk as four equally long slices, written by index (no per-push checks).
struct Slots<'a> {
    t: &'a mut [i64],
    x: &'a mut [u16],
    y: &'a mut [u16],
    p: &'a mut [u8],
}

impl Slots<'_> {
    #[inline(always)]
    fn put(&mut self, n: usize, t: i64, x: u16, y: u16, p: u8) {
        self.t[n] = t;
        self.x[n] = x;
        self.y[n] = y;
        self.p[n] = p;
    }
}

/// Streams CD events out of an EVT 3.0 file.
pub struct Evt3Reader {
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
    pending: Pending,
    gate: Gate,
    index: SeekIndex<State>,
    unknown_words: u64,
}

impl Evt3Reader {
    pub fn open(path: &Path, options: ReaderOptions) -> Result<Self> {
        let header = Header::read(path)?;
        if let Some(enc) = header.raw_encoding() {
            if !enc.starts_with('3') {
                return Err(EventError::BadHeader {
                    path: path.to_path_buf(),
                    reason: format!("the header declares EVT {enc}, not EVT 3.0"),
                });
            }
        }
        let sensor = header.geometry(path)?.or(options.sensor_size);
        let src = BlockReader::open(path, header.data_offset)?;
        Ok(Self {
            src,
            decoder: Decoder {
                state: State::default(),
                pending: Pending::default(),
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
}

impl EventReader for Evt3Reader {
    fn format(&self) -> Format {
        Format::Evt3
    }

    fn sensor_size(&self) -> Option<SensorSize> {
        self.sensor
    }

    fn read_chunk(&mut self, out: &mut EventChunk) -> Result<bool> {
        let limit = self.chunk_events;
        // Sized to `limit` up front and cut to the events written at the end; a chunk reused
        // from a previous full read is already that long, so this costs nothing then.
        out.t.resize(limit, 0);
        out.x.resize(limit, 0);
        out.y.resize(limit, 0);
        out.p.resize(limit, 0);
        let mut n = 0;
        let result = self.fill(out, limit, &mut n);
        out.truncate(n);
        result?;
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
        self.decoder.pending = Pending::default();
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

impl Evt3Reader {
    /// Decodes until `n == limit` or the end of the file.
    fn fill(&mut self, out: &mut EventChunk, limit: usize, n: &mut usize) -> Result<()> {
        let path = self.src.path().to_path_buf();
        let mut slots = Slots {
            t: &mut out.t,
            x: &mut out.x,
            y: &mut out.y,
            p: &mut out.p,
        };
        self.decoder.drain_pending(&mut slots, n, limit, &path)?;
        while *n < limit {
            let bytes = self.src.available();
            if bytes.len() < 2 {
                if self.src.refill()? {
                    continue;
                }
                if self.src.available().is_empty() || *n > 0 {
                    // End of file, or a truncated word reported by the next call.
                    break;
                }
                return Err(EventError::Corrupt {
                    path,
                    offset: self.src.offset(),
                    reason: "truncated 16-bit word at the end of the file".into(),
                });
            }
            let offset = self.src.offset();
            let used = if self.decoder.gate.skipping() || !self.decoder.state.has_time {
                self.decoder.skip(bytes, offset)
            } else {
                self.decoder
                    .decode(bytes, offset, &mut slots, n, limit, &path)?
            };
            self.src.consume(used);
        }
        Ok(())
    }
}

impl Decoder {
    /// Emits what is left of a split vector word.
    fn drain_pending(
        &mut self,
        slots: &mut Slots,
        n: &mut usize,
        limit: usize,
        path: &Path,
    ) -> Result<()> {
        let p = self.pending;
        let mut mask = p.mask;
        while mask != 0 && *n < limit {
            let x = u32::from(p.base_x) + mask.trailing_zeros();
            self.emit_checked(slots, n, p.t, x, p.y, p.pol, p.offset, path)?;
            mask &= mask - 1;
        }
        self.pending.mask = mask;
        Ok(())
    }

    /// One event through the bounds policy (time was already admitted).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn emit_checked(
        &mut self,
        slots: &mut Slots,
        n: &mut usize,
        t: i64,
        x: u32,
        y: u16,
        p: u8,
        at: u64,
        path: &Path,
    ) -> Result<()> {
        if self.gate.in_bounds(x, u32::from(y)) {
            slots.put(*n, t, x as u16, y, p);
            *n += 1;
            Ok(())
        } else {
            self.gate.reject(x, u32::from(y), at, path)
        }
    }

    /// Applies words without emitting: before the first TIME_HIGH (as openeb does), and after
    /// a seek until the first word with events at or after the target, which is left unread.
    /// Returns the bytes consumed.
    fn skip(&mut self, bytes: &[u8], offset: u64) -> usize {
        let target = self.gate.skip_target();
        let mut used = 0;
        for word in bytes.chunks_exact(2) {
            let w = u16::from_le_bytes([word[0], word[1]]);
            if !self.state.has_time {
                if word::of(w) != word::TIME_HIGH {
                    used += 2;
                    continue;
                }
            } else if !self.gate.skipping() {
                break;
            }
            let before = self.state;
            let (mask, _) = self.state.apply(w);
            if mask != 0 {
                if self.state.t >= target {
                    self.state = before;
                    self.gate.end_skip();
                    break;
                }
                self.gate.note_skipped(self.state.t);
            }
            match word::of(w) {
                word::VECT_12 => self.state.base_x = self.state.base_x.wrapping_add(12),
                word::VECT_8 => self.state.base_x = self.state.base_x.wrapping_add(8),
                word::TIME_HIGH => {
                    self.index
                        .record(offset + used as u64, self.gate.max_seen(), before)
                }
                _ if word::is_undefined(w) => self.unknown_words += 1,
                _ => {}
            }
            used += 2;
        }
        used
    }

    /// The hot loop: decodes whole words of `bytes` (at file offset `offset`) into `slots`
    /// until `n == limit`. Returns the bytes consumed.
    ///
    /// Common words update the state with conditional moves and write the event slot
    /// unconditionally; only an ADDR_X word advances `n`. Anything unusual (backwards time,
    /// out-of-sensor pixel, vector and rare words) leaves the fast path.
    fn decode(
        &mut self,
        bytes: &[u8],
        offset: u64,
        slots: &mut Slots,
        n: &mut usize,
        limit: usize,
        path: &Path,
    ) -> Result<usize> {
        let (width, height) = (self.gate.width, self.gate.height);
        let mut st = self.state;
        let mut max_t = self.gate.running_max();
        let mut next_index = self.index.next_offset();
        let mut k = 0usize;
        let mut i = *n;
        let words = bytes.len() / 2;
        let result = loop {
            if k >= words || i >= limit {
                break Ok(());
            }
            let w = u16::from_le_bytes([bytes[2 * k], bytes[2 * k + 1]]);
            let at = offset + 2 * k as u64;
            k += 1;
            match word::of(w) {
                word::ADDR_Y => st.y = w & 0x7FF,
                word::ADDR_X => {
                    let x = w & 0x7FF;
                    let pol = ((w >> 11) & 1) as u8;
                    let unusual =
                        (st.t < max_t) | (u32::from(x) >= width) | (u32::from(st.y) >= height);
                    if !unusual {
                        slots.put(i, st.t, x, st.y, pol);
                        i += 1;
                        max_t = st.t;
                        continue;
                    }
                    self.gate.set_running_max(max_t);
                    let step = match self.gate.admit_time(st.t, 1, at, path) {
                        Ok(Some(t)) => {
                            *n = i;
                            self.emit_checked(slots, n, t, u32::from(x), st.y, pol, at, path)
                        }
                        Ok(None) => Ok(()),
                        Err(e) => Err(e),
                    };
                    if let Err(e) = step {
                        break Err(e);
                    }
                    max_t = self.gate.running_max();
                    i = *n;
                }
                word::TIME_LOW => st.t = st.time_base + i64::from(w & 0xFFF),
                word::TIME_HIGH => {
                    let before = st;
                    st.time_high(w);
                    if at >= next_index {
                        self.index.record(at, max_t, before);
                        next_index = self.index.next_offset();
                    }
                }
                word::CONTINUED_4 | word::OTHERS | word::CONTINUED_12 | word::EXT_TRIGGER => {}
                _ => {
                    self.state = st;
                    self.gate.set_running_max(max_t);
                    *n = i;
                    if let Err(e) = self.rare_word(w, at, slots, n, limit, path) {
                        break Err(e);
                    }
                    st = self.state;
                    max_t = self.gate.running_max();
                    i = *n;
                }
            }
        };
        self.state = st;
        self.gate.set_running_max(max_t);
        *n = i;
        result.map(|()| 2 * k)
    }

    /// Vector words, VECT_BASE_X, and words the hot loop does not expect.
    #[cold]
    #[inline(never)]
    fn rare_word(
        &mut self,
        w: u16,
        at: u64,
        slots: &mut Slots,
        n: &mut usize,
        limit: usize,
        path: &Path,
    ) -> Result<()> {
        let (mask, width) = self.state.apply(w);
        if width != 0 {
            let st = self.state;
            self.state.base_x = st.base_x.wrapping_add(width);
            return self.vector(mask, &st, at, slots, n, limit, path);
        }
        if word::is_undefined(w) {
            self.unknown_words += 1;
        }
        Ok(())
    }

    /// Emits the events of a VECT_12 / VECT_8 word: bit `k` of `mask` is pixel `base_x + k`.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn vector(
        &mut self,
        mut mask: u32,
        st: &State,
        at: u64,
        slots: &mut Slots,
        n: &mut usize,
        limit: usize,
        path: &Path,
    ) -> Result<()> {
        if mask == 0 {
            return Ok(());
        }
        let count = mask.count_ones();
        let Some(t) = self.gate.admit_time(st.t, u64::from(count), at, path)? else {
            return Ok(());
        };
        let (base, y, p) = (st.base_x, st.y, st.pol);
        let fits_sensor =
            u32::from(base) + 12 <= self.gate.width && u32::from(y) < self.gate.height;
        if fits_sensor && *n + count as usize <= limit {
            while mask != 0 {
                slots.put(*n, t, base.wrapping_add(mask.trailing_zeros() as u16), y, p);
                *n += 1;
                mask &= mask - 1;
            }
            return Ok(());
        }
        // Per-event bounds checks, and a split when the chunk fills up.
        while mask != 0 && *n < limit {
            let x = u32::from(base) + mask.trailing_zeros();
            self.emit_checked(slots, n, t, x, y, p, at, path)?;
            mask &= mask - 1;
        }
        self.pending = Pending {
            mask,
            base_x: base,
            y,
            pol: p,
            t,
            offset: at,
        };
        Ok(())
    }
}
