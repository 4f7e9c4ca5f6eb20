//! Training throughput of RVT in Burn on every CPU backend this build has (flex; LibTorch's
//! `tch-cpu` when built with the `tch` feature, which `cargo xtask bench bench-train` does) against
//! PyTorch (CPU) training the same network and loss on the same machine, in one run: windows per
//! second at batch 2, sequence length 5.
//!
//! One step = truncated BPTT over L windows of B sequences (state carried in, detached between
//! steps), the YOLOX loss (SimOTA) on every window against fixed random boxes, backward,
//! global-norm clipping to 1.0 and AdamW — what `prism-train` does per batch and what
//! `benchmarks/python/train_throughput_torch.py` does in PyTorch.
//!
//! Built by the xtask, this binary allocates through tcmalloc as `prism` does (see
//! benchmarks/build.rs); PyTorch then runs twice, as installed (glibc's malloc) and with the
//! same tcmalloc preloaded, so that the allocator's share of any ratio shows.
//!
//! The peers run in lockstep with Burn: each PyTorch process is started once, warms up, and then
//! takes one timed step right after each timed Burn step (`--lockstep` of the peer script). Each
//! ratio is the median over those pairs of the two step times, with a 95 % bootstrap interval,
//! so that a slow spell of a shared machine (this VM's speed drifts by up to 30 % within a
//! minute) falls on both sides of a pair instead of on one side of the comparison.
//!
//! usage: bench-train [--height 256 --width 320] [--batch 2] [--seq-len 5] [--steps 15]
//!        [--threads 2]
//!        [--devices flex,tch-cpu] [--torch-device cpu|cuda] [--python PATH] [--out DIR]
//! The PyTorch side needs `cargo xtask provision-torch` (a venv under $PRISM_ENV/torch-venv), or
//! `--python` naming an interpreter with torch (a GPU machine's own CUDA PyTorch, say). On a GPU,
//! `--devices tch-cuda --torch-device cuda` times Burn's LibTorch backend against PyTorch on the
//! same card.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use prism_benchmarks::op_profile::{self, OpTime};
use prism_benchmarks::stats::{median, median_with_interval, prism_env};
use prism_models::rvt::{RvtConfig, RvtState};
use prism_train::clip::clip_global_norm;
use prism_train::loss::YoloxLoss;
use prism_train::simota::GtBox;
use prism_train::TrainDevice;

/// Training throughput of rvt-tiny in Burn (PyTorch is timed beside it by the xtask).
#[derive(Debug, clap::Parser)]
struct Args {
    /// Input height.
    #[arg(long, default_value_t = 256)]
    height: usize,
    /// Input width.
    #[arg(long, default_value_t = 320)]
    width: usize,
    /// Clips per batch.
    #[arg(long, default_value_t = 2)]
    batch: usize,
    /// Windows per clip.
    #[arg(long, default_value_t = 5)]
    seq_len: usize,
    /// Timed steps per Burn backend, each followed by one step of each PyTorch peer.
    #[arg(long, default_value_t = 15)]
    steps: usize,
    /// Threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Burn training devices to time (default: every CPU backend this build has).
    #[arg(long, value_delimiter = ',')]
    devices: Vec<TrainDevice>,
    /// Repetitions per operation of the per-operation profile (0: no profile).
    #[arg(long, default_value_t = 5)]
    profile_reps: usize,
    /// Where PyTorch runs: `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    torch_device: String,
    /// The Python interpreter of the PyTorch peer (default: $PRISM_ENV/torch-venv/bin/python).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Where `train-HxW.md` and `.json` go (default: benchmarks/results).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// A file of `benchmarks/python`: from this source tree, or, where the binary runs away from it
/// (a copied binary on a GPU machine), from `benchmarks/python` under the working directory.
fn peer_script(name: &str) -> PathBuf {
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name);
    if built.exists() {
        built
    } else {
        PathBuf::from("benchmarks/python").join(name)
    }
}

