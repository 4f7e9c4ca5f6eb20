//! prism-export: export any Burn module to ONNX.
//!
//! The forward pass runs once (twice for a dynamic batch axis) on Burn's capture device, which
//! records every tensor operation as Burn IR instead of computing it. Each IR operation is then
//! lowered to ONNX nodes, values known at export time (weights, constants) become initializers
//! stored once, and the model is streamed to disk.
//!
//! ```no_run
//! # use burn::{module::Module, nn::{Linear, LinearConfig}, tensor::{Device, Tensor}};
//! # #[derive(Module, Debug)] struct Mlp { fc: Linear }
//! # fn main() -> Result<(), prism_export::ExportError> {
//! let device = Device::flex();
//! let model = Mlp { fc: LinearConfig::new(4, 2).init(&device) };
//! let sample = Tensor::<2>::zeros([1, 4], &device);
//! let options = prism_export::ExportOptions::default().dynamic_batch(true);
//! let onnx = prism_export::export(&model, sample, |m, x| m.fc.forward(x), &options)?;
//! onnx.save("mlp.onnx")?;
//! # Ok(()) }
//! ```

mod capture;
mod dynamic;
mod error;
#[cfg(feature = "quantize")]
pub mod fp16;
mod fuse;
mod graph;
mod lower;
pub mod npy;
mod optimize;
pub mod proto;
#[cfg(feature = "python")]
pub mod python;
#[cfg(feature = "quantize")]
pub mod quantize;
pub mod verify;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::backend::capture::TensorId;
use burn::backend::ir::TensorIr;
use burn::module::Module;

pub use capture::{capture, Captured, TensorSet};
pub use dynamic::{SymDim, Symbolic};
pub use error::{ExportError, Result};
pub use verify::{verify, OnnxRunner, OutputError, VerifyOptions, VerifyReport};

use graph::onnx_type;
use proto::{Dim, GraphProto, ModelProto, OperatorSetId, ValueInfo};

/// Default operator set: the first with `LayerNormalization`.
pub const DEFAULT_OPSET: i64 = 17;

/// How to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// ONNX operator set (17 by default; 20+ emits `Gelu` directly).
    pub opset: i64,
    /// Make axis 0 of every input (and what depends on it) symbolic (`batch`).
    pub dynamic_batch: bool,
    /// Graph input names in flattening order; empty means `input_0`, `input_1`, ...
    pub input_names: Vec<String>,
    /// Graph output names in flattening order; empty means `output_0`, ...
    pub output_names: Vec<String>,
    /// JSON stored under the `prism` key of `metadata_props`.
    pub metadata_json: Option<String>,
    /// Graph name.
    pub graph_name: String,
    /// Rewrite the lowered graph for faster inference (on by default): batch norms folded into
    /// convolutions, 2-D linear weights, channel scales folded into linear layers, nearest
    /// upsampling as `Resize`. Every rewrite is exact up to float rounding.
    pub fuse: bool,
    /// With `fuse`, also split strided convolutions of graph inputs whose channel count is above
    /// 16 and not a multiple of 16 (event histograms: 20) into 16k channels plus a space-to-depth
    /// rest, which ONNX Runtime's blocked kernels and tract both run faster (off by default: a
    /// choice measured for event histograms; the RVT export turns it on).
    pub split_input_conv: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            opset: DEFAULT_OPSET,
            dynamic_batch: false,
            input_names: vec![],
            output_names: vec![],
            metadata_json: None,
            graph_name: "prism".into(),
            fuse: true,
            split_input_conv: false,
        }
    }
}

