//! `prism data prepare`: recordings with labels (`<split>/<stem>_td.dat|.h5` + `<stem>_bbox.npy`)
//! become stored stacked histograms for a model card, once, so training reads them fast.
//! Sequences already prepared are skipped, so an interrupted run can simply be started again.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use prism_data::{prepare_tree, LabelFilter, PrepareEvent};
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
    /// Label filter: gen1 (diagonal >= 30, side >= 10), gen4 (side >= 5) or none.
    #[arg(long, default_value = "gen1")]
    pub filter: String,
}

pub fn run(args: PrepareArgs) -> Result<()> {
    let card = ModelCard::resolve(&args.model)?;
    let filter = match args.filter.as_str() {
        "gen1" => LabelFilter::gen1(),
        "gen4" | "1mpx" => LabelFilter::gen4(),
        "none" => LabelFilter::none(),
        other => bail!("unknown filter {other:?} (gen1, gen4, none)"),
    };
    let opts = prism_train::data::prepare_options(&card, filter);
    let report = prepare_tree(&args.input, &args.out, &opts, |event| match event {
        PrepareEvent::Start { split, name, index, total } => eprintln!("[{}/{total}] {split}/{name}", index + 1),
        PrepareEvent::Failed { entry, error } => eprintln!("FAILED {entry:?}: {error}"),
        _ => {}
    })?;
    println!(
        "prepared {} sequences, {} already there, {} without labels after filtering, {} failed -> {}",
        report.prepared.len(),
        report.resumed.len(),
        report.no_labels.len(),
        report.failed.len(),
        args.out.display()
    );
    if !report.failed.is_empty() {
        bail!("{} sequences failed (listed above)", report.failed.len());
    }
    Ok(())
}
