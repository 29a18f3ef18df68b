//! DNS queries per second for a local name: a load generator in the DUT
//! namespace, several sockets each keeping a window of queries in flight,
//! against dutnet's DNS (a `dns_entries` record) or dnsmasq (a
//! `--host-record`) on the gateway address. The server runs on one core,
//! the generator on the other.
//!
//! ```text
//! dut  eth0 192.168.100.10/24 ── dn-dut1 192.168.100.1/24  exporter (DNS :53)
//!                                dn-up   10.99.0.2/24   ── eth0 10.99.0.1/24  lan
//! ```
use std::{
    io::ErrorKind,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    path::Path as FsPath,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use dutnet_tests::{Topology, prereq};

use super::{Server, start_dnsmasq, start_dutnet};
use crate::bench::cpu;

const GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 1);
const NAME: &str = "bench.lab.local";
const ANSWER: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 5);
/// Sockets of the generator, one thread each.
const SOCKETS: u64 = 4;
/// Queries each socket keeps in flight.
const WINDOW: u16 = 16;
/// No reply within this: what is in flight counts as lost and is resent.
const REPLY_TIMEOUT: Duration = Duration::from_millis(100);
const SERVER_CPU: usize = 0;
const CLIENT_CPU: usize = 1;

#[derive(Clone, Copy, Debug)]
pub struct DnsResult {
    pub answered: u64,
    pub lost: u64,
    /// Correct answers per second.
    pub rate: f64,
}

pub fn measure(
    server: Server,
    dutnet: &FsPath,
    run: usize,
    queries: u64,
    limit: Duration,
) -> Result<DnsResult> {
    prereq::require("dnsmasq", "dnsmasq");
    let mut topology = Topology::with_prefix(&format!("dnbench-dn{}{run}", server.tag()));
    let (exporter, _lan) = topology.exporter_and_lan();
    let dut = topology.netns("dut");
    topology.veth((&exporter, "dn-dut1"), (&dut, "eth0"));
    dut.ip("addr add 192.168.100.10/24 dev eth0");

    let process = match server {
        Server::Dutnet => {
            let yaml = format!(
                "networks:\n  - name: bench\n    interface: dn-dut1\n    subnet: 192.168.100.0/24\n    gateway_ip: {GATEWAY}\n    upstream_interface: dn-up\n    nat_mode: masquerade\n    dhcp_enabled: false\n    dns_servers: [\"10.99.0.1\"]\n    dns_entries: [{{hostname: {NAME}, ip: {ANSWER}}}]\n"
            );
            start_dutnet(&topology, &exporter, dutnet, &yaml, Duration::from_secs(20))?.0
        }
        Server::Dnsmasq | Server::DnsmasqNoPing => {
            exporter.ip(&format!("addr add {GATEWAY}/24 dev dn-dut1"));
            let args = [
                "--port=53".to_owned(),
                format!("--listen-address={GATEWAY}"),
                "--bind-interfaces".to_owned(),
                "--no-resolv".to_owned(),
                "--no-hosts".to_owned(),
                "--server=10.99.0.1".to_owned(),
                format!("--host-record={NAME},{ANSWER}"),
            ];
            let probe = dut.clone();
            start_dnsmasq(&topology, &exporter, &args, move || {
                probe
                    .enter(|| load(1, 1, Duration::from_millis(300)))
                    .is_ok_and(|r| r.answered == 1)
            })?
        }
    };
    cpu::pin_process(process.pid(), SERVER_CPU)?;
    // Warm-up (and proof the record is served) before the measured load.
    let warm = dut.enter(|| load(1, 100, Duration::from_secs(2)))?;
    if warm.answered == 0 {
        bail!("{}: no answer for {NAME} from {GATEWAY}", server.title());
    }
    let result = dut.enter(move || load(SOCKETS, queries, limit))?;
    if result.answered == 0 {
        bail!("{}: none of {queries} queries answered", server.title());
    }
    Ok(result)
}

