//! Prepared sequences on disk: one folder per sequence, written atomically.
//!
//! ```text
//! <dir>/meta.json        SequenceMeta plus {"format": "prism-prepared-sequence", "version": 1}
//! <dir>/labels.json      [WindowLabels], sorted by window
//! <dir>/histograms.bin   every window's u8 [C, H, W] tensor, compressed ([`crate::codec`])
//! ```
//!
//! [`save`] writes into a hidden temporary folder beside `<dir>` and renames it into place, so a
//! folder named `<dir>` is always complete (an interrupted run leaves only a `.<name>.tmp-*`
//! folder, which [`load_split`] ignores). [`load`] checks every size against `meta.json` and
//! reports damage as [`DataError::Corrupt`], never a panic.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::codec::EncodedHistograms;
use crate::error::{DataError, Result};
use crate::prepared::{PreparedSequence, PreparedSplit, SequenceMeta, WindowLabels};
use crate::rvt_layout;

pub const META_FILE: &str = "meta.json";
pub const LABELS_FILE: &str = "labels.json";
pub const HISTOGRAMS_FILE: &str = "histograms.bin";
const FORMAT: &str = "prism-prepared-sequence";
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct MetaFile {
    format: String,
    version: u32,
    #[serde(flatten)]
    meta: SequenceMeta,
}

/// Writes `seq` to `dir` (replacing what is there) atomically.
pub fn save(seq: &PreparedSequence, dir: &Path) -> Result<()> {
    match seq.encoded() {
        Some(encoded) => save_encoded(&seq.meta, &seq.labels, encoded, dir),
        None => {
            let encoded = EncodedHistograms::from_dense(&seq.histograms(), seq.window_len())?;
            save_encoded(&seq.meta, &seq.labels, &encoded, dir)
        }
    }
}

/// Writes already-encoded windows (the streaming path of [`crate::tree`]).
pub(crate) fn save_encoded(
    meta: &SequenceMeta,
    labels: &[WindowLabels],
    histograms: &EncodedHistograms,
    dir: &Path,
) -> Result<()> {
    let meta_json = serde_json::to_vec_pretty(&MetaFile {
        format: FORMAT.into(),
        version: VERSION,
        meta: meta.clone(),
    })
    .map_err(|source| DataError::Json {
        path: dir.join(META_FILE),
        source,
    })?;
    let labels_json = serde_json::to_vec(labels).map_err(|source| DataError::Json {
        path: dir.join(LABELS_FILE),
        source,
    })?;
    write_dir_atomically(
        dir,
        &[
            (HISTOGRAMS_FILE, &histograms.to_bytes()),
            (LABELS_FILE, &labels_json),
            // Last: a folder with meta.json has everything.
            (META_FILE, &meta_json),
        ],
    )
}

/// Whether `dir` holds a saved sequence (used to resume: saves are atomic, so presence is enough).
pub fn is_prepared(dir: &Path) -> bool {
    dir.join(META_FILE).is_file()
}

/// Reads the sequence in `dir`.
pub fn load(dir: &Path) -> Result<PreparedSequence> {
    let meta_path = dir.join(META_FILE);
    let file: MetaFile = read_json(&meta_path)?;
    if file.format != FORMAT || file.version != VERSION {
        return Err(DataError::corrupt(
            &meta_path,
            format!(
                "format {:?} version {}, expected {FORMAT:?} version {VERSION}",
                file.format, file.version
            ),
        ));
    }
    let meta = file.meta;
    let labels: Vec<WindowLabels> = read_json(&dir.join(LABELS_FILE))?;

    let hist_path = dir.join(HISTOGRAMS_FILE);
    let bytes = fs::read(&hist_path).map_err(|e| DataError::io(&hist_path, e))?;
    let encoded = EncodedHistograms::from_bytes(&bytes).map_err(|e| DataError::Corrupt {
        path: hist_path.clone(),
        reason: e.to_string(),
        source: Some(e),
    })?;
    drop(bytes);
    // The windows stay compressed; `from_encoded` checks their count and size against the
    // metadata and decodes each once.
    PreparedSequence::from_encoded(meta, labels, encoded).map_err(|e| match e {
        DataError::Invalid(reason) => DataError::corrupt(&hist_path, reason),
        other => other,
    })
}

/// Loads every sequence of `root/<split>/`, sorted by folder name. Hidden folders (unfinished
/// saves) are skipped; any other folder must hold a complete sequence, prism's or one in RVT's
/// preprocessed layout ([`rvt_layout`]).
pub fn load_split(root: &Path, split: &str) -> Result<PreparedSplit> {
    let dir = root.join(split);
    let mut names = Vec::new();
    for entry in fs::read_dir(&dir).map_err(|e| DataError::io(&dir, e))? {
        let entry = entry.map_err(|e| DataError::io(&dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && entry.path().is_dir() {
            names.push(name);
        }
    }
    names.sort();
    let sequences = names
        .iter()
        .map(|n| {
            let seq_dir = dir.join(n);
            if !is_prepared(&seq_dir) && rvt_layout::is_rvt_sequence(&seq_dir) {
                rvt_layout::load_rvt_sequence(&seq_dir, None, split)
            } else {
                load(&seq_dir)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    PreparedSplit::new(sequences)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|source| DataError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Distinguishes the temporary folders of saves running at once in one process.
static SAVE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `files` into a temporary folder beside `dir`, then renames it to `dir`.
fn write_dir_atomically(dir: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    let name = dir
        .file_name()
        .ok_or_else(|| DataError::Invalid(format!("{}: not a folder name", dir.display())))?
        .to_string_lossy()
        .into_owned();
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(|e| DataError::io(&parent, e))?;
    let tag = format!(
        "{}-{}",
        std::process::id(),
        SAVE_COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let tmp = parent.join(format!(".{name}.tmp-{tag}"));
    let result = (|| {
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        }
        fs::create_dir(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        for (file, bytes) in files {
            let path = tmp.join(file);
            let mut f = fs::File::create(&path).map_err(|e| DataError::io(&path, e))?;
            f.write_all(bytes).map_err(|e| DataError::io(&path, e))?;
            f.sync_all().map_err(|e| DataError::io(&path, e))?;
        }
        if dir.exists() {
            let old = parent.join(format!(".{name}.old-{tag}"));
            fs::rename(dir, &old).map_err(|e| DataError::io(dir, e))?;
            fs::rename(&tmp, dir).map_err(|e| DataError::io(dir, e))?;
            fs::remove_dir_all(&old).map_err(|e| DataError::io(&old, e))?;
        } else {
            fs::rename(&tmp, dir).map_err(|e| DataError::io(dir, e))?;
        }
        // Make the rename durable; not every platform can open a folder, so best effort.
        if let Ok(d) = fs::File::open(&parent) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() && tmp.exists() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}
