//! End-to-end tests of engines and detectors on small ONNX models built by Python, against
//! references computed by NumPy + onnxruntime in that script (see `common`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::*;
use prism_deploy::{
    Backend, DeployError, Engine, EngineOptions, FrameDetector, OwnedWindow, Recurrent,
    StreamDetector, TensorView, WindowDetections,
};
use prism_events::EventChunk;

fn engine(dir: &std::path::Path, file: &str, backend: Backend) -> Arc<Engine> {
    Arc::new(Engine::load(dir.join(file), &EngineOptions::new(backend)).unwrap())
}

/// Streams `events` in chunks of the given sizes (cycled), then finishes.
fn run_stream(
    detector: &mut StreamDetector,
    events: &EventChunk,
    sizes: &[usize],
) -> Vec<OwnedWindow> {
    let mut windows = Vec::new();
    let mut start = 0;
    let mut k = 0;
    while start < events.len() {
        let end = (start + sizes[k % sizes.len()]).min(events.len());
        windows.extend(
            detector
                .push_collect(events.as_slice().slice(start..end))
                .unwrap(),
        );
        start = end;
        k += 1;
    }
    windows.extend(detector.finish_collect().unwrap());
    windows
}

fn check_against_reference(windows: &[OwnedWindow], reference: &[RefWindow], what: &str) {
    assert_eq!(windows.len(), reference.len(), "{what}: window count");
    for (w, r) in windows.iter().zip(reference) {
        assert_eq!(
            (w.end_us, w.num_events),
            (r.end_us, r.events),
            "{what}: window bounds"
        );
        assert_matches_reference(
            &w.detections,
            &r.detections,
            1e-3,
            &format!("{what}, window {}", w.end_us),
        );
    }
}

#[test]
fn tract_and_ort_cpu_match_the_numpy_reference_over_a_stateful_stream() {
    let test = "tract_and_ort_cpu_match_the_numpy_reference_over_a_stateful_stream";
    let Some(dir) = fixtures(test) else { return };
    let events = events(dir);
    let reference = rvt_reference(dir);
    assert!(reference.len() >= 5 && reference.iter().all(|w| !w.detections.is_empty()));

    let mut tract = StreamDetector::new(engine(dir, "rvt_tiny.onnx", Backend::Tract)).unwrap();
    let tract_windows = run_stream(&mut tract, &events, &[4096]);
    check_against_reference(&tract_windows, &reference, "tract");

    if !ort_available(test) {
        return;
    }
    let mut ort = StreamDetector::new(engine(dir, "rvt_tiny.onnx", Backend::OrtCpu)).unwrap();
    let ort_windows = run_stream(&mut ort, &events, &[4096]);
    check_against_reference(&ort_windows, &reference, "ort-cpu");
    for (a, b) in tract_windows.iter().zip(&ort_windows) {
        assert_eq!(a.end_us, b.end_us);
        assert_same(&a.detections, &b.detections, 1e-3, "tract vs ort-cpu");
    }
}

#[test]
fn chunk_sizes_do_not_change_detections() {
    let Some(dir) = fixtures("chunk_sizes_do_not_change_detections") else {
        return;
    };
    let events = events(dir);
    let engine = engine(dir, "rvt_tiny.onnx", Backend::Tract);
    let mut whole = StreamDetector::new(engine.clone()).unwrap();
    let expected = run_stream(&mut whole, &events, &[usize::MAX]);
    for sizes in [&[1usize][..], &[7, 1, 333], &[1000, 5000, 2]] {
        let mut d = StreamDetector::new(engine.clone()).unwrap();
        assert_eq!(
            run_stream(&mut d, &events, sizes),
            expected,
            "chunk sizes {sizes:?}"
        );
    }
    // Raw slices from an application give the same windows.
    let mut d = StreamDetector::new(engine).unwrap();
    let mut got = Vec::new();
    d.push_slices(
        &events.t,
        &events.x,
        &events.y,
        &events.p,
        &mut |w: &WindowDetections<'_>| {
            got.push(OwnedWindow::from(w));
            Ok::<_, DeployError>(true)
        },
    )
    .unwrap();
    got.extend(d.finish_collect().unwrap());
    assert_eq!(got, expected);
}

