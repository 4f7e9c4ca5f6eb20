//! The tract backend: the ONNX protobuf is decoded once (its `metadata_props` give the spec), the
//! graph is typed with the declared input shapes, optimised, and turned into an immutable plan
//! shared through `Arc` and run with `&self`.

use std::path::Path;
use std::sync::Arc;

use tract_onnx::pb::{self, tensor_shape_proto::dimension, type_proto};
use tract_onnx::prelude::*;

use super::recurrent::{Feed, Layout};
use super::{Loaded, Tensor, TensorInfo, TensorView};
use crate::error::{DeployError, Result};

pub(crate) const NAME: &str = "tract";

/// An optimised, runnable tract plan.
pub(crate) struct TractRunner {
    plan: Arc<TypedSimplePlan>,
}

/// On x86, a float16 graph (`prism export onnx --precision fp16`) computes in float32: tract has
/// no x86 float16 matrix kernel, and on CPUs with AVX512-FP16 it picks its generic one, which does
/// float16 arithmetic in software (rvt-tiny's evaluation in the pipeline test took over 40
/// minutes on such a Xeon). The weights keep their float16 values; the sums are float32, as
/// tract computes them on every other x86 CPU. Elsewhere (aarch64 with fp16, such as Jetson)
/// the graph runs as float16.
fn compute_f16_as_f32(model: TypedModel) -> TractResult<TypedModel> {
    let has_f16 = model.nodes.iter().any(|n| {
        n.outputs
            .iter()
            .any(|o| o.fact.datum_type == f16::datum_type())
    });
    if !cfg!(target_arch = "x86_64") || !has_f16 {
        return Ok(model);
    }
    match tract_onnx::tract_core::transform::get_transform("f16_to_f32")? {
        Some(transform) => fold_weight_casts(transform.transform_into(model)?),
        None => Ok(model),
    }
}

/// The float32 translation leaves every float16 weight behind a `Cast` to float32. tract folds
/// a cast constant only while the result is no larger than its input or a small budget, so a
/// large weight would be converted again on every run (seq-mlp's 1920 x 1024 layer: 5.3 ms
/// against 0.23 ms in float32). The weights are converted once here instead: the same float16
/// values, held as float32, the memory the float32 model takes.
fn fold_weight_casts(mut model: TypedModel) -> TractResult<TypedModel> {
    use tract_onnx::tract_core::ops::cast::Cast;
    use tract_onnx::tract_core::ops::konst::Const;
    let casts: Vec<(usize, Arc<Tensor_>)> = model
        .nodes
        .iter()
        .filter_map(|node| {
            let cast = node.op_as::<Cast>()?;
            let [input] = node.inputs.as_slice() else {
                return None;
            };
            let weight = model.node(input.node).op_as::<Const>()?.val();
            (cast.to == f32::datum_type()
                && weight.datum_type() == f16::datum_type()
                && weight.is_plain())
            .then(|| (node.id, weight.clone()))
        })
        .collect();
    let mut patch = TypedModelPatch::default();
    for (id, weight) in casts {
        let name = format!("{}.f32", model.node(id).name);
        let wire = patch.add_const(name, weight.cast_to::<f32>()?.into_owned())?;
        patch.shunt_outside(&model, OutletId::new(id, 0), wire)?;
    }
    patch.apply(&mut model)?;
    Ok(model)
}

