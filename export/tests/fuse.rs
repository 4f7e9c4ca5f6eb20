//! The inference rewrites (`ExportOptions::fuse`): each fires on the pattern it is written for,
//! leaves a graph that passes the checker, and matches Burn within 1e-4 relative in tract, ONNX
//! Runtime and the ONNX reference evaluator; with `fuse(false)` the pattern stays as lowered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use burn::module::{Module, Param, RunningState};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::silu;
use burn::tensor::{Distribution, Tensor};
use common::{case, check, device, ops};
use prism_export::proto::GraphProto;
use prism_export::ExportOptions;

fn count(ops: &[String], op: &str) -> usize {
    ops.iter().filter(|o| *o == op).count()
}

fn random1(n: usize, lo: f64, hi: f64) -> Tensor<1> {
    Tensor::random([n], Distribution::Uniform(lo, hi), &device())
}

/// Dimensions of the initializer named `name`.
fn init_dims(g: &GraphProto, name: &str) -> Option<Vec<i64>> {
    g.initializer
        .iter()
        .find(|t| t.name == name)
        .map(|t| t.dims.clone())
}

#[derive(Module, Debug)]
struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm,
}

/// Conv + BatchNorm with non-trivial statistics and affine parameters, then SiLU.
fn conv_bn(c_in: usize, c_out: usize, bias: bool) -> ConvBn {
    let d = device();
    let mut bn = BatchNormConfig::new(c_out).with_epsilon(1e-3).init(&d);
    bn.gamma = Param::from_tensor(random1(c_out, 0.5, 1.5));
    bn.beta = Param::from_tensor(random1(c_out, -0.5, 0.5));
    bn.running_mean = RunningState::new(random1(c_out, -0.3, 0.3));
    bn.running_var = RunningState::new(random1(c_out, 0.5, 2.0));
    ConvBn {
        conv: Conv2dConfig::new([c_in, c_out], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .with_bias(bias)
            .init(&d),
        bn,
    }
}

#[test]
fn batch_norm_folds_into_the_convolution() {
    let d = device();
    let f = |m: &ConvBn, x: Tensor<4>| silu(m.bn.forward(m.conv.forward(x)));
    let mut cases = Vec::new();
    for (name, bias) in [("fuse_conv_bn", false), ("fuse_conv_bias_bn", true)] {
        let m = conv_bn(16, 32, bias);
        let c = case(
            name,
            &m,
            Tensor::<4>::zeros([2, 16, 8, 8], &d),
            f,
            &ExportOptions::default(),
        );
        let o = ops(&c.model);
        assert_eq!(count(&o, "BatchNormalization"), 0, "{o:?}");
        assert_eq!(count(&o, "Conv"), 1, "{o:?}");
        cases.push(c);
        let off = case(
            &format!("{name}_off"),
            &m,
            Tensor::<4>::zeros([2, 16, 8, 8], &d),
            f,
            &ExportOptions::default().fuse(false),
        );
        assert_eq!(count(&ops(&off.model), "BatchNormalization"), 1);
        cases.push(off);
    }
    check(&cases);
}

#[derive(Module, Debug)]
struct ScaledMlp {
    fc1: Linear,
    fc2: Linear,
    gamma: Param<Tensor<1>>,
}

#[test]
fn broadcast_weights_become_2d_and_channel_scales_fold_into_the_linear_layer() {
    let d = device();
    let m = ScaledMlp {
        fc1: LinearConfig::new(24, 48).init(&d),
        fc2: LinearConfig::new(48, 24).init(&d),
        gamma: Param::from_tensor(random1(24, 0.1, 2.0)),
    };
    // LayerScale after a linear layer, directly and through a transpose that keeps the last axis
    // (the reverse partition of window attention).
    let f = |m: &ScaledMlp, x: Tensor<4>| {
        let g = m.gamma.val().unsqueeze::<4>();
        let y = m
            .fc2
            .forward(burn::tensor::activation::relu(m.fc1.forward(x.clone())));
        let direct = x.clone() + y * g.clone();
        let [b, h, w, c] = x.dims();
        let z = m
            .fc2
            .forward(burn::tensor::activation::relu(m.fc1.forward(x)));
        let moved = z
            .reshape([b, h / 2, 2, w, c])
            .swap_dims(1, 2)
            .reshape([b, h, w, c])
            * g;
        direct + moved
    };
    let c = case(
        "fuse_linear_scale",
        &m,
        Tensor::<4>::zeros([1, 4, 6, 24], &d),
        f,
        &ExportOptions::default(),
    );
    let g = &c.model.proto().graph;
    let o = ops(&c.model);
    assert_eq!(
        count(&o, "Mul"),
        0,
        "both LayerScale multiplications fold: {o:?}"
    );
    for n in g.node.iter().filter(|n| n.op_type == "MatMul") {
        let dims = init_dims(g, &n.input[1]).expect("constant weight");
        assert_eq!(dims.len(), 2, "MatMul weight {dims:?}");
    }
    for n in g.node.iter().filter(|n| n.op_type == "Add") {
        if let Some(dims) = n.input.iter().find_map(|i| init_dims(g, i)) {
            assert_eq!(dims.len(), 1, "bias {dims:?}");
        }
    }
    let off = case(
        "fuse_linear_scale_off",
        &m,
        Tensor::<4>::zeros([1, 4, 6, 24], &d),
        f,
        &ExportOptions::default().fuse(false),
    );
    assert_eq!(count(&ops(&off.model), "Mul"), 2);
    check(&[c, off]);
}

#[derive(Module, Debug)]
struct Upsample {
    conv: Conv2d,
}

#[test]
fn nearest_upsampling_becomes_resize() {
    let d = device();
    let m = Upsample {
        conv: Conv2dConfig::new([8, 8], [1, 1]).init(&d),
    };
    // The PAFPN's upsampling: reshape, broadcast, reshape.
    let f = |m: &Upsample, x: Tensor<4>| {
        let x = m.conv.forward(x);
        let [n, c, h, w] = x.dims();
        let up = x
            .reshape([n, c, h, 1, w, 1])
            .expand([n, c, h, 2, w, 3])
            .reshape([n, c, 2 * h, 3 * w]);
        up.clone() + up
    };
    let c = case(
        "fuse_upsample",
        &m,
        Tensor::<4>::zeros([2, 8, 5, 4], &d),
        f,
        &ExportOptions::default(),
    );
    let o = ops(&c.model);
    assert_eq!((count(&o, "Resize"), count(&o, "Expand")), (1, 0), "{o:?}");
    check(&[c]);
}

#[derive(Module, Debug)]
struct Stem {
    conv: Conv2d,
}

#[test]
fn a_graph_input_convolution_with_20_channels_is_split_16_plus_4_space_to_depth() {
    let d = device();
    let f = |m: &Stem, x: Tensor<4>| m.conv.forward(x);
    let mut cases = Vec::new();
    // RVT's stem (kernel 7, stride 4, padding 3) and a stride-2 variant with an odd kernel.
    for (name, k, s, p) in [
        ("fuse_split_stem", 7, 4, 3),
        ("fuse_split_stem_k3s2", 3, 2, 1),
    ] {
        let m = Stem {
            conv: Conv2dConfig::new([20, 32], [k, k])
                .with_stride([s, s])
                .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                .init(&d),
        };
        let c = case(
            name,
            &m,
            Tensor::<4>::zeros([2, 20, 32, 40], &d),
            f,
            &ExportOptions::default().split_input_conv(true),
        );
        let g = &c.model.proto().graph;
        let o = ops(&c.model);
        assert_eq!(
            (count(&o, "Split"), count(&o, "Conv"), count(&o, "Add")),
            (1, 2, 1),
            "{o:?}"
        );
        let convs: Vec<Vec<i64>> = g
            .node
            .iter()
            .filter(|n| n.op_type == "Conv")
            .map(|n| init_dims(g, &n.input[1]).unwrap())
            .collect();
        let blocks =
            (k as i64 - 1 - p as i64).div_euclid(s as i64) - (-(p as i64)).div_euclid(s as i64) + 1;
        assert_eq!(
            convs,
            [
                vec![32, 16, k as i64, k as i64],
                vec![32, 4 * (s * s) as i64, blocks, blocks]
            ]
        );
        cases.push(c);
    }
    // Off by default: a generic module keeps its convolution whole.
    let whole = case(
        "fuse_split_stem_off",
        &Stem {
            conv: Conv2dConfig::new([20, 32], [7, 7])
                .with_stride([4, 4])
                .with_padding(PaddingConfig2d::Explicit(3, 3, 3, 3))
                .init(&d),
        },
        Tensor::<4>::zeros([1, 20, 32, 40], &d),
        f,
        &ExportOptions::default(),
    );
    assert_eq!(ops(&whole.model), ["Conv"]);
    // 32 input channels are already a multiple of the block: untouched.
    let m32 = Stem {
        conv: Conv2dConfig::new([32, 8], [3, 3]).init(&d),
    };
    let c32 = case(
        "fuse_split_stem_32",
        &m32,
        Tensor::<4>::zeros([1, 32, 8, 8], &d),
        f,
        &ExportOptions::default().split_input_conv(true),
    );
    assert_eq!(ops(&c32.model), ["Conv"]);
    // Stride 1: no space-to-depth form, left alone.
    let m1 = Stem {
        conv: Conv2dConfig::new([20, 8], [3, 3]).init(&d),
    };
    let c1 = case(
        "fuse_split_stem_s1",
        &m1,
        Tensor::<4>::zeros([1, 20, 8, 8], &d),
        f,
        &ExportOptions::default().split_input_conv(true),
    );
    assert_eq!(ops(&c1.model), ["Conv"]);
    cases.extend([c32, c1]);
    check(&cases);
}
