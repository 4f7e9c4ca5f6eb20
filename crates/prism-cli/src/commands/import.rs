//! `prism import rvt-checkpoint FILE --model NAME --out DIR`: an official PyTorch RVT checkpoint
//! into a prism checkpoint folder. `prism import mit-checkpoint FILE --model mit-bN --out DIR`:
//! ImageNet MiT weights (NVlabs `mit_b*.pth` or Hugging Face `SegformerModel` safetensors) into
//! a backbone checkpoint folder that a multimodal detector starts from.

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::tensor::Device;
use clap::{Args, Subcommand};
use prism_models::mit::{
    import_mit_checkpoint, save_backbone, BackboneCard, MitConfig, MIT_PRESETS,
};
use prism_models::rvt::import_rvt_checkpoint;
use prism_models::rvt::params::count_params;
use prism_models::zoo::ModelCard;

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// A Lightning checkpoint of the reference RVT (`state_dict` with `mdl.` keys).
    RvtCheckpoint(RvtCheckpointArgs),
    /// MiT weights: NVlabs `mit_b*.pth` or a Hugging Face `SegformerModel` `.safetensors`.
    MitCheckpoint(MitCheckpointArgs),
}

#[derive(Debug, Args)]
pub struct MitCheckpointArgs {
    /// The `.pth` (NVlabs) or `.safetensors` (Hugging Face) file.
    pub file: PathBuf,
    /// The backbone it holds: `mit-b0` … `mit-b5`.
    #[arg(long)]
    pub model: String,
    /// Backbone checkpoint folder to write.
    #[arg(long)]
    pub out: PathBuf,
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
        ImportCommand::MitCheckpoint(args) => {
            let device = Device::flex();
            let config = MitConfig::preset(&args.model).with_context(|| {
                format!(
                    "unknown backbone {:?}; known: {}",
                    args.model,
                    MIT_PRESETS.join(", ")
                )
            })?;
            let mit = import_mit_checkpoint(&args.file, &config, &device)
                .with_context(|| format!("importing {} as {}", args.file.display(), args.model))?;
            let card = BackboneCard {
                model: format!(
                    "mit-{}",
                    args.model.strip_prefix("mit-").unwrap_or(&args.model)
                ),
                in_channels: config.in_channels,
                source: args.file.display().to_string(),
            };
            save_backbone(&mit, &card, &args.out)?;
            outln!(
                "imported {} ({} parameters) into {}",
                card.model,
                count_params(&mit),
                args.out.display()
            )?;
            Ok(())
        }
    }
}
