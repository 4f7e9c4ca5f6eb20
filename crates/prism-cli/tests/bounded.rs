//! Bounded work for hostile and odd input (issue 21), through the `prism` binary: a server that
//! stays responsive and stops on SIGTERM under timestamp-gap requests, `infer` across an hour's
//! gap, and the messages a new user met that said something untrue.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::needless_range_loop
)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{prism, stderr, stdout};
use prism_events::write::{create, WriteFormat};
use prism_events::{EventChunk, SensorSize};
use serde_json::{json, Value};

/// rvt-tiny-synth (random weights) exported once for this test binary: 160x128, 50 ms windows.
fn model() -> &'static Path {
    static MODEL: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &MODEL
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("synth.onnx");
            let o = prism(&[
                "export",
                "onnx",
                "--model",
                "rvt-tiny-synth",
                "--out",
                path.to_str().unwrap(),
            ]);
            assert!(o.status.success(), "{}", stderr(&o));
            (dir, path)
        })
        .1
}

fn write_events(
    path: &Path,
    format: WriteFormat,
    sensor: (u16, u16),
    events: &[(i64, u16, u16, u8)],
) {
    let mut chunk = EventChunk::default();
    for &(t, x, y, p) in events {
        chunk.push(t, x, y, p);
    }
    let mut w = create(
        path,
        format,
        SensorSize {
            width: sensor.0,
            height: sensor.1,
        },
    )
    .unwrap();
    w.write_chunk(&chunk).unwrap();
    w.finish().unwrap();
}

