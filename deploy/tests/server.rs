//! The HTTP server, started in-process on 127.0.0.1:0, with good and bad requests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use common::*;
use prism_deploy::server::{Server, ServerOptions};
use prism_deploy::{Backend, Engine, EngineOptions, OwnedWindow, StreamDetector, TensorView};
use proptest::prelude::*;
use serde_json::{json, Value};

/// Sends one JSON request (Connection: close) and returns (status, body).
fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    request_typed(addr, method, path, "application/json", body)
}

fn request_typed(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // An oversized body may be refused before it is read; the write may then fail.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn start(dir: &std::path::Path, max_body: usize) -> (Server, Arc<Engine>) {
    let engine = Arc::new(
        Engine::load(
            dir.join("rvt_tiny.onnx"),
            &EngineOptions::new(Backend::Tract),
        )
        .unwrap(),
    );
    let options = ServerOptions {
        addr: "127.0.0.1:0".parse().unwrap(),
        model_name: Some("rvt".into()),
        max_body_bytes: max_body,
        workers: 2,
        max_streams: 2,
        ..ServerOptions::default()
    };
    (Server::start(engine.clone(), options).unwrap(), engine)
}

#[test]
fn kserve_v2_endpoints_answer_good_and_bad_requests() {
    let Some(dir) = fixtures("kserve_v2_endpoints_answer_good_and_bad_requests") else {
        return;
    };
    let (server, engine) = start(dir, 2 << 20);
    let addr = server.local_addr();
    assert!(addr.ip().is_loopback());

    assert_eq!(request(addr, "GET", "/v2/health/live", b"").0, 200);
    assert_eq!(request(addr, "GET", "/v2/health/ready", b"").0, 200);
    assert_eq!(request(addr, "GET", "/v2/models/rvt/ready", b"").0, 200);
    assert_eq!(
        request(addr, "GET", "/v2/models/rvt/versions/1/ready", b"").0,
        200
    );
    let (status, body) = request(addr, "GET", "/v2/models/rvt", b"");
    assert_eq!(status, 200);
    let meta = json_of(&body);
    assert_eq!(meta["name"], "rvt");
    assert_eq!(
        meta["inputs"][0],
        json!({"name": "histogram", "datatype": "FP32", "shape": [1, 20, 64, 64]})
    );
    assert_eq!(meta["outputs"][0]["shape"], json!([1, 84, 7]));

    // A good inference request: same numbers as calling the engine directly.
    let hist: Vec<f32> = (0..20 * 64 * 64).map(|i| (i % 5) as f32).collect();
    let (h1, h2) = (vec![0.1f32; 256], vec![-0.2f32; 64]);
    let infer = json!({
        "id": "42",
        "inputs": [
            {"name": "histogram", "shape": [1, 20, 64, 64], "datatype": "FP32", "data": hist},
            {"name": "h1", "shape": [1, 4, 8, 8], "datatype": "FP32", "data": h1},
            {"name": "h2", "shape": [1, 4, 4, 4], "datatype": "FP32", "data": [[[h2[..16].to_vec(), h2[16..32].to_vec(), h2[32..48].to_vec(), h2[48..].to_vec()]]]},
        ],
        "outputs": [{"name": "detections"}, {"name": "h2_out"}],
    });
    let (status, body) = request(
        addr,
        "POST",
        "/v2/models/rvt/infer",
        infer.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let resp = json_of(&body);
    assert_eq!(resp["id"], "42");
    assert_eq!(resp["model_name"], "rvt");
    let outputs = resp["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 2);
    assert_eq!(outputs[0]["name"], "detections");
    assert_eq!(outputs[0]["shape"], json!([1, 84, 7]));
    let direct = engine
        .run(&[
            TensorView::new("histogram", &[1, 20, 64, 64], &hist),
            TensorView::new("h1", &[1, 4, 8, 8], &h1),
            TensorView::new("h2", &[1, 4, 4, 4], &h2),
        ])
        .unwrap();
    let served: Vec<f32> = outputs[0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(served, direct[0].data);

    // Bad requests: 4xx with a message, never a dropped connection.
    let bad = |path: &str, body: &[u8], want: u16, needle: &str| {
        let (status, text) = request(addr, "POST", path, body);
        assert_eq!(status, want, "{path}: {text}");
        let msg = json_of(&text)["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(msg.contains(needle), "{path}: `{msg}` lacks `{needle}`");
    };
    bad(
        "/v2/models/rvt/infer",
        b"{\"inputs\": [",
        400,
        "malformed request JSON",
    );
    bad(
        "/v2/models/rvt/infer",
        b"[1, 2]",
        400,
        "malformed request JSON",
    );
    let mut wrong_shape = infer.clone();
    wrong_shape["inputs"][0]["shape"] = json!([1, 20, 32, 128]);
    bad(
        "/v2/models/rvt/infer",
        wrong_shape.to_string().as_bytes(),
        400,
        "the model expects [1, 20, 64, 64]",
    );
    let mut wrong_type = infer.clone();
    wrong_type["inputs"][1]["datatype"] = json!("INT64");
    bad(
        "/v2/models/rvt/infer",
        wrong_type.to_string().as_bytes(),
        400,
        "datatype INT64 is not supported",
    );
    let mut strings = infer.clone();
    strings["inputs"][1]["data"] = json!(["a"]);
    bad(
        "/v2/models/rvt/infer",
        strings.to_string().as_bytes(),
        400,
        "needs numbers, found a string",
    );
    let mut missing = infer.clone();
    missing["inputs"].as_array_mut().unwrap().pop();
    bad(
        "/v2/models/rvt/infer",
        missing.to_string().as_bytes(),
        400,
        "missing input `h2`",
    );
    let mut negative = infer.clone();
    negative["inputs"][1]["shape"] = json!([1, -4, 8, 8]);
    bad(
        "/v2/models/rvt/infer",
        negative.to_string().as_bytes(),
        400,
        "negative dimension",
    );
    let mut no_output = infer.clone();
    no_output["outputs"] = json!([{"name": "nope"}]);
    bad(
        "/v2/models/rvt/infer",
        no_output.to_string().as_bytes(),
        400,
        "no output `nope`",
    );
    let mut short = infer.clone();
    short["inputs"][1]["data"] = json!([1.0, 2.0, 3.0]);
    bad(
        "/v2/models/rvt/infer",
        short.to_string().as_bytes(),
        400,
        "needs 256 values, got 3",
    );
    let mut unknown_input = infer.clone();
    unknown_input["inputs"][1]["name"] = json!("zz");
    bad(
        "/v2/models/rvt/infer",
        unknown_input.to_string().as_bytes(),
        400,
        "the model has no input `zz`",
    );
    let mut twice = infer.clone();
    let again = twice["inputs"][1].clone();
    twice["inputs"].as_array_mut().unwrap().push(again);
    bad(
        "/v2/models/rvt/infer",
        twice.to_string().as_bytes(),
        400,
        "input `h1` given twice",
    );
    bad("/v2/models/rvt/infer", b"", 400, "malformed request JSON");
    bad(
        "/v2/models/rvt/infer",
        b"{\"inputs\": 5}",
        400,
        "malformed request JSON",
    );
    bad(
        "/v2/models/other/infer",
        infer.to_string().as_bytes(),
        404,
        "unknown model `other`",
    );
    bad(
        "/v2/models/rvt/versions/7/infer",
        infer.to_string().as_bytes(),
        404,
        "no version `7`",
    );
    bad(
        "/v2/models/rvt/infer",
        &vec![b' '; 3 << 20],
        413,
        "larger than the",
    );
    let (status, _) = request(addr, "GET", "/v2/models/rvt/infer", b"");
    assert_eq!(status, 405);
    let (status, _) = request(addr, "GET", "/nowhere", b"");
    assert_eq!(status, 404);

    let (status, metrics) = request(addr, "GET", "/metrics", b"");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("prism_requests_total{route=\"infer\",status=\"200\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("prism_requests_total{route=\"infer\",status=\"400\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("prism_request_duration_seconds_bucket{le=\"+Inf\"}"),
        "{metrics}"
    );
    // The metrics request itself is in flight; a worker that already answered the previous
    // request may not have counted it out yet, so the gauge is at least 1.
    let depth: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("prism_queue_depth "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1);
    assert!(depth >= 1, "queue depth {depth}: {metrics}");
    // Graceful shutdown returns once the workers have finished.
    server.shutdown();
}

#[test]
fn streaming_endpoint_matches_the_stream_detector() {
    let Some(dir) = fixtures("streaming_endpoint_matches_the_stream_detector") else {
        return;
    };
    let (server, engine) = start(dir, 8 << 20);
    let addr = server.local_addr();
    let events = events(dir);
    let mut local = StreamDetector::new(engine).unwrap();
    let mut expected: Vec<OwnedWindow> = local.push_collect(events.as_slice()).unwrap();
    expected.extend(local.finish_collect().unwrap());

    // Two client streams interleaved, in different chunkings, one in JSON and one in the binary
    // layout: each has its own state.
    let mut got: [Vec<Value>; 2] = [Vec::new(), Vec::new()];
    let cuts = [[0, 1000, 2500, events.len()], [0, 300, 1700, events.len()]];
    for k in 0..3 {
        for (s, cut) in cuts.iter().enumerate() {
            let r = events.as_slice().slice(cut[k]..cut[k + 1]);
            let (status, text) = if s == 0 {
                let body = json!({"t": r.t, "x": r.x, "y": r.y, "p": r.p, "finish": k == 2});
                request(
                    addr,
                    "POST",
                    "/v2/models/rvt/streams/cam0/events",
                    body.to_string().as_bytes(),
                )
            } else {
                let body = prism_deploy::server::protocol::encode_binary_events(r.t, r.x, r.y, r.p);
                let finish = if k == 2 { "?finish=true" } else { "" };
                let path = format!("/v2/models/rvt/streams/cam1/events{finish}");
                request_typed(addr, "POST", &path, "application/octet-stream", &body)
            };
            assert_eq!(status, 200, "{text}");
            got[s].extend(
                json_of(&text)["windows"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .cloned(),
            );
        }
    }
    // Windows without events or detections are counted, not listed.
    let listed: Vec<&OwnedWindow> = expected
        .iter()
        .filter(|w| w.num_events > 0 || !w.detections.is_empty())
        .collect();
    for windows in &got {
        assert_eq!(windows.len(), listed.len());
        for (w, e) in windows.iter().zip(&listed) {
            assert_eq!(w["end_us"], e.end_us);
            let dets = w["detections"].as_array().unwrap();
            assert_eq!(dets.len(), e.detections.len());
            for (d, x) in dets.iter().zip(&e.detections) {
                assert_eq!(d["class_id"], x.class_id);
                assert_eq!(d["class"], ["car", "pedestrian"][x.class_id]);
                assert!((d["x1"].as_f64().unwrap() - f64::from(x.bbox.x1)).abs() < 1e-3);
            }
        }
    }

    // Finished streams are gone; a bad event is refused with a clear 400 on the request that
    // carries it, nothing of that request is used and the stream goes on; the stream limit holds.
    let (status, _) = request(addr, "DELETE", "/v2/models/rvt/streams/cam0", b"");
    assert_eq!(status, 404);
    let post = |id: &str, body: Value| {
        request(
            addr,
            "POST",
            &format!("/v2/models/rvt/streams/{id}/events"),
            body.to_string().as_bytes(),
        )
    };
    let (status, text) = post(
        "a",
        json!({"t": [0, 1], "x": [1, 500], "y": [1, 1], "p": [0, 1]}),
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("outside the 120x100"), "{text}");
    assert_eq!(
        request(addr, "DELETE", "/v2/models/rvt/streams/a", b"").0,
        404,
        "a stream that only got bad events is not kept"
    );
    // 10 ms windows: the first ends at 10 ms.
    assert_eq!(
        post(
            "a",
            json!({"t": [5_000, 6_000], "x": [1, 2], "y": [1, 1], "p": [0, 1]})
        )
        .0,
        200
    );
    let (status, text) = post(
        "a",
        json!({"t": [7_000, 8_000], "x": [1, 2], "y": [1, 1], "p": [0, 7]}),
    );
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("polarity 7") && text.contains("the stream goes on"),
        "{text}"
    );
    let (status, text) = post("a", json!({"t": [25_000], "x": [1], "y": [1], "p": [0]}));
    assert_eq!(status, 200, "{text}");
    let done = json_of(&text);
    assert_eq!(done["windows"][0]["end_us"], 10_000, "{text}");
    assert_eq!(
        done["windows"][0]["num_events"], 2,
        "the refused events were not used: {text}"
    );
    assert_eq!(
        request(addr, "DELETE", "/v2/models/rvt/streams/a", b"").0,
        200
    );
    let unsorted = json!({"t": [5, 1], "x": [1, 1], "y": [1, 1], "p": [0, 1]});
    let (status, text) = request(
        addr,
        "POST",
        "/v2/models/rvt/streams/b/events",
        unsorted.to_string().as_bytes(),
    );
    assert_eq!(status, 400, "{text}");
    let lengths = json!({"t": [5], "x": [1, 1], "y": [1], "p": [0]});
    let (status, text) = request(
        addr,
        "POST",
        "/v2/models/rvt/streams/c/events",
        lengths.to_string().as_bytes(),
    );
    assert_eq!(status, 400, "{text}");
    let (status, text) = request_typed(
        addr,
        "POST",
        "/v2/models/rvt/streams/d/events",
        "application/octet-stream",
        &[2, 0, 0, 0, 1],
    );
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("2 events need 4 + 13 x 2 = 30 bytes"),
        "{text}"
    );
    let (status, text) = request(
        addr,
        "POST",
        "/v2/models/rvt/streams/bad%20id/events",
        b"{}",
    );
    assert_eq!(status, 400, "{text}");
    for s in ["s1", "s2"] {
        let (status, _) = request(
            addr,
            "POST",
            &format!("/v2/models/rvt/streams/{s}/events"),
            b"{\"t\": [1], \"x\": [1], \"y\": [1], \"p\": [1]}",
        );
        assert_eq!(status, 200);
    }
    let (status, text) = request(addr, "POST", "/v2/models/rvt/streams/s3/events", b"{}");
    assert_eq!(status, 429, "{text}");
    assert_eq!(
        request(addr, "DELETE", "/v2/models/rvt/streams/s1", b"").0,
        200
    );
    server.shutdown();
}

/// A request that may fail (the server is going away): the status, if one came.
fn try_post(addr: SocketAddr, path: &str, body: &[u8]) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .ok()?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    String::from_utf8_lossy(&raw)
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

fn start_with(dir: &std::path::Path, options: ServerOptions) -> Server {
    let engine = Arc::new(
        Engine::load(
            dir.join("rvt_tiny.onnx"),
            &EngineOptions::new(Backend::Tract),
        )
        .unwrap(),
    );
    Server::start(
        engine,
        ServerOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            model_name: Some("rvt".into()),
            ..options
        },
    )
    .unwrap()
}

fn events_body(t: &[i64], finish: bool) -> Vec<u8> {
    let n = t.len();
    json!({"t": t, "x": vec![1; n], "y": vec![1; n], "p": vec![0; n], "finish": finish})
        .to_string()
        .into_bytes()
}

/// The denial of service of issue 21: a timestamp jump in one small request used to run every
/// empty window in between. Now a gap ends the sequence at once, a request that would complete
/// too many windows is refused before any work, a stream cannot hoard events, and deadlines hold.
#[test]
fn gaps_caps_and_deadlines_bound_every_stream_request() {
    let Some(dir) = fixtures("gaps_caps_and_deadlines_bound_every_stream_request") else {
        return;
    };
    // The fixture model has 10 ms windows; a gap over 0.5 s resets.
    let options = ServerOptions {
        workers: 4,
        max_streams: 16,
        max_gap_us: 500_000,
        max_stream_events: 1000,
        ..ServerOptions::default()
    };
    let server = start_with(dir, options.clone());
    let addr = server.local_addr();
    let post = |id: &str, body: &[u8]| {
        request(
            addr,
            "POST",
            &format!("/v2/models/rvt/streams/{id}/events"),
            body,
        )
    };

    // 31 years in one step: two short sequences, the gap reported, nothing run in between.
    let started = std::time::Instant::now();
    let (status, text) = post("gap", &events_body(&[0, 1_000_000_000_000_000], true));
    assert_eq!(status, 200, "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let r = json_of(&text);
    assert_eq!(
        r["gaps"],
        json!([{"last_us": 0, "next_us": 1_000_000_000_000_000i64}]),
        "{text}"
    );
    let listed = r["windows"].as_array().unwrap().len() as u64;
    assert_eq!(listed + r["empty_windows"].as_u64().unwrap(), 4, "{text}");

    // A pause of exactly the limit is not a gap: its 50 empty windows run, counted, not listed.
    let (status, text) = post("limit", &events_body(&[0, 500_000], true));
    assert_eq!(status, 200, "{text}");
    let r = json_of(&text);
    assert!(r.get("gaps").is_none(), "{text}");
    assert_eq!(
        r["windows"].as_array().unwrap().len() as u64 + r["empty_windows"].as_u64().unwrap(),
        52,
        "{text}"
    );

    // More windows than a request may complete: 413 before any work, the stream as it was.
    assert_eq!(post("cap", &events_body(&[0, 5_000], false)).0, 200);
    let dense: Vec<i64> = (1..=300).map(|k| 5_000 + k * 4_000).collect();
    let (status, text) = post("cap", &events_body(&dense, false));
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("would complete 120 windows"), "{text}");
    assert!(
        text.contains("at most 100 per request") && text.contains("the stream goes on"),
        "{text}"
    );
    let (status, text) = post("cap", &events_body(&dense[..50], false));
    assert_eq!(status, 200, "{text}");

    // A stream may not hold more than 1000 events for windows that are not complete.
    let crowd = vec![7_000_000i64; 1001];
    let (status, text) = post("crowd", &events_body(&crowd, false));
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("at most 1000"), "{text}");
    server.shutdown();

    // A deadline that has passed stops a request after its first window: 408, stream dropped.
    let server = start_with(
        dir,
        ServerOptions {
            deadline: std::time::Duration::from_nanos(1),
            ..options.clone()
        },
    );
    let addr = server.local_addr();
    let (status, text) = request(
        addr,
        "POST",
        "/v2/models/rvt/streams/late/events",
        &events_body(&[0, 300_000], true),
    );
    assert_eq!(status, 408, "{text}");
    assert!(
        text.contains("deadline passed after 1 windows") && text.contains("stream was dropped"),
        "{text}"
    );
    assert_eq!(
        request(addr, "DELETE", "/v2/models/rvt/streams/late", b"").0,
        404
    );
    server.shutdown();
}

/// Under a stream of long requests, health answers at once and shutdown takes a window, not a
/// request, to stop every worker.
#[test]
fn health_answers_and_shutdown_is_quick_under_load() {
    let Some(dir) = fixtures("health_answers_and_shutdown_is_quick_under_load") else {
        return;
    };
    let server = start_with(
        dir,
        ServerOptions {
            workers: 2,
            max_streams: 64,
            ..ServerOptions::default()
        },
    );
    let addr = server.local_addr();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut k = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    // 99 windows of 10 ms, every one with events.
                    let t: Vec<i64> = (0..990).map(|j| j * 1_000).collect();
                    let _ = try_post(
                        addr,
                        &format!("/v2/models/rvt/streams/load{i}_{k}/events"),
                        &events_body(&t, true),
                    );
                    k += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    for _ in 0..5 {
        let t = std::time::Instant::now();
        assert_eq!(request(addr, "GET", "/v2/health/ready", b"").0, 200);
        assert!(
            t.elapsed() < std::time::Duration::from_secs(1),
            "health took {:?}",
            t.elapsed()
        );
    }
    let t = std::time::Instant::now();
    server.shutdown();
    assert!(
        t.elapsed() < std::time::Duration::from_secs(2),
        "shutdown took {:?}",
        t.elapsed()
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for l in load {
        l.join().unwrap();
    }
}

/// A model whose spec cannot be run is refused when the server starts, naming the problem; it is
/// never answered as a client's 400 on every request.
#[test]
fn a_broken_model_fails_at_start_not_as_a_client_error() {
    let Some(dir) = fixtures("a_broken_model_fails_at_start_not_as_a_client_error") else {
        return;
    };
    let engine = Arc::new(
        Engine::load(
            dir.join("odd_downsample.onnx"),
            &EngineOptions::new(Backend::Tract),
        )
        .unwrap(),
    );
    let err = Server::start(
        engine,
        ServerOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            ..ServerOptions::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, prism_deploy::DeployError::BadSpec(_)),
        "{err}"
    );
    assert!(
        err.to_string().contains("downsample 3 is not supported"),
        "{err}"
    );
}

/// A client that declares an enormous body and sends little of it gets 413 and the server lives
/// on: neither the declared size nor the missing bytes are ever allocated or waited for.
#[test]
fn an_enormous_declared_body_is_refused_and_the_server_keeps_serving() {
    let Some(dir) = fixtures("an_enormous_declared_body_is_refused_and_the_server_keeps_serving")
    else {
        return;
    };
    let (server, _) = start(dir, 1 << 20);
    let addr = server.local_addr();
    for declared in [(1u64 << 20) + 1, 1 << 40, u64::MAX / 2] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let head = format!(
            "POST /v2/models/rvt/infer HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n{{\"inputs\": ["
        );
        s.write_all(head.as_bytes()).unwrap();
        // The server answers from the head and closes: nothing of the body is waited for.
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw).into_owned();
        assert!(
            text.starts_with("HTTP/1.1 413"),
            "declared {declared}: {text}"
        );
        assert!(
            text.contains("larger than the"),
            "declared {declared}: {text}"
        );
        drop(s);
        assert_eq!(
            request(addr, "GET", "/v2/health/live", b"").0,
            200,
            "after declaring {declared} bytes"
        );
    }
    server.shutdown();
}

