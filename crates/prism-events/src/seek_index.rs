//! A sparse index of resume points, built while a stateful decoder (EVT2, EVT3) runs: every
//! `STRIDE` bytes, the offset of a TIME_HIGH word, the time it sets and the decoder state just
//! before it. A seek resumes at the last point before the target instead of the file start.

/// Bytes of stream between two resume points.
const STRIDE: u64 = 256 * 1024;

#[derive(Debug, Clone)]
struct Point<S> {
    offset: u64,
    t: i64,
    state: S,
}

#[derive(Debug, Clone)]
pub struct SeekIndex<S> {
    points: Vec<Point<S>>,
    /// The next point is recorded at or after this offset.
    next_offset: u64,
}

impl<S: Copy> SeekIndex<S> {
    pub fn new() -> Self {
        Self {
            points: Vec::new(),
            next_offset: 0,
        }
    }

    /// Offers a resume point: the word at `offset` sets time `t`; `state` is the decoder state
    /// before that word. Kept only when far enough from the last point and not earlier in time,
    /// so the points stay sorted by offset and by time.
    #[inline(always)]
    pub fn record(&mut self, offset: u64, t: i64, state: S) {
        if offset >= self.next_offset {
            self.record_slow(offset, t, state);
        }
    }

    #[cold]
    fn record_slow(&mut self, offset: u64, t: i64, state: S) {
        if self.points.last().is_some_and(|p| p.t > t) {
            return;
        }
        self.points.push(Point { offset, t, state });
        self.next_offset = offset + STRIDE;
    }

    /// Offset from which [`SeekIndex::record`] keeps a point.
    #[inline]
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// The last point whose time is before `t_us`: every event before it is earlier than
    /// `t_us` in a time-ordered stream. `None` means: start from the beginning.
    pub fn resume_point(&self, t_us: i64) -> Option<(u64, S)> {
        let idx = self.points.partition_point(|p| p.t < t_us);
        let point = self.points.get(idx.checked_sub(1)?)?;
        Some((point.offset, point.state))
    }
}

impl<S: Copy> Default for SeekIndex<S> {
    fn default() -> Self {
        Self::new()
    }
}