impl TractRunner {
    /// Loads `path`; `threads` above 1 give the plan its own pool of that many threads for
    /// tract's matrix products (convolutions and linear layers), else it runs on the caller's
    /// thread.
    pub(crate) fn load(path: &Path, threads: Option<usize>) -> Result<Loaded<Self>> {
        let bad = |reason: String| DeployError::BadModel {
            path: path.into(),
            backend: NAME,
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| DeployError::io(path, e))?;
        let onnx = tract_onnx::onnx();
        let (proto, interface) = read_interface(&onnx, &bytes).map_err(bad)?;
        let ModelInterface {
            inputs,
            outputs,
            spec_json,
        } = interface;
        let mut model = onnx
            .model_for_proto_model(&proto)
            .map_err(|e| bad(format!("{e:#}")))?;
        // Pin fully static input shapes so the optimiser can specialise the graph.
        for (ix, info) in inputs.iter().enumerate() {
            if let Some(dims) = info.shape.iter().copied().collect::<Option<Vec<usize>>>() {
                model
                    .set_input_fact(ix, InferenceFact::dt_shape(f32::datum_type(), dims))
                    .map_err(|e| bad(format!("input `{}`: {e:#}", info.name)))?;
            }
        }
        let options = tract_onnx::tract_core::runtime::RunOptions {
            executor: threads
                .filter(|&n| n > 1)
                .map(tract_linalg::multithread::Executor::multithread),
            ..Default::default()
        };
        let plan = model
            .into_typed()
            .and_then(compute_f16_as_f32)
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable_with_options(&options))
            .map_err(|e| bad(format!("{e:#}")))?;
        Ok(Loaded {
            runner: Self { plan },
            inputs,
            outputs,
            spec_json,
        })
    }

    /// Runs with `inputs` already checked and in graph order.
    pub(crate) fn run(
        &self,
        inputs: &[TensorView<'_>],
        infos: &[TensorInfo],
        outputs: &mut [Tensor],
    ) -> Result<()> {
        let fail = |reason: String| DeployError::Inference {
            backend: NAME,
            reason,
        };
        let values: TVec<TValue> = inputs
            .iter()
            .map(|v| Tensor_::from_shape(v.shape, v.data).map(|t| t.into_tvalue()))
            .collect::<TractResult<_>>()
            .map_err(|e| fail(format!("{e:#}")))?;
        let results = self.plan.run(values).map_err(|e| fail(format!("{e:#}")))?;
        if results.len() != infos.len() {
            return Err(fail(format!(
                "{} outputs, expected {}",
                results.len(),
                infos.len()
            )));
        }
        for ((value, info), out) in results.iter().zip(infos).zip(outputs.iter_mut()) {
            if value.datum_type() != f32::datum_type() {
                return Err(DeployError::Output(format!(
                    "output `{}` is {:?}; prism reads f32 outputs",
                    info.name,
                    value.datum_type()
                )));
            }
            let data = value
                .try_as_plain_ram()
                .and_then(|v| v.as_slice::<f32>())
                .map_err(|e| fail(format!("output `{}`: {e:#}", info.name)))?;
            out.assign(&info.name, value.shape().iter().copied(), data);
        }
        Ok(())
    }
}

/// One stream's tensors for [`super::Recurrent`] on tract: the input is shared with the plan
/// (`Arc`, no copy) and written in place between runs; state outputs are moved into the next
/// run's inputs.
pub(crate) struct TractRecurrent {
    input: Arc<Tensor_>,
    /// The window duration `[1, 1]`, for a model with a duration input.
    duration: Arc<Tensor_>,
    /// Spec order; `None` only while a run holds them.
    states: Vec<Option<TValue>>,
    detections: Option<TValue>,
    layout: Layout,
    /// What feeds each graph input.
    feed: Vec<Feed>,
    /// Per graph output: the state index it produces, if any.
    produces: Vec<Option<usize>>,
}

impl TractRunner {
    pub(crate) fn recurrent(&self, layout: &Layout) -> Result<TractRecurrent> {
        let fail = |e: TractError| DeployError::Inference {
            backend: NAME,
            reason: format!("{e:#}"),
        };
        let mut produces = vec![None; self.plan.model().outputs.len()];
        for (k, (_, output, _)) in layout.states.iter().enumerate() {
            *produces.get_mut(*output).ok_or_else(|| {
                DeployError::BadSpec(format!("state {k}: graph output {output} out of range"))
            })? = Some(k);
        }
        let feed = layout.feeds.clone();
        let duration = Tensor_::from_shape(&[1, 1], &[layout.duration_s]).map_err(fail)?;
        let mut r = TractRecurrent {
            input: Arc::new(Tensor_::zero::<f32>(&layout.input_shape).map_err(fail)?),
            duration: Arc::new(duration),
            states: Vec::new(),
            detections: None,
            layout: layout.clone(),
            feed,
            produces,
        };
        r.reset()?;
        Ok(r)
    }
}

impl TractRecurrent {
    pub(crate) fn input_mut(&mut self) -> Result<&mut [f32]> {
        // The plan drops its reference when a run ends, so this is the only owner and nothing is
        // copied; `make_mut` copies only if someone still held it.
        let fail = |reason: String| DeployError::Inference {
            backend: NAME,
            reason,
        };
        Arc::make_mut(&mut self.input)
            .to_plain_array_view_mut::<f32>()
            .map_err(|e| fail(format!("input: {e:#}")))?
            .into_slice()
            .ok_or_else(|| fail("the input tensor is not contiguous".into()))
    }

