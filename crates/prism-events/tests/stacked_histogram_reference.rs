//! Bit-exactness of the RVT stacked histogram and of the window slicing against an independent
//! NumPy transcription of RVT (`tests/reference/rvt_stacked_histogram.py`), on the real gen4.dat
//! recording and on edge cases (one event, one timestamp, counts over the cutoff, counts that wrap
//! at 256, empty windows, halving of odd sizes).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use prism_events::repr::{HistogramConfig, StackedHistogram};
use prism_events::testdata;
use prism_events::window::{WindowConfig, WindowSlicer};
use prism_events::{EventChunk, EventSlice};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/rvt_stacked_histogram.py")
}

/// One window of the reference output.
struct RefWindow {
    end: i64,
    start_idx: i64,
    stop_idx: i64,
    idx: Vec<u32>,
    val: Vec<u8>,
}

struct RefOutput {
    shape: [usize; 3],
    windows: Vec<RefWindow>,
}

fn read_ref(path: &Path) -> Result<RefOutput, Box<dyn std::error::Error>> {
    let data = std::fs::read(path)?;
    let mut pos = 0usize;
    let u64_at = |pos: &mut usize| -> Result<u64, Box<dyn std::error::Error>> {
        let b: [u8; 8] = data.get(*pos..*pos + 8).ok_or("truncated")?.try_into()?;
        *pos += 8;
        Ok(u64::from_le_bytes(b))
    };
    let n = u64_at(&mut pos)? as usize;
    let shape = [
        u64_at(&mut pos)? as usize,
        u64_at(&mut pos)? as usize,
        u64_at(&mut pos)? as usize,
    ];
    let mut windows = Vec::with_capacity(n);
    for _ in 0..n {
        let end = u64_at(&mut pos)? as i64;
        let start_idx = u64_at(&mut pos)? as i64;
        let stop_idx = u64_at(&mut pos)? as i64;
        let nnz = u64_at(&mut pos)? as usize;
        let idx = data
            .get(pos..pos + 4 * nnz)
            .ok_or("truncated")?
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        pos += 4 * nnz;
        let val = data.get(pos..pos + nnz).ok_or("truncated")?.to_vec();
        pos += nnz;
        windows.push(RefWindow {
            end,
            start_idx,
            stop_idx,
            idx,
            val,
        });
    }
    Ok(RefOutput { shape, windows })
}

/// Writes events in the script's raw format: u64 n, i64 t[n], u16 x[n], u16 y[n], u8 p[n].
fn write_events(path: &Path, e: &EventChunk) -> std::io::Result<()> {
    let mut b = Vec::new();
    b.extend_from_slice(&(e.len() as u64).to_le_bytes());
    e.t.iter()
        .for_each(|v| b.extend_from_slice(&v.to_le_bytes()));
    e.x.iter()
        .for_each(|v| b.extend_from_slice(&v.to_le_bytes()));
    e.y.iter()
        .for_each(|v| b.extend_from_slice(&v.to_le_bytes()));
    b.extend_from_slice(&e.p);
    std::fs::write(path, b)
}

/// A histogram configuration to compare, and the reference output file for it.
struct Case {
    config: HistogramConfig,
    out: PathBuf,
}

fn job_json(
    source: (&str, &Path),
    cfg: &HistogramConfig,
    window: Option<WindowConfig>,
    cases: &[Case],
) -> String {
    let window = match window {
        None => "null".to_string(),
        Some(w) => format!(
            r#"{{"length": {}, "step": {}, "first_end": {}}}"#,
            w.length_us,
            w.step_us,
            w.first_end_us.map_or("null".into(), |v| v.to_string())
        ),
    };
    let mut outputs = String::new();
    for (i, c) in cases.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(
            outputs,
            r#"{sep}{{"downsample": {}, "pad": {}, "out": "{}"}}"#,
            c.config.downsample_by_2,
            c.config.pad_multiple,
            c.out.display()
        );
    }
    format!(
        r#"{{"{}": "{}", "width": {}, "height": {}, "bins": {}, "cutoff": {}, "window": {}, "outputs": [{}]}}"#,
        source.0,
        source.1.display(),
        cfg.width,
        cfg.height,
        cfg.bins,
        cfg.count_cutoff,
        window,
        outputs
    )
}

