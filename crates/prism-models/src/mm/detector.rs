//! The RGB + thermal + event detector: the [`MmEncoder`], then the YOLOX PAFPN and head that RVT
//! uses on the stride 8, 16 and 32 maps (stages 2 to 4). One-stage, raw outputs, NMS outside
//! the graph.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::{MmConfigError, MmEncoder, MmEncoderConfig};
use crate::mit::Mit;
use crate::rvt::decode_outputs;
use crate::yolox::{BnSettings, YoloPafpn, YoloPafpnConfig, YoloxHead, YoloxHeadConfig};

/// Settings of an [`MmDetector`].
#[derive(Config, Debug, PartialEq)]
pub struct MmDetectorConfig {
    /// The encoder (backbone, streams, fusion).
    pub encoder: MmEncoderConfig,
    /// Number of classes K.
    pub num_classes: usize,
    /// Bottlenecks per CSP layer of the PAFPN (RVT and YOLOX-s: 1).
    #[config(default = 1)]
    pub csp_depth: usize,
    /// BatchNorm epsilon of the neck and head (PyTorch's default).
    #[config(default = 1e-5)]
    pub bn_eps: f64,
    /// BatchNorm momentum of the neck and head (YOLOX: 0.03).
    #[config(default = 0.03)]
    pub bn_momentum: f64,
    /// Prior probability the class and objectness biases start at (YOLOX: 0.01).
    #[config(default = 0.01)]
    pub prior: f64,
}

/// The detector.
#[derive(Module, Debug)]
pub struct MmDetector {
    pub encoder: MmEncoder,
    pub fpn: YoloPafpn,
    pub yolox_head: YoloxHead,
}

impl MmDetectorConfig {
    /// `mm-mit-b1-cssa-s3` … with `num_classes` classes and default settings.
    pub fn from_name(name: &str, num_classes: usize) -> Result<Self, MmConfigError> {
        Ok(Self::new(MmEncoderConfig::from_name(name)?, num_classes))
    }

    /// Channels of the encoder's stages 2, 3 and 4, which the neck reads.
    pub fn neck_channels(&self) -> Result<[usize; 3], MmConfigError> {
        let d = self.encoder.mit()?.embed_dims;
        Ok([d[1], d[2], d[3]])
    }

    /// Builds the detector on `device`.
    pub fn init(&self, device: &Device) -> Result<MmDetector, MmConfigError> {
        self.build(self.encoder.init(device)?, device)
    }

    /// Builds the detector with its encoder's streams started from `backbone`
    /// ([`MmEncoderConfig::init_pretrained`]); neck, head and fusion start fresh.
    pub fn init_pretrained(
        &self,
        backbone: Mit,
        device: &Device,
    ) -> Result<MmDetector, MmConfigError> {
        self.build(self.encoder.init_pretrained(backbone, device)?, device)
    }

    fn build(&self, encoder: MmEncoder, device: &Device) -> Result<MmDetector, MmConfigError> {
        let channels = self.neck_channels()?;
        let bn = BnSettings::new(self.bn_eps, self.bn_momentum);
        // The head's width follows RVT's rule, 256 x C4 / 1024 (64 for b0, 128 for b1-b5).
        let hidden = 256 * channels[2] / 1024;
        Ok(MmDetector {
            encoder,
            fpn: YoloPafpnConfig::new(channels, self.csp_depth, bn).init(device),
            yolox_head: YoloxHeadConfig::new(channels.to_vec(), hidden, self.num_classes, bn)
                .init(device)
                .with_prior_biases(self.prior),
        })
    }
}

impl MmDetector {
    /// `[B, 5, H, W]` (RGB, thermal, event in [0, 1]; H and W multiples of 32) -> raw outputs
    /// `[B, A, 5 + K]`: box regression, objectness logit, class logits.
    pub fn forward(&self, image: Tensor<4>) -> Tensor<3> {
        let [_, s2, s3, s4] = self.encoder.forward(image);
        self.yolox_head.forward(self.fpn.forward(vec![s2, s3, s4]))
    }

    /// [`forward`](Self::forward) then decoding: `[B, A, 5 + K]` boxes (cx, cy, w, h in pixels)
    /// and sigmoid scores.
    pub fn forward_decoded(&self, image: Tensor<4>) -> Tensor<3> {
        let [_, _, h, w] = image.dims();
        let raw = self.forward(image);
        let grid = prism_core::yolox::anchor_grid([h, w], &self.yolox_head.strides);
        decode_outputs(raw, &grid)
    }
}
