//! An HTTP inference server speaking the KServe v2 / Triton JSON protocol, plus a streaming
//! endpoint for event cameras and Prometheus metrics.
//!
//! Routes (model name: [`ServerOptions::model_name`], else the spec's model name; version `1`):
//! - `GET /v2/health/live`, `GET /v2/health/ready`, `GET /v2`
//! - `GET /v2/models/{name}[/versions/1]`, `GET /v2/models/{name}[/versions/1]/ready`
//! - `POST /v2/models/{name}[/versions/1]/infer`: KServe v2 JSON tensors (`FP32` only)
//! - `POST /v2/models/{name}/streams/{id}/events` with `{"t": [...], "x": [...], "y": [...],
//!   "p": [...], "finish": false}`: pushes one chunk of client stream `id`'s events and returns the
//!   windows it completed with their detections (each stream has its own [`StreamDetector`] and
//!   recurrent state); `finish: true` ends the stream. The same events may come as
//!   `Content-Type: application/octet-stream` ([`protocol::decode_binary_events`], 13 bytes an
//!   event instead of ~30 in JSON), with `?finish=true` in the URL to end the stream.
//!   `DELETE /v2/models/{name}/streams/{id}` drops a stream.
//! - `GET /metrics`: Prometheus text.
//!
//! Errors are `{"error": "..."}` with a 4xx status for anything the client controls (malformed
//! JSON, wrong shapes or datatypes, oversized bodies → 413, unknown models → 404, too many
//! streams → 429). A handler panic, which should not happen, is caught and answered with 500.
//!
//! Why tiny_http and threads rather than an async stack: inference is CPU-bound and blocking
//! (tract, ORT), requests are few and large, so a small pool of worker threads each taking one
//! request at a time is the whole design; it keeps the dependency tree to four small crates.
//! The server binds loopback by default ([`ServerOptions::default`]); binding elsewhere is the
//! caller's explicit choice and is logged as a warning.

mod metrics;
pub mod protocol;

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prism_core::spec::Task;
use serde_json::json;

pub use metrics::Metrics;
use protocol::{flatten_f32, DetectionJson, EventsRequest, EventsResponse, InferRequest, InferResponse, OutputTensor, TensorMetadata, WindowJson};

use crate::engine::{Engine, TensorView};
use crate::error::{DeployError, Result};
use crate::stream::StreamDetector;

/// Model version the server reports (one model, one version).
const VERSION: &str = "1";

#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Where to listen; port 0 picks a free one ([`Server::local_addr`] tells which).
    pub addr: SocketAddr,
    /// Name in the URLs; `None`: the spec's model name.
    pub model_name: Option<String>,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Worker threads, each serving one request at a time.
    pub workers: usize,
    /// Most concurrent client streams; more get 429.
    pub max_streams: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
            model_name: None,
            max_body_bytes: 64 << 20,
            workers: 4,
            max_streams: 64,
        }
    }
}

/// A running server; see the module documentation.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

struct App {
    engine: Arc<Engine>,
    name: String,
    options: ServerOptions,
    metrics: Metrics,
    streams: Mutex<HashMap<String, Arc<Mutex<StreamDetector>>>>,
}

