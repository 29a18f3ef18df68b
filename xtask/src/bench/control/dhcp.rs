//! DHCP leases per second: N BusyBox udhcpc clients, each on its own veth
//! port of one bridge, all started at once against dutnet or dnsmasq.
//!
//! ```text
//! switch  c0..cN ── br0 ── uplink ── dn-dut1 192.168.100.1/24  exporter
//! ```
use std::{
    path::Path as FsPath,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use dutnet_tests::{Topology, prereq};

use super::{Server, listens_udp, poll, start_dnsmasq, start_dutnet};

const RANGE: (&str, &str) = ("192.168.100.10", "192.168.100.250");

/// What one server achieved.
#[derive(Clone, Copy, Debug)]
pub struct DhcpResult {
    /// `clients` / time until every client held a lease; when the limit came
    /// first, the clients that got one / the limit.
    pub rate: f64,
    pub bound: usize,
    pub naks: usize,
}

/// Leases per second: `clients` / time until every client holds a lease.
/// Clients retry until then: a server that NAKs (dnsmasq does when it
/// offered one address to two clients at once) costs the client udhcpc's
/// 3 s back-off, which is part of what is measured.
pub fn measure(
    server: Server,
    dutnet: &FsPath,
    run: usize,
    clients: usize,
    limit: Duration,
) -> Result<DhcpResult> {
    prereq::require("udhcpc", "udhcpc");
    prereq::require("dnsmasq", "dnsmasq");
    let mut topology = Topology::with_prefix(&format!("dnbench-dh{}{run}", server.tag()));
    let exporter = topology.netns("exporter");
    let switch = topology.netns("switch");
    topology.veth((&exporter, "dn-dut1"), (&switch, "uplink"));
    let mut batch =
        String::from("link add br0 type bridge\nlink set br0 up\nlink set uplink master br0\n");
    for i in 0..clients {
        batch.push_str(&format!(
            "link add c{i} type veth peer name p{i}\nlink set p{i} master br0 up\nlink set c{i} up\n"
        ));
    }
    let file = topology.path("switch.batch");
    std::fs::write(&file, batch)?;
    switch.ip(&format!("-batch {}", file.display()));

    // Held until the clients are done; stopped by its PID on drop.
    let mut server_process = match server {
        Server::Dutnet => {
            let yaml = format!(
                "networks:\n  - name: bench\n    interface: dn-dut1\n    subnet: 192.168.100.0/24\n    gateway_ip: 192.168.100.1\n    nat_mode: disabled\n    dhcp_enabled: true\n    lease_time: 1h\n    dhcp_range_start: {}\n    dhcp_range_end: {}\n",
                RANGE.0, RANGE.1
            );
            start_dutnet(&topology, &exporter, dutnet, &yaml, Duration::from_secs(20))?.0
        }
        Server::Dnsmasq | Server::DnsmasqNoPing => {
            exporter.ip("addr add 192.168.100.1/24 dev dn-dut1");
            let mut args = vec![
                "--port=0".to_owned(),
                format!("--dhcp-range={},{},1h", RANGE.0, RANGE.1),
                format!(
                    "--dhcp-leasefile={}",
                    topology.path("dnsmasq.leases").display()
                ),
                "--interface=dn-dut1".to_owned(),
                "--bind-interfaces".to_owned(),
            ];
            if server == Server::DnsmasqNoPing {
                args.push("--no-ping".to_owned());
            }
            start_dnsmasq(&topology, &exporter, &args, || listens_udp(&exporter, 67))?
        }
    };

    let record = topology.path("udhcpc.events");
    let script = topology.path("udhcpc.sh");
    write_script(&script, &record)?;
    let started = Instant::now();
    let mut shell = switch.spawn(
        "sh",
        &[
            "-c",
            &format!(
                "for i in $(seq 0 {}); do (until udhcpc -i c$i -q -f -t 10 -T 2 -A 1 -s {} >/dev/null 2>&1; do sleep 3; done) & done; wait",
                clients - 1,
                script.display()
            ),
        ],
        &[],
        topology.path("udhcpc.log"),
    );
    let all_bound = poll(limit, || {
        (bound(&std::fs::read_to_string(&record).unwrap_or_default()) >= clients)
            .then(|| started.elapsed())
    });
    shell.terminate();
    let events = std::fs::read_to_string(&record).unwrap_or_default();
    let naks = events.lines().filter(|l| l.starts_with("nak ")).count();
    let got = bound(&events);
    if got == 0 && !server_process.is_running() {
        bail!("the server exited:\n{}", server_process.log());
    }
    let elapsed = all_bound.unwrap_or(limit);
    Ok(DhcpResult {
        rate: got as f64 / elapsed.as_secs_f64(),
        bound: got,
        naks,
    })
}

/// The clients' udhcpc script: records `bound <iface> <ip>`; on a NAK it
/// records `nak <iface>` and SIGKILLs its udhcpc, which the shell restarts
/// after udhcpc's own 3 s back-off: BusyBox 1.35's udhcpc was seen never to
/// DISCOVER again after a NAK, and it exits 0 on SIGTERM.
fn write_script(path: &FsPath, record: &FsPath) -> Result<()> {
    let record = record.display();
    let text = format!(
        "#!/bin/sh\ncase \"$1\" in\n  bound) echo \"bound $interface $ip\" >> {record} ;;\n  nak) echo \"nak $interface\" >> {record}; kill -KILL $PPID ;;\nesac\nexit 0\n"
    );
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    Ok(())
}

/// Clients that reported a lease (`bound <iface> <ip>` lines), each once.
fn bound(record: &str) -> usize {
    record
        .lines()
        .filter_map(|l| l.strip_prefix("bound "))
        .filter_map(|l| l.split_whitespace().next())
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_bound_client_once() {
        let record = "bound c0 192.168.100.10\nbound c1 192.168.100.11\nrenew c0 192.168.100.10\nbound c0 192.168.100.10\n";
        assert_eq!(bound(record), 2);
        assert_eq!(bound(""), 0);
    }
}
