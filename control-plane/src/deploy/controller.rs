//! The deployment controller: the I/O loop around the pure decisions. It
//! turns `apply` into a stored revision and a deployment, feeds the rollout
//! state machine ([`rollout::step`]) with what agents report, applies its
//! effects (create allocations and place them with [`scheduler::schedule`],
//! drain and stop allocations, record history), and pushes each affected
//! host its desired state over its session.
//!
//! Outside deployments it scales a service ([`plan_scale`]), stops it, and
//! in [`Deployments::tick`] replaces the allocations of hosts that stayed
//! offline past the reschedule grace ([`lost_allocations`]). Every operation
//! is written into a deployment's history with who asked for it: the active
//! deployment, or the service's latest one when none is active.
//!
//! Secrets: `apply` resolves the spec's secret references through a
//! [`SecretCatalog`] and stores the versions with the revision; each host's
//! desired state carries names and versions only, and [`Deployments::host_secrets`]
//! says which versions a host may receive. [`Deployments::follow_rotation`]
//! moves a service to new versions of the secrets it follows, as a new
//! revision deployed through its update strategy.
//!
//! One controller mutates at a time (a lock); every decision is stored
//! before its effects are pushed, so a restarted control plane continues
//! from the store.

use super::model::{Placement, RegionCount, ServiceSpec};
use super::rollout::{self, Deployment, Effect, Event, Health, Observed, ObservedAllocation};
use super::scheduler::{
    self, AllocationRequest, Capacity, HostCandidate, HostPolicies, HostPort, HostedAllocation,
    SchedulerConfig,
};
use super::secret_access::HostSecrets;
use super::secret_catalog::{self, ResolveError, SecretCatalog};
use super::secret_refs::{self, ResolvedVersions, RotationCause, UnresolvedSecrets};
use super::spec::{self, Format, SpecErrors};
use super::wire;
use crate::clock::Clock;
use crate::fleet::Fleet;
use crate::policy::defaults::{self, DocumentError};
use crate::policy::input::{
    self as policy_input, AdmitInput, BackupFact, Facts, Now, ServiceState,
};
use crate::policy::{AnalysisAction, Limits as PolicyLimits, Policies};
use crate::secrets::random_id;
use crate::store::{AllocationRow, DeploymentRow, RevisionRow, ServiceRow, Store, StoreError};
use argosy_proto::v1::{self as pb, allocation_status, control_message};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// How long a host may stay offline before its allocations are replaced
/// elsewhere, unless [`Deployments::with_reschedule_grace`] says otherwise.
pub const DEFAULT_RESCHEDULE_GRACE: Duration = Duration::from_secs(60);

/// Why a deployment request was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("the spec is invalid:\n{0}")]
    Invalid(#[from] SpecErrors),
    #[error("unknown spec format {0:?}: use yaml or toml")]
    Format(String),
    #[error("no service named {0:?}; `argosy services list` shows them")]
    NoService(String),
    #[error("no deployment with id {0:?}")]
    NoDeployment(String),
    #[error(
        "service {service} has no revision {revision}; `argosy revisions {service}` lists them"
    )]
    NoRevision { service: String, revision: i64 },
    #[error("service {service} has no earlier successful revision to roll back to; pass --to REV")]
    NothingToRollBackTo { service: String },
    #[error(
        "deployment {id} of {service} is still {phase}; wait for it to end (`argosy deployments watch {id}`) or cancel it (`argosy deployments cancel {id}`) before you {action}"
    )]
    Busy {
        id: String,
        service: String,
        phase: String,
        /// What was refused: `apply a spec`, `roll back`, `scale`, `stop it`.
        action: &'static str,
    },
    #[error("{0} replicas is out of range: ask for 0 to {max}", max = spec::MAX_REPLICAS)]
    Replicas(u32),
    #[error(
        "service {service} places exactly {exact} replicas by region (spec.placement.regions), so it cannot run {replicas}; change the region counts in the spec and apply it"
    )]
    ExactRegions {
        service: String,
        exact: u32,
        replicas: u32,
    },
    #[error("service {0} has no deployed revision; deploy one with `argosy apply`")]
    NotDeployed(String),
    #[error(transparent)]
    Rejected(#[from] rollout::Rejected),
    #[error(
        "stored revision {service} #{revision} no longer parses ({errors}); apply a corrected spec"
    )]
    StoredSpec {
        service: String,
        revision: i64,
        errors: SpecErrors,
    },
    #[error("stored deployment {0} is unreadable: {1}")]
    StoredState(String, serde_json::Error),
    #[error(
        "stored revision {service} #{revision} has unreadable secret versions ({error}); apply the spec again"
    )]
    StoredSecretVersions {
        service: String,
        revision: i64,
        error: serde_json::Error,
    },
    #[error("the spec references secrets that cannot be used:\n{0}")]
    MissingSecrets(#[from] UnresolvedSecrets),
    #[error("{0}")]
    SecretStore(String),
    /// The route cannot be accepted: hostnames another service owns, or a
    /// certificate secret an ingress could not serve. One line each,
    /// starting with the field path.
    #[error("the spec's route cannot be accepted:\n{}", .0.join("\n"))]
    Route(Vec<String>),
    #[error("policies refused {service}:\n{}", .reasons.join("\n"))]
    Denied {
        service: String,
        /// Every reason, each naming its policy.
        reasons: Vec<String>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `apply` did.
#[derive(Debug, Clone)]
pub struct Applied {
    pub service: String,
    pub revision: i64,
    pub created: bool,
    pub deployment: Option<DeploymentRow>,
    /// Warnings from `deployment.admit` policies, each naming its policy.
    pub warnings: Vec<String>,
    /// Fields admission policies filled in (`resources.memory (policy
    /// default-memory)`); the stored revision includes them.
    pub defaults_applied: Vec<String>,
}

/// A spec that passed admission: the text to store (the author's, or the
/// completed document when policies filled in defaults) and its spec.
struct Admitted {
    text: String,
    spec: ServiceSpec,
    warnings: Vec<String>,
    defaults_applied: Vec<String>,
}

/// How many times admission runs at most when policies keep filling in
/// defaults (each round sees the previous rounds' defaults).
const ADMISSION_ROUNDS: usize = 3;

impl From<ResolveError> for DeployError {
    fn from(error: ResolveError) -> Self {
        match error {
            ResolveError::Unresolved(missing) => DeployError::MissingSecrets(missing),
            ResolveError::Unavailable(_) => DeployError::SecretStore(error.to_string()),
        }
    }
}

/// What [`Deployments::follow_rotation`] did for a service.
#[derive(Debug, Clone)]
pub enum RotationOutcome {
    /// Its current revision already runs the newest versions it follows
    /// (or it follows none, or was never deployed).
    UpToDate,
    /// A deployment is moving it; try again when it ends.
    Busy { deployment: String },
    /// Stopped: the new revision became current, nothing was started.
    Stopped { revision: i64 },
    /// A deployment of the new revision started.
    Deployed(DeploymentRow),
}

/// A stored revision as the controller uses it: its spec and the secret
/// versions it resolved.
#[derive(Clone)]
struct ParsedRevision {
    spec: Arc<ServiceSpec>,
    secrets: Arc<ResolvedVersions>,
}

/// What `scale` or `stop` did to a service.
#[derive(Debug, Clone)]
pub struct ServiceChange {
    /// The service as stored afterwards.
    pub service: ServiceRow,
    /// Allocations created.
    pub started: u32,
    /// Allocations told to drain and stop.
    pub stopping: u32,
    /// The line written into the history.
    pub message: String,
}

/// The deployment controller.
pub struct Deployments {
    store: Store,
    fleet: Arc<Fleet>,
    clock: Arc<dyn Clock>,
    scheduler: SchedulerConfig,
    /// How long a host may stay offline before its allocations move.
    reschedule_grace: Duration,
    /// When this controller started: hosts it has not heard from since
    /// count as offline from here, not from their stored last contact.
    started_ms: i64,
    /// Lost allocations no other host could take, already noted in the
    /// history (so a retry every tick does not repeat it).
    stuck: Mutex<BTreeSet<String>>,
    lock: tokio::sync::Mutex<()>,
    revisions: Mutex<HashMap<(String, i64), ParsedRevision>>,
    events: broadcast::Sender<String>,
    policies: Arc<Policies>,
    /// Woken whenever allocations or their reported health change (what
    /// routing follows).
    allocations_changed: Arc<tokio::sync::Notify>,
    /// What the ingresses measured, for canary analysis.
    traffic: crate::routing::traffic::TrafficLog,
}

fn revision_id(number: i64) -> String {
    number.to_string()
}

fn state_name(state: i32) -> &'static str {
    use allocation_status::State;
    match State::try_from(state).unwrap_or(State::Unspecified) {
        State::Unspecified | State::Pending => "pending",
        State::Pulling => "pulling",
        State::Starting => "starting",
        State::Running => "running",
        State::Exited => "exited",
        State::Failed => "failed",
        State::Stopped => "stopped",
    }
}

fn health_name(health: i32) -> &'static str {
    use allocation_status::Health;
    match Health::try_from(health).unwrap_or(Health::Unspecified) {
        Health::Unspecified | Health::Starting => "starting",
        Health::Healthy => "healthy",
        Health::Unhealthy => "unhealthy",
        Health::None => "none",
    }
}

/// The agent's report of an allocation, as kept in `status_json`.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReportedStatus {
    pub container_id: String,
    pub exit_code: i32,
    pub oom_killed: bool,
    pub restarts: u32,
    pub message: String,
    pub healthy_since_ms: i64,
    pub updated_at_ms: i64,
    /// `ip:port` where ingresses reach the allocation's route port.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub route_address: String,
}

/// A service with a route, and what routing decides over: its allocations
/// as last reported and the rollout moving it, if any.
#[derive(Debug, Clone)]
pub struct RoutedService {
    pub name: String,
    pub route: super::model::Route,
    /// The version of the route's certificate secret the current revision
    /// resolved, when the route's TLS comes from a secret.
    pub certificate: Option<secret_refs::VersionedSecret>,
    /// The regions the service is placed in (empty: anywhere), for
    /// authorizing who may see its routes.
    pub placement_regions: Vec<String>,
    /// Stopped on purpose (`argosy stop`): not serving is expected.
    pub stopped: bool,
    pub allocations: Vec<AllocationRow>,
    pub rollout: Option<Deployment>,
}

/// The history line for what changed in an allocation's report, if it
/// is worth one: a container that exited or was OOM-killed and restarted.
pub fn exit_event(
    allocation_id: &str,
    host_id: &str,
    previous: &ReportedStatus,
    current: &ReportedStatus,
) -> Option<String> {
    let restarted = current.restarts > previous.restarts;
    let newly_oom_killed = current.oom_killed && !previous.oom_killed;
    if !restarted && !newly_oom_killed {
        return None;
    }
    let cause = if current.oom_killed {
        format!(
            "was OOM-killed (exit code {}): it reached its memory limit",
            current.exit_code
        )
    } else {
        format!("exited with code {}", current.exit_code)
    };
    Some(format!(
        "allocation {allocation_id} on {host_id} {cause}; restarted {} time(s)",
        current.restarts
    ))
}

/// How the rollout machine sees an allocation row: a pure mapping.
pub fn observed_health(row: &AllocationRow, status: &ReportedStatus) -> Health {
    match (row.state.as_str(), row.health.as_str()) {
        ("failed", _) => Health::Failed,
        ("stopped", _) => Health::Stopped,
        ("exited", _) => Health::Unhealthy,
        ("running", "healthy" | "none") => Health::Healthy {
            since_ms: if status.healthy_since_ms > 0 {
                status.healthy_since_ms
            } else {
                row.updated_at_ms
            },
        },
        ("running", "unhealthy") => Health::Unhealthy,
        ("running", _) | ("starting", _) | ("pulling", _) => Health::Starting,
        _ => Health::Pending,
    }
}

