//! Importing the official rvt-tiny-gen1 checkpoint reproduces the reference PyTorch outputs:
//! decoded detections after window 0 (zero state) and window 1 (carried state), and all 8
//! LSTM states after window 1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use burn::tensor::{Device, Tensor, TensorData};
use prism_models::rvt::{import_rvt_checkpoint, RvtConfig, RvtState};

mod common;

fn npz_array(
    npz: &mut npyz::npz::NpzArchive<std::io::BufReader<std::fs::File>>,
    name: &str,
) -> (Vec<usize>, Vec<f32>) {
    let arr = npz
        .by_name(name)
        .expect("read npz")
        .unwrap_or_else(|| panic!("{name} not in npz"));
    let shape: Vec<usize> = arr.shape().iter().map(|&d| d as usize).collect();
    let descr = arr.dtype().descr();
    let data: Vec<f32> = if descr.contains("u1") {
        arr.into_vec::<u8>()
            .expect("u8")
            .into_iter()
            .map(f32::from)
            .collect()
    } else {
        arr.into_vec::<f32>().expect("f32")
    };
    (shape, data)
}

/// Error statistics: max absolute error, and max of |a-b| / (|b| + atol) with atol = 1e-3
/// (pure relative error is meaningless for values that are ~0).
fn compare(name: &str, got: &[f32], want: &[f32]) -> (f64, f64) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let mut max_abs = 0f64;
    let mut max_rel = 0f64;
    let mut max_crit = 0f64;
    for (&a, &b) in got.iter().zip(want) {
        let d = (a as f64 - b as f64).abs();
        max_abs = max_abs.max(d);
        max_rel = max_rel.max(d / ((b as f64).abs() + 1e-3));
        max_crit = max_crit.max(d / (b as f64).abs().max(1.0));
    }
    println!(
        "{name:>12}: max |a-b| = {max_abs:.3e}, max |a-b|/(|b|+1e-3) = {max_rel:.3e}, \
         max |a-b|/max(|b|,1) = {max_crit:.3e} (limit 1e-4)"
    );
    (max_abs, max_rel)
}

#[test]
fn official_checkpoint_reproduces_reference_outputs() {
    let Some(dir) = common::rvt_fixture_dir() else {
        return;
    };
    let ckpt = dir.join("rvt-tiny-gen1.ckpt");
    let device = Device::flex();
    let config = RvtConfig::preset("rvt-tiny-gen1").expect("preset");
    let model = import_rvt_checkpoint(&ckpt, &config, &device).expect("import");

    let mut npz = npyz::npz::NpzArchive::open(dir.join("rvt-tiny-gen1-io.npz")).expect("npz");
    let input = |npz: &mut _, name| {
        let (shape, data) = npz_array(npz, name);
        assert_eq!(shape, vec![1, 20, 256, 320]);
        Tensor::<4>::from_data(TensorData::new(data, shape), &device)
    };
    let x0 = input(&mut npz, "x0");
    let x1 = input(&mut npz, "x1");

    let t = std::time::Instant::now();
    let (det0, state) = model.forward_decoded(x0, RvtState::zeros(&config, 1, [256, 320], &device));
    let det0 = det0.into_data().try_into_vec::<f32>().expect("f32");
    println!("window 0 forward: {:?}", t.elapsed());
    let (det1, state) = model.forward_decoded(x1, state);
    let det1 = det1.into_data().try_into_vec::<f32>().expect("f32");

    let mut worst = (0f64, 0f64);
    let mut check = |name: &str, got: &[f32], npz: &mut _| {
        let (shape, want) = npz_array(npz, name);
        assert_eq!(got.len(), shape.iter().product::<usize>(), "{name}");
        let (a, r) = compare(name, got, &want);
        worst = (worst.0.max(a), worst.1.max(r));
        // Combined criterion: |a - b| <= 1e-4 * max(|b|, 1) (relative above 1, absolute below).
        let ok = got
            .iter()
            .zip(&want)
            .all(|(&a, &b)| (a - b).abs() <= 1e-4 * b.abs().max(1.0));
        assert!(
            ok,
            "{name} differs from the reference beyond 1e-4 * max(|b|, 1)"
        );
    };
    check("detections0", &det0, &mut npz);
    check("detections1", &det1, &mut npz);
    let names = [
        "h1_after1",
        "c1_after1",
        "h2_after1",
        "c2_after1",
        "h3_after1",
        "c3_after1",
        "h4_after1",
        "c4_after1",
    ];
    for (name, s) in names.iter().zip(state.into_flat()) {
        let v = s.into_data().try_into_vec::<f32>().expect("f32");
        check(name, &v, &mut npz);
    }
    println!("worst: max abs {:.3e}, max rel {:.3e}", worst.0, worst.1);

    // The comparison is sharp enough to tell BatchNorm eps 1e-5 (PyTorch default, used by RVT)
    // from YOLOX's training-recipe 1e-3: the latter misses the reference outputs.
    let mut wrong = config.clone();
    wrong.bn_eps = 1e-3;
    let model = import_rvt_checkpoint(&ckpt, &wrong, &device).expect("import");
    let x0 = input(&mut npz, "x0");
    let (det, _) = model.forward_decoded(x0, RvtState::zeros(&wrong, 1, [256, 320], &device));
    let det = det.into_data().try_into_vec::<f32>().expect("f32");
    let (_, want) = npz_array(&mut npz, "detections0");
    let bad = det
        .iter()
        .zip(&want)
        .any(|(&a, &b)| (a - b).abs() > 1e-4 * b.abs().max(1.0));
    assert!(bad, "bn_eps 1e-3 should not reproduce the reference");
}
