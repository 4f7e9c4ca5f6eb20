//! Backbone checkpoints: what `prism import mit-checkpoint` writes and a multimodal model
//! starts from. A folder holding `backbone.toml` (the preset, the input channels, the file it
//! came from) and `model.safetensors` (prism's own layout), written atomically.

use std::path::Path;

use burn::module::Param;
use burn::tensor::Device;

use super::{Mit, MitConfig};
use crate::checkpoint::{
    load_weights, replace_folder, save_weights, CheckpointError, WEIGHTS_FILE,
};

/// The backbone card's file name.
pub const BACKBONE_FILE: &str = "backbone.toml";

/// What a backbone checkpoint says about itself.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BackboneCard {
    /// `mit-b0` … `mit-b5`.
    pub model: String,
    /// Input channels of the stem (3 for ImageNet weights).
    pub in_channels: usize,
    /// The file the weights were imported from.
    pub source: String,
}

/// Writes `mit` and its card to `dir`, replacing an older checkpoint there.
pub fn save_backbone(mit: &Mit, card: &BackboneCard, dir: &Path) -> Result<(), CheckpointError> {
    let text = toml::to_string(card).map_err(|e| CheckpointError::Weights {
        path: dir.join(BACKBONE_FILE),
        message: e.to_string(),
    })?;
    replace_folder(dir, |staging| {
        std::fs::write(staging.join(BACKBONE_FILE), text).map_err(|source| {
            CheckpointError::Io {
                path: staging.join(BACKBONE_FILE),
                source,
            }
        })?;
        save_weights(mit, &staging.join(WEIGHTS_FILE))
    })
}

/// Reads a backbone checkpoint folder.
pub fn load_backbone(dir: &Path, device: &Device) -> Result<(BackboneCard, Mit), CheckpointError> {
    let card_path = dir.join(BACKBONE_FILE);
    let weights = dir.join(WEIGHTS_FILE);
    if !card_path.is_file() || !weights.is_file() {
        return Err(CheckpointError::NotACheckpoint {
            path: dir.to_path_buf(),
        });
    }
    let bad = |message: String| CheckpointError::Weights {
        path: card_path.clone(),
        message,
    };
    let text = std::fs::read_to_string(&card_path).map_err(|source| CheckpointError::Io {
        path: card_path.clone(),
        source,
    })?;
    let card: BackboneCard = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let config = MitConfig::preset(&card.model)
        .ok_or_else(|| bad(format!("unknown backbone {:?}", card.model)))?
        .with_in_channels(card.in_channels);
    let mut mit = config.init(device);
    load_weights(&mut mit, &weights)?;
    Ok((card, mit))
}

impl Mit {
    /// Input channels of the stem.
    pub fn in_channels(&self) -> usize {
        self.patch_embed1.proj.weight.dims()[1]
    }

    /// The same encoder with a stem for `channels` inputs made from this one's, by the rule of
    /// [`super::import`]: each new channel's kernel is the sum of the old kernels over their
    /// channels divided by `channels` (a grey image on every channel gives the same response).
    pub fn with_stem_channels(mut self, channels: usize) -> Self {
        if channels == self.in_channels() {
            return self;
        }
        let weight = self.patch_embed1.proj.weight.val();
        let summed = weight.sum_dim(1) / channels as f64;
        // Detached, so that on an autodiff device the new weight is a leaf that can train.
        let adapted = summed.repeat_dim(1, channels).detach();
        self.patch_embed1.proj.weight = Param::from_tensor(adapted);
        self
    }
}
