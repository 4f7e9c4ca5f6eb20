//! Events of one window → the network's input tensor, as the spec's [`Representation`] says:
//! prism-events' [`StackedHistogram`] (RVT's, bit-exact, with the ×0.5 `nearest-exact` halving),
//! copied as `f32` into a zero-padded `[1, 2 * bins, padded_height, padded_width]` buffer.
//!
//! Both buffers are allocated once; building a window allocates nothing. [`HistogramInput::build_into`]
//! writes into a caller's buffer instead, and [`HistogramInput::update_into`] updates a buffer it
//! wrote the window before (the [`crate::Recurrent`] input tensor of a [`crate::StreamDetector`]):
//! a window's histogram is sparse (a few thousand events against 1.5 M cells at Gen1, 4.6 M at
//! 1Mpx), so instead of converting every cell to `f32` (6 MB of writes per Gen1 window, 18 MB at
//! 1Mpx) it clears the cells the last window set and sets this window's non-zero cells, found by
//! skipping zero bytes 32 at a time.

use prism_core::spec::{Representation, RepresentationKind};
use prism_events::{EventSlice, HistogramConfig, StackedHistogram};

use crate::error::{DeployError, Result};

/// Builds the model input for one window of events into a reused buffer.
#[derive(Debug, Clone)]
pub struct HistogramInput {
    histogram: StackedHistogram,
    /// `[2 * bins, height, width]` of the histogram before padding.
    content: [usize; 3],
    padded_height: usize,
    padded_width: usize,
    /// The `f32` input of [`Self::build`], allocated on its first call.
    input: Vec<f32>,
    shape: [usize; 4],
    /// Cells (indices into the padded input) [`Self::update_into`] set non-zero last time.
    written: Vec<u32>,
}

impl HistogramInput {
    pub fn new(rep: &Representation) -> Result<Self> {
        let RepresentationKind::StackedHistogram = rep.kind;
        if rep.downsample != 1 && rep.downsample != 2 {
            return Err(DeployError::BadSpec(format!(
                "downsample {} is not supported (RVT uses 1 or 2)",
                rep.downsample
            )));
        }
        let config = HistogramConfig {
            bins: rep.bins,
            count_cutoff: rep.count_cutoff,
            width: rep.sensor_width,
            height: rep.sensor_height,
            downsample_by_2: rep.downsample == 2,
            pad_multiple: 1,
        };
        let histogram = StackedHistogram::new(config)?;
        let content = histogram.shape();
        if content[1] > rep.padded_height || content[2] > rep.padded_width {
            return Err(DeployError::BadSpec(format!(
                "the {}x{} histogram does not fit the padded input {}x{}",
                content[2], content[1], rep.padded_width, rep.padded_height
            )));
        }
        let shape = [1, content[0], rep.padded_height, rep.padded_width];
        let cells = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if cells.is_none_or(|n| n > prism_events::repr::MAX_TENSOR_CELLS) {
            return Err(DeployError::BadSpec(format!(
                "the padded input {shape:?} is larger than {} cells",
                prism_events::repr::MAX_TENSOR_CELLS
            )));
        }
        Ok(Self {
            histogram,
            content,
            padded_height: rep.padded_height,
            padded_width: rep.padded_width,
            input: Vec::new(),
            shape,
            written: Vec::new(),
        })
    }

    /// Builds the input for `events` (one window, time-sorted, inside the sensor, polarity 0/1).
    pub fn build(&mut self, events: EventSlice<'_>) -> Result<&[f32]> {
        let mut input = std::mem::take(&mut self.input);
        if input.len() != self.len() {
            input = vec![0.0; self.len()];
        }
        let built = self.build_into(events, &mut input);
        self.input = input;
        built?;
        Ok(&self.input)
    }

