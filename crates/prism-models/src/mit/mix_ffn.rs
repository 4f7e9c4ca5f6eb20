//! Mix-FFN: Linear C -> 4C, a 3x3 depthwise convolution on the map (MiT's only source of
//! position information; it has no positional embedding), GELU, Linear 4C -> C.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::gelu;
use burn::tensor::{Device, Tensor};

use crate::kernels::conv2d;

/// NVlabs `DWConv` (the extra level keeps the checkpoint key `mlp.dwconv.dwconv`).
#[derive(Module, Debug)]
pub struct DwConv {
    pub dwconv: Conv2d,
}

/// NVlabs `Mlp`: `fc1`, `dwconv`, GELU, `fc2`.
#[derive(Module, Debug)]
pub struct MixFfn {
    pub fc1: Linear,
    pub dwconv: DwConv,
    pub fc2: Linear,
}

/// Settings of a [`MixFfn`].
#[derive(Config, Debug)]
pub struct MixFfnConfig {
    pub dim: usize,
    pub hidden: usize,
}

impl MixFfnConfig {
    /// Builds the layer on `device`.
    pub fn init(&self, device: &Device) -> MixFfn {
        let hidden = self.hidden;
        MixFfn {
            fc1: LinearConfig::new(self.dim, hidden).init(device),
            dwconv: DwConv {
                dwconv: Conv2dConfig::new([hidden, hidden], [3, 3])
                    .with_groups(hidden)
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init(device),
            },
            fc2: LinearConfig::new(hidden, self.dim).init(device),
        }
    }
}

impl MixFfn {
    /// Tokens `[B, N, C]` of an `[H, W]` map -> `[B, N, C]`.
    pub fn forward(&self, x: Tensor<3>, [h, w]: [usize; 2]) -> Tensor<3> {
        let x = self.fc1.forward(x);
        let [b, n, hidden] = x.dims();
        let map = x.swap_dims(1, 2).reshape([b, hidden, h, w]);
        let x = conv2d(&self.dwconv.dwconv, map)
            .reshape([b, hidden, n])
            .swap_dims(1, 2);
        self.fc2.forward(gelu(x))
    }
}
