//! Model cards of the RGB + thermal + event detector (`models/mm-*.toml`): the architecture (a
//! name users type, `mm-mit-b0-cssa-s3`), the fusion settings the ablations vary, the input
//! size and the classes; and checkpoints of it (`card.toml` + `model.safetensors`, the same
//! folder layout as RVT's, told apart by the card).

use std::path::Path;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::{MmConfigError, MmDetector, MmDetectorConfig};
use crate::checkpoint::{self, CheckpointError, CARD_FILE};
use crate::fusion::{FusionConfig, SwitchMode};
use crate::zoo::ZooError;

/// The cards shipped in `models/`, by name.
const BUILTIN: &[(&str, &str)] = &[
    (
        "mm-mit-b0-rgb",
        include_str!("../../../../models/mm-mit-b0-rgb.toml"),
    ),
    (
        "mm-mit-b0-early",
        include_str!("../../../../models/mm-mit-b0-early.toml"),
    ),
    (
        "mm-mit-b0-cssa-s3",
        include_str!("../../../../models/mm-mit-b0-cssa-s3.toml"),
    ),
    (
        "mm-mit-b0-gaff-s23",
        include_str!("../../../../models/mm-mit-b0-gaff-s23.toml"),
    ),
    (
        "mm-mit-b1-cssa-s3",
        include_str!("../../../../models/mm-mit-b1-cssa-s3.toml"),
    ),
];

/// A multimodal detector card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MmCard {
    pub name: String,
    pub model: MmModelSection,
    pub data: MmDataSection,
}

/// The network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MmModelSection {
    /// `mm-mit-bN-{rgb,early,cssa-sS,gaff-sS}`; the card's name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    pub num_classes: usize,
    /// Network input (height, width), multiples of 32; images are letterboxed into it.
    pub input_size: [usize; 2],
    /// CSSA: switch a channel whose ECA weight is below this (default 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cssa_threshold: Option<f64>,
    /// CSSA: `hard`, `straight-through` (default) or `soft`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cssa_switch: Option<String>,
    /// CSSA: temperature of the straight-through or soft gate (default 0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cssa_temperature: Option<f64>,
    /// GAFF: squeeze-and-excitation reduction (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gaff_se_reduction: Option<usize>,
    /// GAFF: one shared inter-modality convolution (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gaff_shared: Option<bool>,
    /// GAFF: merge through a bottleneck (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gaff_bottleneck: Option<bool>,
    /// The MiT blocks' attention: `sr` (MiT's own, the default), `full`, `block`, `grid`,
    /// `sliding`, `linear` or `latent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention: Option<crate::attention::AttentionKind>,
}

/// What the model sees and predicts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MmDataSection {
    pub classes: Vec<String>,
}

impl MmCard {
    /// A card with default fusion settings for `architecture`.
    pub fn new(architecture: &str, classes: Vec<String>, input_size: [usize; 2]) -> Self {
        Self {
            name: architecture.to_string(),
            model: MmModelSection {
                architecture: None,
                num_classes: classes.len(),
                input_size,
                cssa_threshold: None,
                cssa_switch: None,
                cssa_temperature: None,
                gaff_se_reduction: None,
                gaff_shared: None,
                gaff_bottleneck: None,
                attention: None,
            },
            data: MmDataSection { classes },
        }
    }

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

