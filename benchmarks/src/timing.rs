//! One-core timing shared by the benchmark binaries: pinning this process (and the peers it
//! starts) to one CPU, and the median of repeated runs after a warm-up.

use std::hint::black_box;
use std::process::Command;
use std::time::Instant;

use anyhow::Result;

/// Re-runs this process under `taskset -c cpu` once, so that prism and the peers share one core.
/// Returns the child's exit code when it re-ran (the caller exits with it), `None` when this is
/// already the pinned process or `taskset` is missing.
pub fn pin_to_core(cpu: usize) -> Result<Option<i32>> {
    if std::env::var_os("PRISM_BENCH_PINNED").is_some() {
        return Ok(None);
    }
    let exe = std::env::current_exe()?;
    match Command::new("taskset")
        .arg("-c")
        .arg(cpu.to_string())
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env("PRISM_BENCH_PINNED", cpu.to_string())
        .status()
    {
        Ok(status) => Ok(Some(status.code().unwrap_or(1))),
        Err(e) => {
            eprintln!("warning: taskset unavailable ({e}); running unpinned");
            Ok(None)
        }
    }
}

/// Median seconds of `runs` calls after one warm-up, and the warm-up's result.
pub fn time_median<T>(runs: usize, mut f: impl FnMut() -> Result<T>) -> Result<(f64, T)> {
    let first = f()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        black_box(f()?);
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], first))
}

/// A Python command pinned to `cpu` (when given) with every thread pool at one thread.
pub fn pinned_python(python: &std::path::Path, cpu: Option<usize>) -> Command {
    let mut cmd = match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(python);
            c
        }
        None => Command::new(python),
    };
    for var in [
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "POLARS_MAX_THREADS",
        "RAYON_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
        "NUMBA_NUM_THREADS",
    ] {
        cmd.env(var, "1");
    }
    cmd
}
