//! Mixed-precision training, the way PyTorch's autocast does it for bf16: the weights and the
//! optimizer's moments stay in float32 (the master copy AdamW updates), and each step runs the
//! network on a bfloat16 copy of them, with its inputs and recurrent state cast to bfloat16 too.
//! The cast is an operation autodiff records, so the gradients arrive at the float32 weights in
//! float32. The outputs are cast back to float32 before the loss and SimOTA's assignment.
//!
//! bfloat16 keeps float32's exponent range, so unlike float16 it needs no loss scaling. float16
//! training is not built.

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
}

impl Precision {
    /// The element type the network runs in.
    pub fn compute_dtype(self) -> DType {
        match self {
            Precision::Fp32 => DType::F32,
            Precision::Bf16 => DType::BF16,
        }
    }

    /// `tensor` in the compute type (a recorded cast; nothing happens in float32).
    pub fn to_compute<const D: usize>(self, tensor: Tensor<D>) -> Tensor<D> {
        match self {
            Precision::Fp32 => tensor,
            Precision::Bf16 => tensor.cast(DType::BF16),
        }
    }

    /// `tensor` back in float32 (for the loss and anything kept between steps).
    pub fn to_f32<const D: usize>(self, tensor: Tensor<D>) -> Tensor<D> {
        match self {
            Precision::Fp32 => tensor,
            Precision::Bf16 => tensor.cast(DType::F32),
        }
    }

    /// The copy of `module` a step runs: its float parameters cast to the compute type, each
    /// cast recorded by autodiff so that the gradients reach the float32 parameters (the same
    /// parameter ids). In float32 it is the module itself.
    pub fn compute_copy<M: Module>(self, module: &M) -> M {
        match self {
            Precision::Fp32 => module.clone(),
            Precision::Bf16 => module.clone().map(&mut CastParams(DType::BF16)),
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
            Precision::Bf16 => module.train().map(&mut CastParams(DType::F32)),
        }
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
        assert!(p("fp16").is_err());
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
        let scale = full.iter().fold(0f32, |m, g| m.max(g.abs()));
        for (a, b) in full.iter().zip(&half) {
            // bfloat16 keeps 8 bits of mantissa: a few parts in a thousand.
            assert!((a - b).abs() <= 2e-2 * scale, "{a} vs {b}");
        }
        assert!(full != half, "the bf16 step ran in float32");
    }
}
