//! The structure-of-arrays event chunk every decoder fills.

/// A run of events as four parallel arrays: timestamp (µs), x, y, polarity (0 = OFF, 1 = ON).
///
/// Decoders clear and refill a chunk in place, so its buffers are reused from one read to the next.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EventChunk {
    pub t: Vec<i64>,
    pub x: Vec<u16>,
    pub y: Vec<u16>,
    pub p: Vec<u8>,
}

impl EventChunk {
    /// An empty chunk with room for `capacity` events.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            t: Vec::with_capacity(capacity),
            x: Vec::with_capacity(capacity),
            y: Vec::with_capacity(capacity),
            p: Vec::with_capacity(capacity),
        }
    }

    pub fn len(&self) -> usize {
        self.t.len()
    }

    pub fn is_empty(&self) -> bool {
        self.t.is_empty()
    }

    /// Sets the length to `n`, padding with zero events: what [`Slots`] writers size a chunk
    /// to before decoding (a chunk reused from a full read is already that long).
    pub(crate) fn resize(&mut self, n: usize) {
        self.t.resize(n, 0);
        self.x.resize(n, 0);
        self.y.resize(n, 0);
        self.p.resize(n, 0);
    }

    /// Removes all events, keeping the allocations.
    pub fn clear(&mut self) {
        self.t.clear();
        self.x.clear();
        self.y.clear();
        self.p.clear();
    }

    #[inline]
    pub fn push(&mut self, t: i64, x: u16, y: u16, p: u8) {
        self.t.push(t);
        self.x.push(x);
        self.y.push(y);
        self.p.push(p);
    }

    /// Appends all events of `other`.
    pub fn extend_from(&mut self, other: &EventChunk) {
        self.t.extend_from_slice(&other.t);
        self.x.extend_from_slice(&other.x);
        self.y.extend_from_slice(&other.y);
        self.p.extend_from_slice(&other.p);
    }

    /// Drops the first `n` events (all of them if `n >= len`).
    pub fn drain_front(&mut self, n: usize) {
        let n = n.min(self.len());
        self.t.drain(..n);
        self.x.drain(..n);
        self.y.drain(..n);
        self.p.drain(..n);
    }

    /// Keeps only the first `n` events.
    pub fn truncate(&mut self, n: usize) {
        self.t.truncate(n);
        self.x.truncate(n);
        self.y.truncate(n);
        self.p.truncate(n);
    }
}

impl EventChunk {
    /// A borrowed view of all events of the chunk.
    pub fn as_slice(&self) -> EventSlice<'_> {
        EventSlice {
            t: &self.t,
            x: &self.x,
            y: &self.y,
            p: &self.p,
        }
    }
}

/// A borrowed run of events: four parallel slices of equal length, the view the windowing and
/// the tensor representations work on (no copy of the decoder's chunk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSlice<'a> {
    pub t: &'a [i64],
    pub x: &'a [u16],
    pub y: &'a [u16],
    pub p: &'a [u8],
}

impl<'a> EventSlice<'a> {
    /// A view over four parallel arrays; `None` when their lengths differ.
    pub fn new(t: &'a [i64], x: &'a [u16], y: &'a [u16], p: &'a [u8]) -> Option<Self> {
        let n = t.len();
        (x.len() == n && y.len() == n && p.len() == n).then_some(Self { t, x, y, p })
    }

    /// The view with no events.
    pub const EMPTY: EventSlice<'static> = EventSlice {
        t: &[],
        x: &[],
        y: &[],
        p: &[],
    };

    pub fn len(&self) -> usize {
        self.t.len()
    }

    pub fn is_empty(&self) -> bool {
        self.t.is_empty()
    }

    /// The events `range` of this view. Panics like slice indexing when out of range.
    pub fn slice(&self, range: std::ops::Range<usize>) -> EventSlice<'a> {
        EventSlice {
            t: &self.t[range.clone()],
            x: &self.x[range.clone()],
            y: &self.y[range.clone()],
            p: &self.p[range],
        }
    }

    /// Copies the events into an owned chunk.
    pub fn to_chunk(&self) -> EventChunk {
        EventChunk {
            t: self.t.to_vec(),
            x: self.x.to_vec(),
            y: self.y.to_vec(),
            p: self.p.to_vec(),
        }
    }
}

impl<'a> From<&'a EventChunk> for EventSlice<'a> {
    fn from(chunk: &'a EventChunk) -> Self {
        chunk.as_slice()
    }
}

/// Sizes `out` to `limit` events, lets `fill` write them by index while it advances the count,
/// then cuts `out` to that count, also when `fill` fails. A chunk reused from a previous full
/// read is already `limit` long, so the sizing costs nothing then.
pub(crate) fn fill_by_index(
    out: &mut EventChunk,
    limit: usize,
    fill: impl FnOnce(&mut EventChunk, &mut usize) -> crate::error::Result<()>,
) -> crate::error::Result<()> {
    out.resize(limit);
    let mut n = 0;
    let result = fill(out, &mut n);
    out.truncate(n);
    result
}

/// A chunk's four arrays as equally long slices that a decoder writes by index (no per-push
/// checks or growth): the chunk is sized to its limit before decoding and cut to the events
/// written after it.
pub(crate) struct Slots<'a> {
    pub t: &'a mut [i64],
    pub x: &'a mut [u16],
    pub y: &'a mut [u16],
    pub p: &'a mut [u8],
}

impl<'a> Slots<'a> {
    pub fn of(chunk: &'a mut EventChunk) -> Self {
        Self {
            t: &mut chunk.t,
            x: &mut chunk.x,
            y: &mut chunk.y,
            p: &mut chunk.p,
        }
    }

    #[inline(always)]
    pub fn put(&mut self, n: usize, t: i64, x: u16, y: u16, p: u8) {
        self.t[n] = t;
        self.x[n] = x;
        self.y[n] = y;
        self.p[n] = p;
    }
}