impl Server {
    /// Binds `options.addr` and starts the worker threads.
    pub fn start(engine: Arc<Engine>, options: ServerOptions) -> Result<Self> {
        if !options.addr.ip().is_loopback() {
            tracing::warn!("serving on {}, reachable from other machines", options.addr);
        }
        let http = tiny_http::Server::http(options.addr)
            .map_err(|e| DeployError::io(options.addr.to_string(), std::io::Error::other(e.to_string())))?;
        let addr = http
            .server_addr()
            .to_ip()
            .ok_or_else(|| DeployError::Runtime("the server is not listening on an IP address".into()))?;
        let http = Arc::new(http);
        let name = options.model_name.clone().unwrap_or_else(|| engine.spec().model.clone());
        let app = Arc::new(App {
            engine,
            name,
            options: options.clone(),
            metrics: Metrics::default(),
            streams: Mutex::new(HashMap::new()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..options.workers.max(1))
            .map(|i| {
                let (http, app, stop) = (http.clone(), app.clone(), stop.clone());
                std::thread::Builder::new()
                    .name(format!("prism-serve-{i}"))
                    .spawn(move || worker(&http, &app, &stop))
                    .map_err(|e| DeployError::io("worker thread", e))
            })
            .collect::<Result<Vec<_>>>()?;
        tracing::info!("serving {} on http://{addr}", app.name);
        Ok(Self { addr, stop, workers })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The flag that stops the server: set it (from a signal handler, say) and the workers finish
    /// the request they are serving and exit.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Waits until the stop flag is set and every worker has finished.
    pub fn wait(self) {
        for w in self.workers {
            let _ = w.join();
        }
    }

    /// Stops the server gracefully: requests in progress are answered, then the workers exit.
    pub fn shutdown(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wait();
    }
}

fn worker(http: &tiny_http::Server, app: &App, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match http.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(request)) => handle(app, request),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// A response before it is written.
struct Reply {
    status: u16,
    body: String,
    content_type: &'static str,
}

impl Reply {
    fn json(status: u16, value: &impl serde::Serialize) -> Self {
        Self {
            status,
            body: serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")),
            content_type: "application/json",
        }
    }

    fn empty(status: u16) -> Self {
        Self {
            status,
            body: String::new(),
            content_type: "text/plain",
        }
    }
}

/// A client-facing error: status and message.
struct HttpError {
    status: u16,
    message: String,
}

fn err(status: u16, message: impl Into<String>) -> HttpError {
    HttpError {
        status,
        message: message.into(),
    }
}

impl From<DeployError> for HttpError {
    fn from(e: DeployError) -> Self {
        let status = match e {
            DeployError::Input(_) | DeployError::Events(_) | DeployError::Task(_) => 400,
            _ => 500,
        };
        err(status, e.to_string())
    }
}

fn handle(app: &App, mut request: tiny_http::Request) {
    let started = Instant::now();
    app.metrics.begin();
    let (route, result) = catch_unwind(AssertUnwindSafe(|| dispatch(app, &mut request)))
        .unwrap_or_else(|_| ("panic", Err(err(500, "internal error"))));
    let reply = result.unwrap_or_else(|e| Reply::json(e.status, &json!({ "error": e.message })));
    let status = reply.status;
    let mut response = tiny_http::Response::from_string(reply.body).with_status_code(status);
    if let Ok(h) = tiny_http::Header::from_bytes(&b"Content-Type"[..], reply.content_type.as_bytes()) {
        response.add_header(h);
    }
    if let Err(e) = request.respond(response) {
        tracing::debug!("could not send the response: {e}");
    }
    app.metrics.end(route, status, started.elapsed());
}

type Handled = (&'static str, std::result::Result<Reply, HttpError>);

fn dispatch(app: &App, request: &mut tiny_http::Request) -> Handled {
    use tiny_http::Method::{Delete, Get, Post};
    let (url, query) = match request.url().split_once('?') {
        Some((u, q)) => (u.to_string(), q.to_string()),
        None => (request.url().to_string(), String::new()),
    };
    let parts: Vec<&str> = url.split('/').filter(|s| !s.is_empty()).collect();
    let method = request.method().clone();
    // Drop an optional `versions/1` after the model name.
    let parts: Vec<&str> = match parts.as_slice() {
        ["v2", "models", name, "versions", v, rest @ ..] => {
            if *v != VERSION {
                return ("model", Err(err(404, format!("model `{name}` has no version `{v}` (only {VERSION})"))));
            }
            ["v2", "models", name].into_iter().chain(rest.iter().copied()).collect()
        }
        _ => parts,
    };
    match (parts.as_slice(), &method) {
        (["v2", "health", "live"], Get) | (["v2", "health", "ready"], Get) => ("health", Ok(Reply::empty(200))),
        (["v2"], Get) => (
            "server",
            Ok(Reply::json(200, &json!({ "name": "prism", "version": env!("CARGO_PKG_VERSION"), "extensions": [] }))),
        ),
        (["metrics"], Get) => (
            "metrics",
            Ok(Reply {
                status: 200,
                body: app.metrics.render(),
                content_type: "text/plain; version=0.0.4",
            }),
        ),
        (["v2", "models", name, rest @ ..], _) => {
            if *name != app.name {
                return ("model", Err(err(404, format!("unknown model `{name}` (this server has `{}`)", app.name))));
            }
            match (rest, &method) {
                ([], Get) => ("model", Ok(model_metadata(app))),
                (["ready"], Get) => ("ready", Ok(Reply::empty(200))),
                (["infer"], Post) => ("infer", infer(app, request)),
                (["streams", id, "events"], Post) => ("stream", stream_events(app, id, &query, request)),
                (["streams", id], Delete) => ("stream", Ok(drop_stream(app, id))),
                ([], _) | (["ready"], _) | (["infer"], _) | (["streams", _, "events"], _) | (["streams", _], _) => {
                    ("model", Err(err(405, format!("{method} is not allowed on {url}"))))
                }
                _ => ("unknown", Err(err(404, format!("no route {url}")))),
            }
        }
        _ => ("unknown", Err(err(404, format!("no route {method} {url}")))),
    }
}

fn model_metadata(app: &App) -> Reply {
    let e = &app.engine;
    let inputs: Vec<TensorMetadata<'_>> = e.inputs().iter().map(Into::into).collect();
    let outputs: Vec<TensorMetadata<'_>> = e.outputs().iter().map(Into::into).collect();
    let platform = if e.backend().is_ort() { "onnxruntime_onnx" } else { "tract_onnx" };
    Reply::json(
        200,
        &json!({
            "name": app.name,
            "versions": [VERSION],
            "platform": platform,
            "inputs": inputs,
            "outputs": outputs,
            "parameters": { "backend": e.backend().name(), "task": e.spec().task, "classes": e.spec().classes },
        }),
    )
}

/// The body, at most `max_body_bytes` (413 beyond).
fn read_body(app: &App, request: &mut tiny_http::Request) -> std::result::Result<Vec<u8>, HttpError> {
    let max = app.options.max_body_bytes;
    let too_big = || err(413, format!("request body is larger than the {max}-byte limit"));
    if request.body_length().is_some_and(|n| n > max) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    request
        .as_reader()
        .take(max as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| err(400, format!("cannot read the request body: {e}")))?;
    if body.len() > max {
        return Err(too_big());
    }
    Ok(body)
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> std::result::Result<T, HttpError> {
    serde_json::from_slice(body).map_err(|e| err(400, format!("malformed request JSON: {e}")))
}

fn infer(app: &App, request: &mut tiny_http::Request) -> std::result::Result<Reply, HttpError> {
    let body = read_body(app, request)?;
    let req: InferRequest = parse(&body)?;
    let mut tensors = Vec::with_capacity(req.inputs.len());
    for input in &req.inputs {
        if input.datatype != "FP32" {
            return Err(err(
                400,
                format!("input `{}`: datatype {} is not supported; this model takes FP32", input.name, input.datatype),
            ));
        }
        let shape = input
            .shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<std::result::Result<Vec<usize>, _>>()
            .map_err(|_| err(400, format!("input `{}`: shape {:?} has a negative dimension", input.name, input.shape)))?;
        let mut data = Vec::new();
        flatten_f32(&input.data, &mut data, &input.name).map_err(|m| err(400, m))?;
        tensors.push((input.name.as_str(), shape, data));
    }
    let views: Vec<TensorView<'_>> = tensors
        .iter()
        .map(|(name, shape, data)| TensorView::new(name, shape, data))
        .collect();
    let outputs = app.engine.run(&views)?;
    let wanted: Option<Vec<&str>> = req
        .outputs
        .as_ref()
        .map(|o| o.iter().map(|r| r.name.as_str()).collect());
    if let Some(w) = &wanted {
        if let Some(missing) = w.iter().find(|n| !outputs.iter().any(|o| o.name == **n)) {
            return Err(err(400, format!("the model has no output `{missing}`")));
        }
    }
    let out = outputs
        .iter()
        .filter(|o| wanted.as_ref().is_none_or(|w| w.contains(&o.name.as_str())))
        .map(|o| OutputTensor {
            name: &o.name,
            shape: &o.shape,
            datatype: "FP32",
            data: &o.data,
        })
        .collect();
    Ok(Reply::json(
        200,
        &InferResponse {
            model_name: &app.name,
            model_version: VERSION,
            id: req.id.clone(),
            outputs: out,
        },
    ))
}

fn valid_stream_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn stream_events(app: &App, id: &str, query: &str, request: &mut tiny_http::Request) -> std::result::Result<Reply, HttpError> {
    if app.engine.spec().task != Task::EventDetection {
        return Err(err(400, format!("model `{}` is not an event-detection model; use /infer", app.name)));
    }
    if !valid_stream_id(id) {
        return Err(err(400, "stream ids are 1-128 characters of A-Z a-z 0-9 - _ ."));
    }
    let binary = request.headers().iter().any(|h| {
        h.field.equiv("Content-Type") && h.value.as_str().trim().starts_with("application/octet-stream")
    });
    let body = read_body(app, request)?;
    let req: EventsRequest = if binary {
        let finish = query.split('&').any(|kv| kv == "finish=true" || kv == "finish=1");
        protocol::decode_binary_events(&body, finish).map_err(|m| err(400, m))?
    } else {
        parse(&body)?
    };
    let detector = {
        let mut streams = app.streams.lock().unwrap_or_else(|e| e.into_inner());
        match streams.get(id) {
            Some(d) => d.clone(),
            None => {
                if streams.len() >= app.options.max_streams {
                    return Err(err(429, format!("too many open streams (limit {})", app.options.max_streams)));
                }
                let d = Arc::new(Mutex::new(StreamDetector::new(app.engine.clone())?));
                streams.insert(id.to_string(), d.clone());
                d
            }
        }
    };
    let classes = &app.engine.spec().classes;
    let mut windows = Vec::new();
    let mut collect = |w: &crate::stream::WindowDetections<'_>| {
        windows.push(WindowJson {
            index: w.index,
            start_us: w.start_us,
            end_us: w.end_us,
            num_events: w.num_events,
            detections: w.detections.iter().map(|d| DetectionJson::new(d, classes)).collect(),
        });
    };
    let result = {
        let mut d = detector.lock().unwrap_or_else(|e| e.into_inner());
        let pushed = d.push_slices(&req.t, &req.x, &req.y, &req.p, &mut collect);
        match pushed {
            Ok(_) if req.finish => d.finish(&mut collect).map(|_| ()),
            other => other.map(|_| ()),
        }
    };
    if result.is_err() || req.finish {
        app.streams.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
    if let Err(e) = result {
        let mut e = HttpError::from(e);
        e.message.push_str(" (the stream was dropped; start it again)");
        return Err(e);
    }
    let n: usize = windows.iter().map(|w| w.detections.len()).sum();
    app.metrics.windows.fetch_add(windows.len() as u64, Ordering::Relaxed);
    app.metrics.detections.fetch_add(n as u64, Ordering::Relaxed);
    Ok(Reply::json(200, &EventsResponse { windows }))
}

fn drop_stream(app: &App, id: &str) -> Reply {
    let removed = app.streams.lock().unwrap_or_else(|e| e.into_inner()).remove(id).is_some();
    if removed {
        Reply::empty(200)
    } else {
        Reply::json(404, &json!({ "error": format!("no stream `{id}`") }))
    }
}
