//! Helpers shared by the integration tests.
#![allow(dead_code)]

use prism_data::{
    DataError, LabelFilter, LabeledBox, PreparedSequence, SequenceMeta, SequenceStats, WindowLabels,
};
use prism_events::synth::SceneConfig;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A small, short synthetic scene (fast to generate in tests).
pub fn small_scene(seed: u64) -> SceneConfig {
    SceneConfig {
        width: 64,
        height: 48,
        duration_us: 700_000,
        num_objects: 3,
        seed,
        ..SceneConfig::default()
    }
}

/// A hand-made sequence of `[2, 4, 6]` windows; window `i` holds the value `i % 11` at cell `i`
/// (mod size) and labels at the windows of `labeled`.
pub fn fake_sequence(
    name: &str,
    windows: usize,
    labeled: &[usize],
) -> Result<PreparedSequence, DataError> {
    let (c, h, w) = (2, 4, 6);
    let n = c * h * w;
    let mut hist = vec![0u8; windows * n];
    for i in 0..windows {
        hist[i * n + i % n] = 1 + (i % 10) as u8;
    }
    let meta = SequenceMeta {
        name: name.to_string(),
        sensor: [w as u32, h as u32],
        input_hw: [h, w],
        channels: c,
        window_us: 50_000,
        downsample: false,
        classes: vec!["car".into(), "pedestrian".into()],
        window_end_us: (0..windows as i64).map(|i| 100_000 + 50_000 * i).collect(),
        content_hw: [h, w],
        bins: 1,
        count_cutoff: 10,
        filter: LabelFilter::none(),
        stats: SequenceStats::default(),
    };
    let labels = labeled
        .iter()
        .map(|&window| WindowLabels {
            window,
            t_us: meta.window_end_us[window],
            boxes: vec![LabeledBox {
                class_id: (window % 2) as u32,
                x: 1.0,
                y: 1.0,
                w: 3.0,
                h: 2.0,
            }],
        })
        .collect();
    PreparedSequence::new(meta, labels, hist)
}
