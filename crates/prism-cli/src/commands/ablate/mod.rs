//! `prism ablate --matrix models/mm-ablation.toml [--out DIR]`: runs an experiment matrix of
//! RGB + thermal + event detectors (backbones x fusion x stages x hyperparameters) and writes
//! one results table as Markdown, JSON and PNG. A matrix with a `[grid]` table is an RVT grid
//! instead ([`grid`]: every combination of card values, e.g. memory cell x FPN scales).
//!
//! Phase 1 trains the baselines and every fusion stage set; phase 2 trains the hyperparameter
//! grid on the best phase-1 configurations, ranked by the matrix's split and metric. Resumable:
//! a finished experiment (its `result.json`) is never rerun, a killed one resumes from its last
//! checkpoint. The `local` executor runs the experiments one after another on this machine;
//! `slurm` submits each phase to a Slurm scheduler as a job array ([`slurm`]); an RVT grid is
//! one phase, one task per run.

pub mod experiment;
pub mod grid;
pub mod matrix;
pub mod report;
pub mod slurm;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use prism_train::frame_run::open_dataset;
use prism_train::mm_config::MmDatasetSection;
use prism_train::{Event, TrainDevice};

use experiment::ExperimentResult;
use matrix::{Experiment, Matrix, Variant};

#[derive(Debug, Args)]
pub struct AblateArgs {
    /// The experiment matrix (see models/mm-ablation.toml).
    #[arg(long)]
    pub matrix: PathBuf,
    /// Output folder: runs/<experiment>/ and results.{md,json,png}. Default:
    /// runs/ablate-<matrix name>.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Dataset folder (default: the base card's; synthetic scenes are generated into
    /// <out>/data once).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Where to train: `flex` (CPU), `tch-cpu` / `tch-cuda[:N]` (a prism built by `cargo xtask
    /// build-tch`) or `cuda[:N]` (a prism built with `--features cuda`).
    #[arg(long, default_value = "flex")]
    pub device: TrainDevice,
    /// `local` (one experiment after another here) or `slurm` (each phase a job array).
    #[arg(long, value_enum, default_value = "local")]
    pub executor: Executor,
    /// Extra `sbatch` options for `--executor slurm`, e.g. `--sbatch-arg=--gres=gpu:1`.
    #[arg(long = "sbatch-arg", value_name = "OPTION", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
    /// Seconds between queue checks of `--executor slurm`.
    #[arg(long, default_value_t = 10.0)]
    pub poll_s: f64,
    /// Overrides for every experiment, after the matrix's own `set` (e.g. `--set
    /// train.steps=80` for a shorter schedule).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Run experiment INDEX of phase PHASE's plan and exit (what each Slurm task runs).
    #[arg(long, value_name = "PHASE:INDEX", hide = true)]
    pub task: Option<String>,
}

/// Where the experiments run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Executor {
    Local,
    Slurm,
}

pub fn run(args: AblateArgs) -> Result<()> {
    args.device.burn()?;
    let stem = args
        .matrix
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "matrix".into());
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(format!("ablate-{stem}")));
    let text = std::fs::read_to_string(&args.matrix)
        .with_context(|| format!("reading {}", args.matrix.display()))?;
    if grid::is_grid(&text) {
        let mut grid = grid::Grid::read(&args.matrix)?;
        grid.set.extend(args.overrides.iter().cloned());
        grid.validate()?;
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let data = grid::data_dir(&out, args.data.as_deref());
        if let Some(task) = &args.task {
            let (_, index) = parse_task(task)?;
            let run: grid::GridRun = slurm::planned(&out, 1, index)?;
            eprintln!("task {task}: {}", run.id());
            let result = grid::run_task(&grid, &run, &out, &data, args.device)?;
            outln!("{}: val mAP {:.4}", result.id, result.map)?;
            return Ok(());
        }
        let md = match args.executor {
            Executor::Local => grid::execute(&grid, &out, &data, args.device, &stem)?,
            Executor::Slurm => {
                grid::prepare_data(&grid, &out, &data)?;
                slurm::execute(&grid.runs(), 1, &out, &slurm_options(&args, &data)?)?;
                grid::write_report(&out, &stem, &grid::finished_results(&grid, &out))?
            }
        };
        outln!("{md}")?;
        outln!(
            "results: {} (.json, .png)",
            out.join("results.md").display()
        )?;
        return Ok(());
    }
    let mut matrix = Matrix::read(&args.matrix)?;
    if !args.overrides.is_empty() {
        matrix.set.extend(args.overrides.iter().cloned());
        matrix.validate()?;
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let phase1 = matrix.phase1_experiments();
    let base = matrix.config(&phase1[0])?;
    let data_dir = match (&args.data, &base.dataset) {
        (Some(d), _) => d.clone(),
        (None, MmDatasetSection::Synthetic { .. }) => out.join("data"),
        (None, MmDatasetSection::Folder { root, .. }) => root
            .clone()
            .context("the base card trains on a dataset folder: give --data DIR")?,
    };
    let folder = open_dataset(&base, &data_dir, |m| eprintln!("{m}"))?;
    if let Some(task) = &args.task {
        return run_task(&matrix, task, &folder, &out, args.device);
    }
    let slurm = (args.executor == Executor::Slurm)
        .then(|| slurm_options(&args, &data_dir))
        .transpose()?;
    let run_phase = |phase: u8, experiments: &[Experiment]| -> Result<Vec<ExperimentResult>> {
        match &slurm {
            Some(opts) => {
                slurm::execute(experiments, phase, &out, opts)?;
                experiments
                    .iter()
                    .map(|e| {
                        experiment::finished(&out, e)
                            .with_context(|| format!("{}: no result", Experiment::id(e)))
                    })
                    .collect()
            }
            None => execute(&matrix, experiments, &folder, &out, args.device, &stem),
        }
    };

    let mut results = run_phase(1, &phase1)?;
    let best = rank_phase1(&matrix, &results);
    let phase2 = matrix.phase2_experiments(&best);
    if !phase2.is_empty() {
        eprintln!(
            "phase 2: {} runs on {}",
            phase2.len(),
            best.iter()
                .filter(|v| phase2
                    .iter()
                    .any(|e| e.variant.stages == v.stages && e.variant.kind == v.kind))
                .map(Variant::name)
                .collect::<Vec<_>>()
                .join(", ")
        );
        results.extend(run_phase(2, &phase2)?);
    }
    let md = report::write(&out, &stem, &results)?;
    outln!("{md}")?;
    outln!(
        "results: {} (.json, .png)",
        out.join("results.md").display()
    )?;
    Ok(())
}

