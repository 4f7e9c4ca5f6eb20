//! RVT configuration and the named presets `rvt-{tiny,small,base}-{gen1,1mpx}`.

use burn::config::Config;

use crate::yolox::{BnSettings, YoloPafpnConfig, YoloxHeadConfig};

/// Hyper-parameters of RVT (backbone, PAFPN and YOLOX head), mirroring the official
/// `config/model/maxvit_yolox/default.yaml` plus the size/dataset experiment overrides.
#[derive(Config, Debug)]
pub struct RvtConfig {
    /// Base channel width E: 64 (base), 48 (small), 32 (tiny). Stage widths are E * dim_multiplier.
    pub embed_dim: usize,
    /// Channels per attention head: 32 (base, tiny) or 24 (small).
    pub dim_head: usize,
    /// Number of object classes (Gen1: 2, 1Mpx: 3).
    pub num_classes: usize,
    /// Window / grid partition size (in tokens) shared by all stages, e.g. (8, 10) for Gen1.
    pub partition_size: [usize; 2],
    /// Padded input size (H, W) the presets were made for; informative only, any input whose
    /// stage sizes are divisible by `partition_size` runs.
    pub input_size: [usize; 2],
    /// YOLOX depth multiplier of the PAFPN: CSP bottlenecks = round(3 * depth).
    pub fpn_depth: f64,
    /// Input channels of the event histogram (2 polarities x 10 bins).
    #[config(default = 20)]
    pub in_channels: usize,
    /// Width multiplier per stage.
    #[config(default = "[1, 2, 4, 8]")]
    pub dim_multiplier: [usize; 4],
    /// MLP expansion ratio in the attention blocks.
    #[config(default = 4)]
    pub mlp_ratio: usize,
    /// Initial LayerScale value.
    #[config(default = 1e-5)]
    pub ls_init_value: f64,
    /// LayerNorm epsilon (downsampling and attention blocks).
    #[config(default = 1e-5)]
    pub norm_eps: f64,
    /// BatchNorm epsilon of the PAFPN / head `BaseConv`s (PyTorch default, as in RVT).
    #[config(default = 1e-5)]
    pub bn_eps: f64,
    /// BatchNorm momentum (PyTorch convention, only used in training).
    #[config(default = 0.1)]
    pub bn_momentum: f64,
    /// LSTM variant: depthwise 3x3 conv before the 1x1 gate conv (released configs: false).
    #[config(default = false)]
    pub lstm_dws_conv: bool,
    /// With `lstm_dws_conv`: apply the depthwise conv to h only (true) or to cat(x, h) (false).
    #[config(default = true)]
    pub lstm_dws_conv_only_hidden: bool,
    /// Kernel size of the optional depthwise LSTM conv.
    #[config(default = 3)]
    pub lstm_dws_conv_kernel_size: usize,
    /// FPN levels fed to the head: 3 (strides 8, 16, 32, as released) or 4 (adding stride 4
    /// from stage 1).
    #[config(default = 3)]
    pub fpn_scales: usize,
    /// Each stage's memory is a diagonal state-space cell ([`super::ssm::SsmCell`]) instead of
    /// the LSTM; the model then takes each window's duration as an input.
    #[config(default = false)]
    pub ssm_memory: bool,
    /// Window length in seconds an SSM model assumes when no duration is given (the card's
    /// `data.window_ms`).
    #[config(default = 0.05)]
    pub window_s: f64,
    /// The attention of both blocks of every stage (`model.attention`); `None`: RVT's window
    /// block then grid block.
    #[config(default = "None")]
    pub attention: Option<crate::attention::AttentionKind>,
}

/// Model size of a preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RvtSize {
    /// RVT-T (4.4M parameters).
    Tiny,
    /// RVT-S (9.9M parameters).
    Small,
    /// RVT-B (18.5M parameters).
    Base,
}

/// Dataset of a preset (input size, partition size, classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RvtDataset {
    /// Prophesee Gen1: 256x320 padded input, partition 8x10, 2 classes.
    Gen1,
    /// Prophesee 1Mpx (gen4): 384x640 padded input (x2 downsampled), partition 6x10, 3 classes.
    OneMpx,
}

