//! Events of one window → the network's input tensor, as the spec's [`Representation`] says:
//! prism-events' [`StackedHistogram`] (RVT's, bit-exact, with the ×0.5 `nearest-exact` halving),
//! copied as `f32` into a zero-padded `[1, 2 * bins, padded_height, padded_width]` buffer.
//!
//! Both buffers are allocated once; building a window allocates nothing.

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
    input: Vec<f32>,
    shape: [usize; 4],
}

impl HistogramInput {
    pub fn new(rep: &Representation) -> Result<Self> {
        let RepresentationKind::StackedHistogram = rep.kind;
        if rep.downsample != 1 && rep.downsample != 2 {
            return Err(DeployError::Task(format!(
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
            return Err(DeployError::Task(format!(
                "the {}x{} histogram does not fit the padded input {}x{}",
                content[2], content[1], rep.padded_width, rep.padded_height
            )));
        }
        let shape = [1, content[0], rep.padded_height, rep.padded_width];
        Ok(Self {
            histogram,
            content,
            padded_height: rep.padded_height,
            padded_width: rep.padded_width,
            input: vec![0.0; shape.iter().product()],
            shape,
        })
    }

    /// Builds the input for `events` (one window, time-sorted, inside the sensor, polarity 0/1).
    pub fn build(&mut self, events: EventSlice<'_>) -> Result<&[f32]> {
        let hist = self.histogram.build(events)?;
        let [channels, h, w] = self.content;
        let plane = self.padded_height * self.padded_width;
        // Padding cells are never written, so they stay zero from the allocation.
        for c in 0..channels {
            for y in 0..h {
                let src = &hist[(c * h + y) * w..][..w];
                let dst = &mut self.input[c * plane + y * self.padded_width..][..w];
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = f32::from(s);
                }
            }
        }
        Ok(&self.input)
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
    fn unsupported_sizes_are_errors() {
        let mut r = rep();
        r.downsample = 3;
        assert!(HistogramInput::new(&r).is_err());
        let mut r = rep();
        r.padded_width = 2;
        assert!(HistogramInput::new(&r).is_err());
    }
}
