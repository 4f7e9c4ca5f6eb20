//! Saving and loading prepared sequences: round trip, atomic replace, damaged files.

mod common;

use std::fs;
use std::path::Path;

use common::{fake_sequence, small_scene, TestResult};
use prism_data::{load_split, prepare_synthetic, DataError, PrepareOptions, PreparedSequence};
use proptest::prelude::*;

#[test]
fn save_load_round_trip() -> TestResult {
    let dir = tempfile::tempdir()?;
    let scene = small_scene(3);
    let seq = prepare_synthetic(&scene, "scene", &PrepareOptions::synthetic(&scene))?;
    let path = dir.path().join("split/scene");
    seq.save(&path)?;
    let loaded = PreparedSequence::load(&path)?;
    assert_eq!(loaded, seq);
    // Loaded windows stay compressed in memory and decode to the same bytes.
    assert!(loaded.is_compressed() && !seq.is_compressed());
    assert!(
        loaded.histogram_bytes() * 4 < seq.histogram_bytes(),
        "{} vs {}",
        loaded.histogram_bytes(),
        seq.histogram_bytes()
    );
    for i in 0..seq.num_windows() {
        assert_eq!(loaded.window(i), seq.window(i), "window {i}");
    }
    assert!(loaded.get_window(seq.num_windows()).is_none());
    // Saving a compressed sequence writes the same file again.
    let again = dir.path().join("again/scene");
    loaded.save(&again)?;
    assert_eq!(
        fs::read(again.join("histograms.bin"))?,
        fs::read(path.join("histograms.bin"))?
    );
    // The histogram file is much smaller than the raw tensor.
    let stored = fs::metadata(path.join("histograms.bin"))?.len() as usize;
    assert!(
        stored * 4 < seq.histograms().len(),
        "{stored} vs {}",
        seq.histograms().len()
    );

    // Saving again replaces the folder and leaves no temporary folder behind.
    let other = fake_sequence("scene", 3, &[1])?;
    other.save(&path)?;
    assert_eq!(PreparedSequence::load(&path)?, other);
    let names: Vec<String> = fs::read_dir(dir.path().join("split"))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    assert_eq!(names, vec!["scene".to_string()]);
    Ok(())
}

#[test]
fn load_split_sorts_and_skips_hidden_folders() -> TestResult {
    let dir = tempfile::tempdir()?;
    for name in ["b", "a", "c"] {
        fake_sequence(name, 4, &[3])?.save(&dir.path().join("train").join(name))?;
    }
    fs::create_dir_all(dir.path().join("train/.c.tmp-1-0"))?;
    let split = load_split(dir.path(), "train")?;
    let names: Vec<&str> = split
        .sequences
        .iter()
        .map(|s| s.meta.name.as_str())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(load_split(dir.path(), "val").is_err());
    // A folder that is not a sequence is an error, not silently skipped.
    fs::create_dir_all(dir.path().join("train/junk"))?;
    assert!(load_split(dir.path(), "train").is_err());
    Ok(())
}

fn saved(dir: &Path) -> Result<PreparedSequence, DataError> {
    let seq = fake_sequence("s", 5, &[0, 4])?;
    seq.save(dir)?;
    Ok(seq)
}

#[test]
fn damaged_files_are_errors() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("s");
    saved(&dir)?;
    let hist = fs::read(dir.join("histograms.bin"))?;

    fs::write(dir.join("histograms.bin"), &hist[..hist.len() - 3])?;
    let err = PreparedSequence::load(&dir);
    assert!(matches!(err, Err(DataError::Corrupt { .. })), "{err:?}");

    saved(&dir)?;
    fs::write(dir.join("meta.json"), b"{ not json")?;
    assert!(matches!(
        PreparedSequence::load(&dir),
        Err(DataError::Json { .. })
    ));

    saved(&dir)?;
    fs::write(
        dir.join("labels.json"),
        br#"[{"window": 9, "t_us": 0, "boxes": []}]"#,
    )?;
    assert!(matches!(
        PreparedSequence::load(&dir),
        Err(DataError::Corrupt { .. })
    ));

    // meta.json promising more windows than the histogram file holds.
    saved(&dir)?;
    let meta = fs::read_to_string(dir.join("meta.json"))?;
    let mut value: serde_json::Value = serde_json::from_str(&meta)?;
    value["window_end_us"] = serde_json::json!([1, 2, 3, 4, 5, 6]);
    fs::write(dir.join("meta.json"), serde_json::to_vec(&value)?)?;
    assert!(matches!(
        PreparedSequence::load(&dir),
        Err(DataError::Corrupt { .. })
    ));

    saved(&dir)?;
    fs::remove_file(dir.join("labels.json"))?;
    assert!(matches!(
        PreparedSequence::load(&dir),
        Err(DataError::Io { .. })
    ));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any bytes in any one file: an error or a valid sequence, never a panic.
    #[test]
    fn load_never_panics_on_arbitrary_files(
        which in 0usize..3,
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let tmp = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let dir = tmp.path().join("s");
        saved(&dir).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let file = ["meta.json", "labels.json", "histograms.bin"][which];
        fs::write(dir.join(file), &bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let _ = PreparedSequence::load(&dir);
    }

    /// A valid file cut short or with one byte changed: never a panic; a damaged histogram file
    /// is always detected.
    #[test]
    fn load_never_panics_on_damaged_files(
        which in 0usize..3,
        at in any::<prop::sample::Index>(),
        cut in any::<bool>(),
        xor in 1u8..=255,
    ) {
        let tmp = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let dir = tmp.path().join("s");
        let original = saved(&dir).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let file = ["meta.json", "labels.json", "histograms.bin"][which];
        let mut bytes = fs::read(dir.join(file)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let i = at.index(bytes.len());
        if cut { bytes.truncate(i) } else { bytes[i] ^= xor }
        fs::write(dir.join(file), &bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let loaded = PreparedSequence::load(&dir);
        if which == 2 {
            prop_assert!(loaded.is_err());
        } else if let Ok(seq) = loaded {
            // A JSON edit may still parse (a changed digit); the sequence is then self-consistent.
            prop_assert_eq!(seq.histograms().len(), original.histograms().len());
        }
    }
}
