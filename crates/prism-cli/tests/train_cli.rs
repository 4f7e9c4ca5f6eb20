//! `prism train` / `prism eval` as a user runs them: a training process killed mid-way resumes
//! from its last checkpoint without losing or repeating a step, and the trained model scores the
//! same mAP in Burn and, exported, in tract.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::needless_range_loop
)]

mod common;

use common::prism;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// rvt-tiny on a 64x64 synthetic sensor: small enough to train for a few dozen steps in a test.
const CARD: &str = r#"
name = "rvt-cli-test"
[model]
embed_dim = 32
dim_head = 32
fpn_depth = 0.33
num_classes = 2
input_size = [64, 64]
partition_size = [2, 2]
[data]
classes = ["car", "pedestrian"]
sensor = [64, 64]
downsample = 1
window_ms = 50
bins = 2
count_cutoff = 10
[train]
batch_size = 2
seq_len = 2
lr = 2e-3
steps = 30
val_every = 0
checkpoint_every = 4
seed = 1
[dataset]
kind = "synthetic"
train_sequences = 2
val_sequences = 1
duration_s = 1.2
objects = 2
"#;

fn train_steps(run: &Path) -> Vec<u64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "train")
        .filter_map(|v| v["step"].as_u64())
        .collect()
}

#[test]
fn a_killed_training_run_resumes_and_its_model_scores_the_same_exported() {
    let dir = tempfile::tempdir().unwrap();
    let card = dir.path().join("card.toml");
    std::fs::write(&card, CARD).unwrap();
    let run = dir.path().join("run");
    let data = dir.path().join("data");
    let args = |resume: bool| {
        let mut a = vec![
            "train".to_string(),
            "--config".into(),
            card.display().to_string(),
            "--run-dir".into(),
            run.display().to_string(),
            "--data".into(),
            data.display().to_string(),
        ];
        if resume {
            a.push("--resume".into());
        }
        a
    };

    // Kill -9 once a few checkpoints have been written.
    let mut child = Command::new(env!("CARGO_BIN_EXE_prism"))
        .args(args(false))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while train_steps(&run).len() < 11 {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "training made no progress"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "training ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = train_steps(&run);

    let o = Command::new(env!("CARGO_BIN_EXE_prism"))
        .args(args(true))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    let resumed_at: u64 = out
        .split("resumed at step ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no resume line in {out}"));
    assert_eq!(resumed_at % 4, 0, "resumed from a checkpoint step");
    assert!(
        resumed_at as usize <= before.len() && before.len() as u64 - resumed_at < 8,
        "{resumed_at} vs {} logged",
        before.len()
    );
    // The log continues: steps 1..=30, each exactly once.
    assert_eq!(train_steps(&run), (1..=30).collect::<Vec<_>>());
    assert!(run.join("curves.png").is_file());

    // The best checkpoint scored in Burn and, exported, in tract: same protocol, same mAP.
    let best = run.join("checkpoints/best");
    let burn = prism(&[
        "eval",
        "--checkpoint",
        best.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        dir.path().join("burn.json").to_str().unwrap(),
    ]);
    assert!(burn.status.success(), "{}", text(&burn));
    let onnx = dir.path().join("model.onnx");
    let e = prism(&[
        "export",
        "onnx",
        "--checkpoint",
        best.to_str().unwrap(),
        "--out",
        onnx.to_str().unwrap(),
    ]);
    assert!(e.status.success(), "{}", text(&e));
    let tract = prism(&[
        "eval",
        "--model",
        onnx.to_str().unwrap(),
        "--backend",
        "tract",
        "--data",
        data.to_str().unwrap(),
        "--out",
        dir.path().join("tract.json").to_str().unwrap(),
    ]);
    assert!(tract.status.success(), "{}", text(&tract));
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.path().join(name)).unwrap()).unwrap()
    };
    let (b, t) = (read("burn.json"), read("tract.json"));
    for i in 0..12 {
        let (x, y) = (
            b["stats"][i].as_f64().unwrap(),
            t["stats"][i].as_f64().unwrap(),
        );
        assert!((x - y).abs() < 1e-3, "stat {i}: Burn {x} vs tract {y}");
    }
}

