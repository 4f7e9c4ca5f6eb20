//! The event benchmark's peers in their own venv (`$PRISM_ENV/events-peers-venv`): the PyPI
//! `evt3` and `faery` decoders, evlib and NumPy. Only `cargo xtask bench bench-events` needs
//! them, so the test provisioning stays without `evt3` and `faery`.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};

use crate::provision::Env;

/// Pinned so every run measures the same peers; numpy and evlib as in the test environment.
const REQUIREMENTS: &[&str] = &[
    "numpy==2.4.6",
    "evlib==0.13.2",
    "evt3==0.4.1",
    "faery==0.7.1",
];

/// Creates the venv when its stamp does not match [`REQUIREMENTS`]; returns its Python.
pub fn provision(env: &Env) -> Result<PathBuf> {
    let venv = env.dir.join("events-peers-venv");
    let python = venv.join("bin/python");
    let stamp = venv.join(".prism-requirements");
    let wanted = REQUIREMENTS.join("\n");
    if fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) && python.exists() {
        return Ok(python);
    }
    eprintln!(
        "xtask: creating the event peers' environment in {}",
        venv.display()
    );
    let system = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    crate::run(
        Command::new(&system).arg("-m").arg("venv").arg(&venv),
        "python3 -m venv (event peers)",
    )?;
    crate::run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--only-binary",
                ":all:",
            ])
            .args(REQUIREMENTS),
        "pip install the event peers",
    )?;
    fs::write(&stamp, wanted).context("writing the event peers' stamp")?;
    Ok(python)
}
