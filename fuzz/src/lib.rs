//! Shared driver of the fuzz targets: write the input to a temp file, decode it all with
//! `open_with`, seek, decode again. Errors are expected; panics are bugs.

use std::path::PathBuf;

use prism_events::reader::{OutOfBounds, TimeOrder};
use prism_events::{open_with, EventChunk, ReaderOptions};

/// Decodes `header + data` written to a file named `name` in a per-process temp dir. The first
/// input byte picks the reader options, the next eight the seek target.
pub fn decode(name: &str, header: &[u8], data: &[u8]) {
    let knob = data.first().copied().unwrap_or(0);
    let target = data
        .get(1..9)
        .and_then(|b| b.try_into().ok())
        .map_or(0, i64::from_le_bytes);
    decode_with(name, header, data, knob, target);
}

/// libFuzzer's panic hook aborts on every panic, also on one that is caught. The HDF5 reader
/// catches panics inside the `rust-hdf5` crate and returns them as errors (see
/// `prism_events::hdf5`), so those pass; any other panic still aborts and is a finding.
fn let_caught_panics_unwind() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let fuzzer_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !prism_events::hdf5::is_caught_panic(info) {
                fuzzer_hook(info);
            }
        }));
    });
}

/// [`decode`] with the options byte (`knob`) and the seek target given apart from the bytes.
pub fn decode_with(name: &str, header: &[u8], data: &[u8], knob: u8, target: i64) {
    let_caught_panics_unwind();
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
    // The options come from the input, so the fuzzer explores them too.
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
        if reader.seek_time(target).is_ok() {
            while let Ok(true) = reader.read_chunk(&mut chunk) {}
        }
    }
    let _ = std::fs::remove_file(&path);
}

/// Writes `data` as an RVT histogram file and reads every window of it
/// ([`prism_data::rvt_layout::read_histogram_file`]); errors are fine, panics are findings.
pub fn read_rvt_histograms(data: &[u8]) {
    let_caught_panics_unwind();
    let dir = std::env::temp_dir().join(format!("prism-fuzz-{}", std::process::id()));
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let path = dir.join("event_representations.h5");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(read) = prism_data::rvt_layout::read_histogram_file(&path, 32) {
        let [windows, channels, height, width] = read.shape;
        assert_eq!(read.windows.num_windows(), windows);
        let cells = channels * height.div_ceil(32) * 32 * width.div_ceil(32) * 32;
        assert_eq!(read.windows.cells(), cells);
    }
}
