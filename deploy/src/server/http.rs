//! A small HTTP/1.1 server on `std::net`: one thread per connection (keep-alive, pipelining),
//! bounded everywhere a client could make it grow or wait.
//!
//! It replaced tiny_http 0.12, whose body reader, dropped with unread bytes left, drains them into
//! a buffer of the size the client *declared*: one request declaring a 1 TiB `Content-Length`
//! made the allocation fail and aborted the whole server process (the test
//! `an_enormous_declared_body_is_refused_and_the_server_keeps_serving` reproduces it), and a
//! client that declared a large body and never sent it held a worker forever. Here:
//! - a declared body over the limit is answered 413 from its headers and the connection closed,
//!   nothing read or allocated; chunked bodies are counted as they arrive and cut at the limit;
//! - request heads are at most 16 KiB and must arrive within 30 s; a body that stops arriving
//!   for 30 s is answered 408; idle keep-alive connections close after 60 s;
//! - at most [`Limits::max_connections`] connections at once (more get 503 and are closed);
//! - `Content-Length` together with `Transfer-Encoding`, several `Content-Length`s, or an
//!   unknown transfer coding are refused (400), so requests cannot be smuggled past the limits;
//! - `Expect: 100-continue` is answered, so curl's large uploads do not stall.
//!
//! Stopping: the accept loop polls the stop flag; connections finish the request in progress,
//! then close (an idle one notices within a quarter of a second).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A parsed request with its whole body.
#[derive(Debug)]
pub(crate) struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
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
    pub body: Vec<u8>,
}

#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub max_body: usize,
    pub max_head: usize,
    pub head_timeout: Duration,
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    pub fn new(max_body: usize) -> Self {
        Self {
            max_body,
            max_head: 16 << 10,
            head_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 512,
        }
    }
}

pub(crate) type Handler = dyn Fn(std::result::Result<Request, Refused>) -> Response + Send + Sync;