#[test]
fn eval_scores_coco_json_files_and_rejects_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let gt = dir.path().join("gt.json");
    let dt = dir.path().join("dt.json");
    std::fs::write(
        &gt,
        r#"{"images":[{"id":1}],"categories":[{"id":1,"name":"car"}],
            "annotations":[{"id":1,"image_id":1,"category_id":1,"bbox":[10,10,20,20],"area":400,"iscrowd":0}]}"#,
    )
    .unwrap();
    std::fs::write(
        &dt,
        r#"[{"image_id":1,"category_id":1,"bbox":[10,10,20,20],"score":0.9}]"#,
    )
    .unwrap();
    let o = prism(&[
        "eval",
        "--coco-gt",
        gt.to_str().unwrap(),
        "--coco-dt",
        dt.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("Average Precision"), "{}", text(&o));

    std::fs::write(
        &dt,
        r#"[{"image_id":7,"category_id":1,"bbox":[10,10,20,20],"score":0.9}]"#,
    )
    .unwrap();
    let o = prism(&[
        "eval",
        "--coco-gt",
        gt.to_str().unwrap(),
        "--coco-dt",
        dt.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains('7'),
        "the error names the unknown image: {}",
        text(&o)
    );
}

/// `prism ablate` on an RVT grid: memory cell x FPN scales, one short run each, one table; a
/// second call reads every finished run back instead of training it again.
#[test]
fn ablate_runs_an_rvt_grid_and_never_redoes_a_finished_run() {
    let dir = tempfile::tempdir().unwrap();
    let card = dir.path().join("card.toml");
    std::fs::write(&card, CARD).unwrap();
    let matrix = dir.path().join("grid.toml");
    std::fs::write(
        &matrix,
        format!(
            "base = {:?}\nseeds = [3]\nset = [\"train.steps=50\"]\n[grid]\n\
             \"model.memory\" = [\"lstm\", \"dws-lstm\"]\n\"model.fpn_scales\" = [4]\n",
            card.to_str().unwrap()
        ),
    )
    .unwrap();
    let out = dir.path().join("ablate");
    let ablate = || {
        prism(&[
            "ablate",
            "--matrix",
            matrix.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            // After the matrix's own `set`: two steps, not fifty.
            "--set",
            "train.steps=2",
        ])
    };
    let first = ablate();
    assert!(first.status.success(), "{}", text(&first));
    let table = std::fs::read_to_string(out.join("results.md")).unwrap();
    for name in ["fpn_scales=4,memory=lstm", "fpn_scales=4,memory=dws-lstm"] {
        assert!(table.contains(&format!("| {name} | 1 |")), "{table}");
    }
    assert!(out.join("results.png").is_file());
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for run in runs {
        assert_eq!(run["steps"], 2);
        assert_eq!(run["seed"], 3);
        assert!(run["latency_ms"].as_f64().unwrap() > 0.0);
        assert!(run["gflops"].as_f64().unwrap() > 0.1);
        // The export checked against Burn in tract (and ONNX Runtime where provisioned).
        let verified = run["verified"].as_array().unwrap();
        assert_eq!(verified[0][0], "tract");
        assert!(verified.iter().all(|v| v[1].as_f64().unwrap() < 1e-4));
        assert!((0.0..=1.0).contains(&run["map"].as_f64().unwrap()));
    }
    // The DWS cell adds a depthwise 3x3 (and bias) per stage: 10 C at C = 32, 64, 128, 256.
    let memory = |i: usize| runs[i]["memory_params"].as_u64().unwrap();
    let (plain, dws) = if runs[0]["name"] == "fpn_scales=4,memory=lstm" {
        (memory(0), memory(1))
    } else {
        (memory(1), memory(0))
    };
    assert_eq!(dws - plain, 4_800);

    let again = ablate();
    assert!(again.status.success(), "{}", text(&again));
    assert!(!text(&again).contains("[1/2]"), "{}", text(&again));
    assert_eq!(
        std::fs::read_to_string(out.join("results.md")).unwrap(),
        table
    );
}

/// `prism ablate --executor slurm` on an RVT grid, against the one-node Slurm that `cargo xtask
/// test` provisions (`SLURM_CONF`): the parent makes the scenes (also those cut at each
/// `eval_window_ms` length) before the job array starts, every task trains one run into the
/// shared folder, and the table equals the local executor's run for run.
#[test]
fn an_rvt_grid_over_slurm_gives_the_local_results() {
    let Some(conf) = common::slurm_conf() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let card = dir.path().join("card.toml");
    std::fs::write(&card, CARD).unwrap();
    let matrix = dir.path().join("grid.toml");
    std::fs::write(
        &matrix,
        format!(
            "base = {:?}\nseeds = [3]\nset = [\"train.steps=2\"]\neval_window_ms = [50, 100]\n\
             [grid]\n\"model.memory\" = [\"lstm\", \"ssm\"]\n",
            card.to_str().unwrap()
        ),
    )
    .unwrap();
    let ablate = |out: &str, executor: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_prism"))
            .args(["ablate", "--matrix", matrix.to_str().unwrap(), "--out"])
            .arg(dir.path().join(out))
            .args(["--executor", executor, "--poll-s", "0.5"])
            .env("SLURM_CONF", &conf)
            .output()
            .unwrap();
        assert!(o.status.success(), "{executor}: {}", text(&o));
        text(&o)
    };
    ablate("local", "local");
    let log = ablate("slurm", "slurm");
    assert!(log.contains("phase 1: submitted job array"), "{log}");
    let runs = |out: &str| -> Vec<serde_json::Value> {
        let json: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join(out).join("results.json")).unwrap(),
        )
        .unwrap();
        json["runs"].as_array().unwrap().clone()
    };
    let (local, slurm) = (runs("local"), runs("slurm"));
    assert_eq!(local.len(), 2, "{local:?}");
    assert_eq!(slurm.len(), 2, "{slurm:?}");
    for (a, b) in local.iter().zip(&slurm) {
        assert_eq!(a["id"], b["id"]);
        assert_eq!(b["steps"], 2);
        for key in ["map", "ap50", "params"] {
            let (x, y) = (a[key].as_f64().unwrap(), b[key].as_f64().unwrap());
            assert!(
                (x - y).abs() < 1e-3,
                "{}: {key} local {x} vs slurm {y}",
                a["id"]
            );
        }
        let windows = |r: &serde_json::Value| -> Vec<(u64, f64)> {
            r["window_map"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| (w["window_ms"].as_u64().unwrap(), w["map"].as_f64().unwrap()))
                .collect()
        };
        let (wa, wb) = (windows(a), windows(b));
        assert_eq!(wa.iter().map(|w| w.0).collect::<Vec<_>>(), [50, 100]);
        for (x, y) in wa.iter().zip(&wb) {
            assert_eq!(x.0, y.0);
            assert!((x.1 - y.1).abs() < 1e-3, "{}: {x:?} vs {y:?}", a["id"]);
        }
    }
    // One log per task beside the array's script.
    let logs: Vec<String> = std::fs::read_dir(dir.path().join("slurm/slurm"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        logs.iter().filter(|n| n.ends_with(".out")).count(),
        2,
        "{logs:?}"
    );
    // A grid that would change the data between runs is refused before anything runs.
    std::fs::write(
        &matrix,
        format!(
            "base = {:?}\n[grid]\n\"data.bins\" = [2, 4]\n",
            card.to_str().unwrap()
        ),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_prism"))
        .args(["ablate", "--matrix", matrix.to_str().unwrap(), "--out"])
        .arg(dir.path().join("bad"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("changes the data"), "{}", text(&o));
    assert!(!dir.path().join("bad/runs").exists());
}

/// A Gen1-sized rvt-tiny variant (fewer channels) that trains on prepared data.
const GEN1_PREPARED_CARD: &str = r#"
name = "rvt-rvt-layout-test"
[model]
embed_dim = 16
dim_head = 16
fpn_depth = 0.33
num_classes = 2
input_size = [256, 320]
partition_size = [8, 10]
[data]
classes = ["car", "pedestrian"]
sensor = [304, 240]
downsample = 1
window_ms = 50
bins = 10
count_cutoff = 10
[train]
batch_size = 1
seq_len = 2
lr = 1e-3
steps = 2
val_every = 0
checkpoint_every = 2
seed = 1
[dataset]
kind = "prepared"
eval_filter = "gen1"
"#;

/// `prism train` and `prism eval` on a dataset written by RVT's own preprocessing (the
/// prism-data fixture), read as it is: no `prism data prepare` first.
#[test]
fn train_and_eval_run_on_rvt_preprocessed_folders() {
    let dir = tempfile::tempdir().unwrap();
    let card = dir.path().join("card.toml");
    std::fs::write(&card, GEN1_PREPARED_CARD).unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../prism-data/tests/fixtures/rvt-preprocessed/gen1");
    let run = dir.path().join("run");
    let o = prism(&[
        "train",
        "--config",
        card.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("1 train sequences (15 windows), 1 val sequences"),
        "{}",
        text(&o)
    );
    assert_eq!(train_steps(&run), vec![1, 2]);
    let eval_out = dir.path().join("eval.json");
    let o = prism(&[
        "eval",
        "--checkpoint",
        run.join("checkpoints/last").to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        eval_out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&eval_out).unwrap()).unwrap();
    assert_eq!(
        report["stats"].as_array().map(Vec::len),
        Some(12),
        "{report}"
    );

    // A damaged RVT folder is an error that names the file.
    let broken = dir.path().join("broken");
    for split in ["train", "val"] {
        let from = data.join(split);
        let to = broken.join(split);
        copy_dir(&from, &to);
    }
    let h5 = broken.join(
        "train/seq_a/event_representations_v2/stacked_histogram_dt=50_nbins=10/event_representations.h5",
    );
    let bytes = std::fs::read(&h5).unwrap();
    std::fs::write(&h5, &bytes[..bytes.len() / 3]).unwrap();
    let o = prism(&[
        "train",
        "--config",
        card.to_str().unwrap(),
        "--data",
        broken.to_str().unwrap(),
        "--run-dir",
        dir.path().join("run2").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("event_representations.h5") && text(&o).contains("RVT preprocessed data"),
        "{}",
        text(&o)
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
