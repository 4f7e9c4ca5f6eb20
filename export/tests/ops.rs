//! One test per operation family: small modules that export, pass the full ONNX checker and
//! match Burn within 1e-4 relative in tract, ONNX Runtime and the reference evaluator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use burn::module::Module;
use burn::nn::{
    BatchNorm, BatchNormConfig, GroupNorm, GroupNormConfig, LayerNorm, LayerNormConfig,
};
use burn::tensor::activation as act;
use burn::tensor::module as m;
use burn::tensor::ops::{
    AvgPoolOptions, ConvOptions, ConvTransposeOptions, InterpolateMode, InterpolateOptions,
    MaxPoolOptions, PadMode,
};
use burn::tensor::{s, Bool, Int, Tensor, TensorData};
use common::{case, check, device, ops, NoParams};
use prism_export::ExportOptions;

fn opts() -> ExportOptions {
    ExportOptions::default()
}

fn t3(dims: [usize; 3]) -> Tensor<3> {
    Tensor::zeros(dims, &device())
}
fn t4(dims: [usize; 4]) -> Tensor<4> {
    Tensor::zeros(dims, &device())
}

#[test]
fn elementwise_and_scalar_arithmetic() {
    let p = NoParams;
    let two = (t3([2, 3, 4]), Tensor::<1>::zeros([4], &device()));
    let cases = vec![
        case(
            "add_broadcast",
            &p,
            two.clone(),
            |_, (a, b)| a + b.unsqueeze::<3>(),
            &opts(),
        ),
        case(
            "sub_mul_div",
            &p,
            two.clone(),
            |_, (a, b)| {
                let b = b.unsqueeze::<3>();
                (a.clone() - b.clone()) * a.clone() / (b.abs() + 1.5)
            },
            &opts(),
        ),
        case(
            "scalar_ops",
            &p,
            t3([2, 3, 4]),
            |_, a| ((a.clone() + 1.0) * 3.0 - 0.5) / 2.0 + a.neg(),
            &opts(),
        ),
        case(
            "unary_math",
            &p,
            t3([2, 3, 4]),
            |_, a| {
                let pos = a.clone().abs() + 0.1;
                pos.clone().log()
                    + pos.clone().sqrt()
                    + a.clone().exp()
                    + a.clone().erf()
                    + pos.clone().recip()
                    + pos.clone().powf_scalar(1.7)
                    + a.clone().powf_scalar(2.0)
                    + a.clone().sin()
                    + a.clone().cos()
            },
            &opts(),
        ),
        case(
            "powf_tensor",
            &p,
            two.clone(),
            |_, (a, b)| (a.abs() + 0.5).powf(b.unsqueeze::<3>()),
            &opts(),
        ),
        case(
            "clamp_family",
            &p,
            t3([2, 3, 4]),
            |_, a| a.clone().clamp(-0.5, 0.7) + a.clone().clamp_min(0.1) + a.clamp_max(-0.2),
            &opts(),
        ),
        case(
            "remainder",
            &p,
            t3([2, 3, 4]),
            |_, a| (a * 3.0).remainder_scalar(1.3),
            &opts(),
        ),
        case("cumsum", &p, t3([2, 3, 4]), |_, a| a.cumsum(2), &opts()),
        case(
            "round_floor_ceil",
            &p,
            t3([2, 3, 4]),
            |_, a| {
                let a = a * 3.3;
                a.clone().floor() + a.clone().ceil() * 2.0 + a.sign()
            },
            &opts(),
        ),
    ];
    check(&cases);
}

