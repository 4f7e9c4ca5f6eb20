//! [`StreamDetector`]: events in, detections out, for recurrent event detectors (RVT, task
//! `event-detection`).
//!
//! Per window (the spec's `window_us`, RVT's inclusive `[T - length, T]` bounds, from
//! prism-events' [`WindowSlicer`]): stacked histogram → padded `f32` input → the model, fed the
//! state the previous window produced (zeros at sequence start and after [`StreamDetector::reset`])
//! → YOLOX decode (unless the graph decodes) → class-aware NMS → boxes × downsample, clipped to the
//! sensor. Windows do not depend on how the stream is chunked.
//!
//! Sharing: each detector owns its window, histogram, state and output buffers and holds the
//! engine by `Arc`, so several independent streams can run in one process on one [`Engine`]. On
//! tract they run in parallel (the plan is immutable); on ONNX Runtime their `run` calls take turns
//! on the engine's session mutex (load one engine per detector for parallel ORT streams).
//!
//! Copies and allocation: every buffer of prism's own (events kept for the open window, histogram,
//! decoded rows, NMS scratch, detections) is allocated once and reused. The network input and the
//! recurrent state live in the backend's memory ([`Recurrent`]): the histogram is written straight
//! into the input tensor, ONNX Runtime writes the new state into preallocated tensors that the
//! next window reads, and tract's state outputs are moved into its next inputs, so no tensor is
//! copied through prism. Per window there remains what the backend allocates inside its `run`
//! (ORT: a few small vectors of value handles in `ort`; tract: its intermediate tensors).
//!
//! Gaps: a pause in the stream longer than [`StreamOptions::max_gap_us`] ends the sequence, as
//! the end of a recording would: the windows that hold events before the gap run, the state is
//! reset, and the events after the gap start a new sequence on a new window grid. The empty
//! windows of the gap are never run, so a timestamp jump costs nothing, however large
//! ([`StreamSink::gap`] tells the caller). Shorter pauses run their empty windows, as RVT does.
//!
//! Stopping: a [`StreamSink`] returns `Ok(false)` to stop after a window (a deadline, a
//! shutdown, a closed pipe); the detector must then be [`reset`](StreamDetector::reset) before it
//! takes more events.

use std::ops::Range;
use std::sync::Arc;

use prism_core::spec::Task;
use prism_core::Detection;
use prism_events::{EventChunk, EventError, EventSlice, Window, WindowConfig, WindowSlicer};

use crate::engine::{Engine, Recurrent};
use crate::error::{DeployError, Result};
use crate::postprocess::Postprocessor;
use crate::preprocess::HistogramInput;

/// The detections of one window, borrowed from the detector's buffers for the callback.
#[derive(Debug, Clone, Copy)]
pub struct WindowDetections<'a> {
    /// Window number since the start (or the last reset or gap), from 0.
    pub index: u64,
    /// The window's bounds in µs, both inclusive.
    pub start_us: i64,
    pub end_us: i64,
    /// Events in the window.
    pub num_events: usize,
    /// Boxes in sensor pixels, best first.
    pub detections: &'a [Detection],
    /// The window's stacked histogram, `u8 [2 * bins, height, width]` before padding (after the
    /// optional halving), and that shape: for rendering.
    pub histogram: &'a [u8],
    pub histogram_shape: [usize; 3],
}

/// An owned [`WindowDetections`] without the histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedWindow {
    pub index: u64,
    pub start_us: i64,
    pub end_us: i64,
    pub num_events: usize,
    pub detections: Vec<Detection>,
}

impl From<&WindowDetections<'_>> for OwnedWindow {
    fn from(w: &WindowDetections<'_>) -> Self {
        Self {
            index: w.index,
            start_us: w.start_us,
            end_us: w.end_us,
            num_events: w.num_events,
            detections: w.detections.to_vec(),
        }
    }
}

/// A pause longer than [`StreamOptions::max_gap_us`] that ended the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The last event before the gap and the first after it, in µs.
    pub last_us: i64,
    pub next_us: i64,
}

impl Gap {
    pub fn duration_us(&self) -> i64 {
        self.next_us - self.last_us
    }
}

