//! The prism-deploy HTTP server under load from a second process on loopback.
//!
//! This binary exports the model, starts itself again as the server process (`--child`: the
//! prism-deploy [`Server`] that `prism serve` runs, on 127.0.0.1, port chosen by the OS), and
//! drives it from here with 1, 4 and 16 concurrent clients for a bounded time each:
//! - KServe v2 `POST /v2/models/{name}/infer` with JSON tensors (the histogram and the eight
//!   states in, every output back), one keep-alive connection per client;
//! - the same request with Triton's binary tensor data extension (raw tensors after the JSON),
//!   and as a gRPC `ModelInfer` with raw contents;
//! - prism's streaming endpoint: each client its own event stream, one 50 ms window of events per
//!   request in the binary layout, detections back.
//!
//! The bare model (`Engine::run` in this process, same settings) is timed first. Then, before
//! any other traffic, one client alone sends JSON, binary and gRPC requests, each phase with the
//! server's own mean compute time from its metrics: the binary path's overhead over the bare
//! model is read from these quiet rows. The peer is measured after prism's server has exited: KServe's Python model server (`benchmarks/python/
//! kserve_peer.py`, the PyPI `kserve` package in the venv `cargo xtask bench bench-serve`
//! provisions) serving the same file through ONNX Runtime, under the same JSON and binary load.
//! Last, alone, `python/serve_bounds.py` measures what the machine allows any server of the file:
//! the loopback round trip of one request's raw bytes (the floor of the binary path) and ONNX
//! Runtime's windows per second alone at batch 1, 4 and 16 (the ceiling of any throughput).
//!
//! Throughout every load phase a further client sends malformed and wrong requests (malformed
//! JSON, wrong shapes, wrong datatypes, wrong value counts, unknown inputs, oversized bodies,
//! unknown models and versions) and checks each gets its 4xx with the expected message, and that
//! the server still answers a health check right after; a gRPC client does the same with
//! malformed `ModelInfer` calls (each its status code, then `ServerReady`). At the end the
//! server's own metrics must show no 5xx, and the server process must shut down cleanly without
//! a panic in its log.
//!
//! usage: bench-serve [--models rvt-tiny-synth,rvt-tiny-gen1] [--backend ort-cpu] [--seconds 8]
//!                    [--clients 1,4,16] [--workers 4] [--threads 2]
//!        bench-serve --batching mm-mit-b0-cssa-s3 [--backend ort-cpu] [--seconds 8]
//! The second form compares dynamic batching on and off for a frame model (`batching.rs`).

#[path = "bench-serve/batching.rs"]
mod batching;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use burn::tensor::Device;
use prism_benchmarks::grpc_load::{
    self,
    proto::{model_infer_request::InferInputTensor, ModelInferRequest},
};
use prism_benchmarks::stats::{loadavg, percentile};
use prism_deploy::server::protocol::encode_binary_events;
use prism_deploy::server::{Server, ServerOptions};
use prism_deploy::{Backend, Engine, EngineOptions};
use prism_events::synth::{generate, SceneConfig};
use prism_events::{EventChunk, WindowConfig, WindowSlicer};
use prism_models::onnx::{export_rvt, RvtExport};
use prism_models::zoo::ModelCard;
use serde_json::{json, Value};

const MAX_BODY: usize = 64 << 20;

/// What one client does per request on its connection.
type ClientLoop = Box<dyn FnMut(&mut Conn) -> Result<()> + Send>;

/// `prism serve`'s server under load from several clients, with malformed requests mixed in.
#[derive(Debug, clap::Parser)]
struct Args {
    /// Models to serve in turn, comma-separated.
    #[arg(long, default_value = "rvt-tiny-synth,rvt-tiny-gen1")]
    models: String,
    /// Backend of the server.
    #[arg(long, default_value = "ort-cpu")]
    backend: String,
    /// Seconds of load per row.
    #[arg(long, default_value_t = 8.0)]
    seconds: f64,
    /// Client counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    clients: Vec<usize>,
    /// Server workers.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// ONNX Runtime intra-op threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Compare dynamic batching on and off for this multimodal detector instead (16 clients,
    /// binary tensors; writes results/serve-batching.{md,json}).
    #[arg(long)]
    batching: Option<String>,
    /// Internal: run the server in this process (MODEL BACKEND WORKERS THREADS NAME MAX_BATCH).
    #[arg(long, num_args = 6, value_names = ["MODEL", "BACKEND", "WORKERS", "THREADS", "NAME", "MAX_BATCH"], hide = true)]
    child: Option<Vec<String>>,
}