#[test]
fn activations() {
    let p = NoParams;
    let x = || t3([2, 5, 6]);
    let cases = vec![
        case("relu", &p, x(), |_, a| act::relu(a), &opts()),
        case(
            "leaky_relu",
            &p,
            x(),
            |_, a| act::leaky_relu(a, 0.1),
            &opts(),
        ),
        case(
            "sigmoid_tanh",
            &p,
            x(),
            |_, a| act::sigmoid(a.clone()) + act::tanh(a),
            &opts(),
        ),
        case("silu", &p, x(), |_, a| act::silu(a), &opts()),
        case(
            "hard_sigmoid",
            &p,
            x(),
            |_, a| act::hard_sigmoid(a, 0.2, 0.5),
            &opts(),
        ),
        case("gelu_exact", &p, x(), |_, a| act::gelu(a), &opts()),
        case(
            "gelu_exact_opset20",
            &p,
            x(),
            |_, a| act::gelu(a),
            &opts().opset(20),
        ),
        case(
            "gelu_tanh",
            &p,
            x(),
            |_, a| act::gelu_approximate(a),
            &opts(),
        ),
        case("softmax", &p, x(), |_, a| act::softmax(a, 2), &opts()),
        case(
            "softmax_mid_axis",
            &p,
            x(),
            |_, a| act::softmax(a, 1),
            &opts(),
        ),
        case(
            "log_softmax",
            &p,
            x(),
            |_, a| act::log_softmax(a, 2),
            &opts(),
        ),
        case("log_sigmoid", &p, x(), |_, a| act::log_sigmoid(a), &opts()),
    ];
    assert!(ops(&cases[6].model).contains(&"Gelu".to_string()));
    assert!(ops(&cases[8].model).contains(&"Softmax".to_string()));
    check(&cases);
}

#[test]
fn shape_ops() {
    let p = NoParams;
    let cases = vec![
        case(
            "reshape",
            &p,
            t3([2, 3, 4]),
            |_, a| a.reshape([2, 12]),
            &opts(),
        ),
        case(
            "swap_dims",
            &p,
            t3([2, 3, 4]),
            |_, a| a.swap_dims(0, 2),
            &opts(),
        ),
        case(
            "permute",
            &p,
            t4([2, 3, 4, 5]),
            |_, a| a.permute([0, 2, 3, 1]),
            &opts(),
        ),
        case(
            "slice",
            &p,
            t3([4, 6, 8]),
            |_, a| a.slice([1..3, 0..6, 2..7]),
            &opts(),
        ),
        case(
            "slice_step",
            &p,
            t3([4, 6, 8]),
            |_, a| a.slice(s![.., 1..5;2, ..;-1]),
            &opts(),
        ),
        case(
            "narrow_cat",
            &p,
            t3([2, 6, 4]),
            |_, a| Tensor::cat(vec![a.clone().narrow(1, 4, 2), a.narrow(1, 0, 3)], 1),
            &opts(),
        ),
        case(
            "expand",
            &p,
            t3([2, 1, 4]),
            |_, a| a.expand([2, 5, 4]),
            &opts(),
        ),
        case(
            "repeat_dim",
            &p,
            t3([2, 3, 4]),
            |_, a| a.repeat_dim(1, 3),
            &opts(),
        ),
        case("flip", &p, t3([2, 3, 4]), |_, a| a.flip([0, 2]), &opts()),
        case(
            "unsqueeze_squeeze",
            &p,
            t3([2, 1, 4]),
            |_, a| a.squeeze_dim::<2>(1).unsqueeze_dim::<3>(0),
            &opts(),
        ),
        case(
            "matmul_batched",
            &p,
            (t3([2, 3, 4]), t3([2, 4, 5])),
            |_, (a, b)| a.matmul(b),
            &opts(),
        ),
        case(
            "pad_constant",
            &p,
            t4([1, 2, 4, 4]),
            |_, a| a.pad([(1, 2), (0, 1)], PadMode::Constant(0.5)),
            &opts(),
        ),
        case(
            "pad_reflect_edge",
            &p,
            t4([1, 2, 5, 5]),
            |_, a| {
                a.clone().pad([(1, 1), (2, 1)], PadMode::Reflect)
                    + a.pad([(1, 1), (2, 1)], PadMode::Edge)
            },
            &opts(),
        ),
    ];
    assert!(ops(&cases[2].model).contains(&"Transpose".to_string()));
    check(&cases);
}

