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
    /// Let members of GROUP use the control socket too (mode 0660); by
    /// default only root may (0600).
    #[arg(long, value_name = "GROUP")]
    socket_group: Option<String>,
    /// Serve Prometheus metrics on http://ADDR:PORT/metrics, overriding
    /// the file's `metrics_listen` (off by default; a loopback address
    /// keeps it to the exporter, e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics_listen: Option<std::net::SocketAddr>,
}

/// The gid of group `name`.
fn group_id(name: &str) -> Result<u32> {
    let c_name = std::ffi::CString::new(name).context("a group name cannot contain NUL")?;
    // SAFETY: getgrnam reads a NUL-terminated name; the result is read at
    // once, before any other call could reuse its static buffer (dutnet is
    // still single-threaded here).
    let entry = unsafe { libc::getgrnam(c_name.as_ptr()) };
    if entry.is_null() {
        anyhow::bail!(
            "--socket-group: there is no group `{name}`; create it (`groupadd {name}`) or leave the option out"
        );
    }
    // SAFETY: non-null pointer to the group entry just returned.
    Ok(unsafe { (*entry).gr_gid })
}

pub fn run(args: &Args) -> Result<()> {
    // Validate everything before touching the host: a bad file changes nothing.
    // Checked here, not only when the programs load: there an error would
    // move `datapath: auto` networks to nft instead of stopping.
    dutnet::datapath::ebpf::log::level_from_env()?;
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
        // The file passed with its own `datapath`s; check the override.
        config::check_datapaths(&loaded.networks)
            .context("--datapath does not fit these networks")?;
    }
    let options = daemon::RunOptions {
        socket_group: args.socket_group.as_deref().map(group_id).transpose()?,
        metrics_listen: args.metrics_listen.or(loaded.metrics_listen),
        reload_from: Some(daemon::ReloadSource {
            file: args.file.clone(),
            datapath: args.datapath,
        }),
    };
    for note in &loaded.notes {
        info!("{note}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(daemon::run(loaded, Paths::from_env(), options))?;
    Ok(())
}
