//! On an autodiff LibTorch device, prism's convolutions, norms, softmaxes and activations take
//! their gradients from LibTorch ([`prism_models::kernels`]). They must be the outputs and
//! gradients Burn's own formulas give on flex: every shape of convolution prism's models use,
//! with and without bias, a first layer whose input needs no gradient, LayerNorm on token
//! matrices and channels-last maps with RVT's and MiT's epsilons, attention's softmax (followed
//! by an op that burn-tch could run in place on its output), the YOLOX blocks' batch norm (with
//! its running statistics), SiLU, sigmoid and tanh, the ConvLSTM's cell, prism's AdamW (LibTorch's
//! fused step), Burn's gradient checkpointing, and conv,
//! LayerNorm and softmax in bfloat16 as a `train.precision = "bf16"` step runs them.
//!
//! Built only with the `tch` feature (`cargo xtask test` runs it against the torch venv).
#![cfg(feature = "tch")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Burn 0.22 marks its LibTorch backend deprecated; prism keeps it (see prism-train's `device`).
#![allow(deprecated)]

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, LayerNorm, LayerNormConfig, PaddingConfig2d};
use burn::tensor::{DType, Device, Distribution, Tensor, TensorData};
use prism_models::kernels::{
    batch_norm, conv2d, layer_norm, sigmoid, silu, softmax, tanh, uses_libtorch_autograd,
};

/// Float32 sums in other orders (oneDNN against Burn's formulas): relative to the largest value.
const TOLERANCE: f32 = 1e-4;

struct Case {
    name: &'static str,
    config: Conv2dConfig,
    input: [usize; 4],
    input_needs_grad: bool,
}

fn cases() -> Vec<Case> {
    let same = |k: usize| PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2);
    vec![
        Case {
            name: "ConvLSTM 1x1 with bias",
            config: Conv2dConfig::new([16, 32], [1, 1]),
            input: [2, 16, 12, 10],
            input_needs_grad: true,
        },
        Case {
            name: "stem 7x7/4 without bias, input without gradient",
            config: Conv2dConfig::new([5, 8], [7, 7])
                .with_stride([4, 4])
                .with_padding(same(7))
                .with_bias(false),
            input: [2, 5, 33, 29],
            input_needs_grad: false,
        },
        Case {
            name: "downsample 3x3/2 without bias",
            config: Conv2dConfig::new([8, 16], [3, 3])
                .with_stride([2, 2])
                .with_padding(same(3))
                .with_bias(false),
            input: [1, 8, 15, 14],
            input_needs_grad: true,
        },
        Case {
            name: "depthwise 3x3 with bias",
            config: Conv2dConfig::new([8, 8], [3, 3])
                .with_padding(same(3))
                .with_groups(8),
            input: [2, 8, 9, 11],
            input_needs_grad: true,
        },
        Case {
            name: "'same' padding (the module's own forward)",
            config: Conv2dConfig::new([6, 4], [3, 3]).with_padding(PaddingConfig2d::Same),
            input: [2, 6, 8, 8],
            input_needs_grad: true,
        },
    ]
}

/// The output and the gradients of input, weight and bias for `sum(conv(x) * probe)`.
fn run(
    case: &Case,
    weights: &(TensorData, Option<TensorData>),
    x: &TensorData,
    probe: &TensorData,
    device: &Device,
) -> Vec<(String, TensorData)> {
    let mut conv: Conv2d = case.config.init(device);
    conv.weight = Param::from_tensor(Tensor::from_data(weights.0.clone(), device));
    conv.bias = weights
        .1
        .clone()
        .map(|b| Param::from_tensor(Tensor::from_data(b, device)));
    let mut input = Tensor::<4>::from_data(x.clone(), device);
    if case.input_needs_grad {
        input = input.require_grad();
    }
    let out = conv2d(&conv, input.clone());
    let loss = (out.clone() * Tensor::from_data(probe.clone(), device)).sum();
    let grads = loss.backward();
    let mut results = vec![("output".to_string(), out.into_data())];
    if case.input_needs_grad {
        results.push((
            "input gradient".into(),
            input.grad(&grads).unwrap().into_data(),
        ));
    } else {
        assert!(
            input.grad(&grads).is_none(),
            "{}: no input gradient",
            case.name
        );
    }
    results.push((
        "weight gradient".into(),
        conv.weight.val().grad(&grads).unwrap().into_data(),
    ));
    if let Some(bias) = &conv.bias {
        results.push((
            "bias gradient".into(),
            bias.val().grad(&grads).unwrap().into_data(),
        ));
    }
    results
}

