//! Mixed-precision training, the way PyTorch's autocast does it: the weights and the
//! optimizer's moments stay in float32 (the master copy AdamW updates), and each step runs the
//! network on a bfloat16 or float16 copy of them, with its inputs and recurrent state cast too.
//! The cast is an operation autodiff records, so the gradients arrive at the float32 weights in
//! float32. The outputs are cast back to float32 before the loss and SimOTA's assignment.
//!
//! bfloat16 keeps float32's exponent range and needs nothing more. float16 tops out at 65504 and
//! flushes small gradients to zero, so its steps scale the loss ([`LossScaler`], PyTorch's
//! `GradScaler` rule): the gradients are unscaled in float32, and a step whose gradients
//! overflowed is skipped and the scale halved.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{DType, Tensor};
use serde::{Deserialize, Serialize};

/// The precision a training step computes in (`train.precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in float32.
    #[default]
    Fp32,
    /// The forward and backward passes in bfloat16, weights and optimizer state in float32.
    Bf16,
    /// The forward and backward passes in float16, weights and optimizer state in float32,
    /// the loss scaled ([`LossScaler`]).
    Fp16,
}

impl Precision {
    /// The element type the network runs in.
    pub fn compute_dtype(self) -> DType {
        match self {
            Precision::Fp32 => DType::F32,
            Precision::Bf16 => DType::BF16,
            Precision::Fp16 => DType::F16,
        }
    }

    /// `tensor` in the compute type (a recorded cast; nothing happens in float32).
    pub fn to_compute<const D: usize>(self, tensor: Tensor<D>) -> Tensor<D> {
        match self {
            Precision::Fp32 => tensor,
            Precision::Bf16 | Precision::Fp16 => tensor.cast(self.compute_dtype()),
        }
    }

    /// `tensor` back in float32 (for the loss and anything kept between steps).
    pub fn to_f32<const D: usize>(self, tensor: Tensor<D>) -> Tensor<D> {
        match self {
            Precision::Fp32 => tensor,
            Precision::Bf16 | Precision::Fp16 => tensor.cast(DType::F32),
        }
    }

    /// The copy of `module` a step runs: its float parameters cast to the compute type, each
    /// cast recorded by autodiff so that the gradients reach the float32 parameters (the same
    /// parameter ids). In float32 it is the module itself.
    pub fn compute_copy<M: Module>(self, module: &M) -> M {
        match self {
            Precision::Fp32 => module.clone(),
            Precision::Bf16 | Precision::Fp16 => {
                module.clone().map(&mut CastParams(self.compute_dtype()))
            }
        }
    }

    /// `module` with every float tensor that is not float32 cast back to float32, after a
    /// step on [`Self::compute_copy`]. BatchNorm's running statistics are buffers a module
    /// shares with its clones, and Burn's mapper casts them in place, so the copy's cast and its
    /// training-mode updates (bfloat16, queued until the buffer syncs) reach the float32
    /// module. `Module::train` syncs the queued updates into fresh buffers, which are then cast.
    pub fn restore_buffers<M: Module>(self, module: M) -> M {
        match self {
            Precision::Fp32 => module,
            Precision::Bf16 | Precision::Fp16 => module.train().map(&mut CastParams(DType::F32)),
        }
    }
}

/// Dynamic loss scaling for float16 steps, with the defaults of PyTorch's `GradScaler`: the loss
/// is multiplied by `scale` before the backward pass, the gradients are divided by it after; a
/// step whose gradients are not finite is skipped and the scale halved, and after
/// [`Self::GROWTH_INTERVAL`] good steps in a row the scale doubles. Saved with the run's
/// checkpoint, so a resumed run scales as the uninterrupted one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    /// The factor the loss is multiplied by.
    pub scale: f32,
    /// Good steps since the scale last changed.
    pub good_steps: u32,
}

impl LossScaler {
    /// PyTorch's `init_scale`.
    pub const INITIAL_SCALE: f32 = 65536.0;
    /// PyTorch's `growth_interval`.
    pub const GROWTH_INTERVAL: u32 = 2000;

    /// The scaler a run at `precision` starts with: float16 only.
    pub fn for_precision(precision: Precision) -> Option<Self> {
        (precision == Precision::Fp16).then_some(Self {
            scale: Self::INITIAL_SCALE,
            good_steps: 0,
        })
    }

    /// The scaler a run at `precision` goes on with: the one its checkpoint saved, else a
    /// fresh one (float16 only).
    pub fn resumed(precision: Precision, saved: Option<Self>) -> Option<Self> {
        Self::for_precision(precision).map(|fresh| saved.unwrap_or(fresh))
    }

    /// After a step: `finite` says whether its unscaled gradients were all finite (the step was
    /// taken). Returns whether the step was taken.
    pub fn update(&mut self, finite: bool) -> bool {
        if finite {
            self.good_steps += 1;
            if self.good_steps >= Self::GROWTH_INTERVAL {
                self.scale = (self.scale * 2.0).min(f32::MAX / 2.0);
                self.good_steps = 0;
            }
        } else {
            // Never below one float16 ulp of 1: a scale of zero would hide every gradient.
            self.scale = (self.scale * 0.5).max(f32::EPSILON);
            self.good_steps = 0;
        }
        finite
    }
}

