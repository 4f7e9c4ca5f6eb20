//! Preparing recordings: windows, histograms and label attachment.

mod common;

use std::path::Path;

use common::{small_scene, TestResult};
use prism_data::{prepare_recording, prepare_synthetic, LabelClock, LabelFilter, PrepareOptions};
use prism_events::repr::HistogramConfig;
use prism_events::synth::write_scene;
use prism_events::write::{create, WriteFormat};
use prism_events::{write_bbox_npy, BoxLabel, EventChunk, SensorSize, StackedHistogram};

#[test]
fn recording_and_in_memory_synthetic_scene_agree() -> TestResult {
    let dir = tempfile::tempdir()?;
    let scene = small_scene(7);
    let opts = PrepareOptions::synthetic(&scene);
    for format in [WriteFormat::Dat, WriteFormat::Evt3] {
        let files = write_scene(&scene, dir.path().join(format!("{format:?}")), format)?;
        let from_file =
            prepare_recording(&files.events_path, Some(&files.labels_path), "s", &opts)?;
        let in_memory = prepare_synthetic(&scene, "s", &opts)?;
        assert_eq!(from_file.meta, in_memory.meta, "{format:?}");
        assert_eq!(from_file.labels, in_memory.labels, "{format:?}");
        assert!(
            from_file.histograms() == in_memory.histograms(),
            "{format:?}: histograms differ"
        );
        // 0.7 s of labels at 20 Hz, every frame kept from 100 ms: windows end at 100, 150, ... ms.
        assert_eq!(from_file.meta.window_end_us.first(), Some(&100_000));
        assert!(from_file.meta.stats.events as usize > 1000);
        assert!(!from_file.labels.is_empty());
        assert_eq!(from_file.meta.input_hw, [64, 64]);
        assert_eq!(from_file.meta.content_hw, [48, 64]);
    }
    Ok(())
}

fn write_dat(path: &Path, sensor: SensorSize, events: &[(i64, u16, u16, u8)]) -> TestResult {
    let mut chunk = EventChunk::default();
    for &(t, x, y, p) in events {
        chunk.push(t, x, y, p);
    }
    let mut w = create(path, WriteFormat::Dat, sensor)?;
    w.write_chunk(&chunk)?;
    w.finish()?;
    Ok(())
}

fn label(t: i64, x: f32, class_id: u32) -> BoxLabel {
    BoxLabel {
        t,
        x,
        y: 1.0,
        w: 2.0,
        h: 2.0,
        class_id,
        track_id: 0,
        confidence: 1.0,
    }
}

/// Events every 10 ms from 0 to 400 ms on an 8x4 sensor; pixel and polarity vary with time.
fn hand_events() -> Vec<(i64, u16, u16, u8)> {
    (0..=40)
        .map(|k| (k * 10_000, (k % 8) as u16, (k % 4) as u16, (k % 2) as u8))
        .collect()
}