/// Values drawn from N(`mean`, `std`) on flex (seeded by the caller), in `shape`.
fn normal(shape: Vec<usize>, mean: f64, std: f64) -> TensorData {
    let values = Tensor::<1>::random(
        [shape.iter().product::<usize>()],
        Distribution::Normal(mean, std),
        &Device::flex(),
    )
    .into_data()
    .try_to_vec::<f32>()
    .unwrap();
    TensorData::new(values, shape)
}

/// The pairs of devices compared: autodiff without and with Burn's gradient checkpointing.
fn device_pairs() -> [(Device, Device); 2] {
    [
        (Device::libtorch().autodiff(), Device::flex().autodiff()),
        (
            Device::libtorch().autodiff().gradient_checkpointing(),
            Device::flex().autodiff().gradient_checkpointing(),
        ),
    ]
}

/// Asserts that `b` is within `tolerance` of `a`, relative to `a`'s largest value; returns the
/// largest gap found.
fn assert_close(a: &TensorData, b: &TensorData, tolerance: f32, what: &str) -> f32 {
    let (a, b) = (
        a.try_to_vec::<f32>().unwrap(),
        b.try_to_vec::<f32>().unwrap(),
    );
    assert_eq!(a.len(), b.len(), "{what}: sizes");
    let scale = a.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
        / scale;
    assert!(
        worst <= tolerance,
        "{what}: {worst:.1e} of the largest value"
    );
    worst
}

fn check_against_flex(libtorch: &Device, flex: &Device) {
    assert!(uses_libtorch_autograd(libtorch));
    assert!(!uses_libtorch_autograd(flex));
    for (seed, case) in cases().iter().enumerate() {
        Device::flex().seed(seed as u64);
        let draw = |shape: Vec<usize>| normal(shape, 0.0, 1.0);
        let reference: Conv2d = case.config.init(&Device::flex());
        let weights = (
            draw(reference.weight.dims().to_vec()),
            reference.bias.as_ref().map(|b| draw(b.dims().to_vec())),
        );
        let x = draw(case.input.to_vec());
        let out_dims = reference
            .forward(Tensor::from_data(x.clone(), &Device::flex()))
            .dims();
        let probe = draw(out_dims.to_vec());
        let want = run(case, &weights, &x, &probe, flex);
        let got = run(case, &weights, &x, &probe, libtorch);
        assert_eq!(want.len(), got.len());
        for ((what, w), (_, g)) in want.iter().zip(&got) {
            assert_close(w, g, TOLERANCE, &format!("{}: {what}", case.name));
        }
    }
}

/// Output and gradients of input, scale and shift for `sum(layer_norm(x) * probe)`.
fn run_layer_norm(
    epsilon: f64,
    [x, gamma, beta, probe]: &[TensorData; 4],
    device: &Device,
) -> Vec<TensorData> {
    let mut norm: LayerNorm = LayerNormConfig::new(gamma.num_elements())
        .with_epsilon(epsilon)
        .init(device);
    norm.gamma = Param::from_tensor(Tensor::from_data(gamma.clone(), device));
    norm.beta = Some(Param::from_tensor(Tensor::from_data(beta.clone(), device)));
    let input = Tensor::<4>::from_data(x.clone(), device).require_grad();
    let out = layer_norm(&norm, input.clone());
    let grads = (out.clone() * Tensor::from_data(probe.clone(), device))
        .sum()
        .backward();
    let beta = norm.beta.as_ref().unwrap().val();
    vec![
        out.into_data(),
        input.grad(&grads).unwrap().into_data(),
        norm.gamma.val().grad(&grads).unwrap().into_data(),
        beta.grad(&grads).unwrap().into_data(),
    ]
}

