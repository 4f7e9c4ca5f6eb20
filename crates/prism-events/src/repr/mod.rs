//! Dense tensor representations of one window of events: RVT's stacked histogram, the
//! bilinear voxel grid and the two-channel event frame.
//!
//! Each builder owns its output buffer and reuses it from window to window: after the first
//! window nothing is allocated. Event data is sparse (a 50 ms window of a 1280x720 recording
//! touches a few thousand of the 18.4 million cells of a histogram), so instead of clearing the
//! whole buffer each builder remembers which cells it wrote (a `DirtyBuffer`) and zeroes only
//! those before the next window, falling back to one `memset` when most of it was written.
//!
//! Input rules shared by all builders (see [`validate`]): events sorted by time, `x < width`,
//! `y < height`, polarity 0 (OFF) or 1 (ON). Anything else is an error, never a panic and never a
//! silent fix: polarity values other than 0 and 1 mean the data did not come from a prism decoder
//! (which only emit 0 and 1) and would index past RVT's two polarity planes. An empty window gives
//! an all-zero tensor.

pub mod downsample;
pub mod frame;
pub mod histogram;
pub mod voxel;

pub use frame::{EventFrame, FrameConfig};
pub use histogram::{HistogramConfig, StackedHistogram};
pub use voxel::{VoxelConfig, VoxelGrid};

use crate::chunk::EventSlice;
use crate::error::{EventError, Result};

/// Largest representation tensor, in cells (2^28: 256 MiB of `u8`, 1 GiB of `f32`): a size
/// beyond it (huge `--bins`, an absurd sensor) is an error, never an allocation failure.
pub const MAX_TENSOR_CELLS: usize = 1 << 28;

/// Errors unless the four arrays of `events` have the same length.
pub(crate) fn check_lengths(events: &EventSlice<'_>) -> Result<()> {
    let n = events.t.len();
    if events.x.len() != n || events.y.len() != n || events.p.len() != n {
        return Err(EventError::InvalidArgument(format!(
            "event arrays differ in length: t {}, x {}, y {}, p {}",
            n,
            events.x.len(),
            events.y.len(),
            events.p.len()
        )));
    }
    Ok(())
}

/// Checks the input rules of the module documentation for a `width` x `height` frame.
///
/// One cheap, vectorisable pass computes the maxima and the sortedness; only when it fails does a
/// second pass find the first offending event for the error.
pub fn validate(events: &EventSlice<'_>, width: usize, height: usize) -> Result<()> {
    check_lengths(events)?;
    let max_x = events.x.iter().copied().max().unwrap_or(0) as usize;
    let max_y = events.y.iter().copied().max().unwrap_or(0) as usize;
    let max_p = events.p.iter().copied().max().unwrap_or(0);
    let sorted = events.t.windows(2).all(|w| w[0] <= w[1]);
    if events.is_empty() || (max_x < width && max_y < height && max_p <= 1 && sorted) {
        return Ok(());
    }
    for i in 0..events.len() {
        let (x, y, p) = (events.x[i], events.y[i], events.p[i]);
        if x as usize >= width || y as usize >= height {
            return Err(EventError::EventOutsideFrame {
                index: i,
                x,
                y,
                width,
                height,
            });
        }
        if p > 1 {
            return Err(EventError::BadPolarity { index: i, p });
        }
        if i > 0 && events.t[i] < events.t[i - 1] {
            return Err(EventError::Unsorted {
                index: i,
                prev: events.t[i - 1],
                t: events.t[i],
            });
        }
    }
    Ok(())
}

/// A dense buffer that remembers which cells were written since the last clear, so that clearing
/// costs the number of written cells rather than the buffer size.
#[derive(Debug, Clone)]
pub(crate) struct DirtyBuffer<T> {
    pub(crate) data: Vec<T>,
    /// `dirty[..n_dirty]`: cells that may be non-zero (duplicates allowed). The vector only
    /// grows; slots past `n_dirty` are scratch for branch-free marking.
    dirty: Vec<u32>,
    n_dirty: usize,
}

impl<T: Copy + Default + PartialEq> DirtyBuffer<T> {
    /// A zeroed buffer of `len` cells; `len` must fit in `u32` indices.
    pub(crate) fn new(len: usize) -> Result<Self> {
        if len > MAX_TENSOR_CELLS {
            return Err(EventError::InvalidArgument(format!(
                "a tensor of {len} cells is larger than the {MAX_TENSOR_CELLS} a representation may have \
                 (a 1280x720 stacked histogram with 10 bins has 18,432,000); use fewer bins or a smaller sensor"
            )));
        }
        Ok(Self {
            data: vec![T::default(); len],
            dirty: Vec::new(),
            n_dirty: 0,
        })
    }

    /// Zeroes every cell written since the last clear.
    pub(crate) fn clear(&mut self) {
        // Past ~1/16 of the buffer, scattered stores cost more than one sequential memset.
        if self.n_dirty > self.data.len() / 16 {
            self.data.fill(T::default());
        } else {
            for &i in &self.dirty[..self.n_dirty] {
                if let Some(v) = self.data.get_mut(i as usize) {
                    *v = T::default();
                }
            }
        }
        self.n_dirty = 0;
    }

    /// Makes room to mark `n` more cells without branching on the data (see [`Self::mark`]).
    pub(crate) fn reserve(&mut self, n: usize) {
        let need = self.n_dirty + n;
        if self.dirty.len() < need {
            self.dirty.resize(need, 0);
        }
    }

    /// Records that cell `i` is about to be written while it holds `current`: only a zero cell
    /// needs recording, any other is already on the list.
    ///
    /// Branch-free after [`Self::reserve`]: the index is always stored and the count advanced only
    /// for a zero cell. A data-dependent branch right after a cache-missing load mispredicts and
    /// throws away the loads in flight; this keeps the scatter loop memory-parallel.
    #[inline(always)]
    pub(crate) fn mark(&mut self, i: u32, current: T) {
        let zero = current == T::default();
        match self.dirty.get_mut(self.n_dirty) {
            Some(slot) => {
                *slot = i;
                self.n_dirty += usize::from(zero);
            }
            None if zero => {
                self.dirty.push(i);
                self.n_dirty += 1;
            }
            None => {}
        }
    }

    /// Scatter-adds `value(old)` into the cells `idx`, marking them, with everything in locals so
    /// the loop keeps many cache-missing loads in flight.
    #[inline(always)]
    pub(crate) fn scatter(&mut self, idx: &[u32], update: impl Fn(T) -> T) {
        self.reserve(idx.len());
        let data = &mut self.data[..];
        let dirty = &mut self.dirty[..];
        let mut n = self.n_dirty;
        for &i in idx {
            if let (Some(v), Some(slot)) = (data.get_mut(i as usize), dirty.get_mut(n)) {
                let old = *v;
                *slot = i;
                n += usize::from(old == T::default());
                *v = update(old);
            }
        }
        self.n_dirty = n;
    }

    /// Applies `f` to every cell written since the last clear (repeats included, so `f` must be
    /// idempotent).
    pub(crate) fn map_dirty(&mut self, f: impl Fn(T) -> T) {
        for &i in &self.dirty[..self.n_dirty] {
            if let Some(v) = self.data.get_mut(i as usize) {
                *v = f(*v);
            }
        }
    }
}

/// `n` rounded up to a multiple of `multiple` (`multiple` 0 or 1: unchanged).
pub(crate) fn round_up(n: usize, multiple: usize) -> usize {
    if multiple <= 1 {
        n
    } else {
        n.div_ceil(multiple) * multiple
    }
}
