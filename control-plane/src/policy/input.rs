//! What each hook gives a policy, as the JSON documented in
//! `docs/policies.md`. These types are the ABI's input side: fields are
//! only ever added. Built from the control plane's domain types by pure
//! functions; no I/O.

use crate::deploy::model::{
    HealthProbe, RegionCount, RestartPolicy, ServiceSpec, UpdateStrategy, VolumeSource,
};
use serde::Serialize;
use std::collections::BTreeMap;

/// The ABI version this control plane speaks.
pub const ABI_VERSION: u32 = 1;

/// The request a module receives: `{"abi": 1, "hook": …, "policy": NAME,
/// "config": {…}, "input": {…}}`. `config_json` and `input_json` are JSON
/// texts already validated (the configuration at upload), so the input is
/// serialized once however many policies read it.
pub fn envelope(hook: super::Hook, policy: &str, config_json: &str, input_json: &str) -> Vec<u8> {
    let name = serde_json::Value::String(policy.to_owned());
    let config = if config_json.trim().is_empty() {
        "{}"
    } else {
        config_json
    };
    format!(
        "{{\"abi\":{ABI_VERSION},\"hook\":\"{hook}\",\"policy\":{name},\"config\":{config},\"input\":{input_json}}}"
    )
    .into_bytes()
}

/// The time of the call, in milliseconds and broken down in UTC, so a
/// policy needs no clock (it has none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Now {
    pub unix_ms: i64,
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    /// `mon`, `tue`, … `sun`.
    pub weekday: &'static str,
}

impl Now {
    pub fn at(unix_ms: i64) -> Now {
        let utc = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let weekday = match utc.weekday() {
            time::Weekday::Monday => "mon",
            time::Weekday::Tuesday => "tue",
            time::Weekday::Wednesday => "wed",
            time::Weekday::Thursday => "thu",
            time::Weekday::Friday => "fri",
            time::Weekday::Saturday => "sat",
            time::Weekday::Sunday => "sun",
        };
        Now {
            unix_ms,
            year: utc.year(),
            month: u8::from(utc.month()),
            day: utc.day(),
            hour: utc.hour(),
            minute: utc.minute(),
            weekday,
        }
    }
}

// ---------------------------------------------------------------------------
// deployment.admit

/// `deployment.admit`: a revision about to be accepted.
#[derive(Debug, Clone, Serialize)]
pub struct AdmitInput {
    /// The validated spec, normalized (units resolved, defaults of the
    /// spec language applied; a missing limit is `null`).
    pub spec: SpecView,
    /// The spec document as written (YAML or TOML, as JSON), plus the
    /// defaults policies filled in so far. `defaults` in an answer use the
    /// field names of this document.
    pub document: serde_json::Value,
    /// `yaml` or `toml`.
    pub format: &'static str,
    /// Who applies it: `user:alice`, `token:ci`.
    pub actor: String,
    pub now: Now,
    /// `argosy apply --dry-run`: nothing will be stored.
    pub dry_run: bool,
    /// The service as it stands, `null` for a new one.
    pub service: Option<ServiceState>,
    pub facts: Facts,
}

/// The validated spec as policies see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpecView {
    pub name: String,
    pub image: String,
    /// The tag of `image` (`latest` when none is written), `null` when the
    /// image is pinned by digest only.
    pub image_tag: Option<String>,
    pub image_digest: Option<String>,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Environment variables fed from secrets: variable → `name` or
    /// `name@version` (never a value).
    pub secret_env: BTreeMap<String, String>,
    pub secret_files: Vec<String>,
    pub ports: Vec<PortView>,
    pub volumes: Vec<VolumeView>,
    pub replicas: u32,
    pub placement: PlacementView,
    pub resources: ResourcesView,
    /// `http`, `tcp`, `exec`, or `null` without a health check.
    pub health_check: Option<&'static str>,
    /// `always`, `on-failure` or `never`.
    pub restart: &'static str,
    /// `rolling`, `blue_green` or `canary`.
    pub update_strategy: &'static str,
    /// The backup policy that must run before this service deploys.
    pub pre_deploy_backup: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortView {
    pub container_port: u16,
    pub host_port: Option<u16>,
    pub host_ip: Option<String>,
    /// `tcp` or `udp`.
    pub protocol: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeView {
    /// `named` or `bind`.
    pub kind: &'static str,
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct PlacementView {
    /// Region → exact count, `null` for an even share.
    pub regions: BTreeMap<String, Option<u32>>,
    pub constraints: BTreeMap<String, String>,
}

/// Limits as the spec sets them; `null` where it sets none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ResourcesView {
    pub cpu_millis: Option<u32>,
    pub memory_bytes: Option<u64>,
    pub memory_swap_bytes: Option<u64>,
    pub pids: Option<u32>,
}

/// The service before this apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceState {
    pub current_revision: Option<i64>,
    pub stable_revision: Option<i64>,
    pub replicas: u32,
    pub stopped: bool,
    /// The image of the current revision, when there is one.
    pub current_image: Option<String>,
}