/// The stream's policy for time; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOptions {
    /// A pause between two events longer than this ends the sequence (µs). Default: 1 s, 20
    /// windows of RVT's 50 ms: no event at all for that long means the sensor or the link stopped.
    pub max_gap_us: i64,
    /// Window length (and step) in µs to cut the stream with; `None`: the spec's `window_us`,
    /// the length the model trained at. A model with a duration input (SSM memory) is told the
    /// length and keeps its learned dynamics; any other model just sees histograms of another
    /// length.
    pub window_us: Option<i64>,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            max_gap_us: 1_000_000,
            window_us: None,
        }
    }
}

/// Where a stream's results go, window by window (ripgrep's `Sink` in shape): each method returns
/// `Ok(true)` to go on, `Ok(false)` to stop the stream after this call, or an error to fail it.
///
/// Any `FnMut(&WindowDetections) -> Result<bool, E>` is a sink that ignores gaps.
pub trait StreamSink {
    type Error: From<DeployError>;
    /// A window ran.
    fn window(&mut self, window: &WindowDetections<'_>) -> std::result::Result<bool, Self::Error>;
    /// A gap ended the sequence; the state is reset and the window numbers start again at 0.
    fn gap(&mut self, gap: &Gap) -> std::result::Result<bool, Self::Error> {
        let _ = gap;
        Ok(true)
    }
}

impl<F, E> StreamSink for F
where
    F: FnMut(&WindowDetections<'_>) -> std::result::Result<bool, E>,
    E: From<DeployError>,
{
    type Error = E;
    fn window(&mut self, window: &WindowDetections<'_>) -> std::result::Result<bool, E> {
        self(window)
    }
}

/// What one [`StreamDetector::push`] or [`StreamDetector::finish`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pushed {
    /// Windows run.
    pub windows: usize,
    /// Gaps that ended a sequence.
    pub gaps: usize,
    /// The sink stopped the stream: reset the detector before pushing more.
    pub stopped: bool,
}

/// Everything but the window slicer, so a window borrowed from the slicer can be processed.
#[derive(Debug)]
struct Pipeline {
    input: HistogramInput,
    model: Recurrent,
    post: Postprocessor,
}

/// Streaming detection over an event stream; see the module documentation.
#[derive(Debug)]
pub struct StreamDetector {
    slicer: WindowSlicer,
    window: WindowConfig,
    options: StreamOptions,
    /// Sensor width and height: events must lie inside.
    sensor: (usize, usize),
    /// The last event pushed since the start or the last reset.
    last_t: Option<i64>,
    pipeline: Pipeline,
}

impl StreamDetector {
    /// A detector for `engine`'s model, which must be an `event-detection` model with a
    /// representation, with the default [`StreamOptions`].
    pub fn new(engine: Arc<Engine>) -> Result<Self> {
        Self::with_options(engine, StreamOptions::default())
    }

    /// [`Self::new`] with a chosen policy.
    pub fn with_options(engine: Arc<Engine>, options: StreamOptions) -> Result<Self> {
        let spec = engine.spec();
        if spec.task != Task::EventDetection {
            return Err(DeployError::Task(format!(
                "{} is a {:?} model; StreamDetector runs event-detection models (use FrameDetector)",
                spec.model, spec.task
            )));
        }
        if options.max_gap_us <= 0 {
            return Err(DeployError::Input(format!(
                "the longest gap must be positive, got {} µs",
                options.max_gap_us
            )));
        }
        let rep = spec.representation.as_ref().ok_or_else(|| {
            DeployError::BadSpec(format!(
                "{}: the spec has no event representation",
                spec.model
            ))
        })?;
        let input = HistogramInput::new(rep)?;
        let factor = rep.downsample as f32;
        let clip = (rep.sensor_width as f32, rep.sensor_height as f32);
        let post = Postprocessor::new(spec, factor, clip)?;
        let window_us = options.window_us.unwrap_or(rep.window_us);
        if window_us <= 0 {
            return Err(DeployError::Input(format!(
                "the window length must be positive, got {window_us} µs"
            )));
        }
        let window = WindowConfig::new(window_us);
        let sensor = (rep.sensor_width, rep.sensor_height);
        let mut model = Recurrent::new(engine)?;
        // Windows follow each other without overlap or holes (a gap resets the state), so
        // each one's duration is the window length.
        model.set_duration(window_us as f32 / 1e6)?;
        if model.input_shape() != input.shape() {
            return Err(DeployError::BadSpec(format!(
                "the representation gives a {:?} input; the model takes {:?}",
                input.shape(),
                model.input_shape()
            )));
        }
        Ok(Self {
            slicer: WindowSlicer::new(window)?,
            window,
            options,
            sensor,
            last_t: None,
            pipeline: Pipeline { input, model, post },
        })
    }

