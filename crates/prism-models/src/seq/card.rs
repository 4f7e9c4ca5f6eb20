//! Model cards of the next-vector sequence models (`models/seq-*.toml`): the architecture, the
//! context length and the widths; and their checkpoints (`card.toml` + `model.safetensors`, the
//! layout every prism checkpoint has, told apart by the card's `task = "next-vector"`).

use std::path::Path;

use burn::tensor::Device;
use prism_core::spec::{ModelSpec, OutputSpec, SequenceSpec, Task, TensorSpec, SPEC_VERSION};
use serde::{Deserialize, Serialize};

use super::{SeqArchitecture, SeqModel, SeqModelConfig};
use crate::checkpoint::{self, CheckpointError, CARD_FILE};
use crate::zoo::ZooError;

/// The cards shipped in `models/`, by name.
const BUILTIN: &[(&str, &str)] = &[
    ("seq-mlp", include_str!("../../../../models/seq-mlp.toml")),
    ("seq-lstm", include_str!("../../../../models/seq-lstm.toml")),
    (
        "seq-transformer",
        include_str!("../../../../models/seq-transformer.toml"),
    ),
];

/// Graph input and output names of an exported sequence model.
pub const INPUT_NAME: &str = "context";
pub const OUTPUT_NAME: &str = "next";

/// A sequence-model card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeqCard {
    pub name: String,
    /// Always `next-vector`: how prism tells this card from a detector's.
    pub task: String,
    pub model: SeqModelSection,
}

/// The network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeqModelSection {
    /// `mlp`, `lstm` or `transformer`.
    pub architecture: SeqArchitecture,
    /// Vectors of context.
    pub context: usize,
    /// Width of the vectors (the sentence encoder's: 384 for all-MiniLM-L6-v2).
    pub dim: usize,
    /// MLP hidden width, LSTM hidden size or Transformer d_model.
    pub hidden: usize,
    #[serde(default = "default_layers")]
    pub layers: usize,
    #[serde(default = "default_heads")]
    pub heads: usize,
    #[serde(default = "default_feedforward")]
    pub feedforward: usize,
    /// Width of the LSTM / Transformer MLP head (`hidden` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_hidden: Option<usize>,
    #[serde(default = "default_dropout")]
    pub dropout: f64,
}

fn default_layers() -> usize {
    2
}
fn default_heads() -> usize {
    8
}
fn default_feedforward() -> usize {
    2048
}
fn default_dropout() -> f64 {
    0.1
}

/// Why a card does not describe a sequence model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SeqCardError(pub String);

/// The card's name for the task.
pub const TASK: &str = "next-vector";

impl SeqCard {
    /// A shipped card by name.
    pub fn builtin(name: &str) -> Result<Self, ZooError> {
        let text = builtin_text(name).ok_or_else(|| ZooError::Unknown {
            name: name.to_string(),
            known: builtin_names().collect::<Vec<_>>().join(", "),
        })?;
        Self::parse(text, name)
    }

    /// Applies `--set KEY=VALUE` overrides and checks the result like a card file.
    pub fn with_overrides(&self, overrides: &[String]) -> Result<Self, ZooError> {
        crate::overrides::apply_to_card(self, overrides, &self.name, Self::parse)
    }

    /// A card file, or a shipped card by name.
    pub fn resolve(name_or_path: &str) -> Result<Self, ZooError> {
        let path = Path::new(name_or_path);
        if path.is_file() || crate::zoo::looks_like_a_path(name_or_path) {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ZooError::Io(path.display().to_string(), e))?;
            return Self::parse(&text, &path.display().to_string());
        }
        Self::builtin(name_or_path)
    }

    /// Parses card text (a `[train]` or `[dataset]` table beside it is the trainer's).
    pub fn parse(text: &str, source_name: &str) -> Result<Self, ZooError> {
        let parse_error = |message: String| ZooError::Parse {
            source_name: source_name.to_string(),
            message,
        };
        #[derive(Deserialize)]
        struct Tables {
            name: String,
            task: String,
            model: SeqModelSection,
        }
        let t: Tables = toml::from_str(text).map_err(|e| parse_error(e.to_string()))?;
        let card = Self {
            name: t.name,
            task: t.task,
            model: t.model,
        };
        card.model_config()
            .map_err(|e| parse_error(e.to_string()))?;
        Ok(card)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// The network this card describes; checks every size.
    pub fn model_config(&self) -> Result<SeqModelConfig, SeqCardError> {
        if self.task != TASK {
            return Err(SeqCardError(format!(
                "task {:?}: a sequence card says task = \"{TASK}\"",
                self.task
            )));
        }
        let m = &self.model;
        let config = SeqModelConfig::new(m.architecture, m.context, m.dim, m.hidden)
            .with_layers(m.layers)
            .with_heads(m.heads)
            .with_feedforward(m.feedforward)
            .with_head_hidden(m.head_hidden.unwrap_or(0))
            .with_dropout(m.dropout);
        config.check().map_err(SeqCardError)?;
        Ok(config)
    }

    /// Builds the (randomly initialised) model.
    pub fn init(&self, device: &Device) -> Result<SeqModel, SeqCardError> {
        self.model_config()?.init(device).map_err(SeqCardError)
    }

    /// The model's contract as written into its ONNX file: `context [N, C, D]` in, `next [N, D]`
    /// out; `batch` is the static batch, `None` for a dynamic one.
    pub fn spec(&self, batch: Option<usize>) -> ModelSpec {
        let m = &self.model;
        ModelSpec {
            spec_version: SPEC_VERSION,
            model: self.name.clone(),
            task: Task::NextVector,
            classes: Vec::new(),
            input: TensorSpec {
                name: INPUT_NAME.into(),
                shape: vec![batch, Some(m.context), Some(m.dim)],
            },
            representation: None,
            output: OutputSpec {
                name: OUTPUT_NAME.into(),
                strides: Vec::new(),
                decoded: false,
            },
            state: Vec::new(),
            duration_input: None,
            postprocess: None,
            sequence: Some(SequenceSpec {
                context: m.context,
                dim: m.dim,
                architecture: m.architecture.name().into(),
                normalized: true,
            }),
            precision: Default::default(),
            quantization: None,
        }
    }
}

