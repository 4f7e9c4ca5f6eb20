//! Writers round-trip through the decoders: what `DatWriter` / `Evt2Writer` / `Evt3Writer` write,
//! `prism_events::open` reads back as the same events, in the same order.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use prism_events::reader::read_all;
use prism_events::synth::rng::SplitMix64;
use prism_events::write::{self, DatWriter, EventWriter, Evt2Writer, Evt3Writer, WriteFormat};
use prism_events::{open, EventChunk, EventError, Format, SensorSize};

const SENSOR: SensorSize = SensorSize {
    width: 640,
    height: 480,
};
const FORMATS: [WriteFormat; 3] = [WriteFormat::Dat, WriteFormat::Evt2, WriteFormat::Evt3];

/// Sorted random events from `t_start`, gaps up to `max_gap` µs; some bursts share a timestamp
/// and a row with increasing x, so EVT3 vectors are exercised.
fn random_events(
    seed: u64,
    n: usize,
    t_start: i64,
    max_gap: u64,
    sensor: SensorSize,
) -> EventChunk {
    let mut rng = SplitMix64::new(seed);
    let mut chunk = EventChunk::default();
    let mut t = t_start;
    while chunk.len() < n {
        t += (rng.next_u64() % (max_gap + 1)) as i64;
        let y = (rng.next_u64() % u64::from(sensor.height)) as u16;
        let p = (rng.next_u64() & 1) as u8;
        if rng.next_u64() % 4 == 0 {
            // A burst: one row, increasing x with random gaps (vector material).
            let mut x = (rng.next_u64() % u64::from(sensor.width)) as u16;
            for _ in 0..(rng.next_u64() % 40) {
                chunk.push(t, x, y, p);
                x += 1 + (rng.next_u64() % 3) as u16;
                if x >= sensor.width {
                    break;
                }
            }
        } else {
            chunk.push(t, (rng.next_u64() % u64::from(sensor.width)) as u16, y, p);
        }
    }
    chunk
}

fn write_file(
    path: &Path,
    format: WriteFormat,
    sensor: SensorSize,
    events: &EventChunk,
    pieces: usize,
) {
    let mut writer = write::create(path, format, sensor).unwrap();
    let n = events.len();
    let step = n.div_ceil(pieces.max(1)).max(1);
    let mut start = 0;
    while start < n {
        let end = (start + step).min(n);
        let mut piece = EventChunk::default();
        for i in start..end {
            piece.push(events.t[i], events.x[i], events.y[i], events.p[i]);
        }
        writer.write_chunk(&piece).unwrap();
        start = end;
    }
    writer.finish().unwrap();
    assert_eq!(writer.events_written(), n as u64);
}

fn read_back(path: &Path) -> (Format, Option<SensorSize>, EventChunk) {
    let mut reader = open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let events = read_all(reader.as_mut()).unwrap();
    (reader.format(), reader.sensor_size(), events)
}

fn expected_format(format: WriteFormat) -> Format {
    Format::from(format)
}

fn assert_same(got: &EventChunk, want: &EventChunk, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: event count");
    for i in 0..want.len() {
        assert_eq!(
            (got.t[i], got.x[i], got.y[i], got.p[i]),
            (want.t[i], want.x[i], want.y[i], want.p[i]),
            "{what}: event {i}"
        );
    }
}

#[test]
fn every_format_round_trips_random_events() {
    let dir = tempfile::tempdir().unwrap();
    let events = random_events(1, 50_000, 0, 30, SENSOR);
    for format in FORMATS {
        let path = dir.path().join(format!("events.{}", format.extension()));
        write_file(&path, format, SENSOR, &events, 7);
        let (read_format, sensor, got) = read_back(&path);
        assert_eq!(read_format, expected_format(format));
        assert_eq!(sensor, Some(SENSOR), "{format:?} header geometry");
        assert_same(&got, &events, &format!("{format:?}"));
    }
}

#[test]
fn evt3_is_exact_across_24_bit_time_wraps_and_long_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let mut events = random_events(2, 20_000, 16_777_216 - 5_000, 2, SENSOR); // crosses the first wrap
                                                                              // A gap of 3.5 wraps, then a start just below a wrap, and a near-full-period gap.
    let later = [
        random_events(3, 2_000, 4 * 16_777_216 + 9_000_000, 50, SENSOR),
        random_events(4, 2_000, 6 * 16_777_216 - 100, 1, SENSOR),
        random_events(5, 100, 7 * 16_777_216 - 200, 0, SENSOR),
        random_events(6, 100, 8 * 16_777_216 - 300, 0, SENSOR),
    ];
    for part in &later {
        events.extend_from(part);
    }
    let path = dir.path().join("wrap.raw");
    write_file(&path, WriteFormat::Evt3, SENSOR, &events, 3);
    let (_, _, got) = read_back(&path);
    assert_same(&got, &events, "EVT3 wraps");
}

