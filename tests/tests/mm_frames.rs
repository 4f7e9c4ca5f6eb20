//! The RGB + thermal + event detector across crates: built in Burn (prism-models), exported with
//! its frame-detection spec, then run by prism-deploy's `FrameDetector` in tract and ONNX
//! Runtime: the same raw outputs as Burn within 1e-4, and the same detections after the shared
//! post-processing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use burn::tensor::{Device, Distribution, Tensor};
use prism_core::Detection;
use prism_deploy::engine::onnxruntime;
use prism_deploy::postprocess::Postprocessor;
use prism_deploy::{Backend, Engine, EngineOptions, FrameDetector};
use prism_models::mm::MmDetectorConfig;
use prism_models::onnx::{export_mm, mm_model_spec};

const SIZE: [usize; 2] = [96, 128];

/// The same detections, in any order: random weights give hundreds of boxes whose scores tie
/// to within the backends' rounding, so their order after sorting by score is not a property
/// of either backend (an AVX2-only CPU swapped some that an AVX-512 one did not).
fn same(a: &[Detection], b: &[Detection]) -> bool {
    let close = |x: &Detection, y: &Detection| {
        x.class_id == y.class_id
            && (x.score - y.score).abs() < 1e-4
            && (x.bbox.x1 - y.bbox.x1).abs() < 1e-2
            && (x.bbox.y2 - y.bbox.y2).abs() < 1e-2
    };
    let mut unmatched: Vec<&Detection> = b.iter().collect();
    a.len() == b.len()
        && a.iter()
            .all(|x| match unmatched.iter().position(|y| close(x, y)) {
                Some(k) => {
                    unmatched.swap_remove(k);
                    true
                }
                None => false,
            })
}

#[test]
fn fused_detectors_run_in_frame_detector_on_tract_and_onnx_runtime() {
    let device = Device::flex();
    // Seeded: random weights and images, the same every run (ties in the detections' order
    // would otherwise make a comparison depend on the draw).
    device.seed(7);
    let classes = vec!["person".to_string(), "car".to_string()];
    let ort = onnxruntime::library_path(None).is_ok();
    if !ort && std::env::var_os("PRISM_REQUIRE_FIXTURES").is_some_and(|v| v == "1") {
        panic!("ONNX Runtime is missing (cargo xtask provision)");
    }
    let dir = tempfile::tempdir().unwrap();
    for name in ["mm-mit-b0-cssa-s3", "mm-mit-b0-gaff-s23", "mm-mit-b0-early"] {
        // Biases at 0.5 rather than YOLOX's 0.01, so untrained weights give detections to compare.
        let config = MmDetectorConfig::from_name(name, classes.len())
            .unwrap()
            .with_prior(0.5);
        let model = config.init(&device).unwrap();
        let file = dir.path().join(format!("{name}.onnx"));
        export_mm(&model, name, &classes, SIZE, false, &device)
            .unwrap()
            .save(&file)
            .unwrap();
        let [h, w] = SIZE;
        let image = Tensor::<4>::random([1, 5, h, w], Distribution::Uniform(0.0, 1.0), &device);
        let pixels: Vec<f32> = image.clone().into_data().try_into_vec::<f32>().unwrap();
        let raw: Vec<f32> = model
            .forward(image)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let spec = mm_model_spec(name, &classes, SIZE, Some(1));
        let mut post = Postprocessor::new(&spec, 1.0, (w as f32, h as f32)).unwrap();
        let want = post.run(&raw).unwrap().to_vec();
        assert!(!want.is_empty(), "{name}: no detections to compare");
        let mut backends = vec![Backend::Tract];
        if ort {
            backends.push(Backend::OrtCpu);
        }
        for backend in backends {
            let engine = Arc::new(Engine::load(&file, &EngineOptions::new(backend)).unwrap());
            assert_eq!(engine.spec().classes, classes);
            let mut detector = FrameDetector::new(engine).unwrap();
            let got = detector.detect(&pixels, &[1, 5, h, w]).unwrap();
            assert!(
                same(&want, got),
                "{name} {backend:?}: {} detections against Burn's {}",
                got.len(),
                want.len()
            );
        }
    }
}

/// `prism export onnx --dynamic-batch` of a fused detector: a batch of three images gives Burn's
/// rows for each image, in tract and ONNX Runtime (what the server's dynamic batching relies on).
/// At 256 x 320 some of MiT's `Linear` layers fold the batch into their rows at batch 2 and not
/// at batch 3, so the exporter's captures at those batches differ: it takes the next pair, and
/// the file still gives every image its rows at a batch it never captured. (One test: both
/// seed the device's generator.)
#[test]
fn a_dynamic_batch_export_gives_every_image_its_own_rows() {
    dynamic_batch_rows(SIZE, 3);
    dynamic_batch_rows([256, 320], 2);
}

fn dynamic_batch_rows(size: [usize; 2], batch: usize) {
    let device = Device::flex();
    // Seeded: random weights and images, the same every run (ties in the detections' order
    // would otherwise make a comparison depend on the draw).
    device.seed(7);
    let classes = vec!["person".to_string(), "car".to_string()];
    let name = "mm-mit-b0-cssa-s3";
    let model = MmDetectorConfig::from_name(name, classes.len())
        .unwrap()
        .init(&device)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dynamic.onnx");
    export_mm(&model, name, &classes, size, true, &device)
        .unwrap()
        .save(&file)
        .unwrap();
    let [h, w] = size;
    let images = Tensor::<4>::random([batch, 5, h, w], Distribution::Uniform(0.0, 1.0), &device);
    let pixels: Vec<f32> = images.clone().into_data().try_into_vec::<f32>().unwrap();
    // Burn, one image at a time.
    let want: Vec<f32> = (0..batch)
        .flat_map(|i| {
            model
                .forward(images.clone().narrow(0, i, 1))
                .into_data()
                .try_into_vec::<f32>()
                .unwrap()
        })
        .collect();
    let mut backends = vec![Backend::Tract];
    if onnxruntime::library_path(None).is_ok() {
        backends.push(Backend::OrtCpu);
    }
    for backend in backends {
        let engine = Engine::load(&file, &EngineOptions::new(backend)).unwrap();
        assert_eq!(engine.inputs()[0].shape[0], None, "a dynamic batch axis");
        let out = engine
            .run(&[prism_deploy::TensorView {
                name: "image",
                shape: &[batch, 5, h, w],
                data: &pixels,
            }])
            .unwrap();
        assert_eq!(out[0].shape[0], batch);
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let gap = out[0]
            .data
            .iter()
            .zip(&want)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            gap <= 1e-4 * scale,
            "{backend:?}: gap {gap} on outputs up to {scale}"
        );
    }
}
