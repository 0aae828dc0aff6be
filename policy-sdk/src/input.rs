//! What each hook gives a policy (docs/policies.md). Every field has a
//! default, so a policy built with this SDK keeps working when the control
//! plane adds fields.

use serde::Deserialize;
use std::collections::BTreeMap;

/// The time of the call (policies have no clock).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Now {
    pub unix_ms: i64,
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    /// `mon` … `sun`.
    pub weekday: String,
}

/// `deployment.admit`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AdmitInput {
    pub spec: Spec,
    /// The spec as written (plus defaults filled so far), as JSON.
    pub document: serde_json::Value,
    pub format: String,
    pub actor: String,
    pub now: Now,
    pub dry_run: bool,
    pub service: Option<ServiceState>,
    pub facts: Facts,
}

/// The validated spec.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Spec {
    pub name: String,
    pub image: String,
    /// `latest` when the image names no tag; `None` when pinned by digest only.
    pub image_tag: Option<String>,
    pub image_digest: Option<String>,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub secret_env: BTreeMap<String, String>,
    pub secret_files: Vec<String>,
    pub ports: Vec<Port>,
    pub volumes: Vec<Volume>,
    pub replicas: u32,
    pub placement: Placement,
    pub resources: Resources,
    pub health_check: Option<String>,
    pub restart: String,
    pub update_strategy: String,
    pub pre_deploy_backup: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Port {
    pub container_port: u16,
    pub host_port: Option<u16>,
    pub host_ip: Option<String>,
    pub protocol: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Volume {
    pub kind: String,
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Placement {
    pub regions: BTreeMap<String, Option<u32>>,
    pub constraints: BTreeMap<String, String>,
}

/// Limits; `None` where the spec sets none.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default)]
pub struct Resources {
    pub cpu_millis: Option<u32>,
    pub memory_bytes: Option<u64>,
    pub memory_swap_bytes: Option<u64>,
    pub pids: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ServiceState {
    pub current_revision: Option<i64>,
    pub stable_revision: Option<i64>,
    pub replicas: u32,
    pub stopped: bool,
    pub current_image: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Facts {
    /// For the spec's `pre_deploy_backup`: its newest verified backup.
    pub backups: BTreeMap<String, BackupFact>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default)]
pub struct BackupFact {
    pub last_verified_at_ms: Option<i64>,
    pub age_seconds: Option<i64>,
}

/// `placement.filter`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PlacementInput {
    pub allocation: Allocation,
    pub host: Host,
    pub now: Now,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Allocation {
    pub service: String,
    pub revision: i64,
    pub count: u32,
    pub image: String,
    pub resources: Resources,
    pub placement: Placement,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Host {
    pub id: String,
    pub hostname: String,
    pub region: String,
    pub labels: BTreeMap<String, String>,
    pub status: String,
    pub inventory: Inventory,
    pub load: Option<Load>,
    pub reserved: Capacity,
    pub free: Capacity,
    pub services: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Inventory {
    pub os: String,
    pub os_version: String,
    pub kernel: String,
    pub arch: String,
    pub cpu_count: u32,
    pub memory_bytes: u64,
    pub agent_version: String,
    pub docker_version: String,
    pub docker_available: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Load {
    pub at_ms: i64,
    pub cpu_percent: f64,
    pub load1: f64,
    pub memory_used_bytes: u64,
    pub memory_available_bytes: u64,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default)]
pub struct Capacity {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

/// `rollout.analyze`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AnalyzeInput {
    pub deployment: Deployment,
    pub canary: GroupHealth,
    pub stable: GroupHealth,
    /// Per-revision request metrics; empty until the control plane collects them.
    pub metrics: Metrics,
    pub now: Now,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Deployment {
    pub id: String,
    pub service: String,
    pub from_revision: Option<String>,
    pub to_revision: String,
    pub step: usize,
    pub steps: usize,
    pub replicas: u32,
    pub elapsed_ms: i64,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default)]
pub struct GroupHealth {
    pub allocations: u32,
    pub healthy: u32,
    pub unhealthy: u32,
    pub starting: u32,
    pub failed: u32,
    pub restarts: u32,
    pub oom_kills: u32,
    pub healthy_for_ms: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Metrics {
    pub canary: BTreeMap<String, f64>,
    pub stable: BTreeMap<String, f64>,
}
