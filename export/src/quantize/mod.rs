//! Static post-training INT8 quantization of an ONNX file, written as explicit QDQ
//! (`QuantizeLinear` / `DequantizeLinear`), the form ONNX Runtime fuses into int8 kernels and
//! TensorRT reads as explicit quantization.
//!
//! What is quantized: every convolution, `MatMul` and `Gemm` whose weight is an initializer.
//! Weights become int8 (symmetric, per output channel by default), biases int32 at the scale
//! `input scale x weight scale`, and the activations entering and leaving those nodes int8
//! symmetric (S8S8, what TensorRT requires) or uint8 asymmetric (U8S8). Everything else (LayerNorm,
//! Softmax, the activations, the LSTM gates) stays float. By default the layers the references keep
//! in float stay float too: the first layer (it reads the raw input), the last layer of each
//! output head, and the layers reading the recurrent state. `include` patterns opt them in.
//!
//! Calibration runs the float model in tract over real inputs; for a recurrent model the state
//! outputs feed the state inputs window after window, so the state path is calibrated on the
//! values it really takes. The ONNX file is read and written through tract-onnx's prost types.

mod calibrate;
mod graph;
mod observe;
mod plan;
mod report;
mod rewrite;

use std::collections::HashMap;
use std::path::Path;

use prost::Message;
use thiserror::Error;
use tract_onnx::pb;

pub use calibrate::Method;
pub(crate) use observe::Observer;
pub use plan::KeepReason;
pub use report::{NodeSqnr, QuantReport};

/// The `metadata_props` key of prism's model description.
pub const METADATA_KEY: &str = "prism";

/// Type of the quantized activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ActivationType {
    /// Signed 8-bit, symmetric (zero point 0): S8S8, what TensorRT and GPUs require.
    #[default]
    Int8,
    /// Unsigned 8-bit, asymmetric: U8S8, for ONNX Runtime on x86 CPUs (with or without VNNI,
    /// its x86 kernels fuse this layout; S8S8 mostly runs as dequantize + float there).
    Uint8,
}

impl ActivationType {
    /// `int8` or `uint8`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Int8 => "int8",
            Self::Uint8 => "uint8",
        }
    }
}

/// How to quantize.
#[derive(Debug, Clone)]
pub struct QuantizeOptions {
    /// How activation ranges are chosen from the calibration data.
    pub method: Method,
    /// One weight scale per output channel (default) or one per tensor.
    pub per_channel: bool,
    /// Activation type.
    pub activations: ActivationType,
    /// 7-bit weights (-63..=63): x86 CPUs without VNNI multiply u8 x s8 pairs with
    /// `VPMADDUBSW`, whose 16-bit sums saturate with full-range weights, so ONNX Runtime's int8
    /// kernels there drift from the QDQ arithmetic; ONNX Runtime's `reduce_range`.
    pub reduce_range: bool,
    /// Node-name or op-type glob patterns kept in float. Each must match a quantizable node.
    pub exclude: Vec<String>,
    /// Glob patterns of nodes the defaults keep in float (first layer, heads, recurrent state)
    /// to quantize anyway. Each must match such a node.
    pub include: Vec<String>,
    /// Measure the SQNR of every quantized node (a second pass over the calibration data).
    pub sqnr_report: bool,
}

impl Default for QuantizeOptions {
    fn default() -> Self {
        Self {
            method: Method::Percentile(99.999),
            per_channel: true,
            activations: ActivationType::Int8,
            reduce_range: false,
            exclude: Vec::new(),
            include: Vec::new(),
            sqnr_report: false,
        }
    }
}

/// A recurrent state tensor: `output` of one run is `input` of the next.
#[derive(Debug, Clone)]
pub struct StateLink {
    /// Graph input name.
    pub input: String,
    /// Graph output name.
    pub output: String,
    /// Shape (batch 1).
    pub shape: Vec<usize>,
}

/// A scalar input holding each window's duration (a state-space memory discretized by time).
#[derive(Debug, Clone)]
pub struct DurationFeed {
    /// Graph input name; its shape is `[1, 1]`.
    pub input: String,
    /// The duration every calibration window is run with, seconds: the model's window length,
    /// what a stream of fixed windows feeds.
    pub seconds: f32,
}

