//! [`Recurrent`]: one stream's buffers for running a recurrent model window after window without
//! copying tensors through prism.
//!
//! [`Engine::run_into`] takes borrowed `f32` slices and hands back owned copies of every output,
//! which is the right interface for one-off requests but costs, per window of a recurrent model,
//! a copy of every state output into prism's buffers and a second copy back into the next
//! window's inputs (7.4 MB each way for rvt-tiny-1mpx), plus the backend's own copy of the inputs
//! (tract) and fresh output allocations. [`Recurrent`] keeps the tensors in the backend's own
//! memory instead:
//!
//! - the network input is one backend tensor, written in place ([`Recurrent::input_mut`]);
//! - ONNX Runtime: the state and detections outputs are written by ORT straight into two
//!   preallocated sets of tensors (an [`ort::session::OutputSelector`] per set). Window `n` reads
//!   set A and writes set B, window `n + 1` reads B and writes A: the state never moves. On
//!   `ort-cuda` / `ort-tensorrt` both sets are in GPU memory, so the state stays on the device;
//! - tract: the state outputs of window `n` are moved (reference-counted, no copy) into window
//!   `n + 1`'s inputs, and the input tensor is shared with the plan without a copy.
//!
//! What remains per window is the backend's own work and a few small bookkeeping allocations
//! inside `ort` (its small vectors of input and output handles spill to the heap past 6 inputs
//! and 4 outputs) or tract (its per-run state and intermediate tensors).

use std::borrow::Cow;
use std::sync::Arc;

use super::{onnxruntime, tract, Engine, Runner, TensorInfo};

use crate::error::{DeployError, Result};

/// Per-stream buffers of a recurrent model (the spec's input and state tensors); see the module
/// documentation. Create one per stream: it is `Send` and owns its state.
pub struct Recurrent {
    engine: Arc<Engine>,
    input_shape: Vec<usize>,
    inner: Inner,
}

enum Inner {
    Tract(tract::TractRecurrent),
    Ort(onnxruntime::OrtRecurrent),
}

impl std::fmt::Debug for Recurrent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recurrent")
            .field("engine", &self.engine)
            .field("input_shape", &self.input_shape)
            .finish_non_exhaustive()
    }
}

/// What feeds one graph input of a recurrent model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Feed {
    /// The spec's input (the histogram).
    Input,
    /// State `k` (spec order).
    State(usize),
    /// The window's duration in seconds, `[1, 1]` (the spec's `duration_input`).
    Duration,
}

/// Where the spec's tensors sit in the graph: input and output positions.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// Shape of the spec's input, batch 1.
    pub input_shape: Vec<usize>,
    /// What feeds each graph input, in graph order.
    pub feeds: Vec<Feed>,
    /// What the duration input holds until it is set: the spec's window length, seconds.
    pub duration_s: f32,
    /// Per state (spec order): graph input index, graph output index, shape.
    pub states: Vec<(usize, usize, Vec<usize>)>,
    /// Graph output index of the detections.
    pub detections_index: usize,
    /// The detections' shape, when the graph declares it fully (batch 1).
    pub detections_shape: Option<Vec<usize>>,
}

impl Recurrent {
    /// Buffers for `engine`'s model: the spec's input (static shape, batch 1) and its state
    /// tensors, zeroed.
    pub fn new(engine: Arc<Engine>) -> Result<Self> {
        let layout = layout(&engine)?;
        let inner = match &engine.runner {
            Runner::Tract(r) => Inner::Tract(r.recurrent(&layout)?),
            Runner::Ort(r) => Inner::Ort(r.recurrent(&layout, &engine.inputs, &engine.outputs)?),
        };
        Ok(Self {
            engine,
            input_shape: layout.input_shape,
            inner,
        })
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The input's shape, `[1, …]`.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// The next window's input, row-major, to be written in place. It keeps what was written last
    /// (zeros at first), so cells a caller never writes (padding) stay zero.
    pub fn input_mut(&mut self) -> Result<&mut [f32]> {
        match &mut self.inner {
            Inner::Tract(r) => r.input_mut(),
            Inner::Ort(r) => r.input_mut(),
        }
    }

    /// Runs one window on the current input and state; the state outputs become the next
    /// window's state. Returns the detections output (flattened `[1, anchors, 5 + classes]`).
    ///
    /// On an inference error the state is zeroed (as after [`Self::reset`]).
    pub fn run(&mut self) -> Result<&[f32]> {
        match &mut self.inner {
            Inner::Tract(r) => {
                let Runner::Tract(runner) = &self.engine.runner else {
                    return Err(DeployError::Runtime(
                        "engine and buffers are of different backends".into(),
                    ));
                };
                r.run(runner)
            }
            Inner::Ort(r) => {
                let Runner::Ort(runner) = &self.engine.runner else {
                    return Err(DeployError::Runtime(
                        "engine and buffers are of different backends".into(),
                    ));
                };
                r.run(runner)
            }
        }
    }

    /// The detections of the last [`Self::run`] (empty before the first).
    pub fn detections(&self) -> Result<&[f32]> {
        match &self.inner {
            Inner::Tract(r) => r.detections(),
            Inner::Ort(r) => r.detections(),
        }
    }

    /// State tensor `k` (spec order) as the next window will read it: borrowed where the state
    /// lives in host memory, a copy where it lives on a GPU (`ort-cuda`, `ort-tensorrt`).
    pub fn state(&self, k: usize) -> Result<Cow<'_, [f32]>> {
        match &self.inner {
            Inner::Tract(r) => r.state(k).map(Cow::Borrowed),
            Inner::Ort(r) => r.state(k),
        }
    }

