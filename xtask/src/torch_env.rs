//! `cargo xtask provision-torch [--cuda]`: a CPU PyTorch in its own venv `$PRISM_ENV/torch-venv`,
//! for the benchmarks' peers (`benchmarks/python/`), for Burn's LibTorch backend (`tch_build`)
//! and, with `transformers`, for the MiT import-parity test; `cargo xtask test` provisions it too.
//!
//! The PyPI Linux x86_64 `torch` wheel is built with CUDA and depends on about 4 GB of
//! `nvidia-*`, `cuda-*` and `triton` wheels. By default this installs the wheel with `--no-deps`
//! plus its small pure-Python dependencies (about 1.4 GB in all), then writes tiny stand-ins for
//! the CUDA libraries that torch's shared objects list as needed
//! (`benchmarks/python/torch_cpu_stubs.py`, needs `readelf` and a C compiler), so that
//! `import torch` works and everything runs on the CPU. `--cuda` installs the wheel with all its
//! dependencies instead (about 5.4 GB), for a machine with an NVIDIA GPU.
//!
//! Idempotent: a stamp in the venv records what was installed; a matching stamp skips the work.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::provision::Env;

/// The PyTorch release: the benchmarks' peer, and the libtorch that Burn's LibTorch backend links
/// (`tch_build`). torch-sys 0.22, which Burn 0.22's `tch` feature uses, checks for exactly 2.9.0.
pub const TORCH: &str = "torch==2.9.0";

/// torch's runtime dependencies that are plain Python (and numpy for the benchmark), pinned.
const PURE_REQUIREMENTS: &[&str] = &[
    "numpy==2.4.6",
    "filelock==4.2.12",
    "typing-extensions==4.16.0",
    "sympy==1.14.0",
    "mpmath==1.3.0",
    "networkx==3.6.1",
    "jinja2==3.1.6",
    "markupsafe==3.0.4",
    "fsspec==2026.9.0",
];

/// The `transformers` package (the reference `SegformerModel` of the MiT import-parity test,
/// `crates/prism-models/tests/mit_import.rs`, and the latency peer of `bench-mit`) and
/// `onnxruntime` (the same release as the test venv's, so that `bench-mit` times prism's file
/// and the PyTorch peer interleaved in one process), with their dependencies, pinned.
const PEER_REQUIREMENTS: &[&str] = &[
    "annotated-doc==0.0.7",
    "annotated-types==0.8.0",
    "anyio==4.16.0",
    "click==8.5.1",
    "flatbuffers==25.12.19",
    "h11==0.16.0",
    "hf-xet==1.8.0",
    "httpcore2==2.16.2",
    "httpx2==2.16.2",
    "huggingface_hub==2.4.0",
    "idna==3.20",
    "kernels==0.19.1",
    "markdown-it-py==4.3.0",
    "mdurl==0.1.2",
    "onnxruntime==1.31.1",
    "packaging==26.4",
    "protobuf==7.36.2",
    "pydantic==2.14.4",
    "pydantic_core==2.50.5",
    "Pygments==2.21.0",
    "PyYAML==6.0.4",
    "regex==2026.11.19",
    "rich==15.0.0",
    "safetensors==0.8.0",
    "shellingham==1.5.4",
    "tokenizers==0.23.3",
    "tomlkit==0.15.3",
    "tqdm==4.70.1",
    "transformers==5.25.0",
    "truststore==0.10.5",
    "typer==0.29.2",
    "typing-inspection==0.4.5",
];

/// Bumped when the way the venv is built changes.
const RECIPE: &str = "torch-env v4";

/// A one-step training check on the CPU: conv, BatchNorm, GELU, backward, AdamW.
const SMOKE_TEST: &str = "import torch\n\
m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.GELU())\n\
opt = torch.optim.AdamW(m.parameters(), lr=1e-3)\n\
loss = m(torch.randn(2, 3, 16, 16)).square().mean()\n\
loss.backward(); opt.step()\n\
assert torch.isfinite(loss.detach())\n\
print(f'xtask: torch {torch.__version__} trains on the CPU (cuda available: {torch.cuda.is_available()})')\n";

/// The venv's directory.
pub fn venv(env: &Env) -> PathBuf {
    env.dir.join("torch-venv")
}

/// Creates (or confirms) the torch venv; returns its python. Arguments: `[--cuda]`.
pub fn provision(env: &Env, args: &[String]) -> Result<PathBuf> {
    let cuda = match args {
        [] => false,
        [flag] if flag == "--cuda" => true,
        _ => bail!("usage: cargo xtask provision-torch [--cuda]"),
    };
    let venv = venv(env);
    let python = venv.join("bin/python");
    let stamp = venv.join(".prism-torch");
    let mode = if cuda { "cuda" } else { "cpu-stubs" };
    let wanted = format!(
        "{RECIPE}\n{mode}\n{TORCH}\n{}\n{}",
        PURE_REQUIREMENTS.join("\n"),
        PEER_REQUIREMENTS.join("\n")
    );
    if fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) && python.exists() {
        eprintln!("xtask: torch venv up to date: {}", venv.display());
        return Ok(python);
    }
    fs::create_dir_all(&env.dir).with_context(|| format!("creating {}", env.dir.display()))?;
    if venv.exists() {
        // A different recipe or mode: start over rather than mix CUDA packages and stubs.
        fs::remove_dir_all(&venv).with_context(|| format!("removing {}", venv.display()))?;
    }
    eprintln!(
        "xtask: creating the torch environment in {} ({mode})",
        venv.display()
    );
    let system_python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    crate::run(
        Command::new(&system_python)
            .arg("-m")
            .arg("venv")
            .arg(&venv),
        "python3 -m venv",
    )?;
    let pip = |extra: &[&str]| {
        let mut cmd = Command::new(&python);
        cmd.args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(extra);
        cmd
    };
    if cuda {
        let mut all = vec![TORCH];
        all.extend_from_slice(PURE_REQUIREMENTS);
        crate::run(&mut pip(&all), "pip install torch")?;
    } else {
        for tool in ["readelf", "cc"] {
            let found = Command::new(tool).arg("--version").output().is_ok();
            if !found {
                bail!("the CPU torch venv needs `{tool}` (binutils and a C compiler) to write the CUDA stand-ins; or use --cuda");
            }
        }
        crate::run(
            &mut pip(PURE_REQUIREMENTS),
            "pip install (torch's pure-Python dependencies)",
        )?;
        crate::run(
            &mut pip(&["--no-deps", TORCH]),
            "pip install --no-deps torch",
        )?;
        let script = env.root.join("benchmarks/python/torch_cpu_stubs.py");
        crate::run(
            Command::new(&python).arg(&script),
            "writing the CUDA stand-ins (torch_cpu_stubs.py)",
        )?;
    }
    crate::run(
        &mut pip(PEER_REQUIREMENTS),
        "pip install transformers and onnxruntime",
    )?;
    crate::run(
        Command::new(&python).arg("-c").arg(SMOKE_TEST),
        "torch smoke test",
    )?;
    fs::write(&stamp, wanted).context("writing the torch stamp")?;
    eprintln!(
        "xtask: run the peer with {} benchmarks/python/train_throughput_torch.py",
        python.display()
    );
    Ok(python)
}
