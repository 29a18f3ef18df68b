use std::time::Duration;

use super::*;

fn request(version: u8, mode: u8) -> [u8; packet::LEN] {
    Packet {
        version,
        mode,
        poll: 6,
        transmit: Timestamp {
            seconds: 0xecd8_7e2f,
            fraction: 0x1234_5678,
        },
        ..Packet::default()
    }
    .encode()
}

fn unsynced() -> ClockState {
    ClockState {
        state: libc::TIME_ERROR,
        status: libc::STA_UNSYNC,
        maxerror_us: 16_000_000,
        ..ClockState::default()
    }
}

fn synced() -> ClockState {
    ClockState {
        state: libc::TIME_OK,
        maxerror_us: 2_000,
        ..ClockState::default()
    }
}

const RECEIVED: Timestamp = Timestamp {
    seconds: 0xecd8_7e30,
    fraction: 7,
};

#[test]
fn a_client_request_gets_the_clock_with_its_own_transmit_as_origin() {
    let Reply::Time(p) = respond(
        &request(4, mode::CLIENT),
        RECEIVED,
        &synced(),
        Verdict::Answer,
    ) else {
        panic!("no answer");
    };
    assert_eq!(
        (p.leap, p.version, p.mode, p.stratum),
        (0, 4, mode::SERVER, 3)
    );
    assert_eq!(p.origin.seconds, 0xecd8_7e2f);
    assert_eq!(p.origin.fraction, 0x1234_5678);
    assert_eq!(p.receive, RECEIVED);
    assert_eq!(p.reference, RECEIVED);
    assert_eq!(p.poll, 6);
    assert_eq!(p.root_dispersion, 131);
    // NTPv3 clients are answered in v3.
    let Reply::Time(v3) = respond(
        &request(3, mode::CLIENT),
        RECEIVED,
        &synced(),
        Verdict::Answer,
    ) else {
        panic!("no v3 answer");
    };
    assert_eq!(v3.version, 3);
}

#[test]
fn an_unsynchronized_host_says_so() {
    let Reply::Time(p) = respond(
        &request(4, mode::CLIENT),
        RECEIVED,
        &unsynced(),
        Verdict::Answer,
    ) else {
        panic!("no answer");
    };
    assert_eq!((p.leap, p.stratum), (leap::UNSYNCHRONIZED, 16));
    assert_eq!(p.reference, Timestamp::default());
    assert_eq!(p.root_dispersion, 16 << 16);
}

#[test]
fn other_modes_versions_and_junk_are_ignored() {
    for (version, m) in [
        (4, 1),
        (4, 2),
        (4, 4),
        (4, 5),
        (4, 6),
        (4, 7),
        (2, 3),
        (1, 3),
        (5, 3),
    ] {
        assert_eq!(
            respond(&request(version, m), RECEIVED, &synced(), Verdict::Answer),
            Reply::None,
            "version {version} mode {m}"
        );
    }
    assert_eq!(
        respond(&[0x23; 20], RECEIVED, &synced(), Verdict::Answer),
        Reply::None
    );
}

#[test]
fn over_the_rate_a_kiss_then_nothing() {
    let Reply::Kiss(k) = respond(
        &request(4, mode::CLIENT),
        RECEIVED,
        &synced(),
        Verdict::Kiss,
    ) else {
        panic!("no kiss");
    };
    assert_eq!((k.leap, k.stratum, &k.reference_id), (3, 0, b"RATE"));
    assert_eq!(k.origin.seconds, 0xecd8_7e2f);
    assert_eq!(
        respond(
            &request(4, mode::CLIENT),
            RECEIVED,
            &synced(),
            Verdict::Drop
        ),
        Reply::None
    );
}

#[tokio::test]
async fn the_server_answers_over_udp_and_counts() {
    let server = NtpServer::start(NtpConfig {
        network: "t".to_owned(),
        interface: None,
        listen: Ipv4Addr::LOCALHOST,
        port: 0,
        rate: Rate {
            burst: 2,
            refill: Duration::from_secs(60),
            clients: 8,
        },
    })
    .await
    .unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = [0u8; 128];
    let mut replies = Vec::new();
    for _ in 0..4 {
        let sent = Timestamp::from_system(SystemTime::now());
        let mut req = request(4, mode::CLIENT);
        Packet::stamp_transmit(&mut req, sent);
        client.send_to(&req, server.local_addr()).await.unwrap();
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(300), client.recv_from(&mut buf)).await
        {
            let p = Packet::parse(&buf[..n]).unwrap();
            assert_eq!(p.origin, sent);
            replies.push(p);
        }
    }
    assert_eq!(replies.len(), 3, "two answers, one kiss, then silence");
    let now = SystemTime::now();
    let t = replies[0].transmit.to_system();
    let skew = now.duration_since(t).unwrap_or_else(|e| e.duration());
    assert!(
        skew < Duration::from_secs(1),
        "transmit {t:?} vs now {now:?}"
    );
    assert!(replies[0].receive.to_system() <= t);
    assert_eq!(&replies[2].reference_id, b"RATE");
    assert_eq!(
        server.counters(),
        NtpCounters {
            requests_served: 2,
            kod_sent: 1,
            ignored: 1
        }
    );
    assert_eq!(server.clients().len(), 1);
    assert!(server.running());
    server.shutdown().await;
}
