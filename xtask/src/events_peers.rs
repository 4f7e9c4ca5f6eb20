//! The event benchmark's peers in their own venv (`$PRISM_ENV/events-peers-venv`): the PyPI
//! `evt3` and `faery` decoders, evlib and NumPy. Only `cargo xtask bench bench-events` needs
//! them, so the test provisioning stays without `evt3` and `faery`.

use std::path::PathBuf;

use anyhow::Result;

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
    crate::peer_venv::ensure(env, "events-peers-venv", REQUIREMENTS, true)
}
