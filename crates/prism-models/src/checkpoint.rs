//! Checkpoints: a folder holding the model card (`card.toml`) and the weights
//! (`model.safetensors`, BatchNorm running statistics included). Written atomically: files go to
//! a temporary folder that is renamed into place, so a killed process never leaves a half-written
//! checkpoint behind.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use burn_store::{ModuleSnapshot, SafetensorsStore};

use crate::rvt::Rvt;
use crate::zoo::{ModelCard, ZooError};

pub const CARD_FILE: &str = "card.toml";
pub const WEIGHTS_FILE: &str = "model.safetensors";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a prism checkpoint (no {CARD_FILE} / {WEIGHTS_FILE})")]
    NotACheckpoint { path: PathBuf },
    #[error(transparent)]
    Card(#[from] ZooError),
    #[error("{path}: weights: {message}")]
    Weights { path: PathBuf, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `model` and its card to the folder `dir` (replacing an older checkpoint there).
pub fn save(model: &Rvt, card: &ModelCard, dir: &Path) -> Result<(), CheckpointError> {
    save_with_card(model, &card.to_toml(), dir)
}

/// Writes `card_toml` and `model`'s weights to the folder `dir` atomically: the checkpoint
/// layout of every model family, told apart by its card.
pub fn save_with_card<M: ModuleSnapshot>(
    model: &M,
    card_toml: &str,
    dir: &Path,
) -> Result<(), CheckpointError> {
    replace_folder(dir, |staging| {
        write_card(staging, card_toml)?;
        save_weights(model, &staging.join(WEIGHTS_FILE))
    })
}

/// Writes `card_toml` as `folder/card.toml`.
pub fn write_card(folder: &Path, card_toml: &str) -> Result<(), CheckpointError> {
    let path = folder.join(CARD_FILE);
    std::fs::write(&path, card_toml).map_err(io(&path))
}

/// The card file of the checkpoint folder `dir`, its text and the weights file; an error when
/// either file is missing.
pub fn read_card(dir: &Path) -> Result<(PathBuf, String, PathBuf), CheckpointError> {
    let card_path = dir.join(CARD_FILE);
    let weights = dir.join(WEIGHTS_FILE);
    if !card_path.is_file() || !weights.is_file() {
        return Err(CheckpointError::NotACheckpoint {
            path: dir.to_path_buf(),
        });
    }
    let text = std::fs::read_to_string(&card_path).map_err(io(&card_path))?;
    Ok((card_path, text, weights))
}

/// Writes `module`'s weights (BatchNorm running statistics included) as safetensors.
pub fn save_weights<M: ModuleSnapshot>(module: &M, path: &Path) -> Result<(), CheckpointError> {
    let mut store = SafetensorsStore::from_file(path).overwrite(true);
    module
        .save_into(&mut store)
        .map_err(|e| CheckpointError::Weights {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// Loads weights written by [`save_weights`] into `module`; every tensor must match.
pub fn load_weights<M: ModuleSnapshot>(module: &mut M, path: &Path) -> Result<(), CheckpointError> {
    let mut store = SafetensorsStore::from_file(path);
    let result = module
        .load_from(&mut store)
        .map_err(|e| CheckpointError::Weights {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if !result.missing.is_empty() || !result.unused.is_empty() || !result.errors.is_empty() {
        return Err(CheckpointError::Weights {
            path: path.to_path_buf(),
            message: format!(
                "missing {:?}, unexpected {:?}, errors {:?}",
                result.missing, result.unused, result.errors
            ),
        });
    }
    Ok(())
}

/// Fills a fresh staging folder beside `dir` with `fill`, then swaps it in for `dir`: a killed
/// process leaves either the old folder or the new one, never half of one.
pub fn replace_folder(
    dir: &Path,
    fill: impl FnOnce(&Path) -> Result<(), CheckpointError>,
) -> Result<(), CheckpointError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "checkpoint".into());
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    std::fs::create_dir_all(&staging).map_err(io(&staging))?;
    if let Err(e) = fill(&staging) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    // Swap in: the old folder (if any) is moved aside first, then removed.
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(io(dir))?;
    }
    std::fs::rename(&staging, dir).map_err(io(dir))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(())
}

/// Reads a checkpoint folder: its card and the model with its weights.
pub fn load(dir: &Path, device: &Device) -> Result<(ModelCard, Rvt), CheckpointError> {
    let (card_path, text, weights) = read_card(dir)?;
    let card = ModelCard::parse(&text, &card_path.display().to_string())?;
    let mut model = card.rvt_config().init(device);
    load_weights(&mut model, &weights)?;
    Ok((card, model))
}
