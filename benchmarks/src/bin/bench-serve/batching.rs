//! Dynamic batching measured: one multimodal detector exported with a dynamic batch axis, served
//! by two server processes in turn, `--max-batch 1` (off) and `--max-batch 8`, each under 16
//! clients sending one image per binary infer request for the same time. Throughput and latency
//! side by side, and the answer to the same request from both servers compared value by value.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use burn::tensor::Device;
use prism_benchmarks::stats::loadavg;
use prism_models::mm::MmDetectorConfig;
use prism_models::onnx::export_mm;
use serde_json::{json, Value};

use super::{binary_request, infer_client, load_phase, spawn_server, summary, Conn};

/// Input size of the served detector (height, width). Not 256x320: at that size the
/// exporter's two traces (batches 2 and 3) of mm-mit-b0-cssa-s3 differ by four operations and it
/// refuses the dynamic batch axis (96x128, 128x160 and 192x256 export).
const SIZE: [usize; 2] = [192, 256];
const CLIENTS: usize = 16;
const BATCHES: [usize; 2] = [1, 8];

pub fn run(name: &str, backend: &str, seconds: f64, workers: usize, threads: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let device = Device::flex();
    let classes = vec!["person".to_string(), "car".to_string()];
    let model = MmDetectorConfig::from_name(name, classes.len())?.init(&device)?;
    let path = dir.path().join(format!("{name}.onnx"));
    export_mm(&model, name, &classes, SIZE, true, &device)?.save(&path)?;
    drop(model);

    let [h, w] = SIZE;
    let n = 5 * h * w;
    let pixels: Vec<f32> = (0..n).map(|i| ((i * 7919) % 255) as f32 / 255.0).collect();
    let good = json!({"id": "batching", "inputs": [
        {"name": "image", "shape": [1, 5, h, w], "datatype": "FP32", "data": pixels}
    ]});
    let binary = Arc::new(binary_request(&good)?);
    let json_body = good.to_string().into_bytes();
    let infer_path = format!("/v2/models/{name}/infer");

    let load_before = loadavg();
    let mut rows = Vec::new();
    let mut answers: Vec<Vec<f64>> = Vec::new();
    let mut problems = Vec::new();
    for max_batch in BATCHES {
        let mut server = spawn_server(&path, backend, workers, threads, name, max_batch)?;
        let make = infer_client(binary.clone(), infer_path.clone());
        let phase = load_phase(CLIENTS, seconds, &make, server.addr);
        let mut row = summary(&phase, CLIENTS, "binary", "prism");
        row["max_batch"] = json!(max_batch);
        eprintln!(
            "max-batch {max_batch}: {:.1} req/s, p50 {:.1} ms, p99 {:.1} ms, {} errors",
            row["rps"].as_f64().unwrap_or(0.0),
            row["p50_ms"].as_f64().unwrap_or(0.0),
            row["p99_ms"].as_f64().unwrap_or(0.0),
            phase.errors.len()
        );
        if !phase.errors.is_empty() {
            problems.push(format!("max-batch {max_batch}: {:?}", &phase.errors[..1]));
        }
        rows.push(row);
        // The same request once more, answered as JSON, for the comparison.
        let mut conn = Conn::open(server.addr)?;
        let (status, body) =
            conn.send("POST", &infer_path, "application/json", &json_body, true)?;
        if status != 200 {
            bail!(
                "max-batch {max_batch}: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        let answer: Value = serde_json::from_slice(&body)?;
        let values = answer["outputs"][0]["data"]
            .as_array()
            .context("the detections output")?
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        answers.push(values);
        drop(server.child.stdin.take());
        let exit = server.child.wait()?;
        if !exit.success() {
            problems.push(format!(
                "max-batch {max_batch}: the server exited with {exit}"
            ));
        }
    }
    let (off, on) = (&answers[0], &answers[1]);
    let scale = off.iter().fold(0f64, |m, v| m.max(v.abs()));
    let gap = off
        .iter()
        .zip(on)
        .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    if off.len() != on.len() || gap > 1e-4 * scale.max(1.0) {
        problems.push(format!(
            "batched answers differ: {} vs {} values, gap {gap:.3e}",
            off.len(),
            on.len()
        ));
    }
    let load_after = loadavg();
    let ratio = rows[1]["rps"].as_f64().unwrap_or(0.0) / rows[0]["rps"].as_f64().unwrap_or(1.0);
    let mut md = format!(
        "# Dynamic batching: {name}, {}x{} input, {backend}, {CLIENTS} clients\n\n\
         One image per binary infer request; {workers} workers, {threads} intra-op threads, \
         {seconds} s per row, max queue delay 500 µs; load average {load_before} before, \
         {load_after} after.\n\n\
         | max batch | requests / s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|\n",
        SIZE[1], SIZE[0]
    );
    for r in &rows {
        md += &format!(
            "| {} | {:.1} | {:.1} | {:.1} | {} |\n",
            r["max_batch"],
            r["rps"].as_f64().unwrap_or(0.0),
            r["p50_ms"].as_f64().unwrap_or(0.0),
            r["p99_ms"].as_f64().unwrap_or(0.0),
            r["errors"]
        );
    }
    md += &format!(
        "\nThroughput with batching: {ratio:.2}x without. The same request answered by both \
         servers: largest difference {gap:.2e} on outputs up to {scale:.2}.\n"
    );
    println!("{md}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("serve-batching.md"), &md)?;
    let doc = json!({"benchmark": "bench-serve --batching", "model": name, "size": SIZE,
        "backend": backend, "clients": CLIENTS, "seconds": seconds, "workers": workers,
        "threads": threads, "rows": rows, "ratio": ratio, "largest_difference": gap,
        "load_average_before": load_before, "load_average_after": load_after});
    std::fs::write(
        out.join("serve-batching.json"),
        serde_json::to_string_pretty(&doc)?,
    )?;
    if !problems.is_empty() {
        bail!("batching: {problems:?}");
    }
    Ok(())
}
