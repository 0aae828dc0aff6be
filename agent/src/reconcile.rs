//! The reconciler's decisions: from the allocations this host should run
//! and the containers the engine holds, what to do next and what to report,
//! as plain data.
//!
//! Pure — no async runtime, no Docker client, no clock: [`plan`] and
//! [`status`] take the time as an argument; [`crate::allocations`] gathers
//! the inputs through the Docker adapter and executes the [`Action`]s. A
//! unit test below checks that this module keeps to that.
//!
//! Rules the plan keeps:
//! - It only touches containers labelled `argosy.managed=true` (the runtime
//!   lists only those of this agent's owner, see [`LABEL_OWNER`]); others
//!   are not its business.
//! - One container per allocation: after an agent restart it adopts the
//!   containers it finds (same labels, same spec hash); of several for one
//!   allocation it keeps the best (spec up to date, alive, healthy, newest)
//!   and removes the rest. A managed container whose allocation is not
//!   desired (or is being drained, `run = false`) is stopped and removed.
//! - A container whose spec hash differs from the desired spec is
//!   recreated. The hash covers only what Docker holds (image, command,
//!   env, ports, volumes, limits, and the secrets by name and version):
//!   health checks and restart policies are the agent's, so changing them
//!   never restarts a container.
//! - Containers run with Docker's restart policy `no`; the agent restarts
//!   them itself per [`RestartSpec`] so it sees every exit (and OOM kill)
//!   and can back off: 1 s doubling to 5 min, reset by a run of 10 min.
//! - A failed pull, create or start is retried with the same backoff.

use argosy_proto::v1::allocation_status::{Health, State};
use argosy_proto::v1::restart_spec::Policy;
use argosy_proto::v1::{Allocation, AllocationStatus, ContainerSpec};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
// Address values only (`core::net`: no sockets here).
use core::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// `true` on every container the agent creates; nothing else is touched.
pub const LABEL_MANAGED: &str = "argosy.managed";
/// The agent (host id) that owns the container, so agents sharing one
/// engine leave each other's containers alone.
pub const LABEL_OWNER: &str = "argosy.host";
pub const LABEL_ALLOCATION: &str = "argosy.allocation";
pub const LABEL_SERVICE: &str = "argosy.service";
/// The revision id of the allocation.
pub const LABEL_REVISION: &str = "argosy.revision";
/// [`spec_hash`] of the spec the container was created from.
pub const LABEL_SPEC_HASH: &str = "argosy.spec-hash";

/// The first restart (or retry) waits this long…
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// …each next one twice as long, up to this.
pub const BACKOFF_CAP: Duration = Duration::from_secs(5 * 60);
/// A run at least this long resets the restart backoff.
pub const STABLE_RUN: Duration = Duration::from_secs(10 * 60);

/// A container's lifecycle state as the engine reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
    Unknown,
}

impl RunState {
    /// Parses Docker's `State.Status` word.
    pub fn from_docker(word: &str) -> Self {
        match word {
            "created" => Self::Created,
            "running" => Self::Running,
            "paused" => Self::Paused,
            "restarting" => Self::Restarting,
            "removing" => Self::Removing,
            "exited" => Self::Exited,
            "dead" => Self::Dead,
            _ => Self::Unknown,
        }
    }

    /// Whether a process may be running (so stopping it makes sense).
    pub fn is_alive(self) -> bool {
        matches!(self, Self::Running | Self::Paused | Self::Restarting)
    }
}

/// One container as the runtime lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedContainer {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub state: RunState,
    pub exit_code: i64,
    pub oom_killed: bool,
    /// Unix ms; 0 when unknown.
    pub created_ms: i64,
    /// When its process last started (Unix ms); 0 if it never did.
    pub started_ms: i64,
    /// When its process last ended (Unix ms); 0 if it never did.
    pub finished_ms: i64,
    /// Whether its health check passes (or, without one, it runs): the
    /// tie-breaker between two containers of one allocation.
    pub healthy: bool,
}

impl ObservedContainer {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// Whether the agent created it.
    pub fn is_managed(&self) -> bool {
        self.label(LABEL_MANAGED) == Some("true")
    }

    /// The allocation it runs, if it is managed and says.
    pub fn allocation(&self) -> Option<&str> {
        self.label(LABEL_ALLOCATION).filter(|_| self.is_managed())
    }

    /// The spec hash it was created with.
    pub fn spec_hash(&self) -> Option<&str> {
        self.label(LABEL_SPEC_HASH)
    }
}

/// The last failed attempt to pull, create or start an allocation's
/// container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// For people: `image … could not be pulled: …`.
    pub message: String,
    pub at_ms: i64,
    /// Failed attempts in a row.
    pub attempts: u32,
    /// The spec that failed; a new spec is tried at once.
    pub spec_hash: String,
}

/// How an exit ended, kept after the container restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    pub code: i64,
    pub oom_killed: bool,
    pub at_ms: i64,
}

/// What the agent remembers about one allocation between passes (and,
/// persisted, between agent runs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Restarts done by the agent, reported as `restarts`.
    pub restarts: u32,
    /// Restarts since the last run of [`STABLE_RUN`]: the backoff exponent.
    pub streak: u32,
    /// The last exit the agent restarted from.
    pub last_exit: Option<Exit>,
    /// The last failed attempt; cleared by success.
    pub failure: Option<Failure>,
}

/// Everything [`plan`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct World<'a> {
    /// The allocations of the applied desired state.
    pub desired: &'a [Allocation],
    /// The managed containers of this agent.
    pub containers: &'a [ObservedContainer],
    /// Which of the desired images the engine already has.
    pub images: &'a BTreeSet<String>,
    pub history: &'a BTreeMap<String, History>,
    /// How long a stopped container gets between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
}

/// One step for the runtime. Actions of one allocation are in order; if
/// one fails, the runtime skips the rest of that allocation's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Pull an image the engine does not have.
    Pull {
        allocation: String,
        image: String,
    },
    /// Create the allocation's container (labelled with `spec_hash`) and
    /// start it.
    Create {
        allocation: String,
        spec_hash: String,
    },
    /// Start a container that was created but never started.
    Start {
        allocation: String,
        container: String,
    },
    /// Start an exited container again, `after` from now (zero: now).
    /// `streak` is the allocation's new [`History::streak`].
    Restart {
        allocation: String,
        container: String,
        after: Duration,
        streak: u32,
        exit: Exit,
    },
    /// Stop, remove and create again from the desired spec.
    Recreate {
        allocation: String,
        container: String,
        spec_hash: String,
        grace: Duration,
    },
    Stop {
        container: String,
        grace: Duration,
    },
    Remove {
        container: String,
    },
    /// Nothing to do until `after` from now: a failed attempt backs off.
    Wait {
        allocation: String,
        after: Duration,
    },
}

