//! Golden tests of the DAT / EVT2 / EVT3 decoders on the real faery 0.7.1 recordings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use prism_events::reader::read_all;
use prism_events::testdata::faery;
use prism_events::{open_with, EventChunk, Format, ReaderOptions, SensorSize};

/// gen4.dat time + this = evt3.raw time.
const EVT3_SHIFT_US: i64 = 11_194_368;

fn decode(path: &Path, chunk_events: usize) -> EventChunk {
    let options = ReaderOptions {
        chunk_events,
        ..ReaderOptions::default()
    };
    let mut reader = open_with(path, options).unwrap();
    let all = read_all(reader.as_mut()).unwrap();
    assert_eq!(reader.stats().events, all.len() as u64);
    assert_eq!(reader.stats().first_t, all.t.first().copied());
    assert_eq!(reader.stats().last_t, all.t.last().copied());
    all
}

/// Decodes with `chunk_events` and checks no chunk is larger than asked.
fn decode_checked_chunks(path: &Path, chunk_events: usize, max_events: usize) -> EventChunk {
    let options = ReaderOptions {
        chunk_events,
        ..ReaderOptions::default()
    };
    let mut reader = open_with(path, options).unwrap();
    let mut all = EventChunk::default();
    let mut chunk = EventChunk::default();
    while all.len() < max_events && reader.read_chunk(&mut chunk).unwrap() {
        assert!(chunk.len() <= chunk_events && !chunk.is_empty());
        all.extend_from(&chunk);
    }
    all.truncate(max_events);
    all
}

fn prefix(chunk: &EventChunk, n: usize) -> EventChunk {
    let mut c = chunk.clone();
    c.truncate(n);
    c
}

#[test]
fn gen4_dat_matches_published_facts() {
    let Some(path) = faery("gen4.dat") else {
        return;
    };
    let reader = open_with(&path, ReaderOptions::default()).unwrap();
    assert_eq!(reader.format(), Format::Dat);
    assert_eq!(
        reader.sensor_size(),
        Some(SensorSize {
            width: 1280,
            height: 720
        })
    );
    let ev = decode(&path, 1 << 16);
    assert_eq!(ev.len(), 1_218_618);
    assert_eq!(ev.p.iter().filter(|&&p| p == 0).count(), 665_323);
    assert_eq!(ev.p.iter().filter(|&&p| p == 1).count(), 553_295);
    assert_eq!((ev.t[0], *ev.t.last().unwrap()), (5_856, 10_773_853));
    assert!(ev.t.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn evt3_raw_equals_gen4_dat_shifted() {
    let (Some(dat), Some(raw)) = (faery("gen4.dat"), faery("evt3.raw")) else {
        return;
    };
    let reader = open_with(&raw, ReaderOptions::default()).unwrap();
    assert_eq!(reader.format(), Format::Evt3);
    assert_eq!(
        reader.sensor_size(),
        Some(SensorSize {
            width: 1280,
            height: 720
        })
    );
    let d = decode(&dat, 1 << 16);
    let e = decode(&raw, 1 << 16);
    assert_eq!(e.len(), d.len());
    assert_eq!(e.x, d.x);
    assert_eq!(e.y, d.y);
    assert_eq!(e.p, d.p);
    assert!(e
        .t
        .iter()
        .zip(&d.t)
        .all(|(te, td)| *te == td + EVT3_SHIFT_US));
    assert_eq!((e.t[0], *e.t.last().unwrap()), (11_200_224, 21_968_221));
}

#[test]
fn evt2_raw_matches_published_facts() {
    let Some(path) = faery("evt2.raw") else {
        return;
    };
    let options = ReaderOptions {
        sensor_size: Some(SensorSize {
            width: 640,
            height: 480,
        }),
        ..ReaderOptions::default()
    };
    let mut reader = open_with(&path, options).unwrap();
    assert_eq!(reader.format(), Format::Evt2);
    assert_eq!(
        reader.sensor_size(),
        Some(SensorSize {
            width: 640,
            height: 480
        })
    );
    let ev = read_all(reader.as_mut()).unwrap();
    assert_eq!(ev.len(), 521_252);
    assert_eq!(ev.p.iter().filter(|&&p| p == 0).count(), 335_391);
    assert_eq!(ev.p.iter().filter(|&&p| p == 1).count(), 185_861);
    assert_eq!((ev.t[0], *ev.t.last().unwrap()), (913_716_224, 913_812_095));
    assert_eq!(reader.stats().dropped_out_of_bounds, 0);
    // Without a declared sensor there is no bounds check, and the same events come out.
    let unbounded = decode(&path, 1 << 16);
    assert_eq!(unbounded, ev);
}

#[test]
fn chunk_sizes_give_identical_streams() {
    for name in ["gen4.dat", "evt3.raw", "evt2.raw"] {
        let Some(path) = faery(name) else { return };
        let full = decode(&path, 1 << 16);
        for chunk_events in [7, 4096, 100_003] {
            assert_eq!(
                decode_checked_chunks(&path, chunk_events, usize::MAX),
                full,
                "{name} chunk {chunk_events}"
            );
        }
        let n = 20_000;
        assert_eq!(
            decode_checked_chunks(&path, 1, n),
            prefix(&full, n),
            "{name} chunk 1"
        );
    }
}

#[test]
fn seek_matches_filtering_the_full_decode() {
    for name in ["gen4.dat", "evt3.raw", "evt2.raw"] {
        let Some(path) = faery(name) else { return };
        let full = decode(&path, 1 << 16);
        let (first, last) = (full.t[0], *full.t.last().unwrap());
        let mid_event = full.t[full.len() / 2];
        let targets = [
            i64::MIN,
            first - 1_000_000,
            first,
            first + 1,
            mid_event,
            mid_event + 1,
            (first + last) / 2,
            full.t[full.len() - 3],
            last,
            last + 1,
            last + 10_000_000,
        ];
        let options = ReaderOptions {
            chunk_events: 10_000,
            ..ReaderOptions::default()
        };
        let mut reader = open_with(&path, options).unwrap();
        // Alternate forward and backward seeks on one reader, so the index is used both ways.
        for &target in targets.iter().chain(targets.iter().rev()) {
            reader.seek_time(target).unwrap();
            let got = read_all(reader.as_mut()).unwrap();
            let start = full.t.partition_point(|&t| t < target);
            let mut want = full.clone();
            want.drain_front(start);
            assert_eq!(got.len(), want.len(), "{name} seek to {target}");
            assert!(got == want, "{name} seek to {target}");
        }
        // Seek, read part, seek back: the state is restored exactly.
        reader.seek_time(mid_event).unwrap();
        let mut chunk = EventChunk::default();
        reader.read_chunk(&mut chunk).unwrap();
        reader.seek_time(first + 1).unwrap();
        reader.read_chunk(&mut chunk).unwrap();
        let start = full.t.partition_point(|&t| t < first + 1);
        assert_eq!(chunk.t[..], full.t[start..start + chunk.len()]);
        assert_eq!(chunk.x[..], full.x[start..start + chunk.len()]);
    }
}
