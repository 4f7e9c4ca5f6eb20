//! [`Engine`]: one ONNX model loaded on one backend, run with named `f32` tensors.
//!
//! Backends:
//! - `tract`: pure Rust, CPU, no shared library (the embedded default). The optimised plan is
//!   immutable and runs with `&self`, so one engine serves any number of threads in parallel.
//! - `ort-cpu`, `ort-cuda`, `ort-tensorrt`: ONNX Runtime through `ort` with `load-dynamic`; see
//!   [`onnxruntime`] for how the library is found. ONNX Runtime's `Session::run` takes `&mut self`,
//!   so an ORT engine holds its session behind a `Mutex`: calls from several threads are
//!   serialised. For parallel ORT inference load one engine per worker.
//!
//! For recurrent models run window after window, [`Recurrent`] keeps one stream's input and state
//! tensors in the backend's own memory, so a window costs no tensor copies in prism.
//!
//! Every engine reads the model's `prism` metadata ([`ModelSpec`]) and checks it against the
//! graph's inputs and outputs when loading, so a detector built on it can trust the spec.

pub mod onnxruntime;
mod recurrent;
mod tract;

pub use recurrent::Recurrent;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use prism_core::spec::{ModelSpec, METADATA_KEY};

use crate::error::{DeployError, Result};

/// Where a model runs. Parsed from the names users type (`tract`, `ort-cpu`, `ort-cuda`,
/// `ort-tensorrt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Backend {
    /// tract on the CPU.
    #[default]
    Tract,
    /// ONNX Runtime, CPU execution provider.
    OrtCpu,
    /// ONNX Runtime, CUDA execution provider.
    OrtCuda,
    /// ONNX Runtime, TensorRT execution provider (CUDA for the nodes TensorRT does not take).
    OrtTensorRt,
}

impl Backend {
    pub const ALL: [Backend; 4] = [
        Backend::Tract,
        Backend::OrtCpu,
        Backend::OrtCuda,
        Backend::OrtTensorRt,
    ];

    /// The name users type.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Tract => "tract",
            Backend::OrtCpu => "ort-cpu",
            Backend::OrtCuda => "ort-cuda",
            Backend::OrtTensorRt => "ort-tensorrt",
        }
    }

    pub fn is_ort(self) -> bool {
        !matches!(self, Backend::Tract)
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = DeployError;

    fn from_str(s: &str) -> Result<Self> {
        let lower = s.trim().to_ascii_lowercase();
        Backend::ALL
            .into_iter()
            .find(|b| b.name() == lower)
            .ok_or_else(|| DeployError::UnknownBackend(s.to_string()))
    }
}

/// TensorRT settings for [`Backend::OrtTensorRt`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TensorRtOptions {
    /// Build fp16 kernels where TensorRT sees fit.
    pub fp16: bool,
    /// Enable int8; for QDQ models the scales come from the Q/DQ nodes (explicit quantization).
    pub int8: bool,
    /// Directory for the serialized engines and the timing cache. Building an engine takes from
    /// seconds to minutes, so set this in production: later sessions load the engine instead.
    pub cache_dir: Option<PathBuf>,
}

/// How to load a model.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    pub backend: Backend,
    /// Threads within one operator. ONNX Runtime: `None` is ORT's default, one per core. tract:
    /// `None` or 1 runs on the calling thread; above 1 the engine gets its own pool of that many
    /// threads for matrix products and convolutions.
    pub intra_threads: Option<usize>,
    /// ONNX Runtime: threads across independent operators (`None`: ORT's default).
    pub inter_threads: Option<usize>,
    /// The libonnxruntime file to load (else `ORT_DYLIB_PATH`, else the xtask-provisioned wheel);
    /// see [`onnxruntime::library_path`].
    pub ort_library: Option<PathBuf>,
    /// CUDA device for `ort-cuda` / `ort-tensorrt`.
    pub device_id: i32,
    /// `ort-cuda` / `ort-tensorrt`: let ONNX Runtime's CUDA provider compute fp32 convolutions and
    /// matrix products in TF32 (10-bit mantissa; faster on Ampere and later). ONNX Runtime turns
    /// it on by default; prism does not, so that an fp32 model gives fp32 results on every
    /// backend (an fp16 model is the fast choice that says what it is).
    pub cuda_tf32: bool,
    pub tensorrt: TensorRtOptions,
}

