//! `prism data prepare`: recordings with labels (`<split>/<stem>_td.dat|.h5` + `<stem>_bbox.npy`)
//! become stored stacked histograms for a model card, once, so training reads them fast.
//! Sequences already prepared are skipped, so an interrupted run can simply be started again.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use prism_data::{prepare_tree, LabelClock, LabelFilter, PrepareEvent};
use prism_models::zoo::ModelCard;

#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// Folder with `train/`, `val/`, `test/` holding `<stem>_td.dat` (or `_td.h5`, `_td.raw`)
    /// and `<stem>_bbox.npy`.
    #[arg(long)]
    pub input: PathBuf,
    /// Output folder (`<split>/<stem>/` per sequence).
    #[arg(long)]
    pub out: PathBuf,
    /// Model card whose representation to build (`rvt-tiny-gen1`, `rvt-base-1mpx`, or a file).
    #[arg(long)]
    pub model: String,
    /// Label filter: gen1 (diagonal >= 30, side >= 10), gen4 (side >= 5), none, or auto (RVT's
    /// for the card's sensor: gen1 for 304x240, gen4 for 1280x720, else none).
    #[arg(long, default_value = "auto")]
    pub filter: String,
    /// Which label frames are kept and where windows end, by RVT's rule: gen1 (a frame every
    /// 250 ms), gen4 (30 or 60 Hz labels, a frame every 3 or 6 periods), every-frame (not RVT's:
    /// every frame of a periodic clock), or auto (gen1 for 304x240, gen4 for 1280x720, else
    /// every-frame).
    #[arg(long, default_value = "auto")]
    pub label_clock: String,
}

pub fn run(args: PrepareArgs) -> Result<()> {
    let card = ModelCard::resolve(&args.model)?;
    let [width, height] = card.data.sensor;
    let auto_clock = LabelClock::for_sensor(width, height);
    let filter = match args.filter.as_str() {
        "gen1" => LabelFilter::gen1(),
        "gen4" | "1mpx" => LabelFilter::gen4(),
        "none" => LabelFilter::none(),
        "auto" => match auto_clock {
            LabelClock::Gen1 => LabelFilter::gen1(),
            LabelClock::Gen4 => LabelFilter::gen4(),
            LabelClock::EveryFrame => LabelFilter::none(),
        },
        other => bail!("unknown filter {other:?} (gen1, gen4, none, auto)"),
    };
    let label_clock = match args.label_clock.as_str() {
        "auto" => auto_clock,
        name => LabelClock::from_name(name).with_context(|| {
            format!("unknown label clock {name:?} (gen1, gen4, every-frame, auto)")
        })?,
    };
    let opts = prism_train::data::prepare_options(&card, filter, label_clock);
    let report = prepare_tree(&args.input, &args.out, &opts, |event| match event {
        PrepareEvent::Start {
            split,
            name,
            index,
            total,
        } => eprintln!("[{}/{total}] {split}/{name}", index + 1),
        PrepareEvent::Failed { entry, error } => eprintln!("FAILED {entry:?}: {error}"),
        _ => {}
    })?;
    outln!(
        "prepared {} sequences, {} already there, {} without labels after filtering, {} failed -> {}",
        report.prepared.len(),
        report.resumed.len(),
        report.no_labels.len(),
        report.failed.len(),
        args.out.display()
    )?;
    if !report.failed.is_empty() {
        bail!("{} sequences failed (listed above)", report.failed.len());
    }
    Ok(())
}
