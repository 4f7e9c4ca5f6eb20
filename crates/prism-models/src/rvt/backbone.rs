//! RVT recurrent MaxViT backbone: 4 stages of downsample -> window/grid attention -> LSTM.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

use super::attention::{AttentionConfig, AttentionPair};
use super::config::RvtConfig;
use super::lstm::{ConvLstm, ConvLstmConfig};
use super::ssm::{SsmCell, SsmCellConfig};
use crate::kernels::{conv2d, layer_norm};

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
        layer_norm(&self.norm, conv2d(&self.conv, x).permute([0, 2, 3, 1]))
    }
}

/// One backbone stage (reference `RNNDetectorStage`, one attention pair per stage).
#[derive(Module, Debug)]
pub struct RvtStage {
    /// Downsampling + norm.
    pub downsample_cf2cl: ConvDownsampling,
    /// Attention pairs (1 in all released configs).
    pub att_blocks: Vec<AttentionPair>,
    /// Recurrent cell: the LSTM (RVT's), unless the stage has an SSM.
    pub lstm: Option<ConvLstm>,
    /// State-space memory (`model.memory = "ssm"`), in place of the LSTM.
    pub ssm: Option<SsmCell>,
}

impl RvtStage {
    /// `x: [N, C_in, H, W]`, state `(h, c)` and the window duration (SSM only; `None`: the
    /// model's default) -> `(output, h', c')`. With the LSTM the output is h'; with the SSM, h
    /// and c are the real and imaginary parts of its state and the output is its read-out.
    pub fn forward(
        &self,
        x: Tensor<4>,
        h: Tensor<4>,
        c: Tensor<4>,
        dt_s: Option<Tensor<2>>,
    ) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
        let mut x = self.downsample_cf2cl.forward(x);
        for blk in &self.att_blocks {
            x = blk.forward(x);
        }
        let x = x.permute([0, 3, 1, 2]);
        match (&self.lstm, &self.ssm) {
            (_, Some(ssm)) => {
                let dt_s = dt_s.unwrap_or_else(|| ssm.default_dt(x.dims()[0], &x.device()));
                ssm.forward(x, h, c, dt_s)
            }
            (Some(lstm), None) => {
                let (h, c) = lstm.forward(x, h, c);
                (h.clone(), h, c)
            }
            (None, None) => no_memory(),
        }
    }

    /// Trainable parameters of the stage's recurrent cell.
    pub fn memory_params(&self) -> usize {
        super::params::count_params(&self.lstm) + super::params::count_params(&self.ssm)
    }
}

#[cold]
fn no_memory() -> ! {
    // `RvtBackbone::new` gives every stage one cell; only a hand-built stage gets here.
    unreachable!("an RVT stage needs an LSTM or an SSM cell")
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
                    .with_skip_first_norm(true)
                    .with_kind(config.attention)
                    // Keys and values of stage s from a map 8, 4, 2, 1 times smaller (MiT's).
                    .with_sr_ratio(8 >> s);
                let stage = RvtStage {
                    downsample_cf2cl: ConvDownsamplingConfig::new(dim_in, dim, factor)
                        .with_norm_eps(config.norm_eps)
                        .init(device),
                    att_blocks: vec![attention.init(device)],
                    lstm: (!config.ssm_memory).then(|| {
                        ConvLstmConfig::new(dim)
                            .with_dws_conv(config.lstm_dws_conv)
                            .with_dws_only_hidden(config.lstm_dws_conv_only_hidden)
                            .with_kernel(config.lstm_dws_conv_kernel_size)
                            .init(device)
                    }),
                    ssm: config.ssm_memory.then(|| {
                        SsmCellConfig::new(dim)
                            .with_default_dt_s(config.window_s)
                            .init(device)
                    }),
                };
                dim_in = dim;
                stage
            })
            .collect();
        Self { stages }
    }

    /// Runs the 4 stages with the window duration `dt_s: [N, 1]` (SSM memory only); returns
    /// the stage feature maps and the new `(h, c)` per stage.
    pub fn forward(
        &self,
        x: Tensor<4>,
        h: [Tensor<4>; 4],
        c: [Tensor<4>; 4],
        dt_s: Option<Tensor<2>>,
    ) -> StageOutputs {
        let mut x = x;
        let mut features = Vec::with_capacity(4);
        let mut hs = Vec::with_capacity(4);
        let mut cs = Vec::with_capacity(4);
        for (stage, (h, c)) in self.stages.iter().zip(h.into_iter().zip(c)) {
            let (y, h, c) = stage.forward(x, h, c, dt_s.clone());
            x = y.clone();
            features.push(y);
            hs.push(h);
            cs.push(c);
        }
        let arr = |v: Vec<Tensor<4>>| -> [Tensor<4>; 4] {
            match v.try_into() {
                Ok(a) => a,
                Err(_) => unreachable!("4 stages"),
            }
        };
        StageOutputs {
            features: arr(features),
            h: arr(hs),
            c: arr(cs),
        }
    }
}

/// What [`RvtBackbone::forward`] returns.
#[derive(Debug, Clone)]
pub struct StageOutputs {
    /// The four stage feature maps (strides 4, 8, 16, 32).
    pub features: [Tensor<4>; 4],
    /// The new state per stage.
    pub h: [Tensor<4>; 4],
    pub c: [Tensor<4>; 4],
}