/// One Burn backend's figures.
struct BurnRow {
    device: TrainDevice,
    windows_per_s: f64,
    step_s: Vec<f64>,
}

/// Deterministic pseudo-random numbers (SplitMix64) for inputs and boxes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// 1..=8 boxes per image, sides 10..100 px (scaled to the input), inside the image.
fn random_boxes(rng: &mut Rng, h: usize, w: usize, classes: usize) -> Vec<GtBox> {
    let scale = (h as f32 / 256.0).min(w as f32 / 320.0);
    let n = 1 + (rng.next() % 8) as usize;
    (0..n)
        .map(|_| {
            let bw = (10.0 + rng.unit() * 90.0) * scale;
            let bh = (10.0 + rng.unit() * 90.0) * scale;
            GtBox {
                cx: bw / 2.0 + rng.unit() * (w as f32 - bw),
                cy: bh / 2.0 + rng.unit() * (h as f32 - bh),
                w: bw,
                h: bh,
                class_id: (rng.next() % classes as u64) as usize,
            }
        })
        .collect()
}

/// Trains `a.steps` timed steps (after one untimed) on `train_device`, calling `after_step`
/// after each timed one (where the peers take theirs).
fn burn_windows_per_s(
    a: &Args,
    train_device: TrainDevice,
    after_step: &mut dyn FnMut() -> Result<()>,
) -> Result<BurnRow> {
    let device: Device = train_device.burn_autodiff()?;
    let init_device = TrainDevice::init_device(&device);
    init_device.seed(0);
    let classes = 2;
    let config = RvtConfig::new(
        32,
        32,
        classes,
        [a.height / 32, a.width / 32],
        [a.height, a.width],
        0.33,
    );
    // The same initial weights on every backend.
    let mut model = prism_train::device::fork_initialised(config.init(&init_device), &device);
    let loss_fn = YoloxLoss::new([a.height, a.width], &config.strides(), classes);
    // prism-train's AdamW (epsilon 1e-8; LibTorch's fused step on tch), as `prism train` runs it.
    let mut optim = ModuleOptimizer::from(prism_train::optim::adamw(0.0));
    let mut rng = Rng(0);
    let plane = a.batch * 20 * a.height * a.width;
    // Made once and reused every step, as the PyTorch peer reuses its window tensors.
    let windows: Vec<Tensor<4>> = (0..a.seq_len)
        .map(|_| {
            let values: Vec<f32> = (0..plane).map(|_| (rng.next() % 11) as f32).collect();
            Tensor::from_data(
                TensorData::new(values, [a.batch, 20, a.height, a.width]),
                &device,
            )
        })
        .collect();
    let targets: Vec<Vec<GtBox>> = (0..a.seq_len * a.batch)
        .map(|_| random_boxes(&mut rng, a.height, a.width, classes))
        .collect();
    let mut state = RvtState::zeros(&config, a.batch, [a.height, a.width], &device);
    let mut times = Vec::new();
    for step in 0..=a.steps {
        let t0 = Instant::now();
        let mut raws = Vec::new();
        for x in &windows {
            let (raw, next) = model.forward(x.clone(), state);
            state = next;
            raws.push(raw);
        }
        let t_forward = t0.elapsed().as_secs_f64();
        let out = loss_fn.forward(Tensor::cat(raws, 0), &targets);
        let t_loss = t0.elapsed().as_secs_f64();
        let mut grads = GradientsParams::from_grads(out.total.backward(), &model);
        let t_backward = t0.elapsed().as_secs_f64();
        clip_global_norm(&model, &mut grads, 1.0);
        model = optim.step(2e-4, model, grads);
        state = state.detach();
        let dt = t0.elapsed().as_secs_f64();
        // Where a step goes (flex runs eagerly, so each phase is its own work).
        eprintln!(
            "burn {train_device} step {step}: {dt:.2} s (forward {t_forward:.2}, loss + assignment {:.2}, backward {:.2}, clip + AdamW {:.2}), loss {:.3}",
            t_loss - t_forward,
            t_backward - t_loss,
            dt - t_backward,
            out.iou + out.obj + out.cls
        );
        if step > 0 {
            times.push(dt);
            after_step()?;
        }
    }
    let median = median(&times);
    Ok(BurnRow {
        device: train_device,
        windows_per_s: (a.batch * a.seq_len) as f64 / median,
        step_s: times,
    })
}

