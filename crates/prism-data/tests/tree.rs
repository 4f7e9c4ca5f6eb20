//! Preparing dataset folders: Gen1 / 1Mpx layout and the synthetic tree, with resume.

mod common;

use std::fs;

use common::{small_scene, TestResult};
use prism_data::{
    load_split, prepare_recording, prepare_synthetic_tree, prepare_tree, prepare_tree_with,
    synthetic_split, LabelFilter, PrepareEvent, PrepareOptions, Shard, TreeOptions,
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

/// Every file under `root`, by relative path, with its bytes.
fn files(
    root: &std::path::Path,
) -> Result<std::collections::BTreeMap<String, Vec<u8>>, Box<dyn std::error::Error>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.strip_prefix(root)?.display().to_string();
                out.insert(name, fs::read(&path)?);
            }
        }
    }
    Ok(out)
}

#[test]
fn jobs_and_shards_write_what_one_run_writes() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let input = tmp.path().join("in");
    for split in ["train", "val"] {
        fs::create_dir_all(input.join(split))?;
    }
    for k in 0..7u64 {
        let split = if k < 5 { "train" } else { "val" };
        let format = if k % 2 == 0 {
            WriteFormat::Dat
        } else {
            WriteFormat::Evt3
        };
        write_scene(
            &small_scene(40 + k),
            input.join(format!("{split}/seq_{k}")),
            format,
        )?;
    }
    let opts = PrepareOptions {
        filter: LabelFilter::none(),
        ..PrepareOptions::synthetic(&small_scene(40))
    };
    let one = tmp.path().join("one");
    let serial = prepare_tree(&input, &one, &opts, |_| {})?;
    assert_eq!(serial.prepared.len(), 7);
    let want = files(&one)?;

    // Three jobs at once: the same files, the report in the same (sorted) order.
    let parallel_dir = tmp.path().join("jobs");
    let mut started = 0;
    let parallel = prepare_tree_with(
        &input,
        &parallel_dir,
        &opts,
        TreeOptions {
            jobs: 3,
            shard: None,
        },
        |e| started += usize::from(matches!(e, PrepareEvent::Start { .. })),
    )?;
    assert_eq!(started, 7);
    assert_eq!(parallel, serial);
    assert!(
        files(&parallel_dir)? == want,
        "three jobs wrote other bytes"
    );

    // Three shards, each its own process's share, into one folder.
    let sharded = tmp.path().join("shards");
    let mut shares = Vec::new();
    for index in 0..3 {
        let shard = Shard { index, count: 3 };
        let report = prepare_tree_with(
            &input,
            &sharded,
            &opts,
            TreeOptions {
                jobs: 2,
                shard: Some(shard),
            },
            |_| {},
        )?;
        shares.push(report.prepared.len());
    }
    assert_eq!(shares, [3, 2, 2]);
    assert!(files(&sharded)? == want, "the shards wrote other bytes");
    // A shard run again resumes: nothing is prepared twice.
    let again = prepare_tree_with(
        &input,
        &sharded,
        &opts,
        TreeOptions {
            jobs: 2,
            shard: Some(Shard::parse("1/3")?),
        },
        |_| {},
    )?;
    assert_eq!((again.prepared.len(), again.resumed.len()), (0, 2));
    Ok(())
}

#[test]
fn shards_are_parsed_strictly() {
    assert_eq!(Shard::parse("2/5").ok(), Some(Shard { index: 2, count: 5 }));
    for bad in ["5/5", "1/0", "-1/3", "1", "a/b", "1/2/3"] {
        assert!(Shard::parse(bad).is_err(), "{bad}");
    }
}
