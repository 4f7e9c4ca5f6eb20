//! The HTTP/1.1 layer: hyper's server on a small tokio runtime, with the limits a public
//! inference endpoint needs on top of it. The application behind it ([`Handler`]) is blocking
//! (inference is CPU-bound) and runs on tokio's blocking pool, one call per request.
//!
//! hyper parses the requests (it replaced a hand-written parser: the wire format is a security
//! surface hyper has covered for years). What this module adds:
//! - a declared body over the limit is answered 413 from its headers and the connection closed,
//!   nothing read or allocated (the test
//!   `an_enormous_declared_body_is_refused_and_the_server_keeps_serving` declares 1 TiB);
//!   chunked bodies are counted as they arrive and cut at the limit;
//! - a body that stops arriving for [`Limits::body_read_timeout`] is answered 408;
//! - at most [`Limits::max_connections`] connections at once (more get 503 and are closed);
//! - when the server stops, connections finish the request in progress and close; an upload
//!   still arriving is cut off, so stopping takes about a second under any load.
//!
//! From hyper, configured here: request heads of at most 16 KiB (431 past that) that must arrive
//! within [`Limits::head_timeout`] (the connection is closed otherwise); malformed request lines
//! and headers, several differing `Content-Length`s and a transfer coding other than chunked get
//! 400; `Expect: 100-continue` is answered when the body is first read. A request carrying both
//! `Content-Length` and `Transfer-Encoding: chunked` is read as chunked and its connection closed
//! after the answer (RFC 9112 §6.3), so nothing can be smuggled after it. hyper answers its own
//! refusals with an empty body; they are reported to the handler (as [`Refused`]) for the metrics.

use std::convert::Infallible;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, SERVER};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

/// A parsed request with its whole body.
#[derive(Debug)]
pub(crate) struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

/// A request body as it arrived: hyper's frames, kept as they are rather than copied into one
/// buffer, so that a binary infer request's tensors are read from them in one pass (on a 9 MB
/// body every extra pass costs about 2 ms). Frames under [`SMALL_FRAME`] bytes are copied
/// together, so a body sent in tiny chunks holds memory in proportion to its bytes, not to its
/// chunks (64 MiB of 1-byte chunks would otherwise be 64 M frame handles, 2 GiB).
#[derive(Debug, Default)]
pub(crate) struct Body {
    frames: Vec<Bytes>,
    /// Small frames being gathered into one.
    small: Vec<u8>,
    len: usize,
}

/// Frames shorter than this are gathered into pieces of at least this size.
const SMALL_FRAME: usize = 64 << 10;

impl Body {
    /// Appends a frame.
    fn push(&mut self, frame: Bytes) {
        self.len += frame.len();
        if frame.len() >= SMALL_FRAME {
            self.flush_small();
            self.frames.push(frame);
        } else {
            self.small.extend_from_slice(&frame);
            if self.small.len() >= SMALL_FRAME {
                self.flush_small();
            }
        }
    }

    /// The body once its last frame has arrived.
    fn finish(mut self) -> Self {
        self.flush_small();
        self
    }

    fn flush_small(&mut self) {
        if !self.small.is_empty() {
            self.frames
                .push(Bytes::from(std::mem::take(&mut self.small)));
        }
    }

    /// The body's pieces, in order.
    pub fn parts(&self) -> Vec<&[u8]> {
        self.frames.iter().map(|f| f.as_ref()).collect()
    }

    /// The whole body as one slice: borrowed when it arrived in one frame, else joined.
    pub fn contiguous(&self) -> std::borrow::Cow<'_, [u8]> {
        match self.frames.as_slice() {
            [] => std::borrow::Cow::Borrowed(&[]),
            [one] => std::borrow::Cow::Borrowed(one.as_ref()),
            many => std::borrow::Cow::Owned(many.concat()),
        }
    }
}

