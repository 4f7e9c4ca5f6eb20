//! Layer calls that pick the fastest differentiable form for the device they run on.
//!
//! Under Burn's autodiff a convolution's input and weight gradients come from Burn's generic
//! formulas (`conv2d_x_backward`, `conv2d_weight_backward`), which burn-tch does not replace with
//! LibTorch's fused convolution backward. On `tch-cpu` that made the ConvLSTM's 1x1 convolutions
//! 0.16x-0.5x PyTorch's speed in training (`benchmarks/results/train-256x320.md`). On an
//! autodiff LibTorch device (prism's `tch` feature), [`conv2d`] therefore records the convolution
//! in LibTorch's own autograd and takes its gradients from there: the same kernels PyTorch's
//! training runs. Everywhere else (flex, CUDA, inference, export capture) it is the module's own
//! `forward`, so models, checkpoints and exported graphs do not change.

#[cfg(feature = "tch")]
mod libtorch;

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, LayerNorm};
use burn::tensor::Tensor;

/// Whether layers on `device` take their gradients from LibTorch's autograd (an autodiff
/// LibTorch device in a build with the `tch` feature).
pub fn uses_libtorch_autograd(device: &burn::tensor::Device) -> bool {
    #[cfg(feature = "tch")]
    return libtorch::is_autodiff_libtorch(device);
    #[cfg(not(feature = "tch"))]
    {
        let _ = device;
        false
    }
}

/// `conv.forward(x)`, with LibTorch's own convolution gradients when `x` is on an autodiff
/// LibTorch device.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "tch")]
    if uses_libtorch_autograd(&x.device()) {
        return libtorch::conv2d(conv, x);
    }
    conv.forward(x)
}

/// `norm.forward(x)`, with LibTorch's own LayerNorm and its gradients when `x` is on an autodiff
/// LibTorch device.
pub fn layer_norm<const D: usize>(norm: &LayerNorm, x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "tch")]
    if uses_libtorch_autograd(&x.device()) {
        if let Some(epsilon) = layer_norm_epsilon(norm) {
            return libtorch::layer_norm(norm, epsilon, x);
        }
    }
    norm.forward(x)
}

/// `burn::tensor::activation::softmax(x, dim)`, with LibTorch's fused softmax and its gradient
/// when `x` is on an autodiff LibTorch device.
pub fn softmax<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    #[cfg(feature = "tch")]
    if uses_libtorch_autograd(&x.device()) {
        return libtorch::softmax(x, dim);
    }
    burn::tensor::activation::softmax(x, dim)
}

/// `norm.forward(x)`, with LibTorch's fused batch norm and its gradients when `x` is on an
/// autodiff LibTorch device and the layer trains. Burn's own training batch norm on LibTorch
/// gathers each channel's values (a transposed copy) for every statistic, in both passes.
/// The running statistics are updated the way the module updates them.
pub fn batch_norm<const D: usize>(norm: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "tch")]
    if uses_libtorch_autograd(&x.device()) && norm.training.is_enabled() {
        return libtorch::batch_norm(norm, x);
    }
    norm.forward(x)
}

/// `burn::tensor::activation::silu(x)`, with LibTorch's fused SiLU and its gradient when `x` is
/// on an autodiff LibTorch device (Burn composes it as `x * sigmoid(x)`: seven passes over the
/// tensor for the gradient instead of one).
pub fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "tch")]
    if uses_libtorch_autograd(&x.device()) {
        return libtorch::silu(x);
    }
    burn::tensor::activation::silu(x)
}

/// `burn::tensor::activation::sigmoid(x)`, with LibTorch's fused sigmoid gradient when `x` is
/// on an autodiff LibTorch device (Burn composes it from four element-wise operations).
pub fn sigmoid<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "tch")]
    if uses_libtorch_autograd(&x.device()) {
        return libtorch::sigmoid(x);
    }
    burn::tensor::activation::sigmoid(x)
}