/// A live allocation (meant to run) as scaling weighs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub id: String,
    pub health: Health,
    pub created_at_ms: i64,
}

/// What scaling a service outside a deployment does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScalePlan {
    /// Allocations of the current revision to create.
    pub start: u32,
    /// Allocations to drain and stop, most expendable first.
    pub stop: Vec<String>,
}

/// Brings the `live` allocations of a service (any revision) to `replicas`:
/// starts what is missing, or stops the surplus — first those that do not
/// work (failed, unhealthy, exited), then those not up yet (pending,
/// starting), then the newest healthy ones. So no healthy allocation stops
/// while a worse one is kept, and min(healthy, `replicas`) healthy ones stay.
pub fn plan_scale(live: &[Replica], replicas: u32) -> ScalePlan {
    let want = usize::try_from(replicas).unwrap_or(usize::MAX);
    if live.len() <= want {
        return ScalePlan {
            start: u32::try_from(want - live.len()).unwrap_or(u32::MAX),
            stop: Vec::new(),
        };
    }
    let worth = |health: Health| match health {
        Health::Failed | Health::Stopped | Health::Unhealthy => 0,
        Health::Pending | Health::Starting => 1,
        Health::Healthy { .. } => 2,
    };
    let mut order: Vec<&Replica> = live.iter().collect();
    order.sort_by(|a, b| {
        worth(a.health)
            .cmp(&worth(b.health))
            .then(b.created_at_ms.cmp(&a.created_at_ms))
            .then(b.id.cmp(&a.id))
    });
    ScalePlan {
        start: 0,
        stop: order
            .into_iter()
            .take(live.len() - want)
            .map(|r| r.id.clone())
            .collect(),
    }
}

/// The replica count a placement pins, when every region it lists has an
/// exact count (`None`: any count fits).
pub fn pinned_replicas(placement: &Placement) -> Option<u32> {
    if placement.regions.is_empty() {
        return None;
    }
    placement
        .regions
        .iter()
        .map(|r| match r.count {
            RegionCount::Exactly(n) => Some(n),
            RegionCount::Spread => None,
        })
        .sum()
}

/// The allocations meant to run whose host has been gone longer than
/// `grace`: revoked, unknown, or offline — counted from when it was last
/// heard from, but never from before `watching_since_ms`, when this
/// controller started (a restarted control plane has not heard from anyone
/// yet, and the stored last contact may be old). Pending and stopping
/// allocations are not lost: they run nowhere.
pub fn lost_allocations(
    hosts: &[HostCandidate],
    allocations: &[AllocationRow],
    now_ms: i64,
    grace: Duration,
    watching_since_ms: i64,
) -> Vec<String> {
    let hosts: Vec<HostCandidate> = hosts
        .iter()
        .map(|h| {
            let mut h = h.clone();
            if let scheduler::HostStatus::Offline { last_seen_ms } = h.status {
                h.status = scheduler::HostStatus::Offline {
                    last_seen_ms: Some(
                        last_seen_ms
                            .unwrap_or(watching_since_ms)
                            .max(watching_since_ms),
                    ),
                };
            }
            h
        })
        .collect();
    let placed: Vec<HostedAllocation> = allocations
        .iter()
        .filter(|a| a.desired_run)
        .filter_map(|a| {
            Some(HostedAllocation {
                id: a.id.clone(),
                host_id: a.host_id.clone()?,
            })
        })
        .collect();
    scheduler::allocations_to_reschedule(&hosts, &placed, now_ms, grace)
}

/// Why a host counts as gone, for the history: `has been offline for 1m 5s`.
fn host_gone_text(host_id: &str, hosts: &[HostCandidate], now_ms: i64, since_ms: i64) -> String {
    match hosts.iter().find(|h| h.id == host_id).map(|h| h.status) {
        None => "is no longer in the fleet".to_owned(),
        Some(scheduler::HostStatus::Revoked) => "was revoked".to_owned(),
        Some(scheduler::HostStatus::Online) => "is online".to_owned(),
        Some(scheduler::HostStatus::Offline { last_seen_ms }) => {
            let from = last_seen_ms.unwrap_or(since_ms).max(since_ms);
            // Rounded up: past a grace of 5s reads "6s", not "5s".
            let secs = u64::try_from((now_ms - from + 999) / 1000).unwrap_or(0);
            format!(
                "has been offline for {}",
                humantime::format_duration(Duration::from_secs(secs))
            )
        }
    }
}

impl Deployments {
    pub fn new(store: Store, fleet: Arc<Fleet>, clock: Arc<dyn Clock>) -> Self {
        Self {
            fleet,
            started_ms: clock.now_ms(),
            clock,
            scheduler: SchedulerConfig::default(),
            reschedule_grace: DEFAULT_RESCHEDULE_GRACE,
            stuck: Mutex::new(BTreeSet::new()),
            lock: tokio::sync::Mutex::new(()),
            revisions: Mutex::new(HashMap::new()),
            events: broadcast::channel(1024).0,
            allocations_changed: Arc::new(tokio::sync::Notify::new()),
            traffic: crate::routing::traffic::TrafficLog::default(),
            policies: Arc::new(Policies::new(store.clone(), PolicyLimits::default())),
            store,
        }
    }

    /// The policies consulted for admission, placement and canary analysis.
    pub fn policies(&self) -> &Arc<Policies> {
        &self.policies
    }

    /// How long a host may stay offline before [`Deployments::tick`]
    /// replaces its allocations on other hosts (default
    /// [`DEFAULT_RESCHEDULE_GRACE`]).
    pub fn with_reschedule_grace(mut self, grace: Duration) -> Self {
        self.reschedule_grace = grace;
        self
    }

