//! Gradient clipping by the global norm over all parameters, as PyTorch Lightning's
//! `gradient_clip_val=1.0` does (`clip_grad_norm_`). Burn's own clipping works per tensor,
//! which is a different (weaker) rule.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    sum: f64,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            self.sum += g.square().sum().into_scalar::<f32>() as f64;
        }
    }
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f32,
    ids: Vec<ParamId>,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register::<D>(param.id, g * self.factor);
            self.ids.push(param.id);
        }
    }
}

/// The global L2 norm of all gradients of `module`.
pub fn global_norm<M: Module>(module: &M, grads: &GradientsParams) -> f64 {
    let mut v = SquaredNorm { grads, sum: 0.0 };
    module.visit(&mut v);
    v.sum.sqrt()
}

/// Multiplies every gradient of `module` by `factor` (a loss scale's inverse).
pub fn scale_all<M: Module>(module: &M, grads: &mut GradientsParams, factor: f32) {
    let mut s = Scale {
        grads,
        factor,
        ids: Vec::new(),
    };
    module.visit(&mut s);
}

/// Scales all gradients by `max_norm / (norm + 1e-6)` when their global norm exceeds
/// `max_norm`; returns the norm before clipping (logged as `grad_norm`).
pub fn clip_global_norm<M: Module>(module: &M, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    let norm = global_norm(module, grads);
    let factor = max_norm / (norm + 1e-6);
    if factor < 1.0 {
        scale_all(module, grads, factor as f32);
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::{Device, TensorData};

    #[test]
    fn clips_to_the_global_norm_and_reports_it() {
        let device = Device::flex().autodiff();
        let layer: Linear = LinearConfig::new(3, 2).init(&device);
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0], [1, 3]), &device);
        let loss = layer.forward(x).sum() * 100.0;
        let mut grads = GradientsParams::from_grads(loss.backward(), &layer);
        let before = global_norm(&layer, &grads);
        // d/dW = 100 * x per output row (2 rows), d/db = 100 per output.
        let want = (2.0 * 100.0f64.powi(2) * (1.0 + 4.0 + 9.0) + 2.0 * 100.0f64.powi(2)).sqrt();
        assert!((before - want).abs() / want < 1e-5, "{before} vs {want}");
        let reported = clip_global_norm(&layer, &mut grads, 1.0);
        assert!((reported - before).abs() < 1e-9);
        let after = global_norm(&layer, &grads);
        assert!((after - 1.0).abs() < 1e-4, "{after}");
        // Below the threshold nothing changes.
        let again = clip_global_norm(&layer, &mut grads, 10.0);
        assert!((global_norm(&layer, &grads) - again).abs() < 1e-9);
    }
}