/// Fleet facts a policy cannot look up itself.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Facts {
    /// For the spec's `pre_deploy_backup` (empty without one): the newest
    /// verified backup of that backup policy.
    pub backups: BTreeMap<String, BackupFact>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BackupFact {
    pub last_verified_at_ms: Option<i64>,
    pub age_seconds: Option<i64>,
}

impl BackupFact {
    pub fn new(last_verified_at_ms: Option<i64>, now_ms: i64) -> BackupFact {
        BackupFact {
            last_verified_at_ms,
            age_seconds: last_verified_at_ms.map(|at| (now_ms - at).max(0) / 1000),
        }
    }
}

/// Splits `registry:5000/team/app:1.2@sha256:…` into tag and digest.
fn image_parts(image: &str) -> (Option<String>, Option<String>) {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest.to_owned())),
        None => (image, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    let tag = match last.split_once(':') {
        Some((_, tag)) => Some(tag.to_owned()),
        None if digest.is_some() => None,
        None => Some("latest".to_owned()),
    };
    (tag, digest)
}

/// The spec as policies see it.
pub fn spec_view(spec: &ServiceSpec, pre_deploy_backup: Option<&str>) -> SpecView {
    let (image_tag, image_digest) = image_parts(&spec.image);
    let nonzero_u32 = |v: u32| (v > 0).then_some(v);
    SpecView {
        name: spec.name.clone(),
        image: spec.image.clone(),
        image_tag,
        image_digest,
        command: spec.command.clone(),
        env: spec.env.clone(),
        secret_env: spec
            .secret_env
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect(),
        secret_files: spec
            .secret_files
            .iter()
            .map(|f| f.secret.to_string())
            .collect(),
        ports: spec
            .ports
            .iter()
            .map(|p| PortView {
                container_port: p.container_port,
                host_port: p.host_port,
                host_ip: p.host_ip.map(|ip| ip.to_string()),
                protocol: match p.protocol {
                    crate::deploy::model::Protocol::Tcp => "tcp",
                    crate::deploy::model::Protocol::Udp => "udp",
                },
            })
            .collect(),
        volumes: spec
            .volumes
            .iter()
            .map(|v| {
                let (kind, source) = match &v.source {
                    VolumeSource::Named(name) => ("named", name.clone()),
                    VolumeSource::Bind(path) => ("bind", path.display().to_string()),
                };
                VolumeView {
                    kind,
                    source,
                    target: v.target.clone(),
                    read_only: v.read_only,
                }
            })
            .collect(),
        replicas: spec.replicas,
        placement: PlacementView {
            regions: spec
                .placement
                .regions
                .iter()
                .map(|r| {
                    let count = match r.count {
                        RegionCount::Exactly(n) => Some(n),
                        RegionCount::Spread => None,
                    };
                    (r.region.clone(), count)
                })
                .collect(),
            constraints: spec.placement.constraints.clone(),
        },
        resources: ResourcesView {
            cpu_millis: nonzero_u32(spec.resources.cpu_millis),
            memory_bytes: (spec.resources.memory_bytes > 0).then_some(spec.resources.memory_bytes),
            memory_swap_bytes: spec.resources.memory_swap_bytes,
            pids: spec.resources.pids,
        },
        health_check: spec.health_check.as_ref().map(|h| match h.probe {
            HealthProbe::Http { .. } => "http",
            HealthProbe::Tcp { .. } => "tcp",
            HealthProbe::Exec { .. } => "exec",
        }),
        restart: match spec.restart {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure { .. } => "on-failure",
            RestartPolicy::Never => "never",
        },
        update_strategy: match spec.update {
            UpdateStrategy::Rolling(_) => "rolling",
            UpdateStrategy::BlueGreen(_) => "blue_green",
            UpdateStrategy::Canary(_) => "canary",
        },
        pre_deploy_backup: pre_deploy_backup.map(str::to_owned),
    }
}

// ---------------------------------------------------------------------------
// placement.filter

