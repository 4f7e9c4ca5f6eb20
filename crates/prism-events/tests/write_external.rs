//! Our EVT 2.0 / 3.0 writers against an independent decoder: evlib (Python package of the
//! provisioned environment) must read back exactly the events we wrote, including EVT3 vector
//! words and the 24-bit time-base wrap.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use prism_events::synth::rng::SplitMix64;
use prism_events::write::{self, WriteFormat};
use prism_events::{testdata, EventChunk, SensorSize};

const SENSOR: SensorSize = SensorSize {
    width: 320,
    height: 240,
};

/// Sorted events with same-row bursts (EVT3 vectors), running past `t_end`.
fn events(seed: u64, t_start: i64, t_end: i64) -> EventChunk {
    let mut rng = SplitMix64::new(seed);
    let mut chunk = EventChunk::default();
    let mut t = t_start;
    while t < t_end {
        t += (rng.next_u64() % 4000) as i64;
        let y = (rng.next_u64() % 240) as u16;
        let p = (rng.next_u64() & 1) as u8;
        let mut x = (rng.next_u64() % 300) as u16;
        for _ in 0..1 + rng.next_u64() % 20 {
            chunk.push(t, x, y, p);
            x += 1 + (rng.next_u64() % 2) as u16;
            if x >= SENSOR.width {
                break;
            }
        }
    }
    chunk
}

/// Decodes `path` with evlib and returns (t, x, y, p) as i64 columns.
fn evlib_decode(python: &std::path::Path, path: &std::path::Path) -> Option<[Vec<i64>; 4]> {
    let out = path.with_extension("bin");
    let script = format!(
        "import sys\ntry:\n    import evlib, polars as pl, numpy as np\nexcept ImportError:\n    sys.exit(3)\n\
         df = evlib.load_events({:?})\ndf = df.collect() if hasattr(df, 'collect') else df\n\
         cols = [df['t'].cast(pl.Int64).to_numpy(), df['x'].to_numpy(), df['y'].to_numpy(), (df['polarity'].to_numpy() > 0)]\n\
         np.concatenate([np.asarray(c, dtype='<i8') for c in cols]).tofile({:?})\n",
        path.to_str().unwrap(),
        out.to_str().unwrap()
    );
    let status = Command::new(python)
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    if status.status.code() == Some(3) {
        eprintln!("SKIPPED: evlib is not installed in the Python environment");
        return None;
    }
    assert!(
        status.status.success(),
        "evlib failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let bytes = std::fs::read(&out).unwrap();
    let all: Vec<i64> = bytes
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let n = all.len() / 4;
    Some([0, 1, 2, 3].map(|k| all[k * n..(k + 1) * n].to_vec()))
}

#[test]
fn evlib_reads_our_evt2_and_evt3_files_exactly() {
    let Some(python) = testdata::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // 16.0 s to 18.5 s crosses the EVT3 wrap at 16,777,216 µs.
    let written = events(11, 16_000_000, 18_500_000);
    for format in [WriteFormat::Evt2, WriteFormat::Evt3] {
        let path = dir.path().join(format!("{format:?}.raw"));
        let mut writer = write::create(&path, format, SENSOR).unwrap();
        writer.write_chunk(&written).unwrap();
        writer.finish().unwrap();
        let Some([t, x, y, p]) = evlib_decode(&python, &path) else {
            return;
        };
        assert_eq!(t.len(), written.len(), "{format:?}: event count");
        for i in 0..written.len() {
            let want = (
                written.t[i],
                i64::from(written.x[i]),
                i64::from(written.y[i]),
                i64::from(written.p[i]),
            );
            assert_eq!((t[i], x[i], y[i], p[i]), want, "{format:?}: event {i}");
        }
    }
}
