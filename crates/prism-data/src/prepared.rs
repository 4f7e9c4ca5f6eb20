//! A prepared sequence in memory: the stacked histogram of every window plus the labels of the
//! windows that have some. This is what training reads; [`crate::store`] puts it on disk.
//!
//! A sequence read from disk keeps its windows compressed ([`EncodedHistograms`]) and decodes
//! one when it is asked for, so a split as large as Gen1's fits in memory: a 256x320 window is
//! 1.6 MB dense and a few tens of kB compressed.

use std::borrow::Cow;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::codec::EncodedHistograms;
use crate::error::{DataError, Result};
use crate::filter::LabelFilter;

/// What a prepared sequence holds and how it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequenceMeta {
    pub name: String,
    /// Width and height of the recording, in sensor pixels.
    pub sensor: [u32; 2],
    /// Network input height and width: after the optional halving, padded.
    pub input_hw: [usize; 2],
    /// `2 * bins`: OFF bins first, then ON bins.
    pub channels: usize,
    pub window_us: i64,
    /// The histogram was halved (1Mpx): box coordinates are sensor coordinates times 0.5.
    pub downsample: bool,
    /// Class names by class id.
    pub classes: Vec<String>,
    /// End time of every window (inclusive), microseconds; windows hold `[end - window_us, end]`.
    pub window_end_us: Vec<i64>,
    /// Height and width of the image inside the input, before the zero padding at the bottom and
    /// right. Augmentation works inside this region so the padding stays where RVT puts it.
    pub content_hw: [usize; 2],
    pub bins: usize,
    /// Histogram counts are clipped to `0..=count_cutoff`.
    pub count_cutoff: u8,
    /// The label filter the boxes went through.
    pub filter: LabelFilter,
    pub stats: SequenceStats,
}

/// Counts collected while preparing, for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SequenceStats {
    /// Events read from the recording.
    pub events: u64,
    /// Boxes in the label file.
    pub boxes_read: usize,
    /// Boxes left after the filter and the class selection.
    pub boxes_kept: usize,
    /// Distinct label timestamps after filtering.
    pub label_frames: usize,
    /// Windows that got a label frame.
    pub labeled_windows: usize,
}

/// One ground-truth box in network-input pixels (after the optional halving): top-left corner
/// and size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LabeledBox {
    pub class_id: u32,
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl LabeledBox {
    /// A label box in network-input pixels: its sensor coordinates times `scale` (0.5 when
    /// the histogram is halved, else 1).
    pub fn scaled(b: &prism_events::BoxLabel, scale: f32) -> Self {
        Self {
            class_id: b.class_id,
            x: b.x * scale,
            y: b.y * scale,
            w: b.w * scale,
            h: b.h * scale,
        }
    }
}

/// The boxes of the label frame attached to one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowLabels {
    pub window: usize,
    /// Timestamp of the label frame (at or near the window's end).
    pub t_us: i64,
    pub boxes: Vec<LabeledBox>,
}

/// A prepared sequence: `[T, C, H, W]` u8 histograms and the labels of some windows.
/// Two sequences are equal when their metadata, labels and every window are.
#[derive(Debug, Clone)]
pub struct PreparedSequence {
    pub meta: SequenceMeta,
    /// Sorted by window, at most one entry per window.
    pub labels: Vec<WindowLabels>,
    histograms: Histograms,
}

/// Where the windows live.
#[derive(Debug, Clone)]
enum Histograms {
    /// `[T, C, H, W]`, as built in memory.
    Dense(Vec<u8>),
    /// Compressed per window, as read from disk; every window was decoded once when it was read,
    /// so decoding cannot fail later.
    Encoded(EncodedHistograms),
}

impl PartialEq for PreparedSequence {
    fn eq(&self, other: &Self) -> bool {
        self.meta == other.meta
            && self.labels == other.labels
            && (0..self.num_windows()).all(|i| self.get_window(i) == other.get_window(i))
    }
}

impl PreparedSequence {
    /// Checks that the parts fit together: histogram size, label order and range, class ids,
    /// finite boxes.
    pub fn new(meta: SequenceMeta, labels: Vec<WindowLabels>, histograms: Vec<u8>) -> Result<Self> {
        check_parts(&meta, &labels, histograms.len())?;
        Ok(Self {
            meta,
            labels,
            histograms: Histograms::Dense(histograms),
        })
    }

