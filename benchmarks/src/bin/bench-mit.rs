//! MiT and the RGB + thermal + event detector: latency per image at 640x512, batch 1 (issue 15).
//!
//! For each backbone (mit-b0, mit-b1 by default):
//! 1. The peer: `transformers`' `SegformerModel` with random weights, saved by
//!    `benchmarks/python/mit_latency_peer.py` (`$PRISM_ENV/torch-venv`, `cargo xtask
//!    provision-torch`).
//! 2. prism imports those weights (`import_mit_checkpoint`, as `prism import mit-checkpoint`
//!    does) and exports the backbone, four stage outputs, at 512x640.
//! 3. The peer script times PyTorch eager against prism's file in onnxruntime, interleaved in
//!    one process, after checking the four stage outputs agree (goal: prism 1.5x faster,
//!    outputs within 1e-4).
//! 4. The detectors `mm-mit-bN-rgb` (one stream, no fusion), `-cssa-s1234` and `-gaff-s1234`
//!    (two streams, fusion at every stage, the most fusion costs), started from the same
//!    backbone, exported with their spec and timed per image through `FrameDetector` (decode and
//!    NMS included) in tract and ONNX Runtime.
//!
//! Writes `mit.md` and `mit.json` into `--results` (default `benchmarks/results/`).
//!
//! usage: bench-mit [--models mit-b0,mit-b1] [--threads 2] [--rounds 20] [--runs 10]
//!        [--out DIR] [--results DIR]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::tensor::Device;
use clap::Parser;
use prism_benchmarks::stats::{loadavg, median, prism_env};
use prism_deploy::{Backend, Engine, EngineOptions, FrameDetector};
use prism_models::mit::{import_mit_checkpoint, MitConfig};
use prism_models::mm::MmDetectorConfig;
use prism_models::onnx::{export_mit, export_mm};
use serde_json::{json, Value};

/// Height and width of the seed's images.
const SIZE: [usize; 2] = [512, 640];

