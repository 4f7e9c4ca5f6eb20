//! `prism data synth-mm --out DIR`: synthetic RGB + thermal + event scenes in the multimodal
//! dataset layout (`classes.txt`, `images/` + `labels/`, `daytest/`, `nighttest/`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use prism_data::multimodal::{synth_mm, SynthMmOptions};

#[derive(Debug, Args)]
pub struct SynthMmArgs {
    /// Dataset folder to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Images in the train + validation pool; daytest and nighttest get a fifth each.
    #[arg(long, default_value_t = 200)]
    pub images: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Image size WIDTHxHEIGHT (32 to 4096 a side).
    #[arg(long, default_value = "160x128", value_parser = super::parse_sensor_size)]
    pub size: prism_events::SensorSize,
    /// Leave out the single-modality clutter (painted boxes, warm blobs, event streaks); the
    /// scenes are otherwise the same as with it, for studying what the clutter does.
    #[arg(long)]
    pub no_clutter: bool,
}

pub fn run(args: SynthMmArgs) -> Result<()> {
    let options = SynthMmOptions {
        images: args.images,
        seed: args.seed,
        size: [usize::from(args.size.width), usize::from(args.size.height)],
        clutter: !args.no_clutter,
    };
    let report = synth_mm(&args.out, &options)
        .with_context(|| format!("writing synthetic scenes into {}", args.out.display()))?;
    for (split, images, objects) in &report.splits {
        outln!("{split:<10} {images} images, {objects} objects")?;
    }
    outln!("wrote {}", args.out.display())?;
    Ok(())
}
