//! prism-export against burn-onnx 0.22's own (experimental) `OnnxExporter`.
//!
//! For modules both exporters handle (an MLP and a small ResNet-style ConvNet), both files must
//! load in ONNX Runtime, agree with Burn and with each other within 1e-5 relative, and ours
//! must not run slower in ONNX Runtime (median of interleaved runs in one process). Where
//! burn-onnx stops (LayerNorm, GELU, softmax: a transformer block), we check that it reports an
//! unsupported operation while ours exports and matches.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use burn::module::{Module, Param, RunningState};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::tensor::module::{adaptive_avg_pool2d, max_pool2d};
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::Device;
use burn::tensor::{Tensor, TensorData};
use burn_onnx::export::{ExportError as BurnOnnxError, OnnxExporter};
use common::{device, ort_median_ms, out_dir, python_required};
use prism_export::verify::{compare, python_env, run_python_jobs, PythonJob};
use prism_export::{export, ExportOptions, TensorSet};

/// Outputs must agree within this (scale-relative, as `verify::compare`).
const TOL: f64 = 1e-5;
/// Ours may be at most this much slower (median ratio) before the test fails: timing noise.
const MAX_RATIO: f64 = 1.10;

// ---- A minimal ONNX reader: names and node op types, enough to drive and describe a file. ----

fn varint(b: &[u8], i: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let byte = b[*i];
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return v;
        }
        shift += 7;
    }
}

/// `(field, payload)` for every length-delimited field of a message; other wire types skipped.
fn fields(b: &[u8]) -> Vec<(u64, &[u8])> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let key = varint(b, &mut i);
        match key & 7 {
            0 => {
                varint(b, &mut i);
            }
            1 => i += 8,
            5 => i += 4,
            2 => {
                let n = varint(b, &mut i) as usize;
                out.push((key >> 3, &b[i..i + n]));
                i += n;
            }
            w => panic!("wire type {w}"),
        }
    }
    out
}

fn string_field(b: &[u8], field: u64) -> String {
    fields(b)
        .into_iter()
        .find(|(f, _)| *f == field)
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

/// Graph inputs, outputs and node op types of a serialized ModelProto.
struct Summary {
    inputs: Vec<String>,
    outputs: Vec<String>,
    ops: Vec<String>,
    initializers: usize,
}

fn summary(model: &[u8]) -> Summary {
    let graph = fields(model)
        .into_iter()
        .find(|(f, _)| *f == 7)
        .expect("no graph")
        .1;
    let mut s = Summary {
        inputs: vec![],
        outputs: vec![],
        ops: vec![],
        initializers: 0,
    };
    for (f, v) in fields(graph) {
        match f {
            1 => s.ops.push(string_field(v, 4)),
            5 => s.initializers += 1,
            11 => s.inputs.push(string_field(v, 1)),
            12 => s.outputs.push(string_field(v, 1)),
            _ => {}
        }
    }
    s
}

// ---- Deterministic, non-trivial batch-norm statistics. ------------------------------------------

fn ramp(n: usize, lo: f32, hi: f32, phase: usize) -> Tensor<1> {
    let v: Vec<f32> = (0..n)
        .map(|i| lo + (hi - lo) * (((i * 7 + phase) % n) as f32 / n as f32))
        .collect();
    Tensor::from_data(TensorData::new(v, [n]), &device())
}

fn bn(c: usize, phase: usize) -> BatchNorm {
    let mut bn = BatchNormConfig::new(c).init(&device());
    bn.gamma = Param::from_tensor(ramp(c, 0.5, 1.5, phase));
    bn.beta = Param::from_tensor(ramp(c, -0.2, 0.2, phase + 1));
    bn.running_mean = RunningState::new(ramp(c, -0.3, 0.3, phase + 2));
    bn.running_var = RunningState::new(ramp(c, 0.5, 2.0, phase + 3));
    bn
}

fn conv(cin: usize, cout: usize, k: usize) -> Conv2d {
    let p = k / 2;
    Conv2dConfig::new([cin, cout], [k, k])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_bias(false)
        .init(&device())
}

// ---- Modules. ----------------------------------------------------------------------------------

#[derive(Module, Debug)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
    act: Relu,
}