#[derive(Parser)]
#[command(
    about = "MiT backbone and multimodal detector latency against transformers' SegformerModel"
)]
struct Args {
    #[arg(long, value_delimiter = ',', default_value = "mit-b0,mit-b1")]
    models: Vec<String>,
    /// Threads of every engine (PyTorch, onnxruntime, tract).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Interleaved rounds of the PyTorch / onnxruntime comparison.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Timed images per detector and backend (after 2 untimed).
    #[arg(long, default_value_t = 10)]
    runs: usize,
    #[arg(long, default_value = "target/bench-mit")]
    out: PathBuf,
    #[arg(long)]
    results: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let python = prism_env().join("torch-venv/bin/python");
    if !python.exists() {
        bail!(
            "{} is missing: the peer needs PyTorch + transformers (cargo xtask provision-torch)",
            python.display()
        );
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/mit_latency_peer.py");
    std::fs::create_dir_all(&args.out)?;
    let device = Device::flex();
    let mut backbones = Vec::new();
    let mut detectors = Vec::new();
    for name in &args.models {
        let config = MitConfig::preset(name).with_context(|| format!("unknown backbone {name}"))?;
        let variant = name.trim_start_matches("mit-");
        let dir = args.out.join(name);
        run(Command::new(&python)
            .arg(&script)
            .args(["make", variant])
            .arg(&dir))?;
        let mit = import_mit_checkpoint(dir.join("model.safetensors"), &config, &device)?;
        let onnx_path = args.out.join(format!("{name}.onnx"));
        export_mit(&mit, SIZE, &device)?.save(&onnx_path)?;
        eprintln!(
            "bench-mit: {name}: PyTorch eager against onnxruntime, {} rounds",
            args.rounds
        );
        let [h, w] = SIZE;
        let peer = run(Command::new(&python)
            .arg(&script)
            .arg("time")
            .arg(&dir)
            .arg(&onnx_path)
            .args([h, w, args.threads, args.rounds].map(|v| v.to_string())))?;
        let peer: Value = serde_json::from_str(peer.trim()).context("the peer's JSON")?;
        eprintln!("bench-mit: {name}: {peer}");
        backbones.push(json!({ "model": name, "peer": peer }));
        for layout in ["rgb", "cssa-s1234", "gaff-s1234"] {
            let mm = format!("mm-{name}-{layout}");
            let classes = vec!["person".to_string(), "car".to_string()];
            let model = MmDetectorConfig::from_name(&mm, classes.len())?
                .init_pretrained(mit.clone(), &device)?;
            let path = args.out.join(format!("{mm}.onnx"));
            export_mm(&model, &mm, &classes, SIZE, false, &device)?.save(&path)?;
            let mut row = json!({ "model": mm, "parameters": prism_models::rvt::params::count_params(&model) });
            for backend in [Backend::Tract, Backend::OrtCpu] {
                let ms = frame_latency(&path, backend, args.threads, args.runs)?;
                eprintln!("bench-mit: {mm} {}: {ms:.1} ms", backend.name());
                row[backend.name()] = json!(ms);
            }
            detectors.push(row);
        }
    }
    let machine = machine();
    let date = Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let report = json!({
        "machine": machine,
        "date": date,
        "load_before": loadavg(),
        "size": SIZE,
        "threads": args.threads,
        "backbones": backbones,
        "detectors": detectors,
    });
    let results = args
        .results
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("results"));
    std::fs::create_dir_all(&results)?;
    std::fs::write(
        results.join("mit.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let md = markdown(&report)?;
    std::fs::write(results.join("mit.md"), &md)?;
    println!("{md}");
    Ok(())
}

/// Runs a command to completion; its stdout, or an error with its stderr.
fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Median ms per image through `FrameDetector` (inference, decode, NMS).
fn frame_latency(path: &Path, backend: Backend, threads: usize, runs: usize) -> Result<f64> {
    let mut options = EngineOptions::new(backend);
    options.intra_threads = Some(threads);
    let mut detector = FrameDetector::new(Arc::new(Engine::load(path, &options)?))?;
    let [h, w] = SIZE;
    let shape = [1, 5, h, w];
    let image: Vec<f32> = (0..5 * h * w)
        .map(|i| ((i * 7919) % 256) as f32 / 255.0)
        .collect();
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs + 2 {
        let start = Instant::now();
        detector.detect(&image, &shape)?;
        if i >= 2 {
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(median(&times))
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or("");
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let isa = if has("avx512f") {
        "AVX-512"
    } else if has("avx2") {
        "AVX2"
    } else {
        "SSE"
    };
    let vnni = if has("avx512_vnni") || has("avx_vnni") {
        "VNNI"
    } else {
        "no VNNI"
    };
    format!(
        "{model}, {} cores, {isa}, {vnni}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )
}

fn markdown(r: &Value) -> Result<String> {
    let mut s = String::new();
    writeln!(
        s,
        "# MiT and the RGB + thermal + event detector at 640x512, batch 1\n"
    )?;
    writeln!(
        s,
        "{}; {} threads; {} (load before: {}). `cargo run {}-p prism-benchmarks --bin bench-mit`{}.\n",
        r["machine"].as_str().unwrap_or(""),
        r["threads"],
        r["date"].as_str().unwrap_or(""),
        r["load_before"].as_str().unwrap_or(""),
        if cfg!(debug_assertions) { "" } else { "--release " },
        if cfg!(debug_assertions) {
            " (the dev profile: dependencies, tract among them, at opt-level 3; prism's own code only exports and feeds)"
        } else {
            ""
        }
    )?;
    writeln!(s, "## Backbone: prism's export in onnxruntime against `transformers`' SegformerModel in PyTorch eager\n")?;
    writeln!(s, "| backbone | PyTorch eager ms | prism, onnxruntime ms | speed-up (paired, 95 % interval) | largest stage error (relative) |")?;
    writeln!(s, "|---|---|---|---|---|")?;
    let versions = r["backbones"]
        .as_array()
        .and_then(|b| b.first())
        .map(|b| {
            format!(
                "torch {}, transformers {}, onnxruntime {}",
                b["peer"]["torch"].as_str().unwrap_or("?"),
                b["peer"]["transformers"].as_str().unwrap_or("?"),
                b["peer"]["onnxruntime"].as_str().unwrap_or("?")
            )
        })
        .unwrap_or_default();
    for b in r["backbones"].as_array().into_iter().flatten() {
        let p = &b["peer"];
        let err = p["stage_rel_errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .fold(0.0f64, f64::max);
        writeln!(
            s,
            "| {} | {:.1} | {:.1} | {:.2}x ({:.2}-{:.2}) | {:.1e} |",
            b["model"].as_str().unwrap_or(""),
            p["torch_ms"].as_f64().unwrap_or(f64::NAN),
            p["ort_ms"].as_f64().unwrap_or(f64::NAN),
            p["torch_over_ort"].as_f64().unwrap_or(f64::NAN),
            p["ci95"][0].as_f64().unwrap_or(f64::NAN),
            p["ci95"][1].as_f64().unwrap_or(f64::NAN),
            err
        )?;
    }
    writeln!(s, "\n{versions}.\n")?;
    writeln!(
        s,
        "## Detectors through `FrameDetector` (inference, decode, NMS), median ms per image\n"
    )?;
    writeln!(s, "| model | parameters (M) | tract | ort-cpu |")?;
    writeln!(s, "|---|---|---|---|")?;
    for d in r["detectors"].as_array().into_iter().flatten() {
        writeln!(
            s,
            "| {} | {:.2} | {:.1} | {:.1} |",
            d["model"].as_str().unwrap_or(""),
            d["parameters"].as_f64().unwrap_or(f64::NAN) / 1e6,
            d["tract"].as_f64().unwrap_or(f64::NAN),
            d["ort-cpu"].as_f64().unwrap_or(f64::NAN)
        )?;
    }
    writeln!(
        s,
        "\nThe GPU backends (ort-cuda, ort-tensorrt) did not run: this machine has no GPU."
    )?;
    Ok(s)
}