impl Action {
    /// The allocation the action is for, if any.
    pub fn allocation(&self) -> Option<&str> {
        match self {
            Self::Pull { allocation, .. }
            | Self::Create { allocation, .. }
            | Self::Start { allocation, .. }
            | Self::Restart { allocation, .. }
            | Self::Recreate { allocation, .. }
            | Self::Wait { allocation, .. } => Some(allocation),
            Self::Stop { .. } | Self::Remove { .. } => None,
        }
    }

    /// When the runtime should plan again because of this action.
    pub fn wake_after(&self) -> Option<Duration> {
        match self {
            Self::Restart { after, .. } | Self::Wait { after, .. } if !after.is_zero() => {
                Some(*after)
            }
            _ => None,
        }
    }
}

/// The delay before attempt `streak + 1`: `BACKOFF_BASE * 2^streak`, at
/// most [`BACKOFF_CAP`].
pub fn backoff(streak: u32) -> Duration {
    let factor = 1u32.checked_shl(streak).unwrap_or(u32::MAX);
    BACKOFF_BASE
        .checked_mul(factor)
        .map_or(BACKOFF_CAP, |delay| delay.min(BACKOFF_CAP))
}

/// A stable digest of everything in `spec` that Docker holds: two specs
/// with the same hash need no new container. Stable across agent versions
/// (it is stored in a label), insensitive to the order of env, ports and
/// volumes.
pub fn spec_hash(spec: &ContainerSpec) -> String {
    let mut hasher = Sha256::new();
    let mut field = |name: &str, value: &str| {
        hasher.update(name.as_bytes());
        hasher.update((value.len() as u64).to_be_bytes());
        hasher.update(value.as_bytes());
    };
    field("image", &spec.image);
    for arg in &spec.command {
        field("command", arg);
    }
    let env: BTreeMap<_, _> = spec.env.iter().collect();
    for (name, value) in env {
        field("env", &format!("{name}={value}"));
    }
    let mut ports: Vec<String> = spec
        .ports
        .iter()
        .map(|p| {
            format!(
                "{}/{}:{}:{}",
                p.container_port,
                protocol(&p.protocol),
                p.host_ip,
                p.host_port
            )
        })
        .collect();
    ports.sort();
    for port in &ports {
        field("port", port);
    }
    let mut volumes: Vec<String> = spec
        .volumes
        .iter()
        .map(|v| format!("{}:{}:{}:{}", v.bind, v.source, v.target, v.read_only))
        .collect();
    volumes.sort();
    for volume in &volumes {
        field("volume", volume);
    }
    field("cpu_millis", &spec.cpu_millis.to_string());
    field("memory", &spec.memory_bytes.to_string());
    field("memory_swap", &spec.memory_swap_bytes.to_string());
    field("pids", &spec.pids_limit.to_string());
    // Secrets by reference (a spec without them hashes as before).
    let secret = |s: Option<&argosy_proto::v1::SecretRef>| {
        s.map(|s| format!("{}@{}", s.name, s.version))
            .unwrap_or_default()
    };
    let mut secret_env: Vec<String> = spec
        .secret_env
        .iter()
        .map(|e| format!("{}={}", e.variable, secret(e.secret.as_ref())))
        .collect();
    secret_env.sort();
    for entry in &secret_env {
        field("secret_env", entry);
    }
    let mut secret_files: Vec<String> = spec
        .secret_files
        .iter()
        .map(|f| {
            format!(
                "{}:{}:{:o}:{}:{}",
                f.file,
                secret(f.secret.as_ref()),
                f.mode,
                f.uid,
                f.gid
            )
        })
        .collect();
    secret_files.sort();
    for entry in &secret_files {
        field("secret_file", entry);
    }
    // Published for the ingress (a spec without one hashes as before).
    if spec.route_port != 0 {
        field("route_port", &spec.route_port.to_string());
    }
    let digest = hasher.finalize();
    hex::encode(&digest[..12])
}

/// The route port, when `ports` does not already publish it on a host
/// port (then the agent publishes it on an ephemeral one).
pub fn unpublished_route_port(spec: &ContainerSpec) -> Option<u16> {
    let port = u16::try_from(spec.route_port).ok().filter(|p| *p > 0)?;
    let published = spec.ports.iter().any(|p| {
        p.container_port == spec.route_port && p.host_port > 0 && protocol(&p.protocol) == "tcp"
    });
    (!published).then_some(port)
}

/// Where ingresses reach the route port (`ip:port`), from the container's
/// published ports: on the binding's host IP, or on `advertise` when it
/// is bound to every address. Empty without a route port or while it is
/// not published (the container is not running).
pub fn route_address(
    spec: &ContainerSpec,
    published: &BTreeMap<u16, SocketAddr>,
    advertise: IpAddr,
) -> String {
    let Some(port) = u16::try_from(spec.route_port).ok().filter(|p| *p > 0) else {
        return String::new();
    };
    match published.get(&port) {
        Some(address) if address.ip().is_unspecified() => {
            SocketAddr::new(advertise, address.port()).to_string()
        }
        Some(address) => address.to_string(),
        None => String::new(),
    }
}

/// `tcp` unless it says `udp` (or another protocol Docker knows).
pub fn protocol(word: &str) -> &str {
    if word.is_empty() { "tcp" } else { word }
}

fn allocation_hash(allocation: &Allocation) -> String {
    allocation
        .container
        .as_ref()
        .map(spec_hash)
        .unwrap_or_default()
}

fn restart_policy(allocation: &Allocation) -> (Policy, u32) {
    let restart = allocation.container.as_ref().and_then(|c| c.restart);
    match restart {
        Some(r) => {
            let policy = Policy::try_from(r.policy).unwrap_or(Policy::Unspecified);
            (policy, r.max_retries)
        }
        None => (Policy::Unspecified, 0),
    }
}

/// Whether an allocation whose container exited like `container` gets
/// restarted. Unspecified means `always`: a service is meant to run.
fn should_restart(allocation: &Allocation, container: &ObservedContainer, restarts: u32) -> bool {
    let (policy, max_retries) = restart_policy(allocation);
    let failed = container.exit_code != 0 || container.oom_killed;
    match policy {
        Policy::Never => false,
        Policy::OnFailure => failed && (max_retries == 0 || restarts < max_retries),
        Policy::Always | Policy::Unspecified => true,
    }
}

/// Of the containers of one allocation, the one to keep: spec up to date,
/// then alive, then healthy, then newest (then the greatest id, so the
/// choice is deterministic).
pub fn keeper<'a>(
    containers: impl IntoIterator<Item = &'a ObservedContainer>,
    spec_hash: &str,
) -> Option<&'a ObservedContainer> {
    containers.into_iter().max_by(|a, b| {
        let key = |c: &ObservedContainer| {
            (
                c.spec_hash() == Some(spec_hash),
                c.state.is_alive(),
                c.healthy,
                c.created_ms,
            )
        };
        key(a).cmp(&key(b)).then_with(|| a.id.cmp(&b.id))
    })
}

