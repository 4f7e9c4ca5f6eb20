//! 1x1 convolutions as matrix products while training.
//!
//! Burn's autodiff differentiates every convolution with its generic formula: the weight
//! gradient of a 1x1 convolution becomes a convolution whose kernel spans the whole feature map,
//! which neither flex nor LibTorch runs fast (issue 16's profile: the ConvLSTM's 1x1 at 0.16x
//! PyTorch's speed on `tch-cpu`, almost all of it in the backward pass). The same product
//! written as a batched matmul, `[C_out, C_in] x [N, C_in, H*W]`, differentiates into two
//! matmuls. It is taken only on an autodiff device, where a backward pass may follow, so
//! inference and the exported ONNX graphs keep their `Conv`.

use burn::nn::conv::Conv2d;
use burn::nn::PaddingConfig2d;
use burn::tensor::Tensor;

/// `conv.forward(x)`, as a matmul when `conv` is pointwise (1x1 kernel, stride 1, no padding,
/// one group) and `x` lives on an autodiff device.
pub fn forward(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    if !(x.is_autodiff() && is_pointwise(conv)) {
        return conv.forward(x);
    }
    let [n, c_in, h, w] = x.dims();
    let weight = conv.weight.val();
    let c_out = weight.dims()[0];
    let z = weight
        .reshape([1, c_out, c_in])
        .matmul(x.reshape([n, c_in, h * w]));
    let z = match &conv.bias {
        Some(bias) => z + bias.val().reshape([1, c_out, 1]),
        None => z,
    };
    z.reshape([n, c_out, h, w])
}

/// Whether `conv` maps each pixel on its own: a 1x1 kernel, stride 1, one group, no padding.
fn is_pointwise(conv: &Conv2d) -> bool {
    // "Same" pads a 1x1 kernel at stride 1 by nothing.
    let unpadded = matches!(
        conv.padding,
        PaddingConfig2d::Valid | PaddingConfig2d::Same | PaddingConfig2d::Explicit(0, 0, 0, 0)
    );
    conv.kernel_size == [1, 1] && conv.stride == [1, 1] && conv.groups == 1 && unpadded
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Device, Distribution};

    fn max_abs_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    /// The matmul form gives the convolution's output and the same gradients for the
    /// weight, the bias and the input, at a batch above 1 (the weight is broadcast over it).
    #[test]
    fn the_matmul_form_matches_the_convolution_forward_and_backward() {
        let device = Device::flex().autodiff();
        let conv = Conv2dConfig::new([6, 10], [1, 1]).init(&device);
        let x = Tensor::<4>::random([3, 6, 5, 7], Distribution::Normal(0.0, 1.0), &device)
            .require_grad();
        let upstream = Tensor::<4>::random([3, 10, 5, 7], Distribution::Normal(0.0, 1.0), &device);

        let via_matmul = forward(&conv, x.clone());
        let via_conv = conv.forward(x.clone());
        assert!(max_abs_diff(via_matmul.clone().inner(), via_conv.clone().inner()) < 1e-5);

        let grads_matmul = (via_matmul * upstream.clone()).sum().backward();
        let grads_conv = (via_conv * upstream).sum().backward();
        let grad = |g: &burn::tensor::Gradients, t: &Tensor<4>| t.grad(g).unwrap();
        let weight = conv.weight.val();
        assert!(max_abs_diff(grad(&grads_matmul, &weight), grad(&grads_conv, &weight)) < 1e-4);
        assert!(max_abs_diff(grad(&grads_matmul, &x), grad(&grads_conv, &x)) < 1e-5);
        let bias = conv.bias.as_ref().unwrap().val();
        let bias_diff: f32 = (bias.grad(&grads_matmul).unwrap() - bias.grad(&grads_conv).unwrap())
            .abs()
            .max()
            .into_scalar();
        assert!(bias_diff < 1e-4, "bias gradients differ by {bias_diff}");
    }

    /// Anything but a pointwise convolution, and anything off an autodiff device, runs as
    /// the convolution itself.
    #[test]
    fn only_pointwise_convolutions_are_rewritten() {
        let device = Device::flex();
        let pointwise = Conv2dConfig::new([4, 4], [1, 1]).init(&device);
        assert!(is_pointwise(&pointwise));
        for conv in [
            Conv2dConfig::new([4, 4], [3, 3]).init(&device),
            Conv2dConfig::new([4, 4], [1, 1])
                .with_stride([2, 2])
                .init(&device),
            Conv2dConfig::new([4, 4], [1, 1])
                .with_groups(4)
                .init(&device),
            Conv2dConfig::new([4, 4], [1, 1])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(&device),
        ] {
            assert!(!is_pointwise(&conv));
        }
        // Off autodiff the convolution runs: same values either way.
        let x = Tensor::<4>::random([2, 4, 6, 6], Distribution::Normal(0.0, 1.0), &device);
        assert_eq!(
            max_abs_diff(forward(&pointwise, x.clone()), pointwise.forward(x)),
            0.0
        );
    }
}
