//! The deployment controller: the I/O loop around the pure decisions. It
//! turns `apply` into a stored revision and a deployment, feeds the rollout
//! state machine ([`rollout::step`]) with what agents report, applies its
//! effects (create allocations and place them with [`scheduler::schedule`],
//! drain and stop allocations, record history), and pushes each affected
//! host its desired state over its session.
//!
//! One controller mutates at a time (a lock); every decision is stored
//! before its effects are pushed, so a restarted control plane continues
//! from the store.

use super::model::ServiceSpec;
use super::rollout::{self, Deployment, Effect, Event, Health, Observed, ObservedAllocation};
use super::scheduler::{
    self, AllocationRequest, Capacity, HostCandidate, HostPort, SchedulerConfig,
};
use super::spec::{self, Format, SpecErrors};
use super::wire;
use crate::clock::Clock;
use crate::fleet::Fleet;
use crate::secrets::random_id;
use crate::store::{AllocationRow, DeploymentRow, RevisionRow, ServiceRow, Store, StoreError};
use argosy_proto::v1::{self as pb, allocation_status, control_message};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

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
        "deployment {id} of {service} is still {phase}; wait for it, or pause it with `argosy deployments pause {id}`"
    )]
    Busy {
        id: String,
        service: String,
        phase: String,
    },
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
}

/// The deployment controller.
pub struct Deployments {
    store: Store,
    fleet: Arc<Fleet>,
    clock: Arc<dyn Clock>,
    scheduler: SchedulerConfig,
    lock: tokio::sync::Mutex<()>,
    specs: Mutex<HashMap<(String, i64), Arc<ServiceSpec>>>,
    events: broadcast::Sender<String>,
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

impl Deployments {
    pub fn new(store: Store, fleet: Arc<Fleet>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            fleet,
            clock,
            scheduler: SchedulerConfig::default(),
            lock: tokio::sync::Mutex::new(()),
            specs: Mutex::new(HashMap::new()),
            events: broadcast::channel(1024).0,
        }
    }

