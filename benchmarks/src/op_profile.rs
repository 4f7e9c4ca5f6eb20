//! Where a training step's time goes, per operation: forward and backward of each kind of layer
//! rvt-tiny runs at Gen1 input size (batch 2, 256x320, window partitions of 8x10 tokens), timed
//! on each Burn backend, so that a backend's gap to another shows up op by op.
//!
//! The operations are Burn's own modules and tensor ops with rvt-tiny's shapes: the 7x7/4 stem,
//! then per stage the LayerNorm, the q/k/v projection, window attention (q k^T, softmax, x v),
//! the MLP with GELU, the ConvLSTM's 1x1 convolution and the 3x3/2 downsampling; and the FPN /
//! head's 3x3 convolution. Convolutions, LayerNorms and softmaxes run the way prism trains them
//! ([`prism_models::kernels`]: on LibTorch, with LibTorch's own gradients). Weights are drawn
//! before the clock starts. Each is timed as the median of a few repetitions after a warm-up:
//! the forward pass to its summed output, then the backward pass from it.

use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::conv::Conv2dConfig;
use burn::nn::{LayerNormConfig, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::gelu;
use burn::tensor::{Device, Distribution, Tensor};
use prism_models::kernels::{conv2d, layer_norm, softmax};

use crate::stats::median;

/// One operation's figures on one backend, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct OpTime {
    pub forward_ms: f64,
    pub backward_ms: f64,
}

/// The forward pass of a prepared operation, to its summed output.
type Forward = Box<dyn FnOnce() -> Tensor<1>>;

/// An operation: its name, and a function that prepares it on a device (weights and inputs
/// drawn, tracked for gradients) and returns its forward pass, so that only the pass is timed.
pub struct Op {
    pub name: String,
    build: Box<dyn Fn(&Device) -> Forward>,
}

/// Makes every parameter of `module` now. Burn draws a module's weights on their first use, which
/// would otherwise land in the first timed forward pass (PyTorch draws them at construction).
fn initialised<M: Module>(module: M) -> M {
    struct Touch;
    impl ModuleVisitor for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let _ = param.val();
        }
    }
    module.visit(&mut Touch);
    module
}

fn input<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device).require_grad()
}

/// rvt-tiny's operations at Gen1 size, batch `b`.
pub fn rvt_tiny_ops(b: usize) -> Vec<Op> {
    let mut ops = vec![Op {
        name: "stem conv 7x7/4, 20->32 @ 256x320".into(),
        build: Box::new(move |d| {
            let conv = initialised(
                Conv2dConfig::new([20, 32], [7, 7])
                    .with_stride([4, 4])
                    .with_padding(PaddingConfig2d::Explicit(3, 3, 3, 3))
                    .init(d),
            );
            let x = input([b, 20, 256, 320], d);
            Box::new(move || conv2d(&conv, x).sum())
        }),
    }];
    for (stage, (c, h, w)) in [(32, 64, 80), (64, 32, 40), (128, 16, 20), (256, 8, 10)]
        .into_iter()
        .enumerate()
    {
        let s = stage + 1;
        let tokens = b * h * w;
        ops.push(Op {
            name: format!("s{s} LayerNorm {c} @ {h}x{w}"),
            build: Box::new(move |d| {
                let norm = initialised(LayerNormConfig::new(c).init(d));
                let x = input([b, h, w, c], d);
                Box::new(move || layer_norm(&norm, x).sum())
            }),
        });
        ops.push(Op {
            name: format!("s{s} linear q/k/v {c}->{} ({tokens} tokens)", 3 * c),
            build: Box::new(move |d| {
                let linear = initialised(LinearConfig::new(c, 3 * c).init(d));
                let x = input([tokens, c], d);
                Box::new(move || linear.forward(x).sum())
            }),
        });
        let heads = c / 32;
        let groups = b * (h * w / 80) * heads;
        ops.push(Op {
            name: format!("s{s} window attention {groups}x80 tokens, head 32"),
            build: Box::new(move |d| {
                let q = input([groups, 80, 32], d);
                let k = input([groups, 80, 32], d);
                let v = input([groups, 80, 32], d);
                Box::new(move || {
                    let scores = q.matmul(k.swap_dims(1, 2)).mul_scalar(32f32.powf(-0.5));
                    softmax(scores, 2).matmul(v).sum()
                })
            }),
        });
        ops.push(Op {
            name: format!("s{s} MLP {c}->{}->{c} GELU", 4 * c),
            build: Box::new(move |d| {
                let up = initialised(LinearConfig::new(c, 4 * c).init(d));
                let down = initialised(LinearConfig::new(4 * c, c).init(d));
                let x = input([tokens, c], d);
                Box::new(move || down.forward(gelu(up.forward(x))).sum())
            }),
        });
        ops.push(Op {
            name: format!("s{s} ConvLSTM 1x1 {}->{} @ {h}x{w}", 2 * c, 4 * c),
            build: Box::new(move |d| {
                let conv = initialised(Conv2dConfig::new([2 * c, 4 * c], [1, 1]).init(d));
                let x = input([b, 2 * c, h, w], d);
                Box::new(move || conv2d(&conv, x).sum())
            }),
        });
        if s < 4 {
            ops.push(Op {
                name: format!("s{s} downsample conv 3x3/2 {c}->{} @ {h}x{w}", 2 * c),
                build: Box::new(move |d| {
                    let conv = initialised(
                        Conv2dConfig::new([c, 2 * c], [3, 3])
                            .with_stride([2, 2])
                            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                            .init(d),
                    );
                    let x = input([b, c, h, w], d);
                    Box::new(move || conv2d(&conv, x).sum())
                }),
            });
        }
    }
    ops.push(Op {
        name: "FPN/head conv 3x3 64->64 @ 32x40".into(),
        build: Box::new(move |d| {
            let conv = initialised(
                Conv2dConfig::new([64, 64], [3, 3])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init(d),
            );
            let x = input([b, 64, 32, 40], d);
            Box::new(move || conv2d(&conv, x).sum())
        }),
    });
    ops
}

/// Times `op` on `device` (an autodiff device): `reps` repetitions after one warm-up.
pub fn time_op(op: &Op, device: &Device, reps: usize) -> OpTime {
    let (mut forward, mut backward) = (Vec::new(), Vec::new());
    for rep in 0..=reps {
        let forward_pass = (op.build)(device);
        let t0 = Instant::now();
        let out = forward_pass();
        // Reading the value waits for the work (both backends run eagerly on the CPU).
        let _ = out.clone().into_scalar::<f32>();
        let t1 = Instant::now();
        let _grads = out.backward();
        let t2 = Instant::now();
        if rep > 0 {
            forward.push((t1 - t0).as_secs_f64() * 1e3);
            backward.push((t2 - t1).as_secs_f64() * 1e3);
        }
    }
    OpTime {
        forward_ms: median(&forward),
        backward_ms: median(&backward),
    }
}
