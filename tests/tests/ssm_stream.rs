//! A model with SSM memory (`model.memory = "ssm"`) deploys like any other: `Recurrent` on tract
//! and ONNX Runtime feeds the window duration it is given and matches Burn window for window,
//! and `StreamDetector` cuts windows of the length asked for and tells the model that length.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::tensor::{Device, Tensor, TensorData};
use prism_deploy::engine::{onnxruntime, Recurrent};
use prism_deploy::{Backend, Engine, EngineOptions, StreamDetector, StreamOptions};
use prism_models::rvt::{Rvt, RvtState};
use prism_models::zoo::ModelCard;

fn ssm_card() -> ModelCard {
    ModelCard::builtin("rvt-tiny-synth")
        .unwrap()
        .with_overrides(&["model.memory=ssm".into()])
        .unwrap()
}

/// A randomly initialised SSM model of `ssm_card()` and its export in `dir`.
fn exported_ssm(dir: &Path) -> (ModelCard, Rvt, PathBuf) {
    let device = Device::flex();
    let card = ssm_card();
    let model = card.rvt_config().init(&device);
    let path = dir.join("ssm.onnx");
    prism_models::onnx::export_rvt(&model, &card, &Default::default(), &device)
        .unwrap()
        .save(&path)
        .unwrap();
    (card, model, path)
}

/// Histogram-like counts 0..=10 from a fixed LCG.
fn histogram(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = (s >> 33) % 48;
            if r < 11 {
                r as f32
            } else {
                0.0
            }
        })
        .collect()
}

fn backends() -> Vec<Backend> {
    let mut backends = vec![Backend::Tract];
    if onnxruntime::library_path(None).is_ok() {
        backends.push(Backend::OrtCpu);
    } else if std::env::var_os("PRISM_REQUIRE_FIXTURES").is_some_and(|v| v == "1") {
        panic!("ONNX Runtime is not provisioned (run `cargo xtask provision`)");
    } else {
        eprintln!("SKIPPED ort-cpu: ONNX Runtime is not provisioned");
    }
    backends
}

fn relative(reference: &[f32], other: &[f32]) -> f32 {
    assert_eq!(reference.len(), other.len());
    let peak = reference.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    reference
        .iter()
        .zip(other)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
        / peak
}

#[test]
fn recurrent_feeds_the_duration_and_matches_burn() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let (card, model, path) = exported_ssm(dir.path());
    let [h, w] = card.model.input_size;
    let shape = [1, 2 * card.data.bins, h, w];
    let len: usize = shape.iter().product();
    let durations = [0.05f32, 0.02, 0.1, 0.02, 0.05];

    // Burn, window by window with these durations.
    let mut state = RvtState::zeros(&card.rvt_config(), 1, [h, w], &device);
    let mut reference = Vec::new();
    for (i, &dt) in durations.iter().enumerate() {
        let x = Tensor::<4>::from_data(TensorData::new(histogram(len, i as u64), shape), &device);
        let dt_s = Tensor::<2>::from_data(TensorData::new(vec![dt], [1, 1]), &device);
        let (raw, next) = model.forward_timed(x, state, dt_s);
        reference.push(raw.into_data().try_to_vec::<f32>().unwrap());
        state = next;
    }
    // The same windows all at 50 ms: what a runtime that ignored the duration would give.
    let mut state = RvtState::zeros(&card.rvt_config(), 1, [h, w], &device);
    let mut untimed = Vec::new();
    for i in 0..durations.len() {
        let x = Tensor::<4>::from_data(TensorData::new(histogram(len, i as u64), shape), &device);
        let (raw, next) = model.forward(x, state);
        untimed.push(raw.into_data().try_to_vec::<f32>().unwrap());
        state = next;
    }
    assert!(relative(&reference[4], &untimed[4]) > 1e-4);

    for backend in backends() {
        let engine = Arc::new(Engine::load(&path, &EngineOptions::new(backend)).unwrap());
        assert_eq!(
            engine.spec().duration_input.as_deref(),
            Some("window_duration_s")
        );
        let mut stream = Recurrent::new(engine).unwrap();
        assert!(stream.takes_duration());
        for (i, &dt) in durations.iter().enumerate() {
            stream.set_duration(dt).unwrap();
            stream
                .input_mut()
                .unwrap()
                .copy_from_slice(&histogram(len, i as u64));
            let got = stream.run().unwrap();
            let err = relative(&reference[i], got);
            assert!(
                err < 1e-4,
                "{backend}: window {i} ({dt} s) differs by {err:e}"
            );
        }
        assert!(stream.set_duration(f32::NAN).is_err());
        assert!(stream.set_duration(-1.0).is_err());
    }
}

