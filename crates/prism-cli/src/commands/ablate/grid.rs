//! RVT ablation grids (`models/rvt-memory-fpn.toml`): a base RVT card, seeds, overrides for
//! every run, and a `[grid]` of card keys with the values to try (`"model.memory" = ["lstm",
//! "dws-lstm"]`). Every combination is trained with every seed, scored on the validation split
//! with its final weights, counted (parameters and FLOPs), exported, checked against Burn in
//! tract and ONNX Runtime and timed per window in tract, and the table is written as
//! `results.{md,json,png}`.
//!
//! `eval_window_ms = [20, 50, 100]` also scores every run's final weights on the validation
//! scenes cut into windows of each length (labels at the same rate, so every window ends at a
//! label), the test of a memory that follows time (`models/rvt-ssm-rates.toml`); the table
//! gains a column per length and `rates.png` draws them.
//!
//! Resumable like the fusion matrices: a finished run (its `result.json`) is never redone, a
//! killed one resumes from its last checkpoint.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use prism_deploy::engine::{Backend, Engine, EngineOptions, TensorView};
use prism_train::trainer::last_checkpoint;
use prism_train::{Event, RunOptions, TrainConfig, TrainDevice, Trainer};
use serde::{Deserialize, Serialize};

use super::experiment::{save_chart, training_seconds, write_atomically, LATENCY_RUNS};

/// The grid file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    /// The RVT card every run starts from (its `[train]` and `[dataset]` tables).
    pub base: String,
    #[serde(default = "seed_zero")]
    pub seeds: Vec<u64>,
    /// Overrides for every run, as `--set` takes them (`train.steps=200`).
    #[serde(default)]
    pub set: Vec<String>,
    /// Window lengths (ms) to score every run at besides its own, on the validation scenes
    /// cut at that length (synthetic datasets).
    #[serde(default)]
    pub eval_window_ms: Vec<u32>,
    /// Card keys and the values to try; every combination is a configuration.
    pub grid: toml::Table,
}

fn seed_zero() -> Vec<u64> {
    vec![0]
}

/// One configuration with its seed: one training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridRun {
    /// `key=value` per grid key, keys in alphabetical order.
    pub settings: Vec<String>,
    pub seed: u64,
}

impl GridRun {
    /// The configuration's name (`fpn_scales=4,memory=dws-lstm`).
    pub fn name(&self) -> String {
        self.settings
            .iter()
            .map(|s| s.rsplit_once('.').map_or(s.as_str(), |(_, last)| last))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The run folder's name (`fpn_scales-4_memory-dws-lstm-seed0`).
    pub fn id(&self) -> String {
        let name: String = self
            .name()
            .chars()
            .map(|c| match c {
                '=' => '-',
                ',' => '_',
                c if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' => c,
                _ => '-',
            })
            .collect();
        format!("{name}-seed{}", self.seed)
    }
}

/// What one run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridResult {
    pub id: String,
    pub name: String,
    pub settings: Vec<String>,
    pub seed: u64,
    pub steps: usize,
    /// Validation COCO mAP@[.5:.95] and AP50 of the final weights.
    pub map: f64,
    pub ap50: f64,
    pub params: usize,
    /// Of which the recurrent cells.
    pub memory_params: usize,
    /// Median ms per window of the exported model in tract (state carried), batch 1.
    pub latency_ms: f64,
    pub train_s: f64,
    /// `eval_window_ms`: (window length in ms, validation mAP, AP50) per length.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub window_map: Vec<WindowScore>,
    /// Floating-point operations per window (2 x multiply-accumulates in tract's cost model of
    /// the export), in billions.
    #[serde(default)]
    pub gflops: f64,
    /// The export checked against Burn on random inputs: the largest relative error of any
    /// output, per runtime (`tract`, `ort-cpu`).
    #[serde(default)]
    pub verified: Vec<(String, f64)>,
}

/// A run's validation score at one window length.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowScore {
    pub window_ms: u32,
    pub map: f64,
    pub ap50: f64,
}

/// Whether a matrix file is an RVT grid (it has a `[grid]` table).
pub fn is_grid(text: &str) -> bool {
    toml::from_str::<toml::Table>(text).is_ok_and(|t| t.contains_key("grid"))
}

