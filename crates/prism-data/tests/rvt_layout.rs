//! RVT's preprocessed layout read directly, against `prism data prepare` on the same recordings.
//!
//! `tests/fixtures/rvt-preprocessed/` was written by RVT's own `scripts/genx/preprocess_dataset.py`
//! (uzh-rpg/RVT @ b80f568, stacked_hist / const_duration / filter_gen1|gen4 configs) from the
//! synthetic scenes `scenes.json` lists, arranged as Gen1- and 1Mpx-style splits; `cargo xtask
//! rvt-fixture --rvt <RVT checkout>` writes it again (see its README). RVT's code is run there,
//! not committed. Here the same scenes are generated again (same seed, same events) and prepared
//! by prism; every window, window end and label must equal what RVT's files hold.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::TestResult;
use prism_data::rvt_layout::{is_rvt_sequence, load_rvt_sequence, DEFAULT_REPRESENTATION};
use prism_data::{load_split, prepare_recording, LabelFilter, PrepareOptions, PreparedSequence};
use prism_events::synth::{write_scene, SceneConfig};
use prism_events::write::WriteFormat;
use serde::Deserialize;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rvt-preprocessed")
}

#[derive(Debug, Deserialize)]
struct Scene {
    dataset: String,
    split: String,
    name: String,
    width: u16,
    height: u16,
    duration_s: f64,
    objects: usize,
    label_hz: f64,
    seed: u64,
}

impl Scene {
    /// What `prism data synth` makes of the same arguments.
    fn config(&self) -> SceneConfig {
        SceneConfig {
            width: self.width,
            height: self.height,
            duration_us: (self.duration_s * 1e6).round() as i64,
            num_objects: self.objects,
            label_hz: self.label_hz,
            seed: self.seed,
            ..SceneConfig::default()
        }
    }

    fn options(&self) -> PrepareOptions {
        let mut opts = match self.dataset.as_str() {
            "gen1" => PrepareOptions::gen1(),
            "gen4" => PrepareOptions::gen4(),
            other => panic!("unknown dataset {other}"),
        };
        opts.filter = opts.filter.for_split(&self.split);
        opts
    }

    fn rvt_dir(&self) -> PathBuf {
        fixture()
            .join(&self.dataset)
            .join(&self.split)
            .join(&self.name)
    }
}

