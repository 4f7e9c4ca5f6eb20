//! RVT's stacked histogram (`StackedHistogram.construct`, RVT @ b80f568), bit for bit.
//!
//! For the events of one window (time-sorted), with `t0` and `t1` its first and last timestamps:
//!
//! ```text
//! t_idx   = min(floor((t - t0) / max(t1 - t0, 1) * bins), bins - 1)    // in f64
//! channel = p * bins + t_idx                                           // OFF channels first
//! hist[channel, y, x] += 1        (u8, wraps at 256: RVT's `put_(accumulate=True)` fastmode)
//! hist = min(hist, count_cutoff)                                       // after all events
//! ```
//!
//! RVT's torch code actually divides in float32 (an int64 tensor divided by an int gives the default
//! dtype: `f32(t - t0) / f32(span) * f32(bins)`). This crate follows evlib's verified port and
//! computes in f64; the two give the same bin for every event whenever the window's span is below
//! 1,864,139 µs (checked exhaustively at every bin edge, the first disagreement is at that span), so
//! for RVT's 50 ms windows the result is torch's, bit for bit (unit test
//! `f64_binning_equals_torch_float32_for_short_windows`).
//!
//! The wrap is deliberate: RVT accumulates in uint8, so a pixel that fires 256 times in one bin
//! reads 0 before the clip, 260 times reads 4. Only hot pixels ever get there.
//!
//! Optionally (1Mpx) the finished tensor is halved with PyTorch's `nearest-exact`, which keeps pixel
//! `(2i + 1, 2j + 1)` of every 2x2 block (see [`super::downsample`]); it is built directly at half
//! size from the events at odd coordinates, which gives the same bytes. Then the tensor is padded
//! with zeros at the bottom and right to a multiple of `pad_multiple` (RVT: 32).
//!
//! Output: `u8 [2 * bins, out_height, out_width]`, row-major. An empty window gives all zeros.

use super::{round_up, validate, DirtyBuffer};
use crate::chunk::EventSlice;
use crate::error::{EventError, Result};

/// What [`StackedHistogram`] builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistogramConfig {
    /// Time bins per polarity (RVT: 10).
    pub bins: usize,
    /// Counts are clipped to `0..=count_cutoff` (RVT preprocessing: 10; the class default is 255).
    pub count_cutoff: u8,
    /// Sensor size: events must lie in `0..width`, `0..height`.
    pub width: usize,
    pub height: usize,
    /// Halve the finished histogram with `nearest-exact` (RVT's 1Mpx / Gen4 preprocessing).
    pub downsample_by_2: bool,
    /// Pad height and width with zeros up to a multiple of this (RVT: 32; 0 or 1: no padding).
    pub pad_multiple: usize,
}

impl HistogramConfig {
    /// RVT's settings for a sensor of `width` x `height`: 10 bins, cutoff 10, no downsampling,
    /// no padding.
    pub fn rvt(width: usize, height: usize) -> Self {
        Self {
            bins: 10,
            count_cutoff: 10,
            width,
            height,
            downsample_by_2: false,
            pad_multiple: 1,
        }
    }

    /// Gen1 input: 304x240 padded to 320x256.
    pub fn gen1() -> Self {
        Self::rvt(304, 240).with_padding(32)
    }

    /// 1Mpx (Gen4) input: 1280x720 halved to 640x360, padded to 640x384.
    pub fn gen4() -> Self {
        Self::rvt(1280, 720).with_downsample(true).with_padding(32)
    }

    pub fn with_downsample(mut self, yes: bool) -> Self {
        self.downsample_by_2 = yes;
        self
    }

    pub fn with_padding(mut self, multiple: usize) -> Self {
        self.pad_multiple = multiple;
        self
    }

    pub fn with_cutoff(mut self, cutoff: u8) -> Self {
        self.count_cutoff = cutoff;
        self
    }

