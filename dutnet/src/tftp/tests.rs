//! The server over loopback with a hand-written client: negotiation,
//! windows, retransmission, refusals, the transfer bound.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::timeout;

use super::root::tests::TempDir;
use super::*;

const FAST: Pacing = Pacing {
    retransmit: Duration::from_millis(100),
    attempts: 3,
    max_duration: Duration::from_secs(10),
};

async fn server(dir: &TempDir, max_transfers: usize) -> TftpServer {
    server_with(dir, max_transfers, FAST).await
}

async fn server_with(dir: &TempDir, max_transfers: usize, pacing: Pacing) -> TftpServer {
    TftpServer::start(TftpConfig {
        network: "lab".into(),
        interface: None,
        listen: Ipv4Addr::LOCALHOST,
        port: 0,
        root: dir.path().to_owned(),
        max_transfers,
        pacing,
    })
    .await
    .unwrap()
}

fn rrq(name: &str, options: &[(&str, &str)]) -> Vec<u8> {
    let mut out = vec![0, 1];
    for field in [name, "octet"]
        .into_iter()
        .chain(options.iter().flat_map(|(k, v)| [*k, *v]))
    {
        out.extend_from_slice(field.as_bytes());
        out.push(0);
    }
    out
}

/// Content that shows misplaced blocks.
fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

async fn recv(sock: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 70_000];
    let (n, from) = timeout(Duration::from_secs(3), sock.recv_from(&mut buf))
        .await
        .expect("the server answers")
        .unwrap();
    buf.truncate(n);
    (buf, from)
}

fn ack(block: u16) -> Vec<u8> {
    let mut out = vec![0, 4];
    out.extend_from_slice(&block.to_be_bytes());
    out
}

/// Reads `name` with `options`, acknowledging every `ack_every` blocks
/// (the windowsize) and the last one; `skip_first` ignores the first
/// window once, to make the server retransmit it.
async fn fetch(
    addr: SocketAddrV4,
    name: &str,
    options: &[(&str, &str)],
    blksize: usize,
    ack_every: u16,
    skip_first: bool,
) -> Result<(Vec<u8>, Vec<u8>), (u16, String)> {
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    sock.send_to(&rrq(name, options), addr).await.unwrap();
    let (first, tid) = recv(&sock).await;
    let mut oack = Vec::new();
    let mut pending = Some(first);
    if pending.as_ref().is_some_and(|p| p[1] == 6) {
        oack = pending.take().unwrap_or_default();
        sock.send_to(&ack(0), tid).await.unwrap();
    }
    let mut out = Vec::new();
    let mut expected: u16 = 1;
    let mut skipped = !skip_first;
    loop {
        let packet = match pending.take() {
            Some(p) => p,
            None => recv(&sock).await.0,
        };
        match packet[1] {
            5 => {
                let code = u16::from_be_bytes([packet[2], packet[3]]);
                let text = String::from_utf8_lossy(&packet[4..packet.len() - 1]).into_owned();
                return Err((code, text));
            }
            3 => {}
            other => panic!("unexpected opcode {other}"),
        }
        let block = u16::from_be_bytes([packet[2], packet[3]]);
        if block != expected {
            continue;
        }
        let data = &packet[4..];
        let last = data.len() < blksize;
        if !skipped {
            // Pretend the whole first window got lost.
            if block == ack_every || last {
                skipped = true;
                expected = 1;
                out.clear();
            } else {
                expected = expected.wrapping_add(1);
                out.extend_from_slice(data);
            }
            continue;
        }
        out.extend_from_slice(data);
        if block % ack_every == 0 || last {
            sock.send_to(&ack(block), tid).await.unwrap();
        }
        if last {
            return Ok((out, oack));
        }
        expected = expected.wrapping_add(1);
    }
}

#[tokio::test]
async fn windowed_transfer_with_every_option_delivers_the_file() {
    let dir = TempDir::new("tftp-window");
    let file = content(1468 * 40 + 17);
    std::fs::write(dir.path().join("kernel"), &file).unwrap();
    let server = server(&dir, 4).await;
    let options = [("blksize", "1468"), ("tsize", "0"), ("windowsize", "8")];
    let (got, oack) = fetch(server.local_addr(), "kernel", &options, 1468, 8, false)
        .await
        .unwrap();
    assert_eq!(got, file);
    let expected_oack = format!(
        "\0\x06blksize\01468\0tsize\0{}\0windowsize\08\0",
        file.len()
    );
    assert_eq!(oack, expected_oack.as_bytes());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let c = server.counters();
    assert_eq!((c.transfers_ok, c.bytes_sent), (1, file.len() as u64));
}

