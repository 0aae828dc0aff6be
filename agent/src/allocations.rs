//! The allocations runtime: holds the desired state (persisted, see
//! [`crate::desired`]), runs [`reconcile::plan`] on every desired-state
//! change, engine event and tick, executes the actions through
//! [`crate::docker`], runs the health checks ([`crate::health`]) and
//! publishes an [`AllocationReport`] whenever anything changed.
//!
//! Entry point: [`Allocations::start`], then [`Allocations::apply`] for each
//! `DesiredState` from the control plane, the report receiver for what to
//! send back, [`Allocations::logs`] for `argosy logs`.
//!
//! Secrets: before it creates a container it gets the allocation's secrets
//! ready through [`Secrets::prepare`] (asking the control plane over the
//! session for values it does not hold); an allocation whose secret is
//! refused fails with the reason. After every pass it drops the values and
//! secret files no allocation needs any more.
//!
//! Static stability: on start it loads the persisted desired state and
//! reconciles it (adopting the containers it finds) with no control plane.
//! Until it has a desired state at all it never touches a container. When
//! the engine is unreachable it reports `host_error` and connects again
//! on the next pass (every tick), picking the containers up where they are.

use crate::agent::Clock;
use crate::desired::{self, PersistError};
use crate::docker::{BoxStream, Engine, EngineError, Listed, LogChunk, resolve_host};
use crate::health::{self, CheckState, HealthUpdate};
use crate::reconcile::{
    self, Action, Exit, Failure, HealthView, History, ObservedContainer, RunState, World,
};
use crate::secret_cache;
use crate::secrets::{SecretFiles, Secrets, SecretsError};
use argosy_proto::v1::allocation_status::Health;
use argosy_proto::v1::{Allocation, AllocationReport, AllocationStatus, DesiredState};
use futures_util::StreamExt;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// How the runtime runs. [`AllocationsOptions::new`] has the production
/// values; tests shorten them.
#[derive(Clone)]
pub struct AllocationsOptions {
    /// Where `desired.json` and `allocation-history.json` live (the
    /// agent's state directory).
    pub state_dir: PathBuf,
    /// The engine: `unix:///…` or `tcp://…`; `None`: `DOCKER_HOST`, else
    /// `unix:///var/run/docker.sock`.
    pub docker_host: Option<String>,
    /// Whose containers these are (the host id): the `argosy.host` label.
    /// Agents sharing one engine need different owners.
    pub owner: String,
    /// How often to reconcile without being asked.
    pub tick: Duration,
    /// SIGTERM-to-SIGKILL grace when stopping a container.
    pub stop_grace: Duration,
    /// Where secret files go (`--secrets-dir`); must be on tmpfs or ramfs.
    pub secrets_dir: PathBuf,
    /// How long to wait for the control plane to send secrets.
    pub secret_wait: Duration,
    /// Where route ports are published (`--advertise-address`) and
    /// reported.
    pub advertise: IpAddr,
    pub clock: Clock,
}

impl std::fmt::Debug for AllocationsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AllocationsOptions")
            .field("state_dir", &self.state_dir)
            .field("docker_host", &self.docker_host)
            .field("owner", &self.owner)
            .field("tick", &self.tick)
            .field("stop_grace", &self.stop_grace)
            .field("secrets_dir", &self.secrets_dir)
            .field("secret_wait", &self.secret_wait)
            .field("advertise", &self.advertise)
            .finish_non_exhaustive()
    }
}

impl AllocationsOptions {
    /// Production settings: a 5 s tick, 10 s stop grace, secrets in
    /// [`crate::secrets::DEFAULT_SECRETS_DIR`], the system clock.
    pub fn new(state_dir: impl Into<PathBuf>, owner: impl Into<String>) -> Self {
        Self {
            state_dir: state_dir.into(),
            docker_host: None,
            owner: owner.into(),
            tick: Duration::from_secs(5),
            stop_grace: Duration::from_secs(10),
            secrets_dir: PathBuf::from(crate::secrets::DEFAULT_SECRETS_DIR),
            secret_wait: crate::secrets::DEFAULT_WAIT,
            advertise: IpAddr::from([127, 0, 0, 1]),
            clock: Arc::new(crate::agent::system_now_ms),
        }
    }
}

