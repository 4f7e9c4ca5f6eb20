//! Differential fuzzing of the writers: events built from the input are written in every format
//! and must decode back to exactly the same events (or be rejected by the writer).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use prism_events::reader::read_all;
use prism_events::write::{self, WriteFormat};
use prism_events::{open, EventChunk, SensorSize};

const SENSOR: SensorSize = SensorSize {
    width: 64,
    height: 48,
};

fuzz_target!(|data: &[u8]| {
    // 4 bytes per event: time step (bits 0-11, scaled up by bits 12-15), x, y and polarity.
    // Steps reach 2^27 µs: enough to cross every format's time wraps in a few events, where
    // 2^42 µs made the EVT3 writer emit a megabyte of wrap words per input (28 runs a second).
    let mut events = EventChunk::default();
    let mut t = 0i64;
    for rec in data.chunks_exact(4) {
        let word = u16::from_le_bytes([rec[0], rec[1]]);
        t += i64::from(word & 0x0FFF) << (word >> 12);
        events.push(
            t,
            u16::from(rec[2]) % SENSOR.width,
            u16::from(rec[3] & 0x7F) % SENSOR.height,
            rec[3] >> 7,
        );
    }
    let dir = std::env::temp_dir().join(format!("prism-fuzz-writers-{}", std::process::id()));
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    for format in [WriteFormat::Dat, WriteFormat::Evt2, WriteFormat::Evt3] {
        let path = dir.join(format!("events.{}", format.extension()));
        if !write_file(&path, format, &events) {
            continue; // rejected, e.g. a time beyond the format's range
        }
        let decoded = open(&path).and_then(|mut reader| read_all(reader.as_mut()));
        match decoded {
            Ok(got) => assert_eq!(got, events, "{format:?} round trip"),
            Err(e) => panic!("{format:?}: our own file does not decode: {e}"),
        }
    }
});

fn write_file(path: &Path, format: WriteFormat, events: &EventChunk) -> bool {
    let Ok(mut writer) = write::create(path, format, SENSOR) else {
        return false;
    };
    writer.write_chunk(events).is_ok() && writer.finish().is_ok()
}
