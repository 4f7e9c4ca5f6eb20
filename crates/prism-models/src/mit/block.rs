//! One MiT block: pre-norm efficient self-attention, then pre-norm Mix-FFN, each residual.

use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Tensor};

use super::attention::{EfficientAttention, EfficientAttentionConfig};
use super::mix_ffn::{MixFfn, MixFfnConfig};

/// NVlabs `Block`: `norm1`, `attn`, `norm2`, `mlp` (stochastic depth is a training-time
/// identity at inference and is not part of the module).
#[derive(Module, Debug)]
pub struct MitBlock {
    pub norm1: LayerNorm,
    pub attn: EfficientAttention,
    pub norm2: LayerNorm,
    pub mlp: MixFfn,
}

impl MitBlock {
    /// A block of `dim` channels.
    pub fn new(
        dim: usize,
        heads: usize,
        sr_ratio: usize,
        mlp_ratio: usize,
        eps: f64,
        device: &Device,
    ) -> Self {
        Self {
            norm1: LayerNormConfig::new(dim).with_epsilon(eps).init(device),
            attn: EfficientAttentionConfig::new(dim, heads, sr_ratio).init(device),
            norm2: LayerNormConfig::new(dim).with_epsilon(eps).init(device),
            mlp: MixFfnConfig::new(dim, dim * mlp_ratio).init(device),
        }
    }

    /// Tokens `[B, N, C]` of an `[H, W]` map -> `[B, N, C]`.
    pub fn forward(&self, x: Tensor<3>, hw: [usize; 2]) -> Tensor<3> {
        let x = x.clone() + self.attn.forward(self.norm1.forward(x), hw);
        x.clone() + self.mlp.forward(self.norm2.forward(x), hw)
    }
}
