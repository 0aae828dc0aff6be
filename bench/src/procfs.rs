//! Reading a process's resident memory and CPU time from /proc.

use std::time::Duration;

/// Resident set size in bytes (VmRSS).
pub(crate) fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The fields of a `stat` file after the command name (which is in
/// parentheses and may hold spaces): the state first, then the parent.
fn stat_fields(path: &str) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(path).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// User plus system CPU time consumed so far.
pub(crate) fn cpu_time(pid: u32) -> Option<Duration> {
    cpu_time_at(&format!("/proc/{pid}/stat"))
}

/// User plus system CPU time from a `stat` file: a process's
/// (`/proc/PID/stat`) or one thread's (`/proc/self/task/TID/stat`).
pub(crate) fn cpu_time_at(path: &str) -> Option<Duration> {
    cpu_times_at(path).map(CpuTimes::total)
}

/// CPU time spent in user space and in the kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CpuTimes {
    pub(crate) user: Duration,
    pub(crate) system: Duration,
}

impl CpuTimes {
    pub(crate) fn total(self) -> Duration {
        self.user + self.system
    }

    /// What was spent since `before`.
    pub(crate) fn since(self, before: CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user.saturating_sub(before.user),
            system: self.system.saturating_sub(before.system),
        }
    }
}

impl std::ops::Add for CpuTimes {
    type Output = CpuTimes;
    fn add(self, other: CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user + other.user,
            system: self.system + other.system,
        }
    }
}

impl std::iter::Sum for CpuTimes {
    fn sum<I: Iterator<Item = CpuTimes>>(iter: I) -> CpuTimes {
        iter.fold(CpuTimes::default(), std::ops::Add::add)
    }
}

/// User and system CPU time from a `stat` file (see [`cpu_time_at`]).
pub(crate) fn cpu_times_at(path: &str) -> Option<CpuTimes> {
    let fields = stat_fields(path)?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on Linux.
    Some(CpuTimes {
        user: Duration::from_millis(utime * 10),
        system: Duration::from_millis(stime * 10),
    })
}

/// The parent of process `pid`.
pub(crate) fn parent(pid: u32) -> Option<u32> {
    stat_fields(&format!("/proc/{pid}/stat"))?
        .get(1)?
        .parse()
        .ok()
}

pub(crate) fn median(values: &mut [u64]) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    values[values.len() / 2]
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