    pub(crate) fn run(&mut self, runner: &TractRunner) -> Result<&[f32]> {
        let fail = |reason: String| DeployError::Inference {
            backend: NAME,
            reason,
        };
        let mut values: TVec<TValue> = TVec::with_capacity(self.feed.len());
        for slot in &self.feed {
            let value = match slot {
                Feed::Input => TValue::from_const(self.input.clone()),
                Feed::Duration => TValue::from_const(self.duration.clone()),
                Feed::State(k) => self.states[*k]
                    .take()
                    .ok_or_else(|| fail("state taken".into()))?,
            };
            values.push(value);
        }
        let results = match runner.plan.run(values) {
            Ok(r) => r,
            Err(e) => {
                self.reset()?;
                return Err(fail(format!("{e:#}")));
            }
        };
        for (i, value) in results.into_iter().enumerate() {
            if i == self.layout.detections_index {
                self.detections = Some(value);
            } else if let Some(Some(k)) = self.produces.get(i) {
                self.states[*k] = Some(value);
            }
        }
        if self.states.iter().any(Option::is_none) {
            self.reset()?;
            return Err(fail("the plan did not produce every state output".into()));
        }
        self.detections()
    }

    pub(crate) fn set_duration(&mut self, seconds: f32) -> Result<()> {
        let fail = |reason: String| DeployError::Inference {
            backend: NAME,
            reason: format!("duration: {reason}"),
        };
        // Held only here between runs: written in place, as the input is.
        Arc::make_mut(&mut self.duration)
            .to_plain_array_view_mut::<f32>()
            .map_err(|e| fail(format!("{e:#}")))?
            .into_slice()
            .ok_or_else(|| fail("not contiguous".into()))?
            .fill(seconds);
        Ok(())
    }

    pub(crate) fn detections(&self) -> Result<&[f32]> {
        match &self.detections {
            Some(v) => plain_f32(v, "detections"),
            None => Ok(&[]),
        }
    }

    pub(crate) fn state(&self, k: usize) -> Result<&[f32]> {
        match self.states.get(k) {
            Some(Some(v)) => plain_f32(v, "state"),
            _ => Err(DeployError::Input(format!("no state {k}"))),
        }
    }

    pub(crate) fn reset(&mut self) -> Result<()> {
        self.states = self
            .layout
            .states
            .iter()
            .map(|(_, _, shape)| Tensor_::zero::<f32>(shape).map(|t| Some(t.into_tvalue())))
            .collect::<TractResult<_>>()
            .map_err(|e| DeployError::Inference {
                backend: NAME,
                reason: format!("{e:#}"),
            })?;
        Ok(())
    }
}

fn plain_f32<'a>(v: &'a Tensor_, what: &str) -> Result<&'a [f32]> {
    v.try_as_plain_ram()
        .and_then(|v| v.as_slice::<f32>())
        .map_err(|e| DeployError::Output(format!("{what}: {e:#}; prism reads f32 outputs")))
}

/// tract's tensor type, renamed so it does not clash with ours.
type Tensor_ = tract_onnx::prelude::Tensor;

/// What a model file says about itself without building a plan: its graph inputs (the
/// initializers left out), its outputs and the `prism` metadata value.
#[derive(Debug, Clone)]
pub(crate) struct ModelInterface {
    pub inputs: Vec<TensorInfo>,
    pub outputs: Vec<TensorInfo>,
    pub spec_json: Option<String>,
}

/// Decodes the ONNX protobuf in `bytes` and reads its interface; errors are the reason, for
/// the caller to wrap with the path and backend.
pub(crate) fn read_interface(
    onnx: &tract_onnx::Onnx,
    bytes: &[u8],
) -> std::result::Result<(pb::ModelProto, ModelInterface), String> {
    let proto = onnx
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|e| format!("not an ONNX protobuf: {e:#}"))?;
    let spec_json = proto
        .metadata_props
        .iter()
        .find(|p| p.key == super::SPEC_KEY)
        .map(|p| p.value.clone());
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| "the file holds no graph".to_string())?;
    let initializers: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<TensorInfo> = graph
        .input
        .iter()
        .filter(|i| !initializers.contains(&i.name.as_str()))
        .map(value_info)
        .collect::<std::result::Result<_, _>>()?;
    let outputs: Vec<TensorInfo> = graph
        .output
        .iter()
        .map(value_info)
        .collect::<std::result::Result<_, _>>()?;
    Ok((
        proto,
        ModelInterface {
            inputs,
            outputs,
            spec_json,
        },
    ))
}

