//! Graph-level properties: dynamic batch, names, metadata, tidiness, file size, errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Tensor, TensorData};
use common::{case, check, device, ops, Case, NoParams, TOL};
use prism_export::proto::Dim;
use prism_export::{export, ExportError, ExportOptions, TensorSet};

#[derive(Module, Debug)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

fn mlp(i: usize, h: usize, o: usize) -> Mlp {
    let d = device();
    Mlp {
        fc1: LinearConfig::new(i, h).init(&d),
        fc2: LinearConfig::new(h, o).init(&d),
    }
}

/// Re-evaluate an exported case at another batch size.
fn at_batch<M: Module, I: TensorSet, O: TensorSet>(
    mut c: Case,
    m: &M,
    sample: I,
    f: impl Fn(&M, I) -> O,
) -> Case {
    let mut seed = 11;
    let inputs = sample.randomized(&mut seed);
    let mut data = Vec::new();
    inputs.collect_data(&mut data);
    let mut expected = Vec::new();
    f(m, inputs).collect_data(&mut expected);
    c.inputs = c.model.input_names().into_iter().zip(data).collect();
    c.expected = expected;
    c
}

#[test]
fn dynamic_batch_axis() {
    let d = device();
    let m = mlp(8, 16, 3);
    let f = |m: &Mlp, x: Tensor<3>| {
        let [b, t, c] = x.dims();
        let y = m.fc2.forward(burn::tensor::activation::relu(
            m.fc1.forward(x.reshape([b * t, c])),
        ));
        y.reshape([b, t, 3]).swap_dims(1, 2).reshape([b, 3 * t])
    };
    let opts = ExportOptions::default()
        .dynamic_batch(true)
        .inputs(["x"])
        .outputs(["y"]);
    let c = case(
        "dynamic_mlp",
        &m,
        Tensor::<3>::zeros([2, 4, 8], &d),
        f,
        &opts,
    );
    let g = &c.model.proto().graph;
    assert_eq!(g.input[0].shape[0], Dim::Param("batch".into()));
    assert_eq!(g.output[0].shape[0], Dim::Param("batch".into()));
    // Evaluate at a batch size that was never captured.
    let c = at_batch(c, &m, Tensor::<3>::zeros([5, 4, 8], &d), f);
    check(&[c]);
}

#[test]
fn dynamic_batch_transformer_and_zeros_state() {
    let d = device();
    let m = mlp(6, 6, 6);
    // A batch-shaped constant created in the forward pass becomes ConstantOfShape(batch...).
    let f = |m: &Mlp, x: Tensor<3>| {
        let [b, t, c] = x.dims();
        let state = Tensor::<3>::zeros([b, t, c], &x.device()) + 1.0;
        let h = m.fc1.forward(x) + state;
        burn::tensor::activation::softmax(h.clone().matmul(h.swap_dims(1, 2)), 2)
    };
    let opts = ExportOptions::default().dynamic_batch(true);
    let c = case(
        "dynamic_state",
        &m,
        Tensor::<3>::zeros([3, 5, 6], &d),
        f,
        &opts,
    );
    assert!(
        ops(&c.model).contains(&"ConstantOfShape".to_string())
            || ops(&c.model).contains(&"Add".to_string())
    );
    let c = at_batch(c, &m, Tensor::<3>::zeros([1, 5, 6], &d), f);
    check(&[c]);
}

#[test]
fn dynamic_batch_through_a_linear_that_changes_layout_with_the_batch() {
    // Burn's `Linear` folds the batch into the rows while that makes the product squarer:
    // for 80 rows of 128 outputs it folds at batch 2 (160 x 128) but not at batch 3
    // (240 x 128), so the captures at batches 2 and 3 record different operations.
    let d = device();
    let m = mlp(64, 128, 4);
    let f = |m: &Mlp, x: Tensor<3>| m.fc2.forward(m.fc1.forward(x));
    let opts = ExportOptions::default().dynamic_batch(true);
    let exported = |name| case(name, &m, Tensor::<3>::zeros([2, 80, 64], &d), f, &opts);
    let c = exported("dynamic_linear_layout_b1");
    assert_eq!(
        c.model.proto().graph.input[0].shape[0],
        Dim::Param("batch".into())
    );
    // Checked at batches on both sides of the switch.
    let at_1 = at_batch(c, &m, Tensor::<3>::zeros([1, 80, 64], &d), f);
    let at_7 = at_batch(
        exported("dynamic_linear_layout_b7"),
        &m,
        Tensor::<3>::zeros([7, 80, 64], &d),
        f,
    );
    check(&[at_1, at_7]);
}

#[test]
fn a_forward_pass_that_branches_on_the_batch_is_refused_with_where_it_parts() {
    let d = device();
    let m = mlp(4, 4, 4);
    // Odd batches take one more operation, so every pair (b, b + 1) differs.
    let f = |m: &Mlp, x: Tensor<2>| {
        let y = m.fc1.forward(x);
        if y.dims()[0] % 2 == 1 {
            y.exp()
        } else {
            y
        }
    };
    let Err(err) = export(
        &m,
        Tensor::<2>::zeros([2, 4], &d),
        f,
        &ExportOptions::default().dynamic_batch(true),
    ) else {
        panic!("a batch-dependent forward pass was exported");
    };
    let msg = err.to_string();
    assert!(matches!(err, ExportError::Dynamic(_)), "{msg}");
    assert!(
        msg.contains("control flow depends on the batch size")
            && msg.contains("Exp")
            && msg.contains("from 2 and 3 to 7 and 8"),
        "{msg}"
    );
}

