//! The next-vector sequence models through the whole pipeline as a user runs it, on a synthetic
//! corpus: `prism data synth-seq`, `prism train` (cosine and InfoNCE; an interrupted run resumed
//! gives the uninterrupted run's epochs), `prism eval` of the checkpoint and of the export (the
//! same scores, and far better than the last-vector baseline), `prism export onnx --verify` in
//! tract and ONNX Runtime, `prism info` and `prism infer`, and `prism serve` answering a KServe v2
//! request with the vectors `prism infer` computes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{prism, stderr, stdout};
use std::path::Path;

fn ok(o: &std::process::Output) -> String {
    let text = format!("{}{}", stdout(o), stderr(o));
    assert!(o.status.success(), "{text}");
    text
}

/// Small versions of the shipped cards: 16-wide vectors, a few epochs.
fn overrides(arch: &str) -> Vec<String> {
    let mut o = vec![
        "model.dim=16".to_string(),
        "model.hidden=32".into(),
        "train.epochs=4".into(),
        "train.batch_size=32".into(),
        "train.lr=3e-3".into(),
    ];
    if arch == "transformer" {
        o.extend(["model.heads=4".into(), "model.feedforward=64".into()]);
        o.push("model.layers=2".into());
        o.push("train.loss=\"infonce\"".into());
    }
    o
}

fn train(card: &str, data: &str, run: &str, extra: &[&str]) -> String {
    let arch = card.trim_start_matches("seq-");
    let sets = overrides(arch);
    let mut args = vec!["train", "--config", card, "--data", data, "--run-dir", run];
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    args.extend(extra);
    ok(&prism(&args))
}

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn train_eval_export_infer_and_serve_every_sequence_model() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    let out = ok(&prism(&[
        "data",
        "synth-seq",
        "--out",
        &p("corpus"),
        "--dim",
        "16",
        "--documents",
        "30",
    ]));
    assert!(out.contains("30 documents"), "{out}");
    let require_ort = std::env::var_os("PRISM_REQUIRE_FIXTURES").is_some();

    for card in ["seq-mlp", "seq-lstm", "seq-transformer"] {
        let run = p(card);
        let out = train(card, &p("corpus"), &run, &[]);
        assert!(out.contains("trained 4 / 4 epochs"), "{out}");
        assert!(dir.path().join(card).join("curves.png").is_file());
        let best = format!("{run}/checkpoints/best");

        let onnx = p(&format!("{card}.onnx"));
        let out = ok(&prism(&[
            "export",
            "onnx",
            "--checkpoint",
            &best,
            "--out",
            &onnx,
            "--dynamic-batch",
            "--verify",
        ]));
        assert!(out.contains("verified"), "{out}");
        if require_ort {
            assert!(out.contains("tract and ort-cpu"), "{out}");
        }
        let info = ok(&prism(&["info", "--model", &onnx]));
        assert!(info.contains("task         next-vector"), "{info}");
        assert!(!info.contains("classes"), "{info}");

        let burn_json = p(&format!("{card}-burn.json"));
        let tract_json = p(&format!("{card}-tract.json"));
        ok(&prism(&[
            "eval",
            "--checkpoint",
            &best,
            "--data",
            &p("corpus"),
            "--out",
            &burn_json,
        ]));
        ok(&prism(&[
            "eval",
            "--model",
            &onnx,
            "--data",
            &p("corpus"),
            "--out",
            &tract_json,
        ]));
        let (burn, tract) = (
            report(Path::new(&burn_json)),
            report(Path::new(&tract_json)),
        );
        let cos = |r: &serde_json::Value| r["retrieval"]["mean_cosine"].as_f64().unwrap();
        assert!((cos(&burn) - cos(&tract)).abs() < 1e-4, "{burn} vs {tract}");
        assert_eq!(
            burn["retrieval"]["median_rank"],
            tract["retrieval"]["median_rank"]
        );
        // The synthetic process depends on the last two vectors: copying the last one scores
        // near zero, a trained model does far better.
        let baseline = burn["last_vector_baseline"]["mean_cosine"]
            .as_f64()
            .unwrap();
        assert!(cos(&burn) > baseline + 0.2, "{card}: {burn}");
        let recall = burn["retrieval"]["recall_at_10"].as_f64().unwrap();
        let base_recall = burn["last_vector_baseline"]["recall_at_10"]
            .as_f64()
            .unwrap();
        assert!(recall > base_recall, "{card}: {burn}");

        served_vectors_equal_infer(dir.path(), Path::new(&onnx), card);
    }
}

