//! Shared test helpers: a seeded generator, the reference Python runner, exact comparison.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// SplitMix64: small, seeded, deterministic.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..hi` (exclusive); `lo` when the range is empty.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.next_u64() % (hi - lo)
        }
    }
    pub fn usize(&mut self, lo: usize, hi: usize) -> usize {
        self.range(lo as u64, hi as u64) as usize
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.usize(0, items.len())]
    }
}

/// Runs `tests/pycoco_eval.py MODE CASES OUT` with the provisioned Python and returns the
/// parsed output, or `None` (test skipped) when the environment is not provisioned.
pub fn run_reference(mode: &str, cases: &Path, out: &Path) -> Option<serde_json::Value> {
    let python = prism_events::testdata::python()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pycoco_eval.py");
    let output = Command::new(python)
        .arg(script)
        .arg(mode)
        .arg(cases)
        .arg(out)
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "pycoco_eval.py {mode} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(out).expect("read reference output");
    Some(serde_json::from_str(&text).expect("reference output is JSON"))
}

/// A list of IEEE-754 bit patterns from the reference output, as floats.
pub fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|b| f64::from_bits(b.as_u64().expect("u64 bits")))
        .collect()
}

/// Compares expected and actual values; returns the largest absolute difference and counts
/// values that differ in any bit.
pub fn compare(what: &str, expected: &[f64], actual: &[f64], inexact: &mut Vec<String>) -> f64 {
    assert_eq!(expected.len(), actual.len(), "{what}: lengths");
    let mut worst: f64 = 0.0;
    for (i, (e, a)) in expected.iter().zip(actual).enumerate() {
        let d = (e - a).abs();
        worst = worst.max(d);
        if e.to_bits() != a.to_bits() {
            inexact.push(format!("{what}[{i}]: pycocotools {e:?}, prism {a:?}"));
        }
    }
    worst
}
