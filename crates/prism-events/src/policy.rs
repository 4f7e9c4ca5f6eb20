//! The per-event rules every decoder applies the same way: time order ([`TimeOrder`]), sensor
//! bounds ([`OutOfBounds`]), skipping to a seek target, and the running [`ReaderStats`].
//!
//! The fast paths are one comparison each; everything unusual goes through `#[cold]` functions.

use std::path::Path;

use crate::chunk::EventChunk;
use crate::error::{EventError, OffsetUnit, Result};
use crate::reader::{OutOfBounds, ReaderOptions, ReaderStats, SensorSize, TimeOrder};

/// Time-order and bounds state of one reader.
#[derive(Debug, Clone)]
pub struct Gate {
    time_order: TimeOrder,
    out_of_bounds: OutOfBounds,
    /// Sensor limits; `u32::MAX` when the sensor size is unknown (no check).
    pub width: u32,
    pub height: u32,
    sensor: Option<SensorSize>,
    /// Running maximum of the timestamps seen, emitted or skipped: what [`TimeOrder::Clamp`]
    /// raises a backwards timestamp to, and what a seek index records.
    max_t: i64,
    /// After a seek: events with `t` below this are skipped, until the first one at or above it.
    skip_before: i64,
    /// `max(max_t, skip_before)`: a timestamp at or above it needs no further thought.
    gate: i64,
    pub time_repairs: u64,
    pub dropped_out_of_bounds: u64,
    /// What the offsets the decoder passes count.
    unit: OffsetUnit,
}

impl Gate {
    pub fn new(options: &ReaderOptions, sensor: Option<SensorSize>) -> Self {
        Self {
            time_order: options.time_order,
            out_of_bounds: options.out_of_bounds,
            width: sensor.map_or(u32::MAX, |s| u32::from(s.width)),
            height: sensor.map_or(u32::MAX, |s| u32::from(s.height)),
            sensor,
            max_t: i64::MIN,
            skip_before: i64::MIN,
            gate: i64::MIN,
            time_repairs: 0,
            dropped_out_of_bounds: 0,
            unit: OffsetUnit::Byte,
        }
    }

    /// For decoders whose offsets count events, not bytes (HDF5).
    pub fn counting_events(mut self) -> Self {
        self.unit = OffsetUnit::Event;
        self
    }

    /// Starts skipping every event before `t_us` (a seek), resuming at a point of the stream
    /// where the running maximum of the timestamps before it was `max_before` (`i64::MIN` at
    /// the start). With `max_before < t_us`, which a [`crate::seek_index::SeekIndex`] resume point
    /// guarantees, the events kept are exactly those a full read would give from the first
    /// whose (clamped) time is at or after `t_us`, also when time goes backwards.
    pub fn seek(&mut self, t_us: i64, max_before: i64) {
        self.max_t = max_before;
        // Past a maximum at or above the target, every later time is clamped up to it: kept.
        self.skip_before = if max_before >= t_us { i64::MIN } else { t_us };
        self.gate = t_us.max(max_before);
    }

    /// The running maximum of every timestamp seen so far, skipped ones included: the value a
    /// seek index stores with a resume point.
    #[inline]
    pub fn max_seen(&self) -> i64 {
        self.max_t
    }

    /// Skips one event stamped `t` that a decoder found before the seek target on its own
    /// (without [`Gate::admit_time`]), keeping the running maximum exact.
    #[inline]
    pub fn note_skipped(&mut self, t: i64) {
        self.max_t = self.max_t.max(t);
    }

    /// The timestamp to emit `count` events stamped `t` with, or `None` to skip them (before a
    /// seek target). Errors under [`TimeOrder::Error`] when `t` goes backwards.
    #[inline(always)]
    pub fn admit_time(
        &mut self,
        t: i64,
        count: u64,
        offset: u64,
        path: &Path,
    ) -> Result<Option<i64>> {
        if t >= self.gate {
            self.max_t = t;
            self.gate = t;
            self.skip_before = i64::MIN;
            return Ok(Some(t));
        }
        self.admit_time_slow(t, count, offset, path)
    }

    #[cold]
    fn admit_time_slow(
        &mut self,
        t: i64,
        count: u64,
        offset: u64,
        path: &Path,
    ) -> Result<Option<i64>> {
        if t < self.skip_before {
            // While skipping, every timestamp seen stays below the target (the resume point's
            // maximum was below it), so a clamped time would be below it too: skipped either way.
            self.note_skipped(t);
            return Ok(None);
        }
        // Kept: at or after a seek target, so skipping (if any) ends here.
        self.skip_before = i64::MIN;
        self.gate = self.max_t;
        match self.time_order {
            TimeOrder::Clamp => {
                self.time_repairs += count;
                Ok(Some(self.max_t))
            }
            TimeOrder::Error => Err(EventError::TimeBackwards {
                path: path.to_path_buf(),
                offset,
                unit: self.unit,
                prev: self.max_t,
                t,
            }),
        }
    }

    /// True while events are skipped towards a seek target.
    #[inline]
    pub fn skipping(&self) -> bool {
        self.skip_before != i64::MIN
    }

    /// The seek target being skipped to.
    #[inline]
    pub fn skip_target(&self) -> i64 {
        self.skip_before
    }

    /// Ends skipping: the decoder found the first event at or after the target.
    pub fn end_skip(&mut self) {
        self.skip_before = i64::MIN;
        self.gate = self.max_t;
    }

    /// Running maximum of emitted timestamps (when not skipping), for decoders that keep it in
    /// a register through their hot loop and hand it back with [`Gate::set_running_max`].
    #[inline]
    pub fn running_max(&self) -> i64 {
        self.gate
    }

    #[inline]
    pub fn set_running_max(&mut self, t: i64) {
        self.max_t = t;
        self.gate = t;
    }

    #[inline(always)]
    pub fn in_bounds(&self, x: u32, y: u32) -> bool {
        x < self.width && y < self.height
    }

    /// An event outside the sensor: counts it (drop policy) or fails.
    #[cold]
    pub fn reject(&mut self, x: u32, y: u32, offset: u64, path: &Path) -> Result<()> {
        match self.out_of_bounds {
            OutOfBounds::Drop => {
                self.dropped_out_of_bounds += 1;
                Ok(())
            }
            OutOfBounds::Error => {
                let size = self.sensor.unwrap_or(SensorSize {
                    width: u16::MAX,
                    height: u16::MAX,
                });
                Err(EventError::OutOfBounds {
                    path: path.to_path_buf(),
                    offset,
                    unit: self.unit,
                    x,
                    y,
                    width: size.width,
                    height: size.height,
                })
            }
        }
    }

    /// Pushes one event after the bounds check.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn push(
        &mut self,
        out: &mut EventChunk,
        t: i64,
        x: u32,
        y: u32,
        p: u8,
        offset: u64,
        path: &Path,
    ) -> Result<()> {
        if self.in_bounds(x, y) {
            out.push(t, x as u16, y as u16, p);
            Ok(())
        } else {
            self.reject(x, y, offset, path)
        }
    }
}

/// Folds a finished chunk and the gate's counters into the reader's statistics.
pub fn update_stats(stats: &mut ReaderStats, gate: &Gate, out: &EventChunk) {
    stats.events += out.len() as u64;
    if let (Some(&first), Some(&last)) = (out.t.first(), out.t.last()) {
        stats.first_t.get_or_insert(first);
        stats.last_t = Some(last);
    }
    stats.time_repairs = gate.time_repairs;
    stats.dropped_out_of_bounds = gate.dropped_out_of_bounds;
}
