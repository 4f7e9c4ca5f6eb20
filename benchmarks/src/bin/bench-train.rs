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
//! usage: bench-train [--height 256 --width 320] [--batch 2] [--seq-len 5] [--steps 5] [--rounds 3]
//!        [--threads 2]
//!        [--devices flex,tch-cpu] [--torch-device cpu|cuda] [--python PATH] [--out DIR]
//! The PyTorch side needs `cargo xtask provision-torch` (a venv under $PRISM_ENV/torch-venv), or
//! `--python` naming an interpreter with torch (a GPU machine's own CUDA PyTorch, say). On a GPU,
//! `--devices tch-cuda --torch-device cuda` times Burn's LibTorch backend against PyTorch on the
//! same card.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use prism_benchmarks::op_profile::{self, OpTime};
use prism_benchmarks::stats::{median, prism_env};
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
    /// Timed steps per round.
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Rounds: each round runs every Burn backend, then PyTorch, so that a slow spell of a shared
    /// machine falls on all of them; the figures are medians over every round's steps.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
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

fn burn_windows_per_s(a: &Args, train_device: TrainDevice) -> Result<BurnRow> {
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
    let mut optim = AdamWConfig::new()
        .with_weight_decay(0.0)
        .with_epsilon(1e-8)
        .init();
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

/// The PyTorch peer's runs as one: every round's step times, and the windows per second of
/// their median. `None` when there were none.
fn merge_rounds(runs: Vec<serde_json::Value>, windows: f64) -> Option<serde_json::Value> {
    let mut merged = runs.first()?.clone();
    let step_s: Vec<f64> = runs
        .iter()
        .filter_map(|run| run["step_s"].as_array())
        .flatten()
        .filter_map(serde_json::Value::as_f64)
        .collect();
    let step = median(&step_s);
    merged["step_s"] = serde_json::json!(step_s);
    merged["median_step_s"] = serde_json::json!(step);
    merged["windows_per_s"] = serde_json::json!(windows / step);
    merged["rounds"] = serde_json::json!(runs.len());
    Some(merged)
}

/// The PyTorch peer's run, with `preload` (a malloc library) in `LD_PRELOAD` when given.
fn torch_windows_per_s(a: &Args, preload: Option<&str>) -> Result<Option<serde_json::Value>> {
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
    let script = peer_script("train_throughput_torch.py");
    let mut command = Command::new(&python);
    if let Some(library) = preload {
        command.env("LD_PRELOAD", library);
    }
    let out = command
        .arg(&script)
        .args(["--device", &a.torch_device])
        .args([
            "--height",
            &a.height.to_string(),
            "--width",
            &a.width.to_string(),
        ])
        .args([
            "--batch",
            &a.batch.to_string(),
            "--seq-len",
            &a.seq_len.to_string(),
        ])
        .args([
            "--steps",
            &a.steps.to_string(),
            "--threads",
            &a.threads.to_string(),
        ])
        .output()
        .context("running the PyTorch peer")?;
    if !out.status.success() {
        bail!(
            "PyTorch peer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .context("no JSON from the peer")?;
    Ok(Some(serde_json::from_str(line)?))
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
    let (mut burn_rounds, mut torch_rounds, mut tcmalloc_rounds) = (vec![], vec![], vec![]);
    for round in 0..a.rounds.max(1) {
        eprintln!("round {} of {}", round + 1, a.rounds.max(1));
        for &device in &a.devices {
            burn_rounds.push(burn_windows_per_s(&a, device)?);
        }
        if let Some(run) = torch_windows_per_s(&a, None)? {
            torch_rounds.push(run);
            // PyTorch again with the allocator Burn's rows use, so that its share shows.
            if let Some(library) = linked_tcmalloc() {
                tcmalloc_rounds.extend(torch_windows_per_s(&a, Some(library))?);
            }
        }
    }
    let windows = (a.batch * a.seq_len) as f64;
    let burn: Vec<BurnRow> = a
        .devices
        .iter()
        .map(|&device| {
            let step_s: Vec<f64> = burn_rounds
                .iter()
                .filter(|row| row.device == device)
                .flat_map(|row| row.step_s.iter().copied())
                .collect();
            BurnRow {
                device,
                windows_per_s: windows / median(&step_s),
                step_s,
            }
        })
        .collect();
    let torch = merge_rounds(torch_rounds, windows);
    let torch_tcmalloc = merge_rounds(tcmalloc_rounds, windows);
    let torch_wps = torch.as_ref().and_then(|t| t["windows_per_s"].as_f64());
    let tcmalloc_wps = torch_tcmalloc
        .as_ref()
        .and_then(|t| t["windows_per_s"].as_f64());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let step = |wps: f64| (a.batch * a.seq_len) as f64 / wps;
    let ratio =
        |wps: f64, peer: Option<f64>| peer.map_or("-".to_string(), |t| format!("{:.2}x", wps / t));
    let allocator = match linked_tcmalloc() {
        Some(_) => "tcmalloc, linked",
        None => "glibc malloc",
    };
    let mut md = format!(
        "# Training throughput: rvt-tiny, batch {}, sequence length {}, input {}x{}, {} threads\n\n\
         Medians over {} rounds of {} timed steps (each round runs every row in turn).\n\n\
         | framework | allocator | windows / s | median step | / PyTorch | / PyTorch + tcmalloc |\n\
         |---|---|---|---|---|---|\n",
        a.batch, a.seq_len, a.height, a.width, a.threads, a.rounds.max(1), a.steps
    );
    for row in &burn {
        md += &format!(
            "| Burn `{}` (prism-train) | {allocator} | {:.2} | {:.2} s | {} | {} |\n",
            row.device,
            row.windows_per_s,
            step(row.windows_per_s),
            ratio(row.windows_per_s, torch_wps),
            ratio(row.windows_per_s, tcmalloc_wps),
        );
    }
    let torch_name = |run: &Option<serde_json::Value>| {
        let run = run.as_ref();
        format!(
            "PyTorch {} {}",
            run.and_then(|j| j["version"].as_str()).unwrap_or(""),
            run.and_then(|j| j["gpu"].as_str()).unwrap_or("CPU")
        )
    };
    if let Some(t) = torch_wps {
        md += &format!(
            "| {} | glibc malloc | {t:.2} | {:.2} s | 1.00x | {} |\n",
            torch_name(&torch),
            step(t),
            ratio(t, tcmalloc_wps),
        );
    } else {
        md += "\nPyTorch peer not provisioned in this run.\n";
    }
    if let Some(t) = tcmalloc_wps {
        md += &format!(
            "| {} | tcmalloc, `LD_PRELOAD` | {t:.2} | {:.2} s | {} | 1.00x |\n",
            torch_name(&torch_tcmalloc),
            step(t),
            ratio(t, torch_wps),
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
    let backends: Vec<_> = burn
        .iter()
        .map(|r| serde_json::json!({"device": r.device.to_string(), "windows_per_s": r.windows_per_s, "step_s": r.step_s}))
        .collect();
    let json = serde_json::json!({"burn": backends, "burn_allocator": allocator, "torch": torch, "torch_tcmalloc": torch_tcmalloc, "batch": a.batch, "seq_len": a.seq_len, "height": a.height, "width": a.width, "threads": a.threads, "loadavg": load.trim()});
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
