//! What prism-deploy adds on top of ONNX Runtime, per window of a recurrent event detector, all
//! measured in one process and one run (interleaved rounds, so machine noise hits every mode):
//!
//! - **floor**: the bare `ort` `Session::run` on the exported file, configured as the engine
//!   configures its own, inputs preallocated once, the state outputs fed back as the next inputs
//!   (no copies): the least any Rust program can spend on the model;
//! - `Recurrent::run`: prism-deploy's per-stream buffers (input and state in ORT tensors, state
//!   outputs written into preallocated tensors the next window reads);
//! - **StreamDetector**: the whole per-window path an application sees: events of a real or
//!   synthetic recording pushed one window's chunk at a time → window slicing, stacked histogram
//!   written into the input tensor, the model with its carried state, YOLOX decode, NMS, boxes in
//!   sensor pixels;
//! - the previous StreamDetector path, re-created here from public parts: histogram into a prism
//!   buffer, `Engine::run_into` (outputs copied out of ORT), state copied into the next inputs,
//!   post-processing: what the engine did before the zero-copy state;
//! - `Engine::run` with the state carried by the caller (the generic API, as bench-rvt uses it);
//! - the peer: Python `onnxruntime` `InferenceSession.run` on the same file and the same input
//!   (`peers/deploy_ort_python.py`, a persistent process driven window by window).
//!
//! The goal of issue 6: StreamDetector − floor < 5 % of the floor for rvt-tiny.
//!
//! usage: bench-deploy [--models rvt-tiny-gen1,rvt-tiny-1mpx] [--threads 2] [--windows 10]
//!                     [--rounds 4] [--pause-ms 20] [--python-level default|layout]
//!   (rounds × windows timed windows per mode, interleaved window by window)

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::tensor::Device;
use prism_benchmarks::stats::{loadavg, median, percentile, prism_env};
use prism_deploy::engine::onnxruntime::{self as ortx, ort};
use prism_deploy::postprocess::Postprocessor;
use prism_deploy::preprocess::HistogramInput;
use prism_deploy::{Backend, Engine, EngineOptions, Recurrent, StreamDetector, Tensor, TensorView};
use prism_events::synth::{generate, SceneConfig};
use prism_events::{EventChunk, WindowConfig, WindowSlicer};
use prism_models::onnx::{export_rvt, RvtExport};
use prism_models::rvt::Rvt;
use prism_models::zoo::ModelCard;
use serde_json::{json, Value};

const MODES: [&str; 6] = [
    "floor",
    "recurrent",
    "stream",
    "previous",
    "engine",
    "python",
];

fn label(mode: &str) -> &'static str {
    match mode {
        "floor" => "bare `Session::run` (floor)",
        "recurrent" => "`Recurrent::run`",
        "stream" => "`StreamDetector`, one window of events pushed",
        "previous" => "previous StreamDetector path (copies)",
        "engine" => "`Engine::run` + caller's state copy",
        _ => "Python `InferenceSession.run` (peer)",
    }
}

/// StreamDetector against the bare `Session::run` and Python's `InferenceSession.run`.
#[derive(Debug, clap::Parser)]
struct Args {
    /// Models to export and time, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "rvt-tiny-gen1,rvt-tiny-1mpx"
    )]
    models: Vec<String>,
    /// ONNX Runtime intra-op threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Windows per mode and round.
    #[arg(long, default_value_t = 10)]
    windows: usize,
    /// Interleaved rounds.
    #[arg(long, default_value_t = 4)]
    rounds: usize,
    /// Python ONNX Runtime graph optimisation level.
    #[arg(long, default_value = "default")]
    python_level: String,
    /// Pause between timed calls, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pause_ms: u64,
}

