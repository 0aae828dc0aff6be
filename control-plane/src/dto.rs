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
    /// Where other hosts reach this host's ingress and route ports.
    #[serde(default)]
    pub advertise_address: String,
    /// The ingress ports (0: that listener is off).
    #[serde(default)]
    pub ingress_http_port: u32,
    #[serde(default)]
    pub ingress_https_port: u32,
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
                    advertise_address: i.advertise_address,
                    ingress_http_port: i.ingress_http_port,
                    ingress_https_port: i.ingress_https_port,
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
    pub scope: ScopeJson,
    /// The user of a login session; empty for an API token.
    pub user: String,
}

/// A scope as JSON: both lists empty means the whole fleet.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ScopeJson {
    #[serde(default)]
    pub regions: Vec<String>,
    #[serde(default)]
    pub service_prefixes: Vec<String>,
}

impl From<Option<pb::Scope>> for ScopeJson {
    fn from(scope: Option<pb::Scope>) -> Self {
        let scope = scope.unwrap_or_default();
        Self {
            regions: scope.regions,
            service_prefixes: scope.service_prefixes,
        }
    }
}

impl From<ScopeJson> for pb::Scope {
    fn from(scope: ScopeJson) -> Self {
        Self {
            regions: scope.regions,
            service_prefixes: scope.service_prefixes,
        }
    }
}

/// A user as JSON (HTTP API and `argosy user list -o json`); never a
/// password hash.
#[derive(Debug, Serialize, Deserialize)]
pub struct UserJson {
    pub name: String,
    pub role: String,
    pub scope: ScopeJson,
    pub created_at_ms: i64,
    pub created_by: String,
    pub updated_at_ms: i64,
    pub password_changed_at_ms: i64,
}

impl From<pb::User> for UserJson {
    fn from(u: pb::User) -> Self {
        Self {
            role: role_name(u.role).to_owned(),
            scope: u.scope.into(),
            name: u.name,
            created_at_ms: u.created_at_ms,
            created_by: u.created_by,
            updated_at_ms: u.updated_at_ms,
            password_changed_at_ms: u.password_changed_at_ms,
        }
    }
}

/// Who the caller is, as JSON (`argosy whoami -o json`).
#[derive(Debug, Serialize, Deserialize)]
pub struct WhoAmIJson {
    /// `user:alice` or `token:ci`.
    pub actor: String,
    /// `user` or `token`.
    pub kind: String,
    pub name: String,
    pub token_id: String,
    pub role: String,
    pub scope: ScopeJson,
}

impl From<pb::WhoAmIResponse> for WhoAmIJson {
    fn from(me: pb::WhoAmIResponse) -> Self {
        let kind = match pb::PrincipalKind::try_from(me.kind) {
            Ok(pb::PrincipalKind::User) => "user",
            _ => "token",
        };
        Self {
            actor: format!("{kind}:{}", me.name),
            kind: kind.to_owned(),
            role: role_name(me.role).to_owned(),
            scope: me.scope.into(),
            name: me.name,
            token_id: me.token_id,
        }
    }
}

impl From<pb::ApiToken> for ApiTokenJson {
    fn from(t: pb::ApiToken) -> Self {
        Self {
            scope: t.scope.into(),
            user: t.user,
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
           "created_by": r.created_by, "format": r.format, "spec": r.spec,
           "secret_versions": r.secret_versions.iter().collect::<std::collections::BTreeMap<_, _>>()})
}

/// What a scale or stop did, as JSON.
pub fn service_change_json(change: &pb::ServiceChange) -> serde_json::Value {
    json!({
        "started": change.started, "stopping": change.stopping, "message": change.message,
        "service": change.service.as_ref().map(service_json),
    })
}

/// One audit record as JSON (HTTP API and `argosy audit list -o json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditRecordJson {
    pub seq: i64,
    pub at_ms: i64,
    pub actor: String,
    pub source: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub prev_hash: String,
    pub hash: String,
}

impl From<pb::AuditRecord> for AuditRecordJson {
    fn from(r: pb::AuditRecord) -> Self {
        Self {
            seq: r.seq,
            at_ms: r.at_ms,
            actor: r.actor,
            source: r.source,
            action: r.action,
            target: r.target,
            outcome: r.outcome,
            prev_hash: r.prev_hash,
            hash: r.hash,
        }
    }
}

