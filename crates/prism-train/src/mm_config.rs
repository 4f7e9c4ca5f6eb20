//! Training configuration of the RGB + thermal + event detector: a multimodal card
//! (`models/mm-*.toml`, [`MmCard`]) with its `[train]` and `[dataset]` tables, and command-line
//! overrides (`--set train.accumulate=4`).

use std::path::{Path, PathBuf};

use prism_models::mm::card::{builtin_text, MmCard};
use serde::{Deserialize, Serialize};

use crate::config::{apply_overrides, ConfigError};

/// Optimisation: AdamW with global-norm clipping, a one-cycle schedule, gradient accumulation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MmTrainSection {
    /// Images per forward pass.
    pub batch_size: usize,
    /// Forward passes whose gradients are summed (averaged) before one optimizer step: the
    /// effective batch is `batch_size x accumulate` (the seed: 4 x 4 for mit_b2).
    #[serde(default = "one")]
    pub accumulate: usize,
    /// Peak learning rate of the one-cycle schedule.
    pub lr: f64,
    #[serde(default)]
    pub weight_decay: f64,
    /// Global gradient-norm limit.
    #[serde(default = "default_clip")]
    pub grad_clip: f64,
    /// Optimizer steps in total.
    pub steps: usize,
    /// Share of the steps spent warming up.
    #[serde(default = "default_warmup")]
    pub warmup_pct: f64,
    /// Validate (COCO mAP on the validation split) every this many steps; 0 = only at the end.
    #[serde(default)]
    pub val_every: usize,
    /// Write the resumable checkpoint every this many steps.
    #[serde(default = "default_ckpt")]
    pub checkpoint_every: usize,
    /// Horizontal flip and scale jitter.
    #[serde(default = "yes")]
    pub augment: bool,
    /// Scale jitter range of the augmentation.
    #[serde(default = "default_zoom")]
    pub zoom: [f32; 2],
    /// Seed of the initial weights and of the batch order.
    #[serde(default)]
    pub seed: u64,
    /// Recompute memory-bound activations in the backward pass (Burn's balanced gradient
    /// checkpointing) to lower a step's peak memory, for the large backbones; the gradients
    /// are the same.
    #[serde(default)]
    pub gradient_checkpointing: bool,
    /// `fp32`, `bf16` or `fp16`: the step computes in bfloat16 or float16 (with dynamic loss
    /// scaling) on float32 master weights (see [`crate::precision`]).
    #[serde(default)]
    pub precision: crate::precision::Precision,
    /// A backbone checkpoint (`prism import mit-checkpoint`) to start the streams from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrained: Option<PathBuf>,
    /// Update rule of every parameter no `param_groups` entry claims: `adamw`, `sgd` or `lion`.
    #[serde(default)]
    pub optimizer: crate::optim::OptimizerKind,
    /// Learning-rate schedule: `one-cycle`, `cosine` or `constant`.
    #[serde(default)]
    pub schedule: crate::optim::ScheduleKind,
    /// Per-component optimizers (`[[train.param_groups]]`, `prefix = "backbone"`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub param_groups: Vec<crate::optim::ParamGroupSection>,
}

impl MmTrainSection {
    /// The optimizer plan of a multimodal run (`backbone` is the encoder with its fusion,
    /// `neck` the PAFPN, `head` the YOLOX head).
    pub fn optimizer_plan(&self) -> Result<crate::optim::OptimizerPlan, ConfigError> {
        crate::optim::OptimizerPlan::new(
            crate::optim::BaseSettings {
                optimizer: self.optimizer,
                lr: self.lr,
                weight_decay: self.weight_decay,
                schedule: self.schedule,
                steps: self.steps,
                warmup_pct: self.warmup_pct,
            },
            &self.param_groups,
            &[
                ("backbone", "encoder"),
                ("neck", "fpn"),
                ("head", "yolox_head"),
            ],
        )
    }
}

/// Where the images come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum MmDatasetSection {
    /// `prism data synth-mm` scenes, generated once into the data folder.
    Synthetic {
        /// Images in the train + validation pool.
        images: usize,
        /// Image width, height.
        size: [usize; 2],
        #[serde(default)]
        seed: u64,
        /// Seed of the 80 / 20 split.
        #[serde(default = "default_split_seed")]
        split_seed: u64,
    },
    /// A dataset folder in the multimodal layout (`classes.txt`, `images/`, `labels/`, test
    /// folders).
    Folder {
        /// The folder; `--data` overrides it.
        #[serde(default)]
        root: Option<PathBuf>,
        #[serde(default = "default_split_seed")]
        split_seed: u64,
        #[serde(default = "default_val_fraction")]
        val_fraction: f64,
    },
}

