//! `prism data render FILE --window-ms 50 --out DIR`: stacked histograms as PNG frames.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use prism_events::labels::{read_bbox_npy, BoxLabel};
use prism_events::repr::{HistogramConfig, StackedHistogram};
use prism_events::viz::histogram_to_rgb;
use prism_events::window::{WindowConfig, WindowSlicer};
use prism_events::{EventChunk, ReaderOptions, SensorSize};

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// A `.dat`, EVT2/EVT3 `.raw` or HDF5 event file.
    pub file: PathBuf,
    /// Window length in milliseconds (one frame per window).
    #[arg(long, default_value_t = 50.0)]
    pub window_ms: f64,
    /// Folder for the frames (`frame_00000.png`, …); created if missing.
    #[arg(long)]
    pub out: PathBuf,
    /// Time bins per polarity of the stacked histogram (1 to 255).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(1..))]
    pub bins: u8,
    /// Stop after this many frames.
    #[arg(long, default_value_t = 20)]
    pub max_frames: usize,
    /// Halve the histogram with `nearest-exact`, as RVT does for 1Mpx recordings.
    #[arg(long)]
    pub downsample: bool,
    /// Sensor size for files that do not declare it (e.g. `640x480`).
    #[arg(long, value_parser = super::parse_sensor_size)]
    pub sensor: Option<SensorSize>,
    /// The file's format (`dat`, `evt2`, `evt3`, `hdf5`, `aedat4`) when its content cannot tell it:
    /// a DAT file without a `%` header is read only with `--format dat` and `--sensor`.
    #[arg(long)]
    pub format: Option<prism_events::Format>,
    /// Events per pixel (summed over bins) drawn at full colour.
    #[arg(long, default_value_t = 4)]
    pub saturation: u32,
    /// Prophesee `_bbox.npy` labels to draw; by default `<stem>_bbox.npy` beside a `<stem>_td.*`
    /// recording is used when it exists.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Enlarge frames this many times (0: enough to make them at least 640 pixels wide).
    #[arg(long, default_value_t = 0)]
    pub scale: usize,
}

/// Largest frame side in pixels.
const MAX_FRAME_SIDE: usize = 16_384;

/// Colour of ground-truth boxes.
const LABEL_COLOUR: [u8; 3] = [90, 230, 90];

/// `<stem>_bbox.npy` for a `<stem>_td.<ext>` recording, if it exists.
fn labels_beside(recording: &Path) -> Option<PathBuf> {
    let name = recording.file_name()?.to_str()?;
    let stem = &name[..name.rfind("_td.")?];
    let candidate = recording.with_file_name(format!("{stem}_bbox.npy"));
    candidate.exists().then_some(candidate)
}

pub fn run(args: RenderArgs) -> Result<()> {
    let written = render(&args)?;
    outln!(
        "wrote {} frames of {} ms to {}",
        written.len(),
        args.window_ms,
        args.out.display()
    )?;
    Ok(())
}

/// Renders the first windows of `args.file`; returns the PNG paths written.
pub fn render(args: &RenderArgs) -> Result<Vec<PathBuf>> {
    if !(args.window_ms > 0.0 && args.window_ms <= 3_600_000.0) {
        bail!(
            "--window-ms must be positive and at most one hour (3600000), got {}",
            args.window_ms
        );
    }
    let options = ReaderOptions {
        sensor_size: args.sensor,
        format: args.format,
        ..ReaderOptions::default()
    };
    let mut reader = prism_events::open_with(&args.file, options)
        .with_context(|| format!("opening {}", args.file.display()))?;
    let Some(sensor) = reader.sensor_size() else {
        bail!(
            "{} does not declare its sensor size; pass --sensor WIDTHxHEIGHT",
            args.file.display()
        );
    };
    let config = HistogramConfig::rvt(sensor.width.into(), sensor.height.into())
        .with_bins(usize::from(args.bins))
        .with_downsample(args.downsample);
    let mut histogram = StackedHistogram::new(config)?;
    let [_, height, width] = histogram.shape();
    let window_us = (args.window_ms * 1000.0).round() as i64;
    let mut slicer = WindowSlicer::new(WindowConfig::new(window_us))?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let labels = match args.labels.clone().or_else(|| labels_beside(&args.file)) {
        Some(path) => {
            read_bbox_npy(&path).with_context(|| format!("reading {}", path.display()))?
        }
        None => Vec::new(),
    };
    let scale = if args.scale > 0 {
        args.scale
    } else {
        640usize.div_ceil(width).max(1)
    };
    if width.saturating_mul(scale) > MAX_FRAME_SIDE || height.saturating_mul(scale) > MAX_FRAME_SIDE
    {
        bail!(
            "--scale {scale} makes {}x{} frames; at most {MAX_FRAME_SIDE} pixels a side (the largest scale here is {})",
            width.saturating_mul(scale),
            height.saturating_mul(scale),
            (MAX_FRAME_SIDE / width.max(height)).max(1)
        );
    }
    // Boxes live in sensor pixels; the histogram may be downsampled.
    let box_scale = scale as f32 / if args.downsample { 2.0 } else { 1.0 };

    let mut written = Vec::new();
    let mut chunk = EventChunk::default();
    let mut more = true;
    while more && written.len() < args.max_frames {
        more = reader.read_chunk(&mut chunk)?;
        if more {
            slicer.push(chunk.as_slice())?;
        } else {
            slicer.finish();
        }
        while written.len() < args.max_frames {
            let Some(window) = slicer.next_window() else {
                break;
            };
            let hist = histogram.build(window.events)?;
            let mut image =
                histogram_to_rgb(hist, usize::from(args.bins), height, width, args.saturation)?
                    .upscaled(scale);
            for label in labels_in_window(&labels, window.start_us, window.end_us) {
                image.draw_rect(
                    label.x * box_scale,
                    label.y * box_scale,
                    label.w * box_scale,
                    label.h * box_scale,
                    LABEL_COLOUR,
                    scale.min(2) as i64,
                );
            }
            let path = frame_path(&args.out, written.len());
            image.write_png(&path)?;
            written.push(path);
        }
    }
    Ok(written)
}

/// The boxes of the latest label time inside `[start, end]`.
fn labels_in_window(labels: &[BoxLabel], start: i64, end: i64) -> impl Iterator<Item = &BoxLabel> {
    let latest = labels
        .iter()
        .map(|l| l.t)
        .filter(|&t| (start..=end).contains(&t))
        .max();
    labels.iter().filter(move |l| Some(l.t) == latest)
}

fn frame_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("frame_{index:05}.png"))
}