impl ExportOptions {
    /// Set the operator set.
    pub fn opset(mut self, opset: i64) -> Self {
        self.opset = opset;
        self
    }
    /// Enable or disable the symbolic batch axis.
    pub fn dynamic_batch(mut self, on: bool) -> Self {
        self.dynamic_batch = on;
        self
    }
    /// Name the graph inputs.
    pub fn inputs<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.input_names = names.into_iter().map(Into::into).collect();
        self
    }
    /// Name the graph outputs.
    pub fn outputs<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.output_names = names.into_iter().map(Into::into).collect();
        self
    }
    /// Attach the `prism` metadata JSON.
    pub fn metadata(mut self, json: impl Into<String>) -> Self {
        self.metadata_json = Some(json.into());
        self
    }
    /// Name the graph.
    pub fn graph_name(mut self, name: impl Into<String>) -> Self {
        self.graph_name = name.into();
        self
    }
    /// Enable or disable the inference rewrites (see [`ExportOptions::fuse`]).
    pub fn fuse(mut self, on: bool) -> Self {
        self.fuse = on;
        self
    }
    /// Enable or disable the input-convolution split (see [`ExportOptions::split_input_conv`]).
    pub fn split_input_conv(mut self, on: bool) -> Self {
        self.split_input_conv = on;
        self
    }
}

/// Figures about an export.
#[derive(Debug, Clone, Default)]
pub struct ExportStats {
    /// Operations recorded by capture (without value declarations).
    pub captured_ops: usize,
    /// ONNX nodes written.
    pub nodes: usize,
    /// Initializers written.
    pub initializers: usize,
    /// Bytes of initializer data.
    pub initializer_bytes: usize,
    /// ONNX operator histogram.
    pub op_counts: BTreeMap<String, usize>,
    /// How often each inference rewrite fired (see [`ExportOptions::fuse`]).
    pub rewrites: BTreeMap<String, usize>,
}

/// An exported model, held with its weights until saved.
#[derive(Debug, Clone)]
pub struct OnnxModel {
    proto: ModelProto,
    stats: ExportStats,
}

impl OnnxModel {
    /// The model structure.
    pub fn proto(&self) -> &ModelProto {
        &self.proto
    }
    /// Export figures.
    pub fn stats(&self) -> &ExportStats {
        &self.stats
    }
    /// Input names in order.
    pub fn input_names(&self) -> Vec<String> {
        self.proto
            .graph
            .input
            .iter()
            .map(|v| v.name.clone())
            .collect()
    }
    /// Output names in order.
    pub fn output_names(&self) -> Vec<String> {
        self.proto
            .graph
            .output
            .iter()
            .map(|v| v.name.clone())
            .collect()
    }
    /// Serialized size in bytes.
    pub fn encoded_len(&self) -> usize {
        self.proto.encoded_len()
    }
    /// Serialize into memory.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.proto.to_bytes()
    }
    /// Stream the model to `path` (weights are not copied again). Returns the size written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<u64> {
        let path = path.as_ref();
        let io = |source| ExportError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::create(path).map_err(io)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        self.proto.write_to(&mut w).map_err(io)?;
        let file = w.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        Ok(self.encoded_len() as u64)
    }
}

/// How many pairs of batch sizes (b, b + 1) a dynamic-batch export tries before it reports
/// that the forward pass depends on the batch.
const DYNAMIC_BATCH_PAIRS: usize = 6;

