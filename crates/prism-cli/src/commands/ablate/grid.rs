//! RVT ablation grids (`models/rvt-memory-fpn.toml`): a base RVT card, seeds, overrides for
//! every run, and a `[grid]` of card keys with the values to try (`"model.memory" = ["lstm",
//! "dws-lstm"]`). Every combination is trained with every seed, scored on the validation split
//! with its final weights, counted, exported and timed per window in tract, and the table is
//! written as `results.{md,json,png}`.
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

use super::experiment::{training_seconds, write_atomically, LATENCY_RUNS};

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
        for (key, values) in &self.grid {
            match values.as_array() {
                Some(v) if !v.is_empty() => {}
                _ => bail!("[grid] {key:?}: expected a non-empty list of values"),
            }
        }
        let runs = self.runs();
        let mut ids = std::collections::HashSet::new();
        for run in &runs {
            self.config(run)?;
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

/// Runs every run of `grid` one after another (finished ones are read back), writing the
/// report after each; returns the Markdown table.
pub fn execute(
    grid: &Grid,
    out: &Path,
    data: Option<&Path>,
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
            None => {
                let dir = data.map_or_else(|| out.join("data"), Path::to_path_buf);
                let loaded = prism_train::data::load_splits(&config, &dir, |m| eprintln!("{m}"))
                    .context("loading the base card's data")?;
                splits.insert(loaded)
            }
        };
        eprintln!("[{}/{}] {}", i + 1, runs.len(), run.id());
        let started = Instant::now();
        let result = train_one(run, config, train, val, out, device, |event| {
            if let Event::Validated(v) = event {
                eprintln!(
                    "  step {}: validation mAP {:.4} AP50 {:.4}",
                    v.step, v.map, v.ap50
                );
            }
        })
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
    train: &prism_data::PreparedSplit,
    val: &prism_data::PreparedSplit,
    out: &Path,
    device: TrainDevice,
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
    };
    write_atomically(
        &dir.join(super::experiment::RESULT_FILE),
        &serde_json::to_vec_pretty(&result)?,
    )?;
    Ok(result)
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
    let mut times = Vec::with_capacity(LATENCY_RUNS);
    for i in 0..LATENCY_RUNS + 3 {
        let mut feed = vec![TensorView::new(&spec.input.name, &shape, &input)];
        for (s, values) in spec.state.iter().zip(&state) {
            feed.push(TensorView::new(&s.input, &s.shape, values));
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
         half the seed-to-seed range where there are several); latency is the exported model \
         in tract, batch 1, state carried, median ms per window on the machine that ran it.\n\n",
    );
    md.push_str(
        "| configuration | seeds | mAP | AP50 | params | of which memory | latency (ms) | \
         training (min) |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in &rows {
        let map = if r.seeds.len() > 1 {
            format!("{:.3} ± {:.3}", r.map, r.map_spread / 2.0)
        } else {
            format!("{:.3}", r.map)
        };
        md.push_str(&format!(
            "| {} | {} | {map} | {:.3} | {} | {} | {:.1} | {:.1} |\n",
            r.name,
            r.seeds.len(),
            r.ap50,
            r.params,
            r.memory_params,
            r.latency_ms,
            r.train_s / 60.0
        ));
    }
    write_atomically(&out.join("results.md"), md.as_bytes())?;
    let json = serde_json::json!({ "title": title, "rows": rows, "runs": results });
    write_atomically(
        &out.join("results.json"),
        &serde_json::to_vec_pretty(&json)?,
    )?;
    if !rows.is_empty() {
        let mut chart = prism_plot::BarChart::new(&format!(
            "{title}: validation mAP and AP50 (higher is better)"
        ))
        .x_label("COCO mAP@[.5:.95] and AP50");
        for r in &rows {
            chart = chart.group(
                &r.name,
                &[("mAP".to_string(), r.map), ("AP50".to_string(), r.ap50)],
            );
        }
        let png = out.join("results.png");
        chart
            .save_png(&png)
            .with_context(|| format!("drawing {}", png.display()))?;
    }
    Ok(md)
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
        assert!(!is_grid("base = \"x\"\n[phase1]\ncssa = [\"3\"]"));
    }
}