#[test]
fn state_is_carried_and_reset_restores_a_fresh_sequence() {
    let Some(dir) = fixtures("state_is_carried_and_reset_restores_a_fresh_sequence") else {
        return;
    };
    let events = events(dir);
    let engine = engine(dir, "rvt_tiny.onnx", Backend::Tract);
    let mut fresh = StreamDetector::new(engine.clone()).unwrap();
    let expected = run_stream(&mut fresh, &events, &[usize::MAX]);

    // After part of another sequence and a reset, the same stream gives the same detections.
    let mut d = StreamDetector::new(engine.clone()).unwrap();
    let half = events.len() / 2;
    let first = d.push_collect(events.as_slice().slice(0..half)).unwrap();
    assert!(!first.is_empty());
    d.reset().unwrap();
    assert_eq!(run_stream(&mut d, &events, &[999]), expected);

    // The state matters: starting fresh at the third window changes its detections.
    let from = events.t.partition_point(|&t| t <= expected[1].end_us);
    let mut late = StreamDetector::new(engine).unwrap();
    let late_windows = run_stream(
        &mut late,
        &events.as_slice().slice(from..events.len()).to_chunk(),
        &[usize::MAX],
    );
    assert_eq!(late_windows[0].end_us, expected[2].end_us);
    assert_ne!(
        late_windows[0].detections, expected[2].detections,
        "zero state vs carried state"
    );
}

/// Same length and every value within `tol` (absolute below 1, relative above).
fn assert_same_values(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= tol * b.abs().max(1.0),
            "{what}: element {i} is {a}, expected {b}"
        );
    }
}

/// A deterministic input for window `w`: a different sparse pattern of counts per window.
fn pattern(len: usize, w: usize) -> Vec<f32> {
    (0..len)
        .map(|i| {
            if (i * 7 + w * 13) % 29 == 0 {
                ((i + w) % 5) as f32
            } else {
                0.0
            }
        })
        .collect()
}

/// `Recurrent` (state kept in the backend's tensors, double-buffered on ONNX Runtime) against the
/// plain `Engine::run` with the state carried by hand: same detections and same state after every
/// window, on tract and ONNX Runtime; `reset` zeroes the state and restarts the sequence.
#[test]
fn recurrent_buffers_match_engine_runs_with_the_state_carried_by_hand() {
    let test = "recurrent_buffers_match_engine_runs_with_the_state_carried_by_hand";
    let Some(dir) = fixtures(test) else { return };
    for backend in cpu_backends(test) {
        let engine = engine(dir, "rvt_tiny.onnx", backend);
        let spec = engine.spec().clone();
        let mut recurrent = Recurrent::new(engine.clone()).unwrap();
        let input_shape = recurrent.input_shape().to_vec();
        let input_len: usize = input_shape.iter().product();
        let mut carried: Vec<Vec<f32>> = spec
            .state
            .iter()
            .map(|s| vec![0.0; s.shape.iter().product()])
            .collect();
        let mut first_window = Vec::new();
        for w in 0..5 {
            let input = pattern(input_len, w);
            recurrent.input_mut().unwrap().copy_from_slice(&input);
            let got = recurrent.run().unwrap().to_vec();

            let mut views = vec![TensorView::new(&spec.input.name, &input_shape, &input)];
            views.extend(
                spec.state
                    .iter()
                    .zip(&carried)
                    .map(|(s, d)| TensorView::new(&s.input, &s.shape, d)),
            );
            let outputs = engine.run(&views).unwrap();
            let find = |name: &str| {
                outputs
                    .iter()
                    .find(|t| t.name == name)
                    .unwrap()
                    .data
                    .clone()
            };
            let expected = find(&spec.output.name);
            assert_same_values(
                &got,
                &expected,
                1e-5,
                &format!("{backend:?} window {w}: detections"),
            );
            carried = spec.state.iter().map(|s| find(&s.output)).collect();
            for (k, state) in carried.iter().enumerate() {
                assert_same_values(
                    &recurrent.state(k).unwrap(),
                    state,
                    1e-5,
                    &format!("{backend:?} window {w}: state {k}"),
                );
            }
            if w == 0 {
                first_window = got;
            }
        }
        assert!(
            carried.iter().any(|s| s.iter().any(|&v| v != 0.0)),
            "{backend:?}: the state never changed"
        );

        recurrent.reset().unwrap();
        for k in 0..spec.state.len() {
            assert!(
                recurrent.state(k).unwrap().iter().all(|&v| v == 0.0),
                "{backend:?}: state {k} after reset"
            );
        }
        recurrent
            .input_mut()
            .unwrap()
            .copy_from_slice(&pattern(input_len, 0));
        assert_eq!(
            recurrent.run().unwrap(),
            &first_window[..],
            "{backend:?}: first window after reset"
        );
    }
}