#[test]
fn infer_across_an_hours_gap_finishes_in_seconds_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("gap.dat");
    write_events(
        &rec,
        WriteFormat::Dat,
        (160, 128),
        &[
            (0, 1, 1, 0),
            (1_000, 2, 2, 1),
            (2_000, 3, 3, 0),
            (3_600_000_000, 4, 4, 1),
        ],
    );
    let out = dir.path().join("det.jsonl");
    let started = Instant::now();
    let o = prism(&[
        "infer",
        "--model",
        model().to_str().unwrap(),
        "--input",
        rec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let took = started.elapsed();
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("gap of 3599.998 s after 0.002 s"), "{err}");
    assert!(
        err.contains("1 gap longer than 1000 ms reset the state"),
        "{err}"
    );
    // Two windows before the gap and two after it, not 72,000.
    assert!(err.contains("4 events, 4 windows"), "{err}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[test]
fn infer_says_which_sensor_it_assumes() {
    let dir = tempfile::tempdir().unwrap();
    let declared = dir.path().join("declared.raw");
    write_events(
        &declared,
        WriteFormat::Evt2,
        (160, 128),
        &[(0, 1, 1, 0), (70_000, 2, 2, 1)],
    );
    // The same EVT2 file without the lines that declare its size.
    let bytes = std::fs::read(&declared).unwrap();
    let text_end = bytes
        .windows(6)
        .position(|w| w == b"% end\n")
        .map_or(0, |i| i + 6);
    let header = String::from_utf8_lossy(&bytes[..text_end]);
    let kept: String = header
        .lines()
        .filter(|l| !l.contains("geometry") && !l.contains("format"))
        .map(|l| format!("{l}\n"))
        .collect();
    let bare = dir.path().join("bare.raw");
    std::fs::write(&bare, [kept.as_bytes(), &bytes[text_end..]].concat()).unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "infer",
            "--model",
            model().to_str().unwrap(),
            "--input",
            bare.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        prism(&args)
    };
    let o = run(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("declares no sensor size; reading it as the model's 160x128"),
        "{}",
        stderr(&o)
    );
    let o = run(&["--sensor", "160x128"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !stderr(&o).contains("declares no sensor size"),
        "{}",
        stderr(&o)
    );
    let o = run(&["--sensor", "640x480"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--sensor 640x480: the model was trained for a 160x128 sensor"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn messages_say_what_is_true() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name).to_str().unwrap().to_string();

    // A directory as a model: said so, once (no cause printed twice).
    let o = prism(&["infer", "--model", &d(""), "--input", "x.dat"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("is a directory") && !err.contains("not found"),
        "{err}"
    );
    assert_eq!(err.matches("is a directory").count(), 1, "{err}");

    // A missing card file is a missing file, not an unknown model.
    let o = prism(&["train", "--config", "nope.toml", "--run-dir", &d("r")]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("nope.toml: No such file"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("unknown model"), "{}", stderr(&o));

    // --resume with nothing to resume.
    let o = prism(&[
        "train",
        "--config",
        "rvt-tiny-synth",
        "--run-dir",
        &d("empty-run"),
        "--resume",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--resume: no checkpoint in"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.path().join("empty-run").exists(), "nothing is started");

    // Sizes a header declares beyond what any sensor has, or of zero.
    for (name, header) in [
        ("huge.dat", "% Width 99999999\n% Height 99999999\n"),
        ("zero.dat", "% Width 0\n% Height 0\n"),
    ] {
        let mut bytes = header.as_bytes().to_vec();
        bytes.extend_from_slice(&[0, 8]);
        bytes.extend_from_slice(&[0; 16]);
        std::fs::write(d(name), bytes).unwrap();
        let o = prism(&["data", "inspect", &d(name)]);
        assert!(!o.status.success(), "{name}");
        assert!(
            stderr(&o).contains("width and height must be whole numbers from 1 to 65535"),
            "{name}: {}",
            stderr(&o)
        );
    }

    // Options that size allocations are checked against a stated limit: no abort.
    let rec = d("small.dat");
    write_events(
        Path::new(&rec),
        WriteFormat::Dat,
        (160, 128),
        &[(0, 1, 1, 0), (60_000, 2, 2, 1)],
    );
    let o = prism(&[
        "data",
        "render",
        &rec,
        "--out",
        &d("frames"),
        "--scale",
        "1000",
        "--max-frames",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--scale 1000 makes 160000x128000 frames; at most 16384 pixels a side"),
        "{}",
        stderr(&o)
    );
    let o = prism(&["data", "render", &rec, "--out", &d("frames"), "--bins", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // A headerless DAT file, named as such, takes its size from --sensor: the largest one is
    // refused, not allocated.
    let headerless = d("headerless.dat");
    std::fs::write(&headerless, [0u8, 8, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap();
    let o = prism(&[
        "data",
        "render",
        &headerless,
        "--format",
        "dat",
        "--out",
        &d("frames"),
        "--sensor",
        "65535x65535",
        "--max-frames",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cells is larger than the 268435456 a representation may have"),
        "{}",
        stderr(&o)
    );

    // Shapes print as numbers.
    let o = prism(&["info", "--model", "rvt-tiny-synth"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("histogram [1, 20, 128, 160]") && !stdout(&o).contains("Some("),
        "{}",
        stdout(&o)
    );

    // A server needs a worker.
    let o = prism(&[
        "serve",
        "--model",
        model().to_str().unwrap(),
        "--workers",
        "0",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--workers"), "{}", stderr(&o));

    // A server serves one model or a repository, not neither or both.
    let o = prism(&["serve"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--model"), "{}", stderr(&o));
    let o = prism(&[
        "serve",
        "--model",
        model().to_str().unwrap(),
        "--model-repository",
        ".",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot be used with"), "{}", stderr(&o));
    let empty = tempfile::tempdir().unwrap();
    let o = prism(&[
        "serve",
        "--model-repository",
        empty.path().to_str().unwrap(),
        "--addr",
        "127.0.0.1:0",
        "--no-grpc",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no .onnx file"), "{}", stderr(&o));
}

/// One HTTP request; `None` when the server is gone.
fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    let head = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    Some((
        status,
        text.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    ))
}

fn events_body(t: &[i64], finish: bool) -> Vec<u8> {
    let n = t.len();
    let x: Vec<u16> = (0..n).map(|i| (i % 160) as u16).collect();
    json!({"t": t, "x": x, "y": vec![5; n], "p": vec![1; n], "finish": finish})
        .to_string()
        .into_bytes()
}

/// The denial of service of issue 21, against `prism serve` in its own process: four requests
/// with a 1e15 us timestamp gap (and one with a gap of exactly the 1 s limit) in flight, the
/// server still answers `/v2/health/ready` within a second and a good infer within its normal
/// time; under a load of long stream requests, SIGTERM ends it cleanly within two seconds.
#[test]
fn serve_stays_responsive_under_gap_requests_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_prism"))
        .args([
            "-v",
            "serve",
            "--model",
            model().to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
            "--workers",
            "4",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    let addr: SocketAddr = loop {
        let line = lines
            .next()
            .expect("the server says where it listens")
            .unwrap();
        log.push_str(&line);
        log.push('\n');
        if let Some(rest) = line.strip_prefix("serving on http://") {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    let drain = std::thread::spawn(move || {
        lines
            .map_while(Result::ok)
            .fold(log, |acc, l| acc + &l + "\n")
    });

    // A good inference request, with the model's own input shapes, and its time when idle.
    let (status, meta) = http(addr, "GET", "/v2/models/rvt-tiny-synth", b"").unwrap();
    assert_eq!(status, 200, "{meta}");
    let meta: Value = serde_json::from_str(&meta).unwrap();
    let inputs: Vec<Value> = meta["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let shape: Vec<usize> = i["shape"].as_array().unwrap().iter().map(|d| d.as_i64().unwrap().max(1) as usize).collect();
            json!({"name": i["name"], "shape": shape, "datatype": "FP32", "data": vec![0.0f32; shape.iter().product()]})
        })
        .collect();
    let infer = json!({"inputs": inputs}).to_string().into_bytes();
    let timed_infer = || {
        let t = Instant::now();
        let (status, body) = http(addr, "POST", "/v2/models/rvt-tiny-synth/infer", &infer).unwrap();
        assert_eq!(status, 200, "{body}");
        t.elapsed()
    };
    let idle = (0..3).map(|_| timed_infer()).min().unwrap();

    let mut gaps: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                http(
                    addr,
                    "POST",
                    &format!("/v2/models/rvt-tiny-synth/streams/g{i}/events"),
                    &events_body(&[0, 1_000_000_000_000_000], true),
                )
            })
        })
        .collect();
    gaps.push(std::thread::spawn(move || {
        http(
            addr,
            "POST",
            "/v2/models/rvt-tiny-synth/streams/limit/events",
            &events_body(&[0, 1_000_000], true),
        )
    }));
    let t = Instant::now();
    let (status, _) = http(addr, "GET", "/v2/health/ready", b"").unwrap();
    assert_eq!(status, 200);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "ready took {:?}",
        t.elapsed()
    );
    let busy = timed_infer();
    assert!(
        busy <= idle * 3 + Duration::from_secs(1),
        "infer took {busy:?} under the gap requests, {idle:?} idle"
    );
    for (i, g) in gaps.into_iter().enumerate() {
        let (status, body) = g.join().unwrap().unwrap();
        assert_eq!(status, 200, "{body}");
        let r: Value = serde_json::from_str(&body).unwrap();
        let windows =
            r["windows"].as_array().unwrap().len() as u64 + r["empty_windows"].as_u64().unwrap();
        if i < 4 {
            assert_eq!(r["gaps"][0]["next_us"], 1_000_000_000_000_000i64, "{body}");
            assert_eq!(windows, 4, "{body}");
        } else {
            assert!(
                r.get("gaps").is_none(),
                "a pause of exactly the limit is no gap: {body}"
            );
            assert_eq!(windows, 22, "{body}");
        }
    }

    // Long requests (99 windows each) keep every worker busy; SIGTERM stops them between windows.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..6)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let t: Vec<i64> = (0..490).map(|k| k * 10_000).collect();
                let mut k = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    if http(
                        addr,
                        "POST",
                        &format!("/v2/models/rvt-tiny-synth/streams/l{i}_{k}/events"),
                        &events_body(&t, true),
                    )
                    .is_none()
                    {
                        break;
                    }
                    k += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    let t = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "still running {:?} after SIGTERM",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for l in load {
        l.join().unwrap();
    }
    let log = drain.join().unwrap();
    assert!(log.contains("stopped"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour escapes in a log that is not a terminal: {log:?}"
    );
}

/// A reader that goes away (`prism info --json | head`) ends the command quietly.
#[test]
fn a_closed_pipe_ends_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_prism"))
        .args(["info", "--model", "rvt-tiny-synth", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end before the command writes (it exports the model first).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
}

/// Without ONNX Runtime, --verify verifies in tract and says how to add ONNX Runtime.
#[test]
fn export_verify_without_onnx_runtime_uses_tract_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.onnx");
    let o = Command::new(env!("CARGO_BIN_EXE_prism"))
        .args([
            "export",
            "onnx",
            "--model",
            "rvt-tiny-synth",
            "--out",
            out.to_str().unwrap(),
            "--verify",
        ])
        .env("PRISM_ENV", dir.path())
        .env_remove("ORT_DYLIB_PATH")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("ONNX Runtime skipped: libonnxruntime not found"),
        "{text}"
    );
    assert!(
        text.contains("verified: max relative error") && text.ends_with("in tract\n"),
        "{text}"
    );
    assert!(
        !text.contains("verification failed: verification failed"),
        "{text}"
    );
}
