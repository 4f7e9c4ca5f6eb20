//! The model zoo: named model cards (`models/*.toml`), each a network config plus what the model
//! sees and predicts (classes, sensor, event representation). Users type the names
//! (`rvt-tiny-gen1`, …); a card file of their own works the same way.

use std::path::Path;

use prism_core::spec::{
    ModelSpec, OutputSpec, Postprocess, Representation, RepresentationKind, StateSpec, Task,
    TensorSpec, SPEC_VERSION,
};
use serde::{Deserialize, Serialize};

use crate::rvt::RvtConfig;

/// Name of the window-duration input of a model with SSM memory (seconds, `[N, 1]`).
pub const DURATION_INPUT: &str = "window_duration_s";

/// The cards shipped in `models/`, by name.
const BUILTIN: &[(&str, &str)] = &[
    (
        "rvt-tiny-gen1",
        include_str!("../../../models/rvt-tiny-gen1.toml"),
    ),
    (
        "rvt-small-gen1",
        include_str!("../../../models/rvt-small-gen1.toml"),
    ),
    (
        "rvt-base-gen1",
        include_str!("../../../models/rvt-base-gen1.toml"),
    ),
    (
        "rvt-tiny-1mpx",
        include_str!("../../../models/rvt-tiny-1mpx.toml"),
    ),
    (
        "rvt-small-1mpx",
        include_str!("../../../models/rvt-small-1mpx.toml"),
    ),
    (
        "rvt-base-1mpx",
        include_str!("../../../models/rvt-base-1mpx.toml"),
    ),
    (
        "rvt-tiny-synth",
        include_str!("../../../models/rvt-tiny-synth.toml"),
    ),
];

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ZooError {
    #[error("unknown model {name:?}; known models: {known}")]
    Unknown { name: String, known: String },
    #[error("{source_name}: {message}")]
    Parse {
        source_name: String,
        message: String,
    },
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// Whether a `--model` / `--config` argument names a file rather than a shipped card: it exists,
/// has an extension (`x.toml`) or a directory part (`models/x`). Card names have neither.
pub fn looks_like_a_path(arg: &str) -> bool {
    let path = Path::new(arg);
    path.exists() || path.extension().is_some() || arg.contains(['/', '\\'])
}

/// A named model: the network and the data contract it was made for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub name: String,
    pub model: RvtSection,
    pub data: DataSection,
}

/// RVT hyper-parameters; the rest of [`RvtConfig`] keeps the reference's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RvtSection {
    pub embed_dim: usize,
    pub dim_head: usize,
    pub fpn_depth: f64,
    pub num_classes: usize,
    /// Padded network input (height, width).
    pub input_size: [usize; 2],
    pub partition_size: [usize; 2],
    /// The recurrent memory of each stage (`model.memory`).
    #[serde(default)]
    pub memory: Memory,
    /// FPN levels fed to the head: 3 (strides 8, 16, 32; RVT's) or 4 (adding stride 4).
    #[serde(default = "three_scales")]
    pub fpn_scales: usize,
    /// The attention of both blocks of every stage (`model.attention`: `full`, `block`,
    /// `grid`, `sr`, `sliding`, `linear`, `latent`); unset or `block-grid`: RVT's window block
    /// then grid block.
    #[serde(
        default,
        serialize_with = "rvt_attention_name",
        deserialize_with = "rvt_attention"
    )]
    pub attention: Option<crate::attention::AttentionKind>,
    /// The older spelling of `memory = "dws-lstm"`: still read, never written.
    #[serde(default, skip_serializing)]
    pub lstm_dws_conv: bool,
}

fn three_scales() -> usize {
    3
}

/// RVT's own attention pair's name.
pub const RVT_ATTENTION: &str = "block-grid";

/// Writes `model.attention` by name, RVT's pair as `block-grid` (always written, so `--set`
/// finds the key).
fn rvt_attention_name<S: serde::Serializer>(
    attention: &Option<crate::attention::AttentionKind>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(attention.map_or(RVT_ATTENTION, |k| k.name()))
}

