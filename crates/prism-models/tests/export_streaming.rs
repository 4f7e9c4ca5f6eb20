//! An exported RVT streams like the Burn model: ten windows step by step with the state carried
//! by each runtime itself give the same detections and states in Burn, tract and ONNX Runtime.
//! Also: the exported file carries a valid model spec, and a saved checkpoint reloads exactly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::needless_range_loop
)]

use std::path::Path;
use std::process::Command;

use burn::tensor::{Device, Tensor, TensorData};
use prism_export::verify::{compare, OnnxRunner, TractRunner};
use prism_models::onnx::{export_rvt, input_names, output_names, step, RvtExport};
use prism_models::rvt::RvtState;
use prism_models::zoo::ModelCard;

const WINDOWS: usize = 10;

/// Histogram-like input: integer counts 0..=10 from a fixed LCG.
fn histogram(card: &ModelCard, seed: u64, device: &Device) -> Tensor<4> {
    let [h, w] = card.model.input_size;
    let dims = [1, 2 * card.data.bins, h, w];
    let mut s = seed;
    let values: Vec<f32> = (0..dims.iter().product::<usize>())
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = (s >> 33) % 64;
            if r < 11 {
                r as f32
            } else {
                0.0
            }
        })
        .collect();
    Tensor::from_data(TensorData::new(values, dims), device)
}

/// The provisioned Python (for ONNX Runtime); missing is a failure under `cargo xtask test`.
fn python() -> Option<std::path::PathBuf> {
    match prism_export::verify::python_env() {
        Some(p) => Some(p),
        None if std::env::var_os("PRISM_REQUIRE_FIXTURES").is_some_and(|v| v == "1") => {
            panic!("the prism Python environment is missing (run `cargo xtask provision`)")
        }
        None => {
            eprintln!("SKIPPED: no Python environment (run `cargo xtask provision`)");
            None
        }
    }
}

fn worst(errors: &[prism_export::OutputError]) -> f64 {
    errors.iter().map(|e| e.max_rel).fold(0.0, f64::max)
}

#[test]
fn ten_windows_stream_identically_in_burn_tract_and_onnx_runtime() {
    stream_check(ModelCard::builtin("rvt-tiny-gen1").unwrap());
}

/// The research variants export and stream like the released network: the depthwise-separable
/// ConvLSTM and a four-scale FPN (a stride-4 level in the neck and head).
#[test]
fn dws_lstm_and_four_scale_fpn_stream_identically_too() {
    let card = ModelCard::builtin("rvt-tiny-synth")
        .unwrap()
        .with_overrides(&["model.memory=dws-lstm".into(), "model.fpn_scales=4".into()])
        .unwrap();
    let spec = card.model_spec(Some(1));
    assert_eq!(spec.output.strides, vec![4, 8, 16, 32]);
    assert_eq!(spec.num_anchors(), Some(32 * 40 + 16 * 20 + 8 * 10 + 4 * 5));
    let model = card.rvt_config().init(&Device::flex());
    assert!(model.backbone.stages[0]
        .lstm
        .as_ref()
        .is_some_and(|lstm| lstm.conv3x3_dws.is_some()));
    assert_eq!(model.yolox_head.stems.len(), 4);
    stream_check(card);
}

/// The SSM memory exports with its window-duration input, and the runtimes follow the duration
/// they are given: the windows alternate between 50, 20 and 100 ms.
#[test]
fn ssm_memory_streams_identically_with_varying_window_durations() {
    let card = ModelCard::builtin("rvt-tiny-synth")
        .unwrap()
        .with_overrides(&["model.memory=ssm".into()])
        .unwrap();
    let spec = card.model_spec(Some(1));
    assert_eq!(spec.duration_input.as_deref(), Some("window_duration_s"));
    assert_eq!(spec.state[0].input, "s1_re");
    assert_eq!(spec.state[1].output, "s1_im_out");
    let model = card.rvt_config().init(&Device::flex());
    assert!(model.takes_duration());
    assert!(model.backbone.stages.iter().all(|s| s.lstm.is_none()));
    stream_check(card);
}

/// Every kind of `model.attention` exports and streams like RVT's own window and grid pair.
#[test]
fn every_attention_kind_streams_identically() {
    for kind in prism_models::attention::AttentionKind::ALL {
        println!("attention = {}", kind.name());
        let card = ModelCard::builtin("rvt-tiny-synth")
            .unwrap()
            .with_overrides(&[format!("model.attention={}", kind.name())])
            .unwrap();
        let model = card.rvt_config().init(&Device::flex());
        let block = &model.backbone.stages[0].att_blocks[0].att_window;
        assert!(block.self_attn.is_none() && block.mixer.as_ref().is_some_and(|m| m.kind == kind));
        stream_check(card);
    }
}

/// The window duration fed with window `i` (seconds): 50, 20, 100 ms in turn.
fn duration(i: usize) -> f32 {
    [0.05, 0.02, 0.1][i % 3]
}

