//! The `prism` binary as a user runs it: synthesize, inspect, render, and bad input.

use std::path::Path;
use std::process::{Command, Output};

fn prism(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prism"))
        .args(args)
        .output()
        .expect("the prism binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn synth_inspect_render_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("scene");
    let stem = stem.to_str().unwrap();
    let o = prism(&["data", "synth", "--out", stem, "--format", "evt3", "--duration-s", "1", "--seed", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let raw = format!("{stem}_td.raw");
    assert!(Path::new(&raw).exists());
    assert!(Path::new(&format!("{stem}_bbox.npy")).exists());

    let o = prism(&["data", "inspect", &raw, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(summary["format"], "EVT 3.0 raw");
    assert_eq!(summary["sensor"], serde_json::json!([160, 128]));
    let events = summary["events"].as_u64().unwrap();
    assert!(events > 10_000, "{events} events");
    assert_eq!(
        summary["on_events"].as_u64().unwrap() + summary["off_events"].as_u64().unwrap(),
        events
    );
    assert_eq!(summary["time_repairs"], 0);
    assert!((summary["duration_s"].as_f64().unwrap() - 1.0).abs() < 0.01);

    let frames = dir.path().join("frames");
    let o = prism(&["data", "render", &raw, "--window-ms", "50", "--out", frames.to_str().unwrap(), "--max-frames", "5"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut pngs: Vec<_> = std::fs::read_dir(&frames).unwrap().map(|e| e.unwrap().file_name()).collect();
    pngs.sort();
    assert_eq!(pngs.len(), 5);
    assert_eq!(pngs[0], "frame_00000.png");
}

#[test]
fn synth_is_deterministic_per_seed() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: &str| {
        let stem = dir.path().join(name);
        let o = prism(&["data", "synth", "--out", stem.to_str().unwrap(), "--duration-s", "0.5", "--seed", seed]);
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::read(format!("{}_td.dat", stem.display())).unwrap()
    };
    assert_eq!(run("a", "1"), run("b", "1"));
    assert_ne!(run("a", "1"), run("c", "2"));
}

#[test]
fn garbage_gets_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("junk.bin");
    std::fs::write(&file, b"\x00\x01not an event file").unwrap();
    let o = prism(&["data", "inspect", file.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("not a recognised event file"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let o = prism(&["data", "inspect", dir.path().join("missing.dat").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("missing.dat"));

    let o = prism(&["data", "render", file.to_str().unwrap(), "--out", "x", "--window-ms=-5"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--window-ms must be positive"), "{}", stderr(&o));
}

#[test]
fn evt2_without_geometry_needs_a_sensor_size_to_render() {
    let Some(evt2) = prism_events::testdata::faery("evt2.raw") else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("frames");
    let o = prism(&["data", "render", evt2.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--sensor"), "{}", stderr(&o));
    let o = prism(&["data", "render", evt2.to_str().unwrap(), "--out", out.to_str().unwrap(), "--sensor", "640x480", "--window-ms", "10"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = prism(&["data", "inspect", evt2.to_str().unwrap(), "--sensor", "640x480", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(summary["events"], 521_252);
}

#[test]
fn demo_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let o = prism(&["demo", "--out", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("4/4 summary"));
    assert!(dir.path().join("frames/frame_00000.png").exists());
}
