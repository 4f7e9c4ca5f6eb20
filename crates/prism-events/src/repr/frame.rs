//! Two-channel event frame: events per pixel and polarity, `f32 [2, height, width]` (channel 0 OFF,
//! channel 1 ON), optionally clipped. An empty window gives all zeros.

use super::{validate, DirtyBuffer};
use crate::chunk::EventSlice;
use crate::error::{EventError, Result};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameConfig {
    pub width: usize,
    pub height: usize,
    /// Counts above this are clipped to it.
    pub clip: Option<f32>,
}

/// Builds event frames window after window into one reused buffer.
#[derive(Debug, Clone)]
pub struct EventFrame {
    config: FrameConfig,
    buf: DirtyBuffer<f32>,
}

impl EventFrame {
    pub fn new(config: FrameConfig) -> Result<Self> {
        if config.width == 0
            || config.height == 0
            || config.clip.is_some_and(|c| c.is_nan() || c < 0.0)
        {
            return Err(EventError::InvalidArgument(format!(
                "event frame needs width, height >= 1 and a clip >= 0 (got {}x{}, {:?})",
                config.width, config.height, config.clip
            )));
        }
        Ok(Self {
            config,
            buf: DirtyBuffer::new(2 * config.height * config.width)?,
        })
    }

    /// `[2, height, width]`.
    pub fn shape(&self) -> [usize; 3] {
        [2, self.config.height, self.config.width]
    }

    /// The frame of `events` (time-sorted). Errors leave all zeros behind.
    pub fn build(&mut self, events: EventSlice<'_>) -> Result<&[f32]> {
        self.buf.clear();
        let FrameConfig {
            width,
            height,
            clip,
        } = self.config;
        validate(&events, width, height)?;
        let plane = width * height;
        let buf = &mut self.buf;
        buf.reserve(events.len());
        for i in 0..events.len() {
            let idx = usize::from(events.p[i]) * plane
                + usize::from(events.y[i]) * width
                + usize::from(events.x[i]);
            if let Some(v) = buf.data.get(idx).copied() {
                buf.mark(idx as u32, v);
                buf.data[idx] = v + 1.0;
            }
        }
        if let Some(c) = clip {
            buf.map_dirty(|v| v.min(c));
        }
        Ok(&self.buf.data)
    }

    /// The frame of the last [`Self::build`].
    pub fn tensor(&self) -> &[f32] {
        &self.buf.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::EventChunk;

    #[test]
    fn counts_per_polarity_with_clip() -> Result<()> {
        let mut f = EventFrame::new(FrameConfig {
            width: 2,
            height: 1,
            clip: Some(2.0),
        })?;
        let mut c = EventChunk::default();
        for _ in 0..3 {
            c.push(0, 1, 0, 1);
        }
        c.push(1, 0, 0, 0);
        assert_eq!(f.build(c.as_slice())?, &[1.0, 0.0, 0.0, 2.0]);
        assert_eq!(f.build(EventSlice::EMPTY)?, &[0.0; 4]);
        assert!(EventFrame::new(FrameConfig {
            width: 2,
            height: 1,
            clip: Some(f32::NAN)
        })
        .is_err());
        Ok(())
    }
}