/// Why an allocations call failed.
#[derive(Debug, thiserror::Error)]
pub enum AllocationsError {
    #[error(transparent)]
    Persist(#[from] PersistError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("there is no allocation {0} on this host")]
    UnknownAllocation(String),
    #[error("allocation {0} has no container (yet); see its state for why")]
    NoContainer(String),
}

/// Aborts its task when dropped.
struct Abort(JoinHandle<()>);

impl Drop for Abort {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Inner {
    options: AllocationsOptions,
    desired: watch::Sender<Option<Arc<DesiredState>>>,
    /// Serializes `apply`: version check, write, publish.
    apply: Mutex<()>,
    reports: watch::Receiver<AllocationReport>,
    nudge: mpsc::Sender<()>,
    secrets: Secrets,
    _task: Abort,
}

/// A handle on the running allocations runtime. Cheap to clone; the
/// runtime (and its health checks) stops when the last clone is dropped.
/// Containers keep running: stopping the agent never stops workloads.
#[derive(Clone)]
pub struct Allocations {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Allocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Allocations")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl Allocations {
    /// Loads the persisted desired state and history from
    /// `options.state_dir` (ignoring, with an error logged, files that do
    /// not parse; failing only if they cannot be read) and starts the
    /// runtime on the current tokio runtime (it must be called inside one). The receiver always holds the latest report and changes
    /// whenever it does (the first one has no statuses yet).
    pub fn start(
        options: AllocationsOptions,
    ) -> Result<(Self, watch::Receiver<AllocationReport>), AllocationsError> {
        // A corrupt file is not worth refusing to start over: the control
        // plane sends the desired state again, and with none the runtime
        // touches nothing.
        let stored = match desired::load_desired(&options.state_dir) {
            Err(error @ PersistError::Corrupt { .. }) => {
                tracing::error!(%error, "ignoring the stored desired state");
                None
            }
            other => other?,
        };
        let history = match desired::load_history(&options.state_dir) {
            Err(error @ PersistError::Corrupt { .. }) => {
                tracing::error!(%error, "ignoring the stored allocation history");
                BTreeMap::new()
            }
            other => other?,
        };
        if let Some(stored) = &stored {
            tracing::info!(
                version = stored.version,
                allocations = stored.allocations.len(),
                "running the stored desired state until the control plane sends a newer one"
            );
        }
        let secrets = Secrets::new(SecretFiles::open(&options.secrets_dir), options.secret_wait);
        // Secret files of allocations this host no longer knows (removed
        // while the agent was down) go at once; the others stay for the
        // containers that may still use them.
        if let Some(stored) = &stored {
            secrets.clean_files(&stored.allocations.iter().map(|a| a.id.clone()).collect());
        }
        let initial = AllocationReport {
            applied_version: stored.as_ref().map_or(0, |d| d.version),
            ..AllocationReport::default()
        };
        let (report_tx, report_rx) = watch::channel(initial);
        let (desired_tx, desired_rx) = watch::channel(stored.map(Arc::new));
        let (nudge_tx, nudge_rx) = mpsc::channel(1);
        let (health_tx, health_rx) = mpsc::channel(64);
        let runtime = Runtime {
            options: options.clone(),
            host: resolve_host(options.docker_host.as_deref()),
            engine: None,
            events: None,
            desired: desired_rx,
            history: history.clone(),
            saved_history: history,
            observed: Vec::new(),
            health: HashMap::new(),
            health_tx,
            pulling: BTreeSet::new(),
            host_error: String::new(),
            statuses: BTreeMap::new(),
            report: report_tx,
            wake_at: None,
            drains: BTreeMap::new(),
            nudge: nudge_tx.clone(),
            secrets: secrets.clone(),
        };
        let task = tokio::spawn(runtime.run(nudge_rx, health_rx));
        let inner = Inner {
            options,
            desired: desired_tx,
            apply: Mutex::new(()),
            reports: report_rx.clone(),
            nudge: nudge_tx,
            secrets,
            _task: Abort(task),
        };
        Ok((
            Self {
                inner: Arc::new(inner),
            },
            report_rx,
        ))
    }

    /// Makes `desired` the state to run, unless a newer version is already
    /// applied (then it returns `Ok(false)`): persists it, then reconciles.
    /// Returns without waiting for the engine. If it cannot be persisted it
    /// is still applied, and the error returned.
    pub fn apply(&self, desired: DesiredState) -> Result<bool, AllocationsError> {
        let _guard = self
            .inner
            .apply
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.inner.desired.borrow().as_ref().map(|d| d.version);
        if current.is_some_and(|v| v > desired.version) {
            tracing::debug!(
                version = desired.version,
                applied = current,
                "ignoring an older desired state"
            );
            return Ok(false);
        }
        let saved = desired::save_desired(&self.inner.options.state_dir, &desired);
        if let Err(error) = &saved {
            tracing::error!(%error, "cannot persist the desired state; applying it anyway");
        }
        tracing::info!(
            version = desired.version,
            allocations = desired.allocations.len(),
            "applying the desired state"
        );
        self.inner.desired.send_replace(Some(Arc::new(desired)));
        let _ = self.inner.nudge.try_send(());
        saved?;
        Ok(true)
    }

