//! Edge cases of the DAT / EVT2 / EVT3 decoders on files built byte by byte: time wraps,
//! vector words split across chunks, backwards time, out-of-sensor pixels, truncation and bad
//! headers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use prism_events::reader::{read_all, OutOfBounds, TimeOrder};
use prism_events::{
    open_with, EventChunk, EventError, EventReader, Format, ReaderOptions, SensorSize,
};

/// A file in a temp dir that lives as long as the value.
struct TempFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn file(name: &str, bytes: &[u8]) -> TempFile {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    TempFile { _dir: dir, path }
}

fn opts(chunk_events: usize) -> ReaderOptions {
    ReaderOptions {
        chunk_events,
        ..ReaderOptions::default()
    }
}

fn reader(f: &TempFile, options: ReaderOptions) -> Box<dyn EventReader> {
    open_with(&f.path, options).unwrap()
}

fn all(f: &TempFile, options: ReaderOptions) -> EventChunk {
    read_all(reader(f, options).as_mut()).unwrap()
}

/// Reads chunk after chunk until the first error, returning what came before it and the error.
fn until_error(f: &TempFile, options: ReaderOptions) -> (EventChunk, Option<EventError>) {
    let mut r = reader(f, options);
    let mut got = EventChunk::default();
    let mut chunk = EventChunk::default();
    loop {
        match r.read_chunk(&mut chunk) {
            Ok(true) => got.extend_from(&chunk),
            Ok(false) => return (got, None),
            Err(e) => return (got, Some(e)),
        }
    }
}

// ---------- EVT 3.0 ----------

mod evt3 {
    pub fn y(y: u16) -> u16 {
        y & 0x7FF
    }
    pub fn x(x: u16, p: u16) -> u16 {
        0x2000 | (p << 11) | (x & 0x7FF)
    }
    pub fn base_x(x: u16, p: u16) -> u16 {
        0x3000 | (p << 11) | (x & 0x7FF)
    }
    pub fn vect12(mask: u16) -> u16 {
        0x4000 | (mask & 0xFFF)
    }
    pub fn vect8(mask: u16) -> u16 {
        0x5000 | (mask & 0xFF)
    }
    pub fn low(t: u16) -> u16 {
        0x6000 | (t & 0xFFF)
    }
    pub fn high(t: u16) -> u16 {
        0x8000 | (t & 0xFFF)
    }
    pub fn bytes(header: &str, words: &[u16]) -> Vec<u8> {
        let mut b = header.as_bytes().to_vec();
        b.extend(words.iter().flat_map(|w| w.to_le_bytes()));
        b
    }
    pub const HEADER: &str = "% evt 3.0\n% format EVT3;height=720;width=1280\n% end\n";
}

#[test]
fn evt3_counts_24_bit_time_loops() {
    use evt3::*;
    let words = [
        x(1, 1), // before the first TIME_HIGH: skipped
        high(0xFFF),
        low(0x800),
        y(5),
        x(10, 1),
        high(0x000), // wrap
        low(0x010),
        x(11, 0),
        high(0x001),
        x(12, 0),
        high(0xFFF), // wrap again
        high(0x002),
        x(13, 1),
    ];
    let f = file("wrap.raw", &bytes(HEADER, &words));
    let mut r = reader(&f, opts(1 << 16));
    assert_eq!(r.format(), Format::Evt3);
    assert_eq!(
        r.sensor_size(),
        Some(SensorSize {
            width: 1280,
            height: 720
        })
    );
    let ev = read_all(r.as_mut()).unwrap();
    let l = 1i64 << 24;
    assert_eq!(ev.t, vec![0xFFF800, l + 0x10, l + 0x1000, 2 * l + 0x2000]);
    assert_eq!(ev.x, vec![10, 11, 12, 13]);
    assert_eq!(ev.y, vec![5; 4]);
    assert_eq!(ev.p, vec![1, 0, 0, 1]);
    assert_eq!(r.stats().time_repairs, 0);
}