/// The tcmalloc library this binary was linked with (benchmarks/build.rs), if any: Burn's rows
/// then allocate through it.
fn linked_tcmalloc() -> Option<&'static str> {
    if cfg!(feature = "tch") {
        option_env!("PRISM_TCMALLOC_LIB")
    } else {
        None
    }
}

/// A PyTorch peer process in lockstep mode: it has warmed up and takes one timed step per
/// [`TorchPeer::step`].
struct TorchPeer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    step_s: Vec<f64>,
}

impl TorchPeer {
    /// Starts the peer script (with `preload`, a malloc library, in `LD_PRELOAD` when given) and
    /// waits for its warm-up. `None` when the PyTorch venv is not provisioned.
    fn start(a: &Args, preload: Option<&str>) -> Result<Option<Self>> {
        let python = a
            .python
            .clone()
            .unwrap_or_else(|| prism_env().join("torch-venv/bin/python"));
        if !python.exists() {
            eprintln!(
                "PyTorch peer not provisioned ({}); run `cargo xtask provision-torch`",
                python.display()
            );
            return Ok(None);
        }
        let mut command = Command::new(&python);
        if let Some(library) = preload {
            command.env("LD_PRELOAD", library);
        }
        let size = |n: usize| n.to_string();
        let mut child = command
            .arg(peer_script("train_throughput_torch.py"))
            .args(["--lockstep", "--device", &a.torch_device])
            .args(["--height", &size(a.height), "--width", &size(a.width)])
            .args(["--batch", &size(a.batch), "--seq-len", &size(a.seq_len)])
            .args(["--threads", &size(a.threads)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the PyTorch peer")?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().context("the peer's stdout")?);
        let mut peer = Self {
            child,
            stdin,
            stdout,
            step_s: Vec::new(),
        };
        peer.read_json().context("the PyTorch peer's warm-up")?;
        Ok(Some(peer))
    }

    /// The peer's next JSON line (it prints nothing else on stdout).
    fn read_json(&mut self) -> Result<serde_json::Value> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            let status = self.child.wait()?;
            bail!("the PyTorch peer ended ({status}); its stderr is above");
        }
        serde_json::from_str(&line).with_context(|| format!("the peer printed {line:?}"))
    }

    /// One timed step; its time in seconds.
    fn step(&mut self) -> Result<f64> {
        let stdin = self.stdin.as_mut().context("the peer's stdin is closed")?;
        stdin.write_all(b"step\n")?;
        stdin.flush()?;
        let answer = self.read_json()?;
        let dt = answer["step_s"]
            .as_f64()
            .with_context(|| format!("no step time in {answer}"))?;
        self.step_s.push(dt);
        Ok(dt)
    }

    /// Ends the peer: its summary (version, device, every timed step).
    fn finish(mut self) -> Result<serde_json::Value> {
        drop(self.stdin.take());
        let summary = self.read_json()?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("the PyTorch peer failed ({status})");
        }
        Ok(summary)
    }
}

