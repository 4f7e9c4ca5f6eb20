//! `prism`: train, export, deploy and inspect event-camera detectors. One verb per job.

/// `println!` that returns the write's error instead of panicking: on a closed pipe
/// (`prism info --json | head`) the command then ends quietly (see [`main`]).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// `print!` as [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)
    }};
}

mod commands;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "prism",
    version,
    about = "Event-camera detectors: data, training, ONNX export, deployment"
)]
struct Cli {
    /// More log output (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Event data: inspect, synthesize and render recordings.
    #[command(subcommand)]
    Data(commands::data::DataCommand),
    /// Train a model card's recipe (`[train]`, `[dataset]`) with resumable checkpoints.
    Train(commands::train::TrainArgs),
    /// Run an experiment matrix of multimodal detectors (phase 1 stage sets, phase 2 the grid on
    /// the best) and write one results table (Markdown, JSON, PNG).
    Ablate(commands::ablate::AblateArgs),
    /// COCO mAP with RVT's protocol for a checkpoint or an ONNX model, or of COCO JSON files.
    Eval(commands::eval::EvalArgs),
    /// Export a model to ONNX (with its metadata), optionally verified in tract and ONNX Runtime.
    #[command(subcommand)]
    Export(commands::export::ExportCommand),
    /// Import weights from other frameworks (official RVT checkpoints).
    #[command(subcommand)]
    Import(commands::import::ImportCommand),
    /// INT8 post-training quantization (QDQ) of an exported model, calibrated on real windows.
    Quantize(commands::quantize::QuantizeArgs),
    /// Latency, throughput, memory and mAP of a model on every backend x precision.
    Bench(commands::bench::BenchArgs),
    /// Parameters per part, FLOPs per window, state size, input and output shapes.
    Info(commands::info::InfoArgs),
    /// Run an exported model over a recording: detections as JSON lines, frames as PNG.
    Infer(commands::infer::InferArgs),
    /// Serve an exported model over HTTP (KServe v2 / Triton protocol, event streams, metrics).
    Serve(commands::serve::ServeArgs),
    /// Run the main job end to end on the embedded default and print a summary.
    Demo(commands::demo::DemoArgs),
}

fn main() -> ExitCode {
    quiet_caught_panics();
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`prism … | head`): nothing more to say.
        Err(e) if closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", report(&e));
            ExitCode::FAILURE
        }
    }
}

/// The HDF5 reader turns a panic inside the `rust-hdf5` crate (a malformed file it indexes
/// without checking) into an error that names the file; the default hook would print a panic
/// message before that error, as if prism had crashed. Every other panic is printed as usual.
fn quiet_caught_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !prism_events::hdf5::is_caught_panic(info) {
            default(info);
        }
    }));
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Data(cmd) => commands::data::run(cmd),
        Command::Train(args) => commands::train::run(args),
        Command::Ablate(args) => commands::ablate::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Export(cmd) => commands::export::run(cmd),
        Command::Import(cmd) => commands::import::run(cmd),
        Command::Quantize(args) => commands::quantize::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Info(args) => commands::info::run(args),
        Command::Infer(args) => commands::infer::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Demo(args) => commands::demo::run(args),
    }
}

/// Whether `error` is a write to a pipe whose reader has gone.
fn closed_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes, one per line. A cause is left out when the message before it
/// already ends with it (error types that print their source in their own message).
fn report(error: &anyhow::Error) -> String {
    let mut out = format!("error: {error}");
    let mut before = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !before.ends_with(&text) {
            out.push_str("\n  caused by: ");
            out.push_str(&text);
        }
        before = text;
    }
    out
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PRISM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
