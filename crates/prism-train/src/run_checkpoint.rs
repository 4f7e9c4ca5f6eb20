//! Resumable training checkpoints: `checkpoints/last/` (and `checkpoints/best/`).
//!
//! A checkpoint folder is a normal prism checkpoint (`card.toml` + `model.safetensors`, so
//! `prism eval` and `prism export onnx` read it) plus what resuming needs: the weights with their
//! parameter ids (`train-model.bpk`, which the optimizer state is keyed by), the AdamW state
//! (`optimizer.bpk`), the carried streaming state and the trainer position (`trainer.json`).
//! Everything is written into a staging folder that is renamed into place, so a run killed at
//! any moment leaves either the previous checkpoint or the new one.

use std::path::{Path, PathBuf};

use burn::optim::ModuleOptimizer;
use burn::tensor::{Device, Tensor, TensorData};
use burn_store::{BurnpackStore, ModuleSnapshot};
use prism_data::SamplerState;
use prism_models::checkpoint;
use prism_models::rvt::{Rvt, RvtState};
use prism_models::zoo::ModelCard;
use serde::{Deserialize, Serialize};

pub const TRAINER_FILE: &str = "trainer.json";
const MODEL_PACK: &str = "train-model.bpk";
const OPTIMIZER_PACK: &str = "optimizer.bpk";
const STREAM_STATE: &str = "stream-state.bin";

/// Where training stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps done.
    pub step: usize,
    pub sampler: SamplerState,
    /// Best validation mAP@.5 so far and its step.
    pub best_ap50: Option<(f64, usize)>,
    /// Wall-clock seconds spent in earlier sessions of this run.
    pub elapsed_s: f64,
    /// Shapes of the 8 carried state tensors (h1, c1, ..., h4, c4), if any.
    pub stream_state_shapes: Option<Vec<[usize; 4]>>,
    /// float16 training: the loss scaler's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<crate::precision::LossScaler>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunCheckpointError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunCheckpointError + '_ {
    move |source| RunCheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn format_err(path: &Path, message: impl ToString) -> RunCheckpointError {
    RunCheckpointError::Format {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Everything saved in a resumable checkpoint.
pub struct Snapshot<'a> {
    pub model: &'a Rvt,
    pub card: &'a ModelCard,
    pub optimizer: &'a ModuleOptimizer,
    pub stream_state: Option<&'a RvtState>,
    pub trainer: TrainerState,
}

/// Writes a resumable checkpoint to `dir` atomically.
pub fn save(dir: &Path, snap: Snapshot<'_>) -> Result<(), RunCheckpointError> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let staging = parent.join(format!(".{name}.staging"));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    checkpoint::save(snap.model, snap.card, &staging)?;
    let pack = staging.join(MODEL_PACK);
    let mut store = BurnpackStore::from_file(&pack).overwrite(true);
    snap.model
        .save_into(&mut store)
        .map_err(|e| format_err(&pack, e))?;
    let opt = staging.join(OPTIMIZER_PACK);
    snap.optimizer
        .save(&opt)
        .map_err(|e| format_err(&opt, format!("{e:?}")))?;
    let mut trainer = snap.trainer;
    if let Some(state) = snap.stream_state {
        let (shapes, bytes) = encode_state(state);
        trainer.stream_state_shapes = Some(shapes);
        let p = staging.join(STREAM_STATE);
        std::fs::write(&p, bytes).map_err(io(&p))?;
    }
    let t = staging.join(TRAINER_FILE);
    let json = serde_json::to_vec_pretty(&trainer).map_err(|e| format_err(&t, e))?;
    std::fs::write(&t, json).map_err(io(&t))?;
    // Swap in. Between the two renames only `.<name>.old` exists; `load` looks there too.
    let old = parent.join(format!(".{name}.old"));
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(io(dir))?;
    }
    std::fs::rename(&staging, dir).map_err(io(dir))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(())
}

/// The folder to resume from: `dir`, or its moved-aside copy if a run died mid-swap.
pub fn find(dir: &Path) -> Option<PathBuf> {
    if dir.join(TRAINER_FILE).is_file() {
        return Some(dir.to_path_buf());
    }
    let name = dir.file_name()?.to_string_lossy().into_owned();
    let old = dir.parent()?.join(format!(".{name}.old"));
    old.join(TRAINER_FILE).is_file().then_some(old)
}

/// What [`load`] restores.
pub struct Restored {
    pub model: Rvt,
    pub optimizer: ModuleOptimizer,
    pub stream_state: Option<RvtState>,
    pub trainer: TrainerState,
}

/// Reads a resumable checkpoint onto `device`; `optimizer` is a fresh optimizer of the same kind.
pub fn load(
    dir: &Path,
    model: Rvt,
    optimizer: ModuleOptimizer,
    device: &Device,
) -> Result<Restored, RunCheckpointError> {
    let t = dir.join(TRAINER_FILE);
    let trainer: TrainerState = serde_json::from_slice(&std::fs::read(&t).map_err(io(&t))?)
        .map_err(|e| format_err(&t, e))?;
    let pack = dir.join(MODEL_PACK);
    let mut model = model;
    let mut store = BurnpackStore::from_file(&pack);
    let result = model
        .load_from(&mut store)
        .map_err(|e| format_err(&pack, e))?;
    if !result.missing.is_empty() || !result.errors.is_empty() {
        return Err(format_err(
            &pack,
            format!("missing {:?}, errors {:?}", result.missing, result.errors),
        ));
    }
    let opt = dir.join(OPTIMIZER_PACK);
    let optimizer = optimizer
        .load(&opt)
        .map_err(|e| format_err(&opt, format!("{e:?}")))?;
    let stream_state = match &trainer.stream_state_shapes {
        Some(shapes) => {
            let p = dir.join(STREAM_STATE);
            let bytes = std::fs::read(&p).map_err(io(&p))?;
            Some(
                decode_state(shapes, &bytes, device)
                    .ok_or_else(|| format_err(&p, "size does not match the recorded shapes"))?,
            )
        }
        None => None,
    };
    Ok(Restored {
        model,
        optimizer,
        stream_state,
        trainer,
    })
}

fn encode_state(state: &RvtState) -> (Vec<[usize; 4]>, Vec<u8>) {
    let mut shapes = Vec::new();
    let mut bytes = Vec::new();
    for t in state.clone().into_flat() {
        shapes.push(t.dims());
        let values: Vec<f32> = t
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap_or_default();
        bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    }
    (shapes, bytes)
}

fn decode_state(shapes: &[[usize; 4]], bytes: &[u8], device: &Device) -> Option<RvtState> {
    let mut offset = 0;
    let mut tensors = Vec::new();
    for shape in shapes {
        let n: usize = shape.iter().product();
        let chunk = bytes.get(offset..offset + n * 4)?;
        offset += n * 4;
        let values: Vec<f32> = chunk
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        tensors.push(Tensor::<4>::from_data(
            TensorData::new(values, *shape),
            device,
        ));
    }
    (offset == bytes.len()).then_some(())?;
    RvtState::from_flat(tensors)
}