/// `queries` queries over `sockets` sockets (one thread each, pinned to
/// [`CLIENT_CPU`]), stopping at `limit`. Call it inside the DUT namespace.
fn load(sockets: u64, queries: u64, limit: Duration) -> Result<DnsResult> {
    let started = Instant::now();
    let threads: Vec<_> = (0..sockets)
        .map(|k| {
            let socket = UdpSocket::bind("0.0.0.0:0")?;
            socket.connect(SocketAddrV4::new(GATEWAY, 53))?;
            socket.set_read_timeout(Some(REPLY_TIMEOUT))?;
            let share = queries / sockets + u64::from(k < queries % sockets);
            Ok(std::thread::spawn(move || {
                cpu::pin_to(CLIENT_CPU)?;
                one_socket(&socket, share, started + limit)
            }))
        })
        .collect::<std::io::Result<_>>()
        .context("opening the generator's sockets")?;
    let mut total = DnsResult {
        answered: 0,
        lost: 0,
        rate: 0.0,
    };
    for thread in threads {
        let (answered, lost) = thread
            .join()
            .map_err(|_| anyhow::anyhow!("a DNS load thread panicked"))??;
        total.answered += answered;
        total.lost += lost;
    }
    total.rate = total.answered as f64 / started.elapsed().as_secs_f64();
    Ok(total)
}

/// One socket's share: keeps [`WINDOW`] queries in flight until `share`
/// were answered or lost, or `deadline`. Returns (answered, lost).
fn one_socket(socket: &UdpSocket, share: u64, deadline: Instant) -> Result<(u64, u64)> {
    let (mut sent, mut answered, mut lost) = (0u64, 0u64, 0u64);
    let mut in_flight = 0u64;
    let mut id: u16 = 0;
    let mut buffer = [0u8; 512];
    let mut send_one = |in_flight: &mut u64, sent: &mut u64| -> Result<()> {
        id = id.wrapping_add(1);
        socket.send(&query(id))?;
        *in_flight += 1;
        *sent += 1;
        Ok(())
    };
    while sent < share.min(u64::from(WINDOW)) {
        send_one(&mut in_flight, &mut sent)?;
    }
    while answered + lost < share && Instant::now() < deadline {
        match socket.recv(&mut buffer) {
            Ok(n) => {
                if !is_answer(&buffer[..n]) {
                    bail!("a reply without {NAME} = {ANSWER}: {:02x?}", &buffer[..n]);
                }
                answered += 1;
                in_flight = in_flight.saturating_sub(1);
                if sent < share {
                    send_one(&mut in_flight, &mut sent)?;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                // Nothing for a while: what is in flight is lost; refill.
                lost += in_flight;
                in_flight = 0;
                while sent < share && in_flight < u64::from(WINDOW) {
                    send_one(&mut in_flight, &mut sent)?;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok((answered, lost))
}

/// A standard query (recursion desired) for the A record of [`NAME`].
fn query(id: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(40);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in NAME.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// A response, NOERROR, with at least one answer carrying [`ANSWER`].
fn is_answer(reply: &[u8]) -> bool {
    reply.len() > 12
        && reply[2] & 0x80 != 0
        && reply[3] & 0x0f == 0
        && u16::from_be_bytes([reply[6], reply[7]]) >= 1
        && reply[12..].windows(4).any(|w| w == ANSWER.octets())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_asks_for_the_a_record_of_the_name() {
        let q = query(0x1234);
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[12..18], b"\x05bench");
        assert_eq!(&q[q.len() - 4..], &[0, 1, 0, 1]);
    }

    #[test]
    fn an_answer_must_carry_the_address() {
        let mut reply = query(7);
        reply[2] = 0x81;
        reply[3] = 0x80;
        reply[7] = 1;
        reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4]);
        assert!(!is_answer(&reply));
        reply.extend_from_slice(&ANSWER.octets());
        assert!(is_answer(&reply));
        reply[3] = 0x83; // NXDOMAIN
        assert!(!is_answer(&reply));
    }
}