    /// Deployment ids whose history grew, for watchers.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.events.subscribe()
    }

    /// Notified whenever allocations are created, told to stop, or report
    /// a change (routing recomputes its tables then).
    pub fn allocations_changed(&self) -> Arc<tokio::sync::Notify> {
        self.allocations_changed.clone()
    }

    /// Requests, errors and latency per revision, as the agents' ingresses
    /// report them (`rollout.analyze` reads them).
    pub fn traffic(&self) -> &crate::routing::traffic::TrafficLog {
        &self.traffic
    }

    /// Every service whose current revision has a route, with its
    /// allocations and its active rollout.
    pub async fn routed_services(&self) -> Result<Vec<RoutedService>, DeployError> {
        let mut routed = Vec::new();
        for service in self.store.list_services().await? {
            let Some(current) = service.current_revision else {
                continue;
            };
            let revision = self.revision_of(&service.name, current).await?;
            let Some(route) = revision.spec.route.clone() else {
                continue;
            };
            let certificate = revision.spec.route_certificate().and_then(|r| {
                let version = revision.secrets.version_of(&r.name, r.version)?;
                Some(secret_refs::VersionedSecret::new(&r.name, version))
            });
            let rollout = match self.store.active_deployment(&service.name).await? {
                Some(row) => Some(
                    serde_json::from_str::<Deployment>(&row.state_json)
                        .map_err(|e| DeployError::StoredState(row.id.clone(), e))?,
                ),
                None => None,
            };
            routed.push(RoutedService {
                allocations: self.store.allocations_for_service(&service.name).await?,
                stopped: service.stopped,
                name: service.name,
                route,
                certificate,
                placement_regions: revision
                    .spec
                    .placement
                    .regions
                    .iter()
                    .map(|r| r.region.clone())
                    .collect(),
                rollout,
            });
        }
        Ok(routed)
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    async fn spec_of(&self, service: &str, number: i64) -> Result<Arc<ServiceSpec>, DeployError> {
        Ok(self.revision_of(service, number).await?.spec)
    }

    /// Revision `number` of `service`, parsed once and then cached
    /// (revisions never change).
    async fn revision_of(&self, service: &str, number: i64) -> Result<ParsedRevision, DeployError> {
        let key = (service.to_owned(), number);
        if let Some(parsed) = self
            .revisions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(parsed.clone());
        }
        let revision =
            self.store
                .revision(service, number)
                .await?
                .ok_or_else(|| DeployError::NoRevision {
                    service: service.to_owned(),
                    revision: number,
                })?;
        let parsed = ParsedRevision {
            spec: Arc::new(parse_revision(&revision)?),
            secrets: Arc::new(parse_secret_versions(&revision)?),
        };
        self.revisions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, parsed.clone());
        Ok(parsed)
    }

    /// Validates `text`, resolves the secrets it references through
    /// `secrets` (a missing secret or pinned version fails, naming each),
    /// stores it as the service's next revision with the resolved versions
    /// (unless both equal the newest's) and starts a deployment to it.
    pub async fn apply(
        &self,
        text: &str,
        format: &str,
        actor: &str,
        dry_run: bool,
        secrets: &dyn SecretCatalog,
    ) -> Result<Applied, DeployError> {
        let format = match format {
            "yaml" | "yml" => Format::Yaml,
            "toml" => Format::Toml,
            other => return Err(DeployError::Format(other.to_owned())),
        };
        let spec = spec::parse(text, format)?;
        let Admitted {
            text: admitted_text,
            spec,
            warnings,
            defaults_applied,
        } = self.admit(text, format, spec, actor, dry_run).await?;
        let text = admitted_text.as_str();
        let resolved = secret_catalog::resolve(secrets, &spec).await?;
        self.check_route(&spec, &resolved, secrets).await?;
        if dry_run {
            return Ok(Applied {
                service: spec.name,
                revision: 0,
                created: false,
                deployment: None,
                warnings,
                defaults_applied,
            });
        }
        let _guard = self.lock.lock().await;
        let now = self.now();
        let hash = hex::encode(Sha256::digest(text.as_bytes()));
        let format_name = match format {
            Format::Yaml => "yaml",
            Format::Toml => "toml",
        };
        if let Some(active) = self.store.active_deployment(&spec.name).await? {
            return Err(DeployError::Busy {
                id: active.id,
                service: spec.name,
                phase: active.phase,
                action: "apply a spec",
            });
        }
        let (revision, created) = self
            .store
            .append_revision(
                &spec.name,
                text,
                format_name,
                &hash,
                &resolved.to_json(),
                spec.replicas,
                actor,
                now,
            )
            .await?;
        let service = self
            .store
            .service(&spec.name)
            .await?
            .ok_or_else(|| DeployError::NoService(spec.name.clone()))?;
        // The same spec again changes nothing, unless the service was
        // stopped: then applying it starts it again.
        if !created && service.current_revision == Some(revision.number) && !service.stopped {
            return Ok(Applied {
                service: spec.name,
                revision: revision.number,
                created,
                deployment: None,
                warnings,
                defaults_applied,
            });
        }
        let deployment = self
            .start_deployment(service, revision.number, spec, actor, "", now)
            .await?;
        Ok(Applied {
            service: deployment.service.clone(),
            revision: revision.number,
            created,
            deployment: Some(deployment),
            warnings,
            defaults_applied,
        })
    }

    /// Refuses a route whose `(hostname, path)` another service owns, or
    /// whose certificate secret an ingress could not serve.
    async fn check_route(
        &self,
        spec: &ServiceSpec,
        resolved: &ResolvedVersions,
        secrets: &dyn SecretCatalog,
    ) -> Result<(), DeployError> {
        let Some(route) = &spec.route else {
            return Ok(());
        };
        let mut problems = Vec::new();
        let mut claims = crate::routing::hosts::Claims::new();
        for other in self.routed_services().await? {
            for host in &other.route.hostnames {
                for path in &other.route.paths {
                    claims.insert((host.clone(), path.clone()), other.name.clone());
                }
            }
        }
        let wanted: Vec<(String, String)> = route
            .hostnames
            .iter()
            .flat_map(|h| route.paths.iter().map(move |p| (h.clone(), p.clone())))
            .collect();
        if let Err(taken) = crate::routing::hosts::check_claims(&spec.name, &wanted, &claims) {
            problems.extend(
                taken
                    .into_iter()
                    .map(|e| format!("spec.route.hostnames: {e}")),
            );
        }
        if let Some(secret) = spec.route_certificate()
            && let Some(version) = resolved.version_of(&secret.name, secret.version)
        {
            let pem = secrets
                .value(&secret.name, version)
                .await
                .map_err(|e| DeployError::SecretStore(format!(
                    "cannot read the route's certificate secret {}@{version} to check it: {e}; try again",
                    secret.name
                )))?;
            let now_unix = self.now() / 1000;
            if let Err(e) = crate::routing::certificate::check(&pem, &route.hostnames, now_unix) {
                problems.push(format!(
                    "spec.route.tls.certificate: secret {}@{version} {e}; store the PEM certificate chain followed by its private key in it (`argosy secret set {} --from-file cert-and-key.pem`)",
                    secret.name, secret.name
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(DeployError::Route(problems))
        }
    }

    /// Runs the `deployment.admit` policies on a parsed spec. A deny fails
    /// with every reason. When policies fill in defaults, they are merged
    /// into the document (never over what is written) and every policy
    /// runs again on the completed spec, up to [`ADMISSION_ROUNDS`] times:
    /// the decision does not depend on the order policies run in.
    async fn admit(
        &self,
        text: &str,
        format: Format,
        spec: ServiceSpec,
        actor: &str,
        dry_run: bool,
    ) -> Result<Admitted, DeployError> {
        let mut admitted = Admitted {
            text: text.to_owned(),
            spec,
            warnings: Vec::new(),
            defaults_applied: Vec::new(),
        };
        if !self.policies.admits_deployments().await? {
            return Ok(admitted);
        }
        let now = self.now();
        let denied = |service: &str, reasons: Vec<String>| DeployError::Denied {
            service: service.to_owned(),
            reasons,
        };
        let mut document =
            defaults::parse_document(text, format).unwrap_or(serde_json::Value::Null);
        for round in 1..=ADMISSION_ROUNDS {
            let spec = &admitted.spec;
            let input = AdmitInput {
                spec: policy_input::spec_view(spec, pre_deploy_backup(spec)),
                document: document.clone(),
                format: match format {
                    Format::Yaml => "yaml",
                    Format::Toml => "toml",
                },
                actor: actor.to_owned(),
                now: Now::at(now),
                dry_run,
                service: self.service_state(&spec.name).await?,
                facts: self.facts(spec, now).await?,
            };
            let decision = self.policies.admit(&input).await?;
            if !decision.admitted() {
                return Err(denied(&spec.name, decision.denials));
            }
            // A warning about what a default then filled in still holds.
            for warning in decision.warnings {
                if !admitted.warnings.contains(&warning) {
                    admitted.warnings.push(warning);
                }
            }
            let mut filled = Vec::new();
            for (policy, values) in &decision.defaults {
                filled.extend(
                    defaults::fill(&mut document, values)
                        .into_iter()
                        .map(|path| format!("{path} (policy {policy})")),
                );
            }
            if filled.is_empty() {
                return Ok(admitted);
            }
            if round == ADMISSION_ROUNDS {
                return Err(denied(
                    &spec.name,
                    vec![format!(
                        "policies were still filling in defaults after {ADMISSION_ROUNDS} rounds ({}); make them agree on what a complete spec is",
                        filled.join(", ")
                    )],
                ));
            }
            let name = spec.name.clone();
            let invalid = |why: String| {
                denied(
                    &name,
                    vec![format!(
                        "the defaults policies filled in ({}) {why}",
                        filled.join(", ")
                    )],
                )
            };
            admitted.text = defaults::render(&document, format).map_err(|e: DocumentError| {
                invalid(format!("cannot be written into the spec: {e}"))
            })?;
            admitted.spec = spec::parse(&admitted.text, format)
                .map_err(|errors| invalid(format!("make the spec invalid:\n{errors}")))?;
            admitted.defaults_applied.extend(filled);
        }
        Ok(admitted)
    }

    /// The service as admission policies see it before this apply.
    async fn service_state(&self, name: &str) -> Result<Option<ServiceState>, DeployError> {
        let Some(service) = self.store.service(name).await? else {
            return Ok(None);
        };
        let current_image = match service.current_revision {
            Some(number) => Some(self.spec_of(name, number).await?.image.clone()),
            None => None,
        };
        Ok(Some(ServiceState {
            current_revision: service.current_revision,
            stable_revision: service.stable_revision,
            replicas: service.replicas,
            stopped: service.stopped,
            current_image,
        }))
    }

    /// Fleet facts for admission: the newest verified backup of the
    /// spec's `pre_deploy_backup` policy.
    async fn facts(&self, spec: &ServiceSpec, now: i64) -> Result<Facts, DeployError> {
        let mut facts = Facts::default();
        if let Some(backup) = pre_deploy_backup(spec) {
            let last = crate::store::backups::last_verified_backup_ms(&self.store, backup).await?;
            facts
                .backups
                .insert(backup.to_owned(), BackupFact::new(last, now));
        }
        Ok(facts)
    }

    /// Starts a deployment of revision `to`; `note` ends its first history
    /// line (` (rollback)`).
    async fn start_deployment(
        &self,
        mut service: ServiceRow,
        to: i64,
        spec: ServiceSpec,
        actor: &str,
        note: &str,
        now: i64,
    ) -> Result<DeploymentRow, DeployError> {
        // A stopped service runs nothing: there is nothing to roll from (or
        // revert to).
        let from = service
            .current_revision
            .filter(|r| *r != to && !service.stopped);
        let was_stopped = service.stopped;
        let id = format!("d-{}", random_id(10));
        let machine = Deployment::new(
            id.clone(),
            service.name.clone(),
            spec.update.clone(),
            spec.replicas,
            from.map(revision_id),
            revision_id(to),
            now,
        );
        let machine = if self.policies.analyzes_rollouts().await? {
            machine.with_canary_analysis()
        } else {
            machine
        };
        // `pre_deploy_backup`: nothing starts until the backup controller
        // has taken and verified a backup (`Event::BackupDone`).
        let machine = match &spec.pre_deploy_backup {
            Some(policy) => machine.after_backup(policy.clone()),
            None => machine,
        };
        let row = DeploymentRow {
            id: id.clone(),
            service: service.name.clone(),
            from_revision: from,
            to_revision: to,
            phase: machine.phase.to_string(),
            state_json: serde_json::to_string(&machine)
                .map_err(|e| DeployError::StoredState(id.clone(), e))?,
            created_at_ms: now,
            updated_at_ms: now,
            finished_at_ms: None,
            created_by: actor.to_owned(),
        };
        self.store.insert_deployment(&row).await?;
        service.current_revision = Some(to);
        service.replicas = spec.replicas;
        service.stopped = false;
        service.updated_at_ms = now;
        self.store.update_service(&service).await?;
        let from_text = match from {
            Some(r) => format!("revision {r}"),
            None if was_stopped => "nothing: the service was stopped".to_owned(),
            None => "nothing".to_owned(),
        };
        self.record(
            &id,
            now,
            &format!(
                "deployment of {} revision {to} (from {from_text}) started by {actor}{note}",
                service.name
            ),
        )
        .await?;
        self.advance(row, Event::Tick).await
    }

    async fn record(
        &self,
        deployment_id: &str,
        at_ms: i64,
        message: &str,
    ) -> Result<(), StoreError> {
        self.store
            .append_deployment_event(deployment_id, at_ms, message)
            .await?;
        let _ = self.events.send(deployment_id.to_owned());
        Ok(())
    }

    /// Writes `message` into the history of the service's active
    /// deployment, or of its latest one when none is active, and logs it.
    async fn record_for_service(
        &self,
        service: &str,
        at_ms: i64,
        message: &str,
    ) -> Result<(), StoreError> {
        tracing::info!(service, "{message}");
        let target = match self.store.active_deployment(service).await? {
            Some(active) => Some(active),
            None => self
                .store
                .list_deployments(Some(service), 1)
                .await?
                .into_iter()
                .next(),
        };
        match target {
            Some(deployment) => self.record(&deployment.id, at_ms, message).await,
            None => {
                tracing::warn!(service, "the service has no deployment to record this in");
                Ok(())
            }
        }
    }

    async fn observed(&self, service: &str) -> Result<(Vec<AllocationRow>, Observed), StoreError> {
        let rows = self.store.allocations_for_service(service).await?;
        let allocations =
            rows.iter()
                .map(|row| {
                    let status: ReportedStatus =
                        serde_json::from_str(&row.status_json).unwrap_or_default();
                    ObservedAllocation {
                        id: row.id.clone(),
                        revision: revision_id(row.revision),
                        health: observed_health(row, &status),
                        created_at_ms: row.created_at_ms,
                        stopping: !row.desired_run,
                        message: row.pending_reason.clone().or_else(|| {
                            (!status.message.is_empty()).then(|| status.message.clone())
                        }),
                    }
                })
                .collect();
        Ok((rows, Observed { allocations }))
    }

    /// Runs one step of a deployment and applies its effects.
    async fn advance(
        &self,
        mut row: DeploymentRow,
        event: Event,
    ) -> Result<DeploymentRow, DeployError> {
        let machine: Deployment = serde_json::from_str(&row.state_json)
            .map_err(|e| DeployError::StoredState(row.id.clone(), e))?;
        let now = self.now();
        let (_rows, observed) = self.observed(&row.service).await?;
        let step = rollout::step(&machine, &observed, event, now)?;
        let expected = row.updated_at_ms;
        row.phase = step.deployment.phase.to_string();
        row.state_json = serde_json::to_string(&step.deployment)
            .map_err(|e| DeployError::StoredState(row.id.clone(), e))?;
        row.updated_at_ms = now.max(expected + 1);
        if step.deployment.phase.is_terminal() && row.finished_at_ms.is_none() {
            row.finished_at_ms = Some(now);
        }
        if !self.store.update_deployment(&row, expected).await? {
            // Someone else moved it first; the next report or tick retries.
            return self
                .store
                .deployment(&row.id)
                .await?
                .ok_or(DeployError::NoDeployment(row.id));
        }
        let mut touched_hosts = BTreeSet::new();
        let mut analyze = None;
        for effect in step.effects {
            if let Effect::AnalyzeCanary { stage } = effect {
                analyze = Some(stage);
                continue;
            }
            self.apply_effect(&row, effect, now, &mut touched_hosts)
                .await?;
        }
        if step.deployment.phase == rollout::Phase::Succeeded
            && let Some(mut service) = self.store.service(&row.service).await?
        {
            service.stable_revision = Some(row.to_revision);
            service.updated_at_ms = now;
            self.store.update_service(&service).await?;
        }
        self.push(touched_hosts).await?;
        if let Some(stage) = analyze {
            let verdict = self.analyze_canary(&step.deployment, stage, now).await?;
            return Box::pin(self.advance(row, Event::CanaryVerdict { stage, verdict })).await;
        }
        Ok(row)
    }

    /// Asks the `rollout.analyze` policies about canary step `stage`.
    async fn analyze_canary(
        &self,
        deployment: &Deployment,
        stage: usize,
        now: i64,
    ) -> Result<rollout::CanaryVerdict, DeployError> {
        let rows = self
            .store
            .allocations_for_service(&deployment.service)
            .await?;
        let traffic = self
            .traffic
            .since(&deployment.service, deployment.last_progress_ms);
        let input = analysis_input(deployment, &rows, &traffic, stage, now);
        let verdict = self.policies.analyze(&input).await?;
        Ok(match verdict.action {
            AnalysisAction::Promote => rollout::CanaryVerdict::Promote(verdict.reason),
            AnalysisAction::Wait => rollout::CanaryVerdict::Wait(verdict.reason),
            AnalysisAction::Rollback => rollout::CanaryVerdict::Rollback(verdict.reason),
        })
    }

    async fn apply_effect(
        &self,
        row: &DeploymentRow,
        effect: Effect,
        now: i64,
        touched: &mut BTreeSet<String>,
    ) -> Result<(), DeployError> {
        match effect {
            Effect::StartAllocations { revision, count } => {
                let number: i64 = revision.parse().unwrap_or(row.to_revision);
                let spec = self.spec_of(&row.service, number).await?;
                let created = self
                    .create_allocations(
                        &row.service,
                        number,
                        &spec,
                        spec.replicas,
                        count,
                        Some(&row.id),
                        now,
                        touched,
                    )
                    .await?;
                let message = format!(
                    "started {count} allocation(s) of revision {number}: {}",
                    placement_text(&created)
                );
                self.record(&row.id, now, &message).await?;
            }
            Effect::StopAllocations { ids } => {
                self.stop_allocations(&ids, now, touched).await?;
                self.record(
                    &row.id,
                    now,
                    &format!("stopping {} allocation(s)", ids.len()),
                )
                .await?;
            }
            Effect::RevertTo { revision } => {
                if let (Ok(number), Some(mut service)) = (
                    revision.parse::<i64>(),
                    self.store.service(&row.service).await?,
                ) {
                    service.current_revision = Some(number);
                    service.updated_at_ms = now;
                    self.store.update_service(&service).await?;
                }
                self.record(
                    &row.id,
                    now,
                    &format!("reverting {} to revision {revision}", row.service),
                )
                .await?;
            }
            Effect::SwitchTraffic { to } => {
                self.record(&row.id, now, &format!("traffic switched to revision {to}"))
                    .await?;
            }
            Effect::MarkHealthy { ids } => {
                self.record(
                    &row.id,
                    now,
                    &format!("{} allocation(s) healthy", ids.len()),
                )
                .await?;
            }
            Effect::SetPhase(phase) => {
                self.record(&row.id, now, &format!("deployment {phase}"))
                    .await?;
            }
            Effect::Record(text) => self.record(&row.id, now, &text).await?,
            // Answered by `advance` once the other effects are applied.
            Effect::AnalyzeCanary { .. } => {}
        }
        Ok(())
    }

    /// Creates `count` allocations of revision `number` of `service` (which
    /// wants `replicas` in all), places them and stores them.
    #[allow(clippy::too_many_arguments)]
    async fn create_allocations(
        &self,
        service: &str,
        number: i64,
        spec: &ServiceSpec,
        replicas: u32,
        count: u32,
        deployment_id: Option<&str>,
        now: i64,
        touched: &mut BTreeSet<String>,
    ) -> Result<Vec<AllocationRow>, DeployError> {
        let mut created: Vec<AllocationRow> = (0..count)
            .map(|_| new_allocation(service, number, deployment_id, now))
            .collect();
        self.place(&mut created, spec, replicas).await?;
        touched.extend(created.iter().filter_map(|a| a.host_id.clone()));
        self.store.upsert_allocations(&created).await?;
        Ok(created)
    }

    /// Tells these allocations to drain and stop; those never placed run
    /// nowhere and are forgotten at once.
    async fn stop_allocations(
        &self,
        ids: &[String],
        now: i64,
        touched: &mut BTreeSet<String>,
    ) -> Result<(), DeployError> {
        let mut rows = Vec::new();
        for id in ids {
            if let Some(mut a) = self.store.allocation(id).await? {
                a.desired_run = false;
                a.updated_at_ms = now;
                if let Some(host) = &a.host_id {
                    touched.insert(host.clone());
                }
                rows.push(a);
            }
        }
        let (unplaced, placed): (Vec<_>, Vec<_>) =
            rows.into_iter().partition(|a| a.host_id.is_none());
        self.store.upsert_allocations(&placed).await?;
        let forget: Vec<String> = unplaced.into_iter().map(|a| a.id).collect();
        self.store.delete_allocations(&forget).await?;
        Ok(())
    }

    /// The scheduler's view of every host.
    async fn candidates(&self) -> Result<Vec<HostCandidate>, DeployError> {
        let hosts = self.fleet.list("", &HashMap::new());
        let mut candidates = Vec::with_capacity(hosts.len());
        for host in hosts {
            let mut candidate = host_candidate(&host);
            let rows = self.store.allocations_for_host(&host.id).await?;
            let mut placed = Vec::new();
            for a in rows.iter().filter(|a| a.desired_run) {
                let spec = self.spec_of(&a.service, a.revision).await?;
                placed.push((
                    a.service.clone(),
                    revision_id(a.revision),
                    Capacity::from(spec.resources),
                    HostPort::published(&spec.ports),
                ));
            }
            (
                candidate.reserved,
                candidate.ports_in_use,
                candidate.allocations,
            ) = scheduler::tally(
                placed
                    .iter()
                    .map(|(s, r, c, p)| (s.as_str(), r.as_str(), *c, p.as_slice())),
            );
            candidates.push(candidate);
        }
        Ok(candidates)
    }

    /// Places `allocations` (all of one revision of a service that wants
    /// `replicas` in all), setting host or reason.
    async fn place(
        &self,
        allocations: &mut [AllocationRow],
        spec: &ServiceSpec,
        replicas: u32,
    ) -> Result<(), DeployError> {
        let candidates = self.candidates().await?;
        let policies = match allocations.first() {
            Some(first) => {
                let count = u32::try_from(allocations.len()).unwrap_or(u32::MAX);
                self.host_policies(first, count, spec, &candidates).await?
            }
            None => HostPolicies::default(),
        };
        let requests: Vec<AllocationRequest> = allocations
            .iter()
            .map(|a| AllocationRequest {
                id: a.id.clone(),
                service: a.service.clone(),
                revision: revision_id(a.revision),
                replicas,
                resources: spec.resources,
                placement: spec.placement.clone(),
                ports: HostPort::published(&spec.ports),
            })
            .collect();
        let decisions =
            scheduler::schedule_with_policies(&requests, &candidates, &self.scheduler, &policies);
        for (allocation, decision) in allocations.iter_mut().zip(decisions) {
            match decision.decision {
                scheduler::Decision::Placed { host_id } => {
                    allocation.host_id = Some(host_id);
                    allocation.pending_reason = None;
                }
                scheduler::Decision::Pending { reason } => {
                    allocation.host_id = None;
                    allocation.pending_reason = Some(reason.to_string());
                }
            }
        }
        Ok(())
    }

    /// What the `placement.filter` policies say about each host that could
    /// take `count` allocations like `first` (online and schedulable ones;
    /// the others cannot take anything anyway).
    async fn host_policies(
        &self,
        first: &AllocationRow,
        count: u32,
        spec: &ServiceSpec,
        candidates: &[HostCandidate],
    ) -> Result<HostPolicies, DeployError> {
        if !self.policies.filters_placement().await? {
            return Ok(HostPolicies::default());
        }
        let hosts: HashMap<String, pb::Host> = self
            .fleet
            .list("", &HashMap::new())
            .into_iter()
            .map(|h| (h.id.clone(), h))
            .collect();
        let now = Now::at(self.now());
        let allocation = policy_input::AllocationView {
            service: first.service.clone(),
            revision: first.revision,
            count,
            image: spec.image.clone(),
            resources: policy_input::spec_view(spec, None).resources,
            placement: policy_input::spec_view(spec, None).placement,
        };
        let considered: Vec<&HostCandidate> = candidates
            .iter()
            .filter(|c| c.status == scheduler::HostStatus::Online && c.schedulable)
            .collect();
        let inputs: Vec<policy_input::PlacementInput> = considered
            .iter()
            .map(|c| policy_input::PlacementInput {
                allocation: allocation.clone(),
                host: host_view(c, hosts.get(&c.id), &self.scheduler),
                now: now.clone(),
            })
            .collect();
        let verdicts = self.policies.filter_hosts(&inputs).await?;
        let mut policies = HostPolicies::default();
        for (candidate, verdict) in considered.into_iter().zip(verdicts) {
            if !verdict.eligible() {
                policies
                    .excluded
                    .insert(candidate.id.clone(), verdict.exclusions);
            } else if verdict.score != 0.0 {
                policies.scores.insert(candidate.id.clone(), verdict.score);
            }
        }
        Ok(policies)
    }

    /// Bumps and sends the desired state of every host in `hosts`.
    async fn push(&self, hosts: BTreeSet<String>) -> Result<(), DeployError> {
        self.allocations_changed.notify_one();
        for host in hosts {
            let version = self.store.bump_desired_version(&host).await?;
            let desired = self.desired_state_at(&host, version).await?;
            self.fleet.send(
                &host,
                pb::ControlMessage {
                    body: Some(control_message::Body::Desired(desired)),
                },
            );
        }
        Ok(())
    }

    async fn desired_state_at(
        &self,
        host_id: &str,
        version: u64,
    ) -> Result<pb::DesiredState, DeployError> {
        let rows = self.store.allocations_for_host(host_id).await?;
        let mut allocations = Vec::with_capacity(rows.len());
        for a in rows {
            let revision = self.revision_of(&a.service, a.revision).await?;
            allocations.push(pb::Allocation {
                id: a.id,
                service: a.service,
                revision_id: revision_id(a.revision),
                revision: u64::try_from(a.revision).unwrap_or(0),
                container: Some(wire::container_spec(&revision.spec, &revision.secrets)),
                run: a.desired_run,
                drain_ms: revision.spec.route.as_ref().map_or(0, |r| {
                    u64::try_from(r.drain.as_millis()).unwrap_or(u64::MAX)
                }),
            });
        }
        Ok(pb::DesiredState {
            version,
            allocations,
        })
    }

    /// The current desired state of a host, sent when it connects.
    pub async fn desired_state(&self, host_id: &str) -> Result<pb::DesiredState, DeployError> {
        let version = self.store.desired_version(host_id).await?;
        self.desired_state_at(host_id, version).await
    }

    /// The secret versions the allocations placed on `host_id` and meant to
    /// run use: what its agent may receive ([`super::secret_access::decide`]).
    pub async fn host_secrets(&self, host_id: &str) -> Result<HostSecrets, DeployError> {
        let mut host = HostSecrets::new(host_id);
        for a in self.store.allocations_for_host(host_id).await? {
            if !a.desired_run {
                continue;
            }
            let revision = self.revision_of(&a.service, a.revision).await?;
            host.add(
                &a.id,
                secret_refs::used_versions(&revision.spec, &revision.secrets),
            );
        }
        // Every ingress terminates TLS for every routed service.
        for routed in self.routed_services().await? {
            if let Some(certificate) = routed.certificate {
                host.add(&format!("route {}", routed.name), [certificate]);
            }
        }
        Ok(host)
    }

    /// Every service whose current revision follows the latest version of
    /// a secret — of `name` only, when given — with the names it follows.
    pub async fn services_following(
        &self,
        name: Option<&str>,
    ) -> Result<Vec<(String, BTreeSet<String>)>, DeployError> {
        let mut following = Vec::new();
        for service in self.store.list_services().await? {
            let followed = self.followed_by(&service).await?;
            if !followed.is_empty() && name.is_none_or(|n| followed.contains(n)) {
                following.push((service.name, followed));
            }
        }
        Ok(following)
    }

    /// The secret names the service's current revision follows.
    pub async fn secrets_followed_by(&self, name: &str) -> Result<BTreeSet<String>, DeployError> {
        match self.store.service(name).await? {
            Some(service) => self.followed_by(&service).await,
            None => Ok(BTreeSet::new()),
        }
    }

    async fn followed_by(&self, service: &ServiceRow) -> Result<BTreeSet<String>, DeployError> {
        match service.current_revision {
            Some(current) => Ok(secret_refs::followed_names(
                &*self.spec_of(&service.name, current).await?,
            )),
            None => Ok(BTreeSet::new()),
        }
    }

    /// Moves `service` to the newest versions (`latest`) of the secrets its
    /// current revision follows, when one of them is newer than any of its
    /// revisions had ([`secret_refs::after_rotation`]): a new revision with
    /// the same spec text and the new versions, created by
    /// `secret rotation NAME vN (ACTOR)`, deployed through the service's
    /// update strategy with its current replica count. A stopped service
    /// is not started: the new revision only becomes its current one.
    pub async fn follow_rotation(
        &self,
        name: &str,
        latest: &BTreeMap<String, u32>,
        cause: &RotationCause,
    ) -> Result<RotationOutcome, DeployError> {
        let _guard = self.lock.lock().await;
        let mut service = self
            .store
            .service(name)
            .await?
            .ok_or_else(|| DeployError::NoService(name.to_owned()))?;
        let Some(current) = service.current_revision else {
            return Ok(RotationOutcome::UpToDate);
        };
        let running = self.revision_of(name, current).await?;
        let mut handled = Vec::new();
        for revision in self.store.list_revisions(name).await? {
            handled.push(parse_secret_versions(&revision)?);
        }
        let handled = secret_refs::highest_resolved(&handled);
        let Some(rotation) =
            secret_refs::after_rotation(&running.spec, &running.secrets, latest, &handled)
        else {
            return Ok(RotationOutcome::UpToDate);
        };
        if let Some(active) = self.store.active_deployment(name).await? {
            return Ok(RotationOutcome::Busy {
                deployment: active.id,
            });
        }
        let text =
            self.store
                .revision(name, current)
                .await?
                .ok_or_else(|| DeployError::NoRevision {
                    service: name.to_owned(),
                    revision: current,
                })?;
        let actor = secret_refs::rotation_actor(cause, &rotation.news);
        let now = self.now();
        let (revision, _) = self
            .store
            .append_revision(
                name,
                &text.spec_text,
                &text.spec_format,
                &text.spec_hash,
                &rotation.versions.to_json(),
                service.replicas,
                &actor,
                now,
            )
            .await?;
        if service.stopped {
            service.current_revision = Some(revision.number);
            service.updated_at_ms = now;
            self.store.update_service(&service).await?;
            self.record_for_service(
                name,
                now,
                &format!(
                    "revision {} of {name} created by {actor}; the service is stopped, so \
                     nothing was started (it runs the new versions when started again)",
                    revision.number
                ),
            )
            .await?;
            return Ok(RotationOutcome::Stopped {
                revision: revision.number,
            });
        }
        // A rotation keeps the replica count the service runs with.
        let mut spec = (*running.spec).clone();
        spec.replicas = service.replicas;
        let deployment = self
            .start_deployment(service, revision.number, spec, &actor, "", now)
            .await?;
        Ok(RotationOutcome::Deployed(deployment))
    }

    /// Takes in an agent's report: updates allocations and advances the
    /// deployments they belong to.
    pub async fn report(
        &self,
        host_id: &str,
        report: pb::AllocationReport,
    ) -> Result<(), DeployError> {
        let _guard = self.lock.lock().await;
        let now = self.now();
        let mut services = BTreeSet::new();
        let mut finished = Vec::new();
        let mut changed = Vec::new();
        let mut history = Vec::new();
        for status in report.allocations {
            let Some(mut row) = self.store.allocation(&status.allocation_id).await? else {
                continue;
            };
            if row.host_id.as_deref() != Some(host_id) {
                continue;
            }
            let state = state_name(status.state);
            let health = health_name(status.health);
            let reported = ReportedStatus {
                container_id: status.container_id,
                exit_code: status.exit_code,
                oom_killed: status.oom_killed,
                restarts: status.restarts,
                message: status.message,
                healthy_since_ms: status.healthy_since_ms,
                updated_at_ms: status.updated_at_ms,
                route_address: status.route_address,
            };
            let status_json = serde_json::to_string(&reported).unwrap_or_else(|_| "{}".into());
            if !row.desired_run && matches!(state, "stopped" | "exited" | "failed") {
                finished.push(row.id.clone());
                services.insert(row.service.clone());
                continue;
            }
            let previous: ReportedStatus =
                serde_json::from_str(&row.status_json).unwrap_or_default();
            if let Some(line) = exit_event(&row.id, host_id, &previous, &reported) {
                history.push((row.service.clone(), line));
            }
            if row.state != state || row.health != health || row.status_json != status_json {
                row.state = state.to_owned();
                row.health = health.to_owned();
                row.status_json = status_json;
                row.updated_at_ms = now;
                services.insert(row.service.clone());
                changed.push(row);
            }
        }
        self.store.upsert_allocations(&changed).await?;
        if !changed.is_empty() {
            self.allocations_changed.notify_one();
        }
        for (service, line) in history {
            self.record_for_service(&service, now, &line).await?;
        }
        if !finished.is_empty() {
            self.store.delete_allocations(&finished).await?;
            self.push(BTreeSet::from([host_id.to_owned()])).await?;
        }
        for service in services {
            if let Some(active) = self.store.active_deployment(&service).await? {
                let id = changed
                    .iter()
                    .find(|a| a.service == service)
                    .map(|a| a.id.clone())
                    .unwrap_or_default();
                if let Err(error) = self.advance(active, Event::AllocationUpdated { id }).await {
                    tracing::warn!(%error, service, "could not advance the deployment");
                }
            }
        }
        Ok(())
    }

    /// Periodic work: retry placing pending allocations, replace those of
    /// hosts offline past the reschedule grace, and advance active
    /// deployments (deadlines, min-healthy times).
    pub async fn tick(&self) -> Result<(), DeployError> {
        let _guard = self.lock.lock().await;
        let now = self.now();
        let hosts: Vec<HostCandidate> = self
            .fleet
            .list("", &HashMap::new())
            .iter()
            .map(host_candidate)
            .collect();
        let mut all_lost = BTreeSet::new();
        for service in self.store.list_services().await? {
            let rows = self.store.allocations_for_service(&service.name).await?;
            let lost: BTreeSet<String> =
                lost_allocations(&hosts, &rows, now, self.reschedule_grace, self.started_ms)
                    .into_iter()
                    .collect();
            let mut pending: BTreeMap<i64, Vec<AllocationRow>> = BTreeMap::new();
            let mut gone = Vec::new();
            all_lost.extend(lost.iter().cloned());
            for row in rows {
                if lost.contains(&row.id) {
                    gone.push(row);
                } else if row.desired_run && row.host_id.is_none() {
                    pending.entry(row.revision).or_default().push(row);
                }
            }
            for (revision, mut rows) in pending {
                let spec = self.spec_of(&service.name, revision).await?;
                self.place(&mut rows, &spec, service.replicas).await?;
                let hosts: BTreeSet<String> =
                    rows.iter().filter_map(|a| a.host_id.clone()).collect();
                if !hosts.is_empty() {
                    self.store.upsert_allocations(&rows).await?;
                    self.push(hosts).await?;
                }
            }
            if !gone.is_empty()
                && let Err(error) = self.reschedule(&service, gone, &hosts, now).await
            {
                tracing::warn!(%error, service = service.name, "could not reschedule lost allocations");
            }
            if let Some(active) = self.store.active_deployment(&service.name).await?
                && let Err(error) = self.advance(active, Event::Tick).await
            {
                tracing::warn!(%error, service = service.name, "could not advance the deployment");
            }
        }
        // A host that came back, or an allocation that went: a later loss
        // is news again.
        self.stuck
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id| all_lost.contains(id));
        Ok(())
    }

    /// Replaces `lost`, the allocations of `service` whose host has been
    /// gone past the grace ([`lost_allocations`]), by allocations of the
    /// same revision on other hosts; each lost one is told to stop (its agent
    /// removes the container if the host comes back). One that no other host
    /// can take stays where it is — it may well still run — and is retried
    /// every tick: losing contact with every host must not stop everything.
    async fn reschedule(
        &self,
        service: &ServiceRow,
        lost: Vec<AllocationRow>,
        hosts: &[HostCandidate],
        now: i64,
    ) -> Result<(), DeployError> {
        let grace = humantime::format_duration(self.reschedule_grace);
        let mut by_revision: BTreeMap<i64, Vec<AllocationRow>> = BTreeMap::new();
        for old in lost {
            by_revision.entry(old.revision).or_default().push(old);
        }
        let mut touched = BTreeSet::new();
        for (revision, olds) in by_revision {
            let spec = self.spec_of(&service.name, revision).await?;
            let mut replacements: Vec<AllocationRow> = olds
                .iter()
                .map(|old| {
                    new_allocation(&service.name, revision, old.deployment_id.as_deref(), now)
                })
                .collect();
            self.place(&mut replacements, &spec, service.replicas)
                .await?;
            let mut moved = Vec::new();
            let mut lines = Vec::new();
            for (old, new) in olds.iter().zip(replacements) {
                let host = old.host_id.as_deref().unwrap_or_default();
                let gone = host_gone_text(host, hosts, now, self.started_ms);
                let first_words = format!(
                    "allocation {} of revision {revision}: host {host} {gone} (grace {grace})",
                    old.id
                );
                let Some(to) = new.host_id.clone() else {
                    let first_time = self
                        .stuck
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(old.id.clone());
                    if first_time {
                        let reason = new.pending_reason.as_deref().unwrap_or("no host fits");
                        lines.push(format!(
                            "{first_words}, but no other host can take it ({reason}); it stays until one can"
                        ));
                    }
                    continue;
                };
                self.stuck
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&old.id);
                lines.push(format!(
                    "{first_words}: rescheduled, replaced by {} on host {to}",
                    new.id
                ));
                touched.insert(to);
                moved.push((old.id.clone(), new));
            }
            let (ids, created): (Vec<String>, Vec<AllocationRow>) = moved.into_iter().unzip();
            self.stop_allocations(&ids, now, &mut touched).await?;
            self.store.upsert_allocations(&created).await?;
            for line in lines {
                self.record_for_service(&service.name, now, &line).await?;
            }
        }
        self.push(touched).await
    }

    /// A command from a person on a deployment (promote, pause, resume,
    /// cancel), recorded in its history with who sent it.
    pub async fn command(
        &self,
        deployment_id: &str,
        event: Event,
        actor: &str,
    ) -> Result<DeploymentRow, DeployError> {
        let _guard = self.lock.lock().await;
        let row = self
            .store
            .deployment(deployment_id)
            .await?
            .ok_or_else(|| DeployError::NoDeployment(deployment_id.to_owned()))?;
        self.command_locked(row, event, actor).await
    }

    async fn command_locked(
        &self,
        row: DeploymentRow,
        event: Event,
        actor: &str,
    ) -> Result<DeploymentRow, DeployError> {
        let machine: Deployment = serde_json::from_str(&row.state_json)
            .map_err(|e| DeployError::StoredState(row.id.clone(), e))?;
        rollout::accepts(&machine, &event)?;
        let what = match event {
            Event::Promote => "promotion",
            Event::Pause => "pause",
            Event::Resume => "resume",
            Event::Cancel => "cancellation",
            Event::Rollback => "rollback",
            Event::Tick | Event::AllocationUpdated { .. } => "re-evaluation",
            Event::CanaryVerdict { .. } => "a canary verdict",
            Event::BackupDone { .. } => "the pre-deploy backup's outcome",
        };
        let message = format!("{what} requested by {actor}");
        tracing::info!(deployment = row.id, service = row.service, "{message}");
        self.record(&row.id, self.now(), &message).await?;
        self.advance(row, event).await
    }

    /// Deploys an earlier revision: `to`, or the last successful one. While
    /// a deployment is active, rolling back to where it came from (no `to`,
    /// or its from-revision) reverts that deployment instead.
    pub async fn rollback(
        &self,
        service: &str,
        to: Option<i64>,
        actor: &str,
    ) -> Result<DeploymentRow, DeployError> {
        let _guard = self.lock.lock().await;
        let row = self
            .store
            .service(service)
            .await?
            .ok_or_else(|| DeployError::NoService(service.to_owned()))?;
        if let Some(active) = self.store.active_deployment(service).await? {
            if active.from_revision.is_some() && (to.is_none() || to == active.from_revision) {
                return self.command_locked(active, Event::Rollback, actor).await;
            }
            return Err(DeployError::Busy {
                id: active.id,
                service: service.to_owned(),
                phase: active.phase,
                action: "roll back",
            });
        }
        let target = match to {
            Some(number) => number,
            None => row
                .stable_revision
                .filter(|stable| Some(*stable) != row.current_revision)
                .or_else(|| row.current_revision.map(|c| c - 1).filter(|r| *r > 0))
                .ok_or_else(|| DeployError::NothingToRollBackTo {
                    service: service.to_owned(),
                })?,
        };
        let spec = (*self.spec_of(service, target).await?).clone();
        let now = self.now();
        self.start_deployment(row, target, spec, actor, " (rollback)", now)
            .await
    }

    /// Changes the replica count of a service no deployment is moving:
    /// starts allocations of its current revision, or stops the most
    /// expendable ones ([`plan_scale`]). A stopped service starts again.
    /// The count holds until the next deployment, which takes its spec's.
    pub async fn scale(
        &self,
        name: &str,
        replicas: u32,
        actor: &str,
    ) -> Result<ServiceChange, DeployError> {
        if replicas > spec::MAX_REPLICAS {
            return Err(DeployError::Replicas(replicas));
        }
        let _guard = self.lock.lock().await;
        let mut service = self
            .store
            .service(name)
            .await?
            .ok_or_else(|| DeployError::NoService(name.to_owned()))?;
        if let Some(active) = self.store.active_deployment(name).await? {
            return Err(DeployError::Busy {
                id: active.id,
                service: name.to_owned(),
                phase: active.phase,
                action: "scale",
            });
        }
        let revision = service
            .current_revision
            .ok_or_else(|| DeployError::NotDeployed(name.to_owned()))?;
        let spec = self.spec_of(name, revision).await?;
        if let Some(exact) = pinned_replicas(&spec.placement).filter(|n| *n != replicas) {
            return Err(DeployError::ExactRegions {
                service: name.to_owned(),
                exact,
                replicas,
            });
        }
        let now = self.now();
        let rows = self.store.allocations_for_service(name).await?;
        let live: Vec<Replica> = rows
            .iter()
            .filter(|a| a.desired_run)
            .map(|row| {
                let status: ReportedStatus =
                    serde_json::from_str(&row.status_json).unwrap_or_default();
                Replica {
                    id: row.id.clone(),
                    health: observed_health(row, &status),
                    created_at_ms: row.created_at_ms,
                }
            })
            .collect();
        let plan = plan_scale(&live, replicas);
        let mut touched = BTreeSet::new();
        self.stop_allocations(&plan.stop, now, &mut touched).await?;
        let created = self
            .create_allocations(
                name,
                revision,
                &spec,
                replicas,
                plan.start,
                None,
                now,
                &mut touched,
            )
            .await?;
        let before = if service.stopped {
            "stopped".to_owned()
        } else {
            service.replicas.to_string()
        };
        let noun = if replicas == 1 { "replica" } else { "replicas" };
        let mut message = format!("scaled {name} from {before} to {replicas} {noun} by {actor}: ");
        if plan.start > 0 {
            message.push_str(&format!(
                "starting {} allocation(s) of revision {revision} ({})",
                plan.start,
                placement_text(&created)
            ));
        } else if !plan.stop.is_empty() {
            message.push_str(&format!(
                "stopping {} allocation(s) ({})",
                plan.stop.len(),
                plan.stop.join(", ")
            ));
        } else {
            message.push_str(&format!("{} already meant to run", live.len()));
        }
        service.replicas = replicas;
        service.stopped = false;
        service.updated_at_ms = now;
        self.store.update_service(&service).await?;
        self.record_for_service(name, now, &message).await?;
        self.push(touched).await?;
        Ok(ServiceChange {
            service,
            started: plan.start,
            stopping: u32::try_from(plan.stop.len()).unwrap_or(u32::MAX),
            message,
        })
    }

    /// Stops a service no deployment is moving: every allocation drains and
    /// stops, and the service is marked stopped until `apply` or `scale`
    /// starts it again.
    pub async fn stop(&self, name: &str, actor: &str) -> Result<ServiceChange, DeployError> {
        let _guard = self.lock.lock().await;
        let mut service = self
            .store
            .service(name)
            .await?
            .ok_or_else(|| DeployError::NoService(name.to_owned()))?;
        if let Some(active) = self.store.active_deployment(name).await? {
            return Err(DeployError::Busy {
                id: active.id,
                service: name.to_owned(),
                phase: active.phase,
                action: "stop it",
            });
        }
        let now = self.now();
        let ids: Vec<String> = self
            .store
            .allocations_for_service(name)
            .await?
            .into_iter()
            .filter(|a| a.desired_run)
            .map(|a| a.id)
            .collect();
        let mut touched = BTreeSet::new();
        self.stop_allocations(&ids, now, &mut touched).await?;
        let message = if service.stopped && ids.is_empty() {
            format!("stop of {name} requested by {actor}: it was already stopped")
        } else {
            format!(
                "stopped {name} by {actor}: stopping {} allocation(s)",
                ids.len()
            )
        };
        service.stopped = true;
        service.updated_at_ms = now;
        self.store.update_service(&service).await?;
        self.record_for_service(name, now, &message).await?;
        self.push(touched).await?;
        Ok(ServiceChange {
            service,
            started: 0,
            stopping: u32::try_from(ids.len()).unwrap_or(u32::MAX),
            message,
        })
    }
}

