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
//! Speed: words are decoded straight from a reused 1 MiB block. Recordings interleave ADDR_Y,
//! ADDR_X, TIME_LOW and TIME_HIGH words irregularly (about four words per event on Prophesee's
//! own samples), so a `match` per word mispredicts every few words. The fast path instead takes
//! runs of up to `RUN_WORDS` words in three branch-free passes: `fast_words` finds where the
//! run must stop (vectorized), `pack_events` follows the state through table lookups and
//! packs each event into a `u64`, and `unpack_events` writes the events and checks the
//! time-order and bounds rules over the whole run. A run that breaks a rule is decoded again
//! word by word under every rule, so the output and the errors are those of the word-by-word
//! decoder (`tests/decoders_synthetic.rs` checks this against a transcription of the rules).
//! Vector words expand their validity mask with `trailing_zeros`; one that does not fit in
//! the caller's chunk is split: the rest of its mask waits in `pending` for the next chunk.

use std::path::Path;

use crate::block::BlockReader;
use crate::chunk::{fill_by_index, EventChunk, Slots};
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
    #[allow(dead_code, reason = "skipped: named for the reader and the tests")]
    pub const CONTINUED_4: u16 = 0x7;
    /// `EVT_TIME_HIGH`: the high 12 bits of the time base.
    pub const TIME_HIGH: u16 = 0x8;
    /// `EXT_TRIGGER`.
    #[allow(dead_code, reason = "skipped: named for the reader and the tests")]
    pub const EXT_TRIGGER: u16 = 0xA;
    /// `OTHERS`: IMU and the like (skipped).
    #[allow(dead_code, reason = "skipped: named for the reader and the tests")]
    pub const OTHERS: u16 = 0xE;
    /// `CONTINUED_12`: payload of an `OTHERS` word (skipped).
    #[allow(dead_code, reason = "skipped: named for the reader and the tests")]
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
    /// Scratch for [`Decoder::fast_run`]'s packed events.
    records: Box<[u64; RUN_WORDS]>,
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
                records: Box::new([0; RUN_WORDS]),
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
        let mut slots = Slots::of(out);
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

    /// Decodes whole words of `bytes` (at file offset `offset`) into `slots` until
    /// `n == limit`. Returns the bytes consumed.
    ///
    /// Runs of common words go through [`Decoder::fast_run`]. A run the rules must look at
    /// (time going back, a pixel outside the sensor) is decoded again word by word through
    /// [`Decoder::one_word`], which applies every rule, and so are the words the fast run stops
    /// at (vectors and rare words) and the words up to a TIME_HIGH the seek index wants.
    fn decode(
        &mut self,
        bytes: &[u8],
        offset: u64,
        slots: &mut Slots,
        n: &mut usize,
        limit: usize,
        path: &Path,
    ) -> Result<usize> {
        let words = bytes.len() / 2;
        let word_at = |k: usize| u16::from_le_bytes([bytes[2 * k], bytes[2 * k + 1]]);
        let mut k = 0usize;
        while k < words && *n < limit {
            let at = |k: usize| offset + 2 * k as u64;
            // The seek index keeps the first TIME_HIGH at or after this word.
            let index_due = self.index.next_offset().saturating_sub(offset).div_ceil(2);
            let index_due = usize::try_from(index_due).unwrap_or(usize::MAX);
            if index_due <= k {
                self.one_word(word_at(k), at(k), slots, n, limit, path)?;
                k += 1;
                continue;
            }
            // Each word of a run emits at most one event, so a run no longer than the room
            // left cannot overflow the chunk.
            let end = words
                .min(k + (limit - *n))
                .min(k + RUN_WORDS)
                .min(index_due);
            let (before, n_before) = (self.state, *n);
            let run = self.fast_run(&bytes[2 * k..2 * end], slots, n);
            if !run.clean {
                self.state = before;
                *n = n_before;
                for j in k..k + run.words {
                    self.one_word(word_at(j), at(j), slots, n, limit, path)?;
                }
            }
            k += run.words;
            if k < end {
                // A vector or rare word stopped the run.
                self.one_word(word_at(k), at(k), slots, n, limit, path)?;
                k += 1;
            }
        }
        Ok(2 * k)
    }

    /// Decodes the common words at the start of `bytes` without a data-dependent branch:
    /// [`fast_words`] finds the first word left to the rules, [`pack_events`] follows the
    /// state up to it and packs each event into a `u64`, and [`unpack_events`] writes the
    /// events into `slots` from slot `n` on and checks the rules on them all at once.
    ///
    /// The result is kept when [`FastRun::clean`]: times never fell, and every pixel is inside
    /// the sensor (a TIME_HIGH that may count a loop never gets here). Otherwise the state and
    /// `n` are left as they were, for the caller to decode the words again by the rules.
    fn fast_run(&mut self, bytes: &[u8], slots: &mut Slots, n: &mut usize) -> FastRun {
        let st = self.state;
        let loop_base = st.loop_base;
        let mut context = Context::of(&st);
        // The words as `u16`s first: the passes then work on whole lanes.
        let mut buffer = [0u16; RUN_WORDS];
        let all = &mut buffer[..bytes.len() / 2];
        for (w, b) in all.iter_mut().zip(bytes.chunks_exact(2)) {
            *w = u16::from_le_bytes([b[0], b[1]]);
        }
        let words = fast_words(all);
        let events = pack_events(&mut context, &all[..words], &mut self.records);
        let events = &self.records[..events];
        let (width, height) = (self.gate.width, self.gate.height);
        let max_t = self.gate.running_max();
        let checked = unpack_events(events, loop_base, slots, *n);
        let clean = checked.first_t.is_none_or(|t| t >= max_t)
            && checked.in_order
            && checked.max_x < width
            && checked.max_y < height;
        if clean {
            *n += events.len();
            if let Some(t) = checked.last_t {
                self.gate.set_running_max(t);
            }
            context.store(&mut self.state);
        }
        FastRun { words, clean }
    }

    /// One word under every rule: the time-order and bounds policy for its events, the seek
    /// index at a TIME_HIGH, vectors split across chunks, undefined words counted.
    fn one_word(
        &mut self,
        w: u16,
        at: u64,
        slots: &mut Slots,
        n: &mut usize,
        limit: usize,
        path: &Path,
    ) -> Result<()> {
        match word::of(w) {
            word::ADDR_X => {
                let x = w & 0x7FF;
                let pol = ((w >> 11) & 1) as u8;
                if let Some(t) = self.gate.admit_time(self.state.t, 1, at, path)? {
                    let y = self.state.y;
                    self.emit_checked(slots, n, t, u32::from(x), y, pol, at, path)?;
                }
                Ok(())
            }
            word::TIME_HIGH => {
                let before = self.state;
                self.state.time_high(w);
                self.index.record(at, self.gate.running_max(), before);
                Ok(())
            }
            _ => self.rare_word(w, at, slots, n, limit, path),
        }
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

/// Words one fast run decodes at most: its packed events stay in the L1 cache, and a run that
/// must be decoded again under the rules costs little.
const RUN_WORDS: usize = 2048;

/// What [`Decoder::fast_run`] did.
struct FastRun {
    /// Words decoded (up to the first word left to the rules).
    words: usize,
    /// The events and state are exact; otherwise the run must be decoded again by the rules.
    clean: bool,
}

/// The decoder state the fast path follows, packed into one register: the time relative to
/// the loop base in bits 16-39 (the TIME_HIGH part in bits 28-39, the TIME_LOW part in bits
/// 16-27) and the y of the last ADDR_Y word in bits 48-58. An event is packed as the context
/// with its ADDR_X word (x and polarity) in bits 0-15.
#[derive(Clone, Copy)]
struct Context(u64);

/// Where [`Context`] keeps the time.
const TIME_SHIFT: u32 = 16;
const TIME_BITS: u64 = 0xFF_FFFF << TIME_SHIFT;
const HIGH_BITS: u64 = 0xFF_F000 << TIME_SHIFT;
/// Where [`Context`] keeps y.
const Y_SHIFT: u32 = 48;
const Y_BITS: u64 = 0x7FF << Y_SHIFT;

impl Context {
    fn of(st: &State) -> Self {
        let time = ((st.t - st.loop_base) as u64) << TIME_SHIFT & TIME_BITS;
        Self(time | (u64::from(st.y) << Y_SHIFT))
    }

    /// Writes the context back into the state (the loop base did not change).
    fn store(self, st: &mut State) {
        st.time_base = st.loop_base + ((self.0 & HIGH_BITS) >> TIME_SHIFT) as i64;
        st.t = st.loop_base + ((self.0 & TIME_BITS) >> TIME_SHIFT) as i64;
        st.y = ((self.0 & Y_BITS) >> Y_SHIFT) as u16;
    }
}

/// How a word of each type changes the [`Context`], as tables so that no word branches:
/// the context keeps the bits of `KEEP`, and the word times `PLACE` (a shift) lands its
/// payload in the bits of `SET`. Types that change nothing keep everything and set nothing.
const KEEP: [u64; 16] = {
    let mut keep = [u64::MAX; 16];
    keep[word::ADDR_Y as usize] = !Y_BITS;
    keep[word::TIME_LOW as usize] = !(0xFFF << TIME_SHIFT);
    keep[word::TIME_HIGH as usize] = !TIME_BITS;
    keep
};
const SET: [u64; 16] = {
    let mut set = [0; 16];
    set[word::ADDR_Y as usize] = Y_BITS;
    set[word::TIME_LOW as usize] = 0xFFF << TIME_SHIFT;
    set[word::TIME_HIGH as usize] = HIGH_BITS;
    set
};
const PLACE: [u64; 16] = {
    let mut place = [0; 16];
    place[word::ADDR_Y as usize] = 1 << Y_SHIFT;
    place[word::TIME_LOW as usize] = 1 << TIME_SHIFT;
    place[word::TIME_HIGH as usize] = 1 << (TIME_SHIFT + 12);
    place
};
/// 1 for the ADDR_X type, whose words are events.
const IS_EVENT: [usize; 16] = {
    let mut event = [0; 16];
    event[word::ADDR_X as usize] = 1;
    event
};

/// A TIME_HIGH at or below this payload may count a loop: the base it sets is at least
/// [`LOOP_THRESHOLD`] below the largest base, `MAX_BASE`, only when it is.
const LOOP_CANDIDATE_HIGH: u16 = ((MAX_BASE - LOOP_THRESHOLD) >> 12) as u16;

/// Whether the fast path leaves `w` to the rules: a vector word (it emits several events), a
/// VECT_BASE_X, a type the format does not define (counted), or a TIME_HIGH that may count a
/// loop. Written with comparisons only, so that [`fast_words`] vectorizes.
#[inline(always)]
fn leaves_fast_path(w: u16) -> bool {
    let ty = w >> 12;
    let loop_candidate = w.wrapping_sub(word::TIME_HIGH << 12) <= LOOP_CANDIDATE_HIGH;
    let vector = ty.wrapping_sub(word::VECT_BASE_X) <= word::VECT_8 - word::VECT_BASE_X;
    let undefined = (ty == 0x1) | (ty == 0x9) | (ty.wrapping_sub(0xB) <= 1);
    loop_candidate | vector | undefined
}

/// The number of words at the start of `bytes` the fast path takes: up to the first word
/// [`leaves_fast_path`] picks. Blocks of 16 words are tested at once (vectorized), so the
/// packing loop needs no test of its own.
fn fast_words(words: &[u16]) -> usize {
    const BLOCK: usize = 16;
    let mut k = 0;
    for block in words.chunks_exact(BLOCK) {
        if block
            .iter()
            .fold(false, |any, &w| any | leaves_fast_path(w))
        {
            break;
        }
        k += BLOCK;
    }
    let rest = &words[k..];
    k + rest
        .iter()
        .position(|&w| leaves_fast_path(w))
        .unwrap_or(rest.len())
}

/// First pass: follows the [`Context`] through `bytes` (words [`fast_words`] passed),
/// packing each ADDR_X word's event into `records`. Returns the events packed.
///
/// Recordings mix ADDR_Y, ADDR_X, TIME_LOW and TIME_HIGH words in an irregular order (a few
/// words per event), which a `match` pays for with a mispredicted branch every few words. Here
/// every word updates the context through the tables and writes the next record; only an
/// ADDR_X word advances the record count. `bytes` holds at most [`RUN_WORDS`] words.
fn pack_events(context: &mut Context, words: &[u16], records: &mut [u64; RUN_WORDS]) -> usize {
    let mut c = context.0;
    let mut events = 0usize;
    for &w in words {
        let w = u64::from(w);
        let ty = (w >> 12) as usize;
        // `events < RUN_WORDS` already: the mask only spares the bounds check.
        records[events % RUN_WORDS] = c | w;
        events += IS_EVENT[ty];
        c = (c & KEEP[ty]) | (w.wrapping_mul(PLACE[ty]) & SET[ty]);
    }
    context.0 = c;
    events
}

/// What [`unpack_events`] saw.
struct Checked {
    first_t: Option<i64>,
    last_t: Option<i64>,
    /// No time falls below the one before it.
    in_order: bool,
    max_x: u32,
    max_y: u32,
}

/// Second pass: writes the packed events into `slots` from slot `at` on, and gathers what the
/// rules check (time order, sensor bounds) over the whole run. The checks work on the packed
/// 24-bit times and 11-bit coordinates in 32- and 16-bit lanes, which vectorize without AVX2.
fn unpack_events(records: &[u64], loop_base: i64, slots: &mut Slots, at: usize) -> Checked {
    let end = at + records.len();
    let t_out = &mut slots.t[at..end];
    let x_out = &mut slots.x[at..end];
    let y_out = &mut slots.y[at..end];
    let p_out = &mut slots.p[at..end];
    // One pass per field: each vectorizes on its own.
    for (t, &r) in t_out.iter_mut().zip(records) {
        *t = loop_base + ((r & TIME_BITS) >> TIME_SHIFT) as i64;
    }
    for (x, &r) in x_out.iter_mut().zip(records) {
        *x = (r & 0x7FF) as u16;
    }
    for (y, &r) in y_out.iter_mut().zip(records) {
        *y = ((r & Y_BITS) >> Y_SHIFT) as u16;
    }
    for (p, &r) in p_out.iter_mut().zip(records) {
        *p = ((r >> 11) & 1) as u8;
    }
    let time = |r: &u64| ((r & TIME_BITS) >> TIME_SHIFT) as i32;
    let in_order = records
        .iter()
        .zip(records.iter().skip(1))
        .fold(true, |ok, (a, b)| ok & (time(a) <= time(b)));
    // Coordinates are below 2^11, so they compare as `i16` (SSE2 has a signed 16-bit max).
    let max_of = |v: &[u16]| v.iter().fold(0i16, |m, &c| m.max(c as i16)) as u32;
    Checked {
        first_t: t_out.first().copied(),
        last_t: t_out.last().copied(),
        in_order,
        max_x: max_of(x_out),
        max_y: max_of(y_out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_path_leaves_vectors_undefined_types_and_loop_candidates_to_the_rules() {
        let slow_types = [
            word::VECT_BASE_X,
            word::VECT_12,
            word::VECT_8,
            0x1,
            0x9,
            0xB,
            0xC,
        ];
        for w in 0..=u16::MAX {
            let ty = word::of(w);
            let loop_candidate = ty == word::TIME_HIGH && (w & 0xFFF) <= 10;
            let want = slow_types.contains(&ty) || loop_candidate;
            assert_eq!(leaves_fast_path(w), want, "{w:#06x}");
        }
    }

    #[test]
    fn skipped_words_change_nothing_and_are_no_events() {
        for ty in [
            word::CONTINUED_4,
            word::EXT_TRIGGER,
            word::OTHERS,
            word::CONTINUED_12,
        ] {
            let ty = usize::from(ty);
            assert_eq!((KEEP[ty], SET[ty], IS_EVENT[ty]), (u64::MAX, 0, 0));
        }
    }

    #[test]
    fn the_context_round_trips_the_state() {
        let st = State {
            time_base: (3 << 24) + (0xABC << 12),
            loop_base: 3 << 24,
            t: (3 << 24) + (0xABC << 12) + 0x123,
            y: 719,
            base_x: 0,
            pol: 0,
            has_time: true,
        };
        let mut back = State {
            time_base: 0,
            t: 0,
            y: 0,
            ..st
        };
        Context::of(&st).store(&mut back);
        assert_eq!(back, st);
    }
}
