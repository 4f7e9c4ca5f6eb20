//! Seeking is exact on files whose timestamps go backwards: after `seek_time(t)`, a reader
//! returns exactly the events a full read returns from the first whose (clamped) time is at or
//! after `t`, for EVT 3.0, EVT 2.0 and DAT, on a fresh reader (no index yet), after a full read
//! (index built) and in any order of seeks. The times jitter back a little now and then and
//! spike far ahead once in a while, so that the raw time at a resume point says nothing about
//! the clamped times before it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use prism_events::reader::read_all;
use prism_events::synth::rng::SplitMix64;
use prism_events::{open_with, EventChunk, EventReader, ReaderOptions};

const EVENTS: usize = 300_000;

/// `(t, x, y, p)` with backwards jitter and rare forward spikes; x < 640, y < 480.
fn jittery_events(seed: u64) -> Vec<(i64, u16, u16, u8)> {
    let mut rng = SplitMix64::new(seed);
    let mut t = 1_000i64;
    (0..EVENTS)
        .map(|_| {
            let r = rng.next_u64();
            t += (r % 7) as i64;
            let stamp = match (r >> 8) % 40_000 {
                0..=4 => t + 100_000 + ((r >> 24) % 50_000) as i64, // one event far ahead
                5..=80 => (t - ((r >> 24) % 3_000) as i64).max(0),  // a little back
                _ => t,
            };
            let x = ((r >> 32) % 640) as u16;
            let y = ((r >> 44) % 480) as u16;
            (stamp, x, y, ((r >> 60) & 1) as u8)
        })
        .collect()
}

fn evt3_bytes(events: &[(i64, u16, u16, u8)]) -> Vec<u8> {
    let mut words: Vec<u16> = Vec::new();
    let (mut high, mut low) = (-1i64, -1i64);
    for &(t, x, y, p) in events {
        if t >> 12 != high {
            high = t >> 12;
            words.push(0x8000 | (high as u16 & 0xFFF));
            low = -1;
        }
        if t & 0xFFF != low {
            low = t & 0xFFF;
            words.push(0x6000 | low as u16);
        }
        words.push(y & 0x7FF);
        words.push(0x2000 | (u16::from(p) << 11) | (x & 0x7FF));
    }
    let mut b = b"% evt 3.0\n% format EVT3;height=480;width=640\n% end\n".to_vec();
    b.extend(words.iter().flat_map(|w| w.to_le_bytes()));
    b
}

fn evt2_bytes(events: &[(i64, u16, u16, u8)]) -> Vec<u8> {
    let mut words: Vec<u32> = Vec::new();
    let mut high = -1i64;
    for &(t, x, y, p) in events {
        if t >> 6 != high {
            high = t >> 6;
            words.push(0x8000_0000 | (high as u32 & 0x0FFF_FFFF));
        }
        let ts = (t & 0x3F) as u32;
        words.push((u32::from(p) << 28) | (ts << 22) | (u32::from(x) << 11) | u32::from(y));
    }
    let mut b = b"% evt 2.0\n% geometry 640x480\n% end\n".to_vec();
    b.extend(words.iter().flat_map(|w| w.to_le_bytes()));
    b
}

fn dat_bytes(events: &[(i64, u16, u16, u8)]) -> Vec<u8> {
    let mut b = b"% Width 640\n% Height 480\n".to_vec();
    b.extend_from_slice(&[0x0C, 8]);
    for &(t, x, y, p) in events {
        let w = u32::from(x) | (u32::from(y) << 14) | (u32::from(p) << 28);
        b.extend_from_slice(&(t as u32).to_le_bytes());
        b.extend_from_slice(&w.to_le_bytes());
    }
    b
}

fn open(path: &std::path::Path) -> Box<dyn EventReader> {
    open_with(
        path,
        ReaderOptions {
            chunk_events: 4096,
            ..ReaderOptions::default()
        },
    )
    .unwrap()
}

fn suffix(full: &EventChunk, target: i64) -> EventChunk {
    let mut want = full.clone();
    want.drain_front(full.t.partition_point(|&t| t < target));
    want
}

fn assert_seek(reader: &mut dyn EventReader, full: &EventChunk, target: i64, what: &str) {
    reader.seek_time(target).unwrap();
    let got = read_all(reader).unwrap();
    let want = suffix(full, target);
    assert!(
        got == want,
        "{what}: seek to {target} gave {} events starting at {:?}, a full read {} starting at {:?}",
        got.len(),
        got.t.first(),
        want.len(),
        want.t.first()
    );
}

#[test]
fn seek_is_exact_when_time_goes_backwards() {
    let events = jittery_events(11);
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("jitter.raw", evt3_bytes(&events)),
        ("jitter2.raw", evt2_bytes(&events)),
        ("jitter.dat", dat_bytes(&events)),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let mut reader = open(&path);
        let full = read_all(reader.as_mut()).unwrap();
        assert_eq!(full.len(), EVENTS, "{name}");
        assert!(
            reader.stats().time_repairs > 1_000,
            "{name}: the times do go backwards"
        );
        assert!(full.t.windows(2).all(|w| w[0] <= w[1]), "{name}: clamped");
        // Targets inside spikes' shadows, just past them, and plain ones.
        let spikes: Vec<usize> = (1..EVENTS)
            .filter(|&i| events[i].0 > events[i - 1].0 + 50_000)
            .collect();
        assert!(spikes.len() >= 10, "{name}: {} spikes", spikes.len());
        let mut targets = vec![i64::MIN, 0, full.t[EVENTS / 2], full.t[EVENTS - 1] + 1];
        for &i in &spikes {
            let spike = events[i].0;
            targets.extend([spike, spike + 1, spike - 1, events[i - 1].0 + 1]);
        }
        // After a full read: the index is built and is used backwards and forwards.
        for &target in targets.iter().chain(targets.iter().rev()) {
            assert_seek(reader.as_mut(), &full, target, name);
        }
        // A fresh reader for each of a few targets: the skip builds the index as it goes.
        for &target in targets.iter().step_by(7) {
            assert_seek(open(&path).as_mut(), &full, target, name);
        }
    }
}
