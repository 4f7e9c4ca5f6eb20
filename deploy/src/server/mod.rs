//! An HTTP inference server speaking the KServe v2 / Triton JSON protocol, plus a streaming
//! endpoint for event cameras and Prometheus metrics.
//!
//! Routes (model name: [`ServerOptions::model_name`], else the spec's model name; version `1`):
//! - `GET /v2/health/live`, `GET /v2/health/ready`, `GET /v2`
//! - `GET /v2/models/{name}[/versions/1]`, `GET /v2/models/{name}[/versions/1]/ready`
//! - `POST /v2/models/{name}[/versions/1]/infer`: KServe v2 tensors (`FP32` only), as JSON or
//!   with Triton's binary tensor data extension; with the `sequence_id`, `sequence_start` and
//!   `sequence_end` parameters a recurrent model's state is carried between a client's requests
//!   (modules `infer` and `sequences`)
//! - `POST /v2/models/{name}/streams/{id}/events` with `{"t": [...], "x": [...], "y": [...],
//!   "p": [...], "finish": false}`: pushes one chunk of client stream `id`'s events and returns the
//!   windows it completed with their detections (each stream has its own [`StreamDetector`] and
//!   recurrent state); `finish: true` ends the stream. The same events may come as
//!   `Content-Type: application/octet-stream` ([`protocol::decode_binary_events`], 13 bytes an
//!   event instead of ~30 in JSON), with `?finish=true` in the URL to end the stream.
//!   `DELETE /v2/models/{name}/streams/{id}` drops a stream.
//! - `GET /metrics`: Prometheus text.
//!
//! Bounded work: every infer and stream request has a deadline ([`ServerOptions::deadline`],
//! counted from its arrival, queueing included; 408 when it passes) and a stream request may complete at most
//! [`ServerOptions::max_windows_per_request`] windows, counted before anything runs (413
//! otherwise; the stream is left as it was). A pause in a stream longer than
//! [`ServerOptions::max_gap_us`] ends its sequence and resets its state instead of running the
//! empty windows in between ([`crate::stream`]); a stream holds at most
//! [`ServerOptions::max_stream_events`] buffered events. Health, metadata and metrics never wait
//! for a worker. On shutdown, requests waiting for a worker are answered 503 and running ones stop
//! after their current window, so the server exits within about a second under any load.
//!
//! Errors are `{"error": "..."}` with a 4xx status for anything the client controls (malformed
//! JSON, wrong shapes or datatypes, oversized bodies → 413, unknown models → 404, too many
//! streams → 429, malformed HTTP → 400 / 408 / 431 / 505). A handler panic, which should not
//! happen, is caught and answered with 500.
//!
//! The HTTP layer (module `http`) is hyper on a small tokio runtime; it bounds what a client can
//! make the server allocate or wait for. The application is blocking, since inference is
//! CPU-bound (tract, ORT): each request runs on tokio's blocking pool, and at most
//! [`ServerOptions::workers`] requests are handled at once, the others wait their turn (the
//! queue depth metric counts both). The server binds loopback by default
//! ([`ServerOptions::default`]); binding elsewhere is the caller's explicit choice and is logged
//! as a warning.

pub mod grpc;
mod http;
mod infer;
mod metrics;
pub mod protocol;
mod sequences;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prism_core::spec::Task;
use serde_json::json;

pub use metrics::Metrics;
use protocol::{DetectionJson, EventsRequest, EventsResponse, GapJson, TensorMetadata, WindowJson};

