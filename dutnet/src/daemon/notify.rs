//! systemd's notify protocol (`sd_notify(3)`), spoken directly: one
//! datagram per state change to `$NOTIFY_SOCKET`. `READY=1` once every
//! network is up, waiting or failed, `RELOADING=1` around a reload,
//! `STOPPING=1` before the host is restored, `WATCHDOG=1` every tick when
//! the unit sets `WatchdogSec=`, and a `STATUS=` line with the counts.
use std::{
    os::unix::{ffi::OsStringExt as _, net::UnixDatagram},
    path::PathBuf,
    time::{Duration, Instant},
};

use tracing::debug;

/// Where the notifications go; `None` when dutnet does not run under a
/// `Type=notify` unit.
#[derive(Debug, Default)]
pub struct Notifier {
    socket: Option<(UnixDatagram, Target)>,
    /// Half of `WatchdogSec` (systemd's advice), when the unit sets it.
    watchdog_every: Option<Duration>,
    last_ping: Option<Instant>,
}

#[derive(Debug)]
enum Target {
    Path(PathBuf),
    /// An abstract socket (`@name` in `NOTIFY_SOCKET`).
    Abstract(Vec<u8>),
}

impl Notifier {
    /// From `NOTIFY_SOCKET` and `WATCHDOG_USEC` (for this pid only, as
    /// `WATCHDOG_PID` says).
    #[must_use]
    pub fn from_env() -> Self {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let path = path.into_encoded_bytes();
            let target = match path.strip_prefix(b"@") {
                Some(name) => Target::Abstract(name.to_vec()),
                None => Target::Path(PathBuf::from(std::ffi::OsString::from_vec(path))),
            };
            UnixDatagram::unbound().ok().map(|s| (s, target))
        });
        let for_us = std::env::var("WATCHDOG_PID")
            .map_or(true, |pid| pid.trim() == std::process::id().to_string());
        let watchdog_every = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|usec| usec.trim().parse::<u64>().ok())
            .filter(|usec| *usec > 0 && for_us)
            .map(|usec| Duration::from_micros(usec / 2));
        Self {
            socket,
            watchdog_every,
            last_ping: None,
        }
    }

    /// Sends `state` (newline-separated `KEY=value` lines).
    pub fn send(&self, state: &str) {
        let Some((socket, target)) = &self.socket else {
            return;
        };
        let sent = match target {
            Target::Path(path) => socket.send_to(state.as_bytes(), path),
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt as _;
                std::os::unix::net::SocketAddr::from_abstract_name(name)
                    .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
            }
        };
        if let Err(e) = sent {
            debug!(error = %e, "sd_notify");
        }
    }

    /// Pets the watchdog when it is due (called every tick).
    pub fn watchdog(&mut self, now: Instant) {
        let Some(every) = self.watchdog_every else {
            return;
        };
        if self
            .last_ping
            .is_none_or(|last| now.duration_since(last) >= every)
        {
            self.send("WATCHDOG=1");
            self.last_ping = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_socket_receives_each_state() {
        let dir = std::env::temp_dir().join(format!("dutnet-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier {
            socket: Some((UnixDatagram::unbound().unwrap(), Target::Path(path))),
            watchdog_every: None,
            last_ping: None,
        };
        notifier.send("READY=1\nSTATUS=2 networks up");
        let mut buf = [0u8; 128];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=2 networks up");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_watchdog_is_pet_every_half_period_only() {
        let dir = std::env::temp_dir().join(format!("dutnet-watchdog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        receiver.set_nonblocking(true).unwrap();
        let mut notifier = Notifier {
            socket: Some((UnixDatagram::unbound().unwrap(), Target::Path(path))),
            watchdog_every: Some(Duration::from_secs(5)),
            last_ping: None,
        };
        let start = Instant::now();
        notifier.watchdog(start);
        notifier.watchdog(start + Duration::from_secs(1));
        notifier.watchdog(start + Duration::from_secs(6));
        let mut buf = [0u8; 32];
        let mut pings = 0;
        while receiver.recv(&mut buf).is_ok() {
            pings += 1;
        }
        assert_eq!(pings, 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
