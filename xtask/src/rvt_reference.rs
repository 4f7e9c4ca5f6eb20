//! RVT's own preprocessing (`scripts/genx/preprocess_dataset.py` of uzh-rpg/RVT) as a reference:
//! the environment it runs in and the two jobs that run it.
//!
//! - `cargo xtask rvt-fixture`: writes `crates/prism-data/tests/fixtures/rvt-preprocessed/`
//!   again (`benchmarks/python/rvt_fixture.py`), the dataset prism's RVT-layout reader is tested
//!   on.
//! - `cargo xtask bench bench-prepare`: times `prism data prepare` against RVT's preprocessing
//!   on one recording.
//!
//! Both need a checkout of RVT named by `PRISM_RVT_REPO` (RVT's code is run, never committed;
//! the tests use the committed output only). RVT's script imports torch, numba, h5py with
//! hdf5plugin and omegaconf: those live in `$PRISM_ENV/rvt-venv`, which sees torch through a
//! `.pth` file pointing at the torch venv's packages ([`crate::torch_env`]) rather than
//! installing a second torch.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::provision::Env;

/// Pinned so the fixture and the benchmark are reproducible; numpy and h5py as in the test env.
const REQUIREMENTS: &[&str] = &[
    "numpy==2.4.6",
    "h5py==3.16.0",
    "hdf5plugin==7.1.0",
    "numba==0.68.1",
    "omegaconf==2.4.0",
    "tqdm==4.70.1",
];

/// The RVT checkout: `PRISM_RVT_REPO`.
pub fn checkout() -> Result<PathBuf> {
    let Some(dir) = std::env::var_os("PRISM_RVT_REPO") else {
        bail!(
            "set PRISM_RVT_REPO to a checkout of uzh-rpg/RVT (tested with b80f568); its \
             scripts/genx/preprocess_dataset.py is run, not copied"
        );
    };
    let dir = PathBuf::from(dir);
    if !dir.join("scripts/genx/preprocess_dataset.py").is_file() {
        bail!(
            "{}: no scripts/genx/preprocess_dataset.py; PRISM_RVT_REPO must name an RVT checkout",
            dir.display()
        );
    }
    Ok(dir)
}

/// The venv RVT's preprocessing runs in; returns its Python.
pub fn provision(env: &Env) -> Result<PathBuf> {
    let torch_python = crate::torch_env::provision(env, &[])?;
    let python = crate::peer_venv::ensure(env, "rvt-venv", REQUIREMENTS, true)?;
    let torch_packages = purelib(&torch_python)?;
    let pth = PathBuf::from(purelib(&python)?).join("prism-torch-venv.pth");
    fs::write(&pth, format!("{torch_packages}\n"))
        .with_context(|| format!("writing {}", pth.display()))?;
    Ok(python)
}

/// A Python's site-packages folder.
fn purelib(python: &PathBuf) -> Result<String> {
    let out = Command::new(python)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ])
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!("{} could not name its site-packages", python.display());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `cargo xtask rvt-fixture`: builds `prism`, then runs `benchmarks/python/rvt_fixture.py`.
pub fn write_fixture(env: &Env) -> Result<()> {
    let rvt = checkout()?;
    let python = provision(env)?;
    let mut build = Command::new(crate::cargo());
    build
        .current_dir(&env.root)
        .args(["build", "-p", "prism-cli"]);
    crate::run(&mut build, "cargo build -p prism-cli")?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| env.root.join("target"));
    let prism = target.join("debug/prism");
    let fixture = env
        .root
        .join("crates/prism-data/tests/fixtures/rvt-preprocessed");
    crate::run(
        Command::new(&python)
            .arg(env.root.join("benchmarks/python/rvt_fixture.py"))
            .arg(&prism)
            .arg(&rvt)
            .arg(&fixture),
        "RVT's preprocess_dataset.py on the fixture scenes",
    )
}
