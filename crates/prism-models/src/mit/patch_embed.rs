//! Overlapping patch embedding: a strided convolution (kernel 7 / stride 4 for the first stage,
//! 3 / 2 after it) followed by a LayerNorm over channels.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

use crate::kernels::{conv2d, layer_norm};

/// NVlabs `OverlapPatchEmbed`: `proj` then `norm`.
#[derive(Module, Debug)]
pub struct OverlapPatchEmbed {
    pub proj: Conv2d,
    pub norm: LayerNorm,
}

/// Settings of an [`OverlapPatchEmbed`].
#[derive(Config, Debug)]
pub struct OverlapPatchEmbedConfig {
    pub in_channels: usize,
    pub embed_dim: usize,
    /// Kernel size; the padding is half of it and the stride is given.
    pub kernel: usize,
    pub stride: usize,
}

impl OverlapPatchEmbedConfig {
    /// Builds the layer on `device`.
    pub fn init(&self, device: &Device) -> OverlapPatchEmbed {
        let (k, p) = (self.kernel, self.kernel / 2);
        OverlapPatchEmbed {
            proj: Conv2dConfig::new([self.in_channels, self.embed_dim], [k, k])
                .with_stride([self.stride, self.stride])
                .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                .init(device),
            norm: LayerNormConfig::new(self.embed_dim).init(device),
        }
    }
}

impl OverlapPatchEmbed {
    /// `[B, C_in, H, W]` -> tokens `[B, H' * W', C]` and the map size `[H', W']`.
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<3>, [usize; 2]) {
        let x = conv2d(&self.proj, x);
        let [b, c, h, w] = x.dims();
        let tokens = x.reshape([b, c, h * w]).swap_dims(1, 2);
        (layer_norm(&self.norm, tokens), [h, w])
    }
}