    /// Deployment ids whose history grew, for watchers.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.events.subscribe()
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    async fn spec_of(&self, service: &str, number: i64) -> Result<Arc<ServiceSpec>, DeployError> {
        let key = (service.to_owned(), number);
        if let Some(spec) = self
            .specs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(spec.clone());
        }
        let revision =
            self.store
                .revision(service, number)
                .await?
                .ok_or_else(|| DeployError::NoRevision {
                    service: service.to_owned(),
                    revision: number,
                })?;
        let spec = Arc::new(parse_revision(&revision)?);
        self.specs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, spec.clone());
        Ok(spec)
    }

    /// Validates `text`, stores it as the service's next revision (unless it
    /// equals the newest) and starts a deployment to it.
    pub async fn apply(
        &self,
        text: &str,
        format: &str,
        actor: &str,
        dry_run: bool,
    ) -> Result<Applied, DeployError> {
        let format = match format {
            "yaml" | "yml" => Format::Yaml,
            "toml" => Format::Toml,
            other => return Err(DeployError::Format(other.to_owned())),
        };
        let spec = spec::parse(text, format)?;
        if dry_run {
            return Ok(Applied {
                service: spec.name,
                revision: 0,
                created: false,
                deployment: None,
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
            });
        }
        let (revision, created) = self
            .store
            .append_revision(
                &spec.name,
                text,
                format_name,
                &hash,
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
        if !created && service.current_revision == Some(revision.number) {
            return Ok(Applied {
                service: spec.name,
                revision: revision.number,
                created,
                deployment: None,
            });
        }
        let deployment = self
            .start_deployment(service, revision.number, spec, actor, now)
            .await?;
        Ok(Applied {
            service: deployment.service.clone(),
            revision: revision.number,
            created,
            deployment: Some(deployment),
        })
    }

    async fn start_deployment(
        &self,
        mut service: ServiceRow,
        to: i64,
        spec: ServiceSpec,
        actor: &str,
        now: i64,
    ) -> Result<DeploymentRow, DeployError> {
        let from = service.current_revision.filter(|r| *r != to);
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
        let from_text = from.map_or("nothing".to_owned(), |r| format!("revision {r}"));
        self.record(
            &id,
            now,
            &format!(
                "deployment of {} revision {to} (from {from_text}) started by {actor}",
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
        for effect in step.effects {
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
        Ok(row)
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
                let mut created = Vec::new();
                for _ in 0..count {
                    created.push(AllocationRow {
                        id: format!("a-{}", random_id(12)),
                        service: row.service.clone(),
                        revision: number,
                        deployment_id: Some(row.id.clone()),
                        host_id: None,
                        desired_run: true,
                        state: "pending".into(),
                        health: "starting".into(),
                        status_json: "{}".into(),
                        pending_reason: None,
                        created_at_ms: now,
                        updated_at_ms: now,
                    });
                }
                self.place(&mut created, &spec).await?;
                touched.extend(created.iter().filter_map(|a| a.host_id.clone()));
                self.store.upsert_allocations(&created).await?;
                let placed = created.iter().filter(|a| a.host_id.is_some()).count();
                let mut message =
                    format!("started {count} allocation(s) of revision {number}: {placed} placed");
                if let Some(reason) = created.iter().find_map(|a| a.pending_reason.clone()) {
                    message.push_str(&format!(", {} pending: {reason}", created.len() - placed));
                }
                self.record(&row.id, now, &message).await?;
            }
            Effect::StopAllocations { ids } => {
                let mut rows = Vec::new();
                for id in &ids {
                    if let Some(mut a) = self.store.allocation(id).await? {
                        a.desired_run = false;
                        a.updated_at_ms = now;
                        if let Some(host) = &a.host_id {
                            touched.insert(host.clone());
                        }
                        rows.push(a);
                    }
                }
                // Never placed: nothing runs, forget it now.
                let (unplaced, placed): (Vec<_>, Vec<_>) =
                    rows.into_iter().partition(|a| a.host_id.is_none());
                self.store.upsert_allocations(&placed).await?;
                let forget: Vec<String> = unplaced.into_iter().map(|a| a.id).collect();
                self.store.delete_allocations(&forget).await?;
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
        }
        Ok(())
    }

    /// The scheduler's view of every host.
    async fn candidates(&self) -> Result<Vec<HostCandidate>, DeployError> {
        let hosts = self.fleet.list("", &HashMap::new());
        let mut candidates = Vec::with_capacity(hosts.len());
        for host in hosts {
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
            let (reserved, ports_in_use, allocations) = scheduler::tally(
                placed
                    .iter()
                    .map(|(s, r, c, p)| (s.as_str(), r.as_str(), *c, p.as_slice())),
            );
            let inventory = host.inventory.clone().unwrap_or_default();
            let status = match pb::HostStatus::try_from(host.status) {
                Ok(pb::HostStatus::Online) => scheduler::HostStatus::Online,
                Ok(pb::HostStatus::Revoked) => scheduler::HostStatus::Revoked,
                _ => scheduler::HostStatus::Offline {
                    last_seen_ms: (host.last_seen_ms > 0).then_some(host.last_seen_ms),
                },
            };
            let docker = inventory.docker.clone().unwrap_or_default();
            candidates.push(HostCandidate {
                id: host.id.clone(),
                region: host.region.clone(),
                labels: host.labels.clone().into_iter().collect(),
                status,
                schedulable: docker.available,
                capacity: Capacity::new(
                    u64::from(inventory.cpu_count) * 1000,
                    inventory.memory_bytes,
                ),
                reserved,
                ports_in_use,
                allocations,
            });
        }
        Ok(candidates)
    }

    /// Places `allocations` (all of one revision), setting host or reason.
    async fn place(
        &self,
        allocations: &mut [AllocationRow],
        spec: &ServiceSpec,
    ) -> Result<(), DeployError> {
        let candidates = self.candidates().await?;
        let requests: Vec<AllocationRequest> = allocations
            .iter()
            .map(|a| AllocationRequest {
                id: a.id.clone(),
                service: a.service.clone(),
                revision: revision_id(a.revision),
                replicas: spec.replicas,
                resources: spec.resources,
                placement: spec.placement.clone(),
                ports: HostPort::published(&spec.ports),
            })
            .collect();
        let decisions = scheduler::schedule(&requests, &candidates, &self.scheduler);
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

    /// Bumps and sends the desired state of every host in `hosts`.
    async fn push(&self, hosts: BTreeSet<String>) -> Result<(), DeployError> {
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
            let spec = self.spec_of(&a.service, a.revision).await?;
            allocations.push(pb::Allocation {
                id: a.id,
                service: a.service,
                revision_id: revision_id(a.revision),
                revision: u64::try_from(a.revision).unwrap_or(0),
                container: Some(wire::container_spec(&spec)),
                run: a.desired_run,
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
            };
            let status_json = serde_json::to_string(&reported).unwrap_or_else(|_| "{}".into());
            if !row.desired_run && matches!(state, "stopped" | "exited" | "failed") {
                finished.push(row.id.clone());
                services.insert(row.service.clone());
                continue;
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

    /// Periodic work: advance active deployments (deadlines, min-healthy
    /// times) and retry placing pending allocations.
    pub async fn tick(&self) -> Result<(), DeployError> {
        let _guard = self.lock.lock().await;
        for service in self.store.list_services().await? {
            let rows = self.store.allocations_for_service(&service.name).await?;
            let mut pending: BTreeMap<i64, Vec<AllocationRow>> = BTreeMap::new();
            for row in rows
                .into_iter()
                .filter(|a| a.desired_run && a.host_id.is_none())
            {
                pending.entry(row.revision).or_default().push(row);
            }
            for (revision, mut rows) in pending {
                let spec = self.spec_of(&service.name, revision).await?;
                self.place(&mut rows, &spec).await?;
                let hosts: BTreeSet<String> =
                    rows.iter().filter_map(|a| a.host_id.clone()).collect();
                if !hosts.is_empty() {
                    self.store.upsert_allocations(&rows).await?;
                    self.push(hosts).await?;
                }
            }
            if let Some(active) = self.store.active_deployment(&service.name).await?
                && let Err(error) = self.advance(active, Event::Tick).await
            {
                tracing::warn!(%error, service = service.name, "could not advance the deployment");
            }
        }
        Ok(())
    }

    /// A command from a person on a deployment (promote, pause, resume).
    pub async fn command(
        &self,
        deployment_id: &str,
        event: Event,
    ) -> Result<DeploymentRow, DeployError> {
        let _guard = self.lock.lock().await;
        let row = self
            .store
            .deployment(deployment_id)
            .await?
            .ok_or_else(|| DeployError::NoDeployment(deployment_id.to_owned()))?;
        let machine: Deployment = serde_json::from_str(&row.state_json)
            .map_err(|e| DeployError::StoredState(row.id.clone(), e))?;
        rollout::accepts(&machine, &event)?;
        self.advance(row, event).await
    }

    /// Deploys an earlier revision: `to`, or the last successful one.
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
            return Err(DeployError::Busy {
                id: active.id,
                service: service.to_owned(),
                phase: active.phase,
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
        self.start_deployment(row, target, spec, actor, now).await
    }
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