fn main() -> Result<()> {
    let Args {
        models,
        backend,
        seconds,
        clients,
        workers,
        threads,
        batching,
        child: server,
    } = <Args as clap::Parser>::parse();
    if let Some(args) = server {
        return child(&args);
    }
    if let Some(name) = batching {
        return batching::run(&name, &backend, seconds, workers, threads);
    }

    let dir = tempfile::tempdir()?;
    let load_before = loadavg();
    let started = Instant::now();
    let mut results = Vec::new();
    for name in models.split(',') {
        results.push(bench_model(
            name,
            &backend,
            seconds,
            &clients,
            workers,
            threads,
            dir.path(),
        )?);
    }
    let load_after = loadavg();
    let md = report(
        &results,
        &backend,
        seconds,
        workers,
        threads,
        &load_before,
        &load_after,
        started.elapsed().as_secs_f64(),
    );
    println!("{md}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("serve.md"), &md)?;
    let doc = json!({
        "benchmark": "bench-serve",
        "backend": backend,
        "seconds_per_phase": seconds,
        "workers": workers,
        "threads": threads,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "models": results,
    });
    std::fs::write(out.join("serve.json"), serde_json::to_string_pretty(&doc)?)?;
    let failed: Vec<String> = results
        .iter()
        .flat_map(|r| r["problems"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p.as_str().map(String::from))
        .collect();
    if !failed.is_empty() {
        bail!("the server misbehaved: {failed:?}");
    }
    Ok(())
}

/// The server process: loads the model, serves on 127.0.0.1:0, prints the address, and shuts
/// down gracefully when its stdin closes.
fn child(args: &[String]) -> Result<()> {
    let [model, backend, workers, threads, name, max_batch] = args else {
        bail!("usage: bench-serve --child MODEL BACKEND WORKERS THREADS NAME MAX_BATCH");
    };
    let mut options = EngineOptions::new(backend.parse::<Backend>()?);
    options.intra_threads = Some(threads.parse()?);
    let engine = Arc::new(Engine::load(model, &options)?);
    let server = Server::start(
        engine,
        ServerOptions {
            addr: "127.0.0.1:0".parse()?,
            model_name: Some(name.clone()),
            max_body_bytes: MAX_BODY,
            workers: workers.parse()?,
            max_streams: 64,
            grpc_addr: Some("127.0.0.1:0".parse()?),
            max_batch: max_batch.parse()?,
            ..ServerOptions::default()
        },
    )?;
    let grpc = server.grpc_addr().context("the gRPC endpoint")?;
    println!("listening {} {grpc}", server.local_addr());
    std::io::stdout().flush()?;
    let mut sink = String::new();
    while std::io::stdin().read_line(&mut sink)? > 0 {
        sink.clear();
    }
    server.shutdown();
    eprintln!("server stopped");
    Ok(())
}

/// One HTTP/1.1 connection (keep-alive unless `close`).
struct Conn {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(Self { stream, reader })
    }

    /// Sends a request and reads the whole response: (status, body).
    fn send(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
        close: bool,
    ) -> Result<(u16, Vec<u8>)> {
        self.send_declared(method, path, content_type, body, body.len(), close)
    }

    /// As [`Self::send`], declaring `declared` bytes of body (more than are sent, for oversized
    /// bodies refused on their `Content-Length`).
    fn send_declared(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
        declared: usize,
        close: bool,
    ) -> Result<(u16, Vec<u8>)> {
        self.send_full(method, path, content_type, "", body, declared, close)
    }

    /// As [`Self::send_declared`], with `extra` header lines (each ending in CRLF).
    #[allow(clippy::too_many_arguments)]
    fn send_full(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        extra: &str,
        body: &[u8],
        declared: usize,
        close: bool,
    ) -> Result<(u16, Vec<u8>)> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: {content_type}\r\nContent-Length: {declared}\r\n{extra}{}\r\n",
            if close { "Connection: close\r\n" } else { "" }
        );
        self.stream.write_all(head.as_bytes())?;
        // A body refused early may meet a closed socket.
        let _ = self.stream.write_all(body);
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let mut length = None;
        let mut chunked = false;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse::<usize>().ok();
                } else if k.eq_ignore_ascii_case("transfer-encoding")
                    && v.trim().eq_ignore_ascii_case("chunked")
                {
                    chunked = true;
                }
            }
        }
        let mut out = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)?;
                if size == 0 {
                    line.clear();
                    self.reader.read_line(&mut line)?;
                    break;
                }
                let start = out.len();
                out.resize(start + size, 0);
                self.reader.read_exact(&mut out[start..])?;
                let mut crlf = [0u8; 2];
                self.reader.read_exact(&mut crlf)?;
            }
        } else if let Some(n) = length {
            out.resize(n, 0);
            self.reader.read_exact(&mut out)?;
        } else {
            self.reader.read_to_end(&mut out)?;
        }
        Ok((status, out))
    }
}

fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
    Conn::open(addr)?.send(method, path, "application/json", body, true)
}

/// A bad request, what it must get, and a word of its message.
struct Bad {
    case: &'static str,
    path: String,
    body: Vec<u8>,
    /// Declared body length when larger than `body` (oversized).
    declared: Option<usize>,
    content_type: &'static str,
    status: u16,
    needle: &'static str,
}

fn bad_requests(name: &str, good: &Value, full_body: &[u8]) -> Vec<Bad> {
    let infer = format!("/v2/models/{name}/infer");
    let small = |inputs: Value| json!({ "inputs": inputs }).to_string().into_bytes();
    let hist = &good["inputs"][0];
    let shape = hist["shape"].clone();
    let mut wrong_shape = shape.clone();
    wrong_shape[2] = json!(shape[2].as_u64().unwrap_or(1) + 1);
    let mut missing = good.clone();
    if let Some(a) = missing["inputs"].as_array_mut() {
        a.pop();
    }
    let missing_name = good["inputs"]
        .as_array()
        .and_then(|a| a.last())
        .and_then(|i| i["name"].as_str())
        .unwrap_or("?")
        .to_string();
    let _ = missing_name;
    vec![
        Bad {
            case: "malformed JSON (truncated)",
            path: infer.clone(),
            body: b"{\"inputs\": [{\"name\": \"histogram\", \"shape\": [1,".to_vec(),
            declared: None,
            content_type: "application/json",
            status: 400,
            needle: "malformed request JSON",
        },
        Bad {
            case: "JSON of the wrong form (an array)",
            path: infer.clone(),
            body: b"[1, 2, 3]".to_vec(),
            declared: None,
            content_type: "application/json",
            status: 400,
            needle: "malformed request JSON",
        },
        Bad {
            case: "wrong shape",
            path: infer.clone(),
            body: small(
                json!([{"name": "histogram", "shape": wrong_shape, "datatype": "FP32", "data": [0.0]}]),
            ),
            declared: None,
            content_type: "application/json",
            status: 400,
            needle: "the model expects",
        },
        Bad {
            case: "wrong datatype (INT64)",
            path: infer.clone(),
            body: small(
                json!([{"name": "histogram", "shape": shape, "datatype": "INT64", "data": [0]}]),
            ),
            declared: None,
            content_type: "application/json",
            status: 400,
            needle: "datatype INT64 is not supported",
        },
        Bad {
            case: "FP32 data holding strings",
            path: infer.clone(),
            body: small(
                json!([{"name": "histogram", "shape": shape, "datatype": "FP32", "data": ["a", "b"]}]),
            ),
            declared: None,
            content_type: "application/json",
            status: 400,
            needle: "needs numbers, found a string",
        },
        Bad {
            case: "value count does not match the shape",
            path: infer.clone(),
            body: small(
                json!([{"name": "histogram", "shape": shape, "datatype": "FP32", "data": [1.0, 2.0, 3.0]}]),
            ),
            declared: None,
            content_type: "application/json",
            status: 400,
            needle: "values, got 3",
        },
        Bad {
            case: "unknown input name",
            path: infer.clone(),
            body: small(json!([{"name": "nope", "shape": [1], "datatype": "FP32", "data": [1.0]}])),
            declared: None,
            content_type: "application/json",
            status: 400,
            needle: "has no input `nope`",
        },
        Bad {
            case: "missing input (full-size request)",
            path: infer.clone(),
            body: missing.to_string().into_bytes(),
            declared: None,
            content_type: "application/json",
            status: 400,
            needle: "missing input",
        },
        Bad {
            case: "oversized body (Content-Length over the limit)",
            path: infer.clone(),
            body: full_body[..full_body.len().min(1024)].to_vec(),
            declared: Some(MAX_BODY + 1),
            content_type: "application/json",
            status: 413,
            needle: "larger than the",
        },
        Bad {
            case: "unknown model",
            path: "/v2/models/no-such-model/infer".into(),
            body: b"{}".to_vec(),
            declared: None,
            content_type: "application/json",
            status: 404,
            needle: "unknown model",
        },
        Bad {
            case: "unknown model version",
            path: format!("/v2/models/{name}/versions/9/infer"),
            body: b"{}".to_vec(),
            declared: None,
            content_type: "application/json",
            status: 404,
            needle: "no version",
        },
        Bad {
            case: "stream: binary events of the wrong length",
            path: format!("/v2/models/{name}/streams/bad-stream/events"),
            body: vec![2, 0, 0, 0, 1],
            declared: None,
            content_type: "application/octet-stream",
            status: 400,
            needle: "bytes, the body has",
        },
        Bad {
            case: "stream: unsorted events",
            path: format!("/v2/models/{name}/streams/bad-stream/events"),
            body: br#"{"t": [5, 1], "x": [1, 1], "y": [1, 1], "p": [0, 1]}"#.to_vec(),
            declared: None,
            content_type: "application/json",
            status: 400,
            // Refused on the request that carries it; the stream stays as it was.
            needle: "is before the previous one",
        },
    ]
}

