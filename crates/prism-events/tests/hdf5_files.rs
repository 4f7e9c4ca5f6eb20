//! The HDF5 reader on files written by h5py (the provisioned Python environment): RVT layout
//! (gzip + chunked, negative polarities, declared size), DSEC layout (`ms_to_idx`, `t_offset`,
//! u32 relative time) and an uncompressed contiguous file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use prism_events::reader::{read_all, OutOfBounds, TimeOrder};
use prism_events::testdata::python;
use prism_events::{open, open_with, EventChunk, EventError, Format, ReaderOptions, SensorSize};

const SCRIPT: &str = r#"
import sys, numpy as np, h5py
out = sys.argv[1]
rng = np.random.default_rng(7)
n = 200_003
t = np.cumsum(rng.integers(0, 40, n)).astype(np.int64) + 5_000
x = rng.integers(0, 640, n).astype(np.uint16)
y = rng.integers(0, 480, n).astype(np.uint16)
p01 = rng.integers(0, 2, n)
# Expected stream: t, x, y, p as int64 little-endian, column after column.
np.concatenate([t, x.astype(np.int64), y.astype(np.int64), p01.astype(np.int64)]).astype('<i8').tofile(out + "/expected.bin")

with h5py.File(out + "/rvt.h5", "w") as f:
    g = f.create_group("events")
    kw = dict(chunks=(4096,), compression="gzip", compression_opts=4)
    g.create_dataset("x", data=x, **kw)
    g.create_dataset("y", data=y, **kw)
    g.create_dataset("p", data=np.where(p01 > 0, 1, -1).astype(np.int8), **kw)
    g.create_dataset("t", data=t, **kw)
    g.create_dataset("height", data=480)
    g.create_dataset("width", data=640)

t_offset = 1_600_000_000_000
with h5py.File(out + "/dsec.h5", "w") as f:
    g = f.create_group("events")
    kw = dict(chunks=(10_000,), compression="gzip")
    g.create_dataset("p", data=p01.astype(np.uint8), **kw)
    g.create_dataset("x", data=x, **kw)
    g.create_dataset("y", data=y, **kw)
    g.create_dataset("t", data=t.astype(np.uint32), **kw)
    ms = np.arange(0, t[-1] // 1000 + 1)
    f.create_dataset("ms_to_idx", data=np.searchsorted(t, ms * 1000, side="left").astype(np.uint64))
    f.create_dataset("t_offset", data=np.int64(t_offset))

with h5py.File(out + "/plain.h5", "w") as f:
    g = f.create_group("events")
    g.create_dataset("x", data=x)
    g.create_dataset("y", data=y)
    g.create_dataset("p", data=p01.astype(np.uint8))
    g.create_dataset("t", data=t)

# Backwards time and an out-of-sensor pixel.
with h5py.File(out + "/bad.h5", "w") as f:
    g = f.create_group("events")
    g.create_dataset("x", data=np.array([1, 2, 700, 3], dtype=np.uint16))
    g.create_dataset("y", data=np.array([1, 2, 3, 4], dtype=np.uint16))
    g.create_dataset("p", data=np.array([0, 1, 1, 0], dtype=np.uint8))
    g.create_dataset("t", data=np.array([10, 5, 20, 30], dtype=np.int64))
    g.create_dataset("height", data=480)
    g.create_dataset("width", data=640)

# Backwards jitter and rare spikes far ahead: seeks must still be exact.
step = rng.integers(0, 7, n)
jt = np.cumsum(step).astype(np.int64) + 1_000
kind = rng.integers(0, 40_000, n)
jt = np.where(kind < 5, jt + 100_000 + rng.integers(0, 50_000, n), jt)
jt = np.where((kind >= 5) & (kind <= 80), np.maximum(jt - rng.integers(0, 3_000, n), 0), jt)
with h5py.File(out + "/jitter.h5", "w") as f:
    g = f.create_group("events")
    kw = dict(chunks=(4096,), compression="gzip")
    g.create_dataset("x", data=x, **kw)
    g.create_dataset("y", data=y, **kw)
    g.create_dataset("p", data=p01.astype(np.uint8), **kw)
    g.create_dataset("t", data=jt, **kw)

with h5py.File(out + "/mismatch.h5", "w") as f:
    g = f.create_group("events")
    for name, k in [("x", 3), ("y", 3), ("p", 3), ("t", 4)]:
        g.create_dataset(name, data=np.zeros(k, dtype=np.int64))
"#;

/// Writes the files into a fresh temp dir; `None` when the Python environment is missing.
fn fixtures() -> Option<(tempfile::TempDir, EventChunk)> {
    let python = python()?;
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(python)
        .arg("-c")
        .arg(SCRIPT)
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "h5py fixture script failed");
    let bytes = std::fs::read(dir.path().join("expected.bin")).unwrap();
    let v: Vec<i64> = bytes
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let n = v.len() / 4;
    let expected = EventChunk {
        t: v[..n].to_vec(),
        x: v[n..2 * n].iter().map(|&x| x as u16).collect(),
        y: v[2 * n..3 * n].iter().map(|&y| y as u16).collect(),
        p: v[3 * n..].iter().map(|&p| p as u8).collect(),
    };
    Some((dir, expected))
}

