//! Label frames and window ends from `prism data prepare` against RVT's own rule
//! (`tests/rvt_labels.py`, a transcription of RVT's `labels_and_ev_repr_timestamps` run with
//! numpy), for Gen1- and 1Mpx-style label clocks: exact, jittered by ±1 µs and by ±500 µs, with
//! frames missing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::needless_range_loop
)]

mod common;

use std::path::Path;
use std::process::Command;

use common::TestResult;
use prism_data::{prepare_recording, rvt_timeline, LabelClock, PrepareOptions};
use prism_events::repr::HistogramConfig;
use prism_events::synth::rng::SplitMix64;
use prism_events::write::{create, WriteFormat};
use prism_events::{write_bbox_npy, BoxLabel, EventChunk, SensorSize};
use serde_json::{json, Value};

/// Uniform in `-amp..=amp`.
fn jitter(rng: &mut SplitMix64, amp: i64) -> i64 {
    (rng.next_u64() % (2 * amp as u64 + 1)) as i64 - amp
}

#[derive(Debug, Clone)]
struct Case {
    name: String,
    gen4: bool,
    times: Vec<i64>,
}

/// Label clocks as the datasets have them: Gen1 at 4 Hz and 2 Hz, 1Mpx at 30 and 60 Hz; each
/// exact, jittered by ±1 µs and by ±500 µs; each with and without dropped frames (a frame whose
/// objects all left, or that the filters emptied).
fn cases() -> Vec<Case> {
    let mut rng = SplitMix64::new(21);
    let mut out = Vec::new();
    let clocks: [(&str, bool, f64, i64, f64); 4] = [
        ("gen1-4hz", false, 4.0, 0, 3.2),
        ("gen1-2hz", false, 2.0, 49_999, 4.1),
        ("gen4-30hz", true, 30.0, 0, 2.6),
        ("gen4-60hz", true, 60.0, 16_000, 1.9),
    ];
    for (clock, gen4, hz, offset, seconds) in clocks {
        for amp in [0, 1, 500] {
            for drop in [false, true] {
                let n = (seconds * hz) as usize;
                let mut times = Vec::new();
                for k in 0..n {
                    let exact = offset + (k as f64 * 1e6 / hz).round() as i64;
                    let t = exact + if amp > 0 { jitter(&mut rng, amp) } else { 0 };
                    if drop && k > 3 && rng.next_u64() % 5 == 0 {
                        continue;
                    }
                    times.push(t.max(0));
                }
                times.sort_unstable();
                times.dedup();
                out.push(Case {
                    name: format!("{clock} ±{amp} µs{}", if drop { " with gaps" } else { "" }),
                    gen4,
                    times,
                });
            }
        }
    }
    out
}

/// The reference's answer per case, or `None` (skipped) without the Python environment.
fn reference(cases: &[Case], dir: &Path) -> Option<Vec<Value>> {
    let python = prism_events::testdata::python()?;
    let input: Vec<Value> = cases
        .iter()
        .map(|c| json!({ "dataset": if c.gen4 { "gen4" } else { "gen1" }, "times": c.times }))
        .collect();
    let (cases_path, out_path) = (dir.join("cases.json"), dir.join("out.json"));
    std::fs::write(&cases_path, serde_json::to_vec(&input).ok()?).ok()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rvt_labels.py");
    let out = Command::new(python)
        .arg(script)
        .arg(&cases_path)
        .arg(&out_path)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "rvt_labels.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(&out_path).ok()?).ok()
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default()
}

fn write_case(dir: &Path, case: &Case) -> TestResult {
    let sensor = if case.gen4 {
        SensorSize {
            width: 1280,
            height: 720,
        }
    } else {
        SensorSize {
            width: 304,
            height: 240,
        }
    };
    // A few events every 7 ms across the labels, so every window has its events.
    let last = case.times.last().copied().unwrap_or(0) + 100_000;
    let mut chunk = EventChunk::default();
    let mut t = 0;
    while t <= last {
        chunk.push(t, (t / 7_000 % 200) as u16, 20, (t / 7_000 % 2) as u8);
        t += 7_000;
    }
    let mut w = create(dir.join("c_td.dat"), WriteFormat::Dat, sensor)?;
    w.write_chunk(&chunk)?;
    w.finish()?;
    // One large box per frame: every filter keeps it.
    let boxes: Vec<BoxLabel> = case
        .times
        .iter()
        .map(|&t| BoxLabel {
            t,
            x: 20.0,
            y: 20.0,
            w: 120.0,
            h: 100.0,
            class_id: 0,
            track_id: 1,
            confidence: 1.0,
        })
        .collect();
    write_bbox_npy(dir.join("c_bbox.npy"), &boxes)?;
    Ok(())
}