fn main() -> Result<()> {
    let a = <Args as clap::Parser>::parse();
    let dir = tempfile::tempdir()?;
    let load_before = loadavg();
    let started = Instant::now();
    let mut results = Vec::new();
    for name in &a.models {
        results.push(bench_model(name, &a, dir.path())?);
    }
    let load_after = loadavg();
    let md = report(
        &a,
        &results,
        &load_before,
        &load_after,
        started.elapsed().as_secs_f64(),
    );
    println!("{md}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("deploy.md"), md)?;
    let doc = json!({
        "benchmark": "bench-deploy",
        "threads": a.threads,
        "windows_per_round": a.windows,
        "rounds": a.rounds,
        "python_level": a.python_level,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "models": results,
    });
    std::fs::write(out.join("deploy.json"), serde_json::to_string_pretty(&doc)?)?;
    Ok(())
}

/// The recording a model's detector streams: the faery `gen4.dat` for a 1280x720 sensor, else a
/// synthetic scene at the model's sensor size.
fn recording(card: &ModelCard, windows: usize) -> Result<(EventChunk, String)> {
    let [w, h] = card.data.sensor;
    if [w, h] == [1280, 720] {
        if let Some(path) = prism_events::testdata::faery("gen4.dat") {
            let mut reader = prism_events::open(&path)?;
            let events = prism_events::reader::read_all(reader.as_mut())?;
            let source = format!(
                "faery gen4.dat (1280x720, {} events)",
                events_len_str(&events)
            );
            return Ok((events, source));
        }
    }
    let config = SceneConfig {
        width: u16::try_from(w)?,
        height: u16::try_from(h)?,
        duration_us: (windows as i64 + 4) * i64::from(card.data.window_ms) * 1000,
        num_objects: 6,
        ..SceneConfig::default()
    };
    let scene = generate(&config)?;
    let n = events_len_str(&scene.events);
    Ok((
        scene.events,
        format!(
            "synthetic scene {w}x{h}, {} s, {n} events",
            config.duration_us as f64 / 1e6
        ),
    ))
}

fn events_len_str(e: &EventChunk) -> String {
    let n = e.len();
    if n >= 1_000_000 {
        format!("{:.2} M", n as f64 / 1e6)
    } else {
        format!("{:.0} k", n as f64 / 1e3)
    }
}

/// Chunks of events that each complete exactly one window when pushed, and each window's events.
struct Windows {
    /// Event index ranges of the push chunks.
    chunks: Vec<std::ops::Range<usize>>,
    /// Event index ranges of the windows.
    windows: Vec<std::ops::Range<usize>>,
}

fn cut(events: &EventChunk, window_us: i64) -> Result<Windows> {
    let mut slicer = WindowSlicer::new(WindowConfig::new(window_us))?;
    slicer.push(events.as_slice())?;
    slicer.finish();
    let mut ends = Vec::new();
    let mut windows = Vec::new();
    while let Some(w) = slicer.next_window() {
        let r = w.event_range();
        windows.push(r.start as usize..r.end as usize);
        ends.push(w.end_us);
    }
    let mut chunks = Vec::new();
    let mut start = 0;
    for end in ends {
        let stop = events.t.partition_point(|&t| t <= end);
        if stop > start {
            chunks.push(start..stop);
        }
        start = stop;
    }
    if start < events.len() {
        chunks.push(start..events.len());
    }
    Ok(Windows { chunks, windows })
}

/// The Python peer, driven window by window.
struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    info: Value,
}

