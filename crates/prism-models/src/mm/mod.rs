//! The RGB + thermal + event encoder: MiT on a 5-channel image (RGB, thermal, event), as one
//! RGB-only stream, one early-fusion stream, or two streams (RGB, and thermal + event) fused by
//! CSSA or GAFF at a chosen set of stages.
//!
//! Two streams, as in CrossAttentionDet's stage-selection encoder: each stage runs both
//! streams; at a fusion stage the fused map is that stage's output and, as in the reference,
//! the input of both streams' next stage. At a stage without fusion the streams go on apart and
//! the stage's output is their mean (the reference uses CMX's FRM + FFM there, which prism does
//! not build: the mean keeps the comparison about the chosen fusion blocks).
//!
//! Names: `mm-mit-b0-rgb`, `mm-mit-b0-early`, `mm-mit-b1-cssa-s3`, `mm-mit-b0-gaff-s23` (the
//! digits after `s` are the fusion stages, 1 to 4).

pub mod card;
mod detector;

pub use card::{MmCard, MmCardError};
pub use detector::{MmDetector, MmDetectorConfig};

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::fusion::{CssaConfig, Fusion, FusionConfig, GaffConfig};
use crate::mit::{Mit, MitConfig, MIT_PRESETS};
use crate::rvt::params::count_params;

/// Channels of the 5-channel input: RGB, then thermal and event.
pub const MM_CHANNELS: usize = 5;
/// Channels of the RGB stream.
pub const RGB_CHANNELS: usize = 3;

/// What the encoder reads from the 5-channel input.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum MmInput {
    /// The RGB channels alone (the baseline a user without thermal and event sensors has).
    Rgb,
    /// All five channels into one stream (a 5-channel stem).
    Early,
    /// An RGB stream and a thermal + event stream, fused at `fusion_stages`.
    Dual,
}

/// Settings of an [`MmEncoder`].
#[derive(Config, Debug, PartialEq)]
pub struct MmEncoderConfig {
    /// The MiT preset, `mit-b0` … `mit-b5` (its input channels follow from `input`).
    pub backbone: String,
    /// Streams.
    #[config(default = "MmInput::Dual")]
    pub input: MmInput,
    /// The fusion block of a two-stream encoder.
    #[config(default = "None")]
    pub fusion: Option<FusionConfig>,
    /// The stages (1 to 4) where the streams are fused.
    #[config(default = "Vec::new()")]
    pub fusion_stages: Vec<usize>,
    /// The MiT blocks' attention (`model.attention`; `sr` is MiT's own).
    #[config(default = "crate::attention::AttentionKind::Sr")]
    pub attention: crate::attention::AttentionKind,
}

/// The encoder.
#[derive(Module, Debug)]
pub struct MmEncoder {
    /// The RGB stream (or the single stream of `Rgb` and `Early`).
    pub rgb: Mit,
    /// The thermal + event stream of a two-stream encoder.
    pub aux: Option<Mit>,
    pub fuse1: Option<Fusion>,
    pub fuse2: Option<Fusion>,
    pub fuse3: Option<Fusion>,
    pub fuse4: Option<Fusion>,
    /// Channels the single stream reads (3 or 5); 0 for two streams.
    pub single_channels: usize,
}

/// Why an encoder name or config is not a model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MmConfigError {
    #[error("unknown multimodal model {0:?}: expected mm-mit-bN-rgb, mm-mit-bN-early, mm-mit-bN-cssa-sS or mm-mit-bN-gaff-sS (N 0 to 5, S the fusion stages, e.g. s23)")]
    UnknownName(String),
    #[error("unknown MiT backbone {0:?}: expected mit-b0 … mit-b5")]
    UnknownBackbone(String),
    #[error("pretrained MiT weights hold spatial-reduction attention; `attention = \"{0}\"` cannot start from them")]
    PretrainedAttention(&'static str),
    #[error("the pretrained backbone is not {expected}: its stages have {found:?} channels and {depths:?} blocks")]
    BackboneMismatch {
        expected: String,
        found: [usize; 4],
        depths: [usize; 4],
    },
    #[error("fusion stage {0} is not a stage: MiT has stages 1 to 4")]
    BadStage(usize),
    #[error("a two-stream encoder needs a fusion block and at least one fusion stage")]
    NoFusion,
    #[error("a single-stream encoder ({0:?}) takes no fusion block or fusion stages")]
    FusionWithoutStreams(MmInput),
}

