//! JSON shapes of the HTTP API and the CLI's `-o json`, converted from the
//! wire types at the edge so both print the same thing.

use argosy_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

#[derive(Debug, Serialize, Deserialize)]
pub struct DiskJson {
    pub mount_point: String,
    pub device: String,
    pub filesystem: String,
    pub total_bytes: u64,
    pub available_bytes: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct InventoryJson {
    pub hostname: String,
    pub os: String,
    pub os_version: String,
    pub kernel: String,
    pub arch: String,
    pub cpu_count: u32,
    pub cpu_model: String,
    pub memory_bytes: u64,
    pub swap_bytes: u64,
    pub disks: Vec<DiskJson>,
    pub agent_version: String,
    pub docker_available: bool,
    pub docker_version: String,
    pub docker_error: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DiskUsageJson {
    pub mount_point: String,
    pub used_bytes: u64,
    pub total_bytes: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SampleJson {
    pub timestamp_ms: i64,
    pub cpu_percent: f64,
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
    pub memory_used_bytes: u64,
    pub memory_available_bytes: u64,
    pub memory_total_bytes: u64,
    pub swap_used_bytes: u64,
    pub swap_total_bytes: u64,
    pub disks: Vec<DiskUsageJson>,
    pub net_rx_bytes_per_second: f64,
    pub net_tx_bytes_per_second: f64,
    pub uptime_seconds: u64,
    pub process_count: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HostJson {
    pub id: String,
    pub hostname: String,
    pub region: String,
    pub labels: BTreeMap<String, String>,
    pub status: String,
    pub last_seen_ms: i64,
    pub enrolled_at_ms: i64,
    pub interval_seconds: u32,
    pub certificate_not_after_ms: i64,
    /// Why the host cannot run containers now; empty when it can.
    pub runtime_error: String,
    pub inventory: Option<InventoryJson>,
    pub latest: Option<SampleJson>,
}

pub fn status_name(status: i32) -> &'static str {
    match pb::HostStatus::try_from(status) {
        Ok(pb::HostStatus::Online) => "online",
        Ok(pb::HostStatus::Offline) => "offline",
        Ok(pb::HostStatus::Revoked) => "revoked",
        _ => "unknown",
    }
}

impl From<pb::Host> for HostJson {
    fn from(h: pb::Host) -> Self {
        Self {
            status: status_name(h.status).to_owned(),
            id: h.id,
            hostname: h.hostname,
            region: h.region,
            labels: h.labels.into_iter().collect(),
            last_seen_ms: h.last_seen_ms,
            enrolled_at_ms: h.enrolled_at_ms,
            interval_seconds: h.interval_seconds,
            certificate_not_after_ms: h.certificate_not_after_ms,
            runtime_error: h.runtime_error,
            inventory: h.inventory.map(|i| {
                let docker = i.docker.unwrap_or_default();
                InventoryJson {
                    hostname: i.hostname,
                    os: i.os,
                    os_version: i.os_version,
                    kernel: i.kernel,
                    arch: i.arch,
                    cpu_count: i.cpu_count,
                    cpu_model: i.cpu_model,
                    memory_bytes: i.memory_bytes,
                    swap_bytes: i.swap_bytes,
                    disks: i
                        .disks
                        .into_iter()
                        .map(|d| DiskJson {
                            mount_point: d.mount_point,
                            device: d.device,
                            filesystem: d.filesystem,
                            total_bytes: d.total_bytes,
                            available_bytes: d.available_bytes,
                        })
                        .collect(),
                    agent_version: i.agent_version,
                    docker_available: docker.available,
                    docker_version: docker.version,
                    docker_error: docker.error,
                }
            }),
            latest: h.latest.map(|s| SampleJson {
                timestamp_ms: s.timestamp_ms,
                cpu_percent: s.cpu_percent,
                load1: s.load1,
                load5: s.load5,
                load15: s.load15,
                memory_used_bytes: s.memory_used_bytes,
                memory_available_bytes: s.memory_available_bytes,
                memory_total_bytes: s.memory_total_bytes,
                swap_used_bytes: s.swap_used_bytes,
                swap_total_bytes: s.swap_total_bytes,
                disks: s
                    .disks
                    .into_iter()
                    .map(|d| DiskUsageJson {
                        mount_point: d.mount_point,
                        used_bytes: d.used_bytes,
                        total_bytes: d.total_bytes,
                    })
                    .collect(),
                net_rx_bytes_per_second: s.net_rx_bytes_per_second,
                net_tx_bytes_per_second: s.net_tx_bytes_per_second,
                uptime_seconds: s.uptime_seconds,
                process_count: s.process_count,
            }),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PointJson {
    pub timestamp_ms: i64,
    pub avg: f64,
    pub max: f64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct MetricsJson {
    pub host_id: String,
    pub metric: String,
    pub unit: String,
    pub step_ms: i64,
    pub points: Vec<PointJson>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct JoinTokenJson {
    pub id: String,
    pub region: String,
    pub labels: BTreeMap<String, String>,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub max_uses: u32,
    pub uses: u32,
    pub revoked: bool,
    pub created_by: String,
}

impl From<pb::JoinToken> for JoinTokenJson {
    fn from(t: pb::JoinToken) -> Self {
        Self {
            id: t.id,
            region: t.region,
            labels: t.labels.into_iter().collect(),
            created_at_ms: t.created_at_ms,
            expires_at_ms: t.expires_at_ms,
            max_uses: t.max_uses,
            uses: t.uses,
            revoked: t.revoked,
            created_by: t.created_by,
        }
    }
}

pub fn role_name(role: i32) -> &'static str {
    match pb::Role::try_from(role) {
        Ok(pb::Role::Admin) => "admin",
        Ok(pb::Role::Operator) => "operator",
        Ok(pb::Role::Viewer) => "viewer",
        _ => "unknown",
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ApiTokenJson {
    pub id: String,
    pub name: String,
    pub role: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub revoked: bool,
    pub created_by: String,
    pub last_used_ms: i64,
}

impl From<pb::ApiToken> for ApiTokenJson {
    fn from(t: pb::ApiToken) -> Self {
        Self {
            role: role_name(t.role).to_owned(),
            id: t.id,
            name: t.name,
            created_at_ms: t.created_at_ms,
            expires_at_ms: t.expires_at_ms,
            revoked: t.revoked,
            created_by: t.created_by,
            last_used_ms: t.last_used_ms,
        }
    }
}

/// A deployment as JSON (HTTP API and `-o json`).
pub fn deployment_json(d: &pb::Deployment) -> serde_json::Value {
    json!({
        "id": d.id, "service": d.service, "from_revision": d.from_revision, "to_revision": d.to_revision,
        "strategy": d.strategy, "phase": d.phase, "finished": d.finished, "replicas": d.replicas,
        "new_healthy": d.new_healthy, "new_total": d.new_total, "old_total": d.old_total,
        "created_at_ms": d.created_at_ms, "updated_at_ms": d.updated_at_ms, "created_by": d.created_by,
    })
}

/// A service with its allocations and history as JSON.
pub fn service_json(s: &pb::Service) -> serde_json::Value {
    json!({
        "name": s.name, "current_revision": s.current_revision, "stable_revision": s.stable_revision,
        "replicas": s.replicas, "running": s.running, "healthy": s.healthy,
        "active_deployment_id": s.active_deployment_id, "stopped": s.stopped,
        "history": s.history.iter().map(|e| json!({
            "seq": e.seq, "at_ms": e.at_ms, "deployment_id": e.deployment_id, "message": e.message,
        })).collect::<Vec<_>>(),
        "allocations": s.allocations.iter().map(|a| json!({
            "id": a.id, "revision": a.revision, "host_id": a.host_id, "state": a.state, "health": a.health,
            "stopping": a.stopping, "message": a.message, "restarts": a.restarts, "oom_killed": a.oom_killed,
            "container_id": a.container_id,
        })).collect::<Vec<_>>(),
    })
}

/// A revision as JSON.
pub fn revision_json(r: &pb::Revision) -> serde_json::Value {
    json!({"service": r.service, "number": r.number, "id": r.id, "created_at_ms": r.created_at_ms,
           "created_by": r.created_by, "format": r.format, "spec": r.spec})
}

/// What a scale or stop did, as JSON.
pub fn service_change_json(change: &pb::ServiceChange) -> serde_json::Value {
    json!({
        "started": change.started, "stopping": change.stopping, "message": change.message,
        "service": change.service.as_ref().map(service_json),
    })
}