fn scenes() -> Vec<Scene> {
    let text = fs::read_to_string(fixture().join("scenes.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// prism's preparation of one scene's recording.
fn prepare_with_prism(
    scene: &Scene,
    dir: &Path,
) -> Result<PreparedSequence, Box<dyn std::error::Error>> {
    let files = write_scene(&scene.config(), dir.join(&scene.name), WriteFormat::Dat)?;
    Ok(prepare_recording(
        &files.events_path,
        Some(&files.labels_path),
        &scene.name,
        &scene.options(),
    )?)
}

/// Window ends, labels and every histogram equal; the first difference is reported.
fn assert_same_data(ours: &PreparedSequence, rvt: &PreparedSequence, what: &str) {
    assert_eq!(
        ours.meta.window_end_us, rvt.meta.window_end_us,
        "{what}: window ends"
    );
    assert_eq!(ours.meta.input_hw, rvt.meta.input_hw, "{what}: input size");
    assert_eq!(
        ours.meta.content_hw, rvt.meta.content_hw,
        "{what}: content size"
    );
    assert_eq!(ours.meta.channels, rvt.meta.channels, "{what}: channels");
    assert_eq!(ours.meta.sensor, rvt.meta.sensor, "{what}: sensor");
    assert_eq!(ours.meta.downsample, rvt.meta.downsample, "{what}: halving");
    assert_eq!(ours.meta.classes, rvt.meta.classes, "{what}: classes");
    assert_eq!(ours.meta.filter, rvt.meta.filter, "{what}: filter");
    assert_eq!(
        ours.labels.len(),
        rvt.labels.len(),
        "{what}: labeled windows"
    );
    for (a, b) in ours.labels.iter().zip(&rvt.labels) {
        assert_eq!(a, b, "{what}: labels of window {}", a.window);
    }
    assert_eq!(ours.num_windows(), rvt.num_windows(), "{what}: windows");
    for i in 0..ours.num_windows() {
        let (a, b) = (ours.get_window(i).unwrap(), rvt.get_window(i).unwrap());
        if a != b {
            let first = a.iter().zip(b.iter()).position(|(x, y)| x != y).unwrap();
            panic!(
                "{what}: window {i} differs first at cell {first}: prism {}, RVT {}",
                a[first], b[first]
            );
        }
    }
}

#[test]
fn rvt_preprocessed_sequences_equal_prism_preparation() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let scenes = scenes();
    assert_eq!(scenes.len(), 3);
    for scene in &scenes {
        let what = format!("{}/{}/{}", scene.dataset, scene.split, scene.name);
        assert!(is_rvt_sequence(&scene.rvt_dir()), "{what}");
        let rvt = load_rvt_sequence(&scene.rvt_dir(), None, &scene.split)?;
        let ours = prepare_with_prism(scene, tmp.path())?;
        assert!(
            ours.num_windows() > 10,
            "{what}: {} windows",
            ours.num_windows()
        );
        assert!(
            ours.labels.len() > 5,
            "{what}: {} label frames",
            ours.labels.len()
        );
        // Something happens in the windows (the scenes are not empty).
        assert!((0..ours.num_windows()).any(|i| ours
            .get_window(i)
            .unwrap()
            .iter()
            .any(|&v| v > 0)));
        assert_same_data(&ours, &rvt, &what);
        assert_eq!(rvt.meta.name, scene.name);
        assert_eq!(rvt.meta.window_us, 50_000);
        assert_eq!(rvt.meta.bins, 10);
        assert!(rvt.is_compressed());
    }
    Ok(())
}

#[test]
fn one_mpx_boxes_are_halved_like_the_windows() -> TestResult {
    let dir = fixture().join("gen4/train/seq_c");
    let seq = load_rvt_sequence(&dir, Some(DEFAULT_REPRESENTATION), "train")?;
    assert!(seq.meta.downsample);
    assert_eq!(seq.meta.sensor, [1280, 720]);
    assert_eq!(seq.meta.content_hw, [360, 640]);
    assert_eq!(seq.meta.input_hw, [384, 640]);
    assert_eq!(seq.meta.classes, PrepareOptions::gen4().classes);
    assert_eq!(seq.meta.filter, LabelFilter::gen4().for_split("train"));
    let right_edge = seq
        .labels
        .iter()
        .flat_map(|l| l.boxes.iter().map(|b| b.x + b.w))
        .fold(0.0f32, f32::max);
    assert!(right_edge <= 640.0 && right_edge > 320.0, "{right_edge}");
    Ok(())
}

#[test]
fn load_split_reads_rvt_folders() -> TestResult {
    let split = load_split(&fixture().join("gen1"), "train")?;
    assert_eq!(split.sequences.len(), 1);
    assert_eq!(split.sequences[0].meta.name, "seq_a");
    Ok(())
}

/// Copies the Gen1 training sequence into `dir` for a damage test.
fn copy_sequence(dir: &Path) -> PathBuf {
    let src = fixture().join("gen1/train/seq_a");
    let dst = dir.join("seq_a");
    copy_tree(&src, &dst);
    dst
}

fn copy_tree(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for entry in fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &to);
        } else {
            fs::copy(entry.path(), to).unwrap();
        }
    }
}

fn repr(seq: &Path) -> PathBuf {
    seq.join("event_representations_v2")
        .join(DEFAULT_REPRESENTATION)
}

