//! What the exporter's kernel says about its clock: adjtimex(2) with
//! `modes = 0` reads the NTP state the host's time daemon (chrony,
//! systemd-timesyncd, ntpd) keeps in the kernel, and changes nothing.
use std::time::Duration;

use super::packet::{self, leap};

/// The stratum dutnet claims while the host is synchronized. The kernel
/// does not know the host's own stratum; a host synchronized to the
/// internet's pools (stratum 1 or 2) is stratum 2 or 3, and claiming 3
/// never makes a DUT prefer dutnet over a better server it can also reach.
pub const SYNCED_STRATUM: u8 = 3;
/// RFC 5905 7.3: stratum 16 is "unsynchronized".
pub const UNSYNC_STRATUM: u8 = 16;
/// RFC 5905's MAXDISP: the largest dispersion that still means something.
const MAX_DISPERSION: Duration = Duration::from_secs(16);

/// The kernel's clock state, as adjtimex(2) returns it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClockState {
    /// adjtimex's return value: `TIME_OK`, `TIME_INS`, ..., `TIME_ERROR` (5).
    pub state: i32,
    /// `timex.status` (`STA_*` bits).
    pub status: i32,
    /// The current offset correction the kernel applies, nanoseconds.
    pub offset_ns: i64,
    /// The kernel's bound on the clock's error, microseconds.
    pub maxerror_us: i64,
    /// Its estimate of the error, microseconds.
    pub esterror_us: i64,
}

impl ClockState {
    /// Reads the kernel's state; an error (which adjtimex(2) with `modes =
    /// 0` has no reason to return) reads as unsynchronized.
    #[must_use]
    pub fn read() -> Self {
        // SAFETY: a zeroed timex with modes 0 asks for a read only; the
        // kernel fills the struct it is given.
        let mut tx: libc::timex = unsafe { std::mem::zeroed() };
        // SAFETY: `tx` is a valid, writable timex.
        let state = unsafe { libc::adjtimex(&mut tx) };
        if state < 0 {
            return Self {
                state: libc::TIME_ERROR,
                status: libc::STA_UNSYNC,
                offset_ns: 0,
                maxerror_us: 16_000_000,
                esterror_us: 16_000_000,
            };
        }
        let scale = if tx.status & libc::STA_NANO != 0 {
            1
        } else {
            1_000
        };
        Self {
            state,
            status: tx.status,
            offset_ns: tx.offset.saturating_mul(scale),
            maxerror_us: tx.maxerror,
            esterror_us: tx.esterror,
        }
    }

    /// Whether the host's time daemon keeps the clock synchronized: the
    /// kernel clears `STA_UNSYNC` while one does, and reports `TIME_ERROR`
    /// once maxerror has grown past 16 s without an update.
    #[must_use]
    pub fn synchronized(&self) -> bool {
        self.state != libc::TIME_ERROR && self.status & libc::STA_UNSYNC == 0
    }

    /// The leap indicator to send.
    #[must_use]
    pub fn leap(&self) -> u8 {
        if !self.synchronized() {
            leap::UNSYNCHRONIZED
        } else if self.status & libc::STA_INS != 0 {
            leap::INSERT
        } else if self.status & libc::STA_DEL != 0 {
            leap::DELETE
        } else {
            leap::NONE
        }
    }

    #[must_use]
    pub fn stratum(&self) -> u8 {
        if self.synchronized() {
            SYNCED_STRATUM
        } else {
            UNSYNC_STRATUM
        }
    }

    /// The root dispersion to send, short format. The kernel's maxerror is
    /// the daemon's root distance plus the dispersion grown since its last
    /// update (the kernel adds 500 ppm of elapsed time), which is what a
    /// client adds to its own distance; it is sent as dispersion with a
    /// root delay of 0 so that root distance (delay / 2 + dispersion) equals
    /// it. Capped at MAXDISP.
    #[must_use]
    pub fn root_dispersion(&self) -> u32 {
        let us = u64::try_from(self.maxerror_us).unwrap_or(0);
        packet::short_format(Duration::from_micros(us).min(MAX_DISPERSION))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synced(status: i32) -> ClockState {
        ClockState {
            state: libc::TIME_OK,
            status,
            maxerror_us: 1_500,
            ..ClockState::default()
        }
    }

    #[test]
    fn an_unsynchronized_kernel_says_so() {
        let unsync = ClockState {
            state: libc::TIME_ERROR,
            status: libc::STA_UNSYNC,
            maxerror_us: 16_000_000,
            ..ClockState::default()
        };
        assert!(!unsync.synchronized());
        assert_eq!((unsync.leap(), unsync.stratum()), (3, 16));
        assert_eq!(unsync.root_dispersion(), 16 << 16);
        // TIME_ERROR alone (maxerror ran out) is as unsynchronized.
        assert_eq!(synced(0).leap(), 0);
        let stale = ClockState {
            state: libc::TIME_ERROR,
            ..synced(0)
        };
        assert_eq!(stale.leap(), 3);
    }

    #[test]
    fn a_synchronized_kernel_passes_its_leap_second_on() {
        assert_eq!(synced(libc::STA_PLL).stratum(), SYNCED_STRATUM);
        assert_eq!(synced(libc::STA_INS).leap(), leap::INSERT);
        assert_eq!(synced(libc::STA_DEL).leap(), leap::DELETE);
        // 1.5 ms in 16.16 fixed point.
        assert_eq!(synced(0).root_dispersion(), 98);
    }

    #[test]
    fn reading_the_kernel_changes_nothing_and_succeeds() {
        let a = ClockState::read();
        let b = ClockState::read();
        assert_eq!(a.synchronized(), b.synchronized());
        assert!(a.state >= 0);
    }
}
