//! YOLOX PAFPN (RVT's `yolox_extension/models/yolo_pafpn.py`) and its building blocks.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

use crate::kernels::{batch_norm, conv2d, silu};

/// BatchNorm settings of the YOLOX blocks.
#[derive(Config, Debug, Copy)]
pub struct BnSettings {
    /// Epsilon.
    pub eps: f64,
    /// Momentum.
    pub momentum: f64,
}

/// YOLOX `BaseConv`: Conv2d (no bias, "same" padding) -> BatchNorm -> SiLU.
#[derive(Module, Debug)]
pub struct BaseConv {
    /// Convolution.
    pub conv: Conv2d,
    /// Batch norm.
    pub bn: BatchNorm,
}

/// Settings of a [`BaseConv`]; [`BaseConvConfig::init`] builds it.
#[derive(Config, Debug)]
pub struct BaseConvConfig {
    /// Channels in.
    pub c_in: usize,
    /// Channels out.
    pub c_out: usize,
    /// Square kernel; the padding keeps the size at stride 1.
    pub kernel: usize,
    /// Batch norm settings.
    pub bn: BnSettings,
    /// Stride.
    #[config(default = 1)]
    pub stride: usize,
}

impl BaseConvConfig {
    /// Builds the block on `device`.
    pub fn init(&self, device: &Device) -> BaseConv {
        let (k, s) = (self.kernel, self.stride);
        let p = (k - 1) / 2;
        BaseConv {
            conv: Conv2dConfig::new([self.c_in, self.c_out], [k, k])
                .with_stride([s, s])
                .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                .with_bias(false)
                .init(device),
            bn: BatchNormConfig::new(self.c_out)
                .with_epsilon(self.bn.eps)
                .with_momentum(self.bn.momentum)
                .init(device),
        }
    }
}

impl BaseConv {
    /// `[N, C_in, H, W]` -> `[N, C_out, H/s, W/s]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        silu(batch_norm(&self.bn, conv2d(&self.conv, x)))
    }
}

/// YOLOX `Bottleneck` (expansion 1.0): 1x1 BaseConv -> 3x3 BaseConv (+ x if `shortcut`).
#[derive(Module, Debug)]
pub struct Bottleneck {
    /// 1x1 conv.
    pub conv1: BaseConv,
    /// 3x3 conv.
    pub conv2: BaseConv,
    /// Residual connection (false inside the PAFPN).
    pub shortcut: bool,
}

impl Bottleneck {
    /// Forward.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.conv2.forward(self.conv1.forward(x.clone()));
        if self.shortcut {
            y + x
        } else {
            y
        }
    }
}

/// YOLOX `CSPLayer`: `conv3(cat(m(conv1(x)), conv2(x)))`, hidden = out / 2.
#[derive(Module, Debug)]
pub struct CspLayer {
    /// Main branch entry (1x1).
    pub conv1: BaseConv,
    /// Bypass branch (1x1).
    pub conv2: BaseConv,
    /// Fusion (1x1, 2*hidden -> out).
    pub conv3: BaseConv,
    /// Bottlenecks of the main branch.
    pub m: Vec<Bottleneck>,
}

/// Settings of a [`CspLayer`]; [`CspLayerConfig::init`] builds it.
#[derive(Config, Debug)]
pub struct CspLayerConfig {
    /// Channels in.
    pub c_in: usize,
    /// Channels out (the hidden width is half of it).
    pub c_out: usize,
    /// Bottlenecks of the main branch.
    pub depth: usize,
    /// Batch norm settings.
    pub bn: BnSettings,
    /// Residual connections in the bottlenecks (the PAFPN has none).
    #[config(default = false)]
    pub shortcut: bool,
}

