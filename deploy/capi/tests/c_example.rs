//! Compiles `examples/stream.c` against `include/prism.h` and the cdylib with gcc, runs it on the
//! prism-deploy fixtures, and checks its detections against the Rust StreamDetector's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use prism_deploy::{Backend, Engine, EngineOptions, StreamDetector};

fn skip(why: &str) {
    if std::env::var("PRISM_REQUIRE_FIXTURES").is_ok_and(|v| v == "1") {
        panic!("{why} (PRISM_REQUIRE_FIXTURES=1)");
    }
    eprintln!("SKIPPED c_example: {why}");
}

/// The directory cargo wrote the cdylib to: next to the test binary (`<profile>/deps`) when
/// cargo builds it for the tests, else `<profile>` after `cargo build`.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap().to_path_buf();
    if deps.join("libprism.so").is_file() {
        return deps;
    }
    deps.parent().unwrap_or(&deps).to_path_buf()
}

#[test]
fn c_example_streams_events_and_matches_rust() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let prism_env = std::env::var_os("PRISM_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../../target/prism-env"));
    let python = prism_env.join("venv/bin/python");
    if !python.is_file() {
        return skip(&format!("{} not found", python.display()));
    }
    let gcc_ok = Command::new("gcc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !gcc_ok {
        return skip("gcc not found");
    }
    let lib = lib_dir();
    if !lib.join("libprism.so").is_file() {
        return skip(&format!("no libprism.so in {}", lib.display()));
    }
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("capi-fixtures");
    let status = Command::new(&python)
        .arg(manifest.join("../tests/fixtures/make_fixtures.py"))
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());

    let exe = out.join("stream");
    let status = Command::new("gcc")
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(manifest.join("examples/stream.c"))
        .arg("-I")
        .arg(manifest.join("include"))
        .arg("-L")
        .arg(&lib)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-lprism")
        .status()
        .unwrap();
    assert!(status.success(), "gcc failed");

    let model = out.join("rvt_tiny.onnx");
    let run = |chunk: &str| {
        let o = Command::new(&exe)
            .arg(&model)
            .arg("tract")
            .arg(&out)
            .arg(chunk)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let printed = run("500");
    assert_eq!(
        printed,
        run("1"),
        "chunking changes nothing through the C API"
    );

    // The same detections from Rust.
    let engine = Arc::new(Engine::load(&model, &EngineOptions::new(Backend::Tract)).unwrap());
    let mut d = StreamDetector::new(engine).unwrap();
    let read = |n: &str| std::fs::read(out.join(format!("events_{n}.bin"))).unwrap();
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
    let p = read("p");
    let mut expected = String::new();
    let classes = ["car", "pedestrian"];
    let mut line = |w: &prism_deploy::WindowDetections<'_>| {
        for det in w.detections {
            let b = det.bbox;
            expected.push_str(&format!(
                "{} {} {:.6} {:.4} {:.4} {:.4} {:.4}\n",
                w.end_us, classes[det.class_id], det.score, b.x1, b.y1, b.x2, b.y2
            ));
        }
        Ok::<_, prism_deploy::DeployError>(true)
    };
    d.push_slices(&t, &x, &y, &p, &mut line).unwrap();
    d.finish(&mut line).unwrap();
    assert!(!expected.is_empty());
    assert_eq!(printed, expected);

    // A bad model path is an error message, not a crash.
    let o = Command::new(&exe)
        .arg(out.join("no_meta.onnx"))
        .arg("tract")
        .arg(&out)
        .arg("10")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no `prism` metadata"));
}
