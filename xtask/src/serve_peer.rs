//! The serving benchmark's peer: KServe's Python model server (the PyPI `kserve` package) with
//! ONNX Runtime behind it, in its own venv (`$PRISM_ENV/kserve-venv`). Only `cargo xtask bench
//! bench-serve` needs it, so the test provisioning stays without it.

use std::path::PathBuf;

use anyhow::Result;

use crate::provision::Env;

/// Pinned so every run measures the same peer; onnxruntime as in the test environment.
const REQUIREMENTS: &[&str] = &["kserve==0.21.0", "onnxruntime==1.31.1", "numpy==2.4.6"];

/// Creates the venv when its stamp does not match [`REQUIREMENTS`]; returns its Python.
pub fn provision(env: &Env) -> Result<PathBuf> {
    crate::peer_venv::ensure(env, "kserve-venv", REQUIREMENTS, false)
}