fn run_reference(python: &Path, dir: &Path, jobs: &[String]) -> TestResult {
    let jobs_path = dir.join("jobs.json");
    std::fs::write(&jobs_path, format!("[{}]", jobs.join(",\n")))?;
    let out = Command::new(python)
        .arg(script())
        .arg(&jobs_path)
        .output()?;
    if !out.status.success() {
        return Err(format!("reference failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(())
}

/// Compares our dense tensor with the reference's sparse one, byte for byte.
fn compare(ours: &[u8], shape: [usize; 3], r: &RefWindow, what: &str) -> TestResult {
    let [_, h, w] = shape;
    for (&i, &v) in r.idx.iter().zip(&r.val) {
        let got = ours.get(i as usize).copied().ok_or("index out of range")?;
        if got != v {
            let (c, y, x) = (i as usize / (h * w), i as usize / w % h, i as usize % w);
            return Err(format!("{what}: at [{c}, {y}, {x}] ours {got}, reference {v}").into());
        }
    }
    let nnz: usize = ours
        .chunks(64)
        .filter(|c| c.iter().any(|&v| v != 0))
        .map(|c| c.iter().filter(|&&v| v != 0).count())
        .sum();
    if nnz != r.idx.len() {
        return Err(format!("{what}: {nnz} non-zero cells, reference {}", r.idx.len()).into());
    }
    Ok(())
}

/// Streams `chunks` through the slicer and every histogram of `cases`, comparing each window
/// (bounds and tensor) with the reference outputs.
fn check_stream<'a>(
    chunks: impl Iterator<Item = EventSlice<'a>>,
    window: WindowConfig,
    cases: &[Case],
) -> TestResult {
    let refs: Vec<RefOutput> = cases
        .iter()
        .map(|c| read_ref(&c.out))
        .collect::<Result<_, _>>()?;
    let mut hists: Vec<StackedHistogram> = cases
        .iter()
        .map(|c| StackedHistogram::new(c.config))
        .collect::<Result<_, _>>()?;
    for (h, r) in hists.iter().zip(&refs) {
        assert!(
            r.windows.is_empty() || h.shape() == r.shape,
            "shape {:?} vs {:?}",
            h.shape(),
            r.shape
        );
    }
    let mut slicer = WindowSlicer::new(window)?;
    let mut n = 0usize;
    let mut step = |slicer: &mut WindowSlicer| -> TestResult {
        while let Some(w) = slicer.next_window() {
            for ((h, r), c) in hists.iter_mut().zip(&refs).zip(cases) {
                let rw = r.windows.get(n).ok_or("more windows than the reference")?;
                let range = w.event_range();
                assert_eq!(
                    (w.end_us, range.start as i64, range.end as i64),
                    (rw.end, rw.start_idx, rw.stop_idx),
                    "window {n} bounds"
                );
                let shape = h.shape();
                let ours = h.build(w.events)?;
                compare(
                    ours,
                    shape,
                    rw,
                    &format!("{} window {n} (end {})", c.out.display(), w.end_us),
                )?;
            }
            n += 1;
        }
        Ok(())
    };
    for chunk in chunks {
        slicer.push(chunk)?;
        step(&mut slicer)?;
    }
    slicer.finish();
    step(&mut slicer)?;
    for r in &refs {
        assert_eq!(n, r.windows.len(), "window count");
    }
    Ok(())
}

#[test]
fn gen4_windows_match_numpy_reference() -> TestResult {
    let (Some(dat), Some(python)) = (testdata::faery("gen4.dat"), testdata::python()) else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let full = HistogramConfig::rvt(1280, 720);
    let cases = [
        Case {
            config: full,
            out: dir.path().join("full.bin"),
        },
        Case {
            config: HistogramConfig::gen4(),
            out: dir.path().join("ds2.bin"),
        },
    ];
    let window = WindowConfig::rvt();
    run_reference(
        &python,
        dir.path(),
        &[job_json(("dat", &dat), &full, Some(window), &cases)],
    )?;
    assert_eq!(read_ref(&cases[1].out)?.shape, [20, 384, 640]);
    assert_eq!(read_ref(&cases[0].out)?.windows.len(), 216);

    // Stream straight from the decoder, in its own chunks.
    let mut reader = prism_events::open(&dat)?;
    let mut chunks = Vec::new();
    let mut chunk = EventChunk::default();
    while reader.read_chunk(&mut chunk)? {
        chunks.push(std::mem::take(&mut chunk));
    }
    check_stream(chunks.iter().map(|c| c.as_slice()), window, &cases)
}

/// Synthetic edge cases on a small sensor, compared whole (one window) and windowed.
#[test]
fn edge_cases_match_numpy_reference() -> TestResult {
    let Some(python) = testdata::python() else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let (w, h) = (61u16, 47u16);
    let mut sets: Vec<(&str, EventChunk)> = Vec::new();
    let mk = |list: &[(i64, u16, u16, u8)]| {
        let mut c = EventChunk::default();
        list.iter().for_each(|&(t, x, y, p)| c.push(t, x, y, p));
        c
    };
    sets.push(("one_event", mk(&[(1234, 59, 45, 1)])));
    sets.push((
        "one_timestamp",
        mk(&(0..200)
            .map(|i| (77, (i * 7 % 61) as u16, (i * 3 % 47) as u16, (i % 2) as u8))
            .collect::<Vec<_>>()),
    ));
    // Over the cutoff, and 255 / 256 / 300 / 511 events on single pixels in one bin.
    let mut hot = Vec::new();
    for (n, x, y) in [
        (30usize, 1u16, 1u16),
        (255, 3, 3),
        (256, 5, 5),
        (300, 7, 9),
        (511, 60, 46),
    ] {
        hot.extend(std::iter::repeat_n((500, x, y, 1u8), n));
    }
    hot.extend((0..100).map(|i| (1000 + i, 9, 11, 0)));
    hot.push((2000, 0, 0, 0));
    hot.sort_by_key(|e| e.0);
    sets.push(("hot_pixels", mk(&hot)));
    // Pseudo-random events with gaps: empty windows, events exactly on window edges.
    let mut s = 0x2545F4914F6CDD1Du64;
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut t = 0i64;
    let mut random = Vec::new();
    for i in 0..5000 {
        t += if i % 1000 == 999 {
            7000
        } else {
            (rnd() % 5) as i64
        };
        random.push((
            t,
            (rnd() % u64::from(w)) as u16,
            (rnd() % u64::from(h)) as u16,
            (rnd() % 2) as u8,
        ));
    }
    random.extend((0..20).map(|k| (t + 1000 * k, 2, 2, 1)));
    sets.push(("random_gaps", mk(&random)));

    let base = HistogramConfig::rvt(w as usize, h as usize);
    let window = WindowConfig::new(1000).with_first_end(500);
    let mut jobs = Vec::new();
    let mut plans = Vec::new();
    for (name, events) in &sets {
        let path = dir.path().join(format!("{name}.events"));
        write_events(&path, events)?;
        for (mode, win) in [("whole", None), ("windowed", Some(window))] {
            let cases: Vec<Case> = [
                base,
                base.with_cutoff(255),
                base.with_downsample(true).with_padding(32),
                base.with_bins(3).with_downsample(true),
            ]
            .into_iter()
            .enumerate()
            .map(|(i, config)| Case {
                config,
                out: dir.path().join(format!("{name}_{mode}_{i}.bin")),
            })
            .collect();
            for c in &cases {
                jobs.push(job_json(
                    ("events", &path),
                    &c.config,
                    win,
                    std::slice::from_ref(c),
                ));
            }
            plans.push((name, win, events, cases));
        }
    }
    run_reference(&python, dir.path(), &jobs)?;
    for (name, win, events, cases) in &plans {
        match win {
            None => {
                for c in cases {
                    let r = read_ref(&c.out)?;
                    let mut hist = StackedHistogram::new(c.config)?;
                    assert_eq!(hist.shape(), r.shape, "{name}");
                    let ours = hist.build(events.as_slice())?;
                    compare(
                        ours,
                        r.shape,
                        &r.windows[0],
                        &format!("{name} whole {:?}", c.config),
                    )?;
                }
            }
            Some(win) => {
                check_stream(std::iter::once(events.as_slice()), *win, cases)?;
            }
        }
    }
    // The windowed random set must contain empty windows, or the case proves nothing.
    let r = read_ref(
        &plans
            .iter()
            .find(|p| *p.0 == "random_gaps" && p.1.is_some())
            .ok_or("plan")?
            .3[0]
            .out,
    )?;
    assert!(
        r.windows.iter().any(|w| w.start_idx == w.stop_idx),
        "no empty window"
    );
    // The hot-pixel set must show the cutoff and the uint8 wrap (300 -> 44, 511 -> 255).
    let hot = plans
        .iter()
        .find(|p| *p.0 == "hot_pixels" && p.1.is_none())
        .ok_or("plan")?;
    let (clipped, raw) = (read_ref(&hot.3[0].out)?, read_ref(&hot.3[1].out)?);
    assert!(clipped.windows[0].val.contains(&10), "no clipped count");
    for v in [30, 255, 44] {
        assert!(
            raw.windows[0].val.contains(&v),
            "no count {v} with cutoff 255"
        );
    }
    Ok(())
}