#[test]
fn damaged_folders_are_clear_errors() -> TestResult {
    type Damage = (&'static str, fn(&Path), &'static str);
    let cases: Vec<Damage> = vec![
        (
            "truncated histograms",
            |s| {
                let p = repr(s).join("event_representations.h5");
                let bytes = fs::read(&p).unwrap();
                fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
            },
            "event_representations.h5",
        ),
        (
            "garbled histograms",
            |s| {
                let p = repr(s).join("event_representations.h5");
                let mut bytes = fs::read(&p).unwrap();
                let n = bytes.len();
                for b in &mut bytes[n - 20_000..n - 10_000] {
                    *b ^= 0x5a;
                }
                fs::write(&p, &bytes).unwrap();
            },
            "event_representations.h5",
        ),
        (
            "no histogram file",
            |s| fs::remove_file(repr(s).join("event_representations.h5")).unwrap(),
            "no event_representations.h5",
        ),
        (
            "window ends missing one",
            |s| {
                let p = repr(s).join("timestamps_us.npy");
                let bytes = fs::read(&p).unwrap();
                let mut ends = prism_events::labels::parse_int_npy(&bytes).unwrap();
                ends.pop();
                write_i64_npy(&p, &ends);
            },
            "window ends for",
        ),
        (
            "a frame pointing at the wrong window",
            |s| {
                let p = repr(s).join("objframe_idx_2_repr_idx.npy");
                let bytes = fs::read(&p).unwrap();
                let mut idx = prism_events::labels::parse_int_npy(&bytes).unwrap();
                idx[1] += 1;
                write_i64_npy(&p, &idx);
            },
            "does not end then",
        ),
        (
            "labels.npz not a zip",
            |s| fs::write(s.join("labels_v2/labels.npz"), b"PK\x03\x04 not really").unwrap(),
            "not a .npz archive",
        ),
        (
            "frame times that are not the boxes' times",
            |s| {
                let p = s.join("labels_v2/timestamps_us.npy");
                let bytes = fs::read(&p).unwrap();
                let mut t = prism_events::labels::parse_int_npy(&bytes).unwrap();
                t[0] += 1;
                write_i64_npy(&p, &t);
            },
            "holds a box at",
        ),
        (
            "a count-based representation",
            |s| {
                let from = repr(s);
                fs::rename(
                    &from,
                    from.with_file_name("stacked_histogram_ne=5000_nbins=10"),
                )
                .unwrap();
            },
            "is not a stacked histogram with a fixed window",
        ),
        (
            "two representations, neither the default",
            |s| {
                let from = repr(s);
                copy_tree(
                    &from,
                    &from.with_file_name("stacked_histogram_dt=20_nbins=10"),
                );
                fs::rename(
                    &from,
                    from.with_file_name("stacked_histogram_dt=100_nbins=10"),
                )
                .unwrap();
            },
            "several representations",
        ),
        (
            "bins that do not match the channels",
            |s| {
                let from = repr(s);
                fs::rename(
                    &from,
                    from.with_file_name("stacked_histogram_dt=50_nbins=5"),
                )
                .unwrap();
            },
            "channels",
        ),
    ];
    for (name, damage, expected) in cases {
        let tmp = tempfile::tempdir()?;
        let seq = copy_sequence(tmp.path());
        damage(&seq);
        let err = match load_rvt_sequence(&seq, None, "train") {
            Ok(_) => panic!("{name}: read without an error"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(expected), "{name}: {err}");
    }
    Ok(())
}

fn write_i64_npy(path: &Path, values: &[i64]) {
    let mut header = format!(
        "{{'descr': '<i8', 'fortran_order': False, 'shape': ({},), }}",
        values.len()
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    fs::write(path, out).unwrap();
}

/// Inputs the `rvt_histograms` fuzz target found: a chunk layout declaring a 10 TB chunk
/// (rust-hdf5 0.7.9 allocates it before decoding: the process aborted) and a 1.7 kB file whose
/// shape asked for billions of cells (minutes of work). Both are refused at once.
#[test]
fn fuzzing_finds_are_refused() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    for (file, expected) in [
        ("rvt-histograms-huge-chunk.h5", "data has chunks of"),
        (
            "rvt-histograms-bomb.h5",
            "more than a 1752-byte file can hold",
        ),
    ] {
        let started = std::time::Instant::now();
        let err = prism_data::rvt_layout::read_histogram_file(&dir.join(file), 32)
            .expect_err(file)
            .to_string();
        assert!(
            err.contains(expected) && err.contains(file),
            "{file}: {err}"
        );
        assert!(
            started.elapsed().as_secs() < 10,
            "{file}: {:?}",
            started.elapsed()
        );
    }
    // The fixture's files read, at their real ratio.
    let ok = prism_data::rvt_layout::read_histogram_file(
        &fixture()
            .join("gen4/train/seq_c")
            .join("event_representations_v2")
            .join(DEFAULT_REPRESENTATION)
            .join("event_representations_ds2_nearest.h5"),
        32,
    )
    .unwrap();
    assert_eq!(ok.shape[1..], [20, 360, 640]);
}