/// The result of verifying the audit chain as JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditVerificationJson {
    pub ok: bool,
    pub records: u64,
    pub head_seq: i64,
    pub head_hash: String,
    pub problems: Vec<String>,
}

impl From<pb::VerifyAuditResponse> for AuditVerificationJson {
    fn from(r: pb::VerifyAuditResponse) -> Self {
        Self {
            ok: r.problems.is_empty(),
            records: r.records,
            head_seq: r.head_seq,
            head_hash: r.head_hash,
            problems: r.problems,
        }
    }
}

/// A secret's metadata as JSON (never its value).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SecretJson {
    pub name: String,
    pub latest_version: u32,
    pub versions_kept: u32,
    pub created_at_ms: i64,
    pub created_by: String,
    pub updated_at_ms: i64,
    pub updated_by: String,
}

impl From<pb::SecretInfo> for SecretJson {
    fn from(s: pb::SecretInfo) -> Self {
        Self {
            name: s.name,
            latest_version: s.latest_version,
            versions_kept: s.versions_kept,
            created_at_ms: s.created_at_ms,
            created_by: s.created_by,
            updated_at_ms: s.updated_at_ms,
            updated_by: s.updated_by,
        }
    }
}

/// One stored version of a secret as JSON (never its value).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SecretVersionJson {
    pub version: u32,
    pub created_at_ms: i64,
    pub created_by: String,
    pub master_key_id: String,
}

impl From<pb::SecretVersionInfo> for SecretVersionJson {
    fn from(v: pb::SecretVersionInfo) -> Self {
        Self {
            version: v.version,
            created_at_ms: v.created_at_ms,
            created_by: v.created_by,
            master_key_id: v.master_key_id,
        }
    }
}

// ---- backups ----

/// How a backup policy stands, as JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupPolicyStatusJson {
    pub state: String,
    pub reason: String,
    pub last_success_at_ms: i64,
    pub age_seconds: u64,
    pub last_failure_at_ms: i64,
    pub last_error: String,
    pub last_verified_at_ms: i64,
    pub last_verify: String,
    pub measured_rto_ms: u64,
    pub next_run_at_ms: i64,
    pub next_verify_at_ms: i64,
}

/// A backup policy with its status, as JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupPolicyJson {
    pub name: String,
    pub source_kind: String,
    pub host_id: String,
    pub schedule: String,
    pub verify_schedule: String,
    pub rpo_seconds: u64,
    pub destinations: Vec<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub updated_by: String,
    pub status: Option<BackupPolicyStatusJson>,
    pub spec: String,
}

impl From<pb::BackupPolicy> for BackupPolicyJson {
    fn from(p: pb::BackupPolicy) -> Self {
        Self {
            name: p.name,
            source_kind: p.source_kind,
            host_id: p.host_id,
            schedule: p.schedule,
            verify_schedule: p.verify_schedule,
            rpo_seconds: p.rpo_seconds,
            destinations: p.destinations,
            created_at_ms: p.created_at_ms,
            updated_at_ms: p.updated_at_ms,
            updated_by: p.updated_by,
            status: p.status.map(|s| BackupPolicyStatusJson {
                state: s.state,
                reason: s.reason,
                last_success_at_ms: s.last_success_at_ms,
                age_seconds: s.age_seconds,
                last_failure_at_ms: s.last_failure_at_ms,
                last_error: s.last_error,
                last_verified_at_ms: s.last_verified_at_ms,
                last_verify: s.last_verify,
                measured_rto_ms: s.measured_rto_ms,
                next_run_at_ms: s.next_run_at_ms,
                next_verify_at_ms: s.next_verify_at_ms,
            }),
            spec: p.spec,
        }
    }
}

/// A table's rows in a manifest, or expected and restored in a verification.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableCheckJson {
    pub table: String,
    pub expected_rows: u64,
    pub restored_rows: u64,
}

/// Where a copy of an artifact is stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredCopyJson {
    pub destination: String,
    pub location: String,
    pub bytes: u64,
}

