//! Preparing dataset folders: Gen1 / 1Mpx layout and the synthetic tree, with resume.

mod common;

use std::fs;

use common::{small_scene, TestResult};
use prism_data::{
    load_split, prepare_recording, prepare_synthetic_tree, prepare_tree, synthetic_split,
    LabelFilter, PrepareEvent, PrepareOptions,
};
use prism_events::synth::write_scene;
use prism_events::write::WriteFormat;
use prism_events::{write_bbox_npy, BoxLabel};

#[test]
fn dataset_tree_with_resume_and_skips() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (input, output) = (tmp.path().join("in"), tmp.path().join("out"));
    for split in ["train", "val"] {
        fs::create_dir_all(input.join(split))?;
    }
    let scene = small_scene(11);
    let a = write_scene(&scene, input.join("train/seq_a"), WriteFormat::Dat)?;
    let b = write_scene(
        &small_scene(12),
        input.join("train/seq_b"),
        WriteFormat::Dat,
    )?;
    fs::remove_file(&b.labels_path)?; // no label file
    write_scene(&small_scene(13), input.join("val/seq_c"), WriteFormat::Evt3)?;
    let d = write_scene(&small_scene(14), input.join("val/seq_d"), WriteFormat::Dat)?;
    // Labels that the filter removes entirely.
    let tiny = BoxLabel {
        t: 150_000,
        x: 1.0,
        y: 1.0,
        w: 1.0,
        h: 1.0,
        class_id: 0,
        track_id: 0,
        confidence: 1.0,
    };
    write_bbox_npy(&d.labels_path, &[tiny])?;
    fs::write(
        input.join("val/seq_e_td.dat"),
        b"% Width 64\n% Height 48\n\x00\x08garbage",
    )?;
    fs::write(input.join("val/seq_e_bbox.npy"), fs::read(&a.labels_path)?)?;

    let opts = PrepareOptions {
        filter: LabelFilter::gen4(),
        ..PrepareOptions::synthetic(&scene)
    };
    let mut started = Vec::new();
    let report = prepare_tree(&input, &output, &opts, |e| {
        if let PrepareEvent::Start { name, .. } = e {
            started.push(name.to_string());
        }
    })?;
    let names =
        |v: &[prism_data::ReportEntry]| v.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&report.prepared), ["seq_a", "seq_c"]);
    assert_eq!(names(&report.no_labels), ["seq_b", "seq_d"]);
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    assert_eq!(report.failed[0].0.name, "seq_e");
    assert_eq!(started, ["seq_a", "seq_c", "seq_d", "seq_e"]);

    // Resume: nothing is prepared twice.
    let again = prepare_tree(&input, &output, &opts, |_| {})?;
    assert!(again.prepared.is_empty());
    assert_eq!(names(&again.resumed), ["seq_a", "seq_c"]);

    let train = load_split(&output, "train")?;
    assert_eq!(train.sequences.len(), 1);
    let direct = prepare_recording(&a.events_path, Some(&a.labels_path), "seq_a", &opts)?;
    assert_eq!(train.sequences[0], direct);
    assert_eq!(load_split(&output, "val")?.sequences.len(), 1);
    Ok(())
}

#[test]
fn synthetic_tree_matches_synthetic_split_and_resumes() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let base = small_scene(100);
    let opts = PrepareOptions::synthetic(&base);
    let report = prepare_synthetic_tree(tmp.path(), &base, 2, 1, &opts)?;
    assert_eq!(report.prepared.len(), 3);
    let again = prepare_synthetic_tree(tmp.path(), &base, 3, 1, &opts)?;
    assert_eq!((again.resumed.len(), again.prepared.len()), (3, 1));

    let train = load_split(tmp.path(), "train")?;
    let names: Vec<&str> = train
        .sequences
        .iter()
        .map(|s| s.meta.name.as_str())
        .collect();
    assert_eq!(names, ["seed_100", "seed_101", "seed_102"]);
    let in_memory = synthetic_split(&base, 3, 100, base.duration_us, &opts)?;
    assert_eq!(train, in_memory);
    let val = load_split(tmp.path(), "val")?;
    assert_eq!(val.sequences.len(), 1);
    assert_eq!(
        val.sequences[0].meta.name,
        format!("seed_{}", 100 + (1u64 << 32))
    );
    Ok(())
}