/// A new allocation of revision `number`, not placed yet.
fn new_allocation(
    service: &str,
    number: i64,
    deployment_id: Option<&str>,
    now: i64,
) -> AllocationRow {
    AllocationRow {
        id: format!("a-{}", random_id(12)),
        service: service.to_owned(),
        revision: number,
        deployment_id: deployment_id.map(str::to_owned),
        host_id: None,
        desired_run: true,
        state: "pending".into(),
        health: "starting".into(),
        status_json: "{}".into(),
        pending_reason: None,
        created_at_ms: now,
        updated_at_ms: now,
    }
}

/// `2 placed` or `1 placed, 1 pending: no host …`.
fn placement_text(created: &[AllocationRow]) -> String {
    let placed = created.iter().filter(|a| a.host_id.is_some()).count();
    let mut text = format!("{placed} placed");
    if let Some(reason) = created.iter().find_map(|a| a.pending_reason.as_deref()) {
        text.push_str(&format!(", {} pending: {reason}", created.len() - placed));
    }
    text
}

/// A host as the scheduler sees it, with nothing placed on it yet.
fn host_candidate(host: &pb::Host) -> HostCandidate {
    let inventory = host.inventory.clone().unwrap_or_default();
    let status = match pb::HostStatus::try_from(host.status) {
        Ok(pb::HostStatus::Online) => scheduler::HostStatus::Online,
        Ok(pb::HostStatus::Revoked) => scheduler::HostStatus::Revoked,
        _ => scheduler::HostStatus::Offline {
            last_seen_ms: (host.last_seen_ms > 0).then_some(host.last_seen_ms),
        },
    };
    let docker = inventory.docker.clone().unwrap_or_default();
    HostCandidate {
        id: host.id.clone(),
        region: host.region.clone(),
        labels: host.labels.clone().into_iter().collect(),
        status,
        schedulable: docker.available,
        capacity: Capacity::new(
            u64::from(inventory.cpu_count) * 1000,
            inventory.memory_bytes,
        ),
        reserved: Capacity::default(),
        ports_in_use: BTreeSet::new(),
        allocations: BTreeMap::new(),
    }
}

