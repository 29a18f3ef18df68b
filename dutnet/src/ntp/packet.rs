//! The 48-byte NTP header (RFC 5905 7.3), pure.
//!
//! Written here rather than taken from crates.io: the header is twelve
//! fixed fields, and the crates that parse it come with a client or a full
//! NTS stack around it. Extension fields and MACs after the header are
//! ignored (a server in basic mode answers without them).
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The header's length; shorter datagrams are not NTP.
pub const LEN: usize = 48;
/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const UNIX_OFFSET: u64 = 2_208_988_800;

/// The association modes (RFC 5905 Figure 10) dutnet reads or writes.
pub mod mode {
    pub const CLIENT: u8 = 3;
    pub const SERVER: u8 = 4;
}

/// The leap indicator (RFC 5905 Figure 9).
pub mod leap {
    pub const NONE: u8 = 0;
    /// The last minute of the day has 61 seconds.
    pub const INSERT: u8 = 1;
    /// The last minute of the day has 59 seconds.
    pub const DELETE: u8 = 2;
    /// The clock is not synchronized.
    pub const UNSYNCHRONIZED: u8 = 3;
}

/// A 64-bit NTP timestamp: seconds since 1900 (era 0, wrapping in 2036 as
/// RFC 5905 6 prescribes) and a 2^-32 s fraction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timestamp {
    pub seconds: u32,
    pub fraction: u32,
}

impl Timestamp {
    /// `t` on the NTP time scale.
    #[must_use]
    pub fn from_system(t: SystemTime) -> Self {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        #[expect(
            clippy::cast_possible_truncation,
            reason = "NTP seconds wrap every era (RFC 5905 6); the fraction is below 2^32"
        )]
        Self {
            seconds: (since.as_secs() + UNIX_OFFSET) as u32,
            fraction: ((u64::from(since.subsec_nanos()) << 32) / 1_000_000_000) as u32,
        }
    }

    /// The Unix time of an era-0 timestamp (tests and the status verb).
    #[must_use]
    pub fn to_system(self) -> SystemTime {
        let secs = u64::from(self.seconds).saturating_sub(UNIX_OFFSET);
        let nanos = (u64::from(self.fraction) * 1_000_000_000) >> 32;
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_nanos(nanos)
    }

    fn read(b: &[u8]) -> Self {
        Self {
            seconds: be32(&b[0..4]),
            fraction: be32(&b[4..8]),
        }
    }

    fn write(self, b: &mut [u8]) {
        b[0..4].copy_from_slice(&self.seconds.to_be_bytes());
        b[4..8].copy_from_slice(&self.fraction.to_be_bytes());
    }
}

/// An NTP "short format" value (16.16 fixed point seconds) from a duration,
/// saturating.
#[must_use]
pub fn short_format(d: Duration) -> u32 {
    let v = (d.as_nanos() << 16) / 1_000_000_000;
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// One NTP header, fields as RFC 5905 7.3 names them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Packet {
    /// 2 bits, one of [`leap`].
    pub leap: u8,
    /// 3 bits.
    pub version: u8,
    /// 3 bits, one of [`mode`].
    pub mode: u8,
    /// 0 is a kiss-o'-death, 16 unsynchronized.
    pub stratum: u8,
    /// log2 seconds.
    pub poll: i8,
    /// log2 seconds.
    pub precision: i8,
    /// Short format.
    pub root_delay: u32,
    /// Short format.
    pub root_dispersion: u32,
    /// The kiss code at stratum 0; otherwise the reference's identifier.
    pub reference_id: [u8; 4],
    pub reference: Timestamp,
    pub origin: Timestamp,
    pub receive: Timestamp,
    pub transmit: Timestamp,
}

/// Why a datagram is not an NTP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooShort(pub usize);

impl Packet {
    /// The header at the start of `b`; what follows it is ignored.
    pub fn parse(b: &[u8]) -> Result<Self, TooShort> {
        if b.len() < LEN {
            return Err(TooShort(b.len()));
        }
        Ok(Self {
            leap: b[0] >> 6,
            version: (b[0] >> 3) & 0b111,
            mode: b[0] & 0b111,
            stratum: b[1],
            poll: i8::from_be_bytes([b[2]]),
            precision: i8::from_be_bytes([b[3]]),
            root_delay: be32(&b[4..8]),
            root_dispersion: be32(&b[8..12]),
            reference_id: [b[12], b[13], b[14], b[15]],
            reference: Timestamp::read(&b[16..24]),
            origin: Timestamp::read(&b[24..32]),
            receive: Timestamp::read(&b[32..40]),
            transmit: Timestamp::read(&b[40..48]),
        })
    }

