//! Prepares a Gen1 / 1Mpx dataset folder: `input/{train,val,test}/<stem>_td.{dat,h5,dat.h5,raw}`
//! with `<stem>_bbox.npy` beside it, into `output/<split>/<stem>/`.
//!
//! Sequences already prepared are skipped (saves are atomic, so an interrupted run resumes where
//! it stopped). Sequences without a label file, or with no box left after filtering, are skipped
//! and reported, as RVT does. A sequence that fails (corrupt file) is reported and the others go
//! on. Windows are compressed as they are built, so memory stays at one sequence's compressed
//! histograms.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use prism_events::read_bbox_npy;

use crate::codec::EncodedHistograms;
use crate::error::{DataError, Result};
use crate::prepare::{clean_labels, prepare_recording_into, PrepareOptions};
use crate::store::{is_prepared, save_encoded};

/// The splits looked for under the input folder.
pub const SPLITS: [&str; 3] = ["train", "val", "test"];

/// Event-file suffixes, in order of preference when a stem has several.
const EVENT_SUFFIXES: [&str; 4] = ["_td.dat.h5", "_td.h5", "_td.dat", "_td.raw"];

/// What happens to one sequence, for progress display.
#[derive(Debug, Clone, PartialEq)]
pub enum PrepareEvent<'a> {
    /// Starting sequence `index` (from 0) of `total` in the whole tree.
    Start {
        split: &'a str,
        name: &'a str,
        index: usize,
        total: usize,
    },
    Done(&'a ReportEntry),
    /// Already prepared by an earlier run.
    Resumed(&'a ReportEntry),
    /// No label file or no box left after filtering.
    NoLabels(&'a ReportEntry),
    Failed {
        entry: &'a ReportEntry,
        error: &'a str,
    },
}

/// One sequence of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportEntry {
    pub split: String,
    pub name: String,
    /// Windows and labelled windows (0 when not prepared in this run).
    pub windows: usize,
    pub labeled_windows: usize,
}

/// What [`prepare_tree`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrepareReport {
    pub prepared: Vec<ReportEntry>,
    /// Found already prepared (resume).
    pub resumed: Vec<ReportEntry>,
    /// Skipped: no label file, or no box after filtering.
    pub no_labels: Vec<ReportEntry>,
    /// Failed, with the error message.
    pub failed: Vec<(ReportEntry, String)>,
}

/// One recording found in the input tree.
#[derive(Debug, Clone)]
struct Found {
    split: &'static str,
    stem: String,
    events: PathBuf,
    labels: Option<PathBuf>,
}

/// Prepares every sequence of `input_root` into `output_root`; see the module documentation.
/// The faulty-width filter of `opts.filter` applies to the train split only.
pub fn prepare_tree(
    input_root: &Path,
    output_root: &Path,
    opts: &PrepareOptions,
    mut progress: impl FnMut(&PrepareEvent<'_>),
) -> Result<PrepareReport> {
    let found = discover(input_root)?;
    if found.is_empty() {
        return Err(DataError::Invalid(format!(
            "{}: no `<stem>_td.{{dat,h5,dat.h5,raw}}` recordings under {}",
            input_root.display(),
            SPLITS.join("/, ")
        )));
    }
    let mut report = PrepareReport::default();
    for (index, f) in found.iter().enumerate() {
        let out_dir = output_root.join(f.split).join(&f.stem);
        let mut entry = ReportEntry {
            split: f.split.to_string(),
            name: f.stem.clone(),
            windows: 0,
            labeled_windows: 0,
        };
        if is_prepared(&out_dir) {
            progress(&PrepareEvent::Resumed(&entry));
            report.resumed.push(entry);
            continue;
        }
        let Some(labels) = &f.labels else {
            progress(&PrepareEvent::NoLabels(&entry));
            report.no_labels.push(entry);
            continue;
        };
        progress(&PrepareEvent::Start {
            split: f.split,
            name: &f.stem,
            index,
            total: found.len(),
        });
        let split_opts = PrepareOptions {
            filter: opts.filter.for_split(f.split),
            ..opts.clone()
        };
        match prepare_one(f, labels, &split_opts, &out_dir) {
            Ok(Some((windows, labeled))) => {
                entry.windows = windows;
                entry.labeled_windows = labeled;
                progress(&PrepareEvent::Done(&entry));
                report.prepared.push(entry);
            }
            Ok(None) => {
                progress(&PrepareEvent::NoLabels(&entry));
                report.no_labels.push(entry);
            }
            Err(e) => {
                let message = e.to_string();
                progress(&PrepareEvent::Failed {
                    entry: &entry,
                    error: &message,
                });
                report.failed.push((entry, message));
            }
        }
    }
    Ok(report)
}

/// Prepares and saves one sequence; `None` when no box survives the filter.
fn prepare_one(
    f: &Found,
    labels: &Path,
    opts: &PrepareOptions,
    out_dir: &Path,
) -> Result<Option<(usize, usize)>> {
    // Labels are small: check them before decoding a possibly large recording.
    if clean_labels(&read_bbox_npy(labels)?, opts).is_empty() {
        return Ok(None);
    }
    let [c, h, w] = opts.histogram.shape();
    let mut encoded = EncodedHistograms::new(c * h * w);
    let (meta, window_labels) =
        prepare_recording_into(&f.events, Some(labels), &f.stem, opts, &mut encoded)?;
    if meta.stats.boxes_kept == 0 {
        return Ok(None);
    }
    save_encoded(&meta, &window_labels, &encoded, out_dir)?;
    Ok(Some((meta.window_end_us.len(), window_labels.len())))
}

/// Recordings under `root/{train,val,test}/`, sorted by split then stem.
fn discover(root: &Path) -> Result<Vec<Found>> {
    let mut out = Vec::new();
    for split in SPLITS {
        let dir = root.join(split);
        if !dir.is_dir() {
            continue;
        }
        let mut events: BTreeMap<String, (usize, PathBuf)> = BTreeMap::new();
        for entry in fs::read_dir(&dir).map_err(|e| DataError::io(&dir, e))? {
            let path = entry.map_err(|e| DataError::io(&dir, e))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some((rank, stem)) = EVENT_SUFFIXES.iter().enumerate().find_map(|(rank, sfx)| {
                name.strip_suffix(sfx).map(|stem| (rank, stem.to_string()))
            }) else {
                continue;
            };
            let better = events.get(&stem).is_none_or(|(r, _)| rank < *r);
            if better && path.is_file() {
                events.insert(stem, (rank, path.clone()));
            }
        }
        for (stem, (_, path)) in events {
            let labels = dir.join(format!("{stem}_bbox.npy"));
            out.push(Found {
                split,
                labels: labels.is_file().then_some(labels),
                stem,
                events: path,
            });
        }
    }
    Ok(out)
}