impl Grid {
    pub fn read(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let grid: Self =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        grid.validate()
            .with_context(|| format!("checking {}", path.display()))?;
        Ok(grid)
    }

    /// Checks the file's values and that every experiment makes a valid training config.
    pub fn validate(&self) -> Result<()> {
        if self.seeds.is_empty() {
            bail!("give at least one seed");
        }
        if self.grid.is_empty() {
            bail!("[grid] is empty: give at least one key and its values");
        }
        if let Some(bad) = self
            .eval_window_ms
            .iter()
            .find(|&&ms| ms == 0 || 1000 % ms != 0)
        {
            bail!(
                "eval_window_ms: {bad} ms does not divide a second (labels come at 1000 / ms Hz)"
            );
        }
        for (key, values) in &self.grid {
            match values.as_array() {
                Some(v) if !v.is_empty() => {}
                _ => bail!("[grid] {key:?}: expected a non-empty list of values"),
            }
        }
        let runs = self.runs();
        let mut ids = std::collections::HashSet::new();
        let first = self.config(&runs[0])?;
        for run in &runs {
            let config = self.config(run)?;
            // Every run reads the same prepared scenes (made once, before any run starts).
            if config.card.data != first.card.data || config.dataset != first.dataset {
                bail!(
                    "run {} changes the data ([data] or [dataset] keys): every run of a grid \
                     trains and validates on the same scenes, so vary model and train keys only",
                    run.id()
                );
            }
            if !self.eval_window_ms.is_empty()
                && !matches!(
                    config.dataset,
                    prism_train::DatasetSection::Synthetic { .. }
                )
            {
                bail!("eval_window_ms needs a synthetic dataset (its scenes are cut again at each length)");
            }
            if !ids.insert(run.id()) {
                bail!("two runs would share the folder {}", run.id());
            }
        }
        Ok(())
    }

    /// Every combination of the grid's values (keys in alphabetical order), with every seed.
    pub fn runs(&self) -> Vec<GridRun> {
        let mut axes: Vec<(&String, &toml::Value)> = self.grid.iter().collect();
        axes.sort_by(|a, b| a.0.cmp(b.0));
        let mut combos: Vec<Vec<String>> = vec![Vec::new()];
        for (key, values) in axes {
            let values = values.as_array().cloned().unwrap_or_default();
            combos = combos
                .into_iter()
                .flat_map(|prefix| {
                    values.iter().map(move |v| {
                        let mut next = prefix.clone();
                        next.push(format!("{key}={}", override_value(v)));
                        next
                    })
                })
                .collect();
        }
        combos
            .into_iter()
            .flat_map(|settings| {
                self.seeds.iter().map(move |&seed| GridRun {
                    settings: settings.clone(),
                    seed,
                })
            })
            .collect()
    }

    /// The training config of one run: the base card, the grid's `set`, the run's settings and
    /// seed.
    pub fn config(&self, run: &GridRun) -> Result<TrainConfig> {
        let mut config = TrainConfig::resolve(&self.base)
            .with_context(|| format!("the base card {:?}", self.base))?;
        config
            .apply_overrides(&self.set)
            .with_context(|| format!("set = {:?}", self.set))?;
        config
            .apply_overrides(&run.settings)
            .with_context(|| format!("run {}", run.id()))?;
        config.train.seed = run.seed;
        Ok(config)
    }
}

