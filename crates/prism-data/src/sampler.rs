//! RVT's mixed clip sampling (`modules/data/genx.py`, issues #16, #27, #42): every batch holds
//! `bs_rnd = min(round(B * w_rnd / (w_str + w_rnd)), B - 1)` random clips (recurrent state reset)
//! and `B - bs_rnd` streaming clips (state carried from the slot's previous batch).
//!
//! - Random slot: a labelled window is drawn uniformly over the whole split and the clip is the
//!   `seq_len` windows ending at it (RVT's `SequenceForRandomAccess`: the last step always has a
//!   label). Sequences shorter than `seq_len` give a clip of the whole sequence.
//! - Streaming slot `s` (always at batch index `bs_rnd + s`) walks its sequences in consecutive
//!   chunks of `seq_len` windows (the last chunk of a sequence may be shorter) and sets
//!   `reset_state` exactly on a sequence's first chunk. Each epoch the sequence list is shuffled
//!   and dealt to the streaming slots, balanced by chunk count; a slot that finishes its share
//!   moves on to its share of the next epoch, so every sequence is streamed once per epoch.
//! - Augmentation is drawn per random clip and per streaming sequence (kept for all its chunks).
//!
//! Every draw is a pure function of the seed and a position (batch number and slot, or epoch and
//! slot), so [`SamplerState`] is a few counters: [`ClipSampler::restore`] continues exactly where
//! [`ClipSampler::state`] was taken.

use prism_events::synth::rng::{mix, SplitMix64};
use serde::{Deserialize, Serialize};

use crate::augment::{uniform_index, AugmentConfig, Augmentation};
use crate::error::{DataError, Result};
use crate::prepared::{LabeledBox, PreparedSplit};

/// Batch composition, clip length, seed and augmentation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SamplerConfig {
    pub batch_size: usize,
    /// Windows per clip (TBPTT length; RVT: 21 for Gen1, 5 for 1Mpx).
    pub seq_len: usize,
    pub random_weight: f32,
    /// A weight of 0 gives only random clips (RVT's "random" sampling mode).
    pub stream_weight: f32,
    pub seed: u64,
    pub augment: AugmentConfig,
}

impl SamplerConfig {
    /// Random slots per batch: RVT's `min(round(B * w_rnd / (w_str + w_rnd)), B - 1)`, or all of
    /// them when the streaming weight is 0.
    pub fn random_slots(&self) -> usize {
        let b = self.batch_size;
        if self.stream_weight == 0.0 {
            return b;
        }
        let total = f64::from(self.random_weight) + f64::from(self.stream_weight);
        let share = (b as f64 * f64::from(self.random_weight) / total).round() as usize;
        share.min(b.saturating_sub(1))
    }

    fn validate(&self) -> Result<()> {
        let w_ok = |w: f32| w.is_finite() && w >= 0.0;
        if self.batch_size == 0 || self.seq_len == 0 {
            return Err(DataError::Invalid(format!(
                "batch size ({}) and sequence length ({}) must be at least 1",
                self.batch_size, self.seq_len
            )));
        }
        if !w_ok(self.random_weight)
            || !w_ok(self.stream_weight)
            || self.random_weight + self.stream_weight <= 0.0
        {
            return Err(DataError::Invalid(format!(
                "sampling weights must be >= 0 and not both 0 (random {}, stream {})",
                self.random_weight, self.stream_weight
            )));
        }
        self.augment.validate()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClipKind {
    /// State reset at the clip's start.
    Random,
    /// State carried from the same slot's previous clip unless `reset_state`.
    Stream,
}

/// One batch entry: `len` consecutive windows of a sequence from `start`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClipSlot {
    pub kind: ClipKind,
    /// Index in the batch.
    pub slot: usize,
    /// Index into [`PreparedSplit::sequences`].
    pub sequence: usize,
    pub start: usize,
    /// `<= seq_len`; shorter for the last chunk of a stream or a short sequence.
    pub len: usize,
    /// Zero the recurrent state before this clip.
    pub reset_state: bool,
    pub augment: Augmentation,
}

/// One batch: random slots first, then the streaming slots in a fixed order.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The configured clip length (every `slots[i].len` is at most this).
    pub seq_len: usize,
    pub slots: Vec<ClipSlot>,
}

/// Where one streaming slot stands: the sequence `queue_pos` of its share of `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StreamState {
    pub epoch: u64,
    pub queue_pos: usize,
    pub sequence: usize,
    /// First window of the next chunk.
    pub next_start: usize,
    /// The current sequence's augmentation.
    pub augment: Augmentation,
}

/// Everything needed to continue sampling; save it with a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplerState {
    /// Hash of the configuration and the split's sequences (names and lengths): a state only
    /// restores onto the sampler it came from.
    pub fingerprint: u64,
    /// Batches drawn so far.
    pub step: u64,
    pub streams: Vec<StreamState>,
}

// Purposes that separate the random streams of the sampler.
const RANDOM_CLIP: u64 = 0x5241_4E44;
const EPOCH_SHUFFLE: u64 = 0x5348_5546;
const STREAM_AUGMENT: u64 = 0x5354_4155;