impl Mlp {
    fn new() -> Self {
        let d = device();
        Self {
            fc1: LinearConfig::new(256, 512).init(&d),
            fc2: LinearConfig::new(512, 512).init(&d),
            fc3: LinearConfig::new(512, 10).init(&d),
            act: Relu::new(),
        }
    }
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = self.act.forward(self.fc1.forward(x));
        let x = self.act.forward(self.fc2.forward(x));
        self.fc3.forward(x)
    }
}

/// conv-bn-relu, conv-bn, + identity, relu.
#[derive(Module, Debug)]
struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    act: Relu,
}

impl BasicBlock {
    fn new(c: usize, phase: usize) -> Self {
        Self {
            conv1: conv(c, c, 3),
            bn1: bn(c, phase),
            conv2: conv(c, c, 3),
            bn2: bn(c, phase + 5),
            act: Relu::new(),
        }
    }
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = self
            .act
            .forward(self.bn1.forward(self.conv1.forward(x.clone())));
        let h = self.bn2.forward(self.conv2.forward(h));
        self.act.forward(h + x)
    }
}

#[derive(Module, Debug)]
struct ResNetLike {
    stem: Conv2d,
    stem_bn: BatchNorm,
    block1: BasicBlock,
    block2: BasicBlock,
    head: Linear,
    act: Relu,
}

impl ResNetLike {
    fn new() -> Self {
        Self {
            stem: conv(3, 16, 3),
            stem_bn: bn(16, 0),
            block1: BasicBlock::new(16, 1),
            block2: BasicBlock::new(16, 2),
            head: LinearConfig::new(16, 10).init(&device()),
            act: Relu::new(),
        }
    }
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.act.forward(self.stem_bn.forward(self.stem.forward(x)));
        let x = self.block1.forward(x);
        let x = max_pool2d(x, MaxPoolOptions::new([2, 2]).with_stride([2, 2]));
        let x = self.block2.forward(x);
        let x = adaptive_avg_pool2d(x, [1, 1]);
        let [b, c, _, _] = x.dims();
        self.head.forward(x.reshape([b, c]))
    }
}

// ---- The comparison. ---------------------------------------------------------------------------

