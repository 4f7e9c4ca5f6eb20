//! Runs a model in tract over the calibration windows with the recurrent state carried, and
//! hands the values of chosen intermediate tensors to a callback.
//!
//! The intermediate tensors are made graph outputs of a copy of the model before tract loads it,
//! so tract computes them whatever it fuses.

use std::sync::Arc;

use tract_onnx::pb;
use tract_onnx::prelude::*;

use super::graph::dtype;
use super::{CalibrationData, CalibrationWindow, Feeds, Pass, QuantizeError};

/// What one graph input is fed.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Data,
    State(usize),
    /// The window duration, `[1, 1]`.
    Duration(f32),
}

/// A runnable model observing some of its tensors.
pub(crate) struct Observer {
    plan: Arc<TypedSimplePlan>,
    /// What each graph input is fed, in graph order.
    input_slots: Vec<Slot>,
    input_shape: Vec<usize>,
    /// Output position of each state's next value.
    state_outputs: Vec<usize>,
    state_shapes: Vec<Vec<usize>>,
    /// Output position of each observed tensor (a graph output already, or appended).
    observed: Vec<usize>,
    /// Outputs the plan returns.
    outputs: usize,
    /// The state the next window reads.
    state: Vec<Vec<f32>>,
    which: &'static str,
}

impl Observer {
    pub fn new(
        model: &pb::ModelProto,
        feeds: &Feeds,
        observe: &[String],
        which: &'static str,
    ) -> Result<Self, QuantizeError> {
        let fail = |reason: String| QuantizeError::Run { which, reason };
        let mut model = model.clone();
        let graph = model
            .graph
            .as_mut()
            .ok_or_else(|| QuantizeError::BadModel("the file holds no graph".into()))?;
        let initializers: std::collections::HashSet<&str> =
            graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let mut input_slots = Vec::new();
        for input in graph
            .input
            .iter()
            .filter(|i| !initializers.contains(i.name.as_str()))
        {
            if input.name == feeds.input {
                input_slots.push(Slot::Data);
            } else if let Some(k) = feeds.state.iter().position(|s| s.input == input.name) {
                input_slots.push(Slot::State(k));
            } else if let Some(d) = feeds.duration.as_ref().filter(|d| d.input == input.name) {
                input_slots.push(Slot::Duration(d.seconds));
            } else {
                return Err(QuantizeError::Feeds(format!(
                    "graph input {:?} is neither the data input, a state nor the duration",
                    input.name
                )));
            }
        }
        let mut state_outputs = Vec::new();
        for s in &feeds.state {
            let pos = graph
                .output
                .iter()
                .position(|o| o.name == s.output)
                .ok_or_else(|| {
                    QuantizeError::Feeds(format!("the graph has no state output {:?}", s.output))
                })?;
            state_outputs.push(pos);
        }
        let mut observed = Vec::with_capacity(observe.len());
        for name in observe {
            if let Some(pos) = graph.output.iter().position(|o| &o.name == name) {
                observed.push(pos);
                continue;
            }
            observed.push(graph.output.len());
            graph.output.push(pb::ValueInfoProto {
                name: name.clone(),
                r#type: Some(pb::TypeProto {
                    value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                        elem_type: dtype::FLOAT,
                        shape: None,
                    })),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        let outputs = graph.output.len();
        drop(initializers);

        let onnx = tract_onnx::onnx();
        let mut typed = onnx
            .model_for_proto_model(&model)
            .map_err(|e| fail(format!("{e:#}")))?;
        for (ix, slot) in input_slots.iter().enumerate() {
            let shape = match slot {
                Slot::Data => feeds.input_shape.clone(),
                Slot::State(k) => feeds.state[*k].shape.clone(),
                Slot::Duration(_) => vec![1, 1],
            };
            typed
                .set_input_fact(ix, InferenceFact::dt_shape(f32::datum_type(), shape))
                .map_err(|e| fail(format!("{e:#}")))?;
        }
        let plan = typed
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| fail(format!("{e:#}")))?;
        Ok(Self {
            plan,
            input_slots,
            input_shape: feeds.input_shape.clone(),
            state_outputs,
            state_shapes: feeds.state.iter().map(|s| s.shape.clone()).collect(),
            observed,
            outputs,
            state: Vec::new(),
            which,
        })
    }

    /// Runs every window of `data`, calling `seen(k, values)` for observed tensor `k`.
    /// Returns the number of windows run.
    pub fn stream(
        &mut self,
        data: &mut dyn CalibrationData,
        pass: Pass,
        progress: &mut dyn FnMut(Pass, usize, usize),
        seen: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<usize, QuantizeError> {
        let total = data.len();
        let mut count = 0;
        for (index, window) in data.windows().enumerate() {
            let window = window.map_err(|source| QuantizeError::Source { index, source })?;
            let observed = self.step(&window)?;
            for (k, values) in observed.iter().enumerate() {
                seen(k, values);
            }
            count += 1;
            progress(pass, count, total);
        }
        if count == 0 {
            return Err(QuantizeError::NoCalibrationData);
        }
        Ok(count)
    }

    /// Runs one window (zeroing the state first when it starts a sequence) and returns the
    /// observed tensors' values, in the order they were asked for.
    pub fn step(&mut self, window: &CalibrationWindow) -> Result<Vec<Vec<f32>>, QuantizeError> {
        if window.new_sequence || self.state.len() != self.state_shapes.len() {
            self.state = self.zero_state();
        }
        let outputs = self.run(&window.input, &self.state)?;
        for (s, &pos) in self.state.iter_mut().zip(&self.state_outputs) {
            s.clone_from(&outputs[pos]);
        }
        Ok(self
            .observed
            .iter()
            .map(|&pos| outputs[pos].clone())
            .collect())
    }

    fn zero_state(&self) -> Vec<Vec<f32>> {
        self.state_shapes
            .iter()
            .map(|s| vec![0.0; s.iter().product()])
            .collect()
    }

    /// One run; every output as f32 values.
    fn run(&self, input: &[f32], state: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, QuantizeError> {
        let fail = |reason: String| QuantizeError::Run {
            which: self.which,
            reason,
        };
        let mut values: TVec<TValue> = TVec::new();
        for slot in &self.input_slots {
            let duration;
            let (shape, data) = match slot {
                Slot::Data => (self.input_shape.as_slice(), input),
                Slot::State(k) => (self.state_shapes[*k].as_slice(), state[*k].as_slice()),
                Slot::Duration(seconds) => {
                    duration = [*seconds];
                    (&[1usize, 1][..], &duration[..])
                }
            };
            let t = Tensor::from_shape(shape, data)
                .map_err(|e| QuantizeError::Feeds(format!("a window of shape {shape:?}: {e:#}")))?;
            values.push(t.into_tvalue());
        }
        let results = self.plan.run(values).map_err(|e| fail(format!("{e:#}")))?;
        if results.len() != self.outputs {
            return Err(fail(format!(
                "{} outputs, expected {}",
                results.len(),
                self.outputs
            )));
        }
        results
            .iter()
            .map(|v| {
                let v = v.cast_to::<f32>().map_err(|e| fail(format!("{e:#}")))?;
                v.try_as_plain_ram()
                    .and_then(|r| r.as_slice::<f32>().map(<[f32]>::to_vec))
                    .map_err(|e| fail(format!("{e:#}")))
            })
            .collect()
    }
}
