//! `cargo xtask demo`: a lab of namespaces with dutnet running in it.
//!
//! Lab: an exporter namespace with two DUT NICs (`dn-dut1`, `dn-dut2`) and an
//! upstream link (`dn-up`) to a lab-LAN host; one DUT namespace behind each
//! DUT NIC. Everything is removed on Ctrl-C or when `--seconds` runs out.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use dutnet_tests::{Netns, Topology, cmd};

use crate::{run, setup};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    seconds: Option<u64>,
}

fn step(text: &str) {
    eprintln!("\n==> {text}");
}

pub fn run(args: &Args) -> Result<()> {
    if !run::is_root() {
        bail!("the demo creates network namespaces: run it as root (`sudo -E cargo xtask demo`)");
    }
    setup::run()?;
    step("building dutnet");
    run::checked(run::cargo().args(["build", "--package", "dutnet", "--bin", "dutnet"]))?;
    let dutnet = std::env::current_dir()?.join("target/debug/dutnet");

    let stop = Arc::new(AtomicBool::new(false));
    install_ctrl_c(&stop);

    step("building the lab: exporter, two DUTs, a lab-LAN host");
    let mut lab = Topology::with_prefix("dndemo");
    let exporter = lab.netns("exporter");
    let lan = lab.netns("lan");
    let duts: Vec<Netns> = ["dut1", "dut2"].iter().map(|n| lab.netns(n)).collect();
    lab.veth((&exporter, "dn-up"), (&lan, "eth0"));
    exporter.ip("addr add 10.99.0.2/24 dev dn-up");
    lan.ip("addr add 10.99.0.1/24 dev eth0");
    for (i, dut) in duts.iter().enumerate() {
        let n = i + 1;
        lab.veth((&exporter, &format!("dn-dut{n}")), (dut, "eth0"));
        exporter.ip(&format!("addr add 192.168.{}.1/24 dev dn-dut{n}", 99 + n));
        dut.ip(&format!("addr add 192.168.{}.10/24 dev eth0", 99 + n));
        eprintln!(
            "    {} eth0 192.168.{}.10  <->  exporter dn-dut{n} 192.168.{}.1",
            dut.name,
            99 + n,
            99 + n
        );
    }

    step("starting dutnet in the exporter namespace (counters on both DUT NICs)");
    let env = [
        ("DUTNET_BPFFS", lab.bpffs().display().to_string()),
        ("DUTNET_LOG", "info".to_owned()),
    ];
    let mut daemon = exporter.spawn(
        &dutnet.to_string_lossy(),
        &["attach", "--interface", "dn-dut1", "--interface", "dn-dut2"],
        &env,
        lab.path("dutnet.log"),
    );
    let stats = || {
        let mut command = exporter.command(&dutnet.to_string_lossy(), &["stats"]);
        command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        cmd::run(command, Duration::from_secs(10))
    };
    if cmd::wait_for(Duration::from_secs(10), || stats().success().then_some(())).is_none() {
        bail!("dutnet did not come up:\n{}", daemon.log());
    }

    let limit = args.seconds.map(Duration::from_secs);
    let started = Instant::now();
    let mut round = 0u32;
    while !stop.load(Ordering::Relaxed) && limit.is_none_or(|l| started.elapsed() < l) {
        round += 1;
        step(&format!("round {round}: each DUT pings its gateway"));
        for (i, dut) in duts.iter().enumerate() {
            let gateway = format!("192.168.{}.1", 100 + i);
            let ping = dut.exec("ping", &["-c", "3", "-i", "0.2", "-W", "1", &gateway]);
            let summary = ping
                .stdout
                .lines()
                .find(|l| l.contains("received"))
                .unwrap_or("no reply");
            eprintln!("    {} -> {gateway}: {summary}", dut.name);
        }
        step("dutnet stats");
        eprint!("{}", stats().stdout);
        std::thread::sleep(Duration::from_secs(2));
    }

    step("stopping dutnet and removing the lab");
    daemon.terminate();
    drop(lab);
    eprintln!("done: nothing of the demo remains");
    Ok(())
}

fn install_ctrl_c(stop: &Arc<AtomicBool>) {
    static STOP: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    let _ = STOP.set(Arc::clone(stop));
    extern "C" fn on_signal(_: libc::c_int) {
        if let Some(stop) = STOP.get() {
            stop.store(true, Ordering::Relaxed);
        }
    }
    // SAFETY: the handler only stores to an atomic, which is signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}
