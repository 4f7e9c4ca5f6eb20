//! Resumable checkpoints of the models that carry no state between batches (the multimodal
//! detector, the sequence models): a normal prism checkpoint (`card.toml` and
//! `model.safetensors`, so `prism eval` and `prism export onnx` read it) plus the weights with
//! their parameter ids (`train-model.bpk`, which the optimizer state is keyed by), the optimizer
//! (`optimizer.bpk`) and the trainer's position (`trainer.json`), written into a staging folder
//! that is renamed into place. RVT's checkpoints also carry the streamed state: see
//! [`crate::run_checkpoint`].

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn_store::{BurnpackStore, ModuleSnapshot};
use prism_models::checkpoint::{
    replace_folder, save_weights, write_card, CheckpointError, WEIGHTS_FILE,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::TrainError;

const TRAINER_FILE: &str = "trainer.json";
const MODEL_PACK: &str = "train-model.bpk";
const OPTIMIZER_PACK: &str = "optimizer.bpk";

fn weights_err(path: &Path, message: String) -> CheckpointError {
    CheckpointError::Weights {
        path: path.to_path_buf(),
        message,
    }
}

/// Writes `model` (an autodiff model; its inference copy goes to `model.safetensors`), its card,
/// `optim` and the trainer's `state` to `dir` atomically.
pub fn save<M: Module + ModuleSnapshot>(
    dir: &Path,
    card_toml: &str,
    model: &M,
    optim: &ModuleOptimizer,
    state: &impl Serialize,
) -> Result<(), TrainError> {
    replace_folder(dir, |staging| {
        write_card(staging, card_toml)?;
        save_weights(&model.valid(), &staging.join(WEIGHTS_FILE))?;
        let pack = staging.join(MODEL_PACK);
        let mut store = BurnpackStore::from_file(&pack).overwrite(true);
        model
            .save_into(&mut store)
            .map_err(|e| weights_err(&pack, e.to_string()))?;
        let opt = staging.join(OPTIMIZER_PACK);
        optim
            .save(&opt)
            .map_err(|e| weights_err(&opt, format!("{e:?}")))?;
        let t = staging.join(TRAINER_FILE);
        let json = serde_json::to_vec_pretty(state).unwrap_or_default();
        std::fs::write(&t, json).map_err(|e| weights_err(&t, e.to_string()))
    })?;
    Ok(())
}

/// Model, optimizer and trainer position from a checkpoint [`save`] wrote; `model` and
/// `optimizer` are fresh ones of the same kind.
pub fn load<M: ModuleSnapshot, S: DeserializeOwned>(
    dir: &Path,
    mut model: M,
    optimizer: ModuleOptimizer,
) -> Result<(M, ModuleOptimizer, S), TrainError> {
    let format = |path: &Path, message: String| TrainError::Checkpoint(weights_err(path, message));
    let t = dir.join(TRAINER_FILE);
    let bytes = std::fs::read(&t).map_err(|e| TrainError::io(&t, e))?;
    let state: S = serde_json::from_slice(&bytes).map_err(|e| format(&t, e.to_string()))?;
    let pack = dir.join(MODEL_PACK);
    let mut store = BurnpackStore::from_file(&pack);
    let result = model
        .load_from(&mut store)
        .map_err(|e| format(&pack, e.to_string()))?;
    if !result.missing.is_empty() || !result.errors.is_empty() {
        return Err(format(
            &pack,
            format!("missing {:?}, errors {:?}", result.missing, result.errors),
        ));
    }
    let opt = dir.join(OPTIMIZER_PACK);
    let optimizer = optimizer
        .load(&opt)
        .map_err(|e| format(&opt, format!("{e:?}")))?;
    Ok((model, optimizer, state))
}

/// The checkpoint folder to resume from, if `dir` is one.
pub fn find(dir: &Path) -> Option<PathBuf> {
    dir.join(TRAINER_FILE).is_file().then(|| dir.to_path_buf())
}
