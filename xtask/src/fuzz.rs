//! `cargo xtask fuzz [--seconds N] [--runs N] [TARGET...]`: the cargo-fuzz campaign over every
//! target in `fuzz/` (all of them by default), each run until `--runs` executions (default 10
//! million) or `--seconds` (default 1800), whichever comes first.
//!
//! - cargo-fuzz is installed from the crate registry under `$PRISM_ENV/tools` (pinned); the
//!   targets build with the nightly toolchain these machines carry (`cargo +nightly`).
//! - No sanitizer (`-s none`): the workspace denies `unsafe` code, so AddressSanitizer would
//!   only slow the search down; debug assertions and overflow checks are on (`-a`), so an
//!   arithmetic overflow is a finding like a panic.
//! - Seed corpora under `$PRISM_ENV/fuzz/corpus/TARGET`, written once: slices of the real faery
//!   recordings for the decoders (for AEDAT 4.0 also packets of gen4.dat's events), and from the provisioned Python environment (h5py, numpy,
//!   onnx, tritonclient's protobuf messages) an HDF5 event file, an RVT label file, ONNX models
//!   carrying a `prism` spec and KServe requests for each endpoint. libFuzzer grows them.
//! - A summary per target (executions, seconds, executions per second, peak memory, outcome) is
//!   printed and written to `benchmarks/results/fuzz/campaign.{md,json}`; a crash, hang or
//!   out-of-memory stops nothing else, leaves its input under `$PRISM_ENV/fuzz/artifacts` and
//!   makes the command fail at the end.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::provision::Env;

const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Largest input libFuzzer makes (its own default unless a seed is larger): small inputs keep
/// the executions per second up, and every decoder path fits in 4 KiB.
const MAX_LEN: usize = 4096;

/// Every target in `fuzz/Cargo.toml`, in campaign order.
const TARGETS: &[&str] = &[
    "aedat4",
    "evt3",
    "evt2",
    "dat",
    "hdf5",
    "rvt_histograms",
    "labels",
    "writers",
    "onnx_metadata",
    "server_requests",
];

/// Seeds the Python environment writes: argv[1] is the corpus root, argv[2] the repository.
const PYTHON_SEEDS: &str = r#"
import json, os, sys
import numpy as np, h5py, onnx
from tritonclient.grpc import service_pb2
root, repo = sys.argv[1], sys.argv[2]
def put(target, name, data):
    os.makedirs(os.path.join(root, target), exist_ok=True)
    with open(os.path.join(root, target, name), "wb") as f:
        f.write(data)

