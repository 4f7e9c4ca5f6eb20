//! Bilinear voxel grid (Zhu et al. 2019), as tonic's `to_voxel_grid_numpy` computes it.
//!
//! For the events of one window, with `t0` and `t1` its first and last timestamps:
//!
//! ```text
//! ts   = bins * (t - t0) / (t1 - t0)          // f64; t1 == t0 (one timestamp): ts = 0
//! ti   = floor(ts);  dt = ts - ti;  pol = -1 (p = 0) or +1 (p = 1)
//! grid[ti,     y, x] += pol * (1 - dt)        if ti     < bins
//! grid[ti + 1, y, x] += pol * dt              if ti + 1 < bins
//! ```
//!
//! So the last event (`ts = bins`) falls entirely beyond the last bin and is dropped, as in tonic.
//! tonic divides by zero when all events share one timestamp; here they all go to bin 0 with full
//! weight. The grid is accumulated in `f32` in tonic's order (all left halves, then all right
//! halves), so it equals tonic's float64 grid up to `f32` rounding. Output: `f32 [bins, height,
//! width]`; an empty window gives all zeros.

use super::{validate, DirtyBuffer};
use crate::chunk::EventSlice;
use crate::error::{EventError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoxelConfig {
    pub bins: usize,
    pub width: usize,
    pub height: usize,
}

/// Builds voxel grids window after window into one reused buffer.
#[derive(Debug, Clone)]
pub struct VoxelGrid {
    config: VoxelConfig,
    buf: DirtyBuffer<f32>,
}

impl VoxelGrid {
    pub fn new(config: VoxelConfig) -> Result<Self> {
        if config.bins == 0 || config.width == 0 || config.height == 0 {
            return Err(EventError::InvalidArgument(format!(
                "voxel grid needs bins, width and height >= 1 (got {} bins, {}x{})",
                config.bins, config.width, config.height
            )));
        }
        Ok(Self {
            config,
            buf: DirtyBuffer::new(config.bins * config.height * config.width)?,
        })
    }

    /// `[bins, height, width]`.
    pub fn shape(&self) -> [usize; 3] {
        [self.config.bins, self.config.height, self.config.width]
    }

    /// The voxel grid of `events` (one window, time-sorted). Errors leave all zeros behind.
    pub fn build(&mut self, events: EventSlice<'_>) -> Result<&[f32]> {
        self.buf.clear();
        let VoxelConfig {
            bins,
            width,
            height,
        } = self.config;
        validate(&events, width, height)?;
        let (Some(&t0), Some(&t1)) = (events.t.first(), events.t.last()) else {
            return Ok(&self.buf.data);
        };
        let plane = width * height;
        let bins_f = bins as f64;
        let denom = (t1 - t0) as f64;
        let buf = &mut self.buf;
        buf.reserve(2 * events.len());
        // tonic adds all left halves first, then all right halves: same order, same sums.
        for right in [false, true] {
            for i in 0..events.len() {
                let ts = if t1 == t0 {
                    0.0
                } else {
                    bins_f * (events.t[i] - t0) as f64 / denom
                };
                let ti = ts as usize; // truncation = floor, ts >= 0
                let dt = ts - ti as f64;
                let pol = if events.p[i] == 0 { -1.0 } else { 1.0 };
                let (bin, value) = if right {
                    (ti + 1, pol * dt)
                } else {
                    (ti, pol * (1.0 - dt))
                };
                if bin >= bins {
                    continue;
                }
                let idx = bin * plane + usize::from(events.y[i]) * width + usize::from(events.x[i]);
                if let Some(v) = buf.data.get(idx).copied() {
                    buf.mark(idx as u32, v);
                    buf.data[idx] = v + value as f32;
                }
            }
        }
        Ok(&self.buf.data)
    }

    /// The grid of the last [`Self::build`].
    pub fn tensor(&self) -> &[f32] {
        &self.buf.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::EventChunk;

    #[test]
    fn bilinear_split_and_last_event_dropped() -> Result<()> {
        let mut g = VoxelGrid::new(VoxelConfig {
            bins: 4,
            width: 3,
            height: 2,
        })?;
        let mut c = EventChunk::default();
        c.push(0, 0, 0, 1); // ts 0: +1 to bin 0
        c.push(30, 1, 0, 0); // ts 1.2: -0.8 bin 1, -0.2 bin 2
        c.push(100, 2, 1, 1); // ts 4: dropped
        let v = g.build(c.as_slice())?.to_vec();
        assert_eq!(v[0], 1.0);
        assert!((v[6 + 1] + 0.8).abs() < 1e-6 && (v[12 + 1] + 0.2).abs() < 1e-6);
        assert_eq!(v.iter().filter(|&&x| x != 0.0).count(), 3);
        Ok(())
    }

    #[test]
    fn one_timestamp_and_empty() -> Result<()> {
        let mut g = VoxelGrid::new(VoxelConfig {
            bins: 2,
            width: 2,
            height: 2,
        })?;
        let mut c = EventChunk::default();
        c.push(5, 1, 1, 0);
        c.push(5, 1, 1, 0);
        assert_eq!(g.build(c.as_slice())?[3], -2.0);
        assert!(g.build(EventSlice::EMPTY)?.iter().all(|&v| v == 0.0));
        c.push(6, 2, 0, 0);
        assert!(matches!(
            g.build(c.as_slice()),
            Err(EventError::EventOutsideFrame { .. })
        ));
        Ok(())
    }
}