    /// A sequence whose windows stay compressed in memory. Checks what [`Self::new`] checks and
    /// decodes every window once (into one reused buffer), so a damaged window is an error
    /// here and never later.
    pub fn from_encoded(
        meta: SequenceMeta,
        labels: Vec<WindowLabels>,
        encoded: EncodedHistograms,
    ) -> Result<Self> {
        let n = window_len(&meta);
        if encoded.num_windows() != meta.window_end_us.len() || encoded.cells() != n {
            let [h, w] = meta.input_hw;
            return Err(DataError::Invalid(format!(
                "{} compressed windows of {} cells; the metadata says {} windows of {}x{h}x{w}",
                encoded.num_windows(),
                encoded.cells(),
                meta.window_end_us.len(),
                meta.channels
            )));
        }
        let total = n
            .checked_mul(encoded.num_windows())
            .ok_or_else(|| DataError::Invalid("histogram size overflows".into()))?;
        check_parts(&meta, &labels, total)?;
        let mut scratch = vec![0u8; n];
        for i in 0..encoded.num_windows() {
            encoded.decode_window(i, &mut scratch)?;
        }
        Ok(Self {
            meta,
            labels,
            histograms: Histograms::Encoded(encoded),
        })
    }

    /// Whether the windows are kept compressed (decoded on access).
    pub fn is_compressed(&self) -> bool {
        matches!(self.histograms, Histograms::Encoded(_))
    }

    /// Bytes the windows take in memory.
    pub fn histogram_bytes(&self) -> usize {
        match &self.histograms {
            Histograms::Dense(d) => d.len(),
            Histograms::Encoded(e) => e.payload_len(),
        }
    }

    /// The compressed windows, when that is how they are kept.
    pub(crate) fn encoded(&self) -> Option<&EncodedHistograms> {
        match &self.histograms {
            Histograms::Encoded(e) => Some(e),
            Histograms::Dense(_) => None,
        }
    }

    pub fn num_windows(&self) -> usize {
        self.meta.window_end_us.len()
    }

    /// How far the recurrent state advances at window `i`, in seconds: from the previous
    /// window's end to this one's (RVT's Gen1 rule spaces ends 125 ms apart, not 50), the
    /// window length for the first window. What a memory discretized by time is fed.
    pub fn window_duration_s(&self, i: usize) -> f32 {
        let ends = &self.meta.window_end_us;
        match (i.checked_sub(1).and_then(|j| ends.get(j)), ends.get(i)) {
            (Some(prev), Some(end)) if end > prev => (end - prev) as f32 / 1e6,
            _ => self.meta.window_us as f32 / 1e6,
        }
    }

    /// Values per window: `C * H * W`.
    pub fn window_len(&self) -> usize {
        window_len(&self.meta)
    }

    /// The `[C, H, W]` histogram of window `i` (borrowed when dense, decoded when compressed).
    /// Panics when `i >= num_windows()`, like slice indexing; [`Self::get_window`] does not.
    #[allow(
        clippy::panic,
        reason = "documented like slice indexing; get_window does not panic"
    )]
    pub fn window(&self, i: usize) -> Cow<'_, [u8]> {
        match self.get_window(i) {
            Some(w) => w,
            None => panic!("window {i} of a sequence of {}", self.num_windows()),
        }
    }

    /// [`Self::window`], or `None` when `i` is out of range.
    pub fn get_window(&self, i: usize) -> Option<Cow<'_, [u8]>> {
        let n = self.window_len();
        match &self.histograms {
            Histograms::Dense(d) => d
                .get(i.checked_mul(n)?..i.checked_add(1)?.checked_mul(n)?)
                .map(Cow::Borrowed),
            Histograms::Encoded(e) => {
                let mut out = vec![0u8; n];
                // Cannot fail: `from_encoded` decoded every window once.
                e.decode_window(i, &mut out).ok()?;
                Some(Cow::Owned(out))
            }
        }
    }

    /// All windows, `[T, C, H, W]` (decoded when compressed: for tests and small sequences).
    pub fn histograms(&self) -> Cow<'_, [u8]> {
        match &self.histograms {
            Histograms::Dense(d) => Cow::Borrowed(d),
            Histograms::Encoded(_) => Cow::Owned(
                (0..self.num_windows())
                    .flat_map(|i| self.get_window(i).unwrap_or_default().into_owned())
                    .collect(),
            ),
        }
    }

    /// The label frame of `window`, if it has one.
    pub fn labels_at(&self, window: usize) -> Option<&WindowLabels> {
        self.labels
            .binary_search_by_key(&window, |l| l.window)
            .ok()
            .and_then(|i| self.labels.get(i))
    }

    /// Writes the sequence to `dir` atomically (see [`crate::store`]).
    pub fn save(&self, dir: &Path) -> Result<()> {
        crate::store::save(self, dir)
    }

    /// Reads a sequence written by [`Self::save`], checking every size.
    pub fn load(dir: &Path) -> Result<Self> {
        crate::store::load(dir)
    }
}

