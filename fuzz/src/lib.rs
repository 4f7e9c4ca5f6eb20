//! Shared driver of the fuzz targets: write the input to a temp file, decode it all with
//! `open_with`, seek, decode again. Errors are expected; panics are bugs.

use std::path::PathBuf;

use prism_events::reader::{OutOfBounds, TimeOrder};
use prism_events::{open_with, EventChunk, ReaderOptions};

/// Decodes `header + data` written to a file named `name` in a per-process temp dir.
pub fn decode(name: &str, header: &[u8], data: &[u8]) {
    let dir = std::env::temp_dir().join(format!("prism-fuzz-{}", std::process::id()));
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let path: PathBuf = dir.join(name);
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(data);
    if std::fs::write(&path, &bytes).is_err() {
        return;
    }
    // The first input byte picks the options, so the fuzzer explores them too.
    let knob = data.first().copied().unwrap_or(0);
    let options = ReaderOptions {
        chunk_events: 1 + usize::from(knob & 0x1F),
        time_order: if knob & 0x20 != 0 {
            TimeOrder::Error
        } else {
            TimeOrder::Clamp
        },
        out_of_bounds: if knob & 0x40 != 0 {
            OutOfBounds::Error
        } else {
            OutOfBounds::Drop
        },
        sensor_size: None,
        format: None,
    };
    if let Ok(mut reader) = open_with(&path, options) {
        let mut chunk = EventChunk::default();
        while let Ok(true) = reader.read_chunk(&mut chunk) {
            assert!(chunk.len() <= options.chunk_events);
        }
        let target = data
            .get(1..9)
            .and_then(|b| b.try_into().ok())
            .map_or(0, i64::from_le_bytes);
        if reader.seek_time(target).is_ok() {
            while let Ok(true) = reader.read_chunk(&mut chunk) {}
        }
    }
    let _ = std::fs::remove_file(&path);
}
