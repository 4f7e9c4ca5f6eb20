//! Efficient self-attention: multi-head attention whose keys and values come from the map
//! reduced by a stride-R convolution (R = 8, 4, 2, 1 by stage), so a stage-1 map of N tokens
//! attends to N / 64 keys.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use crate::kernels::{conv2d, layer_norm, softmax};

/// NVlabs `Attention` (`q`, `kv`, `proj`, and `sr` + `norm` where R > 1).
#[derive(Module, Debug)]
pub struct EfficientAttention {
    pub q: Linear,
    pub kv: Linear,
    pub proj: Linear,
    /// Stride-R convolution on the map, R > 1 only.
    pub sr: Option<Conv2d>,
    /// LayerNorm after `sr`.
    pub norm: Option<LayerNorm>,
    pub num_heads: usize,
}

/// Settings of an [`EfficientAttention`].
#[derive(Config, Debug)]
pub struct EfficientAttentionConfig {
    pub dim: usize,
    pub num_heads: usize,
    /// Spatial reduction R.
    pub sr_ratio: usize,
}

impl EfficientAttentionConfig {
    /// Builds the layer on `device`; panics when `dim` is not a multiple of `num_heads`.
    pub fn init(&self, device: &Device) -> EfficientAttention {
        let (dim, r) = (self.dim, self.sr_ratio);
        assert!(
            dim % self.num_heads == 0,
            "dim {dim} is not a multiple of {} heads",
            self.num_heads
        );
        EfficientAttention {
            q: LinearConfig::new(dim, dim).init(device),
            kv: LinearConfig::new(dim, 2 * dim).init(device),
            proj: LinearConfig::new(dim, dim).init(device),
            sr: (r > 1).then(|| {
                Conv2dConfig::new([dim, dim], [r, r])
                    .with_stride([r, r])
                    .init(device)
            }),
            norm: (r > 1).then(|| LayerNormConfig::new(dim).init(device)),
            num_heads: self.num_heads,
        }
    }
}

impl EfficientAttention {
    /// Tokens `[B, N, C]` of an `[H, W]` map -> `[B, N, C]`.
    pub fn forward(&self, x: Tensor<3>, [h, w]: [usize; 2]) -> Tensor<3> {
        let [b, n, c] = x.dims();
        let (heads, dh) = (self.num_heads, c / self.num_heads);
        let q = self
            .q
            .forward(x.clone())
            .reshape([b, n, heads, dh])
            .swap_dims(1, 2);
        let reduced = match (&self.sr, &self.norm) {
            (Some(sr), Some(norm)) => {
                let map = x.swap_dims(1, 2).reshape([b, c, h, w]);
                let map = conv2d(sr, map);
                let [_, _, hr, wr] = map.dims();
                layer_norm(norm, map.reshape([b, c, hr * wr]).swap_dims(1, 2))
            }
            _ => x,
        };
        let m = reduced.dims()[1];
        // kv channels are laid out (k | v, head, d), as NVlabs reshapes them.
        let kv = self
            .kv
            .forward(reduced)
            .reshape([b, m, 2, heads, dh])
            .permute([2, 0, 3, 1, 4]);
        let k = kv.clone().narrow(0, 0, 1).reshape([b, heads, m, dh]);
        let v = kv.narrow(0, 1, 1).reshape([b, heads, m, dh]);
        let scale = (dh as f64).powf(-0.5);
        let attn = softmax(q.matmul(k.swap_dims(2, 3)).mul_scalar(scale), 3);
        let out = attn.matmul(v).swap_dims(1, 2).reshape([b, n, c]);
        self.proj.forward(out)
    }
}