impl EngineOptions {
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            ..Self::default()
        }
    }
}

/// Name and shape of a graph input or output; `None` marks a dynamic axis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<Option<usize>>,
}

/// A borrowed named `f32` tensor, row-major.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    pub name: &'a str,
    pub shape: &'a [usize],
    pub data: &'a [f32],
}

impl<'a> TensorView<'a> {
    pub fn new(name: &'a str, shape: &'a [usize], data: &'a [f32]) -> Self {
        Self { name, shape, data }
    }
}

/// An owned named `f32` tensor, row-major.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn view(&self) -> TensorView<'_> {
        TensorView {
            name: &self.name,
            shape: &self.shape,
            data: &self.data,
        }
    }

    /// Overwrites this tensor with `shape` and `data`, reusing its buffers (no allocation once
    /// they are large enough).
    pub(crate) fn assign(
        &mut self,
        name: &str,
        shape: impl IntoIterator<Item = usize>,
        data: &[f32],
    ) {
        if self.name != name {
            self.name.clear();
            self.name.push_str(name);
        }
        self.shape.clear();
        self.shape.extend(shape);
        self.data.clear();
        self.data.extend_from_slice(data);
    }
}

/// The backend half of an engine.
enum Runner {
    Tract(tract::TractRunner),
    Ort(onnxruntime::OrtRunner),
}

/// One model on one backend; see the module documentation. `Send + Sync`: share it with `Arc`.
pub struct Engine {
    backend: Backend,
    path: PathBuf,
    spec: ModelSpec,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
    runner: Runner,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("backend", &self.backend)
            .field("path", &self.path)
            .field("model", &self.spec.model)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish()
    }
}

/// What a backend hands back after loading: the graph interface and the spec text.
pub(crate) struct Loaded<R> {
    pub runner: R,
    pub inputs: Vec<TensorInfo>,
    pub outputs: Vec<TensorInfo>,
    /// The `prism` metadata value, if the file has one.
    pub spec_json: Option<String>,
}

/// A model file's interface and its checked `prism` spec, read without building a plan.
#[derive(Debug, Clone)]
pub struct Inspected {
    pub spec: ModelSpec,
    pub inputs: Vec<TensorInfo>,
    pub outputs: Vec<TensorInfo>,
}

/// Reads the ONNX protobuf in `bytes` (named `path` in errors) as [`Engine::load`] does before
/// any backend runs it: the graph interface, the `prism` spec, and the spec checked against the
/// graph. Any bytes give a model or an error, never a panic (a cargo-fuzz target runs it).
pub fn inspect(path: &Path, bytes: &[u8]) -> Result<Inspected> {
    let (_, interface) = tract::read_interface(&tract_onnx::onnx(), bytes).map_err(|reason| {
        DeployError::BadModel {
            path: path.into(),
            backend: tract::NAME,
            reason,
        }
    })?;
    let spec_json = interface
        .spec_json
        .ok_or_else(|| DeployError::NoSpec { path: path.into() })?;
    let spec = ModelSpec::from_json(&spec_json).map_err(|source| DeployError::Spec {
        path: path.into(),
        source,
    })?;
    check_spec(&spec, &interface.inputs, &interface.outputs).map_err(|reason| {
        DeployError::SpecMismatch {
            path: path.into(),
            reason,
        }
    })?;
    Ok(Inspected {
        spec,
        inputs: interface.inputs,
        outputs: interface.outputs,
    })
}

