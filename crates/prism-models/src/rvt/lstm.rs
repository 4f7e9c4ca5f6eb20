//! Per-pixel convolutional LSTM cell (RVT's `DWSConvLSTM2d`).

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::PaddingConfig2d;
use burn::tensor::{Device, Tensor};

use crate::kernels::{conv2d, lstm_cell};

/// ConvLSTM cell: `z = conv1x1(cat(x, dws(h)))`, gates f, i, o = sigmoid(z[0..3C]),
/// g = tanh(z[3C..4C]); `c' = f*c + i*g`, `h' = o*tanh(c')`.
#[derive(Module, Debug)]
pub struct ConvLstm {
    /// Optional depthwise conv (released configs: absent). On h only, or on cat(x, h).
    pub conv3x3_dws: Option<Conv2d>,
    /// 1x1 conv 2C -> 4C with bias.
    pub conv1x1: Conv2d,
    /// Whether the depthwise conv applies to h only.
    pub dws_only_hidden: bool,
    /// Channels C.
    pub dim: usize,
}

/// Settings of a [`ConvLstm`] cell; [`ConvLstmConfig::init`] builds it.
#[derive(Config, Debug)]
pub struct ConvLstmConfig {
    /// Channels C of the input and of the state.
    pub dim: usize,
    /// A depthwise convolution before the 1x1 (the "DWS-Conv LSTM"; RVT's released configs
    /// leave it out: a plain per-pixel LSTM).
    #[config(default = false)]
    pub dws_conv: bool,
    /// Apply the depthwise convolution to h only, not to `cat(x, h)`.
    #[config(default = true)]
    pub dws_only_hidden: bool,
    /// Kernel of the depthwise convolution.
    #[config(default = 3)]
    pub kernel: usize,
}

impl ConvLstmConfig {
    /// Builds the cell on `device`.
    pub fn init(&self, device: &Device) -> ConvLstm {
        let (dim, kernel) = (self.dim, self.kernel);
        let dws_dim = if self.dws_only_hidden { dim } else { 2 * dim };
        let conv3x3_dws = self.dws_conv.then(|| {
            Conv2dConfig::new([dws_dim, dws_dim], [kernel, kernel])
                .with_padding(PaddingConfig2d::Explicit(
                    kernel / 2,
                    kernel / 2,
                    kernel / 2,
                    kernel / 2,
                ))
                .with_groups(dws_dim)
                .init(device)
        });
        ConvLstm {
            conv3x3_dws,
            conv1x1: Conv2dConfig::new([2 * dim, 4 * dim], [1, 1]).init(device),
            dws_only_hidden: self.dws_only_hidden,
            dim,
        }
    }
}

impl ConvLstm {
    /// One step: `x, h, c: [N, C, H, W]` -> `(h', c')`.
    pub fn forward(&self, x: Tensor<4>, h: Tensor<4>, c: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let h = match (&self.conv3x3_dws, self.dws_only_hidden) {
            (Some(conv), true) => conv2d(conv, h),
            _ => h,
        };
        let xh = Tensor::cat(vec![x, h], 1);
        let xh = match (&self.conv3x3_dws, self.dws_only_hidden) {
            (Some(conv), false) => conv2d(conv, xh),
            _ => xh,
        };
        let z = conv2d(&self.conv1x1, xh);
        lstm_cell(z, c, self.dim)
    }
}
