//! TCP connection rate: connect, send a request, read the response, close,
//! one after the other from the DUT to a server on the LAN host; every
//! connection is a new flow for the NAT.
use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

use super::lab::Lab;

const PORT: u16 = 5300;
const REQUEST: &[u8; 32] = b"GET /a-small-request-of-32-bytes";

/// Connections per second over at most `limit` and `max` connections (the
/// count bound keeps the DUT's ephemeral ports out of TIME_WAIT exhaustion).
pub fn measure(lab: &Lab, limit: Duration, max: u32) -> Result<f64> {
    let listener = lab
        .lan
        .enter(|| TcpListener::bind(SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, 1), PORT)))?;
    listener.set_nonblocking(true)?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = std::thread::spawn({
        let stop = Arc::clone(&stop);
        move || serve(&listener, &stop)
    });
    let server_addr = SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, 1), PORT);
    let result = lab.dut.enter(move || -> std::io::Result<(u32, Duration)> {
        let start = Instant::now();
        let mut done = 0u32;
        let mut response = [0u8; 32];
        while done < max && start.elapsed() < limit {
            let mut stream =
                TcpStream::connect_timeout(&server_addr.into(), Duration::from_secs(2))?;
            stream.set_read_timeout(Some(Duration::from_secs(2)))?;
            stream.write_all(REQUEST)?;
            stream.read_exact(&mut response)?;
            done += 1;
        }
        Ok((done, start.elapsed()))
    });
    stop.store(true, Ordering::Relaxed);
    let _ = server.join();
    let (done, elapsed) = result?;
    if done == 0 {
        bail!("no connection completed");
    }
    Ok(f64::from(done) / elapsed.as_secs_f64())
}

/// Answers every connection with its own request, until `stop`.
fn serve(listener: &TcpListener, stop: &AtomicBool) {
    let mut request = [0u8; 32];
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                if stream.read_exact(&mut request).is_ok() {
                    let _ = stream.write_all(&request);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(_) => break,
        }
    }
}