/// The managed containers grouped by the allocation they run (`None`: a
/// managed container without an allocation label).
fn by_allocation(
    containers: &[ObservedContainer],
) -> BTreeMap<Option<&str>, Vec<&ObservedContainer>> {
    let mut groups: BTreeMap<Option<&str>, Vec<&ObservedContainer>> = BTreeMap::new();
    for container in containers.iter().filter(|c| c.is_managed()) {
        groups
            .entry(container.allocation())
            .or_default()
            .push(container);
    }
    groups
}

fn remove(container: &ObservedContainer, grace: Duration, actions: &mut Vec<Action>) {
    if container.state.is_alive() {
        actions.push(Action::Stop {
            container: container.id.clone(),
            grace,
        });
    }
    actions.push(Action::Remove {
        container: container.id.clone(),
    });
}

/// How long a failed attempt still waits, if it applies to `spec_hash`.
fn failure_wait(history: Option<&History>, spec_hash: &str, now_ms: i64) -> Option<Duration> {
    let failure = history?.failure.as_ref()?;
    if failure.spec_hash != spec_hash {
        return None;
    }
    let due = failure
        .at_ms
        .saturating_add(millis(backoff(failure.attempts.saturating_sub(1))));
    (due > now_ms).then(|| Duration::from_millis(u64::try_from(due - now_ms).unwrap_or(0)))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Notes when each allocation told to stop (`run = false`) may stop: its
/// `drain_ms` after this agent first saw it told so, while the
/// ingresses stop sending it requests and in-flight ones finish. Only an
/// allocation whose container is running (`running`) drains; one that
/// runs again, or is gone from the desired state, is forgotten.
pub fn track_drains(
    drains: &mut BTreeMap<String, i64>,
    desired: &[Allocation],
    running: &BTreeSet<&str>,
    now_ms: i64,
) {
    drains.retain(|id, _| desired.iter().any(|a| &a.id == id && !a.run));
    for allocation in desired.iter().filter(|a| !a.run && a.drain_ms > 0) {
        if running.contains(allocation.id.as_str()) {
            let drain = i64::try_from(allocation.drain_ms).unwrap_or(i64::MAX);
            drains
                .entry(allocation.id.clone())
                .or_insert_with(|| now_ms.saturating_add(drain));
        }
    }
}

/// The desired allocations as the runtime acts on them: one still draining
/// keeps running (and reports its real state, so the control plane keeps
/// it until it has stopped); and how long until the next drain ends.
pub fn draining_view(
    desired: &[Allocation],
    drains: &BTreeMap<String, i64>,
    now_ms: i64,
) -> (Vec<Allocation>, Option<Duration>) {
    let mut next: Option<i64> = None;
    let view = desired
        .iter()
        .map(|allocation| match drains.get(&allocation.id) {
            Some(until) if !allocation.run && *until > now_ms => {
                next = Some(next.map_or(*until, |n| n.min(*until)));
                Allocation {
                    run: true,
                    ..allocation.clone()
                }
            }
            _ => allocation.clone(),
        })
        .collect();
    let after = next.map(|at| Duration::from_millis(u64::try_from(at - now_ms).unwrap_or(0)));
    (view, after)
}

/// What to do to move the engine toward `world.desired`.
pub fn plan(world: &World<'_>, now_ms: i64) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut groups = by_allocation(world.containers);
    let grace = world.stop_grace;

    let mut wanted = BTreeSet::new();
    for allocation in world.desired.iter().filter(|a| a.run) {
        if !wanted.insert(allocation.id.as_str()) {
            continue; // a duplicate id: the first one wins
        }
        let containers = groups
            .remove(&Some(allocation.id.as_str()))
            .unwrap_or_default();
        if allocation.container.is_none() {
            // Malformed: nothing to run, but no reason to remove anything.
            continue;
        }
        let hash = allocation_hash(allocation);
        let kept = keeper(containers.iter().copied(), &hash);
        for extra in containers
            .iter()
            .filter(|c| kept.is_none_or(|k| k.id != c.id))
        {
            remove(extra, grace, &mut actions);
        }
        plan_one(world, allocation, &hash, kept, now_ms, &mut actions);
    }
    // Whatever is left belongs to no running allocation.
    for containers in groups.values() {
        for container in containers {
            remove(container, grace, &mut actions);
        }
    }
    actions
}

fn plan_one(
    world: &World<'_>,
    allocation: &Allocation,
    hash: &str,
    kept: Option<&ObservedContainer>,
    now_ms: i64,
    actions: &mut Vec<Action>,
) {
    let id = allocation.id.clone();
    let history = world.history.get(&allocation.id);
    let image = allocation
        .container
        .as_ref()
        .map(|c| c.image.clone())
        .unwrap_or_default();
    let wait = failure_wait(history, hash, now_ms);
    let pull = |actions: &mut Vec<Action>| {
        if !world.images.contains(&image) {
            actions.push(Action::Pull {
                allocation: id.clone(),
                image: image.clone(),
            });
        }
    };
    let Some(container) = kept else {
        if let Some(after) = wait {
            actions.push(Action::Wait {
                allocation: id,
                after,
            });
            return;
        }
        pull(actions);
        actions.push(Action::Create {
            allocation: id,
            spec_hash: hash.to_owned(),
        });
        return;
    };
    if container.spec_hash() != Some(hash) || container.state == RunState::Dead {
        if let Some(after) = wait {
            actions.push(Action::Wait {
                allocation: id,
                after,
            });
            return;
        }
        pull(actions);
        actions.push(Action::Recreate {
            allocation: id.clone(),
            container: container.id.clone(),
            spec_hash: hash.to_owned(),
            grace: world.stop_grace,
        });
        return;
    }
    match container.state {
        RunState::Created => {
            if let Some(after) = wait {
                actions.push(Action::Wait {
                    allocation: id,
                    after,
                });
            } else {
                actions.push(Action::Start {
                    allocation: id,
                    container: container.id.clone(),
                });
            }
        }
        RunState::Exited => {
            let restarts = history.map_or(0, |h| h.restarts);
            if !should_restart(allocation, container, restarts) {
                return;
            }
            // The last restart failed (a port taken, say): back off.
            if let Some(after) = wait {
                actions.push(Action::Wait {
                    allocation: id,
                    after,
                });
                return;
            }
            let ran = container.finished_ms.saturating_sub(container.started_ms);
            let streak = match history {
                Some(h) if ran < millis(STABLE_RUN) => h.streak,
                _ => 0,
            };
            let due = container
                .finished_ms
                .saturating_add(millis(backoff(streak)));
            let after = Duration::from_millis(u64::try_from(due - now_ms).unwrap_or(0));
            actions.push(Action::Restart {
                allocation: id,
                container: container.id.clone(),
                after,
                streak: streak + 1,
                exit: Exit {
                    code: container.exit_code,
                    oom_killed: container.oom_killed,
                    at_ms: container.finished_ms,
                },
            });
        }
        // Running, or the engine is busy with it: nothing to do.
        RunState::Running
        | RunState::Paused
        | RunState::Restarting
        | RunState::Removing
        | RunState::Dead
        | RunState::Unknown => {}
    }
}

/// What the health checks say about the kept container of an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthView {
    pub health: Health,
    /// Unix ms; 0 when not healthy.
    pub healthy_since_ms: i64,
}

