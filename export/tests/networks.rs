//! Whole networks: each exports, passes the full ONNX checker, and matches Burn within 1e-4
//! relative in tract, ONNX Runtime and the ONNX reference evaluator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use burn::module::Module;
use burn::nn::attention::{MhaInput, MultiHeadAttention, MultiHeadAttentionConfig};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Gelu, LayerNorm, LayerNormConfig, Linear, LinearConfig,
    PaddingConfig2d, Relu,
};
use burn::tensor::activation::{sigmoid, silu, tanh};
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::Tensor;
use common::{case, check, device, ops};
use prism_export::{export, ExportOptions, TensorSet};

#[derive(Module, Debug)]
pub struct Mlp {
    fc1: Linear,
    act: Relu,
    fc2: Linear,
    fc3: Linear,
}

impl Mlp {
    pub fn new(sizes: [usize; 4]) -> Self {
        let d = device();
        Self {
            fc1: LinearConfig::new(sizes[0], sizes[1]).init(&d),
            act: Relu::new(),
            fc2: LinearConfig::new(sizes[1], sizes[2]).init(&d),
            fc3: LinearConfig::new(sizes[2], sizes[3]).init(&d),
        }
    }
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = self.act.forward(self.fc1.forward(x));
        let x = self.act.forward(self.fc2.forward(x));
        self.fc3.forward(x)
    }
}

#[test]
fn mlp_exports_and_matches() {
    let m = Mlp::new([16, 32, 32, 4]);
    let opts = ExportOptions::default()
        .inputs(["features"])
        .outputs(["logits"]);
    let c = case(
        "mlp",
        &m,
        Tensor::<2>::zeros([3, 16], &device()),
        |m, x| m.forward(x),
        &opts,
    );
    // burn-nn Linear records matmul + add (bias folded to [1, n] at export time).
    assert_eq!(
        ops(&c.model),
        ["MatMul", "Add", "Relu", "MatMul", "Add", "Relu", "MatMul", "Add"]
    );
    assert_eq!(c.model.input_names(), ["features"]);
    assert_eq!(c.model.output_names(), ["logits"]);
    // Initializers carry the module paths.
    let names: Vec<String> = c
        .model
        .proto()
        .graph
        .initializer
        .iter()
        .map(|t| t.name.clone())
        .collect();
    assert!(names.contains(&"fc1.weight".to_string()), "{names:?}");
    check(&[c]);
}

// ---- ConvNet: conv + batchnorm + grouped conv + pooling --------------------------------------

#[derive(Module, Debug)]
pub struct ConvBnAct {
    conv: Conv2d,
    bn: BatchNorm,
}

impl ConvBnAct {
    pub fn new(cin: usize, cout: usize, k: usize, stride: usize, groups: usize) -> Self {
        let d = device();
        let p = k / 2;
        Self {
            conv: Conv2dConfig::new([cin, cout], [k, k])
                .with_stride([stride, stride])
                .with_groups(groups)
                .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                .with_bias(false)
                .init(&d),
            bn: BatchNormConfig::new(cout).init(&d),
        }
    }
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        silu(self.bn.forward(self.conv.forward(x)))
    }
}

#[derive(Module, Debug)]
struct ConvNet {
    stem: ConvBnAct,
    grouped: ConvBnAct,
    down: ConvBnAct,
    head: Linear,
}