/// Draws batches of clips; see the module documentation.
#[derive(Debug, Clone)]
pub struct ClipSampler {
    cfg: SamplerConfig,
    random_slots: usize,
    stream_slots: usize,
    /// `(sequence, window)` of every labelled window that can end a random clip.
    candidates: Vec<(usize, usize)>,
    /// Windows per sequence.
    lengths: Vec<usize>,
    content_hw: Vec<[usize; 2]>,
    /// Sequences with at least one window.
    streamable: Vec<usize>,
    state: SamplerState,
}

impl ClipSampler {
    pub fn new(cfg: SamplerConfig, split: &PreparedSplit) -> Result<Self> {
        cfg.validate()?;
        split.check_shapes()?;
        let lengths: Vec<usize> = split.sequences.iter().map(|s| s.num_windows()).collect();
        let content_hw = split.sequences.iter().map(|s| s.meta.content_hw).collect();
        let mut candidates = Vec::new();
        for (i, (seq, &n)) in split.sequences.iter().zip(&lengths).enumerate() {
            let len = cfg.seq_len.min(n);
            candidates.extend(
                seq.labels
                    .iter()
                    .filter(|l| l.window + 1 >= len && l.window < n)
                    .map(|l| (i, l.window)),
            );
        }
        let streamable: Vec<usize> = (0..lengths.len()).filter(|&i| lengths[i] > 0).collect();
        let random_slots = cfg.random_slots();
        if random_slots > 0 && candidates.is_empty() {
            return Err(DataError::Invalid(
                "random clips need labelled windows, but the split has none".into(),
            ));
        }
        let stream_slots = cfg.batch_size - random_slots;
        if stream_slots > 0 && streamable.is_empty() {
            return Err(DataError::Invalid(
                "the split has no windows to stream".into(),
            ));
        }
        let mut sampler = Self {
            cfg,
            random_slots,
            stream_slots,
            candidates,
            lengths,
            content_hw,
            streamable,
            state: SamplerState {
                fingerprint: fingerprint(&cfg, split),
                step: 0,
                streams: Vec::with_capacity(stream_slots),
            },
        };
        for slot in 0..stream_slots {
            let first = sampler.enter(slot, 0, 0);
            sampler.state.streams.push(first);
        }
        Ok(sampler)
    }

    /// A sampler that continues from `state`, taken with [`Self::state`] from a sampler with the
    /// same configuration over the same split.
    pub fn restore(cfg: SamplerConfig, split: &PreparedSplit, state: SamplerState) -> Result<Self> {
        let mut sampler = Self::new(cfg, split)?;
        if state.fingerprint != sampler.state.fingerprint {
            return Err(DataError::StateMismatch(
                "it was saved for another sampler configuration or another split".into(),
            ));
        }
        if state.streams.len() != sampler.state.streams.len() {
            return Err(DataError::StateMismatch(format!(
                "{} streaming slots saved, {} configured",
                state.streams.len(),
                sampler.state.streams.len()
            )));
        }
        for (slot, s) in state.streams.iter().enumerate() {
            let in_queue = sampler.queue(s.epoch, slot).get(s.queue_pos) == Some(&s.sequence);
            let in_sequence = sampler
                .lengths
                .get(s.sequence)
                .is_some_and(|&n| s.next_start < n);
            if !in_queue || !in_sequence {
                return Err(DataError::StateMismatch(format!(
                    "streaming slot {slot} points at window {} of sequence {}, which its schedule does not hold",
                    s.next_start, s.sequence
                )));
            }
        }
        sampler.state = state;
        Ok(sampler)
    }