/// The TOML text of a shipped card.
pub fn builtin_text(name: &str) -> Option<&'static str> {
    BUILTIN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}

/// Names of the shipped sequence cards.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|(name, _)| *name)
}

/// Whether card text describes a sequence model: `task = "next-vector"`.
pub fn is_seq_card_text(text: &str) -> bool {
    toml::from_str::<toml::Table>(text)
        .ok()
        .and_then(|t| t.get("task").and_then(|v| v.as_str()).map(|s| s == TASK))
        .unwrap_or(false)
}

/// Whether `name_or_path` is a shipped sequence card or a sequence card file.
pub fn is_seq_card(name_or_path: &str) -> bool {
    builtin_text(name_or_path).is_some()
        || std::fs::read_to_string(name_or_path).is_ok_and(|t| is_seq_card_text(&t))
}

/// Whether `dir` is a checkpoint of a sequence model.
pub fn is_seq_checkpoint(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join(CARD_FILE)).is_ok_and(|text| is_seq_card_text(&text))
}

/// Writes `model` and its card to the folder `dir` atomically.
pub fn save_checkpoint(
    model: &SeqModel,
    card: &SeqCard,
    dir: &Path,
) -> Result<(), CheckpointError> {
    checkpoint::save_with_card(model, &card.to_toml(), dir)
}

/// Reads a sequence-model checkpoint folder: its card and the model with its weights.
pub fn load_checkpoint(
    dir: &Path,
    device: &Device,
) -> Result<(SeqCard, SeqModel), CheckpointError> {
    let (card_path, text, weights) = checkpoint::read_card(dir)?;
    let card = SeqCard::parse(&text, &card_path.display().to_string())?;
    let mut model = card.init(device).map_err(|e| CheckpointError::Weights {
        path: card_path,
        message: e.to_string(),
    })?;
    checkpoint::load_weights(&mut model, &weights)?;
    Ok((card, model))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_cards_parse_and_describe_their_model() {
        for name in builtin_names() {
            let card = SeqCard::builtin(name).unwrap();
            assert_eq!(card.name, name);
            assert!(is_seq_card(name));
            let spec = card.spec(None);
            spec.validate().unwrap();
            assert_eq!(spec.input.shape[1], Some(card.model.context));
        }
        assert!(matches!(
            SeqCard::builtin("seq-gru"),
            Err(ZooError::Unknown { .. })
        ));
    }

    #[test]
    fn bad_cards_say_what_is_wrong() {
        let text = builtin_text("seq-transformer").unwrap();
        let e = SeqCard::parse(&text.replace("heads = 8", "heads = 7"), "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("heads"), "{e}");
        let e = SeqCard::parse(&text.replace("task = \"next-vector\"", "task = \"x\""), "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("task"), "{e}");
        let e = SeqCard::parse(
            &text.replace("architecture = \"transformer\"", "architecture = \"gru\""),
            "x",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("gru"), "{e}");
    }

    #[test]
    fn checkpoints_round_trip() {
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let mut card = SeqCard::builtin("seq-lstm").unwrap();
        card.model.dim = 8;
        card.model.hidden = 16;
        card.model.head_hidden = Some(12);
        let model = card.init(&device).unwrap();
        let path = dir.path().join("ckpt");
        save_checkpoint(&model, &card, &path).unwrap();
        assert!(is_seq_checkpoint(&path));
        let (back_card, back) = load_checkpoint(&path, &device).unwrap();
        assert_eq!(back_card, card);
        let x = burn::tensor::Tensor::<3>::ones([2, card.model.context, 8], &device);
        let a: Vec<f32> = model
            .forward(x.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let b: Vec<f32> = back.forward(x).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(a, b);
    }
}
