//! What the agent tells the control plane about its host (at enrollment and
//! in every `Hello`): OS, kernel, CPUs, memory, disks, Docker, and the
//! region and labels the control plane assigned.

use crate::docker;
use crate::metrics;
use argosy_proto::v1::Inventory;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, System};

/// The agent's version, as reported in the inventory.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where other hosts reach this one: its advertise address and the
/// ingress ports bound on it (0: that listener is off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Advertised {
    /// `None` before the agent knows it (at enrollment).
    pub address: Option<IpAddr>,
    pub http_port: u16,
    pub https_port: u16,
}

impl Advertised {
    /// Writes these into an inventory.
    pub fn fill(&self, inventory: &mut Inventory) {
        inventory.advertise_address = self.address.map(|a| a.to_string()).unwrap_or_default();
        inventory.ingress_http_port = u32::from(self.http_port);
        inventory.ingress_https_port = u32::from(self.https_port);
    }
}

/// Everything about the host that needs no Docker engine. The sysinfo
/// state used to read it is dropped before returning.
pub fn host() -> Inventory {
    let (cpu_count, cpu_model, memory_bytes, swap_bytes) = match System::new() {
        Ok(mut system) => {
            system.refresh_cpu_list(CpuRefreshKind::nothing());
            system.refresh_memory_specifics(MemoryRefreshKind::everything());
            let cpus = system.cpus();
            let model = cpus
                .first()
                .map(|cpu| cpu.brand().trim().to_owned())
                .unwrap_or_default();
            (
                cpus.len(),
                model,
                system.total_memory(),
                system.total_swap(),
            )
        }
        Err(_) => (0, String::new(), 0, 0),
    };
    let cpu_count = if cpu_count == 0 {
        std::thread::available_parallelism().map_or(0, usize::from)
    } else {
        cpu_count
    };
    Inventory {
        hostname: System::host_name().unwrap_or_default(),
        os: System::name().unwrap_or_default(),
        os_version: System::os_version().unwrap_or_default(),
        kernel: System::kernel_version().unwrap_or_default(),
        arch: std::env::consts::ARCH.to_owned(),
        cpu_count: u32::try_from(cpu_count).unwrap_or(u32::MAX),
        cpu_model,
        memory_bytes,
        swap_bytes,
        disks: metrics::list_disks(),
        agent_version: AGENT_VERSION.to_owned(),
        docker: None,
        region: String::new(),
        labels: Default::default(),
        advertise_address: String::new(),
        ingress_http_port: 0,
        ingress_https_port: 0,
    }
}

/// The full inventory: the host, the Docker engine (asked with
/// `docker_timeout`), and the control plane's region and labels.
pub async fn collect(
    region: &str,
    labels: &BTreeMap<String, String>,
    docker_timeout: Duration,
) -> Inventory {
    let mut inventory = host();
    inventory.docker = Some(docker::probe(docker_timeout).await);
    inventory.region = region.to_owned();
    inventory.labels = labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    inventory
}

/// The address other hosts reach this one on, when not configured: the
/// local address the OS would use to reach the control plane at
/// `control_plane` (`host:port`; a UDP socket is connected, no packet is
/// sent), or 127.0.0.1 when that is loopback or cannot be found.
pub async fn advertise_address(control_plane: &str) -> IpAddr {
    let local = async {
        let target = tokio::net::lookup_host(control_plane).await.ok()?.next()?;
        let any: std::net::SocketAddr = if target.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = tokio::net::UdpSocket::bind(any).await.ok()?;
        socket.connect(target).await.ok()?;
        Some(socket.local_addr().ok()?.ip())
    };
    let found = tokio::time::timeout(Duration::from_secs(5), local)
        .await
        .ok()
        .flatten();
    if found.is_none() {
        tracing::warn!(
            control_plane,
            "cannot find the local address towards the control plane; advertising 127.0.0.1 (set --advertise-address)"
        );
    }
    advertise_choice(found)
}

/// The advertise address for the local address found towards the
/// control plane.
pub fn advertise_choice(found: Option<IpAddr>) -> IpAddr {
    match found {
        Some(ip) if !ip.is_loopback() && !ip.is_unspecified() => ip.to_canonical(),
        _ => IpAddr::from([127, 0, 0, 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_or_nothing_advertises_127_0_0_1() {
        assert_eq!(advertise_choice(None), IpAddr::from([127, 0, 0, 1]));
        assert_eq!(
            advertise_choice(Some("::1".parse().unwrap())),
            IpAddr::from([127, 0, 0, 1])
        );
        assert_eq!(
            advertise_choice(Some("127.0.0.5".parse().unwrap())),
            IpAddr::from([127, 0, 0, 1])
        );
        assert_eq!(
            advertise_choice(Some("10.1.2.3".parse().unwrap())),
            IpAddr::from([10, 1, 2, 3])
        );
    }

    #[tokio::test]
    async fn the_advertise_address_is_the_way_to_the_control_plane() {
        assert_eq!(
            advertise_address("127.0.0.1:7443").await,
            IpAddr::from([127, 0, 0, 1])
        );
        // Unresolvable: loopback, with a warning.
        assert_eq!(
            advertise_address("no-such-host.invalid:7443").await,
            IpAddr::from([127, 0, 0, 1])
        );
    }

    #[tokio::test]
    async fn describes_this_host() {
        let labels = BTreeMap::from([("role".to_owned(), "db".to_owned())]);
        let inventory = collect("eu-west", &labels, Duration::from_millis(300)).await;
        assert!(!inventory.hostname.is_empty());
        assert!(!inventory.kernel.is_empty());
        assert_eq!(inventory.arch, std::env::consts::ARCH);
        assert!(inventory.cpu_count >= 1);
        assert!(inventory.memory_bytes > 0);
        assert_eq!(inventory.agent_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(inventory.region, "eu-west");
        assert_eq!(inventory.labels.get("role").map(String::as_str), Some("db"));
        assert_eq!(inventory.advertise_address, "");
        let mut filled = inventory.clone();
        Advertised {
            address: Some(IpAddr::from([10, 0, 0, 7])),
            http_port: 7480,
            https_port: 0,
        }
        .fill(&mut filled);
        assert_eq!(filled.advertise_address, "10.0.0.7");
        assert_eq!(
            (filled.ingress_http_port, filled.ingress_https_port),
            (7480, 0)
        );
        for disk in &inventory.disks {
            assert!(metrics::is_real_filesystem(
                &disk.filesystem,
                &disk.mount_point
            ));
            assert!(disk.available_bytes <= disk.total_bytes);
        }
        // With or without an engine, the answer is consistent.
        let docker = inventory.docker.unwrap();
        if docker.available {
            assert!(!docker.version.is_empty());
            assert!(docker.error.is_empty());
        } else {
            assert!(!docker.error.is_empty());
        }
    }
}