fn decode(path: &Path, options: ReaderOptions) -> EventChunk {
    let mut reader = open_with(path, options).unwrap();
    assert_eq!(reader.format(), Format::Hdf5);
    read_all(reader.as_mut()).unwrap()
}

fn shifted(chunk: &EventChunk, dt: i64) -> EventChunk {
    let mut c = chunk.clone();
    c.t.iter_mut().for_each(|t| *t += dt);
    c
}

fn check_seeks(path: &PathBuf, full: &EventChunk) {
    let mut reader = open_with(
        path,
        ReaderOptions {
            chunk_events: 5000,
            ..ReaderOptions::default()
        },
    )
    .unwrap();
    let (first, last) = (full.t[0], *full.t.last().unwrap());
    let targets = [
        i64::MIN,
        first - 1,
        first,
        full.t[777],
        full.t[100_000] + 1,
        (first + last) / 2,
        last,
        last + 1,
    ];
    for &target in targets.iter().chain(targets.iter().rev()) {
        reader.seek_time(target).unwrap();
        let got = read_all(reader.as_mut()).unwrap();
        let mut want = full.clone();
        want.drain_front(full.t.partition_point(|&t| t < target));
        assert!(
            got == want,
            "{} seek to {target}: {} vs {} events",
            path.display(),
            got.len(),
            want.len()
        );
    }
}

#[test]
fn h5py_files_decode_seek_and_chunk() {
    let Some((dir, expected)) = fixtures() else {
        return;
    };
    let dsec_expected = shifted(&expected, 1_600_000_000_000);
    let cases = [
        ("rvt.h5", &expected),
        ("dsec.h5", &dsec_expected),
        ("plain.h5", &expected),
    ];
    for (name, want) in cases {
        let path = dir.path().join(name);
        let options = ReaderOptions {
            sensor_size: Some(SensorSize {
                width: 640,
                height: 480,
            }),
            ..ReaderOptions::default()
        };
        let got = decode(&path, options);
        assert!(got == *want, "{name}: {} events decoded", got.len());
        for chunk_events in [1, 7, 4096] {
            let chunked = decode(
                &path,
                ReaderOptions {
                    chunk_events,
                    ..options
                },
            );
            if chunk_events == 1 {
                // chunk size 1 reads every event through the same path; a prefix is enough.
                assert_eq!(chunked.len(), want.len());
            }
            assert!(chunked == *want, "{name} chunk {chunk_events}");
        }
        check_seeks(&path, want);
    }
    let reader = open_with(dir.path().join("rvt.h5"), ReaderOptions::default()).unwrap();
    assert_eq!(
        reader.sensor_size(),
        Some(SensorSize {
            width: 640,
            height: 480
        })
    );
    let reader = open_with(dir.path().join("plain.h5"), ReaderOptions::default()).unwrap();
    assert_eq!(reader.sensor_size(), None);
}

#[test]
fn h5py_bad_files_follow_the_policies() {
    let Some((dir, _)) = fixtures() else { return };
    let bad = dir.path().join("bad.h5");
    let drop = ReaderOptions {
        out_of_bounds: OutOfBounds::Drop,
        ..ReaderOptions::default()
    };
    let mut reader = open_with(&bad, drop).unwrap();
    let got = read_all(reader.as_mut()).unwrap();
    assert_eq!(got.t, vec![10, 10, 30]);
    assert_eq!(got.x, vec![1, 2, 3]);
    assert_eq!(
        (
            reader.stats().time_repairs,
            reader.stats().dropped_out_of_bounds
        ),
        (1, 1)
    );

    let mut reader = open_with(
        &bad,
        ReaderOptions {
            time_order: TimeOrder::Error,
            ..drop
        },
    )
    .unwrap();
    assert!(matches!(
        read_all(reader.as_mut()),
        Err(EventError::TimeBackwards {
            offset: 1,
            prev: 10,
            t: 5,
            ..
        })
    ));
    let mut reader = open_with(&bad, ReaderOptions::default()).unwrap();
    let err = read_all(reader.as_mut());
    assert!(
        matches!(
            err,
            Err(EventError::OutOfBounds {
                x: 700,
                offset: 2,
                ..
            })
        ),
        "{err:?}"
    );
    // HDF5 has no byte offsets: the message names the event.
    let message = err.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("the event number 2 lies outside"),
        "{message}"
    );

    let err = open_with(dir.path().join("mismatch.h5"), ReaderOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, EventError::Hdf5 { .. }), "{err}");
    assert!(err.to_string().contains("events/x"), "{err}");
}