fn check_layer_norm_against_flex(libtorch: &Device, flex: &Device) {
    // RVT's channels-last map (epsilon 1e-5) and a MiT-like token layout (1e-6), with an offset
    // and spread so that the mean and variance matter.
    for (seed, (shape, epsilon)) in [([2, 6, 5, 32], 1e-5), ([1, 3, 40, 64], 1e-6)]
        .into_iter()
        .enumerate()
    {
        Device::flex().seed(100 + seed as u64);
        let channels = shape[3];
        let inputs = [
            normal(shape.to_vec(), 3.0, 2.0),
            normal(vec![channels], 1.0, 0.5),
            normal(vec![channels], 0.0, 0.5),
            normal(shape.to_vec(), 0.0, 1.0),
        ];
        let want = run_layer_norm(epsilon, &inputs, flex);
        let got = run_layer_norm(epsilon, &inputs, libtorch);
        for ((what, w), g) in [
            "output",
            "input gradient",
            "scale gradient",
            "shift gradient",
        ]
        .iter()
        .zip(&want)
        .zip(&got)
        {
            assert_close(
                w,
                g,
                TOLERANCE,
                &format!("LayerNorm {shape:?}, epsilon {epsilon}: {what}"),
            );
        }
    }
}

/// Output and input gradient of `sum(2 * op(x) * probe)`.
fn run_elementwise(
    op: impl Fn(Tensor<4>) -> Tensor<4>,
    x: &TensorData,
    probe: &TensorData,
    device: &Device,
) -> Vec<TensorData> {
    let input = Tensor::<4>::from_data(x.clone(), device).require_grad();
    // `mul_scalar` on a tensor no one else holds may run in place on burn-tch.
    let out = op(input.clone()).mul_scalar(2.0);
    let grads = (out.clone() * Tensor::from_data(probe.clone(), device))
        .sum()
        .backward();
    vec![out.into_data(), input.grad(&grads).unwrap().into_data()]
}

#[test]
fn libtorch_softmax_and_its_gradient_equal_burns() {
    for (libtorch, flex) in device_pairs() {
        for (seed, dim) in [3usize, 2].into_iter().enumerate() {
            Device::flex().seed(200 + seed as u64);
            let draw = || normal(vec![2, 3, 16, 20], 0.0, 3.0);
            let (x, probe) = (draw(), draw());
            let op = |x| softmax(x, dim);
            let want = run_elementwise(op, &x, &probe, &flex);
            let got = run_elementwise(op, &x, &probe, &libtorch);
            for ((what, w), g) in ["output", "input gradient"].iter().zip(&want).zip(&got) {
                assert_close(w, g, TOLERANCE, &format!("softmax along {dim}: {what}"));
            }
        }
    }
}

#[test]
fn libtorch_activations_and_their_gradients_equal_burns() {
    type Activation = fn(Tensor<4>) -> Tensor<4>;
    let activations: [(&str, Activation); 3] =
        [("SiLU", silu), ("sigmoid", sigmoid), ("tanh", tanh)];
    for (libtorch, flex) in device_pairs() {
        for (seed, (name, op)) in activations.into_iter().enumerate() {
            Device::flex().seed(250 + seed as u64);
            let draw = || normal(vec![2, 4, 6, 5], 0.0, 3.0);
            let (x, probe) = (draw(), draw());
            let want = run_elementwise(op, &x, &probe, &flex);
            let got = run_elementwise(op, &x, &probe, &libtorch);
            for ((what, w), g) in ["output", "input gradient"].iter().zip(&want).zip(&got) {
                assert_close(w, g, TOLERANCE, &format!("{name}: {what}"));
            }
        }
    }
}