    /// The secrets the runtime asks for, which the session sends and
    /// answers.
    pub fn secrets(&self) -> &Secrets {
        &self.inner.secrets
    }

    /// The latest report.
    pub fn report(&self) -> AllocationReport {
        self.inner.reports.borrow().clone()
    }

    /// Another receiver of the reports.
    pub fn subscribe(&self) -> watch::Receiver<AllocationReport> {
        self.inner.reports.clone()
    }

    /// Asks for a reconcile pass now.
    pub fn reconcile_now(&self) {
        let _ = self.inner.nudge.try_send(());
    }

    /// The output of the allocation's current container: the last `tail`
    /// lines (all if `None`), then, with `follow`, everything it writes
    /// until it stops.
    pub async fn logs(
        &self,
        allocation_id: &str,
        follow: bool,
        tail: Option<usize>,
    ) -> Result<BoxStream<LogChunk>, AllocationsError> {
        let container_id = {
            let report = self.inner.reports.borrow();
            let status = report
                .allocations
                .iter()
                .find(|s| s.allocation_id == allocation_id)
                .ok_or_else(|| AllocationsError::UnknownAllocation(allocation_id.to_owned()))?;
            if status.container_id.is_empty() {
                return Err(AllocationsError::NoContainer(allocation_id.to_owned()));
            }
            status.container_id.clone()
        };
        let engine = Engine::connect(self.inner.options.docker_host.as_deref()).await?;
        Ok(engine.logs(&container_id, follow, tail))
    }
}

/// The health check of one running container.
struct HealthSlot {
    started_ms: i64,
    spec: argosy_proto::v1::HealthCheckSpec,
    state: Option<CheckState>,
    _task: Abort,
}

/// The loop's state.
struct Runtime {
    options: AllocationsOptions,
    host: String,
    engine: Option<Engine>,
    events: Option<Abort>,
    desired: watch::Receiver<Option<Arc<DesiredState>>>,
    history: BTreeMap<String, History>,
    saved_history: BTreeMap<String, History>,
    observed: Vec<Listed>,
    /// By container id.
    health: HashMap<String, HealthSlot>,
    health_tx: mpsc::Sender<HealthUpdate>,
    /// Allocations whose image is being pulled.
    pulling: BTreeSet<String>,
    host_error: String,
    /// The last published status of each allocation.
    statuses: BTreeMap<String, AllocationStatus>,
    report: watch::Sender<AllocationReport>,
    wake_at: Option<Instant>,
    /// When each draining allocation may stop ([`reconcile::track_drains`]).
    drains: BTreeMap<String, i64>,
    nudge: mpsc::Sender<()>,
    secrets: Secrets,
}

/// A pass stopped because the engine went away.
struct EngineDown(EngineError);

impl Runtime {
    async fn run(
        mut self,
        mut nudges: mpsc::Receiver<()>,
        mut health: mpsc::Receiver<HealthUpdate>,
    ) {
        let mut tick = tokio::time::interval(self.options.tick);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let wake = self.wake_at;
            tokio::select! {
                biased;
                Some(update) = health.recv() => {
                    self.health_update(update);
                    self.publish();
                    continue;
                }
                Some(()) = nudges.recv() => {}
                _ = tick.tick() => {}
                () = sleep_until(wake) => {}
            }
            self.pass().await;
        }
    }

    fn now(&self) -> i64 {
        (self.options.clock)()
    }

    fn health_update(&mut self, update: HealthUpdate) {
        if let Some(slot) = self.health.get_mut(&update.container_id) {
            if update.state.health != slot.state.as_ref().map_or(Health::Starting, |s| s.health) {
                tracing::info!(
                    container = %update.container_id,
                    health = ?update.state.health,
                    error = %update.state.last_error,
                    "health changed"
                );
            }
            slot.state = Some(update.state);
        }
    }

