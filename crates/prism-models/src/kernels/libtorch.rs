//! Convolutions, norms, softmaxes and activations whose gradients LibTorch computes, inside
//! Burn's autodiff graph.
//!
//! Two ways, by what tch exposes:
//! - Softmax, SiLU, sigmoid and tanh: tch exposes their backward functions
//!   (`_softmax_backward_data`, `silu_backward`, ...), so the backward step calls them directly
//!   on the saved output or input ([`Exposed`]).
//! - Convolution, LayerNorm and batch norm: tch exposes neither `convolution_backward` nor the
//!   norms' backward functions, so the forward pass runs the operation on detached leaves that
//!   require a gradient, with LibTorch's grad mode on, and the Burn graph keeps that small
//!   LibTorch graph as the operation's state. The backward pass starts that graph from Burn's
//!   output gradient and hands the input, weight and bias gradients back to Burn. tch's
//!   `run_backward` seeds every output with ones and takes no output gradient, so prism links a
//!   ten-line C++ call of LibTorch's autograd engine that does (`csrc/libtorch_calls.cpp`,
//!   [`backward_with_grads`]); seeding through `sum(out * grad)` instead cost a dot product and
//!   a multiplication over every output.
//!
//! Either way, Burn's handles of what the backward pass reads stay in the state, so that burn-tch
//! never writes over them in place while LibTorch still needs them (LibTorch's version counter
//! would refuse the backward pass if it did).

// Burn 0.22 marks its LibTorch backend deprecated; prism keeps it (see prism-train's `device`).
#![allow(deprecated)]

use std::sync::{Arc, Mutex, PoisonError};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::libtorch::TchTensor;
use burn::backend::ops::ConvOptions;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    backend_extension, Autodiff, AutodiffBackend, Backend, Dispatch, DispatchDevice, LibTorch,
};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, LayerNorm, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

/// Whether `device` is LibTorch (CPU or CUDA) with Burn's autodiff.
pub fn is_autodiff_libtorch(device: &Device) -> bool {
    device.is_autodiff()
        && matches!(
            device.clone().inner().as_dispatch(),
            DispatchDevice::LibTorch(_)
        )
}

/// [`Conv2d::forward`] with LibTorch's convolution gradients (`x` on an autodiff LibTorch device).
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let padding = match conv.padding {
        PaddingConfig2d::Valid => [0, 0],
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            [top, left]
        }
        // LibTorch pads symmetrically; the module pads the input itself for the rest (prism's
        // models use symmetric explicit padding only).
        _ => return conv.forward(x),
    };
    let options = ConvOptions::new(conv.stride, padding, conv.dilation, conv.groups);
    let (x, weight) = (x.into_dispatch(), conv.weight.val().into_dispatch());
    let out = match &conv.bias {
        Some(bias) => <Dispatch as TorchAutograd>::conv2d_bias_torch_autograd(
            x,
            weight,
            bias.val().into_dispatch(),
            options,
        ),
        None => <Dispatch as TorchAutograd>::conv2d_torch_autograd(x, weight, options),
    };
    Tensor::from_dispatch(out)
}

/// [`LayerNorm::forward`] with LibTorch's fused LayerNorm and its gradients (`x` on an autodiff
/// LibTorch device); `epsilon` is the module's.
pub fn layer_norm<const D: usize>(norm: &LayerNorm, epsilon: f64, x: Tensor<D>) -> Tensor<D> {
    let Some(beta) = &norm.beta else {
        return norm.forward(x);
    };
    let out = <Dispatch as TorchAutograd>::layer_norm_torch_autograd(
        x.into_dispatch(),
        norm.gamma.val().into_dispatch(),
        beta.val().into_dispatch(),
        epsilon,
    );
    Tensor::from_dispatch(out)
}

/// `softmax(x, dim)` with LibTorch's fused softmax and its gradient (`x` on an autodiff LibTorch
/// device).
pub fn softmax<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    let out = <Dispatch as TorchAutograd>::softmax_torch_autograd(x.into_dispatch(), dim);
    Tensor::from_dispatch(out)
}

