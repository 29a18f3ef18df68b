//! `cargo xtask chaos --runs N`: the kill -9 chaos test
//! (tests/tests/chaos.rs) with N kills at random moments, each followed by
//! `dutnet down` or a fresh `dutnet load` and a check that the host is as
//! before and every ACKed lease kept. `cargo xtask test` runs it with a
//! few kills; the figures of a long run go in docs/reliability.md.
use std::process::Stdio;

use anyhow::{Context as _, Result, bail};

use crate::{run, setup, test};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kills, each at a random moment of bring-up, a runtime change, a
    /// reload or teardown.
    #[arg(long, default_value_t = 50)]
    runs: u64,
    /// Repeats a run (a failure prints its seed).
    #[arg(long)]
    seed: Option<u64>,
}

pub fn run(args: &Args) -> Result<()> {
    setup::run()?;
    run::checked(run::cargo().args(["build", "--package", "dutnet", "--bin", "dutnet"]))?;
    let binaries = test::build_test_binaries()?;
    let chaos = binaries
        .iter()
        .find(|b| {
            b.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("chaos-"))
        })
        .context("the chaos test binary was not built (tests/tests/chaos.rs)")?;
    let mut command = test::as_root(chaos);
    command
        .args(["--nocapture", "--test-threads=1"])
        .env("CHAOS_RUNS", args.runs.to_string())
        .env("DUTNET_BIN", test::target_dir()?.join("debug/dutnet"))
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null());
    if let Some(seed) = args.seed {
        command.env("CHAOS_SEED", seed.to_string());
    }
    let status = command
        .status()
        .with_context(|| format!("cannot start {}", chaos.display()))?;
    if !status.success() {
        bail!("the chaos run failed (its seed is printed above)");
    }
    Ok(())
}
