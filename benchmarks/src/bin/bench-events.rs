//! `bench-events`: the event layer against its peers, on one core, in one run.
//!
//! Measures prism's EVT3, EVT2 and DAT decoding (whole file, page cache warm) and RVT
//! stacked-histogram building (720x1280, 50 ms windows, cutoff 10, windows cut by the streaming
//! slicer), then runs `benchmarks/peers/events_peers.py` (NumPy, evlib, the PyPI `evt3` and
//! `faery` decoders; `cargo xtask bench bench-events` gives them their own venv) pinned to the
//! same core with every thread pool at 1, and writes `results/events.{md,json,png}`. A peer
//! decoder that returns another number of events than prism is marked and not ranked.
//!
//! ```text
//! cargo run --release -p prism-benchmarks --bin bench-events -- [--runs 5] [--cpu 1]
//!     [--dat gen4.dat] [--evt3 evt3.raw] [--evt2 evt2.raw] [--python venv/bin/python]
//!     [--out benchmarks/results]
//!     [--no-peers]
//! ```

use std::hint::black_box;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use prism_benchmarks::timing::{pin_to_core, pinned_python, time_median};
use prism_events::repr::{HistogramConfig, StackedHistogram};
use prism_events::window::{WindowConfig, WindowSlicer};
use prism_events::{testdata, EventChunk};
use prism_plot::{BarChart, PALETTE};
use serde_json::{json, Value};

/// Event decoding and RVT stacked histograms in prism and its peers, in one run.
#[derive(Debug, clap::Parser)]
struct Cli {
    /// A DAT recording (default: faery's gen4.dat).
    #[arg(long)]
    dat: Option<PathBuf>,
    /// An EVT3 recording (default: faery's evt3.raw).
    #[arg(long)]
    evt3: Option<PathBuf>,
    /// An EVT 2.0 recording (default: faery's evt2.raw).
    #[arg(long)]
    evt2: Option<PathBuf>,
    /// Timed runs per task (the median is reported).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    runs: u64,
    /// CPU to pin prism and the peers to.
    #[arg(long, default_value_t = 1, conflicts_with = "no_pin")]
    cpu: usize,
    /// Run unpinned.
    #[arg(long)]
    no_pin: bool,
    /// The Python with the peers (default: the provisioned one).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Folder for events.md, events.json and events.png.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Time prism only.
    #[arg(long)]
    no_peers: bool,
}

#[derive(Debug)]
struct Args {
    dat: PathBuf,
    evt3: PathBuf,
    evt2: PathBuf,
    runs: usize,
    cpu: Option<usize>,
    python: Option<PathBuf>,
    out: PathBuf,
    peers: bool,
}

fn parse_args() -> Result<Args> {
    let cli = <Cli as clap::Parser>::parse();
    let faery =
        |name: &str| testdata::faery(name).with_context(|| format!("{name} not provisioned"));
    Ok(Args {
        dat: cli.dat.map_or_else(|| faery("gen4.dat"), Ok)?,
        evt3: cli.evt3.map_or_else(|| faery("evt3.raw"), Ok)?,
        evt2: cli.evt2.map_or_else(|| faery("evt2.raw"), Ok)?,
        runs: cli.runs as usize,
        cpu: (!cli.no_pin).then_some(cli.cpu),
        python: cli.python,
        out: cli
            .out
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("results")),
        peers: !cli.no_peers,
    })
}

/// Decodes the whole file, counting events.
fn decode(path: &Path) -> Result<u64> {
    let mut reader = prism_events::open(path)?;
    let mut chunk = EventChunk::default();
    let mut n = 0u64;
    while reader.read_chunk(&mut chunk)? {
        n += chunk.len() as u64;
        black_box(&chunk);
    }
    Ok(n)
}

/// Streams `events` (in decoder-sized chunks) through the RVT slicer and the histogram.
/// Returns (windows, events in windows).
fn histogram_pass(events: &EventChunk, hist: &mut StackedHistogram) -> Result<(u64, u64)> {
    let mut slicer = WindowSlicer::new(WindowConfig::rvt())?;
    let (mut windows, mut n) = (0u64, 0u64);
    let all = events.as_slice();
    let mut drain = |slicer: &mut WindowSlicer| -> Result<()> {
        while let Some(w) = slicer.next_window() {
            n += w.events.len() as u64;
            windows += 1;
            black_box(hist.build(w.events)?);
        }
        Ok(())
    };
    for start in (0..all.len()).step_by(1 << 16) {
        slicer.push(all.slice(start..(start + (1 << 16)).min(all.len())))?;
        drain(&mut slicer)?;
    }
    slicer.finish();
    drain(&mut slicer)?;
    Ok((windows, n))
}