/// The status to report for `allocation`, given its kept container (if
/// any), its health, its history and whether its image is being pulled.
/// `updated_at_ms` is left 0: the runtime sets it when the status changes.
/// The status depends on no clock, so it changes only when something
/// happens.
pub fn status(
    allocation: &Allocation,
    kept: Option<&ObservedContainer>,
    health: Option<HealthView>,
    history: Option<&History>,
    pulling: bool,
) -> AllocationStatus {
    let default_history = History::default();
    let history = history.unwrap_or(&default_history);
    let hash = allocation_hash(allocation);
    let mut status = AllocationStatus {
        allocation_id: allocation.id.clone(),
        container_id: kept.map(|c| c.id.clone()).unwrap_or_default(),
        restarts: history.restarts,
        ..AllocationStatus::default()
    };
    if let Some(exit) = history.last_exit {
        status.exit_code = i32::try_from(exit.code).unwrap_or(i32::MAX);
        status.oom_killed = exit.oom_killed;
    }
    let has_check = allocation
        .container
        .as_ref()
        .and_then(|c| c.health_check.as_ref())
        .is_some_and(|h| h.probe.is_some());
    let set = |status: &mut AllocationStatus, state: State, health: Health| {
        status.set_state(state);
        status.set_health(health);
    };

    if !allocation.run {
        set(&mut status, State::Stopped, Health::Unspecified);
        return status;
    }
    if allocation.container.is_none() {
        set(&mut status, State::Failed, Health::Unhealthy);
        status.message = "the allocation has no container spec; the control plane sent an incomplete desired state".into();
        return status;
    }
    let failure = history
        .failure
        .as_ref()
        .filter(|f| f.spec_hash == hash)
        .filter(|_| kept.is_none_or(|c| !c.state.is_alive()));
    if let Some(failure) = failure {
        set(&mut status, State::Failed, Health::Unhealthy);
        // The delay, not a countdown: the report changes only when
        // something happens.
        let delay = backoff(failure.attempts.saturating_sub(1));
        status.message = format!(
            "{}; retrying {} after the failure",
            failure.message,
            seconds(delay)
        );
        return status;
    }
    let Some(container) = kept else {
        let state = if pulling {
            State::Pulling
        } else {
            State::Pending
        };
        set(&mut status, state, Health::Starting);
        return status;
    };
    match container.state {
        RunState::Running | RunState::Paused => {
            status.set_state(State::Running);
            if container.state == RunState::Paused {
                status.message = "the container is paused".into();
            }
            match (has_check, health) {
                (false, _) => {
                    status.set_health(Health::None);
                    status.healthy_since_ms = container.started_ms;
                }
                (true, Some(view)) => {
                    status.set_health(view.health);
                    status.healthy_since_ms = view.healthy_since_ms;
                }
                (true, None) => status.set_health(Health::Starting),
            }
            let stale = container.spec_hash() != Some(hash.as_str());
            if let Some(failure) = history.failure.as_ref().filter(|_| stale) {
                // Still the old spec: the new one could not be set up.
                status.message = format!("running the previous spec: {}", failure.message);
            } else if status.message.is_empty()
                && let Some(exit) = history.last_exit.filter(|_| history.restarts > 0)
            {
                status.message = format!(
                    "restarted {} after {}",
                    times(history.restarts),
                    describe_exit(exit.code, exit.oom_killed)
                );
            }
        }
        RunState::Created | RunState::Restarting => {
            set(&mut status, State::Starting, Health::Starting);
        }
        RunState::Removing | RunState::Unknown => {
            set(&mut status, State::Pending, Health::Starting);
        }
        RunState::Exited | RunState::Dead => {
            status.exit_code = i32::try_from(container.exit_code).unwrap_or(i32::MAX);
            status.oom_killed = container.oom_killed;
            let exit = describe_exit(container.exit_code, container.oom_killed);
            let clean = container.exit_code == 0 && !container.oom_killed;
            if container.state == RunState::Exited
                && should_restart(allocation, container, history.restarts)
            {
                set(&mut status, State::Exited, Health::Unhealthy);
                let streak = if container.finished_ms.saturating_sub(container.started_ms)
                    < millis(STABLE_RUN)
                {
                    history.streak
                } else {
                    0
                };
                status.message = format!(
                    "{exit}; restarting {} after the exit",
                    seconds(backoff(streak))
                );
            } else if clean {
                set(&mut status, State::Exited, Health::Unhealthy);
                status.message = exit;
            } else {
                set(&mut status, State::Failed, Health::Unhealthy);
                let (policy, max_retries) = restart_policy(allocation);
                status.message = if policy == Policy::Never {
                    format!("{exit}; the restart policy is never")
                } else {
                    format!("{exit}; gave up after {max_retries} restarts")
                };
            }
        }
    }
    status
}

fn describe_exit(code: i64, oom_killed: bool) -> String {
    if oom_killed {
        format!("exited with code {code} (OOM killed: it used more than its memory limit)")
    } else {
        format!("exited with code {code}")
    }
}

fn times(n: u32) -> String {
    if n == 1 {
        "once".to_owned()
    } else {
        format!("{n} times")
    }
}

fn seconds(duration: Duration) -> String {
    let secs = duration.as_millis().div_ceil(1000);
    format!("{secs} s")
}

#[cfg(test)]
mod tests {
    use super::*;
    use argosy_proto::v1::{
        HealthCheckSpec, HttpProbe, PortSpec, RestartSpec, VolumeSpec, health_check_spec,
    };

    const NOW: i64 = 1_000_000_000;
    const GRACE: Duration = Duration::from_secs(10);

    fn spec(image: &str) -> ContainerSpec {
        ContainerSpec {
            image: image.into(),
            memory_bytes: 64 << 20,
            ..ContainerSpec::default()
        }
    }

    fn alloc(id: &str, image: &str) -> Allocation {
        Allocation {
            id: id.into(),
            service: "web".into(),
            revision_id: "rev1".into(),
            revision: 1,
            container: Some(spec(image)),
            run: true,
            drain_ms: 0,
        }
    }

    fn with_policy(mut a: Allocation, policy: Policy, max_retries: u32) -> Allocation {
        a.container.as_mut().unwrap().restart = Some(RestartSpec {
            policy: policy as i32,
            max_retries,
        });
        a
    }

    fn container(id: &str, allocation: &str, hash: &str, state: RunState) -> ObservedContainer {
        let mut labels = BTreeMap::new();
        labels.insert(LABEL_MANAGED.to_owned(), "true".to_owned());
        labels.insert(LABEL_ALLOCATION.to_owned(), allocation.to_owned());
        labels.insert(LABEL_SPEC_HASH.to_owned(), hash.to_owned());
        ObservedContainer {
            id: id.into(),
            name: format!("argosy-{id}"),
            labels,
            state,
            exit_code: 0,
            oom_killed: false,
            created_ms: NOW - 60_000,
            started_ms: NOW - 50_000,
            finished_ms: if state == RunState::Exited {
                NOW - 500
            } else {
                0
            },
            healthy: state == RunState::Running,
        }
    }

