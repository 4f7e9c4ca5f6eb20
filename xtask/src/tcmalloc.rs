//! tcmalloc for the binaries that train on Burn's LibTorch backend (`prism` and `bench-train`
//! built with `--features tch`).
//!
//! A LibTorch training step allocates and frees thousands of tensors, from bytes to megabytes.
//! glibc's malloc spends a measurable share of the step sorting and merging those chunks
//! (`_int_malloc`, `unlink_chunk`, `malloc_consolidate` in `perf`); gperftools' tcmalloc serves
//! them from per-size free lists, which is why Intel's PyTorch CPU guide recommends it. The
//! library comes from Debian's `libtcmalloc-minimal4` package, unpacked (no root) into
//! `$PRISM_ENV/tcmalloc`. The build scripts of prism-cli and prism-benchmarks link it ahead of
//! the C library when `PRISM_TCMALLOC_LIB` names it, so that it serves every allocation of the
//! process, LibTorch's included. Where the package cannot be had, the binaries build with
//! glibc's malloc, with a warning.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::provision::Env;

const PACKAGE: &str = "libtcmalloc-minimal4";
const LIBRARY: &str = "libtcmalloc_minimal.so.4";

/// `("PRISM_TCMALLOC_LIB", path)` for the build, after unpacking the package if needed; `None`
/// (with a warning) where it cannot be had.
pub fn variable(env: &Env) -> Option<(&'static str, String)> {
    match provision(env) {
        Ok(library) => Some(("PRISM_TCMALLOC_LIB", library.display().to_string())),
        Err(err) => {
            eprintln!("xtask: warning: building without tcmalloc (glibc's malloc): {err:#}");
            None
        }
    }
}

/// The unpacked `libtcmalloc_minimal.so.4`, downloaded with `apt-get download` the first time.
fn provision(env: &Env) -> Result<PathBuf> {
    let dir = env.dir.join("tcmalloc");
    if let Some(library) = find(&dir) {
        return Ok(library);
    }
    let download = dir.join("download");
    fs::create_dir_all(&download).with_context(|| format!("creating {}", download.display()))?;
    crate::run(
        Command::new("apt-get")
            .args(["download", PACKAGE])
            .current_dir(&download),
        "apt-get download libtcmalloc-minimal4",
    )?;
    let deb = fs::read_dir(&download)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .context("apt-get download left no .deb")?;
    crate::run(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dir),
        "dpkg-deb -x",
    )?;
    match find(&dir) {
        Some(library) => Ok(library),
        None => bail!("{PACKAGE} has no {LIBRARY}"),
    }
}

/// `LIBRARY` under `dir/usr/lib/<multiarch>/`.
fn find(dir: &Path) -> Option<PathBuf> {
    let lib = dir.join("usr/lib");
    fs::read_dir(&lib)
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path().join(LIBRARY)))
        .find(|path| path.is_file())
}