    /// The position to save; see [`Self::restore`].
    pub fn state(&self) -> SamplerState {
        self.state.clone()
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Random slots per batch (the first ones).
    pub fn random_slots(&self) -> usize {
        self.random_slots
    }

    /// Streaming slots per batch (after the random ones).
    pub fn stream_slots(&self) -> usize {
        self.stream_slots
    }

    /// The next batch. `split` must be the split the sampler was made with.
    pub fn next_batch(&mut self, split: &PreparedSplit) -> Batch {
        let step = self.state.step;
        let mut slots = Vec::with_capacity(self.cfg.batch_size);
        for r in 0..self.random_slots {
            slots.push(self.random_clip(split, step, r));
        }
        for s in 0..self.state.streams.len() {
            let st = self.state.streams[s];
            let total = self.lengths.get(st.sequence).copied().unwrap_or(0);
            let len = self.cfg.seq_len.min(total.saturating_sub(st.next_start));
            slots.push(ClipSlot {
                kind: ClipKind::Stream,
                slot: self.random_slots + s,
                sequence: st.sequence,
                start: st.next_start,
                len,
                reset_state: st.next_start == 0,
                augment: st.augment,
            });
            let next = st.next_start + len;
            self.state.streams[s] = if next >= total {
                self.enter(s, st.epoch, st.queue_pos + 1)
            } else {
                StreamState {
                    next_start: next,
                    ..st
                }
            };
        }
        self.state.step += 1;
        Batch {
            seq_len: self.cfg.seq_len,
            slots,
        }
    }

    fn random_clip(&self, split: &PreparedSplit, step: u64, r: usize) -> ClipSlot {
        let mut rng = SplitMix64::stream(self.cfg.seed, RANDOM_CLIP, mix(step, r as u64));
        let pick = uniform_index(&mut rng, self.candidates.len());
        let (sequence, end) = self.candidates.get(pick).copied().unwrap_or((0, 0));
        let len = self
            .cfg
            .seq_len
            .min(self.lengths.get(sequence).copied().unwrap_or(0));
        let start = (end + 1).saturating_sub(len);
        let recent = recent_boxes(split, sequence, start, end);
        let hw = self.content_hw.get(sequence).copied().unwrap_or([0, 0]);
        ClipSlot {
            kind: ClipKind::Random,
            slot: r,
            sequence,
            start,
            len,
            reset_state: true,
            augment: self.cfg.augment.draw_random(&mut rng, hw, recent),
        }
    }

    /// Slot `slot` starts the sequence at `queue_pos` of its share of `epoch` (or of the next
    /// epoch when its share is used up), with a fresh augmentation.
    fn enter(&self, slot: usize, mut epoch: u64, mut queue_pos: usize) -> StreamState {
        let mut queue = self.queue(epoch, slot);
        if queue_pos >= queue.len() {
            epoch += 1;
            queue_pos = 0;
            queue = self.queue(epoch, slot);
        }
        // Every share holds at least one sequence (see `queue`).
        let sequence = queue.get(queue_pos).copied().unwrap_or(0);
        let mut rng = SplitMix64::stream(
            self.cfg.seed,
            STREAM_AUGMENT,
            mix(mix(epoch, slot as u64), queue_pos as u64),
        );
        let hw = self.content_hw.get(sequence).copied().unwrap_or([0, 0]);
        StreamState {
            epoch,
            queue_pos,
            sequence,
            next_start: 0,
            augment: self.cfg.augment.draw_stream(&mut rng, hw),
        }
    }

    /// Streaming slot `slot`'s share of `epoch`: the epoch's shuffle dealt greedily to the slot
    /// with the fewest chunks so far. With more slots than sequences the list is shuffled several
    /// times over, so that no slot goes empty.
    fn queue(&self, epoch: u64, slot: usize) -> Vec<usize> {
        let slots = self.stream_slots;
        let n = self.streamable.len();
        if n == 0 || slots == 0 {
            return Vec::new();
        }
        let rounds = slots.div_ceil(n);
        let mut loads = vec![0usize; slots];
        let mut mine = Vec::new();
        for round in 0..rounds {
            let mut order = self.streamable.clone();
            let mut rng =
                SplitMix64::stream(self.cfg.seed, EPOCH_SHUFFLE, mix(epoch, round as u64));
            for i in (1..order.len()).rev() {
                order.swap(i, uniform_index(&mut rng, i + 1));
            }
            for seq in order {
                let (k, _) = loads
                    .iter()
                    .enumerate()
                    .min_by_key(|&(k, &load)| (load, k))
                    .unwrap_or((0, &0));
                loads[k] += self.lengths[seq].div_ceil(self.cfg.seq_len);
                if k == slot {
                    mine.push(seq);
                }
            }
        }
        mine
    }
}

/// Boxes of the last non-empty label frame in windows `start..=end` of `sequence`.
fn recent_boxes(split: &PreparedSplit, sequence: usize, start: usize, end: usize) -> &[LabeledBox] {
    let Some(seq) = split.sequences.get(sequence) else {
        return &[];
    };
    (start..=end)
        .rev()
        .filter_map(|w| seq.labels_at(w))
        .find(|l| !l.boxes.is_empty())
        .map_or(&[], |l| l.boxes.as_slice())
}

/// Hash of everything the batches depend on.
fn fingerprint(cfg: &SamplerConfig, split: &PreparedSplit) -> u64 {
    let a = &cfg.augment;
    let mut h = mix(cfg.seed, 0x5350_4C54);
    for v in [
        cfg.batch_size as u64,
        cfg.seq_len as u64,
        u64::from(cfg.random_weight.to_bits()),
        u64::from(cfg.stream_weight.to_bits()),
    ]
    .into_iter()
    .chain(
        [
            a.hflip_p,
            a.zoom_p_random,
            a.zoom_p_stream,
            a.zoom_in_max,
            a.zoom_in_weight,
            a.zoom_out_max,
            a.zoom_out_weight,
        ]
        .map(|f| u64::from(f.to_bits())),
    ) {
        h = mix(h, v);
    }
    for seq in &split.sequences {
        h = mix(h, seq.num_windows() as u64);
        h = mix(h, seq.labels.len() as u64);
        for chunk in seq.meta.name.as_bytes().chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            h = mix(h, u64::from_le_bytes(b));
        }
    }
    h
}
