//! The zoo matrix (issue 14): `prism bench` on every model card x backend x precision, merged
//! into one table with mAP beside latency, with the machine, the versions and the date.
//!
//! Each model runs through the `prism` binary twice, as a user would run it: fp32 and int8 on
//! every backend, then fp16 on every backend (tract runs float16 graphs with float32 sums on
//! x86, see `prism_deploy::engine::tract`).
//! mAP needs trained weights and data: `--trained NAME=CHECKPOINT_DIR,DATA_DIR` benches that
//! model from its checkpoint with `--data` (int8 calibrated on the train split, mAP on val);
//! the other cards run with fresh weights, latency only.
//!
//! Writes `matrix.md`, `matrix.json` and `matrix.png` into `--results` (default
//! `benchmarks/results/`), and each run's own `bench.*` files under `--out`.
//!
//! usage: bench-matrix [--prism BIN] [--models a,b,...] [--trained NAME=CKPT,DATA]...
//!        [--out DIR] [--results DIR] [--duration-s S]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Parser;
use prism_benchmarks::stats::{loadavg, prism_env};
use serde_json::{json, Value};

/// Every card of the zoo: RVT smallest first, the RGB + thermal + event detectors, the
/// next-vector sequence models.
const ZOO: &[&str] = &[
    "rvt-tiny-synth",
    "rvt-tiny-gen1",
    "rvt-small-gen1",
    "rvt-base-gen1",
    "rvt-tiny-1mpx",
    "rvt-small-1mpx",
    "rvt-base-1mpx",
    "mm-mit-b0-rgb",
    "mm-mit-b0-early",
    "mm-mit-b0-cssa-s3",
    "mm-mit-b0-gaff-s23",
    "mm-mit-b1-cssa-s3",
    "seq-mlp",
    "seq-lstm",
    "seq-transformer",
];

/// The columns of the summary, in order.
const COMBOS: &[(&str, &str)] = &[
    ("tract", "fp32"),
    ("tract", "fp16"),
    ("tract", "int8"),
    ("ort-cpu", "fp32"),
    ("ort-cpu", "fp16"),
    ("ort-cpu", "int8"),
    ("ort-cuda", "fp32"),
    ("ort-cuda", "fp16"),
    ("ort-cuda", "int8"),
    ("ort-tensorrt", "fp32"),
    ("ort-tensorrt", "fp16"),
    ("ort-tensorrt", "int8"),
];

#[derive(Parser)]
#[command(about = "prism bench over the whole model zoo, merged into one matrix")]
struct Args {
    /// The prism binary (default: the release build in the target directory).
    #[arg(long)]
    prism: Option<PathBuf>,
    /// Model cards to run.
    #[arg(long, value_delimiter = ',')]
    models: Option<Vec<String>>,
    /// NAME=CHECKPOINT_DIR,DATA_DIR: bench NAME from a trained checkpoint, with mAP on DATA_DIR.
    #[arg(long)]
    trained: Vec<String>,
    /// Where each run's files go.
    #[arg(long, default_value = "target/bench-matrix")]
    out: PathBuf,
    /// Where matrix.md, matrix.json and matrix.png go.
    #[arg(long)]
    results: Option<PathBuf>,
    /// Seconds timed per row (after 1 s of warm-up).
    #[arg(long, default_value_t = 5.0)]
    duration_s: f64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let prism = match &args.prism {
        Some(p) => p.clone(),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("../target"))
            .join("release/prism"),
    };
    if !prism.exists() {
        bail!(
            "{} does not exist: build it with `cargo build --release -p prism-cli` or pass --prism",
            prism.display()
        );
    }
    let models: Vec<String> = args
        .models
        .clone()
        .unwrap_or_else(|| ZOO.iter().map(|s| s.to_string()).collect());
    let mut trained = std::collections::BTreeMap::new();
    for t in &args.trained {
        let (name, dirs) = t
            .split_once('=')
            .context("--trained wants NAME=CHECKPOINT_DIR,DATA_DIR")?;
        let (ckpt, data) = dirs
            .split_once(',')
            .context("--trained wants NAME=CHECKPOINT_DIR,DATA_DIR")?;
        trained.insert(name.to_string(), (PathBuf::from(ckpt), PathBuf::from(data)));
    }
    let results = args.results.clone().unwrap_or_else(|| root.join("results"));
    std::fs::create_dir_all(&results)?;
    let load_before = loadavg();

    let mut machine = String::new();
    let mut all: Vec<(String, Vec<Value>)> = Vec::new();
    for name in &models {
        let mut rows = Vec::new();
        for (precisions, backends) in [
            ("fp32,int8", "tract,ort-cpu,ort-cuda,ort-tensorrt"),
            ("fp16", "tract,ort-cpu,ort-cuda,ort-tensorrt"),
        ] {
            let out = args
                .out
                .join(format!("{name}-{}", precisions.replace(',', "-")));
            let mut cmd = Command::new(&prism);
            cmd.arg("bench");
            match trained.get(name) {
                Some((ckpt, data)) => cmd.arg("--checkpoint").arg(ckpt).arg("--data").arg(data),
                None => cmd.args(["--model", name]),
            };
            cmd.args(["--precision", precisions, "--backends", backends])
                .arg("--duration-s")
                .arg(args.duration_s.to_string())
                .arg("--out")
                .arg(&out);
            eprintln!("bench-matrix: {name}: {precisions} on {backends}");
            let status = cmd.status().context("running prism bench")?;
            if !status.success() {
                bail!("prism bench on {name} ({precisions}) failed: {status}");
            }
            let bench: Value = serde_json::from_slice(&std::fs::read(out.join("bench.json"))?)
                .context("reading bench.json")?;
            if bench["model"].as_str() != Some(name) {
                bail!(
                    "{}: bench.json names {}, not {name}",
                    out.display(),
                    bench["model"]
                );
            }
            machine = bench["machine"].as_str().unwrap_or("?").to_string();
            rows.extend(bench["rows"].as_array().cloned().unwrap_or_default());
        }
        all.push((name.clone(), rows));
    }

    let versions = versions(root);
    let date = today();
    let trained_names: Vec<&String> = trained.keys().collect();
    let md = markdown(
        &all,
        &machine,
        &versions,
        &date,
        &trained_names,
        args.duration_s,
        &load_before,
    );
    std::fs::write(results.join("matrix.md"), &md)?;
    let matrix = json!({
        "machine": machine, "versions": versions, "date": date,
        "models": all.iter().map(|(m, rows)| json!({"model": m, "trained": trained.contains_key(m), "rows": rows})).collect::<Vec<_>>(),
    });
    std::fs::write(
        results.join("matrix.json"),
        serde_json::to_string_pretty(&matrix)?,
    )?;
    chart(&all, &results.join("matrix.png"))?;
    println!("{md}");
    Ok(())
}