    pub fn with_bins(mut self, bins: usize) -> Self {
        self.bins = bins;
        self
    }

    /// Height and width before padding (after the optional halving).
    pub fn content_size(&self) -> (usize, usize) {
        if self.downsample_by_2 {
            (self.height / 2, self.width / 2)
        } else {
            (self.height, self.width)
        }
    }

    /// Output shape `[2 * bins, height, width]`, padding included.
    pub fn shape(&self) -> [usize; 3] {
        let (h, w) = self.content_size();
        [
            2 * self.bins,
            round_up(h, self.pad_multiple),
            round_up(w, self.pad_multiple),
        ]
    }

    fn validate(&self) -> Result<()> {
        if self.bins == 0 || self.width == 0 || self.height == 0 {
            return Err(EventError::InvalidArgument(format!(
                "stacked histogram needs bins, width and height >= 1 (got {} bins, {}x{})",
                self.bins, self.width, self.height
            )));
        }
        let (h, w) = self.content_size();
        if h == 0 || w == 0 {
            return Err(EventError::InvalidArgument(format!(
                "a {}x{} sensor is too small to halve",
                self.width, self.height
            )));
        }
        Ok(())
    }
}

/// Builds RVT stacked histograms window after window into one reused buffer.
#[derive(Debug, Clone)]
pub struct StackedHistogram {
    config: HistogramConfig,
    shape: [usize; 3],
    buf: DirtyBuffer<u8>,
    /// Flat indices of the current window's events (reused scratch).
    idx: Vec<u32>,
}

impl StackedHistogram {
    pub fn new(config: HistogramConfig) -> Result<Self> {
        config.validate()?;
        let shape = config.shape();
        Ok(Self {
            config,
            shape,
            buf: DirtyBuffer::new(shape.iter().product())?,
            idx: Vec::new(),
        })
    }

    pub fn config(&self) -> &HistogramConfig {
        &self.config
    }

    /// `[2 * bins, height, width]` of the output, padding included.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// The histogram of `events` (one window, time-sorted), `u8 [2 * bins, height, width]`.
    ///
    /// Errors ([`super::validate`]) leave an all-zero tensor behind.
    pub fn build(&mut self, events: EventSlice<'_>) -> Result<&[u8]> {
        self.buf.clear();
        validate(&events, self.config.width, self.config.height)?;
        if let (Some(&t0), Some(&t1)) = (events.t.first(), events.t.last()) {
            if self.config.downsample_by_2 {
                self.accumulate::<true>(&events, t0, t1);
            } else {
                self.accumulate::<false>(&events, t0, t1);
            }
            let cutoff = self.config.count_cutoff;
            self.buf.map_dirty(|v| v.min(cutoff));
        }
        Ok(&self.buf.data)
    }

    /// The tensor of the last [`Self::build`].
    pub fn tensor(&self) -> &[u8] {
        &self.buf.data
    }

    /// Writes the last tensor as `f32` (raw counts, what RVT feeds the network) into `out`, which
    /// must hold exactly `shape().product()` values.
    pub fn write_f32(&self, out: &mut [f32]) -> Result<()> {
        if out.len() != self.buf.data.len() {
            return Err(EventError::InvalidArgument(format!(
                "f32 output holds {} values, the histogram {}",
                out.len(),
                self.buf.data.len()
            )));
        }
        for (o, &v) in out.iter_mut().zip(&self.buf.data) {
            *o = f32::from(v);
        }
        Ok(())
    }

