//! `prism serve`: the KServe v2 / Triton-style server of prism-deploy for one model, over HTTP
//! (JSON and binary tensors) and gRPC, with a streaming endpoint for event cameras and
//! Prometheus metrics. Loopback by default; SIGINT or
//! SIGTERM stop it within about a second: waiting requests get 503, running stream requests stop
//! after their current window.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use prism_deploy::server::{Server, ServerOptions};

use super::engine_args::RuntimeArgs;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The exported ONNX model (with its `prism` metadata).
    #[arg(
        long,
        required_unless_present = "model_repository",
        conflicts_with = "model_repository"
    )]
    pub model: Option<PathBuf>,
    /// Serve every `NAME.onnx` of this folder as model `NAME`; clients list, load and unload
    /// them while the server runs (`POST /v2/repository/index`,
    /// `/v2/repository/models/NAME/load|unload`).
    #[arg(long)]
    pub model_repository: Option<PathBuf>,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Address to listen on. Anything but loopback exposes the model to the network.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub addr: SocketAddr,
    /// Address of the KServe v2 gRPC endpoint (`inference.GRPCInferenceService`). Anything but
    /// loopback exposes the model to the network.
    #[arg(long, default_value = "127.0.0.1:8001")]
    pub grpc_addr: SocketAddr,
    /// Serve HTTP only.
    #[arg(long)]
    pub no_grpc: bool,
    /// Model name in the URLs (default: the name in the model's spec; in a repository, the
    /// file name).
    #[arg(long, conflicts_with = "model_repository")]
    pub name: Option<String>,
    /// Worker threads, each serving one request at a time.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub workers: u32,
    /// Largest request body, in MiB.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_body_mib: u32,
    /// Most concurrent event streams, and most concurrent sequences (`sequence_id` on the
    /// infer call).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams: u32,
    /// Most connections open at once on each endpoint (HTTP: more get 503; gRPC: more are
    /// closed), and most gRPC calls in progress at once.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub max_connections: u32,
    /// Seconds from a request's arrival to its answer; a stream request still running then stops
    /// after its current window (408, the stream is dropped).
    #[arg(long, default_value_t = 30.0)]
    pub deadline_s: f64,
    /// Most windows one stream request may complete (413 before any work when it would
    /// complete more).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_windows_per_request: u64,
    /// A pause in a stream longer than this (milliseconds) ends its sequence and resets its
    /// state, instead of running every empty window in between.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub max_gap_ms: u64,
    /// Most events one stream may hold for windows not yet complete.
    #[arg(long, default_value_t = 4 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_stream_events: u64,
    /// A sequence (`sequence_id` on the infer call) with no request for this many seconds is
    /// freed with its recurrent state.
    #[arg(long, default_value_t = 60.0)]
    pub sequence_idle_s: f64,
    /// Dynamic batching: requests for a stateless model with a dynamic batch axis (`prism
    /// export onnx --dynamic-batch`) run together, up to this many rows (1: off).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_batch: u32,
    /// How long the first request of a batch waits for more, in microseconds.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    pub max_queue_delay_us: u64,
}

pub fn run(args: ServeArgs) -> Result<()> {
    if !(args.deadline_s > 0.0 && args.deadline_s <= 86_400.0) {
        bail!(
            "--deadline-s must be between 0 and 86400 seconds, got {}",
            args.deadline_s
        );
    }
    if !(args.sequence_idle_s > 0.0 && args.sequence_idle_s <= 86_400.0) {
        bail!(
            "--sequence-idle-s must be between 0 and 86400 seconds, got {}",
            args.sequence_idle_s
        );
    }
    let options = ServerOptions {
        addr: args.addr,
        model_name: args.name.clone(),
        max_body_bytes: (args.max_body_mib as usize) << 20,
        workers: args.workers as usize,
        max_streams: args.max_streams as usize,
        max_connections: args.max_connections as usize,
        deadline: Duration::from_secs_f64(args.deadline_s),
        max_windows_per_request: args.max_windows_per_request,
        max_gap_us: args.max_gap_ms as i64 * 1000,
        max_stream_events: usize::try_from(args.max_stream_events).unwrap_or(usize::MAX),
        sequence_idle: Duration::from_secs_f64(args.sequence_idle_s),
        grpc_addr: (!args.no_grpc).then_some(args.grpc_addr),
        max_batch: args.max_batch as usize,
        max_queue_delay: Duration::from_micros(args.max_queue_delay_us),
    };
    let server = match (&args.model, &args.model_repository) {
        (Some(model), _) => Server::start(args.runtime.load(model)?, options)
            .with_context(|| format!("starting the server on {}", args.addr))?,
        (None, Some(dir)) => Server::start_repository(dir, args.runtime.options(), options)
            .with_context(|| {
                format!(
                    "serving the model repository {} on {}",
                    dir.display(),
                    args.addr
                )
            })?,
        (None, None) => bail!("give --model FILE or --model-repository DIR"),
    };
    let stop = server.stop_flag();
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .context("installing the signal handler")?;
    }
    // A server must not die because whoever reads its log went away: `eprintln!` panics on a
    // closed stderr, so these lines are written and their errors dropped.
    let say = |line: String| {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "{line}");
    };
    say(format!(
        "serving on http://{} (Ctrl-C to stop)",
        server.local_addr()
    ));
    if let Some(grpc) = server.grpc_addr() {
        say(format!("serving gRPC on {grpc}"));
    }
    server.wait();
    say("stopped".into());
    Ok(())
}
