//! One experiment of `prism ablate`: train (resuming a killed run from its last checkpoint),
//! score the final weights on the validation split and every test folder, count parameters and
//! the fusion overhead, time the exported model, and write `result.json` last, so a finished
//! experiment is recognised and never rerun.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use prism_data::multimodal::{MmFolder, MmSample};
use prism_deploy::engine::{Backend, Engine, EngineOptions, TensorView};
use prism_train::frame_run::{evaluate_burn, find_checkpoint, FrameRun, FrameRunOptions};
use prism_train::metrics_log::{read, Record};
use prism_train::trainer::last_checkpoint;
use prism_train::{Event, TrainDevice};
use serde::{Deserialize, Serialize};

use super::matrix::{Experiment, Matrix, Variant};

pub const RESULT_FILE: &str = "result.json";
/// Timed runs of the exported model (after warm-up); the median is reported.
pub const LATENCY_RUNS: usize = 20;

/// One split's scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitResult {
    pub split: String,
    pub images: usize,
    pub map: f64,
    pub ap50: f64,
}

/// What one experiment measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentResult {
    pub id: String,
    pub variant: Variant,
    pub seed: u64,
    pub steps: usize,
    pub params: usize,
    /// Parameters of the fusion blocks.
    pub fusion_params: usize,
    /// `val` first, then the test folders.
    pub splits: Vec<SplitResult>,
    /// Median ms per image of the exported model in tract, batch 1, on this machine.
    pub latency_ms: f64,
    pub train_s: f64,
}

impl ExperimentResult {
    /// `metric` (`map` or `ap50`) on `split`, if scored.
    pub fn score(&self, split: &str, metric: &str) -> Option<f64> {
        self.splits.iter().find(|s| s.split == split).map(|s| {
            if metric == "ap50" {
                s.ap50
            } else {
                s.map
            }
        })
    }
}

/// The run folder of an experiment.
pub fn run_dir(out: &Path, e: &Experiment) -> PathBuf {
    out.join("runs").join(e.id())
}

/// The result of a finished experiment, if it has one.
pub fn finished(out: &Path, e: &Experiment) -> Option<ExperimentResult> {
    let bytes = std::fs::read(run_dir(out, e).join(RESULT_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Runs `e` unless it has finished; returns its result.
pub fn run(
    matrix: &Matrix,
    e: &Experiment,
    folder: &MmFolder,
    out: &Path,
    device: TrainDevice,
    mut on_event: impl FnMut(&Event),
) -> Result<ExperimentResult> {
    if let Some(done) = finished(out, e) {
        return Ok(done);
    }
    let config = matrix.config(e)?;
    let dir = run_dir(out, e);
    let opts = FrameRunOptions {
        run_dir: dir.clone(),
        resume: find_checkpoint(&last_checkpoint(&dir)).is_some(),
        stop_after: None,
        device,
    };
    let (split_seed, val_fraction) = config.dataset.split();
    let steps = config.train.steps;
    let summary = FrameRun::new(config, opts, folder.clone())?.run(&mut on_event)?;

    let inference = device.burn()?;
    let (card, model) = prism_models::mm::card::load_checkpoint(&last_checkpoint(&dir), &inference)
        .context("reading the final weights")?;
    let (_, val) = folder.split(split_seed, val_fraction);
    let mut sets: Vec<(String, Vec<MmSample>)> = vec![("val".into(), val)];
    sets.extend(
        folder
            .tests
            .iter()
            .map(|t| (t.name.clone(), t.samples.clone())),
    );
    let mut splits = Vec::new();
    for (split, samples) in sets {
        let m = evaluate_burn(
            &model,
            folder,
            &samples,
            card.model.input_size,
            &inference,
            |_| {},
        )?;
        splits.push(SplitResult {
            split,
            images: samples.len(),
            map: m.ap(),
            ap50: m.ap50(),
        });
    }
    let onnx_path = dir.join("model.onnx");
    prism_models::onnx::export_mm(
        &model,
        &card.name,
        &card.data.classes,
        card.model.input_size,
        false,
        &inference,
    )?
    .save(&onnx_path)
    .with_context(|| format!("writing {}", onnx_path.display()))?;
    let result = ExperimentResult {
        id: e.id(),
        variant: e.variant.clone(),
        seed: e.seed,
        steps: summary.steps_done.min(steps),
        params: prism_models::rvt::params::count_params(&model),
        fusion_params: model.encoder.fusion_params().iter().sum(),
        splits,
        latency_ms: latency_ms(&onnx_path, card.model.input_size)?,
        train_s: training_seconds(&dir),
    };
    write_atomically(&dir.join(RESULT_FILE), &serde_json::to_vec_pretty(&result)?)?;
    Ok(result)
}

/// Median ms per image of the exported model in tract at batch 1.
fn latency_ms(onnx: &Path, [h, w]: [usize; 2]) -> Result<f64> {
    let engine = Engine::load(onnx, &EngineOptions::new(Backend::Tract))
        .with_context(|| format!("loading {}", onnx.display()))?;
    let shape = [1, prism_models::mm::MM_CHANNELS, h, w];
    let input = vec![0.5f32; shape.iter().product()];
    let name = engine.spec().input.name.clone();
    let mut times = Vec::with_capacity(LATENCY_RUNS);
    for i in 0..LATENCY_RUNS + 3 {
        let t0 = Instant::now();
        engine.run(&[TensorView::new(&name, &shape, &input)])?;
        if i >= 3 {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Training wall time from the run's metrics log (resumed sessions included).
pub fn training_seconds(dir: &Path) -> f64 {
    read(&dir.join("metrics.jsonl"))
        .unwrap_or_default()
        .iter()
        .filter_map(|r| match r {
            Record::Train(s) => Some(s.elapsed_s),
            Record::Val(_) => None,
        })
        .fold(0.0, f64::max)
}

/// Draws a horizontal bar chart into `path`: one group per (name, bars), as the ablation
/// reports draw their tables.
pub fn save_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    groups: impl IntoIterator<Item = (String, Vec<(String, f64)>)>,
) -> Result<()> {
    let mut chart = prism_plot::BarChart::new(title).x_label(x_label);
    for (name, bars) in groups {
        chart = chart.group(&name, &bars);
    }
    chart
        .save_png(path)
        .with_context(|| format!("drawing {}", path.display()))
}

/// Writes `bytes` to `path` through a temporary file renamed into place.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