    fn hash_of(a: &Allocation) -> String {
        spec_hash(a.container.as_ref().unwrap())
    }

    struct Case {
        desired: Vec<Allocation>,
        containers: Vec<ObservedContainer>,
        images: Vec<&'static str>,
        history: Vec<(&'static str, History)>,
    }

    impl Case {
        fn new(desired: Vec<Allocation>, containers: Vec<ObservedContainer>) -> Self {
            Self {
                desired,
                containers,
                images: vec!["web:v1", "web:v2"],
                history: Vec::new(),
            }
        }

        fn plan(&self) -> Vec<Action> {
            self.plan_at(NOW)
        }

        fn plan_at(&self, now: i64) -> Vec<Action> {
            let images = self.images.iter().map(|s| s.to_string()).collect();
            let history = self
                .history
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            plan(
                &World {
                    desired: &self.desired,
                    containers: &self.containers,
                    images: &images,
                    history: &history,
                    stop_grace: GRACE,
                },
                now,
            )
        }
    }

    fn stop(id: &str) -> Action {
        Action::Stop {
            container: id.into(),
            grace: GRACE,
        }
    }

    fn rm(id: &str) -> Action {
        Action::Remove {
            container: id.into(),
        }
    }

    #[test]
    fn a_new_allocation_is_created_and_its_missing_image_pulled_first() {
        let a = alloc("a1", "web:v3");
        let hash = hash_of(&a);
        assert_eq!(
            Case::new(vec![a], vec![]).plan(),
            vec![
                Action::Pull {
                    allocation: "a1".into(),
                    image: "web:v3".into()
                },
                Action::Create {
                    allocation: "a1".into(),
                    spec_hash: hash
                },
            ]
        );
    }

    #[test]
    fn a_present_image_is_not_pulled() {
        let a = alloc("a1", "web:v1");
        let hash = hash_of(&a);
        assert_eq!(
            Case::new(vec![a], vec![]).plan(),
            vec![Action::Create {
                allocation: "a1".into(),
                spec_hash: hash
            }]
        );
    }

    #[test]
    fn a_running_container_with_the_same_spec_is_adopted_untouched() {
        let a = alloc("a1", "web:v1");
        let c = container("c1", "a1", &hash_of(&a), RunState::Running);
        assert_eq!(Case::new(vec![a], vec![c]).plan(), vec![]);
    }

    #[test]
    fn a_changed_spec_recreates_the_container() {
        let old = alloc("a1", "web:v1");
        let new = alloc("a1", "web:v3");
        let c = container("c1", "a1", &hash_of(&old), RunState::Running);
        assert_eq!(
            Case::new(vec![new.clone()], vec![c]).plan(),
            vec![
                Action::Pull {
                    allocation: "a1".into(),
                    image: "web:v3".into()
                },
                Action::Recreate {
                    allocation: "a1".into(),
                    container: "c1".into(),
                    spec_hash: hash_of(&new),
                    grace: GRACE,
                },
            ]
        );
    }

    #[test]
    fn health_checks_and_restart_policies_are_not_part_of_the_hash() {
        let a = alloc("a1", "web:v1");
        let mut b = with_policy(a.clone(), Policy::Never, 0);
        b.container.as_mut().unwrap().health_check = Some(HealthCheckSpec {
            probe: Some(health_check_spec::Probe::Http(HttpProbe {
                path: "/version".into(),
                port: 8080,
                expected_status: 200,
            })),
            ..HealthCheckSpec::default()
        });
        assert_eq!(hash_of(&a), hash_of(&b));
    }

    #[test]
    fn the_route_address_is_the_published_port_on_the_advertise_address() {
        let advertise: IpAddr = "10.0.0.7".parse().unwrap();
        let mut spec = spec("web:v1");
        let published = BTreeMap::from([
            (8080u16, "0.0.0.0:49153".parse::<SocketAddr>().unwrap()),
            (9090u16, "192.168.1.4:19090".parse::<SocketAddr>().unwrap()),
        ]);
        assert_eq!(route_address(&spec, &published, advertise), "");
        spec.route_port = 8080;
        assert_eq!(
            route_address(&spec, &published, advertise),
            "10.0.0.7:49153"
        );
        spec.route_port = 9090;
        assert_eq!(
            route_address(&spec, &published, advertise),
            "192.168.1.4:19090"
        );
        spec.route_port = 7070;
        assert_eq!(route_address(&spec, &published, advertise), "");
        spec.route_port = 70_000;
        assert_eq!(route_address(&spec, &published, advertise), "");
    }

    #[test]
    fn a_route_port_is_published_unless_ports_publish_it() {
        let mut spec = spec("web:v1");
        assert_eq!(unpublished_route_port(&spec), None);
        spec.route_port = 8080;
        assert_eq!(unpublished_route_port(&spec), Some(8080));
        spec.ports.push(PortSpec {
            container_port: 8080,
            host_port: 0,
            host_ip: String::new(),
            protocol: String::new(),
        });
        assert_eq!(unpublished_route_port(&spec), Some(8080));
        spec.ports.push(PortSpec {
            container_port: 8080,
            host_port: 18080,
            host_ip: String::new(),
            protocol: "udp".into(),
        });
        assert_eq!(unpublished_route_port(&spec), Some(8080));
        spec.ports[1].protocol = "tcp".into();
        assert_eq!(unpublished_route_port(&spec), None);
    }

