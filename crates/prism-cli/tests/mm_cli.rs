//! The RGB + thermal + event detector through the whole pipeline as a user runs it:
//! `prism train` on synthetic scenes, `prism eval` per split in Burn and, exported, in tract
//! (the same scores), `prism export onnx --verify`, `prism infer --render`, and `prism ablate`
//! end to end: phase 2 chosen from phase 1, one results table, and a rerun that trains nothing
//! finished while a lost result is redone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{prism, stderr, stdout};
use std::path::Path;

/// mm-mit-b0-cssa-s3 at 64x64 on twelve 64x48 scenes: a few steps fit in a test.
const CARD: &str = r#"
name = "mm-mit-b0-cssa-s3"
[model]
num_classes = 2
input_size = [64, 64]
[data]
classes = ["person", "car"]
[train]
batch_size = 2
accumulate = 2
lr = 2e-3
steps = 3
val_every = 0
checkpoint_every = 2
seed = 1
[dataset]
kind = "synthetic"
images = 12
size = [64, 48]
seed = 3
"#;

fn ok(o: &std::process::Output) -> String {
    let text = format!("{}{}", stdout(o), stderr(o));
    assert!(o.status.success(), "{text}");
    text
}

fn split_map(json: &Path, split: &str) -> f64 {
    let rows: serde_json::Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["split"] == split)
        .map(|r| r["metrics"]["stats"][0].as_f64().unwrap())
        .unwrap()
}