impl MmDatasetSection {
    /// Seed and validation share of the train / validation split.
    pub fn split(&self) -> (u64, f64) {
        match self {
            Self::Synthetic { split_seed, .. } => (*split_seed, default_val_fraction()),
            Self::Folder {
                split_seed,
                val_fraction,
                ..
            } => (*split_seed, *val_fraction),
        }
    }
}

fn one() -> usize {
    1
}
fn default_clip() -> f64 {
    10.0
}
fn default_warmup() -> f64 {
    0.05
}
fn default_ckpt() -> usize {
    50
}
fn yes() -> bool {
    true
}
fn default_zoom() -> [f32; 2] {
    [0.8, 1.2]
}
fn default_split_seed() -> u64 {
    42
}
fn default_val_fraction() -> f64 {
    0.2
}

/// A multimodal card with its training tables. Serialised flat, as a card file is written, so
/// overrides read `model.cssa_threshold=0.3` and a run's `config.toml` is itself a card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MmTrainConfig {
    #[serde(flatten)]
    pub card: MmCard,
    pub train: MmTrainSection,
    pub dataset: MmDatasetSection,
}

#[derive(Deserialize)]
struct TrainTables {
    train: Option<MmTrainSection>,
    dataset: Option<MmDatasetSection>,
}

impl MmTrainConfig {
    /// Reads a card file or a shipped multimodal card by name.
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
                known: prism_models::mm::card::builtin_names()
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        })?;
        Self::parse(text, name_or_path)
    }

    pub fn parse(text: &str, source_name: &str) -> Result<Self, ConfigError> {
        let card = MmCard::parse(text, source_name)?;
        let tables: TrainTables = toml::from_str(text).map_err(|e| ConfigError::Parse {
            source_name: source_name.into(),
            message: e.to_string(),
        })?;
        let missing = |table| ConfigError::Missing {
            source_name: source_name.into(),
            table,
        };
        let config = Self {
            card,
            train: tables.train.ok_or_else(|| missing("train"))?,
            dataset: tables.dataset.ok_or_else(|| missing("dataset"))?,
        };
        config.validate()?;
        Ok(config)
    }

    /// Applies `key=value` overrides (`train.accumulate=4`, `model.cssa_threshold=0.3`).
    pub fn apply_overrides(&mut self, overrides: &[String]) -> Result<(), ConfigError> {
        apply_overrides(self, overrides)?;
        self.validate()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        self.card
            .detector_config()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let t = &self.train;
        if t.batch_size == 0 || t.accumulate == 0 || t.steps == 0 {
            return bad("batch_size, accumulate and steps must be at least 1".into());
        }
        if !(t.lr.is_finite() && t.lr > 0.0) {
            return bad("lr must be positive".into());
        }
        t.optimizer_plan()?;
        if !(0.0..1.0).contains(&t.warmup_pct) {
            return bad("warmup_pct must be in [0, 1)".into());
        }
        if t.grad_clip.is_nan() || t.grad_clip <= 0.0 {
            return bad("grad_clip must be positive".into());
        }
        if !(t.zoom[0] > 0.0 && t.zoom[0] <= t.zoom[1] && t.zoom[1].is_finite()) {
            return bad(format!(
                "zoom {:?} is not a range of positive scales",
                t.zoom
            ));
        }
        match &self.dataset {
            MmDatasetSection::Synthetic { images, .. } if *images < 2 => {
                bad("dataset.images must be at least 2 (train and validation)".into())
            }
            MmDatasetSection::Folder { val_fraction, .. }
                if !(*val_fraction > 0.0 && *val_fraction < 1.0) =>
            {
                bad("dataset.val_fraction must be in (0, 1)".into())
            }
            _ => Ok(()),
        }
    }

    /// The config as TOML (written into the run folder).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn shipped_cards_train_and_overrides_reach_every_table() {
        for name in prism_models::mm::card::builtin_names() {
            MmTrainConfig::resolve(name).unwrap();
        }
        let mut c = MmTrainConfig::resolve("mm-mit-b0-cssa-s3").unwrap();
        c.apply_overrides(&[
            "train.accumulate=4".into(),
            "model.cssa_threshold=0.3".into(),
            "train.pretrained=\"backbone\"".into(),
        ])
        .unwrap();
        assert_eq!(c.train.accumulate, 4);
        assert_eq!(c.card.model.cssa_threshold, Some(0.3));
        assert_eq!(c.train.pretrained, Some(PathBuf::from("backbone")));
        for bad in [
            "train.accumulate=0",
            "train.nope=1",
            "model.gaff_shared=true",
            "train.lr=-1",
        ] {
            let mut c = MmTrainConfig::resolve("mm-mit-b0-cssa-s3").unwrap();
            assert!(c.apply_overrides(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
