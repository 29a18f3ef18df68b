//! One 64-byte UDP measurement: generator in the DUT namespace pinned to one
//! core, receiver in the LAN namespace pinned to the other.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use dutnet_tests::{
    generator::{self, DST_PORT_BASE, DST_PORTS, Load, PacketSocket, Template},
    lab::config::{DUT_IP, LAN_IP},
};

use super::{
    cpu::{self, CpuTimes},
    lab::Lab,
    receiver,
};

/// Core of the generator (and so of the forwarding path) and of the receiver.
pub const SENDER_CPU: usize = 0;
pub const RECEIVER_CPU: usize = 1;

/// The outcome of one load.
#[derive(Clone, Copy, Debug)]
pub struct UdpResult {
    pub sent: u64,
    /// Packets per second the generator sent.
    pub offered: f64,
    pub received: u64,
    /// Packets per second received at the LAN host.
    pub rate: f64,
    /// Busy share of all cores while it ran, in percent.
    pub cpu_busy: f64,
    /// Sending core's CPU time per packet received, in ns: the whole path's
    /// cost (generator, DUT NIC, exporter, LAN host up to the socket), and
    /// far less disturbed than packets/s by other work on the machine.
    pub cpu_ns_per_packet: f64,
}

pub fn measure(lab: &Lab, load: Load) -> Result<UdpResult> {
    let sockets = lab
        .lan
        .enter(|| receiver::bind(LAN_IP, DST_PORT_BASE, DST_PORTS))
        .context("binding the receiver in the LAN namespace")?;
    let packet_socket = lab
        .dut
        .enter(|| PacketSocket::open("eth0"))
        .context("opening a packet socket on the DUT's NIC")?;
    let template = Template::new(DUT_IP, LAN_IP, lab.gateway_mac, lab.dut_mac);
    let done = Arc::new(AtomicBool::new(false));
    // The receiver outlives the sender by its drain time, never by more
    // than this.
    let receive_limit = load.limit + Duration::from_secs(2);

    let before = CpuTimes::now();
    let receiver = {
        let done = Arc::clone(&done);
        // Named, so `perf report --comms bench-send` shows the path's cost.
        std::thread::Builder::new()
            .name("bench-receive".to_owned())
            .spawn(move || -> Result<receiver::Received> {
                cpu::pin_to(RECEIVER_CPU)?;
                Ok(receiver::receive(&sockets, &done, receive_limit))
            })?
    };
    let sender = std::thread::Builder::new()
        .name("bench-send".to_owned())
        .spawn(move || -> Result<generator::Sent> {
            cpu::pin_to(SENDER_CPU)?;
            generator::send(&packet_socket, &template, load).context("sendmmsg on the DUT NIC")
        })?;
    let sent = sender.join();
    let cpu_busy = CpuTimes::now().busy_percent_since(before);
    done.store(true, Ordering::Release);
    let received = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("the receiver thread panicked"))??;
    let sent = sent.map_err(|_| anyhow::anyhow!("the sender thread panicked"))??;

    let expected = lab.path.source_seen_by_lan();
    if received.packets == 0 {
        bail!(
            "{}: the LAN host received none of {} packets",
            lab.path.title(),
            sent.packets
        );
    }
    if received.sources.iter().any(|s| *s != expected) {
        bail!(
            "{}: the LAN host saw sources {:?}, expected only {expected}",
            lab.path.title(),
            received.sources
        );
    }
    Ok(UdpResult {
        sent: sent.packets,
        offered: sent.packets as f64 / sent.elapsed.as_secs_f64().max(1e-9),
        received: received.packets,
        rate: received.rate(),
        cpu_busy,
        cpu_ns_per_packet: sent.cpu.as_nanos() as f64 / received.packets as f64,
    })
}

/// Sends `load` from the DUT's NIC on the sending core, with nothing
/// listening for it: a table fill or a flood counted elsewhere.
pub fn send_only(lab: &Lab, load: Load) -> Result<generator::Sent> {
    let packet_socket = lab
        .dut
        .enter(|| PacketSocket::open("eth0"))
        .context("opening a packet socket on the DUT's NIC")?;
    let template = Template::new(DUT_IP, LAN_IP, lab.gateway_mac, lab.dut_mac);
    std::thread::Builder::new()
        .name("bench-send".to_owned())
        .spawn(move || -> Result<generator::Sent> {
            cpu::pin_to(SENDER_CPU)?;
            generator::send(&packet_socket, &template, load).context("sendmmsg on the DUT NIC")
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("the sender thread panicked"))?
}