/// A candidate host as placement policies see it.
fn host_view(
    candidate: &HostCandidate,
    host: Option<&pb::Host>,
    config: &SchedulerConfig,
) -> policy_input::HostView {
    let inventory = host.and_then(|h| h.inventory.clone()).unwrap_or_default();
    let docker = inventory.docker.clone().unwrap_or_default();
    let capacity = |c: Capacity| policy_input::CapacityView {
        cpu_millis: c.cpu_millis,
        memory_bytes: c.memory_bytes,
    };
    policy_input::HostView {
        id: candidate.id.clone(),
        hostname: host.map(|h| h.hostname.clone()).unwrap_or_default(),
        region: candidate.region.clone(),
        labels: candidate.labels.clone(),
        status: match candidate.status {
            scheduler::HostStatus::Online => "online",
            scheduler::HostStatus::Offline { .. } => "offline",
            scheduler::HostStatus::Revoked => "revoked",
        },
        inventory: policy_input::InventoryView {
            os: inventory.os,
            os_version: inventory.os_version,
            kernel: inventory.kernel,
            arch: inventory.arch,
            cpu_count: inventory.cpu_count,
            memory_bytes: inventory.memory_bytes,
            agent_version: inventory.agent_version,
            docker_version: docker.version,
            docker_available: docker.available,
        },
        load: host
            .and_then(|h| h.latest.as_ref())
            .map(|s| policy_input::LoadView {
                at_ms: s.timestamp_ms,
                cpu_percent: s.cpu_percent,
                load1: s.load1,
                memory_used_bytes: s.memory_used_bytes,
                memory_available_bytes: s.memory_available_bytes,
            }),
        reserved: capacity(candidate.reserved),
        free: capacity(candidate.free(config)),
        services: candidate
            .allocations
            .iter()
            .map(|(service, revisions)| (service.clone(), revisions.values().sum()))
            .collect(),
    }
}