/// Mutated HDF5 files (byte flips anywhere, including the superblock, object headers, B-trees
/// and compressed chunks) give an error, never a panic.
#[test]
fn mutated_h5_files_never_panic() {
    let Some((dir, _)) = fixtures() else { return };
    let original = std::fs::read(dir.path().join("bad.h5")).unwrap();
    let compressed = std::fs::read(dir.path().join("rvt.h5")).unwrap();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for case in 0..300 {
        let source = if case % 3 == 0 {
            &compressed[..compressed.len().min(200_000)]
        } else {
            &original[..]
        };
        let mut bytes = source.to_vec();
        for _ in 0..1 + next() % 8 {
            let i = (next() % bytes.len() as u64) as usize;
            bytes[i] = next() as u8;
        }
        if case % 5 == 0 {
            bytes.truncate((next() % bytes.len() as u64) as usize);
        }
        let path = dir.path().join(format!("mut{case}.h5"));
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(mut reader) = open_with(
            &path,
            ReaderOptions {
                chunk_events: 777,
                ..ReaderOptions::default()
            },
        ) {
            let mut chunk = EventChunk::default();
            while let Ok(true) = reader.read_chunk(&mut chunk) {}
            let _ = reader.seek_time(7);
            while let Ok(true) = reader.read_chunk(&mut chunk) {}
        }
        std::fs::remove_file(&path).unwrap();
    }
}

/// A fuzzing find: an attribute's array datatype whose base type starts past the end of its
/// message made rust-hdf5 0.7.9 index out of bounds while opening the file. It must be an error
/// naming the file.
#[test]
fn an_hdf5_file_that_panics_the_hdf5_crate_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("array-datatype.h5");
    std::fs::write(&path, include_bytes!("regressions/hdf5-array-datatype.h5")).unwrap();
    let err = match open(&path) {
        Ok(mut reader) => read_all(reader.as_mut()).unwrap_err(),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(matches!(err, EventError::Hdf5 { .. }), "{msg}");
    assert!(
        msg.contains("array-datatype.h5") && msg.contains("malformed file"),
        "{msg}"
    );
}

#[test]
fn h5py_seek_is_exact_when_time_goes_backwards() {
    let Some((dir, _)) = fixtures() else { return };
    let path = dir.path().join("jitter.h5");
    let open = || {
        open_with(
            &path,
            ReaderOptions {
                chunk_events: 3000,
                ..ReaderOptions::default()
            },
        )
        .unwrap()
    };
    let mut reader = open();
    let full = read_all(reader.as_mut()).unwrap();
    assert!(
        reader.stats().time_repairs > 1_000,
        "the times do go backwards"
    );
    // Every clamped run starts where a spike sets a new running maximum.
    let spikes: Vec<i64> = full
        .t
        .windows(2)
        .filter(|w| w[1] > w[0] + 50_000)
        .map(|w| w[1])
        .collect();
    assert!(spikes.len() >= 3, "{} spikes", spikes.len());
    let mut targets = vec![i64::MIN, full.t[full.len() / 2], full.t[full.len() - 1] + 1];
    for &spike in &spikes {
        targets.extend([spike - 1, spike, spike + 1]);
    }
    let check = |reader: &mut dyn prism_events::EventReader, target: i64| {
        reader.seek_time(target).unwrap();
        let got = read_all(reader).unwrap();
        let mut want = full.clone();
        want.drain_front(full.t.partition_point(|&t| t < target));
        assert!(
            got == want,
            "seek to {target}: {} events, a full read {}",
            got.len(),
            want.len()
        );
    };
    for &target in targets.iter().chain(targets.iter().rev()) {
        check(reader.as_mut(), target);
    }
    for &target in targets.iter().step_by(5) {
        check(open().as_mut(), target);
    }
}
