//! The NTP server's answer to any datagram, with every limiter verdict and
//! an unsynchronized and a synchronized clock. Checked: only mode 3 v3/v4
//! requests get an answer, a server-mode packet carrying the client's
//! transmit timestamp as its origin.
#![no_main]

use dutnet::ntp::{
    self, Reply,
    clock::ClockState,
    limit::Verdict,
    packet::{Packet, Timestamp},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let received = Timestamp::from_system(std::time::SystemTime::UNIX_EPOCH);
    let clocks = [
        ClockState {
            state: 5,
            status: 0x40,
            offset_ns: 0,
            maxerror_us: 16_000_000,
            esterror_us: 16_000_000,
        },
        ClockState {
            state: 0,
            status: 0,
            offset_ns: 1_000,
            maxerror_us: 5_000,
            esterror_us: 100,
        },
    ];
    for clock in &clocks {
        for verdict in [Verdict::Answer, Verdict::Kiss, Verdict::Drop] {
            let reply = ntp::respond(data, received, clock, verdict);
            let (Reply::Time(answer) | Reply::Kiss(answer)) = reply else {
                continue;
            };
            let request = Packet::parse(data).expect("only a packet gets an answer");
            assert_eq!(request.mode, 3);
            assert!((3..=4).contains(&request.version));
            assert_eq!(answer.mode, 4);
            assert_eq!(answer.origin, request.transmit);
            let _ = answer.encode();
        }
    }
});
