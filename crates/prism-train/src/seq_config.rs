//! Training configuration of the next-vector sequence models: a sequence card
//! (`models/seq-*.toml`, [`SeqCard`]) with its `[train]` table and an optional `[dataset]`
//! table, and command-line overrides (`--set train.loss="infonce"`).

use std::path::{Path, PathBuf};

use prism_models::seq::card::{builtin_names, builtin_text, SeqModelSection};
use prism_models::seq::SeqCard;
use serde::{Deserialize, Serialize};

use crate::config::{apply_overrides, ConfigError};

/// What the model is trained to minimise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeqLoss {
    /// `1 - cos(prediction, target)`, averaged over the batch.
    Cosine,
    /// InfoNCE with in-batch negatives: cross-entropy of each prediction against every target
    /// of the batch (cosine / temperature), its own target being the right class.
    Infonce,
}

impl SeqLoss {
    pub fn name(self) -> &'static str {
        match self {
            Self::Cosine => "cosine",
            Self::Infonce => "infonce",
        }
    }
}

/// Optimisation: Adam at a constant learning rate, early stopping on validation cosine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeqTrainSection {
    pub loss: SeqLoss,
    /// InfoNCE temperature (cosine loss ignores it).
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    pub lr: f64,
    pub batch_size: usize,
    /// Most epochs.
    pub epochs: usize,
    /// Stop after this many epochs without a better validation cosine (0: never stop early).
    #[serde(default)]
    pub patience: usize,
    /// Seed of the initial weights and of the batch order.
    #[serde(default)]
    pub seed: u64,
    /// Share of the documents that validate.
    #[serde(default = "default_val_fraction")]
    pub val_fraction: f64,
    /// Seed of the split by document.
    #[serde(default)]
    pub split_seed: u64,
    /// `fp32`, `bf16` or `fp16`: the step computes in bfloat16 or float16 (with dynamic loss
    /// scaling) on float32 master weights (see [`crate::precision`]).
    #[serde(default)]
    pub precision: crate::precision::Precision,
}

fn default_temperature() -> f64 {
    0.07
}
fn default_val_fraction() -> f64 {
    0.1
}

/// Where the vectors come from when `--data` is not given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeqDatasetSection {
    /// A corpus folder (`embeddings.npy`, `documents.npy`, …; see `prism_data::sequence`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
}

/// A sequence card with its training tables, serialised flat as a card file is written, so
/// overrides read `model.hidden=512` and a run's `config.toml` is itself a card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeqTrainConfig {
    pub name: String,
    pub task: String,
    pub model: SeqModelSection,
    pub train: SeqTrainSection,
    #[serde(default)]
    pub dataset: SeqDatasetSection,
}

impl SeqTrainConfig {
    /// Reads a card file or a shipped sequence card by name.
    pub fn resolve(name_or_path: &str) -> Result<Self, ConfigError> {
        let path = Path::new(name_or_path);
        if path.is_file() || prism_models::zoo::looks_like_a_path(name_or_path) {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::Io(path.display().to_string(), e))?;
            return Self::parse(&text, &path.display().to_string());
        }
        let text = builtin_text(name_or_path).ok_or_else(|| {
            ConfigError::Card(prism_models::zoo::ZooError::Unknown {
                name: name_or_path.into(),
                known: builtin_names().collect::<Vec<_>>().join(", "),
            })
        })?;
        Self::parse(text, name_or_path)
    }

    pub fn parse(text: &str, source_name: &str) -> Result<Self, ConfigError> {
        // The card's own checks first, for their messages.
        SeqCard::parse(text, source_name)?;
        let value: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            source_name: source_name.into(),
            message: e.to_string(),
        })?;
        if !value.contains_key("train") {
            return Err(ConfigError::Missing {
                source_name: source_name.into(),
                table: "train",
            });
        }
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            source_name: source_name.into(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The model card (name, task, network).
    pub fn card(&self) -> SeqCard {
        SeqCard {
            name: self.name.clone(),
            task: self.task.clone(),
            model: self.model.clone(),
        }
    }

    /// Applies `key=value` overrides (`train.loss="infonce"`, `model.hidden=512`).
    pub fn apply_overrides(&mut self, overrides: &[String]) -> Result<(), ConfigError> {
        apply_overrides(self, overrides)?;
        self.validate()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        self.card()
            .model_config()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let t = &self.train;
        if t.batch_size == 0 || t.epochs == 0 {
            return bad("batch_size and epochs must be at least 1".into());
        }
        if !(t.lr.is_finite() && t.lr > 0.0) {
            return bad("lr must be positive".into());
        }
        if !(t.temperature.is_finite() && t.temperature > 0.0) {
            return bad("temperature must be positive".into());
        }
        if !(t.val_fraction > 0.0 && t.val_fraction < 1.0) {
            return bad("val_fraction must be in (0, 1)".into());
        }
        if t.loss == SeqLoss::Infonce && t.batch_size < 2 {
            return bad(
                "InfoNCE needs batch_size >= 2 (the other targets are the negatives)".into(),
            );
        }
        Ok(())
    }

    /// The config as TOML (written into the run folder; it reads back as a card).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_cards_have_a_recipe_and_take_overrides() {
        for name in builtin_names() {
            let mut config = SeqTrainConfig::resolve(name).unwrap();
            assert_eq!(config.train.loss, SeqLoss::Cosine);
            config
                .apply_overrides(&[
                    "train.loss=\"infonce\"".into(),
                    "model.context=3".into(),
                    "train.epochs=2".into(),
                ])
                .unwrap();
            assert_eq!(config.train.loss, SeqLoss::Infonce);
            assert_eq!(config.card().spec(None).input.shape[1], Some(3));
            let back = SeqTrainConfig::parse(&config.to_toml(), "run").unwrap();
            assert_eq!(back, config);
        }
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        let mut config = SeqTrainConfig::resolve("seq-mlp").unwrap();
        let e = config
            .apply_overrides(&["train.loss=\"mse\"".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("mse"), "{e}");
        let e = config
            .apply_overrides(&["train.bogus=1".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
        let e = config
            .apply_overrides(&["train.val_fraction=1.5".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("val_fraction"), "{e}");
        let text = builtin_text("seq-mlp").unwrap();
        let without_train = &text[..text.find("[train]").unwrap()];
        assert!(SeqTrainConfig::parse(without_train, "x").is_err());
    }
}