#[test]
fn reductions() {
    let p = NoParams;
    let x = || t3([3, 4, 5]);
    let cases = vec![
        case(
            "mean_sum_all",
            &p,
            x(),
            |_, a| a.clone().mean() + a.sum(),
            &opts(),
        ),
        case(
            "max_min_all",
            &p,
            x(),
            |_, a| a.clone().max() - a.min(),
            &opts(),
        ),
        case(
            "dim_reductions",
            &p,
            x(),
            |_, a| {
                a.clone().mean_dim(1) + a.clone().sum_dim(1) + a.clone().max_dim(1) + a.min_dim(1)
            },
            &opts(),
        ),
        case(
            "dim_reductions_opset18",
            &p,
            x(),
            |_, a| {
                a.clone().mean_dim(2) + a.clone().sum_dim(2) + a.clone().max_dim(2) + a.min_dim(2)
            },
            &opts().opset(18),
        ),
        case(
            "argmax_argmin",
            &p,
            x(),
            |_, a| (a.clone().argmax(2), a.argmin(1)),
            &opts(),
        ),
        case(
            "max_dim_with_indices",
            &p,
            x(),
            |_, a| a.max_dim_with_indices(1),
            &opts(),
        ),
    ];
    check(&cases);
}

#[test]
fn indexing_masks_comparisons_casts() {
    let d = device();
    let p = NoParams;
    let idx = Tensor::<1, Int>::from_data(TensorData::from([2i64, 0, 1, 2]), &d);
    let gidx = Tensor::<3, Int>::from_data(
        TensorData::new(
            (0..24).map(|i| (i * 7 % 5) as i64).collect::<Vec<_>>(),
            [2, 3, 4],
        ),
        &d,
    );
    let cases = vec![
        case(
            "select",
            &p,
            (t3([3, 4, 5]), idx.clone()),
            |_, (a, i)| a.select(0, i),
            &opts(),
        ),
        case(
            "gather",
            &p,
            (t3([2, 3, 5]), gidx),
            |_, (a, i)| a.gather(2, i),
            &opts(),
        ),
        case(
            "mask_fill",
            &p,
            t3([2, 3, 4]),
            |_, a| {
                let m = a.clone().greater_elem(0.2);
                a.mask_fill(m, -3.0)
            },
            &opts(),
        ),
        case(
            "mask_where",
            &p,
            (t3([2, 3, 4]), t3([2, 3, 4])),
            |_, (a, b)| {
                let m = a.clone().lower(b.clone());
                a.mask_where(m, b)
            },
            &opts(),
        ),
        case(
            "comparisons_bool",
            &p,
            (t3([2, 3, 4]), t3([2, 3, 4])),
            |_, (a, b)| {
                let x = a
                    .clone()
                    .greater_equal(b.clone())
                    .bool_and(a.clone().lower_equal_elem(0.5));
                let y = a
                    .clone()
                    .equal(b.clone())
                    .bool_or(a.not_equal(b).bool_not());
                (x.clone().float() + y.float(), x.int())
            },
            &opts(),
        ),
        case(
            "slice_assign",
            &p,
            (t3([3, 4, 5]), t3([2, 2, 5])),
            |_, (a, v)| a.slice_assign([1..3, 1..3, 0..5], v),
            &opts(),
        ),
        case(
            "cast_int_float",
            &p,
            t3([2, 3, 4]),
            |_, a| (a * 4.0).int().float() + 0.25,
            &opts(),
        ),
        case(
            "bool_input",
            &p,
            (
                t3([2, 3, 4]),
                Tensor::<3, Bool>::from_data(
                    TensorData::new((0..24).map(|i| i % 3 == 0).collect::<Vec<_>>(), [2, 3, 4]),
                    &d,
                ),
            ),
            |_, (a, m)| a.mask_fill(m, 1.0),
            &opts(),
        ),
        case(
            "creation_in_forward",
            &p,
            t3([2, 3, 4]),
            |_, a| {
                let d = a.device();
                a + Tensor::<3>::ones([2, 3, 4], &d) * 2.0 + Tensor::<3>::full([1, 3, 1], 0.5, &d)
            },
            &opts(),
        ),
    ];
    check(&cases);
}

#[derive(Module, Debug)]
struct ConvWeights {
    w1: burn::module::Param<Tensor<3>>,
    w2: burn::module::Param<Tensor<4>>,
    wt1: burn::module::Param<Tensor<3>>,
    wt2: burn::module::Param<Tensor<4>>,
    b: burn::module::Param<Tensor<1>>,
}

