//! YOLOX decoupled head (RVT's `yolox/models/yolo_head.py`), returning raw (undecoded) outputs.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Tensor};

use burn::config::Config;

use super::pafpn::{BaseConv, BaseConvConfig, BnSettings};
use crate::kernels::conv2d;

/// Decoupled head: per level a 1x1 stem, 2 3x3 convs for classification and 2 for regression,
/// then 1x1 predictors for classes (K), box (4) and objectness (1).
#[derive(Module, Debug)]
pub struct YoloxHead {
    /// 1x1 stems, one per level.
    pub stems: Vec<BaseConv>,
    /// Classification towers (2 BaseConv 3x3 each).
    pub cls_convs: Vec<Vec<BaseConv>>,
    /// Regression towers (2 BaseConv 3x3 each).
    pub reg_convs: Vec<Vec<BaseConv>>,
    /// Class logits predictors.
    pub cls_preds: Vec<Conv2d>,
    /// Box regression predictors.
    pub reg_preds: Vec<Conv2d>,
    /// Objectness logit predictors.
    pub obj_preds: Vec<Conv2d>,
    /// Number of classes K.
    pub num_classes: usize,
    /// Stride of each level's feature map (the anchor grid of [`prism_core::yolox`]); from the
    /// config, not stored in checkpoints.
    #[module(skip)]
    pub strides: Vec<usize>,
}

/// Settings of a [`YoloxHead`].
#[derive(Config, Debug)]
pub struct YoloxHeadConfig {
    /// Channels of the FPN levels, finest first (strides 8, 16, 32; or 4 to 32).
    pub in_channels: Vec<usize>,
    /// Channels of the stems and towers (YOLOX: 256 x width).
    pub hidden: usize,
    /// Number of classes K.
    pub num_classes: usize,
    /// Stride of each level.
    #[config(default = "vec![8, 16, 32]")]
    pub strides: Vec<usize>,
    /// BatchNorm settings.
    pub bn: BnSettings,
}

impl YoloxHeadConfig {
    /// Builds the head on `device`.
    pub fn init(&self, device: &Device) -> YoloxHead {
        let (hidden, bn, k) = (self.hidden, self.bn, self.num_classes);
        let conv = |c_in, k| BaseConvConfig::new(c_in, hidden, k, bn).init(device);
        let pred = |c_out: usize| Conv2dConfig::new([hidden, c_out], [1, 1]).init(device);
        let tower = || vec![conv(hidden, 3), conv(hidden, 3)];
        let levels = self.in_channels.len();
        YoloxHead {
            stems: self.in_channels.iter().map(|&c| conv(c, 1)).collect(),
            cls_convs: (0..levels).map(|_| tower()).collect(),
            reg_convs: (0..levels).map(|_| tower()).collect(),
            cls_preds: (0..levels).map(|_| pred(k)).collect(),
            reg_preds: (0..levels).map(|_| pred(4)).collect(),
            obj_preds: (0..levels).map(|_| pred(1)).collect(),
            num_classes: k,
            strides: self.strides.clone(),
        }
    }
}

impl YoloxHead {
    /// Sets the class and objectness biases to `-ln((1 - p) / p)` so every anchor starts at
    /// probability `prior` (the reference calls this with 0.01 when it builds the head); without
    /// it the objectness loss of thousands of negative anchors swamps the first steps.
    pub fn with_prior_biases(mut self, prior: f64) -> Self {
        let value = -((1.0 - prior) / prior).ln();
        let fill = |conv: &mut Conv2d| {
            if let Some(bias) = conv.bias.take() {
                let filled = (bias.val().zeros_like() + value).detach();
                let mut param = Param::from_tensor(filled);
                param.id = bias.id;
                conv.bias = Some(param);
            }
        };
        self.cls_preds.iter_mut().for_each(fill);
        self.obj_preds.iter_mut().for_each(fill);
        self
    }

    /// FPN levels, finest first (strides 8, 16, 32, or 4 to 32) -> raw `[N, A, 5 + K]`: box
    /// regression (4), objectness logit, class logits; anchors level by level, row-major
    /// inside a level.
    pub fn forward(&self, feats: Vec<Tensor<4>>) -> Tensor<3> {
        let mut outs = Vec::with_capacity(feats.len());
        for (l, x) in feats.into_iter().enumerate() {
            let x = self.stems[l].forward(x);
            let cls = self.cls_convs[l]
                .iter()
                .fold(x.clone(), |y, c| c.forward(y));
            let reg = self.reg_convs[l].iter().fold(x, |y, c| c.forward(y));
            let cls_out = conv2d(&self.cls_preds[l], cls);
            let reg_out = conv2d(&self.reg_preds[l], reg.clone());
            let obj_out = conv2d(&self.obj_preds[l], reg);
            let out = Tensor::cat(vec![reg_out, obj_out, cls_out], 1);
            let [n, c, h, w] = out.dims();
            outs.push(out.reshape([n, c, h * w]));
        }
        Tensor::cat(outs, 2).swap_dims(1, 2)
    }
}