/// The model's inputs as calibration feeds them: one data input, the recurrent state, and the
/// window duration when the model takes one.
#[derive(Debug, Clone)]
pub struct Feeds {
    /// The data input's name.
    pub input: String,
    /// Its shape (batch 1).
    pub input_shape: Vec<usize>,
    /// Recurrent state, zeroed at the start of each sequence.
    pub state: Vec<StateLink>,
    /// The duration input, for a model that has one.
    pub duration: Option<DurationFeed>,
}

/// One calibration input.
#[derive(Debug, Clone)]
pub struct CalibrationWindow {
    /// The data input's values, row-major, `product(input_shape)` of them.
    pub input: Vec<f32>,
    /// This window starts a new sequence: the state is zeroed before it.
    pub new_sequence: bool,
}

/// Error type calibration sources report.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// Calibration inputs, readable more than once (calibration, then the SQNR report).
pub trait CalibrationData {
    /// Windows per pass (for progress).
    fn len(&self) -> usize;
    /// True when there is nothing to read.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A fresh pass over the windows, in order.
    fn windows(&mut self) -> Box<dyn Iterator<Item = Result<CalibrationWindow, SourceError>> + '_>;
}

/// Which pass a progress report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Collecting activation ranges from the float model.
    Calibrate,
    /// Comparing the float and quantized models node by node.
    Report,
}

/// Everything that stops a quantization. Nothing is written when one occurs.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum QuantizeError {
    /// The bytes are not an ONNX model, or the graph is not one this quantizer handles.
    #[error("not a model prism can quantize: {0}")]
    BadModel(String),
    /// The file has no `prism` metadata entry (it was not written by `prism export onnx`).
    #[error(
        "the model has no `prism` metadata entry; quantize files written by `prism export onnx`"
    )]
    NoMetadata,
    /// The model is already quantized or reduced in precision.
    #[error("the model is already quantized ({0}); quantize the float32 export")]
    AlreadyQuantized(String),
    /// An `exclude` or `include` pattern matched no node it could apply to.
    #[error("--{flag} {pattern:?} matches no {what}")]
    PatternMatchesNothing {
        /// `exclude` or `include`.
        flag: &'static str,
        /// The pattern.
        pattern: String,
        /// What it had to match.
        what: &'static str,
    },
    /// A pattern is not a valid glob.
    #[error("--{flag} {pattern:?} is not a valid pattern: {reason}")]
    BadPattern {
        /// `exclude` or `include`.
        flag: &'static str,
        /// The pattern.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// The feeds do not match the graph's inputs.
    #[error("calibration feeds: {0}")]
    Feeds(String),
    /// The calibration data holds no window.
    #[error("the calibration data holds no window")]
    NoCalibrationData,
    /// The calibration source failed.
    #[error("reading calibration window {index}")]
    Source {
        /// Window index in the pass.
        index: usize,
        /// The cause.
        #[source]
        source: SourceError,
    },
    /// tract could not load or run the float or quantized model.
    #[error("running the {which} model in tract: {reason}")]
    Run {
        /// `float` or `quantized`.
        which: &'static str,
        /// tract's message.
        reason: String,
    },
    /// Every quantizable node is kept in float.
    #[error("no node left to quantize ({0})")]
    NothingToQuantize(String),
    /// Writing the output failed.
    #[error("writing {}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A quantized model and what was done to it.
#[derive(Debug, Clone)]
pub struct Quantized {
    /// The QDQ model.
    pub model: pb::ModelProto,
    /// Which nodes were quantized or kept, and (when asked) their SQNR.
    pub report: QuantReport,
}

impl Quantized {
    /// The serialized model.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.model.encode_to_vec()
    }

    /// Writes the model to `path` through a temporary file in the same folder, so a failed
    /// write leaves no partial file behind. Returns the size in bytes.
    pub fn save(&self, path: &Path) -> Result<u64, QuantizeError> {
        write_atomically(path, &self.to_bytes())
    }
}

/// Reads an ONNX model.
pub fn read_model(bytes: &[u8]) -> Result<pb::ModelProto, QuantizeError> {
    pb::ModelProto::decode(bytes).map_err(|e| QuantizeError::BadModel(format!("{e}")))
}