/// Export with both exporters, compare outputs in ORT with Burn and each other, time both.
fn compare_exporters<M, F, const D: usize, const O: usize>(
    name: &str,
    module: &M,
    sample: Tensor<D>,
    forward: F,
) where
    M: Module,
    F: Fn(&M, Tensor<D>) -> Tensor<O> + Copy,
{
    let dir = out_dir();
    let ours_path = dir.join(format!("{name}_prism.onnx"));
    let theirs_path = dir.join(format!("{name}_burn_onnx.onnx"));

    // Burn's reference first: burn-onnx's exporter leaves batch-norm statistics of the caller's
    // module on its capture device (see `burn_onnx_exporter_moves_the_callers_batchnorm_state`).
    let mut seed = 17;
    let x = sample.clone().randomized(&mut seed);
    let input = x.to_data();
    let expected = forward(module, x).to_data();

    let ours = export(
        module,
        sample.clone(),
        forward,
        &ExportOptions::default().opset(18),
    )
    .unwrap();
    ours.save(&ours_path).unwrap();
    let theirs = OnnxExporter::new()
        .export(module, sample.clone(), forward)
        .unwrap();
    theirs.save(&theirs_path).unwrap();

    let s_ours = summary(&ours.to_bytes());
    let s_theirs = summary(theirs.as_bytes());
    assert_eq!(s_ours.ops.len(), ours.stats().nodes);
    eprintln!(
        "{name}: prism-export {} nodes, {} initializers, {} B {:?}",
        s_ours.ops.len(),
        s_ours.initializers,
        ours.encoded_len(),
        ours.stats().op_counts
    );
    let mut hist = std::collections::BTreeMap::<&str, usize>::new();
    for op in &s_theirs.ops {
        *hist.entry(op.as_str()).or_default() += 1;
    }
    eprintln!(
        "{name}: burn-onnx     {} nodes, {} initializers, {} B {hist:?}",
        s_theirs.ops.len(),
        s_theirs.initializers,
        theirs.as_bytes().len()
    );

    let Some(python) = python_env() else {
        assert!(
            !python_required(),
            "PRISM_REQUIRE_FIXTURES=1 but no Python env (PRISM_ENV)"
        );
        eprintln!("SKIPPED: {name}: ONNX Runtime comparison and timing (no Python env)");
        return;
    };

    let feeds = |s: &Summary| vec![(s.inputs[0].clone(), input.clone())];
    let job = |path: &PathBuf, s: &Summary| PythonJob {
        model: path.clone(),
        inputs: feeds(s),
        runtimes: vec!["ort".into()],
        check: true,
        timing_runs: 0,
    };
    let results = run_python_jobs(
        &python,
        &[job(&ours_path, &s_ours), job(&theirs_path, &s_theirs)],
    )
    .unwrap();
    let mut outs = Vec::new();
    for (who, r) in ["prism-export", "burn-onnx"].iter().zip(results) {
        assert_eq!(
            r.check.as_deref(),
            Some("ok"),
            "{name}: {who}: ONNX checker"
        );
        let (_, o) = r.outputs.into_iter().next().unwrap();
        let o = o.unwrap_or_else(|e| panic!("{name}: {who} fails in ONNX Runtime: {e}"));
        assert_eq!(o.len(), 1);
        let err = compare("ort", who, &expected, &o[0]).unwrap();
        eprintln!(
            "{name}: {who:<12} vs Burn: max_abs {:.2e} max_rel {:.2e}",
            err.max_abs, err.max_rel
        );
        assert!(
            err.max_rel <= TOL,
            "{name}: {who} vs Burn: rel error {:.3e}",
            err.max_rel
        );
        outs.push(o.into_iter().next().unwrap());
    }
    let err = compare("ort", "ours vs theirs", &outs[1], &outs[0]).unwrap();
    eprintln!(
        "{name}: prism-export vs burn-onnx in ORT: max_abs {:.2e} max_rel {:.2e}",
        err.max_abs, err.max_rel
    );
    assert!(
        err.max_rel <= TOL,
        "{name}: the two exports disagree: {:.3e}",
        err.max_rel
    );

    // Timing: interleaved medians; a busy machine can skew one round, so allow three.
    let models = [(ours_path, feeds(&s_ours)), (theirs_path, feeds(&s_theirs))];
    let mut ratios = Vec::new();
    for _ in 0..3 {
        let t = ort_median_ms(&python, &models, 200);
        let ratio = t[0] / t[1];
        eprintln!(
            "{name}: ORT median (1 thread, input {:?}): prism-export {:.3} ms, burn-onnx {:.3} ms, ratio ours/theirs {ratio:.3}",
            sample.dims(),
            t[0],
            t[1]
        );
        assert!(
            t[0] >= 0.2 && t[1] >= 0.2,
            "{name}: runs too short to time ({t:?} ms)"
        );
        ratios.push(ratio);
        if ratio <= MAX_RATIO {
            break;
        }
    }
    let best = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(
        best <= MAX_RATIO,
        "{name}: ours is slower in ONNX Runtime: ratios {ratios:?}"
    );
}

#[test]
fn mlp_matches_and_is_no_slower_than_burn_onnx() {
    let m = Mlp::new();
    let sample = Tensor::<2>::zeros([64, 256], &device());
    compare_exporters("cmp_mlp", &m, sample, |m: &Mlp, x| m.forward(x));
}

#[test]
fn resnet_like_matches_and_is_no_slower_than_burn_onnx() {
    let m = ResNetLike::new();
    let sample = Tensor::<4>::zeros([4, 3, 32, 32], &device());
    compare_exporters("cmp_resnet", &m, sample, |m: &ResNetLike, x| m.forward(x));
}

/// burn-onnx's exporter clones the module and moves the clone to its capture device; Burn's
/// `RunningState` (batch-norm statistics) is shared between clones, so the caller's module is
/// left holding capture-device tensors and can no longer run. prism-export puts them back.
#[test]
fn burn_onnx_exporter_moves_the_callers_batchnorm_state() {
    let m = ResNetLike::new();
    let sample = Tensor::<4>::zeros([1, 3, 8, 8], &device());
    let on_flex = |m: &ResNetLike| m.stem_bn.running_mean.value().device() == Device::flex();
    assert!(on_flex(&m));
    export(
        &m,
        sample.clone(),
        |m, x| m.forward(x),
        &ExportOptions::default(),
    )
    .unwrap();
    assert!(
        on_flex(&m),
        "prism-export must leave the module's running statistics in place"
    );
    let _ = m.forward(sample.clone());

    OnnxExporter::new()
        .export(&m, sample.clone(), |m: &ResNetLike, x| m.forward(x))
        .unwrap();
    // (`m.forward` would now panic: "Cannot move a tensor from a capture device".)
    assert!(
        !on_flex(&m),
        "burn-onnx now restores batch-norm statistics: drop the workaround in compare_exporters"
    );
}