    /// The header's 48 bytes.
    #[must_use]
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = (self.leap & 0b11) << 6 | (self.version & 0b111) << 3 | (self.mode & 0b111);
        b[1] = self.stratum;
        b[2] = self.poll.to_be_bytes()[0];
        b[3] = self.precision.to_be_bytes()[0];
        b[4..8].copy_from_slice(&self.root_delay.to_be_bytes());
        b[8..12].copy_from_slice(&self.root_dispersion.to_be_bytes());
        b[12..16].copy_from_slice(&self.reference_id);
        self.reference.write(&mut b[16..24]);
        self.origin.write(&mut b[24..32]);
        self.receive.write(&mut b[32..40]);
        self.transmit.write(&mut b[40..48]);
        b
    }

    /// Writes the transmit timestamp into an encoded header, the last thing
    /// before it is sent.
    pub fn stamp_transmit(encoded: &mut [u8; LEN], t: Timestamp) {
        t.write(&mut encoded[40..48]);
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request as SNTP clients send it (RFC 4330 5): LI 0, VN 4, mode 3,
    /// everything zero but the transmit timestamp.
    const NTPDATE_REQUEST: [u8; 48] = [
        0x23, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xec, 0xd8, 0x7e, 0x2f, 0x12,
        0x34, 0x56, 0x78,
    ];

    #[test]
    fn a_client_request_parses_field_by_field() {
        let p = Packet::parse(&NTPDATE_REQUEST).unwrap();
        assert_eq!((p.leap, p.version, p.mode), (0, 4, mode::CLIENT));
        assert_eq!(p.stratum, 0);
        assert_eq!(
            p.transmit,
            Timestamp {
                seconds: 0xecd8_7e2f,
                fraction: 0x1234_5678
            }
        );
        assert_eq!(p.encode(), NTPDATE_REQUEST);
    }

    #[test]
    fn every_field_round_trips_in_network_order() {
        let p = Packet {
            leap: leap::UNSYNCHRONIZED,
            version: 3,
            mode: mode::SERVER,
            stratum: 16,
            poll: -6,
            precision: -20,
            root_delay: 0x0001_8000,
            root_dispersion: 0x0010_0000,
            reference_id: *b"LOCL",
            reference: Timestamp {
                seconds: 1,
                fraction: 2,
            },
            origin: Timestamp {
                seconds: 3,
                fraction: 4,
            },
            receive: Timestamp {
                seconds: 5,
                fraction: 6,
            },
            transmit: Timestamp {
                seconds: 7,
                fraction: 8,
            },
        };
        let b = p.encode();
        assert_eq!(b[0], 0b11_011_100);
        assert_eq!(&b[1..4], &[16, 0xfa, 0xec]);
        assert_eq!(&b[4..8], &[0, 1, 0x80, 0]);
        assert_eq!(&b[12..16], b"LOCL");
        assert_eq!(&b[44..48], &[0, 0, 0, 8]);
        assert_eq!(Packet::parse(&b).unwrap(), p);
    }

    #[test]
    fn short_datagrams_are_refused_and_trailers_ignored() {
        assert_eq!(Packet::parse(&[0x23; 47]), Err(TooShort(47)));
        let mut long = NTPDATE_REQUEST.to_vec();
        long.extend_from_slice(&[0xff; 20]);
        assert_eq!(Packet::parse(&long).unwrap().encode(), NTPDATE_REQUEST);
    }

    #[test]
    fn timestamps_are_on_the_1900_scale() {
        let t = UNIX_EPOCH + Duration::from_millis(1_500);
        let ts = Timestamp::from_system(t);
        assert_eq!(ts.seconds, 2_208_988_801);
        assert_eq!(ts.fraction, 1 << 31);
        assert_eq!(ts.to_system(), t);
        assert_eq!(short_format(Duration::from_millis(1_500)), 0x0001_8000);
        assert_eq!(short_format(Duration::from_secs(1 << 20)), u32::MAX);
    }

    #[test]
    fn transmit_is_stamped_last() {
        let mut b = Packet::default().encode();
        Packet::stamp_transmit(
            &mut b,
            Timestamp {
                seconds: 9,
                fraction: 10,
            },
        );
        assert_eq!(
            Packet::parse(&b).unwrap().transmit,
            Timestamp {
                seconds: 9,
                fraction: 10
            }
        );
    }
}
