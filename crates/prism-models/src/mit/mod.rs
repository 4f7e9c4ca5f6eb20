//! MiT, the Mix Transformer encoder of SegFormer (NVlabs `mix_transformer.py`), b0 … b5.
//!
//! Four stages, each an overlapping patch embedding, blocks of efficient self-attention and
//! Mix-FFN, and a LayerNorm; the encoder returns the four maps at strides 4, 8, 16 and 32 in
//! NCHW. Module names follow NVlabs (`patch_embed1`, `block1.0.attn.kv`,
//! `block1.0.mlp.dwconv.dwconv`, `norm1`, …) so that checkpoints map key for key.

mod attention;
mod block;
pub mod checkpoint;
mod config;
pub mod import;
mod mix_ffn;
mod patch_embed;

pub use attention::{EfficientAttention, EfficientAttentionConfig};
pub use block::MitBlock;
pub use checkpoint::{load_backbone, save_backbone, BackboneCard};
pub use config::{MitConfig, MIT_PRESETS};
pub use import::import_mit_checkpoint;
pub use mix_ffn::{DwConv, MixFfn, MixFfnConfig};
pub use patch_embed::{OverlapPatchEmbed, OverlapPatchEmbedConfig};

use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Tensor};

use crate::kernels::layer_norm;

/// The MiT encoder.
#[derive(Module, Debug)]
pub struct Mit {
    pub patch_embed1: OverlapPatchEmbed,
    pub patch_embed2: OverlapPatchEmbed,
    pub patch_embed3: OverlapPatchEmbed,
    pub patch_embed4: OverlapPatchEmbed,
    pub block1: Vec<MitBlock>,
    pub block2: Vec<MitBlock>,
    pub block3: Vec<MitBlock>,
    pub block4: Vec<MitBlock>,
    pub norm1: LayerNorm,
    pub norm2: LayerNorm,
    pub norm3: LayerNorm,
    pub norm4: LayerNorm,
}

impl Mit {
    fn new(c: &MitConfig, device: &Device) -> Self {
        let d = c.embed_dims;
        let embed = |i: usize| {
            let (cin, k, s) = if i == 0 {
                (c.in_channels, 7, 4)
            } else {
                (d[i - 1], 3, 2)
            };
            OverlapPatchEmbedConfig::new(cin, d[i], k, s).init(device)
        };
        let blocks = |i: usize| {
            (0..c.depths[i])
                .map(|_| {
                    MitBlock::new(
                        d[i],
                        c.num_heads[i],
                        c.sr_ratios[i],
                        c.mlp_ratio,
                        c.norm_eps,
                        c.attention,
                        device,
                    )
                })
                .collect()
        };
        let norm = |i: usize| {
            LayerNormConfig::new(d[i])
                .with_epsilon(c.norm_eps)
                .init(device)
        };
        Self {
            patch_embed1: embed(0),
            patch_embed2: embed(1),
            patch_embed3: embed(2),
            patch_embed4: embed(3),
            block1: blocks(0),
            block2: blocks(1),
            block3: blocks(2),
            block4: blocks(3),
            norm1: norm(0),
            norm2: norm(1),
            norm3: norm(2),
            norm4: norm(3),
        }
    }

    /// The parts of stage `i` (0-based).
    fn stage(&self, i: usize) -> (&OverlapPatchEmbed, &[MitBlock], &LayerNorm) {
        match i {
            0 => (&self.patch_embed1, &self.block1, &self.norm1),
            1 => (&self.patch_embed2, &self.block2, &self.norm2),
            2 => (&self.patch_embed3, &self.block3, &self.norm3),
            _ => (&self.patch_embed4, &self.block4, &self.norm4),
        }
    }

    /// Runs stage `i` (0-based) on an NCHW map: `[B, C_in, H, W]` -> `[B, C_i, H', W']`.
    /// A fused two-stream model calls the stages one by one and fuses between them.
    pub fn forward_stage(&self, i: usize, x: Tensor<4>) -> Tensor<4> {
        let (embed, blocks, norm) = self.stage(i);
        let (mut tokens, [h, w]) = embed.forward(x);
        for block in blocks {
            tokens = block.forward(tokens, [h, w]);
        }
        let tokens = layer_norm(norm, tokens);
        let [b, _, c] = tokens.dims();
        tokens.swap_dims(1, 2).reshape([b, c, h, w])
    }

    /// `[B, C_in, H, W]` -> the four stage maps, strides 4, 8, 16, 32.
    pub fn forward(&self, x: Tensor<4>) -> [Tensor<4>; 4] {
        let s1 = self.forward_stage(0, x);
        let s2 = self.forward_stage(1, s1.clone());
        let s3 = self.forward_stage(2, s2.clone());
        let s4 = self.forward_stage(3, s3.clone());
        [s1, s2, s3, s4]
    }
}