#[test]
fn train_eval_export_infer_and_ablate_a_multimodal_detector() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(p("card.toml"), CARD).unwrap();

    let out = ok(&prism(&[
        "train",
        "--config",
        &p("card.toml"),
        "--run-dir",
        &p("run"),
        "--data",
        &p("data"),
    ]));
    assert!(out.contains("trained 3 / 3 steps"), "{out}");
    let ckpt = p("run/checkpoints/last");

    let out = ok(&prism(&[
        "eval",
        "--checkpoint",
        &ckpt,
        "--data",
        &p("data"),
        "--out",
        &p("burn.json"),
    ]));
    for split in ["val", "daytest", "nighttest"] {
        assert!(out.lines().any(|l| l.starts_with(split)), "{split}: {out}");
    }

    let out = ok(&prism(&[
        "export",
        "onnx",
        "--checkpoint",
        &ckpt,
        "--out",
        &p("mm.onnx"),
        "--verify",
    ]));
    assert!(out.contains("verified"), "{out}");
    ok(&prism(&[
        "eval",
        "--model",
        &p("mm.onnx"),
        "--backend",
        "tract",
        "--data",
        &p("data"),
        "--split",
        "nighttest",
        "--out",
        &p("tract.json"),
    ]));
    let (burn, tract) = (
        split_map(&dir.path().join("burn.json"), "nighttest"),
        split_map(&dir.path().join("tract.json"), "nighttest"),
    );
    assert!((burn - tract).abs() < 1e-3, "Burn {burn} vs tract {tract}");

    let out = ok(&prism(&[
        "infer",
        "--model",
        &p("mm.onnx"),
        "--input",
        &p("data/nighttest"),
        "--render",
        &p("frames"),
        "--out",
        &p("dets.jsonl"),
    ]));
    let images = std::fs::read_dir(dir.path().join("data/nighttest/images"))
        .unwrap()
        .count();
    let frames = std::fs::read_dir(dir.path().join("frames"))
        .unwrap()
        .count();
    assert_eq!(frames, images, "{out}");
    for line in std::fs::read_to_string(p("dets.jsonl")).unwrap().lines() {
        let d: serde_json::Value = serde_json::from_str(line).unwrap();
        let (x2, y2) = (d["x2"].as_f64().unwrap(), d["y2"].as_f64().unwrap());
        assert!(
            x2 <= 64.0 && y2 <= 48.0,
            "boxes are in image pixels: {line}"
        );
    }

    served_output_equals_tract(
        &dir.path().join("mm.onnx"),
        &dir.path().join("data/nighttest"),
    );

    // INT8 calibrated on the dataset's training images, scored like the float model; and
    // `prism bench` over both precisions with mAP.
    let out = ok(&prism(&[
        "quantize",
        "--model",
        &p("mm.onnx"),
        "--calib",
        &p("data"),
        "--out",
        &p("mm.int8.onnx"),
    ]));
    assert!(out.contains("quantized"), "{out}");
    ok(&prism(&[
        "eval",
        "--model",
        &p("mm.int8.onnx"),
        "--data",
        &p("data"),
        "--split",
        "val",
    ]));
    ok(&prism(&[
        "bench",
        "--model",
        &p("mm.onnx"),
        "--backends",
        "tract",
        "--precision",
        "fp32,int8",
        "--duration-s",
        "0.3",
        "--warmup-s",
        "0.1",
        "--data",
        &p("data"),
        "--out",
        &p("bench"),
    ]));
    let bench: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p("bench/bench.json")).unwrap()).unwrap();
    let rows = bench["rows"].as_array().expect("bench.json rows");
    assert_eq!(rows.len(), 2, "{bench}");
    for row in rows {
        assert!(row["map"].as_f64().is_some(), "{row}");
    }

    // A wrong dataset is refused by name.
    std::fs::write(dir.path().join("data/classes.txt"), "cat\ndog\n").unwrap();
    let o = prism(&["eval", "--checkpoint", &ckpt, "--data", &p("data")]);
    assert!(
        !o.status.success() && stderr(&o).contains("classes.txt"),
        "{}",
        stderr(&o)
    );

    // The ablation: a baseline and one CSSA stage set, then phase 2 on the best.
    let matrix = format!(
        r#"
base = "{}"
backbones = ["mit-b0"]
seeds = [0]
set = ["train.steps=2", "train.accumulate=1"]
baselines = ["rgb"]
[phase1]
cssa = ["3"]
[phase2]
cssa_top_k = 1
cssa_threshold = [0.3]
"#,
        p("card.toml")
    );
    std::fs::write(p("matrix.toml"), matrix).unwrap();
    let ablate = || {
        prism(&[
            "ablate",
            "--matrix",
            &p("matrix.toml"),
            "--out",
            &p("ablate"),
        ])
    };
    let out = ok(&ablate());
    let table = std::fs::read_to_string(p("ablate/results.md")).unwrap();
    for name in [
        "mm-mit-b0-rgb",
        "mm-mit-b0-cssa-s3 ",
        "mm-mit-b0-cssa-s3-t0.3",
    ] {
        assert!(table.contains(name), "{name}: {table}\n{out}");
    }
    assert!(dir.path().join("ablate/results.png").is_file());
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p("ablate/results.json")).unwrap()).unwrap();
    assert_eq!(json["runs"].as_array().unwrap().len(), 3);
    assert!(json["rows"][1]["fusion_params"].as_u64().unwrap() > 0);
    assert_eq!(json["rows"][0]["fusion_params"].as_u64().unwrap(), 0);

    // A rerun trains nothing; a lost result is redone from the run's last checkpoint.
    let started = |o: &std::process::Output| -> Vec<String> {
        stderr(o)
            .lines()
            .filter(|l| l.starts_with('['))
            .map(String::from)
            .collect()
    };
    let o = ablate();
    ok(&o);
    assert!(started(&o).is_empty(), "{:?}", started(&o));
    std::fs::remove_file(p("ablate/runs/mm-mit-b0-rgb-seed0/result.json")).unwrap();
    let o = ablate();
    ok(&o);
    assert_eq!(started(&o), vec!["[1/2] mm-mit-b0-rgb-seed0".to_string()]);
    assert!(dir
        .path()
        .join("ablate/runs/mm-mit-b0-rgb-seed0/result.json")
        .is_file());
}