/// Names of all presets.
pub const RVT_PRESETS: [&str; 6] = [
    "rvt-tiny-gen1",
    "rvt-small-gen1",
    "rvt-base-gen1",
    "rvt-tiny-1mpx",
    "rvt-small-1mpx",
    "rvt-base-1mpx",
];

impl RvtConfig {
    /// Configuration of an official size / dataset combination.
    pub fn from_size(size: RvtSize, dataset: RvtDataset) -> Self {
        let (embed_dim, dim_head, depth) = match size {
            RvtSize::Tiny => (32, 32, 0.33),
            RvtSize::Small => (48, 24, 0.33),
            RvtSize::Base => (64, 32, 0.67),
        };
        let (num_classes, input_size, partition_size) = match dataset {
            RvtDataset::Gen1 => (2, [256, 320], [8, 10]),
            RvtDataset::OneMpx => (3, [384, 640], [6, 10]),
        };
        RvtConfig::new(
            embed_dim,
            dim_head,
            num_classes,
            partition_size,
            input_size,
            depth,
        )
    }

    /// A preset by name, e.g. `rvt-tiny-gen1` or `rvt-base-1mpx`.
    pub fn preset(name: &str) -> Option<Self> {
        let (size, dataset) = match name {
            "rvt-tiny-gen1" => (RvtSize::Tiny, RvtDataset::Gen1),
            "rvt-small-gen1" => (RvtSize::Small, RvtDataset::Gen1),
            "rvt-base-gen1" => (RvtSize::Base, RvtDataset::Gen1),
            "rvt-tiny-1mpx" => (RvtSize::Tiny, RvtDataset::OneMpx),
            "rvt-small-1mpx" => (RvtSize::Small, RvtDataset::OneMpx),
            "rvt-base-1mpx" => (RvtSize::Base, RvtDataset::OneMpx),
            _ => return None,
        };
        Some(Self::from_size(size, dataset))
    }

    /// Channel width of each of the 4 stages.
    pub fn stage_dims(&self) -> [usize; 4] {
        self.dim_multiplier.map(|m| m * self.embed_dim)
    }

    /// Number of CSP bottlenecks in the PAFPN: Python `round(3 * depth)`.
    pub fn csp_depth(&self) -> usize {
        (3.0 * self.fpn_depth).round() as usize
    }

    /// Hidden width of the YOLOX head: `int(256 * C4 / 1024)`.
    pub fn head_hidden(&self) -> usize {
        256 * self.stage_dims()[3] / 1024
    }

    /// Strides of the FPN levels fed to the head, finest first.
    pub fn strides(&self) -> Vec<usize> {
        if self.fpn_scales == 4 {
            vec![4, 8, 16, 32]
        } else {
            vec![8, 16, 32]
        }
    }

    /// The PAFPN over stages 2, 3 and 4 (and stage 1 with four scales).
    pub fn pafpn_config(&self) -> YoloPafpnConfig {
        let d = self.stage_dims();
        YoloPafpnConfig::new([d[1], d[2], d[3]], self.csp_depth(), self.bn_settings())
            .with_stride4_channels((self.fpn_scales == 4).then_some(d[0]))
    }

    /// The YOLOX head on the PAFPN's levels.
    pub fn head_config(&self) -> YoloxHeadConfig {
        YoloxHeadConfig::new(
            self.pafpn_config().out_channels(),
            self.head_hidden(),
            self.num_classes,
            self.bn_settings(),
        )
        .with_strides(self.strides())
    }

    fn bn_settings(&self) -> BnSettings {
        BnSettings::new(self.bn_eps, self.bn_momentum)
    }

    /// Number of anchor points (A) for an input of size `[h, w]`.
    pub fn num_anchors(&self, input_hw: [usize; 2]) -> usize {
        prism_core::yolox::num_anchors(input_hw, &self.strides())
    }
}