    async fn pass(&mut self) {
        self.wake_at = None;
        match self.try_pass().await {
            Ok(()) => {}
            Err(EngineDown(error)) => {
                if self.host_error.is_empty() {
                    tracing::warn!(%error, "the Docker engine is away");
                }
                self.host_error = error.to_string();
                self.engine = None;
                self.events = None;
                self.health.clear();
                self.pulling.clear();
            }
        }
        self.save_history();
        self.publish();
    }

    async fn engine(&mut self) -> Result<Engine, EngineDown> {
        if let Some(engine) = &self.engine {
            return Ok(engine.clone());
        }
        let engine = Engine::connect(Some(&self.host))
            .await
            .map_err(EngineDown)?;
        if !self.host_error.is_empty() {
            tracing::info!(host = %self.host, "the Docker engine is back");
        }
        self.engine = Some(engine.clone());
        Ok(engine)
    }

    /// Forwards engine events about our containers as nudges, until the
    /// stream ends (the engine went away); then one last nudge, so the next
    /// pass notices. The next pass subscribes again.
    fn watch_events(&mut self, engine: &Engine) {
        if self.events.as_ref().is_some_and(|e| !e.0.is_finished()) {
            return;
        }
        let mut events = engine.events(&self.options.owner);
        let nudge = self.nudge.clone();
        let task = tokio::spawn(async move {
            let since = Instant::now();
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => {
                        tracing::debug!(action = %event.action, container = %event.container_id, "engine event");
                        let _ = nudge.try_send(());
                    }
                    Err(error) => {
                        tracing::debug!(%error, "engine events ended");
                        break;
                    }
                }
            }
            // A stream that ends at once (an engine that refuses it) waits
            // for the next tick rather than spinning.
            if since.elapsed() > Duration::from_secs(1) {
                let _ = nudge.try_send(());
            }
        });
        self.events = Some(Abort(task));
    }

    async fn list(&mut self, engine: &Engine) -> Result<(), EngineDown> {
        match engine.list_managed(&self.options.owner).await {
            Ok(listed) => {
                self.observed = listed;
                Ok(())
            }
            Err(e) if e.is_unreachable() => Err(EngineDown(e)),
            Err(error) => {
                tracing::warn!(%error, "cannot list the managed containers");
                Ok(())
            }
        }
    }

    async fn try_pass(&mut self) -> Result<(), EngineDown> {
        let engine = self.engine().await?;
        self.watch_events(&engine);
        self.list(&engine).await?;
        self.host_error.clear();
        let Some(told) = self.desired.borrow_and_update().clone() else {
            // Never told what to run: touch nothing.
            return Ok(());
        };
        let now = self.now();
        {
            let containers = self.containers();
            let running: BTreeSet<&str> = containers
                .iter()
                .filter(|c| c.state.is_alive())
                .filter_map(|c| c.allocation())
                .collect();
            reconcile::track_drains(&mut self.drains, &told.allocations, &running, now);
        }
        let (desired, drain_ends) = self.draining(&told, now);
        self.history
            .retain(|id, _| desired.allocations.iter().any(|a| &a.id == id && a.run));

        let images = self.present_images(&engine, &desired).await?;
        let containers = self.containers();
        let actions = reconcile::plan(
            &World {
                desired: &desired.allocations,
                containers: &containers,
                images: &images,
                history: &self.history,
                stop_grace: self.options.stop_grace,
            },
            self.now(),
        );
        let acted = self.execute(&engine, &desired, actions).await?;
        if let Some(after) = drain_ends {
            let at = Instant::now() + after;
            self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
        }
        if acted {
            self.list(&engine).await?;
        }
        self.sync_health(&engine, &desired);
        self.forget_unused_secrets(&desired);
        Ok(())
    }

    /// Drops the secret values no allocation meant to run references, and
    /// the secret files of allocations neither desired nor still holding a
    /// container.
    fn forget_unused_secrets(&self, desired: &DesiredState) {
        self.secrets
            .retain(&secret_cache::referenced(&desired.allocations));
        let keep: BTreeSet<String> = desired
            .allocations
            .iter()
            .filter(|a| a.run)
            .map(|a| a.id.clone())
            .chain(
                self.observed
                    .iter()
                    .filter_map(|l| l.container.allocation().map(str::to_owned)),
            )
            .collect();
        self.secrets.clean_files(&keep);
    }

    /// The observed containers, with `healthy` from the health checks.
    fn containers(&self) -> Vec<ObservedContainer> {
        self.observed
            .iter()
            .map(|listed| {
                let mut c = listed.container.clone();
                c.healthy = c.state == RunState::Running
                    && self.health.get(&c.id).is_none_or(|slot| {
                        slot.state
                            .as_ref()
                            .is_some_and(|s| s.health == Health::Healthy)
                    });
                c
            })
            .collect()
    }

    async fn present_images(
        &self,
        engine: &Engine,
        desired: &DesiredState,
    ) -> Result<BTreeSet<String>, EngineDown> {
        let wanted: BTreeSet<&str> = desired
            .allocations
            .iter()
            .filter(|a| a.run)
            .filter_map(|a| a.container.as_ref().map(|c| c.image.as_str()))
            .collect();
        let mut present = BTreeSet::new();
        for image in wanted {
            match engine.has_image(image).await {
                Ok(true) => {
                    present.insert(image.to_owned());
                }
                Ok(false) => {}
                Err(e) if e.is_unreachable() => return Err(EngineDown(e)),
                // Let the pull say what is wrong.
                Err(_) => {}
            }
        }
        Ok(present)
    }

    /// Runs `actions`; returns whether it changed anything in the engine.
    ///
    /// First the pulls (each image once, [`PARALLEL`] at a time, with the
    /// allocations waiting on them reported `Pulling`), then the actions
    /// grouped per allocation (or per container for clean-ups): a group
    /// runs in order and stops at its first error, [`PARALLEL`] groups at a
    /// time, since the engine creates and starts containers faster side by
    /// side.
    async fn execute(
        &mut self,
        engine: &Engine,
        desired: &DesiredState,
        actions: Vec<Action>,
    ) -> Result<bool, EngineDown> {
        let allocations: HashMap<&str, &Allocation> = desired
            .allocations
            .iter()
            .map(|a| (a.id.as_str(), a))
            .collect();
        let mut wake: Option<Duration> = None;
        let mut pulls: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut groups: Vec<(String, Vec<Action>)> = Vec::new();
        for action in actions {
            if let Some(after) = action.wake_after() {
                wake = Some(wake.map_or(after, |w| w.min(after)));
                continue;
            }
            let key = match &action {
                Action::Wait { .. } => continue,
                Action::Pull { allocation, image } => {
                    pulls
                        .entry(image.clone())
                        .or_default()
                        .push(allocation.clone());
                    continue;
                }
                Action::Stop { container, .. } | Action::Remove { container } => container.clone(),
                other => other.allocation().unwrap_or_default().to_owned(),
            };
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, group)) => group.push(action),
                None => groups.push((key, vec![action])),
            }
        }

        let mut pull_failures: HashMap<String, EngineError> = HashMap::new();
        if !pulls.is_empty() {
            self.pulling = pulls.values().flatten().cloned().collect();
            self.publish();
            let results: Vec<(String, Result<(), EngineError>)> =
                futures_util::stream::iter(pulls.keys().cloned())
                    .map(|image| async move {
                        tracing::info!(%image, "pulling");
                        let result = engine.pull(&image).await;
                        (image, result)
                    })
                    .buffer_unordered(PARALLEL)
                    .collect()
                    .await;
            self.pulling.clear();
            for (image, result) in results {
                match result {
                    Ok(()) => {}
                    Err(e) if e.is_unreachable() => return Err(EngineDown(e)),
                    Err(e) => {
                        for allocation in &pulls[&image] {
                            pull_failures.insert(allocation.clone(), e.clone());
                        }
                    }
                }
            }
        }

        let owner = self.options.owner.as_str();
        let secrets = &self.secrets;
        let advertise = self.options.advertise;
        let outcomes: Vec<Outcome<'_>> = futures_util::stream::iter(groups)
            .map(|(key, actions)| {
                let allocation = allocations.get(key.as_str()).copied();
                let pull_failure = pull_failures.get(&key).cloned();
                run_group(
                    engine,
                    (owner, advertise),
                    secrets,
                    allocation,
                    actions,
                    pull_failure,
                )
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;

        let mut acted = false;
        let mut down = None;
        for outcome in outcomes {
            acted |= outcome.acted;
            for container in &outcome.removed {
                self.health.remove(container);
            }
            let Some(allocation) = outcome.allocation else {
                match outcome.error {
                    Some(RunError::Engine(error)) if error.is_unreachable() => down = Some(error),
                    Some(error) => tracing::warn!(%error, "cannot clean up a container"),
                    None => {}
                }
                continue;
            };
            if let Some((streak, exit)) = outcome.restarted {
                let history = self.history.entry(allocation.id.clone()).or_default();
                history.restarts += 1;
                history.streak = streak;
                history.last_exit = Some(exit);
                tracing::info!(
                    allocation = %allocation.id,
                    restarts = history.restarts,
                    exit_code = exit.code,
                    oom_killed = exit.oom_killed,
                    "restarted"
                );
            }
            match outcome.error {
                None => {
                    if let Some(history) = self.history.get_mut(&allocation.id) {
                        history.failure = None;
                    }
                }
                Some(RunError::Engine(error)) if error.is_unreachable() => down = Some(error),
                Some(error) => {
                    tracing::warn!(allocation = %allocation.id, %error, "allocation failed");
                    let hash = allocation
                        .container
                        .as_ref()
                        .map(reconcile::spec_hash)
                        .unwrap_or_default();
                    let history = self.history.entry(allocation.id.clone()).or_default();
                    let attempts = history
                        .failure
                        .as_ref()
                        .filter(|f| f.spec_hash == hash)
                        .map_or(0, |f| f.attempts);
                    history.failure = Some(Failure {
                        message: error.to_string(),
                        at_ms: (self.options.clock)(),
                        attempts: attempts + 1,
                        spec_hash: hash,
                    });
                    let backoff = reconcile::backoff(attempts);
                    wake = Some(wake.map_or(backoff, |w| w.min(backoff)));
                }
            }
        }
        self.wake_at = wake.map(|w| Instant::now() + w);
        match down {
            Some(error) => Err(EngineDown(error)),
            None => Ok(acted),
        }
    }

    /// Starts a health check for every running kept container whose
    /// allocation has one, and ends those of containers that stopped.
    fn sync_health(&mut self, engine: &Engine, desired: &DesiredState) {
        let mut wanted: HashMap<String, (i64, argosy_proto::v1::HealthCheckSpec, health::Target)> =
            HashMap::new();
        let containers = self.containers();
        for allocation in desired.allocations.iter().filter(|a| a.run) {
            let Some(spec) = allocation
                .container
                .as_ref()
                .and_then(|c| c.health_check.clone())
                .filter(|h| h.probe.is_some())
            else {
                continue;
            };
            let Some((kept, listed)) = self.kept(allocation, &containers) else {
                continue;
            };
            if kept.state == RunState::Running {
                wanted.insert(
                    kept.id.clone(),
                    (kept.started_ms, spec, listed.target.clone()),
                );
            }
        }
        self.health.retain(|id, slot| {
            wanted
                .get(id)
                .is_some_and(|(started, spec, _)| *started == slot.started_ms && *spec == slot.spec)
        });
        for (id, (started_ms, spec, target)) in wanted {
            if self.health.contains_key(&id) {
                continue;
            }
            let task = health::spawn(
                engine.clone(),
                id.clone(),
                target,
                spec.clone(),
                started_ms,
                self.options.clock.clone(),
                self.health_tx.clone(),
            );
            self.health.insert(
                id,
                HealthSlot {
                    started_ms,
                    spec,
                    state: None,
                    _task: Abort(task),
                },
            );
        }
    }

    /// The container the plan keeps for `allocation`, of `containers`
    /// (from [`Runtime::containers`]), with its probe target.
    fn kept<'a>(
        &'a self,
        allocation: &Allocation,
        containers: &'a [ObservedContainer],
    ) -> Option<(&'a ObservedContainer, &'a Listed)> {
        let hash = allocation
            .container
            .as_ref()
            .map(reconcile::spec_hash)
            .unwrap_or_default();
        let kept = reconcile::keeper(
            containers
                .iter()
                .filter(|c| c.allocation() == Some(allocation.id.as_str())),
            &hash,
        )?;
        let listed = self.observed.iter().find(|l| l.container.id == kept.id)?;
        Some((kept, listed))
    }

    fn save_history(&mut self) {
        if self.history == self.saved_history {
            return;
        }
        match desired::save_history(&self.options.state_dir, &self.history) {
            Ok(()) => self.saved_history = self.history.clone(),
            Err(error) => tracing::warn!(%error, "cannot persist the allocations' history"),
        }
    }

    /// Recomputes every status and publishes the report if it changed.
    /// The desired state as the runtime acts on it: draining allocations
    /// keep running until their drain ends (when the second value says).
    fn draining(
        &self,
        told: &Arc<DesiredState>,
        now: i64,
    ) -> (Arc<DesiredState>, Option<Duration>) {
        if self.drains.is_empty() {
            return (told.clone(), None);
        }
        let (allocations, ends) = reconcile::draining_view(&told.allocations, &self.drains, now);
        let view = DesiredState {
            version: told.version,
            allocations,
        };
        (Arc::new(view), ends)
    }

    fn publish(&mut self) {
        let now = self.now();
        let desired = self
            .desired
            .borrow()
            .clone()
            .map(|told| self.draining(&told, now).0);
        let mut statuses = BTreeMap::new();
        if let Some(desired) = &desired {
            let containers = self.containers();
            for allocation in &desired.allocations {
                let kept_listed = self.kept(allocation, &containers);
                let kept = kept_listed.map(|(c, _)| c);
                let health = kept.and_then(|c| {
                    let slot = self.health.get(&c.id)?;
                    let state = slot.state.as_ref()?;
                    Some(HealthView {
                        health: state.health,
                        healthy_since_ms: state.healthy_since_ms,
                    })
                });
                let mut status = reconcile::status(
                    allocation,
                    kept,
                    health,
                    self.history.get(&allocation.id),
                    self.pulling.contains(&allocation.id),
                );
                if status.health() == Health::Unhealthy
                    && status.message.is_empty()
                    && let Some(state) = kept
                        .and_then(|c| self.health.get(&c.id))
                        .and_then(|s| s.state.as_ref())
                {
                    status.message = format!("health check failing: {}", state.last_error);
                }
                if let (Some((_, listed)), Some(spec)) = (kept_listed, &allocation.container) {
                    status.route_address = reconcile::route_address(
                        spec,
                        &listed.target.published,
                        self.options.advertise,
                    );
                }
                let previous = self.statuses.get(&allocation.id);
                status.updated_at_ms = match previous {
                    Some(p) if same_status(p, &status) => p.updated_at_ms,
                    _ => now,
                };
                statuses.insert(allocation.id.clone(), status);
            }
        }
        self.statuses = statuses;
        let report = AllocationReport {
            applied_version: desired.as_ref().map_or(0, |d| d.version),
            allocations: self.statuses.values().cloned().collect(),
            host_error: self.host_error.clone(),
        };
        self.report.send_if_modified(|current| {
            if *current == report {
                false
            } else {
                *current = report;
                true
            }
        });
    }
}

