//! Time windows over a sorted event stream, cut the way RVT cuts them.
//!
//! A window ends at `T` on a grid (`first_end + k * step`) and holds the events with
//! `T - length <= t <= T`: RVT's `[searchsorted(t, T - length, 'left'), searchsorted(t, T, 'right'))`,
//! both ends inclusive. The slicer is streaming: events arrive in chunks of any size, a window
//! is handed out as soon as an event after its end has been seen (or the stream is finished),
//! and only events that can still fall in a future window are kept. The windows it hands out
//! do not depend on how the stream was chunked.
//!
//! A window with no events is still handed out, with an empty [`EventSlice`]; every
//! representation turns it into an all-zero tensor.
//!
//! Ends come from a grid ([`WindowSlicer::new`]) or from a list ([`WindowSlicer::with_ends`]):
//! RVT's preprocessing computes window ends from the label times, which are not a grid when the
//! label clock jitters.

use crate::chunk::{EventChunk, EventSlice};
use crate::error::{EventError, Result};

/// Where windows end and how long they are, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowConfig {
    /// Window duration; RVT uses 50 ms.
    pub length_us: i64,
    /// Distance between consecutive window ends; RVT uses the window length.
    pub step_us: i64,
    /// End of the first window. `None`: the first multiple of `step_us` at or after the first
    /// event. Events before `first_end_us - length_us` are skipped.
    pub first_end_us: Option<i64>,
}

impl WindowConfig {
    /// Back-to-back windows of `length_us`, ends on multiples of the length.
    pub fn new(length_us: i64) -> Self {
        Self {
            length_us,
            step_us: length_us,
            first_end_us: None,
        }
    }

    /// RVT's preprocessing: 50 ms windows every 50 ms.
    pub fn rvt() -> Self {
        Self::new(50_000)
    }

    pub fn with_step(mut self, step_us: i64) -> Self {
        self.step_us = step_us;
        self
    }

    pub fn with_first_end(mut self, first_end_us: i64) -> Self {
        self.first_end_us = Some(first_end_us);
        self
    }

    fn validate(&self) -> Result<()> {
        if self.length_us <= 0 || self.step_us <= 0 {
            return Err(EventError::InvalidArgument(format!(
                "window length ({} µs) and step ({} µs) must be positive",
                self.length_us, self.step_us
            )));
        }
        Ok(())
    }

    /// The first grid end at or after `t` (multiples of the step).
    pub fn first_end_for(&self, t: i64) -> i64 {
        let k = t.div_euclid(self.step_us);
        let end = k * self.step_us;
        if end < t {
            end + self.step_us
        } else {
            end
        }
    }
}

/// One window: its end time and a borrowed view of its events.
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    /// Window number, counting from 0 at the first window end.
    pub index: u64,
    /// The window's end `T` (inclusive); its start `T - length` is inclusive too.
    pub end_us: i64,
    pub start_us: i64,
    /// Position of the window's first event in the whole stream (what `searchsorted` returns).
    pub first_event: u64,
    pub events: EventSlice<'a>,
}

impl Window<'_> {
    /// Stream positions `[first, last + 1)` of the window's events.
    pub fn event_range(&self) -> std::ops::Range<u64> {
        self.first_event..self.first_event + self.events.len() as u64
    }
}

/// Cuts a time-sorted event stream into windows; see the module documentation.
///
/// ```
/// # use prism_events::{EventChunk, window::{WindowConfig, WindowSlicer}};
/// let mut events = EventChunk::default();
/// for t in [10, 20, 50, 70] { events.push(t, 0, 0, 1); }
/// let mut slicer = WindowSlicer::new(WindowConfig::new(50))?;
/// slicer.push(events.as_slice())?;
/// slicer.finish();
/// let mut sizes = Vec::new();
/// while let Some(w) = slicer.next_window() { sizes.push((w.end_us, w.events.len())); }
/// assert_eq!(sizes, [(50, 3), (100, 2)]); // t = 50 lies in both windows
/// # Ok::<(), prism_events::EventError>(())
/// ```
#[derive(Debug)]
pub struct WindowSlicer {
    config: WindowConfig,
    /// Events kept for the current and future windows; those before `head` are stale.
    buf: EventChunk,
    head: usize,
    /// Stream position of `buf[0]`.
    base: u64,
    /// Events seen so far (the stream position of the next pushed event).
    seen: u64,
    next_end: Option<i64>,
    next_index: u64,
    last_t: Option<i64>,
    finished: bool,
    /// Listed window ends ([`Self::with_ends`]); `None` on a grid.
    listed: Option<Vec<i64>>,
}