/// Two training steps of a batch norm with YOLOX's settings (epsilon 1e-3, momentum 0.03) on
/// `x`, then `2 x`: the second step's output and gradients of input, scale and shift for
/// `sum(bn(x) * probe)`, and the running mean and variance after both.
fn run_batch_norm([x, gamma, beta, probe]: &[TensorData; 4], device: &Device) -> Vec<TensorData> {
    let mut norm: BatchNorm = BatchNormConfig::new(gamma.num_elements())
        .with_epsilon(1e-3)
        .with_momentum(0.03)
        .init(device);
    norm.gamma = Param::from_tensor(Tensor::from_data(gamma.clone(), device));
    norm.beta = Param::from_tensor(Tensor::from_data(beta.clone(), device));
    let first = Tensor::<4>::from_data(x.clone(), device).require_grad();
    let _ = batch_norm(&norm, first).sum().backward();
    let input = Tensor::<4>::from_data(x.clone(), device)
        .mul_scalar(2.0)
        .detach()
        .require_grad();
    let out = batch_norm(&norm, input.clone());
    let grads = (out.clone() * Tensor::from_data(probe.clone(), device))
        .sum()
        .backward();
    vec![
        out.into_data(),
        input.grad(&grads).unwrap().into_data(),
        norm.gamma.val().grad(&grads).unwrap().into_data(),
        norm.beta.val().grad(&grads).unwrap().into_data(),
        norm.running_mean.value().into_data(),
        norm.running_var.value().into_data(),
    ]
}

#[test]
fn libtorch_batch_norm_its_gradients_and_running_statistics_equal_burns() {
    for (libtorch, flex) in device_pairs() {
        Device::flex().seed(300);
        let shape = vec![2, 8, 6, 5];
        let inputs = [
            normal(shape.clone(), 3.0, 2.0),
            normal(vec![8], 1.0, 0.5),
            normal(vec![8], 0.0, 0.5),
            normal(shape, 0.0, 1.0),
        ];
        let want = run_batch_norm(&inputs, &flex);
        let got = run_batch_norm(&inputs, &libtorch);
        for ((what, w), g) in [
            "output",
            "input gradient",
            "scale gradient",
            "shift gradient",
            "running mean",
            "running variance",
        ]
        .iter()
        .zip(&want)
        .zip(&got)
        {
            assert_close(w, g, TOLERANCE, &format!("batch norm: {what}"));
        }
    }
}

#[test]
fn libtorch_convolution_gradients_equal_burns() {
    for (libtorch, flex) in device_pairs() {
        check_against_flex(&libtorch, &flex);
    }
}

#[test]
fn libtorch_layer_norm_and_its_gradients_equal_burns() {
    for (libtorch, flex) in device_pairs() {
        check_layer_norm_against_flex(&libtorch, &flex);
    }
}

#[test]
fn inference_keeps_the_module_forward() {
    assert!(!uses_libtorch_autograd(&Device::libtorch()));
    let conv: Conv2d = Conv2dConfig::new([3, 4], [1, 1]).init(&Device::libtorch());
    let x = Tensor::<4>::ones([1, 3, 2, 2], &Device::libtorch());
    conv2d(&conv, x.clone())
        .into_data()
        .assert_eq(&conv.forward(x).into_data(), true);
}

/// conv 1x1 -> channels-last -> LayerNorm -> softmax over channels, in `dtype`: the output and
/// the gradients of the input, the convolution's weight and the LayerNorm's scale, as float32.
/// The chain's input, weight, bias, scale, shift and probe, drawn once for both runs (the
/// seeded stream is shared with the tests running beside this one).
fn chain_inputs() -> [TensorData; 6] {
    Device::flex().seed(400);
    let draw = |shape: Vec<usize>| normal(shape, 0.0, 1.0);
    [
        draw(vec![2, 8, 6, 5]),
        draw(vec![16 * 8]),
        draw(vec![16]),
        draw(vec![16]),
        draw(vec![16]),
        draw(vec![2, 6, 5, 16]),
    ]
}