    /// Whether the model takes each window's duration (SSM memory); see
    /// [`Self::set_duration`].
    pub fn takes_duration(&self) -> bool {
        self.engine.spec().duration_input.is_some()
    }

    /// The duration in seconds of the windows run from now on, for a model that takes one
    /// (the time since the previous window; `StreamDetector` sets its window length). It
    /// starts at the spec's window length; a model without a duration input ignores it.
    pub fn set_duration(&mut self, seconds: f32) -> Result<()> {
        if !(seconds.is_finite() && seconds >= 0.0) {
            return Err(DeployError::Input(format!(
                "a window duration is a finite number of seconds >= 0, not {seconds}"
            )));
        }
        match &mut self.inner {
            Inner::Tract(r) => r.set_duration(seconds),
            Inner::Ort(r) => r.set_duration(seconds),
        }
    }

    /// Zeroes the state: the next window starts a new sequence.
    pub fn reset(&mut self) -> Result<()> {
        match &mut self.inner {
            Inner::Tract(r) => r.reset(),
            Inner::Ort(r) => r.reset(),
        }
    }
}

/// `shape` with a symbolic batch axis set to 1; `None` if any other axis is symbolic.
fn with_batch_one(shape: &[Option<usize>]) -> Option<Vec<usize>> {
    shape
        .iter()
        .enumerate()
        .map(|(axis, d)| if axis == 0 { Some(d.unwrap_or(1)) } else { *d })
        .collect()
}

/// The spec's tensors located in the graph; everything [`Engine::load`] checked is trusted here.
fn layout(engine: &Engine) -> Result<Layout> {
    let spec = engine.spec();
    let bad = |m: String| DeployError::BadSpec(format!("{}: {m}", spec.model));
    let find = |list: &[TensorInfo], kind: &str, name: &str| {
        list.iter()
            .position(|t| t.name == name)
            .ok_or_else(|| bad(format!("the graph has no {kind} `{name}`")))
    };
    let input_index = |name: &str| find(&engine.inputs, "input", name);
    let output_index = |name: &str| find(&engine.outputs, "output", name);
    let input_shape = with_batch_one(&spec.input.shape).ok_or_else(|| {
        bad(format!(
            "input `{}` needs static dimensions after the batch",
            spec.input.name
        ))
    })?;
    if input_shape.first() != Some(&1) {
        return Err(bad(format!(
            "input `{}` must have batch 1, not {input_shape:?}",
            spec.input.name
        )));
    }
    // Every other graph input is the spec's input or its duration input ([`Engine::load`]
    // checked it).
    let mut feeds = vec![Feed::Input; engine.inputs.len()];
    input_index(&spec.input.name)?;
    if let Some(name) = &spec.duration_input {
        feeds[input_index(name)?] = Feed::Duration;
    }
    let states = spec
        .state
        .iter()
        .map(|s| {
            Ok((
                input_index(&s.input)?,
                output_index(&s.output)?,
                s.shape.clone(),
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    for (k, (input, _, _)) in states.iter().enumerate() {
        feeds[*input] = Feed::State(k);
    }
    let detections_index = output_index(&spec.output.name)?;
    let detections_shape = with_batch_one(&engine.outputs[detections_index].shape);
    let duration_s = spec.default_duration_s();
    Ok(Layout {
        input_shape,
        feeds,
        duration_s,
        states,
        detections_index,
        detections_shape,
    })
}
