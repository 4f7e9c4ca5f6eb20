//! `prism quantize` as a user runs it: export rvt-tiny-synth, calibrate on a synthetic EVT 3.0
//! recording with the state carried, check `prism info` reads what was done, infer with the
//! int8 file, and refuse bad input without writing anything.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{prism, stderr, stdout};

#[test]
fn quantize_a_recurrent_export_on_a_recording_then_inspect_and_infer() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let float = path("tiny.onnx");
    let o = prism(&[
        "export",
        "onnx",
        "--model",
        "rvt-tiny-synth",
        "--out",
        &float,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stem = path("scene");
    let o = prism(&[
        "data",
        "synth",
        "--out",
        &stem,
        "--format",
        "evt3",
        "--duration-s",
        "1",
        "--seed",
        "5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let raw = format!("{stem}_td.raw");

    // The float export quantized on the recording's first `windows` windows.
    let quantize = |out: &str, windows: &str, extra: &[&str]| {
        let mut args = vec![
            "quantize",
            "--model",
            &float,
            "--calib",
            &raw,
            "--out",
            out,
            "--calib-windows",
            windows,
        ];
        args.extend_from_slice(extra);
        prism(&args)
    };
    let int8 = path("tiny.int8.onnx");
    let o = quantize(&int8, "8", &["--report"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The default (S8S8) points ONNX Runtime CPU users to uint8 activations.
    assert!(
        stderr(&o).contains("--activations uint8 runs faster"),
        "{}",
        stderr(&o)
    );
    let text = stdout(&o);
    assert!(
        text.contains("quantized 90 nodes (8 calibration windows"),
        "{text}"
    );
    assert!(
        text.contains("recurrent state") && text.contains("output head"),
        "{text}"
    );
    assert!(text.contains("SQNR per quantized node"), "{text}");
    let float_size = std::fs::metadata(&float).unwrap().len();
    let int8_size = std::fs::metadata(&int8).unwrap().len();
    assert!(int8_size * 2 < float_size, "{int8_size} vs {float_size}");

    let o = prism(&["info", "--model", &int8, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let info: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(info["spec"]["precision"], "int8");
    assert_eq!(info["spec"]["quantization"]["calibration_windows"], 8);
    assert_eq!(info["spec"]["quantization"]["method"], "percentile-99.999");
    assert_eq!(info["spec"]["state"].as_array().unwrap().len(), 8);
    let o = prism(&["info", "--model", &int8]);
    assert!(stdout(&o).contains("precision    int8"), "{}", stdout(&o));

    // The int8 file streams like the float one.
    let o = prism(&["infer", "--model", &int8, "--input", &raw]);
    assert!(o.status.success(), "{}", stderr(&o));
    for line in stdout(&o).lines() {
        let detection: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(detection["t_us"].as_i64().unwrap() <= 1_100_000, "{line}");
    }

    // uint8 activations: recorded in the metadata, and no pointer to themselves.
    let uint8 = path("tiny.u8.onnx");
    let o = quantize(&uint8, "2", &["--activations", "uint8"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !stderr(&o).contains("--activations uint8"),
        "{}",
        stderr(&o)
    );
    let o = prism(&["info", "--model", &uint8, "--json"]);
    let info: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        info["spec"]["quantization"]["activations"],
        "uint8 asymmetric"
    );

    // Bad input: a clear error, exit 1, nothing written.
    let refused = |args: &[&str], expect: &str| {
        let out = path("refused.onnx");
        let mut full = vec!["quantize", "--out", &out];
        full.extend_from_slice(args);
        let o = prism(&full);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(expect), "{args:?}: {}", stderr(&o));
        assert!(
            !std::path::Path::new(&out).exists(),
            "{args:?} wrote a file"
        );
        assert!(!std::path::Path::new(&format!("{out}.partial")).exists());
    };
    refused(&["--model", &int8, "--calib", &raw], "already quantized");
    let empty = path("empty.raw");
    std::fs::write(&empty, b"").unwrap();
    refused(&["--model", &float, "--calib", &empty], "empty.raw");
    refused(
        &["--model", &float, "--calib", &path("missing.dat")],
        "missing.dat",
    );
    refused(
        &[
            "--model",
            &float,
            "--calib",
            &raw,
            "--exclude",
            "NoSuchNode*",
        ],
        "matches no quantizable node",
    );
    let junk = path("junk.onnx");
    std::fs::write(&junk, b"\x08\x01garbage").unwrap();
    refused(&["--model", &junk, "--calib", &raw], "junk.onnx");
    refused(
        &["--model", &float, "--calib", dir.path().to_str().unwrap()],
        "train",
    );
}

#[test]
fn fp16_export_verifies_carries_its_precision_and_is_not_quantized_again() {
    let dir = tempfile::tempdir().unwrap();
    let half = dir.path().join("tiny.fp16.onnx");
    let half = half.to_str().unwrap();
    let o = prism(&[
        "export",
        "onnx",
        "--model",
        "rvt-tiny-synth",
        "--out",
        half,
        "--precision",
        "fp16",
        "--verify",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("(limit 2e-2)"), "{text}");
    let size = std::fs::metadata(half).unwrap().len();
    assert!(size < 10_000_000, "fp16 weights: {size} bytes");
    let o = prism(&["info", "--model", half]);
    assert!(stdout(&o).contains("precision    fp16"), "{}", stdout(&o));

    let stem = dir.path().join("scene");
    let stem = stem.to_str().unwrap();
    let o = prism(&["data", "synth", "--out", stem, "--duration-s", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = dir.path().join("q.onnx");
    let o = prism(&[
        "quantize",
        "--model",
        half,
        "--calib",
        &format!("{stem}_td.dat"),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("precision fp16"), "{}", stderr(&o));
    assert!(!out.exists());
}

/// A model with SSM memory (it takes each window's duration): calibration feeds the duration
/// input the card's window length, the int8 file streams at other window lengths, and the
/// fp16 export verifies against fp32 with the duration input driven.
#[test]
fn ssm_models_quantize_and_export_in_fp16() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let float = path("ssm.onnx");
    let export = |out: &str, extra: &[&str]| {
        let mut args = vec![
            "export",
            "onnx",
            "--model",
            "rvt-tiny-synth",
            "--set",
            "model.memory=ssm",
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        prism(&args)
    };
    let o = export(&float, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stem = path("scene");
    let o = prism(&["data", "synth", "--out", &stem, "--duration-s", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let recording = format!("{stem}_td.dat");

    let int8 = path("ssm.int8.onnx");
    let o = prism(&[
        "quantize",
        "--model",
        &float,
        "--calib",
        &recording,
        "--out",
        &int8,
        "--calib-windows",
        "8",
        "--report",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("8 calibration windows"), "{text}");
    assert!(text.contains("SQNR per quantized node"), "{text}");
    let o = prism(&["info", "--model", &int8]);
    assert!(stdout(&o).contains("precision    int8"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("duration     window_duration_s"),
        "{}",
        stdout(&o)
    );
    for window_ms in ["50", "20"] {
        let o = prism(&[
            "infer",
            "--model",
            &int8,
            "--input",
            &recording,
            "--window-ms",
            window_ms,
        ]);
        assert!(o.status.success(), "{window_ms} ms: {}", stderr(&o));
    }

    let half = path("ssm.fp16.onnx");
    let o = export(&half, &["--precision", "fp16", "--verify"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("(limit 2e-2)"), "{}", stdout(&o));
    let o = prism(&["info", "--model", &half]);
    assert!(stdout(&o).contains("precision    fp16"), "{}", stdout(&o));
}