fn run_chain(dtype: DType, device: &Device, inputs: &[TensorData; 6]) -> Vec<TensorData> {
    let param = |data: TensorData| Tensor::<1>::from_data(data, device).cast(dtype);
    let [x, w, b, gamma, beta, probe] = inputs.clone();
    let mut conv: Conv2d = Conv2dConfig::new([8, 16], [1, 1]).init(device);
    conv.weight = Param::from_tensor(param(w).reshape([16, 8, 1, 1]));
    conv.bias = Some(Param::from_tensor(param(b)));
    let mut norm: LayerNorm = LayerNormConfig::new(16).init(device);
    norm.gamma = Param::from_tensor(param(gamma));
    norm.beta = Some(Param::from_tensor(param(beta)));
    let input = Tensor::<4>::from_data(x, device).cast(dtype).require_grad();
    let mapped = conv2d(&conv, input.clone()).permute([0, 2, 3, 1]);
    let out = softmax(layer_norm(&norm, mapped), 3);
    let grads = (out.clone() * Tensor::<4>::from_data(probe, device).cast(dtype))
        .sum()
        .backward();
    let as_f32 = |t: Tensor<4>| t.cast(DType::F32).into_data();
    vec![
        as_f32(out),
        as_f32(input.grad(&grads).unwrap()),
        as_f32(conv.weight.val().grad(&grads).unwrap()),
        norm.gamma
            .val()
            .grad(&grads)
            .unwrap()
            .cast(DType::F32)
            .into_data(),
    ]
}

#[test]
fn libtorch_kernels_in_bfloat16_match_float32_within_its_precision() {
    let inputs = chain_inputs();
    let want = run_chain(DType::F32, &Device::flex().autodiff(), &inputs);
    let got = run_chain(DType::BF16, &Device::libtorch().autodiff(), &inputs);
    for ((what, w), g) in [
        "output",
        "input gradient",
        "weight gradient",
        "scale gradient",
    ]
    .iter()
    .zip(&want)
    .zip(&got)
    {
        // bfloat16 keeps 8 significant bits (3.9e-3 relative per rounding); a few roundings
        // through the chain stay within 5e-2 of the largest value.
        let worst = assert_close(w, g, 5e-2, &format!("bf16 {what}"));
        eprintln!("bf16 {what}: {worst:.1e} of the largest value");
    }
}

/// Where an AdamW run starts: fresh, or from another run's weight, bias and optimizer bytes.
type Resume = Option<(TensorData, TensorData, burn::tensor::Bytes)>;

/// A linear layer's weight and bias after each of `steps` of prism's AdamW (weight decay 0.05, a
/// new learning rate and input each step), and the optimizer's bytes at the end.
fn run_adamw(
    [weight, bias, x, probe]: &[TensorData; 4],
    device: &Device,
    resume: Resume,
    steps: std::ops::Range<usize>,
) -> (Vec<TensorData>, burn::tensor::Bytes) {
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::{GradientsParams, ModuleOptimizer};
    let mut layer: Linear = LinearConfig::new(6, 5).init(device);
    let mut optim = ModuleOptimizer::from(prism_train::optim::adamw(0.05));
    let (weight, bias) = match resume {
        Some((weight, bias, bytes)) => {
            optim = optim.from_bytes(bytes).unwrap();
            (weight, bias)
        }
        None => (weight.clone(), bias.clone()),
    };
    // Fixed ids: the optimizer's state is keyed by them, so a resumed run must keep them.
    let [weight_id, bias_id] = [1u64, 2].map(burn::module::ParamId::from);
    let weight = Tensor::<2>::from_data(weight, device).require_grad();
    let bias = Tensor::<1>::from_data(bias, device).require_grad();
    layer.weight = Param::initialized(weight_id, weight);
    layer.bias = Some(Param::initialized(bias_id, bias));
    let mut after = Vec::new();
    let rates = [1e-2, 3e-3, 2e-2, 5e-3];
    for step in steps {
        let x = Tensor::<2>::from_data(x.clone(), device).mul_scalar(1.0 + step as f64);
        let probe = Tensor::<2>::from_data(probe.clone(), device);
        let loss = (layer.forward(x) * probe).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &layer);
        layer = optim.step(rates[step], layer, grads);
        after.push(layer.weight.val().into_data());
        after.push(layer.bias.as_ref().unwrap().val().into_data());
    }
    (after, optim.into_bytes().unwrap())
}

