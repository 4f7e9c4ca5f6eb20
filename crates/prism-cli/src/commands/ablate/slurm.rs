//! `prism ablate --executor slurm`: a phase's unfinished experiments go to an existing Slurm
//! scheduler as one job array (`sbatch --array`), one task per experiment. Each task runs
//! `prism ablate --task PHASE:INDEX` (the same binary, matrix and folders), which trains one
//! experiment of the phase's plan (`plan-phaseN.json`) into the shared run folder; this process
//! waits for the array to leave the queue and builds the report from the results there.
//!
//! Slurm is driven through its command-line clients (`sbatch --parsable`, `squeue`), the
//! interface every site has; `SLURM_CONF` and the user's defaults apply as for any job.
//! `--sbatch-arg` passes site options (`--partition=gpu`, `--gres=gpu:1`, `--time=4:00:00`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::experiment::{self, write_atomically};
use super::matrix::Experiment;

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

/// Reads experiment `index` of `phase`'s plan (what a task runs).
pub fn planned(out: &Path, phase: u8, index: usize) -> Result<Experiment> {
    let path = plan_path(out, phase);
    let plan: Vec<Experiment> = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))?;
    plan.get(index).cloned().with_context(|| {
        format!(
            "{} has {} experiments, no index {index}",
            path.display(),
            plan.len()
        )
    })
}

/// Submits `phase`'s unfinished experiments as a job array and waits for it.
pub fn execute(
    experiments: &[Experiment],
    phase: u8,
    out: &Path,
    opts: &SlurmOptions,
) -> Result<()> {
    let pending: Vec<usize> = (0..experiments.len())
        .filter(|&i| experiment::finished(out, &experiments[i]).is_none())
        .collect();
    if pending.is_empty() {
        return Ok(());
    }
    write_atomically(
        &plan_path(out, phase),
        &serde_json::to_vec_pretty(experiments)?,
    )?;
    let logs = out.join("slurm");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let script = logs.join(format!("phase{phase}.sbatch"));
    let array: Vec<String> = pending.iter().map(usize::to_string).collect();
    let text = format!(
        "#!/bin/sh\n\
         #SBATCH --job-name=prism-ablate-p{phase}\n\
         #SBATCH --output={logs}/%A_%a.out\n\
         #SBATCH --chdir={cwd}\n\
         #SBATCH --array={array}\n\
         exec {exe} ablate --matrix {matrix} --out {out} --data {data} --device {device}{sets} --task {phase}:$SLURM_ARRAY_TASK_ID\n",
        logs = quote(&absolute(&logs)?),
        cwd = quote(&opts.cwd),
        array = array.join(","),
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
    std::fs::write(&script, text).with_context(|| format!("writing {}", script.display()))?;
    let output = Command::new("sbatch")
        .arg("--parsable")
        .args(&opts.sbatch_args)
        .arg(&script)
        .output()
        .context("running sbatch (is Slurm installed and SLURM_CONF set?)")?;
    if !output.status.success() {
        bail!(
            "sbatch {}: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let job = stdout
        .trim()
        .split(';')
        .next()
        .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()))
        .with_context(|| format!("sbatch printed no job id: {stdout:?}"))?
        .to_string();
    eprintln!(
        "phase {phase}: submitted job array {job} ({} experiments), logs in {}",
        pending.len(),
        logs.display()
    );
    let mut reported = 0;
    loop {
        let done = pending
            .iter()
            .filter(|&&i| experiment::finished(out, &experiments[i]).is_some())
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
        .filter(|&&i| experiment::finished(out, &experiments[i]).is_none())
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

/// Whether any task of `job` is still pending or running.
fn in_queue(job: &str) -> Result<bool> {
    let output = Command::new("squeue")
        .args(["-h", "-o", "%i", "-j", job])
        .output()
        .context("running squeue")?;
    // Once a job has left the controller's memory, squeue says it is invalid: it is done.
    Ok(output.status.success() && !String::from_utf8_lossy(&output.stdout).trim().is_empty())
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}

/// `path` as one single-quoted shell word.
fn quote(path: &Path) -> String {
    quote_text(&path.display().to_string())
}

/// `text` as one single-quoted shell word.
fn quote_text(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_as_one_shell_word() {
        assert_eq!(quote(Path::new("/a b/it's")), r"'/a b/it'\''s'");
    }
}
