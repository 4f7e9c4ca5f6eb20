//! Training and evaluation of RVT in Burn, the way the reference trains it: mixed random and
//! streaming clips with truncated BPTT, the YOLOX loss with SimOTA assignment, AdamW with
//! global-norm clipping and a one-cycle schedule; resumable checkpoints, a metrics log, PNG
//! curves, and COCO mAP with the Prophesee protocol. The RGB + thermal + event detector trains
//! in [`frame_run`]; the next-vector sequence models in [`seq_run`] (scored by [`seq_eval`]).

pub mod clip;
pub mod config;
pub mod curves;
pub mod data;
pub mod device;
pub mod evaluate;
pub mod frame;
pub mod frame_eval;
pub mod frame_run;
pub mod loss;
pub mod memory;
pub mod metrics_log;
pub mod mm_config;
pub mod optim;
pub mod precision;
pub mod resumable;
pub mod run_checkpoint;
pub mod schedule;
pub mod seq_config;
pub mod seq_eval;
pub mod seq_run;
pub mod simota;
pub mod trainer;

use std::path::{Path, PathBuf};

pub use config::{ConfigError, DatasetSection, TrainConfig, TrainSection};
pub use device::TrainDevice;
pub use trainer::{Event, RunOptions, TrainSummary, Trainer};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Preparing, loading or sampling the training data failed.
    #[error("data: {0}")]
    Data(#[from] prism_data::DataError),
    /// The splits do not fit the model or each other.
    #[error("data: {0}")]
    Splits(String),
    /// A multimodal image or label file is unreadable or wrong.
    #[error("data: {0}")]
    MmData(#[from] prism_data::multimodal::MmDataError),
    #[error("evaluation: {0}")]
    Eval(#[from] evaluate::EvalError),
    #[error(transparent)]
    Checkpoint(#[from] prism_models::checkpoint::CheckpointError),
    #[error(transparent)]
    RunCheckpoint(#[from] run_checkpoint::RunCheckpointError),
    #[error("training diverged at step {step}: loss {loss} (lower the learning rate)")]
    Diverged { step: usize, loss: f32 },
    #[error("drawing curves: {0}")]
    Plot(#[from] curves::CurvesError),
    #[error("device: {0}")]
    Device(String),
    /// The model cannot be built as configured (a card, or a pretrained backbone that does not
    /// fit it).
    #[error("model: {0}")]
    Model(String),
}

impl TrainError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
