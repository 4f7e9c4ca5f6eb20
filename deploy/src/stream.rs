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

use std::sync::Arc;

use prism_core::spec::Task;
use prism_core::Detection;
use prism_events::{EventChunk, EventSlice, Window, WindowConfig, WindowSlicer};

use crate::engine::{Engine, Recurrent};
use crate::error::{DeployError, Result};
use crate::postprocess::Postprocessor;
use crate::preprocess::HistogramInput;

/// The detections of one window, borrowed from the detector's buffers for the callback.
#[derive(Debug, Clone, Copy)]
pub struct WindowDetections<'a> {
    /// Window number since the start (or the last reset), from 0.
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
    pipeline: Pipeline,
}

impl StreamDetector {
    /// A detector for `engine`'s model, which must be an `event-detection` model with a
    /// representation.
    pub fn new(engine: Arc<Engine>) -> Result<Self> {
        let spec = engine.spec();
        if spec.task != Task::EventDetection {
            return Err(DeployError::Task(format!(
                "{} is a {:?} model; StreamDetector runs event-detection models (use FrameDetector)",
                spec.model, spec.task
            )));
        }
        let rep = spec
            .representation
            .as_ref()
            .ok_or_else(|| DeployError::Task(format!("{}: the spec has no event representation", spec.model)))?;
        let input = HistogramInput::new(rep)?;
        let factor = rep.downsample as f32;
        let clip = (rep.sensor_width as f32, rep.sensor_height as f32);
        let post = Postprocessor::new(spec, factor, clip)?;
        let window = WindowConfig::new(rep.window_us);
        let model = Recurrent::new(engine)?;
        if model.input_shape() != input.shape() {
            return Err(DeployError::Task(format!(
                "the representation gives a {:?} input; the model takes {:?}",
                input.shape(),
                model.input_shape()
            )));
        }
        Ok(Self {
            slicer: WindowSlicer::new(window)?,
            window,
            pipeline: Pipeline { input, model, post },
        })
    }

    pub fn engine(&self) -> &Arc<Engine> {
        self.pipeline.model.engine()
    }

    /// The window grid: length and step from the spec, first end at the first multiple of the
    /// step at or after the first event.
    pub fn window_config(&self) -> WindowConfig {
        self.window
    }

    /// Pushes the next events (time-sorted, continuing the stream) and calls `on_window` for every
    /// window they complete. Returns the number of windows completed.
    ///
    /// Errors: unsorted events are refused whole (nothing is appended). An event that breaks the
    /// representation's rules (outside the sensor, polarity not 0/1) fails its window, which is
    /// then skipped with the state left as it was; call [`Self::reset`] to start clean.
    pub fn push(&mut self, events: EventSlice<'_>, on_window: &mut dyn FnMut(&WindowDetections<'_>)) -> Result<usize> {
        self.slicer.push(events)?;
        self.drain(on_window)
    }

    /// [`Self::push`] for a decoder's chunk.
    pub fn push_chunk(&mut self, chunk: &EventChunk, on_window: &mut dyn FnMut(&WindowDetections<'_>)) -> Result<usize> {
        self.push(chunk.as_slice(), on_window)
    }

    /// [`Self::push`] for raw arrays from an application: timestamps (µs), x, y, polarity (0/1),
    /// all of the same length.
    pub fn push_slices(
        &mut self,
        t: &[i64],
        x: &[u16],
        y: &[u16],
        p: &[u8],
        on_window: &mut dyn FnMut(&WindowDetections<'_>),
    ) -> Result<usize> {
        let events = EventSlice::new(t, x, y, p).ok_or_else(|| {
            DeployError::Input(format!(
                "event arrays differ in length: t {}, x {}, y {}, p {}",
                t.len(),
                x.len(),
                y.len(),
                p.len()
            ))
        })?;
        self.push(events, on_window)
    }

    /// Ends the stream: runs the remaining windows that hold events. Call [`Self::reset`] before
    /// pushing a new sequence.
    pub fn finish(&mut self, on_window: &mut dyn FnMut(&WindowDetections<'_>)) -> Result<usize> {
        self.slicer.finish();
        self.drain(on_window)
    }

    /// Pushes `events` and collects the completed windows (allocates; for tests and simple apps).
    pub fn push_collect(&mut self, events: EventSlice<'_>) -> Result<Vec<OwnedWindow>> {
        let mut out = Vec::new();
        self.push(events, &mut |w| out.push(OwnedWindow::from(w)))?;
        Ok(out)
    }

    /// [`Self::finish`], collecting the windows.
    pub fn finish_collect(&mut self) -> Result<Vec<OwnedWindow>> {
        let mut out = Vec::new();
        self.finish(&mut |w| out.push(OwnedWindow::from(w)))?;
        Ok(out)
    }

    /// Starts a new sequence: forgets buffered events and the window grid, zeroes the state.
    pub fn reset(&mut self) -> Result<()> {
        self.slicer = WindowSlicer::new(self.window)?;
        self.pipeline.model.reset()
    }

    fn drain(&mut self, on_window: &mut dyn FnMut(&WindowDetections<'_>)) -> Result<usize> {
        let mut n = 0;
        while let Some(window) = self.slicer.next_window() {
            let result = self.pipeline.process(&window)?;
            on_window(&result);
            n += 1;
        }
        Ok(n)
    }
}

impl Pipeline {
    fn process(&mut self, window: &Window<'_>) -> Result<WindowDetections<'_>> {
        // Only the cells that differ from the last window are written (`update_into`): the input
        // tensor is this pipeline's alone.
        self.input.update_into(window.events, self.model.input_mut()?)?;
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
