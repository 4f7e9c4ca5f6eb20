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

/// The median of paired ratios and its 95 % bootstrap interval (2000 resamples, a fixed seed so
/// that a rerun on the same figures prints the same interval): `(median, low, high)`, NaN for no
/// values.
pub fn median_with_interval(ratios: &[f64]) -> (f64, f64, f64) {
    if ratios.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    // SplitMix64: enough for resampling indices, and no dependency for it.
    let mut state = 0x5EED_u64;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let n = ratios.len();
    let medians: Vec<f64> = (0..2000)
        .map(|_| {
            let sample: Vec<f64> = (0..n)
                .map(|_| ratios[(next() % n as u64) as usize])
                .collect();
            median(&sample)
        })
        .collect();
    (
        median(ratios),
        percentile(&medians, 0.025),
        percentile(&medians, 0.975),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_brackets_the_median_and_narrows_with_agreement() {
        let spread: Vec<f64> = (0..21).map(|i| 0.8 + 0.02 * i as f64).collect();
        let (m, lo, hi) = median_with_interval(&spread);
        assert!((m - 1.0).abs() < 1e-12);
        assert!(lo < m && m < hi, "{lo} {m} {hi}");
        assert!(lo >= 0.8 && hi <= 1.2);
        let same = vec![1.05; 9];
        assert_eq!(median_with_interval(&same), (1.05, 1.05, 1.05));
        assert!(median_with_interval(&[]).0.is_nan());
    }
}