impl Request {
    /// The first header of that name (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A request the HTTP layer refused before the application saw it.
#[derive(Debug)]
pub(crate) struct Refused {
    pub status: u16,
    pub message: String,
}

/// What the application answers.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub content_type: &'static str,
    /// Headers beyond `Content-Type`, `Content-Length` and `Server`.
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub max_body: usize,
    pub max_head: usize,
    pub head_timeout: Duration,
    pub body_read_timeout: Duration,
    pub max_connections: usize,
    /// How long a stopping server waits for its connections before closing them.
    pub stop_grace: Duration,
}

impl Limits {
    pub fn new(max_body: usize) -> Self {
        Self {
            max_body,
            max_head: 16 << 10,
            head_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 512,
            stop_grace: Duration::from_secs(2),
        }
    }
}

pub(crate) type Handler = dyn Fn(std::result::Result<Request, Refused>) -> Response + Send + Sync;

/// How often the accept loop looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(50);

/// The runtime the HTTP and gRPC endpoints run on: two async workers, and a blocking pool with
/// a thread for every request in progress (the application is blocking; the connection cap
/// bounds requests in progress).
pub(crate) fn runtime(limits: &Limits) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(2 * limits.max_connections + 8)
        .thread_name("prism-http")
        .enable_all()
        .build()
}

/// Accepts connections on `listener` until `stop` is set, then lets every connection finish
/// (within [`Limits::stop_grace`]).
pub(crate) async fn accept_loop(
    listener: TcpListener,
    limits: Limits,
    stop: Arc<AtomicBool>,
    handler: Arc<Handler>,
) {
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot poll the listener: {e}");
            return;
        }
    };
    let (stopping_tx, stopping) = watch::channel(false);
    let live = Arc::new(AtomicUsize::new(0));
    let mut connections = tokio::task::JoinSet::new();
    let mut poll = tokio::time::interval(STOP_POLL);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if live.load(Ordering::SeqCst) >= limits.max_connections {
                        tracing::warn!("refusing {peer}: {} connections open", limits.max_connections);
                        connections.spawn(refuse_busy(stream));
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    live.fetch_add(1, Ordering::SeqCst);
                    let (limits, handler, stopping, live) =
                        (limits.clone(), handler.clone(), stopping.clone(), live.clone());
                    connections.spawn(async move {
                        connection(stream, limits, handler, stopping).await;
                        live.fetch_sub(1, Ordering::SeqCst);
                    });
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = poll.tick() => {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                while connections.try_join_next().is_some() {}
            }
        }
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    let drained = tokio::time::timeout(limits.stop_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "closing {} connections still open after {:?}",
            connections.len(),
            limits.stop_grace
        );
        connections.abort_all();
    }
}

/// Answers a connection over the cap with 503 and closes it.
async fn refuse_busy(mut stream: tokio::net::TcpStream) {
    let body = br#"{"error":"too many connections; retry later"}"#;
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nServer: prism\r\n\r\n",
        body.len()
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

/// Serves one connection's requests until it closes, or the server stops.
async fn connection(
    stream: tokio::net::TcpStream,
    limits: Limits,
    handler: Arc<Handler>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.head_timeout)
        .max_header_size(limits.max_head)
        .title_case_headers(true)
        .keep_alive(true);
    let service = {
        let (limits, handler, stopping) = (limits.clone(), handler.clone(), stopping.clone());
        service_fn(move |request| {
            let (limits, handler, stopping) = (limits.clone(), handler.clone(), stopping.clone());
            async move { Ok::<_, Infallible>(respond(request, &limits, handler, stopping).await) }
        })
    };
    let conn = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let finished = tokio::select! {
        result = conn.as_mut() => Some(result),
        _ = stopping.wait_for(|s| *s) => None,
    };
    let result = match finished {
        Some(result) => result,
        // The request in progress is answered, then the connection closes.
        None => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // hyper answered a malformed request itself (400 / 431); the metrics count it.
        let status = if e.is_parse_too_large() {
            Some(431)
        } else if e.is_parse() {
            Some(400)
        } else {
            None
        };
        if let Some(status) = status {
            let refused = Refused {
                status,
                message: format!("malformed HTTP: {e}"),
            };
            // Only counted: no model work, nothing that blocks.
            let _ = handler(Err(refused));
        }
    }
}