/// [`BatchNorm::forward`] in training mode with LibTorch's fused batch norm and its gradients
/// (`x` on an autodiff LibTorch device). The running statistics move the way Burn's module moves
/// them: `running * (1 - momentum) + batch * momentum`, with the biased batch variance.
pub fn batch_norm<const D: usize>(norm: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    let (out, stats) = <Dispatch as TorchAutograd>::batch_norm_torch_autograd(
        x.into_dispatch(),
        norm.gamma.val().into_dispatch(),
        norm.beta.val().into_dispatch(),
        norm.epsilon,
    );
    let out: Tensor<D> = Tensor::from_dispatch(out);
    let stats: Tensor<2> = Tensor::from_dispatch(stats);
    let device = out.device();
    let [mean, variance] = [0, 1].map(|row| stats.clone().narrow(0, row, 1).flatten::<1>(0, 1));
    let momentum = norm.momentum;
    for (running, batch) in [(&norm.running_mean, mean), (&norm.running_var, variance)] {
        let updated = running
            .value_sync()
            .to_device(&device)
            .mul_scalar(1.0 - momentum)
            .add(batch.mul_scalar(momentum));
        running.update(updated.detach());
    }
    out
}

/// `silu(x)` with LibTorch's fused SiLU and its gradient (`x` on an autodiff LibTorch device).
pub fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as TorchAutograd>::silu_torch_autograd(
        x.into_dispatch(),
    ))
}

/// `sigmoid(x)` with LibTorch's sigmoid gradient (`x` on an autodiff LibTorch device).
pub fn sigmoid<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as TorchAutograd>::sigmoid_torch_autograd(
        x.into_dispatch(),
    ))
}

/// `tanh(x)` with LibTorch's tanh gradient (`x` on an autodiff LibTorch device).
pub fn tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as TorchAutograd>::tanh_torch_autograd(
        x.into_dispatch(),
    ))
}

/// An LSTM cell's `(h', c')` from its gate pre-activations `z` (forget, input, output,
/// candidate along axis 1, `d` channels each) and cell state `c`, with LibTorch's gradients (on
/// an autodiff LibTorch device).
pub fn lstm_cell<const D: usize>(z: Tensor<D>, c: Tensor<D>, d: usize) -> (Tensor<D>, Tensor<D>) {
    let hc: Tensor<D> = Tensor::from_dispatch(
        <Dispatch as TorchAutograd>::lstm_cell_torch_autograd(z.into_dispatch(), c.into_dispatch()),
    );
    (hc.clone().narrow(1, 0, d), hc.narrow(1, d, d))
}

