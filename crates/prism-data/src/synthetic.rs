//! Synthetic training data: scenes of [`prism_events::synth`] prepared in memory (no event files),
//! for the synthetic training configuration and for tests.
//!
//! Sequence `i` of a split is the base scene with seed `base.seed + i` (train) or
//! `base.seed + VAL_SEED_OFFSET + i` (val), so train and val never share a scene and growing a
//! split keeps the scenes it already had. Folders are named after the seed (`seed_<n>`).

use std::path::Path;

use prism_events::synth::SceneConfig;

use crate::codec::EncodedHistograms;
use crate::error::Result;
use crate::prepare::{prepare_synthetic, prepare_synthetic_into, PrepareOptions};
use crate::prepared::PreparedSplit;
use crate::store::{is_prepared, save_encoded};
use crate::tree::{PrepareEvent, PrepareReport, ReportEntry};

/// Offset between the seeds of the train and the val scenes.
pub const VAL_SEED_OFFSET: u64 = 1 << 32;

/// Folder and sequence name of the scene with `seed`.
pub fn sequence_name(seed: u64) -> String {
    format!("seed_{seed}")
}

/// `base` with another seed and duration.
pub fn scene_with(base: &SceneConfig, seed: u64, duration_us: i64) -> SceneConfig {
    SceneConfig {
        seed,
        duration_us,
        ..base.clone()
    }
}

/// `n` scenes with seeds `seed0..seed0 + n`, each `duration_us` long, prepared in memory.
pub fn synthetic_split(
    base: &SceneConfig,
    n: usize,
    seed0: u64,
    duration_us: i64,
    opts: &PrepareOptions,
) -> Result<PreparedSplit> {
    let sequences = (0..n as u64)
        .map(|i| {
            let seed = seed0.wrapping_add(i);
            prepare_synthetic(
                &scene_with(base, seed, duration_us),
                &sequence_name(seed),
                opts,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    PreparedSplit::new(sequences)
}

/// Writes `train_n` scenes to `root/train/` and `val_n` to `root/val/` (seeds and duration from
/// `base`, see the module documentation); scenes already there are kept.
pub fn prepare_synthetic_tree(
    root: &Path,
    base: &SceneConfig,
    train_n: usize,
    val_n: usize,
    opts: &PrepareOptions,
) -> Result<PrepareReport> {
    prepare_synthetic_tree_with(root, base, train_n, val_n, opts, |_| {})
}

/// [`prepare_synthetic_tree`] with progress events.
pub fn prepare_synthetic_tree_with(
    root: &Path,
    base: &SceneConfig,
    train_n: usize,
    val_n: usize,
    opts: &PrepareOptions,
    mut progress: impl FnMut(&PrepareEvent<'_>),
) -> Result<PrepareReport> {
    let jobs: Vec<(&str, u64)> = (0..train_n as u64)
        .map(|i| ("train", base.seed.wrapping_add(i)))
        .chain((0..val_n as u64).map(|i| ("val", base.seed.wrapping_add(VAL_SEED_OFFSET + i))))
        .collect();
    let mut report = PrepareReport::default();
    for (index, &(split, seed)) in jobs.iter().enumerate() {
        let name = sequence_name(seed);
        let dir = root.join(split).join(&name);
        let mut entry = ReportEntry {
            split: split.to_string(),
            name: name.clone(),
            windows: 0,
            labeled_windows: 0,
        };
        if is_prepared(&dir) {
            progress(&PrepareEvent::Resumed(&entry));
            report.resumed.push(entry);
            continue;
        }
        progress(&PrepareEvent::Start {
            split,
            name: &name,
            index,
            total: jobs.len(),
        });
        let split_opts = PrepareOptions {
            filter: opts.filter.for_split(split),
            ..opts.clone()
        };
        let [c, h, w] = opts.histogram.shape();
        let mut encoded = EncodedHistograms::new(c * h * w);
        let scene = scene_with(base, seed, base.duration_us);
        let (meta, labels) = prepare_synthetic_into(&scene, &name, &split_opts, &mut encoded)?;
        save_encoded(&meta, &labels, &encoded, &dir)?;
        entry.windows = meta.window_end_us.len();
        entry.labeled_windows = labels.len();
        progress(&PrepareEvent::Done(&entry));
        report.prepared.push(entry);
    }
    Ok(report)
}
