//! MiT (SegFormer's Mix Transformer) hyper-parameters and the b0 … b5 presets of NVlabs'
//! `mix_transformer.py` (`../shared/reference/fusion.md`, section 1).

use burn::config::Config;
use burn::tensor::Device;

use super::Mit;

/// The names users type, smallest first.
pub const MIT_PRESETS: &[&str] = &["mit-b0", "mit-b1", "mit-b2", "mit-b3", "mit-b4", "mit-b5"];

/// Settings of a [`Mit`] encoder; [`MitConfig::init`] builds it.
#[derive(Config, Debug, PartialEq)]
pub struct MitConfig {
    /// Input channels (3 for RGB; 2 for the thermal + event stream).
    #[config(default = 3)]
    pub in_channels: usize,
    /// Channels of the four stages.
    pub embed_dims: [usize; 4],
    /// Blocks per stage.
    pub depths: [usize; 4],
    /// Attention heads per stage.
    #[config(default = "[1, 2, 5, 8]")]
    pub num_heads: [usize; 4],
    /// Spatial reduction of keys and values per stage (a stride-R convolution).
    #[config(default = "[8, 4, 2, 1]")]
    pub sr_ratios: [usize; 4],
    /// Hidden channels of the Mix-FFN over the block's channels.
    #[config(default = 4)]
    pub mlp_ratio: usize,
    /// Epsilon of the blocks' and stages' LayerNorms (NVlabs: 1e-6). The patch embeddings' and
    /// the attention's reduction norms keep PyTorch's default 1e-5, as in the reference.
    #[config(default = 1e-6)]
    pub norm_eps: f64,
    /// The blocks' attention (`model.attention`): `sr` (MiT's own spatial-reduction attention,
    /// the one its checkpoints hold) or another kind of [`crate::attention`].
    #[config(default = "crate::attention::AttentionKind::Sr")]
    pub attention: crate::attention::AttentionKind,
}

impl MitConfig {
    /// `mit-b0` … `mit-b5` (also accepted without the `mit-` prefix), 3 input channels.
    pub fn preset(name: &str) -> Option<Self> {
        let wide = [64, 128, 320, 512];
        let (dims, depths) = match name.strip_prefix("mit-").unwrap_or(name) {
            "b0" => ([32, 64, 160, 256], [2, 2, 2, 2]),
            "b1" => (wide, [2, 2, 2, 2]),
            "b2" => (wide, [3, 4, 6, 3]),
            "b3" => (wide, [3, 4, 18, 3]),
            "b4" => (wide, [3, 8, 27, 3]),
            "b5" => (wide, [3, 6, 40, 3]),
            _ => return None,
        };
        Some(Self::new(dims, depths))
    }

    /// Stage strides against the input: 4, 8, 16, 32.
    pub fn strides(&self) -> [usize; 4] {
        [4, 8, 16, 32]
    }

    /// Builds the encoder on `device`. Panics when a stage's channels are not a multiple of its
    /// heads (no preset makes one).
    pub fn init(&self, device: &Device) -> Mit {
        Mit::new(self, device)
    }
}