    pub fn engine(&self) -> &Arc<Engine> {
        self.pipeline.model.engine()
    }

    /// The window grid: length and step from the spec (or [`StreamOptions::window_us`]), first end at the first multiple of the
    /// step at or after the first event (of the sequence).
    pub fn window_config(&self) -> WindowConfig {
        self.window
    }

    pub fn options(&self) -> StreamOptions {
        self.options
    }

    /// Events held for windows not yet complete (the memory a stream keeps between pushes).
    pub fn buffered_events(&self) -> usize {
        self.slicer.buffered()
    }

    /// Checks `events` as [`Self::push`] would, without running anything: the arrays agree in
    /// length, times are sorted and continue the stream, every event lies inside the sensor with
    /// polarity 0 or 1. The error names the first bad event (its index in `events`).
    pub fn check(&self, events: EventSlice<'_>) -> Result<()> {
        prism_events::repr::validate(&events, self.sensor.0, self.sensor.1)?;
        if let (Some(prev), Some(&t)) = (self.last_t, events.t.first()) {
            if t < prev {
                return Err(EventError::Unsorted { index: 0, prev, t }.into());
            }
        }
        Ok(())
    }

    /// How many windows pushing events at times `t` (checked) would run, and finishing the
    /// stream after them if `finish`, under the gap policy: what a server checks before it takes
    /// the work.
    pub fn windows_due(&self, t: &[i64], finish: bool) -> u64 {
        let (length, step) = (self.window.length_us, self.window.step_us);
        // Windows of a sequence whose next end is `end` and last event `last`.
        let due = |end: Option<i64>, last: Option<i64>, closes: bool| -> u64 {
            let (Some(end), Some(last)) = (end, last) else {
                return 0;
            };
            let upto = if closes {
                last.saturating_add(length)
            } else {
                last - 1
            };
            if upto < end {
                0
            } else {
                ((upto - end) / step + 1) as u64
            }
        };
        let (mut end, mut last) = (self.slicer.next_end(), self.last_t);
        let mut total = 0u64;
        for (range, gap) in segments(self.last_t, t, self.options.max_gap_us) {
            if gap.is_some() {
                total = total.saturating_add(due(end, last, true));
                end = None;
            }
            end = end.or(Some(self.window.first_end_for(t[range.start])));
            last = Some(t[range.end - 1]);
        }
        total.saturating_add(due(end, last, finish))
    }

    /// Pushes the next events (time-sorted, continuing the stream) and reports every window they
    /// complete, and every gap, to `sink`.
    ///
    /// Errors: events that break the rules of [`Self::check`] are refused whole, before anything
    /// runs (the stream is unchanged). An error of the model or of the sink fails the push; reset
    /// the detector then.
    pub fn push<S: StreamSink>(
        &mut self,
        events: EventSlice<'_>,
        sink: &mut S,
    ) -> std::result::Result<Pushed, S::Error> {
        self.check(events)?;
        let mut pushed = Pushed::default();
        for (range, gap) in segments(self.last_t, events.t, self.options.max_gap_us) {
            if let Some(gap) = gap {
                self.slicer.finish();
                if !self.drain(sink, &mut pushed)? {
                    return Ok(pushed);
                }
                self.reset().map_err(S::Error::from)?;
                pushed.gaps += 1;
                if !sink.gap(&gap)? {
                    pushed.stopped = true;
                    return Ok(pushed);
                }
            }
            let part = events.slice(range);
            self.slicer.push(part).map_err(DeployError::from)?;
            self.last_t = part.t.last().copied().or(self.last_t);
            if !self.drain(sink, &mut pushed)? {
                return Ok(pushed);
            }
        }
        Ok(pushed)
    }

    /// [`Self::push`] for a decoder's chunk.
    pub fn push_chunk<S: StreamSink>(
        &mut self,
        chunk: &EventChunk,
        sink: &mut S,
    ) -> std::result::Result<Pushed, S::Error> {
        self.push(chunk.as_slice(), sink)
    }