#[test]
fn windows_and_labels_on_hand_made_events() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (events_path, labels_path) = (dir.path().join("h_td.dat"), dir.path().join("h_bbox.npy"));
    let events = hand_events();
    write_dat(
        &events_path,
        SensorSize {
            width: 8,
            height: 4,
        },
        &events,
    )?;
    let labels = [
        label(20_000, 0.0, 0),  // before 100 ms: not a frame RVT keeps
        label(40_000, 1.0, 0),  // same
        label(130_000, 2.0, 0), // the first frame at or after 100 ms
        label(130_000, 3.0, 1), // same frame, second box
        label(250_000, 4.0, 0), // 120 ms later: not on the 250 ms beat of the Gen1 clock
        label(379_000, 5.0, 1), // 249 ms after 130 ms: on the beat within 2 ms
        label(500_000, 0.0, 0), // 121 ms later: off the beat
    ];
    write_bbox_npy(&labels_path, &labels)?;
    let opts = PrepareOptions {
        histogram: HistogramConfig::rvt(8, 4),
        window_us: 50_000,
        filter: LabelFilter::none(),
        classes: vec!["a".into(), "b".into()],
        label_clock: LabelClock::Gen1,
    };
    let seq = prepare_recording(&events_path, Some(&labels_path), "hand", &opts)?;
    // RVT: 50 ms steps back from 130 ms without the end in (0, 50 ms]; two windows per 250 ms
    // base delta up to the last kept frame (linspace 130 -> 379 ms, 3 points).
    let ends = vec![80_000, 130_000, 254_500, 379_000];
    assert_eq!(seq.meta.window_end_us, ends);
    assert_eq!(seq.num_windows(), 4);

    // Each window's histogram is the histogram of the events in [end - 50 ms, end].
    let mut hist = StackedHistogram::new(opts.histogram)?;
    for (i, &end) in ends.iter().enumerate() {
        let mut chunk = EventChunk::default();
        for &(t, x, y, p) in events
            .iter()
            .filter(|e| (end - 50_000..=end).contains(&e.0))
        {
            chunk.push(t, x, y, p);
        }
        assert_eq!(seq.window(i), hist.build(chunk.as_slice())?, "window {i}");
        // Both ends inclusive: 6 events on the 10 ms grid, 5 in windows ending off it.
        assert_eq!(chunk.len(), if i < 2 { 6 } else { 5 }, "window {i}");
    }

    let got: Vec<(usize, i64, Vec<f32>)> = seq
        .labels
        .iter()
        .map(|l| (l.window, l.t_us, l.boxes.iter().map(|b| b.x).collect()))
        .collect();
    assert_eq!(
        got,
        vec![(1, 130_000, vec![2.0, 3.0]), (3, 379_000, vec![5.0])]
    );
    assert_eq!(seq.labels_at(1).map(|l| l.boxes.len()), Some(2));
    assert!(seq.labels_at(2).is_none());
    assert_eq!(seq.meta.stats.label_frames, 6);
    assert_eq!(seq.meta.stats.labeled_windows, 2);
    Ok(())
}

#[test]
fn classes_filter_and_downsample_scale_boxes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (events_path, labels_path) = (dir.path().join("d_td.dat"), dir.path().join("d_bbox.npy"));
    write_dat(
        &events_path,
        SensorSize {
            width: 8,
            height: 4,
        },
        &hand_events(),
    )?;
    let mut boxes = vec![
        BoxLabel {
            t: 130_000,
            x: 2.0,
            y: 1.0,
            w: 4.0,
            h: 2.0,
            class_id: 1,
            track_id: 0,
            confidence: 1.0,
        },
        BoxLabel {
            t: 130_000,
            x: 0.0,
            y: 0.0,
            w: 4.0,
            h: 2.0,
            class_id: 2,
            track_id: 0,
            confidence: 1.0,
        },
        // Cropped to the field of view (x + w clipped to W - 1 = 7).
        BoxLabel {
            t: 180_000,
            x: 5.0,
            y: 1.0,
            w: 10.0,
            h: 2.0,
            class_id: 0,
            track_id: 0,
            confidence: 1.0,
        },
    ];
    // A frame whose only box is of an unknown class disappears entirely.
    boxes.push(BoxLabel {
        t: 230_000,
        class_id: 9,
        ..boxes[0]
    });
    write_bbox_npy(&labels_path, &boxes)?;
    let opts = PrepareOptions {
        histogram: HistogramConfig::rvt(8, 4)
            .with_downsample(true)
            .with_padding(4),
        window_us: 50_000,
        filter: LabelFilter::none(),
        classes: vec!["a".into(), "b".into()],
        label_clock: LabelClock::EveryFrame,
    };
    let seq = prepare_recording(&events_path, Some(&labels_path), "d", &opts)?;
    assert_eq!(seq.meta.input_hw, [4, 4]);
    assert_eq!(seq.meta.content_hw, [2, 4]);
    assert!(seq.meta.downsample);
    type Frame = (usize, Vec<(u32, f32, f32, f32, f32)>);
    let got: Vec<Frame> = seq
        .labels
        .iter()
        .map(|l| {
            (
                l.window,
                l.boxes
                    .iter()
                    .map(|b| (b.class_id, b.x, b.y, b.w, b.h))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (1, vec![(1, 1.0, 0.5, 2.0, 1.0)]),
            (2, vec![(0, 2.5, 0.5, 1.0, 1.0)])
        ]
    );
    assert_eq!(
        (seq.meta.stats.boxes_read, seq.meta.stats.boxes_kept),
        (4, 2)
    );
    Ok(())
}