/// Ops of a transformer block: what burn-onnx's exporter rejects, and ours exports.
#[test]
fn transformer_ops_burn_onnx_rejects_and_we_export() {
    use burn::nn::attention::{MhaInput, MultiHeadAttention, MultiHeadAttentionConfig};
    use burn::nn::{Gelu, LayerNorm, LayerNormConfig};
    use burn::tensor::activation::{gelu, softmax};

    #[derive(Module, Debug)]
    struct Encoder {
        norm1: LayerNorm,
        attn: MultiHeadAttention,
        norm2: LayerNorm,
        ff1: Linear,
        gelu: Gelu,
        ff2: Linear,
    }
    impl Encoder {
        fn forward(&self, x: Tensor<3>) -> Tensor<3> {
            let h = self.norm1.forward(x.clone());
            let x = x + self.attn.forward(MhaInput::self_attn(h)).context;
            let h = self.ff2.forward(
                self.gelu
                    .forward(self.ff1.forward(self.norm2.forward(x.clone()))),
            );
            x + h
        }
    }
    let d = device();
    let enc = Encoder {
        norm1: LayerNormConfig::new(32).init(&d),
        attn: MultiHeadAttentionConfig::new(32, 4)
            .with_dropout(0.0)
            .init(&d),
        norm2: LayerNormConfig::new(32).init(&d),
        ff1: LinearConfig::new(32, 64).init(&d),
        gelu: Gelu::new(),
        ff2: LinearConfig::new(64, 32).init(&d),
    };
    let norm = LayerNormConfig::new(32).init(&d);
    let sample = Tensor::<3>::zeros([2, 7, 32], &d);
    let empty = common::NoParams;

    let mut rows: Vec<(&str, Result<(), BurnOnnxError>, usize)> = Vec::new();
    macro_rules! probe {
        ($name:expr, $m:expr, $f:expr) => {{
            let theirs = OnnxExporter::new()
                .export($m, sample.clone(), $f)
                .map(|_| ());
            let ours = export($m, sample.clone(), $f, &ExportOptions::default())
                .unwrap_or_else(|e| panic!("{}: prism-export failed: {e}", $name));
            rows.push(($name, theirs, ours.stats().nodes));
        }};
    }
    probe!("layer_norm", &norm, |m: &LayerNorm, x| m.forward(x));
    probe!("softmax", &empty, |_: &common::NoParams, x: Tensor<3>| {
        softmax(x, 2)
    });
    probe!("gelu", &empty, |_: &common::NoParams, x: Tensor<3>| gelu(x));
    probe!("swap_dims", &empty, |_: &common::NoParams, x: Tensor<3>| x
        .swap_dims(1, 2));
    probe!("mean_dim", &empty, |_: &common::NoParams, x: Tensor<3>| x
        .mean_dim(2));
    probe!("encoder_block", &enc, |m: &Encoder, x| m.forward(x));
    for (name, theirs, ours) in &rows {
        eprintln!(
            "{name:<14} burn-onnx: {:<70} prism-export: {ours} nodes",
            match theirs {
                Ok(()) => "exports".to_string(),
                Err(e) => e.to_string().chars().take(70).collect(),
            }
        );
    }
    for (name, theirs, _) in &rows {
        assert!(
            matches!(theirs, Err(BurnOnnxError::UnsupportedOperation { .. })),
            "{name}: burn-onnx now exports it ({theirs:?}): extend the comparison"
        );
    }
    // Ours also runs correctly (tract, ORT, reference evaluator; 1e-4 as everywhere else).
    let c = common::case(
        "cmp_encoder",
        &enc,
        sample,
        |m, x| m.forward(x),
        &ExportOptions::default(),
    );
    common::check(&[c]);
}
