//! `prism bench`: every way to run a model side by side. For each backend x precision it
//! reports load plus first inference, steady-state latency per window with the state carried
//! (mean, p50, p90, p99, min, max; warm-up excluded), throughput, peak resident memory and, with
//! `--data`, mAP through the same engine. Like Ultralytics' `benchmark`, it makes each precision
//! itself from a model name or checkpoint (export, fp16 conversion, int8 quantization).
//!
//! Each combination runs in its own `prism` process, so its peak memory is its own and a backend
//! that cannot run here (no GPU, an operator it lacks) becomes a row with the reason.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use burn::tensor::Device;
use clap::Args;
use prism_deploy::engine::Recurrent;
use prism_deploy::{Backend, Engine, EngineOptions};
use prism_export::quantize::{self, QuantizeOptions};
use serde::{Deserialize, Serialize};

use super::calibration;
use super::model_source::ModelSource;
use super::progress::Meter;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A zoo model name or card (fresh weights), or an exported float32 FILE.onnx.
    #[arg(long, conflicts_with = "checkpoint")]
    pub model: Option<String>,
    /// A checkpoint folder written by `prism train` or `prism import`.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Backends: tract, ort-cpu, ort-cuda, ort-tensorrt.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "tract,ort-cpu,ort-cuda,ort-tensorrt"
    )]
    pub backends: Vec<Backend>,
    /// Precisions: fp32, fp16, int8.
    #[arg(long, value_delimiter = ',', default_value = "fp32,fp16,int8")]
    pub precision: Vec<String>,
    /// Threads per engine (ONNX Runtime intra-op threads; a tract pool).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Seconds of warm-up before timing.
    #[arg(long, default_value_t = 1.0)]
    pub warmup_s: f64,
    /// Seconds of timed windows (at least 10 windows).
    #[arg(long, default_value_t = 5.0)]
    pub duration_s: f64,
    /// A prepared dataset: int8 calibrates on its train split, mAP is scored on its val split.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Calibration data for int8 when there is no `--data` (a recording or a prepared
    /// dataset); without either, a synthetic scene at the model's sensor size.
    #[arg(long)]
    pub calib: Option<PathBuf>,
    /// Where the models, bench.json, bench.md and bench.png go.
    #[arg(long, default_value = "bench")]
    pub out: PathBuf,
    /// libonnxruntime to load (default: $ORT_DYLIB_PATH, else the `cargo xtask` wheel).
    #[arg(long)]
    pub ort_library: Option<PathBuf>,
    /// Internal: time one model file on one backend and write the result here.
    #[arg(long, hide = true, requires = "model")]
    pub result: Option<PathBuf>,
}

/// One backend x precision row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub backend: String,
    pub precision: String,
    /// Load plus the first window, ms.
    pub load_first_ms: Option<f64>,
    pub mean_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub min_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub windows_per_s: Option<f64>,
    pub timed_windows: usize,
    pub peak_rss_mb: Option<f64>,
    /// COCO mAP@[.5:.95] and mAP@.5 on `--data`'s val split.
    pub map: Option<f64>,
    pub map_50: Option<f64>,
    /// Why the row did not run.
    pub skipped: Option<String>,
}

