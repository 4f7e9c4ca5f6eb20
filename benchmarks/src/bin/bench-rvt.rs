//! RVT latency per window, batch 1, state carried: Burn (flex), tract and ONNX Runtime CPU on
//! the file `prism export onnx` writes, all in one run, with the Python `onnxruntime`
//! `InferenceSession.run` on the same file beside them.
//!
//! The peer of issue 4 is RVT exported with torch.onnx and run in ONNX Runtime. When the PyTorch
//! environment exists (`$PRISM_ENV/torch-venv`, `cargo xtask provision-torch`), the same network
//! in PyTorch (`benchmarks/python/rvt_torch.py`, random weights) is exported with
//! `torch.onnx.export` (opset 17) in this run, twice: as RVT's own code writes the LSTM's gate
//! split (`torch.tensor_split`, which the exporter turns into `Loop` blocks, as in the reference
//! export) and with plain slices (a cleaner file than the reference's, the stricter peer). Both
//! files are timed by the same Python script as prism's file, interleaved with it. Without the
//! environment, the reference export's figures from the project's peer baselines (24.9 / 63.2 ms
//! for rvt-tiny-gen1 / rvt-base-gen1, 2 threads, same kind of machine) are printed for context,
//! marked as not measured in this run.
//!
//! `--baseline PRISM_BINARY` also exports each model with another build of prism (an A/B of
//! exporter changes) and times that file in tract, ONNX Runtime via prism and Python
//! onnxruntime in the same run, alternating with this build's file.
//!
//! usage: bench-rvt [--models rvt-tiny-gen1,rvt-base-gen1,...] [--runs N] [--threads N] [--no-peer]
//!        [--baseline PRISM_BINARY]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::tensor::{Device, Tensor, TensorData};
use prism_benchmarks::stats::{loadavg, median, prism_env};
use prism_deploy::engine::{Backend, Engine, EngineOptions, TensorView};
use prism_models::onnx::{export_rvt, sample_inputs, step, RvtExport};
use prism_models::zoo::ModelCard;

struct Row {
    model: String,
    burn_ms: f64,
    tract_ms: f64,
    ort_ms: f64,
    python_ort_ms: Option<f64>,
    nodes: usize,
    /// The baseline exporter's file: tract, ORT via prism, Python onnxruntime (ms), nodes.
    baseline: Option<(f64, f64, Option<f64>, usize)>,
    /// The torch.onnx exports of the same network (one per [`PEERS`] entry, `None` where not
    /// run), timed in Python onnxruntime beside prism's file.
    peers: Vec<Option<Peer>>,
}

/// The torch.onnx peers: a label and the LSTM gate split `rvt_torch.py` is built with.
const PEERS: [(&str, &str); 2] = [
    ("RVT's ops (tensor_split)", "tensor_split"),
    ("clean slices", "slices"),
];

/// The peer file's figures.
#[derive(Debug, Clone, Copy)]
struct Peer {
    /// Python onnxruntime timing, paired with prism's file (the ratio is peer / prism).
    timed: Timed,
    nodes: usize,
}

/// RVT latency per window in Burn, tract and ONNX Runtime, with the torch.onnx peers.
#[derive(Debug, clap::Parser)]
struct Args {
    /// Models to time, comma-separated.
    #[arg(
        long,
        default_value = "rvt-tiny-gen1,rvt-base-gen1,rvt-tiny-1mpx,rvt-base-1mpx"
    )]
    models: String,
    /// Windows timed per model in Rust.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// ONNX Runtime intra-op threads, and tract's pool.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Leave out the torch.onnx peers.
    #[arg(long)]
    no_peer: bool,
    /// Another prism checkout's exporter to compare against.
    #[arg(long)]
    baseline: Option<std::path::PathBuf>,
}