/// p50 of a row, if it ran.
fn p50(row: &Value) -> Option<f64> {
    row["p50_ms"].as_f64()
}

fn find<'a>(rows: &'a [Value], backend: &str, precision: &str) -> Option<&'a Value> {
    rows.iter()
        .find(|r| r["backend"] == backend && r["precision"] == precision)
}

/// The summary table, the reasons rows did not run, then every model's full rows.
fn markdown(
    all: &[(String, Vec<Value>)],
    machine: &str,
    versions: &Value,
    date: &str,
    trained: &[&String],
    duration_s: f64,
    load_before: &str,
) -> String {
    let mut md = String::from("# prism bench over the model zoo (issue 14)\n\n");
    let _ = writeln!(
        md,
        "`cargo xtask bench bench-matrix` on {machine}; prism {}, ONNX Runtime {} (CPU wheel), tract {}; {date}; load average {load_before} before, {} after. Each model: `prism bench --precision fp32,int8 --backends tract,ort-cpu,ort-cuda,ort-tensorrt` and `prism bench --precision fp16 --backends tract,ort-cpu,ort-cuda,ort-tensorrt`, {duration_s} s timed after 1 s of warm-up per row, default threads (all cores); per window with the state carried for RVT, per image for the multimodal detectors, per context for the sequence models; int8 is `prism quantize` with its defaults (S8S8, per-channel). {}\n",
        versions["prism"].as_str().unwrap_or("?"),
        versions["onnxruntime"].as_str().unwrap_or("?"),
        versions["tract"].as_str().unwrap_or("?"),
        loadavg(),
        if trained.is_empty() {
            "Every model has fresh weights: latency only.".to_string()
        } else {
            format!(
                "{} from a trained checkpoint, int8 calibrated on its train split and mAP@[.5:.95] on its held-out split through the same engine; the other cards have fresh weights (no trained weights or data for them here), latency only.",
                trained.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            )
        }
    );
    let ran: Vec<&(&str, &str)> = COMBOS
        .iter()
        .filter(|(b, p)| {
            all.iter()
                .any(|(_, rows)| find(rows, b, p).and_then(p50).is_some())
        })
        .collect();
    md.push_str("p50 ms per window (mAP@[.5:.95] in brackets where measured):\n\n| model |");
    for (b, p) in &ran {
        let _ = write!(md, " {b} {p} |");
    }
    md.push_str("\n|---|");
    md.push_str(&"---|".repeat(ran.len()));
    md.push('\n');
    for (model, rows) in all {
        let _ = write!(md, "| {model} |");
        for (b, p) in &ran {
            let cell = match find(rows, b, p) {
                Some(r) => match (p50(r), r["map"].as_f64()) {
                    (Some(ms), Some(m)) => format!("{ms:.1} ({m:.3})"),
                    (Some(ms), None) => format!("{ms:.1}"),
                    _ => "not run".into(),
                },
                None => "-".into(),
            };
            let _ = write!(md, " {cell} |");
        }
        md.push('\n');
    }
    // Why the other combinations did not run: one line per backend and distinct reason.
    // (backend, reason, precisions, models)
    type Reason = (String, String, Vec<String>, Vec<String>);
    let mut reasons: Vec<Reason> = Vec::new();
    for (model, rows) in all {
        for r in rows {
            let Some(why) = r["skipped"].as_str() else {
                continue;
            };
            let backend = r["backend"].as_str().unwrap_or("?").to_string();
            let precision = r["precision"].as_str().unwrap_or("?").to_string();
            let why = short_reason(why);
            let at = match reasons
                .iter()
                .position(|(b, w, _, _)| *b == backend && *w == why)
            {
                Some(i) => i,
                None => {
                    reasons.push((backend, why, Vec::new(), Vec::new()));
                    reasons.len() - 1
                }
            };
            let (_, _, precisions, models) = &mut reasons[at];
            if !precisions.contains(&precision) {
                precisions.push(precision);
            }
            if !models.contains(model) {
                models.push(model.clone());
            }
        }
    }
    if !reasons.is_empty() {
        md.push_str("\nNot run:\n\n");
        for (backend, why, precisions, models) in &reasons {
            let who = if models.len() == all.len() {
                "every model".to_string()
            } else {
                models.join(", ")
            };
            let _ = writeln!(md, "- {backend} {} ({who}): {why}", precisions.join(", "));
        }
    }
    md.push_str("\n![matrix](matrix.png)\n\n## Every row\n\n| model | backend | precision | load + first ms | mean ms | p50 | p90 | p99 | min | max | windows/s | peak RSS MB | mAP | mAP@.5 |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    let f = |v: &Value, d: usize| v.as_f64().map_or("-".to_string(), |x| format!("{x:.d$}"));
    for (model, rows) in all {
        for (b, p) in COMBOS {
            let Some(r) = find(rows, b, p) else { continue };
            if p50(r).is_none() {
                continue;
            }
            let _ = writeln!(
                md,
                "| {model} | {b} | {p} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                f(&r["load_first_ms"], 0),
                f(&r["mean_ms"], 2),
                f(&r["p50_ms"], 2),
                f(&r["p90_ms"], 2),
                f(&r["p99_ms"], 2),
                f(&r["min_ms"], 2),
                f(&r["max_ms"], 2),
                f(&r["windows_per_s"], 1),
                f(&r["peak_rss_mb"], 0),
                f(&r["map"], 3),
                f(&r["map_50"], 3),
            );
        }
    }
    md
}

/// The gist of a `prism bench` skip reason: the part after the last "caused by: ", without
/// the file paths that differ between models.
fn short_reason(why: &str) -> String {
    let tail = why.rsplit("caused by: ").next().unwrap_or(why);
    // "ort-cuda: the ONNX Runtime at /path/libonnxruntime.so.X has no CUDAExecutionProvider: ..."
    let mut out = String::new();
    for word in tail.split_whitespace() {
        if word.starts_with('/') {
            out.push('…');
        } else {
            out.push_str(word);
        }
        out.push(' ');
    }
    out.trim_end().to_string()
}

/// p50 per model, one bar per backend x precision that ran, on a log axis (the zoo spans 30x).
fn chart(all: &[(String, Vec<Value>)], path: &Path) -> Result<()> {
    let mut chart =
        prism_plot::BarChart::new("prism bench over the zoo: ms per window (p50), log scale")
            .unit(" ms")
            .x_log(true);
    for (model, rows) in all {
        let bars: Vec<(String, f64)> = COMBOS
            .iter()
            .filter_map(|(b, p)| {
                find(rows, b, p)
                    .and_then(p50)
                    .map(|ms| (format!("{b} {p}"), ms))
            })
            .collect();
        if !bars.is_empty() {
            chart = chart.group(model, &bars);
        }
    }
    chart
        .save_png(path)
        .map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))
}

/// prism's version, the ONNX Runtime wheel's and tract's (from the lock file).
fn versions(root: &Path) -> Value {
    let onnxruntime = Command::new(prism_env().join("venv/bin/python"))
        .args(["-c", "import onnxruntime; print(onnxruntime.__version__)"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let lock = std::fs::read_to_string(root.join("../Cargo.lock")).unwrap_or_default();
    let tract = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"tract-onnx\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_string());
    json!({
        "prism": env!("CARGO_PKG_VERSION"),
        "onnxruntime": onnxruntime,
        "tract": tract,
    })
}

/// Today's date (UTC) as YYYY-MM-DD, from `date`.
fn today() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
