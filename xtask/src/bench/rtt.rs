//! UDP round trip: the DUT sends a 64-byte frame's worth of UDP, the LAN host
//! echoes it, one at a time.
use std::{
    net::{SocketAddrV4, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use dutnet_tests::{Netns, lab::config::LAN_IP};

use super::{cpu, lab::Lab};

const ECHO_PORT: u16 = 7007;
/// 18 bytes: a 64-byte frame on the wire, like the packet-rate load.
const PAYLOAD_LEN: usize = 18;
/// A reply later than this counts as lost.
const REPLY_TIMEOUT: Duration = Duration::from_millis(200);
/// Round trips before the first one measured (caches, neighbours, flows).
const WARM_UP: u32 = 100;

/// Round-trip times in microseconds.
#[derive(Clone, Copy, Debug)]
pub struct RttResult {
    pub p50_us: f64,
    pub p99_us: f64,
    pub lost: u32,
    /// Probes sent, warm-up included: what they add to the LAN NIC's count.
    pub probes: u32,
}

/// Where the client and the echo server run, and how often the client asks.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    pub client_cpu: usize,
    pub echo_cpu: usize,
    /// A probe goes at most this often (zero: as soon as the last came back).
    pub every: Duration,
}

/// The round trip of the bench's own row: back to back, client on the
/// sending core, echo on the other.
const BACK_TO_BACK: Probe = Probe {
    client_cpu: 0,
    echo_cpu: 1,
    every: Duration::ZERO,
};

/// `round_trips` echoes (plus a warm-up), stopping at `limit` in any case.
pub fn measure(lab: &Lab, round_trips: u32, limit: Duration) -> Result<RttResult> {
    measure_from(lab, &lab.dut, BACK_TO_BACK, round_trips, limit)
}

/// The same from `dut` (a namespace of `lab`), as `probe` says.
pub fn measure_from(
    lab: &Lab,
    dut: &Netns,
    probe: Probe,
    round_trips: u32,
    limit: Duration,
) -> Result<RttResult> {
    let server = lab
        .lan
        .enter(|| -> std::io::Result<UdpSocket> {
            let socket = UdpSocket::bind(SocketAddrV4::new(LAN_IP, ECHO_PORT))?;
            socket.set_read_timeout(Some(Duration::from_millis(50)))?;
            Ok(socket)
        })
        .context("binding the echo server in the LAN namespace")?;
    let client = dut
        .enter(|| -> std::io::Result<UdpSocket> {
            let socket = UdpSocket::bind("0.0.0.0:0")?;
            socket.connect(SocketAddrV4::new(LAN_IP, ECHO_PORT))?;
            socket.set_read_timeout(Some(REPLY_TIMEOUT))?;
            Ok(socket)
        })
        .context("opening the DUT's UDP socket")?;
    let stop = Arc::new(AtomicBool::new(false));
    let echo = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || -> Result<()> {
            cpu::pin_to(probe.echo_cpu)?;
            let mut buffer = [0u8; 256];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = server.recv_from(&mut buffer) {
                    let _ = server.send_to(&buffer[..n], from);
                }
            }
            Ok(())
        })
    };
    let samples = std::thread::spawn(move || -> Result<Pong> {
        cpu::pin_to(probe.client_cpu)?;
        ping_pong(&client, round_trips, limit, probe.every)
    })
    .join();
    stop.store(true, Ordering::Relaxed);
    let _ = echo.join();
    let Pong {
        mut samples,
        lost,
        probes,
    } = samples.map_err(|_| anyhow::anyhow!("the round-trip thread panicked"))??;
    if samples.is_empty() {
        anyhow::bail!("{}: no UDP echo came back", lab.path.title());
    }
    samples.sort_by(f64::total_cmp);
    Ok(RttResult {
        p50_us: percentile(&samples, 50.0),
        p99_us: percentile(&samples, 99.0),
        lost,
        probes,
    })
}

/// What the client saw: samples in µs, probes lost and sent.
struct Pong {
    samples: Vec<f64>,
    lost: u32,
    probes: u32,
}

fn ping_pong(
    client: &UdpSocket,
    round_trips: u32,
    limit: Duration,
    every: Duration,
) -> Result<Pong> {
    let started = Instant::now();
    let mut samples = Vec::with_capacity(round_trips as usize);
    let mut lost = 0;
    let mut probes = 0;
    let mut payload = [0u8; PAYLOAD_LEN];
    let mut reply = [0u8; 256];
    let mut next = started;
    for seq in 0..WARM_UP + round_trips {
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if started.elapsed() >= limit {
            break;
        }
        payload[..4].copy_from_slice(&seq.to_be_bytes());
        let sent_at = Instant::now();
        next = sent_at + every;
        client.send(&payload)?;
        probes += 1;
        // A late reply to an earlier probe is skipped, not taken for this one.
        let answered = loop {
            match client.recv(&mut reply) {
                Ok(n) if n >= 4 && reply[..4] == seq.to_be_bytes() => break true,
                Ok(_) => {}
                Err(_) => break false,
            }
        };
        match (answered, seq >= WARM_UP) {
            (true, true) => samples.push(sent_at.elapsed().as_secs_f64() * 1e6),
            (false, true) => lost += 1,
            _ => {}
        }
    }
    Ok(Pong {
        samples,
        lost,
        probes,
    })
}

/// Nearest-rank percentile of sorted `samples`.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 50.0), 50.0);
        assert_eq!(percentile(&samples, 99.0), 99.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
    }
}
