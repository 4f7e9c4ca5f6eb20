//! gRPC load for bench-serve: `clients` concurrent KServe v2 `ModelInfer` callers, each on its
//! own HTTP/2 connection and thread, for a bounded time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The client generated from `deploy/proto/kserve_v2.proto` (package `inference`).
#[allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]
pub mod proto {
    tonic::include_proto!("inference");
}

use proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use proto::ModelInferRequest;

/// What the clients measured: each good call's latency (ms), the errors, the wall time (s).
pub struct Measured {
    pub latencies_ms: Vec<f64>,
    pub errors: Vec<String>,
    pub elapsed_s: f64,
}

/// Sends `request` from `clients` clients in a loop for `seconds`.
pub fn load(
    addr: SocketAddr,
    clients: usize,
    seconds: f64,
    request: &ModelInferRequest,
) -> Measured {
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let results: Vec<(Vec<f64>, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|_| s.spawn(|| client(addr, request, &stop)))
            .collect();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut measured = Measured {
        latencies_ms: Vec::new(),
        errors: Vec::new(),
        elapsed_s: start.elapsed().as_secs_f64(),
    };
    for (l, e) in results {
        measured.latencies_ms.extend(l);
        measured.errors.extend(e);
    }
    measured
}

/// A client connection to `addr` with no message size limit of its own (the server's is what
/// is being tested).
async fn connect(
    addr: SocketAddr,
) -> Result<GrpcInferenceServiceClient<tonic::transport::Channel>, tonic::transport::Error> {
    let client = GrpcInferenceServiceClient::connect(format!("http://{addr}")).await?;
    Ok(client
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX))
}

/// One client: its own runtime and connection, calls until `stop`.
fn client(
    addr: SocketAddr,
    request: &ModelInferRequest,
    stop: &AtomicBool,
) -> (Vec<f64>, Vec<String>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return (Vec::new(), vec![format!("runtime: {e}")]),
    };
    runtime.block_on(async {
        let mut latencies = Vec::new();
        let mut errors = Vec::new();
        let mut connection = None;
        while !stop.load(Ordering::Relaxed) {
            if connection.is_none() {
                match connect(addr).await {
                    Ok(c) => connection = Some(c),
                    Err(e) => {
                        errors.push(format!("connect: {e}"));
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                }
            }
            let Some(c) = connection.as_mut() else {
                continue;
            };
            let t0 = Instant::now();
            match c.model_infer(request.clone()).await {
                Ok(_) => latencies.push(t0.elapsed().as_secs_f64() * 1e3),
                Err(status) => {
                    errors.push(format!("{:?}: {}", status.code(), status.message()));
                    connection = None;
                }
            }
        }
        (latencies, errors)
    })
}

/// A malformed or wrong `ModelInfer` call and what the server must answer: the gRPC status
/// code and a piece of its message.
pub struct BadCall {
    pub case: &'static str,
    pub request: ModelInferRequest,
    pub code: tonic::Code,
    pub needle: &'static str,
}

/// What the bad-call client saw.
#[derive(Default)]
pub struct BadTally {
    /// Per case: (sent, answered as expected, last code, last message).
    pub cases: Vec<(usize, usize, String, String)>,
    /// `ServerReady` calls after a bad call that failed or said not ready.
    pub health_failures: usize,
    pub problems: Vec<String>,
}

/// Sends the bad calls in turn on one connection until `stop`, each followed by a
/// `ServerReady` call (the server keeps serving), 50 ms apart: the malformed-request matrix of
/// the HTTP endpoint, over gRPC, while the good clients load the server.
pub fn bad_client(
    addr: SocketAddr,
    cases: &[BadCall],
    stop: &AtomicBool,
    tally: &std::sync::Mutex<BadTally>,
) {
    let lock = || tally.lock().unwrap_or_else(|e| e.into_inner());
    lock().cases = cases
        .iter()
        .map(|_| (0, 0, String::new(), String::new()))
        .collect();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            lock()
                .problems
                .push(format!("gRPC bad client runtime: {e}"));
            return;
        }
    };
    runtime.block_on(async {
        let mut connection = None;
        let mut k = 0usize;
        while !stop.load(Ordering::Relaxed) {
            if connection.is_none() {
                match connect(addr).await {
                    Ok(c) => connection = Some(c),
                    Err(e) => {
                        note(&mut lock(), format!("gRPC bad client: connect: {e}"));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
            }
            let Some(c) = connection.as_mut() else {
                continue;
            };
            let i = k % cases.len();
            k += 1;
            let case = &cases[i];
            let answer = c.model_infer(case.request.clone()).await;
            tally_answer(&mut lock(), i, case, answer);
            let ready = c
                .server_ready(proto::ServerReadyRequest {})
                .await
                .map(|r| r.into_inner().ready)
                .unwrap_or(false);
            if !ready {
                lock().health_failures += 1;
                connection = None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

/// Adds `problem` to the tally once.
fn note(t: &mut BadTally, problem: String) {
    if !t.problems.contains(&problem) {
        t.problems.push(problem);
    }
}

/// Counts bad call `i`'s answer, and notes it when it is not the expected refusal.
fn tally_answer(
    t: &mut BadTally,
    i: usize,
    case: &BadCall,
    answer: Result<tonic::Response<proto::ModelInferResponse>, tonic::Status>,
) {
    let entry = &mut t.cases[i];
    entry.0 += 1;
    let problem = match answer {
        Ok(_) => Some(format!("gRPC {}: answered OK", case.case)),
        Err(status) => {
            entry.2 = format!("{:?}", status.code());
            entry.3 = status.message().to_string();
            if status.code() == case.code && status.message().contains(case.needle) {
                entry.1 += 1;
                None
            } else {
                Some(format!(
                    "gRPC {}: got {:?} `{}`, expected {:?} with `{}`",
                    case.case,
                    status.code(),
                    status.message(),
                    case.code,
                    case.needle
                ))
            }
        }
    };
    if let Some(p) = problem {
        note(t, p);
    }
}
