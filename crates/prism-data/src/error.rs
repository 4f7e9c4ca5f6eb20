//! Errors of the training-data layer; each names the file or the argument that is wrong.

use std::path::PathBuf;

use prism_events::EventError;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Decoding the recording, its labels or building a histogram failed.
    #[error(transparent)]
    Events(#[from] EventError),
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A prepared sequence on disk is truncated or inconsistent.
    #[error("{path}: corrupt prepared sequence: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A sampler state saved for another configuration or split.
    #[error("sampler state does not fit: {0}")]
    StateMismatch(String),
}

impl DataError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;
