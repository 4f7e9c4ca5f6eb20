//! `prism data …`: look at, make and draw event recordings, and make multimodal images and
//! synthetic vector corpora.

pub mod inspect;
pub mod prepare;
pub mod render;
pub mod synth;
pub mod synth_mm;
pub mod synth_seq;

use anyhow::Result;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Format, sensor size, event count, duration, rate, polarity balance and time-order problems.
    Inspect(inspect::InspectArgs),
    /// Turn recordings with labels (Gen1 / 1Mpx layout) into stored histograms for training.
    Prepare(prepare::PrepareArgs),
    /// Write a synthetic event scene (`<stem>_td.dat|.raw` plus `<stem>_bbox.npy`).
    Synth(synth::SynthArgs),
    /// Write synthetic RGB + thermal + event images with YOLO labels (the multimodal layout).
    SynthMm(synth_mm::SynthMmArgs),
    /// Write a synthetic vector corpus for the next-vector sequence models.
    SynthSeq(synth_seq::SynthSeqArgs),
    /// Draw stacked histograms of consecutive windows as PNG frames (OFF red, ON blue).
    Render(render::RenderArgs),
}

pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Inspect(args) => inspect::run(args),
        DataCommand::Prepare(args) => prepare::run(args),
        DataCommand::Synth(args) => synth::run(args),
        DataCommand::SynthMm(args) => synth_mm::run(args),
        DataCommand::SynthSeq(args) => synth_seq::run(args),
        DataCommand::Render(args) => render::run(args),
    }
}

/// Parses `WIDTHxHEIGHT`, e.g. `640x480`.
pub fn parse_sensor_size(s: &str) -> Result<prism_events::SensorSize, String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("expected WIDTHxHEIGHT, got {s:?}"))?;
    let width = w
        .trim()
        .parse()
        .map_err(|_| format!("bad width in {s:?}"))?;
    let height = h
        .trim()
        .parse()
        .map_err(|_| format!("bad height in {s:?}"))?;
    if width == 0 || height == 0 {
        return Err(format!("sensor size must be positive, got {s:?}"));
    }
    Ok(prism_events::SensorSize { width, height })
}