    /// Builds the input for `events` into `out` (`product(shape)` values, row-major). Only the
    /// histogram's cells are written: the padding cells of `out` must already be zero (they are
    /// in a buffer that only this method writes after zeroing). On an error `out` is untouched.
    pub fn build_into(&mut self, events: EventSlice<'_>, out: &mut [f32]) -> Result<()> {
        if out.len() != self.len() {
            return Err(DeployError::Input(format!(
                "the input buffer holds {} values; shape {:?} needs {}",
                out.len(),
                self.shape,
                self.len()
            )));
        }
        let hist = self.histogram.build(events)?;
        let [channels, h, w] = self.content;
        let plane = self.padded_height * self.padded_width;
        for c in 0..channels {
            for y in 0..h {
                let src = &hist[(c * h + y) * w..][..w];
                let dst = &mut out[c * plane + y * self.padded_width..][..w];
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = f32::from(s);
                }
            }
        }
        Ok(())
    }

    /// Like [`Self::build_into`], for an `out` that holds exactly what the previous
    /// `update_into` of this `HistogramInput` left there (or zeros, before the first): only the
    /// cells that change are written. Keep one `HistogramInput` per buffer; after writing to
    /// `out` by other means, call [`Self::forget_written`] and zero it. On an error `out` is
    /// untouched.
    pub fn update_into(&mut self, events: EventSlice<'_>, out: &mut [f32]) -> Result<()> {
        let len = self.len();
        if out.len() != len || len > u32::MAX as usize {
            return Err(DeployError::Input(format!(
                "the input buffer holds {} values; shape {:?} needs {len}",
                out.len(),
                self.shape
            )));
        }
        let hist = self.histogram.build(events)?;
        for &i in &self.written {
            out[i as usize] = 0.0;
        }
        self.written.clear();
        let [channels, h, w] = self.content;
        let plane = self.padded_height * self.padded_width;
        for c in 0..channels {
            for y in 0..h {
                let src = &hist[(c * h + y) * w..][..w];
                let base = c * plane + y * self.padded_width;
                let mut x = 0;
                // 32 zero bytes at a time; most of a window's histogram is empty.
                for block in src.chunks_exact(32) {
                    let words = block.chunks_exact(8).fold(0u64, |acc, b| {
                        acc | u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
                    });
                    if words != 0 {
                        for (k, &v) in block.iter().enumerate() {
                            if v != 0 {
                                out[base + x + k] = f32::from(v);
                                self.written.push((base + x + k) as u32);
                            }
                        }
                    }
                    x += 32;
                }
                for (k, &v) in src[x..].iter().enumerate() {
                    if v != 0 {
                        out[base + x + k] = f32::from(v);
                        self.written.push((base + x + k) as u32);
                    }
                }
            }
        }
        Ok(())
    }

    /// Forgets which cells [`Self::update_into`] set, for a buffer that was zeroed or replaced.
    pub fn forget_written(&mut self) {
        self.written.clear();
    }

    fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The input of the last [`Self::build`].
    pub fn input(&self) -> &[f32] {
        &self.input
    }

    /// `[1, 2 * bins, padded_height, padded_width]`.
    pub fn shape(&self) -> &[usize; 4] {
        &self.shape
    }

    /// The unpadded `u8` histogram of the last build and its `[2 * bins, height, width]` shape
    /// (for rendering).
    pub fn histogram(&self) -> (&[u8], [usize; 3]) {
        (self.histogram.tensor(), self.content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prism_events::EventChunk;

    fn rep() -> Representation {
        Representation {
            kind: RepresentationKind::StackedHistogram,
            bins: 1,
            window_us: 50_000,
            count_cutoff: 10,
            sensor_width: 6,
            sensor_height: 5,
            downsample: 2,
            padded_width: 4,
            padded_height: 4,
        }
    }

    #[test]
    fn histogram_lands_top_left_and_padding_stays_zero() -> Result<()> {
        let mut input = HistogramInput::new(&rep())?;
        assert_eq!(input.shape(), &[1, 2, 4, 4]);
        assert_eq!(input.histogram().1, [2, 2, 3]);
        let mut e = EventChunk::default();
        // Odd (x, y) survive the nearest-exact halving at (x / 2, y / 2).
        for (t, x, y, p) in [(0, 5, 3, 1), (1, 5, 3, 1), (2, 1, 1, 0), (3, 2, 2, 0)] {
            e.push(t, x, y, p);
        }
        let got = input.build(e.as_slice())?.to_vec();
        let mut want = vec![0f32; 2 * 16];
        want[0] = 1.0; // OFF, (0, 0)
        want[16 + 4 + 2] = 2.0; // ON, y 1, x 2
        assert_eq!(got, want);
        // The next window overwrites the content; nothing of the previous one survives.
        let mut e = EventChunk::default();
        e.push(10, 3, 1, 0);
        let got = input.build(e.as_slice())?.to_vec();
        let mut want = vec![0f32; 2 * 16];
        want[1] = 1.0;
        assert_eq!(got, want);
        Ok(())
    }

    #[test]
    fn update_into_equals_a_full_build_window_after_window() -> Result<()> {
        let mut r = rep();
        r.sensor_width = 90;
        r.sensor_height = 40;
        r.downsample = 1;
        r.padded_width = 96;
        r.padded_height = 64;
        let mut full = HistogramInput::new(&r)?;
        let mut incremental = HistogramInput::new(&r)?;
        let mut out = vec![0f32; 2 * 96 * 64];
        for k in 0..5u16 {
            let mut e = EventChunk::default();
            for i in 0..(200 + 300 * i64::from(k)) {
                let i16 = i as u16;
                e.push(
                    i,
                    (i16 * 7 + k * 13) % 90,
                    (i16 * 3 + k) % 40,
                    (i16 % 2) as u8,
                );
            }
            incremental.update_into(e.as_slice(), &mut out)?;
            assert_eq!(out, full.build(e.as_slice())?.to_vec(), "window {k}");
        }
        // A failing window leaves the buffer as it was.
        let before = out.clone();
        let mut bad = EventChunk::default();
        bad.push(0, 500, 1, 0);
        assert!(incremental.update_into(bad.as_slice(), &mut out).is_err());
        assert_eq!(out, before);
        Ok(())
    }

    #[test]
    fn unsupported_sizes_are_errors() {
        let mut r = rep();
        r.downsample = 3;
        assert!(HistogramInput::new(&r).is_err());
        let mut r = rep();
        r.padded_width = 2;
        assert!(HistogramInput::new(&r).is_err());
    }
}