/// `model.attention` of an RVT card: a kind, or `block-grid` (RVT's pair, `None`).
fn rvt_attention<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<crate::attention::AttentionKind>, D::Error> {
    use serde::de::Error;
    let name = String::deserialize(deserializer)?;
    if name == RVT_ATTENTION {
        return Ok(None);
    }
    crate::attention::AttentionKind::ALL
        .into_iter()
        .find(|k| k.name() == name)
        .map(Some)
        .ok_or_else(|| {
            D::Error::custom(format!(
                "unknown attention {name:?}; one of {RVT_ATTENTION}, {}",
                crate::attention::AttentionKind::ALL
                    .map(|k| k.name())
                    .join(", ")
            ))
        })
}

/// RVT's recurrent memory per stage (the seed `rvt-plain-lstm-hypothesis.md` compares the two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Memory {
    /// The released RVT cell: a per-pixel LSTM whose gates are one 1x1 convolution of
    /// `cat(x, h)` ("plain LSTM").
    #[default]
    Lstm,
    /// A depthwise 3x3 convolution on h before the 1x1 gates (RVT's `DWSConvLSTM2d` with
    /// `dws_conv = true`): each cell also sees its neighbours' state.
    DwsLstm,
    /// A diagonal state-space cell discretized by each window's real duration
    /// ([`crate::rvt::ssm`]): the model takes the duration as an input and runs at window
    /// lengths other than the one it trained at.
    Ssm,
}

impl Memory {
    /// The name a card uses: `lstm`, `dws-lstm` or `ssm`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Lstm => "lstm",
            Self::DwsLstm => "dws-lstm",
            Self::Ssm => "ssm",
        }
    }
}

/// What the model sees and predicts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSection {
    pub classes: Vec<String>,
    /// Sensor width, height in pixels.
    pub sensor: [usize; 2],
    /// 2: RVT's ×0.5 `nearest-exact` downsampling of the histogram (1Mpx), else 1.
    pub downsample: usize,
    pub window_ms: u32,
    pub bins: usize,
    pub count_cutoff: u8,
}

/// The TOML text of a shipped card (the trainer reads its `[train]` and `[dataset]` tables).
pub fn builtin_text(name: &str) -> Option<&'static str> {
    BUILTIN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}

/// Names of the shipped cards.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|(name, _)| *name)
}

