//! Event-camera data for prism: decoders, labels, tensor representations and synthetic scenes.
//!
//! Every decoder implements [`EventReader`]: events come out in bounded chunks as a
//! structure of arrays ([`EventChunk`]), whatever the file size, and a reader can seek to a time.
//! [`open`] picks the decoder from the file's header.

pub mod chunk;
pub mod error;
pub mod reader;
// Windows and tensor representations (RVT stacked histogram, voxel grid, event frame).
pub mod repr;
pub mod window;

// Decoders, one per format.
pub mod aedat4;
pub mod dat;
pub mod evt2;
pub mod evt3;
pub mod hdf5;
// Shared by the binary decoders.
mod block;
pub mod header;
mod policy;
mod seek_index;
#[doc(hidden)]
#[cfg(feature = "test-support")]
pub mod testdata;
pub mod viz;

// Labels, writers and synthetic scenes.
pub mod labels;
pub mod synth;
pub mod write;

pub use chunk::{EventChunk, EventSlice};
pub use error::{EventError, OffsetUnit};
pub use labels::{read_bbox_npy, write_bbox_npy, BoxLabel};
pub use reader::{open, open_with, EventReader, Format, ReaderOptions, ReaderStats, SensorSize};
pub use repr::{HistogramConfig, StackedHistogram};
pub use window::{Window, WindowConfig, WindowSlicer};
