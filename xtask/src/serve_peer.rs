//! The serving benchmark's peer: KServe's Python model server (the PyPI `kserve` package) with
//! ONNX Runtime behind it, in its own venv (`$PRISM_ENV/kserve-venv`). Only `cargo xtask bench
//! bench-serve` needs it, so the test provisioning stays without it.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};

use crate::provision::Env;

/// Pinned so every run measures the same peer; onnxruntime as in the test environment.
const REQUIREMENTS: &[&str] = &["kserve==0.21.0", "onnxruntime==1.31.1", "numpy==2.4.6"];

/// Creates the venv when its stamp does not match [`REQUIREMENTS`]; returns its Python.
pub fn provision(env: &Env) -> Result<PathBuf> {
    let venv = env.dir.join("kserve-venv");
    let python = venv.join("bin/python");
    let stamp = venv.join(".prism-requirements");
    let wanted = REQUIREMENTS.join("\n");
    if fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) && python.exists() {
        return Ok(python);
    }
    eprintln!(
        "xtask: creating the KServe peer environment in {}",
        venv.display()
    );
    let system = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    crate::run(
        Command::new(&system).arg("-m").arg("venv").arg(&venv),
        "python3 -m venv (KServe peer)",
    )?;
    crate::run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(REQUIREMENTS),
        "pip install kserve",
    )?;
    fs::write(&stamp, wanted).context("writing the KServe peer stamp")?;
    Ok(python)
}
