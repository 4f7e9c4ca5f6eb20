//! `prism bench` as a user runs it: a zoo model through export, fp16 and int8 (calibrated on a
//! synthetic scene), timed per window in child processes; a backend this machine lacks is a row
//! with the reason, never a crash.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{prism, stderr, stdout};

#[test]
fn bench_makes_each_precision_times_it_and_reports_what_could_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench");
    let o = prism(&[
        "bench",
        "--model",
        "rvt-tiny-synth",
        "--backends",
        "tract,ort-cuda",
        "--precision",
        "fp32,fp16,int8",
        "--warmup-s",
        "0",
        "--duration-s",
        "0.2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = stdout(&o);
    assert!(table.contains("| tract | fp32 |"), "{table}");

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("bench.json")).unwrap()).unwrap();
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 6);
    for row in rows {
        let (backend, precision) = (
            row["backend"].as_str().unwrap(),
            row["precision"].as_str().unwrap(),
        );
        if backend == "tract" {
            assert!(row["skipped"].is_null(), "{row}");
            let p50 = row["p50_ms"].as_f64().unwrap();
            let (min, max) = (
                row["min_ms"].as_f64().unwrap(),
                row["max_ms"].as_f64().unwrap(),
            );
            assert!(min <= p50 && p50 <= max, "{row}");
            assert!(row["timed_windows"].as_u64().unwrap() >= 10, "{row}");
            assert!(row["peak_rss_mb"].as_f64().unwrap() > 10.0, "{row}");
            assert!(row["load_first_ms"].as_f64().unwrap() > 0.0, "{row}");
        } else {
            // This machine has no CUDA: the row says why, naming the missing provider.
            let why = row["skipped"]
                .as_str()
                .unwrap_or_else(|| panic!("{backend} {precision} ran"));
            assert!(why.contains("CUDA"), "{why}");
        }
    }
    for file in [
        "bench.md",
        "bench.png",
        "models/fp32.onnx",
        "models/fp16.onnx",
        "models/int8.onnx",
    ] {
        assert!(out.join(file).exists(), "{file} missing");
    }
    let o = prism(&[
        "info",
        "--model",
        out.join("models/int8.onnx").to_str().unwrap(),
    ]);
    assert!(stdout(&o).contains("precision    int8"), "{}", stdout(&o));
}

#[test]
fn bench_refuses_unknown_precisions_and_backends() {
    let o = prism(&["bench", "--model", "rvt-tiny-synth", "--precision", "int4"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unknown precision \"int4\""),
        "{}",
        stderr(&o)
    );
    let o = prism(&["bench", "--model", "rvt-tiny-synth", "--backends", "tpu"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// Every family of the zoo benches by name: a multimodal detector (per image) and a
/// next-vector sequence model (per context), exported by `prism bench` itself.
#[test]
fn bench_takes_multimodal_and_sequence_names() {
    let dir = tempfile::tempdir().unwrap();
    for (name, says) in [
        ("mm-mit-b0-rgb", "image [1, 5, 96, 128]"),
        ("seq-mlp", "task         next-vector"),
    ] {
        let out = dir.path().join(name);
        let o = prism(&[
            "bench",
            "--model",
            name,
            "--backends",
            "tract",
            "--precision",
            "fp32,fp16",
            "--warmup-s",
            "0",
            "--duration-s",
            "0.2",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("bench.json")).unwrap())
                .unwrap();
        assert_eq!(json["model"], name);
        let rows = json["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 2, "{json}");
        for row in rows {
            assert!(row["skipped"].is_null(), "{name}: {row}");
            assert!(row["timed_windows"].as_u64().unwrap() >= 10, "{row}");
        }
        let o = prism(&[
            "info",
            "--model",
            out.join("models/fp32.onnx").to_str().unwrap(),
        ]);
        assert!(stdout(&o).contains(says), "{name}: {}", stdout(&o));
    }
}