# HDF5: a small RVT-layout event file, and one with DSEC's t_offset and ms_to_idx.
rng = np.random.default_rng(1)
n = 300
t = np.cumsum(rng.integers(0, 50, n)).astype(np.int64)
for name, extra in [("rvt.h5", False), ("dsec.h5", True)]:
    path = os.path.join(root, "seed.h5")
    with h5py.File(path, "w") as f:
        g = f.create_group("events")
        kw = dict(chunks=(64,), compression="gzip") if not extra else {}
        g.create_dataset("x", data=rng.integers(0, 640, n).astype(np.uint16), **kw)
        g.create_dataset("y", data=rng.integers(0, 480, n).astype(np.uint16), **kw)
        g.create_dataset("p", data=rng.integers(0, 2, n).astype(np.int8), **kw)
        g.create_dataset("t", data=t, **kw)
        if extra:
            f.create_dataset("t_offset", data=np.int64(1_000_000))
            f.create_dataset("ms_to_idx", data=np.searchsorted(t, np.arange(0, t[-1] // 1000 + 1) * 1000).astype(np.uint64))
        else:
            g.create_dataset("height", data=480)
            g.create_dataset("width", data=640)
    put("hdf5", name, open(path, "rb").read())
    os.remove(path)

# RVT histogram files: RVT's writer settings (one chunk per window, Blosc + Zstd level 1 with
# byte shuffle, filter 32001) on a few small windows; also LZ4 and deflate, and no filter.
try:
    import hdf5plugin
    blosc = {"zstd": hdf5plugin.Blosc(cname="zstd", clevel=1, shuffle=hdf5plugin.Blosc.SHUFFLE),
             "lz4": hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.BITSHUFFLE)}
except ImportError:
    blosc = {}
hist = rng.integers(0, 4, (3, 4, 6, 10)).astype(np.uint8)
hist[hist < 3] = 0
for name, kw in list(blosc.items()) + [("gzip", dict(compression="gzip")), ("plain", {})]:
    path = os.path.join(root, "seed.h5")
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=hist, chunks=(1, 4, 6, 10), maxshape=(None, 4, 6, 10), **kw)
    put("rvt_histograms", name + ".h5", open(path, "rb").read())
    os.remove(path)

# Labels: RVT's bbox dtype, as np.save writes it.
dtype = np.dtype([("t", "<u8"), ("x", "<f4"), ("y", "<f4"), ("w", "<f4"), ("h", "<f4"),
                  ("class_id", "u1"), ("class_confidence", "<f4"), ("track_id", "<u4")])
boxes = np.zeros(4, dtype=dtype)
boxes["t"] = [50_000, 50_000, 100_000, 150_000]
boxes["w"] = boxes["h"] = 20
boxes["class_id"] = [0, 1, 0, 1]
path = os.path.join(root, "seed.npy")
np.save(path, boxes)
put("labels", "bbox.npy", open(path, "rb").read())
os.remove(path)

# ONNX: the exporter's round-trip models, with and without a prism spec that fits them.
spec = {"spec_version": 1, "model": "seq-mlp", "task": "next-vector",
        "input": {"name": "x", "shape": [None, 5, 16]}, "output": {"name": "y"}, "state": [],
        "sequence": {"context": 5, "dim": 16, "architecture": "mlp", "normalized": True}}
for name in ["mlp", "convnet", "encoder"]:
    model = onnx.load(os.path.join(repo, "export/roundtrip/models", name + ".onnx"))
    put("onnx_metadata", name + ".onnx", model.SerializeToString())
    onnx.helper.set_model_props(model, {"prism": json.dumps(spec)})
    put("onnx_metadata", name + "-spec.onnx", model.SerializeToString())

# Server requests: the first byte picks the endpoint (see fuzz_targets/server_requests.rs).
infer = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}],
         "parameters": {"sequence_id": 7, "sequence_start": True}}
put("server_requests", "http-json", b"\x00" + json.dumps(infer).encode())
binary = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32",
                      "parameters": {"binary_data_size": 8}}],
          "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}
head = json.dumps(binary).encode()
put("server_requests", "http-binary", b"\x01" + str(len(head)).encode() + b"\n" + head + np.array([1, 2], "<f4").tobytes())
req = service_pb2.ModelInferRequest(model_name="m", id="1")
tensor = req.inputs.add(name="x", datatype="FP32", shape=[1, 2])
tensor.contents.fp32_contents.extend([1.0, 2.0])
req.parameters["sequence_id"].int64_param = 3
req.parameters["sequence_end"].bool_param = True
put("server_requests", "grpc-contents", b"\x02" + req.SerializeToString())
raw = service_pb2.ModelInferRequest(model_name="m")
raw.inputs.add(name="x", datatype="FP32", shape=[1, 2])
raw.raw_input_contents.append(np.array([1, 2], "<f4").tobytes())
put("server_requests", "grpc-raw", b"\x02" + raw.SerializeToString())
events = {"t": [0, 10, 20], "x": [1, 2, 3], "y": [4, 5, 6], "p": [0, 1, 1], "finish": False}
put("server_requests", "events-json", b"\x03" + json.dumps(events).encode())
# Binary events: the count (u32), then the t (i64), x, y (u16) and p (u8) columns.
rec = (np.array([3], "<u4").tobytes() + np.array([0, 10, 20], "<i8").tobytes()
       + np.array([1, 2, 3], "<u2").tobytes() + np.array([4, 5, 6], "<u2").tobytes()
       + np.array([0, 1, 1], "u1").tobytes())
put("server_requests", "events-binary", b"\x07" + rec)
put("server_requests", "events-binary-finish", b"\x0f" + rec)
"#;

/// Outcome of one target's run.
struct Run {
    target: String,
    executions: u64,
    seconds: f64,
    peak_rss_mb: u64,
    corpus_files: usize,
    outcome: String,
}