impl Engine {
    /// Loads `path` on `options.backend`, reads and checks its `prism` spec.
    pub fn load(path: impl AsRef<Path>, options: &EngineOptions) -> Result<Self> {
        let path = path.as_ref();
        match std::fs::metadata(path) {
            Err(e) => return Err(DeployError::io(path, e)),
            Ok(m) if m.is_dir() => return Err(DeployError::io(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "is a directory; give the exported .onnx file (prism export onnx --out FILE)",
                ),
            )),
            Ok(_) => {}
        }
        let (runner, inputs, outputs, spec_json) = match options.backend {
            Backend::Tract => {
                let l = tract::TractRunner::load(path, options.intra_threads)?;
                (Runner::Tract(l.runner), l.inputs, l.outputs, l.spec_json)
            }
            _ => {
                let l = onnxruntime::OrtRunner::load(path, options)?;
                (Runner::Ort(l.runner), l.inputs, l.outputs, l.spec_json)
            }
        };
        let spec_json = spec_json.ok_or_else(|| DeployError::NoSpec { path: path.into() })?;
        let spec = ModelSpec::from_json(&spec_json).map_err(|source| DeployError::Spec {
            path: path.into(),
            source,
        })?;
        check_spec(&spec, &inputs, &outputs).map_err(|reason| DeployError::SpecMismatch {
            path: path.into(),
            reason,
        })?;
        tracing::info!(
            model = %spec.model,
            backend = %options.backend,
            "loaded {}",
            path.display()
        );
        Ok(Self {
            backend: options.backend,
            path: path.into(),
            spec,
            inputs,
            outputs,
            runner,
        })
    }

    /// The model's `prism` spec (metadata key [`METADATA_KEY`]).
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Graph inputs, in graph order.
    pub fn inputs(&self) -> &[TensorInfo] {
        &self.inputs
    }

    /// Graph outputs, in graph order.
    pub fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }

    /// Runs the model; outputs come back in graph order.
    pub fn run(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>> {
        let mut out = Vec::new();
        self.run_into(inputs, &mut out)?;
        Ok(out)
    }

    /// Runs the model, writing the outputs (graph order) into `outputs`, whose buffers are reused:
    /// a caller that runs the same model repeatedly allocates no output storage after the first call.
    ///
    /// Every graph input must be given exactly once, by name, with its static dimensions and
    /// `product(shape)` values; anything else is a [`DeployError::Input`].
    pub fn run_into(&self, inputs: &[TensorView<'_>], outputs: &mut Vec<Tensor>) -> Result<()> {
        let ordered = self.order_inputs(inputs)?;
        outputs.resize_with(self.outputs.len(), Tensor::default);
        match &self.runner {
            Runner::Tract(r) => r.run(&ordered, &self.outputs, outputs),
            Runner::Ort(r) => r.run(&ordered, &self.outputs, outputs),
        }
    }

    /// Checks `inputs` against the graph and puts them in graph order.
    fn order_inputs<'a>(&self, inputs: &[TensorView<'a>]) -> Result<Vec<TensorView<'a>>> {
        for given in inputs {
            if !self.inputs.iter().any(|i| i.name == given.name) {
                return Err(DeployError::Input(format!(
                    "the model has no input `{}` (inputs: {})",
                    given.name,
                    names(&self.inputs)
                )));
            }
        }
        self.inputs
            .iter()
            .map(|info| {
                let mut matching = inputs.iter().filter(|v| v.name == info.name);
                let view = matching.next().ok_or_else(|| {
                    DeployError::Input(format!(
                        "missing input `{}` {}",
                        info.name,
                        shape_str(&info.shape)
                    ))
                })?;
                if matching.next().is_some() {
                    return Err(DeployError::Input(format!(
                        "input `{}` given twice",
                        info.name
                    )));
                }
                check_view(info, view)?;
                Ok(*view)
            })
            .collect()
    }
}

/// `Ok` when `view` fits `info`: rank, static dimensions and data length.
fn check_view(info: &TensorInfo, view: &TensorView<'_>) -> Result<()> {
    let fits = view.shape.len() == info.shape.len()
        && info
            .shape
            .iter()
            .zip(view.shape)
            .all(|(want, &got)| want.is_none_or(|w| w == got));
    if !fits {
        return Err(DeployError::Input(format!(
            "input `{}` has shape {:?}; the model expects {}",
            info.name,
            view.shape,
            shape_str(&info.shape)
        )));
    }
    // Checked: a request may claim any dimensions on a dynamic axis.
    let len = view.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    if len != Some(view.data.len()) {
        let len = len.map_or_else(|| "more than usize::MAX".to_string(), |n| n.to_string());
        return Err(DeployError::Input(format!(
            "input `{}` of shape {:?} needs {len} values, got {}",
            info.name,
            view.shape,
            view.data.len()
        )));
    }
    Ok(())
}