impl CspLayerConfig {
    /// Builds the layer on `device`.
    pub fn init(&self, device: &Device) -> CspLayer {
        let hidden = self.c_out / 2;
        let conv = |c_in: usize, c_out: usize, k: usize| {
            BaseConvConfig::new(c_in, c_out, k, self.bn).init(device)
        };
        CspLayer {
            conv1: conv(self.c_in, hidden, 1),
            conv2: conv(self.c_in, hidden, 1),
            conv3: conv(2 * hidden, self.c_out, 1),
            m: (0..self.depth)
                .map(|_| Bottleneck {
                    conv1: conv(hidden, hidden, 1),
                    conv2: conv(hidden, hidden, 3),
                    shortcut: self.shortcut,
                })
                .collect(),
        }
    }
}

impl CspLayer {
    /// Forward.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x1 = self.conv1.forward(x.clone());
        for b in &self.m {
            x1 = b.forward(x1);
        }
        let x2 = self.conv2.forward(x);
        self.conv3.forward(Tensor::cat(vec![x1, x2], 1))
    }
}

/// PAFPN over backbone stages 2, 3, 4 (channels c0, c1, c2; strides 8, 16, 32), and with
/// [`Stride4Level`] also over stage 1 (stride 4).
#[derive(Module, Debug)]
pub struct YoloPafpn {
    /// 1x1 c2 -> c1 on stride 32.
    pub lateral_conv0: BaseConv,
    /// CSP 2c1 -> c1 on stride 16 (top-down).
    pub c3_p4: CspLayer,
    /// 1x1 c1 -> c0.
    pub reduce_conv1: BaseConv,
    /// CSP 2c0 -> c0 on stride 8 (output P3).
    pub c3_p3: CspLayer,
    /// 3x3 stride-2 c0 -> c0 (bottom-up).
    pub bu_conv2: BaseConv,
    /// CSP 2c0 -> c1 on stride 16 (output P4).
    pub c3_n3: CspLayer,
    /// 3x3 stride-2 c1 -> c1 (bottom-up).
    pub bu_conv1: BaseConv,
    /// CSP 2c1 -> c2 on stride 32 (output P5).
    pub c3_n4: CspLayer,
    /// The fourth, stride-4 level (`model.fpn_scales = 4`); absent in RVT's released models.
    pub p2: Option<Stride4Level>,
}

/// The stride-4 level of a four-scale PAFPN, built the way YOLOX builds the others: the
/// top-down path goes one level further (P3 is reduced, upsampled and fused with stage 1 into
/// P2), and the bottom-up path starts there (P2 downsampled and fused back into P3).
#[derive(Module, Debug)]
pub struct Stride4Level {
    /// 1x1 c0 -> cs on stride 8.
    pub reduce_conv2: BaseConv,
    /// CSP 2cs -> cs on stride 4 (output P2).
    pub c3_p2: CspLayer,
    /// 3x3 stride-2 cs -> cs (bottom-up).
    pub bu_conv3: BaseConv,
    /// CSP 2cs -> c0 on stride 8 (the new P3).
    pub c3_n2: CspLayer,
}

/// Settings of a [`YoloPafpn`]: the backbone's channels at strides 8, 16 and 32.
#[derive(Config, Debug)]
pub struct YoloPafpnConfig {
    /// Channels of the three input levels (strides 8, 16, 32); the outputs have the same.
    pub in_channels: [usize; 3],
    /// Bottlenecks per CSP layer.
    pub csp_depth: usize,
    /// BatchNorm settings.
    pub bn: BnSettings,
    /// Channels of a fourth, stride-4 input level (stage 1); None: three levels.
    #[config(default = "None")]
    pub stride4_channels: Option<usize>,
}

