//! An HTTP inference server speaking the KServe v2 / Triton JSON protocol, plus a streaming
//! endpoint for event cameras and Prometheus metrics.
//!
//! Routes (model name: [`ServerOptions::model_name`], else the spec's model name, or the file
//! name in a model repository; version `1`):
//! - `GET /v2/health/live`, `GET /v2/health/ready`, `GET /v2`
//! - `GET /v2/models/{name}[/versions/1]`, `GET /v2/models/{name}[/versions/1]/ready`
//! - `POST /v2/models/{name}[/versions/1]/infer`: KServe v2 tensors (`FP32` only), as JSON or
//!   with Triton's binary tensor data extension; with the `sequence_id`, `sequence_start` and
//!   `sequence_end` parameters a recurrent model's state is carried between a client's requests
//!   (modules `infer` and `sequences`)
//! - `POST /v2/models/{name}/streams/{id}/events` with `{"t": [...], "x": [...], "y": [...],
//!   "p": [...], "finish": false}`: pushes one chunk of client stream `id`'s events and returns the
//!   windows it completed with their detections (each stream has its own [`crate::stream::StreamDetector`] and
//!   recurrent state); `finish: true` ends the stream. The same events may come as
//!   `Content-Type: application/octet-stream` ([`protocol::decode_binary_events`], 13 bytes an
//!   event instead of ~30 in JSON), with `?finish=true` in the URL to end the stream.
//!   `DELETE /v2/models/{name}/streams/{id}` drops a stream.
//! - `POST /v2/repository/index`, `POST /v2/repository/models/{name}/load|unload`: the models of
//!   a model repository ([`Server::start_repository`], module [`models`]), listed, loaded and
//!   unloaded while the server runs, as Triton's model repository extension does it.
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

mod batcher;
#[doc(hidden)]
pub mod fuzzing;
pub mod grpc;
mod grpc_incoming;
mod http;
mod infer;
mod metrics;
pub mod models;
pub mod protocol;
mod sequences;
mod streams;

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;

pub use metrics::Metrics;
use models::{Model, Models};
use protocol::TensorMetadata;

use crate::engine::Engine;
use crate::error::{DeployError, Result};
use crate::stream::StreamOptions;

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
    /// Most connections open at once on each endpoint (HTTP: more get 503 and are closed; gRPC:
    /// more are closed), and most gRPC calls in progress at once.
    pub max_connections: usize,
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
    /// Dynamic batching: requests for a stateless model with a dynamic batch axis run together,
    /// up to this many rows (1: off).
    pub max_batch: usize,
    /// How long the first request of a batch waits for more.
    pub max_queue_delay: Duration,
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
            max_connections: 512,
            deadline: Duration::from_secs(30),
            max_windows_per_request: 100,
            max_gap_us: StreamOptions::default().max_gap_us,
            max_stream_events: 4 << 20,
            sequence_idle: Duration::from_secs(60),
            grpc_addr: None,
            max_batch: 1,
            max_queue_delay: Duration::from_micros(500),
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
        if self.max_connections == 0 {
            return bad("at least one connection must be allowed");
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
        if self.max_batch == 0 {
            return bad("the largest batch must be at least 1");
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
    models: Models,
    metrics: Metrics,
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
    fn slot(
        &self,
        model: &Model,
        arrived: Instant,
    ) -> std::result::Result<SlotGuard<'_>, HttpError> {
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
        model.queue.observe(arrived.elapsed());
        Ok(SlotGuard(self))
    }
}

struct SlotGuard<'a>(&'a App);

impl App {
    /// A worker slot for a request that runs `model`: none for a batched model, whose batcher
    /// thread runs the requests (a slot per waiting request would cap the batch at the worker
    /// count).
    fn model_slot(
        &self,
        model: &Model,
        arrived: Instant,
    ) -> std::result::Result<Option<SlotGuard<'_>>, HttpError> {
        match model.batcher {
            Some(_) => Ok(None),
            None => self.slot(model, arrived).map(Some),
        }
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.slots.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.slot_freed.notify_one();
    }
}

