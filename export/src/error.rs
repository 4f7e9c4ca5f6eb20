//! Errors reported by capture, lowering, writing and verification.

use thiserror::Error;

/// Everything that can go wrong while exporting or verifying a model.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ExportError {
    /// burn-capture rejected the scope (bad boundaries, nested scope, ...).
    #[error("capture failed: {0}")]
    Capture(String),
    /// A tensor handed to or returned from the forward closure is not usable as a graph boundary.
    #[error("invalid graph boundary: {0}")]
    Boundary(String),
    /// An IR operation has no ONNX lowering.
    #[error("unsupported operation #{index} `{op}`{context}: {reason}")]
    Unsupported {
        /// Position of the operation in the captured graph.
        index: usize,
        /// The Burn IR operation, e.g. `Float.Cross`.
        op: String,
        /// Where the operation came from, when known (the parameters it reads).
        context: String,
        /// Why it cannot be lowered.
        reason: String,
    },
    /// The two captures used for a dynamic batch axis disagree, or a shape depends on the batch
    /// in a way the exporter cannot express.
    #[error("dynamic batch: {0}")]
    Dynamic(String),
    /// Options are inconsistent with the captured graph (e.g. wrong number of names).
    #[error("invalid options: {0}")]
    Options(String),
    /// Reading or writing a file failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Verification could not run or found a mismatch.
    #[error("verification failed: {0}")]
    Verify(String),
}

/// Result alias for the crate.
pub type Result<T, E = ExportError> = std::result::Result<T, E>;