#[test]
fn conv_and_pooling() {
    let d = device();
    let r = |dims: Vec<usize>, seed: &mut u64| {
        let n = dims.iter().product();
        TensorData::new(prism_export_test_rand(seed, n), dims)
    };
    let mut seed = 3;
    let w = ConvWeights {
        w1: burn::module::Param::from_data(r(vec![8, 2, 3], &mut seed), &d),
        w2: burn::module::Param::from_data(r(vec![8, 2, 3, 3], &mut seed), &d),
        wt1: burn::module::Param::from_data(r(vec![4, 3, 3], &mut seed), &d),
        wt2: burn::module::Param::from_data(r(vec![4, 3, 3, 3], &mut seed), &d),
        b: burn::module::Param::from_data(r(vec![8], &mut seed), &d),
    };
    let cases = vec![
        case(
            "conv1d_dilated_grouped",
            &w,
            t3([2, 4, 16]),
            |w, x| {
                m::conv1d(
                    x,
                    w.w1.val(),
                    Some(w.b.val()),
                    ConvOptions::new([2], [2], [2], 2),
                )
            },
            &opts(),
        ),
        case(
            "conv2d_grouped_dilated",
            &w,
            t4([2, 4, 9, 9]),
            |w, x| {
                m::conv2d(
                    x,
                    w.w2.val(),
                    Some(w.b.val()),
                    ConvOptions::new([1, 2], [2, 1], [2, 1], 2),
                )
            },
            &opts(),
        ),
        case(
            "conv_transpose1d",
            &w,
            t3([2, 4, 7]),
            |w, x| {
                m::conv_transpose1d(
                    x,
                    w.wt1.val(),
                    None,
                    ConvTransposeOptions::new([2], [1], [1], [1], 1),
                )
            },
            &opts(),
        ),
        case(
            "conv_transpose2d",
            &w,
            t4([1, 4, 5, 6]),
            |w, x| {
                m::conv_transpose2d(
                    x,
                    w.wt2.val(),
                    None,
                    ConvTransposeOptions::new([2, 2], [1, 0], [1, 0], [1, 1], 1),
                )
            },
            &opts(),
        ),
        case(
            "pools",
            &NoParams,
            t4([2, 3, 9, 9]),
            |_, x| {
                let a = m::max_pool2d(
                    x.clone(),
                    MaxPoolOptions::new([3, 3])
                        .with_stride([2, 2])
                        .with_padding([1, 1]),
                );
                let b = m::avg_pool2d(
                    x,
                    AvgPoolOptions::new([3, 3])
                        .with_stride([2, 2])
                        .with_padding([1, 1]),
                );
                a + b
            },
            &opts(),
        ),
        case(
            "pools_1d",
            &NoParams,
            t3([2, 3, 12]),
            |_, x| {
                let a = m::max_pool1d(x.clone(), MaxPoolOptions::new([3]).with_stride([2]));
                let b = m::avg_pool1d(x, AvgPoolOptions::new([3]).with_stride([2]));
                a + b
            },
            &opts(),
        ),
        case(
            "adaptive_avg_pool",
            &NoParams,
            t4([2, 3, 10, 7]),
            |_, x| {
                let a = m::adaptive_avg_pool2d(x.clone(), [5, 7]);
                let b = m::adaptive_avg_pool2d(x, [3, 4]).mean();
                a + b.unsqueeze::<4>()
            },
            &opts(),
        ),
        case(
            "adaptive_avg_pool_global",
            &NoParams,
            t4([2, 3, 10, 7]),
            |_, x| m::adaptive_avg_pool2d(x, [1, 1]),
            &opts(),
        ),
    ];
    check(&cases);
}

