//! Small helpers every benchmark binary needs: order statistics, the machine's load, and where
//! `cargo xtask` provisioned the Python environments.

use std::path::{Path, PathBuf};

/// The median (the upper one for an even count); NaN for no values.
pub fn median(v: &[f64]) -> f64 {
    let v = sorted(v);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The `q` quantile by nearest rank (`round((n - 1) q)`); NaN for no values.
pub fn percentile(v: &[f64], q: f64) -> f64 {
    let v = sorted(v);
    match v.len() {
        0 => f64::NAN,
        n => v[((n - 1) as f64 * q).round() as usize],
    }
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// `/proc/loadavg`'s three load averages, or "unknown".
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The provisioned environment: `$PRISM_ENV`, else `<workspace>/target/prism-env` (as `cargo
/// xtask` chooses it).
pub fn prism_env() -> PathBuf {
    std::env::var_os("PRISM_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/prism-env"))
}