    #[test]
    fn the_hash_sees_every_docker_field_and_ignores_order() {
        let base = spec("web:v1");
        let hash = spec_hash(&base);
        let port = |n| PortSpec {
            container_port: n,
            host_port: n,
            host_ip: "127.0.0.1".into(),
            protocol: String::new(),
        };
        let volume = |s: &str| VolumeSpec {
            source: s.into(),
            bind: false,
            target: format!("/{s}"),
            read_only: false,
        };
        let variants: Vec<fn(&mut ContainerSpec)> = vec![
            |s| s.image = "web:v2".into(),
            |s| s.command = vec!["sh".into()],
            |s| {
                s.env.insert("A".into(), "1".into());
            },
            |s| s.cpu_millis = 500,
            |s| s.memory_bytes = 32 << 20,
            |s| s.memory_swap_bytes = 128 << 20,
            |s| s.pids_limit = 10,
            |s| {
                s.secret_env.push(argosy_proto::v1::SecretEnv {
                    variable: "DB".into(),
                    secret: Some(argosy_proto::v1::SecretRef {
                        name: "crm/db".into(),
                        version: 4,
                    }),
                })
            },
            |s| s.route_port = 8080,
            |s| {
                s.secret_files.push(argosy_proto::v1::SecretFile {
                    secret: Some(argosy_proto::v1::SecretRef {
                        name: "crm/db".into(),
                        version: 4,
                    }),
                    file: "db".into(),
                    mode: 0o400,
                    ..Default::default()
                })
            },
        ];
        for (i, change) in variants.into_iter().enumerate() {
            let mut changed = base.clone();
            change(&mut changed);
            assert_ne!(spec_hash(&changed), hash, "variant {i}");
        }
        let mut a = base.clone();
        a.ports = vec![port(1), port(2)];
        a.volumes = vec![volume("x"), volume("y")];
        a.env.insert("A".into(), "1".into());
        a.env.insert("B".into(), "2".into());
        let mut b = base.clone();
        b.ports = vec![port(2), port(1)];
        b.volumes = vec![volume("y"), volume("x")];
        b.env.insert("B".into(), "2".into());
        b.env.insert("A".into(), "1".into());
        assert_eq!(spec_hash(&a), spec_hash(&b));
        assert_ne!(spec_hash(&a), hash);
        // A new version of a secret is a new container.
        let with_secret = |version| {
            let mut s = base.clone();
            s.secret_env.push(argosy_proto::v1::SecretEnv {
                variable: "DB".into(),
                secret: Some(argosy_proto::v1::SecretRef {
                    name: "crm/db".into(),
                    version,
                }),
            });
            spec_hash(&s)
        };
        assert_ne!(with_secret(4), with_secret(5));
        // Specs without secrets hash as they did before secrets existed, so
        // upgrading the agent recreates nothing.
        assert_eq!(hash, "46765541a5b3776b9515de47");
        // The label value is short hex.
        assert_eq!(hash.len(), 24);
        assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn a_container_of_an_allocation_no_longer_desired_is_stopped_and_removed() {
        let a = alloc("a1", "web:v1");
        let running = container("c1", "gone", "h", RunState::Running);
        let exited = container("c2", "gone2", "h", RunState::Exited);
        let unlabelled = {
            let mut c = container("c3", "x", "h", RunState::Created);
            c.labels.remove(LABEL_ALLOCATION);
            c
        };
        let kept = container("c4", "a1", &hash_of(&a), RunState::Running);
        assert_eq!(
            Case::new(vec![a], vec![running, exited, unlabelled, kept]).plan(),
            vec![rm("c3"), stop("c1"), rm("c1"), rm("c2")]
        );
    }

    #[test]
    fn a_drained_allocation_is_stopped_and_removed() {
        let mut a = alloc("a1", "web:v1");
        a.run = false;
        let c = container("c1", "a1", &hash_of(&a), RunState::Running);
        assert_eq!(
            Case::new(vec![a], vec![c]).plan(),
            vec![stop("c1"), rm("c1")]
        );
    }

    #[test]
    fn unmanaged_containers_are_never_touched() {
        let mut foreign = container("f1", "a1", "h", RunState::Running);
        foreign.labels.insert(LABEL_MANAGED.into(), "false".into());
        let mut plain = container("f2", "a1", "h", RunState::Exited);
        plain.labels.clear();
        // Even with nothing desired at all.
        assert_eq!(
            Case::new(vec![], vec![foreign.clone(), plain.clone()]).plan(),
            vec![]
        );
        // And they do not count as the allocation's container.
        let a = alloc("a1", "web:v1");
        let hash = hash_of(&a);
        assert_eq!(
            Case::new(vec![a], vec![foreign, plain]).plan(),
            vec![Action::Create {
                allocation: "a1".into(),
                spec_hash: hash
            }]
        );
    }

    #[test]
    fn of_two_containers_for_one_allocation_the_newest_healthy_one_stays() {
        let a = alloc("a1", "web:v1");
        let hash = hash_of(&a);
        let mut older = container("old", "a1", &hash, RunState::Running);
        older.created_ms = NOW - 100_000;
        let mut newer = container("new", "a1", &hash, RunState::Running);
        newer.created_ms = NOW - 10_000;
        assert_eq!(
            Case::new(vec![a.clone()], vec![older.clone(), newer.clone()]).plan(),
            vec![stop("old"), rm("old")]
        );
        // Health beats age.
        newer.healthy = false;
        assert_eq!(
            Case::new(vec![a.clone()], vec![older.clone(), newer.clone()]).plan(),
            vec![stop("new"), rm("new")]
        );
        // Running beats healthy-but-exited; an up-to-date spec beats all.
        let mut stale = container("stale", "a1", "other", RunState::Running);
        stale.created_ms = NOW;
        let exited = container("exited", "a1", &hash, RunState::Exited);
        assert_eq!(
            Case::new(vec![a], vec![exited, stale]).plan()[..2],
            [stop("stale"), rm("stale")]
        );
    }

    #[test]
    fn a_created_container_is_started() {
        let a = alloc("a1", "web:v1");
        let c = container("c1", "a1", &hash_of(&a), RunState::Created);
        assert_eq!(
            Case::new(vec![a], vec![c]).plan(),
            vec![Action::Start {
                allocation: "a1".into(),
                container: "c1".into()
            }]
        );
    }

    #[test]
    fn a_dead_container_is_recreated() {
        let a = alloc("a1", "web:v1");
        let c = container("c1", "a1", &hash_of(&a), RunState::Dead);
        assert_eq!(
            Case::new(vec![a.clone()], vec![c]).plan(),
            vec![Action::Recreate {
                allocation: "a1".into(),
                container: "c1".into(),
                spec_hash: hash_of(&a),
                grace: GRACE
            }]
        );
    }

    #[test]
    fn busy_containers_are_left_alone() {
        let a = alloc("a1", "web:v1");
        for state in [
            RunState::Paused,
            RunState::Restarting,
            RunState::Removing,
            RunState::Unknown,
        ] {
            let c = container("c1", "a1", &hash_of(&a), state);
            assert_eq!(
                Case::new(vec![a.clone()], vec![c]).plan(),
                vec![],
                "{state:?}"
            );
        }
    }

    /// (policy, max_retries, exit code, oom, restarts so far) → restarted?
    #[test]
    fn restart_policies() {
        let table = [
            (Policy::Unspecified, 0, 0, false, 0, true),
            (Policy::Always, 0, 0, false, 99, true),
            (Policy::Always, 1, 1, false, 5, true),
            (Policy::Never, 0, 1, false, 0, false),
            (Policy::Never, 0, 137, true, 0, false),
            (Policy::OnFailure, 0, 0, false, 0, false),
            (Policy::OnFailure, 0, 1, false, 1000, true),
            (Policy::OnFailure, 0, 0, true, 0, true),
            (Policy::OnFailure, 3, 1, false, 2, true),
            (Policy::OnFailure, 3, 1, false, 3, false),
        ];
        for (policy, max, code, oom, restarts, expected) in table {
            let a = with_policy(alloc("a1", "web:v1"), policy, max);
            let mut c = container("c1", "a1", &hash_of(&a), RunState::Exited);
            c.exit_code = code;
            c.oom_killed = oom;
            let mut case = Case::new(vec![a], vec![c]);
            case.history = vec![(
                "a1",
                History {
                    restarts,
                    ..History::default()
                },
            )];
            let restarted = matches!(case.plan()[..], [Action::Restart { .. }]);
            assert_eq!(
                restarted, expected,
                "{policy:?} max {max} code {code} oom {oom} restarts {restarts}"
            );
        }
    }

    /// (streak, run length, ms since exit) → (wait ms, new streak)
    #[test]
    fn restarts_back_off_exponentially_and_reset_after_a_long_run() {
        let minute = 60_000;
        let table = [
            (0, 5_000, 0, 1_000, 1),
            (0, 5_000, 400, 600, 1),
            (0, 5_000, 5_000, 0, 1),
            (1, 5_000, 0, 2_000, 2),
            (2, 5_000, 1_000, 3_000, 3),
            (5, 5_000, 0, 32_000, 6),
            (8, 5_000, 0, 256_000, 9),
            (9, 5_000, 0, 300_000, 10),
            (40, 5_000, 0, 300_000, 41),
            // Ten minutes of running resets the streak.
            (9, 10 * minute, 0, 1_000, 1),
            (9, 10 * minute - 1, 0, 300_000, 10),
        ];
        for (streak, ran, since, wait, next) in table {
            let a = alloc("a1", "web:v1");
            let mut c = container("c1", "a1", &hash_of(&a), RunState::Exited);
            c.exit_code = 137;
            c.oom_killed = true;
            c.finished_ms = NOW - since;
            c.started_ms = c.finished_ms - ran;
            let mut case = Case::new(vec![a], vec![c]);
            case.history = vec![(
                "a1",
                History {
                    restarts: 3,
                    streak,
                    ..History::default()
                },
            )];
            assert_eq!(
                case.plan(),
                vec![Action::Restart {
                    allocation: "a1".into(),
                    container: "c1".into(),
                    after: Duration::from_millis(wait),
                    streak: next,
                    exit: Exit {
                        code: 137,
                        oom_killed: true,
                        at_ms: NOW - since
                    },
                }],
                "streak {streak} ran {ran} since {since}"
            );
        }
    }

    #[test]
    fn backoff_doubles_from_one_second_to_five_minutes() {
        let secs: Vec<u64> = (0..12).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff(u32::MAX), BACKOFF_CAP);
    }

