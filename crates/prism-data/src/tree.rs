//! Prepares a Gen1 / 1Mpx dataset folder: `input/{train,val,test}/<stem>_td.{dat,h5,dat.h5,raw}`
//! with `<stem>_bbox.npy` beside it, into `output/<split>/<stem>/`.
//!
//! Sequences already prepared are skipped (saves are atomic, so an interrupted run resumes where
//! it stopped). Sequences without a label file, or with no box left after filtering, are skipped
//! and reported, as RVT does. A sequence that fails (corrupt file) is reported and the others go
//! on. Windows are compressed as they are built, so memory stays at one sequence's compressed
//! histograms per job.
//!
//! [`TreeOptions`] spread the work: `jobs` worker threads take sequences one at a time (a
//! sequence is one job's work, so `jobs` scales across recordings), and a [`Shard`] `I/N` takes
//! every N-th sequence of the sorted list from the I-th, so N processes (a Slurm job array) split
//! a dataset between them. Each sequence's files depend on that sequence alone, so any split and
//! any number of jobs write the same bytes as one run.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

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

/// Part `index` (from 0) of `count` equal parts of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// Parses `I/N` with `I < N`.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || DataError::Invalid(format!("shard {text:?}: expected I/N with 0 <= I < N"));
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }

    /// Whether sequence `position` of the sorted list is this shard's.
    pub fn takes(self, position: usize) -> bool {
        position % self.count == self.index
    }
}

/// How [`prepare_tree_with`] spreads the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeOptions {
    /// Sequences prepared at once, each on its own thread.
    pub jobs: usize,
    /// Only this part of the sequences; `None` for all.
    pub shard: Option<Shard>,
}

impl Default for TreeOptions {
    fn default() -> Self {
        Self {
            jobs: 1,
            shard: None,
        }
    }
}

/// Prepares every sequence of `input_root` into `output_root`, one at a time; see the module
/// documentation. The faulty-width filter of `opts.filter` applies to the train split only.
pub fn prepare_tree(
    input_root: &Path,
    output_root: &Path,
    opts: &PrepareOptions,
    progress: impl FnMut(&PrepareEvent<'_>),
) -> Result<PrepareReport> {
    prepare_tree_with(
        input_root,
        output_root,
        opts,
        TreeOptions::default(),
        progress,
    )
}

/// What became of one sequence.
enum Outcome {
    Resumed,
    NoLabels,
    Done(usize, usize),
    Failed(String),
}

/// A worker's message to the thread that reports.
enum Message {
    Start(usize),
    Finished(usize, Outcome),
}

/// [`prepare_tree`] with `tree.jobs` sequences at once and only `tree.shard`'s sequences.
/// `progress` runs on the calling thread; the report lists sequences in their sorted order,
/// whatever order the jobs finished them in.
pub fn prepare_tree_with(
    input_root: &Path,
    output_root: &Path,
    opts: &PrepareOptions,
    tree: TreeOptions,
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
    let mine: Vec<usize> = (0..found.len())
        .filter(|&i| tree.shard.is_none_or(|s| s.takes(i)))
        .collect();
    let entry = |i: usize| ReportEntry {
        split: found[i].split.to_string(),
        name: found[i].stem.clone(),
        windows: 0,
        labeled_windows: 0,
    };
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<Message>();
    let mut outcomes: Vec<Option<Outcome>> = (0..found.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        for _ in 0..tree.jobs.clamp(1, mine.len().max(1)) {
            let tx = tx.clone();
            let (found, mine, next) = (&found, &mine, &next);
            scope.spawn(move || {
                while let Some(&i) = mine.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let outcome = prepare_found(&found[i], output_root, opts, || {
                        let _ = tx.send(Message::Start(i));
                    });
                    if tx.send(Message::Finished(i, outcome)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for message in rx {
            match message {
                Message::Start(i) => progress(&PrepareEvent::Start {
                    split: found[i].split,
                    name: &found[i].stem,
                    index: i,
                    total: found.len(),
                }),
                Message::Finished(i, outcome) => {
                    let mut e = entry(i);
                    match &outcome {
                        Outcome::Resumed => progress(&PrepareEvent::Resumed(&e)),
                        Outcome::NoLabels => progress(&PrepareEvent::NoLabels(&e)),
                        Outcome::Done(windows, labeled) => {
                            (e.windows, e.labeled_windows) = (*windows, *labeled);
                            progress(&PrepareEvent::Done(&e));
                        }
                        Outcome::Failed(error) => {
                            progress(&PrepareEvent::Failed { entry: &e, error })
                        }
                    }
                    outcomes[i] = Some(outcome);
                }
            }
        }
    });
    let mut report = PrepareReport::default();
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let mut e = entry(i);
        match outcome {
            None => {}
            Some(Outcome::Resumed) => report.resumed.push(e),
            Some(Outcome::NoLabels) => report.no_labels.push(e),
            Some(Outcome::Done(windows, labeled)) => {
                (e.windows, e.labeled_windows) = (windows, labeled);
                report.prepared.push(e);
            }
            Some(Outcome::Failed(error)) => report.failed.push((e, error)),
        }
    }
    Ok(report)
}

/// One sequence, start to finish; `started` is called when real work begins.
fn prepare_found(
    f: &Found,
    output_root: &Path,
    opts: &PrepareOptions,
    started: impl FnOnce(),
) -> Outcome {
    let out_dir = output_root.join(f.split).join(&f.stem);
    if is_prepared(&out_dir) {
        return Outcome::Resumed;
    }
    let Some(labels) = &f.labels else {
        return Outcome::NoLabels;
    };
    started();
    let split_opts = PrepareOptions {
        filter: opts.filter.for_split(f.split),
        ..opts.clone()
    };
    match prepare_one(f, labels, &split_opts, &out_dir) {
        Ok(Some((windows, labeled))) => Outcome::Done(windows, labeled),
        Ok(None) => Outcome::NoLabels,
        Err(e) => Outcome::Failed(e.to_string()),
    }
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
