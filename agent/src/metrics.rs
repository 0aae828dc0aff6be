//! The metrics sampler: one [`MetricSample`] of the host per interval, read
//! from sysinfo and `/proc` while refreshing only what the sample needs.
//!
//! Kept cheap on purpose (the agent's idle budget is a few MiB and well
//! under 0.1 % of a core): CPU and memory come from a `System` that refreshes
//! nothing else, the disk list is read afresh each time and dropped, network
//! counters are kept as two integers per interface, and processes are
//! counted from `/proc`'s directory names instead of sysinfo's process table.
//! The arithmetic (rates, filters) is in plain functions tested on their own.

use argosy_proto::v1::{Disk, DiskUsage, MetricSample};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use sysinfo::{
    CpuRefreshKind, DiskRefreshKind, Disks, MemoryRefreshKind, Networks, RefreshKind, System,
};

/// How long after the first CPU reading a usage figure means something.
pub const CPU_WARMUP: Duration = sysinfo::MINIMUM_CPU_UPDATE_INTERVAL;

/// Why the sampler could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot read this host's metrics: {0}")]
pub struct MetricsError(#[from] sysinfo::Error);

/// Cumulative received and transmitted bytes per non-loopback interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetCounters(pub BTreeMap<String, (u64, u64)>);

/// Bytes per second received and transmitted between two readings, summed
/// over the interfaces present in both. A counter that went backwards (the
/// interface was recreated) contributes nothing rather than a bogus spike.
pub fn net_rates(previous: &NetCounters, current: &NetCounters, elapsed: Duration) -> (f64, f64) {
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 {
        return (0.0, 0.0);
    }
    let (mut rx, mut tx) = (0u64, 0u64);
    for (name, (cur_rx, cur_tx)) in &current.0 {
        if let Some((prev_rx, prev_tx)) = previous.0.get(name) {
            rx = rx.saturating_add(cur_rx.saturating_sub(*prev_rx));
            tx = tx.saturating_add(cur_tx.saturating_sub(*prev_tx));
        }
    }
    (rx as f64 / seconds, tx as f64 / seconds)
}

/// Whether an interface is a loopback: named `lo`, or carrying only
/// loopback addresses.
pub fn is_loopback(name: &str, addresses: &[IpAddr]) -> bool {
    name == "lo" || (!addresses.is_empty() && addresses.iter().all(IpAddr::is_loopback))
}

/// Whether a mount is a real filesystem worth reporting, not a pseudo
/// filesystem, an in-memory one, or a container runtime's layer.
pub fn is_real_filesystem(filesystem: &str, mount_point: &str) -> bool {
    const PSEUDO: &[&str] = &[
        "autofs",
        "binfmt_misc",
        "bpf",
        "cgroup",
        "cgroup2",
        "configfs",
        "debugfs",
        "devpts",
        "devtmpfs",
        "efivarfs",
        "fusectl",
        "hugetlbfs",
        "mqueue",
        "nsfs",
        "overlay",
        "proc",
        "pstore",
        "ramfs",
        "rpc_pipefs",
        "securityfs",
        "selinuxfs",
        "squashfs",
        "sysfs",
        "tmpfs",
        "tracefs",
        "aufs",
        "shm",
        "nfsd",
        "iso9660",
        "rootfs",
    ];
    const PSEUDO_FUSE: &[&str] = &[
        "fuse.lxcfs",
        "fuse.gvfsd-fuse",
        "fuse.portal",
        "fuse.snapfuse",
    ];
    const RUNTIME_PREFIXES: &[&str] = &[
        "/proc/",
        "/sys/",
        "/dev/",
        "/var/lib/docker/",
        "/var/lib/containers/",
        "/var/lib/kubelet/",
        "/snap/",
    ];
    if PSEUDO.contains(&filesystem) || PSEUDO_FUSE.contains(&filesystem) {
        return false;
    }
    if matches!(mount_point, "/proc" | "/sys" | "/dev") {
        return false;
    }
    if mount_point.starts_with("/run/") && !mount_point.starts_with("/run/media/") {
        return false;
    }
    !RUNTIME_PREFIXES
        .iter()
        .any(|prefix| mount_point.starts_with(prefix))
}

/// The real filesystems, one per mount point (the last mount wins, as in
/// the kernel), sorted by mount point.
pub fn list_disks() -> Vec<Disk> {
    let Ok(disks) =
        Disks::new_with_refreshed_list_specifics(DiskRefreshKind::nothing().with_storage())
    else {
        return Vec::new();
    };
    let mut by_mount = BTreeMap::new();
    for disk in disks.iter() {
        let mount_point = disk.mount_point().to_string_lossy().into_owned();
        let filesystem = disk.file_system().to_string_lossy().into_owned();
        if !is_real_filesystem(&filesystem, &mount_point) || disk.total_space() == 0 {
            continue;
        }
        by_mount.insert(
            mount_point.clone(),
            Disk {
                mount_point,
                device: disk.name().to_string_lossy().into_owned(),
                filesystem,
                total_bytes: disk.total_space(),
                available_bytes: disk.available_space(),
            },
        );
    }
    by_mount.into_values().collect()
}

/// Disk usage from a disk listing: used is what is not available.
pub fn disk_usage(disks: &[Disk]) -> Vec<DiskUsage> {
    disks
        .iter()
        .map(|disk| DiskUsage {
            mount_point: disk.mount_point.clone(),
            used_bytes: disk.total_bytes.saturating_sub(disk.available_bytes),
            total_bytes: disk.total_bytes,
        })
        .collect()
}

/// How many entries of `names` are all digits (process ids in `/proc`).
pub fn count_numeric<'a>(names: impl IntoIterator<Item = &'a OsStr>) -> u32 {
    let count = names
        .into_iter()
        .filter(|name| {
            let bytes = name.as_encoded_bytes();
            !bytes.is_empty() && bytes.iter().all(u8::is_ascii_digit)
        })
        .count();
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// The number of processes: the numeric entries of `proc`.
pub fn count_processes(proc: &Path) -> u32 {
    let Ok(entries) = std::fs::read_dir(proc) else {
        return 0;
    };
    let names: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    count_numeric(names.iter().map(|n| n.as_os_str()))
}

/// Takes samples; keeps only what rates need between two of them.
pub struct Sampler {
    system: System,
    networks: Networks,
    last_net: (Instant, NetCounters),
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sampler")
    }
}