/// Quantizes `model` (a float32 export with prism metadata) on `data`.
pub fn quantize(
    model: &pb::ModelProto,
    feeds: &Feeds,
    data: &mut dyn CalibrationData,
    options: &QuantizeOptions,
    progress: &mut dyn FnMut(Pass, usize, usize),
) -> Result<Quantized, QuantizeError> {
    let metadata = metadata_json(model)?;
    check_not_quantized(model, &metadata)?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| QuantizeError::BadModel("the file holds no graph".into()))?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(0, |o| o.version);
    if opset < 13 {
        return Err(QuantizeError::BadModel(format!(
            "opset {opset}: per-channel QDQ needs opset 13 or later; export with a newer opset"
        )));
    }
    let index = graph::GraphIndex::new(graph)?;
    let plan = plan::Plan::new(&index, feeds, options)?;
    if data.is_empty() {
        return Err(QuantizeError::NoCalibrationData);
    }

    // Pass 1: activation statistics from the float model.
    let tensors = plan.activation_tensors(&index);
    let mut stats: Vec<calibrate::TensorStats> = tensors
        .iter()
        .map(|_| calibrate::TensorStats::new(options.method.needs_histogram()))
        .collect();
    let mut observer = observe::Observer::new(model, feeds, &tensors, "float")?;
    let windows = observer.stream(data, Pass::Calibrate, progress, &mut |k, values| {
        stats[k].add(values)
    })?;
    let ranges: HashMap<String, calibrate::Range> = tensors
        .iter()
        .zip(&stats)
        .map(|(name, s)| (name.clone(), s.range(options.method)))
        .collect();

    let mut quantized = rewrite::rewrite(model, &index, &plan, &ranges, options)?;
    let mut report = QuantReport::new(&index, &plan, options, windows);

    // Pass 2 (optional): how far each quantized node's output moved.
    if options.sqnr_report {
        report.sqnr =
            report::measure_sqnr(model, &quantized, feeds, &index, &plan, data, progress)?;
    }
    set_metadata(&mut quantized, metadata, &report, options)?;
    Ok(Quantized {
        model: quantized,
        report,
    })
}

/// The parsed `prism` metadata entry.
fn metadata_json(model: &pb::ModelProto) -> Result<serde_json::Value, QuantizeError> {
    let entry = model
        .metadata_props
        .iter()
        .find(|p| p.key == METADATA_KEY)
        .ok_or(QuantizeError::NoMetadata)?;
    serde_json::from_str(&entry.value)
        .map_err(|e| QuantizeError::BadModel(format!("the `prism` metadata is not JSON: {e}")))
}

/// Refuses models that already hold quantized nodes or say they are not float32.
fn check_not_quantized(
    model: &pb::ModelProto,
    metadata: &serde_json::Value,
) -> Result<(), QuantizeError> {
    if let Some(p) = metadata.get("precision").and_then(|p| p.as_str()) {
        if p != "fp32" {
            return Err(QuantizeError::AlreadyQuantized(format!(
                "its metadata says precision {p}"
            )));
        }
    }
    const QUANTIZED_OPS: [&str; 8] = [
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "QLinearConv",
        "QLinearMatMul",
        "ConvInteger",
        "MatMulInteger",
        "MatMulNBits",
    ];
    if let Some(node) = model
        .graph
        .iter()
        .flat_map(|g| &g.node)
        .find(|n| QUANTIZED_OPS.contains(&n.op_type.as_str()))
    {
        return Err(QuantizeError::AlreadyQuantized(format!(
            "node {:?} is a {}",
            node.name, node.op_type
        )));
    }
    Ok(())
}

/// Records how the model was made in its `prism` metadata.
fn set_metadata(
    model: &mut pb::ModelProto,
    mut metadata: serde_json::Value,
    report: &QuantReport,
    options: &QuantizeOptions,
) -> Result<(), QuantizeError> {
    let obj = metadata
        .as_object_mut()
        .ok_or_else(|| QuantizeError::BadModel("the `prism` metadata is not an object".into()))?;
    obj.insert("precision".into(), "int8".into());
    obj.insert("quantization".into(), report.metadata(options));
    let json = serde_json::to_string(&metadata)
        .map_err(|e| QuantizeError::BadModel(format!("metadata: {e}")))?;
    for entry in &mut model.metadata_props {
        if entry.key == METADATA_KEY {
            entry.value = json.clone();
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` via a sibling temporary file and a rename.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<u64, QuantizeError> {
    let io = |source| QuantizeError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })?;
    Ok(bytes.len() as u64)
}