#[test]
fn evt3_vectors_split_cleanly_across_chunks() {
    use evt3::*;
    let words = [
        high(1),
        y(7),
        base_x(100, 1),
        vect12(0xFFF),
        vect8(0xFF),
        vect12(0b1000_0000_0101),
        low(5),
        x(3, 0),
        0x1000, // undefined type: skipped and counted
        0x7123, // CONTINUED_4
        0xA001, // EXT_TRIGGER
        base_x(200, 0),
        vect8(0x81),
    ];
    let f = file("vec.raw", &bytes(HEADER, &words));
    let full = all(&f, opts(1 << 16));
    let mut want_x: Vec<u16> = (100..120).collect();
    want_x.extend([120, 122, 131, 3, 200, 207]);
    assert_eq!(full.x, want_x);
    assert_eq!(full.t, [vec![4096; 23], vec![4101; 3]].concat());
    assert_eq!(full.p, [vec![1; 23], vec![0; 3]].concat());
    for chunk_events in 1..=25 {
        let mut r = reader(&f, opts(chunk_events));
        let mut got = EventChunk::default();
        let mut chunk = EventChunk::default();
        while r.read_chunk(&mut chunk).unwrap() {
            assert!(chunk.len() <= chunk_events);
            got.extend_from(&chunk);
        }
        assert_eq!(got, full, "chunk_events {chunk_events}");
        assert_eq!(r.stats().unknown_words, 1);
        assert_eq!(r.stats().events, 26);
    }
}

#[test]
fn evt3_backwards_time_is_clamped_or_refused() {
    use evt3::*;
    let words = [
        high(2),
        low(100),
        x(1, 0),
        low(50),
        x(2, 0),
        base_x(10, 1),
        vect8(0b11),
        low(200),
        x(3, 1),
    ];
    let f = file("back.raw", &bytes(HEADER, &words));
    let mut r = reader(&f, opts(16));
    let ev = read_all(r.as_mut()).unwrap();
    assert_eq!(ev.t, vec![8292, 8292, 8292, 8292, 8392]);
    assert_eq!(r.stats().time_repairs, 3);
    let strict = ReaderOptions {
        time_order: TimeOrder::Error,
        ..opts(16)
    };
    let (got, err) = until_error(&f, strict);
    assert!(got.is_empty());
    let header_len = HEADER.len() as u64;
    match err {
        Some(EventError::TimeBackwards {
            offset, prev, t, ..
        }) => {
            assert_eq!((offset, prev, t), (header_len + 8, 8292, 8242));
        }
        other => panic!("expected TimeBackwards, got {other:?}"),
    }
}

#[test]
fn evt3_out_of_bounds_policies() {
    use evt3::*;
    let words = [
        high(0),
        y(3),
        x(1279, 0),
        x(1280, 0),
        base_x(1275, 1),
        vect12(0xFFF),
        y(720),
        x(0, 0),
    ];
    let f = file("oob.raw", &bytes(HEADER, &words));
    let drop = ReaderOptions {
        out_of_bounds: OutOfBounds::Drop,
        ..opts(4)
    };
    let mut r = reader(&f, drop);
    let ev = read_all(r.as_mut()).unwrap();
    assert_eq!(ev.x, vec![1279, 1275, 1276, 1277, 1278, 1279]);
    assert_eq!(r.stats().dropped_out_of_bounds, 1 + 7 + 1);
    let (got, err) = until_error(&f, opts(1 << 16));
    assert!(got.is_empty());
    assert!(
        matches!(
            err,
            Some(EventError::OutOfBounds {
                x: 1280,
                y: 3,
                width: 1280,
                height: 720,
                ..
            })
        ),
        "{err:?}"
    );
    // Without a declared sensor nothing is checked.
    let f = file("nogeom.raw", &bytes("% evt 3.0\n", &words));
    assert_eq!(all(&f, opts(3)).len(), 15);
}

