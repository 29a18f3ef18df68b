//! Pinning the load's threads to cores, and how busy the cores were.
use anyhow::{Result, bail};

/// Pins the calling thread to `cpu` (modulo the cores this machine has), so
/// the sender and the receiver never share a core.
pub fn pin_to(cpu: usize) -> Result<()> {
    set_affinity(0, cpu)
}

/// Pins thread `tid` (0: the calling thread) to `cpu` modulo the cores.
fn set_affinity(tid: i32, cpu: usize) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let cpu = cpu % cores;
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET write inside it and
    // sched_setaffinity only affects thread `tid`.
    let ret = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(tid, size_of::<libc::cpu_set_t>(), &raw const set)
    };
    if ret != 0 {
        bail!(
            "sched_setaffinity(thread {tid}, cpu {cpu}): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Jiffies of the whole machine (the `cpu` line of /proc/stat): busy, total.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTimes {
    busy: u64,
    total: u64,
}

impl CpuTimes {
    /// Now. /proc/stat is not per network namespace: it counts every core's
    /// time, including other users' builds, which is why the figure is noisy.
    pub fn now() -> Self {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
            return Self::default();
        };
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest is in user).
        let total: u64 = fields.iter().take(8).sum();
        let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
        Self {
            busy: total.saturating_sub(idle),
            total,
        }
    }

    /// Busy share of all cores since `earlier`, in percent (0-100).
    pub fn busy_percent_since(self, earlier: Self) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        100.0 * self.busy.saturating_sub(earlier.busy) as f64 / total as f64
    }
}

/// Pins every thread `pid` has now to `cpu` (a server the load must not
/// share a core with).
pub fn pin_process(pid: i32, cpu: usize) -> Result<()> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))?.flatten() {
        if let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) {
            set_affinity(tid, cpu)?;
        }
    }
    Ok(())
}
