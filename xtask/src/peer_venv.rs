//! A benchmark peer's own venv under `$PRISM_ENV`, made from pinned requirements and kept
//! while its stamp (the requirements) matches: the event decoders', KServe's and RVT's
//! preprocessing each live in one, so the test provisioning stays without them.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};

use crate::provision::Env;

/// Creates `$PRISM_ENV/<name>` with `requirements` when its stamp does not match them; returns
/// its Python. `binary_only` refuses source builds (pip's `--only-binary :all:`).
pub fn ensure(env: &Env, name: &str, requirements: &[&str], binary_only: bool) -> Result<PathBuf> {
    let venv = env.dir.join(name);
    let python = venv.join("bin/python");
    let stamp = venv.join(".prism-requirements");
    let wanted = requirements.join("\n");
    if fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) && python.exists() {
        return Ok(python);
    }
    eprintln!("xtask: creating the peer environment {}", venv.display());
    let system = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    crate::run(
        Command::new(&system).arg("-m").arg("venv").arg(&venv),
        &format!("python3 -m venv ({name})"),
    )?;
    let mut pip = Command::new(&python);
    pip.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ]);
    if binary_only {
        pip.args(["--only-binary", ":all:"]);
    }
    crate::run(pip.args(requirements), &format!("pip install ({name})"))?;
    fs::write(&stamp, wanted).with_context(|| format!("writing the stamp of {name}"))?;
    Ok(python)
}