impl Server {
    /// Serves `engine`, named [`ServerOptions::model_name`] (else the spec's model name): binds
    /// `options.addr` and starts accepting connections.
    pub fn start(engine: Arc<Engine>, options: ServerOptions) -> Result<Self> {
        options.validate()?;
        let name = options
            .model_name
            .clone()
            .unwrap_or_else(|| engine.spec().model.clone());
        let model = Model::new(name, engine, &options)?;
        Self::serve(Models::single(model), options)
    }

    /// Serves every `NAME.onnx` of the model repository `dir` as model `NAME`, each run with
    /// `engine`; clients can list, load and unload them while the server runs (see
    /// [`models`]). Any model that fails to load stops the start.
    pub fn start_repository(
        dir: &std::path::Path,
        engine: crate::engine::EngineOptions,
        options: ServerOptions,
    ) -> Result<Self> {
        options.validate()?;
        let models = Models::repository(dir, engine, &options)?;
        Self::serve(models, options)
    }

    fn serve(models: Models, options: ServerOptions) -> Result<Self> {
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
        let stop = Arc::new(AtomicBool::new(false));
        let app = Arc::new(App {
            models,
            metrics: Metrics::default(),
            slots: Mutex::new(options.workers),
            slot_freed: Condvar::new(),
            stop: stop.clone(),
            options: options.clone(),
        });
        let limits = http::Limits {
            max_connections: options.max_connections,
            ..http::Limits::new(options.max_body_bytes)
        };
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
        let names: Vec<String> = app.models.all().iter().map(|m| m.name.clone()).collect();
        tracing::info!("serving {} on http://{addr}", names.join(", "));
        if let Some(a) = grpc_addr {
            tracing::info!("serving gRPC on {a}");
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
                body: app.metrics.render(&app.models.all()).into_bytes(),
                content_type: "text/plain; version=0.0.4",
                headers: Vec::new(),
            }),
        ),
        (["v2", "repository", "index"], "POST") => (
            "repository",
            app.models.index().map(|index| Reply::json(200, &index)),
        ),
        (["v2", "repository", "models", name, action @ ("load" | "unload")], "POST") => (
            "repository",
            match *action {
                "load" => app.models.load(name, &app.options),
                _ => app.models.unload(name),
            }
            .map(|()| Reply::empty(200)),
        ),
        (["v2", "models", name, rest @ ..], _) => {
            let model = match app.models.find(name) {
                Ok(m) => m,
                Err(e) => return ("model", Err(e)),
            };
            let model = model.as_ref();
            match (rest, method) {
                ([], "GET") => ("model", Ok(model_metadata(model))),
                (["ready"], "GET") => ("ready", Ok(Reply::empty(200))),
                (["infer"], "POST") => (
                    "infer",
                    app.model_slot(model, arrived).and_then(|_slot| {
                        infer::infer(model, request, arrived + app.options.deadline)
                    }),
                ),
                (["streams", id, "events"], "POST") => (
                    "stream",
                    app.slot(model, arrived).and_then(|_slot| {
                        streams::stream_events(app, model, id, query, request, arrived)
                    }),
                ),
                (["streams", id], "DELETE") => ("stream", Ok(streams::drop_stream(model, id))),
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
fn check_model(app: &App, name: &str, version: &str) -> std::result::Result<Arc<Model>, HttpError> {
    let model = app.models.find(name)?;
    if !version.is_empty() && version != VERSION {
        return Err(err(
            404,
            format!("model `{name}` has no version `{version}` (only {VERSION})"),
        ));
    }
    Ok(model)
}

fn model_metadata(model: &Model) -> Reply {
    let e = &model.engine;
    let inputs: Vec<TensorMetadata<'_>> = e.inputs().iter().map(Into::into).collect();
    let outputs: Vec<TensorMetadata<'_>> = e.outputs().iter().map(Into::into).collect();
    Reply::json(
        200,
        &json!({
            "name": model.name,
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