/// What `rollout.analyze` policies are given about canary step `stage`:
/// the new revision's live allocations against the others'. Pure.
pub fn analysis_input(
    deployment: &Deployment,
    rows: &[AllocationRow],
    traffic: &BTreeMap<u64, crate::routing::traffic::RevisionStats>,
    stage: usize,
    now: i64,
) -> policy_input::AnalyzeInput {
    let steps = match &deployment.strategy {
        super::model::UpdateStrategy::Canary(c) => {
            c.steps.len() + usize::from(c.steps.last() != Some(&100))
        }
        _ => 0,
    };
    let mut canary = policy_input::GroupHealth::default();
    let mut stable = policy_input::GroupHealth::default();
    for row in rows.iter().filter(|r| r.desired_run) {
        let status: ReportedStatus = serde_json::from_str(&row.status_json).unwrap_or_default();
        let group = if revision_id(row.revision) == deployment.new_revision {
            &mut canary
        } else {
            &mut stable
        };
        group.allocations += 1;
        group.restarts += status.restarts;
        group.oom_kills += u32::from(status.oom_killed);
        match observed_health(row, &status) {
            Health::Healthy { since_ms } => {
                group.healthy += 1;
                group.healthy_for_ms = group.healthy_for_ms.max(now - since_ms);
            }
            Health::Unhealthy => group.unhealthy += 1,
            Health::Failed => group.failed += 1,
            Health::Pending | Health::Starting | Health::Stopped => group.starting += 1,
        }
    }
    policy_input::AnalyzeInput {
        deployment: policy_input::DeploymentView {
            id: deployment.id.clone(),
            service: deployment.service.clone(),
            from_revision: deployment.old_revision.clone(),
            to_revision: deployment.new_revision.clone(),
            step: stage,
            steps,
            replicas: deployment.replicas,
            elapsed_ms: now - deployment.started_at_ms,
        },
        canary,
        stable,
        metrics: revision_metrics(deployment, traffic),
        now: Now::at(now),
    }
}

