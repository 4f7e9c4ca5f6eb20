//! `bench-prepare`: `prism data prepare` against RVT's own preprocessing, one recording, one
//! core, in one run.
//!
//! The recording (default: faery's `gen4.dat`, 1280x720) is arranged as a 1Mpx-style split
//! (`train/gen4_td.h5` plus `gen4_bbox.npy`, a 30 Hz label clock over the recording's span) as
//! RVT's README expects it; `benchmarks/python/rvt_input_h5.py` writes the HDF5 file. Then:
//!
//! - prism: [`prism_data::prepare_tree`] (what `prism data prepare` runs: decode, RVT's label
//!   rule, windows, stacked histograms halved and padded, compression, atomic write) on that
//!   split, from the same `.h5` RVT reads, and from the `.dat`;
//! - RVT: `process_sequence` of RVT's `scripts/genx/preprocess_dataset.py`, in-process
//!   (`benchmarks/python/rvt_prepare_peer.py`, after a warm-up that compiles its numba code);
//! - the check: RVT's output, read with [`prism_data::rvt_layout`], must equal prism's window
//!   for window, with the same window ends and labels.
//!
//! Both sides are pinned to the same core with every thread pool at one. `cargo xtask bench
//! bench-prepare` provisions RVT's environment and passes `--python` and `--rvt` (from
//! `PRISM_RVT_REPO`). Writes `results/prepare.{md,json}`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use prism_benchmarks::timing::{pin_to_core, pinned_python, time_median};
use prism_data::rvt_layout::load_rvt_sequence;
use prism_data::{prepare_tree, PrepareOptions, PreparedSequence};
use prism_events::{testdata, write_bbox_npy, BoxLabel};
use serde_json::json;

#[derive(Debug, clap::Parser)]
struct Cli {
    /// A 1280x720 DAT recording (default: faery's gen4.dat).
    #[arg(long)]
    dat: Option<PathBuf>,
    /// The Python of RVT's environment (numba, h5py + hdf5plugin, omegaconf, torch).
    #[arg(long)]
    python: PathBuf,
    /// A checkout of uzh-rpg/RVT.
    #[arg(long)]
    rvt: PathBuf,
    /// Timed runs per side (the median is reported).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    runs: u64,
    /// CPU to pin prism and RVT to.
    #[arg(long, default_value_t = 1)]
    cpu: usize,
    /// Folder for prepare.md and prepare.json.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The recording's stem in the split, as RVT's 1Mpx naming wants it (`<stem>_td.h5`).
const STEM: &str = "gen4";

fn main() -> Result<()> {
    let cli = <Cli as clap::Parser>::parse();
    if let Some(code) = pin_to_core(cli.cpu)? {
        std::process::exit(code);
    }
    let dat = match &cli.dat {
        Some(p) => p.clone(),
        None => testdata::faery("gen4.dat").context("gen4.dat not provisioned")?,
    };
    let runs = cli.runs as usize;
    let work = tempfile::tempdir()?;
    let h5_split = work.path().join("in-h5");
    let dat_split = work.path().join("in-dat");
    let labels = arrange_split(&dat, &h5_split, &dat_split)?;
    let to_h5 = pinned_python(&cli.python, Some(cli.cpu))
        .arg(script("rvt_input_h5.py"))
        .arg(&h5_split)
        .arg("gen4")
        .output()?;
    if !to_h5.status.success() {
        bail!(
            "rvt_input_h5.py failed: {}",
            String::from_utf8_lossy(&to_h5.stderr)
        );
    }

    let opts = PrepareOptions::gen4();
    let prism_out = work.path().join("prism");
    let prepare = |input: &Path| -> Result<usize> {
        if prism_out.exists() {
            fs::remove_dir_all(&prism_out)?;
        }
        let report = prepare_tree(input, &prism_out, &opts, |_| {})?;
        if let Some((entry, error)) = report.failed.first() {
            bail!("prism failed on {}: {error}", entry.name);
        }
        Ok(report.prepared.iter().map(|e| e.windows).sum())
    };
    let (dat_s, _) = time_median(runs, || prepare(&dat_split))?;
    let (h5_s, windows) = time_median(runs, || prepare(&h5_split))?;
    eprintln!("prism: {h5_s:.3} s from the .h5, {dat_s:.3} s from the .dat, {windows} windows");

    let rvt_out = work.path().join("rvt");
    let peer = pinned_python(&cli.python, Some(cli.cpu))
        .arg(script("rvt_prepare_peer.py"))
        .arg(&cli.rvt)
        .arg(&h5_split)
        .arg(&rvt_out)
        .args(["gen4", "train", STEM, &runs.to_string()])
        .output()?;
    if !peer.status.success() {
        bail!(
            "RVT's preprocessing failed: {}",
            String::from_utf8_lossy(&peer.stderr)
        );
    }
    let peer: serde_json::Value = serde_json::from_slice(&peer.stdout)?;
    let rvt_s = peer["median_s"]
        .as_f64()
        .context("no median_s from the RVT peer")?;
    eprintln!("RVT: {rvt_s:.3} s");

    let ours = prism_data::store::load(&prism_out.join("train").join(STEM))?;
    let theirs = load_rvt_sequence(&rvt_out.join("train").join(STEM), None, "train")?;
    let check = compare(&ours, &theirs);
    eprintln!("check: {check}");
    if check != "equal" {
        bail!("prism's and RVT's preparations differ: {check}");
    }
    write_results(
        &cli, &dat, labels, windows, h5_s, dat_s, rvt_s, &peer, &check,
    )
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name)
}