#[test]
fn detectors_share_one_engine_across_threads() {
    let Some(dir) = fixtures("detectors_share_one_engine_across_threads") else {
        return;
    };
    let events = Arc::new(events(dir));
    let engine = engine(dir, "rvt_tiny.onnx", Backend::Tract);
    let mut single = StreamDetector::new(engine.clone()).unwrap();
    let expected = run_stream(&mut single, &events, &[usize::MAX]);
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let (engine, events) = (engine.clone(), events.clone());
            std::thread::spawn(move || {
                let mut d = StreamDetector::new(engine).unwrap();
                run_stream(&mut d, &events, &[100 + 37 * i])
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), expected);
    }
}

#[test]
fn frame_detector_matches_the_reference_on_both_backends() {
    let test = "frame_detector_matches_the_reference_on_both_backends";
    let Some(dir) = fixtures(test) else { return };
    let image = f32_file(&dir.join("frame_input.bin"));
    let reference = frame_reference(dir);
    assert!(!reference.detections.is_empty());
    for backend in cpu_backends(test) {
        let mut d = FrameDetector::new(engine(dir, "frame_tiny.onnx", backend)).unwrap();
        let got = d.detect(&image, &[1, 3, 32, 32]).unwrap().to_vec();
        assert_matches_reference(&got, &reference.detections, 1e-3, backend.name());
        let err = d.detect(&image[1..], &[1, 3, 32, 32]).unwrap_err();
        assert!(
            err.to_string().contains("needs 3072 values, got 3071"),
            "{err}"
        );
    }
}