    /// [`Self::push`] for raw arrays from an application: timestamps (µs), x, y, polarity (0/1),
    /// all of the same length.
    pub fn push_slices<S: StreamSink>(
        &mut self,
        t: &[i64],
        x: &[u16],
        y: &[u16],
        p: &[u8],
        sink: &mut S,
    ) -> std::result::Result<Pushed, S::Error> {
        let events = EventSlice::new(t, x, y, p).ok_or_else(|| {
            DeployError::Input(format!(
                "event arrays differ in length: t {}, x {}, y {}, p {}",
                t.len(),
                x.len(),
                y.len(),
                p.len()
            ))
        })?;
        self.push(events, sink)
    }

    /// Ends the stream: runs the remaining windows that hold events. Call [`Self::reset`] before
    /// pushing a new sequence.
    pub fn finish<S: StreamSink>(&mut self, sink: &mut S) -> std::result::Result<Pushed, S::Error> {
        self.slicer.finish();
        let mut pushed = Pushed::default();
        self.drain(sink, &mut pushed)?;
        Ok(pushed)
    }

    /// Pushes `events` and collects the completed windows (allocates; for tests and simple apps).
    pub fn push_collect(&mut self, events: EventSlice<'_>) -> Result<Vec<OwnedWindow>> {
        let mut out = Vec::new();
        self.push(events, &mut |w: &WindowDetections<'_>| {
            out.push(OwnedWindow::from(w));
            Ok::<_, DeployError>(true)
        })?;
        Ok(out)
    }

    /// [`Self::finish`], collecting the windows.
    pub fn finish_collect(&mut self) -> Result<Vec<OwnedWindow>> {
        let mut out = Vec::new();
        self.finish(&mut |w: &WindowDetections<'_>| {
            out.push(OwnedWindow::from(w));
            Ok::<_, DeployError>(true)
        })?;
        Ok(out)
    }

    /// Starts a new sequence: forgets buffered events and the window grid, zeroes the state.
    pub fn reset(&mut self) -> Result<()> {
        self.slicer = WindowSlicer::new(self.window)?;
        self.last_t = None;
        self.pipeline.model.reset()
    }

    /// Runs every ready window; `false` when the sink stopped the stream.
    fn drain<S: StreamSink>(
        &mut self,
        sink: &mut S,
        pushed: &mut Pushed,
    ) -> std::result::Result<bool, S::Error> {
        while let Some(window) = self.slicer.next_window() {
            let result = self.pipeline.process(&window)?;
            pushed.windows += 1;
            if !sink.window(&result)? {
                pushed.stopped = true;
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Splits sorted times `t` (continuing a stream whose last event was at `prev`) into runs without
/// a gap longer than `max_gap_us`; each run after a gap comes with that gap. Allocates nothing.
fn segments(
    prev: Option<i64>,
    t: &[i64],
    max_gap_us: i64,
) -> impl Iterator<Item = (Range<usize>, Option<Gap>)> + '_ {
    let mut start = 0;
    let mut before = prev;
    std::iter::from_fn(move || {
        if start >= t.len() {
            return None;
        }
        let gap = before.filter(|&b| t[start] - b > max_gap_us).map(|b| Gap {
            last_us: b,
            next_us: t[start],
        });
        let end = (start + 1..t.len())
            .find(|&i| t[i] - t[i - 1] > max_gap_us)
            .unwrap_or(t.len());
        let range = start..end;
        before = Some(t[end - 1]);
        start = end;
        Some((range, gap))
    })
}

impl Pipeline {
    fn process(&mut self, window: &Window<'_>) -> Result<WindowDetections<'_>> {
        // Only the cells that differ from the last window are written (`update_into`): the input
        // tensor is this pipeline's alone.
        self.input
            .update_into(window.events, self.model.input_mut()?)?;
        let raw = self.model.run()?;
        let detections = self.post.run(raw)?;
        let (histogram, histogram_shape) = self.input.histogram();
        Ok(WindowDetections {
            index: window.index,
            start_us: window.start_us,
            end_us: window.end_us,
            num_events: window.events.len(),
            detections,
            histogram,
            histogram_shape,
        })
    }
}