/// Sends raw bytes on a fresh connection and reads until the server closes it.
fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let _ = s.write_all(bytes);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw).into_owned()
}

/// The HTTP layer: chunked bodies and `Expect: 100-continue` work, keep-alive connections carry
/// several requests, and malformed or ambiguous HTTP gets a 4xx with a message; a client that
/// stalls mid-body does not keep others waiting.
#[test]
fn http_layer_handles_chunked_keep_alive_and_malformed_requests() {
    let Some(dir) = fixtures("http_layer_handles_chunked_keep_alive_and_malformed_requests") else {
        return;
    };
    let (server, _) = start(dir, 1 << 20);
    let addr = server.local_addr();

    // A client declares a body and stalls: its connection waits alone.
    let mut stalled = TcpStream::connect(addr).unwrap();
    stalled
        .write_all(
            b"POST /v2/models/rvt/infer HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n{",
        )
        .unwrap();

    // Two requests on one keep-alive connection, the second chunked with Expect: 100-continue.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    s.write_all(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(!first.contains("Connection: close"), "{first}");
    let body = br#"{"t": [1], "x": [1], "y": [1], "p": [1]}"#;
    let mut chunked = Vec::from(&b"POST /v2/models/rvt/streams/ck/events HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"[..]);
    for part in body.chunks(7) {
        chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        chunked.extend_from_slice(part);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    s.write_all(&chunked).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let second = String::from_utf8_lossy(&rest).into_owned();
    assert!(
        second.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200"),
        "{second}"
    );
    assert!(second.contains("\"windows\":[]"), "{second}");

    // Malformed HTTP: hyper answers 400 and closes the connection.
    let cases: [&[u8]; 6] = [
        b"GARBAGE\r\n\r\n",
        b"GET /v2/health/live HTTP/2.0\r\n\r\n",
        b"GET /v2/health/live HTTP/1.1\r\nno colon here\r\n\r\n",
        b"POST /v2/models/rvt/infer HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
        b"POST /v2/models/rvt/infer HTTP/1.1\r\nContent-Length: lots\r\n\r\n",
        b"POST /v2/models/rvt/infer HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
    ];
    for bytes in cases {
        // raw_exchange returns when the server closes the connection.
        let text = raw_exchange(addr, bytes);
        assert!(
            text.starts_with("HTTP/1.1 400"),
            "{:?}: {text}",
            String::from_utf8_lossy(bytes)
        );
        assert_eq!(statuses(text.as_bytes()).len(), 1, "{text}");
    }
    // Content-Length with chunked coding: read as chunked, and the connection closes after the
    // answer, so the request smuggled behind it is never run.
    let smuggled = raw_exchange(
        addr,
        b"POST /v2/models/rvt/infer HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /v2/health/live HTTP/1.1\r\n\r\n",
    );
    assert!(smuggled.starts_with("HTTP/1.1 400"), "{smuggled}");
    assert!(smuggled.contains("malformed request JSON"), "{smuggled}");
    assert!(smuggled.contains("Connection: close"), "{smuggled}");
    assert_eq!(statuses(smuggled.as_bytes()), vec![400], "{smuggled}");
    // A head larger than 16 KiB, and a chunked body over the limit.
    let mut big_head = Vec::from(&b"GET /v2/health/live HTTP/1.1\r\nX-Big: "[..]);
    big_head.extend(std::iter::repeat_n(b'a', 20 << 10));
    big_head.extend_from_slice(b"\r\n\r\n");
    let text = raw_exchange(addr, &big_head);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    let mut over =
        Vec::from(&b"POST /v2/models/rvt/infer HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..]);
    for _ in 0..3 {
        over.extend_from_slice(format!("{:x}\r\n", 512 << 10).as_bytes());
        over.extend(std::iter::repeat_n(b' ', 512 << 10));
        over.extend_from_slice(b"\r\n");
    }
    over.extend_from_slice(b"0\r\n\r\n");
    let text = raw_exchange(addr, &over);
    assert!(
        text.starts_with("HTTP/1.1 413") && text.contains("larger than the 1048576-byte limit"),
        "{text}"
    );

    // Still serving; the stalled client never blocked anyone; metrics count the refusals.
    assert_eq!(request(addr, "GET", "/v2/health/ready", b"").0, 200);
    let (_, metrics) = request(addr, "GET", "/metrics", b"");
    assert!(
        metrics.contains("prism_requests_total{route=\"http\",status=\"400\"} 6"),
        "{metrics}"
    );
    assert!(!metrics.contains("status=\"500\""), "{metrics}");
    // Graceful shutdown does not wait for the stalled upload.
    let stopping = std::time::Instant::now();
    server.shutdown();
    assert!(
        stopping.elapsed() < std::time::Duration::from_secs(5),
        "shutdown took {:?}",
        stopping.elapsed()
    );
    drop(stalled);
}

/// Sends `bytes` on a fresh connection, closes the sending side, and returns everything the
/// server wrote before it closed (or `None` if it neither answered nor closed in 20 s).
fn send_raw(addr: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    // The server may refuse and close before it has read everything: writes can then fail.
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => Some(raw),
        // A reset after a refusal still ends the exchange.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(raw),
        Err(_) => None,
    }
}

/// Statuses at the start of each response in `raw` (pipelined requests get several).
fn statuses(raw: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(raw);
    // HTTP/1.0 requests are answered in HTTP/1.0.
    text.match_indices("HTTP/1.")
        .filter(|(i, _)| matches!(text.get(i + 7..i + 9), Some("1 " | "0 ")))
        .filter_map(|(i, _)| text[i + 9..].get(..3).and_then(|c| c.parse().ok()))
        .collect()
}

/// Requests for the HTTP layer: well-formed ones with one part mangled, and plain garbage.
fn mangled_request() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![
        Just("GET".to_string()),
        Just("POST".to_string()),
        Just("G\0T".to_string()),
        Just(String::new()),
        "[A-Z]{1,12}",
    ];
    let path = prop_oneof![
        Just("/v2/health/live".to_string()),
        Just("/v2/models/rvt/infer".to_string()),
        Just("/v2/models/rvt/streams/a/events".to_string()),
        "/[ -~]{0,64}",
        "[^\r\n]{0,40}",
    ];
    let version = prop_oneof![
        Just("HTTP/1.1".to_string()),
        Just("HTTP/1.0".to_string()),
        Just("HTTP/9".to_string()),
        Just(String::new()),
    ];
    let length = prop_oneof![
        Just(None),
        (0usize..64).prop_map(|n| Some(n.to_string())),
        Just(Some("18446744073709551616".to_string())),
        Just(Some("-1".to_string())),
        Just(Some("12, 13".to_string())),
        "[ -~]{0,8}".prop_map(Some),
    ];
    let chunked = prop_oneof![
        Just(None),
        Just(Some("5\r\nhello\r\n0\r\n\r\n".to_string())),
        Just(Some("ffffffffffffffffff\r\nx\r\n".to_string())),
        Just(Some("zz\r\n".to_string())),
        "[0-9a-f]{1,4}\r\n[ -~]{0,40}".prop_map(Some),
    ];
    let structured = (
        method,
        path,
        version,
        length,
        chunked,
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec("[ -~]{0,30}", 0..4),
    )
        .prop_map(|(m, p, v, len, chunked, body, extra)| {
            let mut head = format!("{m} {p} {v}\r\nHost: t\r\n");
            for e in extra {
                head.push_str(&e);
                head.push_str("\r\n");
            }
            if let Some(len) = &len {
                head.push_str(&format!("Content-Length: {len}\r\n"));
            }
            let mut bytes = match &chunked {
                Some(_) => format!("{head}Transfer-Encoding: chunked\r\n\r\n").into_bytes(),
                None => format!("{head}\r\n").into_bytes(),
            };
            match chunked {
                Some(c) => bytes.extend_from_slice(c.as_bytes()),
                None => bytes.extend_from_slice(&body),
            }
            bytes
        });
    prop_oneof![
        3 => structured,
        1 => proptest::collection::vec(any::<u8>(), 0..2048),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever bytes arrive, the server answers with well-formed responses or closes, and keeps
    /// serving the next client. The only 5xx allowed are the protocol's own refusals (501 an
    /// unknown method, 505 an unsupported HTTP version), never a server fault.
    #[test]
    fn mangled_http_gets_a_4xx_or_a_close_and_the_server_keeps_serving(bytes in mangled_request()) {
        let Some(dir) = fixtures("mangled_http") else { return Ok(()) };
        static SERVER: std::sync::OnceLock<(Server, Arc<Engine>)> = std::sync::OnceLock::new();
        let (server, _) = SERVER.get_or_init(|| start(dir, 1 << 16));
        let addr = server.local_addr();
        let raw = send_raw(addr, &bytes);
        prop_assert!(raw.is_some(), "the server neither answered nor closed");
        let raw = raw.unwrap_or_default();
        if !raw.is_empty() {
            prop_assert!(raw.starts_with(b"HTTP/1.1 ") || raw.starts_with(b"HTTP/1.0 "), "not an HTTP response: {:?}", String::from_utf8_lossy(&raw));
        }
        for status in statuses(&raw) {
            prop_assert!((200..500).contains(&status) || status == 501 || status == 505, "status {} for {:?}", status, String::from_utf8_lossy(&bytes));
        }
        prop_assert_eq!(request(addr, "GET", "/v2/health/live", b"").0, 200);
    }
}

/// Sends a binary tensor data request (JSON header, then raw tensors) and returns the status,
/// the `Inference-Header-Content-Length` of the answer (if any) and the answer's body bytes.
fn binary_infer(
    addr: SocketAddr,
    json: &Value,
    tensors: &[&[f32]],
) -> (u16, Option<usize>, Vec<u8>) {
    let header = json.to_string();
    let mut body = header.clone().into_bytes();
    for t in tensors {
        t.iter()
            .for_each(|v| body.extend_from_slice(&v.to_le_bytes()));
    }
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "POST /v2/models/rvt/infer HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\nInference-Header-Content-Length: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        header.len(),
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let json_len = head
        .lines()
        .find_map(|l| l.strip_prefix("Inference-Header-Content-Length: "))
        .map(|v| v.trim().parse().unwrap());
    (status, json_len, raw[split..].to_vec())
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Triton's binary tensor data extension in and out gives the engine's numbers bit for bit, and
/// a sequence carries the recurrent state the way feeding the state outputs back by hand does.
#[test]
fn binary_tensors_and_sequences_match_the_engine() {
    let Some(dir) = fixtures("binary_tensors_and_sequences_match_the_engine") else {
        return;
    };
    let (server, engine) = start(dir, 2 << 20);
    let addr = server.local_addr();
    let (status, body) = request(addr, "GET", "/v2", b"");
    assert_eq!(status, 200);
    assert!(json_of(&body)["extensions"]
        .as_array()
        .unwrap()
        .contains(&json!("binary_tensor_data")));

    let windows: Vec<Vec<f32>> = (0..3)
        .map(|w| {
            (0..20 * 64 * 64)
                .map(|i| ((i * 7 + w * 13) % 5) as f32)
                .collect()
        })
        .collect();
    let (h1, h2) = (vec![0.1f32; 256], vec![-0.2f32; 64]);

    // Stateless, all binary: every output after the JSON, in order.
    let request_json = json!({
        "inputs": [
            {"name": "histogram", "shape": [1, 20, 64, 64], "datatype": "FP32", "parameters": {"binary_data_size": 4 * windows[0].len()}},
            {"name": "h1", "shape": [1, 4, 8, 8], "datatype": "FP32", "parameters": {"binary_data_size": 4 * 256}},
            {"name": "h2", "shape": [1, 4, 4, 4], "datatype": "FP32", "data": h2},
        ],
        "parameters": {"binary_data_output": true},
    });
    let (status, json_len, body) = binary_infer(addr, &request_json, &[&windows[0], &h1]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let json_len = json_len.expect("a binary answer names its JSON length");
    let answer = json_of(std::str::from_utf8(&body[..json_len]).unwrap());
    let direct = engine
        .run(&[
            TensorView::new("histogram", &[1, 20, 64, 64], &windows[0]),
            TensorView::new("h1", &[1, 4, 8, 8], &h1),
            TensorView::new("h2", &[1, 4, 4, 4], &h2),
        ])
        .unwrap();
    let mut offset = json_len;
    for (out, expected) in answer["outputs"].as_array().unwrap().iter().zip(&direct) {
        assert_eq!(out["name"], expected.name.as_str());
        assert!(out.get("data").is_none(), "{out}");
        let size = out["parameters"]["binary_data_size"].as_u64().unwrap() as usize;
        assert_eq!(
            f32s(&body[offset..offset + size]),
            expected.data,
            "{}",
            expected.name
        );
        offset += size;
    }
    assert_eq!(offset, body.len());
    assert_eq!(answer["outputs"].as_array().unwrap().len(), direct.len());

    // Bad binary requests: 400 with a reason.
    let short = json!({"inputs": [{"name": "histogram", "shape": [1, 20, 64, 64], "datatype": "FP32", "parameters": {"binary_data_size": 4 * windows[0].len() + 4}}]});
    let (status, _, body) = binary_infer(addr, &short, &[&windows[0]]);
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("bytes of binary data are left"));
    let odd = json!({"inputs": [{"name": "histogram", "shape": [1, 20, 64, 64], "datatype": "FP32", "parameters": {"binary_data_size": 6}}]});
    let (status, _, body) = binary_infer(addr, &odd, &[&windows[0]]);
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("not a whole number of FP32"));

    // A sequence over three windows, JSON answers, state carried by the server...
    let step = |window: &[f32], start: bool, end: bool| {
        let req = json!({
            "inputs": [{"name": "histogram", "shape": [1, 20, 64, 64], "datatype": "FP32", "parameters": {"binary_data_size": 4 * window.len()}}],
            "parameters": {"sequence_id": 7, "sequence_start": start, "sequence_end": end},
        });
        let (status, json_len, body) = binary_infer(addr, &req, &[window]);
        assert_eq!(json_len, None, "JSON was asked for");
        (status, json_of(&String::from_utf8_lossy(&body)))
    };
    // ...and by hand: each window gets the previous window's state outputs.
    let mut state = (vec![0.0f32; 256], vec![0.0f32; 64]);
    for (i, window) in windows.iter().enumerate() {
        let (status, answer) = step(window, i == 0, i == windows.len() - 1);
        assert_eq!(status, 200, "{answer}");
        let outputs = answer["outputs"].as_array().unwrap();
        assert_eq!(
            outputs.len(),
            1,
            "state outputs stay with the server: {answer}"
        );
        let by_hand = engine
            .run(&[
                TensorView::new("histogram", &[1, 20, 64, 64], window),
                TensorView::new("h1", &[1, 4, 8, 8], &state.0),
                TensorView::new("h2", &[1, 4, 4, 4], &state.1),
            ])
            .unwrap();
        let served: Vec<f32> = outputs[0]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(outputs[0]["name"], by_hand[0].name.as_str());
        assert_eq!(served, by_hand[0].data, "window {i}");
        let state_of = |name: &str| {
            by_hand
                .iter()
                .find(|t| t.name == name)
                .unwrap()
                .data
                .clone()
        };
        state = (state_of("h1_out"), state_of("h2_out"));
    }
    // The carried state matters: window 2 after a restart (zero state) and again after itself.
    let (_, restarted) = step(&windows[2], true, false);
    let (_, continued) = step(&windows[2], false, false);
    assert_ne!(
        restarted["outputs"][0]["data"],
        continued["outputs"][0]["data"]
    );
    // Ended sequences, unknown ones and state given by hand are refused.
    let (status, answer) = step(&windows[0], false, true);
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = step(&windows[0], false, false);
    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap().contains("is not open"),
        "{answer}"
    );
    let with_state = json!({
        "inputs": [{"name": "h1", "shape": [1, 4, 8, 8], "datatype": "FP32", "data": h1}],
        "parameters": {"sequence_id": "s", "sequence_start": true},
    });
    let (status, body) = request(
        addr,
        "POST",
        "/v2/models/rvt/infer",
        with_state.to_string().as_bytes(),
    );
    assert_eq!(status, 400);
    assert!(body.contains("recurrent state"), "{body}");

    // Every model run above is in the per-model queue and compute histograms.
    let (_, metrics) = request(addr, "GET", "/metrics", b"");
    let count = |series: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{series}{{model=\"rvt\"}} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in {metrics}"))
    };
    let runs = count("prism_compute_duration_seconds_count");
    assert!(runs >= 7, "{runs} runs counted\n{metrics}");
    assert!(
        count("prism_queue_duration_seconds_count") >= runs,
        "{metrics}"
    );
    assert!(
        metrics.contains("prism_sequences_open{model=\"rvt\"} 0"),
        "every sequence ended\n{metrics}"
    );
    server.shutdown();
}

