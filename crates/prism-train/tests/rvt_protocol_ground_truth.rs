//! `prism eval` counts the ground truth RVT's protocol counts: on a 1 s 1Mpx clip with 30 Hz
//! pedestrian labels, only the label frames RVT's preprocessing keeps (about 10 Hz), after the
//! first 0.5 s. The reference is RVT's rule transcribed in `prism-data/tests/rvt_labels.py`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::needless_range_loop
)]

use std::path::Path;
use std::process::Command;

use prism_core::yolox::num_anchors;
use prism_data::{prepare_tree, PrepareOptions};
use prism_eval::prophesee::BoxFilter;
use prism_events::repr::HistogramConfig;
use prism_events::write::{create, WriteFormat};
use prism_events::{write_bbox_npy, BoxLabel, EventChunk, SensorSize};
use prism_train::evaluate::{predict_split, score, EvalOptions, RunnerError, SequenceRunner};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A detector that never detects anything (objectness far below every threshold).
struct Blind {
    rows: usize,
    row: usize,
}

impl SequenceRunner for Blind {
    fn reset(&mut self, _batch: usize) -> Result<(), RunnerError> {
        Ok(())
    }

    fn strides(&self) -> Vec<usize> {
        vec![8, 16, 32]
    }

    fn step(
        &mut self,
        _input: &[f32],
        batch: usize,
        _durations_s: &[f32],
    ) -> Result<Vec<f32>, RunnerError> {
        let mut raw = vec![0.0; batch * self.rows * self.row];
        for r in raw.chunks_exact_mut(self.row) {
            r[4] = -30.0;
        }
        Ok(raw)
    }
}

/// RVT's count: kept label frames after 0.5 s, one box each; `None` without the Python env.
fn rvt_count(times: &[i64], dir: &Path) -> Option<i64> {
    let python = prism_events::testdata::python()?;
    let cases = dir.join("cases.json");
    let out = dir.join("out.json");
    std::fs::write(
        &cases,
        serde_json::json!([{ "dataset": "gen4", "times": times }]).to_string(),
    )
    .ok()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../prism-data/tests/rvt_labels.py");
    let status = Command::new(python)
        .arg(script)
        .arg(&cases)
        .arg(&out)
        .status()
        .expect("run python");
    assert!(status.success());
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).ok()?).ok()?;
    v[0]["gt_after_skip"].as_i64()
}

#[test]
fn eval_counts_the_ground_truth_of_rvts_label_frames() -> TestResult {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("in");
    std::fs::create_dir_all(input.join("val"))?;
    // Events every 7 ms for 1 s, and a pedestrian labelled at 30 Hz from 0 to 1 s.
    let mut chunk = EventChunk::default();
    for k in 0..=143 {
        chunk.push(k * 7_000, (k % 600) as u16 + 300, 300, (k % 2) as u8);
    }
    let mut w = create(
        input.join("val/clip_td.dat"),
        WriteFormat::Dat,
        SensorSize {
            width: 1280,
            height: 720,
        },
    )?;
    w.write_chunk(&chunk)?;
    w.finish()?;
    let times: Vec<i64> = (0..=30)
        .map(|k| (k as f64 * 1e6 / 30.0).round() as i64)
        .collect();
    let boxes: Vec<BoxLabel> = times
        .iter()
        .map(|&t| BoxLabel {
            t,
            x: 400.0,
            y: 200.0,
            w: 160.0,
            h: 300.0,
            class_id: 0,
            track_id: 1,
            confidence: 1.0,
        })
        .collect();
    write_bbox_npy(input.join("val/clip_bbox.npy"), &boxes)?;

    let opts = PrepareOptions {
        histogram: HistogramConfig::gen4().with_bins(1),
        ..PrepareOptions::gen4()
    };
    let out = dir.path().join("prepared");
    let report = prepare_tree(&input, &out, &opts, |_| {})?;
    assert_eq!(report.prepared.len(), 1, "{report:?}");
    let split = prism_data::load_split(&out, "val")?;
    let meta = &split.sequences[0].meta;
    let mut blind = Blind {
        rows: num_anchors(meta.input_hw, &[8, 16, 32]),
        row: 5 + meta.classes.len(),
    };
    let preds = predict_split(&mut blind, &split, &EvalOptions::default())?;
    let metrics = score(&preds, &meta.classes, meta.sensor, &BoxFilter::gen4())?;
    let pedestrians = metrics
        .per_class
        .iter()
        .find(|c| c.name == "pedestrian")
        .map_or(0, |c| c.num_gt);
    // RVT keeps the frames at 100, 200, ..., 1000 ms; the protocol scores those after 0.5 s.
    assert_eq!(pedestrians, 5);
    if let Some(want) = rvt_count(&times, dir.path()) {
        assert_eq!(pedestrians as i64, want);
    }
    Ok(())
}