    pub fn parse(text: &str, source_name: &str) -> Result<Self, ZooError> {
        let parse_error = |message: String| ZooError::Parse {
            source_name: source_name.to_string(),
            message,
        };
        let card: Self = toml::from_str::<CardTables>(text)
            .map_err(|e| parse_error(e.to_string()))?
            .into();
        card.detector_config()
            .map_err(|e| parse_error(e.to_string()))?;
        Ok(card)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// The architecture name (`mm-mit-b0-cssa-s3`).
    pub fn architecture(&self) -> &str {
        self.model.architecture.as_deref().unwrap_or(&self.name)
    }

    /// The detector this card describes; checks everything a card can get wrong.
    pub fn detector_config(&self) -> Result<MmDetectorConfig, MmCardError> {
        let m = &self.model;
        if self.data.classes.len() != m.num_classes || m.num_classes == 0 {
            return Err(MmCardError::Invalid(format!(
                "{} class names for num_classes = {}",
                self.data.classes.len(),
                m.num_classes
            )));
        }
        let [h, w] = m.input_size;
        if h == 0 || w == 0 || h % 32 != 0 || w % 32 != 0 {
            return Err(MmCardError::Invalid(format!(
                "input size {h}x{w} must be positive multiples of 32"
            )));
        }
        let mut config = MmDetectorConfig::from_name(self.architecture(), m.num_classes)?;
        if let Some(kind) = m.attention {
            config.encoder.attention = kind;
        }
        let cssa_set =
            m.cssa_threshold.is_some() || m.cssa_switch.is_some() || m.cssa_temperature.is_some();
        let gaff_set =
            m.gaff_se_reduction.is_some() || m.gaff_shared.is_some() || m.gaff_bottleneck.is_some();
        match &mut config.encoder.fusion {
            Some(FusionConfig::Cssa(c)) if !gaff_set => {
                if let Some(t) = m.cssa_threshold {
                    if !(t > 0.0 && t < 1.0) {
                        return Err(MmCardError::Invalid(format!(
                            "cssa_threshold {t} is not in (0, 1)"
                        )));
                    }
                    c.threshold = t;
                }
                let temperature = m.cssa_temperature.unwrap_or(0.1);
                if !(temperature.is_finite() && temperature > 0.0) {
                    return Err(MmCardError::Invalid(
                        "cssa_temperature must be positive".into(),
                    ));
                }
                c.switch = match m.cssa_switch.as_deref() {
                    None | Some("straight-through") => SwitchMode::StraightThrough(temperature),
                    Some("hard") => SwitchMode::Hard,
                    Some("soft") => SwitchMode::Soft(temperature),
                    Some(other) => {
                        return Err(MmCardError::Invalid(format!(
                            "cssa_switch {other:?}: expected hard, straight-through or soft"
                        )))
                    }
                };
            }
            Some(FusionConfig::Gaff(g)) if !cssa_set => {
                if let Some(r) = m.gaff_se_reduction {
                    if r == 0 {
                        return Err(MmCardError::Invalid(
                            "gaff_se_reduction must be at least 1".into(),
                        ));
                    }
                    g.se_reduction = r;
                }
                g.inter_shared = m.gaff_shared.unwrap_or(g.inter_shared);
                g.merge_bottleneck = m.gaff_bottleneck.unwrap_or(g.merge_bottleneck);
            }
            None if !cssa_set && !gaff_set => {}
            _ => {
                return Err(MmCardError::Invalid(format!(
                    "{} takes no {} settings",
                    self.architecture(),
                    if cssa_set { "cssa_*" } else { "gaff_*" }
                )))
            }
        }
        Ok(config)
    }

    /// The model's contract as written into its ONNX file.
    pub fn spec(&self, batch: Option<usize>) -> prism_core::spec::ModelSpec {
        crate::onnx::mm_model_spec(&self.name, &self.data.classes, self.model.input_size, batch)
    }
}

/// The card as written in TOML (a `[train]` or `[dataset]` table beside it is the trainer's).
#[derive(Deserialize)]
struct CardTables {
    name: String,
    model: MmModelSection,
    data: MmDataSection,
}

impl From<CardTables> for MmCard {
    fn from(t: CardTables) -> Self {
        Self {
            name: t.name,
            model: t.model,
            data: t.data,
        }
    }
}

/// Why a card does not describe a detector.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MmCardError {
    #[error(transparent)]
    Config(#[from] MmConfigError),
    #[error("{0}")]
    Invalid(String),
}

/// The TOML text of a shipped card.
pub fn builtin_text(name: &str) -> Option<&'static str> {
    BUILTIN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}

/// Names of the shipped multimodal cards.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|(name, _)| *name)
}

/// Whether card text describes a multimodal detector rather than RVT: its name starts with
/// `mm-` or its `[model]` table names an `architecture`, and it is not a sequence model's card
/// (`task = "next-vector"`, which names an architecture too).
pub fn is_mm_card_text(text: &str) -> bool {
    let Ok(value) = toml::from_str::<toml::Table>(text) else {
        return false;
    };
    if value.contains_key("task") {
        return false;
    }
    let named_mm = value
        .get("name")
        .and_then(|n| n.as_str())
        .is_some_and(|n| n.starts_with("mm-"));
    let has_architecture = value
        .get("model")
        .and_then(|m| m.get("architecture"))
        .is_some();
    named_mm || has_architecture
}

/// Whether `dir` is a checkpoint of a multimodal detector.
pub fn is_mm_checkpoint(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join(CARD_FILE)).is_ok_and(|text| is_mm_card_text(&text))
}

/// Writes `model` and its card to the folder `dir` atomically.
pub fn save_checkpoint(
    model: &MmDetector,
    card: &MmCard,
    dir: &Path,
) -> Result<(), CheckpointError> {
    checkpoint::save_with_card(model, &card.to_toml(), dir)
}

