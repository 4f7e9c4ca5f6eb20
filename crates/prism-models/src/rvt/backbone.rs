//! RVT recurrent MaxViT backbone: 4 stages of downsample -> window/grid attention -> LSTM.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

use super::attention::{AttentionConfig, AttentionPair};
use super::config::RvtConfig;
use super::lstm::{ConvLstm, ConvLstmConfig};

/// Overlapping strided conv (no bias), NCHW -> NHWC, then LayerNorm (`ConvDownsampling_Cf2Cl`).
#[derive(Module, Debug)]
pub struct ConvDownsampling {
    /// Conv with kernel 2*(f-1)+1, stride f, padding kernel/2.
    pub conv: Conv2d,
    /// LayerNorm over channels (channels-last).
    pub norm: LayerNorm,
}

/// Settings of a [`ConvDownsampling`] layer; [`ConvDownsamplingConfig::init`] builds it.
#[derive(Config, Debug)]
pub struct ConvDownsamplingConfig {
    /// Channels in.
    pub dim_in: usize,
    /// Channels out.
    pub dim_out: usize,
    /// Downsampling factor (RVT: 4 for stage 1, 2 otherwise).
    pub factor: usize,
    /// LayerNorm epsilon.
    #[config(default = 1e-5)]
    pub norm_eps: f64,
}

impl ConvDownsamplingConfig {
    /// Builds the layer on `device`.
    pub fn init(&self, device: &Device) -> ConvDownsampling {
        let factor = self.factor;
        let k = (factor - 1) * 2 + 1;
        let p = k / 2;
        ConvDownsampling {
            conv: Conv2dConfig::new([self.dim_in, self.dim_out], [k, k])
                .with_stride([factor, factor])
                .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                .with_bias(false)
                .init(device),
            norm: LayerNormConfig::new(self.dim_out)
                .with_epsilon(self.norm_eps)
                .init(device),
        }
    }
}

impl ConvDownsampling {
    /// `[N, C_in, H, W]` -> `[N, H/f, W/f, C_out]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.norm
            .forward(self.conv.forward(x).permute([0, 2, 3, 1]))
    }
}

/// One backbone stage (reference `RNNDetectorStage`, one attention pair per stage).
#[derive(Module, Debug)]
pub struct RvtStage {
    /// Downsampling + norm.
    pub downsample_cf2cl: ConvDownsampling,
    /// Attention pairs (1 in all released configs).
    pub att_blocks: Vec<AttentionPair>,
    /// Recurrent cell.
    pub lstm: ConvLstm,
}

impl RvtStage {
    /// `x: [N, C_in, H, W]`, state `(h, c)` -> `(h', c')`; the stage output is h'.
    pub fn forward(&self, x: Tensor<4>, h: Tensor<4>, c: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let mut x = self.downsample_cf2cl.forward(x);
        for blk in &self.att_blocks {
            x = blk.forward(x);
        }
        self.lstm.forward(x.permute([0, 3, 1, 2]), h, c)
    }
}

/// The 4-stage recurrent backbone.
#[derive(Module, Debug)]
pub struct RvtBackbone {
    /// Stages 1..4 (strides 4, 8, 16, 32).
    pub stages: Vec<RvtStage>,
}

impl RvtBackbone {
    /// Builds the backbone of `config`.
    pub fn new(config: &RvtConfig, device: &Device) -> Self {
        let dims = config.stage_dims();
        let mut dim_in = config.in_channels;
        let stages = (0..4)
            .map(|s| {
                let dim = dims[s];
                let factor = if s == 0 { 4 } else { 2 };
                let attention = AttentionConfig::new(dim, config.dim_head, config.partition_size)
                    .with_mlp_ratio(config.mlp_ratio)
                    .with_ls_init_value(config.ls_init_value)
                    .with_norm_eps(config.norm_eps)
                    // The downsampling output is normed: the first window block skips norm1.
                    .with_skip_first_norm(true);
                let stage = RvtStage {
                    downsample_cf2cl: ConvDownsamplingConfig::new(dim_in, dim, factor)
                        .with_norm_eps(config.norm_eps)
                        .init(device),
                    att_blocks: vec![attention.init(device)],
                    lstm: ConvLstmConfig::new(dim)
                        .with_dws_conv(config.lstm_dws_conv)
                        .with_dws_only_hidden(config.lstm_dws_conv_only_hidden)
                        .with_kernel(config.lstm_dws_conv_kernel_size)
                        .init(device),
                };
                dim_in = dim;
                stage
            })
            .collect();
        Self { stages }
    }

    /// Runs the 4 stages; returns the new `(h, c)` per stage (h is the stage feature map).
    pub fn forward(
        &self,
        x: Tensor<4>,
        h: [Tensor<4>; 4],
        c: [Tensor<4>; 4],
    ) -> ([Tensor<4>; 4], [Tensor<4>; 4]) {
        let mut x = x;
        let mut hs = Vec::with_capacity(4);
        let mut cs = Vec::with_capacity(4);
        for (stage, (h, c)) in self.stages.iter().zip(h.into_iter().zip(c)) {
            let (h, c) = stage.forward(x, h, c);
            x = h.clone();
            hs.push(h);
            cs.push(c);
        }
        let arr = |v: Vec<Tensor<4>>| -> [Tensor<4>; 4] {
            match v.try_into() {
                Ok(a) => a,
                Err(_) => unreachable!("4 stages"),
            }
        };
        (arr(hs), arr(cs))
    }
}
