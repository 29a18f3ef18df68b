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
use dutnet_tests::{Netns, Topology, clients, cmd};

use crate::{run, setup};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    seconds: Option<u64>,
}

/// eprintln! that never panics: after SIGHUP (the terminal closed) stderr
/// is gone, and the demo must still get to its cleanup.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

fn step(text: &str) {
    say!("\n==> {text}");
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
    say!(
        "the demo runs until Ctrl-C{} (closing the terminal also stops it), and removes everything it made",
        args.seconds
            .map_or_else(String::new, |s| format!(" or for {s} s"))
    );

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
        // The MACs examples/demo.yaml has static leases for.
        dut.ip(&format!("link set eth0 address 02:00:00:00:0{n}:0a"));
        say!(
            "    {} eth0 (02:00:00:00:0{n}:0a)  <->  exporter dn-dut{n}",
            dut.name
        );
    }
    say!("    both DUT NICs carry the same plan: 192.168.100.0/24, gateway .1, board at .10");

    step("dutnet load examples/demo.yaml (inside the exporter namespace)");
    let env = [
        ("DUTNET_BPFFS", lab.bpffs().display().to_string()),
        ("DUTNET_STATE_DIR", lab.path("state").display().to_string()),
        ("DUTNET_RUN_DIR", lab.path("run").display().to_string()),
        ("DUTNET_LOG", "info".to_owned()),
    ];
    let config = std::env::current_dir()?.join("examples/demo.yaml");
    let mut daemon = exporter.spawn(
        &dutnet.to_string_lossy(),
        &["load", &config.to_string_lossy()],
        &env,
        lab.path("dutnet.log"),
    );
    say!(
        "    from another shell: sudo ip netns exec dndemo-exporter env DUTNET_STATE_DIR={} DUTNET_RUN_DIR={} {} status",
        lab.path("state").display(),
        lab.path("run").display(),
        dutnet.display()
    );
    let dutnet_cmd = |args: &[&str]| {
        let mut command = exporter.command(&dutnet.to_string_lossy(), args);
        command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        cmd::run(command, Duration::from_secs(10))
    };
    let up = cmd::wait_for(Duration::from_secs(15), || {
        (daemon.log().matches("network up").count() == 2).then_some(())
    });
    if up.is_none() {
        bail!("dutnet did not come up:\n{}", daemon.log());
    }
    for line in daemon.log().lines().filter(|l| l.contains("network up")) {
        say!(
            "    {}",
            line.split("network up").nth(1).unwrap_or(line).trim()
        );
    }

    step("each DUT asks dutnet for a lease (dhclient)");
    for dut in &duts {
        let leased = dhcp_lease(&lab, dut)?;
        dut.ip(&format!("addr add {leased}/24 dev eth0"));
        dut.ip("route add default via 192.168.100.1");
        say!(
            "    {} got {leased} from its own network's DHCP server",
            dut.name
        );
    }

    step("each DUT resolves names through its gateway (dig @192.168.100.1)");
    for dut in &duts {
        for name in [
            "controller.lab.local",
            "board1.lab.local",
            "board2.lab.local",
        ] {
            let dig = dut.exec("dig", &["+short", "+time=2", "@192.168.100.1", name]);
            let answer = dig.stdout.trim();
            let answer = if answer.is_empty() {
                "(not in this network)"
            } else {
                answer
            };
            say!("    {}: {name} -> {answer}", dut.name);
        }
    }

    step("both DUTs (same address!) ping the LAN host 10.99.0.1 at once, through NAT");
    say!("    the LAN host has no route to 192.168.100.0/24: replies find their DUT by flow");
    let pings: Vec<_> = duts
        .iter()
        .map(|dut| {
            let mut ping = dut.command("ping", &["-c", "3", "-i", "0.2", "-W", "1", "10.99.0.1"]);
            ping.stdout(std::process::Stdio::piped());
            (dut.name.clone(), ping.spawn())
        })
        .collect();
    for (name, ping) in pings {
        let output = ping?.wait_with_output()?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let summary = stdout
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or("no answer");
        say!("    {name}: {summary}");
    }

    step("the LAN host reaches board1 at its public address 10.99.0.51 (1:1 NAT)");
    let ping = lan.exec("ping", &["-c", "2", "-i", "0.2", "-W", "1", "10.99.0.51"]);
    let summary = ping
        .stdout
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("no answer");
    say!("    {}: {summary}", lan.name);

    let limit = args.seconds.map(Duration::from_secs);
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) && limit.is_none_or(|l| started.elapsed() < l) {
        for dut in &duts {
            dut.exec("ping", &["-c", "1", "-W", "1", "10.99.0.1"]);
            dut.exec(
                "dig",
                &[
                    "+short",
                    "+time=1",
                    "+tries=1",
                    "@192.168.100.1",
                    "controller.lab.local",
                ],
            );
        }
        if !daemon.is_running() {
            bail!("dutnet died; its log:\n{}", daemon.log());
        }
        // Redrawn in place on a terminal, like `dutnet stats --watch`.
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            say!("\x1b[H\x1b[2J");
        }
        step("dutnet stats (per DUT NIC); Ctrl-C stops the demo and removes the lab");
        say!("{}", dutnet_cmd(&["stats"]).stdout);
        for _ in 0..20 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    step("stopping dutnet (SIGTERM): it restores the exporter's interfaces");
    daemon.terminate();
    drop(lab);
    say!("done: nothing of the demo remains");
    Ok(())
}

/// Runs dhclient once in `dut` and returns the address it was given.
fn dhcp_lease(lab: &Topology, dut: &Netns) -> Result<String> {
    let (out, leases) = clients::dhclient(dut, "eth0", &lab.dir, "");
    if !out.success() {
        bail!("dhclient in {} failed:\n{}", dut.name, out.stderr);
    }
    clients::leased_address(&leases).ok_or_else(|| anyhow::anyhow!("no lease for {}", dut.name))
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
        // The terminal running the demo closed: clean up all the same.
        libc::signal(libc::SIGHUP, on_signal as *const () as libc::sighandler_t);
    }
}