impl WindowSlicer {
    pub fn new(config: WindowConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            buf: EventChunk::default(),
            head: 0,
            base: 0,
            seen: 0,
            next_end: config.first_end_us,
            next_index: 0,
            last_t: None,
            finished: false,
            listed: None,
        })
    }

    /// Windows of `length_us` ending exactly at `ends` (strictly increasing), and nowhere else.
    /// Every listed window is handed out once events after its end arrive or the stream is
    /// finished, also when it holds no event (RVT builds a representation for every end).
    pub fn with_ends(length_us: i64, ends: Vec<i64>) -> Result<Self> {
        if ends.windows(2).any(|w| w[0] >= w[1]) {
            return Err(EventError::InvalidArgument(
                "window ends must be strictly increasing".into(),
            ));
        }
        let config = WindowConfig::new(length_us);
        let mut slicer = Self::new(match ends.first() {
            Some(&first) => config.with_first_end(first),
            None => config,
        })?;
        slicer.next_end = ends.first().copied();
        slicer.listed = Some(ends);
        Ok(slicer)
    }

    pub fn config(&self) -> &WindowConfig {
        &self.config
    }

    /// End of the next window to come, once known (after the first event on a grid).
    pub fn next_end(&self) -> Option<i64> {
        self.next_end
    }

    /// Events currently held (bounded by the events of one window plus the last pushed chunk).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.head
    }

    /// Appends the next events of the stream. They must not go back in time, within the chunk
    /// or against the previous one ([`EventError::Unsorted`]); nothing is appended then.
    pub fn push(&mut self, events: EventSlice<'_>) -> Result<()> {
        if self.finished {
            return Err(EventError::InvalidArgument(
                "WindowSlicer::push after finish".into(),
            ));
        }
        crate::repr::check_lengths(&events)?;
        check_sorted(events.t, self.last_t, self.seen)?;
        let Some(&last) = events.t.last() else {
            return Ok(());
        };
        let next_end = match (&self.listed, self.next_end) {
            (_, Some(end)) => end,
            (None, None) => *self.next_end.insert(self.config.first_end_for(events.t[0])),
            // Every listed window has been handed out: nothing more to keep.
            (Some(_), None) => {
                self.seen += events.len() as u64;
                self.last_t = Some(last);
                return Ok(());
            }
        };
        // Drop what no future window can hold, then append only what a window can still hold.
        let start = next_end - self.config.length_us;
        let stale = self.head + self.buf.t[self.head..].partition_point(|&t| t < start);
        self.buf.drain_front(stale);
        self.base += stale as u64;
        self.head = 0;
        let skip = events.t.partition_point(|&t| t < start);
        if self.buf.is_empty() {
            self.base = self.seen + skip as u64;
        }
        let tail = events.slice(skip..events.len());
        self.buf.t.extend_from_slice(tail.t);
        self.buf.x.extend_from_slice(tail.x);
        self.buf.y.extend_from_slice(tail.y);
        self.buf.p.extend_from_slice(tail.p);
        self.seen += events.len() as u64;
        self.last_t = Some(last);
        Ok(())
    }

    /// Marks the end of the stream: the remaining windows that can hold events become ready.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// The next complete window, or `None` until more events (or [`Self::finish`]) arrive.
    ///
    /// A window ending at `T` is complete once an event after `T` has been pushed. After
    /// `finish`, windows on a grid keep coming while their start is at or before the last event;
    /// listed windows keep coming until the list ends.
    pub fn next_window(&mut self) -> Option<Window<'_>> {
        let end = self.next_end?;
        let start = end - self.config.length_us;
        let after_end = self.last_t.is_some_and(|last| last > end);
        let ready = after_end
            || (self.finished
                && (self.listed.is_some() || self.last_t.is_some_and(|last| start <= last)));
        if !ready {
            return None;
        }
        let t = &self.buf.t;
        self.head += t[self.head..].partition_point(|&t| t < start);
        let stop = self.head + t[self.head..].partition_point(|&t| t <= end);
        let window = Window {
            index: self.next_index,
            end_us: end,
            start_us: start,
            first_event: self.base + self.head as u64,
            events: self.buf.as_slice().slice(self.head..stop),
        };
        self.next_end = match &self.listed {
            None => Some(end + self.config.step_us),
            Some(ends) => ends.get(self.next_index as usize + 1).copied(),
        };
        self.next_index += 1;
        Some(window)
    }
}

/// `Ok` when `t` is non-decreasing and does not start before `prev`; `offset` is the stream
/// position of `t[0]`, for the error.
fn check_sorted(t: &[i64], prev: Option<i64>, offset: u64) -> Result<()> {
    let mut before = prev.unwrap_or(i64::MIN);
    // Fast path: one branch-free pass; the slow pass only finds the culprit.
    let sorted = t.first().is_none_or(|&f| f >= before) && t.windows(2).all(|w| w[0] <= w[1]);
    if sorted {
        return Ok(());
    }
    for (i, &ti) in t.iter().enumerate() {
        if ti < before {
            return Err(EventError::Unsorted {
                index: (offset as usize).saturating_add(i),
                prev: before,
                t: ti,
            });
        }
        before = ti;
    }
    Ok(())
}