/// Reads a multimodal checkpoint folder: its card and the detector with its weights.
pub fn load_checkpoint(
    dir: &Path,
    device: &Device,
) -> Result<(MmCard, MmDetector), CheckpointError> {
    let (card_path, text, weights) = checkpoint::read_card(dir)?;
    let card = MmCard::parse(&text, &card_path.display().to_string())?;
    let config = card
        .detector_config()
        .map_err(|e| CheckpointError::Weights {
            path: card_path.clone(),
            message: e.to_string(),
        })?;
    let mut model = config.init(device).map_err(|e| CheckpointError::Weights {
        path: card_path,
        message: e.to_string(),
    })?;
    checkpoint::load_weights(&mut model, &weights)?;
    Ok((card, model))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_shipped_card_parses_and_builds_its_config() {
        for name in builtin_names() {
            let card = MmCard::builtin(name).unwrap();
            assert_eq!(card.name, name);
            assert!(is_mm_card_text(builtin_text(name).unwrap()));
            card.detector_config().unwrap();
        }
    }

    #[test]
    fn the_attention_setting_reaches_both_streams_and_refuses_pretrained_weights() {
        use crate::attention::AttentionKind;
        let card = MmCard::builtin("mm-mit-b0-cssa-s3")
            .unwrap()
            .with_overrides(&["model.attention=linear".into()])
            .unwrap();
        let config = card.detector_config().unwrap();
        assert_eq!(config.encoder.attention, AttentionKind::Linear);
        let device = burn::tensor::Device::flex();
        let encoder = config.encoder.init(&device).unwrap();
        for stream in [Some(&encoder.rgb), encoder.aux.as_ref()] {
            let block = &stream.unwrap().block1[0];
            assert!(block.attn.is_none());
            assert_eq!(block.mixer.as_ref().unwrap().kind, AttentionKind::Linear);
        }
        let backbone = crate::mit::MitConfig::preset("mit-b0")
            .unwrap()
            .init(&device);
        let err = config
            .encoder
            .init_pretrained(backbone, &device)
            .unwrap_err()
            .to_string();
        assert!(err.contains("linear"), "{err}");
        assert!(MmCard::builtin("mm-mit-b0-cssa-s3")
            .unwrap()
            .with_overrides(&["model.attention=fourier".into()])
            .is_err());
    }

    #[test]
    fn fusion_settings_reach_the_config_and_wrong_ones_are_refused() {
        let mut card = MmCard::new("mm-mit-b0-cssa-s3", vec!["a".into()], [64, 96]);
        card.model.cssa_threshold = Some(0.3);
        card.model.cssa_switch = Some("hard".into());
        match card.detector_config().unwrap().encoder.fusion {
            Some(FusionConfig::Cssa(c)) => {
                assert_eq!(c.threshold, 0.3);
                assert_eq!(c.switch, SwitchMode::Hard);
            }
            other => panic!("{other:?}"),
        }
        card.model.gaff_shared = Some(true);
        assert!(card.detector_config().is_err(), "gaff settings on CSSA");
        let mut gaff = MmCard::new("mm-mit-b0-gaff-s23", vec!["a".into()], [64, 96]);
        gaff.model.gaff_se_reduction = Some(8);
        gaff.model.gaff_bottleneck = Some(true);
        match gaff.detector_config().unwrap().encoder.fusion {
            Some(FusionConfig::Gaff(g)) => {
                assert_eq!(
                    (g.se_reduction, g.merge_bottleneck, g.inter_shared),
                    (8, true, false)
                );
            }
            other => panic!("{other:?}"),
        }
        let mut rgb = MmCard::new("mm-mit-b0-rgb", vec!["a".into()], [64, 96]);
        rgb.model.cssa_threshold = Some(0.5);
        assert!(rgb.detector_config().is_err());
        let odd = MmCard::new("mm-mit-b0-rgb", vec!["a".into()], [60, 96]);
        assert!(odd.detector_config().is_err());
        assert!(MmCard::parse("name = \"x\"\n[model]\nnum_classes = 1\n", "t").is_err());
    }

    #[test]
    fn a_checkpoint_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let device = Device::flex();
        let card = MmCard::new("mm-mit-b0-gaff-s23", vec!["p".into(), "c".into()], [64, 64]);
        let model = card.detector_config().unwrap().init(&device).unwrap();
        let ckpt = dir.path().join("ckpt");
        save_checkpoint(&model, &card, &ckpt).unwrap();
        assert!(is_mm_checkpoint(&ckpt));
        let (read, loaded) = load_checkpoint(&ckpt, &device).unwrap();
        assert_eq!(read, card);
        let x = burn::tensor::Tensor::<4>::ones([1, 5, 64, 64], &device) * 0.5;
        let a: Vec<f32> = model.forward(x.clone()).into_data().try_into_vec().unwrap();
        let b: Vec<f32> = loaded.forward(x).into_data().try_into_vec().unwrap();
        assert_eq!(a, b);
    }
}