/// Name and shape of a graph input / output; only float32 tensors are accepted.
fn value_info(v: &pb::ValueInfoProto) -> std::result::Result<TensorInfo, String> {
    let tensor = match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t,
        _ => return Err(format!("`{}` is not a tensor", v.name)),
    };
    const FLOAT: i32 = pb::tensor_proto::DataType::Float as i32;
    if tensor.elem_type != FLOAT {
        return Err(format!(
            "`{}` has ONNX element type {}; prism models take and give float32",
            v.name, tensor.elem_type
        ));
    }
    let shape = tensor
        .shape
        .as_ref()
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match d.value {
                    Some(dimension::Value::DimValue(n)) if n >= 0 => Some(n as usize),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(TensorInfo {
        name: v.name.clone(),
        shape,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use tract_onnx::pb::tensor_proto::DataType;
    use tract_onnx::tract_core::ops::konst::Const;

    /// The weight: K x N, float16 values that float32 holds exactly.
    const K: usize = 1536;
    const N: usize = 1024;

    fn weight(k: usize, n: usize) -> f32 {
        ((k * 7 + n * 13) % 64) as f32 / 64.0 - 0.5
    }

    fn float_info(name: &str, dims: &[i64]) -> pb::ValueInfoProto {
        let dim = dims
            .iter()
            .map(|&d| pb::tensor_shape_proto::Dimension {
                value: Some(dimension::Value::DimValue(d)),
                ..Default::default()
            })
            .collect();
        pb::ValueInfoProto {
            name: name.into(),
            r#type: Some(pb::TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: DataType::Float as i32,
                    shape: Some(pb::TensorShapeProto { dim }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn node(op: &str, inputs: &[&str], output: &str, to: Option<DataType>) -> pb::NodeProto {
        pb::NodeProto {
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            attribute: to
                .map(|t| pb::AttributeProto {
                    name: "to".into(),
                    r#type: pb::attribute_proto::AttributeType::Int as i32,
                    i: t as i64,
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            ..Default::default()
        }
    }

    /// What `prism export onnx --precision fp16` writes for a linear layer: float32 in and
    /// out, casts at the edges, a float16 weight larger than tract's constant-folding budget.
    fn fp16_linear(path: &Path) {
        let bits: Vec<u8> = (0..K * N)
            .flat_map(|i| f16::from_f32(weight(i / N, i % N)).to_bits().to_le_bytes())
            .collect();
        let graph = pb::GraphProto {
            name: "fp16_linear".into(),
            node: vec![
                node("Cast", &["x"], "x16", Some(DataType::Float16)),
                node("MatMul", &["x16", "w"], "y16", None),
                node("Cast", &["y16"], "y", Some(DataType::Float)),
            ],
            initializer: vec![pb::TensorProto {
                name: "w".into(),
                dims: vec![K as i64, N as i64],
                data_type: DataType::Float16 as i32,
                raw_data: bits,
                ..Default::default()
            }],
            input: vec![float_info("x", &[1, K as i64])],
            output: vec![float_info("y", &[1, N as i64])],
            ..Default::default()
        };
        let model = pb::ModelProto {
            ir_version: 8,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            }],
            graph: Some(graph),
            ..Default::default()
        };
        std::fs::write(path, prost::Message::encode_to_vec(&model)).unwrap();
    }

    #[test]
    fn a_large_float16_weight_is_converted_once_not_on_every_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fp16_linear.onnx");
        fp16_linear(&path);
        let loaded = TractRunner::load(&path, None).unwrap();
        let model = loaded.runner.plan.model();
        if cfg!(target_arch = "x86_64") {
            // Left to tract, the plan keeps the float16 weight and a cast to float32 that runs
            // with every inference.
            let f16_consts: Vec<&str> = model
                .nodes
                .iter()
                .filter(|n| {
                    n.op_as::<Const>()
                        .is_some_and(|c| c.val().datum_type() == f16::datum_type())
                })
                .map(|n| n.name.as_str())
                .collect();
            assert!(
                f16_consts.is_empty(),
                "float16 weights left: {f16_consts:?}"
            );
        }
        let x: Vec<f32> = (0..K).map(|k| ((k % 17) as f32 - 8.0) / 16.0).collect();
        let infos = [TensorInfo {
            name: "y".into(),
            shape: vec![Some(1), Some(N)],
        }];
        let mut out = [Tensor {
            name: "y".into(),
            shape: vec![],
            data: vec![],
        }];
        let view = TensorView {
            name: "x",
            shape: &[1, K],
            data: &x,
        };
        loaded.runner.run(&[view], &infos, &mut out).unwrap();
        for (n, y) in out[0].data.iter().enumerate() {
            let want: f64 = (0..K).map(|k| x[k] as f64 * weight(k, n) as f64).sum();
            assert!(
                (*y as f64 - want).abs() <= 1e-3 * want.abs().max(1.0),
                "{n}: {y} vs {want}"
            );
        }
    }
}