use crate::engine::Engine;
use crate::error::{DeployError, Result};
use crate::stream::{Gap, StreamDetector, StreamOptions, StreamSink, WindowDetections};

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
    /// Requests handled at once (each connection has its own thread; past this many, requests
    /// wait for a turn).
    pub workers: usize,
    /// Most concurrent client streams; more get 429.
    pub max_streams: usize,
    /// Time from a request's arrival to its answer: past it, a request still waiting for a worker
    /// gets 408, and a running stream request stops after its current window with 408 (the stream
    /// is dropped).
    pub deadline: Duration,
    /// Most windows one stream request may complete; more get 413 before anything runs.
    pub max_windows_per_request: u64,
    /// A pause longer than this (µs) ends a stream's sequence and resets its state.
    pub max_gap_us: i64,
    /// Most events a stream may hold between requests (events of windows not yet complete);
    /// a request that would exceed it gets 413.
    pub max_stream_events: usize,
    /// Where the KServe v2 gRPC endpoint listens; `None`: no gRPC. Port 0 picks a free one
    /// ([`Server::grpc_addr`] tells which).
    pub grpc_addr: Option<SocketAddr>,
    /// A sequence (`sequence_id` on the infer call) with no request for this long is freed.
    /// Also the most sequences open at once is [`ServerOptions::max_streams`].
    pub sequence_idle: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
            model_name: None,
            max_body_bytes: 64 << 20,
            workers: 4,
            max_streams: 64,
            deadline: Duration::from_secs(30),
            max_windows_per_request: 100,
            max_gap_us: StreamOptions::default().max_gap_us,
            max_stream_events: 4 << 20,
            sequence_idle: Duration::from_secs(60),
            grpc_addr: None,
        }
    }
}

impl ServerOptions {
    /// Refuses settings that would make the server unusable or unbounded.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(DeployError::Input(format!("server options: {what}")));
        if self.workers == 0 {
            return bad("at least one worker is needed");
        }
        if self.max_streams == 0 || self.max_windows_per_request == 0 || self.max_stream_events == 0
        {
            return bad("the stream limits must be at least 1");
        }
        if self.max_body_bytes == 0 {
            return bad("the body limit must be at least 1 byte");
        }
        if self.deadline.is_zero() {
            return bad("the deadline must be positive");
        }
        if self.sequence_idle.is_zero() {
            return bad("the sequence idle timeout must be positive");
        }
        if self.max_gap_us <= 0 {
            return bad("the longest gap must be positive");
        }
        Ok(())
    }
}

/// A running server; see the module documentation.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    grpc_addr: Option<SocketAddr>,
    stop: Arc<AtomicBool>,
    acceptor: JoinHandle<()>,
}

struct App {
    engine: Arc<Engine>,
    name: String,
    metrics: Metrics,
    streams: Mutex<HashMap<String, Arc<Mutex<StreamDetector>>>>,
    sequences: sequences::Sequences,
    options: ServerOptions,
    /// Set when the server stops.
    stop: Arc<AtomicBool>,
    /// Free request slots (`ServerOptions::workers`).
    slots: Mutex<usize>,
    slot_freed: Condvar,
}

/// How often a request waiting for a worker looks at its deadline and the stop flag.
const SLOT_POLL: Duration = Duration::from_millis(100);

impl App {
    /// Waits for a free request slot, until the request's deadline or the server's stop; the
    /// slot is given back when the guard drops.
    fn slot(&self, arrived: Instant) -> std::result::Result<SlotGuard<'_>, HttpError> {
        let mut free = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            if self.stop.load(Ordering::SeqCst) {
                return Err(err(503, "the server is shutting down"));
            }
            if arrived.elapsed() >= self.options.deadline {
                return Err(err(
                    408,
                    format!(
                        "no worker was free within the request's {} s deadline; try again",
                        self.options.deadline.as_secs_f64()
                    ),
                ));
            }
            free = self
                .slot_freed
                .wait_timeout(free, SLOT_POLL)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *free -= 1;
        self.metrics.queue.observe(arrived.elapsed());
        Ok(SlotGuard(self))
    }
}

struct SlotGuard<'a>(&'a App);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.slots.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.slot_freed.notify_one();
    }
}