impl Peer {
    fn start(model: &Path, threads: usize, input: &Path, level: &str) -> Result<Self> {
        let env = prism_env();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/deploy_ort_python.py");
        let mut child = Command::new(env.join("venv/bin/python"))
            .arg(script)
            .arg(model)
            .arg(threads.to_string())
            .arg(input)
            .arg(level)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the Python peer")?;
        let stdin = child.stdin.take().context("peer stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().context("peer stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let info: Value =
            serde_json::from_str(&line).with_context(|| format!("peer said {line:?}"))?;
        Ok(Self {
            child,
            stdin,
            stdout,
            info,
        })
    }

    fn run(&mut self, n: usize) -> Result<Vec<f64>> {
        writeln!(self.stdin, "run {n}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let v: Value =
            serde_json::from_str(&line).with_context(|| format!("peer said {line:?}"))?;
        v["times_ms"]
            .as_array()
            .context("no times_ms")?
            .iter()
            .map(|t| t.as_f64().context("not a number"))
            .collect()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.wait();
    }
}

fn bench_model(name: &str, a: &Args, dir: &Path) -> Result<Value> {
    let device = Device::flex();
    let card = ModelCard::builtin(name)?;
    // The head's biases at YOLOX's prior 0.01, as the reference builds its head: like a trained
    // detector, few anchors then pass the score threshold. With Burn's default init every anchor
    // scores about 0.25, and NMS over all of them would be measured instead of a detector's work.
    let model = card.rvt_config().init(&device);
    let model = Rvt {
        yolox_head: model.yolox_head.with_prior_biases(0.01),
        ..model
    };
    let path = dir.join(format!("{name}.onnx"));
    export_rvt(&model, &card, &RvtExport::default(), &device)?.save(&path)?;
    drop(model);

    let mut options = EngineOptions::new(Backend::OrtCpu);
    options.intra_threads = Some(a.threads);
    let engine = Arc::new(Engine::load(&path, &options)?);
    let spec = engine.spec().clone();
    let rep = spec.representation.clone().context("no representation")?;
    let (events, source) = recording(&card, (a.windows + 1) * a.rounds)?;
    let cuts = cut(&events, rep.window_us)?;
    eprintln!("{name}: {source}, {} windows", cuts.windows.len());

    // The fixed input of the floor, Recurrent, Engine::run and the peer: the busiest window's
    // histogram, as the detector builds it.
    let mut hist = HistogramInput::new(&rep)?;
    let busiest = cuts
        .windows
        .iter()
        .max_by_key(|r| r.len())
        .cloned()
        .context("the recording has no window")?;
    let histogram = hist
        .build(events.as_slice().slice(busiest.clone()))?
        .to_vec();
    let shape = hist.shape().to_vec();
    let input_file = dir.join(format!("{name}.input.f32"));
    std::fs::write(
        &input_file,
        histogram
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )?;

    // Floor: the bare ort session, inputs preallocated, state outputs fed back as inputs.
    let mut session = ortx::session(&path, &options)?;
    let input_names: Vec<String> = session
        .inputs()
        .iter()
        .map(|o| o.name().to_string())
        .collect();
    let mut feed: Vec<ort::session::SessionInputValue<'static>> = Vec::new();
    let mut carried = Vec::new();
    for (i, n) in input_names.iter().enumerate() {
        if *n == spec.input.name {
            feed.push(ort::value::Tensor::from_array((shape.clone(), histogram.clone()))?.into());
        } else {
            let s = spec
                .state
                .iter()
                .find(|s| s.input == *n)
                .context("unknown input")?;
            let zeros = vec![0f32; s.shape.iter().product()];
            feed.push(ort::value::Tensor::from_array((s.shape.clone(), zeros))?.into());
            carried.push((i, s.output.clone()));
        }
    }
    let mut floor = |n: usize, times: &mut Vec<f64>| -> Result<()> {
        for _ in 0..n {
            let start = Instant::now();
            let mut out = session.run(feed.as_slice())?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
            for (i, output) in &carried {
                feed[*i] = ort::session::SessionInputValue::Owned(
                    out.remove(output.as_str()).context("no state output")?,
                );
            }
        }
        Ok(())
    };

    // Recurrent::run on the same input.
    let mut recurrent = Recurrent::new(engine.clone())?;
    recurrent.input_mut()?.copy_from_slice(&histogram);
    let mut run_recurrent = |n: usize, times: &mut Vec<f64>| -> Result<()> {
        for _ in 0..n {
            let start = Instant::now();
            recurrent.run()?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        Ok(())
    };

    // StreamDetector over the recording, one window's chunk per push (cycling with a reset).
    let mut detector = StreamDetector::new(engine.clone())?;
    let mut next_chunk = 0;
    let mut detections = 0usize;
    let mut run_stream = |n: usize, times: &mut Vec<f64>| -> Result<()> {
        let mut done = 0;
        while done < n {
            if next_chunk == cuts.chunks.len() {
                detector.reset()?;
                next_chunk = 0;
            }
            let chunk = events.as_slice().slice(cuts.chunks[next_chunk].clone());
            next_chunk += 1;
            let mut windows = 0;
            let start = Instant::now();
            detector.push(chunk, &mut |w: &prism_deploy::WindowDetections<'_>| {
                windows += 1;
                detections += w.detections.len();
                Ok::<_, prism_deploy::DeployError>(true)
            })?;
            let ms = start.elapsed().as_secs_f64() * 1e3;
            if windows == 1 {
                times.push(ms);
                done += 1;
            }
        }
        Ok(())
    };

    // The previous StreamDetector path: prism buffers, Engine::run_into, copies.
    let mut old_hist = HistogramInput::new(&rep)?;
    let factor = rep.downsample as f32;
    let mut post = Postprocessor::new(
        &spec,
        factor,
        (rep.sensor_width as f32, rep.sensor_height as f32),
    )?;
    let mut states: Vec<(String, Vec<usize>, Vec<f32>, usize)> = spec
        .state
        .iter()
        .map(|s| {
            let index = engine
                .outputs()
                .iter()
                .position(|o| o.name == s.output)
                .unwrap_or(0);
            (
                s.input.clone(),
                s.shape.clone(),
                vec![0.0; s.shape.iter().product()],
                index,
            )
        })
        .collect();
    let det_index = engine
        .outputs()
        .iter()
        .position(|o| o.name == spec.output.name)
        .context("no detections")?;
    let mut outputs: Vec<Tensor> = Vec::new();
    let mut next_window = 0;
    let mut run_previous = |n: usize, times: &mut Vec<f64>| -> Result<()> {
        for _ in 0..n {
            let r = cuts.windows[next_window % cuts.windows.len()].clone();
            next_window += 1;
            let start = Instant::now();
            let input = old_hist.build(events.as_slice().slice(r))?;
            let mut views = Vec::with_capacity(1 + states.len());
            views.push(TensorView::new(&spec.input.name, &shape, input));
            views.extend(states.iter().map(|(n, s, d, _)| TensorView::new(n, s, d)));
            engine.run_into(&views, &mut outputs)?;
            drop(views);
            for (_, _, data, index) in &mut states {
                data.copy_from_slice(&outputs[*index].data);
            }
            post.run(&outputs[det_index].data)?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        Ok(())
    };

    // Engine::run with the caller carrying the state (copies), as bench-rvt measures it.
    let mut engine_states: Vec<(String, Vec<usize>, Vec<f32>)> = spec
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
    let mut run_engine = |n: usize, times: &mut Vec<f64>| -> Result<()> {
        for _ in 0..n {
            let start = Instant::now();
            let mut views = vec![TensorView::new(&spec.input.name, &shape, &histogram)];
            views.extend(
                engine_states
                    .iter()
                    .map(|(n, s, d)| TensorView::new(n, s, d)),
            );
            let out = engine.run(&views)?;
            drop(views);
            for (k, s) in spec.state.iter().enumerate() {
                let Some(o) = out.iter().find(|o| o.name == s.output) else {
                    bail!("no output {}", s.output)
                };
                engine_states[k].2.copy_from_slice(&o.data);
            }
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        Ok(())
    };

    let mut peer = Peer::start(&path, a.threads, &input_file, &a.python_level).ok();
    if peer.is_none() {
        eprintln!("{name}: the Python peer could not start; its column stays empty");
    }

    // Window by window, every mode in turn, the first one rotating. Each timed window comes right
    // after an untimed window of the same mode, and each such pair after a short pause:
    // - the untimed window brings the mode's weights and buffers into the caches: the floor, the
    //   engine's session and the Python process each hold their own copy of the 18 MB of weights,
    //   and a run that follows another copy's run found them evicted (measured: 5-10 % slower);
    // - the pause: the floor and the Python peer have their own ONNX Runtime thread pools, whose
    //   threads spin for a while after a run; on a 2-core machine a run that starts while another
    //   pool spins is slowed by it (measured: 25-30 %).
    // Window by window because the machine's noise comes in bursts: neighbouring windows of
    // different modes see the same burst, and paired differences (same iteration) cancel most of it.
    let pause = std::time::Duration::from_millis(a.pause_ms);
    let mut run_mode = |m: usize, t: &mut Vec<f64>| -> Result<()> {
        std::thread::sleep(pause);
        let mut warm = Vec::new();
        match MODES[m] {
            "floor" => floor(1, &mut warm).and_then(|()| floor(1, t)),
            "recurrent" => run_recurrent(1, &mut warm).and_then(|()| run_recurrent(1, t)),
            "stream" => run_stream(1, &mut warm).and_then(|()| run_stream(1, t)),
            "previous" => run_previous(1, &mut warm).and_then(|()| run_previous(1, t)),
            "engine" => run_engine(1, &mut warm).and_then(|()| run_engine(1, t)),
            _ => match peer.as_mut() {
                Some(p) => {
                    let two = p.run(2)?;
                    t.push(two.last().copied().unwrap_or(f64::NAN));
                    Ok(())
                }
                None => {
                    t.push(f64::NAN);
                    Ok(())
                }
            },
        }
    };
    for m in 0..MODES.len() {
        // Two untimed warm-up windows per mode.
        run_mode(m, &mut Vec::new())?;
        run_mode(m, &mut Vec::new())?;
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); MODES.len()];
    let total = a.rounds * a.windows;
    for i in 0..total {
        for j in 0..MODES.len() {
            let m = (i + j) % MODES.len();
            run_mode(m, &mut times[m])?;
        }
        if (i + 1) % a.windows == 0 {
            eprintln!(
                "{name} after {} windows per mode: {}",
                i + 1,
                MODES
                    .iter()
                    .zip(&times)
                    .map(|(m, t)| format!("{m} {:.2}", median(t)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let python_info = peer.as_ref().map(|p| p.info.clone());

    // prism's own work per window, measured alone (no model, so none of the model's noise): the
    // StreamDetector's steps around `Recurrent::run`, on the recording's windows: buffering the
    // chunk in the window slicer, the stacked histogram, the sparse update of the input, YOLOX
    // decode, NMS and box mapping (on the detections output of a real run).
    let raw = {
        let mut r = Recurrent::new(engine.clone())?;
        r.input_mut()?.copy_from_slice(&histogram);
        r.run()?.to_vec()
    };
    let mut own_times = Vec::new();
    {
        let mut slicer = WindowSlicer::new(WindowConfig::new(rep.window_us))?;
        let mut own_hist = HistogramInput::new(&rep)?;
        let mut own_input = vec![0f32; shape.iter().product()];
        let mut own_post = Postprocessor::new(
            &spec,
            factor,
            (rep.sensor_width as f32, rep.sensor_height as f32),
        )?;
        let total = (a.rounds * a.windows).max(60);
        let mut k = 0;
        while own_times.len() < total {
            if k == cuts.chunks.len() {
                slicer = WindowSlicer::new(WindowConfig::new(rep.window_us))?;
                own_hist.forget_written();
                own_input.fill(0.0);
                k = 0;
            }
            let chunk = events.as_slice().slice(cuts.chunks[k].clone());
            k += 1;
            let start = Instant::now();
            slicer.push(chunk)?;
            let mut windows = 0;
            while let Some(w) = slicer.next_window() {
                own_hist.update_into(w.events, &mut own_input)?;
                own_post.run(&raw)?;
                windows += 1;
            }
            let ms = start.elapsed().as_secs_f64() * 1e3;
            if windows == 1 {
                own_times.push(ms);
            }
        }
    }
    let own_ms = median(&own_times);
    let candidates = candidates_above_threshold(&raw, &spec)?;
    drop(peer);
    let mut modes = serde_json::Map::new();
    for (mode, t) in MODES.iter().zip(&times) {
        modes.insert(
            mode.to_string(),
            json!({
                "label": label(mode),
                "median_ms": median(t),
                "p10_ms": percentile(t, 0.1),
                "p90_ms": percentile(t, 0.9),
                "times_ms": t,
            }),
        );
    }
    let floor_ms = median(&times[0]);
    let stream_ms = median(&times[2]);
    let paired = |m: usize| -> f64 {
        let d: Vec<f64> = times[m]
            .iter()
            .zip(&times[0])
            .map(|(x, f)| x - f)
            .filter(|v| !v.is_nan())
            .collect();
        median(&d)
    };
    let paired_ms: serde_json::Map<String, Value> = MODES
        .iter()
        .enumerate()
        .skip(1)
        .map(|(m, name)| (name.to_string(), json!(paired(m))))
        .collect();
    Ok(json!({
        "model": name,
        "recording": source,
        "windows_in_recording": cuts.windows.len(),
        "input_shape": shape,
        "state_bytes": spec.state.iter().map(|s| 4 * s.shape.iter().product::<usize>()).sum::<usize>(),
        "detections_in_stream": detections,
        "python": python_info,
        "modes": modes,
        "stream_overhead_ms": stream_ms - floor_ms,
        "stream_overhead_fraction": (stream_ms - floor_ms) / floor_ms,
        "paired_minus_floor_ms": paired_ms,
        "own_work_ms": own_ms,
        "own_work_fraction": own_ms / floor_ms,
        "candidates": candidates,
        "stream_overhead_paired_ms": paired(2),
        "stream_overhead_paired_fraction": paired(2) / floor_ms,
    }))
}

fn report(
    a: &Args,
    results: &[Value],
    load_before: &str,
    load_after: &str,
    seconds: f64,
) -> String {
    let mut md = String::from(
        "# prism-deploy overhead per window: StreamDetector against the bare ONNX Runtime call\n\n",
    );
    md.push_str(&format!(
        "`cargo xtask bench bench-deploy` — ONNX Runtime CPU, {} intra-op threads everywhere, batch 1, state carried; \
         {} timed windows per mode, interleaved window by window (every mode in turn, the first one rotating); each \
         timed window follows an untimed one of the same mode (warm caches: every session holds its own weights), \
         each such pair a {} ms pause (no other thread pool still spinning); \
         median ms per window. Random weights (the model's latency does not depend on them), the head's biases at YOLOX's prior 0.01 as the reference builds it, so that, as with a trained detector, few anchors reach NMS. Load average before / after: \
         {load_before} / {load_after}: on a busy machine every column is inflated and noisy, so the overhead is also \
         given as the median of paired differences (each mode minus the floor of the same iteration, a few hundred \
         ms apart), which cancels most of the noise. Whole run {seconds:.0} s.\n\n",
        a.threads,
        a.rounds * a.windows,
        a.pause_ms
    ));
    md.push_str("| model | ");
    md.push_str(
        &MODES
            .iter()
            .map(|m| label(m))
            .collect::<Vec<_>>()
            .join(" | "),
    );
    md.push_str(" | StreamDetector − floor (medians) | StreamDetector − floor (paired) | goal < 5 % |\n|---|");
    md.push_str(&"---|".repeat(MODES.len() + 3));
    md.push('\n');
    for r in results {
        let m = |mode: &str| r["modes"][mode]["median_ms"].as_f64().unwrap_or(f64::NAN);
        let cells: Vec<String> = MODES
            .iter()
            .map(|mode| {
                let v = m(mode);
                if v.is_nan() {
                    "not run".into()
                } else {
                    format!("{v:.2}")
                }
            })
            .collect();
        let over = r["stream_overhead_ms"].as_f64().unwrap_or(f64::NAN);
        let frac = r["stream_overhead_fraction"].as_f64().unwrap_or(f64::NAN);
        let pover = r["stream_overhead_paired_ms"].as_f64().unwrap_or(f64::NAN);
        let pfrac = r["stream_overhead_paired_fraction"]
            .as_f64()
            .unwrap_or(f64::NAN);
        md.push_str(&format!(
            "| {} | {} | {over:+.2} ms ({:+.1} %) | {pover:+.2} ms ({:+.1} %) | {} |\n",
            r["model"].as_str().unwrap_or("?"),
            cells.join(" | "),
            frac * 100.0,
            pfrac * 100.0,
            if pfrac < 0.05 && frac < 0.05 {
                "met"
            } else if pfrac < 0.05 {
                "met (paired)"
            } else {
                "**not met**"
            }
        ));
    }
    md.push_str("\nprism's own work per window, measured alone (no model): the StreamDetector's steps around the model call \
                 (window slicing, stacked histogram, sparse update of the input tensor, YOLOX decode, NMS, box mapping) on the \
                 recording's windows, median of at least 60; candidates: anchors of the busiest window whose score passes the spec's \
                 threshold (what NMS sorts):\n\n| model | own work (ms) | of the floor | candidates |\n|---|---|---|---|\n");
    for r in results {
        md.push_str(&format!(
            "| {} | {:.3} | {:.2} % | {} |\n",
            r["model"].as_str().unwrap_or("?"),
            r["own_work_ms"].as_f64().unwrap_or(f64::NAN),
            r["own_work_fraction"].as_f64().unwrap_or(f64::NAN) * 100.0,
            r["candidates"]
        ));
    }
    md.push_str("\nPaired differences to the floor (median over iterations of mode − floor, ms):\n\n| model | ");
    md.push_str(
        &MODES[1..]
            .iter()
            .map(|m| label(m))
            .collect::<Vec<_>>()
            .join(" | "),
    );
    md.push_str(" |\n|---|");
    md.push_str(&"---|".repeat(MODES.len() - 1));
    md.push('\n');
    for r in results {
        let cells: Vec<String> = MODES[1..]
            .iter()
            .map(|m| {
                format!(
                    "{:+.2}",
                    r["paired_minus_floor_ms"][*m].as_f64().unwrap_or(f64::NAN)
                )
            })
            .collect();
        md.push_str(&format!(
            "| {} | {} |\n",
            r["model"].as_str().unwrap_or("?"),
            cells.join(" | ")
        ));
    }
    md.push_str("\nRatios of the medians:\n\n| model | StreamDetector / floor | previous path / floor | Engine::run / floor | Python / floor | StreamDetector / Python |\n|---|---|---|---|---|---|\n");
    for r in results {
        let m = |mode: &str| r["modes"][mode]["median_ms"].as_f64().unwrap_or(f64::NAN);
        let f = m("floor");
        md.push_str(&format!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
            r["model"].as_str().unwrap_or("?"),
            m("stream") / f,
            m("previous") / f,
            m("engine") / f,
            m("python") / f,
            m("stream") / m("python"),
        ));
    }
    md.push_str("\nInputs: ");
    for r in results {
        md.push_str(&format!(
            "{}: {} ({} windows), input {}, state {:.2} MB; ",
            r["model"].as_str().unwrap_or("?"),
            r["recording"].as_str().unwrap_or("?"),
            r["windows_in_recording"],
            r["input_shape"],
            r["state_bytes"].as_f64().unwrap_or(0.0) / 1e6
        ));
    }
    md.push_str(
        "the floor, `Recurrent::run`, `Engine::run` and Python run on the busiest window's histogram; StreamDetector \
         and the previous path on the recording's windows in turn. Python: ",
    );
    if let Some(p) = results.iter().find_map(|r| r["python"].as_object()) {
        md.push_str(&format!(
            "onnxruntime {}, graph optimisation {} (`--python-level`; prism's engine uses ORT_ENABLE_ALL too).\n",
            p.get("onnxruntime").and_then(Value::as_str).unwrap_or("?"),
            p.get("level").and_then(Value::as_str).unwrap_or("?")
        ));
    } else {
        md.push_str("not run.\n");
    }
    md
}

/// Anchors of a raw output `[1, A, 5 + K]` whose score (objectness × best class) passes the
/// spec's threshold.
fn candidates_above_threshold(raw: &[f32], spec: &prism_core::ModelSpec) -> Result<usize> {
    let row_len = 5 + spec.classes.len();
    let threshold = spec.postprocess().score_threshold;
    let sigmoid = |x: f32| {
        if spec.output.decoded {
            x
        } else {
            1.0 / (1.0 + (-x).exp())
        }
    };
    Ok(raw
        .chunks_exact(row_len)
        .filter(|row| {
            let best = row[5..]
                .iter()
                .map(|&c| sigmoid(c))
                .fold(f32::NEG_INFINITY, f32::max);
            sigmoid(row[4]) * best >= threshold
        })
        .count())
}