/// Accepts connections on `listener` until `stop` is set, then waits for every connection
/// thread to finish. Run it on its own thread.
pub(crate) fn serve(
    listener: TcpListener,
    limits: Limits,
    stop: Arc<AtomicBool>,
    handler: Arc<Handler>,
) {
    if let Err(e) = listener.set_nonblocking(true) {
        tracing::error!("cannot poll the listener: {e}");
        return;
    }
    let live = Arc::new(AtomicUsize::new(0));
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                threads.retain(|t| !t.is_finished());
                if live.load(Ordering::SeqCst) >= limits.max_connections {
                    tracing::warn!(
                        "refusing {peer}: {} connections open",
                        limits.max_connections
                    );
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                    let mut stream = stream;
                    let busy = Response {
                        status: 503,
                        content_type: "application/json",
                        body: br#"{"error":"too many connections; retry later"}"#.to_vec(),
                    };
                    let _ = write_response(&mut stream, &busy, false);
                    let _ = stream.shutdown(Shutdown::Both);
                    continue;
                }
                live.fetch_add(1, Ordering::SeqCst);
                let (limits, stop, handler, live2) =
                    (limits.clone(), stop.clone(), handler.clone(), live.clone());
                let spawned =
                    std::thread::Builder::new()
                        .name("prism-http".into())
                        .spawn(move || {
                            connection(stream, &limits, &stop, handler.as_ref());
                            live2.fetch_sub(1, Ordering::SeqCst);
                        });
                match spawned {
                    Ok(t) => threads.push(t),
                    Err(e) => {
                        live.fetch_sub(1, Ordering::SeqCst);
                        tracing::warn!("cannot start a connection thread: {e}");
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    for t in threads {
        let _ = t.join();
    }
}

/// Why a connection stops.
enum End {
    /// Closed by the client, idle too long, or the server is stopping: close quietly.
    Quiet,
    /// A request the client got wrong: answer, then close.
    Refuse(Refused),
}

fn refuse(status: u16, message: impl Into<String>) -> End {
    End::Refuse(Refused {
        status,
        message: message.into(),
    })
}

/// Serves the requests of one connection.
fn connection(mut stream: TcpStream, limits: &Limits, stop: &AtomicBool, handler: &Handler) {
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(60)));
    // Bytes received beyond the last request (pipelining).
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        match read_request(&mut stream, &mut pending, &mut chunk, limits, stop) {
            Ok(request) => {
                let close = wants_close(&request) || stop.load(Ordering::SeqCst);
                let response = handler(Ok(request));
                if write_response(&mut stream, &response, !close).is_err() || close {
                    break;
                }
            }
            Err(End::Quiet) => break,
            Err(End::Refuse(refused)) => {
                let response = handler(Err(refused));
                let _ = write_response(&mut stream, &response, false);
                break;
            }
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

fn wants_close(r: &Request) -> bool {
    let connection = r.header("Connection").unwrap_or("").to_ascii_lowercase();
    if connection.split(',').any(|t| t.trim() == "close") {
        return true;
    }
    // HTTP/1.0 closes unless asked to keep alive.
    r.headers
        .iter()
        .any(|(k, v)| k == ":version" && v == "HTTP/1.0")
        && !connection.contains("keep-alive")
}

/// One read from the socket, appended to `pending`; the count read (0 at EOF).
fn fill(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    chunk: &mut [u8],
) -> std::result::Result<usize, std::io::Error> {
    let n = stream.read(chunk)?;
    pending.extend_from_slice(&chunk[..n]);
    Ok(n)
}

fn read_request(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    chunk: &mut [u8],
    limits: &Limits,
    stop: &AtomicBool,
) -> std::result::Result<Request, End> {
    // Wait for the first byte, waking up to notice a stop, closing idle connections.
    let idle_since = Instant::now();
    let _ = stream.set_read_timeout(Some(Duration::from_millis(250)));
    while pending.is_empty() {
        if stop.load(Ordering::SeqCst) || idle_since.elapsed() > limits.idle_timeout {
            return Err(End::Quiet);
        }
        match fill(stream, pending, chunk) {
            Ok(0) => return Err(End::Quiet),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => return Err(End::Quiet),
        }
    }
    // The head, within its size and time limits.
    let started = Instant::now();
    let head_end = loop {
        if let Some(i) = find(pending, b"\r\n\r\n") {
            break i + 4;
        }
        if pending.len() > limits.max_head {
            return Err(refuse(
                431,
                format!("request head is larger than {} bytes", limits.max_head),
            ));
        }
        let left = limits.head_timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(refuse(408, "the request head did not arrive in time"));
        }
        let _ = stream.set_read_timeout(Some(left.min(Duration::from_millis(250))));
        match fill(stream, pending, chunk) {
            Ok(0) => return Err(End::Quiet),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                if stop.load(Ordering::SeqCst) {
                    return Err(End::Quiet);
                }
            }
            Err(_) => return Err(End::Quiet),
        }
    };
    if head_end > limits.max_head {
        return Err(refuse(
            431,
            format!("request head is larger than {} bytes", limits.max_head),
        ));
    }
    let head = std::str::from_utf8(&pending[..head_end])
        .map_err(|_| refuse(400, "the request head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) if !m.is_empty() && t.starts_with('/') => {
            (m.to_string(), t.to_string(), v)
        }
        _ => {
            return Err(refuse(
                400,
                format!("malformed request line {request_line:?}"),
            ))
        }
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(refuse(
            505,
            format!("{version} is not supported (HTTP/1.1 is)"),
        ));
    }
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| refuse(400, format!("malformed header line {line:?}")))?;
        if k.is_empty() || k.contains(' ') {
            return Err(refuse(400, format!("malformed header name {k:?}")));
        }
        headers.push((k.to_string(), v.trim().to_string()));
    }
    headers.push((":version".into(), version.to_string()));
    pending.drain(..head_end);

    let lengths: Vec<&str> = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
        .map(|(_, v)| v.as_str())
        .collect();
    let coding = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Transfer-Encoding"))
        .map(|(_, v)| v.to_ascii_lowercase());
    let expects_continue = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("Expect") && v.eq_ignore_ascii_case("100-continue"));
    let body = match (lengths.as_slice(), coding) {
        ([], None) => Vec::new(),
        ([length], None) => {
            let length: u64 = length
                .parse()
                .map_err(|_| refuse(400, format!("Content-Length {length:?} is not a number")))?;
            if length > limits.max_body as u64 {
                return Err(refuse(
                    413,
                    format!(
                        "request body is larger than the {}-byte limit (Content-Length {length})",
                        limits.max_body
                    ),
                ));
            }
            if expects_continue {
                let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            read_exact_body(stream, pending, length as usize, limits, stop, chunk)?
        }
        ([], Some(coding)) if coding == "chunked" => {
            if expects_continue {
                let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            read_chunked_body(stream, pending, limits, stop, chunk)?
        }
        ([], Some(coding)) => {
            return Err(refuse(
                400,
                format!("transfer coding {coding:?} is not supported (chunked is)"),
            ))
        }
        _ => {
            return Err(refuse(
                400,
                "a request may carry one Content-Length or chunked coding, not both or several",
            ))
        }
    };
    Ok(Request {
        method,
        target,
        headers,
        body,
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One read of body bytes into `buf`: waits at most `body_read_timeout` for them, giving up early
/// (quietly) when the server stops.
fn read_body_part(
    stream: &mut TcpStream,
    buf: &mut [u8],
    limits: &Limits,
    stop: &AtomicBool,
) -> std::result::Result<usize, End> {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(250)));
    let started = Instant::now();
    loop {
        match stream.read(buf) {
            Ok(0) => return Err(End::Quiet),
            Ok(n) => return Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                if stop.load(Ordering::SeqCst) {
                    return Err(End::Quiet);
                }
                if started.elapsed() > limits.body_read_timeout {
                    return Err(refuse(408, "the request body stopped arriving"));
                }
            }
            Err(_) => return Err(End::Quiet),
        }
    }
}

/// Waits for more bytes of a body into `pending`.
fn more(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    limits: &Limits,
    stop: &AtomicBool,
    chunk: &mut [u8],
) -> std::result::Result<(), End> {
    let n = read_body_part(stream, chunk, limits, stop)?;
    pending.extend_from_slice(&chunk[..n]);
    Ok(())
}

fn read_exact_body(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    length: usize,
    limits: &Limits,
    stop: &AtomicBool,
    chunk: &mut [u8],
) -> std::result::Result<Vec<u8>, End> {
    if pending.len() >= length {
        let rest = pending.split_off(length);
        return Ok(std::mem::replace(pending, rest));
    }
    let mut body = Vec::with_capacity(length);
    body.append(pending);
    while body.len() < length {
        let want = (length - body.len()).min(chunk.len());
        let n = read_body_part(stream, &mut chunk[..want], limits, stop)?;
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(body)
}

/// One line (without CRLF) from `pending`, reading more as needed; lines are at most 4 KiB.
fn line(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    limits: &Limits,
    stop: &AtomicBool,
    chunk: &mut [u8],
) -> std::result::Result<String, End> {
    loop {
        if let Some(i) = find(pending, b"\r\n") {
            let text = String::from_utf8(pending[..i].to_vec())
                .map_err(|_| refuse(400, "chunk header is not UTF-8"))?;
            pending.drain(..i + 2);
            return Ok(text);
        }
        if pending.len() > 4096 {
            return Err(refuse(400, "chunk header line too long"));
        }
        more(stream, pending, limits, stop, chunk)?;
    }
}

fn read_chunked_body(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    limits: &Limits,
    stop: &AtomicBool,
    chunk: &mut [u8],
) -> std::result::Result<Vec<u8>, End> {
    let mut body = Vec::new();
    loop {
        let header = line(stream, pending, limits, stop, chunk)?;
        let size_text = header.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| refuse(400, format!("bad chunk size {size_text:?}")))?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !line(stream, pending, limits, stop, chunk)?.is_empty() {}
            return Ok(body);
        }
        if body.len().saturating_add(size) > limits.max_body {
            return Err(refuse(
                413,
                format!(
                    "request body is larger than the {}-byte limit",
                    limits.max_body
                ),
            ));
        }
        while pending.len() < size + 2 {
            more(stream, pending, limits, stop, chunk)?;
        }
        body.extend_from_slice(&pending[..size]);
        if &pending[size..size + 2] != b"\r\n" {
            return Err(refuse(400, "chunk data is not followed by CRLF"));
        }
        pending.drain(..size + 2);
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

fn write_response(stream: &mut TcpStream, r: &Response, keep_alive: bool) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nServer: prism\r\n{}\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len(),
        if keep_alive {
            ""
        } else {
            "Connection: close\r\n"
        }
    );
    if r.body.len() <= 64 << 10 {
        // One write (one segment on the wire) for the usual small answer.
        let mut all = Vec::with_capacity(head.len() + r.body.len());
        all.extend_from_slice(head.as_bytes());
        all.extend_from_slice(&r.body);
        stream.write_all(&all)?;
    } else {
        stream.write_all(head.as_bytes())?;
        stream.write_all(&r.body)?;
    }
    stream.flush()
}