/// How many pulls, or allocations' actions, run side by side.
pub const PARALLEL: usize = 4;

/// What one group of actions did.
struct Outcome<'a> {
    allocation: Option<&'a Allocation>,
    /// Whether it changed anything in the engine.
    acted: bool,
    /// A restart: the new streak and the exit it restarted from.
    restarted: Option<(u32, Exit)>,
    removed: Vec<String>,
    /// The first error; the group stopped there.
    error: Option<RunError>,
}

/// Why an allocation's actions stopped.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
}

/// Runs one allocation's (or one clean-up's) actions in order, stopping
/// at the first error.
async fn run_group<'a>(
    engine: &Engine,
    (owner, advertise): (&str, IpAddr),
    secrets: &Secrets,
    allocation: Option<&'a Allocation>,
    actions: Vec<Action>,
    pull_failure: Option<EngineError>,
) -> Outcome<'a> {
    let mut outcome = Outcome {
        allocation,
        acted: false,
        restarted: None,
        removed: Vec::new(),
        error: pull_failure.map(RunError::Engine),
    };
    if outcome.error.is_some() {
        return outcome;
    }
    for action in actions {
        tracing::debug!(?action, "executing");
        let result: Result<(), RunError> = match &action {
            Action::Create { spec_hash, .. } => match allocation {
                Some(allocation) => {
                    create_and_start(engine, (owner, advertise), secrets, allocation, spec_hash)
                        .await
                }
                None => continue,
            },
            Action::Start { container, .. } => {
                start_with_secrets(engine, secrets, allocation, container).await
            }
            Action::Restart {
                container,
                streak,
                exit,
                ..
            } => {
                let result = start_with_secrets(engine, secrets, allocation, container).await;
                if result.is_ok() {
                    outcome.restarted = Some((*streak, *exit));
                }
                result
            }
            Action::Recreate {
                container,
                spec_hash,
                grace,
                ..
            } => {
                let Some(allocation) = allocation else {
                    continue;
                };
                tracing::info!(allocation = %allocation.id, %container, "recreating: the spec changed");
                let replaced = async {
                    engine.stop(container, *grace).await?;
                    engine.remove(container).await?;
                    create_and_start(engine, (owner, advertise), secrets, allocation, spec_hash)
                        .await
                };
                let result = replaced.await;
                outcome.removed.push(container.clone());
                result
            }
            Action::Stop { container, grace } => {
                tracing::info!(%container, "stopping a container no allocation wants");
                engine.stop(container, *grace).await.map_err(RunError::from)
            }
            Action::Remove { container } => {
                outcome.removed.push(container.clone());
                engine.remove(container).await.map_err(RunError::from)
            }
            Action::Pull { .. } | Action::Wait { .. } => continue,
        };
        outcome.acted = true;
        if let Err(error) = result {
            outcome.error = Some(error);
            break;
        }
    }
    outcome
}

