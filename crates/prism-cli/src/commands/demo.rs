//! `prism demo`: the main job end to end on the embedded default.
//!
//! Today the pipeline reaches from events to network inputs: synthesize a labelled recording,
//! decode it, cut 50 ms windows, build RVT stacked histograms, render a few frames, summarize.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use prism_events::labels::read_bbox_npy;

use super::data::{inspect, render, synth};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo writes its recording and frames.
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// Seed of the synthetic scene.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

pub fn run(args: DemoArgs) -> Result<()> {
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;

    println!("1/4 synthesize a 5 s, 160x128 scene of cars and pedestrians (EVT3)");
    let started = Instant::now();
    let synth_args = synth::SynthArgs {
        out: args.out.join("scene"),
        format: synth::SynthFormat::Evt3,
        width: 160,
        height: 128,
        duration_s: 5.0,
        objects: 4,
        label_hz: 20.0,
        seed: args.seed,
    };
    let files = synth::synthesize(&synth_args)?;
    println!(
        "    {} events, {} boxes in {:.2} s -> {}",
        files.events,
        files.labels,
        started.elapsed().as_secs_f64(),
        files.events_path.display()
    );

    println!("2/4 decode it and check it");
    let started = Instant::now();
    let summary = inspect::summarize(&files.events_path, None)?;
    let labels = read_bbox_npy(&files.labels_path)?;
    println!(
        "    {} ({:?}), {} events over {:.2} s, {:.1} % ON, {} time repairs; {} labels; decoded in {:.3} s",
        summary.format,
        summary.sensor,
        summary.events,
        summary.duration_s,
        100.0 * summary.on_events as f64 / summary.events.max(1) as f64,
        summary.time_repairs,
        labels.len(),
        started.elapsed().as_secs_f64()
    );

    println!("3/4 cut 50 ms windows, build RVT stacked histograms (10 bins, cutoff 10), render");
    let started = Instant::now();
    let frames_dir = args.out.join("frames");
    let render_args = render::RenderArgs {
        file: files.events_path.clone(),
        window_ms: 50.0,
        out: frames_dir.clone(),
        bins: 10,
        max_frames: 8,
        downsample: false,
        sensor: None,
        saturation: 4,
        labels: None,
        scale: 0,
    };
    let frames = render::render(&render_args)?;
    println!(
        "    {} frames in {:.3} s -> {}",
        frames.len(),
        started.elapsed().as_secs_f64(),
        frames_dir.display()
    );

    println!("4/4 summary");
    println!("    recording  {}", files.events_path.display());
    println!("    labels     {}", files.labels_path.display());
    println!("    frames     {}", frames_dir.display());
    Ok(())
}