/// `--executor slurm` against the one-node Slurm that `cargo xtask test` provisions
/// (`SLURM_CONF`): each phase goes in as a job array, the tasks train into the shared run folder
/// and the report equals the local executor's, run for run.
#[test]
fn ablate_over_slurm_gives_the_local_results() {
    let Some(conf) = common::slurm_conf() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(p("card.toml"), CARD).unwrap();
    let matrix = format!(
        r#"
base = "{}"
backbones = ["mit-b0"]
seeds = [0]
set = ["train.steps=2", "train.accumulate=1"]
baselines = ["rgb"]
[phase1]
cssa = ["3"]
gaff = ["3"]
[phase2]
cssa_top_k = 1
cssa_threshold = [0.7]
"#,
        p("card.toml")
    );
    std::fs::write(p("matrix.toml"), matrix).unwrap();
    let ablate = |out: &str, executor: &str| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_prism"))
            .args([
                "ablate",
                "--matrix",
                &p("matrix.toml"),
                "--out",
                &p(out),
                "--data",
                &p("data"),
            ])
            .args(["--executor", executor, "--poll-s", "0.5"])
            .env("SLURM_CONF", &conf)
            .output()
            .unwrap();
        ok(&o)
    };
    ablate("local", "local");
    let out = ablate("slurm", "slurm");
    assert!(out.contains("phase 1: submitted job array"), "{out}");
    assert!(out.contains("phase 2: submitted job array"), "{out}");
    let runs = |out: &str| -> Vec<(String, f64)> {
        let json: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join(out).join("results.json")).unwrap(),
        )
        .unwrap();
        json["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap().to_string(),
                    r["splits"][0]["map"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let (local, slurm) = (runs("local"), runs("slurm"));
    assert_eq!(local.len(), 4, "{local:?}");
    assert_eq!(
        local.iter().map(|r| &r.0).collect::<Vec<_>>(),
        slurm.iter().map(|r| &r.0).collect::<Vec<_>>()
    );
    for ((id, a), (_, b)) in local.iter().zip(&slurm) {
        assert!((a - b).abs() < 1e-3, "{id}: local {a} vs slurm {b}");
    }
    // Each task wrote its log beside the run folder.
    let logs = std::fs::read_dir(dir.path().join("slurm/slurm"))
        .unwrap()
        .count();
    assert!(logs >= 4 + 2, "{logs} files in the slurm folder");
}

/// `prism serve` on the export answers a KServe v2 request for one letterboxed night image with
/// the tensor tract computes for it.
fn served_output_equals_tract(model: &Path, images: &Path) {
    use prism_deploy::engine::{Backend, Engine, EngineOptions, TensorView};
    let first = std::fs::read_dir(images.join("images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let image = prism_data::multimodal::read_image(&first).unwrap();
    let (input, _) = prism_train::frame_eval::frame_input(&image, [64, 64]);
    let shape = [1usize, 5, 64, 64];
    let engine = Engine::load(model, &EngineOptions::new(Backend::Tract)).unwrap();
    let expected = engine
        .run(&[TensorView::new("image", &shape, &input)])
        .unwrap()
        .remove(0)
        .data;

    let (mut child, addr) = common::serve(model);
    let body = serde_json::json!({"inputs": [{
        "name": "image", "shape": shape, "datatype": "FP32", "data": input,
    }]})
    .to_string();
    let raw = common::http(
        &addr,
        "POST",
        "/v2/models/mm-mit-b0-cssa-s3/infer",
        Some(&body),
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let (head, json) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.contains(" 200 "), "{raw}");
    let reply: serde_json::Value = serde_json::from_str(json).unwrap();
    let got: Vec<f64> = reply["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(got.len(), expected.len());
    for (a, b) in got.iter().zip(&expected) {
        assert!(
            (a - f64::from(*b)).abs() <= 1e-5 * a.abs().max(1.0),
            "{a} vs {b}"
        );
    }
}