/// Gets the allocation's secrets ready, then creates and starts its
/// container.
async fn create_and_start(
    engine: &Engine,
    (owner, advertise): (&str, IpAddr),
    secrets: &Secrets,
    allocation: &Allocation,
    spec_hash: &str,
) -> Result<(), RunError> {
    let injected = secrets.prepare(allocation).await?;
    let id = engine
        .create(owner, allocation, spec_hash, &injected, advertise)
        .await?;
    drop(injected);
    tracing::info!(allocation = %allocation.id, container = %id, "created");
    Ok(engine.start(&id).await?)
}

/// Starts an existing container, writing its secret files again first if
/// they are gone (tmpfs is empty after a reboot).
async fn start_with_secrets(
    engine: &Engine,
    secrets: &Secrets,
    allocation: Option<&Allocation>,
    container: &str,
) -> Result<(), RunError> {
    if let Some(allocation) = allocation {
        secrets.ensure_files(allocation).await?;
    }
    Ok(engine.start(container).await?)
}

/// Equal but for `updated_at_ms`.
fn same_status(a: &AllocationStatus, b: &AllocationStatus) -> bool {
    let mut a = a.clone();
    a.updated_at_ms = b.updated_at_ms;
    a == *b
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(dir: &std::path::Path) -> AllocationsOptions {
        let mut options = AllocationsOptions::new(dir.join("state"), "host-1");
        options.docker_host = Some(format!("unix://{}/absent.sock", dir.display()));
        options.tick = Duration::from_millis(50);
        options
    }

    fn desired(version: u64) -> DesiredState {
        DesiredState {
            version,
            allocations: vec![Allocation {
                id: "a1".into(),
                service: "web".into(),
                revision_id: "r1".into(),
                revision: 1,
                container: Some(argosy_proto::v1::ContainerSpec {
                    image: "web:v1".into(),
                    ..Default::default()
                }),
                run: true,
                drain_ms: 0,
            }],
        }
    }

    #[tokio::test]
    async fn an_absent_engine_is_a_host_error_and_the_desired_state_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (allocations, mut reports) = Allocations::start(options(dir.path())).unwrap();
        assert_eq!(reports.borrow().applied_version, 0);
        assert!(allocations.apply(desired(3)).unwrap());
        let report = tokio::time::timeout(
            Duration::from_secs(10),
            reports.wait_for(|r| !r.host_error.is_empty()),
        )
        .await
        .unwrap()
        .unwrap()
        .clone();
        assert_eq!(report.applied_version, 3);
        assert!(
            report.host_error.starts_with(&format!(
                "the Docker engine at unix://{}/absent.sock is not reachable: ",
                dir.path().display()
            )) && report.host_error.ends_with("; is dockerd running?"),
            "{}",
            report.host_error
        );
        // Older versions are ignored.
        assert!(!allocations.apply(desired(2)).unwrap());
        assert_eq!(allocations.report().applied_version, 3);
        let error = allocations.logs("a1", false, None).await.err().unwrap();
        assert_eq!(
            error.to_string(),
            "allocation a1 has no container (yet); see its state for why"
        );
        let error = allocations.logs("a2", false, None).await.err().unwrap();
        assert_eq!(error.to_string(), "there is no allocation a2 on this host");
        drop(allocations);

        // A new runtime starts from the stored state.
        let (again, reports) = Allocations::start(options(dir.path())).unwrap();
        assert_eq!(reports.borrow().applied_version, 3);
        drop(again);

        // A corrupt file is ignored, not fatal.
        std::fs::write(dir.path().join("state").join(desired::DESIRED_FILE), "{").unwrap();
        let (_fresh, reports) = Allocations::start(options(dir.path())).unwrap();
        assert_eq!(reports.borrow().applied_version, 0);
    }
}
