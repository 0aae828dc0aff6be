//! What the agent tells the control plane about its host (at enrollment and
//! in every `Hello`): OS, kernel, CPUs, memory, disks, Docker, and the
//! region and labels the control plane assigned.

use crate::docker;
use crate::metrics;
use argosy_proto::v1::Inventory;
use std::collections::BTreeMap;
use std::time::Duration;
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, System};

/// The agent's version, as reported in the inventory.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

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

#[cfg(test)]
mod tests {
    use super::*;

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