#[test]
fn evt3_truncated_word_is_reported_after_the_events() {
    use evt3::*;
    let mut b = bytes(HEADER, &[high(0), y(1), x(1, 1), x(2, 1)]);
    b.push(0x20);
    let f = file("trunc.raw", &b);
    let (got, err) = until_error(&f, opts(1 << 16));
    assert_eq!(got.x, vec![1, 2]);
    match err {
        Some(EventError::Corrupt { offset, .. }) => assert_eq!(offset, b.len() as u64 - 1),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn evt3_seek_restores_state_across_index_points() {
    use evt3::*;
    // 300k words (more than one seek-index stride), with wraps, vectors and a y that must be
    // carried across TIME_HIGH words.
    let mut words = Vec::new();
    for i in 0..20_000u32 {
        let th = i as u16 & 0xFFF; // wraps every 4096 TIME_HIGHs
        words.push(high(th));
        if i % 3 == 0 {
            words.push(y((i % 700) as u16));
        }
        for k in 0..4u16 {
            words.push(low(k * 1000));
            words.push(x(((i as u16) + k) % 1200, k & 1));
            words.push(base_x((k * 37) % 1200, 1));
            words.push(vect12(0x0F0F >> k));
        }
    }
    let f = file("seek.raw", &bytes(HEADER, &words));
    let mut r = reader(&f, opts(1 << 16));
    let full = read_all(r.as_mut()).unwrap();
    assert_eq!(r.stats().time_repairs, 0);
    assert!(*full.t.last().unwrap() > 4 << 24, "the loops were counted");
    let mut r = reader(&f, opts(1000));
    for target in [
        full.t[12_345],
        full.t[300_000] + 1,
        full.t[5],
        full.t[full.len() - 1],
        -5,
        full.t[200_000],
    ] {
        r.seek_time(target).unwrap();
        let got = read_all(r.as_mut()).unwrap();
        let mut want = full.clone();
        want.drain_front(full.t.partition_point(|&t| t < target));
        assert!(got == want, "seek to {target}");
    }
}

// ---------- EVT 2.0 ----------

fn evt2_cd(p: u32, ts: u32, x: u32, y: u32) -> u32 {
    (p << 28) | ((ts & 0x3F) << 22) | ((x & 0x7FF) << 11) | (y & 0x7FF)
}

fn evt2_high(t: u32) -> u32 {
    0x8000_0000 | (t & 0x0FFF_FFFF)
}

fn evt2_bytes(header: &str, words: &[u32]) -> Vec<u8> {
    let mut b = header.as_bytes().to_vec();
    b.extend(words.iter().flat_map(|w| w.to_le_bytes()));
    b
}

#[test]
fn evt2_counts_34_bit_time_loops_and_skips_other_words() {
    let words = [
        evt2_cd(1, 1, 1, 1), // before TIME_HIGH: skipped
        evt2_high(0x0FFF_FFFF),
        evt2_cd(1, 63, 639, 479),
        0xA000_0001,  // EXT_TRIGGER
        0xE000_0000,  // OTHERS
        0xF000_0000,  // CONTINUED
        0x5000_0000,  // undefined: counted
        evt2_high(0), // wrap
        evt2_cd(0, 2, 3, 4),
        evt2_high(5),
        evt2_cd(0, 0, 5, 6),
    ];
    let f = file(
        "wrap2.raw",
        &evt2_bytes("% evt 2.0\n% geometry 640x480\n", &words),
    );
    let mut r = reader(&f, opts(2));
    assert_eq!(r.format(), Format::Evt2);
    let ev = read_all(r.as_mut()).unwrap();
    let l = 1i64 << 34;
    assert_eq!(ev.t, vec![l - 1, l + 2, l + (5 << 6)]);
    assert_eq!(ev.x, vec![639, 3, 5]);
    assert_eq!(ev.y, vec![479, 4, 6]);
    assert_eq!(ev.p, vec![1, 0, 0]);
    assert_eq!(r.stats().unknown_words, 1);
    // Seeking lands on the same events.
    r.seek_time(l).unwrap();
    assert_eq!(read_all(r.as_mut()).unwrap().t, vec![l + 2, l + (5 << 6)]);
}

#[test]
fn evt2_policies_and_truncation() {
    let words = [
        evt2_high(10),
        evt2_cd(1, 5, 1, 1),
        evt2_cd(1, 3, 2, 2),
        evt2_cd(0, 9, 700, 2),
    ];
    let mut b = evt2_bytes("% format EVT2;height=480;width=640\n", &words);
    b.extend([1, 2]);
    let f = file("pol.raw", &b);
    let drop = ReaderOptions {
        out_of_bounds: OutOfBounds::Drop,
        ..opts(100)
    };
    let (got, err) = until_error(&f, drop);
    assert_eq!(got.t, vec![645, 645]);
    assert!(
        matches!(err, Some(EventError::Corrupt { offset, .. }) if offset == b.len() as u64 - 2),
        "{err:?}"
    );
    let (_, err) = until_error(
        &f,
        ReaderOptions {
            time_order: TimeOrder::Error,
            ..drop
        },
    );
    assert!(
        matches!(
            err,
            Some(EventError::TimeBackwards {
                prev: 645,
                t: 643,
                ..
            })
        ),
        "{err:?}"
    );
    let (_, err) = until_error(&f, opts(100));
    assert!(
        matches!(err, Some(EventError::OutOfBounds { x: 700, .. })),
        "{err:?}"
    );
}

// ---------- DAT ----------

fn dat_record(t: u32, x: u32, y: u32, p: u32) -> [u8; 8] {
    let w = (x & 0x3FFF) | ((y & 0x3FFF) << 14) | ((p & 1) << 28);
    let mut r = [0u8; 8];
    r[..4].copy_from_slice(&t.to_le_bytes());
    r[4..].copy_from_slice(&w.to_le_bytes());
    r
}

fn dat_bytes(type_size: &[u8], records: &[[u8; 8]]) -> Vec<u8> {
    let mut b =
        b"% Data file containing CD events\n% Version 2\n% Width 304\n% Height 240\n".to_vec();
    b.extend_from_slice(type_size);
    b.extend(records.iter().flatten());
    b
}

#[test]
fn dat_unwraps_u32_time_and_seeks_across_the_wrap() {
    let records = [
        dat_record(0xFFFF_FF00, 1, 2, 1),
        dat_record(0xFFFF_FFFF, 303, 239, 0),
        dat_record(0x10, 3, 4, 1),
        dat_record(0x20, 5, 6, 0),
    ];
    let f = file("wrap.dat", &dat_bytes(&[0x0C, 8], &records));
    let mut r = reader(&f, opts(3));
    assert_eq!(r.format(), Format::Dat);
    assert_eq!(
        r.sensor_size(),
        Some(SensorSize {
            width: 304,
            height: 240
        })
    );
    let ev = read_all(r.as_mut()).unwrap();
    let w = 1i64 << 32;
    assert_eq!(ev.t, vec![w - 256, w - 1, w + 16, w + 32]);
    assert_eq!(ev.x, vec![1, 303, 3, 5]);
    assert_eq!(ev.y, vec![2, 239, 4, 6]);
    assert_eq!(ev.p, vec![1, 0, 1, 0]);
    r.seek_time(w).unwrap();
    assert_eq!(read_all(r.as_mut()).unwrap().t, vec![w + 16, w + 32]);
    r.seek_time(0).unwrap();
    assert_eq!(read_all(r.as_mut()).unwrap().len(), 4);
}

#[test]
fn dat_headers_and_truncation() {
    let rec = [dat_record(1, 1, 1, 0), dat_record(2, 2, 2, 1)];
    // Wrong size byte.
    let f = file("size.dat", &dat_bytes(&[0x0C, 16], &rec));
    let err = open_with(&f.path, opts(10)).err().unwrap();
    assert!(
        matches!(err, EventError::BadHeader { .. }) && err.to_string().contains("16"),
        "{err}"
    );
    // External-trigger type byte.
    let f = file("trig.dat", &dat_bytes(&[0x0E, 8], &rec));
    assert!(matches!(
        open_with(&f.path, opts(10)),
        Err(EventError::BadHeader { .. })
    ));
    // Header only, without the type and size bytes.
    let f = file("hdr.dat", &dat_bytes(&[], &[]));
    assert!(matches!(
        open_with(&f.path, opts(10)),
        Err(EventError::BadHeader { .. })
    ));
    // Header, type and size, no events.
    let f = file("none.dat", &dat_bytes(&[0, 8], &[]));
    assert!(all(&f, opts(10)).is_empty());
    // No header at all: any bytes parse as records, so the extension alone is not enough.
    let bare = ReaderOptions {
        format: Some(Format::Dat),
        sensor_size: Some(SensorSize {
            width: 640,
            height: 480,
        }),
        ..opts(10)
    };
    for bytes in [&b""[..], &rec.concat()] {
        let f = file("bare.dat", bytes);
        match open_with(&f.path, opts(10)) {
            Err(EventError::UnknownFormat { reason, .. }) => {
                assert!(reason.contains("--format dat --sensor WxH"), "{reason}")
            }
            other => panic!(
                "expected UnknownFormat, got {:?}",
                other.map(|r| r.format())
            ),
        }
        // Named, without a sensor size: still refused, with what is missing.
        let named = ReaderOptions {
            sensor_size: None,
            ..bare
        };
        match open_with(&f.path, named) {
            Err(EventError::BadHeader { reason, .. }) => {
                assert!(reason.contains("--sensor WxH"), "{reason}")
            }
            other => panic!("expected BadHeader, got {:?}", other.map(|r| r.format())),
        }
    }
    // Named with its sensor size: bare records, as RVT reads them.
    let f = file("empty.dat", b"");
    assert!(all(&f, bare).is_empty());
    let f = file("bare.dat", &rec.concat());
    assert_eq!(all(&f, bare).t, vec![1, 2]);
    // Truncated last record: the complete ones, then an error naming its offset.
    let mut b = dat_bytes(&[0x0C, 8], &rec);
    let full_len = b.len() as u64;
    b.extend([1, 2, 3, 4, 5]);
    let f = file("trunc.dat", &b);
    let (got, err) = until_error(&f, opts(1));
    assert_eq!(got.t, vec![1, 2]);
    match err {
        Some(EventError::Corrupt { offset, reason, .. }) => {
            assert_eq!(offset, full_len);
            assert!(reason.contains("5 of 8"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn dat_policies() {
    let rec = [
        dat_record(10, 1, 1, 0),
        dat_record(5, 400, 1, 0),
        dat_record(7, 2, 2, 1),
        dat_record(20, 3, 3, 1),
    ];
    let f = file("pol.dat", &dat_bytes(&[0x0C, 8], &rec));
    let drop = ReaderOptions {
        out_of_bounds: OutOfBounds::Drop,
        ..opts(2)
    };
    let mut r = reader(&f, drop);
    let ev = read_all(r.as_mut()).unwrap();
    assert_eq!((ev.t, ev.x), (vec![10, 10, 20], vec![1, 2, 3]));
    assert_eq!(
        (r.stats().time_repairs, r.stats().dropped_out_of_bounds),
        (2, 1)
    );
    let (_, err) = until_error(
        &f,
        ReaderOptions {
            time_order: TimeOrder::Error,
            ..drop
        },
    );
    assert!(
        matches!(err, Some(EventError::TimeBackwards { prev: 10, t: 5, .. })),
        "{err:?}"
    );
}

// ---------- Headers and format detection ----------

#[test]
fn raw_files_without_an_encoding_line_are_refused() {
    let f = file("noevt.raw", &[0x01, 0x80, 0x00, 0x20]);
    assert!(matches!(
        open_with(&f.path, opts(10)),
        Err(EventError::UnknownFormat { .. })
    ));
    let f = file("empty.raw", b"");
    assert!(matches!(
        open_with(&f.path, opts(10)),
        Err(EventError::UnknownFormat { .. })
    ));
    // Header only: a valid file with no events.
    for header in ["% evt 3.0\n% end\n", "% evt 2.0\n"] {
        let f = file("hdr.raw", header.as_bytes());
        let mut r = reader(&f, opts(10));
        assert!(read_all(r.as_mut()).unwrap().is_empty());
        assert_eq!(r.stats().events, 0);
    }
    // A decoder opened on the other encoding says so.
    let f = file("two.raw", b"% evt 2.0\n");
    let err = prism_events::evt3::Evt3Reader::open(&f.path, opts(10))
        .err()
        .unwrap();
    assert!(matches!(err, EventError::BadHeader { .. }), "{err}");
    let f = file("three.raw", b"% evt 3.0\n");
    assert!(prism_events::evt2::Evt2Reader::open(&f.path, opts(10)).is_err());
}

// ---------- Fast paths against transcriptions of the policies ----------

/// Decodes `f` with `chunk` events per read (out-of-sensor events dropped) and checks it
/// against a reference decode `(events, time repairs, dropped)`, then seeks to the middle
/// event and checks the suffix.
fn matches_reference(
    f: &TempFile,
    chunk: usize,
    (want, repairs, dropped): (EventChunk, u64, u64),
) -> Result<(), proptest::test_runner::TestCaseError> {
    use proptest::{prop_assert, prop_assert_eq};
    let options = ReaderOptions {
        out_of_bounds: OutOfBounds::Drop,
        ..opts(chunk)
    };
    let mut r = reader(f, options);
    let got = read_all(r.as_mut()).unwrap();
    prop_assert_eq!(got.len(), want.len());
    prop_assert!(got == want);
    prop_assert_eq!(r.stats().time_repairs, repairs);
    prop_assert_eq!(r.stats().dropped_out_of_bounds, dropped);
    if let Some(&target) = want.t.get(want.len() / 2) {
        r.seek_time(target).unwrap();
        let tail = read_all(r.as_mut()).unwrap();
        let mut expect = want.clone();
        expect.drain_front(want.t.partition_point(|&t| t < target));
        prop_assert!(tail == expect);
    }
    Ok(())
}

// ---------- DAT fast path against a record-by-record transcription ----------

/// RVT's policy for `.dat`, record by record: u32 time unwrapped (a fall of more than 2^31 is
/// a wrap), clamped to the running maximum, events outside the sensor dropped.
fn dat_reference(
    records: &[(u32, u32, u32, u32)],
    width: u32,
    height: u32,
) -> (EventChunk, u64, u64) {
    let (mut out, mut repairs, mut dropped) = (EventChunk::default(), 0, 0);
    let (mut offset, mut prev, mut max) = (0i64, None::<u32>, i64::MIN);
    for &(raw, x, y, p) in records {
        if prev.is_some_and(|pv| raw < pv && pv - raw > 1 << 31) {
            offset += 1 << 32;
        }
        prev = Some(raw);
        let mut t = offset + i64::from(raw);
        if t < max {
            repairs += 1;
            t = max;
        }
        max = t;
        if x < width && y < height {
            out.push(t, x as u16, y as u16, p as u8);
        } else {
            dropped += 1;
        }
    }
    (out, repairs, dropped)
}

mod dat_fast_path {
    use super::*;
    use proptest::prelude::*;

    /// Long streams (so blocks of 512 records are decoded whole) with rare anomalies: time
    /// going back a little, a u32 wrap, pixels outside the 304x240 sensor.
    fn stream() -> impl Strategy<Value = Vec<(u32, u32, u32, u32)>> {
        prop::collection::vec(
            (0u32..40, 0u32..1000, 0u32..304, 0u32..240, 0u32..2),
            1..4000,
        )
        .prop_map(|steps| {
            let mut t = 4_294_000_000u32;
            steps
                .into_iter()
                .map(|(step, kind, x, y, p)| {
                    t = match kind {
                        0 => t.wrapping_sub(50),
                        1 => t.wrapping_add(1 << 20),
                        _ => t.wrapping_add(step),
                    };
                    let x = if kind == 2 { 304 + x } else { x };
                    let y = if kind == 3 { 240 + y } else { y };
                    (t, x, y, p)
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn equals_record_by_record(records in stream(), chunk in 1usize..3000) {
            let bytes: Vec<[u8; 8]> =
                records.iter().map(|&(t, x, y, p)| dat_record(t, x, y, p)).collect();
            let f = file("fast.dat", &dat_bytes(&[0x0C, 8], &bytes));
            matches_reference(&f, chunk, dat_reference(&records, 304, 240))?;
        }
    }
}

// ---------- EVT 2.0 fast path against a word-by-word transcription ----------

/// The EVT 2.0 rules word by word (see `evt2.rs`): CD words before the first TIME_HIGH
/// skipped, 34-bit loops counted, times clamped to the running maximum, pixels outside the
/// sensor dropped, other word types skipped.
fn evt2_reference(words: &[u32], width: u32, height: u32) -> (EventChunk, u64, u64) {
    const MAX_BASE: i64 = ((1 << 28) - 1) << 6;
    let (mut out, mut repairs, mut dropped) = (EventChunk::default(), 0, 0);
    let (mut high, mut loops, mut has_time, mut max) = (0i64, 0i64, false, i64::MIN);
    for &w in words {
        match w >> 28 {
            0 | 1 if has_time => {
                let mut t = high + i64::from((w >> 22) & 0x3F);
                if t < max {
                    repairs += 1;
                    t = max;
                }
                max = t;
                let (x, y) = ((w >> 11) & 0x7FF, w & 0x7FF);
                if x < width && y < height {
                    out.push(t, x as u16, y as u16, (w >> 28) as u8);
                } else {
                    dropped += 1;
                }
            }
            8 => {
                let mut t = (i64::from(w & 0x0FFF_FFFF) << 6) + loops * (MAX_BASE + 64);
                if high > t && high - t >= MAX_BASE - (10 << 6) {
                    t += MAX_BASE + 64;
                    loops += 1;
                }
                high = t;
                has_time = true;
            }
            _ => {}
        }
    }
    (out, repairs, dropped)
}

mod evt2_fast_path {
    use super::*;
    use proptest::prelude::*;

    /// TIME_HIGH words with long runs of CD words between them, and rare anomalies: a 6-bit time
    /// that falls, a TIME_HIGH that goes back, pixels outside the 640x480 sensor, other words.
    fn stream() -> impl Strategy<Value = Vec<u32>> {
        prop::collection::vec((0u32..600, 0u32..640, 0u32..480, 0u32..2), 1..4000).prop_map(
            |draws| {
                let (mut high, mut ts, mut words) = (1000u32, 0u32, vec![evt2_high(1000)]);
                for (kind, x, y, p) in draws {
                    match kind {
                        0 => {
                            high += 1;
                            ts = 0;
                            words.push(evt2_high(high));
                        }
                        1 => words.push(evt2_high(high.saturating_sub(3))),
                        2 => words.push(evt2_cd(p, ts.saturating_sub(5), x, y)),
                        3 if x % 2 == 0 => words.push(evt2_cd(p, ts, 640 + x, y)),
                        3 => words.push(evt2_cd(p, ts, x, 480 + y)),
                        4 => words.push(0xE000_0000 | x),
                        _ => {
                            ts = (ts + u32::from(kind % 3 == 0)).min(63);
                            words.push(evt2_cd(p, ts, x, y));
                        }
                    }
                }
                words
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn equals_word_by_word(words in stream(), chunk in 1usize..3000) {
            let f = file("fast.raw", &evt2_bytes("% evt 2.0\n% geometry 640x480\n", &words));
            matches_reference(&f, chunk, evt2_reference(&words, 640, 480))?;
        }
    }
}

// ---------- EVT 3.0 fast path against a word-by-word transcription ----------

/// The EVT 3.0 rules word by word (see `evt3.rs`): words before the first TIME_HIGH skipped,
/// 24-bit loops counted, times clamped to the running maximum, pixels outside the sensor
/// dropped, vector words expanded bit by bit, other word types skipped.
fn evt3_reference(words: &[u16], width: u32, height: u32) -> (EventChunk, u64, u64) {
    const MAX_BASE: i64 = ((1 << 12) - 1) << 12;
    const TIME_LOOP: i64 = MAX_BASE + (1 << 12);
    let (mut out, mut repairs, mut dropped) = (EventChunk::default(), 0, 0);
    let mut max = i64::MIN;
    let mut emit = |t: i64, x: u32, y: u32, p: u16| {
        let t = if t < max {
            repairs += 1;
            max
        } else {
            t
        };
        max = t;
        if x < width && y < height {
            out.push(t, x as u16, y as u16, p as u8);
        } else {
            dropped += 1;
        }
    };
    let (mut has_time, mut base, mut loops, mut t) = (false, 0i64, 0i64, 0i64);
    let (mut y, mut base_x, mut pol) = (0u32, 0u32, 0u16);
    for &w in words {
        let ty = w >> 12;
        if !has_time && ty != 8 {
            continue;
        }
        match ty {
            0x0 => y = u32::from(w & 0x7FF),
            0x2 => emit(t, u32::from(w & 0x7FF), y, (w >> 11) & 1),
            0x3 => {
                base_x = u32::from(w & 0x7FF);
                pol = (w >> 11) & 1;
            }
            0x4 | 0x5 => {
                let bits = if ty == 0x4 { 12 } else { 8 };
                for bit in 0..bits {
                    if (w >> bit) & 1 == 1 {
                        emit(t, base_x + bit, y, pol);
                    }
                }
                base_x += bits;
            }
            0x6 => t = base + i64::from(w & 0xFFF),
            0x8 => {
                let mut b = (i64::from(w & 0xFFF) << 12) + loops * TIME_LOOP;
                if base > b && base - b >= MAX_BASE - (10 << 12) {
                    b += TIME_LOOP;
                    loops += 1;
                }
                base = b;
                t = b;
                has_time = true;
            }
            _ => {}
        }
    }
    (out, repairs, dropped)
}

mod evt3_fast_path {
    use super::evt3::*;
    use super::*;
    use proptest::prelude::*;

    /// Long streams of ADDR_Y / ADDR_X / TIME_LOW / TIME_HIGH words in an irregular order, the
    /// time base starting near the end of a 24-bit loop so that loops are counted, and rare
    /// anomalies: words before the first TIME_HIGH, a TIME_LOW or TIME_HIGH that goes back,
    /// pixels outside the 640x480 sensor, vector words, skipped and undefined word types.
    fn stream() -> impl Strategy<Value = Vec<u16>> {
        let draws = prop::collection::vec((0u32..1000, 0u16..2048, 0u16..2048, 0u16..2), 1..6000);
        (0u16..40, draws).prop_map(|(start, draws)| {
            let (mut high_t, mut low_t) = (4070 + start, 0u16);
            let mut words = vec![x(5, 1), low(3), high(high_t)];
            for (kind, a, b, p) in draws {
                match kind {
                    0..=399 => {
                        words.push(y(b % 480));
                        words.push(x(a % 640, p));
                    }
                    400..=599 => words.push(x(a % 640, p)),
                    600..=819 => {
                        low_t = (low_t + 1 + a % 7).min(0xFFF);
                        words.push(low(low_t));
                    }
                    820..=939 => {
                        // Now and then a jump, so that loops land on any TIME_HIGH that
                        // can count one (0..=10) and on some just past them.
                        let step = if a % 8 == 0 { 1 + b % 12 } else { 1 };
                        high_t = (high_t + step) & 0xFFF;
                        low_t = 0;
                        words.push(high(high_t));
                    }
                    940..=949 => words.push(low(low_t.saturating_sub(1 + a % 20))),
                    950..=954 => words.push(high(high_t.wrapping_sub(1 + a % 3) & 0xFFF)),
                    955..=964 => words.push(x(640 + a % 100, p)),
                    965..=969 => words.push(y(480 + b % 100)),
                    970..=984 => {
                        words.push(base_x(a % 640, p));
                        words.push(vect12(b));
                        words.push(vect8(b >> 4));
                    }
                    _ => words.push(
                        [
                            0x1000, 0x7000, 0x9000, 0xA000, 0xB000, 0xC000, 0xE000, 0xF000,
                        ][usize::from(a % 8)]
                            | (b & 0xFFF),
                    ),
                }
            }
            words
        })
    }

    /// A loop lands on each TIME_HIGH that can count one (and on the first that cannot),
    /// with the events of each side in separate chunks: the fast path must leave these words
    /// to the rules, or the next chunk starts from a wrong loop count.
    #[test]
    fn loops_are_counted_at_every_time_high_that_can_count_one() {
        let header = "% evt 3.0\n% format EVT3;height=480;width=640\n% end\n";
        for landing in 0..=11u16 {
            let words = [
                high(4095),
                low(1),
                y(1),
                x(1, 0),
                high(landing),
                low(2),
                x(2, 1),
            ];
            let f = file("loop.raw", &bytes(header, &words));
            for chunk in 1..=3 {
                let want = evt3_reference(&words, 640, 480);
                let mut r = reader(
                    &f,
                    ReaderOptions {
                        out_of_bounds: OutOfBounds::Drop,
                        ..opts(chunk)
                    },
                );
                let got = read_all(r.as_mut()).unwrap();
                assert!(
                    got == want.0,
                    "landing {landing}, chunk {chunk}: {:?} != {:?}",
                    got.t,
                    want.0.t
                );
                assert_eq!(r.stats().time_repairs, want.1, "landing {landing}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn equals_word_by_word(words in stream(), chunk in 1usize..5000) {
            let header = "% evt 3.0\n% format EVT3;height=480;width=640\n% end\n";
            let f = file("fast.raw", &bytes(header, &words));
            matches_reference(&f, chunk, evt3_reference(&words, 640, 480))?;
        }
    }
}