/// A backup's manifest as JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupManifestJson {
    pub source_kind: String,
    pub raw_bytes: u64,
    pub compressed_bytes: u64,
    pub artifact_bytes: u64,
    pub sha256: String,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub dump_ms: u64,
    pub total_ms: u64,
    pub tool_versions: BTreeMap<String, String>,
    pub tables: BTreeMap<String, u64>,
    pub copies: Vec<StoredCopyJson>,
    pub encryption: String,
    pub artifact: String,
}

impl From<pb::BackupManifest> for BackupManifestJson {
    fn from(m: pb::BackupManifest) -> Self {
        Self {
            source_kind: m.source_kind,
            raw_bytes: m.raw_bytes,
            compressed_bytes: m.compressed_bytes,
            artifact_bytes: m.artifact_bytes,
            sha256: m.sha256,
            started_at_ms: m.started_at_ms,
            finished_at_ms: m.finished_at_ms,
            dump_ms: m.dump_ms,
            total_ms: m.total_ms,
            tool_versions: m.tool_versions.into_iter().collect(),
            tables: m.tables.into_iter().map(|t| (t.table, t.rows)).collect(),
            copies: m
                .copies
                .into_iter()
                .map(|c| StoredCopyJson {
                    destination: c.destination,
                    location: c.location,
                    bytes: c.bytes,
                })
                .collect(),
            encryption: m.encryption,
            artifact: m.artifact,
        }
    }
}

fn table_checks(tables: Vec<pb::TableCheck>) -> Vec<TableCheckJson> {
    tables
        .into_iter()
        .map(|t| TableCheckJson {
            table: t.table,
            expected_rows: t.expected_rows,
            restored_rows: t.restored_rows,
        })
        .collect()
}

/// A backup as JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupJson {
    pub id: String,
    pub policy: String,
    pub host_id: String,
    pub state: String,
    pub trigger: String,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub error: String,
    pub manifest: Option<BackupManifestJson>,
    pub verify_state: String,
    pub verified_at_ms: i64,
    pub verify_error: String,
    pub restore_ms: u64,
    pub tables: Vec<TableCheckJson>,
    pub created_by: String,
}

impl From<pb::Backup> for BackupJson {
    fn from(b: pb::Backup) -> Self {
        Self {
            id: b.id,
            policy: b.policy,
            host_id: b.host_id,
            state: b.state,
            trigger: b.trigger,
            started_at_ms: b.started_at_ms,
            finished_at_ms: b.finished_at_ms,
            error: b.error,
            manifest: b.manifest.map(BackupManifestJson::from),
            verify_state: b.verify_state,
            verified_at_ms: b.verified_at_ms,
            verify_error: b.verify_error,
            restore_ms: b.restore_ms,
            tables: table_checks(b.tables),
            created_by: b.created_by,
        }
    }
}

/// A backup job as JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupJobJson {
    pub id: String,
    pub kind: String,
    pub policy: String,
    pub backup_id: String,
    pub host_id: String,
    pub state: String,
    pub trigger: String,
    pub created_at_ms: i64,
    pub finished_at_ms: i64,
    pub error: String,
    pub stage: String,
    pub bytes: u64,
    pub total_bytes: u64,
    pub restore_ms: u64,
    pub duration_ms: u64,
    pub tables: Vec<TableCheckJson>,
    pub pruned: Vec<String>,
    pub manifest: Option<BackupManifestJson>,
    pub created_by: String,
}

impl From<pb::BackupJobInfo> for BackupJobJson {
    fn from(j: pb::BackupJobInfo) -> Self {
        let progress = j.progress.unwrap_or_default();
        let result = j.result.unwrap_or_default();
        Self {
            id: j.id,
            kind: j.kind,
            policy: j.policy,
            backup_id: j.backup_id,
            host_id: j.host_id,
            state: j.state,
            trigger: j.trigger,
            created_at_ms: j.created_at_ms,
            finished_at_ms: j.finished_at_ms,
            error: j.error,
            stage: progress.stage,
            bytes: progress.bytes,
            total_bytes: progress.total_bytes,
            restore_ms: result.restore_ms,
            duration_ms: result.duration_ms,
            tables: table_checks(result.tables),
            pruned: result.pruned,
            manifest: result.manifest.map(BackupManifestJson::from),
            created_by: j.created_by,
        }
    }
}