    #[test]
    fn a_failed_attempt_waits_out_its_backoff_then_retries() {
        let a = alloc("a1", "web:nope");
        let hash = hash_of(&a);
        let history = |attempts, at_ms, spec_hash: &str| History {
            failure: Some(Failure {
                message: "image web:nope could not be pulled".into(),
                at_ms,
                attempts,
                spec_hash: spec_hash.into(),
            }),
            ..History::default()
        };
        let mut case = Case::new(vec![a], vec![]);
        // 3 failures: 4 s backoff, 1 s ago.
        case.history = vec![("a1", history(3, NOW - 1_000, &hash))];
        assert_eq!(
            case.plan(),
            vec![Action::Wait {
                allocation: "a1".into(),
                after: Duration::from_secs(3)
            }]
        );
        // Due: pull and create again.
        assert_eq!(case.plan_at(NOW + 3_000).len(), 2);
        // A failure of an older spec does not hold back a new one.
        case.history = vec![("a1", history(3, NOW - 1_000, "older"))];
        assert_eq!(case.plan().len(), 2);
        // A created container whose start failed (port in use) waits too.
        let c = container("c1", "a1", &hash, RunState::Created);
        case.containers = vec![c];
        case.history = vec![("a1", history(1, NOW - 200, &hash))];
        assert_eq!(
            case.plan(),
            vec![Action::Wait {
                allocation: "a1".into(),
                after: Duration::from_millis(800)
            }]
        );
        assert_eq!(
            case.plan_at(NOW + 800),
            vec![Action::Start {
                allocation: "a1".into(),
                container: "c1".into()
            }]
        );
    }

    #[test]
    fn an_allocation_without_a_spec_fails_and_touches_nothing() {
        let mut a = alloc("a1", "web:v1");
        let c = container("c1", "a1", &hash_of(&a), RunState::Running);
        a.container = None;
        assert_eq!(Case::new(vec![a.clone()], vec![c.clone()]).plan(), vec![]);
        let s = status(&a, Some(&c), None, None, false);
        assert_eq!(s.state(), State::Failed);
        assert!(s.message.contains("no container spec"), "{}", s.message);
    }

    #[test]
    fn duplicate_allocation_ids_create_one_container() {
        let a = alloc("a1", "web:v1");
        assert_eq!(Case::new(vec![a.clone(), a], vec![]).plan().len(), 1);
    }

    #[test]
    fn wake_after() {
        let wait = Action::Wait {
            allocation: "a".into(),
            after: Duration::from_secs(2),
        };
        assert_eq!(wait.wake_after(), Some(Duration::from_secs(2)));
        assert_eq!(rm("c").wake_after(), None);
        assert_eq!(wait.allocation(), Some("a"));
        assert_eq!(stop("c").allocation(), None);
    }

    fn state_of(s: &AllocationStatus) -> (State, Health) {
        (s.state(), s.health())
    }

    #[test]
    fn statuses() {
        let plain = alloc("a1", "web:v1");
        let hash = hash_of(&plain);
        let mut checked = plain.clone();
        checked.container.as_mut().unwrap().health_check = Some(HealthCheckSpec {
            probe: Some(health_check_spec::Probe::Tcp(Default::default())),
            ..HealthCheckSpec::default()
        });
        let running = container("c1", "a1", &hash, RunState::Running);
        let healthy = HealthView {
            health: Health::Healthy,
            healthy_since_ms: NOW - 5,
        };

        let s = status(&plain, None, None, None, false);
        assert_eq!(state_of(&s), (State::Pending, Health::Starting));
        let s = status(&plain, None, None, None, true);
        assert_eq!(state_of(&s), (State::Pulling, Health::Starting));
        let s = status(&plain, Some(&running), None, None, false);
        assert_eq!(state_of(&s), (State::Running, Health::None));
        assert_eq!(s.healthy_since_ms, running.started_ms);
        assert_eq!(s.container_id, "c1");
        let s = status(&checked, Some(&running), None, None, false);
        assert_eq!(state_of(&s), (State::Running, Health::Starting));
        let s = status(&checked, Some(&running), Some(healthy), None, false);
        assert_eq!(state_of(&s), (State::Running, Health::Healthy));
        assert_eq!(s.healthy_since_ms, NOW - 5);
        let created = container("c1", "a1", &hash, RunState::Created);
        let s = status(&plain, Some(&created), None, None, false);
        assert_eq!(state_of(&s), (State::Starting, Health::Starting));

        let mut drained = plain.clone();
        drained.run = false;
        let s = status(&drained, Some(&running), None, None, false);
        assert_eq!(s.state(), State::Stopped);
    }