#[test]
fn convnet_with_batchnorm_and_grouped_conv() {
    let d = device();
    let m = ConvNet {
        stem: ConvBnAct::new(3, 16, 3, 1, 1),
        grouped: ConvBnAct::new(16, 16, 3, 1, 4),
        down: ConvBnAct::new(16, 32, 3, 2, 1),
        head: LinearConfig::new(32, 10).init(&d),
    };
    let forward = |m: &ConvNet, x: Tensor<4>| {
        let x = m.stem.forward(x);
        let x = m.grouped.forward(x.clone()) + x;
        let x = m.down.forward(x);
        let x =
            burn::tensor::module::max_pool2d(x, MaxPoolOptions::new([2, 2]).with_stride([2, 2]));
        let x = burn::tensor::module::adaptive_avg_pool2d(x, [1, 1]);
        let [b, c, _, _] = x.dims();
        m.head.forward(x.reshape([b, c]))
    };
    let c = case(
        "convnet",
        &m,
        Tensor::<4>::zeros([2, 3, 16, 16], &d),
        forward,
        &ExportOptions::default(),
    );
    let o = ops(&c.model);
    // Every batch norm follows a convolution: folded into it at export.
    assert!(!o.contains(&"BatchNormalization".to_string()), "{o:?}");
    let unfused = export(
        &m,
        Tensor::<4>::zeros([2, 3, 16, 16], &d),
        forward,
        &ExportOptions::default().fuse(false),
    )
    .unwrap();
    assert_eq!(
        unfused.stats().op_counts.get("BatchNormalization"),
        Some(&3)
    );
    assert!(c
        .model
        .proto()
        .graph
        .node
        .iter()
        .any(|n| n.op_type == "Conv"
            && n.attribute.iter().any(|a| a.name == "group"
                && matches!(a.value, prism_export::proto::AttributeValue::Int(4)))));
    check(&[c]);
}

// ---- Transformer encoder block ---------------------------------------------------------------

#[derive(Module, Debug)]
pub struct EncoderBlock {
    norm1: LayerNorm,
    attn: MultiHeadAttention,
    norm2: LayerNorm,
    ff1: Linear,
    gelu: Gelu,
    ff2: Linear,
}

impl EncoderBlock {
    pub fn new(d_model: usize, heads: usize, ff: usize) -> Self {
        let d = device();
        Self {
            norm1: LayerNormConfig::new(d_model).init(&d),
            attn: MultiHeadAttentionConfig::new(d_model, heads)
                .with_dropout(0.0)
                .init(&d),
            norm2: LayerNormConfig::new(d_model).init(&d),
            ff1: LinearConfig::new(d_model, ff).init(&d),
            gelu: Gelu::new(),
            ff2: LinearConfig::new(ff, d_model).init(&d),
        }
    }
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = self.norm1.forward(x.clone());
        let x = x + self.attn.forward(MhaInput::self_attn(h)).context;
        let h = self.ff2.forward(
            self.gelu
                .forward(self.ff1.forward(self.norm2.forward(x.clone()))),
        );
        x + h
    }
}

#[test]
fn transformer_encoder_block() {
    let m = EncoderBlock::new(32, 4, 64);
    let sample = Tensor::<3>::zeros([2, 7, 32], &device());
    let c = case(
        "transformer",
        &m,
        sample.clone(),
        |m, x| m.forward(x),
        &ExportOptions::default(),
    );
    let o = ops(&c.model);
    for op in [
        "LayerNormalization",
        "Softmax",
        "Transpose",
        "Erf",
        "MatMul",
    ] {
        assert!(o.contains(&op.to_string()), "missing {op}: {o:?}");
    }
    let c20 = case(
        "transformer_opset20",
        &m,
        sample.clone(),
        |m, x| m.forward(x),
        &ExportOptions::default().opset(20),
    );
    assert!(ops(&c20.model).contains(&"Gelu".to_string()));
    // Dynamic batch through the attention reshapes, evaluated at a batch never captured.
    let mut dynamic = case(
        "transformer_dynamic",
        &m,
        sample,
        |m, x| m.forward(x),
        &ExportOptions::default().dynamic_batch(true),
    );
    let mut seed = 3;
    let x = Tensor::<3>::zeros([5, 7, 32], &device()).randomized(&mut seed);
    dynamic.inputs = vec![(dynamic.model.input_names()[0].clone(), x.to_data())];
    dynamic.expected = vec![m.forward(x).to_data()];
    check(&[c, c20, dynamic]);
}

// ---- ConvLSTM cell: state in and out ---------------------------------------------------------

#[derive(Module, Debug)]
pub struct ConvLstmCell {
    gates: Conv2d,
    hidden: usize,
}