impl Sampler {
    /// Takes the first CPU and network readings. The first [`Sampler::sample`]
    /// should come at least [`CPU_WARMUP`] later for a meaningful CPU figure.
    pub fn new() -> Result<Self, MetricsError> {
        let system = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_usage())
                .with_memory(MemoryRefreshKind::everything()),
        )?;
        let mut networks = Networks::new()?;
        let counters = read_net(&mut networks);
        Ok(Self {
            system,
            networks,
            last_net: (Instant::now(), counters),
        })
    }

    /// One sample, stamped `timestamp_ms`.
    pub fn sample(&mut self, timestamp_ms: i64) -> MetricSample {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        let load = System::load_average().unwrap_or(sysinfo::LoadAvg {
            one: 0.0,
            five: 0.0,
            fifteen: 0.0,
        });
        let now = Instant::now();
        let counters = read_net(&mut self.networks);
        let (rx, tx) = net_rates(
            &self.last_net.1,
            &counters,
            now.duration_since(self.last_net.0),
        );
        self.last_net = (now, counters);
        MetricSample {
            timestamp_ms,
            cpu_percent: f64::from(self.system.global_cpu_usage()),
            load1: load.one,
            load5: load.five,
            load15: load.fifteen,
            memory_used_bytes: self.system.used_memory(),
            memory_available_bytes: self.system.available_memory(),
            memory_total_bytes: self.system.total_memory(),
            swap_used_bytes: self.system.used_swap(),
            swap_total_bytes: self.system.total_swap(),
            disks: disk_usage(&list_disks()),
            net_rx_bytes_per_second: rx,
            net_tx_bytes_per_second: tx,
            uptime_seconds: System::uptime().unwrap_or(0),
            process_count: count_processes(Path::new("/proc")),
        }
    }
}

