//! The command line: one file per verb; each only parses and calls the library.
mod attach;
mod config;
mod down;
mod load;
mod stats;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The one variable that sets the log filter (tracing's `EnvFilter` syntax).
const LOG_ENV: &str = "DUTNET_LOG";

#[derive(Debug, Parser)]
#[command(
    name = "dutnet",
    version,
    about = "An isolated network behind each DUT NIC"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Bring the networks of FILE up and keep them up (foreground; restores
    /// the host on SIGINT/SIGTERM).
    Load(load::Args),
    /// Stop the running dutnet, or undo what a killed one left behind.
    Down(down::Args),
    /// Show per-interface packet and byte counters of the running datapath.
    Stats(stats::Args),
    /// Check a configuration file and show the normalized networks.
    Config(config::Args),
    /// Attach the datapath's counters to interfaces until interrupted
    /// (development aid; `dutnet load` does this for configured networks).
    #[command(hide = true)]
    Attach(attach::Args),
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Load(args) => load::run(&args),
        Command::Down(args) => down::run(&args),
        Command::Stats(args) => stats::run(&args),
        Command::Config(args) => config::run(&args),
        Command::Attach(args) => attach::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dutnet: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env(LOG_ENV)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