pub fn run(env: &Env, args: &[String]) -> Result<()> {
    let (mut seconds, mut runs, mut targets) = (1800u64, 10_000_000u64, Vec::new());
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => seconds = number(it.next(), "--seconds")?,
            "--runs" => runs = number(it.next(), "--runs")?,
            name if TARGETS.contains(&name) => targets.push(name.to_string()),
            other => bail!(
                "unknown fuzz argument {other:?}; usage: cargo xtask fuzz [--seconds N] [--runs N] [{}]...",
                TARGETS.join(" | ")
            ),
        }
    }
    if targets.is_empty() {
        targets = TARGETS.iter().map(|t| (*t).to_string()).collect();
    }
    env.provision()?;
    let cargo_fuzz = install_cargo_fuzz(env)?;
    let work = env.dir.join("fuzz");
    let corpus_root = work.join("corpus");
    write_seeds(env, &corpus_root)?;
    let fuzz_dir = env.root.join("fuzz");
    let target_dir = work.join("target");
    let fuzz = |extra: &[&str]| {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&fuzz_dir)
            .arg("+nightly")
            .arg("fuzz")
            .args(extra)
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("PATH", path_with(&cargo_fuzz));
        // The decoder targets write their input to a file each run: keep that in memory.
        if Path::new("/dev/shm").is_dir() {
            cmd.env("TMPDIR", "/dev/shm");
        }
        cmd
    };
    eprintln!("xtask: building the fuzz targets (nightly, no sanitizer, debug assertions)");
    crate::run(
        &mut fuzz(&["build", "-s", "none", "-a"]),
        "cargo +nightly fuzz build",
    )?;
    let mut results = Vec::new();
    for target in &targets {
        let corpus = corpus_root.join(target);
        fs::create_dir_all(&corpus)?;
        let artifacts = work.join("artifacts").join(target);
        fs::create_dir_all(&artifacts)?;
        let log = work.join("logs").join(format!("{target}.log"));
        fs::create_dir_all(log.parent().context("log dir")?)?;
        eprintln!(
            "xtask: fuzzing {target} for {runs} runs or {seconds} s (log: {})",
            log.display()
        );
        let started = Instant::now();
        let status = fuzz(&[
            "run",
            "-s",
            "none",
            "-a",
            target,
            &corpus.to_string_lossy(),
            "--",
            &format!("-runs={runs}"),
            &format!("-max_len={MAX_LEN}"),
            &format!("-max_total_time={seconds}"),
            "-rss_limit_mb=2048",
            "-timeout=10",
            "-print_final_stats=1",
            &format!("-artifact_prefix={}/", artifacts.display()),
        ])
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log)?)
        .status()
        .with_context(|| format!("could not start cargo fuzz run {target}"))?;
        let text = fs::read_to_string(&log).unwrap_or_default();
        let outcome = if status.success() {
            "no crash, hang or out-of-memory".to_string()
        } else {
            let kind = ["deadly signal", "timeout", "out-of-memory", "panicked"]
                .into_iter()
                .find(|k| text.contains(k))
                .unwrap_or("failed");
            format!("FOUND: {kind} (inputs in {})", artifacts.display())
        };
        let run = Run {
            target: target.clone(),
            executions: stat(&text, "stat::number_of_executed_units:"),
            seconds: started.elapsed().as_secs_f64(),
            peak_rss_mb: stat(&text, "stat::peak_rss_mb:"),
            corpus_files: fs::read_dir(&corpus).map_or(0, Iterator::count),
            outcome,
        };
        eprintln!(
            "xtask: {target}: {} executions in {:.0} s, {}",
            run.executions, run.seconds, run.outcome
        );
        results.push(run);
    }
    let nightly = output(Command::new("rustc").args(["+nightly", "--version"]))?;
    write_summary(env, &results, &nightly, runs, seconds)?;
    if results.iter().any(|r| r.outcome.starts_with("FOUND")) {
        bail!("the fuzzers found inputs that crash, hang or run out of memory (see above)");
    }
    Ok(())
}

fn number(value: Option<&String>, flag: &str) -> Result<u64> {
    value
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("{flag} takes a positive whole number"))
}