#[test]
fn engine_reads_the_spec_and_rejects_bad_inputs() {
    let test = "engine_reads_the_spec_and_rejects_bad_inputs";
    let Some(dir) = fixtures(test) else { return };
    for backend in cpu_backends(test) {
        let e = engine(dir, "rvt_tiny.onnx", backend);
        assert_eq!(e.spec().model, "rvt-tiny-test");
        let names: Vec<&str> = e.inputs().iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["histogram", "h1", "h2"]);
        let outs: Vec<&str> = e.outputs().iter().map(|i| i.name.as_str()).collect();
        assert_eq!(outs, ["detections", "h1_out", "h2_out"]);

        let hist = vec![0f32; 20 * 64 * 64];
        let (h1, h2) = (vec![0f32; 4 * 8 * 8], vec![0f32; 4 * 4 * 4]);
        let good = [
            TensorView::new("h2", &[1, 4, 4, 4], &h2),
            TensorView::new("histogram", &[1, 20, 64, 64], &hist),
            TensorView::new("h1", &[1, 4, 8, 8], &h1),
        ];
        let out = e.run(&good).unwrap();
        assert_eq!(out[0].shape, [1, 84, 7]);
        assert_eq!(out[1].shape, [1, 4, 8, 8]);

        let expect_input_err = |inputs: &[TensorView<'_>], needle: &str| match e.run(inputs) {
            Err(DeployError::Input(m)) => {
                assert!(m.contains(needle), "{backend}: `{m}` lacks `{needle}`")
            }
            other => panic!("{backend}: expected an input error with `{needle}`, got {other:?}"),
        };
        expect_input_err(&good[..2], "missing input `h1` [1, 4, 8, 8]");
        expect_input_err(
            &[
                good[0],
                TensorView::new("histogram", &[1, 20, 32, 128], &hist),
                good[2],
            ],
            "has shape [1, 20, 32, 128]; the model expects [1, 20, 64, 64]",
        );
        expect_input_err(
            &[
                good[0],
                good[1],
                good[2],
                TensorView::new("extra", &[1], &[0.0]),
            ],
            "no input `extra`",
        );
        expect_input_err(&[good[0], good[1], good[2], good[2]], "given twice");
        expect_input_err(
            &[
                good[0],
                TensorView::new("histogram", &[1, 20, 64, 64], &hist[1..]),
                good[2],
            ],
            "needs 81920 values",
        );

        // Detector / task mismatches.
        assert!(matches!(
            FrameDetector::new(e.clone()),
            Err(DeployError::Task(_))
        ));
        let frame = engine(dir, "frame_tiny.onnx", backend);
        let err = StreamDetector::new(frame).unwrap_err();
        assert!(err.to_string().contains("use FrameDetector"), "{err}");

        // Events that break the representation's rules are errors naming the event.
        let mut d = StreamDetector::new(e).unwrap();
        let err = d
            .push_slices(
                &[0, 1, 20_000],
                &[5, 120, 0],
                &[5, 5, 0],
                &[0, 1, 1],
                &mut |_: &WindowDetections<'_>| Ok::<_, DeployError>(true),
            )
            .unwrap_err();
        assert!(err.to_string().contains("outside the 120x100"), "{err}");
        let err = d
            .push_slices(
                &[0, 1],
                &[5],
                &[5, 5],
                &[0, 1],
                &mut |_: &WindowDetections<'_>| Ok::<_, DeployError>(true),
            )
            .unwrap_err();
        assert!(err.to_string().contains("differ in length"), "{err}");
    }
}

#[test]
fn bad_models_give_clear_errors() {
    let test = "bad_models_give_clear_errors";
    let Some(dir) = fixtures(test) else { return };
    let garbage = dir.join("garbage.onnx");
    std::fs::write(&garbage, b"this is not a protobuf at all").unwrap();
    for backend in cpu_backends(test) {
        let load =
            |file: &str| Engine::load(dir.join(file), &EngineOptions::new(backend)).unwrap_err();
        let err = load("no_meta.onnx");
        assert!(
            matches!(err, DeployError::NoSpec { .. }),
            "{backend}: {err}"
        );
        assert!(err.to_string().contains("no `prism` metadata"), "{err}");
        let err = load("bad_json.onnx");
        assert!(matches!(err, DeployError::Spec { .. }), "{backend}: {err}");
        let err = load("wrong_spec.onnx");
        assert!(
            err.to_string().contains("input `nope` is not in the graph"),
            "{backend}: {err}"
        );
        let err = load("missing.onnx");
        assert!(matches!(err, DeployError::Io { .. }), "{backend}: {err}");
        let err = load("garbage.onnx");
        assert!(
            matches!(err, DeployError::BadModel { .. }),
            "{backend}: {err}"
        );
    }
}

