//! Property tests: whatever bytes follow a valid header, and however a real recording is
//! mutated, the decoders return events or an error and never panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use prism_events::reader::{OutOfBounds, TimeOrder};
use prism_events::{open_with, EventChunk, Format, ReaderOptions, SensorSize};
use proptest::prelude::*;

/// Opens, reads everything, seeks to `seek` and reads again; errors are fine, panics are not.
/// A `.dat` file without a header is read the only way it can be: as named bare records of a
/// given sensor size.
fn exercise(path: &Path, chunk_events: usize, seek: i64, strict: bool) {
    let bare_dat = path.extension().is_some_and(|e| e == "dat")
        && !std::fs::read(path).unwrap().starts_with(b"%");
    let options = ReaderOptions {
        chunk_events,
        time_order: if strict {
            TimeOrder::Error
        } else {
            TimeOrder::Clamp
        },
        out_of_bounds: if strict {
            OutOfBounds::Error
        } else {
            OutOfBounds::Drop
        },
        sensor_size: bare_dat.then_some(SensorSize {
            width: 1280,
            height: 720,
        }),
        format: bare_dat.then_some(Format::Dat),
    };
    let Ok(mut reader) = open_with(path, options) else {
        return;
    };
    let mut chunk = EventChunk::default();
    let mut total = 0;
    while let Ok(true) = reader.read_chunk(&mut chunk) {
        assert!(chunk.len() <= chunk_events);
        total += chunk.len();
    }
    if reader.seek_time(seek).is_ok() {
        while let Ok(true) = reader.read_chunk(&mut chunk) {
            assert!(chunk.t.first().is_none_or(|&t| strict || t >= seek));
        }
    }
    let _ = total;
}

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

const HEADERS: [(&str, &[u8]); 5] = [
    ("a.dat", b"% Height 720\n% Width 1280\n\x0c\x08"),
    ("b.dat", b""),
    ("c.raw", b"% evt 2.0\n% geometry 640x480\n"),
    (
        "d.raw",
        b"% evt 3.0\n% format EVT3;height=720;width=1280\n% end\n",
    ),
    ("e.raw", b"% evt 3.0\n"),
];

/// The first `len` bytes of a faery recording, if provisioned (read once per test case; the
/// files are in the page cache).
fn real_prefix(name: &str, len: usize) -> Option<Vec<u8>> {
    let path = prism_events::testdata::env_dir()
        .join("data/faery")
        .join(name);
    let bytes = std::fs::read(path).ok()?;
    Some(bytes[..len.min(bytes.len())].to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_after_a_header_never_panic(
        which in 0..HEADERS.len(),
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        chunk_events in 1usize..40,
        seek in any::<i64>(),
        strict in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (name, header) = HEADERS[which];
        let path = write(&dir, name, &[header, &body].concat());
        exercise(&path, chunk_events, seek, strict);
    }

    #[test]
    fn biased_words_never_panic(
        which in 2..HEADERS.len(),
        words in proptest::collection::vec((0u32..16, any::<u32>()), 0..512),
        chunk_events in 1usize..40,
        seek in -10i64..50_000_000,
    ) {
        // Word types drawn uniformly, so TIME_HIGH, vectors and wraps all occur.
        let dir = tempfile::tempdir().unwrap();
        let (name, header) = HEADERS[which];
        let mut bytes = header.to_vec();
        for (kind, payload) in words {
            if which == 2 {
                bytes.extend(((kind << 28) | (payload & 0x0FFF_FFFF)).to_le_bytes());
            } else {
                bytes.extend((((kind << 12) | (payload & 0xFFF)) as u16).to_le_bytes());
            }
        }
        let path = write(&dir, name, &bytes);
        exercise(&path, chunk_events, seek, false);
    }

    #[test]
    fn mutated_real_recordings_never_panic(
        which in 0usize..3,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..24),
        cut in any::<prop::sample::Index>(),
        chunk_events in 1usize..5000,
        seek in 0i64..1_000_000_000,
    ) {
        let name = ["gen4.dat", "evt3.raw", "evt2.raw"][which];
        let Some(mut bytes) = real_prefix(name, 48 * 1024) else { return Ok(()) };
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        bytes.truncate(bytes.len() - cut.index(64));
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, name, &bytes);
        exercise(&path, chunk_events, seek, false);
        exercise(&path, chunk_events, seek, true);
    }
}
