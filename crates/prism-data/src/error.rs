//! Errors of the training-data layer; each names the file or the argument that is wrong.

use std::path::PathBuf;

use prism_events::EventError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Decoding the recording, its labels or building a histogram failed.
    #[error(transparent)]
    Events(#[from] EventError),
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// Compressed windows in memory that do not decode.
    #[error("stored histograms: {0}")]
    Codec(#[from] crate::codec::CodecError),
    /// A prepared sequence on disk is truncated or inconsistent; `source` is the decoder's
    /// error when its histograms do not decode.
    #[error("{}: corrupt prepared sequence: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        reason: String,
        #[source]
        source: Option<crate::codec::CodecError>,
    },
    /// A sequence in RVT's preprocessed layout that cannot be read ([`crate::rvt_layout`]).
    #[error("{}: RVT preprocessed data: {reason}", path.display())]
    RvtLayout { path: PathBuf, reason: String },
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
            source: None,
        }
    }
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;
