//! `prism data inspect FILE`: what a recording holds, and what is wrong with it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use prism_events::reader::{OutOfBounds, TimeOrder};
use prism_events::{EventChunk, ReaderOptions, SensorSize};
use serde::Serialize;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A `.dat`, EVT2/EVT3 `.raw`, HDF5 or AEDAT 4.0 `.aedat4` event file.
    pub file: PathBuf,
    /// Sensor size for files that do not declare it (e.g. `640x480`).
    #[arg(long, value_parser = super::parse_sensor_size)]
    pub sensor: Option<SensorSize>,
    /// The file's format (`dat`, `evt2`, `evt3`, `hdf5`, `aedat4`) when its content cannot tell it:
    /// a DAT file without a `%` header is read only with `--format dat` and `--sensor`.
    #[arg(long)]
    pub format: Option<prism_events::Format>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Everything `inspect` reports.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub file: String,
    pub format: String,
    pub sensor: Option<(u16, u16)>,
    pub events: u64,
    pub on_events: u64,
    pub off_events: u64,
    pub first_t_us: Option<i64>,
    pub last_t_us: Option<i64>,
    pub duration_s: f64,
    pub events_per_s: f64,
    pub max_x: u16,
    pub max_y: u16,
    /// Timestamps that went backwards and were clamped to the running maximum.
    pub time_repairs: u64,
    /// Events outside the declared sensor, dropped.
    pub out_of_bounds: u64,
}

pub fn run(args: InspectArgs) -> Result<()> {
    let summary = summarize(&args.file, args.sensor, args.format)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&summary)?)?;
    } else {
        print_summary(&summary)?;
    }
    Ok(())
}

/// Reads the whole file once, in bounded chunks, counting what `inspect` reports.
pub fn summarize(
    file: &std::path::Path,
    sensor: Option<SensorSize>,
    format: Option<prism_events::Format>,
) -> Result<Summary> {
    let options = ReaderOptions {
        format,
        time_order: TimeOrder::Clamp,
        out_of_bounds: OutOfBounds::Drop,
        sensor_size: sensor,
        ..ReaderOptions::default()
    };
    let mut reader = prism_events::open_with(file, options)
        .with_context(|| format!("opening {}", file.display()))?;
    let mut summary = Summary {
        file: file.display().to_string(),
        format: reader.format().to_string(),
        sensor: reader.sensor_size().map(|s| (s.width, s.height)),
        ..Summary::default()
    };
    let mut chunk = EventChunk::default();
    while reader.read_chunk(&mut chunk)? {
        let on = chunk.p.iter().filter(|&&p| p != 0).count() as u64;
        summary.on_events += on;
        summary.off_events += chunk.len() as u64 - on;
        summary.max_x = summary
            .max_x
            .max(chunk.x.iter().copied().max().unwrap_or(0));
        summary.max_y = summary
            .max_y
            .max(chunk.y.iter().copied().max().unwrap_or(0));
    }
    let stats = reader.stats();
    summary.events = stats.events;
    summary.first_t_us = stats.first_t;
    summary.last_t_us = stats.last_t;
    summary.time_repairs = stats.time_repairs;
    summary.out_of_bounds = stats.dropped_out_of_bounds;
    if let (Some(first), Some(last)) = (stats.first_t, stats.last_t) {
        summary.duration_s = (last - first) as f64 * 1e-6;
        if summary.duration_s > 0.0 {
            summary.events_per_s = summary.events as f64 / summary.duration_s;
        }
    }
    Ok(summary)
}

fn print_summary(s: &Summary) -> std::io::Result<()> {
    let percent = |n: u64| {
        if s.events == 0 {
            0.0
        } else {
            100.0 * n as f64 / s.events as f64
        }
    };
    outln!("file         {}", s.file)?;
    outln!("format       {}", s.format)?;
    match s.sensor {
        Some((w, h)) => outln!("sensor       {w}x{h}")?,
        None => outln!(
            "sensor       not declared (largest coordinates seen: x={}, y={})",
            s.max_x,
            s.max_y
        )?,
    }
    outln!("events       {}", s.events)?;
    match (s.first_t_us, s.last_t_us) {
        (Some(first), Some(last)) => {
            outln!("time         {first} .. {last} µs ({:.3} s)", s.duration_s)?;
            outln!("event rate   {:.3} Mev/s", s.events_per_s * 1e-6)?;
        }
        _ => outln!("time         (no events)")?,
    }
    outln!(
        "polarity     ON {} ({:.1} %), OFF {} ({:.1} %)",
        s.on_events,
        percent(s.on_events),
        s.off_events,
        percent(s.off_events)
    )?;
    if s.time_repairs == 0 && s.out_of_bounds == 0 {
        outln!("problems     none (timestamps non-decreasing, all events inside the sensor)")?;
    } else {
        outln!(
            "problems     {} timestamps went backwards (clamped to the running maximum, as RVT does); {} events outside the sensor (dropped)",
            s.time_repairs, s.out_of_bounds
        )?;
    }
    Ok(())
}