impl Row {
    fn skipped(backend: &str, precision: &str, why: String) -> Self {
        Self {
            backend: backend.into(),
            precision: precision.into(),
            load_first_ms: None,
            mean_ms: None,
            p50_ms: None,
            p90_ms: None,
            p99_ms: None,
            min_ms: None,
            max_ms: None,
            windows_per_s: None,
            timed_windows: 0,
            peak_rss_mb: None,
            map: None,
            map_50: None,
            skipped: Some(why),
        }
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    if let Some(result) = &args.result {
        return run_one(&args, result);
    }
    for p in &args.precision {
        if !matches!(p.as_str(), "fp32" | "fp16" | "int8") {
            bail!("unknown precision {p:?} (fp32, fp16, int8)");
        }
    }
    if args.duration_s <= 0.0 || args.warmup_s < 0.0 {
        bail!("--duration-s must be positive and --warmup-s not negative");
    }
    let out = std::path::absolute(&args.out)
        .with_context(|| format!("resolving {}", args.out.display()))?;
    let args = BenchArgs { out, ..args };
    let models = args.out.join("models");
    std::fs::create_dir_all(&models).with_context(|| format!("creating {}", models.display()))?;
    let (name, files) = prepare_models(&args, &models)?;

    let total = (args.precision.len() * args.backends.len()) as u64;
    let mut meter = Meter::new("bench", total);
    let mut rows = Vec::new();
    for precision in &args.precision {
        for backend in &args.backends {
            let label = format!("{} {precision}", backend.name());
            meter.set(rows.len() as u64, || label.clone());
            let row = match files.iter().find(|(p, _)| p == precision) {
                Some((_, Ok(file))) => run_child(&args, file, *backend, precision)?,
                Some((_, Err(why))) => Row::skipped(backend.name(), precision, why.clone()),
                None => Row::skipped(backend.name(), precision, "not prepared".into()),
            };
            rows.push(row);
        }
    }
    meter.finish();
    let table = markdown(&name, &args, &rows);
    outln!("{table}")?;
    std::fs::write(args.out.join("bench.md"), &table)?;
    let json = serde_json::json!({ "model": name, "machine": machine(), "rows": rows });
    std::fs::write(
        args.out.join("bench.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    chart(&name, &rows, &args.out.join("bench.png"))?;
    eprintln!(
        "wrote bench.md, bench.json and bench.png in {}",
        args.out.display()
    );
    Ok(())
}

/// The model file of each precision, or why it could not be made.
#[allow(clippy::type_complexity)]
fn prepare_models(
    args: &BenchArgs,
    dir: &Path,
) -> Result<(String, Vec<(String, Result<PathBuf, String>)>)> {
    let fp32 = dir.join("fp32.onnx");
    let name = match (&args.model, &args.checkpoint) {
        (Some(m), None) if m.ends_with(".onnx") => {
            std::fs::copy(m, &fp32).with_context(|| format!("reading {m}"))?;
            m.clone()
        }
        _ => {
            let source = ModelSource {
                model: args.model.clone(),
                checkpoint: args.checkpoint.clone(),
                overrides: Vec::new(),
            };
            let (name, onnx) = export_source(&source)?;
            onnx.save(&fp32)?;
            name
        }
    };
    let proto = quantize::read_model(&std::fs::read(&fp32)?)?;
    let spec_json = proto
        .metadata_props
        .iter()
        .find(|p| p.key == quantize::METADATA_KEY)
        .map(|p| p.value.clone())
        .context("the model has no prism metadata")?;
    let spec = prism_core::ModelSpec::from_json(&spec_json)?;
    if !spec.precision.is_fp32() {
        bail!("give a float32 model: bench makes the other precisions itself");
    }
    let mut files = Vec::new();
    for precision in &args.precision {
        let made: Result<PathBuf, String> = match precision.as_str() {
            "fp32" => Ok(fp32.clone()),
            "fp16" => {
                let path = dir.join("fp16.onnx");
                prism_export::fp16::to_fp16(&proto, &Default::default())
                    .map_err(|e| e.to_string())
                    .and_then(|m| {
                        std::fs::write(&path, prost::Message::encode_to_vec(&m))
                            .map_err(|e| e.to_string())
                    })
                    .map(|()| path)
            }
            _ => make_int8(args, &proto, &spec, dir).map_err(|e| format!("{e:#}")),
        };
        files.push((precision.clone(), made));
    }
    Ok((name, files))
}

/// The source's float32 export, whichever family it is (RVT, a multimodal detector, a
/// next-vector sequence model), and the model's name.
fn export_source(source: &ModelSource) -> Result<(String, prism_export::OnnxModel)> {
    let device = Device::flex();
    let (name, onnx) = if source.is_multimodal() {
        let (card, model) = source.load_multimodal(&device)?;
        let onnx = prism_models::onnx::export_mm(
            &model,
            &card.name,
            &card.data.classes,
            card.model.input_size,
            false,
            &device,
        );
        (card.name, onnx)
    } else if source.is_sequence() {
        let (card, model) = source.load_sequence(&device)?;
        let onnx = prism_models::onnx::export_seq(
            &model,
            &card,
            prism_export::DEFAULT_OPSET,
            false,
            &device,
        );
        (card.name, onnx)
    } else {
        let (card, model) = source.load(&device)?;
        let onnx = prism_models::onnx::export_rvt(
            &model,
            &card,
            &prism_models::onnx::RvtExport::default(),
            &device,
        );
        (card.name, onnx)
    };
    let onnx = onnx.with_context(|| format!("exporting {name}"))?;
    Ok((name, onnx))
}

fn make_int8(
    args: &BenchArgs,
    proto: &tract_onnx::pb::ModelProto,
    spec: &prism_core::ModelSpec,
    dir: &Path,
) -> Result<PathBuf> {
    let feeds = calibration::feeds(spec);
    let calib = match (&args.data, &args.calib) {
        (Some(d), _) | (None, Some(d)) => d.clone(),
        (None, None) => synthetic_scene(spec, dir)?,
    };
    let mut data = calibration::source(&calib, "train", spec, &feeds, 64)?;
    let q = quantize::quantize(
        proto,
        &feeds,
        data.as_mut(),
        &QuantizeOptions::default(),
        &mut |_, _, _| {},
    )?;
    let path = dir.join("int8.onnx");
    q.save(&path)?;
    Ok(path)
}

/// A 4-second synthetic scene at the model's sensor size, for calibration without data (for a
/// frame model, synthetic RGB + thermal + event images at its input size; for a next-vector
/// model, a synthetic vector corpus at its width).
fn synthetic_scene(spec: &prism_core::ModelSpec, dir: &Path) -> Result<PathBuf> {
    if let Some(seq) = &spec.sequence {
        // A next-vector model: a synthetic vector corpus at its width.
        let out = dir.join("calibration-corpus");
        let corpus =
            prism_data::sequence::synthetic_corpus(&prism_data::sequence::SyntheticSequences {
                dim: seq.dim,
                ..Default::default()
            })?;
        corpus.save(&out)?;
        return Ok(out);
    }
    if spec.task == prism_core::spec::Task::FrameDetection {
        let (h, w) = spec
            .input_hw()
            .context("the model's input height and width must be static")?;
        let out = dir.join("calibration-images");
        prism_data::multimodal::synth_mm(
            &out,
            &prism_data::multimodal::SynthMmOptions {
                images: 80,
                seed: 0,
                size: [w, h],
                clutter: true,
            },
        )?;
        return Ok(out);
    }
    let rep = spec
        .representation
        .as_ref()
        .context("the model has no event representation")?;
    let args = super::data::synth::SynthArgs {
        out: dir.join("calibration-scene"),
        format: super::data::synth::SynthFormat::Dat,
        width: u16::try_from(rep.sensor_width)?,
        height: u16::try_from(rep.sensor_height)?,
        duration_s: 4.0,
        objects: 4,
        label_hz: 20.0,
        seed: 7,
    };
    let files = super::data::synth::synthesize(&args)?;
    Ok(files.events_path)
}

/// Runs one combination in a child `prism` process.
fn run_child(args: &BenchArgs, file: &Path, backend: Backend, precision: &str) -> Result<Row> {
    let result = args
        .out
        .join(format!("row-{}-{precision}.json", backend.name()));
    let _ = std::fs::remove_file(&result);
    let exe = std::env::current_exe().context("finding the prism executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("bench")
        .arg("--model")
        .arg(file)
        .arg("--backends")
        .arg(backend.name())
        .arg("--precision")
        .arg(precision)
        .arg("--warmup-s")
        .arg(args.warmup_s.to_string())
        .arg("--duration-s")
        .arg(args.duration_s.to_string())
        .arg("--out")
        .arg(&args.out)
        .arg("--result")
        .arg(&result);
    if let Some(t) = args.threads {
        cmd.arg("--threads").arg(t.to_string());
    }
    if let Some(d) = &args.data {
        cmd.arg("--data").arg(d);
    }
    if let Some(l) = &args.ort_library {
        cmd.arg("--ort-library").arg(l);
    }
    let output = cmd.output().context("starting a bench process")?;
    if output.status.success() {
        if let Ok(text) = std::fs::read_to_string(&result) {
            return serde_json::from_str(&text)
                .with_context(|| format!("reading {}", result.display()));
        }
    }
    // The error and its causes, on one line.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let message = stderr.find("error:").map_or(&stderr[..], |i| &stderr[i..]);
    let mut why = message.split_whitespace().collect::<Vec<_>>().join(" ");
    if why.is_empty() {
        why = format!("the bench process ended with {}", output.status);
    }
    Ok(Row::skipped(backend.name(), precision, why))
}

/// Child side: time `--model` on the one backend.
fn run_one(args: &BenchArgs, result: &Path) -> Result<()> {
    let file = PathBuf::from(args.model.as_deref().context("--model FILE")?);
    let backend = *args.backends.first().context("--backends")?;
    let precision = args.precision.first().cloned().unwrap_or_default();
    let mut options = EngineOptions::new(backend);
    options.intra_threads = args.threads;
    options.ort_library = args.ort_library.clone();
    if backend == Backend::OrtTensorRt {
        options.tensorrt.fp16 = precision == "fp16";
        options.tensorrt.int8 = precision == "int8";
        options.tensorrt.cache_dir = Some(args.out.join("trt-cache"));
    }
    let started = Instant::now();
    let engine = std::sync::Arc::new(
        Engine::load(&file, &options).with_context(|| format!("loading {}", file.display()))?,
    );
    let mut stream = Recurrent::new(engine)?;
    fill_window(stream.input_mut()?);
    stream.run()?;
    let load_first_ms = started.elapsed().as_secs_f64() * 1e3;

    let warmup = Instant::now();
    while warmup.elapsed() < Duration::from_secs_f64(args.warmup_s) {
        stream.run()?;
    }
    let mut times = Vec::new();
    let timed = Instant::now();
    while timed.elapsed() < Duration::from_secs_f64(args.duration_s) || times.len() < 10 {
        let t = Instant::now();
        stream.run()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let wall = timed.elapsed().as_secs_f64();
    let peak_rss_mb = peak_rss_mb();
    let (map, map_50) = match &args.data {
        Some(data) => score(&file, backend, args, data)?,
        None => (None, None),
    };
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let pct = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
    let row = Row {
        backend: backend.name().into(),
        precision,
        load_first_ms: Some(load_first_ms),
        mean_ms: Some(times.iter().sum::<f64>() / times.len() as f64),
        p50_ms: Some(pct(0.5)),
        p90_ms: Some(pct(0.9)),
        p99_ms: Some(pct(0.99)),
        min_ms: sorted.first().copied(),
        max_ms: sorted.last().copied(),
        windows_per_s: Some(times.len() as f64 / wall),
        timed_windows: times.len(),
        peak_rss_mb,
        map,
        map_50,
        skipped: None,
    };
    std::fs::write(result, serde_json::to_string(&row)?)?;
    Ok(())
}

/// A sparse window of small counts, like a real stacked histogram (5 % of cells set).
fn fill_window(input: &mut [f32]) {
    let mut s = 0x2545_f491_u32;
    for v in input.iter_mut() {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        *v = if s % 20 == 0 {
            (s % 7) as f32 + 1.0
        } else {
            0.0
        };
    }
}

/// mAP through the same engine with `prism eval`'s protocol.
fn score(
    file: &Path,
    backend: Backend,
    args: &BenchArgs,
    data: &Path,
) -> Result<(Option<f64>, Option<f64>)> {
    let out = args.out.join(format!(
        "map-{}-{}.json",
        backend.name(),
        args.precision.first().map_or("", String::as_str)
    ));
    super::eval::run(super::eval::EvalArgs {
        checkpoint: None,
        model: Some(file.to_path_buf()),
        backend: backend.name().into(),
        data: Some(data.to_path_buf()),
        split: Some("val".into()),
        split_seed: None,
        val_fraction: None,
        filter: "auto".into(),
        coco_gt: None,
        coco_dt: None,
        out: Some(out.clone()),
        ort_library: args.ort_library.clone(),
    })?;
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out)?)?;
    // A multimodal dataset's eval writes one row per split; the validation row is the score.
    let metrics = match written.as_array() {
        Some(rows) => rows
            .iter()
            .find(|r| r["split"] == "val")
            .map(|r| r["metrics"].clone())
            .unwrap_or_default(),
        None => written,
    };
    let stat = |k: usize| metrics["stats"].get(k).and_then(serde_json::Value::as_f64);
    Ok((stat(0), stat(1)))
}

/// Peak resident memory of this process (Linux `VmHWM`), MB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU".to_string(), |s| s.trim().to_string());
    let isa = if cpuinfo.contains("avx512f") {
        "AVX-512"
    } else if cpuinfo.contains("avx2") {
        "AVX2"
    } else {
        "no AVX2"
    };
    let vnni = if cpuinfo.contains("vnni") {
        "VNNI"
    } else {
        "no VNNI"
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cores} cores, {isa}, {vnni}")
}

fn markdown(name: &str, args: &BenchArgs, rows: &[Row]) -> String {
    let f = |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
    let mut s = format!(
        "# prism bench: {name}\n\n{}; prism {}; {} s timed after {} s warm-up per row, {} thread(s); {}.\n\n",
        machine(),
        env!("CARGO_PKG_VERSION"),
        args.duration_s,
        args.warmup_s,
        args.threads.map_or("default".to_string(), |t| t.to_string()),
        today(),
    );
    s.push_str("| backend | precision | load + first ms | mean ms | p50 | p90 | p99 | min | max | windows/s | peak RSS MB | mAP | mAP@.5 | note |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.backend,
            r.precision,
            f(r.load_first_ms, 0),
            f(r.mean_ms, 2),
            f(r.p50_ms, 2),
            f(r.p90_ms, 2),
            f(r.p99_ms, 2),
            f(r.min_ms, 2),
            f(r.max_ms, 2),
            f(r.windows_per_s, 1),
            f(r.peak_rss_mb, 0),
            f(r.map, 3),
            f(r.map_50, 3),
            r.skipped.as_deref().map_or(String::new(), |w| format!(
                "did not run: {}",
                w.replace('|', "/")
            )),
        ));
    }
    s
}

/// Today's date (UTC) from the system clock, `YYYY-MM-DD`.
fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Median latency per backend, grouped by precision.
fn chart(name: &str, rows: &[Row], path: &Path) -> Result<()> {
    let mut chart =
        prism_plot::BarChart::new(&format!("prism bench: {name}, ms per window (p50)")).unit("ms");
    let mut precisions: Vec<&str> = rows.iter().map(|r| r.precision.as_str()).collect();
    precisions.dedup();
    for p in precisions {
        let bars: Vec<(String, f64)> = rows
            .iter()
            .filter(|r| r.precision == p)
            .filter_map(|r| r.p50_ms.map(|v| (r.backend.clone(), v)))
            .collect();
        if !bars.is_empty() {
            chart = chart.group(p, &bars);
        }
    }
    chart
        .save_png(path)
        .map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))
}
