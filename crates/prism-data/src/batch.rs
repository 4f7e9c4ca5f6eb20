//! A [`Batch`] of clips turned into what the trainer feeds the network: per time step one
//! `f32 [B, C, H, W]` tensor of augmented counts, plus the boxes of the labelled steps.

use crate::error::{DataError, Result};
use crate::prepared::{LabeledBox, PreparedSplit};
use crate::sampler::Batch;

/// Network input and targets of one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipBatch {
    /// Time steps (the configured clip length).
    pub seq_len: usize,
    /// Slots (batch size).
    pub batch: usize,
    pub input_hw: [usize; 2],
    pub channels: usize,
    /// Per time step `t`: `[B, C, H, W]` counts; zero for slots whose clip is shorter than `t`.
    pub windows: Vec<Vec<f32>>,
    /// `[t][b]`: the augmented boxes of a labelled window; `None` where there is no label (no
    /// loss at that step).
    pub labels: Vec<Vec<Option<Vec<LabeledBox>>>>,
    /// Per slot: zero the recurrent state before step 0.
    pub reset: Vec<bool>,
    /// `[t][b]`: the step holds a real window (`t < len` of the slot's clip).
    pub valid: Vec<Vec<bool>>,
    /// `[t][b]`: seconds the state advances at the step
    /// ([`crate::PreparedSequence::window_duration_s`]); the split's window length where the
    /// step holds no window.
    pub durations_s: Vec<Vec<f32>>,
}

/// Builds the batch tensors. A slot that does not fit `split` (another split than the sampler's)
/// stays all invalid; [`try_assemble`] reports it instead.
pub fn assemble(batch: &Batch, split: &PreparedSplit) -> ClipBatch {
    build(batch, split, false).unwrap_or_else(|_| empty(batch, split))
}

/// [`assemble`], with an error for a slot that does not fit `split`.
pub fn try_assemble(batch: &Batch, split: &PreparedSplit) -> Result<ClipBatch> {
    build(batch, split, true)
}

fn empty(batch: &Batch, split: &PreparedSplit) -> ClipBatch {
    let [c, h, w] = split.shape().unwrap_or([0, 0, 0]);
    let b = batch.slots.len();
    let window_s = split
        .sequences
        .first()
        .map_or(0.05, |s| s.meta.window_us as f32 / 1e6);
    ClipBatch {
        seq_len: batch.seq_len,
        batch: b,
        input_hw: [h, w],
        channels: c,
        windows: vec![vec![0.0; b * c * h * w]; batch.seq_len],
        labels: vec![vec![None; b]; batch.seq_len],
        reset: batch.slots.iter().map(|s| s.reset_state).collect(),
        valid: vec![vec![false; b]; batch.seq_len],
        durations_s: vec![vec![window_s; b]; batch.seq_len],
    }
}

fn build(batch: &Batch, split: &PreparedSplit, strict: bool) -> Result<ClipBatch> {
    let mut out = empty(batch, split);
    let [c, h, w] = split.shape().unwrap_or([0, 0, 0]);
    let plane = c * h * w;
    for (b, slot) in batch.slots.iter().enumerate() {
        let seq = split.sequences.get(slot.sequence);
        let fits = seq
            .is_some_and(|s| slot.start + slot.len <= s.num_windows() && slot.len <= batch.seq_len);
        let Some(seq) = seq.filter(|_| fits) else {
            if strict {
                return Err(DataError::Invalid(format!(
                    "slot {b}: windows {}..{} of sequence {} do not exist in this split",
                    slot.start,
                    slot.start + slot.len,
                    slot.sequence
                )));
            }
            continue;
        };
        let [ch, cw] = seq.meta.content_hw;
        for t in 0..slot.len {
            let i = slot.start + t;
            if let (Some(src), Some(dst)) = (
                seq.get_window(i),
                out.windows[t].get_mut(b * plane..(b + 1) * plane),
            ) {
                slot.augment
                    .apply_histogram_in(&src, c, [h, w], [ch, cw], dst);
            }
            out.valid[t][b] = true;
            out.durations_s[t][b] = seq.window_duration_s(i);
            out.labels[t][b] = seq
                .labels_at(i)
                .map(|l| slot.augment.apply_boxes(&l.boxes, ch, cw));
        }
    }
    Ok(out)
}