/// The ingresses' measurements of the canary (the new revision) and of the
/// stable revisions together, since the current step began: `requests`,
/// `errors`, `error_rate`, `p50_ms`, `p99_ms` (empty without requests).
fn revision_metrics(
    deployment: &Deployment,
    traffic: &BTreeMap<u64, crate::routing::traffic::RevisionStats>,
) -> policy_input::RevisionMetrics {
    let mut canary = crate::routing::traffic::RevisionStats::default();
    let mut stable = Vec::new();
    for (revision, stats) in traffic {
        if revision_id(i64::try_from(*revision).unwrap_or(-1)) == deployment.new_revision {
            canary = stats.clone();
        } else {
            stable.push(stats);
        }
    }
    let stable = crate::routing::traffic::RevisionStats::combine(stable);
    let view = |s: &crate::routing::traffic::RevisionStats| -> BTreeMap<String, f64> {
        if s.requests == 0 {
            return BTreeMap::new();
        }
        BTreeMap::from([
            ("requests".to_owned(), s.requests as f64),
            ("errors".to_owned(), s.errors as f64),
            ("error_rate".to_owned(), s.error_rate),
            ("p50_ms".to_owned(), s.p50_ms),
            ("p99_ms".to_owned(), s.p99_ms),
        ])
    };
    policy_input::RevisionMetrics {
        canary: view(&canary),
        stable: view(&stable),
    }
}

/// The backup policy a spec asks to run before it deploys.
fn pre_deploy_backup(spec: &ServiceSpec) -> Option<&str> {
    spec.pre_deploy_backup.as_deref()
}

fn parse_secret_versions(revision: &RevisionRow) -> Result<ResolvedVersions, DeployError> {
    ResolvedVersions::from_json(&revision.secret_versions_json).map_err(|error| {
        DeployError::StoredSecretVersions {
            service: revision.service.clone(),
            revision: revision.number,
            error,
        }
    })
}