/// `placement.filter`: one candidate host for the allocations of one
/// revision (a placement batch is always of one revision, so each host is
/// asked once per batch).
#[derive(Debug, Clone, Serialize)]
pub struct PlacementInput {
    pub allocation: AllocationView,
    pub host: HostView,
    pub now: Now,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AllocationView {
    pub service: String,
    pub revision: i64,
    /// How many allocations this batch places.
    pub count: u32,
    pub image: String,
    pub resources: ResourcesView,
    pub placement: PlacementView,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostView {
    pub id: String,
    pub hostname: String,
    pub region: String,
    pub labels: BTreeMap<String, String>,
    /// `online`, `offline` or `revoked`.
    pub status: &'static str,
    pub inventory: InventoryView,
    /// The latest sample, `null` before the first one.
    pub load: Option<LoadView>,
    /// What the allocations placed there reserve, and what is left.
    pub reserved: CapacityView,
    pub free: CapacityView,
    /// Live allocations there, by service.
    pub services: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct InventoryView {
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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadView {
    pub at_ms: i64,
    pub cpu_percent: f64,
    pub load1: f64,
    pub memory_used_bytes: u64,
    pub memory_available_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct CapacityView {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

// ---------------------------------------------------------------------------
// rollout.analyze

/// `rollout.analyze`: a canary step whose allocations are up, before the
/// deployment moves on.
#[derive(Debug, Clone, Serialize)]
pub struct AnalyzeInput {
    pub deployment: DeploymentView,
    /// The allocations of the new revision.
    pub canary: GroupHealth,
    /// The allocations of every other revision still running.
    pub stable: GroupHealth,
    /// Per-revision request metrics (requests, errors, latency). Empty
    /// objects until the control plane collects them.
    pub metrics: RevisionMetrics,
    pub now: Now,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeploymentView {
    pub id: String,
    pub service: String,
    pub from_revision: Option<String>,
    pub to_revision: String,
    /// 0 for the canaries, then the promotion step.
    pub step: usize,
    /// How many steps there are after the canaries (the last is 100 %).
    pub steps: usize,
    pub replicas: u32,
    /// How long the deployment has been running.
    pub elapsed_ms: i64,
}

/// Health of a group of allocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct GroupHealth {
    pub allocations: u32,
    pub healthy: u32,
    pub unhealthy: u32,
    pub starting: u32,
    pub failed: u32,
    /// Container restarts and OOM kills reported by the agents.
    pub restarts: u32,
    pub oom_kills: u32,
    /// The longest time one of them has been healthy.
    pub healthy_for_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct RevisionMetrics {
    pub canary: BTreeMap<String, f64>,
    pub stable: BTreeMap<String, f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::spec::{Format, parse};

    #[test]
    fn the_envelope_is_json() {
        let bytes = envelope(
            super::super::Hook::DeploymentAdmit,
            "limits",
            r#"{"max": 1}"#,
            r#"{"spec": {}}"#,
        );
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "abi": 1,
                "hook": "deployment.admit",
                "policy": "limits",
                "config": {"max": 1},
                "input": {"spec": {}}
            })
        );
        let value: serde_json::Value =
            serde_json::from_slice(&envelope(super::super::Hook::RolloutAnalyze, "a", "", "{}"))
                .unwrap();
        assert_eq!(value["config"], serde_json::json!({}));
    }

    #[test]
    fn images_split_into_tag_and_digest() {
        let cases = [
            ("nginx", Some("latest"), None),
            ("nginx:1.25", Some("1.25"), None),
            ("registry:5000/team/app", Some("latest"), None),
            ("registry:5000/team/app:v2", Some("v2"), None),
            ("app@sha256:ab", None, Some("sha256:ab")),
            ("app:1@sha256:ab", Some("1"), Some("sha256:ab")),
        ];
        for (image, tag, digest) in cases {
            let (t, d) = image_parts(image);
            assert_eq!((t.as_deref(), d.as_deref()), (tag, digest), "{image}");
        }
    }

    #[test]
    fn the_spec_view_shows_missing_limits_as_null() {
        let spec = parse("name: web\nimage: nginx\n", Format::Yaml).unwrap();
        let view = spec_view(&spec, None);
        assert_eq!(view.resources, ResourcesView::default());
        assert_eq!(view.image_tag.as_deref(), Some("latest"));
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["resources"]["memory_bytes"], serde_json::Value::Null);
        assert_eq!(json["update_strategy"], "rolling");
        let spec = parse(
            "name: web\nimage: nginx:1\nresources: {memory: 64MiB, cpu: 0.5}\n",
            Format::Yaml,
        )
        .unwrap();
        let view = spec_view(&spec, Some("nightly"));
        assert_eq!(view.resources.memory_bytes, Some(64 << 20));
        assert_eq!(view.resources.cpu_millis, Some(500));
        assert_eq!(view.pre_deploy_backup.as_deref(), Some("nightly"));
    }

    #[test]
    fn now_is_broken_down_in_utc() {
        // 2025-11-21 14:00 UTC was a Friday.
        let now = Now::at(1_763_733_600_000);
        assert_eq!(
            (
                now.year,
                now.month,
                now.day,
                now.hour,
                now.minute,
                now.weekday
            ),
            (2025, 11, 21, 14, 0, "fri")
        );
        assert_eq!(Now::at(0).weekday, "thu");
    }

    #[test]
    fn backup_age_counts_from_the_verification() {
        assert_eq!(
            BackupFact::new(Some(1_000), 3_601_000),
            BackupFact {
                last_verified_at_ms: Some(1_000),
                age_seconds: Some(3_600)
            }
        );
        assert_eq!(BackupFact::new(None, 5).age_seconds, None);
    }
}
