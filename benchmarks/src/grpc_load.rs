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
                match GrpcInferenceServiceClient::connect(format!("http://{addr}")).await {
                    Ok(c) => {
                        connection = Some(
                            c.max_decoding_message_size(usize::MAX)
                                .max_encoding_message_size(usize::MAX),
                        )
                    }
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
