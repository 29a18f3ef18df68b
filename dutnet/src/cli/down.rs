//! `dutnet down`: stop the running dutnet, or finish restoring the host after
//! one that was killed.
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use dutnet::{config, daemon, state::paths::Paths};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The configuration the daemon was started with (checked, for symmetry
    /// with `load`; what to undo comes from the undo journal).
    file: Option<PathBuf>,
}

pub fn run(args: &Args) -> Result<()> {
    if let Some(file) = &args.file {
        config::load_file(file)
            .with_context(|| format!("{} is not a valid dutnet configuration", file.display()))?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let outcome = runtime.block_on(daemon::down(&Paths::from_env()))?;
    println!("{outcome}");
    Ok(())
}
