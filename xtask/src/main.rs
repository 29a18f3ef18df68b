//! `cargo xtask`: set up a machine, run every test, run the demo lab, bench.
//! Orchestration only: what dutnet does lives in the dutnet crate.
mod bench;
mod chaos;
mod demo;
mod fuzz;
mod run;
mod setup;
mod test;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install what building and testing need (idempotent: only what is missing).
    Setup,
    /// Setup, lint, build the tests unprivileged, run them as root.
    Test(test::Args),
    /// Build a lab of namespaces and run dutnet in it (no hardware needed).
    Demo(demo::Args),
    /// Routing, nft masquerade and dutnet's eBPF masquerade side by side.
    Bench(bench::Args),
    /// The libFuzzer targets of the parsers (cargo-fuzz, nightly).
    Fuzz(fuzz::Args),
    /// kill -9 at random moments, then check the host and the leases.
    Chaos(chaos::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Setup => setup::run(),
        Command::Test(args) => test::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Fuzz(args) => fuzz::run(&args),
        Command::Chaos(args) => chaos::run(&args),
    }
}
