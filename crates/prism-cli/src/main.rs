//! `prism`: train, export, deploy and inspect event-camera detectors. One verb per job.

mod commands;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "prism", version, about = "Event-camera detectors: data, training, ONNX export, deployment")]
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
    /// COCO mAP with RVT's protocol for a checkpoint or an ONNX model, or of COCO JSON files.
    Eval(commands::eval::EvalArgs),
    /// Export a model to ONNX (with its metadata), optionally verified in tract and ONNX Runtime.
    #[command(subcommand)]
    Export(commands::export::ExportCommand),
    /// Import weights from other frameworks (official RVT checkpoints).
    #[command(subcommand)]
    Import(commands::import::ImportCommand),
    /// Parameters per part, FLOPs per window, state size, input and output shapes.
    Info(commands::info::InfoArgs),
    /// Run an exported model over a recording: detections as JSON lines, frames as PNG.
    Infer(commands::infer::InferArgs),
    /// Serve an exported model over HTTP (KServe v2 / Triton protocol, event streams, metrics).
    Serve(commands::serve::ServeArgs),
    /// Run the main job end to end on the embedded default and print a summary.
    Demo(commands::demo::DemoArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match cli.command {
        Command::Data(cmd) => commands::data::run(cmd),
        Command::Train(args) => commands::train::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Export(cmd) => commands::export::run(cmd),
        Command::Import(cmd) => commands::import::run(cmd),
        Command::Info(args) => commands::info::run(args),
        Command::Infer(args) => commands::infer::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Demo(args) => commands::demo::run(args),
    }
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
        .with_writer(std::io::stderr)
        .init();
}