/// A grid value as `--set` reads it: strings bare, everything else as TOML.
fn override_value(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The run folder.
pub fn run_dir(out: &Path, run: &GridRun) -> PathBuf {
    out.join("runs").join(run.id())
}

/// The result of a finished run, if it has one.
pub fn finished(out: &Path, run: &GridRun) -> Option<GridResult> {
    let bytes = std::fs::read(run_dir(out, run).join(super::experiment::RESULT_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The grid's data folder: `--data`, else `<out>/data` (where synthetic scenes are made).
pub fn data_dir(out: &Path, data: Option<&Path>) -> PathBuf {
    data.map_or_else(|| out.join("data"), Path::to_path_buf)
}

/// The train and validation splits every run reads (synthetic scenes are made on the first
/// call and read back after).
fn load_splits(
    grid: &Grid,
    data: &Path,
) -> Result<(prism_data::PreparedSplit, prism_data::PreparedSplit)> {
    let config = grid.config(&grid.runs()[0])?;
    prism_train::data::load_splits(&config, data, |m| eprintln!("{m}"))
        .context("loading the base card's data")
}

/// Makes every data folder the runs will read (the synthetic scenes and, with
/// `eval_window_ms`, the validation scenes at each length), so that Slurm tasks started at the
/// same time only read them.
pub fn prepare_data(grid: &Grid, out: &Path, data: &Path) -> Result<()> {
    let config = grid.config(&grid.runs()[0])?;
    if matches!(
        config.dataset,
        prism_train::DatasetSection::Synthetic { .. }
    ) {
        load_splits(grid, data)?;
    }
    for &ms in &grid.eval_window_ms {
        window_split(&config.card, &config.dataset, out, ms)?;
    }
    Ok(())
}

/// Every finished run's result, in the grid's order.
pub fn finished_results(grid: &Grid, out: &Path) -> Vec<GridResult> {
    grid.runs()
        .iter()
        .filter_map(|r| finished(out, r))
        .collect()
}

/// Trains `run` (what one Slurm task does) unless it has a result already.
pub fn run_task(
    grid: &Grid,
    run: &GridRun,
    out: &Path,
    data: &Path,
    device: TrainDevice,
) -> Result<GridResult> {
    if let Some(done) = finished(out, run) {
        return Ok(done);
    }
    let (train, val) = load_splits(grid, data)?;
    train_one(
        run,
        grid.config(run)?,
        (&train, &val),
        out,
        device,
        &grid.eval_window_ms,
        |event| match event {
            Event::Step(s) if s.step % 25 == 0 => {
                eprintln!("  step {} loss {:.3}", s.step, s.loss);
            }
            Event::Validated(v) => {
                eprintln!(
                    "  step {}: validation mAP {:.4} AP50 {:.4}",
                    v.step, v.map, v.ap50
                );
            }
            _ => {}
        },
    )
    .with_context(|| format!("run {}", run.id()))
}

/// Runs every run of `grid` one after another (finished ones are read back), writing the
/// report after each; returns the Markdown table.
pub fn execute(
    grid: &Grid,
    out: &Path,
    data: &Path,
    device: TrainDevice,
    title: &str,
) -> Result<String> {
    let runs = grid.runs();
    let mut results: Vec<GridResult> = Vec::new();
    let mut splits = None;
    for (i, run) in runs.iter().enumerate() {
        if let Some(done) = finished(out, run) {
            results.push(done);
            continue;
        }
        let config = grid.config(run)?;
        let (train, val) = match &splits {
            Some(s) => s,
            None => splits.insert(load_splits(grid, data)?),
        };
        eprintln!("[{}/{}] {}", i + 1, runs.len(), run.id());
        let started = Instant::now();
        let result = train_one(
            run,
            config,
            (train, val),
            out,
            device,
            &grid.eval_window_ms,
            |event| {
                if let Event::Validated(v) = event {
                    eprintln!(
                        "  step {}: validation mAP {:.4} AP50 {:.4}",
                        v.step, v.map, v.ap50
                    );
                }
            },
        )
        .with_context(|| format!("run {}", run.id()))?;
        eprintln!(
            "  done in {:.0} s: val mAP {:.4}",
            started.elapsed().as_secs_f64(),
            result.map
        );
        results.push(result);
        write_report(out, title, &results)?;
    }
    write_report(out, title, &results)
}

/// Trains one run (resuming a killed one), then counts, exports and times it; writes
/// `result.json` last.
fn train_one(
    run: &GridRun,
    config: TrainConfig,
    (train, val): (&prism_data::PreparedSplit, &prism_data::PreparedSplit),
    out: &Path,
    device: TrainDevice,
    eval_window_ms: &[u32],
    on_event: impl FnMut(&Event),
) -> Result<GridResult> {
    let dir = run_dir(out, run);
    // The same validation protocol as `prism train`.
    let filter_name = match &config.dataset {
        prism_train::DatasetSection::Prepared { eval_filter, .. } => eval_filter.as_str(),
        prism_train::DatasetSection::Synthetic { .. } => "synthetic",
    };
    let filter = prism_train::evaluate::filter_by_name(filter_name)
        .with_context(|| format!("unknown evaluation filter {filter_name:?}"))?;
    let opts = RunOptions {
        run_dir: dir.clone(),
        resume: prism_train::run_checkpoint::find(&last_checkpoint(&dir)).is_some(),
        stop_after: None,
        eval_filter: filter,
        device,
    };
    let steps = config.train.steps;
    let dataset = config.dataset.clone();
    let summary = Trainer::new(config, opts, train, val)?.run(on_event)?;
    let last = summary
        .last_val
        .clone()
        .context("the run ended without a validation pass")?;

    let inference = burn::tensor::Device::flex();
    let (card, model) = prism_models::checkpoint::load(&last_checkpoint(&dir), &inference)
        .context("reading the final weights")?;
    let parts = model.param_breakdown();
    let onnx_path = dir.join("model.onnx");
    prism_models::onnx::export_rvt(&model, &card, &Default::default(), &inference)?
        .save(&onnx_path)
        .with_context(|| format!("writing {}", onnx_path.display()))?;
    let bytes = std::fs::read(&onnx_path)?;
    let gflops = super::super::info::flops(&bytes)? as f64 / 1e9;
    let runners = super::super::export::cpu_runners(None)?;
    let runners: Vec<&dyn prism_export::OnnxRunner> = runners
        .iter()
        .map(|r| r as &dyn prism_export::OnnxRunner)
        .collect();
    let report = super::super::export::verify_rvt(
        &model,
        &card,
        &onnx_path,
        &runners,
        &prism_export::VerifyOptions::default(),
    )
    .context("verifying the export")?;
    let verified = runners
        .iter()
        .map(|r| {
            let name = r.name();
            let worst = report
                .errors
                .iter()
                .filter(|e| e.runtime == name)
                .map(|e| e.max_rel)
                .fold(0.0, f64::max);
            (name, worst)
        })
        .collect();
    let result = GridResult {
        id: run.id(),
        name: run.name(),
        settings: run.settings.clone(),
        seed: run.seed,
        steps: summary.steps_done.min(steps),
        map: last.map,
        ap50: last.ap50,
        params: parts.total,
        memory_params: parts.memory,
        latency_ms: latency_ms(&onnx_path, &card)?,
        train_s: training_seconds(&dir),
        window_map: eval_window_ms
            .iter()
            .map(|&ms| score_at_window(&model, &card, &dataset, &filter, out, ms))
            .collect::<Result<_>>()?,
        gflops,
        verified,
    };
    write_atomically(
        &dir.join(super::experiment::RESULT_FILE),
        &serde_json::to_vec_pretty(&result)?,
    )?;
    Ok(result)
}

/// The validation scenes of `dataset` cut into windows of `window_ms` (labels at the same
/// rate), made once into `out/data-<ms>ms`.
fn window_split(
    card: &prism_models::zoo::ModelCard,
    dataset: &prism_train::DatasetSection,
    out: &Path,
    window_ms: u32,
) -> Result<prism_data::PreparedSplit> {
    let prism_train::DatasetSection::Synthetic {
        val_sequences,
        duration_s,
        objects,
        seed,
        ..
    } = dataset
    else {
        bail!("eval_window_ms needs a synthetic dataset");
    };
    let mut card = card.clone();
    card.data.window_ms = window_ms;
    let opts = prism_train::data::prepare_options(
        &card,
        prism_data::LabelFilter::none(),
        prism_data::LabelClock::EveryFrame,
    );
    let mut scene = prism_train::data::synthetic_scene(&card, *duration_s, *objects, *seed);
    scene.label_hz = 1000.0 / f64::from(window_ms);
    let dir = out.join(format!("data-{window_ms}ms"));
    prism_data::prepare_synthetic_tree(&dir, &scene, 0, *val_sequences, &opts)
        .with_context(|| format!("cutting the validation scenes into {window_ms} ms windows"))?;
    prism_data::load_split(&dir, "val").with_context(|| format!("reading {}", dir.display()))
}

/// Validation mAP of `model` on the scenes cut into `window_ms` windows, each window's
/// duration given to the model (an SSM memory uses it; an LSTM cannot).
fn score_at_window(
    model: &prism_models::rvt::Rvt,
    card: &prism_models::zoo::ModelCard,
    dataset: &prism_train::DatasetSection,
    filter: &prism_eval::prophesee::BoxFilter,
    out: &Path,
    window_ms: u32,
) -> Result<WindowScore> {
    let split = window_split(card, dataset, out, window_ms)?;
    let meta = &split
        .sequences
        .first()
        .context("the validation split is empty")?
        .meta;
    let mut runner = prism_train::evaluate::BurnRunner::new(
        model,
        card.rvt_config(),
        [meta.channels, meta.input_hw[0], meta.input_hw[1]],
    );
    let options = prism_train::evaluate::EvalOptions::default();
    let preds = prism_train::evaluate::predict_split(&mut runner, &split, &options)?;
    let metrics = prism_train::evaluate::score(&preds, &card.data.classes, meta.sensor, filter)?;
    eprintln!(
        "  at {window_ms} ms windows: mAP {:.4} AP50 {:.4}",
        metrics.ap(),
        metrics.ap50()
    );
    Ok(WindowScore {
        window_ms,
        map: metrics.ap(),
        ap50: metrics.ap50(),
    })
}

/// Median ms per window of the exported RVT in tract, the state fed back each window.
fn latency_ms(onnx: &Path, card: &prism_models::zoo::ModelCard) -> Result<f64> {
    let engine = Engine::load(onnx, &EngineOptions::new(Backend::Tract))
        .with_context(|| format!("loading {}", onnx.display()))?;
    let spec = engine.spec().clone();
    let [h, w] = card.model.input_size;
    let shape = [1, 2 * card.data.bins, h, w];
    let input = vec![1.0f32; shape.iter().product()];
    let mut state: Vec<Vec<f32>> = spec
        .state
        .iter()
        .map(|s| vec![0.0; s.shape.iter().product()])
        .collect();
    let duration = [card.data.window_ms as f32 / 1000.0];
    let mut times = Vec::with_capacity(LATENCY_RUNS);
    for i in 0..LATENCY_RUNS + 3 {
        let mut feed = vec![TensorView::new(&spec.input.name, &shape, &input)];
        for (s, values) in spec.state.iter().zip(&state) {
            feed.push(TensorView::new(&s.input, &s.shape, values));
        }
        if let Some(name) = &spec.duration_input {
            feed.push(TensorView::new(name, &[1, 1], &duration));
        }
        let t0 = Instant::now();
        let outputs = engine.run(&feed)?;
        if i >= 3 {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        state = outputs.into_iter().skip(1).map(|o| o.data).collect();
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// A configuration's row: the mean over its seeds.
#[derive(Debug, Clone, Serialize)]
pub struct GridRow {
    pub name: String,
    pub seeds: Vec<u64>,
    pub map: f64,
    /// Max - min of mAP over the seeds.
    pub map_spread: f64,
    pub ap50: f64,
    pub params: usize,
    pub memory_params: usize,
    pub latency_ms: f64,
    pub train_s: f64,
    /// Mean mAP and AP50 over the seeds at each `eval_window_ms` length.
    pub window_map: Vec<WindowScore>,
    pub gflops: f64,
    /// The worst relative error of the exports against Burn, per runtime, over the seeds.
    pub verified: Vec<(String, f64)>,
}

/// Groups results by configuration, in the order they first appear.
pub fn rows(results: &[GridResult]) -> Vec<GridRow> {
    let mut order: Vec<&str> = Vec::new();
    for r in results {
        if !order.contains(&r.name.as_str()) {
            order.push(&r.name);
        }
    }
    order
        .into_iter()
        .filter_map(|name| {
            let group: Vec<&GridResult> = results.iter().filter(|r| r.name == name).collect();
            let first = group.first()?;
            let n = group.len() as f64;
            let mean = |f: &dyn Fn(&GridResult) -> f64| group.iter().map(|r| f(r)).sum::<f64>() / n;
            let lo = group.iter().map(|r| r.map).fold(f64::INFINITY, f64::min);
            let hi = group
                .iter()
                .map(|r| r.map)
                .fold(f64::NEG_INFINITY, f64::max);
            Some(GridRow {
                name: name.to_string(),
                seeds: group.iter().map(|r| r.seed).collect(),
                map: mean(&|r| r.map),
                map_spread: hi - lo,
                ap50: mean(&|r| r.ap50),
                params: first.params,
                memory_params: first.memory_params,
                latency_ms: mean(&|r| r.latency_ms),
                train_s: mean(&|r| r.train_s),
                window_map: first
                    .window_map
                    .iter()
                    .map(|w| {
                        let at = |r: &GridResult| {
                            r.window_map
                                .iter()
                                .find(|x| x.window_ms == w.window_ms)
                                .copied()
                                .unwrap_or(WindowScore {
                                    window_ms: w.window_ms,
                                    map: f64::NAN,
                                    ap50: f64::NAN,
                                })
                        };
                        WindowScore {
                            window_ms: w.window_ms,
                            map: mean(&|r| at(r).map),
                            ap50: mean(&|r| at(r).ap50),
                        }
                    })
                    .collect(),
                gflops: first.gflops,
                verified: first
                    .verified
                    .iter()
                    .map(|(name, _)| {
                        let worst = group
                            .iter()
                            .flat_map(|r| r.verified.iter().filter(|(n, _)| n == name))
                            .map(|(_, e)| *e)
                            .fold(0.0, f64::max);
                        (name.clone(), worst)
                    })
                    .collect(),
            })
        })
        .collect()
}

/// Writes `results.md`, `results.json` and `results.png` into `out`; returns the Markdown.
pub fn write_report(out: &Path, title: &str, results: &[GridResult]) -> Result<String> {
    let rows = rows(results);
    let mut md = format!("# {title}\n\n");
    md.push_str(
        "Validation COCO mAP@[.5:.95] and AP50 of the final weights (the mean over seeds, ± \
         half the seed-to-seed range where there are several); GFLOPs per window are 2 x the \
         multiply-accumulates of tract's cost model of the export; the export is checked \
         against Burn on random inputs (the worst relative error of any output, per runtime); \
         latency is the exported model in tract, batch 1, state carried, median ms per window \
         on the machine that ran it.\n\n",
    );
    md.push_str(
        "| configuration | seeds | mAP | AP50 | params | of which memory | GFLOPs | latency (ms) | \
         export vs Burn (max rel.) | training (min) |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &rows {
        let map = if r.seeds.len() > 1 {
            format!("{:.3} ± {:.3}", r.map, r.map_spread / 2.0)
        } else {
            format!("{:.3}", r.map)
        };
        let verified: Vec<String> = r
            .verified
            .iter()
            .map(|(name, e)| format!("{name} {e:.1e}"))
            .collect();
        let verified = if verified.is_empty() {
            "–".to_string()
        } else {
            verified.join(", ")
        };
        md.push_str(&format!(
            "| {} | {} | {map} | {:.3} | {} | {} | {:.2} | {:.1} | {verified} | {:.1} |\n",
            r.name,
            r.seeds.len(),
            r.ap50,
            r.params,
            r.memory_params,
            r.gflops,
            r.latency_ms,
            r.train_s / 60.0
        ));
    }
    md.push_str(&window_table(&rows));
    write_atomically(&out.join("results.md"), md.as_bytes())?;
    let json = serde_json::json!({ "title": title, "rows": rows, "runs": results });
    write_atomically(
        &out.join("results.json"),
        &serde_json::to_vec_pretty(&json)?,
    )?;
    if !rows.is_empty() {
        save_chart(
            &out.join("results.png"),
            &format!("{title}: validation mAP and AP50"),
            "COCO mAP@[.5:.95] and AP50",
            rows.iter().map(|r| {
                let bars = vec![("mAP".to_string(), r.map), ("AP50".to_string(), r.ap50)];
                (r.name.clone(), bars)
            }),
        )?;
    }
    if rows.iter().any(|r| !r.window_map.is_empty()) {
        save_chart(
            &out.join("rates.png"),
            &format!("{title}: validation mAP by window length"),
            "COCO mAP@[.5:.95]",
            rows.iter().map(|r| {
                let bars = r
                    .window_map
                    .iter()
                    .map(|w| (format!("{} ms", w.window_ms), w.map))
                    .collect();
                (r.name.clone(), bars)
            }),
        )?;
    }
    Ok(md)
}

/// The `eval_window_ms` table: mAP per window length, and the worst over the best (1.00: the
/// window length costs nothing); empty without `eval_window_ms`.
fn window_table(rows: &[GridRow]) -> String {
    let Some(lengths) = rows
        .iter()
        .find(|r| !r.window_map.is_empty())
        .map(|r| r.window_map.iter().map(|w| w.window_ms).collect::<Vec<_>>())
    else {
        return String::new();
    };
    let mut md = String::from(
        "\nThe final weights scored on the validation scenes cut into windows of each length \
         (labels at the same rate; each window's duration given to the model: an SSM memory \
         discretizes by it, an LSTM cannot use it). mAP, with AP50 in brackets:\n\n| configuration |",
    );
    for ms in &lengths {
        md.push_str(&format!(" {ms} ms |"));
    }
    md.push_str(" worst / best |\n|---|");
    md.push_str(&"---|".repeat(lengths.len() + 1));
    md.push('\n');
    for r in rows {
        md.push_str(&format!("| {} |", r.name));
        for w in &r.window_map {
            md.push_str(&format!(" {:.3} ({:.3}) |", w.map, w.ap50));
        }
        let maps = r.window_map.iter().map(|w| w.map);
        let best = maps.clone().fold(f64::NEG_INFINITY, f64::max);
        let worst = maps.fold(f64::INFINITY, f64::min);
        if best > 0.0 {
            md.push_str(&format!(" {:.2} |\n", worst / best));
        } else {
            md.push_str(" – |\n");
        }
    }
    md
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_shipped_grid_is_the_seeds_hypothesis_design() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/rvt-memory-fpn.toml");
        let grid = Grid::read(&path).unwrap();
        let runs = grid.runs();
        // Plain and DWS LSTM x three and four scales, at least two seeds each.
        assert!(grid.seeds.len() >= 2);
        assert_eq!(runs.len(), 4 * grid.seeds.len());
        let names: std::collections::BTreeSet<String> = runs.iter().map(GridRun::name).collect();
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            [
                "fpn_scales=3,memory=dws-lstm",
                "fpn_scales=3,memory=lstm",
                "fpn_scales=4,memory=dws-lstm",
                "fpn_scales=4,memory=lstm",
            ]
        );
        let c = grid.config(&runs[runs.len() - 1]).unwrap();
        assert_eq!(c.train.seed, *grid.seeds.last().unwrap());
    }

    #[test]
    fn the_shipped_rates_grid_trains_lstm_and_ssm_and_scores_three_lengths() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/rvt-ssm-rates.toml");
        let grid = Grid::read(&path).unwrap();
        assert_eq!(grid.eval_window_ms, [20, 50, 100]);
        let names: std::collections::BTreeSet<String> =
            grid.runs().iter().map(GridRun::name).collect();
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["memory=lstm", "memory=ssm"]
        );
        let config = grid.config(&grid.runs()[grid.runs().len() - 1]).unwrap();
        assert_eq!(config.card.model.memory, prism_models::zoo::Memory::Ssm);
        assert_eq!(config.card.data.window_ms, 50);
    }

    #[test]
    fn the_shipped_attention_grid_tries_every_kind_and_rvt_s_own_pair() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/rvt-attention.toml");
        let grid = Grid::read(&path).unwrap();
        let runs = grid.runs();
        assert_eq!(
            runs.len(),
            1 + prism_models::attention::AttentionKind::ALL.len()
        );
        let own = grid.config(&runs[0]).unwrap();
        assert_eq!(own.card.model.attention, None);
        for (run, kind) in runs[1..]
            .iter()
            .zip(prism_models::attention::AttentionKind::ALL)
        {
            let names: Vec<String> = grid.runs().iter().map(GridRun::name).collect();
            assert!(
                names.contains(&format!("attention={}", kind.name())),
                "{names:?}"
            );
            assert!(grid.config(run).is_ok());
        }
    }

    #[test]
    fn the_window_table_shows_each_length_and_the_worst_over_the_best() {
        let score = |window_ms, map| WindowScore {
            window_ms,
            map,
            ap50: 2.0 * map,
        };
        let result = |name: &str, seed, maps: [f64; 3]| GridResult {
            id: format!("{name}-seed{seed}"),
            name: name.into(),
            settings: vec![],
            seed,
            steps: 1,
            map: maps[1],
            ap50: 0.0,
            params: 1,
            memory_params: 1,
            latency_ms: 1.0,
            train_s: 1.0,
            window_map: vec![score(20, maps[0]), score(50, maps[1]), score(100, maps[2])],
            gflops: 1.0,
            verified: vec![("tract".into(), 1e-6)],
        };
        let results = [
            result("memory=ssm", 0, [0.2, 0.4, 0.3]),
            result("memory=ssm", 1, [0.4, 0.4, 0.3]),
            result("memory=lstm", 0, [0.0, 0.0, 0.0]),
        ];
        let table = window_table(&rows(&results));
        assert!(table.contains("| 20 ms | 50 ms | 100 ms |"), "{table}");
        assert!(
            table.contains("| memory=ssm | 0.300 (0.600) | 0.400 (0.800) | 0.300 (0.600) | 0.75 |"),
            "{table}"
        );
        assert!(
            table.contains("| memory=lstm |") && table.contains(" – |"),
            "{table}"
        );
        assert_eq!(
            window_table(&rows(&[GridResult {
                window_map: vec![],
                ..results[0].clone()
            }])),
            ""
        );
    }

    #[test]
    fn bad_grids_are_refused_by_name() {
        for (text, says) in [
            (
                "base = \"rvt-tiny-synth\"\n[grid]\n\"model.memory\" = [\"gru\"]",
                "memory",
            ),
            (
                "base = \"rvt-tiny-synth\"\n[grid]\n\"model.fpn_scales\" = []",
                "non-empty",
            ),
            (
                "base = \"rvt-tiny-synth\"\n[grid]\n\"model.nonsense\" = [1]",
                "nonsense",
            ),
            (
                "base = \"rvt-tiny-synth\"\nseeds = []\n[grid]\n\"model.fpn_scales\" = [3]",
                "seed",
            ),
        ] {
            let grid: Grid = toml::from_str(text).unwrap();
            let err = format!("{:#}", grid.validate().unwrap_err());
            assert!(err.contains(says), "{text}: {err}");
        }
        assert!(is_grid("base = \"x\"\n[grid]\na = [1]"));
        // Scenes are cut again only where they are synthetic.
        let dir = tempfile::tempdir().unwrap();
        let card = dir.path().join("prepared.toml");
        let text = prism_models::zoo::builtin_text("rvt-tiny-synth").unwrap();
        let text = format!(
            "{}[dataset]\nkind = \"prepared\"\n",
            &text[..text.find("[dataset]").unwrap()]
        );
        std::fs::write(&card, text).unwrap();
        let grid: Grid = toml::from_str(&format!(
            "base = {:?}\neval_window_ms = [20]\n[grid]\n\"model.memory\" = [\"ssm\"]",
            card.display().to_string()
        ))
        .unwrap();
        let err = format!("{:#}", grid.validate().unwrap_err());
        assert!(err.contains("synthetic dataset"), "{err}");
        let text = "base = \"rvt-tiny-synth\"\neval_window_ms = [30]\n[grid]\n\"model.memory\" = [\"ssm\"]";
        let grid: Grid = toml::from_str(text).unwrap();
        let err = format!("{:#}", grid.validate().unwrap_err());
        assert!(err.contains("divide a second"), "{text}: {err}");
        assert!(!is_grid("base = \"x\"\n[phase1]\ncssa = [\"3\"]"));
    }
}
