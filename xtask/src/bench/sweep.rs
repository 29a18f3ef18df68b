//! The sweeper's cost: dutnet's eBPF masquerade holding many flows (a
//! million in the full run) that no timeout removes, and the daemon's CPU
//! time while it sweeps that table on its usual schedule.
//!
//! The window lasts a whole number of sweep intervals, so it holds exactly
//! that many sweeps wherever it starts (the sweeps are periodic; one cut at
//! the window's start is made up by the one cut at its end). The daemon's
//! CPU in it also counts its once-a-second reconcile: one interval with the
//! table empty, before the fill, measures that part alone.
use std::{
    path::Path as FsPath,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use dutnet_tests::generator::{Flows, Load};

use super::{
    lab::{self, Lab, Options, Path, Timeouts},
    udp,
};

const SEED: u32 = 0x5eed;

/// How big a table and how long a window.
#[derive(Clone, Copy, Debug)]
pub struct SweepBudget {
    /// New flows sent to fill the table.
    pub flows: u64,
    /// Time the fill may take at most.
    pub fill_limit: Duration,
    /// The timeouts: `shortest` sets the sweep interval.
    pub timeouts: Timeouts,
    /// Sweeps in the measured window.
    pub sweeps: u32,
}

impl SweepBudget {
    /// The lab: one network whose budget and one DUT's share hold every flow
    /// sent (`nat_table_size` and `nat_flows_per_dut` 1 048 576).
    pub fn options(self) -> Options {
        Options {
            tag: "s",
            nat_table_size: 1 << 20,
            nat_flows_per_dut: 1 << 20,
            timeouts: Some(self.timeouts),
            second_dut: false,
        }
    }
}

/// What the sweeper cost.
#[derive(Clone, Copy, Debug)]
pub struct SweepResult {
    /// Flows in the table when the window started, and when it ended.
    pub flows: u64,
    pub flows_after: u64,
    pub interval: Duration,
    pub window: Duration,
    pub sweeps: u32,
    /// The daemon's CPU time (user and system) in the window.
    pub cpu: Duration,
    /// The same over one interval with the table empty, and that interval.
    pub idle_cpu: Duration,
    pub idle_window: Duration,
}

impl SweepResult {
    pub fn ms_per_sweep(self) -> f64 {
        self.cpu.as_secs_f64() * 1e3 / f64::from(self.sweeps.max(1))
    }

    /// The daemon's CPU time over the window's, in percent of one core.
    pub fn core_percent(self) -> f64 {
        100.0 * self.cpu.as_secs_f64() / self.window.as_secs_f64().max(1e-9)
    }

    /// The same with the table empty.
    pub fn idle_core_percent(self) -> f64 {
        100.0 * self.idle_cpu.as_secs_f64() / self.idle_window.as_secs_f64().max(1e-9)
    }
}

/// Fills the eBPF masquerade lab `lab` (built with [`SweepBudget::options`])
/// with `budget.flows` flows and measures the daemon over `budget.sweeps`
/// sweep intervals.
pub fn measure(lab: &Lab, dutnet: &FsPath, budget: SweepBudget) -> Result<SweepResult> {
    if lab.path != Path::EbpfMasquerade {
        bail!("the sweeper is measured on dutnet's eBPF masquerade");
    }
    let pid = lab.daemon_pid().context("the lab runs no dutnet")?;
    let interval = budget.timeouts.sweep_interval();
    let (idle_cpu, idle_window) = cpu_over(pid, interval)?;
    let fill = udp::send_only(
        lab,
        Load {
            flows: Flows::Scattered { seed: SEED },
            packets: budget.flows,
            limit: budget.fill_limit,
        },
    )?;
    let flows = active_flows(lab, dutnet);
    eprintln!(
        "    sweeper: {} new flows sent in {:.1} s, {flows} in the table",
        fill.packets,
        fill.elapsed.as_secs_f64()
    );
    let (cpu, window) = cpu_over(pid, interval * budget.sweeps)?;
    Ok(SweepResult {
        flows,
        flows_after: active_flows(lab, dutnet),
        interval,
        window,
        sweeps: budget.sweeps,
        cpu,
        idle_cpu,
        idle_window,
    })
}

/// The CPU time `pid` uses over `window`, and the window as it was.
fn cpu_over(pid: i32, window: Duration) -> Result<(Duration, Duration)> {
    let before = process_cpu(pid)?;
    let started = Instant::now();
    std::thread::sleep(window);
    let cpu = process_cpu(pid)?.saturating_sub(before);
    Ok((cpu, started.elapsed()))
}

/// Flows of the DUT's network, from `dutnet stats --json`.
fn active_flows(lab: &Lab, dutnet: &FsPath) -> u64 {
    lab.dutnet_stats(dutnet)
        .and_then(|stats| {
            stats["interfaces"]
                .as_array()?
                .iter()
                .find(|i| i["interface"] == "dn-dut1")?["active_flows"]
                .as_u64()
        })
        .unwrap_or(0)
}

/// utime + stime of process `pid` (all its threads), from /proc/<pid>/stat.
fn process_cpu(pid: i32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat (did dutnet exit?)"))?;
    // SAFETY: sysconf has no preconditions.
    let user_hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = stat_cpu_ticks(&stat).context("parsing /proc/<pid>/stat")?;
    let user_hz = u64::try_from(user_hz)
        .ok()
        .filter(|&hz| hz > 0)
        .unwrap_or(100);
    Ok(Duration::from_nanos(ticks * 1_000_000_000 / user_hz))
}

/// utime + stime (fields 14 and 15, in clock ticks) of a /proc/<pid>/stat
/// line. The command name (field 2) may hold spaces and parentheses: the
/// fields are counted from its last `)`.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The sweeper lab's timeouts: unreplied UDP stays an hour.
pub fn timeouts(shortest: u32) -> Timeouts {
    lab::Timeouts {
        long: "1h",
        shortest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_after_the_command_name() {
        let stat =
            "4242 (dut net) x) S 1 4242 4242 0 -1 4194560 1200 0 0 0 733 41 0 0 20 0 9 0 123 0 0";
        assert_eq!(stat_cpu_ticks(stat), Some(774));
        assert_eq!(stat_cpu_ticks("4242 (dutnet) S 1"), None);
    }

    #[test]
    fn the_interval_is_half_the_shortest_timeout_within_1_to_10_s() {
        assert_eq!(timeouts(20).sweep_interval(), Duration::from_secs(10));
        assert_eq!(timeouts(60).sweep_interval(), Duration::from_secs(10));
        assert_eq!(timeouts(8).sweep_interval(), Duration::from_secs(4));
        assert_eq!(timeouts(1).sweep_interval(), Duration::from_secs(1));
    }
}
