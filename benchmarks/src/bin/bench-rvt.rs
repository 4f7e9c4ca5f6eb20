//! RVT latency per window, batch 1, state carried: Burn (flex), tract and ONNX Runtime CPU on
//! the file `prism export onnx` writes, all in one run, with the Python `onnxruntime`
//! `InferenceSession.run` on the same file beside them.
//!
//! The peer of issue 4, the reference RVT exported with torch.onnx, cannot be rebuilt here (its
//! code and PyTorch are not installable offline); its figure from the project's peer baselines
//! (24.9 ms for rvt-tiny-gen1 in ONNX Runtime, 2 threads, same kind of machine) is printed for
//! context, marked as not measured in this run.
//!
//! usage: bench-rvt [--models rvt-tiny-gen1,rvt-base-gen1,...] [--runs N] [--threads N]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::tensor::{Device, Tensor, TensorData};
use prism_deploy::engine::{Backend, Engine, EngineOptions, TensorView};
use prism_models::onnx::{export_rvt, sample_inputs, step, RvtExport};
use prism_models::zoo::ModelCard;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Row {
    model: String,
    burn_ms: f64,
    tract_ms: f64,
    ort_ms: f64,
    python_ort_ms: Option<f64>,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let models = value("--models").unwrap_or_else(|| "rvt-tiny-gen1,rvt-base-gen1,rvt-tiny-1mpx,rvt-base-1mpx".into());
    let runs: usize = value("--runs").map(|v| v.parse()).transpose()?.unwrap_or(10);
    let threads: usize = value("--threads").map(|v| v.parse()).transpose()?.unwrap_or(2);
    let dir = tempfile::tempdir()?;
    let mut rows = Vec::new();
    for name in models.split(',') {
        rows.push(bench_model(name, runs, threads, dir.path())?);
    }
    let mut md = String::from("# RVT latency per window (batch 1, state carried, CPU)\n\n");
    md.push_str(&format!(
        "`cargo xtask bench bench-rvt` — median of {runs} windows after 3 warm-up windows, {threads} threads for ONNX Runtime and tract's default; random weights (latency does not depend on them).\n\n"
    ));
    md.push_str("| model | Burn flex (ms) | tract (ms) | ONNX Runtime CPU via prism (ms) | Python onnxruntime, same file (ms) | prism ORT overhead vs Python |\n|---|---|---|---|---|---|\n");
    for r in &rows {
        let (py, ratio) = match r.python_ort_ms {
            Some(p) => (format!("{p:.1}"), format!("{:.2}x", r.ort_ms / p)),
            None => ("not run".into(), "–".into()),
        };
        md.push_str(&format!(
            "| {} | {:.1} | {:.1} | {:.1} | {} | {} |\n",
            r.model, r.burn_ms, r.tract_ms, r.ort_ms, py, ratio
        ));
    }
    md.push_str("\nContext, not measured in this run: the reference RVT-T exported with torch.onnx (1553 nodes) runs rvt-tiny-gen1 in 24.9 ms per window in ONNX Runtime 1.31.1 CPU with 2 threads on the same kind of machine (`../shared/reference/peer-baselines.md`).\n");
    println!("{md}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("rvt.md"), md)?;
    Ok(())
}

fn bench_model(name: &str, runs: usize, threads: usize, dir: &Path) -> Result<Row> {
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
    let counts: Vec<f32> = (0..dims.iter().product::<usize>()).map(|i| ((i * 7919) % 11) as f32).collect();
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
    let burn_ms = median(times);

    let engine_ms = |backend: Backend| -> Result<f64> {
        let mut options = EngineOptions::new(backend);
        options.intra_threads = Some(threads);
        let engine = Engine::load(&path, &options)?;
        let spec = engine.spec().clone();
        let shape = dims.to_vec();
        let mut states: Vec<(String, Vec<usize>, Vec<f32>)> = spec
            .state
            .iter()
            .map(|s| (s.input.clone(), s.shape.clone(), vec![0.0; s.shape.iter().product()]))
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
        Ok(median(times))
    };
    let tract_ms = engine_ms(Backend::Tract)?;
    let ort_ms = engine_ms(Backend::OrtCpu)?;
    let python_ort_ms = python_peer(&path, threads, runs).ok();
    eprintln!("{name}: burn {burn_ms:.1} ms, tract {tract_ms:.1} ms, ort {ort_ms:.1} ms, python ort {python_ort_ms:?}");
    Ok(Row {
        model: name.into(),
        burn_ms,
        tract_ms,
        ort_ms,
        python_ort_ms,
    })
}

fn python_peer(model: &Path, threads: usize, runs: usize) -> Result<f64> {
    let env = std::env::var_os("PRISM_ENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/prism-env"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/rvt_ort_python.py");
    let out = Command::new(env.join("venv/bin/python"))
        .arg(script)
        .arg(model)
        .arg(threads.to_string())
        .arg(runs.to_string())
        .output()
        .context("running the Python peer")?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    v["median_ms"].as_f64().context("no median_ms")
}