/// `burn::tensor::activation::tanh(x)`, with LibTorch's fused tanh gradient when `x` is on an
/// autodiff LibTorch device (Burn composes it from element-wise operations).
pub fn tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "tch")]
    if uses_libtorch_autograd(&x.device()) {
        return libtorch::tanh(x);
    }
    burn::tensor::activation::tanh(x)
}

/// The epsilon of `norm`. Burn keeps the field private; the module's display
/// (`LayerNorm {d_model: 6, epsilon: 0.00001, bias: true, params: 12}`, Rust's shortest exact
/// float formatting) is the one public place it appears. `None` if that format ever changes, in
/// which case [`layer_norm`] runs the module's own forward.
pub fn layer_norm_epsilon(norm: &LayerNorm) -> Option<f64> {
    let shown = norm.to_string();
    let start = shown.find("epsilon: ")? + "epsilon: ".len();
    let rest = &shown[start..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

/// An LSTM cell's update `(h', c')` from its gate pre-activations `z` (`[B, 4d, ...]`: forget,
/// input, output and candidate gates along axis 1) and cell state `c` (`[B, d, ...]`):
/// `c' = sigmoid(f) c + sigmoid(i) tanh(g)`, `h' = sigmoid(o) tanh(c')`. On an autodiff LibTorch
/// device the cell is one LibTorch operation: Burn's gradient of the four gate slices fills a
/// zero gradient of all of `z` for each slice and adds the four up.
pub fn lstm_cell<const D: usize>(z: Tensor<D>, c: Tensor<D>, d: usize) -> (Tensor<D>, Tensor<D>) {
    #[cfg(feature = "tch")]
    if uses_libtorch_autograd(&z.device()) {
        return libtorch::lstm_cell(z, c, d);
    }
    let f = sigmoid(z.clone().narrow(1, 0, d));
    let i = sigmoid(z.clone().narrow(1, d, d));
    let o = sigmoid(z.clone().narrow(1, 2 * d, d));
    let g = tanh(z.narrow(1, 3 * d, d));
    let c = f * c + i * g;
    let h = o * tanh(c.clone());
    (h, c)
}

#[cfg(feature = "tch")]
pub use libtorch::AdamWStep;

/// Whether `device` is LibTorch without autodiff, where optimizers see parameters (a build with
/// the `tch` feature).
#[cfg(feature = "tch")]
pub fn is_libtorch(device: &burn::tensor::Device) -> bool {
    libtorch::is_plain_libtorch(device)
}

/// Whether [`fused_adamw`] can step `param` with these gradient and moments: float32 or
/// float64 on a LibTorch device, all of one dtype, device and shape.
#[cfg(feature = "tch")]
pub fn can_fuse_adamw<const D: usize>(param: &Tensor<D>, others: [&Tensor<D>; 3]) -> bool {
    use burn::tensor::DType;
    let (device, dtype) = (param.device(), param.dtype());
    libtorch::is_plain_libtorch(&device)
        && matches!(dtype, DType::F32 | DType::F64)
        && others
            .iter()
            .all(|t| t.dtype() == dtype && t.device() == device && t.dims() == param.dims())
}

/// One AdamW step as LibTorch's fused kernel (what `torch.optim.AdamW(fused=True)` runs: one
/// pass where AdamW written as tensor operations makes about fifteen): the updated parameter
/// and moments. Only where [`can_fuse_adamw`] says so; anywhere else Burn's dispatch refuses
/// the call with a panic.
#[cfg(feature = "tch")]
pub fn fused_adamw<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    moments: (Tensor<D>, Tensor<D>),
    step: AdamWStep,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    libtorch::adamw(param, grad, moments.0, moments.1, step)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::LayerNormConfig;
    use burn::tensor::Device;

    #[test]
    fn layer_norm_epsilon_reads_what_the_config_set() {
        for epsilon in [1e-5, 1e-6, 1e-12, 0.1, 3.0e-7] {
            let norm = LayerNormConfig::new(6)
                .with_epsilon(epsilon)
                .init(&Device::flex());
            assert_eq!(layer_norm_epsilon(&norm), Some(epsilon), "{norm}");
        }
    }
}