/// The malformed-request matrix over gRPC: `good` broken one way per case, with the status
/// code and message the server must answer with (the HTTP cases' 400 is `INVALID_ARGUMENT`,
/// 404 `NOT_FOUND`). No oversized case: going past the message limit means sending 64 MiB a
/// round, which would load the server more than the clients being measured.
fn grpc_bad_calls(good: &ModelInferRequest) -> Vec<grpc_load::BadCall> {
    use tonic::Code;
    let with = |f: &dyn Fn(&mut ModelInferRequest)| {
        let mut r = good.clone();
        f(&mut r);
        r
    };
    let bad = |case, request, code, needle| grpc_load::BadCall {
        case,
        request,
        code,
        needle,
    };
    vec![
        bad(
            "unknown model",
            with(&|r| r.model_name = "no-such-model".into()),
            Code::NotFound,
            "unknown model",
        ),
        bad(
            "unknown model version",
            with(&|r| r.model_version = "9".into()),
            Code::NotFound,
            "no version",
        ),
        bad(
            "wrong datatype (INT64)",
            with(&|r| r.inputs[0].datatype = "INT64".into()),
            Code::InvalidArgument,
            "datatype INT64 is not supported",
        ),
        bad(
            "wrong shape",
            with(&|r| r.inputs[0].shape[2] += 1),
            Code::InvalidArgument,
            "the model expects",
        ),
        bad(
            "raw contents one value short of the shape",
            with(&|r| {
                let n = r.raw_input_contents[0].len();
                r.raw_input_contents[0].truncate(n - 4);
            }),
            Code::InvalidArgument,
            "values, got",
        ),
        bad(
            "negative dimension",
            with(&|r| r.inputs[0].shape[0] = -1),
            Code::InvalidArgument,
            "negative dimension",
        ),
        bad(
            "raw contents not a whole number of FP32",
            with(&|r| r.raw_input_contents[0].truncate(6)),
            Code::InvalidArgument,
            "not a whole number of FP32",
        ),
        bad(
            "fewer raw contents than inputs",
            with(&|r| {
                r.raw_input_contents.pop();
            }),
            Code::InvalidArgument,
            "give one per input",
        ),
        bad(
            "unknown input name",
            with(&|r| r.inputs[0].name = "nope".into()),
            Code::InvalidArgument,
            "has no input `nope`",
        ),
        bad(
            "missing input",
            with(&|r| {
                r.inputs.pop();
                r.raw_input_contents.pop();
            }),
            Code::InvalidArgument,
            "missing input",
        ),
        bad(
            "sequence_start without a sequence_id",
            with(&|r| {
                r.parameters.insert(
                    "sequence_start".into(),
                    grpc_load::proto::InferParameter {
                        parameter_choice: Some(
                            grpc_load::proto::infer_parameter::ParameterChoice::BoolParam(true),
                        ),
                    },
                );
            }),
            Code::InvalidArgument,
            "need a sequence_id",
        ),
        bad(
            "sequence_id of the wrong type (a bool)",
            with(&|r| {
                r.parameters.insert(
                    "sequence_id".into(),
                    grpc_load::proto::InferParameter {
                        parameter_choice: Some(
                            grpc_load::proto::infer_parameter::ParameterChoice::BoolParam(true),
                        ),
                    },
                );
            }),
            Code::InvalidArgument,
            "not a bool",
        ),
    ]
}

/// Tallies of the bad-request client.
#[derive(Default)]
struct BadTally {
    /// Per case: (sent, answered as expected, last status, last message).
    cases: Vec<(usize, usize, u16, String)>,
    health_failures: usize,
    problems: Vec<String>,
}

