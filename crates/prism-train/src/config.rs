//! Training configuration: the `[train]` and `[dataset]` tables of a model card under `models/`
//! (the `[model]` and `[data]` tables are the [`ModelCard`]), with command-line overrides.

use std::path::{Path, PathBuf};

use prism_models::zoo::ModelCard;
use serde::{Deserialize, Serialize};

/// Optimisation and schedule (RVT: AdamW, weight decay 0, global-norm clipping 1.0, one-cycle
/// with linear warm-up and decay).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    pub batch_size: usize,
    /// Windows per clip (RVT: 21 for Gen1, 5 for 1Mpx).
    pub seq_len: usize,
    /// Peak learning rate of the one-cycle schedule.
    pub lr: f64,
    #[serde(default)]
    pub weight_decay: f64,
    /// Global gradient-norm limit.
    #[serde(default = "default_clip")]
    pub grad_clip: f64,
    /// Optimizer steps in total (the schedule's length).
    pub steps: usize,
    /// Share of the steps spent warming up (RVT: 0.005).
    #[serde(default = "default_warmup")]
    pub warmup_pct: f64,
    /// Weights of random (state reset) and streaming (state carried) clips in a batch.
    #[serde(default = "one")]
    pub random_weight: f32,
    #[serde(default = "one")]
    pub stream_weight: f32,
    /// Validate (mAP on the validation split) every this many steps; 0 = only at the end.
    #[serde(default)]
    pub val_every: usize,
    /// Write the resumable checkpoint every this many steps.
    #[serde(default = "default_ckpt")]
    pub checkpoint_every: usize,
    /// Turn augmentation (flip, zoom) on.
    #[serde(default = "yes")]
    pub augment: bool,
    #[serde(default)]
    pub seed: u64,
    /// Recompute memory-bound activations in the backward pass (Burn's balanced gradient
    /// checkpointing) to lower a step's peak memory; the gradients are the same.
    #[serde(default)]
    pub gradient_checkpointing: bool,
    /// `fp32`, `bf16` or `fp16`: the step computes in bfloat16 or float16 (with dynamic loss
    /// scaling) on float32 master weights (see [`crate::precision`]).
    #[serde(default)]
    pub precision: crate::precision::Precision,
    /// Update rule of every parameter no `param_groups` entry claims: `adamw` (RVT's), `sgd`
    /// or `lion`.
    #[serde(default)]
    pub optimizer: crate::optim::OptimizerKind,
    /// Learning-rate schedule: `one-cycle` (RVT's), `cosine` or `constant`.
    #[serde(default)]
    pub schedule: crate::optim::ScheduleKind,
    /// Per-component optimizers (`[[train.param_groups]]`, `prefix = "backbone"`, …), each
    /// with its own optimizer, lr, weight_decay and schedule; a later group wins where two
    /// match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub param_groups: Vec<crate::optim::ParamGroupSection>,
}

impl TrainSection {
    /// The optimizer plan of an RVT run (`neck` is the PAFPN, `head` the YOLOX head).
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
            &RVT_COMPONENTS,
        )
    }
}

/// What users call RVT's parts, and the module each name stands for.
pub const RVT_COMPONENTS: [(&str, &str); 3] = [
    ("backbone", "backbone"),
    ("neck", "fpn"),
    ("head", "yolox_head"),
];

/// Where the training data comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum DatasetSection {
    /// prism's synthetic scenes, generated once into the data folder.
    Synthetic {
        train_sequences: usize,
        val_sequences: usize,
        /// Length of each scene in seconds.
        duration_s: f64,
        /// Objects on screen at a time.
        #[serde(default = "default_objects")]
        objects: usize,
        #[serde(default)]
        seed: u64,
    },
    /// Sequences prepared with `prism data prepare` (folders `train/`, `val/`).
    Prepared {
        /// Folder with the prepared splits; relative paths are resolved against the working
        /// directory. `--data` overrides it.
        #[serde(default)]
        root: Option<PathBuf>,
        /// Label filter used at evaluation (`gen1`, `gen4` or `none`).
        #[serde(default = "default_filter")]
        eval_filter: String,
    },
}

fn default_clip() -> f64 {
    1.0
}
fn default_warmup() -> f64 {
    0.005
}
fn one() -> f32 {
    1.0
}
fn yes() -> bool {
    true
}
fn default_ckpt() -> usize {
    100
}
fn default_objects() -> usize {
    4
}
fn default_filter() -> String {
    "gen1".into()
}

/// The training part of a card file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TrainTables {
    train: Option<TrainSection>,
    dataset: Option<DatasetSection>,
}

/// Everything a run needs: the model card plus how to train it (written back as one card
/// file, so `--set model.memory=dws-lstm` and `--set train.lr=1e-3` address it the same way).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    #[serde(flatten)]
    pub card: ModelCard,
    pub train: TrainSection,
    pub dataset: DatasetSection,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{source_name}: {message}")]
    Parse {
        source_name: String,
        message: String,
    },
    #[error(transparent)]
    Card(#[from] prism_models::zoo::ZooError),
    #[error("{source_name}: no [{table}] table: this card cannot be trained as it is (add one, see models/rvt-tiny-synth.toml)")]
    Missing {
        source_name: String,
        table: &'static str,
    },
    #[error("bad override {0:?}: {1}")]
    Override(String, String),
    #[error("invalid training config: {0}")]
    Invalid(String),
}