/// Checks the spec against the graph: named tensors exist and static shapes agree.
fn check_spec(
    spec: &ModelSpec,
    inputs: &[TensorInfo],
    outputs: &[TensorInfo],
) -> std::result::Result<(), String> {
    let find =
        |list: &[TensorInfo], name: &str, what: &str| -> std::result::Result<TensorInfo, String> {
            list.iter()
                .find(|t| t.name == name)
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "{what} `{name}` is not in the graph (graph {what}s: {})",
                        names(list)
                    )
                })
        };
    let input = find(inputs, &spec.input.name, "input")?;
    if !shapes_agree(&input.shape, &spec.input.shape) {
        return Err(format!(
            "input `{}` is {} in the graph, {} in the spec",
            input.name,
            shape_str(&input.shape),
            shape_str(&spec.input.shape)
        ));
    }
    let output = find(outputs, &spec.output.name, "output")?;
    if let Some(seq) = &spec.sequence {
        // A next-vector model: `[N, dim]` out.
        let fits = output.shape.len() == 2 && output.shape[1].is_none_or(|d| d == seq.dim);
        return if fits {
            Ok(())
        } else {
            Err(format!(
                "output `{}` is {}; a next-vector model of width {} gives [N, {}]",
                output.name,
                shape_str(&output.shape),
                seq.dim,
                seq.dim
            ))
        };
    }
    if output.shape.len() != 3 {
        return Err(format!(
            "output `{}` is {}; detections must be [N, anchors, 5 + classes]",
            output.name,
            shape_str(&output.shape)
        ));
    }
    let row = 5 + spec.classes.len();
    let anchors = spec.num_anchors();
    if output.shape[2].is_some_and(|r| r != row)
        || (anchors.is_some() && output.shape[1].is_some_and(|a| Some(a) != anchors))
    {
        return Err(format!(
            "output `{}` is {}; {} classes and strides {:?} need [N, {}, {row}]",
            output.name,
            shape_str(&output.shape),
            spec.classes.len(),
            spec.output.strides,
            anchors.map_or("?".to_string(), |a| a.to_string())
        ));
    }
    for state in &spec.state {
        let shape: Vec<Option<usize>> = state.shape.iter().map(|&d| Some(d)).collect();
        for (list, name, what) in [
            (inputs, &state.input, "input"),
            (outputs, &state.output, "output"),
        ] {
            let t = find(list, name, what)?;
            if !shapes_agree(&t.shape, &shape) {
                return Err(format!(
                    "state {what} `{name}` is {} in the graph, {:?} in the spec",
                    shape_str(&t.shape),
                    state.shape
                ));
            }
        }
    }
    if let Some(name) = &spec.duration_input {
        let t = find(inputs, name, "input")?;
        if !shapes_agree(&t.shape, &[None, Some(1)]) {
            return Err(format!(
                "duration input `{name}` is {} in the graph; it takes [N, 1] seconds",
                shape_str(&t.shape)
            ));
        }
    }
    let fed: Vec<&str> = std::iter::once(spec.input.name.as_str())
        .chain(spec.state.iter().map(|s| s.input.as_str()))
        .chain(spec.duration_input.as_deref())
        .collect();
    if let Some(extra) = inputs.iter().find(|i| !fed.contains(&i.name.as_str())) {
        return Err(format!(
            "graph input `{}` is neither the spec's input nor a state or duration input",
            extra.name
        ));
    }
    Ok(())
}

/// Same rank, and equal wherever both are static.
fn shapes_agree(a: &[Option<usize>], b: &[Option<usize>]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.is_none() || y.is_none() || x == y)
}

pub(crate) fn shape_str(shape: &[Option<usize>]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|d| d.map_or("?".to_string(), |d| d.to_string()))
        .collect();
    format!("[{}]", dims.join(", "))
}

fn names(list: &[TensorInfo]) -> String {
    list.iter()
        .map(|t| format!("`{}`", t.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The metadata key the spec lives under, re-exported for callers that read files themselves.
pub const SPEC_KEY: &str = METADATA_KEY;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn views_with_overflowing_dynamic_dimensions_are_input_errors() {
        let info = TensorInfo {
            name: "x".into(),
            shape: vec![None, Some(2)],
        };
        let data = [0f32; 4];
        assert!(check_view(&info, &TensorView::new("x", &[2, 2], &data)).is_ok());
        let err = check_view(&info, &TensorView::new("x", &[usize::MAX, 2], &data)).unwrap_err();
        assert!(err.to_string().contains("more than usize::MAX"), "{err}");
        assert!(check_view(&info, &TensorView::new("x", &[3, 2], &data)).is_err());
    }
}