/// How `--executor slurm` launches its tasks: this binary, folder and settings.
fn slurm_options(args: &AblateArgs, data: &std::path::Path) -> Result<slurm::SlurmOptions> {
    Ok(slurm::SlurmOptions {
        exe: std::env::current_exe().context("locating the prism binary")?,
        cwd: std::env::current_dir().context("the working directory")?,
        matrix: args.matrix.clone(),
        data: data.to_path_buf(),
        device: args.device.to_string(),
        overrides: args.overrides.clone(),
        sbatch_args: args.sbatch_args.clone(),
        poll: std::time::Duration::from_secs_f64(args.poll_s.clamp(0.1, 3600.0)),
    })
}

/// `--task PHASE:INDEX` as numbers.
fn parse_task(task: &str) -> Result<(u8, usize)> {
    task.split_once(':')
        .and_then(|(p, i)| Some((p.parse::<u8>().ok()?, i.parse::<usize>().ok()?)))
        .with_context(|| format!("--task {task:?}: expected PHASE:INDEX"))
}

/// One experiment of a phase's plan (a Slurm task).
fn run_task(
    matrix: &Matrix,
    task: &str,
    folder: &prism_data::multimodal::MmFolder,
    out: &std::path::Path,
    device: TrainDevice,
) -> Result<()> {
    let (phase, index) = parse_task(task)?;
    let e: Experiment = slurm::planned(out, phase, index)?;
    eprintln!("task {task}: {}", e.id());
    let result = experiment::run(matrix, &e, folder, out, device, |event| {
        if let Event::Step(s) = event {
            if s.step % 25 == 0 {
                eprintln!("  step {} loss {:.3}", s.step, s.loss);
            }
        }
    })?;
    outln!(
        "{}: val mAP {:.4}",
        result.id,
        result.score("val", "map").unwrap_or(f64::NAN)
    )?;
    Ok(())
}

/// Runs `experiments` one after another (finished ones are read back), updating the report
/// after each.
fn execute(
    matrix: &Matrix,
    experiments: &[Experiment],
    folder: &prism_data::multimodal::MmFolder,
    out: &std::path::Path,
    device: TrainDevice,
    title: &str,
) -> Result<Vec<ExperimentResult>> {
    let mut results: Vec<ExperimentResult> = experiments
        .iter()
        .filter_map(|e| experiment::finished(out, e))
        .collect();
    for (i, e) in experiments.iter().enumerate() {
        if experiment::finished(out, e).is_some() {
            continue;
        }
        eprintln!("[{}/{}] {}", i + 1, experiments.len(), e.id());
        let started = Instant::now();
        let result = experiment::run(matrix, e, folder, out, device, |event| {
            if let Event::Validated(v) = event {
                eprintln!(
                    "  step {}: validation mAP {:.4} AP50 {:.4}",
                    v.step, v.map, v.ap50
                );
            }
        })
        .with_context(|| format!("experiment {}", e.id()))?;
        eprintln!(
            "  done in {:.0} s: val mAP {:.4}",
            started.elapsed().as_secs_f64(),
            result.score("val", "map").unwrap_or(f64::NAN)
        );
        results.push(result);
        report::write(out, title, &results)?;
    }
    // Keep the matrix order.
    results.sort_by_key(|r| {
        experiments
            .iter()
            .position(|e| e.id() == r.id)
            .unwrap_or(usize::MAX)
    });
    Ok(results)
}

/// Phase-1 fused configurations, best first by the matrix's split and metric (mean over
/// seeds).
fn rank_phase1(matrix: &Matrix, results: &[ExperimentResult]) -> Vec<Variant> {
    let mut rows: Vec<report::Row> = report::rows(results)
        .into_iter()
        .filter(|r| r.variant.phase == 1 && ["cssa", "gaff"].contains(&r.variant.kind.as_str()))
        .collect();
    let key = |r: &report::Row| {
        r.score(&matrix.rank_split, &matrix.rank_metric)
            .unwrap_or(f64::NEG_INFINITY)
    };
    rows.sort_by(|a, b| key(b).total_cmp(&key(a)));
    rows.into_iter().map(|r| r.variant).collect()
}