impl ConvLstmCell {
    pub fn new(cin: usize, hidden: usize) -> Self {
        Self {
            gates: Conv2dConfig::new([cin + hidden, 4 * hidden], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(&device()),
            hidden,
        }
    }
    pub fn forward(&self, (x, h, c): (Tensor<4>, Tensor<4>, Tensor<4>)) -> (Tensor<4>, Tensor<4>) {
        let g = self.gates.forward(Tensor::cat(vec![x, h], 1));
        let n = self.hidden;
        let i = sigmoid(g.clone().narrow(1, 0, n));
        let f = sigmoid(g.clone().narrow(1, n, n));
        let o = sigmoid(g.clone().narrow(1, 2 * n, n));
        let cand = tanh(g.narrow(1, 3 * n, n));
        let c = f * c + i * cand;
        let h = o * tanh(c.clone());
        (h, c)
    }
}

#[test]
fn convlstm_cell_with_state_in_and_out() {
    let d = device();
    let m = ConvLstmCell::new(3, 8);
    let sample = (
        Tensor::<4>::zeros([2, 3, 12, 12], &d),
        Tensor::<4>::zeros([2, 8, 12, 12], &d),
        Tensor::<4>::zeros([2, 8, 12, 12], &d),
    );
    let opts = ExportOptions::default()
        .inputs(["x", "h_in", "c_in"])
        .outputs(["h_out", "c_out"]);
    let c = case("convlstm", &m, sample, |m, s| m.forward(s), &opts);
    assert_eq!(c.model.input_names(), ["x", "h_in", "c_in"]);
    assert_eq!(c.model.output_names(), ["h_out", "c_out"]);
    let o = ops(&c.model);
    assert!(
        o.contains(&"Concat".to_string()) && o.contains(&"Slice".to_string()),
        "{o:?}"
    );
    check(&[c]);
}

// ---- YOLOX-style decoupled head --------------------------------------------------------------

#[derive(Module, Debug)]
pub struct YoloxHead {
    stem: ConvBnAct,
    cls1: ConvBnAct,
    cls2: ConvBnAct,
    reg1: ConvBnAct,
    reg2: ConvBnAct,
    cls_pred: Conv2d,
    reg_pred: Conv2d,
    obj_pred: Conv2d,
}

impl YoloxHead {
    pub fn new(cin: usize, width: usize, classes: usize) -> Self {
        let d = device();
        Self {
            stem: ConvBnAct::new(cin, width, 1, 1, 1),
            cls1: ConvBnAct::new(width, width, 3, 1, 1),
            cls2: ConvBnAct::new(width, width, 3, 1, 1),
            reg1: ConvBnAct::new(width, width, 3, 1, 1),
            reg2: ConvBnAct::new(width, width, 3, 1, 1),
            cls_pred: Conv2dConfig::new([width, classes], [1, 1]).init(&d),
            reg_pred: Conv2dConfig::new([width, 4], [1, 1]).init(&d),
            obj_pred: Conv2dConfig::new([width, 1], [1, 1]).init(&d),
        }
    }
    /// Decoded predictions `[batch, h*w, 4 + 1 + classes]`: xy offsets, exp'd wh, sigmoid scores.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<3> {
        let x = self.stem.forward(x);
        let cls = self
            .cls_pred
            .forward(self.cls2.forward(self.cls1.forward(x.clone())));
        let r = self.reg2.forward(self.reg1.forward(x));
        let reg = self.reg_pred.forward(r.clone());
        let obj = self.obj_pred.forward(r);
        let [b, _, h, w] = reg.dims();
        let xy = reg.clone().narrow(1, 0, 2);
        let wh = reg.narrow(1, 2, 2).exp();
        let out = Tensor::cat(vec![xy, wh, sigmoid(obj), sigmoid(cls)], 1);
        let c = out.dims()[1];
        out.reshape([b, c, h * w]).swap_dims(1, 2)
    }
}

#[test]
fn yolox_decoupled_head() {
    let m = YoloxHead::new(16, 16, 5);
    let sample = Tensor::<4>::zeros([2, 16, 8, 8], &device());
    let c = case(
        "yolox_head",
        &m,
        sample,
        |m, x| m.forward(x),
        &ExportOptions::default(),
    );
    let o = ops(&c.model);
    for op in ["Conv", "Sigmoid", "Exp", "Concat", "Transpose"] {
        assert!(o.contains(&op.to_string()), "missing {op}: {o:?}");
    }
    assert!(
        !o.contains(&"BatchNormalization".to_string()),
        "folded into the convolutions: {o:?}"
    );
    check(&[c]);
}
