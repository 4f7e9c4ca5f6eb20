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
    /// Run the main job end to end on the embedded default and print a summary.
    Demo(commands::demo::DemoArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match cli.command {
        Command::Data(cmd) => commands::data::run(cmd),
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