#[test]
fn evt2_keeps_large_absolute_times() {
    let dir = tempfile::tempdir().unwrap();
    let mut events = random_events(7, 10_000, 913_716_224, 40, SENSOR);
    events.extend_from(&random_events(8, 1_000, (1i64 << 33) + 77, 200, SENSOR));
    events.extend_from(&random_events(9, 100, (1i64 << 34) - 10_000, 10, SENSOR));
    let path = dir.path().join("big.raw");
    write_file(&path, WriteFormat::Evt2, SENSOR, &events, 2);
    let (_, _, got) = read_back(&path);
    assert_same(&got, &events, "EVT2 large t");
}

#[test]
fn dat_keeps_the_full_u32_time_range() {
    let dir = tempfile::tempdir().unwrap();
    let big = SensorSize {
        width: 1280,
        height: 720,
    };
    let events = random_events(10, 5_000, i64::from(u32::MAX) - 100_000, 40, big);
    let path = dir.path().join("big_td.dat");
    write_file(&path, WriteFormat::Dat, big, &events, 1);
    let (_, sensor, got) = read_back(&path);
    assert_eq!(sensor, Some(big));
    assert_same(&got, &events, "DAT");
}

#[test]
fn empty_recordings_read_back_empty() {
    let dir = tempfile::tempdir().unwrap();
    for format in FORMATS {
        let path = dir.path().join(format!("empty.{}", format.extension()));
        write_file(&path, format, SENSOR, &EventChunk::default(), 1);
        let (_, _, got) = read_back(&path);
        assert!(got.is_empty(), "{format:?}");
    }
}

#[test]
fn evt3_vectors_make_dense_rows_compact() {
    // 1000 timestamps, each with a full row of 600 ON events: vectors need ~1/12 word per event.
    let mut events = EventChunk::default();
    for t in 0..1000 {
        for x in 0..600 {
            events.push(t * 10, x, (t % 480) as u16, 1);
        }
    }
    let mut writer = Evt3Writer::new(Vec::new(), Path::new("<memory>"), SENSOR).unwrap();
    writer.write_chunk(&events).unwrap();
    writer.finish().unwrap();
    let bytes = writer.into_inner();
    assert!(
        bytes.len() < events.len() / 4,
        "{} bytes for {} events",
        bytes.len(),
        events.len()
    );
}

#[test]
fn writers_reject_bad_events() {
    let mut backwards = EventChunk::default();
    backwards.push(10, 1, 1, 0);
    backwards.push(9, 1, 1, 0);
    let mut outside = EventChunk::default();
    outside.push(0, 640, 0, 0);
    let mut bad_polarity = EventChunk::default();
    bad_polarity.push(0, 0, 0, 2);
    let name = Path::new("<memory>");
    type MakeWriter<'a> = Box<dyn Fn() -> Box<dyn EventWriter> + 'a>;
    let writers: Vec<(&str, MakeWriter)> = vec![
        (
            "dat",
            Box::new(|| Box::new(DatWriter::new(Vec::new(), name, SENSOR).unwrap())),
        ),
        (
            "evt2",
            Box::new(|| Box::new(Evt2Writer::new(Vec::new(), name, SENSOR).unwrap())),
        ),
        (
            "evt3",
            Box::new(|| Box::new(Evt3Writer::new(Vec::new(), name, SENSOR).unwrap())),
        ),
    ];
    for (label, make) in &writers {
        let err = make().write_chunk(&backwards).unwrap_err();
        assert!(
            matches!(err, EventError::TimeBackwards { prev: 10, t: 9, .. }),
            "{label}: {err}"
        );
        let err = make().write_chunk(&outside).unwrap_err();
        assert!(
            matches!(err, EventError::OutOfBounds { x: 640, .. }),
            "{label}: {err}"
        );
        let err = make().write_chunk(&bad_polarity).unwrap_err();
        assert!(
            matches!(err, EventError::InvalidArgument(_)),
            "{label}: {err}"
        );
        // Time order is checked across chunks too.
        let mut w = make();
        let mut late = EventChunk::default();
        late.push(100, 0, 0, 0);
        w.write_chunk(&late).unwrap();
        let mut early = EventChunk::default();
        early.push(99, 0, 0, 0);
        assert!(w.write_chunk(&early).is_err(), "{label}");
    }
    let mut too_late = EventChunk::default();
    too_late.push(1i64 << 32, 0, 0, 0);
    assert!(DatWriter::new(Vec::new(), name, SENSOR)
        .unwrap()
        .write_chunk(&too_late)
        .is_err());
    too_late.t[0] = 1i64 << 34;
    assert!(Evt2Writer::new(Vec::new(), name, SENSOR)
        .unwrap()
        .write_chunk(&too_late)
        .is_err());
    let big = SensorSize {
        width: 4096,
        height: 100,
    };
    assert!(Evt3Writer::new(Vec::new(), name, big).is_err());
    assert!(DatWriter::new(Vec::new(), name, big).is_ok());
}
