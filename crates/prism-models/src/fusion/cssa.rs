//! CSSA, channel switching and spatial attention (Cao et al., CVPRW 2023), as the three public
//! implementations agree (`../shared/reference/fusion.md`, section 4):
//!
//! ```text
//! w_rgb = sigmoid(Conv1d_k(GAP(rgb)))            w_aux likewise   (ECA, one per modality)
//! rgb'  = where(w_rgb < t, aux, rgb)             aux' = where(w_aux < t, rgb, aux)
//! X     = concat(rgb', aux')
//! fused = (X * sigmoid(mean_c X) * sigmoid(max_c X)) halves averaged
//! ```
//!
//! The spatial attention has no convolution (the 7x7 convolution some write-ups describe is in
//! no public code). The hard switch `w < t` passes no gradient, so in the reference code the ECA
//! convolutions never train; [`SwitchMode`] makes that choice explicit:
//! - [`SwitchMode::Hard`], the reference: the ECA weights stay at their initial values.
//! - [`SwitchMode::StraightThrough`] (the default): the forward pass is exactly the hard switch,
//!   and the backward pass uses the gradient of the soft gate `sigmoid((t - w) / temperature)`,
//!   so the ECA convolutions learn which channels to switch.
//! - [`SwitchMode::Soft`]: the soft gate in both passes (a blend, not a switch).

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::PaddingConfig1d;
use burn::tensor::{Device, Tensor};

use crate::kernels::sigmoid;

/// How the channel switch is made and trained.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum SwitchMode {
    /// The reference: a hard switch, no gradient into the ECA convolutions.
    Hard,
    /// Hard switch forward, soft-gate gradient backward, with the given temperature.
    StraightThrough(f64),
    /// The soft gate `sigmoid((t - w) / temperature)` forward and backward.
    Soft(f64),
}

/// Settings of a [`Cssa`] block.
#[derive(Config, Debug, PartialEq)]
pub struct CssaConfig {
    /// Switch a channel when its ECA weight (in (0, 1)) is below this. The public code uses 0.5
    /// (CrossAttentionDet swept 0.3 and 0.7); one re-implementation uses 2e-3.
    #[config(default = 0.5)]
    pub threshold: f64,
    /// ECA kernel size; `None` is ECA's adaptive size `|log2(C) / 2 + 1/2|`, made odd
    /// (the CMU re-implementation), `Some(3)` the CrossAttentionDet default.
    #[config(default = "Some(3)")]
    pub eca_kernel: Option<usize>,
    /// How the switch trains (see the module docs).
    #[config(default = "SwitchMode::StraightThrough(0.1)")]
    pub switch: SwitchMode,
}

/// ECA: global average pool, a 1-D convolution across channels (no bias), sigmoid.
#[derive(Module, Debug)]
pub struct Eca {
    /// `Conv1d(1, 1, k, padding k / 2, bias = false)`.
    pub conv: Conv1d,
}

impl Eca {
    fn new(kernel: usize, device: &Device) -> Self {
        let p = kernel / 2;
        Self {
            conv: Conv1dConfig::new(1, 1, kernel)
                .with_padding(PaddingConfig1d::Explicit(p, p))
                .with_bias(false)
                .init(device),
        }
    }

    /// `[B, C, H, W]` -> channel weights `[B, C, 1, 1]` in (0, 1).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, _, _] = x.dims();
        let pooled = x.mean_dim(3).mean_dim(2).reshape([b, 1, c]);
        sigmoid(self.conv.forward(pooled)).reshape([b, c, 1, 1])
    }
}

/// The CSSA fusion block: two ECAs, the switch and parameter-free spatial attention.
#[derive(Module, Debug)]
pub struct Cssa {
    /// Channel weights of the RGB stream.
    pub eca_rgb: Eca,
    /// Channel weights of the auxiliary (thermal + event) stream.
    pub eca_aux: Eca,
    /// Switching threshold.
    pub threshold: f64,
    /// 0 hard, 1 straight-through, 2 soft (a module field must be a plain value).
    pub mode: u8,
    /// Temperature of the soft gate (straight-through and soft).
    pub temperature: f64,
}

/// ECA's adaptive kernel size for `channels`, made odd: 3 / 5 / 5 / 5 for 256 … 2048.
pub fn eca_adaptive_kernel(channels: usize) -> usize {
    let k = ((channels as f64).log2() / 2.0 + 0.5).abs() as usize;
    let k = if k % 2 == 0 { k.saturating_sub(1) } else { k };
    k.max(1)
}

impl CssaConfig {
    /// Builds the block for `channels` per modality on `device`.
    pub fn init(&self, channels: usize, device: &Device) -> Cssa {
        let k = self
            .eca_kernel
            .unwrap_or_else(|| eca_adaptive_kernel(channels));
        let (mode, temperature) = match self.switch {
            SwitchMode::Hard => (0, 1.0),
            SwitchMode::StraightThrough(t) => (1, t),
            SwitchMode::Soft(t) => (2, t),
        };
        Cssa {
            eca_rgb: Eca::new(k, device),
            eca_aux: Eca::new(k, device),
            threshold: self.threshold,
            mode,
            temperature,
        }
    }
}

impl Cssa {
    /// Replaces the channels of `own` whose weight is below the threshold by those of `other`.
    pub fn switch(&self, own: Tensor<4>, other: Tensor<4>, weight: Tensor<4>) -> Tensor<4> {
        let t = self.threshold;
        let soft = || sigmoid((weight.clone().neg() + t) / self.temperature);
        // Without autodiff (inference, export) the straight-through switch is the hard one, and
        // the graph carries no gradient-only nodes.
        let mode = match self.mode {
            1 if !weight.is_tracked() => 0,
            m => m,
        };
        match mode {
            0 => own.mask_where(weight.clone().lower_elem(t), other),
            1 => {
                let hard = own
                    .clone()
                    .mask_where(weight.clone().lower_elem(t), other.clone());
                // Zero in value, the soft gate's gradient backward.
                let gate = soft();
                let grad_path = (gate.clone() - gate.detach()) * (other - own);
                hard + grad_path
            }
            _ => {
                let gate = soft();
                own.clone() + (other - own) * gate
            }
        }
    }

    /// Fuses two `[B, C, H, W]` maps into one.
    pub fn forward(&self, rgb: Tensor<4>, aux: Tensor<4>) -> Tensor<4> {
        let w_rgb = self.eca_rgb.forward(rgb.clone());
        let w_aux = self.eca_aux.forward(aux.clone());
        let rgb2 = self.switch(rgb.clone(), aux.clone(), w_rgb);
        let aux2 = self.switch(aux, rgb, w_aux);
        let [_, c, _, _] = rgb2.dims();
        let x = Tensor::cat(vec![rgb2, aux2], 1);
        let attention = sigmoid(x.clone().mean_dim(1)) * sigmoid(x.clone().max_dim(1));
        let weighted = x * attention;
        (weighted.clone().narrow(1, 0, c) + weighted.narrow(1, c, c)) / 2.0
    }
}
