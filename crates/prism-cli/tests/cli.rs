//! The `prism` binary as a user runs it: synthesize, inspect, render, and bad input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::needless_range_loop
)]

mod common;

use common::{prism, stderr, stdout};
use std::path::Path;

#[test]
fn synth_inspect_render_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("scene");
    let stem = stem.to_str().unwrap();
    let o = prism(&[
        "data",
        "synth",
        "--out",
        stem,
        "--format",
        "evt3",
        "--duration-s",
        "1",
        "--seed",
        "3",
    ]);
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
    let o = prism(&[
        "data",
        "render",
        &raw,
        "--window-ms",
        "50",
        "--out",
        frames.to_str().unwrap(),
        "--max-frames",
        "5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut pngs: Vec<_> = std::fs::read_dir(&frames)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    pngs.sort();
    assert_eq!(pngs.len(), 5);
    assert_eq!(pngs[0], "frame_00000.png");
}

#[test]
fn synth_is_deterministic_per_seed() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: &str| {
        let stem = dir.path().join(name);
        let o = prism(&[
            "data",
            "synth",
            "--out",
            stem.to_str().unwrap(),
            "--duration-s",
            "0.5",
            "--seed",
            seed,
        ]);
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

    let o = prism(&[
        "data",
        "inspect",
        dir.path().join("missing.dat").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("missing.dat"));

    let o = prism(&[
        "data",
        "render",
        file.to_str().unwrap(),
        "--out",
        "x",
        "--window-ms=-5",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--window-ms must be positive"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_dat_file_without_a_header_is_read_only_when_named() {
    let dir = tempfile::tempdir().unwrap();
    // 200 kB of random bytes named `.dat` used to decode to thousands of junk events.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let junk: Vec<u8> = (0..200_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let x = dir.path().join("x.dat");
    std::fs::write(&x, &junk).unwrap();
    let x = x.to_str().unwrap();
    let o = prism(&["data", "inspect", x]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("without a `%` header")
            && stderr(&o).contains("--format dat --sensor WxH"),
        "{}",
        stderr(&o)
    );
    let o = prism(&["data", "inspect", x, "--format", "dat"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("--sensor WxH"), "{}", stderr(&o));
    let o = prism(&["data", "inspect", x, "--format", "mp4"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("unknown event format `mp4`"),
        "{}",
        stderr(&o)
    );

    // Bare records named as such, with their sensor: read as RVT reads them.
    let record = |t: u32, x: u32, y: u32, p: u32| {
        let mut r = t.to_le_bytes().to_vec();
        r.extend((x | (y << 14) | (p << 28)).to_le_bytes());
        r
    };
    let bare = dir.path().join("bare.dat");
    std::fs::write(
        &bare,
        [record(10, 3, 4, 1), record(20, 159, 127, 0)].concat(),
    )
    .unwrap();
    let o = prism(&[
        "data",
        "inspect",
        bare.to_str().unwrap(),
        "--format",
        "dat",
        "--sensor",
        "160x128",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(summary["events"], 2);
    assert_eq!(summary["on_events"], 1);
    assert_eq!(summary["last_t_us"], 20);
}

#[test]
fn evt2_without_geometry_needs_a_sensor_size_to_render() {
    let Some(evt2) = prism_events::testdata::faery("evt2.raw") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("frames");
    let o = prism(&[
        "data",
        "render",
        evt2.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--sensor"), "{}", stderr(&o));
    let o = prism(&[
        "data",
        "render",
        evt2.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--sensor",
        "640x480",
        "--window-ms",
        "10",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = prism(&[
        "data",
        "inspect",
        evt2.to_str().unwrap(),
        "--sensor",
        "640x480",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(summary["events"], 521_252);
}

#[test]
fn aedat4_inspects_and_renders_like_the_reference_readers() {
    let Some(file) = prism_events::testdata::faery("davis346.aedat4") else {
        return;
    };
    let file = file.to_str().unwrap();
    let o = prism(&["data", "inspect", file, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    // evlib's and faery's readings of the file (crates/prism-events/tests/aedat4.rs).
    assert_eq!(summary["format"], "AEDAT 4.0");
    assert_eq!(summary["events"], 78_830);
    assert_eq!(summary["sensor"], serde_json::json!([346, 260]));
    assert_eq!(summary["first_t_us"], 1_589_163_147_368_868_i64);
    assert_eq!(summary["last_t_us"], 1_589_163_149_728_813_i64);
    let o = prism(&["data", "inspect", file]);
    assert!(
        stdout(&o).contains("format       AEDAT 4.0"),
        "{}",
        stdout(&o)
    );

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("frames");
    let o = prism(&[
        "data",
        "render",
        file,
        "--out",
        out.to_str().unwrap(),
        "--window-ms",
        "500",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read_dir(&out).unwrap().count() >= 4);

    // Damaged: the magic is there, the header is not.
    let bad = dir.path().join("bad.aedat4");
    let mut bytes = std::fs::read(file).unwrap();
    bytes.truncate(400);
    std::fs::write(&bad, bytes).unwrap();
    let o = prism(&["data", "inspect", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("the header claims"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}

#[test]
fn demo_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    // A few training steps keep the test short; the pipeline is the same as the default 60.
    let o = prism(&[
        "demo",
        "--out",
        dir.path().to_str().unwrap(),
        "--steps",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("5/5 summary"), "{out}");
    assert!(dir.path().join("run/curves.png").exists());
    assert!(dir.path().join("rvt-tiny-synth.onnx").exists());
    assert!(dir.path().join("frames/window_000000.png").exists());
    assert!(dir.path().join("map-tract.json").exists());
}

#[test]
fn info_reports_the_reference_parameter_counts() {
    let o = prism(&["info", "--model", "rvt-tiny-gen1", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let info: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(info["parameters"]["total"], 4_405_141);
    assert_eq!(info["parameters"]["backbone"], 3_220_032);
    assert_eq!(info["state_bytes"], 2_457_600);
    assert_eq!(info["outputs"][0][1], serde_json::json!([1, 1680, 7]));
    let gflops = info["flops_per_window"].as_f64().unwrap() / 1e9;
    assert!((2.0..4.0).contains(&gflops), "{gflops} GFLOPs");
}

#[test]
fn set_overrides_reach_info_and_export_and_are_checked() {
    // The seed's hypothesis that the plain LSTM has about half the parameters of the DWS
    // ConvLSTM: the depthwise kernel adds only 10 C per stage (4,800 at tiny).
    let o = prism(&[
        "info",
        "--model",
        "rvt-tiny-gen1",
        "--set",
        "model.memory=dws-lstm",
        "--set",
        "model.fpn_scales=4",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let info: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(info["memory"], "dws-lstm");
    assert_eq!(info["attention"], "block-grid");
    assert_eq!(info["fpn_strides"], serde_json::json!([4, 8, 16, 32]));
    assert_eq!(info["parameters"]["memory"], 698_240 + 4_800);
    // 64x80 + 32x40 + 16x20 + 8x10 anchors.
    assert_eq!(info["outputs"][0][1], serde_json::json!([1, 6800, 7]));

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("four.onnx");
    let o = prism(&[
        "export",
        "onnx",
        "--model",
        "rvt-tiny-synth",
        "--set",
        "model.fpn_scales=4",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = prism(&["info", "--model", out.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let file: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        file["spec"]["output"]["strides"],
        serde_json::json!([4, 8, 16, 32])
    );

    for (bad, says) in [
        ("model.fpn_scales=5", "fpn_scales"),
        ("model.memory=gru", "memory"),
        (
            "model.attention=fourier",
            "block-grid, full, block, grid, sr, sliding, linear, latent",
        ),
        ("model.atention=full", "model.atention"),
        ("nonsense", "key=value"),
    ] {
        let o = prism(&["info", "--model", "rvt-tiny-synth", "--set", bad]);
        assert!(!o.status.success(), "{bad} accepted");
        assert!(stderr(&o).contains(says), "{bad}: {}", stderr(&o));
    }
}

/// A model with SSM memory exports with its duration input, says so in `prism info`, and
/// `prism infer --window-ms` runs it at other window lengths than it was made for.
#[test]
fn ssm_memory_exports_and_infers_at_other_window_lengths() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("ssm.onnx");
    let o = prism(&[
        "export",
        "onnx",
        "--model",
        "rvt-tiny-synth",
        "--set",
        "model.memory=ssm",
        "--out",
        model.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = prism(&["info", "--model", model.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("duration     window_duration_s"),
        "{}",
        stdout(&o)
    );
    let scene = dir.path().join("scene");
    let o = prism(&[
        "data",
        "synth",
        "--out",
        scene.to_str().unwrap(),
        "--duration-s",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let input = dir.path().join("scene_td.dat");
    let detections = dir.path().join("d.jsonl");
    let windows = |extra: &[&str]| {
        let mut args = vec!["infer", "--model", model.to_str().unwrap()];
        args.extend(["--input", input.to_str().unwrap()]);
        args.extend(["--out", detections.to_str().unwrap()]);
        args.extend(extra);
        let o = prism(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let err = stderr(&o);
        let summary = err
            .lines()
            .find(|l| l.contains(" windows, "))
            .unwrap()
            .to_string();
        summary
            .split(" windows, ")
            .next()
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .parse::<usize>()
            .unwrap()
    };
    // One second of events: 20 windows of 50 ms (the card's), 50 of 20 ms, 10 of 100 ms.
    let (at_50, at_20, at_100) = (
        windows(&[]),
        windows(&["--window-ms", "20"]),
        windows(&["--window-ms", "100"]),
    );
    assert!((20..=21).contains(&at_50), "{at_50}");
    assert!((50..=51).contains(&at_20), "{at_20}");
    assert!((10..=11).contains(&at_100), "{at_100}");
    let o = prism(&[
        "infer",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--window-ms",
        "0",
    ]);
    assert!(!o.status.success());
}

/// MiT-b1 at 640x512 by hand: about 13.7 G multiply-accumulates (stage 1: 3.8, 2: 3.1,
/// 3: 4.0, 4: 2.7), so 27.4 GFLOPs; tract's cost model may count elementwise work differently.
const GFLOPS_B1_640X512: (f64, f64) = (24.0, 31.0);

#[test]
fn info_on_a_mit_backbone_gives_the_published_count_per_stage() {
    let o = prism(&["info", "--model", "mit-b1", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let info: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let total = info["total_parameters"].as_f64().unwrap();
    // 13.15 M published (backbone only, 3-channel stem), within 0.5 %.
    assert!((total / 13.15e6 - 1.0).abs() < 0.005, "{total}");
    let stages: f64 = (0..4)
        .map(|i| info["stage_parameters"][i].as_f64().unwrap())
        .sum();
    assert_eq!(stages, total);
    assert_eq!(info["channels"], serde_json::json!([64, 128, 320, 512]));
    let gflops = info["flops_640x512"].as_f64().unwrap() / 1e9;
    assert!(
        (GFLOPS_B1_640X512.0..GFLOPS_B1_640X512.1).contains(&gflops),
        "{gflops} GFLOPs"
    );
}

#[test]
fn info_on_a_fused_model_shows_the_fusion_overhead_per_stage() {
    let json = |name: &str| -> serde_json::Value {
        let o = prism(&["info", "--model", name, "--json"]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        serde_json::from_str(&stdout(&o)).unwrap()
    };
    // The reference formulas (fusion.md, section 6): GAFF at mit-b1's 128 and 320 channels
    // (SE 4C^2/r + inter 4C^2 + merge 2C^2 + BN 2C), CSSA 2 x k = 6 per fusion point.
    let gaff = json("mm-mit-b1-gaff-s23");
    assert_eq!(
        gaff["fusion_per_stage"],
        serde_json::json!([0, 114_944, 717_440, 0])
    );
    let cssa = json("mm-mit-b1-cssa-s3");
    assert_eq!(cssa["fusion_per_stage"], serde_json::json!([0, 0, 6, 0]));
    // Two streams: the thermal + event stem has 2 input channels, one fewer than RGB's.
    let n = |v: &serde_json::Value, k: &str| v[k].as_i64().unwrap();
    assert_eq!(n(&cssa, "rgb_stream") - n(&cssa, "aux_stream"), 64 * 49);
    let rgb = json("mm-mit-b1-rgb");
    assert_eq!(n(&rgb, "aux_stream"), 0);
    // (A shipped card sizes the head for its classes; a bare name for one class.)
    assert_eq!(
        (n(&cssa, "total") - n(&cssa, "head")) - (n(&rgb, "total") - n(&rgb, "head")),
        n(&cssa, "aux_stream") + 6
    );
    // The human-readable form names the block per stage.
    let o = prism(&["info", "--model", "mm-mit-b0-gaff-s23"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("fusion s2") && text.contains("GAFF"),
        "{text}"
    );
    // An unknown variant is an error that says what names look like.
    let o = prism(&["info", "--model", "mm-mit-b0-sum-s1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("mm-mit-bN-cssa-sS"), "{}", stderr(&o));
}

#[test]
fn data_synth_mm_writes_the_multimodal_layout_and_refuses_bad_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mm");
    let o = prism(&[
        "data",
        "synth-mm",
        "--out",
        out.to_str().unwrap(),
        "--images",
        "6",
        "--size",
        "96x64",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("images     6 images") && text.contains("nighttest"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("classes.txt")).unwrap(),
        "person\ncar\n"
    );
    let count = |d: &str| std::fs::read_dir(out.join(d)).unwrap().count();
    assert_eq!((count("images"), count("labels")), (6, 6));
    assert_eq!(count("nighttest/images"), 1);
    let o = prism(&[
        "data",
        "synth-mm",
        "--out",
        out.to_str().unwrap(),
        "--size",
        "8x8",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("outside 32..=4096"), "{}", stderr(&o));
}

#[test]
fn unknown_models_get_a_list_of_known_ones() {
    let o = prism(&["info", "--model", "rvt-huge-gen1"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("unknown model") && err.contains("rvt-tiny-gen1"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn export_onnx_verifies_in_tract_and_onnx_runtime() {
    if prism_events::testdata::python().is_none() {
        return; // ONNX Runtime comes with the provisioned environment.
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("synth.onnx");
    let o = prism(&[
        "export",
        "onnx",
        "--model",
        "rvt-tiny-synth",
        "--out",
        out.to_str().unwrap(),
        "--verify",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("verified: max relative error"), "{text}");
    assert!(text.contains("tract") && text.contains("ort-cpu"), "{text}");
    assert!(out.metadata().unwrap().len() > 17_000_000);
}

#[test]
fn imported_official_checkpoint_exports() {
    let ckpt = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/rvt-official/rvt-tiny-gen1.ckpt");
    if !ckpt.exists() {
        assert!(
            std::env::var_os("PRISM_REQUIRE_FIXTURES").is_none(),
            "missing {}",
            ckpt.display()
        );
        eprintln!("SKIPPED: no {}", ckpt.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ckpt");
    let o = prism(&[
        "import",
        "rvt-checkpoint",
        ckpt.to_str().unwrap(),
        "--model",
        "rvt-tiny-gen1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("4405141 parameters"), "{}", stdout(&o));
    let onnx = dir.path().join("official.onnx");
    let o = prism(&[
        "export",
        "onnx",
        "--checkpoint",
        out.to_str().unwrap(),
        "--out",
        onnx.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The wrong architecture is a clear error naming a key.
    let o = prism(&[
        "import",
        "rvt-checkpoint",
        ckpt.to_str().unwrap(),
        "--model",
        "rvt-base-gen1",
        "--out",
        dir.path().join("bad").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("backbone"), "{}", stderr(&o));
}

#[test]
fn training_devices_are_checked_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let data = dir.path().join("data");
    let (run, data_arg) = (run_dir.to_str().unwrap(), data.to_str().unwrap());
    let o = prism(&[
        "train",
        "--config",
        "rvt-tiny-synth",
        "--run-dir",
        run,
        "--data",
        data_arg,
        "--device",
        "gpu",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unknown device `gpu`"),
        "{}",
        stderr(&o)
    );
    if !cfg!(feature = "cuda") {
        // A build without CUDA refuses it, rather than training on the CPU.
        let o = prism(&[
            "train",
            "--config",
            "rvt-tiny-synth",
            "--run-dir",
            run,
            "--data",
            data_arg,
            "--device",
            "cuda",
        ]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains("--features cuda"), "{}", stderr(&o));
    }
    assert!(
        !data.exists() && !run_dir.exists(),
        "nothing is generated for a refused device"
    );
}