/// `C * H * W` of `meta` (saturating: absurd sizes are caught by [`check_parts`]).
pub(crate) fn window_len(meta: &SequenceMeta) -> usize {
    meta.channels
        .saturating_mul(meta.input_hw[0])
        .saturating_mul(meta.input_hw[1])
}

fn invalid(reason: String) -> DataError {
    DataError::Invalid(reason)
}

/// The consistency rules of [`PreparedSequence::new`].
pub(crate) fn check_parts(
    meta: &SequenceMeta,
    labels: &[WindowLabels],
    histogram_len: usize,
) -> Result<()> {
    let [h, w] = meta.input_hw;
    let [ch, cw] = meta.content_hw;
    if ch > h || cw > w {
        return Err(invalid(format!(
            "content {ch}x{cw} larger than the input {h}x{w}"
        )));
    }
    if meta.channels != 2 * meta.bins {
        return Err(invalid(format!(
            "{} channels for {} bins",
            meta.channels, meta.bins
        )));
    }
    if meta.window_us <= 0 {
        return Err(invalid(format!("window length {} µs", meta.window_us)));
    }
    if meta.window_end_us.windows(2).any(|e| e[0] >= e[1]) {
        return Err(invalid("window ends are not increasing".into()));
    }
    let expected = meta
        .channels
        .checked_mul(h)
        .and_then(|v| v.checked_mul(w))
        .and_then(|v| v.checked_mul(meta.window_end_us.len()))
        .ok_or_else(|| invalid("histogram size overflows".into()))?;
    if histogram_len != expected {
        return Err(invalid(format!(
            "{histogram_len} histogram bytes, {} windows of {}x{}x{} need {expected}",
            meta.window_end_us.len(),
            meta.channels,
            h,
            w
        )));
    }
    let mut previous: Option<usize> = None;
    for l in labels {
        if l.window >= meta.window_end_us.len() {
            return Err(invalid(format!(
                "labels for window {} of {}",
                l.window,
                meta.window_end_us.len()
            )));
        }
        if previous.is_some_and(|p| p >= l.window) {
            return Err(invalid(format!(
                "labels not sorted by window at window {}",
                l.window
            )));
        }
        previous = Some(l.window);
        for b in &l.boxes {
            if b.class_id as usize >= meta.classes.len() {
                return Err(invalid(format!(
                    "window {}: class id {} but {} classes",
                    l.window,
                    b.class_id,
                    meta.classes.len()
                )));
            }
            if ![b.x, b.y, b.w, b.h].iter().all(|v| v.is_finite()) || b.w < 0.0 || b.h < 0.0 {
                return Err(invalid(format!("window {}: bad box {b:?}", l.window)));
            }
        }
    }
    Ok(())
}

/// The sequences of one split (`train`, `val`, `test`), sorted by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PreparedSplit {
    pub sequences: Vec<PreparedSequence>,
}

impl PreparedSplit {
    /// Checks that all sequences share one input shape (they are batched together).
    pub fn new(sequences: Vec<PreparedSequence>) -> Result<Self> {
        let split = Self { sequences };
        split.check_shapes()?;
        Ok(split)
    }

    /// `[C, H, W]` shared by every sequence; `None` for an empty split.
    pub fn shape(&self) -> Option<[usize; 3]> {
        self.sequences.first().map(|s| {
            let [h, w] = s.meta.input_hw;
            [s.meta.channels, h, w]
        })
    }

    pub fn total_windows(&self) -> usize {
        self.sequences
            .iter()
            .map(PreparedSequence::num_windows)
            .sum()
    }

    pub(crate) fn check_shapes(&self) -> Result<()> {
        let Some(first) = self.sequences.first() else {
            return Ok(());
        };
        for s in &self.sequences {
            if s.meta.input_hw != first.meta.input_hw || s.meta.channels != first.meta.channels {
                return Err(DataError::Invalid(format!(
                    "sequence {} is {}x{}x{}, sequence {} is {}x{}x{}: a split must share one shape",
                    s.meta.name,
                    s.meta.channels,
                    s.meta.input_hw[0],
                    s.meta.input_hw[1],
                    first.meta.name,
                    first.meta.channels,
                    first.meta.input_hw[0],
                    first.meta.input_hw[1]
                )));
            }
        }
        Ok(())
    }
}
