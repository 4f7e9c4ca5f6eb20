//! One MiT block: pre-norm efficient self-attention, then pre-norm Mix-FFN, each residual.

use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Tensor};

use super::attention::{EfficientAttention, EfficientAttentionConfig};
use super::mix_ffn::{MixFfn, MixFfnConfig};
use crate::attention::{AttentionKind, TokenMixer, TokenMixerConfig};
use crate::kernels::layer_norm;

/// NVlabs `Block`: `norm1`, `attn`, `norm2`, `mlp` (stochastic depth is a training-time
/// identity at inference and is not part of the module).
#[derive(Module, Debug)]
pub struct MitBlock {
    pub norm1: LayerNorm,
    /// MiT's spatial-reduction attention (`attention = "sr"`, as its checkpoints hold it).
    pub attn: Option<EfficientAttention>,
    /// Another kind of attention (`model.attention`), in place of `attn`.
    pub mixer: Option<TokenMixer>,
    pub norm2: LayerNorm,
    pub mlp: MixFfn,
}

impl MitBlock {
    /// A block of `dim` channels with attention of `kind`.
    pub fn new(
        dim: usize,
        heads: usize,
        sr_ratio: usize,
        mlp_ratio: usize,
        eps: f64,
        kind: AttentionKind,
        device: &Device,
    ) -> Self {
        let own = kind == AttentionKind::Sr;
        Self {
            norm1: LayerNormConfig::new(dim).with_epsilon(eps).init(device),
            attn: own.then(|| EfficientAttentionConfig::new(dim, heads, sr_ratio).init(device)),
            mixer: (!own).then(|| {
                TokenMixerConfig::new(dim, heads, kind)
                    .with_sr_ratio(sr_ratio)
                    .init(device)
            }),
            norm2: LayerNormConfig::new(dim).with_epsilon(eps).init(device),
            mlp: MixFfnConfig::new(dim, dim * mlp_ratio).init(device),
        }
    }

    /// Tokens `[B, N, C]` of an `[H, W]` map -> `[B, N, C]`.
    pub fn forward(&self, x: Tensor<3>, hw: [usize; 2]) -> Tensor<3> {
        let y = layer_norm(&self.norm1, x.clone());
        let y = match (&self.attn, &self.mixer) {
            (Some(attn), _) => attn.forward(y, hw),
            (None, Some(mixer)) => mixer.forward(y, hw),
            (None, None) => unreachable!("MitBlock::new gives every block one attention"),
        };
        let x = x + y;
        x.clone() + self.mlp.forward(layer_norm(&self.norm2, x), hw)
    }
}