fn bad_client(addr: SocketAddr, bad: &[Bad], stop: &AtomicBool, tally: &Mutex<BadTally>) {
    let mut k = 0;
    while !stop.load(Ordering::Relaxed) {
        let b = &bad[k % bad.len()];
        k += 1;
        let answer = Conn::open(addr).and_then(|mut c| {
            c.send_declared(
                "POST",
                &b.path,
                b.content_type,
                &b.body,
                b.declared.unwrap_or(b.body.len()),
                true,
            )
        });
        let mut t = tally.lock().unwrap_or_else(|e| e.into_inner());
        let i = (k - 1) % bad.len();
        let entry = &mut t.cases[i];
        entry.0 += 1;
        match answer {
            Ok((status, body)) => {
                let msg = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(String::from))
                    .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
                if status == b.status && msg.contains(b.needle) {
                    entry.1 += 1;
                } else {
                    let p = format!(
                        "{}: got {status} `{msg}`, expected {} with `{}`",
                        b.case, b.status, b.needle
                    );
                    if !t.problems.contains(&p) {
                        t.problems.push(p);
                    }
                }
                let entry = &mut t.cases[i];
                entry.2 = status;
                entry.3 = msg;
            }
            Err(e) => {
                let p = format!("{}: no answer ({e})", b.case);
                if !t.problems.contains(&p) {
                    t.problems.push(p);
                }
            }
        }
        drop(t);
        // The server keeps serving: a health check right after every bad request.
        let healthy = request(addr, "GET", "/v2/health/ready", b"")
            .map(|(s, _)| s == 200)
            .unwrap_or(false);
        if !healthy {
            tally
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .health_failures += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Latencies of good requests from `clients` concurrent clients for `seconds`.
struct Phase {
    latencies_ms: Vec<f64>,
    errors: Vec<String>,
    elapsed_s: f64,
}

fn load_phase(
    clients: usize,
    seconds: f64,
    make: &(dyn Fn(usize) -> ClientLoop + Sync),
    addr: SocketAddr,
) -> Phase {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let results: Vec<(Vec<f64>, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let stop = stop.clone();
                let mut one = make(c);
                s.spawn(move || {
                    let mut lat = Vec::new();
                    let mut errors = Vec::new();
                    let mut conn = None;
                    while !stop.load(Ordering::Relaxed) {
                        if conn.is_none() {
                            match Conn::open(addr) {
                                Ok(c) => conn = Some(c),
                                Err(e) => {
                                    errors.push(format!("connect: {e}"));
                                    std::thread::sleep(Duration::from_millis(20));
                                    continue;
                                }
                            }
                        }
                        let Some(c) = conn.as_mut() else { continue };
                        let t0 = Instant::now();
                        match one(c) {
                            Ok(()) => lat.push(t0.elapsed().as_secs_f64() * 1e3),
                            Err(e) => {
                                errors.push(e.to_string());
                                conn = None;
                            }
                        }
                    }
                    (lat, errors)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let elapsed_s = start.elapsed().as_secs_f64();
    let mut latencies_ms = Vec::new();
    let mut errors = Vec::new();
    for (l, e) in results {
        latencies_ms.extend(l);
        errors.extend(e);
    }
    Phase {
        latencies_ms,
        errors,
        elapsed_s,
    }
}

fn summary(p: &Phase, clients: usize, kind: &str, server: &str) -> Value {
    json!({
        "server": server,
        "endpoint": kind,
        "clients": clients,
        "requests": p.latencies_ms.len(),
        "seconds": p.elapsed_s,
        "rps": p.latencies_ms.len() as f64 / p.elapsed_s,
        "p50_ms": percentile(&p.latencies_ms, 0.5),
        "p99_ms": percentile(&p.latencies_ms, 0.99),
        "max_ms": percentile(&p.latencies_ms, 1.0),
        "errors": p.errors.len(),
        "first_errors": p.errors.iter().take(3).collect::<Vec<_>>(),
    })
}

struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    grpc: SocketAddr,
    log: Arc<Mutex<String>>,
}

fn spawn_server(
    model: &Path,
    backend: &str,
    workers: usize,
    threads: usize,
    name: &str,
    max_batch: usize,
) -> Result<ServerProcess> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--child")
        .arg(model)
        .arg(backend)
        .arg(workers.to_string())
        .arg(threads.to_string())
        .arg(name)
        .arg(max_batch.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the server process")?;
    let mut out = BufReader::new(child.stdout.take().context("server stdout")?);
    let log = Arc::new(Mutex::new(String::new()));
    let mut err = child.stderr.take().context("server stderr")?;
    let sink = log.clone();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        sink.lock().unwrap_or_else(|e| e.into_inner()).push_str(&s);
    });
    let mut line = String::new();
    out.read_line(&mut line)?;
    let (addr, grpc) = line
        .trim()
        .strip_prefix("listening ")
        .and_then(|rest| rest.split_once(' '))
        .with_context(|| format!("the server said {line:?}"))?;
    Ok(ServerProcess {
        child,
        addr: addr.parse()?,
        grpc: grpc.parse()?,
        log,
    })
}

#[allow(clippy::too_many_arguments)]
fn bench_model(
    name: &str,
    backend: &str,
    seconds: f64,
    clients: &[usize],
    workers: usize,
    threads: usize,
    dir: &Path,
) -> Result<Value> {
    let device = Device::flex();
    let card = ModelCard::builtin(name)?;
    let model = card.rvt_config().init(&device);
    let path = dir.join(format!("{name}.onnx"));
    export_rvt(&model, &card, &RvtExport::default(), &device)?.save(&path)?;
    // The same weights with a dynamic batch axis, for the compute ceiling (`machine_bounds`).
    let batched_path = dir.join(format!("{name}-dynamic-batch.onnx"));
    let batched = RvtExport {
        dynamic_batch: true,
        ..RvtExport::default()
    };
    export_rvt(&model, &card, &batched, &device)?.save(&batched_path)?;
    drop(model);
    let spec = Engine::load(&path, &EngineOptions::new(Backend::Tract))?
        .spec()
        .clone();

    // The good infer request: a histogram of plausible counts and zero states, every output back.
    let shape: Vec<usize> = spec.input.shape.iter().map(|d| d.unwrap_or(1)).collect();
    let n: usize = shape.iter().product();
    let hist: Vec<f32> = (0..n).map(|i| ((i * 7919) % 11) as f32).collect();
    let mut inputs =
        vec![json!({"name": spec.input.name, "shape": shape, "datatype": "FP32", "data": hist})];
    for s in &spec.state {
        inputs.push(json!({"name": s.input, "shape": s.shape, "datatype": "FP32", "data": vec![0f32; s.shape.iter().product()]}));
    }
    let good = json!({ "id": "bench", "inputs": inputs });
    let infer_body = Arc::new(good.to_string().into_bytes());
    let infer_path = format!("/v2/models/{name}/infer");
    let binary = Arc::new(binary_request(&good)?);
    let grpc_request = grpc_request(name, &good)?;

    // The bare model: the same engine settings, called in this process, one call at a time.
    let bare = bare_model(&path, backend, threads, &good, seconds)?;
    eprintln!("{name} bare model: {bare}");

    // Event windows for the streaming endpoint: a synthetic scene at the model's sensor size,
    // one binary body per 50 ms window.
    let rep = spec.representation.clone().context("no representation")?;
    let scene = generate(&SceneConfig {
        width: u16::try_from(rep.sensor_width)?,
        height: u16::try_from(rep.sensor_height)?,
        duration_us: 2_000_000,
        ..SceneConfig::default()
    })?;
    let event_bodies = Arc::new(window_bodies(&scene.events, rep.window_us)?);

    let server = spawn_server(&path, backend, workers, threads, name, 1)?;
    let mut quiet = Vec::new();
    let addr = server.addr;
    eprintln!(
        "{name}: server on {addr}, infer body {:.1} MB, {} event windows",
        infer_body.len() as f64 / 1e6,
        event_bodies.len()
    );

    // The binary path against the bare model at one client: measured first, with no other
    // traffic (the malformed-request clients below send bodies of up to the request's size and
    // would time their own parsing into it), with the server's own compute time beside it.
    if clients.contains(&1) {
        phases_quiet(
            name,
            &server,
            seconds,
            &infer_body,
            &infer_path,
            &binary,
            &grpc_request,
            &mut quiet,
        )?;
    }

    let bad = bad_requests(name, &good, &infer_body);
    let tally = Mutex::new(BadTally {
        cases: bad.iter().map(|_| (0, 0, 0, String::new())).collect(),
        ..BadTally::default()
    });
    let grpc_bad = grpc_bad_calls(&grpc_request);
    let grpc_tally = Mutex::new(grpc_load::BadTally::default());
    let bad_stop = AtomicBool::new(false);
    let mut phases = quiet;
    std::thread::scope(|s| -> Result<()> {
        s.spawn(|| bad_client(addr, &bad, &bad_stop, &tally));
        s.spawn(|| grpc_load::bad_client(server.grpc, &grpc_bad, &bad_stop, &grpc_tally));
        let mut run = || -> Result<()> {
            for &c in clients {
                let make = json_client(infer_body.clone(), infer_path.clone());
                let phase = load_phase(c, seconds, &make, addr);
                let row = summary(&phase, c, "infer", "prism");
                eprintln!("{name} infer, {c} clients: {row}");
                phases.push(row);
            }
            for &c in clients {
                let make = infer_client(binary.clone(), infer_path.clone());
                let phase = load_phase(c, seconds, &make, addr);
                let row = summary(&phase, c, "infer-binary", "prism");
                eprintln!("{name} binary infer, {c} clients: {row}");
                phases.push(row);
            }
            for &c in clients {
                let row = grpc_summary(
                    &grpc_load::load(server.grpc, c, seconds, &grpc_request),
                    c,
                    "prism",
                );
                eprintln!("{name} gRPC infer, {c} clients: {row}");
                phases.push(row);
            }
            for &c in clients {
                let bodies = event_bodies.clone();
                let model = name.to_string();
                let make = move |client: usize| -> ClientLoop {
                    let bodies = bodies.clone();
                    let mut k = 0usize;
                    let mut generation = 0usize;
                    let base = format!("/v2/models/{model}/streams/load-{client}");
                    Box::new(move |conn: &mut Conn| {
                        let i = k % bodies.len();
                        if i == 0 && k > 0 {
                            // The recording starts again: a new stream (time goes back).
                            let _ = conn.send(
                                "DELETE",
                                &format!("{base}-{generation}"),
                                "application/json",
                                b"",
                                false,
                            )?;
                            generation += 1;
                        }
                        k += 1;
                        let path = format!("{base}-{generation}/events");
                        let (status, out) = conn.send(
                            "POST",
                            &path,
                            "application/octet-stream",
                            &bodies[i],
                            false,
                        )?;
                        if status != 200 {
                            bail!(
                                "stream: {status} {}",
                                String::from_utf8_lossy(&out[..out.len().min(200)])
                            );
                        }
                        Ok(())
                    })
                };
                let phase = load_phase(c, seconds, &make, addr);
                let row = summary(&phase, c, "stream", "prism");
                eprintln!("{name} stream, {c} clients: {row}");
                phases.push(row);
            }
            Ok(())
        };
        let r = run();
        bad_stop.store(true, Ordering::Relaxed);
        r
    })?;

    // After the load: the server still serves a good request, its metrics show no 5xx.
    let (status, _) =
        Conn::open(addr)?.send("POST", &infer_path, "application/json", &infer_body, true)?;
    let mut problems = Vec::new();
    if status != 200 {
        problems.push(format!("a good request after the load got {status}"));
    }
    let (_, metrics) = request(addr, "GET", "/metrics", b"")?;
    let metrics = String::from_utf8_lossy(&metrics).into_owned();
    let server_errors: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("prism_requests_total") && l.contains("status=\"5"))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<u64>().ok()))
        .sum();
    if server_errors > 0 {
        problems.push(format!("{server_errors} responses with a 5xx status"));
    }
    // Graceful shutdown: close its stdin, it answers what is in flight and exits.
    let mut server = server;
    drop(server.child.stdin.take());
    let exit = server.child.wait()?;
    std::thread::sleep(Duration::from_millis(100));
    let log = server.log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if !exit.success() {
        problems.push(format!("the server exited with {exit}"));
    }
    if log.contains("panicked") {
        problems.push("the server log shows a panic".into());
    }
    // The peer, on the machine to itself now: KServe's model server on the same file.
    match peer_phases(
        &path,
        name,
        threads,
        clients,
        seconds,
        &infer_body,
        &binary,
        &grpc_request,
    ) {
        Ok(rows) => phases.extend(rows),
        Err(e) => problems.push(format!("the KServe peer could not be measured: {e:#}")),
    }
    // What any server of this file could do on this machine, measured last, alone.
    let bounds = machine_bounds(&batched_path, threads, seconds).unwrap_or_else(|e| {
        problems.push(format!("the machine's bounds could not be measured: {e:#}"));
        Value::Null
    });
    let t = tally.into_inner().unwrap_or_else(|e| e.into_inner());
    if t.health_failures > 0 {
        problems.push(format!(
            "{} health checks failed after bad requests",
            t.health_failures
        ));
    }
    problems.extend(t.problems.iter().cloned());
    let mut bad_rows: Vec<Value> = bad
        .iter()
        .zip(&t.cases)
        .map(|(b, (sent, ok, status, msg))| {
            json!({"case": b.case, "expected": b.status, "sent": sent, "as_expected": ok, "status": status, "message": msg})
        })
        .collect();
    let g = grpc_tally.into_inner().unwrap_or_else(|e| e.into_inner());
    if g.health_failures > 0 {
        problems.push(format!(
            "{} gRPC ServerReady calls failed after bad calls",
            g.health_failures
        ));
    }
    problems.extend(g.problems.iter().cloned());
    bad_rows.extend(grpc_bad.iter().zip(&g.cases).map(|(b, (sent, ok, code, msg))| {
        json!({"case": format!("gRPC: {}", b.case), "expected": format!("{:?}", b.code), "sent": sent, "as_expected": ok, "status": code, "message": msg})
    }));
    if g.cases.iter().any(|c| c.0 == 0) {
        problems.push("a gRPC bad case was never sent".into());
    }
    Ok(json!({
        "model": name,
        "input_shape": shape,
        "infer_request_bytes": infer_body.len(),
        "binary_request_bytes": binary.body.len(),
        "bare_model": bare,
        "machine_bounds": bounds,
        "phases": phases,
        "bad_requests": bad_rows,
        "server_5xx": server_errors,
        "server_exit": exit.to_string(),
        "problems": problems,
    }))
}