impl Drop for TorchPeer {
    fn drop(&mut self) {
        // A peer left behind by an error is stopped, not orphaned.
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Speed ratios of Burn's steps against a peer's paired steps (peer time / Burn time: above 1,
/// Burn is faster): the median with its 95 % bootstrap interval, and in how many pairs Burn was
/// the faster.
fn paired(burn: &[f64], peer: &[f64]) -> Option<(f64, f64, f64, usize, usize)> {
    if burn.is_empty() || burn.len() != peer.len() {
        return None;
    }
    let ratios: Vec<f64> = burn.iter().zip(peer).map(|(b, p)| p / b).collect();
    let (m, lo, hi) = median_with_interval(&ratios);
    let faster = ratios.iter().filter(|&&r| r > 1.0).count();
    Some((m, lo, hi, faster, ratios.len()))
}

fn main() -> Result<()> {
    let mut a = <Args as clap::Parser>::parse();
    if a.devices.is_empty() {
        a.devices.push(TrainDevice::Flex);
        if cfg!(feature = "tch") {
            a.devices.push(TrainDevice::TchCpu);
        }
    }
    // Burn's flex backend runs on the rayon pool, LibTorch on its own (intra-op) threads: give
    // each the same number of threads as PyTorch.
    rayon_threads(a.threads);
    prism_train::device::set_libtorch_threads(a.threads);
    // The peers start (and warm up) once; each then steps after every timed Burn step.
    let mut peers: Vec<TorchPeer> = Vec::new();
    if let Some(peer) = TorchPeer::start(&a, None)? {
        peers.push(peer);
        // PyTorch again with the allocator Burn's rows use, so that its share shows.
        if let Some(library) = linked_tcmalloc() {
            peers.extend(TorchPeer::start(&a, Some(library))?);
        }
    }
    // Per Burn row: the row and, per peer, the peer steps paired with its steps.
    let mut rows: Vec<(BurnRow, Vec<Vec<f64>>)> = Vec::new();
    for &device in &a.devices {
        let first = peers.iter().map(|p| p.step_s.len()).collect::<Vec<_>>();
        let row = burn_windows_per_s(&a, device, &mut || {
            for peer in peers.iter_mut() {
                peer.step()?;
            }
            Ok(())
        })?;
        let paired_steps = peers
            .iter()
            .zip(&first)
            .map(|(p, &from)| p.step_s[from..].to_vec())
            .collect();
        rows.push((row, paired_steps));
    }
    let mut summaries = peers
        .into_iter()
        .map(TorchPeer::finish)
        .collect::<Result<Vec<_>>>()?
        .into_iter();
    let (torch, torch_tcmalloc) = (summaries.next(), summaries.next());
    let windows = (a.batch * a.seq_len) as f64;
    let wps = |run: &Option<serde_json::Value>| {
        run.as_ref()
            .and_then(|t| t["median_step_s"].as_f64())
            .map(|step| windows / step)
    };
    let (torch_wps, tcmalloc_wps) = (wps(&torch), wps(&torch_tcmalloc));
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let step = |wps: f64| windows / wps;
    let cell = |ratio: Option<(f64, f64, f64, usize, usize)>| match ratio {
        Some((m, lo, hi, faster, n)) => {
            format!("{m:.2}x ({lo:.2}-{hi:.2}), faster in {faster} of {n}")
        }
        None => "-".to_string(),
    };
    let allocator = match linked_tcmalloc() {
        Some(_) => "tcmalloc, linked",
        None => "glibc malloc",
    };
    let mut md = format!(
        "# Training throughput: rvt-tiny, batch {}, sequence length {}, input {}x{}, {} threads\n\n\
         {} timed steps per Burn backend, each followed by one step of each PyTorch process (started \
         once, warmed up, driven step by step). A ratio is the median over those pairs of the peer's \
         step time over the row's (above 1: the row is faster), with its 95 % bootstrap interval and \
         the number of pairs in which the row was the faster.\n\n\
         | framework | allocator | windows / s | median step | / PyTorch, paired | / PyTorch + tcmalloc, paired |\n\
         |---|---|---|---|---|---|\n",
        a.batch, a.seq_len, a.height, a.width, a.threads, a.steps
    );
    let mut burn_json = Vec::new();
    for (row, peer_steps) in &rows {
        let against = |i: usize| peer_steps.get(i).and_then(|p| paired(&row.step_s, p));
        md += &format!(
            "| Burn `{}` (prism-train) | {allocator} | {:.2} | {:.2} s | {} | {} |\n",
            row.device,
            row.windows_per_s,
            step(row.windows_per_s),
            cell(against(0)),
            cell(against(1)),
        );
        let json_ratio = |r: Option<(f64, f64, f64, usize, usize)>| {
            r.map(|(m, lo, hi, faster, n)| serde_json::json!({"median": m, "low": lo, "high": hi, "faster": faster, "pairs": n}))
        };
        burn_json.push(serde_json::json!({
            "device": row.device.to_string(),
            "windows_per_s": row.windows_per_s,
            "step_s": row.step_s,
            "paired_steps": {"torch": peer_steps.first(), "torch_tcmalloc": peer_steps.get(1)},
            "vs_torch": json_ratio(against(0)),
            "vs_torch_tcmalloc": json_ratio(against(1)),
        }));
    }
    let torch_name = |run: &Option<serde_json::Value>| {
        let run = run.as_ref();
        format!(
            "PyTorch {} {}",
            run.and_then(|j| j["version"].as_str()).unwrap_or(""),
            run.and_then(|j| j["gpu"].as_str()).unwrap_or("CPU")
        )
    };
    let steps_of = |run: &Option<serde_json::Value>| -> Vec<f64> {
        run.as_ref()
            .and_then(|j| j["step_s"].as_array())
            .map(|v| v.iter().filter_map(serde_json::Value::as_f64).collect())
            .unwrap_or_default()
    };
    let (torch_steps, tcmalloc_steps) = (steps_of(&torch), steps_of(&torch_tcmalloc));
    if let Some(t) = torch_wps {
        md += &format!(
            "| {} | glibc malloc | {t:.2} | {:.2} s | 1.00x | {} |\n",
            torch_name(&torch),
            step(t),
            cell(paired(&torch_steps, &tcmalloc_steps)),
        );
    } else {
        md += "\nPyTorch peer not provisioned in this run.\n";
    }
    if let Some(t) = tcmalloc_wps {
        md += &format!(
            "| {} | tcmalloc, `LD_PRELOAD` | {t:.2} | {:.2} s | {} | 1.00x |\n",
            torch_name(&torch_tcmalloc),
            step(t),
            cell(paired(&tcmalloc_steps, &torch_steps)),
        );
    }
    let profile = op_profile_table(&a)?;
    md += &profile;
    md += &format!("\nload average at the end: {}\n", load.trim());
    println!("{md}");
    let dir = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results"));
    std::fs::create_dir_all(&dir)?;
    let name = format!("train-{}x{}", a.height, a.width);
    std::fs::write(dir.join(format!("{name}.md")), &md)?;
    let json = serde_json::json!({"burn": burn_json, "burn_allocator": allocator, "torch": torch, "torch_tcmalloc": torch_tcmalloc, "batch": a.batch, "seq_len": a.seq_len, "height": a.height, "width": a.width, "threads": a.threads, "loadavg": load.trim()});
    std::fs::write(
        dir.join(format!("{name}.json")),
        serde_json::to_string_pretty(&json)?,
    )?;
    Ok(())
}

/// The per-operation profile (`prism_benchmarks::op_profile`) on every timed device and, when
/// the torch venv is there, in PyTorch (`benchmarks/python/op_profile_torch.py`), as a markdown
/// section; empty with `--profile-reps 0`.
fn op_profile_table(a: &Args) -> Result<String> {
    if a.profile_reps == 0 {
        return Ok(String::new());
    }
    let ops = op_profile::rvt_tiny_ops(a.batch);
    let mut columns: Vec<(String, Vec<OpTime>)> = Vec::new();
    for &device in &a.devices {
        let burn_device = device.burn_autodiff()?;
        let row: Vec<OpTime> = ops
            .iter()
            .map(|op| {
                let t = op_profile::time_op(op, &burn_device, a.profile_reps);
                eprintln!(
                    "{device} {}: forward {:.2} ms, backward {:.2} ms",
                    op.name, t.forward_ms, t.backward_ms
                );
                t
            })
            .collect();
        columns.push((format!("`{device}`"), row));
    }
    let torch = torch_op_profile(a, &ops)?;
    let burn_columns = columns.len();
    if let Some((version, row)) = torch {
        columns.push((format!("PyTorch {version}"), row));
    }
    // Speed against the last column (PyTorch when it ran): its time over each Burn backend's.
    let reference = columns.len() - 1;
    let compared: Vec<usize> = (0..burn_columns).filter(|&c| c != reference).collect();
    let mut md = format!(
        "\n## Per operation: forward / backward in ms, median of {} (rvt-tiny's shapes, batch {})\n\n| operation |",
        a.profile_reps, a.batch
    );
    for (name, _) in &columns {
        md += &format!(" {name} forward | {name} backward |");
    }
    for &c in &compared {
        md += &format!(" {} speed / {} |", columns[c].0, columns[reference].0);
    }
    md += &format!(
        "\n|---|{}\n",
        "---|".repeat(2 * columns.len() + compared.len())
    );
    let both = |t: &OpTime| t.forward_ms + t.backward_ms;
    for (i, op) in ops.iter().enumerate() {
        md += &format!("| {} |", op.name);
        for (_, row) in &columns {
            md += &format!(" {:.2} | {:.2} |", row[i].forward_ms, row[i].backward_ms);
        }
        for &c in &compared {
            md += &format!(
                " {:.2}x |",
                both(&columns[reference].1[i]) / both(&columns[c].1[i])
            );
        }
        md += "\n";
    }
    let total = |c: usize| columns[c].1.iter().map(both).sum::<f64>();
    md += "| **sum of both passes** |";
    for c in 0..columns.len() {
        md += &format!(" {:.1} | |", total(c));
    }
    for &c in &compared {
        md += &format!(" {:.2}x |", total(reference) / total(c));
    }
    md += "\n";
    Ok(md)
}

/// PyTorch's times for the same operations, or `None` without the torch venv.
fn torch_op_profile(a: &Args, ops: &[op_profile::Op]) -> Result<Option<(String, Vec<OpTime>)>> {
    let python = prism_env().join("torch-venv/bin/python");
    if !python.exists() {
        return Ok(None);
    }
    let script = peer_script("op_profile_torch.py");
    let out = Command::new(&python)
        .arg(&script)
        .args(["--batch", &a.batch.to_string()])
        .args(["--reps", &a.profile_reps.to_string()])
        .args(["--threads", &a.threads.to_string()])
        .output()
        .context("running the PyTorch operation profile")?;
    if !out.status.success() {
        bail!(
            "PyTorch operation profile failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let rows = json["ops"].as_array().context("no ops from the peer")?;
    if rows.len() != ops.len() {
        bail!(
            "the PyTorch profile has {} operations, prism's {}",
            rows.len(),
            ops.len()
        );
    }
    let mut times = Vec::new();
    for (row, op) in rows.iter().zip(ops) {
        if row["name"].as_str() != Some(op.name.as_str()) {
            bail!(
                "the PyTorch profile's {} is not prism's {}",
                row["name"],
                op.name
            );
        }
        times.push(OpTime {
            forward_ms: row["forward_ms"].as_f64().context("forward_ms")?,
            backward_ms: row["backward_ms"].as_f64().context("backward_ms")?,
        });
    }
    let version = json["version"].as_str().unwrap_or("").to_string();
    Ok(Some((version, times)))
}

fn rayon_threads(n: usize) {
    // RAYON_NUM_THREADS is read when the global pool starts (on the first parallel operation).
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
}