#[test]
fn sensor_mismatch_and_bad_options_are_errors() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("m_td.dat");
    write_dat(
        &path,
        SensorSize {
            width: 8,
            height: 4,
        },
        &hand_events(),
    )?;
    let mut opts = PrepareOptions {
        histogram: HistogramConfig::rvt(16, 4),
        window_us: 50_000,
        filter: LabelFilter::none(),
        classes: vec!["a".into()],
        label_clock: LabelClock::EveryFrame,
    };
    assert!(prepare_recording(&path, None, "m", &opts).is_err());
    opts.histogram = HistogramConfig::rvt(8, 4);
    opts.window_us = 0;
    assert!(prepare_recording(&path, None, "m", &opts).is_err());
    let scene = small_scene(1);
    let wrong = PrepareOptions::gen1();
    assert!(prepare_synthetic(&scene, "s", &wrong).is_err());
    Ok(())
}

#[test]
fn without_labels_the_grid_is_anchored_at_zero() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("n_td.dat");
    write_dat(
        &path,
        SensorSize {
            width: 8,
            height: 4,
        },
        &hand_events(),
    )?;
    let opts = PrepareOptions {
        histogram: HistogramConfig::rvt(8, 4),
        window_us: 50_000,
        filter: LabelFilter::none(),
        classes: vec!["a".into()],
        label_clock: LabelClock::EveryFrame,
    };
    let seq = prepare_recording(&path, None, "n", &opts)?;
    let ends: Vec<i64> = (0..8).map(|k| 100_000 + 50_000 * k).collect();
    assert_eq!(seq.meta.window_end_us, ends);
    assert!(seq.labels.is_empty());
    Ok(())
}

/// The faery `gen4.dat` recording (1280x720, 1,218,618 events, 5,856 to 10,773,853 µs, no
/// labels) through the 1Mpx pipeline (halved, padded to 384x640; one bin to keep memory small).
#[test]
fn real_gen4_recording() -> TestResult {
    let Some(path) = prism_events::testdata::faery("gen4.dat") else {
        return Ok(());
    };
    let opts = PrepareOptions {
        histogram: HistogramConfig::gen4().with_bins(1),
        ..PrepareOptions::gen4()
    };
    let seq = prepare_recording(&path, None, "gen4", &opts)?;
    assert_eq!(seq.meta.input_hw, [384, 640]);
    assert_eq!(seq.meta.content_hw, [360, 640]);
    assert_eq!(seq.meta.channels, 2);
    assert_eq!(seq.meta.stats.events, 1_218_618);
    // Ends from 100 ms (the first window starting after 5,856 µs) to 10.8 s (the last starting
    // at or before 10,773,853 µs).
    assert_eq!(seq.num_windows(), 215);
    assert_eq!(seq.meta.window_end_us.first(), Some(&100_000));
    assert_eq!(seq.meta.window_end_us.last(), Some(&10_800_000));
    assert_eq!(seq.histograms().len(), 215 * 2 * 384 * 640);
    // Padding rows stay empty; the content is not.
    let w = seq.window(100);
    let plane = 384 * 640;
    assert!(w[360 * 640..plane].iter().all(|&v| v == 0));
    assert!(w[..360 * 640].iter().any(|&v| v > 0));
    assert!(w.iter().all(|&v| v <= 10));
    Ok(())
}