impl TrainConfig {
    /// Reads a card file (or a shipped card by name) with its `[train]` and `[dataset]` tables.
    pub fn resolve(name_or_path: &str) -> Result<Self, ConfigError> {
        let path = Path::new(name_or_path);
        let (text, source) = if path.is_file() || prism_models::zoo::looks_like_a_path(name_or_path)
        {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::Io(path.display().to_string(), e))?;
            (text, path.display().to_string())
        } else {
            let card = ModelCard::builtin(name_or_path)?;
            let text = prism_models::zoo::builtin_text(&card.name).unwrap_or_default();
            (text.to_string(), name_or_path.to_string())
        };
        Self::parse(&text, &source)
    }

    /// Parses card text.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, ConfigError> {
        let card = ModelCard::parse(text, source_name)?;
        let tables: TrainTables = toml::from_str(text).map_err(|e| ConfigError::Parse {
            source_name: source_name.into(),
            message: e.to_string(),
        })?;
        let train = tables.train.ok_or(ConfigError::Missing {
            source_name: source_name.into(),
            table: "train",
        })?;
        let dataset = tables.dataset.ok_or(ConfigError::Missing {
            source_name: source_name.into(),
            table: "dataset",
        })?;
        let config = Self {
            card,
            train,
            dataset,
        };
        config.validate()?;
        Ok(config)
    }

    /// Applies `key=value` overrides such as `train.lr=1e-3` or `train.steps=200`.
    pub fn apply_overrides(&mut self, overrides: &[String]) -> Result<(), ConfigError> {
        apply_overrides(self, overrides)?;
        self.validate()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.card.validate().map_err(ConfigError::Invalid)?;
        let t = &self.train;
        let bad = |m: &str| Err(ConfigError::Invalid(m.into()));
        if t.batch_size == 0 || t.seq_len == 0 || t.steps == 0 {
            return bad("batch_size, seq_len and steps must be at least 1");
        }
        if !(t.lr.is_finite() && t.lr > 0.0) {
            return bad("lr must be positive");
        }
        if !(0.0..1.0).contains(&t.warmup_pct) {
            return bad("warmup_pct must be in [0, 1)");
        }
        if t.grad_clip.is_nan() || t.grad_clip <= 0.0 {
            return bad("grad_clip must be positive");
        }
        if t.random_weight < 0.0
            || t.stream_weight < 0.0
            || t.random_weight + t.stream_weight <= 0.0
        {
            return bad("random_weight and stream_weight must be >= 0 and not both 0");
        }
        t.optimizer_plan()?;
        if let DatasetSection::Prepared { eval_filter, .. } = &self.dataset {
            if !["gen1", "gen4", "none"].contains(&eval_filter.as_str()) {
                return bad("dataset.eval_filter must be gen1, gen4 or none");
            }
        }
        Ok(())
    }

    /// The config as TOML (written into the run folder).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

/// Applies `key=value` overrides (`train.lr=1e-3`, `model.memory="dws-lstm"`) to any config
/// (see [`prism_models::overrides`]).
pub(crate) fn apply_overrides<T>(config: &mut T, overrides: &[String]) -> Result<(), ConfigError>
where
    T: Serialize + serde::de::DeserializeOwned,
{
    prism_models::overrides::apply(config, overrides)
        .map_err(|e| ConfigError::Override(e.item, e.message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prism_models::zoo::Memory;

    #[test]
    fn model_and_train_keys_are_overridden_the_same_way() {
        let mut config = TrainConfig::resolve("rvt-tiny-synth").unwrap();
        config
            .apply_overrides(&[
                "model.memory=dws-lstm".into(),
                "model.fpn_scales=4".into(),
                "train.lr=1e-4".into(),
                r#"train.param_groups=[{prefix="backbone", optimizer="lion", lr=2e-5}]"#.into(),
            ])
            .unwrap();
        assert_eq!(config.card.model.memory, Memory::DwsLstm);
        assert_eq!(config.card.rvt_config().strides(), vec![4, 8, 16, 32]);
        assert_eq!(config.train.lr, 1e-4);
        assert_eq!(config.train.param_groups[0].lr, Some(2e-5));
        // The run folder's config.toml is a card file that reads back the same.
        let back = TrainConfig::parse(&config.to_toml(), "config.toml").unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn bad_model_overrides_are_refused() {
        let config = TrainConfig::resolve("rvt-tiny-synth").unwrap();
        for bad in [
            "model.fpn_scales=5",
            "model.memory=gru",
            "model.embed_dim=0.5",
            "model.nonsense=1",
            // 160x128 at stride 4 is 40x32: a 3x3 partition does not divide it.
            "model.partition_size=[3, 3]",
        ] {
            let mut c = config.clone();
            assert!(c.apply_overrides(&[bad.into()]).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn old_cards_spell_the_dws_lstm_as_a_flag() {
        let text = prism_models::zoo::builtin_text("rvt-tiny-synth")
            .unwrap()
            .replace("memory = \"lstm\"", "lstm_dws_conv = true");
        let config = TrainConfig::parse(&text, "old card").unwrap();
        assert_eq!(config.card.model.memory, Memory::DwsLstm);
        assert!(!config.to_toml().contains("lstm_dws_conv"));
    }
}