fn main() -> Result<()> {
    let Args {
        models,
        runs,
        threads,
        no_peer,
        baseline,
    } = <Args as clap::Parser>::parse();
    let with_peer = !no_peer;
    // Python's windows are timed in rounds over all files, three per window timed in Rust.
    let python_rounds = 3 * runs;
    let dir = tempfile::tempdir()?;
    let load_before = loadavg();
    let mut rows = Vec::new();
    for name in models.split(',') {
        rows.push(bench_model(
            name,
            runs,
            python_rounds,
            threads,
            with_peer,
            baseline.as_deref(),
            dir.path(),
        )?);
    }
    let mut md = String::from("# RVT latency per window (batch 1, state carried, CPU)\n\n");
    md.push_str(&format!(
        "`cargo xtask bench bench-rvt` — median of {runs} windows after 3 warm-up windows in Burn, tract and ONNX Runtime via prism; {} windows per file in Python onnxruntime, the files interleaved window by window; {threads} threads for ONNX Runtime and for tract (its own pool); Burn flex uses its default; random weights (latency does not depend on them). Load average before / after: {load_before} / {}.\n\n", python_rounds, loadavg()
    ));
    md.push_str("| model | Burn flex (ms) | tract (ms) | ONNX Runtime CPU via prism (ms) | Python onnxruntime, same file, beside the peers (ms) |");
    for (label, _) in PEERS {
        md.push_str(&format!(" peer, {label}: Python onnxruntime (ms) | peer / prism (paired; 95% interval; rounds prism faster) |"));
    }
    md.push_str(" nodes (prism");
    for (label, _) in PEERS {
        md.push_str(&format!(" / {label}"));
    }
    md.push_str(") |\n|---|---|---|---|---|");
    md.push_str(&"---|---|".repeat(PEERS.len()));
    md.push_str("---|\n");
    for r in &rows {
        // No prism-vs-Python ratio here: Python's figure comes from a process that interleaves
        // several sessions, which inflates it on the larger models; bench-deploy compares
        // prism's call with Python's properly.
        let py = r
            .python_ort_ms
            .map_or_else(|| "not run".to_string(), |p| format!("{p:.1}"));
        md.push_str(&format!(
            "| {} | {:.1} | {:.1} | {:.1} | {} |",
            r.model, r.burn_ms, r.tract_ms, r.ort_ms, py
        ));
        let mut nodes = r.nodes.to_string();
        for peer in &r.peers {
            match peer {
                Some(p) => {
                    let t = p.timed;
                    md.push_str(&format!(
                        " {:.1} | {:.2}x ({:.2}–{:.2}; {}/{}) |",
                        t.ms, t.ratio, t.ci95.0, t.ci95.1, t.rounds_slower, python_rounds
                    ));
                    nodes.push_str(&format!(" / {}", p.nodes));
                }
                None => {
                    md.push_str(" not run | – |");
                    nodes.push_str(" / –");
                }
            }
        }
        md.push_str(&format!(" {nodes} |\n"));
    }
    if rows.iter().any(|r| r.baseline.is_some()) {
        md.push_str("\nA/B against a baseline build of prism (`--baseline`), same run: this build's file / the baseline's file.\n\n| model | tract (ms) | ONNX Runtime via prism (ms) | Python onnxruntime (ms) | nodes |\n|---|---|---|---|---|\n");
        for r in &rows {
            if let Some((tract, ort, py, nodes)) = r.baseline {
                let py = match (r.python_ort_ms, py) {
                    (Some(a), Some(b)) => format!("{a:.1} / {b:.1}"),
                    _ => "not run".into(),
                };
                md.push_str(&format!(
                    "| {} | {:.1} / {tract:.1} | {:.1} / {ort:.1} | {py} | {} / {nodes} |\n",
                    r.model, r.tract_ms, r.ort_ms, r.nodes
                ));
            }
        }
    }
    if rows.iter().any(|r| r.peers.iter().any(Option::is_some)) {
        md.push_str("\nPeers: the same network in PyTorch (`benchmarks/python/rvt_torch.py`, random weights) exported in this run with `torch.onnx.export` (TorchScript exporter, opset 17), once with the LSTM gate split RVT's own code writes (`torch.tensor_split`, exported as `Loop` blocks as in the reference export) and once with plain slices; each timed by the same script (`benchmarks/peers/rvt_ort_python.py`) as prism's file in the same process, the files interleaved window by window. \"paired\" is the median over rounds of the peer's time over prism's time in the same round (above 1: prism's file is faster), with a 95% bootstrap interval of that median (2000 resamples of the rounds) and the number of rounds in which prism's file was the faster of the two. The reference export of the official RVT code (1553 nodes) ran rvt-tiny-gen1 in 24.9 ms and rvt-base-gen1 in 63.2 ms on the same kind of machine (`../shared/reference/peer-baselines.md`, not this run).\n");
    } else {
        md.push_str("\nContext, not measured in this run: the reference RVT exported with torch.onnx (1553 nodes) runs rvt-tiny-gen1 in 24.9 ms and rvt-base-gen1 in 63.2 ms per window in ONNX Runtime 1.31.1 CPU with 2 threads on the same kind of machine (`../shared/reference/peer-baselines.md`).\n");
    }
    println!("{md}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("rvt.md"), md)?;
    Ok(())
}

fn bench_model(
    name: &str,
    runs: usize,
    python_rounds: usize,
    threads: usize,
    with_peer: bool,
    baseline: Option<&Path>,
    dir: &Path,
) -> Result<Row> {
    let device = Device::flex();
    let card = ModelCard::builtin(name)?;
    let model = card.rvt_config().init(&device);
    let path = dir.join(format!("{name}.onnx"));
    let onnx = export_rvt(&model, &card, &RvtExport::default(), &device)?;
    onnx.save(&path)?;
    eprintln!("{name}: {} nodes", onnx.stats().nodes);

    // Burn, state carried.
    let (x, mut state) = sample_inputs(&card, &device);
    let dims = x.dims();
    let counts: Vec<f32> = (0..dims.iter().product::<usize>())
        .map(|i| ((i * 7919) % 11) as f32)
        .collect();
    let x = Tensor::<4>::from_data(TensorData::new(counts.clone(), dims), &device);
    let mut times = Vec::new();
    for i in 0..runs + 3 {
        let start = Instant::now();
        let (det, next) = step(&model, (x.clone(), state));
        let _ = det.into_data();
        state = next;
        if i >= 3 {
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    let burn_ms = median(&times);

    let engine_ms = |path: &Path, backend: Backend| -> Result<f64> {
        let mut options = EngineOptions::new(backend);
        options.intra_threads = Some(threads);
        let engine = Engine::load(path, &options)?;
        let spec = engine.spec().clone();
        let shape = dims.to_vec();
        let mut states: Vec<(String, Vec<usize>, Vec<f32>)> = spec
            .state
            .iter()
            .map(|s| {
                (
                    s.input.clone(),
                    s.shape.clone(),
                    vec![0.0; s.shape.iter().product()],
                )
            })
            .collect();
        let mut times = Vec::new();
        for i in 0..runs + 3 {
            let start = Instant::now();
            let mut views = vec![TensorView::new("histogram", &shape, &counts)];
            views.extend(states.iter().map(|(n, s, d)| TensorView::new(n, s, d)));
            let outputs = engine.run(&views)?;
            if i >= 3 {
                times.push(start.elapsed().as_secs_f64() * 1e3);
            }
            for (k, s) in spec.state.iter().enumerate() {
                let Some(out) = outputs.iter().find(|o| o.name == s.output) else {
                    bail!("{}: no output {}", engine.backend().name(), s.output);
                };
                states[k].2.copy_from_slice(&out.data);
            }
        }
        Ok(median(&times))
    };
    let tract_ms = engine_ms(&path, Backend::Tract)?;
    let ort_ms = engine_ms(&path, Backend::OrtCpu)?;
    let base_path = dir.join(format!("{name}-baseline.onnx"));
    let base = match baseline {
        Some(prism) => {
            let out = Command::new(prism)
                .args(["export", "onnx", "--model", name, "--out"])
                .arg(&base_path)
                .output()
                .context("running the baseline prism")?;
            if !out.status.success() {
                bail!(
                    "baseline export failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let nodes = text
                .split(", ")
                .find_map(|part| part.strip_suffix(" nodes").and_then(|n| n.parse().ok()))
                .unwrap_or(0);
            Some((
                engine_ms(&base_path, Backend::Tract)?,
                engine_ms(&base_path, Backend::OrtCpu)?,
                nodes,
            ))
        }
        None => None,
    };
    // The peers' files and node counts (`None` where the export did not run).
    let peer_files: Vec<Option<(std::path::PathBuf, usize)>> = PEERS
        .iter()
        .map(|(label, split)| {
            if !with_peer {
                return None;
            }
            let peer_path = dir.join(format!("{name}-torch-{split}.onnx"));
            export_torch_peer(&card, split, &peer_path)
                .map(|nodes| (peer_path, nodes))
                .map_err(|e| eprintln!("{name}: torch.onnx peer ({label}) not run: {e:#}"))
                .ok()
        })
        .collect();
    // Python onnxruntime on prism's file, the peers' files and the baseline's, in one process,
    // interleaved window by window (see `peers/rvt_ort_python.py`).
    let mut files = vec![path.clone()];
    files.extend(peer_files.iter().flatten().map(|(p, _)| p.clone()));
    if base.is_some() {
        files.push(base_path.clone());
    }
    let timed = python_ort(&files, threads, python_rounds)
        .map_err(|e| eprintln!("{name}: Python onnxruntime not run: {e:#}"))
        .ok();
    let python_ort_ms = timed.as_ref().map(|t| t[0].ms);
    let mut rest = timed.iter().flat_map(|t| t.iter().skip(1).copied());
    let peers: Vec<Option<Peer>> = peer_files
        .iter()
        .map(|f| {
            f.as_ref().and_then(|(_, nodes)| {
                rest.next().map(|timed| Peer {
                    timed,
                    nodes: *nodes,
                })
            })
        })
        .collect();
    let based = base.as_ref().and_then(|_| rest.next().map(|t| t.ms));
    let baseline = base.map(|(tract, ort, nodes)| (tract, ort, based, nodes));
    if let Some(b) = baseline {
        eprintln!("{name}: baseline exporter's file: tract {:.1} ms, ort {:.1} ms, python ort {:?}, {} nodes", b.0, b.1, b.2, b.3);
    }
    eprintln!(
        "{name}: burn {burn_ms:.1} ms, tract {tract_ms:.1} ms, ort {ort_ms:.1} ms, python ort {python_ort_ms:?}, torch.onnx peers {peers:?}"
    );
    Ok(Row {
        model: name.into(),
        burn_ms,
        tract_ms,
        ort_ms,
        python_ort_ms,
        nodes: onnx.stats().nodes,
        baseline,
        peers,
    })
}

/// Export the PyTorch RVT of `card`, its LSTM gates split with `lstm_split`, with torch.onnx
/// into `out`; returns its node count.
fn export_torch_peer(card: &ModelCard, lstm_split: &str, out: &Path) -> Result<usize> {
    let env = prism_env();
    let python = env.join("torch-venv/bin/python");
    if !python.exists() {
        bail!(
            "no PyTorch environment at {} (cargo xtask provision-torch)",
            python.display()
        );
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !root.join("python/rvt_torch.py").exists() {
        bail!("benchmarks/python/rvt_torch.py is missing");
    }
    // torch.onnx needs the `onnx` package, which the main venv has.
    let site = std::fs::read_dir(env.join("venv/lib"))?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages"))
        .find(|p| p.exists())
        .context("no site-packages in the prism venv")?;
    let m = &card.model;
    let config = serde_json::json!({
        "embed_dim": m.embed_dim,
        "dim_head": m.dim_head,
        "fpn_depth": m.fpn_depth,
        "num_classes": m.num_classes,
        "partition_size": m.partition_size,
        "input_size": m.input_size,
        "lstm_split": lstm_split,
    });
    let output = Command::new(python)
        .arg(root.join("peers/rvt_torch_onnx_peer.py"))
        .arg(config.to_string())
        .arg(out)
        .arg(site)
        .output()
        .context("running the torch.onnx peer export")?;
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = err.lines().rev().take(3).collect();
        bail!(
            "export failed: {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let nodes = v["nodes"].as_u64().context("no node count")? as usize;
    eprintln!(
        "{}: torch.onnx peer ({lstm_split}) exported, {nodes} nodes",
        card.name
    );
    Ok(nodes)
}

/// One file's figures from the Python onnxruntime timing.
#[derive(Debug, Clone, Copy)]
struct Timed {
    /// Median ms per window.
    ms: f64,
    /// Median over rounds of its time over the first file's time in the same round.
    ratio: f64,
    /// 95% bootstrap interval of `ratio`.
    ci95: (f64, f64),
    /// Rounds in which it was slower than the first file.
    rounds_slower: usize,
}

/// Time `models` in Python onnxruntime, interleaved, `runs` rounds (see `peers/rvt_ort_python.py`).
fn python_ort(models: &[std::path::PathBuf], threads: usize, runs: usize) -> Result<Vec<Timed>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/rvt_ort_python.py");
    let list: Vec<String> = models.iter().map(|m| m.display().to_string()).collect();
    let out = Command::new(prism_env().join("venv/bin/python"))
        .arg(script)
        .arg(list.join(","))
        .arg(threads.to_string())
        .arg(runs.to_string())
        .output()
        .context("running the Python onnxruntime timing")?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let number = |x: &serde_json::Value, key: &str| {
        x.as_f64().with_context(|| format!("{key}: not a number"))
    };
    let list = |key: &str| -> Result<&Vec<serde_json::Value>> {
        let items = v[key].as_array().with_context(|| format!("no {key}"))?;
        if items.len() != models.len() {
            bail!("{key}: {} entries for {} files", items.len(), models.len());
        }
        Ok(items)
    };
    let (ms, ratio, ci, slower) = (
        list("median_ms")?,
        list("paired_ratio")?,
        list("paired_ci95")?,
        list("rounds_slower")?,
    );
    (0..models.len())
        .map(|i| {
            let bounds = ci[i]
                .as_array()
                .filter(|b| b.len() == 2)
                .context("paired_ci95: not a pair")?;
            Ok(Timed {
                ms: number(&ms[i], "median_ms")?,
                ratio: number(&ratio[i], "paired_ratio")?,
                ci95: (
                    number(&bounds[0], "paired_ci95")?,
                    number(&bounds[1], "paired_ci95")?,
                ),
                rounds_slower: slower[i].as_u64().context("rounds_slower: not a count")? as usize,
            })
        })
        .collect()
}
