//! The one error type of this crate.

use std::path::PathBuf;

/// What can go wrong when turning a chart into a PNG file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlotError {
    /// The image size is zero or larger than [`crate::MAX_SIDE`] pixels on a side.
    #[error("invalid image size {width}x{height} (each side must be 1..={max})", max = crate::MAX_SIDE)]
    InvalidSize {
        /// Requested width in pixels.
        width: u32,
        /// Requested height in pixels.
        height: u32,
    },
    /// The PNG encoder failed.
    #[error("PNG encoding failed: {0}")]
    Png(#[from] png::EncodingError),
    /// Writing the file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file we tried to write.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
}