/// Copies the recording into both splits with a 30 Hz label file over its span; returns the
/// number of boxes.
fn arrange_split(dat: &Path, h5_split: &Path, dat_split: &Path) -> Result<usize> {
    let events = prism_events::reader::read_all(prism_events::open(dat)?.as_mut())?;
    let (Some(&first), Some(&last)) = (events.t.first(), events.t.last()) else {
        bail!("{}: no events", dat.display());
    };
    let mut boxes = Vec::new();
    for k in 1.. {
        let t = (k as f64 * 1e6 / 30.0).round() as i64;
        if t > last {
            break;
        }
        if t < first {
            continue;
        }
        let x = 100.0 + (k % 90) as f32 * 10.0;
        for (class_id, x, y, w, h) in [(2, x, 300.0, 120.0, 80.0), (0, 600.0, 200.0, 40.0, 100.0)] {
            boxes.push(BoxLabel {
                t,
                x,
                y,
                w,
                h,
                class_id,
                track_id: class_id,
                confidence: 1.0,
            });
        }
    }
    for root in [h5_split, dat_split] {
        for split in ["train", "val", "test"] {
            fs::create_dir_all(root.join(split))?;
        }
        fs::copy(dat, root.join("train").join(format!("{STEM}_td.dat")))?;
        write_bbox_npy(root.join("train").join(format!("{STEM}_bbox.npy")), &boxes)?;
    }
    Ok(boxes.len())
}

/// `equal`, or the first difference.
fn compare(ours: &PreparedSequence, theirs: &PreparedSequence) -> String {
    if ours.meta.window_end_us != theirs.meta.window_end_us {
        return format!(
            "window ends differ ({} vs {} windows)",
            ours.num_windows(),
            theirs.num_windows()
        );
    }
    if ours.labels != theirs.labels {
        return "labels differ".into();
    }
    for i in 0..ours.num_windows() {
        match (ours.get_window(i), theirs.get_window(i)) {
            (Some(a), Some(b)) if a == b => {}
            _ => return format!("window {i} differs"),
        }
    }
    "equal".into()
}

#[allow(clippy::too_many_arguments)]
fn write_results(
    cli: &Cli,
    dat: &Path,
    boxes: usize,
    windows: usize,
    h5_s: f64,
    dat_s: f64,
    rvt_s: f64,
    peer: &serde_json::Value,
    check: &str,
) -> Result<()> {
    let out = cli
        .out
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("results"));
    fs::create_dir_all(&out)?;
    let ratio = rvt_s / h5_s;
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let name = dat.file_name().unwrap_or_default().to_string_lossy();
    let md = format!(
        "# Preparing a recording: prism vs RVT's own preprocessing (one core)\n\n\
         `cargo xtask bench bench-prepare` (RVT checkout from `PRISM_RVT_REPO`) — {name} \
         (1280x720) arranged as a 1Mpx-style split with 30 Hz labels ({boxes} boxes), \
         stacked histograms of 50 ms windows, 10 bins, cutoff 10, halved; median of {} runs \
         after a warm-up, both pinned to CPU {} with thread pools at 1. CPU: {cpu}.\n\n\
         | step | seconds per recording | ratio to RVT |\n|---|---|---|\n\
         | RVT `process_sequence` (`preprocess_dataset.py`, from `{STEM}_td.h5`) | {rvt_s:.3} | 1.0x |\n\
         | prism `prepare_tree` from the same `{STEM}_td.h5` | {h5_s:.3} | {ratio:.1}x |\n\
         | prism `prepare_tree` from `{name}` | {dat_s:.3} | {:.1}x |\n\n\
         Output checked: RVT's files read by `prism_data::rvt_layout` and prism's prepared \
         sequence are {check} ({windows} windows, same window ends and labels). Goal: prism at \
         least 5x faster per recording: {}.\n",
        cli.runs,
        cli.cpu,
        rvt_s / dat_s,
        if ratio >= 5.0 { "met" } else { "NOT met" }
    );
    fs::write(out.join("prepare.md"), &md)?;
    let report = json!({
        "recording": name,
        "boxes": boxes,
        "windows": windows,
        "runs": cli.runs,
        "cpu": cli.cpu,
        "cpu_model": cpu,
        "prism_h5_s": h5_s,
        "prism_dat_s": dat_s,
        "rvt_s": rvt_s,
        "rvt_seconds": peer["seconds"],
        "ratio_h5": ratio,
        "ratio_dat": rvt_s / dat_s,
        "check": check,
    });
    fs::write(
        out.join("prepare.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    print!("{md}");
    Ok(())
}