/// Export `forward(module, inputs)` to ONNX.
///
/// `inputs` are sample tensors on an executing device (their values are not used, only their
/// shapes and dtypes; with `dynamic_batch` axis 0 is resized for a second capture). `forward`
/// receives the module and inputs moved to the capture device and returns the outputs.
pub fn export<M, I, O, F>(
    module: &M,
    inputs: I,
    forward: F,
    options: &ExportOptions,
) -> Result<OnnxModel>
where
    M: Module,
    I: TensorSet,
    O: TensorSet,
    F: Fn(&M, I) -> O,
{
    if !(13..=22).contains(&options.opset) {
        return Err(ExportError::Options(format!(
            "opset {} is outside 13..=22",
            options.opset
        )));
    }
    let metadata = match &options.metadata_json {
        Some(json) => {
            serde_json::from_str::<serde_json::Value>(json)
                .map_err(|e| ExportError::Options(format!("metadata is not valid JSON: {e}")))?;
            vec![("prism".to_string(), json.clone())]
        }
        None => vec![],
    };
    let mut shapes = Vec::new();
    inputs.collect_shapes(&mut shapes);

    if !options.dynamic_batch {
        let captured = capture::capture(module, inputs, &forward)?;
        return lower_captured(captured, None, metadata, options);
    }
    let b1 = shapes
        .first()
        .and_then(|s| s.first())
        .copied()
        .ok_or_else(|| {
            ExportError::Options("dynamic batch needs inputs with at least one axis".into())
        })?;
    if shapes.iter().any(|s| s.first() != Some(&b1)) {
        return Err(ExportError::Options(
            "dynamic batch needs every input to have the same size on axis 0".into(),
        ));
    }
    // Dynamic batch: two captures at batches b and b + 1 must record the same operations;
    // the axes whose sizes differ become affine in the batch. Burn picks some layouts by
    // shape (`nn::Linear` folds a small batch into its rows while that makes the product
    // squarer, and stops at a batch that depends on the layer), so a pair can straddle such
    // a switch: the next pair is tried then. The graph of either form is valid at any batch.
    let mut first_error = None;
    for b in b1..b1 + DYNAMIC_BATCH_PAIRS {
        // The structure at b + 1 first, its values dropped, so that at most one capture's
        // weights are alive at a time.
        let other = capture::capture(module, inputs.with_batch(b + 1), &forward)?.graph;
        let captured = capture::capture(module, inputs.with_batch(b), &forward)?;
        match Symbolic::infer(&captured.graph, &other, b, b + 1) {
            Ok(mut sym) => {
                for (id, shape) in captured.graph.inputs.iter().zip(&shapes) {
                    let mut dims = vec![None; shape.len()];
                    if !dims.is_empty() {
                        dims[0] = Some(SymDim { a: 1, c: 0 });
                    }
                    sym.dims.insert(*id, dims);
                }
                return lower_captured(captured, Some(sym), metadata, options);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(match first_error {
        Some(ExportError::Dynamic(msg)) => ExportError::Dynamic(format!(
            "{msg} (every pair of batches from {b1} and {} to {} and {} differs)",
            b1 + 1,
            b1 + DYNAMIC_BATCH_PAIRS - 1,
            b1 + DYNAMIC_BATCH_PAIRS
        )),
        Some(other) => other,
        None => ExportError::Dynamic("no batch pair was tried".into()),
    })
}

fn names(given: &[String], ids: &[TensorId], prefix: &str) -> Result<Vec<(TensorId, String)>> {
    if !given.is_empty() && given.len() != ids.len() {
        return Err(ExportError::Options(format!(
            "{} {prefix} names given for {} {prefix}s",
            given.len(),
            ids.len()
        )));
    }
    Ok(ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            (
                *id,
                given
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("{prefix}_{i}")),
            )
        })
        .collect())
}

fn value_info(name: &str, t: &TensorIr, sym: &Option<Symbolic>) -> Result<ValueInfo> {
    let dims = sym.as_ref().and_then(|s| s.dims.get(&t.id));
    let shape = t
        .shape
        .iter()
        .enumerate()
        .map(
            |(i, d)| match dims.and_then(|d| d.get(i).copied().flatten()) {
                Some(SymDim { a: 1, c: 0 }) => Dim::Param("batch".into()),
                Some(SymDim { a, c }) => Dim::Param(format!("batch_x{a}_p{c}")),
                None => Dim::Value(*d as i64),
            },
        )
        .collect();
    Ok(ValueInfo {
        name: name.to_string(),
        elem_type: onnx_type(t.dtype)?,
        shape,
    })
}

fn ir_version(opset: i64) -> i64 {
    match opset {
        ..=17 => 8,
        18..=20 => 9,
        _ => 10,
    }
}

