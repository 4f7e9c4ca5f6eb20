//! RGB + thermal + event images for the multimodal detector (issue 15), in the layout of the
//! predecessor project: 5-channel uint8 `.npy` images (RGB, thermal, event; `H x W x 5` or
//! `5 x H x W`, told apart by shape) with YOLO labels (`class x_center y_center width height`,
//! normalised, one `.txt` per image, a missing file meaning no objects).
//!
//! A dataset folder:
//!
//! ```text
//! DIR/classes.txt            one class name per line, in class-index order
//! DIR/images/NAME.npy        the pool the seeded 80 / 20 train / validation split is drawn from
//! DIR/labels/NAME.txt
//! DIR/<test>/images/…        extra test splits (e.g. daytest, nighttest), evaluated apart
//! DIR/<test>/labels/…
//! ```
//!
//! - [`image`]: reading and writing the `.npy` images.
//! - [`labels`]: the YOLO label files.
//! - [`folder`]: a dataset folder, its split and its test folders.
//! - [`letterbox`](mod@letterbox): resizing to the model's input with boxes mapped both ways; flip and zoom.
//! - [`synth`]: `prism data synth-mm`, synthetic scenes in exactly this layout.

pub mod folder;
pub mod image;
pub mod labels;
pub mod letterbox;
pub mod synth;

pub use folder::{MmFolder, MmSample, MmSplit};
pub use image::{read_image, write_image, ChannelOrder, MmImage, MM_CHANNELS};
pub use labels::{parse_labels, read_labels, write_labels, YoloBox};
pub use letterbox::{flip_horizontal, letterbox, Letterbox, MmAugment, PixelBox};
pub use synth::{synth_mm, SynthMmOptions, SynthMmReport, MM_SYNTH_CLASSES};

use std::path::PathBuf;

/// What is wrong with a multimodal dataset; every error names the file (and the line for
/// labels).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MmDataError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a readable .npy image: {message}", path.display())]
    Npy { path: PathBuf, message: String },
    #[error("{}: expected uint8 pixels, found dtype {found}", path.display())]
    DType { path: PathBuf, found: String },
    #[error("{}: shape {shape:?} is not H x W x 5 or 5 x H x W (RGB, thermal, event)", path.display())]
    Channels { path: PathBuf, shape: Vec<u64> },
    #[error("{}:{line}: {message}", path.display())]
    Label {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    Folder { path: PathBuf, message: String },
}

/// Shorthand for this module's results.
pub type MmResult<T> = std::result::Result<T, MmDataError>;

fn io_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> MmDataError + '_ {
    move |source| MmDataError::Io {
        path: path.to_path_buf(),
        source,
    }
}