impl YoloPafpnConfig {
    /// Builds the PAFPN on `device`.
    pub fn init(&self, device: &Device) -> YoloPafpn {
        let [c0, c1, c2] = self.in_channels;
        let (n, bn) = (self.csp_depth, self.bn);
        let conv = |c_in, c_out, k, stride| {
            BaseConvConfig::new(c_in, c_out, k, bn)
                .with_stride(stride)
                .init(device)
        };
        let csp = |c_in, c_out| CspLayerConfig::new(c_in, c_out, n, bn).init(device);
        YoloPafpn {
            lateral_conv0: conv(c2, c1, 1, 1),
            c3_p4: csp(2 * c1, c1),
            reduce_conv1: conv(c1, c0, 1, 1),
            c3_p3: csp(2 * c0, c0),
            bu_conv2: conv(c0, c0, 3, 2),
            c3_n3: csp(2 * c0, c1),
            bu_conv1: conv(c1, c1, 3, 2),
            c3_n4: csp(2 * c1, c2),
            p2: self.stride4_channels.map(|cs| Stride4Level {
                reduce_conv2: conv(c0, cs, 1, 1),
                c3_p2: csp(2 * cs, cs),
                bu_conv3: conv(cs, cs, 3, 2),
                c3_n2: csp(2 * cs, c0),
            }),
        }
    }

    /// Channels of the output levels, finest first (the head's inputs).
    pub fn out_channels(&self) -> Vec<usize> {
        self.stride4_channels
            .into_iter()
            .chain(self.in_channels)
            .collect()
    }
}

impl YoloPafpn {
    /// Backbone features, finest first (stages 2, 3, 4, or 1 to 4 with the stride-4 level) ->
    /// the output levels in the same order (`P3, P4, P5`, or `P2 … P5`).
    pub fn forward(&self, levels: Vec<Tensor<4>>) -> Vec<Tensor<4>> {
        let expected = if self.p2.is_some() { 4 } else { 3 };
        assert_eq!(
            levels.len(),
            expected,
            "the PAFPN was built for {expected} levels"
        );
        let mut levels = levels.into_iter();
        let x3 = if self.p2.is_some() {
            levels.next()
        } else {
            None
        };
        let (Some(x2), Some(x1), Some(x0)) = (levels.next(), levels.next(), levels.next()) else {
            unreachable!("the length was checked")
        };

        let fpn_out0 = self.lateral_conv0.forward(x0);
        let f_out0 = Tensor::cat(vec![upsample2x(fpn_out0.clone()), x1], 1);
        let f_out0 = self.c3_p4.forward(f_out0);

        let fpn_out1 = self.reduce_conv1.forward(f_out0);
        let f_out1 = Tensor::cat(vec![upsample2x(fpn_out1.clone()), x2], 1);
        let mut pan_out2 = self.c3_p3.forward(f_out1);

        let mut outs = Vec::with_capacity(4);
        if let (Some(p2), Some(x3)) = (&self.p2, x3) {
            let fpn_out2 = p2.reduce_conv2.forward(pan_out2);
            let f_out2 = Tensor::cat(vec![upsample2x(fpn_out2.clone()), x3], 1);
            let pan_out3 = p2.c3_p2.forward(f_out2);
            let p_out2 = Tensor::cat(vec![p2.bu_conv3.forward(pan_out3.clone()), fpn_out2], 1);
            pan_out2 = p2.c3_n2.forward(p_out2);
            outs.push(pan_out3);
        }

        let p_out1 = Tensor::cat(vec![self.bu_conv2.forward(pan_out2.clone()), fpn_out1], 1);
        let pan_out1 = self.c3_n3.forward(p_out1);

        let p_out0 = Tensor::cat(vec![self.bu_conv1.forward(pan_out1.clone()), fpn_out0], 1);
        let pan_out0 = self.c3_n4.forward(p_out0);

        outs.extend([pan_out2, pan_out1, pan_out0]);
        outs
    }
}

/// x2 nearest upsampling of `[N, C, H, W]` (the reference's `nearest-exact`, which equals
/// `nearest` for an integer factor), written as reshape + broadcast so it is exact everywhere.
pub fn upsample2x(x: Tensor<4>) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    x.reshape([n, c, h, 1, w, 1])
        .expand([n, c, h, 2, w, 2])
        .reshape([n, c, 2 * h, 2 * w])
}
