//! `dutnet attach`: counters on chosen interfaces until SIGINT/SIGTERM (a
//! developer's verb: no NAT, no forwarding, every packet passes).
use anyhow::{Context as _, Result};
use dutnet::{
    control::{
        Failure, Reply, Request, Response, counters::InterfaceCounters, server::ControlServer,
    },
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
    // The handlers come first: a SIGTERM sent as soon as the programs show
    // up must detach them, not kill the process with them attached.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    // Entered for the signal handlers and for the task that forwards the
    // programs' log records (DUTNET_EBPF_LOG).
    let _entered = runtime.enter();
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).context("waiting for SIGTERM")?,
            signal(SignalKind::interrupt()).context("waiting for SIGINT")?,
        )
    };
    // Counting only: no flows, but each interface needs its (smallest) place.
    let limits = vec![FlowLimits::new(1); args.interfaces.len()];
    let mut datapath = EbpfDatapath::load(&Paths::from_env(), &limits)?;
    for iface in &args.interfaces {
        let counting_only = DutNetwork {
            iface: iface.clone(),
            gateway: std::net::Ipv4Addr::UNSPECIFIED,
            subnet: ipnet::Ipv4Net::default(),
            nat: NatPlan::Disabled,
            reply_mark: 0,
            flows: FlowLimits::new(1),
            filter: None,
            local_ntp: false,
        };
        if let Err(e) = datapath.attach(&counting_only) {
            // Leave nothing behind on the interfaces that did attach.
            let _ = datapath.shutdown();
            return Err(e.into());
        }
    }
    let served = serve_stats_until_signal(&runtime, signals, &datapath, &args.interfaces);
    datapath.shutdown()?;
    served
}

/// Answers `dutnet stats` on the control socket (the only verb that means
/// something here) until SIGINT or SIGTERM.
fn serve_stats_until_signal(
    runtime: &tokio::runtime::Runtime,
    (mut term, mut int): (tokio::signal::unix::Signal, tokio::signal::unix::Signal),
    datapath: &EbpfDatapath,
    interfaces: &[String],
) -> Result<()> {
    runtime.block_on(async {
        let (requests, mut pending) = tokio::sync::mpsc::channel(8);
        let _control = ControlServer::start(&Paths::from_env().control_socket(), requests, None)?;
        info!(?interfaces, "attached; stop with Ctrl-C or SIGTERM");
        loop {
            tokio::select! {
                _ = term.recv() => return Ok(()),
                _ = int.recv() => return Ok(()),
                Some((request, reply)) = pending.recv() => {
                    let _ = reply.send(answer(datapath, &request));
                }
            }
        }
    })
}

fn answer(datapath: &EbpfDatapath, request: &Request) -> Response {
    if *request != Request::Stats {
        return Response::Error(Failure::invalid(
            "`dutnet attach` only counts packets and answers `dutnet stats`; run `dutnet load FILE` for the other verbs",
        ));
    }
    match datapath.stats() {
        Ok(stats) => Response::Ok(Reply::Stats {
            datapath: "ebpf".to_owned(),
            interfaces: stats
                .iter()
                .map(|s| InterfaceCounters::new(s, None))
                .collect(),
            networks: Vec::new(),
            uptime_seconds: 0,
        }),
        Err(e) => Response::Error(Failure::failed(format!("reading the counters failed: {e}"))),
    }
}
