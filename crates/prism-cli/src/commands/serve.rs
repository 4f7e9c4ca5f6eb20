//! `prism serve`: the KServe v2 / Triton-style HTTP server of prism-deploy for one model, with a
//! streaming endpoint for event cameras and Prometheus metrics. Loopback by default; SIGINT or
//! SIGTERM stop it gracefully (requests in progress are answered first).

use std::net::SocketAddr;

use anyhow::{Context, Result};
use clap::Args;
use prism_deploy::server::{Server, ServerOptions};

use super::infer::EngineArgs;

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Address to listen on. Anything but loopback exposes the model to the network.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub addr: SocketAddr,
    /// Model name in the URLs (default: the name in the model's spec).
    #[arg(long)]
    pub name: Option<String>,
    /// Worker threads, each serving one request at a time.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Largest request body, in MiB.
    #[arg(long, default_value_t = 64)]
    pub max_body_mib: usize,
    /// Most concurrent event streams.
    #[arg(long, default_value_t = 64)]
    pub max_streams: usize,
}

pub fn run(args: ServeArgs) -> Result<()> {
    let engine = args.engine.load()?;
    let options = ServerOptions {
        addr: args.addr,
        model_name: args.name.clone(),
        max_body_bytes: args.max_body_mib.saturating_mul(1 << 20),
        workers: args.workers,
        max_streams: args.max_streams,
    };
    let server = Server::start(engine, options).with_context(|| format!("starting the server on {}", args.addr))?;
    let stop = server.stop_flag();
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("installing the signal handler")?;
    }
    eprintln!("serving on http://{} (Ctrl-C to stop)", server.local_addr());
    server.wait();
    eprintln!("stopped");
    Ok(())
}