    /// Scatter-adds with wrap. `HALF`: keep only odd (x, y), placed at (x / 2, y / 2).
    ///
    /// Two passes: flat indices first (arithmetic only), then the scatter, whose cache-missing
    /// loads overlap better in a loop that does nothing else.
    #[inline(always)]
    fn accumulate<const HALF: bool>(&mut self, events: &EventSlice<'_>, t0: i64, t1: i64) {
        let bins = self.config.bins;
        let [_, h, w] = self.shape;
        let plane = h * w;
        let last_bin = bins - 1;
        let bins_f = bins as f64;
        let denom = (t1 - t0).max(1) as f64;
        let n = events.len();
        if self.idx.len() < n {
            self.idx.resize(n, 0);
        }
        let idx = &mut self.idx[..n];
        let mut k = 0;
        for i in 0..n {
            let (t, x, y, p) = (events.t[i], events.x[i], events.y[i], events.p[i]);
            let (x, y) = (usize::from(x), usize::from(y));
            let (keep, x, y) = if HALF {
                ((x & y & 1) == 1, x >> 1, y >> 1)
            } else {
                (true, x, y)
            };
            // Same f64 operations, in the same order, as RVT's `(t - t0) / max(t1 - t0, 1) * bins`.
            let t_norm = (t - t0) as f64 / denom * bins_f;
            // t_norm >= 0 (sorted window), so truncation is floor (and needs no libm call).
            let t_idx = (t_norm as usize).min(last_bin);
            let channel = usize::from(p) * bins + t_idx;
            // In range: validated x < width, y < height, p <= 1; the tensor has < 2^32 cells.
            if let Some(slot) = idx.get_mut(k) {
                *slot = (channel * plane + y * w + x) as u32;
            }
            k += usize::from(keep);
        }
        self.buf.scatter(&self.idx[..k], |v: u8| v.wrapping_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::EventChunk;

    fn events(list: &[(i64, u16, u16, u8)]) -> EventChunk {
        let mut c = EventChunk::default();
        for &(t, x, y, p) in list {
            c.push(t, x, y, p);
        }
        c
    }

    fn at(h: &StackedHistogram, c: usize, y: usize, x: usize) -> u8 {
        let [_, hh, ww] = h.shape();
        h.tensor()[(c * hh + y) * ww + x]
    }

    #[test]
    fn bins_channels_and_cutoff() -> Result<()> {
        let mut h = StackedHistogram::new(HistogramConfig::rvt(8, 4))?;
        let e = events(&[(0, 1, 2, 0), (50, 3, 1, 1), (99, 3, 1, 1), (100, 7, 3, 1)]);
        h.build(e.as_slice())?;
        assert_eq!(at(&h, 0, 2, 1), 1); // t_idx 0, OFF
        assert_eq!(at(&h, 15, 1, 3), 1); // 50/100*10 = 5 -> ON channel 15
        assert_eq!(at(&h, 19, 1, 3), 1); // 9.9 -> 9
        assert_eq!(at(&h, 19, 3, 7), 1); // 10 clamps to 9
        assert_eq!(h.tensor().iter().map(|&v| v as u32).sum::<u32>(), 4);
        Ok(())
    }

    /// The bin RVT's torch code computes: float32 division, float32 multiply.
    fn torch_f32_bin(d: i64, span: i64, bins: usize) -> usize {
        ((d as f32 / span.max(1) as f32 * bins as f32).floor() as usize).min(bins - 1)
    }

    #[test]
    fn f64_binning_equals_torch_float32_for_short_windows() -> Result<()> {
        // Every span up to 200 ms, every event at or next to a bin edge (elsewhere the two
        // roundings are too far from an integer to disagree).
        let mut h = StackedHistogram::new(HistogramConfig::rvt(1, 1))?;
        let t_idx = |h: &mut StackedHistogram, d: i64, span: i64| -> Result<usize> {
            let e = events(&[(0, 0, 0, 0), (d, 0, 0, 1), (span, 0, 0, 0)]);
            let out = h.build(e.as_slice())?;
            Ok((10..20)
                .find(|&c| out[c] == 1)
                .map_or(usize::MAX, |c| c - 10))
        };
        for span in (1..=200_000i64).step_by(7).chain([49_999, 50_000, 50_001]) {
            for k in 1..10 {
                let edge = k * span / 10;
                for d in [edge - 1, edge, edge + 1] {
                    if (0..=span).contains(&d) && d != 0 && d != span {
                        assert_eq!(
                            t_idx(&mut h, d, span)?,
                            torch_f32_bin(d, span, 10),
                            "span {span} d {d}"
                        );
                    }
                }
            }
        }
        Ok(())
    }

    #[test]
    fn wraps_at_256_then_clips() -> Result<()> {
        let mut h = StackedHistogram::new(HistogramConfig::rvt(2, 2))?;
        for (n, want) in [
            (9usize, 9u8),
            (11, 10),
            (255, 10),
            (256, 0),
            (260, 4),
            (512, 0),
        ] {
            let e = events(&vec![(5, 1, 1, 1); n]);
            h.build(e.as_slice())?;
            assert_eq!(at(&h, 10, 1, 1), want, "{n} events");
        }
        Ok(())
    }

    #[test]
    fn single_timestamp_and_single_event_go_to_bin_zero() -> Result<()> {
        let mut h = StackedHistogram::new(HistogramConfig::rvt(4, 4))?;
        h.build(events(&[(7, 0, 0, 1), (7, 1, 0, 0), (7, 1, 0, 0)]).as_slice())?;
        assert_eq!((at(&h, 10, 0, 0), at(&h, 0, 0, 1)), (1, 2));
        h.build(events(&[(123, 3, 3, 0)]).as_slice())?;
        assert_eq!(at(&h, 0, 3, 3), 1);
        assert_eq!(at(&h, 10, 0, 0), 0, "previous window cleared");
        Ok(())
    }

    #[test]
    fn empty_window_is_all_zero() -> Result<()> {
        let mut h = StackedHistogram::new(HistogramConfig::rvt(4, 4))?;
        h.build(events(&[(0, 1, 1, 1)]).as_slice())?;
        assert!(h.build(EventSlice::EMPTY)?.iter().all(|&v| v == 0));
        Ok(())
    }

    #[test]
    fn halving_and_padding() -> Result<()> {
        let cfg = HistogramConfig::rvt(6, 5)
            .with_downsample(true)
            .with_padding(4);
        let mut h = StackedHistogram::new(cfg)?;
        assert_eq!(h.shape(), [20, 4, 4]);
        // Only (odd x, odd y) survive, at (x/2, y/2).
        let e = events(&[(0, 1, 1, 0), (0, 2, 1, 0), (0, 5, 3, 1), (0, 4, 4, 1)]);
        h.build(e.as_slice())?;
        assert_eq!((at(&h, 0, 0, 0), at(&h, 10, 1, 2)), (1, 1));
        assert_eq!(h.tensor().iter().map(|&v| v as u32).sum::<u32>(), 2);
        Ok(())
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() -> Result<()> {
        let mut h = StackedHistogram::new(HistogramConfig::rvt(4, 4))?;
        let r = h.build(events(&[(0, 0, 0, 0), (1, 4, 0, 0)]).as_slice());
        assert!(matches!(
            r,
            Err(EventError::EventOutsideFrame { index: 1, x: 4, .. })
        ));
        let r = h.build(events(&[(0, 0, 3, 2)]).as_slice());
        assert!(matches!(r, Err(EventError::BadPolarity { index: 0, p: 2 })));
        let r = h.build(events(&[(5, 0, 0, 0), (4, 0, 0, 0)]).as_slice());
        assert!(matches!(r, Err(EventError::Unsorted { index: 1, .. })));
        assert!(h.tensor().iter().all(|&v| v == 0));
        assert!(StackedHistogram::new(HistogramConfig::rvt(0, 4)).is_err());
        assert!(StackedHistogram::new(HistogramConfig::rvt(1, 4).with_downsample(true)).is_err());
        let mut f = vec![0f32; 3];
        assert!(h.write_f32(&mut f).is_err());
        Ok(())
    }
}