    #[test]
    fn a_stopping_allocation_drains_for_its_drain_time_when_running() {
        let mut stopping = alloc("a1", "web:v1");
        stopping.run = false;
        stopping.drain_ms = 2_000;
        let mut not_running = alloc("a2", "web:v1");
        not_running.run = false;
        not_running.drain_ms = 2_000;
        let mut no_drain = alloc("a3", "web:v1");
        no_drain.run = false;
        let kept = alloc("a4", "web:v1");
        let desired = vec![stopping, not_running, no_drain, kept];
        let running = BTreeSet::from(["a1", "a3", "a4"]);
        let mut drains = BTreeMap::new();
        track_drains(&mut drains, &desired, &running, NOW);
        // Only the running allocation with a drain time drains.
        assert_eq!(drains, BTreeMap::from([("a1".to_owned(), NOW + 2_000)]));
        // Seen again later: the deadline does not move.
        track_drains(&mut drains, &desired, &running, NOW + 1_500);
        assert_eq!(drains["a1"], NOW + 2_000);

        let (view, next) = draining_view(&desired, &drains, NOW + 500);
        let runs: Vec<bool> = view.iter().map(|a| a.run).collect();
        assert_eq!(runs, [true, false, false, true]);
        assert_eq!(next, Some(Duration::from_millis(1_500)));
        // While it drains the planner keeps its container; after, it stops.
        let hash = hash_of(&desired[0]);
        let container_a1 = container("c1", "a1", &hash, RunState::Running);
        let during = plan(
            &World {
                desired: &view,
                containers: std::slice::from_ref(&container_a1),
                images: &BTreeSet::from(["web:v1".to_owned()]),
                history: &BTreeMap::new(),
                stop_grace: Duration::from_secs(10),
            },
            NOW + 500,
        );
        assert!(
            !during
                .iter()
                .any(|a| matches!(a, Action::Stop { .. } | Action::Remove { .. })),
            "{during:?}"
        );
        let (after, next) = draining_view(&desired, &drains, NOW + 2_000);
        assert!(!after[0].run);
        assert_eq!(next, None);
        let stopped = plan(
            &World {
                desired: &after,
                containers: std::slice::from_ref(&container_a1),
                images: &BTreeSet::from(["web:v1".to_owned()]),
                history: &BTreeMap::new(),
                stop_grace: Duration::from_secs(10),
            },
            NOW + 2_000,
        );
        assert!(stopped.contains(&Action::Remove {
            container: "c1".to_owned()
        }));

        // Told to run again, or gone: forgotten.
        let mut again = desired.clone();
        again[0].run = true;
        track_drains(&mut drains, &again, &running, NOW + 100);
        assert!(drains.is_empty());
    }

    #[test]
    fn failures_are_reported_with_their_message() {
        let a = alloc("a1", "web:nope");
        let hash = hash_of(&a);
        let history = History {
            failure: Some(Failure {
                message: "image web:nope could not be pulled: not found".into(),
                at_ms: NOW - 500,
                attempts: 1,
                spec_hash: hash.clone(),
            }),
            ..History::default()
        };
        let s = status(&a, None, None, Some(&history), false);
        assert_eq!(state_of(&s), (State::Failed, Health::Unhealthy));
        assert_eq!(
            s.message,
            "image web:nope could not be pulled: not found; retrying 1 s after the failure"
        );
        // A running container outranks an old failure.
        let running = container("c1", "a1", &hash, RunState::Running);
        let s = status(&a, Some(&running), None, Some(&history), false);
        assert_eq!(s.state(), State::Running);
        assert_eq!(s.message, "");
        // One of an older spec runs on, and says why.
        let old = container("c1", "a1", "older", RunState::Running);
        let s = status(&a, Some(&old), None, Some(&history), false);
        assert_eq!(s.state(), State::Running);
        assert_eq!(
            s.message,
            "running the previous spec: image web:nope could not be pulled: not found"
        );
    }

    #[test]
    fn exits_are_reported_per_restart_policy() {
        let hash = hash_of(&alloc("a1", "web:v1"));
        let mut oom = container("c1", "a1", &hash, RunState::Exited);
        oom.exit_code = 137;
        oom.oom_killed = true;
        let always = with_policy(alloc("a1", "web:v1"), Policy::Always, 0);
        let s = status(&always, Some(&oom), None, None, false);
        assert_eq!(state_of(&s), (State::Exited, Health::Unhealthy));
        assert!(s.oom_killed);
        assert_eq!(s.exit_code, 137);
        assert_eq!(
            s.message,
            "exited with code 137 (OOM killed: it used more than its memory limit); restarting 1 s after the exit"
        );
        let never = with_policy(alloc("a1", "web:v1"), Policy::Never, 0);
        let s = status(&never, Some(&oom), None, None, false);
        assert_eq!(s.state(), State::Failed);
        assert!(
            s.message.ends_with("the restart policy is never"),
            "{}",
            s.message
        );
        let capped = with_policy(alloc("a1", "web:v1"), Policy::OnFailure, 2);
        let history = History {
            restarts: 2,
            ..History::default()
        };
        let s = status(&capped, Some(&oom), None, Some(&history), false);
        assert_eq!(s.state(), State::Failed);
        assert!(
            s.message.ends_with("gave up after 2 restarts"),
            "{}",
            s.message
        );
        let clean = container("c1", "a1", &hash, RunState::Exited);
        let s = status(&never, Some(&clean), None, None, false);
        assert_eq!(s.state(), State::Exited);
        assert_eq!(s.message, "exited with code 0");
    }

    #[test]
    fn the_last_exit_stays_visible_after_a_restart() {
        let a = alloc("a1", "web:v1");
        let running = container("c1", "a1", &hash_of(&a), RunState::Running);
        let history = History {
            restarts: 2,
            streak: 2,
            last_exit: Some(Exit {
                code: 137,
                oom_killed: true,
                at_ms: NOW - 1_000,
            }),
            failure: None,
        };
        let s = status(&a, Some(&running), None, Some(&history), false);
        assert_eq!(s.state(), State::Running);
        assert_eq!(s.restarts, 2);
        assert!(s.oom_killed);
        assert_eq!(s.exit_code, 137);
        assert!(
            s.message
                .starts_with("restarted 2 times after exited with code 137")
        );
    }

    #[test]
    fn run_states_parse_from_docker_words() {
        assert_eq!(RunState::from_docker("running"), RunState::Running);
        assert_eq!(RunState::from_docker("exited"), RunState::Exited);
        assert_eq!(RunState::from_docker("created"), RunState::Created);
        assert_eq!(RunState::from_docker("dead"), RunState::Dead);
        assert_eq!(RunState::from_docker("what"), RunState::Unknown);
        assert!(RunState::Restarting.is_alive());
        assert!(!RunState::Exited.is_alive());
    }

    /// The boundary this module promises: decisions only, no runtime, no
    /// engine client, no clock of its own.
    #[test]
    fn the_plan_does_no_io() {
        crate::purity::assert_avoids(
            "reconcile.rs",
            include_str!("reconcile.rs"),
            &[
                concat!("tok", "io"),
                concat!("boll", "ard"),
                concat!("std::", "fs"),
                concat!("std::", "net"),
                concat!("SystemTime", "::now"),
                concat!("Instant", "::now"),
                concat!("crate::", "docker"),
            ],
        );
    }
}