#[test]
fn gpu_backends_without_gpu_libraries_fail_clearly() {
    let test = "gpu_backends_without_gpu_libraries_fail_clearly";
    let Some(dir) = fixtures(test) else { return };
    if !ort_available(test) {
        return;
    }
    let lib = prism_deploy::engine::onnxruntime::library_path(None).unwrap();
    let gpu_wheel = lib
        .with_file_name("libonnxruntime_providers_cuda.so")
        .is_file();
    for (backend, needle) in [
        (Backend::OrtCuda, "libonnxruntime_providers_cuda.so"),
        (Backend::OrtTensorRt, "libonnxruntime_providers_tensorrt.so"),
    ] {
        match Engine::load(dir.join("rvt_tiny.onnx"), &EngineOptions::new(backend)) {
            Err(err @ DeployError::Provider { .. }) => {
                let msg = err.to_string();
                eprintln!("{backend}: {msg}");
                // With the CPU wheel the provider library itself is missing; with the GPU wheel on
                // a machine without CUDA, ORT names the CUDA library it could not load.
                assert!(gpu_wheel || msg.contains(needle), "{msg}");
                assert!(
                    msg.contains(".so"),
                    "the error names the missing library: {msg}"
                );
            }
            Err(other) => panic!("{backend}: expected a provider error, got {other}"),
            Ok(_) => eprintln!("{backend}: loaded (this machine has the GPU libraries)"),
        }
    }
}

#[test]
fn backend_names_parse() {
    for b in Backend::ALL {
        assert_eq!(b.name().parse::<Backend>().unwrap(), b);
    }
    assert_eq!("ORT-CPU".parse::<Backend>().unwrap(), Backend::OrtCpu);
    let err = "onnx".parse::<Backend>().unwrap_err();
    assert!(
        err.to_string().contains("expected one of: tract, ort-cpu"),
        "{err}"
    );
}

/// tract with its own 2-thread pool (`intra_threads`) streams the same detections as the
/// reference, and as tract on the calling thread.
#[test]
fn tract_thread_pool_gives_the_same_detections() {
    let Some(dir) = fixtures("tract_thread_pool_gives_the_same_detections") else {
        return;
    };
    let events = events(dir);
    let reference = rvt_reference(dir);
    let single = run_stream(
        &mut StreamDetector::new(engine(dir, "rvt_tiny.onnx", Backend::Tract)).unwrap(),
        &events,
        &[4096],
    );
    let options = EngineOptions {
        intra_threads: Some(2),
        ..EngineOptions::new(Backend::Tract)
    };
    let pooled = Arc::new(Engine::load(dir.join("rvt_tiny.onnx"), &options).unwrap());
    let windows = run_stream(&mut StreamDetector::new(pooled).unwrap(), &events, &[4096]);
    check_against_reference(&windows, &reference, "tract, 2 threads");
    for (a, b) in single.iter().zip(&windows) {
        assert_eq!(a.end_us, b.end_us);
        assert_same(&a.detections, &b.detections, 1e-4, "tract 1 vs 2 threads");
    }
}

#[test]
fn ort_thread_options_give_the_same_outputs() {
    let test = "ort_thread_options_give_the_same_outputs";
    let Some(dir) = fixtures(test) else { return };
    if !ort_available(test) {
        return;
    }
    let image = f32_file(&dir.join("frame_input.bin"));
    let input = [TensorView::new("image", &[1, 3, 32, 32], &image)];
    let default = engine(dir, "frame_tiny.onnx", Backend::OrtCpu)
        .run(&input)
        .unwrap();
    let options = EngineOptions {
        intra_threads: Some(1),
        inter_threads: Some(2),
        ..EngineOptions::new(Backend::OrtCpu)
    };
    let threaded = Engine::load(dir.join("frame_tiny.onnx"), &options).unwrap();
    let out = threaded.run(&input).unwrap();
    assert_eq!(out[0].shape, default[0].shape);
    for (a, b) in out[0].data.iter().zip(&default[0].data) {
        assert!((a - b).abs() <= 1e-5);
    }
    // A second library path in the same process is refused, not silently ignored.
    let other = Engine::load(
        dir.join("frame_tiny.onnx"),
        &EngineOptions {
            ort_library: Some(dir.join("frame_input.bin")),
            ..EngineOptions::new(Backend::OrtCpu)
        },
    )
    .unwrap_err();
    assert!(
        other.to_string().contains("already loaded ONNX Runtime"),
        "{other}"
    );
}

#[test]
fn engines_and_detectors_can_move_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Engine>();
    send::<StreamDetector>();
    send::<FrameDetector>();
}