/// One backend of a region's route as JSON; `weight_percent` is the share
/// of the region's requests (0 for a draining allocation).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RouteBackendJson {
    pub allocation: String,
    pub host: String,
    pub region: String,
    pub revision: u64,
    pub address: String,
    pub weight_ppm: u32,
    pub weight_percent: f64,
    /// Weight 0, used only when no weighted backend answers (a failover
    /// region's allocation); a weight-0 backend that is not a standby is
    /// draining.
    #[serde(default)]
    pub standby: bool,
}

impl From<pb::RouteBackend> for RouteBackendJson {
    fn from(b: pb::RouteBackend) -> Self {
        Self {
            weight_percent: f64::from(b.weight) / 10_000.0,
            weight_ppm: b.weight,
            standby: b.standby,
            allocation: b.allocation,
            host: b.host,
            region: b.region,
            revision: b.revision,
            address: b.address,
        }
    }
}

/// One region's route for a service as JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RegionRoutesJson {
    pub region: String,
    pub serving: bool,
    pub explanation: String,
    pub backends: Vec<RouteBackendJson>,
}

/// What the ingresses measured for one revision as JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RevisionTrafficJson {
    pub revision: u64,
    pub requests: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// `argosy routes show` and `GET /api/v1/routes/{service}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceRoutesJson {
    pub service: String,
    pub hostnames: Vec<String>,
    pub paths: Vec<String>,
    pub regions: String,
    pub tls: String,
    pub by_region: Vec<RegionRoutesJson>,
    pub traffic: Vec<RevisionTrafficJson>,
}

impl From<pb::ShowRoutesResponse> for ServiceRoutesJson {
    fn from(r: pb::ShowRoutesResponse) -> Self {
        Self {
            service: r.service,
            hostnames: r.hostnames,
            paths: r.paths,
            regions: r.regions,
            tls: r.tls,
            by_region: r
                .by_region
                .into_iter()
                .map(|region| RegionRoutesJson {
                    region: region.region,
                    serving: region.serving,
                    explanation: region.explanation,
                    backends: region.backends.into_iter().map(Into::into).collect(),
                })
                .collect(),
            traffic: r
                .traffic
                .into_iter()
                .map(|t| RevisionTrafficJson {
                    revision: t.revision,
                    requests: t.requests,
                    errors: t.errors,
                    p50_ms: t.p50_micros as f64 / 1000.0,
                    p99_ms: t.p99_micros as f64 / 1000.0,
                })
                .collect(),
        }
    }
}

/// A measured round trip between regions as JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RegionLatencyJson {
    pub from_region: String,
    pub to_region: String,
    pub rtt_ms: f64,
}

/// `argosy routes list -o json` and `GET /api/v1/routes`: every routed
/// service and the round trips measured between regions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RoutesJson {
    pub routes: Vec<RouteSummaryJson>,
    pub latencies: Vec<RegionLatencyJson>,
}

impl From<pb::ListRoutesResponse> for RoutesJson {
    fn from(r: pb::ListRoutesResponse) -> Self {
        Self {
            routes: r.routes.into_iter().map(Into::into).collect(),
            latencies: r
                .latencies
                .into_iter()
                .map(|l| RegionLatencyJson {
                    from_region: l.from_region,
                    to_region: l.to_region,
                    rtt_ms: l.rtt_micros as f64 / 1000.0,
                })
                .collect(),
        }
    }
}

/// One routed service in `argosy routes list` and `GET /api/v1/routes`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RouteSummaryJson {
    pub service: String,
    pub hostnames: Vec<String>,
    pub paths: Vec<String>,
    pub regions: String,
    pub serving: Vec<String>,
    pub not_serving: Vec<String>,
}

impl From<pb::RouteSummary> for RouteSummaryJson {
    fn from(r: pb::RouteSummary) -> Self {
        Self {
            service: r.service,
            hostnames: r.hostnames,
            paths: r.paths,
            regions: r.regions,
            serving: r.serving,
            not_serving: r.not_serving,
        }
    }
}