fn stream_check(card: ModelCard) {
    let device = Device::flex();
    let model = card.rvt_config().init(&device);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rvt.onnx");
    let onnx = export_rvt(&model, &card, &RvtExport::default(), &device).unwrap();
    onnx.save(&path).unwrap();
    assert_eq!(onnx.input_names(), input_names(&card));
    assert_eq!(onnx.output_names(), output_names(&card));
    let timed = card.duration_input().is_some();
    let state_names: Vec<String> = card.state_names().into_iter().map(|(i, _)| i).collect();
    let dt = |i: usize| TensorData::new(vec![duration(i)], [1, 1]);

    // Burn, carrying its state.
    let mut state =
        RvtState::zeros(&card.rvt_config(), 1, card.model.input_size, &device).into_flat();
    let mut burn_outputs = Vec::new();
    let mut inputs = Vec::new();
    for i in 0..WINDOWS {
        let x = histogram(&card, 100 + i as u64, &device);
        inputs.push(x.to_data());
        let (det, next) = if timed {
            let dt_s = Tensor::from_data(dt(i), &device);
            prism_models::onnx::timed_step(&model, (x, state, dt_s))
        } else {
            step(&model, (x, state))
        };
        let mut out = vec![det.to_data()];
        out.extend(next.iter().map(|t| t.to_data()));
        burn_outputs.push(out);
        state = next;
    }

    // tract, carrying its own state.
    let names = output_names(&card);
    let mut tract_state: Vec<(String, TensorData)> = state_names
        .iter()
        .zip(RvtState::zeros(&card.rvt_config(), 1, card.model.input_size, &device).into_flat())
        .map(|(n, t)| (n.clone(), t.to_data()))
        .collect();
    let mut errors = Vec::new();
    for (i, x) in inputs.iter().enumerate() {
        let mut feed = vec![("histogram".to_string(), x.clone())];
        feed.extend(tract_state.iter().cloned());
        if timed {
            feed.push(("window_duration_s".to_string(), dt(i)));
        }
        let out = TractRunner.run(&path, &feed).unwrap();
        for ((name, e), a) in names.iter().zip(&burn_outputs[i]).zip(&out) {
            errors.push(compare("tract", &format!("{name}@{i}"), e, a).unwrap());
        }
        tract_state = state_names
            .iter()
            .cloned()
            .zip(out[1..].iter().cloned())
            .collect();
    }
    let tract_worst = worst(&errors);
    println!("tract: worst relative error over {WINDOWS} windows {tract_worst:.2e}");
    assert!(
        tract_worst < 1e-4,
        "tract drifts from Burn: {tract_worst:e}"
    );

    // ONNX Runtime, carrying its own state (in Python, through the onnxruntime wheel).
    let Some(python) = python() else { return };
    for (i, x) in inputs.iter().enumerate() {
        prism_export::npy::write(&dir.path().join(format!("x{i}.npy")), x).unwrap();
        prism_export::npy::write(&dir.path().join(format!("dt{i}.npy")), &dt(i)).unwrap();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/stream_ort.py");
    let out = Command::new(python)
        .arg(script)
        .arg(&path)
        .arg(dir.path())
        .arg(WINDOWS.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("checker ok"));
    let mut errors = Vec::new();
    for i in 0..WINDOWS {
        let det = prism_export::npy::read(&dir.path().join(format!("ort_det{i}.npy"))).unwrap();
        errors.push(compare("ort", &format!("detections@{i}"), &burn_outputs[i][0], &det).unwrap());
        for (k, name) in state_names.iter().enumerate() {
            let s = prism_export::npy::read(&dir.path().join(format!("ort_state{i}_{name}.npy")))
                .unwrap();
            errors
                .push(compare("ort", &format!("{name}@{i}"), &burn_outputs[i][k + 1], &s).unwrap());
        }
    }
    let ort_worst = worst(&errors);
    println!("onnxruntime: worst relative error over {WINDOWS} windows {ort_worst:.2e}");
    assert!(
        ort_worst < 1e-4,
        "ONNX Runtime drifts from Burn: {ort_worst:e}"
    );
}

#[test]
fn exported_file_carries_the_model_spec() {
    let device = Device::flex();
    let card = ModelCard::builtin("rvt-tiny-synth").unwrap();
    let model = card.rvt_config().init(&device);
    let onnx = export_rvt(&model, &card, &RvtExport::default(), &device).unwrap();
    let json = onnx
        .proto()
        .metadata_props
        .iter()
        .find(|(key, _)| key == prism_core::spec::METADATA_KEY)
        .map(|(_, value)| value.clone())
        .expect("prism metadata");
    let spec = prism_core::ModelSpec::from_json(&json).unwrap();
    assert_eq!(spec, card.model_spec(Some(1)));
    assert_eq!(spec.state.len(), 8);
    assert_eq!(spec.state[7].shape, vec![1, 256, 4, 5]);
    assert_eq!(spec.num_anchors(), Some(16 * 20 + 8 * 10 + 4 * 5));
    // A tidy graph: no Loop, no shape arithmetic.
    let ops: Vec<&str> = onnx
        .proto()
        .graph
        .node
        .iter()
        .map(|n| n.op_type.as_str())
        .collect();
    for banned in ["Loop", "Shape", "Identity", "SequenceConstruct"] {
        assert!(!ops.contains(&banned), "graph holds {banned}");
    }
}

#[test]
fn checkpoint_round_trip_gives_identical_outputs() {
    let device = Device::flex();
    let card = ModelCard::builtin("rvt-tiny-synth").unwrap();
    let model = card.rvt_config().init(&device);
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    prism_models::checkpoint::save(&model, &card, &ckpt).unwrap();
    // Saving again over an existing checkpoint replaces it.
    prism_models::checkpoint::save(&model, &card, &ckpt).unwrap();
    let (card2, model2) = prism_models::checkpoint::load(&ckpt, &device).unwrap();
    assert_eq!(card, card2);
    let x = histogram(&card, 9, &device);
    let zeros = || RvtState::zeros(&card.rvt_config(), 1, card.model.input_size, &device);
    let (a, _) = model.forward(x.clone(), zeros());
    let (b, _) = model2.forward(x, zeros());
    assert_eq!(a.to_data(), b.to_data());
    let err = prism_models::checkpoint::load(dir.path(), &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a prism checkpoint"), "{err}");
}
