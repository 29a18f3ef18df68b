//! `dutnet attach`: counters on chosen interfaces until SIGINT/SIGTERM (a
//! developer's verb: no NAT, no forwarding, every packet passes).
use anyhow::{Context as _, Result};
use dutnet::{
    datapath::{Datapath as _, DutNetwork, FlowLimits, NatPlan, ebpf::EbpfDatapath},
    state::paths::Paths,
};
use tracing::info;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Interface to attach to (repeat for several).
    #[arg(long = "interface", short, required = true)]
    interfaces: Vec<String>,
}

pub fn run(args: &Args) -> Result<()> {
    // Counting only: no flows, but each interface needs its (smallest) place.
    let limits = vec![FlowLimits::new(1); args.interfaces.len()];
    let mut datapath = EbpfDatapath::load(&Paths::from_env(), &limits)?;
    for iface in &args.interfaces {
        let counting_only = DutNetwork {
            iface: iface.clone(),
            gateway: std::net::Ipv4Addr::UNSPECIFIED,
            subnet: ipnet::Ipv4Net::default(),
            nat: NatPlan::Disabled,
            public: Vec::new(),
            reply_mark: 0,
            flows: FlowLimits::new(1),
        };
        if let Err(e) = datapath.attach(&counting_only) {
            // Leave nothing behind on the interfaces that did attach.
            let _ = datapath.shutdown();
            return Err(e.into());
        }
    }
    info!(interfaces = ?args.interfaces, "attached; stop with Ctrl-C or SIGTERM");
    wait_for_shutdown_signal().context("waiting for a signal")?;
    datapath.shutdown()?;
    Ok(())
}

fn wait_for_shutdown_signal() -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok(())
    })
}
