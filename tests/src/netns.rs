//! One network namespace of a test topology, and the programs run in it.
use std::{
    fs::File,
    os::fd::AsRawFd as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::cmd::{self, Output};

/// Default limit for a command run in a namespace.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(30);

/// A network namespace created by a [`crate::Topology`] (removed by it).
#[derive(Clone, Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// `ip netns exec <ns> program args...`, ready to run.
    #[must_use]
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.name, program])
            .args(args);
        command
    }

    /// Runs a program in the namespace, waiting at most [`COMMAND_LIMIT`].
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        cmd::run(self.command(program, args), COMMAND_LIMIT)
    }

    /// `ip -n <ns> args...`, asserting success.
    #[track_caller]
    pub fn ip(&self, args: &str) -> Output {
        let mut command = Command::new("ip");
        command
            .args(["-n", &self.name])
            .args(args.split_whitespace());
        cmd::run(command, COMMAND_LIMIT).ok()
    }

    /// Sets a sysctl inside the namespace (`net.ipv4.conf.all.forwarding=1`).
    #[track_caller]
    pub fn sysctl(&self, setting: &str) {
        self.exec("sysctl", &["-qw", setting]).ok();
    }

    /// Reads a sysctl inside the namespace.
    #[must_use]
    pub fn sysctl_get(&self, key: &str) -> String {
        self.exec("sysctl", &["-n", key])
            .ok()
            .stdout
            .trim()
            .to_owned()
    }

    /// Starts a long-running program in the namespace. Its output goes to
    /// `log`; it is stopped when the returned guard drops.
    pub fn spawn(
        &self,
        program: &str,
        args: &[&str],
        env: &[(&str, String)],
        log: PathBuf,
    ) -> Process {
        let mut command = self.command(program, args);
        command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let description = cmd::describe(&command);
        let file = File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = file.try_clone().expect("clone log file handle");
        let child = command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{description}`: {e}"));
        Process {
            child: Some(child),
            description,
            log,
        }
    }

    /// The MAC address of `interface`, from `ip -o link`.
    #[must_use]
    pub fn mac(&self, interface: &str) -> Option<[u8; 6]> {
        let out = self.ip(&format!("-o link show {interface}"));
        let text = out.stdout.split("link/ether ").nth(1)?;
        parse_mac(text.split_whitespace().next()?)
    }

    /// Runs `f` on a thread that has entered this namespace: sockets it
    /// creates belong to the namespace (and stay usable from any thread).
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        std::thread::spawn(move || {
            // SAFETY: setns on a valid namespace fd only affects this thread.
            let ret = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(ret, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// `02:00:00:00:01:0a` as bytes.
#[must_use]
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// A program started with [`Netns::spawn`]; stopped (by its PID) on drop.
#[derive(Debug)]
pub struct Process {
    child: Option<Child>,
    pub description: String,
    pub log: PathBuf,
}

impl Process {
    #[must_use]
    pub fn pid(&self) -> i32 {
        self.child
            .as_ref()
            .and_then(|c| i32::try_from(c.id()).ok())
            .unwrap_or(0)
    }

    /// What the program printed so far.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// True while the program runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Sends `signal` and waits up to `limit` for the exit; returns the exit
    /// code (None: killed by a signal or still running at the limit, then
    /// SIGKILLed).
    pub fn signal_and_wait(&mut self, signal: i32, limit: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let pid = i32::try_from(child.id()).ok()?;
        // `ip netns exec` execs the program, so this PID is dutnet's own.
        // SAFETY: kill with a PID we started and have not reaped yet.
        unsafe { libc::kill(pid, signal) };
        cmd::wait_with_limit(&mut child, limit)
    }

    /// SIGTERM, then wait up to 10 s.
    pub fn terminate(&mut self) -> Option<i32> {
        self.signal_and_wait(libc::SIGTERM, Duration::from_secs(10))
    }

    /// SIGKILL: simulates a crash.
    pub fn kill9(&mut self) {
        self.signal_and_wait(libc::SIGKILL, Duration::from_secs(5));
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.terminate();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_mac;

    #[test]
    fn parses_a_mac() {
        assert_eq!(parse_mac("02:00:00:00:01:0a"), Some([2, 0, 0, 0, 1, 0x0a]));
        assert_eq!(parse_mac("02:00:00:00:01"), None);
        assert_eq!(parse_mac("02:00:00:00:01:0a:ff"), None);
        assert_eq!(parse_mac("zz:00:00:00:01:0a"), None);
    }
}
