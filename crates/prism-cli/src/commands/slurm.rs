//! Slurm job arrays, driven through the command-line clients every site has (`sbatch
//! --parsable`, `squeue`); `SLURM_CONF` and the user's defaults apply as for any job. What
//! `prism ablate --executor slurm` and `prism data prepare --executor slurm` submit: one array,
//! each task the same `prism` command with its `$SLURM_ARRAY_TASK_ID`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// One job array to submit.
pub struct ArraySpec<'a> {
    /// `--job-name`, also the script's file name.
    pub name: &'a str,
    /// Folder of the script and of the task logs (`%A_%a.out`).
    pub logs: &'a Path,
    /// Working directory of the tasks.
    pub cwd: &'a Path,
    /// Task indices (`--array`).
    pub indices: &'a [usize],
    /// The shell command each task runs; `$SLURM_ARRAY_TASK_ID` is its index.
    pub command: &'a str,
    /// Extra `sbatch` options (`--partition=gpu`, `--time=4:00:00`).
    pub sbatch_args: &'a [String],
}

/// Writes the array's script and submits it; returns the job id.
pub fn submit_array(spec: &ArraySpec<'_>) -> Result<String> {
    std::fs::create_dir_all(spec.logs)
        .with_context(|| format!("creating {}", spec.logs.display()))?;
    let script = spec.logs.join(format!("{}.sbatch", spec.name));
    let array: Vec<String> = spec.indices.iter().map(usize::to_string).collect();
    let text = format!(
        "#!/bin/sh\n\
         #SBATCH --job-name={name}\n\
         #SBATCH --output={logs}/%A_%a.out\n\
         #SBATCH --chdir={cwd}\n\
         #SBATCH --array={array}\n\
         exec {command}\n",
        name = spec.name,
        logs = quote(&absolute(spec.logs)?),
        cwd = quote(spec.cwd),
        array = array.join(","),
        command = spec.command,
    );
    std::fs::write(&script, text).with_context(|| format!("writing {}", script.display()))?;
    let output = Command::new("sbatch")
        .arg("--parsable")
        .args(spec.sbatch_args)
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
    stdout
        .trim()
        .split(';')
        .next()
        .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()))
        .map(str::to_string)
        .with_context(|| format!("sbatch printed no job id: {stdout:?}"))
}

/// Whether any task of `job` is still pending or running.
pub fn in_queue(job: &str) -> Result<bool> {
    let output = Command::new("squeue")
        .args(["-h", "-o", "%i", "-j", job])
        .output()
        .context("running squeue")?;
    // Once a job has left the controller's memory, squeue says it is invalid: it is done.
    Ok(output.status.success() && !String::from_utf8_lossy(&output.stdout).trim().is_empty())
}

pub fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}

/// `path` as one single-quoted shell word.
pub fn quote(path: &Path) -> String {
    quote_text(&path.display().to_string())
}

/// `text` as one single-quoted shell word.
pub fn quote_text(text: &str) -> String {
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
