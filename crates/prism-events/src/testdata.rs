//! Where tests find what `cargo xtask provision` put in place (real recordings, the Python
//! environment with the reference validators). Test support (feature `test-support`): it falls
//! back to the build tree, which a shipped binary must not know.
//!
//! `cargo xtask test` sets `PRISM_ENV` and `PRISM_REQUIRE_FIXTURES=1`: a missing fixture is then a
//! test failure. A plain `cargo test` on a machine that was never provisioned skips those tests
//! with a message instead.

use std::path::PathBuf;

/// The provisioned environment: `$PRISM_ENV`, else `<workspace>/target/prism-env`.
pub fn env_dir() -> PathBuf {
    match std::env::var_os("PRISM_ENV") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/prism-env"),
    }
}

fn required() -> bool {
    std::env::var_os("PRISM_REQUIRE_FIXTURES").is_some_and(|v| v == "1")
}

fn found_or_skip(path: PathBuf, what: &str) -> Option<PathBuf> {
    found_or_skip_with(path, what, "cargo xtask provision")
}

#[allow(
    clippy::panic,
    reason = "test support: a required fixture that is missing fails the test"
)]
fn found_or_skip_with(path: PathBuf, what: &str, provision: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    if required() {
        panic!("{what} missing at {} (run `{provision}`)", path.display());
    }
    eprintln!(
        "SKIPPED: {what} not provisioned at {} (run `{provision}`)",
        path.display()
    );
    None
}

/// A recording from the faery 0.7.1 source package: `gen4.dat`, `evt3.raw`, `evt2.raw`, `davis346.aedat4`.
pub fn faery(name: &str) -> Option<PathBuf> {
    found_or_skip(
        env_dir().join("data/faery").join(name),
        &format!("faery recording {name}"),
    )
}

/// The Python interpreter of the provisioned virtual environment (numpy, h5py, onnx, onnxruntime,
/// pycocotools, evlib).
pub fn python() -> Option<PathBuf> {
    found_or_skip(
        env_dir().join("venv/bin/python"),
        "the prism Python environment",
    )
}

/// The Python interpreter of the PyTorch environment (torch, transformers, onnxruntime), which
/// `cargo xtask test` provisions through `cargo xtask provision-torch`.
pub fn torch_python() -> Option<PathBuf> {
    found_or_skip_with(
        env_dir().join("torch-venv/bin/python"),
        "the PyTorch environment",
        "cargo xtask provision-torch",
    )
}
