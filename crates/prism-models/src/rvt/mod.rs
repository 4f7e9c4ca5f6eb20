//! RVT (Recurrent Vision Transformer, Gehrig & Scaramuzza, CVPR 2023) in Burn, matching the
//! official implementation (uzh-rpg/RVT @ b80f568) layer for layer.
//!
//! `Rvt::forward(histogram, state) -> (raw, state)`: raw YOLOX outputs `[N, A, 5 + K]`;
//! [`decode_outputs`] turns them into boxes and scores like the reference's eval mode.

pub mod attention;
pub mod backbone;
pub mod config;
pub mod decode;
pub mod import;
pub mod lstm;
pub mod params;
pub mod partition;
pub mod ssm;
pub mod state;

/// The YOLOX neck and head, shared with the multimodal detector ([`crate::yolox`]).
pub use crate::yolox::{head as yolox_head, pafpn};

use burn::module::Module;
use burn::tensor::{Device, Tensor};

pub use crate::yolox::{YoloPafpn, YoloxHead};
pub use backbone::RvtBackbone;
pub use config::{RvtConfig, RvtDataset, RvtSize, RVT_PRESETS};
pub use decode::{decode_boxes, decode_outputs};
pub use import::{import_rvt_checkpoint, ImportError};
pub use params::ParamBreakdown;
pub use state::RvtState;

/// The full detector: recurrent backbone, PAFPN and YOLOX head.
#[derive(Module, Debug)]
pub struct Rvt {
    /// Recurrent MaxViT backbone (reference `mdl.backbone`).
    pub backbone: RvtBackbone,
    /// PAFPN neck (reference `mdl.fpn`).
    pub fpn: YoloPafpn,
    /// Decoupled head (reference `mdl.yolox_head`).
    pub yolox_head: YoloxHead,
}

impl RvtConfig {
    /// Builds a randomly initialised model.
    pub fn init(&self, device: &Device) -> Rvt {
        Rvt {
            backbone: RvtBackbone::new(self, device),
            fpn: self.pafpn_config().init(device),
            yolox_head: self.head_config().init(device),
        }
    }
}

impl Rvt {
    /// One 50 ms window: `histogram [N, 20, H, W]` (raw counts, H and W padded to multiples of
    /// 32 and consistent with the partition size) and the previous state (zeros for a new
    /// sequence) -> raw outputs `[N, A, 5 + K]` and the new state.
    ///
    /// A model with SSM memory assumes windows of its card's length here; give each window's
    /// real duration with [`forward_timed`](Self::forward_timed).
    pub fn forward(&self, histogram: Tensor<4>, state: RvtState) -> (Tensor<3>, RvtState) {
        self.forward_with(histogram, state, None)
    }

    /// [`forward`](Self::forward) for windows of `dt_s: [N, 1]` seconds each (the time since
    /// the previous window). The SSM memory discretizes by it; the LSTM ignores it.
    pub fn forward_timed(
        &self,
        histogram: Tensor<4>,
        state: RvtState,
        dt_s: Tensor<2>,
    ) -> (Tensor<3>, RvtState) {
        self.forward_with(histogram, state, Some(dt_s))
    }

    /// Whether the memory is the SSM (the exported model then takes the window duration).
    pub fn takes_duration(&self) -> bool {
        self.backbone.stages.iter().any(|s| s.ssm.is_some())
    }

    fn forward_with(
        &self,
        histogram: Tensor<4>,
        state: RvtState,
        dt_s: Option<Tensor<2>>,
    ) -> (Tensor<3>, RvtState) {
        let out = self.backbone.forward(histogram, state.h, state.c, dt_s);
        let (h, c) = (out.h, out.c);
        let [h1, h2, h3, h4] = out.features;
        // The stride-4 stage feeds the neck only in a four-scale model.
        let levels = if self.fpn.p2.is_some() {
            vec![h1, h2, h3, h4]
        } else {
            vec![h2, h3, h4]
        };
        let feats = self.fpn.forward(levels);
        (self.yolox_head.forward(feats), RvtState { h, c })
    }

    /// [`forward`](Self::forward) followed by [`decode_outputs`]: `[N, A, 5 + K]` boxes
    /// (cx, cy, w, h in pixels) and sigmoid scores.
    pub fn forward_decoded(&self, histogram: Tensor<4>, state: RvtState) -> (Tensor<3>, RvtState) {
        let [_, _, h, w] = histogram.dims();
        let (raw, state) = self.forward(histogram, state);
        let grid = prism_core::yolox::anchor_grid([h, w], &self.yolox_head.strides);
        (decode_outputs(raw, &grid), state)
    }

    /// Runs a sequence of windows `[T, N, 20, H, W]` given as a list, carrying the state;
    /// returns the raw outputs per window and the final state.
    pub fn forward_sequence(
        &self,
        windows: Vec<Tensor<4>>,
        state: RvtState,
    ) -> (Vec<Tensor<3>>, RvtState) {
        let mut state = state;
        let mut outs = Vec::with_capacity(windows.len());
        for x in windows {
            let (y, s) = self.forward(x, state);
            outs.push(y);
            state = s;
        }
        (outs, state)
    }
}
