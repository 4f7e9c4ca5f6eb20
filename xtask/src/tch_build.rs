//! Building prism with Burn's LibTorch backend (`--features tch`) against the libtorch of the
//! torch venv (`torch_env`), with nothing downloaded at build time.
//!
//! torch-sys finds libtorch through `LIBTORCH_USE_PYTORCH`: it runs the venv's `python` (found on
//! `PATH` when `VIRTUAL_ENV` is set) to ask torch for its headers, libraries and C++ ABI. The
//! torch release is the one torch-sys 0.22 checks for (`torch_env::TORCH`). The `prism` binary
//! gets the library folder as its run path (`PRISM_LIBTORCH_LIB`, read by prism-cli's build
//! script), so it runs without `LD_LIBRARY_PATH`; test and benchmark runs get `LD_LIBRARY_PATH`.
//! It allocates through tcmalloc where that can be had (`crate::tcmalloc`).
//!
//! - `cargo xtask build-tch [--cuda] [--debug]`: provision the venv (`--cuda`: the full CUDA
//!   wheel, for `--device tch-cuda`), then `cargo build --release -p prism-cli --features tch`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::provision::Env;

/// The variables torch-sys and the built binaries need, for the venv whose python is `python`.
pub fn variables(python: &Path) -> Result<Vec<(&'static str, String)>> {
    let venv = python
        .parent()
        .and_then(Path::parent)
        .context("the torch venv's python is not in <venv>/bin")?;
    let lib = libtorch_lib(python)?;
    let path = std::env::var("PATH").unwrap_or_default();
    let library_path = match std::env::var("LD_LIBRARY_PATH") {
        Ok(old) if !old.is_empty() => format!("{}:{old}", lib.display()),
        _ => lib.display().to_string(),
    };
    Ok(vec![
        ("LIBTORCH_USE_PYTORCH", "1".into()),
        ("VIRTUAL_ENV", venv.display().to_string()),
        ("PATH", format!("{}:{path}", venv.join("bin").display())),
        ("PRISM_LIBTORCH_LIB", lib.display().to_string()),
        ("LD_LIBRARY_PATH", library_path),
    ])
}

/// torch's `lib` folder (libtorch_cpu.so, libc10.so, ...) in the venv.
fn libtorch_lib(python: &Path) -> Result<PathBuf> {
    let out = Command::new(python)
        .args([
            "-c",
            "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))",
        ])
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "the torch venv cannot import torch: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let lib = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !lib.join("libtorch_cpu.so").is_file() {
        bail!("no libtorch_cpu.so in {}", lib.display());
    }
    Ok(lib)
}

/// `cargo xtask build-tch [--cuda] [--debug]`.
pub fn build(env: &Env, args: &[String]) -> Result<()> {
    let mut cuda = false;
    let mut release = true;
    for arg in args {
        match arg.as_str() {
            "--cuda" => cuda = true,
            "--debug" => release = false,
            _ => bail!("usage: cargo xtask build-tch [--cuda] [--debug]"),
        }
    }
    let torch_args: Vec<String> = if cuda { vec!["--cuda".into()] } else { vec![] };
    let python = crate::torch_env::provision(env, &torch_args)?;
    let mut cmd = Command::new(crate::cargo());
    cmd.current_dir(&env.root)
        .args(["build", "-p", "prism-cli", "--features", "tch"]);
    if release {
        cmd.arg("--release");
    }
    for (key, value) in variables(&python)? {
        cmd.env(key, value);
    }
    if let Some((key, value)) = crate::tcmalloc::variable(env) {
        cmd.env(key, value);
    }
    crate::run(&mut cmd, "cargo build -p prism-cli --features tch")?;
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| env.root.join("target"));
    let binary = target
        .join(if release { "release" } else { "debug" })
        .join("prism");
    eprintln!(
        "xtask: {} trains with --device tch-cpu{}",
        binary.display(),
        if cuda { " and tch-cuda" } else { "" }
    );
    Ok(())
}
