//! Where a command gets its model: a zoo name (fresh weights) or a checkpoint folder.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use burn::tensor::Device;
use clap::Args;
use prism_models::rvt::Rvt;
use prism_models::zoo::ModelCard;

#[derive(Debug, Args)]
pub struct ModelSource {
    /// A zoo model (`rvt-tiny-gen1`, …, `rvt-tiny-synth`, `mm-mit-b0-cssa-s3`, …) or a model
    /// card TOML file; the weights are freshly initialised.
    #[arg(long, conflicts_with = "checkpoint")]
    pub model: Option<String>,
    /// A checkpoint folder written by `prism train` or `prism import` (card + weights).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Overrides of the `--model` card, e.g. `--set model.memory=dws-lstm --set
    /// model.fpn_scales=4` (a checkpoint's card is fixed by its weights).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

impl ModelSource {
    /// Refuses `--set` on a checkpoint: its weights were trained for its card.
    fn no_overrides_on_a_checkpoint(&self) -> Result<()> {
        if self.checkpoint.is_some() && !self.overrides.is_empty() {
            bail!(
                "--set changes a --model card; a checkpoint's card is fixed by its weights \
                 (train one with `prism train --set …` instead)"
            );
        }
        Ok(())
    }

    /// Whether the source is an RGB + thermal + event detector (an `mm-*` card or checkpoint).
    pub fn is_multimodal(&self) -> bool {
        match (&self.model, &self.checkpoint) {
            (Some(name), _) => super::train::names_a_multimodal_card(name),
            (None, Some(dir)) => prism_models::mm::card::is_mm_checkpoint(dir),
            (None, None) => false,
        }
    }

    /// Whether the source is a next-vector sequence model (a `seq-*` card or checkpoint).
    pub fn is_sequence(&self) -> bool {
        match (&self.model, &self.checkpoint) {
            (Some(name), _) => prism_models::seq::card::is_seq_card(name),
            (None, Some(dir)) => prism_models::seq::card::is_seq_checkpoint(dir),
            (None, None) => false,
        }
    }

    /// The sequence card and model with its weights (fresh for a card).
    pub fn load_sequence(
        &self,
        device: &Device,
    ) -> Result<(prism_models::seq::SeqCard, prism_models::seq::SeqModel)> {
        self.no_overrides_on_a_checkpoint()?;
        match (&self.model, &self.checkpoint) {
            (Some(name), _) => {
                let card =
                    prism_models::seq::SeqCard::resolve(name)?.with_overrides(&self.overrides)?;
                let model = card.init(device)?;
                Ok((card, model))
            }
            (None, Some(dir)) => prism_models::seq::card::load_checkpoint(dir, device)
                .with_context(|| format!("loading the checkpoint {}", dir.display())),
            (None, None) => bail!("give --model NAME or --checkpoint DIR"),
        }
    }

    /// The multimodal card and detector with its weights (fresh for a card).
    pub fn load_multimodal(
        &self,
        device: &Device,
    ) -> Result<(prism_models::mm::MmCard, prism_models::mm::MmDetector)> {
        self.no_overrides_on_a_checkpoint()?;
        match (&self.model, &self.checkpoint) {
            (Some(name), _) => {
                let card =
                    prism_models::mm::MmCard::resolve(name)?.with_overrides(&self.overrides)?;
                let model = card.detector_config()?.init(device)?;
                Ok((card, model))
            }
            (None, Some(dir)) => prism_models::mm::card::load_checkpoint(dir, device)
                .with_context(|| format!("loading the checkpoint {}", dir.display())),
            (None, None) => bail!("give --model NAME or --checkpoint DIR"),
        }
    }

    /// The card only (no weights), cheap.
    pub fn card(&self) -> Result<ModelCard> {
        self.no_overrides_on_a_checkpoint()?;
        match (&self.model, &self.checkpoint) {
            (Some(name), _) => Ok(ModelCard::resolve(name)?.with_overrides(&self.overrides)?),
            (None, Some(dir)) => Ok(ModelCard::from_file(
                &dir.join(prism_models::checkpoint::CARD_FILE),
            )?),
            (None, None) => bail!("give --model NAME or --checkpoint DIR"),
        }
    }

    /// The card and the model with its weights.
    pub fn load(&self, device: &Device) -> Result<(ModelCard, Rvt)> {
        self.no_overrides_on_a_checkpoint()?;
        match (&self.model, &self.checkpoint) {
            (Some(_), _) => {
                let card = self.card()?;
                let model = card.rvt_config().init(device);
                Ok((card, model))
            }
            (None, Some(dir)) => prism_models::checkpoint::load(dir, device)
                .with_context(|| format!("loading the checkpoint {}", dir.display())),
            (None, None) => bail!("give --model NAME or --checkpoint DIR"),
        }
    }
}
