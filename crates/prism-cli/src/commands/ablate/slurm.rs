//! `prism ablate --executor slurm`: a phase's unfinished experiments (fusion matrices) or runs
//! (RVT grids, one phase) go to an existing Slurm scheduler as one job array (`sbatch
//! --array`), one task each. Each task runs `prism ablate --task PHASE:INDEX` (the same binary,
//! matrix and folders), which trains one entry of the phase's plan (`plan-phaseN.json`) into the
//! shared run folder; this process waits for the array to leave the queue and builds the report
//! from the results there.
//!
//! Slurm is driven through its command-line clients ([`crate::commands::slurm`]).
//! `--sbatch-arg` passes site options (`--partition=gpu`, `--gres=gpu:1`, `--time=4:00:00`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::commands::slurm::{absolute, in_queue, quote, quote_text, submit_array, ArraySpec};

use serde::{de::DeserializeOwned, Serialize};

use super::experiment::{self, write_atomically};
use super::grid::{self, GridRun};
use super::matrix::Experiment;

/// What a job array's task trains: it names its run folder and knows when it has a result.
pub trait Task: Serialize + DeserializeOwned + Clone {
    /// The run folder's name.
    fn id(&self) -> String;
    /// Whether its `result.json` is in `out`.
    fn is_finished(&self, out: &Path) -> bool;
}

impl Task for Experiment {
    fn id(&self) -> String {
        Experiment::id(self)
    }
    fn is_finished(&self, out: &Path) -> bool {
        experiment::finished(out, self).is_some()
    }
}

impl Task for GridRun {
    fn id(&self) -> String {
        GridRun::id(self)
    }
    fn is_finished(&self, out: &Path) -> bool {
        grid::finished(out, self).is_some()
    }
}

/// How tasks are launched.
#[derive(Debug, Clone)]
pub struct SlurmOptions {
    /// The `prism` binary the tasks run (this one).
    pub exe: PathBuf,
    /// Working directory of the tasks (this process's).
    pub cwd: PathBuf,
    pub matrix: PathBuf,
    pub data: PathBuf,
    pub device: String,
    /// `--set` overrides, passed on to every task.
    pub overrides: Vec<String>,
    /// Extra `sbatch` options.
    pub sbatch_args: Vec<String>,
    /// How often the queue is asked whether the array is done.
    pub poll: Duration,
}

/// The plan file of `phase` in `out`.
pub fn plan_path(out: &Path, phase: u8) -> PathBuf {
    out.join(format!("plan-phase{phase}.json"))
}

/// Reads entry `index` of `phase`'s plan (what a task runs).
pub fn planned<T: Task>(out: &Path, phase: u8, index: usize) -> Result<T> {
    let path = plan_path(out, phase);
    let plan: Vec<T> = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))?;
    plan.get(index).cloned().with_context(|| {
        format!(
            "{} has {} entries, no index {index}",
            path.display(),
            plan.len()
        )
    })
}

/// Submits `phase`'s unfinished experiments as a job array and waits for it.
pub fn execute<T: Task>(
    experiments: &[T],
    phase: u8,
    out: &Path,
    opts: &SlurmOptions,
) -> Result<()> {
    let pending: Vec<usize> = (0..experiments.len())
        .filter(|&i| !experiments[i].is_finished(out))
        .collect();
    if pending.is_empty() {
        return Ok(());
    }
    write_atomically(
        &plan_path(out, phase),
        &serde_json::to_vec_pretty(experiments)?,
    )?;
    let logs = out.join("slurm");
    let command = format!(
        "{exe} ablate --matrix {matrix} --out {out} --data {data} --device {device}{sets} --task {phase}:$SLURM_ARRAY_TASK_ID",
        exe = quote(&opts.exe),
        matrix = quote(&absolute(&opts.matrix)?),
        out = quote(&absolute(out)?),
        data = quote(&absolute(&opts.data)?),
        device = opts.device,
        sets = opts
            .overrides
            .iter()
            .map(|o| format!(" --set {}", quote_text(o)))
            .collect::<String>(),
    );
    let job = submit_array(&ArraySpec {
        name: &format!("prism-ablate-p{phase}"),
        logs: &logs,
        cwd: &opts.cwd,
        indices: &pending,
        command: &command,
        sbatch_args: &opts.sbatch_args,
    })?;
    eprintln!(
        "phase {phase}: submitted job array {job} ({} experiments), logs in {}",
        pending.len(),
        logs.display()
    );
    let mut reported = 0;
    loop {
        let done = pending
            .iter()
            .filter(|&&i| experiments[i].is_finished(out))
            .count();
        if done != reported {
            eprintln!("phase {phase}: {done} of {} done", pending.len());
            reported = done;
        }
        if !in_queue(&job)? {
            break;
        }
        std::thread::sleep(opts.poll);
    }
    let failed: Vec<String> = pending
        .iter()
        .filter(|&&i| !experiments[i].is_finished(out))
        .map(|&i| {
            format!(
                "{} (log {})",
                experiments[i].id(),
                logs.join(format!("{job}_{i}.out")).display()
            )
        })
        .collect();
    if !failed.is_empty() {
        bail!(
            "phase {phase}: {} experiment(s) ended without a result: {}",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(())
}