/// Window ends and stream ranges of every window of an in-memory, sorted event array: the
/// non-streaming form of [`WindowSlicer`] (same windows).
pub fn window_ranges(
    events: EventSlice<'_>,
    config: WindowConfig,
) -> Result<Vec<(i64, std::ops::Range<usize>)>> {
    let mut slicer = WindowSlicer::new(config)?;
    slicer.push(events)?;
    slicer.finish();
    let mut out = Vec::new();
    while let Some(w) = slicer.next_window() {
        let r = w.event_range();
        out.push((w.end_us, r.start as usize..r.end as usize));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(ts: &[i64]) -> EventChunk {
        let mut c = EventChunk::default();
        for &t in ts {
            c.push(t, 1, 2, 1);
        }
        c
    }

    #[test]
    fn both_ends_inclusive() -> Result<()> {
        let c = chunk(&[0, 10, 50, 50, 99, 100, 100, 101, 150]);
        let w = window_ranges(c.as_slice(), WindowConfig::new(50))?;
        // Ends 0, 50, ...; the last window (200) starts at 150, the last event, inclusive.
        assert_eq!(
            w,
            vec![(0, 0..1), (50, 0..4), (100, 2..7), (150, 5..9), (200, 8..9)]
        );
        Ok(())
    }

    #[test]
    fn empty_windows_are_handed_out() -> Result<()> {
        let c = chunk(&[10, 260]);
        let w = window_ranges(c.as_slice(), WindowConfig::new(50))?;
        let ends: Vec<_> = w.iter().map(|(e, r)| (*e, r.len())).collect();
        assert_eq!(
            ends,
            vec![(50, 1), (100, 0), (150, 0), (200, 0), (250, 0), (300, 1)]
        );
        Ok(())
    }

    #[test]
    fn first_end_and_step() -> Result<()> {
        let c = chunk(&[0, 10, 20, 30, 40, 50]);
        let cfg = WindowConfig::new(20).with_step(30).with_first_end(15);
        let w = window_ranges(c.as_slice(), cfg)?;
        // Ends 15, 45; window 75 starts at 55 > 50.
        assert_eq!(w, vec![(15, 0..2), (45, 3..5)]);
        Ok(())
    }

    #[test]
    fn no_events_no_windows() -> Result<()> {
        let w = window_ranges(EventSlice::EMPTY, WindowConfig::rvt())?;
        assert!(w.is_empty());
        Ok(())
    }

    #[test]
    fn unsorted_is_an_error() {
        let c = chunk(&[0, 10, 5]);
        let err = window_ranges(c.as_slice(), WindowConfig::new(50));
        assert!(matches!(
            err,
            Err(EventError::Unsorted {
                index: 2,
                prev: 10,
                t: 5
            })
        ));
        let mut s = WindowSlicer::new(WindowConfig::new(50)).ok();
        let s = s.as_mut().map(|s| {
            s.push(chunk(&[10]).as_slice())
                .and_then(|_| s.push(chunk(&[9]).as_slice()))
        });
        assert!(matches!(
            s,
            Some(Err(EventError::Unsorted { index: 1, .. }))
        ));
    }

    #[test]
    fn listed_ends_are_the_only_windows() -> Result<()> {
        let c = chunk(&[0, 10, 60, 100, 130, 400]);
        let mut slicer = WindowSlicer::with_ends(50, vec![20, 60, 140, 300, 900])?;
        slicer.push(c.as_slice())?;
        let mut got = Vec::new();
        // 900 is not complete before the stream ends.
        while let Some(w) = slicer.next_window() {
            got.push((w.end_us, w.event_range()));
        }
        assert_eq!(got, vec![(20, 0..2), (60, 1..3), (140, 3..5), (300, 5..5)]);
        slicer.finish();
        let last = slicer.next_window().map(|w| (w.end_us, w.events.len()));
        assert_eq!(last, Some((900, 0)));
        assert!(slicer.next_window().is_none());
        // Listed windows come also without any event once the stream is finished.
        let mut empty = WindowSlicer::with_ends(50, vec![100, 200])?;
        empty.finish();
        assert_eq!(empty.next_window().map(|w| w.end_us), Some(100));
        assert_eq!(empty.next_window().map(|w| w.end_us), Some(200));
        assert!(empty.next_window().is_none());
        assert!(WindowSlicer::with_ends(50, vec![100, 100]).is_err());
        Ok(())
    }

    #[test]
    fn bad_config_is_an_error() {
        assert!(WindowSlicer::new(WindowConfig::new(0)).is_err());
        assert!(WindowSlicer::new(WindowConfig::new(10).with_step(-1)).is_err());
    }
}