fn parse_revision(revision: &RevisionRow) -> Result<ServiceSpec, DeployError> {
    let format = if revision.spec_format == "toml" {
        Format::Toml
    } else {
        Format::Yaml
    };
    spec::parse(&revision.spec_text, format).map_err(|errors| DeployError::StoredSpec {
        service: revision.service.clone(),
        revision: revision.number,
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: &str, health: &str, desired_run: bool) -> AllocationRow {
        AllocationRow {
            id: "a".into(),
            service: "web".into(),
            revision: 1,
            deployment_id: None,
            host_id: Some("h".into()),
            desired_run,
            state: state.into(),
            health: health.into(),
            status_json: "{}".into(),
            pending_reason: None,
            created_at_ms: 1,
            updated_at_ms: 5,
        }
    }

    #[test]
    fn reported_states_map_to_rollout_health() {
        let status = ReportedStatus {
            healthy_since_ms: 42,
            ..Default::default()
        };
        let cases = [
            ("pending", "starting", Health::Pending),
            ("pulling", "starting", Health::Starting),
            ("starting", "starting", Health::Starting),
            ("running", "starting", Health::Starting),
            ("running", "healthy", Health::Healthy { since_ms: 42 }),
            ("running", "none", Health::Healthy { since_ms: 42 }),
            ("running", "unhealthy", Health::Unhealthy),
            ("exited", "none", Health::Unhealthy),
            ("failed", "none", Health::Failed),
            ("stopped", "none", Health::Stopped),
        ];
        for (state, health, expected) in cases {
            assert_eq!(
                observed_health(&row(state, health, true), &status),
                expected,
                "{state}/{health}"
            );
        }
        // Without a reported time, the row's last update stands in.
        assert_eq!(
            observed_health(&row("running", "healthy", true), &ReportedStatus::default()),
            Health::Healthy { since_ms: 5 }
        );
    }

    fn replica(id: &str, health: Health, created_at_ms: i64) -> Replica {
        Replica {
            id: id.into(),
            health,
            created_at_ms,
        }
    }

    const UP: Health = Health::Healthy { since_ms: 0 };

    #[test]
    fn scaling_up_starts_what_is_missing() {
        let live = [replica("a", UP, 1)];
        assert_eq!(
            plan_scale(&live, 3),
            ScalePlan {
                start: 2,
                stop: vec![]
            }
        );
        assert_eq!(plan_scale(&[], 2).start, 2);
        assert_eq!(plan_scale(&live, 1), ScalePlan::default());
        assert_eq!(plan_scale(&[], 0), ScalePlan::default());
    }

    #[test]
    fn scaling_down_stops_broken_then_pending_then_newest() {
        let live = [
            replica("old-up", UP, 1),
            replica("new-up", UP, 9),
            replica("mid-up", UP, 5),
            replica("starting", Health::Starting, 7),
            replica("pending", Health::Pending, 8),
            replica("sick", Health::Unhealthy, 2),
            replica("dead", Health::Failed, 3),
        ];
        let order = |n: u32| plan_scale(&live, n).stop;
        assert_eq!(
            order(0),
            [
                "dead", "sick", "pending", "starting", "new-up", "mid-up", "old-up"
            ]
        );
        assert_eq!(order(5), ["dead", "sick"]);
        assert_eq!(order(3), ["dead", "sick", "pending", "starting"]);
        assert_eq!(
            order(1),
            ["dead", "sick", "pending", "starting", "new-up", "mid-up"]
        );
        assert_eq!(order(7), Vec::<String>::new());
        // Same health and age: the higher id goes first, so the plan is stable.
        let twins = [replica("x", UP, 1), replica("y", UP, 1)];
        assert_eq!(plan_scale(&twins, 1).stop, ["y"]);
    }

    #[test]
    fn scaling_down_never_drops_below_the_healthy_it_can_keep() {
        let healths = [
            UP,
            Health::Starting,
            Health::Unhealthy,
            Health::Failed,
            Health::Pending,
        ];
        // Every mix of five allocations, every target.
        for mask in 0..healths.len().pow(5) {
            let live: Vec<Replica> = (0..5)
                .map(|i| {
                    let h = healths[(mask / healths.len().pow(i)) % healths.len()];
                    replica(&format!("r{i}"), h, i as i64)
                })
                .collect();
            let healthy = live.iter().filter(|r| r.health == UP).count();
            for target in 0..=6u32 {
                let plan = plan_scale(&live, target);
                let kept: Vec<&Replica> =
                    live.iter().filter(|r| !plan.stop.contains(&r.id)).collect();
                let want = target as usize;
                assert_eq!(kept.len() + plan.start as usize, want);
                let kept_healthy = kept.iter().filter(|r| r.health == UP).count();
                assert_eq!(kept_healthy, healthy.min(want), "{live:?} → {target}");
            }
        }
    }

    #[test]
    fn exact_region_counts_pin_the_replicas() {
        use crate::deploy::model::RegionPlacement;
        let region = |name: &str, count| RegionPlacement {
            region: name.into(),
            count,
        };
        let mut placement = Placement::default();
        assert_eq!(pinned_replicas(&placement), None);
        placement.regions = vec![
            region("eu-west", RegionCount::Exactly(2)),
            region("us-east", RegionCount::Exactly(1)),
        ];
        assert_eq!(pinned_replicas(&placement), Some(3));
        placement
            .regions
            .push(region("ap-south", RegionCount::Spread));
        assert_eq!(pinned_replicas(&placement), None);
    }

    fn host(id: &str, status: scheduler::HostStatus) -> HostCandidate {
        HostCandidate {
            id: id.into(),
            region: "eu-west".into(),
            labels: BTreeMap::new(),
            status,
            schedulable: true,
            capacity: Capacity::default(),
            reserved: Capacity::default(),
            ports_in_use: BTreeSet::new(),
            allocations: BTreeMap::new(),
        }
    }

    fn placed(id: &str, host: Option<&str>, desired_run: bool) -> AllocationRow {
        AllocationRow {
            id: id.into(),
            host_id: host.map(str::to_owned),
            ..row("running", "healthy", desired_run)
        }
    }

    #[test]
    fn allocations_of_hosts_gone_past_the_grace_are_lost() {
        use scheduler::HostStatus::{Offline, Online, Revoked};
        const GRACE: Duration = Duration::from_secs(60);
        let started = 1_000_000;
        let now = started + 500_000;
        let hosts = [
            host("up", Online),
            host(
                "blip",
                Offline {
                    last_seen_ms: Some(now - 60_000),
                },
            ),
            host(
                "gone",
                Offline {
                    last_seen_ms: Some(now - 60_001),
                },
            ),
            host("never", Offline { last_seen_ms: None }),
            host("revoked", Revoked),
        ];
        let allocations = [
            placed("on-up", Some("up"), true),
            placed("on-blip", Some("blip"), true),
            placed("on-gone", Some("gone"), true),
            placed("stopping-on-gone", Some("gone"), false),
            placed("pending", None, true),
            placed("on-never", Some("never"), true),
            placed("on-revoked", Some("revoked"), true),
            placed("on-deleted", Some("deleted"), true),
        ];
        assert_eq!(
            lost_allocations(&hosts, &allocations, now, GRACE, started),
            ["on-gone", "on-never", "on-revoked", "on-deleted"]
        );
    }

    #[test]
    fn a_restarted_control_plane_waits_a_full_grace_before_rescheduling() {
        use scheduler::HostStatus::Offline;
        const GRACE: Duration = Duration::from_secs(60);
        let started = 1_000_000;
        // Last heard from an hour before this control plane started.
        let hosts = [
            host(
                "h",
                Offline {
                    last_seen_ms: Some(started - 3_600_000),
                },
            ),
            host("never", Offline { last_seen_ms: None }),
        ];
        let allocations = [
            placed("a", Some("h"), true),
            placed("b", Some("never"), true),
        ];
        assert!(
            lost_allocations(&hosts, &allocations, started + 60_000, GRACE, started).is_empty()
        );
        assert_eq!(
            lost_allocations(&hosts, &allocations, started + 60_001, GRACE, started),
            ["a", "b"]
        );
        assert_eq!(
            host_gone_text("h", &hosts, started + 65_000, started),
            "has been offline for 1m 5s"
        );
        assert_eq!(
            host_gone_text("h", &hosts, started + 60_001, started),
            "has been offline for 1m 1s"
        );
        assert_eq!(
            host_gone_text("x", &hosts, started, started),
            "is no longer in the fleet"
        );
    }

    #[test]
    fn exits_and_oom_kills_make_history() {
        let status = |restarts, exit_code, oom_killed| ReportedStatus {
            restarts,
            exit_code,
            oom_killed,
            ..Default::default()
        };
        assert_eq!(
            exit_event("a", "h", &status(0, 0, false), &status(0, 0, false)),
            None
        );
        assert_eq!(
            exit_event("a", "h", &status(1, 1, false), &status(1, 1, false)),
            None,
            "nothing new"
        );
        assert_eq!(
            exit_event("a", "h", &status(0, 0, false), &status(1, 137, true)).as_deref(),
            Some(
                "allocation a on h was OOM-killed (exit code 137): it reached its memory limit; restarted 1 time(s)"
            )
        );
        assert_eq!(
            exit_event("a", "h", &status(1, 137, true), &status(2, 3, false)).as_deref(),
            Some("allocation a on h exited with code 3; restarted 2 time(s)")
        );
    }

    mod with_a_store {
        use super::*;
        use crate::clock::ManualClock;
        use crate::deploy::secret_access::HostSecrets;
        use crate::deploy::secret_catalog::tests::MapCatalog;
        use crate::deploy::secret_refs::VersionedSecret;
        use crate::store::HostRow;
        use crate::store::test_support::*;

        const SPEC: &str = "name: web\nimage: nginx\nreplicas: 1\nenv:\n  DB: {secret: crm/db}\n  API: {secret: crm/api@3}\n";

        fn deployments(db: &TestDb) -> Deployments {
            Deployments::new(
                db.store(),
                Arc::new(Fleet::new(Vec::new(), 3)),
                Arc::new(ManualClock::at(1_000_000)),
            )
        }

        fn rotated_by_alice() -> RotationCause {
            RotationCause::Changed {
                name: "crm/db".into(),
                actor: "user:alice".into(),
            }
        }

        fn latest(db: u32) -> BTreeMap<String, u32> {
            BTreeMap::from([("crm/db".to_owned(), db)])
        }

        async fn cancel_active(d: &Deployments, store: &Store) -> anyhow::Result<()> {
            if let Some(active) = store.active_deployment("web").await? {
                d.command(&active.id, Event::Cancel, "alice").await?;
            }
            Ok(())
        }

        store_test!(apply_resolves_secrets_and_rotations_make_revisions);
        async fn apply_resolves_secrets_and_rotations_make_revisions(
            db: TestDb,
        ) -> anyhow::Result<()> {
            let store = db.store();
            let d = deployments(&db);
            let catalog = MapCatalog::with(&[("crm/db", &[1, 2]), ("crm/api", &[3])]);

            // A missing secret fails the apply, dry run included, naming it.
            let missing = SPEC.replace("crm/api@3", "crm/api@4");
            for dry_run in [true, false] {
                let error = d
                    .apply(&missing, "yaml", "alice", dry_run, &catalog)
                    .await
                    .unwrap_err();
                assert!(
                    matches!(error, DeployError::MissingSecrets(_))
                        && error.to_string().contains(
                            "service web references version 4 of secret crm/api, which does not exist"
                        ),
                    "{error}"
                );
            }
            assert_eq!(store.service("web").await?, None);

            let applied = d.apply(SPEC, "yaml", "alice", false, &catalog).await?;
            assert_eq!((applied.revision, applied.created), (1, true));
            let r1 = store.revision("web", 1).await?.unwrap();
            assert_eq!(r1.secret_versions_json, r#"{"crm/db":2}"#);

            // No host can take it, so the deployment waits: busy.
            let busy = d
                .follow_rotation("web", &latest(3), &rotated_by_alice())
                .await?;
            assert!(matches!(busy, RotationOutcome::Busy { .. }), "{busy:?}");
            cancel_active(&d, &store).await?;

            // Nothing newer than what revision 1 has: nothing to do.
            let same = d
                .follow_rotation("web", &latest(2), &rotated_by_alice())
                .await?;
            assert!(matches!(same, RotationOutcome::UpToDate), "{same:?}");

            let moved = d
                .follow_rotation("web", &latest(3), &rotated_by_alice())
                .await?;
            let RotationOutcome::Deployed(deployment) = moved else {
                panic!("expected a deployment, got {moved:?}");
            };
            assert_eq!(
                (deployment.from_revision, deployment.to_revision),
                (Some(1), 2)
            );
            assert_eq!(
                deployment.created_by,
                "secret rotation crm/db v3 (user:alice)"
            );
            let r2 = store.revision("web", 2).await?.unwrap();
            assert_eq!(r2.spec_text, r1.spec_text);
            assert_eq!(r2.secret_versions_json, r#"{"crm/db":3}"#);
            assert_eq!(r2.created_by, "secret rotation crm/db v3 (user:alice)");
            let again = d
                .follow_rotation("web", &latest(3), &rotated_by_alice())
                .await?;
            assert!(matches!(again, RotationOutcome::UpToDate), "{again:?}");
            assert_eq!(d.services_following(Some("crm/db")).await?.len(), 1);
            assert!(d.services_following(Some("crm/api")).await?.is_empty());

            // Applying the same text now resolves to the same versions: no change.
            cancel_active(&d, &store).await?;
            *catalog.secrets.lock().unwrap() = [
                ("crm/db".to_owned(), vec![3]),
                ("crm/api".to_owned(), vec![3]),
            ]
            .into();
            let same_text = d.apply(SPEC, "yaml", "alice", false, &catalog).await?;
            assert!(!same_text.created, "{same_text:?}");

            // A stopped service only gets the new revision.
            cancel_active(&d, &store).await?;
            d.stop("web", "alice").await?;
            let stopped = d
                .follow_rotation("web", &latest(4), &rotated_by_alice())
                .await?;
            assert!(
                matches!(stopped, RotationOutcome::Stopped { revision: 3 }),
                "{stopped:?}"
            );
            let service = store.service("web").await?.unwrap();
            assert!(service.stopped);
            assert_eq!(service.current_revision, Some(3));
            assert!(store.active_deployment("web").await?.is_none());
            Ok(())
        }

        store_test!(a_host_may_receive_what_its_running_allocations_use);
        async fn a_host_may_receive_what_its_running_allocations_use(
            db: TestDb,
        ) -> anyhow::Result<()> {
            let store = db.store();
            let d = deployments(&db);
            let catalog = MapCatalog::with(&[("crm/db", &[2]), ("crm/api", &[3])]);
            d.apply(SPEC, "yaml", "alice", false, &catalog).await?;
            cancel_active(&d, &store).await?;
            store
                .insert_host(&HostRow {
                    id: "h-1".into(),
                    hostname: "h-1.example".into(),
                    region: "eu-west".into(),
                    labels: BTreeMap::new(),
                    enrolled_at_ms: 1,
                    last_seen_ms: None,
                    inventory: vec![],
                    interval_seconds: 10,
                    cert_serial: "0a".into(),
                    cert_not_after_ms: 90_000,
                    revoked_at_ms: None,
                    join_token_id: "jt-1".into(),
                })
                .await?;
            assert_eq!(d.host_secrets("h-1").await?, HostSecrets::new("h-1"));
            let mut running = new_allocation("web", 1, None, 5);
            running.host_id = Some("h-1".into());
            let mut draining = new_allocation("web", 1, None, 5);
            draining.host_id = Some("h-1".into());
            draining.desired_run = false;
            store
                .upsert_allocations(&[running.clone(), draining])
                .await?;
            let mut want = HostSecrets::new("h-1");
            want.add(
                &running.id,
                [
                    VersionedSecret::new("crm/api", 3),
                    VersionedSecret::new("crm/db", 2),
                ],
            );
            assert_eq!(d.host_secrets("h-1").await?, want);
            assert_eq!(d.host_secrets("h-2").await?, HostSecrets::new("h-2"));
            // The desired state names the versions, never a value.
            let desired = d.desired_state("h-1").await?;
            let container = desired.allocations[0].container.clone().unwrap_or_default();
            assert_eq!(
                container
                    .secret_env
                    .iter()
                    .map(|e| (
                        e.variable.as_str(),
                        e.secret.clone().unwrap_or_default().version
                    ))
                    .collect::<Vec<_>>(),
                [("API", 3), ("DB", 2)]
            );
            Ok(())
        }
    }

    #[test]
    fn canary_analysis_sees_the_new_revision_against_the_rest() {
        use crate::deploy::model::{Canary, UpdateStrategy};
        let strategy = UpdateStrategy::Canary(Canary {
            canaries: 1,
            steps: vec![50],
            min_healthy_time: Duration::from_secs(1),
            healthy_deadline: Duration::from_secs(60),
            auto_promote: true,
            auto_revert: true,
        });
        let d = Deployment::new("d-1", "web", strategy, 3, Some("1".into()), "2", 1_000);
        let with =
            |revision: i64, state: &str, health: &str, status: ReportedStatus| AllocationRow {
                revision,
                status_json: serde_json::to_string(&status).unwrap(),
                ..row(state, health, true)
            };
        let status = |restarts: u32, oom_killed: bool, healthy_since_ms: i64| ReportedStatus {
            restarts,
            oom_killed,
            healthy_since_ms,
            ..ReportedStatus::default()
        };
        let rows = [
            with(2, "running", "healthy", status(2, false, 4000)),
            with(2, "running", "unhealthy", status(1, true, 0)),
            with(1, "running", "healthy", status(0, false, 2000)),
            with(1, "failed", "none", status(0, false, 0)),
            AllocationRow {
                revision: 1,
                ..row("running", "healthy", false)
            },
        ];
        let input = analysis_input(&d, &rows, &BTreeMap::new(), 0, 10_000);
        assert_eq!(
            input.canary,
            policy_input::GroupHealth {
                allocations: 2,
                healthy: 1,
                unhealthy: 1,
                starting: 0,
                failed: 0,
                restarts: 3,
                oom_kills: 1,
                healthy_for_ms: 6_000,
            }
        );
        assert_eq!(
            (
                input.stable.allocations,
                input.stable.healthy,
                input.stable.failed
            ),
            (2, 1, 1),
            "stopping allocations do not count"
        );
        assert_eq!(
            (
                input.deployment.step,
                input.deployment.steps,
                input.deployment.elapsed_ms
            ),
            (0, 2, 9_000)
        );
        assert_eq!(input.deployment.from_revision.as_deref(), Some("1"));
        assert!(input.metrics.canary.is_empty(), "no requests measured");
        assert!(input.metrics.stable.is_empty(), "no requests measured");
    }

    #[test]
    fn canary_analysis_sees_what_the_ingresses_measured_per_side() {
        use crate::routing::traffic::RevisionStats;
        let strategy = crate::deploy::model::UpdateStrategy::Rolling(Default::default());
        let d = Deployment::new("d-1", "web", strategy, 3, Some("1".into()), "3", 1_000);
        let stats = |requests: u64, errors: u64, p50_ms: f64, p99_ms: f64| RevisionStats {
            requests,
            errors,
            error_rate: errors as f64 / requests as f64,
            p50_ms,
            p99_ms,
        };
        let traffic = BTreeMap::from([
            (1, stats(300, 3, 2.0, 10.0)),
            (2, stats(100, 1, 6.0, 12.0)),
            (3, stats(40, 8, 9.0, 30.0)),
        ]);
        let input = analysis_input(&d, &[], &traffic, 1, 10_000);
        let canary = &input.metrics.canary;
        assert_eq!(canary["requests"], 40.0);
        assert_eq!(canary["errors"], 8.0);
        assert!((canary["error_rate"] - 0.2).abs() < 1e-12);
        assert_eq!((canary["p50_ms"], canary["p99_ms"]), (9.0, 30.0));
        let stable = &input.metrics.stable;
        assert_eq!(stable["requests"], 400.0);
        assert!((stable["error_rate"] - 0.01).abs() < 1e-12);
        assert!((stable["p50_ms"] - 3.0).abs() < 1e-12);
        assert_eq!(stable["p99_ms"], 12.0);
    }

    #[test]
    fn agent_enums_have_stable_names() {
        use allocation_status::{Health as H, State as S};
        assert_eq!(state_name(S::Running as i32), "running");
        assert_eq!(state_name(S::Failed as i32), "failed");
        assert_eq!(state_name(99), "pending");
        assert_eq!(health_name(H::Healthy as i32), "healthy");
        assert_eq!(health_name(H::None as i32), "none");
        assert_eq!(health_name(H::Unhealthy as i32), "unhealthy");
    }
}