/// Reads a request's body within the limits, hands the request to the application and turns
/// its answer into hyper's.
async fn respond(
    request: hyper::Request<Incoming>,
    limits: &Limits,
    handler: Arc<Handler>,
    stopping: watch::Receiver<bool>,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let keep_alive = !wants_close(&parts.headers);
    let request = read_body(body, &parts.headers, limits, stopping)
        .await
        .map(|body| Request {
            method: parts.method.as_str().to_string(),
            target: parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string()),
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body,
        });
    // A refused body leaves unread bytes on the connection: it cannot carry another request.
    let keep_alive = keep_alive && request.is_ok();
    let answer = tokio::task::spawn_blocking(move || handler(request))
        .await
        .unwrap_or_else(|_| Response {
            status: 500,
            content_type: "application/json",
            headers: Vec::new(),
            body: br#"{"error":"internal error"}"#.to_vec(),
        });
    to_hyper(answer, keep_alive)
}

fn wants_close(headers: &hyper::HeaderMap) -> bool {
    headers.get_all(CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    })
}

fn refused(status: u16, message: impl Into<String>) -> Refused {
    Refused {
        status,
        message: message.into(),
    }
}

/// The whole body, refusing it from its declared length when that is over the limit and
/// otherwise as soon as what arrived passes the limit.
async fn read_body(
    mut body: Incoming,
    headers: &hyper::HeaderMap,
    limits: &Limits,
    mut stopping: watch::Receiver<bool>,
) -> std::result::Result<Body, Refused> {
    let over = |declared: String| {
        refused(
            413,
            format!(
                "request body is larger than the {}-byte limit{declared}",
                limits.max_body
            ),
        )
    };
    // hyper has checked that a Content-Length is one number (several that differ are a 400).
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(length) = declared {
        if length > limits.max_body as u64 {
            return Err(over(format!(" (Content-Length {length})")));
        }
    }
    let mut data = Body::default();
    loop {
        let frame = tokio::select! {
            frame = tokio::time::timeout(limits.body_read_timeout, body.frame()) => frame,
            _ = stopping.wait_for(|s| *s) => {
                return Err(refused(503, "the server is shutting down"));
            }
        };
        match frame {
            Err(_) => return Err(refused(408, "the request body stopped arriving")),
            Ok(None) => return Ok(data.finish()),
            Ok(Some(Err(e))) => return Err(refused(400, format!("malformed request body: {e}"))),
            Ok(Some(Ok(frame))) => {
                if let Ok(chunk) = frame.into_data() {
                    if data.len.saturating_add(chunk.len()) > limits.max_body {
                        return Err(over(String::new()));
                    }
                    data.push(chunk);
                }
            }
        }
    }
}

fn to_hyper(answer: Response, keep_alive: bool) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::from(answer.body)));
    *response.status_mut() = hyper::StatusCode::from_u16(answer.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(answer.content_type));
    headers.insert(SERVER, HeaderValue::from_static("prism"));
    for (name, value) in answer.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.append(name, value);
        }
    }
    if !keep_alive {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tiny frames are gathered into a few pieces, large ones kept as they came, in order.
    #[test]
    fn a_body_keeps_its_bytes_in_order_and_gathers_tiny_frames() {
        let mut body = Body::default();
        let mut expected = Vec::new();
        for i in 0..100_000u32 {
            let byte = (i % 251) as u8;
            body.push(Bytes::from(vec![byte]));
            expected.push(byte);
        }
        let large: Vec<u8> = (0..SMALL_FRAME + 5).map(|i| (i % 13) as u8).collect();
        body.push(Bytes::from(large.clone()));
        expected.extend_from_slice(&large);
        body.push(Bytes::from_static(b"tail"));
        expected.extend_from_slice(b"tail");
        let body = body.finish();
        assert_eq!(body.len, expected.len());
        // 100,000 bytes in 1-byte frames: one full piece and the rest, then the large frame
        // and the tail.
        assert_eq!(body.frames.len(), 4);
        assert_eq!(body.contiguous().as_ref(), expected.as_slice());
        assert_eq!(body.parts().concat(), expected);
    }
}