fn read_net(networks: &mut Networks) -> NetCounters {
    networks.refresh(true);
    let mut counters = NetCounters::default();
    for (name, data) in networks.iter() {
        let name = name.to_string_lossy();
        let addresses: Vec<IpAddr> = data.ip_networks().iter().map(|n| n.addr).collect();
        if is_loopback(&name, &addresses) {
            continue;
        }
        counters.0.insert(
            name.into_owned(),
            (data.total_received(), data.total_transmitted()),
        );
    }
    counters
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(entries: &[(&str, u64, u64)]) -> NetCounters {
        NetCounters(
            entries
                .iter()
                .map(|(name, rx, tx)| ((*name).to_owned(), (*rx, *tx)))
                .collect(),
        )
    }

    #[test]
    fn rates_are_deltas_over_elapsed_time() {
        let before = counters(&[("eth0", 1_000, 5_000), ("eth1", 0, 0)]);
        let after = counters(&[("eth0", 21_000, 6_000), ("eth1", 10_000, 4_000)]);
        assert_eq!(
            net_rates(&before, &after, Duration::from_secs(10)),
            (3_000.0, 500.0)
        );
        assert_eq!(
            net_rates(&before, &after, Duration::from_millis(500)),
            (60_000.0, 10_000.0)
        );
    }

    #[test]
    fn rates_ignore_new_vanished_and_reset_interfaces() {
        let before = counters(&[
            ("eth0", 1_000, 1_000),
            ("gone", 5, 5),
            ("veth1", 9_000, 9_000),
        ]);
        let after = counters(&[
            ("eth0", 2_000, 3_000),
            ("new0", 1 << 40, 1 << 40),
            ("veth1", 100, 100),
        ]);
        assert_eq!(
            net_rates(&before, &after, Duration::from_secs(1)),
            (1_000.0, 2_000.0)
        );
        assert_eq!(net_rates(&before, &after, Duration::ZERO), (0.0, 0.0));
        assert_eq!(
            net_rates(&NetCounters::default(), &after, Duration::from_secs(1)),
            (0.0, 0.0)
        );
    }

    #[test]
    fn loopback_detection() {
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        let public: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(is_loopback("lo", &[]));
        assert!(is_loopback("lo0", &[v4, v6]));
        assert!(!is_loopback("eth0", &[]));
        assert!(!is_loopback("eth0", &[public, v4]));
    }

    #[test]
    fn only_real_filesystems_are_kept() {
        for (fs, mount) in [
            ("ext4", "/"),
            ("xfs", "/var/lib/postgresql"),
            ("btrfs", "/home"),
            ("vfat", "/boot/efi"),
            ("ext4", "/var/lib/docker"),
            ("ext4", "/run/media/usb"),
            ("nfs4", "/mnt/backups"),
            ("zfs", "/tank"),
        ] {
            assert!(is_real_filesystem(fs, mount), "{fs} on {mount}");
        }
        for (fs, mount) in [
            ("overlay", "/"),
            ("tmpfs", "/tmp"),
            ("proc", "/proc"),
            ("sysfs", "/sys"),
            ("cgroup2", "/sys/fs/cgroup"),
            ("devtmpfs", "/dev"),
            ("squashfs", "/snap/core/1"),
            ("ext4", "/var/lib/docker/overlay2/abc/merged"),
            ("ext4", "/var/lib/kubelet/pods/x/volumes"),
            ("ext4", "/run/user/1000/doc"),
            ("fuse.lxcfs", "/var/lib/lxcfs"),
            ("nsfs", "/run/netns/x"),
        ] {
            assert!(!is_real_filesystem(fs, mount), "{fs} on {mount}");
        }
    }

    #[test]
    fn disk_usage_is_total_minus_available() {
        let disks = [Disk {
            mount_point: "/".into(),
            device: "/dev/vda".into(),
            filesystem: "ext4".into(),
            total_bytes: 100,
            available_bytes: 30,
        }];
        assert_eq!(
            disk_usage(&disks),
            [DiskUsage {
                mount_point: "/".into(),
                used_bytes: 70,
                total_bytes: 100
            }]
        );
    }

    #[test]
    fn processes_are_the_numeric_entries_of_proc() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["1", "42", "31337", "self", "sys", "1a", "net"] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        std::fs::write(dir.path().join("77"), "").unwrap();
        assert_eq!(count_processes(dir.path()), 4);
        assert_eq!(count_processes(&dir.path().join("missing")), 0);
        // On this Linux host there is at least this process.
        assert!(count_processes(Path::new("/proc")) >= 1);
    }

    #[test]
    fn a_real_sample_is_plausible() {
        let mut sampler = Sampler::new().unwrap();
        std::thread::sleep(CPU_WARMUP);
        let sample = sampler.sample(1_234);
        assert_eq!(sample.timestamp_ms, 1_234);
        assert!(
            (0.0..=100.0).contains(&sample.cpu_percent),
            "{}",
            sample.cpu_percent
        );
        assert!(sample.memory_total_bytes > 0);
        assert!(sample.memory_used_bytes <= sample.memory_total_bytes);
        assert!(sample.memory_available_bytes <= sample.memory_total_bytes);
        assert!(sample.swap_used_bytes <= sample.swap_total_bytes);
        assert!(sample.uptime_seconds > 0);
        assert!(sample.process_count >= 1);
        assert!(sample.net_rx_bytes_per_second >= 0.0);
        assert!(sample.load1 >= 0.0);
        for disk in &sample.disks {
            assert!(disk.used_bytes <= disk.total_bytes, "{disk:?}");
        }
    }
}
