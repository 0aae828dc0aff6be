//! The validated domain model of a service: what `argosy apply` accepts
//! after the spec is parsed and checked (`spec`), and what the scheduler,
//! the rollout controller and the store work with. Plain data, no I/O.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// A validated service spec. One immutable revision stores one of these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// DNS-label-like: lowercase letters, digits and `-`, 1–63 characters.
    pub name: String,
    pub image: String,
    /// Overrides the image's command when non-empty.
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Environment variables whose values are secrets (`DB_PASSWORD:
    /// {secret: crm/db-password}`); the spec holds references, never values.
    #[serde(default)]
    pub secret_env: BTreeMap<String, SecretRef>,
    pub ports: Vec<PortMapping>,
    pub volumes: Vec<VolumeMount>,
    /// Secrets mounted as files under [`SECRETS_MOUNT`].
    #[serde(default)]
    pub secret_files: Vec<SecretFile>,
    pub replicas: u32,
    pub placement: Placement,
    pub resources: Resources,
    pub health_check: Option<HealthCheck>,
    pub restart: RestartPolicy,
    pub update: UpdateStrategy,
    /// A backup policy to run and verify before every rollout of the
    /// service (`pre_deploy_backup: crm-db`); the rollout waits for it and
    /// does not start if it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_deploy_backup: Option<String>,
    /// How requests reach the service through the agents' ingresses
    /// (`route:`); `None`: not routed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Route>,
}

impl ServiceSpec {
    /// Every secret the spec references, as env, file or route
    /// certificate, each once.
    pub fn secret_refs(&self) -> std::collections::BTreeSet<&SecretRef> {
        self.secret_env
            .values()
            .chain(self.secret_files.iter().map(|f| &f.secret))
            .chain(self.route_certificate())
            .collect()
    }

    /// The secret holding the route's TLS certificate, if it has one.
    pub fn route_certificate(&self) -> Option<&SecretRef> {
        match self.route.as_ref()?.tls.as_ref()? {
            RouteTls::Certificate(secret) => Some(secret),
            RouteTls::SelfSigned => None,
        }
    }
}

/// How a service is reached: the ingress on every agent sends requests for
/// these hostnames and paths to the service's healthy allocations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Lowercase DNS names, or `*.example.com` (at least one).
    pub hostnames: Vec<String>,
    /// Path prefixes (`/` when the spec gives none).
    pub paths: Vec<String>,
    /// The container port requests go to; one of `ports` or published
    /// for the ingresses on an ephemeral host port.
    pub port: u16,
    pub tls: Option<RouteTls>,
    pub regions: RouteRegions,
    /// How long a stopping allocation keeps running with no new requests,
    /// so in-flight ones finish (default 5 s).
    pub drain: Duration,
}

/// The default [`Route::drain`].
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouteTls {
    /// A secret holding the PEM certificate chain and private key.
    Certificate(SecretRef),
    /// A certificate each agent makes itself (development only).
    SelfSigned,
}

/// Which regions serve the route's requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouteRegions {
    /// Every region serves its own requests when it can, else the nearest
    /// region with a healthy allocation by measured round trip (the
    /// default).
    Nearest,
    /// `primary: eu-west, failover: [us-east]`.
    Primary {
        primary: String,
        failover: Vec<String>,
    },
    /// Fixed relative weights per region (`weights: {eu-west: 3, us-east: 1}`).
    Weighted(BTreeMap<String, u32>),
}

/// Where secret files appear inside a container.
pub const SECRETS_MOUNT: &str = "/run/secrets";

/// Which version of a secret a reference means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SecretVersion {
    /// The newest version when the revision is created; rotating the
    /// secret redeploys the service with the new one.
    Latest,
    /// Exactly this version (`crm/api-key@3`), whatever is rotated.
    Pinned(u32),
}

/// A reference to a secret in a spec: `crm/db-password` or `crm/api-key@3`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SecretRef {
    pub name: String,
    pub version: SecretVersion,
}

impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.version {
            SecretVersion::Latest => f.write_str(&self.name),
            SecretVersion::Pinned(version) => write!(f, "{}@{version}", self.name),
        }
    }
}

/// A secret mounted as a file: `/run/secrets/<file>`, on tmpfs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretFile {
    pub secret: SecretRef,
    /// A plain file name (no `/`).
    pub file: String,
    /// Permission bits, e.g. `0o400`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// A container port, optionally published on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub container_port: u16,
    /// `None`: not published on the host.
    pub host_port: Option<u16>,
    /// Host address to bind when published (default 0.0.0.0).
    pub host_ip: Option<std::net::IpAddr>,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeSource {
    /// A Docker named volume.
    Named(String),
    /// An absolute host path.
    Bind(std::path::PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMount {
    pub source: VolumeSource,
    /// Absolute path inside the container.
    pub target: String,
    pub read_only: bool,
}

/// Where replicas may run.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Placement {
    /// Empty: any region. Otherwise how many replicas go to each region;
    /// `RegionCount::Spread` shares the replicas out evenly.
    pub regions: Vec<RegionPlacement>,
    /// Every host label listed must match (`role=db`).
    pub constraints: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionPlacement {
    pub region: String,
    pub count: RegionCount,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegionCount {
    Exactly(u32),
    Spread,
}

/// Resource reservations and limits. Memory is never overcommitted: the
/// scheduler reserves `memory_bytes` on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Resources {
    /// Thousandths of a core (`0.5` cores = 500).
    pub cpu_millis: u32,
    pub memory_bytes: u64,
    /// Memory plus swap; `None` means the same as memory (no swap).
    pub memory_swap_bytes: Option<u64>,
    pub pids: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HealthProbe {
    Http {
        path: String,
        port: u16,
        expected_status: u16,
    },
    Tcp {
        port: u16,
    },
    Exec {
        command: Vec<String>,
    },
}

/// What docker-compose users already write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub probe: HealthProbe,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive failures before unhealthy.
    pub retries: u32,
    /// Failures during this window after start do not count.
    pub start_period: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    Never,
    OnFailure { max_retries: Option<u32> },
    Always,
}

/// How a new revision replaces the running one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateStrategy {
    Rolling(Rolling),
    BlueGreen(BlueGreen),
    Canary(Canary),
}

/// Nomad-like rolling update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rolling {
    /// New allocations started at once beyond `replicas`.
    pub max_surge: u32,
    /// Healthy allocations that may be missing at once.
    pub max_unavailable: u32,
    /// How long an allocation must stay healthy to count.
    pub min_healthy_time: Duration,
    /// How long an allocation has to become healthy.
    pub healthy_deadline: Duration,
    /// How long the deployment may go without progress.
    pub progress_deadline: Duration,
    pub auto_revert: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlueGreen {
    pub min_healthy_time: Duration,
    pub healthy_deadline: Duration,
    /// Switch as soon as the new set is healthy; otherwise wait for `promote`.
    pub auto_promote: bool,
    /// Keep the old set this long after the switch, for instant rollback.
    pub keep_old_for: Duration,
    pub auto_revert: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canary {
    pub canaries: u32,
    /// Percent of replicas on the new revision after each promotion step,
    /// ending at 100.
    pub steps: Vec<u32>,
    pub min_healthy_time: Duration,
    pub healthy_deadline: Duration,
    pub auto_promote: bool,
    pub auto_revert: bool,
}

impl Default for Rolling {
    fn default() -> Self {
        // Nomad's defaults: one at a time, 10 s healthy, 5 m deadline, 10 m progress.
        Self {
            max_surge: 1,
            max_unavailable: 0,
            min_healthy_time: Duration::from_secs(10),
            healthy_deadline: Duration::from_secs(300),
            progress_deadline: Duration::from_secs(600),
            auto_revert: true,
        }
    }
}
