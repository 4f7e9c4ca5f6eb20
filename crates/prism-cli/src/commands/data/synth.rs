//! `prism data synth --out STEM`: a deterministic synthetic event scene with its labels.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use prism_events::synth::{write_scene, SceneConfig, SceneFiles};
use prism_events::write::WriteFormat;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SynthFormat {
    /// Prophesee `.dat`.
    Dat,
    /// EVT 2.0 `.raw`.
    Evt2,
    /// EVT 3.0 `.raw`.
    Evt3,
}

impl From<SynthFormat> for WriteFormat {
    fn from(f: SynthFormat) -> Self {
        match f {
            SynthFormat::Dat => WriteFormat::Dat,
            SynthFormat::Evt2 => WriteFormat::Evt2,
            SynthFormat::Evt3 => WriteFormat::Evt3,
        }
    }
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output path prefix: writes `<out>_td.dat|.raw` and `<out>_bbox.npy`.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = SynthFormat::Dat)]
    pub format: SynthFormat,
    #[arg(long, default_value_t = 160)]
    pub width: u16,
    #[arg(long, default_value_t = 128)]
    pub height: u16,
    /// Scene length in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration_s: f64,
    /// Objects on screen at any time.
    #[arg(long, default_value_t = 4)]
    pub objects: usize,
    /// Ground-truth label rate in Hz.
    #[arg(long, default_value_t = 20.0)]
    pub label_hz: f64,
    /// Same seed, same bytes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl SynthArgs {
    pub fn scene_config(&self) -> SceneConfig {
        SceneConfig {
            width: self.width,
            height: self.height,
            duration_us: (self.duration_s * 1e6).round() as i64,
            num_objects: self.objects,
            label_hz: self.label_hz,
            seed: self.seed,
            ..SceneConfig::default()
        }
    }
}

pub fn run(args: SynthArgs) -> Result<()> {
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let files = synthesize(&args)?;
    outln!(
        "wrote {} events to {} and {} boxes to {}",
        files.events,
        files.events_path.display(),
        files.labels,
        files.labels_path.display()
    )?;
    Ok(())
}

pub fn synthesize(args: &SynthArgs) -> Result<SceneFiles> {
    write_scene(&args.scene_config(), &args.out, args.format.into())
        .with_context(|| format!("writing the scene {}", args.out.display()))
}