#[test]
fn an_interrupted_run_resumes_to_the_same_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    ok(&prism(&[
        "data",
        "synth-seq",
        "--out",
        &p("corpus"),
        "--dim",
        "16",
        "--documents",
        "12",
    ]));
    train("seq-lstm", &p("corpus"), &p("whole"), &[]);
    let out = train(
        "seq-lstm",
        &p("corpus"),
        &p("parts"),
        &["--stop-after", "2"],
    );
    assert!(out.contains("trained 2 / 4 epochs"), "{out}");
    let out = train("seq-lstm", &p("corpus"), &p("parts"), &["--resume"]);
    assert!(out.contains("resumed after epoch 2"), "{out}");
    let epochs = |run: &str| -> Vec<(f64, f64)> {
        std::fs::read_to_string(dir.path().join(run).join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["train_loss"].as_f64().unwrap(),
                    v["val_cosine"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let (whole, parts) = (epochs("whole"), epochs("parts"));
    assert_eq!(whole.len(), 4);
    assert_eq!(whole, parts, "a resumed run trains the same epochs");

    // Bad input is refused with a message that says what is wrong.
    let out = prism(&[
        "train",
        "--config",
        "seq-mlp",
        "--data",
        &p("corpus"),
        "--run-dir",
        &p("wrong-width"),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("model.dim=16"), "{}", stderr(&out));
    let out = prism(&["data", "synth-seq", "--out", &p("x"), "--documents", "1"]);
    assert!(!out.status.success(), "one document cannot be split");
    std::fs::write(dir.path().join("corpus/documents.npy"), b"not npy").unwrap();
    let out = prism(&[
        "train",
        "--config",
        "seq-mlp",
        "--data",
        &p("corpus"),
        "--set",
        "model.dim=16",
        "--run-dir",
        &p("broken"),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("documents.npy"), "{}", stderr(&out));
}

/// `train.precision = "bf16" | "fp16"` on a sequence model: the same epochs as float32 within
/// half precision's reach, fp16 with its loss scale in `metrics.jsonl`.
#[test]
fn sequence_models_train_in_bf16_and_fp16() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    ok(&prism(&[
        "data",
        "synth-seq",
        "--out",
        &p("corpus"),
        "--dim",
        "16",
        "--documents",
        "12",
    ]));
    let epochs = |run: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.path().join(run).join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    train("seq-lstm", &p("corpus"), &p("fp32"), &[]);
    let full = epochs("fp32");
    for precision in ["bf16", "fp16"] {
        let set = format!("train.precision=\"{precision}\"");
        train("seq-lstm", &p("corpus"), &p(precision), &["--set", &set]);
        let half = epochs(precision);
        assert_eq!(half.len(), full.len());
        let loss = |e: &[serde_json::Value], i: usize| e[i]["train_loss"].as_f64().unwrap();
        let last = full.len() - 1;
        eprintln!(
            "{precision}: train loss {:.4} -> {:.4}, float32 {:.4} -> {:.4}",
            loss(&half, 0),
            loss(&half, last),
            loss(&full, 0),
            loss(&full, last)
        );
        // It learns as float32 does, and it did not run in float32.
        assert!(loss(&half, last) < loss(&half, 0), "{half:?}");
        assert!(
            (loss(&half, last) - loss(&full, last)).abs() <= 0.05 * loss(&full, last),
            "{half:?} vs {full:?}"
        );
        assert_ne!(loss(&half, 0), loss(&full, 0));
        let scale = half[0]
            .get("loss_scale")
            .and_then(serde_json::Value::as_f64);
        if precision == "fp16" {
            let scale = scale.expect("an fp16 epoch records its loss scale");
            assert!((1.0..=65536.0).contains(&scale), "{scale}");
        } else {
            assert_eq!(scale, None);
        }
    }
}

/// `prism serve` answers a KServe v2 request for two contexts with the vectors `prism infer`
/// writes for them.
fn served_vectors_equal_infer(dir: &Path, model: &Path, card: &str) {
    let corpus = prism_data::sequence::VectorCorpus::load(&dir.join("corpus")).unwrap();
    let batch = corpus.batch(&[5, 9], 5);
    let contexts = dir.join(format!("{card}-contexts.npy"));
    prism_export::npy::write(
        &contexts,
        &burn::tensor::TensorData::new(batch.contexts.clone(), [2, 5, corpus.dim]),
    )
    .unwrap();
    let out = ok(&prism(&[
        "infer",
        "--model",
        model.to_str().unwrap(),
        "--input",
        contexts.to_str().unwrap(),
    ]));
    let expected: Vec<f64> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .flat_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["next"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(expected.len(), 2 * corpus.dim, "{out}");

    let (mut child, addr) = common::serve(model);
    let body = serde_json::json!({"inputs": [{
        "name": "context", "shape": [2, 5, corpus.dim], "datatype": "FP32", "data": batch.contexts,
    }]})
    .to_string();
    let raw = common::http(
        &addr,
        "POST",
        &format!("/v2/models/{card}/infer"),
        Some(&body),
    );
    let meta_raw = common::http(&addr, "GET", &format!("/v2/models/{card}"), None);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(meta_raw.contains("\"next-vector\""), "{meta_raw}");
    let (head, json) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.contains(" 200 "), "{raw}");
    let reply: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(reply["outputs"][0]["name"], "next");
    assert_eq!(
        reply["outputs"][0]["shape"],
        serde_json::json!([2, corpus.dim])
    );
    let got: Vec<f64> = reply["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(got.len(), expected.len());
    for (a, b) in got.iter().zip(&expected) {
        assert!((a - b).abs() <= 1e-5, "{card}: served {a} vs infer {b}");
    }
}
