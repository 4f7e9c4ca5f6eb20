//! Training data for prism's RVT detectors, and the RGB + thermal + event images of the
//! multimodal detector ([`multimodal`]).
//!
//! - [`prepare`]: a recording (or a synthetic scene) becomes a [`PreparedSequence`]: one RVT
//!   stacked histogram per 50 ms window plus the cleaned labels attached to their windows.
//! - [`tree`]: a Gen1 / 1Mpx dataset folder prepared sequence by sequence, resumable.
//! - [`prepared`], [`store`], [`codec`]: the prepared sequence in memory and on disk.
//! - [`rvt_layout`]: RVT's own preprocessed datasets (`labels_v2`, `event_representations_v2`),
//!   read directly as prepared sequences.
//! - [`sampler`], [`augment`], [`batch`]: RVT's mixed random / streaming clip sampling, its
//!   flip and zoom augmentation, and the batch tensors the trainer feeds the network.
//! - [`sequence`]: sentence-embedding corpora for the next-vector sequence models, their
//!   document split, samples and batches, and a synthetic corpus.

pub mod align;
pub mod augment;
pub mod batch;
pub mod codec;
pub mod error;
pub mod filter;
pub mod multimodal;
pub mod prepare;
pub mod prepared;
pub mod rvt_layout;
pub mod sampler;
pub mod sequence;
pub mod store;
pub mod synthetic;
pub mod tree;

pub use align::{rvt_timeline, LabelClock, Timeline};
pub use augment::{AugmentConfig, Augmentation, Zoom};
pub use batch::{assemble, try_assemble, ClipBatch};
pub use error::{DataError, Result};
pub use filter::LabelFilter;
pub use prepare::{prepare_recording, prepare_synthetic, PrepareOptions};
pub use prepared::{
    LabeledBox, PreparedSequence, PreparedSplit, SequenceMeta, SequenceStats, WindowLabels,
};
pub use sampler::{
    Batch, ClipKind, ClipSampler, ClipSlot, SamplerConfig, SamplerState, StreamState,
};
pub use store::load_split;
pub use synthetic::{prepare_synthetic_tree, prepare_synthetic_tree_with, synthetic_split};
pub use tree::{
    prepare_tree, prepare_tree_with, PrepareEvent, PrepareReport, ReportEntry, Shard, TreeOptions,
};