/// The last value libFuzzer printed for `key`.
fn stat(log: &str, key: &str) -> u64 {
    log.lines()
        .rev()
        .filter_map(|l| l.strip_prefix(key))
        .find_map(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().context("could not start rustc +nightly")?;
    if !out.status.success() {
        bail!("the nightly toolchain is missing (`rustup toolchain install nightly`)");
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `$PRISM_ENV/tools/bin/cargo-fuzz`, installed from the registry when missing.
fn install_cargo_fuzz(env: &Env) -> Result<PathBuf> {
    let root = env.dir.join("tools");
    let bin = root.join("bin");
    let stamp = root.join(".cargo-fuzz-version");
    if bin.join("cargo-fuzz").is_file()
        && fs::read_to_string(&stamp).ok().as_deref() == Some(CARGO_FUZZ_VERSION)
    {
        return Ok(bin);
    }
    eprintln!("xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION}");
    crate::run(
        Command::new("cargo").args([
            "install",
            "cargo-fuzz",
            "--locked",
            "--force",
            "--version",
            CARGO_FUZZ_VERSION,
            "--root",
            &root.to_string_lossy(),
        ]),
        "cargo install cargo-fuzz",
    )?;
    fs::write(&stamp, CARGO_FUZZ_VERSION)?;
    Ok(bin)
}

fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut paths = vec![dir.to_path_buf()];
    if let Some(path) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(paths).unwrap_or_default()
}

/// Seeds each target's corpus once: slices of the real recordings' event data (the targets
/// supply their own header) and what [`PYTHON_SEEDS`] writes.
fn write_seeds(env: &Env, root: &Path) -> Result<()> {
    let faery = env.dir.join("data/faery");
    if !root.join("aedat4").is_dir() {
        write_aedat4_seeds(&faery, &root.join("aedat4"))?;
    }
    // Named after the seed recipe: a corpus seeded by an older one gets the new seeds too.
    let stamp = root.join(".seeded-rvt-histograms");
    if stamp.is_file() {
        return Ok(());
    }
    for (target, file, word) in [
        ("evt3", "evt3.raw", 2),
        ("evt2", "evt2.raw", 4),
        ("dat", "gen4.dat", 8),
    ] {
        let bytes = fs::read(faery.join(file)).with_context(|| format!("reading {file}"))?;
        let mut data = &bytes[header_len(&bytes)..];
        if target == "dat" {
            data = data.get(2..).unwrap_or_default(); // the type and size bytes
        }
        let dir = root.join(target);
        fs::create_dir_all(&dir)?;
        // A byte of reader options first (see fuzz/src/lib.rs), then whole words.
        for (k, len) in [256usize, 1024, MAX_LEN - 1].into_iter().enumerate() {
            let start = (data.len() / 3 * k) / word * word;
            let end = (start + len).min(data.len());
            let mut seed = vec![0u8];
            seed.extend_from_slice(&data[start..end]);
            fs::write(dir.join(format!("{file}-{k}")), seed)?;
        }
    }
    crate::run(
        Command::new(env.python())
            .arg("-c")
            .arg(PYTHON_SEEDS)
            .arg(root)
            .arg(&env.root),
        "writing the fuzz seeds",
    )?;
    fs::write(&stamp, "")?;
    Ok(())
}

/// AEDAT 4.0 seeds (see `fuzz/fuzz_targets/aedat4.rs`): an options byte, then either a whole
/// file (the start of faery's `davis346.aedat4`) or packets after the target's own header:
/// the real file's LZ4 packets, and uncompressed event packets of gen4.dat's events with a
/// packet of another stream between them.
fn write_aedat4_seeds(faery: &Path, dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)?;
    let davis = fs::read(faery.join("davis346.aedat4")).context("reading davis346.aedat4")?;
    let prefix = |knob: u8, bytes: &[u8]| {
        let mut seed = vec![knob];
        seed.extend_from_slice(&bytes[..bytes.len().min(MAX_LEN - 1)]);
        seed
    };
    fs::write(dir.join("davis346-file"), prefix(0x00, &davis))?;
    let io_header_len = davis
        .get(14..18)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes) as usize;
    let packets = davis.get(18 + io_header_len..).unwrap_or_default();
    fs::write(dir.join("davis346-lz4-packets"), prefix(0x80, packets))?;

    let gen4 = fs::read(faery.join("gen4.dat")).context("reading gen4.dat")?;
    let records = gen4.get(header_len(&gen4) + 2..).unwrap_or_default();
    let events: Vec<(i64, i16, i16, bool)> = records
        .chunks_exact(8)
        .map(|r| {
            let t = u32::from_le_bytes([r[0], r[1], r[2], r[3]]);
            let w = u32::from_le_bytes([r[4], r[5], r[6], r[7]]);
            let (x, y) = ((w & 0x3FFF) % 346, ((w >> 14) & 0x3FFF) % 260);
            (i64::from(t), x as i16, y as i16, w >> 28 & 1 == 1)
        })
        .collect();
    let packet = |stream: i32, body: &[u8]| {
        let mut p = stream.to_le_bytes().to_vec();
        p.extend((body.len() as u32).to_le_bytes());
        p.extend_from_slice(body);
        p
    };
    for (k, knob) in [0x07u8, 0x1F, 0x60].into_iter().enumerate() {
        let start = (events.len() / 3 * k).min(events.len().saturating_sub(200));
        let Some(slice) = events.get(start..start + 200) else {
            break;
        };
        let mut seed = vec![knob];
        seed.extend(packet(2, &[0u8; 16]));
        seed.extend(packet(0, &event_packet(&slice[..100])));
        seed.extend(packet(0, &event_packet(&slice[100..])));
        fs::write(dir.join(format!("gen4-events-{k}")), seed)?;
    }
    Ok(())
}