#[test]
fn libtorchs_fused_adamw_steps_as_burns_adamw_does_and_resumes_on_flex() {
    // Spread values from a formula: the seeded random stream is shared with the other tests.
    let spread = |shape: Vec<usize>, phase: f32| {
        let n = shape.iter().product::<usize>();
        let values: Vec<f32> = (0..n).map(|i| (i as f32 * 1.7 + phase).sin()).collect();
        TensorData::new(values, shape)
    };
    let inputs = [
        spread(vec![6, 5], 0.1),
        spread(vec![5], 0.7),
        spread(vec![4, 6], 1.3),
        spread(vec![4, 5], 2.9),
    ];
    assert!(prism_models::kernels::is_libtorch(&Device::libtorch()));
    assert!(!prism_models::kernels::is_libtorch(&Device::flex()));
    // Flex runs Burn's AdamW; LibTorch the fused kernel.
    let (want, _) = run_adamw(&inputs, &Device::flex().autodiff(), None, 0..4);
    let (got, bytes) = run_adamw(&inputs, &Device::libtorch().autodiff(), None, 0..3);
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        let what = format!("step {} {}", i / 2 + 1, ["weight", "bias"][i % 2]);
        assert_close(w, g, 1e-5, &what);
    }
    // The fused step leaves Burn's state (moments and step count): flex resumes from it.
    let resume = Some((got[4].clone(), got[5].clone(), bytes));
    let (resumed, _) = run_adamw(&inputs, &Device::flex().autodiff(), resume, 3..4);
    assert_close(
        &want[6],
        &resumed[0],
        1e-5,
        "step 4 weight, resumed on flex",
    );
    assert_close(&want[7], &resumed[1], 1e-5, "step 4 bias, resumed on flex");
}

/// `(h', c')` of an LSTM cell and the gradients of its gate pre-activations and cell state for
/// `sum(h' * probe_h + c' * probe_c)`.
fn run_lstm_cell([z, c, probe_h, probe_c]: &[TensorData; 4], device: &Device) -> Vec<TensorData> {
    let z = Tensor::<4>::from_data(z.clone(), device).require_grad();
    let c = Tensor::<4>::from_data(c.clone(), device).require_grad();
    let (h2, c2) = prism_models::kernels::lstm_cell(z.clone(), c.clone(), 3);
    let probe = |p: &TensorData| Tensor::<4>::from_data(p.clone(), device);
    let loss = (h2.clone() * probe(probe_h)).sum() + (c2.clone() * probe(probe_c)).sum();
    let grads = loss.backward();
    vec![
        h2.into_data(),
        c2.into_data(),
        z.grad(&grads).unwrap().into_data(),
        c.grad(&grads).unwrap().into_data(),
    ]
}

#[test]
fn libtorch_lstm_cell_and_its_gradients_equal_burns() {
    Device::flex().seed(500);
    let draw = |channels: usize| normal(vec![2, channels, 4, 5], 0.0, 2.0);
    let inputs = [draw(12), draw(3), draw(3), draw(3)];
    for (libtorch, flex) in device_pairs() {
        let want = run_lstm_cell(&inputs, &flex);
        let got = run_lstm_cell(&inputs, &libtorch);
        for ((what, w), g) in ["h'", "c'", "gate gradient", "cell gradient"]
            .iter()
            .zip(&want)
            .zip(&got)
        {
            assert_close(w, g, TOLERANCE, &format!("LSTM cell {what}"));
        }
    }
}
