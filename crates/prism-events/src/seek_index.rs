//! A sparse index of resume points, built while a decoder runs: every `stride` units of the
//! reader's offsets (bytes, or events for HDF5), the offset of a point where decoding can
//! restart, the decoder state just before it, and the largest timestamp seen before it.
//!
//! Points are looked up by that running maximum, not by the time at the point, which is what
//! makes seeking exact when timestamps go backwards: every event before a point whose maximum
//! is below the target has a (clamped) time below the target, so nothing before the point can
//! belong to the answer, and the decoder resumes with the same maximum a full read would have.

/// Bytes of stream between two resume points of the byte-addressed formats.
pub const BYTE_STRIDE: u64 = 256 * 1024;

#[derive(Debug, Clone)]
struct Point<S> {
    offset: u64,
    max_before: i64,
    state: S,
}

/// Where a seek restarts: the offset, the running maximum of the times before it, and the
/// decoder state there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumePoint<S> {
    pub offset: u64,
    pub max_before: i64,
    pub state: S,
}

#[derive(Debug, Clone)]
pub struct SeekIndex<S> {
    points: Vec<Point<S>>,
    stride: u64,
    /// The next point is recorded at or after this offset.
    next_offset: u64,
}

impl<S: Copy> SeekIndex<S> {
    /// An empty index keeping one point every `stride` offset units.
    pub fn new(stride: u64) -> Self {
        Self {
            points: Vec::new(),
            stride: stride.max(1),
            next_offset: 0,
        }
    }

    /// Offers a resume point: decoding can restart at `offset` with `state`; `max_before` is
    /// the largest timestamp seen before it. Kept only when far enough past the last point, so
    /// the points stay sorted by offset, and so by running maximum.
    #[inline(always)]
    pub fn record(&mut self, offset: u64, max_before: i64, state: S) {
        if offset >= self.next_offset {
            self.record_slow(offset, max_before, state);
        }
    }

    #[cold]
    fn record_slow(&mut self, offset: u64, max_before: i64, state: S) {
        if self
            .points
            .last()
            .is_some_and(|p| p.max_before > max_before)
        {
            // Only a decoder that lost the running maximum could offer this; never trust it.
            return;
        }
        self.points.push(Point {
            offset,
            max_before,
            state,
        });
        self.next_offset = offset.saturating_add(self.stride);
    }

    /// Offset from which [`SeekIndex::record`] keeps a point.
    #[inline]
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// The last point before which every timestamp is below `t_us`. `None` means: start
    /// from the beginning.
    pub fn resume_point(&self, t_us: i64) -> Option<ResumePoint<S>> {
        let idx = self.points.partition_point(|p| p.max_before < t_us);
        let point = self.points.get(idx.checked_sub(1)?)?;
        Some(ResumePoint {
            offset: point.offset,
            max_before: point.max_before,
            state: point.state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_points_follow_the_running_maximum() {
        let mut index = SeekIndex::new(10);
        index.record(0, i64::MIN, 'a');
        index.record(5, 100, 'x'); // too close: dropped
        index.record(10, 100, 'b');
        index.record(20, 100, 'c');
        index.record(30, 250, 'd');
        assert_eq!(index.resume_point(i64::MIN), None);
        assert_eq!(index.resume_point(50).map(|p| p.state), Some('a'));
        // The last point whose maximum is below the target, not the first.
        assert_eq!(index.resume_point(101).map(|p| p.state), Some('c'));
        assert_eq!(index.resume_point(100).map(|p| p.state), Some('a'));
        let last = index.resume_point(i64::MAX).unwrap();
        assert_eq!((last.offset, last.max_before, last.state), (30, 250, 'd'));
    }

    #[test]
    fn a_lower_maximum_after_a_higher_one_is_refused() {
        let mut index = SeekIndex::new(1);
        index.record(0, 100, 0u8);
        index.record(1, 50, 1u8);
        assert_eq!(index.resume_point(i64::MAX).map(|p| p.offset), Some(0));
    }
}