/// The Python of the peer's venv (KServe and ONNX Runtime), which `cargo xtask bench
/// bench-serve` provisions.
fn kserve_python() -> Result<std::path::PathBuf> {
    let python = prism_benchmarks::stats::prism_env().join("kserve-venv/bin/python");
    if !python.is_file() {
        bail!(
            "{} not found (cargo xtask bench bench-serve provisions it)",
            python.display()
        );
    }
    Ok(python)
}

/// The two limits this machine puts on any server of the model (`python/serve_bounds.py`, in
/// the peer's venv): the loopback round trip of one request's raw bytes with nothing parsed
/// (the floor of the binary path at one client) and ONNX Runtime's windows per second alone at
/// batch 1, 4 and 16 (the ceiling of any server's throughput).
fn machine_bounds(batched_model: &Path, threads: usize, seconds: f64) -> Result<Value> {
    let python = kserve_python()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/serve_bounds.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(batched_model)
        .arg(threads.to_string())
        .arg(seconds.to_string())
        .stderr(Stdio::null())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{} exited with {}", script.display(), out.status);
    }
    serde_json::from_slice(&out.stdout).context("reading serve_bounds.py's JSON")
}

/// What the machine allows any server of each model, beside the goals (issue 17): the binary
/// path's floor at one client against 1.10x the bare model, and the model's best windows per
/// second alone against 3x KServe's gRPC throughput at the most clients measured.
fn machine_bounds_table(results: &[Value]) -> String {
    let mut md = String::from(
        "\nWhat this machine allows any server of the file (`benchmarks/python/serve_bounds.py`, run after the load, \
         alone): the binary path's floor is one request's raw bytes over loopback TCP and the outputs' bytes back, \
         nothing parsed or computed, added to ONNX Runtime's own time (goal: 1.10x); the compute ceiling is ONNX \
         Runtime alone, back to back, at the best of batch 1, 4 and 16 (a server that batched its clients \
         perfectly and sent nothing), against KServe's gRPC throughput at the most clients:\n\n\
         | model | request / response MB | ORT alone, batch 1 | loopback round trip | floor / bare (goal 1.10x) | \
         best windows/s alone | KServe gRPC req/s | ceiling / KServe (goal 3x) |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        let b = &r["machine_bounds"];
        if b.is_null() {
            continue;
        }
        let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
        let most = r["phases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["server"] == "kserve" && p["endpoint"] == "grpc")
            .max_by_key(|p| p["clients"].as_u64().unwrap_or(0));
        let (kserve, clients) = most.map_or((f64::NAN, 0), |p| {
            (f(&p["rps"]), p["clients"].as_u64().unwrap_or(0))
        });
        md.push_str(&format!(
            "| {} | {:.2} / {:.2} | {:.2} ms | {:.2} ms | {:.2}x | {:.1} | {kserve:.1} ({clients} clients) | {:.2}x |\n",
            r["model"].as_str().unwrap_or("?"),
            f(&b["request_bytes"]) / 1e6,
            f(&b["response_bytes"]) / 1e6,
            f(&b["bare_model_ms"]),
            f(&b["loopback_round_trip_ms"]),
            f(&b["floor_over_bare"]),
            f(&b["max_windows_per_s"]),
            f(&b["max_windows_per_s"]) / kserve,
        ));
    }
    md
}

/// One client and no other traffic, for JSON, binary and gRPC requests: each row with the
/// server's mean compute time per request over the phase (from its metrics), so that the
/// served latency splits into the model's time and the rest.
#[allow(clippy::too_many_arguments)]
fn phases_quiet(
    name: &str,
    server: &ServerProcess,
    seconds: f64,
    infer_body: &Arc<Vec<u8>>,
    infer_path: &str,
    binary: &Arc<BinaryRequest>,
    grpc_request: &ModelInferRequest,
    rows: &mut Vec<Value>,
) -> Result<()> {
    for endpoint in ["infer", "infer-binary", "grpc"] {
        let before = compute_time(server.addr, name)?;
        let mut row = match endpoint {
            "infer" => summary(
                &load_phase(
                    1,
                    seconds,
                    &json_client(infer_body.clone(), infer_path.to_string()),
                    server.addr,
                ),
                1,
                endpoint,
                "prism",
            ),
            "infer-binary" => summary(
                &load_phase(
                    1,
                    seconds,
                    &infer_client(binary.clone(), infer_path.to_string()),
                    server.addr,
                ),
                1,
                endpoint,
                "prism",
            ),
            _ => grpc_summary(
                &grpc_load::load(server.grpc, 1, seconds, grpc_request),
                1,
                "prism",
            ),
        };
        let after = compute_time(server.addr, name)?;
        let calls = after.1 - before.1;
        row["traffic"] = json!("quiet");
        row["server_compute_mean_ms"] = if calls > 0.0 {
            json!(1e3 * (after.0 - before.0) / calls)
        } else {
            Value::Null
        };
        eprintln!("{name} {endpoint}, 1 client, no other traffic: {row}");
        rows.push(row);
    }
    Ok(())
}

/// The server's total compute time (seconds) and request count for `model`, from `/metrics`.
fn compute_time(addr: SocketAddr, model: &str) -> Result<(f64, f64)> {
    let (_, metrics) = request(addr, "GET", "/metrics", b"")?;
    let metrics = String::from_utf8_lossy(&metrics);
    let series = |suffix: &str| -> Result<f64> {
        let key = format!("prism_compute_duration_seconds_{suffix}{{model=\"{model}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("no {key} in the server's metrics"))
    };
    Ok((series("sum")?, series("count")?))
}

/// A KServe v2 request with the binary tensor data extension: the JSON header (inputs with
/// `binary_data_size`, every output asked back as binary) and the raw tensors after it.
struct BinaryRequest {
    body: Vec<u8>,
    /// The `Inference-Header-Content-Length` header line.
    header: String,
}

fn binary_request(good: &Value) -> Result<BinaryRequest> {
    let mut header = good.clone();
    let mut raw = Vec::new();
    for input in header["inputs"].as_array_mut().context("inputs")? {
        let data = input["data"].take();
        let values = data.as_array().context("flat data")?;
        for v in values {
            raw.extend_from_slice(&(v.as_f64().context("a number")? as f32).to_le_bytes());
        }
        input["parameters"] = json!({ "binary_data_size": 4 * values.len() });
        input.as_object_mut().context("an input")?.remove("data");
    }
    header["parameters"] = json!({ "binary_data_output": true });
    let mut body = header.to_string().into_bytes();
    let json_len = body.len();
    body.extend_from_slice(&raw);
    Ok(BinaryRequest {
        body,
        header: format!("Inference-Header-Content-Length: {json_len}\r\n"),
    })
}

/// A client that sends the JSON infer request `body` to `path` and checks for 200.
fn json_client(body: Arc<Vec<u8>>, path: String) -> impl Fn(usize) -> ClientLoop {
    move |_: usize| -> ClientLoop {
        let body = body.clone();
        let path = path.clone();
        Box::new(move |conn: &mut Conn| {
            let (status, out) = conn.send("POST", &path, "application/json", &body, false)?;
            if status != 200 {
                bail!(
                    "infer: {status} {}",
                    String::from_utf8_lossy(&out[..out.len().min(200)])
                );
            }
            Ok(())
        })
    }
}

/// A client that sends the binary infer request and checks for 200 and a binary answer.
fn infer_client(request: Arc<BinaryRequest>, path: String) -> impl Fn(usize) -> ClientLoop {
    move |_: usize| -> ClientLoop {
        let request = request.clone();
        let path = path.clone();
        Box::new(move |conn: &mut Conn| {
            let (status, out) = conn.send_full(
                "POST",
                &path,
                "application/octet-stream",
                &request.header,
                &request.body,
                request.body.len(),
                false,
            )?;
            if status != 200 {
                bail!(
                    "binary infer: {status} {}",
                    String::from_utf8_lossy(&out[..out.len().min(200)])
                );
            }
            Ok(())
        })
    }
}

/// The engine alone, as the server's workers call it: `Engine::run` on the request's tensors,
/// one call at a time for `seconds`.
fn bare_model(
    path: &Path,
    backend: &str,
    threads: usize,
    good: &Value,
    seconds: f64,
) -> Result<Value> {
    let mut options = EngineOptions::new(backend.parse::<Backend>()?);
    options.intra_threads = Some(threads);
    let engine = Engine::load(path, &options)?;
    let mut tensors = Vec::new();
    for input in good["inputs"].as_array().context("inputs")? {
        let shape: Vec<usize> = input["shape"]
            .as_array()
            .context("shape")?
            .iter()
            .map(|d| d.as_u64().unwrap_or(1) as usize)
            .collect();
        let data: Vec<f32> = input["data"]
            .as_array()
            .context("data")?
            .iter()
            .map(|v| v.as_f64().unwrap_or(0.0) as f32)
            .collect();
        tensors.push((
            input["name"].as_str().unwrap_or("").to_string(),
            shape,
            data,
        ));
    }
    let views: Vec<prism_deploy::TensorView<'_>> = tensors
        .iter()
        .map(|(n, s, d)| prism_deploy::TensorView::new(n, s, d))
        .collect();
    engine.run(&views)?;
    let mut latencies = Vec::new();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds {
        let t0 = Instant::now();
        engine.run(&views)?;
        latencies.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    Ok(json!({
        "calls": latencies.len(),
        "rps": latencies.len() as f64 / start.elapsed().as_secs_f64(),
        "p50_ms": percentile(&latencies, 0.5),
        "p99_ms": percentile(&latencies, 0.99),
    }))
}

/// The good request as a gRPC `ModelInfer` with raw tensor contents, as tritonclient sends it.
fn grpc_request(name: &str, good: &Value) -> Result<ModelInferRequest> {
    let mut request = ModelInferRequest {
        model_name: name.to_string(),
        id: "bench".into(),
        ..Default::default()
    };
    for input in good["inputs"].as_array().context("inputs")? {
        request.inputs.push(InferInputTensor {
            name: input["name"].as_str().context("name")?.to_string(),
            datatype: "FP32".into(),
            shape: input["shape"]
                .as_array()
                .context("shape")?
                .iter()
                .map(|d| d.as_i64().unwrap_or(1))
                .collect(),
            ..Default::default()
        });
        let mut raw = Vec::new();
        for v in input["data"].as_array().context("data")? {
            raw.extend_from_slice(&(v.as_f64().context("a number")? as f32).to_le_bytes());
        }
        request.raw_input_contents.push(raw);
    }
    Ok(request)
}

fn grpc_summary(m: &grpc_load::Measured, clients: usize, server: &str) -> Value {
    summary(
        &Phase {
            latencies_ms: m.latencies_ms.clone(),
            errors: m.errors.clone(),
            elapsed_s: m.elapsed_s,
        },
        clients,
        "grpc",
        server,
    )
}

/// A free loopback port (bound, read, released).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// KServe's model server (`benchmarks/python/kserve_peer.py`, ONNX Runtime with `threads`
/// intra-op threads, one uvicorn worker) on the same file, under the same JSON and binary load.
#[allow(clippy::too_many_arguments)]
fn peer_phases(
    model: &Path,
    name: &str,
    threads: usize,
    clients: &[usize],
    seconds: f64,
    json_body: &Arc<Vec<u8>>,
    binary: &Arc<BinaryRequest>,
    grpc_request: &ModelInferRequest,
) -> Result<Vec<Value>> {
    let python = kserve_python()?;
    let (http, grpc) = (free_port()?, free_port()?);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/kserve_peer.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .arg(model)
        .arg(name)
        .arg(http.to_string())
        .arg(grpc.to_string())
        .arg(threads.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the KServe peer")?;
    let addr: SocketAddr = format!("127.0.0.1:{http}").parse()?;
    let ready = (0..600).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        request(addr, "GET", &format!("/v2/models/{name}/ready"), b"").is_ok_and(|(s, _)| s == 200)
    });
    let mut rows = Vec::new();
    let result = (|| -> Result<()> {
        if !ready {
            bail!("the KServe peer did not get ready in 60 s");
        }
        let path = format!("/v2/models/{name}/infer");
        for &c in clients {
            let make = json_client(json_body.clone(), path.clone());
            let phase = load_phase(c, seconds, &make, addr);
            let row = summary(&phase, c, "infer", "kserve");
            eprintln!("{name} KServe infer, {c} clients: {row}");
            rows.push(row);
        }
        for &c in clients {
            let make = infer_client(binary.clone(), path.clone());
            let phase = load_phase(c, seconds, &make, addr);
            let row = summary(&phase, c, "infer-binary", "kserve");
            eprintln!("{name} KServe binary infer, {c} clients: {row}");
            rows.push(row);
        }
        let grpc_addr: SocketAddr = format!("127.0.0.1:{grpc}").parse()?;
        for &c in clients {
            let row = grpc_summary(
                &grpc_load::load(grpc_addr, c, seconds, grpc_request),
                c,
                "kserve",
            );
            eprintln!("{name} KServe gRPC infer, {c} clients: {row}");
            rows.push(row);
        }
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result.map(|()| rows)
}

/// One binary events body per window of `events` (the chunk that completes it).
fn window_bodies(events: &EventChunk, window_us: i64) -> Result<Vec<Vec<u8>>> {
    let mut slicer = WindowSlicer::new(WindowConfig::new(window_us))?;
    slicer.push(events.as_slice())?;
    let mut ends = Vec::new();
    while let Some(w) = slicer.next_window() {
        ends.push(w.end_us);
    }
    let mut bodies = Vec::new();
    let mut start = 0;
    for end in ends {
        let stop = events.t.partition_point(|&t| t <= end);
        if stop > start {
            let r = events.as_slice().slice(start..stop);
            bodies.push(encode_binary_events(r.t, r.x, r.y, r.p));
        }
        start = stop;
    }
    Ok(bodies)
}

#[allow(clippy::too_many_arguments)]
fn report(
    results: &[Value],
    backend: &str,
    seconds: f64,
    workers: usize,
    threads: usize,
    before: &str,
    after: &str,
    total_s: f64,
) -> String {
    let mut md =
        String::from("# prism-deploy server under load, against KServe's model server (KServe v2 over HTTP on loopback)\n\n");
    md.push_str(&format!(
        "`cargo xtask bench bench-serve` — the server (prism-deploy `Server`, as `prism serve` runs it) in its own \
         process on 127.0.0.1, backend `{backend}` ({threads} intra-op threads, one session shared by {workers} HTTP \
         workers); load from this process, one keep-alive connection per client, {seconds:.0} s per row. Load \
         average before / after: {before} / {after} (2-core machine shared with other work; whole run {total_s:.0} s).\n\n\
         - infer: `POST /v2/models/NAME/infer`, JSON tensors (histogram and 8 zero states in, all 9 outputs back);\n\
         - infer-binary: the same request with Triton's binary tensor data extension (raw float32 after the JSON \
         header, every output back as binary);\n\
         - grpc: the same tensors as a KServe v2 gRPC `ModelInfer` with raw contents (one HTTP/2 connection per \
         client);\n\
         - the peer: KServe's Python model server (PyPI `kserve` 0.21.0, one uvicorn worker) serving the same ONNX \
         file through ONNX Runtime 1.31.1 with {threads} intra-op threads (`benchmarks/python/kserve_peer.py`), \
         measured after prism's server has exited, same requests and clients;\n\
         - stream: `POST /v2/models/NAME/streams/ID/events`, binary events of one 50 ms window per request \
         (synthetic scene at the sensor size), each client its own stream and state, detections back.\n\n"
    ));
    md.push_str("| model | server | endpoint | request | clients | other traffic | requests | req/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in results {
        for p in r["phases"].as_array().into_iter().flatten() {
            let mb = |key: &str| r[key].as_f64().unwrap_or(0.0) / 1e6;
            let req = match p["endpoint"].as_str() {
                Some("infer") => format!("{:.1} MB JSON", mb("infer_request_bytes")),
                Some("infer-binary") => format!("{:.1} MB binary", mb("binary_request_bytes")),
                Some("grpc") => format!("{:.1} MB raw, gRPC", mb("binary_request_bytes")),
                _ => "one window, binary".into(),
            };
            let traffic = if p["traffic"] == "quiet" || p["server"] == "kserve" {
                "none"
            } else {
                "malformed requests"
            };
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {traffic} | {} | {:.2} | {:.1} | {:.1} | {} |\n",
                r["model"].as_str().unwrap_or("?"),
                p["server"].as_str().unwrap_or("prism"),
                p["endpoint"].as_str().unwrap_or("?"),
                req,
                p["clients"],
                p["requests"],
                p["rps"].as_f64().unwrap_or(f64::NAN),
                p["p50_ms"].as_f64().unwrap_or(f64::NAN),
                p["p99_ms"].as_f64().unwrap_or(f64::NAN),
                p["errors"],
            ));
        }
    }
    md.push_str("\nprism (under malformed traffic) against the KServe peer, and prism's paths at one client against the bare model (`Engine::run` in the bench process, one call at a time): p50 with no other traffic, the same under malformed traffic, and the server's own mean compute time per request in the quiet phase:\n\n| model | endpoint | clients | prism / KServe req/s | p50 / bare p50, no other traffic | p50 / bare p50, malformed traffic | server compute / bare p50 |\n|---|---|---|---|---|---|---|\n");
    for r in results {
        let phases: Vec<&Value> = r["phases"].as_array().into_iter().flatten().collect();
        let find = |server: &str, endpoint: &str, clients: &Value| {
            phases
                .iter()
                .find(|p| {
                    p["server"] == server && p["endpoint"] == endpoint && &p["clients"] == clients
                })
                .copied()
        };
        let bare_p50 = r["bare_model"]["p50_ms"].as_f64().unwrap_or(f64::NAN);
        for p in phases.iter().filter(|p| {
            p["server"] == "prism"
                && p["traffic"] != "quiet"
                && ["infer", "infer-binary", "grpc"].contains(&p["endpoint"].as_str().unwrap_or(""))
        }) {
            let endpoint = p["endpoint"].as_str().unwrap_or("?");
            let ratio = find("kserve", endpoint, &p["clients"])
                .map(|k| {
                    p["rps"].as_f64().unwrap_or(f64::NAN) / k["rps"].as_f64().unwrap_or(f64::NAN)
                })
                .map_or("no peer row".to_string(), |x| format!("{x:.2}x"));
            let of_bare =
                |ms: Option<f64>| ms.map_or(String::new(), |ms| format!("{:.2}x", ms / bare_p50));
            let quiet = phases.iter().find(|q| {
                q["traffic"] == "quiet" && q["endpoint"] == endpoint && q["clients"] == p["clients"]
            });
            let (vs_bare, loaded, compute) = if p["clients"] == 1 {
                (
                    of_bare(quiet.and_then(|q| q["p50_ms"].as_f64())),
                    of_bare(p["p50_ms"].as_f64()),
                    of_bare(quiet.and_then(|q| q["server_compute_mean_ms"].as_f64())),
                )
            } else {
                Default::default()
            };
            md.push_str(&format!(
                "| {} | {endpoint} | {} | {ratio} | {vs_bare} | {loaded} | {compute} |\n",
                r["model"].as_str().unwrap_or("?"),
                p["clients"],
            ));
        }
        md.push_str(&format!(
            "| {} | bare model | 1 | | p50 {:.1} ms, {:.2} calls/s | | |\n",
            r["model"].as_str().unwrap_or("?"),
            bare_p50,
            r["bare_model"]["rps"].as_f64().unwrap_or(f64::NAN),
        ));
    }
    md.push_str(&machine_bounds_table(results));
    // A status code is a number over HTTP and a name over gRPC.
    let plain = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
    md.push_str("\nBad requests, sent by a further client throughout the load, each followed by a health check:\n\n| model | case | expected | got | sent | as expected | message |\n|---|---|---|---|---|---|---|\n");
    for r in results {
        for b in r["bad_requests"].as_array().into_iter().flatten() {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                r["model"].as_str().unwrap_or("?"),
                b["case"].as_str().unwrap_or("?"),
                plain(&b["expected"]),
                plain(&b["status"]),
                b["sent"],
                b["as_expected"],
                b["message"]
                    .as_str()
                    .unwrap_or("")
                    .replace('|', "\\|")
                    .chars()
                    .take(120)
                    .collect::<String>(),
            ));
        }
    }
    md.push('\n');
    for r in results {
        let problems = r["problems"].as_array().map(Vec::len).unwrap_or(0);
        md.push_str(&format!(
            "{}: 5xx responses {}, server exit `{}`, {}.\n",
            r["model"].as_str().unwrap_or("?"),
            r["server_5xx"],
            r["server_exit"].as_str().unwrap_or("?"),
            if problems == 0 {
                "every bad request got its 4xx (over gRPC its status code) and the server kept serving".to_string()
            } else {
                format!("problems: {}", r["problems"])
            }
        ));
    }
    md
}