#[test]
fn metadata_names_and_multiple_io() {
    let d = device();
    let m = mlp(4, 4, 4);
    let json = r#"{"task":"detect","classes":["a","b"]}"#;
    let opts = ExportOptions::default()
        .inputs(["a", "b"])
        .outputs(["sum", "prod", "a_again"])
        .metadata(json)
        .graph_name("two_heads");
    let sample = (
        Tensor::<2>::zeros([2, 4], &d),
        Tensor::<2>::zeros([2, 4], &d),
    );
    let c = case(
        "multi_io",
        &m,
        sample,
        |m, (a, b)| (m.fc1.forward(a.clone()) + b.clone(), a.clone() * b, a),
        &opts,
    );
    let p = c.model.proto();
    assert_eq!(
        p.metadata_props,
        vec![("prism".to_string(), json.to_string())]
    );
    assert_eq!(p.graph.name, "two_heads");
    assert_eq!(c.model.output_names(), ["sum", "prod", "a_again"]);
    check(&[c]);

    let bad = export(
        &m,
        Tensor::<2>::zeros([2, 4], &d),
        |m, x| m.fc1.forward(x),
        &ExportOptions::default().metadata("{nope"),
    );
    assert!(matches!(bad, Err(ExportError::Options(_))));
    let bad = export(
        &m,
        Tensor::<2>::zeros([2, 4], &d),
        |m, x| m.fc1.forward(x),
        &ExportOptions::default().inputs(["a", "b"]),
    );
    assert!(matches!(bad, Err(ExportError::Options(_))));
}

#[derive(Module, Debug)]
struct Tied {
    w: Param<Tensor<2>>,
    bias: Param<Tensor<1>>,
}

#[test]
fn tidy_graph_shared_weights_and_folding() {
    let d = device();
    let t = Tied {
        w: Param::from_data(
            TensorData::new((0..64).map(|i| i as f32 * 0.01).collect::<Vec<_>>(), [8, 8]),
            &d,
        ),
        bias: Param::from_data(TensorData::new(vec![0.1f32; 8], [8]), &d),
    };
    // The weight is used twice; the bias is reshaped and transposed (folded at export time).
    let f = |t: &Tied, x: Tensor<2>| {
        let w = t.w.val();
        let b = t.bias.val().reshape([1, 8]).swap_dims(0, 1).swap_dims(0, 1);
        (x.matmul(w.clone()) + b).matmul(w)
    };
    let c = case(
        "tied",
        &t,
        Tensor::<2>::zeros([3, 8], &d),
        f,
        &ExportOptions::default(),
    );
    let g = &c.model.proto().graph;
    assert_eq!(
        ops(&c.model),
        ["MatMul", "Add", "MatMul"],
        "constants folded, no identities"
    );
    let names: HashSet<_> = g.initializer.iter().map(|i| i.name.clone()).collect();
    assert_eq!(names.len(), g.initializer.len());
    assert_eq!(
        g.initializer.len(),
        2,
        "weight stored once, folded bias once"
    );
    // Every initializer is read.
    for i in &g.initializer {
        assert!(
            g.node.iter().any(|n| n.input.contains(&i.name)),
            "unused {}",
            i.name
        );
    }
    check(&[c]);
}

#[test]
fn file_size_close_to_weights() {
    let m = mlp(256, 512, 256);
    let weights = (256 * 512 + 512 + 512 * 256 + 256) * 4;
    let c = case(
        "size",
        &m,
        Tensor::<2>::zeros([1, 256], &device()),
        |m, x| m.fc2.forward(m.fc1.forward(x)),
        &ExportOptions::default(),
    );
    let size = std::fs::metadata(&c.path).unwrap().len() as f64;
    eprintln!(
        "file {size} bytes, weights {weights} bytes, overhead {:.4}%",
        (size / weights as f64 - 1.0) * 100.0
    );
    assert!(size <= weights as f64 * 1.01);
    assert_eq!(c.model.stats().initializer_bytes, weights);
    let _ = TOL;
}

#[test]
fn unsupported_op_is_named() {
    let d = device();
    let r = export(
        &NoParams,
        Tensor::<2>::zeros([2, 3], &d),
        |_, x| x.cumprod(1),
        &ExportOptions::default(),
    );
    let e = r.expect_err("cumprod has no lowering");
    let msg = e.to_string();
    assert!(msg.contains("CumProd"), "{msg}");
}

#[test]
fn library_verify_function() {
    use prism_export::verify::{python_env, PythonRunner, TractRunner};
    use prism_export::{verify, OnnxRunner, VerifyOptions};
    let d = device();
    let m = mlp(8, 16, 4);
    let f = |m: &Mlp, x: Tensor<2>| {
        m.fc2
            .forward(burn::tensor::activation::gelu(m.fc1.forward(x)))
    };
    let sample = Tensor::<2>::zeros([3, 8], &d);
    let model = export(&m, sample.clone(), f, &ExportOptions::default()).unwrap();
    let path = common::out_dir().join("verify_fn.onnx");
    model.save(&path).unwrap();
    let tract = TractRunner;
    let mut runners: Vec<Box<dyn OnnxRunner>> = vec![Box::new(tract)];
    match python_env() {
        Some(python) => runners.push(Box::new(PythonRunner {
            python,
            runtime: "ort".into(),
        })),
        None => eprintln!("SKIPPED: ONNX Runtime part of verify (no Python env)"),
    }
    let refs: Vec<&dyn OnnxRunner> = runners.iter().map(|r| r.as_ref()).collect();
    let report = verify(
        &m,
        &sample,
        f,
        &path,
        &model.input_names(),
        &model.output_names(),
        &refs,
        &VerifyOptions::default(),
    )
    .unwrap();
    eprintln!("{report}");
    assert!(report.max_rel() <= TOL);
    assert_eq!(report.errors.len(), refs.len());
}
