//! The task's datagram path without a socket: persist-before-ACK, counters,
//! the exhaustion warning's rate limit.

use std::path::PathBuf;

use dhcproto::v4::{DhcpOption, MessageType};

use super::*;
use crate::dhcp::testutil::{client_message, config};

fn shared(lease_file: PathBuf) -> Shared {
    let mut config = config();
    config.lease_file = lease_file;
    let state = LeaseState::new(&config, vec![], SystemTime::now());
    let (leases_tx, _) = watch::channel(Vec::new());
    Shared {
        config,
        state: Mutex::new(state),
        counters: Counters::default(),
        leases_tx,
        persist: Notify::new(),
    }
}

fn packet(ty: MessageType, last: u8, requested: Option<Ipv4Addr>) -> Vec<u8> {
    let mac = [2, 0, 0, 0, 0, last];
    let mut m = client_message(7, ty, mac);
    if let Some(ip) = requested {
        m.opts_mut().insert(DhcpOption::RequestedIpAddress(ip));
        m.opts_mut()
            .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(192, 168, 50, 1)));
    }
    m.to_vec().unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dutnet-dhcp-server-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[tokio::test]
async fn ack_is_persisted_before_it_is_returned() {
    let dir = tmp("persist");
    let file = dir.join("leases");
    let s = shared(file.clone());
    let mut rl = RateLimit::new(EXHAUSTED_WARN_INTERVAL);
    let mut rx = s.leases_tx.subscribe();
    let (_, _, kind) = process(&s, &mut rl, &packet(MessageType::Discover, 1, None))
        .await
        .unwrap();
    assert_eq!(kind, ReplyKind::Offer);
    assert!(!file.exists(), "an offer writes nothing");
    let ip = Ipv4Addr::new(192, 168, 50, 100);
    let (_, _, kind) = process(&s, &mut rl, &packet(MessageType::Request, 1, Some(ip)))
        .await
        .unwrap();
    assert_eq!(kind, ReplyKind::Ack);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains(" 02:00:00:00:00:01 192.168.50.100 * *"),
        "{text}"
    );
    assert!(rx.has_changed().unwrap());
    assert_eq!(rx.borrow_and_update()[0].ip, ip);
    // And the file loads back.
    assert_eq!(store::load(&file).unwrap().len(), 1);
    let c = s.counters.snapshot();
    assert_eq!((c.requests, c.offers, c.acks), (2, 1, 1));
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn no_ack_when_the_lease_file_cannot_be_written() {
    // A regular file where the lease directory should be.
    let blocker = tmp("blocker");
    std::fs::write(&blocker, b"").unwrap();
    let s = shared(blocker.join("leases"));
    let mut rl = RateLimit::new(EXHAUSTED_WARN_INTERVAL);
    let ip = Ipv4Addr::new(192, 168, 50, 100);
    let out = process(&s, &mut rl, &packet(MessageType::Request, 1, Some(ip))).await;
    assert!(out.is_none(), "an ACK we could forget must not be sent");
    assert_eq!(s.counters.snapshot().persist_errors, 1);
    // The next change retries the write.
    assert!(s.state().take_dirty());
    std::fs::remove_file(blocker).unwrap();
}

#[tokio::test]
async fn malformed_packets_are_counted_and_dropped() {
    let s = shared(tmp("malformed").join("leases"));
    let mut rl = RateLimit::new(EXHAUSTED_WARN_INTERVAL);
    let mut bad = packet(MessageType::Discover, 1, None);
    bad[236] = 0; // magic cookie
    assert!(process(&s, &mut rl, &bad).await.is_none());
    assert!(process(&s, &mut rl, &[1, 2, 3]).await.is_none());
    assert!(
        process(&s, &mut rl, &packet(MessageType::Ack, 1, None))
            .await
            .is_none()
    );
    let c = s.counters.snapshot();
    assert_eq!(c.dropped_malformed, 3);
    assert_eq!(c.requests, 0);
}

#[tokio::test]
async fn exhaustion_is_counted() {
    let mut s = shared(tmp("exhausted").join("leases"));
    s.config.range_end = s.config.range_start;
    let mut rl = RateLimit::new(EXHAUSTED_WARN_INTERVAL);
    assert!(
        process(&s, &mut rl, &packet(MessageType::Discover, 1, None))
            .await
            .is_some()
    );
    // Bound: only a lease fills the pool (an offer is reclaimable).
    let only = s.config.range_start;
    assert!(
        process(&s, &mut rl, &packet(MessageType::Request, 1, Some(only)))
            .await
            .is_some()
    );
    for last in 2..10 {
        assert!(
            process(&s, &mut rl, &packet(MessageType::Discover, last, None))
                .await
                .is_none()
        );
    }
    assert_eq!(s.counters.snapshot().exhausted, 8);
    // One warning went through, the other seven were held back.
    assert_eq!(rl.suppressed, 7);
}

#[test]
fn rate_limit_once_per_interval() {
    let mut rl = RateLimit::new(Duration::from_secs(60));
    let t = Instant::now();
    assert_eq!(rl.check(t), Some(0));
    assert_eq!(rl.check(t + Duration::from_secs(1)), None);
    assert_eq!(rl.check(t + Duration::from_secs(59)), None);
    assert_eq!(rl.check(t + Duration::from_secs(60)), Some(2));
    assert_eq!(rl.check(t + Duration::from_secs(61)), None);
}