impl ModelCard {
    /// A shipped card by name.
    pub fn builtin(name: &str) -> Result<Self, ZooError> {
        let (_, text) =
            BUILTIN
                .iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| ZooError::Unknown {
                    name: name.to_string(),
                    known: builtin_names().collect::<Vec<_>>().join(", "),
                })?;
        Self::parse(text, name)
    }

    /// A card from a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ZooError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ZooError::Io(path.display().to_string(), e))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// A card file, or a shipped card by name. An argument that names a file (see
    /// [`looks_like_a_path`]) is read as one, so a missing file is "no such file", not "unknown
    /// model".
    pub fn resolve(name_or_path: &str) -> Result<Self, ZooError> {
        if Path::new(name_or_path).is_file() || looks_like_a_path(name_or_path) {
            return Self::from_file(Path::new(name_or_path));
        }
        Self::builtin(name_or_path)
    }

    pub fn parse(text: &str, source_name: &str) -> Result<Self, ZooError> {
        let mut card: ModelCard = toml::from_str(text).map_err(|e| ZooError::Parse {
            source_name: source_name.to_string(),
            message: e.to_string(),
        })?;
        if std::mem::take(&mut card.model.lstm_dws_conv) {
            let names_memory = toml::from_str::<toml::Table>(text)
                .ok()
                .and_then(|t| t.get("model")?.get("memory").cloned())
                .is_some();
            if names_memory && card.model.memory != Memory::DwsLstm {
                return Err(ZooError::Parse {
                    source_name: source_name.to_string(),
                    message: "lstm_dws_conv = true contradicts model.memory (use memory alone)"
                        .into(),
                });
            }
            card.model.memory = Memory::DwsLstm;
        }
        card.validate().map_err(|message| ZooError::Parse {
            source_name: source_name.to_string(),
            message,
        })?;
        Ok(card)
    }

    /// Applies `--set KEY=VALUE` overrides (`model.memory=dws-lstm`, `data.window_ms=20`) and
    /// checks the result like a card file.
    pub fn with_overrides(&self, overrides: &[String]) -> Result<Self, ZooError> {
        crate::overrides::apply_to_card(self, overrides, &self.name, Self::parse)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// Checks that the network and data contract fit together.
    pub fn validate(&self) -> Result<(), String> {
        let m = &self.model;
        let d = &self.data;
        if !matches!(m.fpn_scales, 3 | 4) {
            return Err(format!("model.fpn_scales is 3 or 4, not {}", m.fpn_scales));
        }
        if d.classes.len() != m.num_classes {
            return Err(format!(
                "{} class names for num_classes = {}",
                d.classes.len(),
                m.num_classes
            ));
        }
        let [h, w] = m.input_size;
        let [ph, pw] = m.partition_size;
        if h % 32 != 0 || w % 32 != 0 || ph == 0 || pw == 0 {
            return Err(format!(
                "input size {h}x{w} must be multiples of 32, partition positive"
            ));
        }
        // Every stage (strides 4..32) must split into whole windows and grids.
        for stride in [4, 8, 16, 32] {
            let (sh, sw) = (h / stride, w / stride);
            if sh % ph != 0 || sw % pw != 0 {
                return Err(format!(
                    "partition {ph}x{pw} does not divide the stride-{stride} feature map {sh}x{sw}"
                ));
            }
        }
        if d.downsample == 0 || d.bins == 0 || d.window_ms == 0 {
            return Err("downsample, bins and window_ms must be positive".into());
        }
        let (sw, sh) = (
            d.sensor[0].div_ceil(d.downsample),
            d.sensor[1].div_ceil(d.downsample),
        );
        if sw > w || sh > h {
            return Err(format!(
                "sensor {}x{} / {} does not fit the input {w}x{h}",
                d.sensor[0], d.sensor[1], d.downsample
            ));
        }
        Ok(())
    }

    /// The Burn config of the network.
    pub fn rvt_config(&self) -> RvtConfig {
        let m = &self.model;
        RvtConfig::new(
            m.embed_dim,
            m.dim_head,
            m.num_classes,
            m.partition_size,
            m.input_size,
            m.fpn_depth,
        )
        .with_in_channels(2 * self.data.bins)
        .with_lstm_dws_conv(m.memory == Memory::DwsLstm)
        .with_ssm_memory(m.memory == Memory::Ssm)
        .with_window_s(f64::from(self.data.window_ms) / 1000.0)
        .with_attention(m.attention)
        .with_fpn_scales(m.fpn_scales)
    }

    /// Names of the 8 state inputs and outputs, two per stage in [`crate::rvt::RvtState`]'s
    /// flat order: `h1, c1, …, h4, c4` for an LSTM (the reference's names), `s1_re, s1_im, …`
    /// (the real and imaginary parts of each stage's modes) for the SSM.
    pub fn state_names(&self) -> [(String, String); 8] {
        let kinds = match self.model.memory {
            Memory::Ssm => [("s", "_re"), ("s", "_im")],
            Memory::Lstm | Memory::DwsLstm => [("h", ""), ("c", "")],
        };
        core::array::from_fn(|i| {
            let (kind, part) = kinds[i % 2];
            let stage = i / 2 + 1;
            let name = format!("{kind}{stage}{part}");
            (name.clone(), format!("{name}_out"))
        })
    }

    /// The graph input that takes each window's duration in seconds, `[N, 1]`: SSM memory
    /// only (an LSTM counts windows, not time).
    pub fn duration_input(&self) -> Option<&'static str> {
        (self.model.memory == Memory::Ssm).then_some(DURATION_INPUT)
    }

    /// The `prism` metadata an exported model of this card carries.
    pub fn model_spec(&self, batch: Option<usize>) -> ModelSpec {
        let m = &self.model;
        let d = &self.data;
        let [h, w] = m.input_size;
        let dims = self.rvt_config().stage_dims();
        let state = self
            .state_names()
            .into_iter()
            .enumerate()
            .map(|(i, (input, output))| {
                let stride = 4 << (i / 2);
                StateSpec {
                    input,
                    output,
                    shape: vec![batch.unwrap_or(1), dims[i / 2], h / stride, w / stride],
                }
            })
            .collect();
        ModelSpec {
            spec_version: SPEC_VERSION,
            model: self.name.clone(),
            task: Task::EventDetection,
            classes: d.classes.clone(),
            input: TensorSpec {
                name: "histogram".into(),
                shape: vec![batch, Some(2 * d.bins), Some(h), Some(w)],
            },
            representation: Some(Representation {
                kind: RepresentationKind::StackedHistogram,
                bins: d.bins,
                window_us: i64::from(d.window_ms) * 1000,
                count_cutoff: d.count_cutoff,
                sensor_width: d.sensor[0],
                sensor_height: d.sensor[1],
                downsample: d.downsample,
                padded_width: w,
                padded_height: h,
            }),
            output: OutputSpec {
                name: "detections".into(),
                strides: self.rvt_config().strides(),
                decoded: false,
            },
            state,
            duration_input: self.duration_input().map(str::to_string),
            postprocess: Some(Postprocess::default()),
            sequence: None,
            precision: prism_core::spec::Precision::Fp32,
            quantization: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_card_parses_and_gives_a_valid_spec() {
        for name in builtin_names() {
            let card = ModelCard::builtin(name).unwrap();
            assert_eq!(card.name, name);
            let spec = card.model_spec(Some(1));
            spec.validate().unwrap();
            assert_eq!(spec.state.len(), 8);
        }
        let gen1 = ModelCard::builtin("rvt-tiny-gen1")
            .unwrap()
            .model_spec(Some(1));
        assert_eq!(gen1.num_anchors(), Some(1680));
        let mpx = ModelCard::builtin("rvt-base-1mpx")
            .unwrap()
            .model_spec(Some(1));
        assert_eq!(mpx.num_anchors(), Some(5040));
    }

    #[test]
    fn cards_match_the_code_presets() {
        for name in crate::rvt::RVT_PRESETS {
            let card = ModelCard::builtin(name).unwrap().rvt_config();
            let preset = RvtConfig::preset(name).unwrap();
            assert_eq!(
                (
                    card.embed_dim,
                    card.dim_head,
                    card.num_classes,
                    card.partition_size,
                    card.input_size
                ),
                (
                    preset.embed_dim,
                    preset.dim_head,
                    preset.num_classes,
                    preset.partition_size,
                    preset.input_size
                ),
                "{name}"
            );
            assert_eq!(card.csp_depth(), preset.csp_depth(), "{name}");
        }
    }

    #[test]
    fn unknown_names_and_bad_cards_are_clear_errors() {
        let err = ModelCard::builtin("rvt-huge-gen1").unwrap_err().to_string();
        assert!(err.contains("rvt-tiny-gen1"), "{err}");
        let text = include_str!("../../../models/rvt-tiny-gen1.toml").replace("[8, 10]", "[7, 10]");
        let err = ModelCard::parse(&text, "x.toml").unwrap_err().to_string();
        assert!(err.contains("partition 7x10"), "{err}");
        let err = ModelCard::parse("name = 3", "y.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("y.toml"), "{err}");
    }
}
