//! GAFF, guided attentive feature fusion (Zhang et al., WACV 2021), as CrossAttentionDet's
//! `GAFFBlock` interprets it (the paper's equations are unverified; `../shared/reference/
//! fusion.md`, section 5):
//!
//! ```text
//! rgb_g = SE(rgb) + sigmoid(Conv1x1(concat(rgb, aux))) * aux      aux_g likewise
//! fused = BN(Conv1x1(concat(rgb_g, aux_g)))                      (or the bottleneck merge)
//! ```
//!
//! SE per modality (no biases, reduction 4 or 8); the inter-modality attention is one 2C -> C
//! convolution per direction, or one shared 2C -> 2C convolution split in two; no biases.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::kernels::{batch_norm, conv2d, sigmoid};

/// Settings of a [`Gaff`] block.
#[derive(Config, Debug, PartialEq)]
pub struct GaffConfig {
    /// Squeeze-and-excitation reduction (4 or 8 in the ablations).
    #[config(default = 4)]
    pub se_reduction: usize,
    /// One 2C -> 2C inter-modality convolution instead of two 2C -> C.
    #[config(default = false)]
    pub inter_shared: bool,
    /// Merge through `Conv(2C -> C) + BN + ReLU + Conv(C -> C) + BN` instead of one
    /// `Conv(2C -> C) + BN`.
    #[config(default = false)]
    pub merge_bottleneck: bool,
}

/// Squeeze-and-excitation: GAP -> FC(C -> C/r) -> ReLU -> FC(C/r -> C) -> sigmoid -> scale.
#[derive(Module, Debug)]
pub struct SqueezeExcite {
    pub fc1: Linear,
    pub fc2: Linear,
}

impl SqueezeExcite {
    fn new(channels: usize, reduction: usize, device: &Device) -> Self {
        let hidden = (channels / reduction.max(1)).max(1);
        Self {
            fc1: LinearConfig::new(channels, hidden)
                .with_bias(false)
                .init(device),
            fc2: LinearConfig::new(hidden, channels)
                .with_bias(false)
                .init(device),
        }
    }

    /// `[B, C, H, W]` scaled per channel.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, _, _] = x.dims();
        let pooled = x.clone().mean_dim(3).mean_dim(2).reshape([b, c]);
        let weights = sigmoid(self.fc2.forward(relu(self.fc1.forward(pooled))));
        x * weights.reshape([b, c, 1, 1])
    }
}

/// The GAFF fusion block.
#[derive(Module, Debug)]
pub struct Gaff {
    pub se_rgb: SqueezeExcite,
    pub se_aux: SqueezeExcite,
    /// Separate directions: `[to_rgb, to_aux]`, each 2C -> C; shared: one 2C -> 2C.
    pub inter: Vec<Conv2d>,
    /// Merge convolutions: one (direct) or two (bottleneck).
    pub merge: Vec<Conv2d>,
    /// The BatchNorm after each merge convolution.
    pub merge_bn: Vec<BatchNorm>,
}

fn conv1x1(c_in: usize, c_out: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([c_in, c_out], [1, 1])
        .with_bias(false)
        .init(device)
}

impl GaffConfig {
    /// Builds the block for `channels` per modality on `device`.
    pub fn init(&self, channels: usize, device: &Device) -> Gaff {
        let c = channels;
        let inter = if self.inter_shared {
            vec![conv1x1(2 * c, 2 * c, device)]
        } else {
            vec![conv1x1(2 * c, c, device), conv1x1(2 * c, c, device)]
        };
        let merge = if self.merge_bottleneck {
            vec![conv1x1(2 * c, c, device), conv1x1(c, c, device)]
        } else {
            vec![conv1x1(2 * c, c, device)]
        };
        let merge_bn = merge
            .iter()
            .map(|_| BatchNormConfig::new(c).init(device))
            .collect();
        Gaff {
            se_rgb: SqueezeExcite::new(c, self.se_reduction, device),
            se_aux: SqueezeExcite::new(c, self.se_reduction, device),
            inter,
            merge,
            merge_bn,
        }
    }
}

impl Gaff {
    /// Fuses two `[B, C, H, W]` maps into one.
    pub fn forward(&self, rgb: Tensor<4>, aux: Tensor<4>) -> Tensor<4> {
        let [_, c, _, _] = rgb.dims();
        let both = Tensor::cat(vec![rgb.clone(), aux.clone()], 1);
        // Both layouts give the two directions' weights as one [B, 2C, H, W] map.
        let weights = self
            .inter
            .iter()
            .map(|conv| sigmoid(conv2d(conv, both.clone())))
            .collect();
        let weights = Tensor::cat(weights, 1);
        let (to_rgb, to_aux) = (weights.clone().narrow(1, 0, c), weights.narrow(1, c, c));
        let rgb_guided = self.se_rgb.forward(rgb.clone()) + to_rgb * aux.clone();
        let aux_guided = self.se_aux.forward(aux) + to_aux * rgb;
        let mut x = Tensor::cat(vec![rgb_guided, aux_guided], 1);
        let last = self.merge.len() - 1;
        for (i, (conv, bn)) in self.merge.iter().zip(&self.merge_bn).enumerate() {
            x = batch_norm(bn, conv2d(conv, x));
            if i < last {
                x = relu(x);
            }
        }
        x
    }
}