/// An abandoned sequence is freed after the idle timeout.
#[test]
fn idle_sequences_are_freed() {
    let Some(dir) = fixtures("idle_sequences_are_freed") else {
        return;
    };
    let server = start_with(
        dir,
        ServerOptions {
            sequence_idle: std::time::Duration::from_millis(300),
            ..ServerOptions::default()
        },
    );
    let addr = server.local_addr();
    let window = vec![1.0f32; 20 * 64 * 64];
    let req = |start: bool| {
        json!({
            "inputs": [{"name": "histogram", "shape": [1, 20, 64, 64], "datatype": "FP32", "data": window}],
            "parameters": {"sequence_id": 3, "sequence_start": start},
        })
        .to_string()
    };
    assert_eq!(
        request(addr, "POST", "/v2/models/rvt/infer", req(true).as_bytes()).0,
        200
    );
    assert_eq!(
        request(addr, "POST", "/v2/models/rvt/infer", req(false).as_bytes()).0,
        200
    );
    std::thread::sleep(std::time::Duration::from_millis(600));
    let (status, body) = request(addr, "POST", "/v2/models/rvt/infer", req(false).as_bytes());
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("is not open"), "{body}");
    server.shutdown();
}

/// A model repository: every ONNX file served under its file name, listed, unloaded, loaded
/// again, and bad loads refused with a reason while the other models keep serving.
#[test]
fn a_model_repository_lists_loads_and_unloads_its_models() {
    let Some(dir) = fixtures("a_model_repository_lists_loads_and_unloads_its_models") else {
        return;
    };
    let repo = tempfile::tempdir().unwrap();
    for name in ["alpha", "beta"] {
        std::fs::copy(
            dir.join("rvt_tiny.onnx"),
            repo.path().join(format!("{name}.onnx")),
        )
        .unwrap();
    }
    let server = Server::start_repository(
        repo.path(),
        EngineOptions::new(Backend::Tract),
        ServerOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            ..ServerOptions::default()
        },
    )
    .unwrap();
    let addr = server.local_addr();
    let index = || json_of(&request(addr, "POST", "/v2/repository/index", b"{}").1);
    assert_eq!(
        index(),
        json!([
            {"name": "alpha", "version": "1", "state": "READY"},
            {"name": "beta", "version": "1", "state": "READY"},
        ])
    );
    let window = vec![1.0f32; 20 * 64 * 64];
    let infer = |model: &str| {
        let body = json!({
            "inputs": [{"name": "histogram", "shape": [1, 20, 64, 64], "datatype": "FP32", "data": window}],
            "parameters": {"sequence_id": 1, "sequence_start": true},
        });
        request(
            addr,
            "POST",
            &format!("/v2/models/{model}/infer"),
            body.to_string().as_bytes(),
        )
    };
    assert_eq!(infer("alpha").0, 200);
    assert_eq!(infer("beta").0, 200);

    // Unloaded: gone from the routes, UNAVAILABLE in the index; alpha keeps serving.
    assert_eq!(
        request(addr, "POST", "/v2/repository/models/beta/unload", b"").0,
        200
    );
    let (status, body) = infer("beta");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("this server has `alpha`"), "{body}");
    assert_eq!(index()[1]["state"], "UNAVAILABLE");
    assert_eq!(index()[1]["reason"], "unloaded");
    assert_eq!(request(addr, "GET", "/v2/models/beta/ready", b"").0, 404);
    assert_eq!(infer("alpha").0, 200);
    assert_eq!(
        request(addr, "POST", "/v2/repository/models/beta/unload", b"").0,
        404
    );

    // Loaded again; a new file appears and is loaded; bad loads are refused with a reason.
    assert_eq!(
        request(addr, "POST", "/v2/repository/models/beta/load", b"").0,
        200
    );
    assert_eq!(infer("beta").0, 200);
    std::fs::copy(dir.join("rvt_tiny.onnx"), repo.path().join("gamma.onnx")).unwrap();
    assert_eq!(
        index()[2],
        json!({"name": "gamma", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"})
    );
    assert_eq!(
        request(addr, "POST", "/v2/repository/models/gamma/load", b"").0,
        200
    );
    assert_eq!(infer("gamma").0, 200);
    let (status, body) = request(addr, "POST", "/v2/repository/models/missing/load", b"");
    assert_eq!(status, 404, "{body}");
    let (status, body) = request(addr, "POST", "/v2/repository/models/..%2Fetc/load", b"");
    assert_eq!(status, 400, "{body}");
    std::fs::write(repo.path().join("broken.onnx"), b"not an onnx file").unwrap();
    let (status, body) = request(addr, "POST", "/v2/repository/models/broken/load", b"");
    assert_eq!(status, 400, "{body}");
    let broken = index()
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "broken")
        .cloned()
        .unwrap();
    assert_eq!(broken["state"], "UNAVAILABLE");
    assert!(!broken["reason"].as_str().unwrap().is_empty(), "{broken}");
    assert_eq!(infer("alpha").0, 200);

    // Per-model metrics.
    let (_, metrics) = request(addr, "GET", "/metrics", b"");
    for model in ["alpha", "beta", "gamma"] {
        assert!(
            metrics.contains(&format!(
                "prism_compute_duration_seconds_count{{model=\"{model}\"}}"
            )),
            "{model}: {metrics}"
        );
    }
    server.shutdown();

    // A repository with a broken model does not start; an empty one neither.
    let err = Server::start_repository(
        repo.path(),
        EngineOptions::new(Backend::Tract),
        ServerOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            ..ServerOptions::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("broken"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let err = Server::start_repository(
        empty.path(),
        EngineOptions::new(Backend::Tract),
        ServerOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no .onnx file"), "{err}");
}

/// Dynamic batching: concurrent requests for a model with a dynamic batch axis run together
/// (the metrics count batches of more than one) and each gets the numbers it would get alone.
#[test]
fn dynamic_batching_answers_each_request_with_its_own_rows() {
    let Some(dir) = fixtures("dynamic_batching_answers_each_request_with_its_own_rows") else {
        return;
    };
    let model = dir.join("frame_batched.onnx");
    let engine = Arc::new(Engine::load(&model, &EngineOptions::new(Backend::Tract)).unwrap());
    let server = Server::start(
        engine.clone(),
        ServerOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            model_name: Some("frame".into()),
            max_batch: 8,
            max_queue_delay: std::time::Duration::from_millis(20),
            ..ServerOptions::default()
        },
    )
    .unwrap();
    let addr = server.local_addr();
    let image = |k: usize, rows: usize| -> Vec<f32> {
        (0..rows * 3 * 32 * 32)
            .map(|i| ((i * 31 + k * 17) % 97) as f32 / 97.0)
            .collect()
    };
    let alone = |data: &[f32], rows: usize| {
        engine
            .run(&[TensorView::new("image", &[rows, 3, 32, 32], data)])
            .unwrap()
            .remove(0)
    };
    std::thread::scope(|s| {
        for client in 0..12 {
            s.spawn(move || {
                for k in 0..4 {
                    // Mostly single images, now and then two at once.
                    let rows = if (client + k) % 5 == 0 { 2 } else { 1 };
                    let data = image(client * 10 + k, rows);
                    let body = json!({"inputs": [{"name": "image", "shape": [rows, 3, 32, 32], "datatype": "FP32", "data": data}]});
                    let (status, body) =
                        request(addr, "POST", "/v2/models/frame/infer", body.to_string().as_bytes());
                    assert_eq!(status, 200, "{body}");
                    let answer = json_of(&body);
                    let out = &answer["outputs"][0];
                    let expected = alone(&data, rows);
                    assert_eq!(out["shape"], json!(expected.shape));
                    let served: Vec<f32> = out["data"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_f64().unwrap() as f32)
                        .collect();
                    for (a, b) in served.iter().zip(&expected.data) {
                        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
                    }
                }
            });
        }
    });
    let (_, metrics) = request(addr, "GET", "/metrics", b"");
    let counter = |series: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{series}{{model=\"frame\"}} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in {metrics}"))
    };
    let (batches, requests) = (
        counter("prism_batches_total"),
        counter("prism_batched_requests_total"),
    );
    assert_eq!(requests, 48, "{metrics}");
    assert!(batches < requests, "no request shared a batch: {metrics}");
    server.shutdown();
}

/// The HTTP/2 client preface and an empty SETTINGS frame: what opens a gRPC connection.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Opens an HTTP/2 connection and returns it with the first bytes the server sent (none: closed).
fn h2_open(addr: SocketAddr) -> (TcpStream, usize) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let _ = s.write_all(H2_PREFACE);
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    (s, n)
}