/// Same generator as the library's random inputs.
fn prism_export_test_rand(seed: &mut u64, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

#[derive(Module, Debug)]
struct Norms {
    ln: LayerNorm,
    bn: BatchNorm,
    gn: GroupNorm,
}

#[test]
fn normalization() {
    let d = device();
    let n = Norms {
        ln: LayerNormConfig::new(6).init(&d),
        bn: BatchNormConfig::new(4).init(&d),
        gn: GroupNormConfig::new(2, 4).init(&d),
    };
    let cases = vec![
        case(
            "layer_norm",
            &n,
            t3([2, 5, 6]),
            |n, x| n.ln.forward(x),
            &opts(),
        ),
        case(
            "batch_norm",
            &n,
            t4([2, 4, 5, 6]),
            |n, x| n.bn.forward(x),
            &opts(),
        ),
        case(
            "group_norm",
            &n,
            t4([2, 4, 5, 6]),
            |n, x| n.gn.forward(x),
            &opts(),
        ),
    ];
    assert_eq!(ops(&cases[0].model), ["LayerNormalization"]);
    assert_eq!(ops(&cases[1].model), ["BatchNormalization"]);
    check(&cases);
}

#[test]
fn interpolation() {
    let p = NoParams;
    let x = || t4([1, 2, 5, 6]);
    let up = |mode: InterpolateMode, ac: bool, size: [usize; 2]| {
        move |_: &NoParams, a: Tensor<4>| {
            m::interpolate(
                a,
                InterpolateOptions::new(mode.clone())
                    .with_align_corners(ac)
                    .with_output_size(size),
            )
        }
    };
    let cases = vec![
        case(
            "nearest_up",
            &p,
            x(),
            up(InterpolateMode::Nearest, false, [10, 12]),
            &opts(),
        ),
        case(
            "nearest_down",
            &p,
            x(),
            up(InterpolateMode::Nearest, false, [3, 4]),
            &opts(),
        ),
        case(
            "bilinear",
            &p,
            x(),
            up(InterpolateMode::Bilinear, false, [9, 11]),
            &opts(),
        ),
        case(
            "bilinear_align_corners",
            &p,
            x(),
            up(InterpolateMode::Bilinear, true, [9, 11]),
            &opts(),
        ),
        case(
            "bicubic",
            &p,
            x(),
            up(InterpolateMode::Bicubic, false, [9, 11]),
            &opts(),
        ),
        nearest_exact_case(),
    ];
    check(&cases);
}

/// Burn's CPU backend cannot run nearest-exact, so the expected values are computed here with
/// its definition: source index `floor((i + 0.5) * in / out)`.
fn nearest_exact_case() -> common::Case {
    let (h, w, oh, ow) = (5usize, 6usize, 7usize, 9usize);
    let model = prism_export::export(
        &NoParams,
        t4([1, 2, h, w]),
        |_, a| {
            m::interpolate(
                a,
                InterpolateOptions::new(InterpolateMode::NearestExact).with_output_size([oh, ow]),
            )
        },
        &opts(),
    )
    .unwrap();
    let path = common::out_dir().join("nearest_exact.onnx");
    model.save(&path).unwrap();
    let input: Vec<f32> = (0..2 * h * w).map(|i| i as f32 * 0.37 - 3.0).collect();
    let mut out = Vec::new();
    for c in 0..2 {
        for i in 0..oh {
            for j in 0..ow {
                let si = (((i as f64 + 0.5) * h as f64 / oh as f64).floor() as usize).min(h - 1);
                let sj = (((j as f64 + 0.5) * w as f64 / ow as f64).floor() as usize).min(w - 1);
                out.push(input[c * h * w + si * w + sj]);
            }
        }
    }
    common::Case {
        name: "nearest_exact".into(),
        inputs: vec![(
            model.input_names()[0].clone(),
            TensorData::new(input, [1, 2, h, w]),
        )],
        expected: vec![TensorData::new(out, [1, 2, oh, ow])],
        model,
        path,
        timing_runs: 0,
        tolerance: common::TOL,
    }
}

#[test]
fn attention_op() {
    let d = device();
    let p = NoParams;
    let q = || t4([2, 2, 5, 8]);
    let mask = Tensor::<4, Bool>::from_data(
        TensorData::new(
            (0..100).map(|i| i % 7 == 3).collect::<Vec<_>>(),
            [2, 2, 5, 5],
        ),
        &d,
    );
    let cases = vec![
        case(
            "attention_plain",
            &p,
            (q(), q(), q()),
            |_, (q, k, v)| m::attention(q, k, v, None, None, Default::default()),
            &opts(),
        ),
        case(
            "attention_mask_causal",
            &p,
            (q(), q(), q(), mask),
            |_, (q, k, v, mk)| {
                let o = burn::tensor::ops::AttentionModuleOptions {
                    scale: Some(0.3),
                    softcap: None,
                    is_causal: true,
                };
                m::attention(q, k, v, Some(mk), None, o)
            },
            &opts(),
        ),
    ];
    check(&cases);
}