#[tokio::test]
async fn a_lost_window_is_sent_again() {
    let dir = TempDir::new("tftp-lost");
    let file = content(512 * 10);
    std::fs::write(dir.path().join("f"), &file).unwrap();
    let server = server(&dir, 4).await;
    let (got, _) = fetch(
        server.local_addr(),
        "f",
        &[("windowsize", "4")],
        512,
        4,
        true,
    )
    .await
    .unwrap();
    // A multiple of the block size ends with an empty block.
    assert_eq!(got, file);
}

#[tokio::test]
async fn plain_rfc1350_lock_step() {
    let dir = TempDir::new("tftp-plain");
    let file = content(1000);
    std::fs::write(dir.path().join("f"), &file).unwrap();
    let server = server(&dir, 4).await;
    let (got, oack) = fetch(server.local_addr(), "/f", &[], 512, 1, false)
        .await
        .unwrap();
    assert!(oack.is_empty());
    assert_eq!(got, file);
}

#[tokio::test]
async fn refusals_name_the_tftp_error() {
    let dir = TempDir::new("tftp-refuse");
    std::fs::write(dir.path().join("f"), b"x").unwrap();
    let server = server(&dir, 4).await;
    let addr = server.local_addr();
    let err = |name: &'static str| async move {
        fetch(addr, name, &[], 512, 1, false).await.unwrap_err().0
    };
    assert_eq!(err("../etc/hostname").await, 2);
    assert_eq!(err("/etc/hostname").await, 1);
    assert_eq!(err("missing").await, 1);
    // A write request.
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let mut wrq = rrq("f", &[]);
    wrq[1] = 2;
    sock.send_to(&wrq, addr).await.unwrap();
    let (reply, _) = recv(&sock).await;
    assert_eq!(&reply[..4], [0, 5, 0, 2]);
    assert_eq!(server.counters().requests_refused, 4);
}

#[tokio::test]
async fn a_silent_client_fails_the_transfer_and_frees_its_slot() {
    let dir = TempDir::new("tftp-silent");
    std::fs::write(dir.path().join("f"), content(5000)).unwrap();
    let server = server(&dir, 1).await;
    let addr = server.local_addr();
    let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    silent.send_to(&rrq("f", &[]), addr).await.unwrap();
    let _ = recv(&silent).await;
    // The only slot is taken: the next request is told to retry.
    assert_eq!(
        fetch(addr, "f", &[], 512, 1, false).await.unwrap_err(),
        (0, "server busy, retry later".to_owned())
    );
    // 3 attempts of 100 ms, then the slot is free again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(server.counters().transfers_failed, 1);
    let (got, _) = fetch(addr, "f", &[], 512, 1, false).await.unwrap();
    assert_eq!(got.len(), 5000);
    server.shutdown().await;
}

#[tokio::test]
async fn a_trickling_client_is_cut_off_at_the_transfer_limit() {
    let dir = TempDir::new("tftp-trickle");
    std::fs::write(dir.path().join("f"), content(512 * 100)).unwrap();
    let pacing = Pacing {
        max_duration: Duration::from_millis(300),
        ..FAST
    };
    let server = server_with(&dir, 1, pacing).await;
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    sock.send_to(&rrq("f", &[]), server.local_addr())
        .await
        .unwrap();
    // ACK each block after 50 ms: never a retransmission timeout, but 100
    // blocks take 5 s.
    let ended = timeout(Duration::from_secs(3), async {
        loop {
            let (packet, tid) = recv(&sock).await;
            if packet[1] == 5 {
                return String::from_utf8_lossy(&packet[4..packet.len() - 1]).into_owned();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            sock.send_to(&ack(u16::from_be_bytes([packet[2], packet[3]])), tid)
                .await
                .unwrap();
        }
    })
    .await
    .expect("the server ends the transfer");
    assert_eq!(ended, "transfer took too long");
    assert_eq!(server.counters().transfers_failed, 1);
}