/// Connections past `max_connections` are refused on both endpoints (HTTP: 503; gRPC: closed on
/// arrival), and a place freed is taken again.
#[test]
fn connections_past_the_cap_are_refused_on_both_endpoints() {
    use std::io::{Read, Write};
    let Some(dir) = fixtures("connections_past_the_cap_are_refused_on_both_endpoints") else {
        return;
    };
    let server = start_with(
        dir,
        ServerOptions {
            max_connections: 2,
            grpc_addr: Some("127.0.0.1:0".parse().unwrap()),
            ..ServerOptions::default()
        },
    );
    let addr = server.local_addr();
    let settle = || std::thread::sleep(std::time::Duration::from_millis(300));

    // HTTP: two idle connections hold both places; the third is answered 503 and closed.
    let held: Vec<_> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    settle();
    let mut third = TcpStream::connect(addr).unwrap();
    third
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let _ = third.write_all(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut answer = String::new();
    let _ = third.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too many connections"), "{answer}");
    drop(held);
    settle();
    assert_eq!(request(addr, "GET", "/v2/health/live", b"").0, 200);

    // gRPC: two open HTTP/2 connections hold both places; the third is closed unanswered.
    let grpc = server.grpc_addr().unwrap();
    let (first, n1) = h2_open(grpc);
    let (_second, n2) = h2_open(grpc);
    assert!(
        n1 > 0 && n2 > 0,
        "the server answers the first two prefaces"
    );
    settle();
    let (_, n3) = h2_open(grpc);
    assert_eq!(n3, 0, "a third gRPC connection is closed");
    drop(first);
    settle();
    let (_, n4) = h2_open(grpc);
    assert!(n4 > 0, "a freed place is taken again");
}