/// One compared task: ours and the peers in million events per second.
struct Row {
    task: &'static str,
    what: String,
    ours: f64,
    ours_ms_per_window: Option<f64>,
    peers: Vec<(String, f64, Option<f64>)>,
    goal: f64,
}

impl Row {
    fn fastest_peer(&self) -> Option<&(String, f64, Option<f64>)> {
        self.peers.iter().max_by(|a, b| a.1.total_cmp(&b.1))
    }
}

fn run_peers(args: &Args) -> Result<Value> {
    let python = match &args.python {
        Some(p) => p.clone(),
        None => testdata::python().context("no Python environment for the peers")?,
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/events_peers.py");
    let mut cmd = pinned_python(&python, args.cpu);
    let out = cmd
        .arg(&script)
        .arg("--dat")
        .arg(&args.dat)
        .arg("--evt3")
        .arg(&args.evt3)
        .arg("--evt2")
        .arg(&args.evt2)
        .arg("--runs")
        .arg(args.runs.to_string())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("peers failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn mev(events: u64, secs: f64) -> f64 {
    events as f64 / secs / 1e6
}

fn main() -> Result<()> {
    let args = parse_args()?;
    if let Some(cpu) = args.cpu {
        if let Some(code) = pin_to_core(cpu)? {
            std::process::exit(code);
        }
    }
    eprintln!(
        "bench-events: {} runs per measurement, cpu {:?}",
        args.runs, args.cpu
    );

    let (evt3_s, evt3_n) = time_median(args.runs, || decode(&args.evt3))?;
    let (evt2_s, evt2_n) = time_median(args.runs, || decode(&args.evt2))?;
    let (dat_s, dat_n) = time_median(args.runs, || decode(&args.dat))?;
    let events = prism_events::reader::read_all(prism_events::open(&args.dat)?.as_mut())?;
    let mut full = StackedHistogram::new(HistogramConfig::rvt(1280, 720))?;
    let (hist_s, (windows, hist_n)) =
        time_median(args.runs, || histogram_pass(&events, &mut full))?;
    let mut gen4 = StackedHistogram::new(HistogramConfig::gen4())?;
    let (gen4_s, _) = time_median(args.runs, || histogram_pass(&events, &mut gen4))?;
    eprintln!(
        "ours done: evt3 {evt3_s:.4}s, evt2 {evt2_s:.4}s, dat {dat_s:.4}s, histogram {hist_s:.4}s / {windows} windows"
    );

    let peers = if args.peers {
        run_peers(&args)?
    } else {
        json!({"peers": [], "versions": {}, "errors": {}})
    };
    // Decoders are checked against prism's event count: a peer that reads another number of
    // events is listed with the count and left out of the ranking.
    let mut miscounted: Vec<(String, f64)> = Vec::new();
    let mut peer_rows = |task: &str, expected: Option<u64>| -> Vec<(String, f64, Option<f64>)> {
        let mut rows = Vec::new();
        for p in peers["peers"].as_array().into_iter().flatten() {
            if p["task"] != task {
                continue;
            }
            let (Some(s), Some(ev), Some(name)) = (
                p["median_s"].as_f64(),
                p["events"].as_u64(),
                p["name"].as_str(),
            ) else {
                continue;
            };
            if expected.is_some_and(|n| n != ev) {
                miscounted.push((format!("{task}: {name} read {ev} events"), mev(ev, s)));
                continue;
            }
            let per_window = p["windows"].as_u64().map(|w| s * 1e3 / w as f64);
            rows.push((name.to_string(), mev(ev, s), per_window));
        }
        rows
    };
    let per_window = |s: f64| s * 1e3 / windows as f64;
    let rows = vec![
        Row {
            task: "decode_evt3",
            what: format!("EVT3 decoding, evt3.raw ({evt3_n} events)"),
            ours: mev(evt3_n, evt3_s),
            ours_ms_per_window: None,
            peers: peer_rows("decode_evt3", Some(evt3_n)),
            goal: 2.0,
        },
        Row {
            task: "decode_evt2",
            what: format!("EVT2 decoding, evt2.raw ({evt2_n} events)"),
            ours: mev(evt2_n, evt2_s),
            ours_ms_per_window: None,
            peers: peer_rows("decode_evt2", Some(evt2_n)),
            goal: 2.0,
        },
        Row {
            task: "decode_dat",
            what: format!("DAT decoding, gen4.dat ({dat_n} events)"),
            ours: mev(dat_n, dat_s),
            ours_ms_per_window: None,
            peers: peer_rows("decode_dat", Some(dat_n)),
            goal: 2.0,
        },
        Row {
            task: "histogram",
            what: format!(
                "RVT stacked histogram 20x720x1280, {windows} windows of 50 ms, cutoff 10"
            ),
            ours: mev(hist_n, hist_s),
            ours_ms_per_window: Some(per_window(hist_s)),
            peers: peer_rows("histogram", None),
            goal: 3.0,
        },
        Row {
            task: "histogram_gen4",
            what:
                "RVT stacked histogram, 1Mpx input 20x384x640 (x0.5 nearest-exact + pad), ours only"
                    .into(),
            ours: mev(hist_n, gen4_s),
            ours_ms_per_window: Some(per_window(gen4_s)),
            peers: Vec::new(),
            goal: 0.0,
        },
    ];
    write_results(&args, &rows, &miscounted, &peers)
}

fn write_results(
    args: &Args,
    rows: &[Row],
    miscounted: &[(String, f64)],
    peers: &Value,
) -> Result<()> {
    std::fs::create_dir_all(&args.out)?;
    let mut md = String::from("# Event layer: prism vs peers (one core)\n\n");
    md += &format!(
        "`cargo run --release -p prism-benchmarks --bin bench-events` — median of {} runs after a warm-up, \
         files in page cache, prism and peers pinned to CPU {:?}, peer thread pools at 1. \
         Throughput in million events per second (higher is better).\n\n",
        args.runs, args.cpu
    );
    md += "| task | prism | ms/window | fastest peer | peer | peer ms/window | ratio | goal |\n|---|---|---|---|---|---|---|---|\n";
    let mut jrows = Vec::new();
    for r in rows {
        let ms = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.3}"));
        let fastest = r.fastest_peer();
        let ratio = fastest.map(|p| r.ours / p.1);
        md += &format!(
            "| {} | {:.1} | {} | {} | {} | {} | {} | {} |\n",
            r.what,
            r.ours,
            ms(r.ours_ms_per_window),
            fastest.map_or("–".into(), |p| p.0.clone()),
            fastest.map_or("–".into(), |p| format!("{:.1}", p.1)),
            ms(fastest.and_then(|p| p.2)),
            ratio.map_or("–".into(), |v| format!("{v:.1}x")),
            match (ratio, r.goal > 0.0) {
                (Some(v), true) => format!(
                    "≥{:.0}x {}",
                    r.goal,
                    if v >= r.goal { "met" } else { "NOT met" }
                ),
                _ => "–".into(),
            }
        );
        jrows.push(json!({
            "task": r.task, "what": r.what, "ours_mev_s": r.ours, "ours_ms_per_window": r.ours_ms_per_window,
            "peers": r.peers.iter().map(|p| json!({"name": p.0, "mev_s": p.1, "ms_per_window": p.2})).collect::<Vec<_>>(),
            "ratio_vs_fastest_peer": ratio, "goal": r.goal,
        }));
    }
    md += "\nAll peers:\n\n| task | peer | M events/s | ms/window |\n|---|---|---|---|\n";
    for r in rows {
        for p in &r.peers {
            md += &format!(
                "| {} | {} | {:.1} | {} |\n",
                r.task,
                p.0,
                p.1,
                p.2.map_or("–".into(), |v| format!("{v:.3}"))
            );
        }
    }
    for (what, rate) in miscounted {
        md += &format!("\nNot ranked: {what}, not prism's count ({rate:.1} M events/s).\n");
    }
    md += &format!(
        "\nPeer versions: {}. Peer errors: {}.\n",
        peers["versions"], peers["errors"]
    );
    std::fs::write(args.out.join("events.md"), &md)?;
    let j = json!({"runs": args.runs, "cpu": args.cpu, "rows": jrows, "not_ranked": miscounted.iter().map(|m| json!({"what": m.0, "mev_s": m.1})).collect::<Vec<_>>(), "peer_versions": peers["versions"], "peer_errors": peers["errors"]});
    std::fs::write(
        args.out.join("events.json"),
        serde_json::to_string_pretty(&j)?,
    )?;
    // One group per task; prism's bar in its own colour. Decoders and histograms differ by
    // orders of magnitude, so the value axis is logarithmic.
    let mut chart = BarChart::new("Event layer, one core: million events per second")
        .x_label("M events/s")
        .unit(" M ev/s")
        .x_log(true)
        .width(1200)
        .color("prism", PALETTE[0]);
    for r in rows.iter().filter(|r| !r.peers.is_empty()) {
        let title = match r.fastest_peer() {
            Some(p) => format!(
                "{}: prism {:.1}x the fastest peer",
                r.task.replace('_', " "),
                r.ours / p.1
            ),
            None => r.task.replace('_', " "),
        };
        let bars: Vec<(String, f64)> = std::iter::once(("prism".to_string(), r.ours))
            .chain(r.peers.iter().map(|p| (p.0.clone(), p.1)))
            .collect();
        chart = chart.group(&title, &bars);
    }
    chart.save_png(args.out.join("events.png"))?;
    print!("{md}");
    Ok(())
}
