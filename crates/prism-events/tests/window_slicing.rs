//! The window slicer hands out the same windows whatever the chunking of the stream, equal to
//! RVT's `searchsorted` bounds, with bounded memory.

use prism_events::window::{window_ranges, WindowConfig, WindowSlicer};
use prism_events::{testdata, EventChunk};
use proptest::prelude::*;

/// (end, first event, event count) of every window, streaming `events` in chunks of `chunk`.
type Windows = Vec<(i64, u64, usize)>;

fn stream(
    events: &EventChunk,
    cfg: WindowConfig,
    chunk: usize,
) -> Result<(Windows, usize), prism_events::EventError> {
    let mut slicer = WindowSlicer::new(cfg)?;
    let mut out = Vec::new();
    let mut max_buffered = 0;
    let all = events.as_slice();
    let drain = |slicer: &mut WindowSlicer, out: &mut Vec<(i64, u64, usize)>| {
        while let Some(w) = slicer.next_window() {
            // The view holds exactly the stream's events of that range.
            let r = w.event_range();
            assert_eq!(w.events.t, &all.t[r.start as usize..r.end as usize]);
            assert_eq!(w.events.x, &all.x[r.start as usize..r.end as usize]);
            assert_eq!(w.events.p, &all.p[r.start as usize..r.end as usize]);
            out.push((w.end_us, w.first_event, w.events.len()));
        }
    };
    let mut start = 0;
    while start < all.len() {
        let stop = (start + chunk).min(all.len());
        slicer.push(all.slice(start..stop))?;
        max_buffered = max_buffered.max(slicer.buffered());
        drain(&mut slicer, &mut out);
        start = stop;
    }
    slicer.finish();
    drain(&mut slicer, &mut out);
    Ok((out, max_buffered))
}

/// RVT's bounds by brute force: `[searchsorted(t, T - len, 'left'), searchsorted(t, T, 'right'))`
/// for ends on the grid until a window starts after the last event.
fn brute_force(t: &[i64], cfg: WindowConfig) -> Vec<(i64, u64, usize)> {
    let (Some(&first), Some(&last)) = (t.first(), t.last()) else {
        return Vec::new();
    };
    let mut end = cfg
        .first_end_us
        .unwrap_or_else(|| (first as f64 / cfg.step_us as f64).ceil() as i64 * cfg.step_us);
    let mut out = Vec::new();
    while end - cfg.length_us <= last {
        let a = t.iter().filter(|&&v| v < end - cfg.length_us).count();
        let b = t.iter().filter(|&&v| v <= end).count();
        out.push((end, a as u64, b.saturating_sub(a)));
        end += cfg.step_us;
    }
    out
}

#[test]
fn gen4_same_windows_for_any_chunking() -> Result<(), Box<dyn std::error::Error>> {
    let Some(dat) = testdata::faery("gen4.dat") else {
        return Ok(());
    };
    let events = prism_events::reader::read_all(prism_events::open(&dat)?.as_mut())?;
    let cfg = WindowConfig::rvt();
    let whole: Vec<_> = window_ranges(events.as_slice(), cfg)?
        .into_iter()
        .map(|(end, r)| (end, r.start as u64, r.len()))
        .collect();
    assert_eq!(whole.len(), 216);
    assert_eq!((whole[0].0, whole[215].0), (50_000, 10_800_000));
    let max_window = whole.iter().map(|w| w.2).max().unwrap_or(0);
    for chunk in [1, 13, 4096, events.len()] {
        let (windows, buffered) = stream(&events, cfg, chunk)?;
        assert_eq!(windows, whole, "chunk size {chunk}");
        if chunk < events.len() {
            assert!(
                buffered <= max_window + chunk,
                "chunk {chunk}: {buffered} events held"
            );
        }
    }
    // Overlapping windows (step < length) and a custom grid anchor.
    let cfg = WindowConfig::new(50_000)
        .with_step(20_000)
        .with_first_end(33_333);
    let (a, _) = stream(&events, cfg, 4096)?;
    let (b, _) = stream(&events, cfg, 13)?;
    assert_eq!(a, b);
    assert_eq!(a, brute_force(&events.t[..], cfg));
    Ok(())
}

fn sorted_events() -> impl Strategy<Value = EventChunk> {
    prop::collection::vec((0i64..40, 0u16..8, 0u16..8, 0u8..2), 0..300).prop_map(|v| {
        let mut c = EventChunk::default();
        let mut t = -500;
        for (dt, x, y, p) in v {
            // Many repeated timestamps and occasional long gaps.
            t += if dt > 35 { dt * 20 } else { dt / 4 };
            c.push(t, x, y, p);
        }
        c
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn streaming_matches_searchsorted(
        events in sorted_events(),
        length in 1i64..200,
        step in 1i64..300,
        first_end in prop::option::of(-600i64..400),
        chunk in 1usize..50,
    ) {
        let mut cfg = WindowConfig::new(length).with_step(step);
        cfg.first_end_us = first_end;
        let expected = brute_force(&events.t, cfg);
        let (chunked, _) = stream(&events, cfg, chunk).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&chunked, &expected);
        let (whole, _) = stream(&events, cfg, events.len().max(1))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&whole, &expected);
    }
}
