//! `dutnet down`: stop the running dutnet, or finish restoring the host after
//! one that was killed.
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use dutnet::{
    config, daemon,
    state::{paths::Paths, runtime},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The configuration the daemon was started with (checked, for symmetry
    /// with `load`; what to undo comes from the undo journal).
    file: Option<PathBuf>,
    /// Keep the runtime changes (`add-address`, `add-dns`) for the next
    /// `load`: for systemd's `ExecStopPost=`, which runs after every stop,
    /// clean or crashed, where only the host should be cleaned.
    #[arg(long)]
    keep_runtime_changes: bool,
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
    let paths = Paths::from_env();
    let outcome = runtime.block_on(daemon::down(&paths))?;
    // Down means down: the next `load` starts from the config file alone.
    if !args.keep_runtime_changes {
        runtime::forget_all(&paths).with_context(|| {
            format!(
                "removing the saved runtime changes in {}",
                paths.runtime_dir().display()
            )
        })?;
    }
    println!("{outcome}");
    Ok(())
}
