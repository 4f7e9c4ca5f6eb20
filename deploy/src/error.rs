//! The one error type of prism-deploy. Every variant says what went wrong and where (model file,
//! tensor name, library path), so that a message alone tells the user what to fix.

use std::path::PathBuf;

use prism_core::SpecError;
use prism_events::EventError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not an ONNX model the backend can load.
    #[error("{path}: cannot load the model with {backend}: {reason}")]
    BadModel {
        path: PathBuf,
        backend: &'static str,
        reason: String,
    },
    #[error("{path}: no `prism` metadata entry; export the model with `prism export onnx`, which writes the model spec into the file")]
    NoSpec { path: PathBuf },
    #[error("{path}: bad `prism` metadata: {source}")]
    Spec {
        path: PathBuf,
        #[source]
        source: SpecError,
    },
    /// The spec names tensors or shapes the graph does not have.
    #[error("{path}: the `prism` spec does not match the graph: {reason}")]
    SpecMismatch { path: PathBuf, reason: String },
    #[error("unknown backend `{0}`; expected one of: tract, ort-cpu, ort-cuda, ort-tensorrt")]
    UnknownBackend(String),
    /// libonnxruntime could not be found or loaded.
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    /// An execution provider was asked for and could not be registered. Never a silent CPU fallback.
    #[error("{backend}: {reason}")]
    Provider {
        backend: &'static str,
        reason: String,
    },
    /// Input tensors that do not match the model (names, shapes, lengths).
    #[error("bad input: {0}")]
    Input(String),
    #[error("{backend}: inference failed: {reason}")]
    Inference {
        backend: &'static str,
        reason: String,
    },
    /// The model produced an output the spec does not describe.
    #[error("bad model output: {0}")]
    Output(String),
    /// The model's task does not fit the detector asked for (a frame model given to
    /// `StreamDetector`, say).
    #[error("{0}")]
    Task(String),
    /// The model's spec and graph load but cannot be run as the spec says (a representation that
    /// does not fit the input, state tensors that are not in the graph, ...): a problem of the
    /// model file, found when a detector is made for it, never the fault of a request.
    #[error("the model cannot be run as its spec says: {0}")]
    BadSpec(String),
    #[error(transparent)]
    Events(#[from] EventError),
}

impl DeployError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = DeployError> = std::result::Result<T, E>;
