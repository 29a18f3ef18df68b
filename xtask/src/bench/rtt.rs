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

use super::{
    cpu,
    lab::{LAN_ADDR, Lab},
};

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
}

/// `round_trips` echoes (plus a warm-up), stopping at `limit` in any case.
pub fn measure(lab: &Lab, round_trips: u32, limit: Duration) -> Result<RttResult> {
    let server = lab
        .lan
        .enter(|| -> std::io::Result<UdpSocket> {
            let socket = UdpSocket::bind(SocketAddrV4::new(LAN_ADDR, ECHO_PORT))?;
            socket.set_read_timeout(Some(Duration::from_millis(50)))?;
            Ok(socket)
        })
        .context("binding the echo server in the LAN namespace")?;
    let client = lab
        .dut
        .enter(|| -> std::io::Result<UdpSocket> {
            let socket = UdpSocket::bind("0.0.0.0:0")?;
            socket.connect(SocketAddrV4::new(LAN_ADDR, ECHO_PORT))?;
            socket.set_read_timeout(Some(REPLY_TIMEOUT))?;
            Ok(socket)
        })
        .context("opening the DUT's UDP socket")?;
    let stop = Arc::new(AtomicBool::new(false));
    let echo = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || -> Result<()> {
            cpu::pin_to(1)?;
            let mut buffer = [0u8; 256];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = server.recv_from(&mut buffer) {
                    let _ = server.send_to(&buffer[..n], from);
                }
            }
            Ok(())
        })
    };
    let samples = std::thread::spawn(move || -> Result<(Vec<f64>, u32)> {
        cpu::pin_to(0)?;
        ping_pong(&client, round_trips, limit)
    })
    .join();
    stop.store(true, Ordering::Relaxed);
    let _ = echo.join();
    let (mut samples, lost) =
        samples.map_err(|_| anyhow::anyhow!("the round-trip thread panicked"))??;
    if samples.is_empty() {
        anyhow::bail!("{}: no UDP echo came back", lab.path.title());
    }
    samples.sort_by(f64::total_cmp);
    Ok(RttResult {
        p50_us: percentile(&samples, 50.0),
        p99_us: percentile(&samples, 99.0),
        lost,
    })
}

fn ping_pong(client: &UdpSocket, round_trips: u32, limit: Duration) -> Result<(Vec<f64>, u32)> {
    let started = Instant::now();
    let mut samples = Vec::with_capacity(round_trips as usize);
    let mut lost = 0;
    let mut payload = [0u8; PAYLOAD_LEN];
    let mut reply = [0u8; 256];
    for seq in 0..WARM_UP + round_trips {
        if started.elapsed() >= limit {
            break;
        }
        payload[..4].copy_from_slice(&seq.to_be_bytes());
        let sent_at = Instant::now();
        client.send(&payload)?;
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
    Ok((samples, lost))
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