impl MmEncoderConfig {
    /// Parses a name users type (`mm-mit-b1-cssa-s3`, `mm-mit-b0-gaff-s23`, `mm-mit-b0-rgb`,
    /// `mm-mit-b0-early`), with the fusion blocks' default settings.
    pub fn from_name(name: &str) -> Result<Self, MmConfigError> {
        let unknown = || MmConfigError::UnknownName(name.to_string());
        let (backbone, variant) = MIT_PRESETS
            .iter()
            .find_map(|b| {
                let rest = name.strip_prefix("mm-")?.strip_prefix(b)?;
                Some((*b, rest.strip_prefix('-')?))
            })
            .ok_or_else(unknown)?;
        let config = Self::new(backbone.to_string());
        let config = match variant {
            "rgb" => config.with_input(MmInput::Rgb),
            "early" => config.with_input(MmInput::Early),
            _ => {
                let (kind, stages) = variant.split_once("-s").ok_or_else(unknown)?;
                let fusion = match kind {
                    "cssa" => FusionConfig::Cssa(CssaConfig::new()),
                    "gaff" => FusionConfig::Gaff(GaffConfig::new()),
                    _ => return Err(unknown()),
                };
                let stages: Vec<usize> = stages
                    .chars()
                    .map(|c| c.to_digit(10).map(|d| d as usize))
                    .collect::<Option<_>>()
                    .ok_or_else(unknown)?;
                if stages.is_empty() || stages.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(unknown());
                }
                config.with_fusion(Some(fusion)).with_fusion_stages(stages)
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// The name users type for this encoder (fusion settings other than the block are not in
    /// it).
    pub fn name(&self) -> String {
        let backbone = &self.backbone;
        match (self.input, &self.fusion) {
            (MmInput::Rgb, _) => format!("mm-{backbone}-rgb"),
            (MmInput::Early, _) => format!("mm-{backbone}-early"),
            (MmInput::Dual, fusion) => {
                let kind = fusion.as_ref().map_or("none", FusionConfig::kind);
                let stages: String = self.fusion_stages.iter().map(|s| s.to_string()).collect();
                format!("mm-{backbone}-{kind}-s{stages}")
            }
        }
    }

    /// The backbone's MiT settings (3 input channels).
    pub fn mit(&self) -> Result<MitConfig, MmConfigError> {
        MitConfig::preset(&self.backbone)
            .map(|mit| mit.with_attention(self.attention))
            .ok_or_else(|| MmConfigError::UnknownBackbone(self.backbone.clone()))
    }

    /// Checks the stages and that fusion goes with two streams.
    pub fn validate(&self) -> Result<(), MmConfigError> {
        self.mit()?;
        if let Some(&s) = self.fusion_stages.iter().find(|&&s| !(1..=4).contains(&s)) {
            return Err(MmConfigError::BadStage(s));
        }
        match self.input {
            MmInput::Dual if self.fusion.is_none() || self.fusion_stages.is_empty() => {
                Err(MmConfigError::NoFusion)
            }
            MmInput::Rgb | MmInput::Early
                if self.fusion.is_some() || !self.fusion_stages.is_empty() =>
            {
                Err(MmConfigError::FusionWithoutStreams(self.input))
            }
            _ => Ok(()),
        }
    }

    /// Builds the encoder on `device`.
    pub fn init(&self, device: &Device) -> Result<MmEncoder, MmConfigError> {
        self.validate()?;
        let mit = self.mit()?;
        let stream = |channels: usize| mit.clone().with_in_channels(channels).init(device);
        let fuse = |stage: usize| {
            let fusion = self.fusion.as_ref()?;
            self.fusion_stages
                .contains(&stage)
                .then(|| fusion.init(mit.embed_dims[stage - 1], device))
        };
        let (rgb, aux, single_channels) = match self.input {
            MmInput::Rgb => (stream(RGB_CHANNELS), None, RGB_CHANNELS),
            MmInput::Early => (stream(MM_CHANNELS), None, MM_CHANNELS),
            MmInput::Dual => (
                stream(RGB_CHANNELS),
                Some(stream(MM_CHANNELS - RGB_CHANNELS)),
                0,
            ),
        };
        Ok(MmEncoder {
            rgb,
            aux,
            fuse1: fuse(1),
            fuse2: fuse(2),
            fuse3: fuse(3),
            fuse4: fuse(4),
            single_channels,
        })
    }
}

impl MmEncoderConfig {
    /// Builds the encoder with its streams started from `backbone` (3-channel ImageNet weights,
    /// e.g. from `prism import mit-checkpoint`): the RGB stream is a copy, the thermal + event
    /// stream and the early-fusion stream get a stem made from the RGB one
    /// ([`Mit::with_stem_channels`]); fusion blocks start fresh.
    pub fn init_pretrained(
        &self,
        backbone: Mit,
        device: &Device,
    ) -> Result<MmEncoder, MmConfigError> {
        let mit = self.mit()?;
        if self.attention != crate::attention::AttentionKind::Sr {
            return Err(MmConfigError::PretrainedAttention(self.attention.name()));
        }
        let found = [
            &backbone.patch_embed1,
            &backbone.patch_embed2,
            &backbone.patch_embed3,
            &backbone.patch_embed4,
        ]
        .map(|e| e.proj.weight.dims()[0]);
        let depths = [
            backbone.block1.len(),
            backbone.block2.len(),
            backbone.block3.len(),
            backbone.block4.len(),
        ];
        if found != mit.embed_dims || depths != mit.depths {
            return Err(MmConfigError::BackboneMismatch {
                expected: self.backbone.clone(),
                found,
                depths,
            });
        }
        let mut encoder = self.init(device)?;
        let backbone = backbone.with_stem_channels(RGB_CHANNELS);
        match self.input {
            MmInput::Rgb => encoder.rgb = backbone,
            MmInput::Early => encoder.rgb = backbone.with_stem_channels(MM_CHANNELS),
            MmInput::Dual => {
                encoder.aux = Some(
                    backbone
                        .clone()
                        .with_stem_channels(MM_CHANNELS - RGB_CHANNELS),
                );
                encoder.rgb = backbone;
            }
        }
        Ok(encoder)
    }
}

impl MmEncoder {
    /// The fusion block of stage `i` (0-based), if that stage fuses.
    pub fn fusion(&self, i: usize) -> Option<&Fusion> {
        [&self.fuse1, &self.fuse2, &self.fuse3, &self.fuse4][i].as_ref()
    }

    /// Trainable parameters of the fusion blocks per stage (0 where a stage does not fuse).
    pub fn fusion_params(&self) -> [usize; 4] {
        std::array::from_fn(|i| self.fusion(i).map_or(0, count_params))
    }

    /// `[B, 5, H, W]` (RGB, thermal, event) -> the four stage maps, strides 4, 8, 16, 32.
    pub fn forward(&self, x: Tensor<4>) -> [Tensor<4>; 4] {
        let Some(aux_stream) = &self.aux else {
            let mut x = x.narrow(1, 0, self.single_channels);
            return std::array::from_fn(|i| {
                x = self.rgb.forward_stage(i, x.clone());
                x.clone()
            });
        };
        let mut rgb = x.clone().narrow(1, 0, RGB_CHANNELS);
        let mut aux = x.narrow(1, RGB_CHANNELS, MM_CHANNELS - RGB_CHANNELS);
        std::array::from_fn(|i| {
            rgb = self.rgb.forward_stage(i, rgb.clone());
            aux = aux_stream.forward_stage(i, aux.clone());
            match self.fusion(i) {
                Some(fusion) => {
                    let fused = fusion.forward(rgb.clone(), aux.clone());
                    rgb = fused.clone();
                    aux = fused.clone();
                    fused
                }
                None => (rgb.clone() + aux.clone()) / 2.0,
            }
        })
    }
}
