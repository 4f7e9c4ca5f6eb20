//! Fusion of the RGB and auxiliary (thermal + event) streams at one encoder stage: CSSA and
//! GAFF (`../shared/reference/fusion.md`, sections 4 to 6). Each block takes two `[B, C, H, W]`
//! maps and returns one.

pub mod cssa;
pub mod gaff;

pub use cssa::{Cssa, CssaConfig, SwitchMode};
pub use gaff::{Gaff, GaffConfig};

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

/// Which fusion block, with its settings.
#[derive(Config, Debug, PartialEq)]
pub enum FusionConfig {
    /// Channel switching and spatial attention.
    Cssa(CssaConfig),
    /// Guided attentive feature fusion.
    Gaff(GaffConfig),
}

/// A fusion block.
// At most four per model: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Fusion {
    Cssa(Cssa),
    Gaff(Gaff),
}

impl FusionConfig {
    /// The short name used in model names: `cssa` or `gaff`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Cssa(_) => "cssa",
            Self::Gaff(_) => "gaff",
        }
    }

    /// Builds the block for `channels` per modality on `device`.
    pub fn init(&self, channels: usize, device: &Device) -> Fusion {
        match self {
            Self::Cssa(c) => Fusion::Cssa(c.init(channels, device)),
            Self::Gaff(c) => Fusion::Gaff(c.init(channels, device)),
        }
    }
}

impl Fusion {
    /// Fuses two `[B, C, H, W]` maps into one.
    pub fn forward(&self, rgb: Tensor<4>, aux: Tensor<4>) -> Tensor<4> {
        match self {
            Self::Cssa(m) => m.forward(rgb, aux),
            Self::Gaff(m) => m.forward(rgb, aux),
        }
    }
}
