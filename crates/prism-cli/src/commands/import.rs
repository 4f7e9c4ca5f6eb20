//! `prism import rvt-checkpoint FILE --model NAME --out DIR`: an official PyTorch RVT checkpoint
//! into a prism checkpoint folder.

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::tensor::Device;
use clap::{Args, Subcommand};
use prism_models::rvt::import_rvt_checkpoint;
use prism_models::zoo::ModelCard;

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// A Lightning checkpoint of the reference RVT (`state_dict` with `mdl.` keys).
    RvtCheckpoint(RvtCheckpointArgs),
}

#[derive(Debug, Args)]
pub struct RvtCheckpointArgs {
    /// The `.ckpt` file.
    pub file: PathBuf,
    /// The zoo model (or card file) it was trained as, e.g. `rvt-tiny-gen1`.
    #[arg(long)]
    pub model: String,
    /// Checkpoint folder to write.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(cmd: ImportCommand) -> Result<()> {
    match cmd {
        ImportCommand::RvtCheckpoint(args) => {
            let device = Device::flex();
            let card = ModelCard::resolve(&args.model)?;
            let model = import_rvt_checkpoint(&args.file, &card.rvt_config(), &device)
                .with_context(|| format!("importing {} as {}", args.file.display(), card.name))?;
            prism_models::checkpoint::save(&model, &card, &args.out)?;
            let parts = model.param_breakdown();
            outln!(
                "imported {} ({} parameters) into {}",
                card.name,
                parts.total,
                args.out.display()
            )?;
            Ok(())
        }
    }
}