/// Divides the gradients of a loss scaled by `scale` by it; returns whether they are all
/// finite (a float16 step whose gradients overflowed must not be taken).
pub fn unscale<M: Module>(
    module: &M,
    grads: &mut burn::optim::GradientsParams,
    scale: f32,
) -> bool {
    crate::clip::scale_all(module, grads, 1.0 / scale);
    crate::clip::global_norm(module, grads).is_finite()
}

/// After the backward pass of a loss multiplied by `scaler`'s scale: unscales the gradients,
/// updates the scaler and says whether the optimizer should step (always, without a scaler).
pub fn take_step<M: Module>(
    scaler: &mut Option<LossScaler>,
    module: &M,
    grads: &mut burn::optim::GradientsParams,
) -> bool {
    match scaler {
        Some(s) => s.update(unscale(module, grads, s.scale)),
        None => true,
    }
}

/// Casts every float tensor of a module that is not already of the type.
struct CastParams(DType);

impl ModuleMapper for CastParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dtype = self.0;
        param.map(|tensor| {
            if tensor.dtype() == dtype {
                tensor
            } else {
                tensor.cast(dtype)
            }
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use burn::nn::LinearConfig;
    use burn::optim::GradientsParams;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn names_parse() {
        #[derive(Deserialize)]
        struct T {
            p: Precision,
        }
        let p = |s: &str| toml::from_str::<T>(&format!("p = \"{s}\"")).map(|t| t.p);
        assert_eq!(p("fp32").unwrap(), Precision::Fp32);
        assert_eq!(p("bf16").unwrap(), Precision::Bf16);
        assert_eq!(p("fp16").unwrap(), Precision::Fp16);
        assert!(p("fp8").is_err());
    }

    #[test]
    fn a_bf16_step_puts_float32_gradients_on_the_float32_weights() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let linear = LinearConfig::new(8, 4).init(&device);
        let x = Tensor::<2>::from_data(
            TensorData::new((0..16).map(|i| i as f32 / 7.0).collect(), [2, 8]),
            &device,
        );
        let grads_in = |precision: Precision| {
            let copy = precision.compute_copy(&linear);
            let out = precision.to_f32(copy.forward(precision.to_compute(x.clone())));
            let grads = GradientsParams::from_grads(out.square().sum().backward(), &linear);
            let g = grads.get::<2>(linear.weight.id).expect("a weight gradient");
            assert_eq!(g.dtype(), DType::F32);
            g.into_data().try_to_vec::<f32>().unwrap()
        };
        let full = grads_in(Precision::Fp32);
        let half = grads_in(Precision::Bf16);
        let fp16 = grads_in(Precision::Fp16);
        let scale = full.iter().fold(0f32, |m, g| m.max(g.abs()));
        for (a, b) in full.iter().zip(&half) {
            // bfloat16 keeps 8 bits of mantissa: a few parts in a thousand.
            assert!((a - b).abs() <= 2e-2 * scale, "{a} vs {b}");
        }
        assert!(full != half, "the bf16 step ran in float32");
        for (a, b) in full.iter().zip(&fp16) {
            // float16 keeps 11 bits: a few parts in ten thousand.
            assert!((a - b).abs() <= 2e-3 * scale, "{a} vs {b}");
        }
        assert!(full != fp16, "the fp16 step ran in float32");
    }

    #[test]
    fn the_loss_scale_halves_on_overflow_and_doubles_after_a_run_of_good_steps() {
        assert_eq!(LossScaler::for_precision(Precision::Bf16), None);
        let mut s = LossScaler::for_precision(Precision::Fp16).unwrap();
        assert_eq!(s.scale, 65536.0);
        assert!(!s.update(false));
        assert_eq!((s.scale, s.good_steps), (32768.0, 0));
        for _ in 0..LossScaler::GROWTH_INTERVAL - 1 {
            assert!(s.update(true));
        }
        assert_eq!((s.scale, s.good_steps), (32768.0, 1999));
        s.update(true);
        assert_eq!((s.scale, s.good_steps), (65536.0, 0));
        s.update(true);
        s.update(false);
        assert_eq!((s.scale, s.good_steps), (32768.0, 0));
        for _ in 0..200 {
            s.update(false);
        }
        assert!(s.scale > 0.0);
    }

    #[test]
    fn a_scaled_fp16_backward_that_overflows_is_caught_and_an_unscaled_one_is_not() {
        let device = Device::flex().autodiff();
        device.seed(5);
        let linear = LinearConfig::new(8, 4).init(&device);
        let x = Tensor::<2>::from_data(
            TensorData::new((0..16).map(|i| i as f32).collect(), [2, 8]),
            &device,
        );
        let norm_at = |scale: f32| {
            let p = Precision::Fp16;
            let copy = p.compute_copy(&linear);
            let out = p.to_f32(copy.forward(p.to_compute(x.clone())));
            let mut grads =
                GradientsParams::from_grads((out.square().sum() * scale).backward(), &linear);
            let finite = unscale(&linear, &mut grads, scale);
            let norm = crate::clip::global_norm(&linear, &grads);
            assert_eq!(finite, norm.is_finite());
            norm
        };
        let plain = norm_at(1.0);
        assert!(plain.is_finite());
        // Within float16's range the scale cancels...
        assert!((norm_at(64.0) - plain).abs() <= 1e-2 * plain, "{plain}");
        // ...past it the gradients overflow, and the scaler must see it.
        assert!(!norm_at(65536.0 * 64.0).is_finite());
    }
}
