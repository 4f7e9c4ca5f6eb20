//! Decode throughput of the DAT / EVT2 / EVT3 readers on the faery recordings (or given files):
//! median (and best) of 15 full decodes, million events per second, files in the page cache.
//!
//! `cargo run --release -p prism-events --example decode_speed [FILE...]`

use std::path::PathBuf;
use std::time::Instant;

use prism_events::{open_with, EventChunk, ReaderOptions};

const RUNS: usize = 15;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut files: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if files.is_empty() {
        let dir = prism_events::testdata::env_dir().join("data/faery");
        files = ["gen4.dat", "evt3.raw", "evt2.raw"]
            .iter()
            .map(|n| dir.join(n))
            .collect();
    }
    for file in files {
        let mut times = Vec::new();
        let mut events = 0;
        for _ in 0..RUNS {
            let start = Instant::now();
            let mut reader = open_with(&file, ReaderOptions::default())?;
            let mut chunk = EventChunk::default();
            events = 0;
            while reader.read_chunk(&mut chunk)? {
                events += chunk.len();
            }
            times.push(start.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let (median, best) = (times[times.len() / 2], times[0]);
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!(
            "{name:<12} {events:>9} events  median {:>7.2} ms {:>6.1} Mev/s  best {:>7.2} ms {:>6.1} Mev/s",
            median * 1e3,
            events as f64 / median * 1e-6,
            best * 1e3,
            events as f64 / best * 1e-6
        );
    }
    Ok(())
}