/// Lower a capture to an ONNX model.
fn lower_captured(
    captured: Captured,
    sym: Option<Symbolic>,
    metadata: Vec<(String, String)>,
    options: &ExportOptions,
) -> Result<OnnxModel> {
    let Captured {
        graph,
        values,
        param_names,
    } = captured;
    let inputs = names(&options.input_names, &graph.inputs, "input")?;
    let outputs = names(&options.output_names, &graph.outputs, "output")?;

    // Boundary tensor metadata, before values move into the lowerer.
    let mut meta: HashMap<TensorId, TensorIr> = HashMap::new();
    for (id, data) in &values {
        if graph.inputs.contains(id) {
            meta.insert(
                *id,
                TensorIr::uninit(*id, data.shape().clone(), data.dtype()),
            );
        }
    }
    for op in &graph.operations {
        for t in op.outputs() {
            if graph.outputs.contains(&t.id) {
                meta.insert(t.id, t.clone());
            }
        }
    }
    let mut input_infos = Vec::new();
    for (id, name) in &inputs {
        let t = meta
            .get(id)
            .ok_or_else(|| ExportError::Boundary(format!("input {id} unknown")))?;
        input_infos.push(value_info(name, t, &sym)?);
    }
    let mut output_infos = Vec::new();
    for (id, name) in &outputs {
        let t = match meta.get(id) {
            Some(t) => t.clone(),
            None => {
                let data = values
                    .get(id)
                    .ok_or_else(|| ExportError::Boundary(format!("output {id} unknown")))?;
                TensorIr::uninit(*id, data.shape().clone(), data.dtype())
            }
        };
        output_infos.push(value_info(name, &t, &sym)?);
    }

    let captured_ops = graph.operations.len();
    let mut lowerer = lower::Lowerer::new(
        options.opset,
        values,
        param_names,
        &inputs,
        &outputs,
        sym,
        &graph.operations,
    )?;
    lowerer.lower_all(&graph.operations)?;
    lowerer.finish_outputs(&outputs)?;
    let mut builder = std::mem::take(&mut lowerer.g);
    drop(lowerer);
    let mut shapes = std::mem::take(&mut builder.shapes);
    for v in &input_infos {
        let dims = v
            .shape
            .iter()
            .map(|d| if let Dim::Value(d) = d { *d } else { -1 })
            .collect();
        shapes.insert(v.name.clone(), dims);
    }

    let mut graph_proto = GraphProto {
        node: builder.nodes,
        name: options.graph_name.clone(),
        initializer: builder.initializers,
        input: input_infos,
        output: output_infos,
    };
    let mut rewrites = BTreeMap::new();
    if options.fuse {
        // Rewrites read node outputs by producer; tidy first so renames are settled.
        optimize::tidy(&mut graph_proto);
        let f = fuse::fuse(&mut graph_proto, &mut shapes, options.split_input_conv);
        for (name, n) in [
            ("batch_norm_into_conv", f.batch_norms),
            ("constant_to_2d", f.squeezed),
            ("channel_scale_into_linear", f.channel_scales),
            ("upsample_to_resize", f.upsamples),
            ("input_conv_split", f.split_convs),
        ] {
            rewrites.insert(name.to_string(), n);
        }
    }
    optimize::tidy(&mut graph_proto);

    let mut stats = ExportStats {
        captured_ops,
        nodes: graph_proto.node.len(),
        initializers: graph_proto.initializer.len(),
        initializer_bytes: graph_proto
            .initializer
            .iter()
            .map(|t| t.raw_data.as_bytes().len())
            .sum(),
        op_counts: BTreeMap::new(),
        rewrites,
    };
    for n in &graph_proto.node {
        *stats.op_counts.entry(n.op_type.clone()).or_default() += 1;
    }
    let proto = ModelProto {
        ir_version: ir_version(options.opset),
        opset_import: vec![OperatorSetId {
            domain: String::new(),
            version: options.opset,
        }],
        producer_name: "prism-export".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: String::new(),
        graph: graph_proto,
        metadata_props: metadata,
    };
    Ok(OnnxModel { proto, stats })
}
