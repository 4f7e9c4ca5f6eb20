//! Writes one synthetic scene and prints its size and generation speed.
//!
//! `cargo run --release -p prism-events --example synth_scene -- OUT_STEM [dat|evt2|evt3] [seconds] [seed] [WxH]`

use std::time::Instant;

use prism_events::synth::{write_scene, SceneConfig};
use prism_events::write::WriteFormat;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let stem = args.first().map(String::as_str).unwrap_or("synthetic");
    let format = match args.get(1).map(String::as_str).unwrap_or("evt3") {
        "dat" => WriteFormat::Dat,
        "evt2" => WriteFormat::Evt2,
        _ => WriteFormat::Evt3,
    };
    let mut config = SceneConfig::default();
    if let Some(s) = args.get(2) {
        config.duration_us = (s.parse::<f64>()? * 1e6) as i64;
    }
    if let Some(s) = args.get(3) {
        config.seed = s.parse()?;
    }
    if let Some((w, h)) = args.get(4).and_then(|s| s.split_once('x')) {
        config.width = w.parse()?;
        config.height = h.parse()?;
    }
    let start = Instant::now();
    let files = write_scene(&config, stem, format)?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}: {} events, {} boxes in {:.2} s ({:.1} M events/s); labels in {}",
        files.events_path.display(),
        files.events,
        files.labels,
        secs,
        files.events as f64 / secs / 1e6,
        files.labels_path.display()
    );
    Ok(())
}