/// A size-prefixed `EventPacket` flatbuffer, laid out by hand: size prefix, root offset,
/// `EVTS`, a one-field vtable, the table, then the vector of 16-byte `Event` structs.
fn event_packet(events: &[(i64, i16, i16, bool)]) -> Vec<u8> {
    let total = 32 + 16 * events.len();
    let mut b = Vec::with_capacity(total);
    b.extend(((total - 4) as u32).to_le_bytes()); // 0: size prefix
    b.extend(16u32.to_le_bytes()); // 4: root offset: the table at 4 + 16
    b.extend(b"EVTS"); // 8: file identifier
    b.extend([6u16, 8, 4, 0].iter().flat_map(|v| v.to_le_bytes())); // 12: vtable, padding
    b.extend(8i32.to_le_bytes()); // 20: table: its vtable is 8 bytes back
    b.extend(4u32.to_le_bytes()); // 24: `elements`, the vector at 24 + 4
    b.extend((events.len() as u32).to_le_bytes()); // 28: vector length; structs from 32
    for &(t, x, y, on) in events {
        b.extend(t.to_le_bytes());
        b.extend(x.to_le_bytes());
        b.extend(y.to_le_bytes());
        b.extend([u8::from(on), 0, 0, 0]);
    }
    b
}

/// Bytes of `%` header lines at the start of a Prophesee file.
fn header_len(bytes: &[u8]) -> usize {
    let mut at = 0;
    while bytes.get(at) == Some(&b'%') {
        match bytes[at..].iter().position(|&b| b == b'\n') {
            Some(end) => at += end + 1,
            None => return bytes.len(),
        }
    }
    at
}

fn write_summary(env: &Env, runs: &[Run], nightly: &str, limit: u64, seconds: u64) -> Result<()> {
    let mut md = String::new();
    writeln!(
        md,
        "Fuzzing campaign (`cargo xtask fuzz`): each target until {limit} executions or {seconds} s, \
         one core, no sanitizer, debug assertions on; {nightly}.\n"
    )?;
    writeln!(
        md,
        "| target | executions | seconds | executions/s | peak RSS (MB) | corpus files | outcome |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|---|")?;
    let mut json = Vec::new();
    for r in runs {
        writeln!(
            md,
            "| {} | {} | {:.0} | {:.0} | {} | {} | {} |",
            r.target,
            r.executions,
            r.seconds,
            r.executions as f64 / r.seconds.max(1e-9),
            r.peak_rss_mb,
            r.corpus_files,
            r.outcome
        )?;
        json.push(format!(
            "{{\"target\":\"{}\",\"executions\":{},\"seconds\":{:.1},\"peak_rss_mb\":{},\"corpus_files\":{},\"outcome\":\"{}\"}}",
            r.target,
            r.executions,
            r.seconds,
            r.peak_rss_mb,
            r.corpus_files,
            r.outcome.replace('\\', "/").replace('"', "'")
        ));
    }
    print!("{md}");
    let dir = env.root.join("benchmarks/results/fuzz");
    fs::create_dir_all(&dir)?;
    // A campaign over some targets writes its own files, named by its targets.
    fs::write(dir.join(format!("campaign-{}.md", stamp_name(runs))), &md)?;
    fs::write(
        dir.join(format!("campaign-{}.json", stamp_name(runs))),
        format!("[{}]\n", json.join(",\n")),
    )?;
    Ok(())
}

/// `all` for the full list of targets, else the targets joined by `+`.
fn stamp_name(runs: &[Run]) -> String {
    if runs.len() == TARGETS.len() {
        "all".into()
    } else {
        runs.iter()
            .map(|r| r.target.as_str())
            .collect::<Vec<_>>()
            .join("+")
    }
}