impl Server {
    /// Binds `options.addr` and starts accepting connections.
    pub fn start(engine: Arc<Engine>, options: ServerOptions) -> Result<Self> {
        options.validate()?;
        // A model whose spec cannot be run fails here, not as a client error on every request.
        match engine.spec().task {
            Task::EventDetection => {
                let stream = StreamOptions {
                    max_gap_us: options.max_gap_us,
                };
                StreamDetector::with_options(engine.clone(), stream)?;
            }
            Task::FrameDetection => {
                crate::frame::FrameDetector::new(engine.clone())?;
            }
            // A next-vector model is served through the plain tensor endpoint: one input, one
            // output, as its spec says.
            Task::NextVector => {
                let spec = engine.spec();
                let (ins, outs) = (engine.inputs(), engine.outputs());
                if ins.len() != 1
                    || outs.len() != 1
                    || ins[0].name != spec.input.name
                    || outs[0].name != spec.output.name
                {
                    return Err(DeployError::BadSpec(format!(
                        "a next-vector model has one input `{}` and one output `{}`; the graph has {} inputs and {} outputs",
                        spec.input.name,
                        spec.output.name,
                        ins.len(),
                        outs.len()
                    )));
                }
            }
        }
        if !options.addr.ip().is_loopback() {
            tracing::warn!("serving on {}, reachable from other machines", options.addr);
        }
        let bind = |addr: SocketAddr| {
            let listener = std::net::TcpListener::bind(addr)
                .map_err(|e| DeployError::io(addr.to_string(), e))?;
            let local = listener
                .local_addr()
                .map_err(|e| DeployError::io(addr.to_string(), e))?;
            Ok::<_, DeployError>((listener, local))
        };
        let (listener, addr) = bind(options.addr)?;
        let grpc = options.grpc_addr.map(bind).transpose()?;
        let grpc_addr = grpc.as_ref().map(|(_, a)| *a);
        if let Some(a) = options.grpc_addr.filter(|a| !a.ip().is_loopback()) {
            tracing::warn!("serving gRPC on {a}, reachable from other machines");
        }
        let name = options
            .model_name
            .clone()
            .unwrap_or_else(|| engine.spec().model.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let app = Arc::new(App {
            engine,
            name,
            metrics: Metrics::default(),
            streams: Mutex::new(HashMap::new()),
            sequences: sequences::Sequences::new(options.sequence_idle, options.max_streams),
            slots: Mutex::new(options.workers),
            slot_freed: Condvar::new(),
            stop: stop.clone(),
            options: options.clone(),
        });
        let limits = http::Limits::new(options.max_body_bytes);
        let served = app.clone();
        let handler: Arc<http::Handler> = Arc::new(move |request| handle(&served, request));
        let (flag, grpc_app) = (stop.clone(), app.clone());
        let acceptor = std::thread::Builder::new()
            .name("prism-serve".into())
            .spawn(move || {
                let runtime = match http::runtime(&limits) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!("cannot start the server's runtime: {e}");
                        return;
                    }
                };
                let grace = limits.stop_grace;
                runtime.block_on(async move {
                    let http = http::accept_loop(listener, limits, flag.clone(), handler);
                    match grpc {
                        Some((listener, _)) => {
                            tokio::join!(http, grpc::serve(listener, grpc_app, flag, grace));
                        }
                        None => http.await,
                    }
                });
                // A handler still running has seen the stop flag and ends after its current
                // window.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(|e| DeployError::io("server thread", e))?;
        tracing::info!("serving {} on http://{addr}", app.name);
        if let Some(a) = grpc_addr {
            tracing::info!("serving {} over gRPC on {a}", app.name);
        }
        Ok(Self {
            addr,
            grpc_addr,
            stop,
            acceptor,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the gRPC endpoint listens, if [`ServerOptions::grpc_addr`] asked for one.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_addr
    }

    /// The flag that stops the server: set it (from a signal handler, say) and the server stops
    /// accepting, answers the requests in progress and closes its connections.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Waits until the stop flag is set and every connection has finished.
    pub fn wait(self) {
        let _ = self.acceptor.join();
    }

    /// Stops the server gracefully: requests in progress are answered, then connections close.
    pub fn shutdown(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wait();
    }
}

/// A response before it is written.
struct Reply {
    status: u16,
    body: Vec<u8>,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json(status: u16, value: &impl serde::Serialize) -> Self {
        Self {
            status,
            body: serde_json::to_vec(value)
                .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}").into_bytes()),
            content_type: "application/json",
            headers: Vec::new(),
        }
    }

    fn empty(status: u16) -> Self {
        Self {
            status,
            body: Vec::new(),
            content_type: "text/plain",
            headers: Vec::new(),
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

fn handle(app: &App, request: std::result::Result<http::Request, http::Refused>) -> http::Response {
    let started = Instant::now();
    app.metrics.begin();
    let (route, result) = match request {
        Ok(request) => catch_unwind(AssertUnwindSafe(|| dispatch(app, &request, started)))
            .unwrap_or_else(|_| ("panic", Err(err(500, "internal error")))),
        Err(refused) => ("http", Err(err(refused.status, refused.message))),
    };
    let reply = result.unwrap_or_else(|e| Reply::json(e.status, &json!({ "error": e.message })));
    app.metrics.end(route, reply.status, started.elapsed());
    http::Response {
        status: reply.status,
        content_type: reply.content_type,
        headers: reply.headers,
        body: reply.body,
    }
}

type Handled = (&'static str, std::result::Result<Reply, HttpError>);

/// Routes a request. Only the routes that run the model wait for a worker slot.
fn dispatch(app: &App, request: &http::Request, arrived: Instant) -> Handled {
    let (url, query) = match request.target.split_once('?') {
        Some((u, q)) => (u, q),
        None => (request.target.as_str(), ""),
    };
    let parts: Vec<&str> = url.split('/').filter(|s| !s.is_empty()).collect();
    let method = request.method.as_str();
    // Drop an optional `versions/1` after the model name.
    let parts: Vec<&str> = match parts.as_slice() {
        ["v2", "models", name, "versions", v, rest @ ..] => {
            if *v != VERSION {
                return (
                    "model",
                    Err(err(
                        404,
                        format!("model `{name}` has no version `{v}` (only {VERSION})"),
                    )),
                );
            }
            ["v2", "models", name]
                .into_iter()
                .chain(rest.iter().copied())
                .collect()
        }
        _ => parts,
    };
    match (parts.as_slice(), method) {
        (["v2", "health", "live"], "GET") | (["v2", "health", "ready"], "GET") => {
            ("health", Ok(Reply::empty(200)))
        }
        (["v2"], "GET") => (
            "server",
            Ok(Reply::json(
                200,
                &json!({ "name": "prism", "version": env!("CARGO_PKG_VERSION"), "extensions": EXTENSIONS }),
            )),
        ),
        (["metrics"], "GET") => (
            "metrics",
            Ok(Reply {
                status: 200,
                body: format!(
                    "{}# HELP prism_sequences_open Sequences whose recurrent state the server holds.\n# TYPE prism_sequences_open gauge\nprism_sequences_open {}\n",
                    app.metrics.render(&app.name),
                    app.sequences.len()
                )
                .into_bytes(),
                content_type: "text/plain; version=0.0.4",
                headers: Vec::new(),
            }),
        ),
        (["v2", "models", name, rest @ ..], _) => {
            if *name != app.name {
                return (
                    "model",
                    Err(err(
                        404,
                        format!("unknown model `{name}` (this server has `{}`)", app.name),
                    )),
                );
            }
            match (rest, method) {
                ([], "GET") => ("model", Ok(model_metadata(app))),
                (["ready"], "GET") => ("ready", Ok(Reply::empty(200))),
                (["infer"], "POST") => (
                    "infer",
                    app.slot(arrived)
                        .and_then(|_slot| infer::infer(app, request)),
                ),
                (["streams", id, "events"], "POST") => (
                    "stream",
                    app.slot(arrived)
                        .and_then(|_slot| stream_events(app, id, query, request, arrived)),
                ),
                (["streams", id], "DELETE") => ("stream", Ok(drop_stream(app, id))),
                ([], _)
                | (["ready"], _)
                | (["infer"], _)
                | (["streams", _, "events"], _)
                | (["streams", _], _) => (
                    "model",
                    Err(err(405, format!("{method} is not allowed on {url}"))),
                ),
                _ => ("unknown", Err(err(404, format!("no route {url}")))),
            }
        }
        _ => ("unknown", Err(err(404, format!("no route {method} {url}")))),
    }
}

/// The platform name the protocol's model metadata gives.
fn platform(engine: &Engine) -> &'static str {
    if engine.backend().is_ort() {
        "onnxruntime_onnx"
    } else {
        "tract_onnx"
    }
}

/// The protocol extensions both endpoints support.
const EXTENSIONS: [&str; 3] = ["binary_tensor_data", "parameters", "sequence"];

/// Checks a model name and version a request gives (404 otherwise).
fn check_model(app: &App, name: &str, version: &str) -> std::result::Result<(), HttpError> {
    if name != app.name {
        return Err(err(
            404,
            format!("unknown model `{name}` (this server has `{}`)", app.name),
        ));
    }
    if !version.is_empty() && version != VERSION {
        return Err(err(
            404,
            format!("model `{name}` has no version `{version}` (only {VERSION})"),
        ));
    }
    Ok(())
}

fn model_metadata(app: &App) -> Reply {
    let e = &app.engine;
    let inputs: Vec<TensorMetadata<'_>> = e.inputs().iter().map(Into::into).collect();
    let outputs: Vec<TensorMetadata<'_>> = e.outputs().iter().map(Into::into).collect();
    Reply::json(
        200,
        &json!({
            "name": app.name,
            "versions": [VERSION],
            "platform": platform(e),
            "inputs": inputs,
            "outputs": outputs,
            "parameters": { "backend": e.backend().name(), "task": e.spec().task, "classes": e.spec().classes, "sequence": e.spec().sequence },
        }),
    )
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> std::result::Result<T, HttpError> {
    serde_json::from_slice(body).map_err(|e| err(400, format!("malformed request JSON: {e}")))
}

fn valid_stream_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Collects a stream request's response, and stops the stream at the deadline or on shutdown.
struct StreamResponder<'a> {
    app: &'a App,
    deadline: Instant,
    response: EventsResponse,
    /// Why the stream was stopped, if it was.
    stopped: Option<HttpError>,
}

impl StreamSink for StreamResponder<'_> {
    type Error = DeployError;

    fn window(&mut self, w: &WindowDetections<'_>) -> Result<bool> {
        if w.num_events == 0 && w.detections.is_empty() {
            self.response.empty_windows += 1;
        } else {
            let classes = &self.app.engine.spec().classes;
            self.response.windows.push(WindowJson {
                index: w.index,
                start_us: w.start_us,
                end_us: w.end_us,
                num_events: w.num_events,
                detections: w
                    .detections
                    .iter()
                    .map(|d| DetectionJson::new(d, classes))
                    .collect(),
            });
        }
        Ok(self.go_on())
    }

    fn gap(&mut self, gap: &Gap) -> Result<bool> {
        self.response.gaps.push(GapJson {
            last_us: gap.last_us,
            next_us: gap.next_us,
        });
        Ok(self.go_on())
    }
}

impl StreamResponder<'_> {
    fn go_on(&mut self) -> bool {
        if self.app.stop.load(Ordering::SeqCst) {
            self.stopped = Some(err(503, "the server is shutting down"));
        } else if Instant::now() >= self.deadline {
            let windows = self.response.windows.len() + self.response.empty_windows;
            self.stopped = Some(err(
                408,
                format!(
                    "the request's {} s deadline passed after {windows} windows",
                    self.app.options.deadline.as_secs_f64()
                ),
            ));
        }
        self.stopped.is_none()
    }
}

fn stream_events(
    app: &App,
    id: &str,
    query: &str,
    request: &http::Request,
    arrived: Instant,
) -> std::result::Result<Reply, HttpError> {
    if app.engine.spec().task != Task::EventDetection {
        return Err(err(
            400,
            format!(
                "model `{}` is not an event-detection model; use /infer",
                app.name
            ),
        ));
    }
    if !valid_stream_id(id) {
        return Err(err(
            400,
            "stream ids are 1-128 characters of A-Z a-z 0-9 - _ .",
        ));
    }
    let binary = request
        .header("Content-Type")
        .is_some_and(|v| v.trim().starts_with("application/octet-stream"));
    let req: EventsRequest = if binary {
        let finish = query
            .split('&')
            .any(|kv| kv == "finish=true" || kv == "finish=1");
        protocol::decode_binary_events(&request.body, finish)
            .map_err(|e| err(400, e.to_string()))?
    } else {
        parse(&request.body)?
    };
    let (detector, created) = {
        let mut streams = app.streams.lock().unwrap_or_else(|e| e.into_inner());
        match streams.get(id) {
            Some(d) => (d.clone(), false),
            None => {
                if streams.len() >= app.options.max_streams {
                    return Err(err(
                        429,
                        format!("too many open streams (limit {})", app.options.max_streams),
                    ));
                }
                let options = StreamOptions {
                    max_gap_us: app.options.max_gap_us,
                };
                let d = Arc::new(Mutex::new(StreamDetector::with_options(
                    app.engine.clone(),
                    options,
                )?));
                streams.insert(id.to_string(), d.clone());
                (d, true)
            }
        }
    };
    let forget = || {
        app.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    };
    let mut d = detector.lock().unwrap_or_else(|e| e.into_inner());
    // Refusals that leave the stream as it was: nothing of this request is used.
    let refused = admit(app, &d, &req);
    if let Err(mut e) = refused {
        drop(d);
        if created {
            forget();
        } else {
            e.message
                .push_str("; nothing of this request was used, the stream goes on");
        }
        return Err(e);
    }
    let mut sink = StreamResponder {
        app,
        deadline: arrived + app.options.deadline,
        response: EventsResponse {
            windows: Vec::new(),
            empty_windows: 0,
            gaps: Vec::new(),
        },
        stopped: None,
    };
    let computing = Instant::now();
    let result = d
        .push_slices(&req.t, &req.x, &req.y, &req.p, &mut sink)
        .and_then(|pushed| match req.finish && !pushed.stopped {
            true => d.finish(&mut sink),
            false => Ok(pushed),
        });
    drop(d);
    app.metrics.compute.observe(computing.elapsed());
    if let Some(mut stopped) = sink.stopped {
        forget();
        stopped
            .message
            .push_str("; the stream was dropped, start it again");
        return Err(stopped);
    }
    if result.is_err() || req.finish {
        forget();
    }
    if let Err(e) = result {
        let mut e = HttpError::from(e);
        e.message
            .push_str(" (the stream was dropped; start it again)");
        return Err(e);
    }
    let response = sink.response;
    let n: usize = response.windows.iter().map(|w| w.detections.len()).sum();
    let windows = response.windows.len() + response.empty_windows;
    app.metrics
        .windows
        .fetch_add(windows as u64, Ordering::Relaxed);
    app.metrics
        .detections
        .fetch_add(n as u64, Ordering::Relaxed);
    Ok(Reply::json(200, &response))
}

/// Checks a stream request against the stream and the server's limits before any work.
fn admit(app: &App, d: &StreamDetector, req: &EventsRequest) -> std::result::Result<(), HttpError> {
    let events =
        prism_events::EventSlice::new(&req.t, &req.x, &req.y, &req.p).ok_or_else(|| {
            err(
                400,
                format!(
                    "event arrays differ in length: t {}, x {}, y {}, p {}",
                    req.t.len(),
                    req.x.len(),
                    req.y.len(),
                    req.p.len()
                ),
            )
        })?;
    d.check(events).map_err(|e| err(400, e.to_string()))?;
    let limit = app.options.max_windows_per_request;
    let due = d.windows_due(&req.t, req.finish);
    if due > limit {
        return Err(err(
            413,
            format!("the request would complete {due} windows; at most {limit} per request (send fewer events at a time)"),
        ));
    }
    let held = d.buffered_events().saturating_add(req.t.len());
    if held > app.options.max_stream_events {
        return Err(err(
            413,
            format!(
                "the stream would hold {held} events; at most {} (its windows are not complete yet: send later events)",
                app.options.max_stream_events
            ),
        ));
    }
    Ok(())
}

fn drop_stream(app: &App, id: &str) -> Reply {
    let removed = app
        .streams
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(id)
        .is_some();
    if removed {
        Reply::empty(200)
    } else {
        Reply::json(404, &json!({ "error": format!("no stream `{id}`") }))
    }
}
