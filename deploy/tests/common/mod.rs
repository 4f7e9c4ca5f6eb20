//! Test fixtures: ONNX models and NumPy references built by `fixtures/make_fixtures.py` with the
//! xtask-provisioned Python (`$PRISM_ENV`, else `<workspace>/target/prism-env`). Without it the
//! tests print SKIPPED and pass, unless `PRISM_REQUIRE_FIXTURES=1`, which makes them fail.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use prism_events::EventChunk;

fn require() -> bool {
    std::env::var("PRISM_REQUIRE_FIXTURES").is_ok_and(|v| v == "1")
}

/// Skips (returns `None`) or fails, per `PRISM_REQUIRE_FIXTURES`.
pub fn skip<T>(test: &str, why: &str) -> Option<T> {
    if require() {
        panic!("{test}: {why} (PRISM_REQUIRE_FIXTURES=1)");
    }
    eprintln!("SKIPPED {test}: {why}");
    None
}

pub fn prism_env() -> PathBuf {
    std::env::var_os("PRISM_ENV")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/prism-env"))
}

/// The fixture directory, built once per test binary.
pub fn fixtures(test: &str) -> Option<&'static Path> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let python = prism_env().join("venv/bin/python");
        if !python.is_file() {
            return Err(format!(
                "{} not found (run `cargo xtask provision`)",
                python.display()
            ));
        }
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "deploy-fixtures-{}",
            std::env::current_exe()
                .ok()
                .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .unwrap_or_default()
        ));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_fixtures.py");
        let status = std::process::Command::new(&python)
            .arg(&script)
            .arg(&out)
            .status()
            .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
        if !status.success() {
            return Err(format!("{} failed: {status}", script.display()));
        }
        Ok(out)
    });
    match dir {
        Ok(d) => Some(d.as_path()),
        Err(e) => skip(test, e),
    }
}

/// Whether an ONNX Runtime library can be found; skips (or fails) the test otherwise.
pub fn ort_available(test: &str) -> bool {
    match prism_deploy::engine::onnxruntime::library_path(None) {
        Ok(_) => true,
        Err(e) => skip::<()>(test, &e.to_string()).is_some(),
    }
}

/// The CPU backends to test: tract, and ONNX Runtime CPU where its library is available (else
/// skipped or failed as [`ort_available`] decides).
pub fn cpu_backends(test: &str) -> Vec<prism_deploy::Backend> {
    let mut backends = vec![prism_deploy::Backend::Tract];
    if ort_available(test) {
        backends.push(prism_deploy::Backend::OrtCpu);
    }
    backends
}

/// The synthetic event stream the references were computed on.
pub fn events(dir: &Path) -> EventChunk {
    let read = |name: &str| std::fs::read(dir.join(format!("events_{name}.bin"))).unwrap();
    let t: Vec<i64> = read("t")
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let x: Vec<u16> = read("x")
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let y: Vec<u16> = read("y")
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let p: Vec<u8> = read("p");
    EventChunk { t, x, y, p }
}

pub fn f32_file(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

#[derive(Debug, serde::Deserialize)]
pub struct RefDetection {
    pub x1: f64,
    pub y1: f64,
    pub x2: f64,
    pub y2: f64,
    pub score: f64,
    pub class_id: usize,
}

#[derive(Debug, serde::Deserialize)]
pub struct RefWindow {
    pub end_us: i64,
    pub events: usize,
    pub detections: Vec<RefDetection>,
}

pub fn rvt_reference(dir: &Path) -> Vec<RefWindow> {
    serde_json::from_str(&std::fs::read_to_string(dir.join("rvt_expected.json")).unwrap()).unwrap()
}

#[derive(Debug, serde::Deserialize)]
pub struct RefFrame {
    pub detections: Vec<RefDetection>,
}

pub fn frame_reference(dir: &Path) -> RefFrame {
    serde_json::from_str(&std::fs::read_to_string(dir.join("frame_expected.json")).unwrap())
        .unwrap()
}

/// Same classes in the same order, boxes within `tol` px, scores within 1e-4.
pub fn assert_matches_reference(
    got: &[prism_core::Detection],
    want: &[RefDetection],
    tol: f64,
    what: &str,
) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.class_id, w.class_id, "{what}: detection {i} class");
        let pairs = [
            (g.bbox.x1, w.x1),
            (g.bbox.y1, w.y1),
            (g.bbox.x2, w.x2),
            (g.bbox.y2, w.y2),
        ];
        for (a, b) in pairs {
            assert!(
                (f64::from(a) - b).abs() <= tol,
                "{what}: detection {i} box {:?} vs {w:?}",
                g.bbox
            );
        }
        assert!(
            (f64::from(g.score) - w.score).abs() <= 1e-4,
            "{what}: detection {i} score {} vs {}",
            g.score,
            w.score
        );
    }
}

/// Same classes in the same order, boxes and scores within `tol`.
pub fn assert_same(a: &[prism_core::Detection], b: &[prism_core::Detection], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: {a:?} vs {b:?}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.class_id, y.class_id, "{what}: detection {i} class");
        let d = [
            x.bbox.x1 - y.bbox.x1,
            x.bbox.y1 - y.bbox.y1,
            x.bbox.x2 - y.bbox.x2,
            x.bbox.y2 - y.bbox.y2,
            x.score - y.score,
        ];
        assert!(
            d.iter().all(|v| v.abs() <= tol),
            "{what}: detection {i}: {x:?} vs {y:?}"
        );
    }
}