#[test]
fn stream_detector_cuts_the_window_length_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, path) = exported_ssm(dir.path());
    let engine = Arc::new(Engine::load(&path, &EngineOptions::new(Backend::Tract)).unwrap());
    let options = StreamOptions {
        window_us: Some(20_000),
        ..StreamOptions::default()
    };
    let mut detector = StreamDetector::with_options(engine.clone(), options).unwrap();
    assert_eq!(detector.window_config().length_us, 20_000);
    let t: Vec<i64> = (0..2_000).map(|i| i * 100).collect();
    let x: Vec<u16> = (0..2_000).map(|i| (i % 160) as u16).collect();
    let y: Vec<u16> = (0..2_000).map(|i| (i % 128) as u16).collect();
    let p: Vec<u8> = (0..2_000).map(|i| (i % 2) as u8).collect();
    let events = prism_events::EventSlice {
        t: &t,
        x: &x,
        y: &y,
        p: &p,
    };
    let mut windows = detector.push_collect(events).unwrap();
    windows.extend(detector.finish_collect().unwrap());
    assert!(windows.len() >= 10, "{} windows", windows.len());
    for pair in windows.windows(2) {
        assert_eq!(pair[1].end_us - pair[0].end_us, 20_000);
    }
    let zero = StreamOptions {
        window_us: Some(0),
        ..StreamOptions::default()
    };
    assert!(StreamDetector::with_options(engine, zero).is_err());
}

/// POSTs `body` to `path` on `addr` (one request per connection); returns status and body.
fn post(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    write!(
        conn,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    conn.read_to_string(&mut raw).unwrap();
    let status = raw.split(' ').nth(1).unwrap().parse().unwrap();
    let (_, json) = raw.split_once("\r\n\r\n").unwrap();
    (status, serde_json::from_str(json).unwrap_or_default())
}

/// `prism serve`'s KServe sequence path on an SSM model: a request that leaves the duration
/// input out gets the spec's window length, one that sends it gets its own, and the answers
/// equal `Recurrent` fed the same durations; a bad duration is a 400.
#[test]
fn served_sequences_feed_the_window_duration() {
    use prism_deploy::server::{Server, ServerOptions};
    let dir = tempfile::tempdir().unwrap();
    let (card, _, path) = exported_ssm(dir.path());
    let [h, w] = card.model.input_size;
    let shape = [1, 2 * card.data.bins, h, w];
    let len: usize = shape.iter().product();
    let engine = Arc::new(Engine::load(&path, &EngineOptions::new(Backend::Tract)).unwrap());
    assert_eq!(engine.spec().default_duration_s(), 0.05);
    let server = Server::start(
        engine.clone(),
        ServerOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            grpc_addr: None,
            model_name: Some("ssm".into()),
            ..ServerOptions::default()
        },
    )
    .unwrap();
    let addr = server.local_addr();
    // None: the request leaves the duration out.
    let durations = [None, Some(0.02f32), None, Some(0.1)];
    let mut stream = Recurrent::new(engine).unwrap();
    for (i, dt) in durations.iter().enumerate() {
        let window = histogram(len, 100 + i as u64);
        let mut inputs = vec![serde_json::json!({
            "name": "histogram", "shape": shape, "datatype": "FP32", "data": window,
        })];
        if let Some(dt) = dt {
            inputs.push(serde_json::json!({
                "name": "window_duration_s", "shape": [1, 1], "datatype": "FP32", "data": [dt],
            }));
        }
        let request = serde_json::json!({
            "inputs": inputs,
            "parameters": {"sequence_id": 5, "sequence_start": i == 0},
        });
        let (status, answer) = post(addr, "/v2/models/ssm/infer", &request.to_string());
        assert_eq!(status, 200, "{answer}");
        let served: Vec<f32> = answer["outputs"][0]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        stream.set_duration(dt.unwrap_or(0.05)).unwrap();
        stream.input_mut().unwrap().copy_from_slice(&window);
        let expected = stream.run().unwrap();
        let err = relative(expected, &served);
        assert!(err < 1e-5, "window {i} ({dt:?}): {err:e}");
    }
    // The state a 100 ms window leaves differs from a 50 ms one's: the duration reached the cell.
    let window = histogram(len, 200);
    let mut answers = Vec::new();
    for dt in [0.05f32, 0.1] {
        for (i, w) in [&window, &window].into_iter().enumerate() {
            let request = serde_json::json!({
                "inputs": [
                    {"name": "histogram", "shape": shape, "datatype": "FP32", "data": w},
                    {"name": "window_duration_s", "shape": [1, 1], "datatype": "FP32", "data": [dt]},
                ],
                "parameters": {"sequence_id": "timed", "sequence_start": i == 0},
            });
            let (status, answer) = post(addr, "/v2/models/ssm/infer", &request.to_string());
            assert_eq!(status, 200, "{answer}");
            if i == 1 {
                answers.push(answer["outputs"][0]["data"].clone());
            }
        }
    }
    assert_ne!(answers[0], answers[1]);
    for bad in [-1.0f32, f32::INFINITY] {
        // JSON has no infinity: send it as the largest float's overflow.
        let value = if bad.is_finite() {
            serde_json::json!([bad])
        } else {
            serde_json::json!([1e39])
        };
        let request = serde_json::json!({
            "inputs": [
                {"name": "histogram", "shape": shape, "datatype": "FP32", "data": window},
                {"name": "window_duration_s", "shape": [1, 1], "datatype": "FP32", "data": value},
            ],
            "parameters": {"sequence_id": 9, "sequence_start": true},
        });
        let (status, answer) = post(addr, "/v2/models/ssm/infer", &request.to_string());
        assert_eq!(status, 400, "{bad}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("window duration"),
            "{answer}"
        );
    }
    server.shutdown();
}
