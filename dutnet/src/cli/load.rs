//! `dutnet load FILE`: bring the file's networks up and keep them up, in the
//! foreground (under systemd or a lab exporter), until SIGINT/SIGTERM.
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use dutnet::{config, daemon, state::paths::Paths};
use tracing::info;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The configuration: one network, a `networks:` list, or a jumpstarter
    /// exporter file with DutNetwork exports.
    file: PathBuf,
    /// The datapath of every network, overriding the file's `datapath`:
    /// `auto` (eBPF, or nftables with a warning when eBPF cannot load),
    /// `ebpf` (fail rather than fall back), `nft` (nftables only).
    #[arg(long, value_name = "auto|ebpf|nft")]
    datapath: Option<config::DatapathChoice>,
}

pub fn run(args: &Args) -> Result<()> {
    // Validate everything before touching the host: a bad file changes nothing.
    let mut loaded = config::load_file(&args.file).with_context(|| {
        format!(
            "{} is not a valid dutnet configuration",
            args.file.display()
        )
    })?;
    if let Some(choice) = args.datapath {
        for net in &mut loaded.networks {
            net.datapath = choice;
        }
    }
    daemon::check_datapaths(&loaded.networks)?;
    for note in &loaded.notes {
        info!("{note}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(daemon::run(loaded, Paths::from_env()))?;
    Ok(())
}