#[test]
fn prepare_keeps_rvts_frames_and_window_ends() -> TestResult {
    let dir = tempfile::tempdir()?;
    let cases = cases();
    let Some(expected) = reference(&cases, dir.path()) else {
        return Ok(());
    };
    let mut compared = 0;
    for (case, want) in cases.iter().zip(&expected) {
        let case_dir = dir.path().join(case.name.replace([' ', '±'], "_"));
        std::fs::create_dir_all(&case_dir)?;
        write_case(&case_dir, case)?;
        // One bin keeps the 1Mpx histograms small; the windows do not depend on it.
        let opts = if case.gen4 {
            PrepareOptions {
                histogram: HistogramConfig::gen4().with_bins(1),
                ..PrepareOptions::gen4()
            }
        } else {
            PrepareOptions {
                histogram: HistogramConfig::gen1().with_bins(1),
                ..PrepareOptions::gen1()
            }
        };
        let prepared = prepare_recording(
            &case_dir.join("c_td.dat"),
            Some(&case_dir.join("c_bbox.npy")),
            &case.name,
            &opts,
        );
        // Where RVT's code stops (a 1Mpx clock its median puts off 30 / 60 Hz), prism refuses
        // the sequence with a message naming the rate.
        if let Some(error) = want.get("error") {
            let message = prepared.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                message.contains(" Hz (median period"),
                "{}: RVT: {error}; prism: {message:?}",
                case.name
            );
            continue;
        }
        let seq = prepared?;
        assert_eq!(
            seq.meta.window_end_us,
            ints(&want["ends"]),
            "{}: window ends",
            case.name
        );
        let got: Vec<(i64, i64)> = seq
            .labels
            .iter()
            .map(|l| (l.t_us, l.window as i64))
            .collect();
        let want_frames: Vec<(i64, i64)> = ints(&want["frames"])
            .into_iter()
            .zip(ints(&want["frame_to_repr"]))
            .collect();
        assert_eq!(
            got, want_frames,
            "{}: label frames and their windows",
            case.name
        );
        assert_eq!(seq.num_windows(), seq.meta.window_end_us.len());
        compared += 1;
    }
    assert!(
        compared >= 20,
        "only {compared} of {} cases ran in RVT's code",
        cases.len()
    );
    Ok(())
}

/// The case of the issue: the faery `gen4.dat` span (5.9 ms to 10.77 s) with exact 30 Hz labels.
/// RVT keeps 107 label frames, about 10 Hz; every other window is labelled.
#[test]
fn thirty_hz_labels_over_gen4_dat_keep_rvts_107_frames() -> TestResult {
    let times: Vec<i64> = (0..=323)
        .map(|k| (k as f64 * 1e6 / 30.0).round() as i64)
        .collect();
    let timeline = rvt_timeline(&times, LabelClock::Gen4, 50_000)?;
    assert_eq!(timeline.kept.len(), 107);
    let dir = tempfile::tempdir()?;
    let case = Case {
        name: "gen4.dat span".into(),
        gen4: true,
        times,
    };
    if let Some(want) = reference(std::slice::from_ref(&case), dir.path()) {
        assert_eq!(timeline.ends, ints(&want[0]["ends"]));
        let frames: Vec<i64> = timeline.kept.iter().map(|&(f, _)| case.times[f]).collect();
        assert_eq!(frames, ints(&want[0]["frames"]));
    }
    // Label frames about 100 ms apart on 50 ms windows: every other window.
    let windows: Vec<usize> = timeline.kept.iter().map(|&(_, w)| w).collect();
    assert!(windows.windows(2).all(|w| w[1] - w[0] == 2));
    Ok(())
}