/// Operations whose backward pass LibTorch's autograd computes.
#[backend_extension(LibTorch, Autodiff)]
pub trait TorchAutograd: Backend {
    /// A 2-D convolution without bias (symmetric padding).
    fn conv2d_torch_autograd(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;

    /// A 2-D convolution with bias (symmetric padding).
    fn conv2d_bias_torch_autograd(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;

    /// LayerNorm over the last dimension, with scale and shift.
    fn layer_norm_torch_autograd(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self>;

    /// Softmax along `dim`.
    fn softmax_torch_autograd(x: FloatTensor<Self>, dim: usize) -> FloatTensor<Self>;

    /// Batch norm over axis 1 with batch statistics, with scale and shift. Returns the output and,
    /// outside any graph, the statistics as a `[2, C]` tensor: the mean, then the biased variance.
    fn batch_norm_torch_autograd(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// SiLU, `x * sigmoid(x)`.
    fn silu_torch_autograd(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// The logistic sigmoid.
    fn sigmoid_torch_autograd(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// The hyperbolic tangent.
    fn tanh_torch_autograd(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// An LSTM cell's update from its gate pre-activations `z` (`[B, 4d, ...]`: forget, input,
    /// output, candidate) and cell state `c` (`[B, d, ...]`): `[h', c']` concatenated on axis 1.
    fn lstm_cell_torch_autograd(z: FloatTensor<Self>, c: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// Without autodiff each operation is LibTorch's own call on the tensors.
impl TorchAutograd for LibTorch {
    fn conv2d_torch_autograd(
        x: TchTensor,
        weight: TchTensor,
        options: ConvOptions<2>,
    ) -> TchTensor {
        plain([x, weight], |t| torch_conv2d(t, &options))
    }

    fn conv2d_bias_torch_autograd(
        x: TchTensor,
        weight: TchTensor,
        bias: TchTensor,
        options: ConvOptions<2>,
    ) -> TchTensor {
        plain([x, weight, bias], |t| torch_conv2d(t, &options))
    }

    fn layer_norm_torch_autograd(
        x: TchTensor,
        gamma: TchTensor,
        beta: TchTensor,
        epsilon: f64,
    ) -> TchTensor {
        plain([x, gamma, beta], |t| torch_layer_norm(t, epsilon))
    }

    fn softmax_torch_autograd(x: TchTensor, dim: usize) -> TchTensor {
        TchTensor::new(Exposed::Softmax(dim).forward(&x.tensor))
    }

    fn batch_norm_torch_autograd(
        x: TchTensor,
        gamma: TchTensor,
        beta: TchTensor,
        epsilon: f64,
    ) -> (TchTensor, TchTensor) {
        let (out, stats) = plain_with([x, gamma, beta], |t| torch_batch_norm(t, epsilon));
        (out, TchTensor::new(stats))
    }

    fn silu_torch_autograd(x: TchTensor) -> TchTensor {
        TchTensor::new(Exposed::Silu.forward(&x.tensor))
    }

    fn sigmoid_torch_autograd(x: TchTensor) -> TchTensor {
        TchTensor::new(Exposed::Sigmoid.forward(&x.tensor))
    }

    fn tanh_torch_autograd(x: TchTensor) -> TchTensor {
        TchTensor::new(Exposed::Tanh.forward(&x.tensor))
    }

    fn lstm_cell_torch_autograd(z: TchTensor, c: TchTensor) -> TchTensor {
        plain([z, c], torch_lstm_cell)
    }
}

/// LibTorch's `conv2d` on `inputs` (x, weight and, when there is one, bias).
fn torch_conv2d(inputs: &[tch::Tensor], options: &ConvOptions<2>) -> tch::Tensor {
    tch::Tensor::conv2d(
        &inputs[0],
        &inputs[1],
        inputs.get(2),
        options.stride.map(|s| s as i64),
        options.padding.map(|(begin, _)| begin as i64),
        options.dilation.map(|d| d as i64),
        options.groups as i64,
    )
}

/// An LSTM cell in LibTorch: `inputs` are the gate pre-activations (forget, input, output,
/// candidate along axis 1) and the cell state; `[h', c']` along axis 1. LibTorch's gradient of
/// the gate split is one concatenation, where four separate slices in Burn's graph cost a
/// zero-filled full-size gradient each and three additions.
fn torch_lstm_cell(inputs: &[tch::Tensor]) -> tch::Tensor {
    let gates = inputs[0].chunk(4, 1);
    let (f, i, o) = (gates[0].sigmoid(), gates[1].sigmoid(), gates[2].sigmoid());
    let g = gates[3].tanh();
    let c = f * &inputs[1] + i * g;
    let h = o * c.tanh();
    tch::Tensor::cat(&[h, c], 1)
}

/// LibTorch's `layer_norm` over the last dimension of `inputs[0]` (scale, shift).
fn torch_layer_norm(inputs: &[tch::Tensor], epsilon: f64) -> tch::Tensor {
    let last = inputs[0].size().last().copied().unwrap_or(1);
    inputs[0].layer_norm([last], Some(&inputs[1]), Some(&inputs[2]), epsilon, true)
}

/// LibTorch's training-mode batch norm of `inputs` (x, scale, shift) over axis 1, and the batch's
/// mean and biased variance, stacked as `[2, C]` and detached from any graph.
fn torch_batch_norm(inputs: &[tch::Tensor], epsilon: f64) -> (tch::Tensor, tch::Tensor) {
    let (out, mean, inverse_std) = tch::Tensor::native_batch_norm(
        &inputs[0],
        Some(&inputs[1]),
        Some(&inputs[2]),
        None::<&tch::Tensor>,
        None::<&tch::Tensor>,
        true,
        0.0,
        epsilon,
    );
    // LibTorch keeps 1 / sqrt(variance + epsilon) for its backward pass.
    let variance = inverse_std.detach().pow_tensor_scalar(-2) - epsilon;
    (out, tch::Tensor::stack(&[mean.detach(), variance], 0))
}

impl<C: CheckpointStrategy> TorchAutograd for Autodiff<LibTorch, C> {
    fn conv2d_torch_autograd(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        differentiable::<C, 2>([x, weight], |t| torch_conv2d(t, &options))
    }

    fn conv2d_bias_torch_autograd(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        differentiable::<C, 3>([x, weight, bias], |t| torch_conv2d(t, &options))
    }

    fn layer_norm_torch_autograd(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        differentiable::<C, 3>([x, gamma, beta], |t| torch_layer_norm(t, epsilon))
    }

    fn softmax_torch_autograd(x: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        with_exposed_backward::<C>(x, Exposed::Softmax(dim))
    }

    fn batch_norm_torch_autograd(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (out, stats) =
            differentiable_with::<C, 3, _>([x, gamma, beta], |t| torch_batch_norm(t, epsilon));
        (
            out,
            <Self as AutodiffBackend>::from_inner(TchTensor::new(stats)),
        )
    }

    fn silu_torch_autograd(x: FloatTensor<Self>) -> FloatTensor<Self> {
        with_exposed_backward::<C>(x, Exposed::Silu)
    }

    fn sigmoid_torch_autograd(x: FloatTensor<Self>) -> FloatTensor<Self> {
        with_exposed_backward::<C>(x, Exposed::Sigmoid)
    }

    fn tanh_torch_autograd(x: FloatTensor<Self>) -> FloatTensor<Self> {
        with_exposed_backward::<C>(x, Exposed::Tanh)
    }

    fn lstm_cell_torch_autograd(z: FloatTensor<Self>, c: FloatTensor<Self>) -> FloatTensor<Self> {
        differentiable::<C, 2>([z, c], torch_lstm_cell)
    }
}

/// One-input operations whose LibTorch backward function tch exposes, so that their gradient
/// needs no recorded LibTorch graph: a plain call in the backward pass.
#[derive(Debug, Clone, Copy)]
enum Exposed {
    /// Softmax along the axis; the backward pass reads the output.
    Softmax(usize),
    /// SiLU; the backward pass reads the input.
    Silu,
    /// The logistic sigmoid; the backward pass reads the output.
    Sigmoid,
    /// The hyperbolic tangent; the backward pass reads the output.
    Tanh,
}

impl Exposed {
    /// LibTorch's forward function.
    fn forward(self, x: &tch::Tensor) -> tch::Tensor {
        match self {
            Exposed::Softmax(dim) => x.softmax(dim as i64, None::<tch::Kind>),
            Exposed::Silu => x.silu(),
            Exposed::Sigmoid => x.sigmoid(),
            Exposed::Tanh => x.tanh(),
        }
    }

    /// The input's gradient from the output's, `saved` being what [`with_exposed_backward`] kept.
    fn backward(self, grad: &tch::Tensor, saved: &tch::Tensor) -> tch::Tensor {
        match self {
            Exposed::Softmax(dim) => {
                tch::Tensor::internal_softmax_backward_data(grad, saved, dim as i64, saved.kind())
            }
            Exposed::Silu => saved.silu_backward(grad),
            Exposed::Sigmoid => tch::Tensor::sigmoid_backward(grad, saved),
            Exposed::Tanh => tch::Tensor::tanh_backward(grad, saved),
        }
    }
}

/// `op` on `x` as one operation of Burn's autodiff graph, with [`ExposedGrad`] as its backward
/// step. Burn's handle of the saved tensor stays in the state, so that burn-tch never writes over
/// it in place.
fn with_exposed_backward<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<LibTorch, C>>,
    op: Exposed,
) -> FloatTensor<Autodiff<LibTorch, C>> {
    match ExposedGrad
        .prepare::<C>([x.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let input = x.into_primitive();
            let out = TchTensor::new(op.forward(&input.tensor));
            let saved = match op {
                Exposed::Silu => input,
                Exposed::Softmax(_) | Exposed::Sigmoid | Exposed::Tanh => out.clone(),
            };
            prep.finish((op, saved), out)
        }
        OpsKind::UnTracked(prep) => {
            prep.finish(TchTensor::new(op.forward(&x.into_primitive().tensor)))
        }
    }
}

/// The backward step of an [`Exposed`] operation.
#[derive(Debug)]
struct ExposedGrad;

impl Backward<LibTorch, 1> for ExposedGrad {
    type State = (Exposed, TchTensor);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<LibTorch>(&ops.node);
        let (op, saved) = ops.state;
        if let [Some(parent)] = &ops.parents {
            let gradient = op.backward(&grad.tensor, &saved.tensor);
            grads.register::<LibTorch>(parent.id, TchTensor::new(gradient));
        }
    }
}

/// `torch` run on `inputs` outside any autograd graph.
fn plain<const N: usize>(
    inputs: [TchTensor; N],
    torch: impl FnOnce(&[tch::Tensor]) -> tch::Tensor,
) -> TchTensor {
    plain_with(inputs, |t| (torch(t), ())).0
}

/// [`plain`] for an operation that also returns something outside any graph (`E`).
fn plain_with<const N: usize, E>(
    inputs: [TchTensor; N],
    torch: impl FnOnce(&[tch::Tensor]) -> (tch::Tensor, E),
) -> (TchTensor, E) {
    let tensors: Vec<tch::Tensor> = inputs.iter().map(|t| t.tensor.shallow_clone()).collect();
    let (out, extra) = torch(&tensors);
    (TchTensor::new(out), extra)
}

/// `torch` run on `inputs` as one operation of Burn's autodiff graph: recorded in LibTorch's
/// autograd, with [`TorchGrad`] as its backward step, when Burn tracks any input; [`plain`]
/// otherwise.
fn differentiable<C: CheckpointStrategy, const N: usize>(
    inputs: [FloatTensor<Autodiff<LibTorch, C>>; N],
    torch: impl FnOnce(&[tch::Tensor]) -> tch::Tensor,
) -> FloatTensor<Autodiff<LibTorch, C>> {
    differentiable_with::<C, N, ()>(inputs, |t| (torch(t), ())).0
}

/// [`differentiable`] for an operation that also returns something outside any graph (`E`).
fn differentiable_with<C: CheckpointStrategy, const N: usize, E>(
    inputs: [FloatTensor<Autodiff<LibTorch, C>>; N],
    torch: impl FnOnce(&[tch::Tensor]) -> (tch::Tensor, E),
) -> (FloatTensor<Autodiff<LibTorch, C>>, E) {
    match TorchGrad::<N>
        .prepare::<C>(inputs.each_ref().map(|t| t.node()))
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let primitives = inputs.map(|t| t.into_primitive());
            let (state, out, extra) = TorchGraph::record(primitives, torch);
            (prep.finish(state, out), extra)
        }
        OpsKind::UnTracked(prep) => {
            let (out, extra) = plain_with(inputs.map(|t| t.into_primitive()), torch);
            (prep.finish(out), extra)
        }
    }
}

/// The LibTorch graph of one operation, kept from its forward to its backward pass.
struct Recorded {
    /// The output, attached to LibTorch's graph.
    output: tch::Tensor,
    /// The detached leaves the output was computed from, in parent order.
    leaves: Vec<tch::Tensor>,
    /// Burn's handles of the inputs, which LibTorch saved for the backward pass (see the module
    /// doc).
    _saved: Vec<TchTensor>,
}

/// [`Recorded`], shared so that Burn can clone the state; the backward pass takes it out.
#[derive(Clone)]
struct TorchGraph(Arc<Mutex<Option<Recorded>>>);

impl core::fmt::Debug for TorchGraph {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("TorchGraph")
    }
}

impl TorchGraph {
    /// Runs `forward` on detached leaves that require gradients, with LibTorch's grad mode on.
    /// Returns the state, the output as a Burn tensor, and what else `forward` returned.
    fn record<const N: usize, E>(
        inputs: [TchTensor; N],
        forward: impl FnOnce(&[tch::Tensor]) -> (tch::Tensor, E),
    ) -> (Self, TchTensor, E) {
        let leaves: Vec<tch::Tensor> = inputs
            .iter()
            .map(|input| input.tensor.detach().set_requires_grad(true))
            .collect();
        let (output, extra) = tch::with_grad(|| forward(&leaves));
        let burn_output = TchTensor::new(output.detach());
        let recorded = Recorded {
            output,
            leaves,
            _saved: inputs.into(),
        };
        (
            Self(Arc::new(Mutex::new(Some(recorded)))),
            burn_output,
            extra,
        )
    }
}

// The C++ calls of `csrc/libtorch_calls.cpp` (build.rs links them) are this module's only
// foreign code. Each returns null, or an error message that `prism_free_error` releases.
#[allow(unsafe_code)]
extern "C" {
    /// LibTorch's autograd engine run from `outputs` seeded with `grads`, writing the gradients
    /// of `inputs` to `results`.
    fn prism_backward_with_grads(
        outputs: *const *const torch_sys::C_tensor,
        grads: *const *const torch_sys::C_tensor,
        noutputs: std::os::raw::c_int,
        inputs: *const *const torch_sys::C_tensor,
        ninputs: std::os::raw::c_int,
        results: *mut *mut torch_sys::C_tensor,
    ) -> *mut std::os::raw::c_char;
    /// `torch._fused_adamw_` on `n` parameters, in place.
    fn prism_fused_adamw(
        params: *const *const torch_sys::C_tensor,
        grads: *const *const torch_sys::C_tensor,
        exp_avgs: *const *const torch_sys::C_tensor,
        exp_avg_sqs: *const *const torch_sys::C_tensor,
        n: std::os::raw::c_int,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        step: f64,
    ) -> *mut std::os::raw::c_char;
    fn prism_free_error(message: *mut std::os::raw::c_char);
}

/// What a C++ call of `csrc/libtorch_calls.cpp` returned: `Ok` for null, else its message
/// (released here).
#[allow(unsafe_code)]
fn outcome(error: *mut std::os::raw::c_char) -> Result<(), String> {
    if error.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null return is a NUL-terminated string the library allocated and that only
    // this call reads, then gives back to the library's own `free`.
    unsafe {
        let message = std::ffi::CStr::from_ptr(error)
            .to_string_lossy()
            .into_owned();
        prism_free_error(error);
        Err(message)
    }
}

/// The gradients of `inputs` from the LibTorch graph behind `output`, started from `grad` (its
/// gradient): `torch.autograd.grad(output, inputs, grad)`. The graph is freed.
#[allow(unsafe_code)]
fn backward_with_grads(
    output: &tch::Tensor,
    grad: &tch::Tensor,
    inputs: &[&tch::Tensor],
) -> Result<Vec<tch::Tensor>, String> {
    let mut results = vec![std::ptr::null_mut(); inputs.len()];
    let input_ptrs: Vec<*const torch_sys::C_tensor> = inputs.iter().map(|t| t.as_ptr()).collect();
    let count = |n: usize| std::os::raw::c_int::try_from(n).map_err(|e| e.to_string());
    let ninputs = count(inputs.len())?;
    // SAFETY: every pointer is a live tch tensor (an `at::Tensor*`) borrowed for the call;
    // `results` has one slot per input, each filled with a new tensor on success, whose
    // ownership `from_ptr` takes. On failure nothing is written.
    unsafe {
        outcome(prism_backward_with_grads(
            &output.as_ptr(),
            &grad.as_ptr(),
            1,
            input_ptrs.as_ptr(),
            ninputs,
            results.as_mut_ptr(),
        ))?;
        Ok(results
            .into_iter()
            .map(|t| tch::Tensor::from_ptr(t))
            .collect())
    }
}

/// The backward step of an operation recorded in a [`TorchGraph`] with `N` inputs.
#[derive(Debug)]
struct TorchGrad<const N: usize>;

impl<const N: usize> Backward<LibTorch, N> for TorchGrad<N> {
    type State = TorchGraph;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<LibTorch>(&ops.node);
        // Burn runs an operation's backward step once; the graph is taken out so that its memory
        // goes as soon as the gradients are out (a second call would find nothing to give).
        let taken = ops
            .state
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(recorded) = taken else {
            return;
        };
        // The parents that want a gradient, with the LibTorch leaf standing for each.
        let wanted: Vec<(NodeId, &tch::Tensor)> = ops
            .parents
            .iter()
            .zip(&recorded.leaves)
            .filter_map(|(parent, leaf)| parent.as_ref().map(|parent| (parent.id, leaf)))
            .collect();
        if wanted.is_empty() {
            return;
        }
        let leaves: Vec<&tch::Tensor> = wanted.iter().map(|(_, leaf)| *leaf).collect();
        let grad = match grad.tensor.kind() == recorded.output.kind() {
            true => grad.tensor,
            false => grad.tensor.to_kind(recorded.output.kind()),
        };
        let gradients = backward_with_grads(&recorded.output, &grad, &leaves);
        #[allow(
            clippy::panic,
            reason = "a backward step cannot return an error; LibTorch refusing the graph this \
                      module recorded is a bug here, and tch's own run_backward panics the same way"
        )]
        let gradients =
            gradients.unwrap_or_else(|e| panic!("LibTorch's backward pass failed: {e}"));
        for ((id, _), gradient) in wanted.into_iter().zip(gradients) {
            grads.register::<LibTorch>(id, TchTensor::new(gradient));
        }
    }
}

/// One AdamW step's hyperparameters, for [`TorchOptim::adamw_torch`].
#[derive(Debug, Clone, Copy)]
pub struct AdamWStep {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta_1: f64,
    /// Decay of the second moment.
    pub beta_2: f64,
    /// Added to the root of the corrected second moment.
    pub epsilon: f64,
    /// Decoupled weight decay (the parameter shrinks by `lr * weight_decay`).
    pub weight_decay: f64,
    /// The step's number, 1 at the first (for the bias corrections).
    pub step: usize,
}

/// Whether `device` is LibTorch without autodiff (where optimizers see parameters).
pub fn is_plain_libtorch(device: &Device) -> bool {
    !device.is_autodiff() && matches!(device.as_dispatch(), DispatchDevice::LibTorch(_))
}

/// Optimizer steps that run as LibTorch's fused kernels.
#[backend_extension(LibTorch)]
pub trait TorchOptim: Backend {
    /// One AdamW step: the updated parameter, first moment and second moment.
    fn adamw_torch(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: AdamWStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl TorchOptim for LibTorch {
    fn adamw_torch(
        param: TchTensor,
        grad: TchTensor,
        moment_1: TchTensor,
        moment_2: TchTensor,
        step: AdamWStep,
    ) -> (TchTensor, TchTensor, TchTensor) {
        // The kernel writes in place: a tensor whose memory another handle shares is copied
        // first (Burn's handles may alias), and every operand is made contiguous.
        let owned = |t: TchTensor| {
            if t.can_mut() && t.tensor.is_contiguous() {
                t
            } else {
                TchTensor::new(t.tensor.contiguous().copy())
            }
        };
        let (param, moment_1, moment_2) = (owned(param), owned(moment_1), owned(moment_2));
        let grad = grad.tensor.contiguous();
        let result = fused_adamw(
            &param.tensor,
            &grad,
            &moment_1.tensor,
            &moment_2.tensor,
            step,
        );
        #[allow(
            clippy::panic,
            reason = "an optimizer step cannot return an error; the caller checked device and \
                      dtype, so LibTorch refusing the call is a bug here"
        )]
        result.unwrap_or_else(|e| panic!("LibTorch's fused AdamW failed: {e}"));
        (param, moment_1, moment_2)
    }
}

/// LibTorch's fused AdamW step on one parameter, in place.
#[allow(unsafe_code)]
fn fused_adamw(
    param: &tch::Tensor,
    grad: &tch::Tensor,
    moment_1: &tch::Tensor,
    moment_2: &tch::Tensor,
    s: AdamWStep,
) -> Result<(), String> {
    // SAFETY: four live tch tensors (`at::Tensor*`), borrowed for the call; the C++ side writes
    // into the parameter's and the moments' memory, which the caller owns alone (see
    // `adamw_torch`).
    let error = unsafe {
        prism_fused_adamw(
            &param.as_ptr(),
            &grad.as_ptr(),
            &moment_1.as_ptr(),
            &moment_2.as_ptr(),
            1,
            s.lr,
            s.beta_1,
            s.beta_2,
            s.weight_decay,
            s.epsilon,
            s.step as f64,
        )
    };
    outcome(error)
}

/// [`TorchOptim::adamw_torch`] on Burn tensors of a plain LibTorch device.
pub fn adamw<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    moment_1: Tensor<D>,
    moment_2: Tensor<D>,
    step: AdamWStep,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let (p, m, v) = <Dispatch as TorchOptim>::adamw_torch(
        param.into_dispatch(),
        grad.into_dispatch(),
        moment_1.into_dispatch(),
        moment_2.into_dispatch(),
        step,
    );
    (
        Tensor::from_dispatch(p),
        Tensor::from_dispatch(m),
        Tensor::from_dispatch(v),
    )
}
