//! Deployment state machines: rolling, blue-green and canary rollouts, with
//! automatic revert, rollback, promotion, pause and cancel. Pure: the
//! deployment controller calls [`step`] with the stored [`Deployment`], what
//! the agents report ([`Observed`]), one [`Event`] and the time, and gets
//! back the next [`Deployment`] plus the [`Effect`]s to apply, in order, and
//! when to call again ([`Step::requeue_after`]). No clock, no I/O.
//!
//! # How the controller applies a step
//! - Persist [`Step::deployment`] and apply [`Step::effects`] in order
//!   (ideally in one store transaction), **before** calling [`step`] again
//!   for the same deployment: the machine is level-triggered — it compares
//!   what it wants with what [`Observed`] shows — so an effect that was not
//!   reflected in the next `Observed` would be asked for again.
//! - [`Effect::StartAllocations`]: create `count` allocations of the
//!   revision (they appear in `Observed` as [`Health::Pending`] with
//!   `created_at_ms` = now) and hand them to the scheduler.
//! - [`Effect::StopAllocations`]: mark them to drain then stop (they appear
//!   with `stopping: true` and no longer count).
//! - [`Effect::SwitchTraffic`]: point the service's routes at the revision.
//! - [`Effect::RevertTo`]: the service's current revision goes back to it.
//! - [`Effect::MarkHealthy`], [`Effect::SetPhase`], [`Effect::Record`]:
//!   store for the dashboard, `deployments watch` and the history.
//! - Call [`step`] with [`Event::AllocationUpdated`] when an agent reports,
//!   with [`Event::Tick`] after `requeue_after`, and with commands from
//!   people; a command not valid in the phase is [`Rejected`] and changes
//!   nothing.
//!
//! # Rules
//! "Healthy" for the revision being rolled out means [`Health::Healthy`]
//! for at least `min_healthy_time`; for the revision being replaced, just
//! [`Health::Healthy`]. A new allocation fails the deployment when it is
//! [`Health::Failed`], or when it is still — or again — not healthy once
//! `healthy_deadline` has passed since its creation; a rolling deployment also
//! fails when no new allocation became healthy for `progress_deadline`.
//! Allocations of the target revision that failed before the deployment
//! (or the revert) began are history and do not count. "Old" means every
//! allocation of any other revision, so leftovers of an earlier failed
//! deployment are replaced too.
//! - Rolling (Kubernetes' surge/unavailable arithmetic): at most
//!   `replicas + max_surge` live allocations; a healthy old allocation is
//!   stopped only while healthy ones stay ≥ `replicas − max_unavailable`;
//!   unhealthy old ones may go at any time. With `max_unavailable = 0` old
//!   ones go only as new ones have been healthy for `min_healthy_time`.
//! - Blue-green: the whole new set starts; nothing old stops before all new
//!   are healthy and traffic has switched (`auto_promote` or `Promote`);
//!   the old set is kept `keep_old_for` for an instant `Rollback` (a new
//!   set failing in that window switches traffic back the same way).
//! - Canary: `canaries` new allocations next to the full old set, then each
//!   promotion raises the new share to the next step (rounded up), starting
//!   new ones first and stopping old ones only as new ones are healthy.
//!   With canary analysis ([`Deployment::with_canary_analysis`]) a step
//!   whose allocations are healthy is promoted only after
//!   [`Effect::AnalyzeCanary`] is answered with a promote verdict
//!   ([`Event::CanaryVerdict`]); `wait` asks again after
//!   [`ANALYSIS_RETRY_MS`], `rollback` fails the deployment.
//! - Failure with `auto_revert` (and a previous revision): rolling and
//!   canary go `Reverting` — a rolling deployment back to the old revision
//!   — then `Reverted`; blue-green stops the new set at once (`Reverted`).
//!   Without: `Failed`, new allocations that are not healthy are stopped
//!   (blue-green: the whole new set), old ones keep running.
//! - `Rollback` is a revert on request; `Cancel` stops the new revision at
//!   once, starts old allocations back up to `replicas`, and ends
//!   `Cancelled`. `Pause` freezes every effect until `Resume` (which
//!   restarts the progress deadline; healthy deadlines keep counting from
//!   each allocation's creation). `AwaitingPromotion` waits for a person as
//!   long as it takes; if the set it waits on stops being healthy it goes
//!   back to `Running`.

use super::model::UpdateStrategy;
pub use super::scheduler::{AllocationId, RevisionId};
use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

/// Where a deployment stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Phase {
    /// Waiting for the pre-deploy backup (`pre_deploy_backup: POLICY`) to
    /// be taken and verified; nothing is started until it is.
    BackingUp {
        policy: String,
    },
    Running,
    Paused,
    AwaitingPromotion,
    Succeeded,
    Failed {
        reason: String,
    },
    Reverting,
    Reverted,
    Cancelled,
}

impl Phase {
    /// No further effects will come from this deployment.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Phase::Succeeded | Phase::Failed { .. } | Phase::Reverted | Phase::Cancelled
        )
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::BackingUp { policy } => {
                write!(f, "backing up (pre-deploy backup {policy})")
            }
            Phase::Running => f.write_str("running"),
            Phase::Paused => f.write_str("paused"),
            Phase::AwaitingPromotion => f.write_str("awaiting promotion"),
            Phase::Succeeded => f.write_str("succeeded"),
            Phase::Failed { reason } => write!(f, "failed: {reason}"),
            Phase::Reverting => f.write_str("reverting"),
            Phase::Reverted => f.write_str("reverted"),
            Phase::Cancelled => f.write_str("cancelled"),
        }
    }
}

/// Strategy-specific progress, persisted with the deployment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Progress {
    Rolling,
    BlueGreen {
        /// `Promote` was received (the switch waits for a healthy set).
        promoted: bool,
        /// When traffic moved to the new set.
        switched_at_ms: Option<i64>,
    },
    Canary {
        /// 0: the canaries; `k ≥ 1`: the k-th promotion step.
        stage: usize,
    },
}

/// One deployment of a service from `old_revision` to `new_revision`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Deployment {
    pub id: String,
    pub service: String,
    pub strategy: UpdateStrategy,
    pub replicas: u32,
    /// `None` on a service's first deployment.
    pub old_revision: Option<RevisionId>,
    pub new_revision: RevisionId,
    pub phase: Phase,
    /// The phase `Resume` returns to.
    pub paused_from: Option<Phase>,
    pub progress: Progress,
    pub started_at_ms: i64,
    /// Last time an allocation became healthy, a stage advanced, or the
    /// deployment was resumed; the progress deadline counts from here.
    pub last_progress_ms: i64,
    /// When `Reverting` began, and why.
    pub revert_started_ms: Option<i64>,
    pub revert_reason: Option<String>,
    /// Allocations already reported with [`Effect::MarkHealthy`].
    pub marked_healthy: BTreeSet<AllocationId>,
    /// Canary analysis by `rollout.analyze` policies.
    #[serde(default)]
    pub canary_analysis: CanaryAnalysis,
}

/// How long a canary waits after a `wait` verdict before asking again.
pub const ANALYSIS_RETRY_MS: i64 = 10_000;

/// Canary analysis: before each promotion of a canary deployment that
/// requires it, the machine asks ([`Effect::AnalyzeCanary`]) and moves on
/// only on [`CanaryVerdict::Promote`] for that step.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CanaryAnalysis {
    /// Set when `rollout.analyze` policies were enabled as the deployment
    /// started ([`Deployment::with_canary_analysis`]).
    pub required: bool,
    /// The step a promote verdict was given for.
    pub passed_stage: Option<usize>,
    /// The step last asked about, and when to ask again.
    pub asked_stage: Option<usize>,
    pub ask_again_at_ms: i64,
    /// The last wait reason recorded (repeats are not recorded again).
    pub last_wait: Option<String>,
}

/// What canary analysis said about a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CanaryVerdict {
    Promote(String),
    Wait(String),
    Rollback(String),
}

impl Deployment {
    /// A deployment in `Running`; the first [`step`] starts allocations.
    pub fn new(
        id: impl Into<String>,
        service: impl Into<String>,
        strategy: UpdateStrategy,
        replicas: u32,
        old_revision: Option<RevisionId>,
        new_revision: impl Into<RevisionId>,
        now_ms: i64,
    ) -> Self {
        let progress = match strategy {
            UpdateStrategy::Rolling(_) => Progress::Rolling,
            UpdateStrategy::BlueGreen(_) => Progress::BlueGreen {
                promoted: false,
                switched_at_ms: None,
            },
            UpdateStrategy::Canary(_) => Progress::Canary { stage: 0 },
        };
        Self {
            id: id.into(),
            service: service.into(),
            strategy,
            replicas,
            old_revision,
            new_revision: new_revision.into(),
            phase: Phase::Running,
            paused_from: None,
            progress,
            started_at_ms: now_ms,
            last_progress_ms: now_ms,
            revert_started_ms: None,
            revert_reason: None,
            marked_healthy: BTreeSet::new(),
            canary_analysis: CanaryAnalysis::default(),
        }
    }

    /// The same deployment, asking canary analysis before each promotion
    /// (no effect on other strategies).
    pub fn with_canary_analysis(mut self) -> Self {
        self.canary_analysis.required = matches!(self.strategy, UpdateStrategy::Canary(_));
        self
    }

    /// The same deployment, first waiting for a verified backup of
    /// `policy` ([`Event::BackupDone`]) before anything starts.
    pub fn after_backup(mut self, policy: impl Into<String>) -> Self {
        self.phase = Phase::BackingUp {
            policy: policy.into(),
        };
        self
    }
}

/// An allocation's health as its agent reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not placed or not started yet.
    Pending,
    Starting,
    Healthy {
        since_ms: i64,
    },
    Unhealthy,
    /// Gave up (exited past its restart policy, image missing, …).
    Failed,
    Stopped,
}

/// One allocation of the service, any revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedAllocation {
    pub id: AllocationId,
    pub revision: RevisionId,
    pub health: Health,
    pub created_at_ms: i64,
    /// Told to drain and stop (it no longer counts).
    pub stopping: bool,
    /// What the agent said went wrong, quoted in failure reasons.
    pub message: Option<String>,
}

impl ObservedAllocation {
    /// Meant to run and not finished: counts toward the live totals.
    fn live(&self) -> bool {
        !self.stopping && !matches!(self.health, Health::Failed | Health::Stopped)
    }

    fn healthy(&self) -> bool {
        matches!(self.health, Health::Healthy { .. })
    }

    fn healthy_for(&self, min_ms: i64, now_ms: i64) -> bool {
        matches!(self.health, Health::Healthy { since_ms } if now_ms - since_ms >= min_ms)
    }
}

/// Every allocation of the service the store knows, with reported health.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    pub allocations: Vec<ObservedAllocation>,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Time passed (a requeue fired, or the controller's periodic sweep).
    Tick,
    /// An agent reported a change (already visible in [`Observed`]).
    AllocationUpdated {
        id: AllocationId,
    },
    Promote,
    Pause,
    Resume,
    Cancel,
    Rollback,
    /// Canary analysis answered [`Effect::AnalyzeCanary`] for `stage`.
    CanaryVerdict {
        stage: usize,
        verdict: CanaryVerdict,
    },
    /// The pre-deploy backup finished: `Ok` with what was verified, or
    /// `Err` with why it failed.
    BackupDone {
        result: Result<String, String>,
    },
}

/// What the controller has to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Create this many allocations of the revision and schedule them.
    StartAllocations {
        revision: RevisionId,
        count: u32,
    },
    /// Drain, then stop.
    StopAllocations {
        ids: Vec<AllocationId>,
    },
    /// These allocations have now been healthy for `min_healthy_time`.
    MarkHealthy {
        ids: Vec<AllocationId>,
    },
    /// Route the service's traffic to this revision (blue-green).
    SwitchTraffic {
        to: RevisionId,
    },
    /// The service's current revision goes back to this one.
    RevertTo {
        revision: RevisionId,
    },
    SetPhase(Phase),
    /// A line for the deployment's history and the audit log.
    Record(String),
    /// Ask the `rollout.analyze` policies about canary step `stage` (0: the
    /// canaries) and answer with [`Event::CanaryVerdict`].
    AnalyzeCanary {
        stage: usize,
    },
}

/// The outcome of one [`step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub deployment: Deployment,
    pub effects: Vec<Effect>,
    /// Call again with [`Event::Tick`] after this long even if nothing is
    /// reported (a healthy time or a deadline falls due). `None`: only
    /// events can move the deployment.
    pub requeue_after: Option<Duration>,
}

/// A command that does not apply to the deployment as it stands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("deployment {id} has already ended ({phase})")]
    Ended { id: String, phase: Phase },
    #[error("deployment {id} is not awaiting promotion (it is {phase})")]
    NotAwaitingPromotion { id: String, phase: Phase },
    #[error("deployment {id} is not waiting for a pre-deploy backup (it is {phase})")]
    NotBackingUp { id: String, phase: Phase },
    #[error("deployment {id} is already paused; resume it with `argosy deployments resume {id}`")]
    AlreadyPaused { id: String },
    #[error("deployment {id} is not paused (it is {phase})")]
    NotPaused { id: String, phase: Phase },
    #[error("deployment {id} is already reverting to the previous revision")]
    AlreadyReverting { id: String },
    #[error(
        "deployment {id} has no previous revision to roll back to (it is the service's first); stop the service instead"
    )]
    NoPreviousRevision { id: String },
}

/// Whether `event` applies to `deployment` now. [`step`] checks it first.
pub fn accepts(d: &Deployment, event: &Event) -> Result<(), Rejected> {
    let id = || d.id.clone();
    let ended = || {
        Err(Rejected::Ended {
            id: id(),
            phase: d.phase.clone(),
        })
    };
    match event {
        Event::Tick | Event::AllocationUpdated { .. } | Event::CanaryVerdict { .. } => Ok(()),
        _ if d.phase.is_terminal() => ended(),
        Event::BackupDone { .. } if !matches!(d.phase, Phase::BackingUp { .. }) => {
            Err(Rejected::NotBackingUp {
                id: id(),
                phase: d.phase.clone(),
            })
        }
        Event::Promote if d.phase != Phase::AwaitingPromotion => {
            Err(Rejected::NotAwaitingPromotion {
                id: id(),
                phase: d.phase.clone(),
            })
        }
        Event::Pause if d.phase == Phase::Paused => Err(Rejected::AlreadyPaused { id: id() }),
        Event::Resume if d.phase != Phase::Paused => Err(Rejected::NotPaused {
            id: id(),
            phase: d.phase.clone(),
        }),
        Event::Rollback
            if d.phase == Phase::Reverting || d.paused_from == Some(Phase::Reverting) =>
        {
            Err(Rejected::AlreadyReverting { id: id() })
        }
        Event::Rollback if d.old_revision.is_none() => {
            Err(Rejected::NoPreviousRevision { id: id() })
        }
        _ => Ok(()),
    }
}

/// Advances `deployment` by one event. See the module docs for how the
/// controller applies the result.
pub fn step(
    deployment: &Deployment,
    observed: &Observed,
    event: Event,
    now_ms: i64,
) -> Result<Step, Rejected> {
    accepts(deployment, &event)?;
    let mut m = Machine {
        d: deployment.clone(),
        obs: observed,
        now: now_ms,
        effects: Vec::new(),
        wake: None,
    };
    match event {
        Event::Tick | Event::AllocationUpdated { .. } => m.evaluate(),
        Event::Pause => {
            m.d.paused_from = Some(m.d.phase.clone());
            m.set_phase(
                Phase::Paused,
                "paused: no allocations will be started or stopped until resumed",
            );
        }
        Event::Resume => {
            let to = m.d.paused_from.take().unwrap_or(Phase::Running);
            m.d.last_progress_ms = now_ms;
            m.set_phase(to, "resumed");
            m.evaluate();
        }
        Event::Promote => m.promote(),
        Event::Rollback => m.rollback(),
        Event::Cancel => m.cancel(),
        Event::CanaryVerdict { stage, verdict } => m.canary_verdict(stage, verdict),
        Event::BackupDone { result } => m.backup_done(result),
    }
    let idle = m.d.phase.is_terminal() || m.d.phase == Phase::Paused;
    let requeue_after = m.wake.filter(|_| !idle).map(|at| ms_duration(at - now_ms));
    Ok(Step {
        deployment: m.d,
        effects: m.effects,
        requeue_after,
    })
}

/// Durations and deadlines of the strategy, in milliseconds.
#[derive(Clone, Copy)]
struct Timing {
    min_healthy: i64,
    healthy_deadline: i64,
    progress_deadline: Option<i64>,
}

/// What `Machine::converge` aims for: `target_count` live allocations of the
/// target revision, at most `outgoing_keep` of the others, at most
/// `max_total` live at once, and healthy ones kept ≥ `min_healthy` when
/// stopping healthy outgoing ones.
#[derive(Clone, Copy, Debug)]
struct Goal {
    target_count: u32,
    outgoing_keep: u32,
    max_total: u32,
    min_healthy: u32,
}

struct Converged {
    stop: Vec<AllocationId>,
    start: u32,
    /// Target allocations healthy for `min_healthy_time`.
    target_healthy: u32,
    target_live: u32,
    outgoing_live_after: u32,
}

struct Machine<'a> {
    d: Deployment,
    obs: &'a Observed,
    now: i64,
    effects: Vec<Effect>,
    /// Earliest time something falls due without an event.
    wake: Option<i64>,
}

impl Machine<'_> {
    fn timing(&self) -> Timing {
        match &self.d.strategy {
            UpdateStrategy::Rolling(r) => Timing {
                min_healthy: ms(r.min_healthy_time),
                healthy_deadline: ms(r.healthy_deadline),
                progress_deadline: Some(ms(r.progress_deadline)),
            },
            UpdateStrategy::BlueGreen(b) => Timing {
                min_healthy: ms(b.min_healthy_time),
                healthy_deadline: ms(b.healthy_deadline),
                progress_deadline: None,
            },
            UpdateStrategy::Canary(c) => Timing {
                min_healthy: ms(c.min_healthy_time),
                healthy_deadline: ms(c.healthy_deadline),
                progress_deadline: None,
            },
        }
    }

    fn auto_revert(&self) -> bool {
        match &self.d.strategy {
            UpdateStrategy::Rolling(r) => r.auto_revert,
            UpdateStrategy::BlueGreen(b) => b.auto_revert,
            UpdateStrategy::Canary(c) => c.auto_revert,
        }
    }

    fn set_phase(&mut self, phase: Phase, record: impl Into<String>) {
        if self.d.phase != phase {
            self.d.phase = phase.clone();
            self.effects.push(Effect::SetPhase(phase));
        }
        self.record(record);
    }

    fn record(&mut self, text: impl Into<String>) {
        self.effects.push(Effect::Record(text.into()));
    }

    fn wake_at(&mut self, at: i64) {
        self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
    }

    fn of<'b>(&'b self, revision: &'b str) -> impl Iterator<Item = &'b ObservedAllocation> + 'b {
        self.obs
            .allocations
            .iter()
            .filter(move |a| a.revision == revision)
    }

    fn not_of<'b>(
        &'b self,
        revision: &'b str,
    ) -> impl Iterator<Item = &'b ObservedAllocation> + 'b {
        self.obs
            .allocations
            .iter()
            .filter(move |a| a.revision != revision)
    }

    fn live_count(&self, revision: &str) -> u32 {
        count(self.of(revision).filter(|a| a.live()))
    }

    fn evaluate(&mut self) {
        match self.d.phase {
            Phase::Running | Phase::AwaitingPromotion => match self.d.strategy.clone() {
                UpdateStrategy::Rolling(r) => {
                    let surge = if r.max_surge == 0 && r.max_unavailable == 0 {
                        1
                    } else {
                        r.max_surge
                    };
                    let goal = Goal {
                        target_count: self.d.replicas,
                        outgoing_keep: 0,
                        max_total: self.d.replicas.saturating_add(surge),
                        min_healthy: self.d.replicas.saturating_sub(r.max_unavailable),
                    };
                    self.forward_rolling(goal);
                }
                UpdateStrategy::BlueGreen(b) => self.blue_green(&b),
                UpdateStrategy::Canary(c) => self.canary(&c),
            },
            Phase::Reverting => self.reverting(),
            Phase::BackingUp { .. }
            | Phase::Paused
            | Phase::Succeeded
            | Phase::Failed { .. }
            | Phase::Reverted
            | Phase::Cancelled => {}
        }
    }

    /// Checks the target revision's allocations and reports a failure
    /// reason; records the healthy ones; schedules the next wake-up.
    fn check_target(&mut self, target: &str, since: i64, timing: Timing) -> Option<String> {
        let mut newly = Vec::new();
        let mut failure = None;
        let mut wakes = Vec::new();
        let mut candidates: Vec<&ObservedAllocation> = self.of(target).collect();
        candidates.sort_by(|a, b| a.id.cmp(&b.id));
        for a in candidates {
            if a.stopping || a.health == Health::Stopped {
                continue;
            }
            let detail = a
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            if a.health == Health::Failed {
                if a.created_at_ms >= since && failure.is_none() {
                    failure = Some(format!(
                        "allocation {} of revision {target} failed{detail}",
                        a.id
                    ));
                }
                continue;
            }
            if a.healthy_for(timing.min_healthy, self.now) {
                if !self.d.marked_healthy.contains(&a.id) {
                    newly.push(a.id.clone());
                }
                continue;
            }
            let deadline = a.created_at_ms.max(since) + timing.healthy_deadline;
            if self.now >= deadline {
                if failure.is_none() {
                    let state = match a.health {
                        Health::Healthy { since_ms } => format!(
                            "healthy for only {}, less than min_healthy_time {}",
                            human(self.now - since_ms),
                            human(timing.min_healthy)
                        ),
                        other => format!("it is {}", health_word(other)),
                    };
                    failure = Some(format!(
                        "allocation {} of revision {target} was not healthy within {} ({state}){detail}",
                        a.id,
                        human(timing.healthy_deadline),
                    ));
                }
                continue;
            }
            wakes.push(deadline);
            if let Health::Healthy { since_ms } = a.health {
                wakes.push(since_ms + timing.min_healthy);
            }
        }
        if failure.is_some() {
            return failure;
        }
        for at in wakes {
            self.wake_at(at);
        }
        if !newly.is_empty() {
            self.d.marked_healthy.extend(newly.iter().cloned());
            self.d.last_progress_ms = self.now;
            self.effects.push(Effect::MarkHealthy { ids: newly });
        }
        if let Some(pd) = timing.progress_deadline {
            let due = self.d.last_progress_ms + pd;
            if self.now >= due {
                let healthy = count(
                    self.of(target)
                        .filter(|a| a.live() && a.healthy_for(timing.min_healthy, self.now)),
                );
                return Some(format!(
                    "no progress within {}: {healthy}/{} allocations of revision {target} healthy",
                    human(pd),
                    self.d.replicas,
                ));
            }
            self.wake_at(due);
        }
        None
    }

    /// Works out the stops and starts that move toward `goal`, and emits them.
    fn converge(&mut self, target: &str, goal: Goal, timing: Timing) -> Converged {
        let now = self.now;
        let mut target_live: Vec<&ObservedAllocation> =
            self.of(target).filter(|a| a.live()).collect();
        let mut outgoing: Vec<&ObservedAllocation> =
            self.not_of(target).filter(|a| a.live()).collect();
        let counted = |a: &ObservedAllocation| a.healthy_for(timing.min_healthy, now);
        let mut healthy = count(target_live.iter().filter(|a| counted(a)))
            + count(outgoing.iter().filter(|a| a.healthy()));
        let mut stop = Vec::new();

        // Target allocations beyond the goal: the least healthy go first.
        target_live.sort_by(|a, b| counted(a).cmp(&counted(b)).then(a.id.cmp(&b.id)));
        let mut target_count = count(target_live.iter());
        let mut target_healthy = count(target_live.iter().filter(|a| counted(a)));
        for a in &target_live {
            if target_count <= goal.target_count {
                break;
            }
            if counted(a) {
                if healthy <= goal.min_healthy {
                    break;
                }
                healthy -= 1;
                target_healthy -= 1;
            }
            stop.push(a.id.clone());
            target_count -= 1;
        }

        // Outgoing allocations: unhealthy ones first, then healthy ones as
        // long as enough healthy allocations remain.
        outgoing.sort_by(|a, b| a.healthy().cmp(&b.healthy()).then(a.id.cmp(&b.id)));
        let mut outgoing_live = count(outgoing.iter());
        for a in &outgoing {
            if outgoing_live <= goal.outgoing_keep {
                break;
            }
            if a.healthy() {
                if healthy <= goal.min_healthy {
                    break;
                }
                healthy -= 1;
            }
            stop.push(a.id.clone());
            outgoing_live -= 1;
        }

        let total = target_count + outgoing_live;
        let start = goal
            .target_count
            .saturating_sub(target_count)
            .min(goal.max_total.saturating_sub(total));
        if !stop.is_empty() {
            self.effects
                .push(Effect::StopAllocations { ids: stop.clone() });
        }
        if start > 0 {
            self.effects.push(Effect::StartAllocations {
                revision: target.to_owned(),
                count: start,
            });
            // They are created now: their healthy deadline falls due even
            // if no agent ever reports on them.
            self.wake_at(self.now + timing.healthy_deadline);
        }
        Converged {
            stop,
            start,
            target_healthy,
            target_live: target_count,
            outgoing_live_after: outgoing_live,
        }
    }

    fn forward_rolling(&mut self, goal: Goal) {
        let timing = self.timing();
        let new = self.d.new_revision.clone();
        if let Some(reason) = self.check_target(&new, self.d.started_at_ms, timing) {
            return self.fail(reason);
        }
        let c = self.converge(&new, goal, timing);
        if c.target_healthy >= self.d.replicas
            && c.target_live == self.d.replicas
            && c.outgoing_live_after == 0
        {
            self.succeed();
        }
    }

    fn blue_green(&mut self, b: &super::model::BlueGreen) {
        let timing = self.timing();
        let new = self.d.new_revision.clone();
        let Progress::BlueGreen {
            promoted,
            switched_at_ms,
        } = self.d.progress
        else {
            return;
        };
        if let Some(reason) = self.check_target(&new, self.d.started_at_ms, timing) {
            return self.fail(reason);
        }
        let r = self.d.replicas;
        match switched_at_ms {
            None => {
                // Start the full new set; never stop anything old here.
                let goal = Goal {
                    target_count: r,
                    outgoing_keep: u32::MAX,
                    max_total: u32::MAX,
                    min_healthy: 0,
                };
                let c = self.converge(&new, goal, timing);
                let ready = c.target_healthy >= r && c.target_live == r;
                if ready && (b.auto_promote || promoted) {
                    self.switch_to_new(b);
                } else if ready && self.d.phase != Phase::AwaitingPromotion {
                    self.set_phase(
                        Phase::AwaitingPromotion,
                        format!(
                            "{} of revision {new} healthy; promote to switch traffic",
                            if r == 1 {
                                "the allocation".to_owned()
                            } else {
                                format!("all {r} allocations")
                            }
                        ),
                    );
                } else if !ready && self.d.phase == Phase::AwaitingPromotion {
                    self.set_phase(
                        Phase::Running,
                        format!("{}/{r} allocations of revision {new} healthy; waiting before promotion", c.target_healthy),
                    );
                }
            }
            Some(at) => {
                let until = at + ms(b.keep_old_for);
                if self.now >= until {
                    self.stop_old_set_and_succeed();
                } else {
                    self.wake_at(until);
                }
            }
        }
    }

    fn switch_to_new(&mut self, b: &super::model::BlueGreen) {
        let new = self.d.new_revision.clone();
        self.d.progress = Progress::BlueGreen {
            promoted: true,
            switched_at_ms: Some(self.now),
        };
        self.d.last_progress_ms = self.now;
        self.effects.push(Effect::SwitchTraffic { to: new.clone() });
        let old_live = self.old_live();
        if old_live == 0 || b.keep_old_for.is_zero() {
            self.set_phase(
                Phase::Running,
                format!("traffic switched to revision {new}"),
            );
            self.stop_old_set_and_succeed();
        } else {
            self.set_phase(
                Phase::Running,
                format!(
                    "traffic switched to revision {new}; keeping {} for {} for instant rollback",
                    noun(old_live, "old allocation"),
                    human(ms(b.keep_old_for))
                ),
            );
            self.wake_at(self.now + ms(b.keep_old_for));
        }
    }

    fn stop_old_set_and_succeed(&mut self) {
        let new = self.d.new_revision.clone();
        let ids = self.live_ids_not_of(&new);
        if !ids.is_empty() {
            self.effects.push(Effect::StopAllocations { ids });
        }
        self.succeed();
    }

    fn old_live(&self) -> u32 {
        count(self.not_of(&self.d.new_revision).filter(|a| a.live()))
    }

    fn live_ids_not_of(&self, revision: &str) -> Vec<AllocationId> {
        let mut ids: Vec<AllocationId> = self
            .not_of(revision)
            .filter(|a| a.live())
            .map(|a| a.id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// New allocations to stop: everything not yet stopping or stopped
    /// (`all`), or only those that are not healthy.
    fn new_ids_to_stop(&self, all: bool) -> Vec<AllocationId> {
        let mut ids: Vec<AllocationId> = self
            .of(&self.d.new_revision)
            .filter(|a| !a.stopping && a.health != Health::Stopped)
            .filter(|a| all || !a.healthy())
            .map(|a| a.id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Canary stages: 0 is the canaries; then one per step, the last at 100 %.
    fn canary_steps(c: &super::model::Canary) -> Vec<u32> {
        let mut steps: Vec<u32> = c.steps.iter().map(|p| (*p).min(100)).collect();
        if steps.last() != Some(&100) {
            steps.push(100);
        }
        steps
    }

    fn canary_goal(&self, c: &super::model::Canary, stage: usize) -> Goal {
        let r = self.d.replicas;
        let canaries = c.canaries.min(r);
        if stage == 0 {
            return Goal {
                target_count: canaries,
                outgoing_keep: r,
                max_total: r.saturating_add(canaries),
                min_healthy: r,
            };
        }
        let steps = Self::canary_steps(c);
        let pct = steps[(stage - 1).min(steps.len() - 1)];
        let share = u32::try_from((u64::from(r) * u64::from(pct)).div_ceil(100)).unwrap_or(r);
        let n = share.max(canaries).min(r);
        Goal {
            target_count: n,
            outgoing_keep: r - n,
            max_total: r.saturating_add(n),
            min_healthy: r,
        }
    }

    fn canary(&mut self, c: &super::model::Canary) {
        let timing = self.timing();
        let new = self.d.new_revision.clone();
        if let Some(reason) = self.check_target(&new, self.d.started_at_ms, timing) {
            return self.fail(reason);
        }
        let last_stage = Self::canary_steps(c).len();
        loop {
            let Progress::Canary { stage } = self.d.progress else {
                return;
            };
            let goal = self.canary_goal(c, stage);
            // After an automatic promotion the next stage converges on the
            // same observation: safe, because promotion only happens when
            // this stage emitted nothing.
            let c2 = self.converge(&new, goal, timing);
            let done = c2.target_healthy >= goal.target_count
                && c2.target_live == goal.target_count
                && c2.outgoing_live_after <= goal.outgoing_keep
                && c2.start == 0;
            if !done {
                if self.d.phase == Phase::AwaitingPromotion {
                    self.set_phase(
                        Phase::Running,
                        format!(
                            "{}/{} allocations of revision {new} healthy; waiting before promotion",
                            c2.target_healthy, goal.target_count
                        ),
                    );
                }
                return;
            }
            if stage >= last_stage {
                return self.succeed();
            }
            if !self.canary_analysis_passed(stage) {
                return;
            }
            if c.auto_promote {
                if !c2.stop.is_empty() {
                    // The next stage must see these stops applied first:
                    // come back as soon as they are.
                    self.wake_at(self.now);
                    return;
                }
                self.advance_canary(c, stage + 1);
                continue;
            }
            if self.d.phase != Phase::AwaitingPromotion {
                let what = if stage == 0 {
                    format!(
                        "{} of revision {new} healthy",
                        if goal.target_count == 1 {
                            "1 canary".to_owned()
                        } else {
                            format!("{} canaries", goal.target_count)
                        }
                    )
                } else {
                    format!(
                        "step {stage}/{last_stage}: {}/{} replicas on revision {new} healthy",
                        goal.target_count, self.d.replicas
                    )
                };
                self.set_phase(
                    Phase::AwaitingPromotion,
                    format!("{what}; promote to continue"),
                );
            }
            return;
        }
    }

    /// Whether canary analysis let step `stage` be promoted; asks for a
    /// verdict (once per [`ANALYSIS_RETRY_MS`]) when it has none yet.
    fn canary_analysis_passed(&mut self, stage: usize) -> bool {
        let analysis = &self.d.canary_analysis;
        if !analysis.required || analysis.passed_stage == Some(stage) {
            return true;
        }
        let asked_before = analysis.asked_stage == Some(stage);
        if asked_before && self.now < analysis.ask_again_at_ms {
            let at = analysis.ask_again_at_ms;
            self.wake_at(at);
            return false;
        }
        let at = self.now + ANALYSIS_RETRY_MS;
        self.d.canary_analysis.asked_stage = Some(stage);
        self.d.canary_analysis.ask_again_at_ms = at;
        if !asked_before {
            self.record(format!(
                "{}: asking the rollout.analyze policies before promotion",
                step_name(stage)
            ));
        }
        self.effects.push(Effect::AnalyzeCanary { stage });
        self.wake_at(at);
        false
    }

    fn canary_verdict(&mut self, stage: usize, verdict: CanaryVerdict) {
        let current = matches!(self.d.progress, Progress::Canary { stage: s } if s == stage);
        if !current || !matches!(self.d.phase, Phase::Running | Phase::AwaitingPromotion) {
            return;
        }
        let step = step_name(stage);
        match verdict {
            CanaryVerdict::Promote(reason) => {
                self.d.canary_analysis.passed_stage = Some(stage);
                self.d.canary_analysis.last_wait = None;
                self.record(format!("canary analysis of {step}: promote ({reason})"));
                self.evaluate();
            }
            CanaryVerdict::Wait(reason) => {
                if self.d.canary_analysis.last_wait.as_ref() != Some(&reason) {
                    self.record(format!("canary analysis of {step}: wait ({reason})"));
                    self.d.canary_analysis.last_wait = Some(reason);
                }
                let at = self.d.canary_analysis.ask_again_at_ms.max(self.now);
                self.wake_at(at);
            }
            CanaryVerdict::Rollback(reason) => {
                self.fail(format!(
                    "canary analysis of {step} said roll back: {reason}"
                ));
            }
        }
    }

    fn advance_canary(&mut self, c: &super::model::Canary, stage: usize) {
        self.d.progress = Progress::Canary { stage };
        self.d.last_progress_ms = self.now;
        let steps = Self::canary_steps(c);
        let goal = self.canary_goal(c, stage);
        self.set_phase(
            Phase::Running,
            format!(
                "promoted to step {stage}/{}: {}% ({}/{} replicas) on revision {}",
                steps.len(),
                steps[stage - 1],
                goal.target_count,
                self.d.replicas,
                self.d.new_revision
            ),
        );
    }

    fn promote(&mut self) {
        match self.d.strategy.clone() {
            UpdateStrategy::BlueGreen(b) => {
                if let Progress::BlueGreen { promoted, .. } = &mut self.d.progress {
                    *promoted = true;
                }
                self.record("promotion requested");
                self.blue_green(&b);
            }
            UpdateStrategy::Canary(c) => {
                let Progress::Canary { stage } = self.d.progress else {
                    return;
                };
                self.advance_canary(&c, stage + 1);
                self.canary(&c);
            }
            UpdateStrategy::Rolling(_) => {}
        }
    }

    fn succeed(&mut self) {
        let new = self.d.new_revision.clone();
        self.set_phase(
            Phase::Succeeded,
            format!(
                "deployment succeeded: {} of revision {new} healthy",
                noun(self.d.replicas, "allocation")
            ),
        );
    }

    /// The deployment failed for `reason`: revert or stop, per the strategy.
    fn fail(&mut self, reason: String) {
        let revert_to = self.d.old_revision.clone().filter(|_| self.auto_revert());
        if let UpdateStrategy::BlueGreen(_) = self.d.strategy {
            let headline = format!("deployment failed: {reason}");
            return self.blue_green_back(revert_to.is_some(), reason, headline);
        }
        match revert_to {
            Some(old) => {
                self.d.revert_started_ms = Some(self.now);
                self.d.revert_reason = Some(reason.clone());
                self.d.last_progress_ms = self.now;
                self.effects.push(Effect::RevertTo {
                    revision: old.clone(),
                });
                self.set_phase(
                    Phase::Reverting,
                    format!("deployment failed: {reason}; reverting to revision {old}"),
                );
                self.reverting();
            }
            None => {
                let ids = self.new_ids_to_stop(false);
                if !ids.is_empty() {
                    self.effects.push(Effect::StopAllocations { ids });
                }
                let note = if self.d.old_revision.is_some() {
                    "; old allocations keep running"
                } else {
                    ""
                };
                self.set_phase(
                    Phase::Failed {
                        reason: reason.clone(),
                    },
                    format!("deployment failed: {reason}{note}"),
                );
            }
        }
    }

    /// Blue-green failure or rollback: traffic back to the old set if it
    /// had switched, the whole new set stopped.
    fn blue_green_back(&mut self, revert: bool, reason: String, headline: String) {
        let switched = matches!(
            self.d.progress,
            Progress::BlueGreen {
                switched_at_ms: Some(_),
                ..
            }
        );
        let old = self.d.old_revision.clone();
        if switched && let Some(old) = &old {
            self.effects.push(Effect::SwitchTraffic { to: old.clone() });
        }
        let ids = self.new_ids_to_stop(true);
        if !ids.is_empty() {
            self.effects.push(Effect::StopAllocations { ids });
        }
        match old.filter(|_| revert) {
            Some(old) => {
                self.effects.push(Effect::RevertTo {
                    revision: old.clone(),
                });
                self.set_phase(
                    Phase::Reverted,
                    format!("{headline}; reverted to revision {old}, new allocations stopped"),
                );
            }
            None => self.set_phase(
                Phase::Failed { reason },
                format!("{headline}; new allocations stopped, old ones untouched"),
            ),
        }
    }

    /// A rolling deployment back to the old revision.
    fn reverting(&mut self) {
        let Some(old) = self.d.old_revision.clone() else {
            return;
        };
        let r = self.d.replicas;
        let (surge, unavailable) = match &self.d.strategy {
            UpdateStrategy::Rolling(p) if p.max_surge == 0 && p.max_unavailable == 0 => (1, 0),
            UpdateStrategy::Rolling(p) => (p.max_surge, p.max_unavailable),
            // The new revision failed: bring every missing old one back at
            // once, and stop new ones as old ones are healthy again.
            _ => (r.max(1), 0),
        };
        let goal = Goal {
            target_count: r,
            outgoing_keep: 0,
            max_total: r.saturating_add(surge),
            min_healthy: r.saturating_sub(unavailable),
        };
        let timing = self.timing();
        let since = self.d.revert_started_ms.unwrap_or(self.now);
        if let Some(reason) = self.check_target(&old, since, timing) {
            let first = self.d.revert_reason.clone().unwrap_or_default();
            let reason = format!(
                "revert to revision {old} failed: {reason} (it was reverting because: {first})"
            );
            return self.set_phase(
                Phase::Failed {
                    reason: reason.clone(),
                },
                reason,
            );
        }
        let c = self.converge(&old, goal, timing);
        if c.target_healthy >= r && c.target_live == r && c.outgoing_live_after == 0 {
            self.set_phase(
                Phase::Reverted,
                format!(
                    "reverted to revision {old}: {} healthy",
                    noun(r, "allocation")
                ),
            );
        }
    }

    fn backup_done(&mut self, result: Result<String, String>) {
        let Phase::BackingUp { policy } = self.d.phase.clone() else {
            return;
        };
        match result {
            Ok(detail) => {
                self.d.last_progress_ms = self.now;
                self.set_phase(
                    Phase::Running,
                    format!("pre-deploy backup of {policy} verified ({detail}); rollout begins"),
                );
                self.evaluate();
            }
            Err(why) => {
                let reason = format!(
                    "pre-deploy backup of {policy} failed: {why}; the rollout did not start"
                );
                self.set_phase(
                    Phase::Failed {
                        reason: reason.clone(),
                    },
                    reason,
                );
            }
        }
    }

    fn rollback(&mut self) {
        let Some(old) = self.d.old_revision.clone() else {
            return;
        };
        self.d.paused_from = None;
        match self.d.strategy {
            UpdateStrategy::BlueGreen(_) => {
                let why = "rollback requested".to_owned();
                self.blue_green_back(true, why.clone(), why);
            }
            _ => {
                self.d.revert_started_ms = Some(self.now);
                self.d.revert_reason = Some("rollback requested".to_owned());
                self.d.last_progress_ms = self.now;
                self.effects.push(Effect::RevertTo {
                    revision: old.clone(),
                });
                self.set_phase(
                    Phase::Reverting,
                    format!("rollback requested: reverting to revision {old}"),
                );
                self.reverting();
            }
        }
    }

    fn cancel(&mut self) {
        self.d.paused_from = None;
        let new = self.d.new_revision.clone();
        let switched = matches!(
            self.d.progress,
            Progress::BlueGreen {
                switched_at_ms: Some(_),
                ..
            }
        );
        let old = self.d.old_revision.clone();
        if let Some(old) = &old
            && switched
        {
            self.effects.push(Effect::SwitchTraffic { to: old.clone() });
        }
        let ids = self.new_ids_to_stop(true);
        let stopped = ids.len();
        if !ids.is_empty() {
            self.effects.push(Effect::StopAllocations { ids });
        }
        let mut text = format!(
            "cancelled: stopping {} of revision {new}",
            noun(u32::try_from(stopped).unwrap_or(u32::MAX), "allocation")
        );
        if let Some(old) = old {
            let missing = self.d.replicas.saturating_sub(self.live_count(&old));
            if missing > 0 {
                self.effects.push(Effect::StartAllocations {
                    revision: old.clone(),
                    count: missing,
                });
                text.push_str(&format!(", starting {missing} of revision {old}"));
            }
            self.effects.push(Effect::RevertTo { revision: old });
        }
        self.set_phase(Phase::Cancelled, text);
    }
}

/// `the canaries`, `step 2`.
fn step_name(stage: usize) -> String {
    if stage == 0 {
        "the canaries".to_owned()
    } else {
        format!("step {stage}")
    }
}

/// `1 allocation`, `3 allocations`.
fn noun(n: u32, singular: &str) -> String {
    if n == 1 {
        format!("1 {singular}")
    } else {
        format!("{n} {singular}s")
    }
}

fn count<T>(it: impl Iterator<Item = T>) -> u32 {
    u32::try_from(it.count()).unwrap_or(u32::MAX)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn ms_duration(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms.max(0)).unwrap_or(0))
}

fn human(ms: i64) -> String {
    humantime::format_duration(ms_duration(ms)).to_string()
}

fn health_word(h: Health) -> &'static str {
    match h {
        Health::Pending => "pending",
        Health::Starting => "starting",
        Health::Healthy { .. } => "healthy",
        Health::Unhealthy => "unhealthy",
        Health::Failed => "failed",
        Health::Stopped => "stopped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::model::{BlueGreen, Canary, Rolling};

    const T0: i64 = 1_800_000_000_000;
    const SEC: i64 = 1000;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn rolling(surge: u32, unavailable: u32, auto_revert: bool) -> UpdateStrategy {
        UpdateStrategy::Rolling(Rolling {
            max_surge: surge,
            max_unavailable: unavailable,
            min_healthy_time: secs(10),
            healthy_deadline: secs(60),
            progress_deadline: secs(120),
            auto_revert,
        })
    }

    fn blue_green(auto_promote: bool, keep: u64, auto_revert: bool) -> UpdateStrategy {
        UpdateStrategy::BlueGreen(BlueGreen {
            min_healthy_time: secs(10),
            healthy_deadline: secs(60),
            auto_promote,
            keep_old_for: secs(keep),
            auto_revert,
        })
    }

    fn canary(
        canaries: u32,
        steps: &[u32],
        auto_promote: bool,
        auto_revert: bool,
    ) -> UpdateStrategy {
        UpdateStrategy::Canary(Canary {
            canaries,
            steps: steps.to_vec(),
            min_healthy_time: secs(10),
            healthy_deadline: secs(60),
            auto_promote,
            auto_revert,
        })
    }

    /// A tiny world: applies effects the way the controller would, and
    /// checks the invariants on every step.
    struct Sim {
        d: Deployment,
        allocs: Vec<ObservedAllocation>,
        now: i64,
        seq: u32,
        effects: Vec<Effect>,
        /// When traffic switched to the new revision (blue-green).
        switched_at: Option<i64>,
    }

    impl Sim {
        fn new(strategy: UpdateStrategy, replicas: u32, old: u32) -> Sim {
            let allocs = (0..old)
                .map(|i| ObservedAllocation {
                    id: format!("r1-{i}"),
                    revision: "r1".into(),
                    health: Health::Healthy { since_ms: 0 },
                    created_at_ms: 0,
                    stopping: false,
                    message: None,
                })
                .collect();
            let old_rev = (old > 0).then(|| "r1".to_owned());
            Sim {
                d: Deployment::new("d1", "web", strategy, replicas, old_rev, "r2", T0),
                allocs,
                now: T0,
                seq: 0,
                effects: Vec::new(),
                switched_at: None,
            }
        }

        fn observed(&self) -> Observed {
            Observed {
                allocations: self.allocs.clone(),
            }
        }

        fn mht(&self) -> i64 {
            Machine {
                d: self.d.clone(),
                obs: &Observed::default(),
                now: 0,
                effects: vec![],
                wake: None,
            }
            .timing()
            .min_healthy
        }

        fn live(&self, rev: &str) -> Vec<&ObservedAllocation> {
            self.allocs
                .iter()
                .filter(|a| a.revision == rev && a.live())
                .collect()
        }

        fn live_ids(&self, rev: &str) -> Vec<String> {
            self.live(rev).iter().map(|a| a.id.clone()).collect()
        }

        fn total_live(&self) -> usize {
            self.allocs.iter().filter(|a| a.live()).count()
        }

        /// Healthy allocations as the machine counts them with `target`
        /// as the revision being rolled out.
        fn healthy(&self, target: &str) -> usize {
            let mht = self.mht();
            self.allocs
                .iter()
                .filter(|a| a.live())
                .filter(|a| {
                    if a.revision == target {
                        a.healthy_for(mht, self.now)
                    } else {
                        a.healthy()
                    }
                })
                .count()
        }

        fn try_send(&mut self, event: Event) -> Result<Step, Rejected> {
            let before = self.d.clone();
            let result = step(&self.d, &self.observed(), event.clone(), self.now);
            if let Ok(s) = &result {
                self.apply_checked(&before, &event, s.clone());
            }
            result
        }

        fn send(&mut self, event: Event) -> Step {
            self.try_send(event.clone())
                .unwrap_or_else(|e| panic!("{event:?} rejected: {e}"))
        }

        fn tick(&mut self) -> Step {
            self.send(Event::Tick)
        }

        fn apply_checked(&mut self, before: &Deployment, event: &Event, s: Step) {
            let r = before.replicas as usize;
            if (before.phase.is_terminal() || before.phase == Phase::Paused)
                && !matches!(event, Event::Resume | Event::Cancel | Event::Rollback)
            {
                assert!(
                    s.effects.is_empty(),
                    "{} deployment acted on {event:?}: {:?}",
                    before.phase,
                    s.effects
                );
            }
            let reverting = matches!(s.deployment.phase, Phase::Reverting | Phase::Reverted)
                || s.deployment.revert_started_ms.is_some();
            let target = if reverting { "r1" } else { "r2" };
            let healthy_before = self.healthy(target);
            let total_before = self.total_live();
            let new_healthy_before = self
                .live("r2")
                .iter()
                .filter(|a| a.healthy_for(self.mht(), self.now))
                .count();

            for e in &s.effects {
                match e {
                    Effect::StartAllocations { revision, count } => {
                        assert!(*count > 0, "empty start");
                        for _ in 0..*count {
                            self.seq += 1;
                            self.allocs.push(ObservedAllocation {
                                id: format!("{revision}-n{}", self.seq),
                                revision: revision.clone(),
                                health: Health::Pending,
                                created_at_ms: self.now,
                                stopping: false,
                                message: None,
                            });
                        }
                    }
                    Effect::StopAllocations { ids } => {
                        assert!(!ids.is_empty(), "empty stop");
                        for id in ids {
                            let a = self
                                .allocs
                                .iter_mut()
                                .find(|a| &a.id == id)
                                .unwrap_or_else(|| panic!("stop of unknown {id}"));
                            assert!(!a.stopping, "{id} stopped twice");
                            if a.revision == "r1"
                                && matches!(before.strategy, UpdateStrategy::BlueGreen(_))
                            {
                                let keep = match &before.strategy {
                                    UpdateStrategy::BlueGreen(b) => ms(b.keep_old_for),
                                    _ => 0,
                                };
                                let at = self.switched_at.expect("old stopped before the switch");
                                assert!(
                                    self.now >= at + keep,
                                    "old stopped inside the keep window"
                                );
                            }
                            a.stopping = true;
                        }
                    }
                    Effect::SwitchTraffic { to } => {
                        if to == "r2" {
                            assert_eq!(
                                new_healthy_before, r,
                                "switched before all new were healthy"
                            );
                            self.switched_at = Some(self.now);
                        } else {
                            self.switched_at = None;
                        }
                    }
                    Effect::MarkHealthy { .. }
                    | Effect::RevertTo { .. }
                    | Effect::SetPhase(_)
                    | Effect::Record(_)
                    | Effect::AnalyzeCanary { .. } => {}
                }
            }
            self.effects.extend(s.effects.iter().cloned());

            if *event != Event::Cancel {
                let floor = match &before.strategy {
                    UpdateStrategy::Rolling(p) if p.max_unavailable == 0 && p.max_surge == 0 => r,
                    UpdateStrategy::Rolling(p) => r.saturating_sub(p.max_unavailable as usize),
                    UpdateStrategy::Canary(_) => r,
                    UpdateStrategy::BlueGreen(_) => 0,
                };
                let after = self.healthy(target);
                assert!(
                    after >= healthy_before.min(floor),
                    "healthy dropped from {healthy_before} to {after} (floor {floor}) on {event:?}: {:?}",
                    s.effects
                );
                let cap = match &before.strategy {
                    UpdateStrategy::Rolling(p) => r + (p.max_surge.max(1) as usize),
                    _ => 2 * r,
                };
                if total_before <= cap {
                    assert!(
                        self.total_live() <= cap,
                        "{} live allocations, more than {cap}",
                        self.total_live()
                    );
                }
            }
            self.d = s.deployment;
        }

        fn set(&mut self, id: &str, health: Health) {
            let a = self.allocs.iter_mut().find(|a| a.id == id).unwrap();
            a.health = health;
        }

        fn make_healthy(&mut self, rev: &str) {
            let now = self.now;
            for a in self.allocs.iter_mut() {
                if a.revision == rev && a.live() && !a.healthy() {
                    a.health = Health::Healthy { since_ms: now };
                }
            }
        }

        fn advance(&mut self, ms: i64) {
            self.now += ms;
        }

        fn records(&self) -> Vec<String> {
            self.effects
                .iter()
                .filter_map(|e| match e {
                    Effect::Record(t) => Some(t.clone()),
                    _ => None,
                })
                .collect()
        }

        fn phases(&self) -> Vec<Phase> {
            self.effects
                .iter()
                .filter_map(|e| match e {
                    Effect::SetPhase(p) => Some(p.clone()),
                    _ => None,
                })
                .collect()
        }

        /// New allocations get healthy 2 s after they appear; ticks every
        /// second until the deployment ends or `limit` seconds pass.
        fn run_healthy(&mut self, limit: i64) {
            for _ in 0..limit {
                if self.d.phase.is_terminal() || self.d.phase == Phase::AwaitingPromotion {
                    return;
                }
                let now = self.now;
                for a in self.allocs.iter_mut() {
                    if a.live() && !a.healthy() && now - a.created_at_ms >= 2 * SEC {
                        a.health = Health::Healthy { since_ms: now };
                    }
                }
                self.tick();
                self.advance(SEC);
            }
        }
    }

    // ---------- rolling ----------

    #[test]
    fn rolling_surge_one_replaces_one_at_a_time() {
        let mut sim = Sim::new(rolling(1, 0, true), 3, 3);
        let s = sim.tick();
        assert_eq!(
            s.effects,
            [Effect::StartAllocations {
                revision: "r2".into(),
                count: 1
            }]
        );
        assert_eq!(s.requeue_after, Some(secs(60)), "healthy deadline of r2-n1");
        // Healthy, but not yet for min_healthy_time: nothing old stops.
        sim.advance(5 * SEC);
        sim.set("r2-n1", Health::Healthy { since_ms: sim.now });
        let s = sim.send(Event::AllocationUpdated { id: "r2-n1".into() });
        assert!(s.effects.is_empty(), "{:?}", s.effects);
        assert_eq!(s.requeue_after, Some(secs(10)));
        sim.advance(10 * SEC);
        let s = sim.tick();
        assert_eq!(
            s.effects,
            [
                Effect::MarkHealthy {
                    ids: vec!["r2-n1".into()]
                },
                Effect::StopAllocations {
                    ids: vec!["r1-0".into()]
                },
                Effect::StartAllocations {
                    revision: "r2".into(),
                    count: 1
                },
            ]
        );
        sim.run_healthy(200);
        assert_eq!(sim.d.phase, Phase::Succeeded);
        assert_eq!(sim.live("r2").len(), 3);
        assert!(sim.live("r1").is_empty());
        assert_eq!(
            sim.records().last().unwrap(),
            "deployment succeeded: 3 allocations of revision r2 healthy"
        );
        // Ended: further ticks do nothing; commands are rejected.
        assert!(sim.tick().effects.is_empty());
        assert_eq!(
            sim.try_send(Event::Pause).unwrap_err().to_string(),
            "deployment d1 has already ended (succeeded)"
        );
    }

    #[test]
    fn rolling_with_unavailable_and_no_surge_stops_first() {
        let mut sim = Sim::new(rolling(0, 1, true), 3, 3);
        let s = sim.tick();
        assert_eq!(
            s.effects,
            [
                Effect::StopAllocations {
                    ids: vec!["r1-0".into()]
                },
                Effect::StartAllocations {
                    revision: "r2".into(),
                    count: 1
                },
            ]
        );
        sim.run_healthy(300);
        assert_eq!(sim.d.phase, Phase::Succeeded);
        assert_eq!(sim.live("r2").len(), 3);
    }

    #[test]
    fn rolling_shapes_all_succeed_within_bounds() {
        for (surge, unavailable) in [(1, 0), (2, 0), (0, 1), (2, 1), (0, 0), (5, 0), (0, 5)] {
            for (replicas, old) in [(1, 1), (3, 3), (5, 2), (2, 5), (4, 0)] {
                let mut sim = Sim::new(rolling(surge, unavailable, true), replicas, old);
                sim.run_healthy(600);
                assert_eq!(
                    sim.d.phase,
                    Phase::Succeeded,
                    "surge {surge} unavailable {unavailable} replicas {replicas} old {old}"
                );
                assert_eq!(sim.live("r2").len() as u32, replicas);
                assert!(sim.live("r1").is_empty());
            }
        }
    }

    #[test]
    fn first_deployment_starts_everything_at_once() {
        let mut sim = Sim::new(rolling(1, 0, true), 5, 0);
        assert_eq!(
            sim.tick().effects,
            [Effect::StartAllocations {
                revision: "r2".into(),
                count: 5
            }]
        );
        sim.run_healthy(100);
        assert_eq!(sim.d.phase, Phase::Succeeded);
    }

    #[test]
    fn rolling_healthy_deadline_reverts_with_auto_revert() {
        let mut sim = Sim::new(rolling(1, 0, true), 3, 3);
        sim.tick();
        sim.set("r2-n1", Health::Unhealthy);
        sim.advance(59 * SEC);
        assert!(sim.tick().effects.is_empty());
        sim.advance(SEC);
        let s = sim.tick();
        let reason = "allocation r2-n1 of revision r2 was not healthy within 1m (it is unhealthy)";
        assert_eq!(
            s.effects,
            [
                Effect::RevertTo {
                    revision: "r1".into()
                },
                Effect::SetPhase(Phase::Reverting),
                Effect::Record(format!(
                    "deployment failed: {reason}; reverting to revision r1"
                )),
                Effect::MarkHealthy {
                    ids: vec!["r1-0".into(), "r1-1".into(), "r1-2".into()]
                },
                Effect::StopAllocations {
                    ids: vec!["r2-n1".into()]
                },
                Effect::SetPhase(Phase::Reverted),
                Effect::Record("reverted to revision r1: 3 allocations healthy".into()),
            ]
        );
        assert_eq!(sim.live_ids("r1"), ["r1-0", "r1-1", "r1-2"]);
    }

    #[test]
    fn rolling_revert_after_partial_progress_brings_old_back() {
        // Two new allocations replace two old ones; the third never gets
        // healthy: the revert is a rolling deployment back to r1.
        let mut sim = Sim::new(rolling(1, 0, true), 3, 3);
        sim.tick();
        for _ in 0..2 {
            sim.make_healthy("r2");
            sim.advance(10 * SEC);
            sim.tick();
        }
        assert_eq!(sim.live("r1").len(), 1);
        assert_eq!(sim.live("r2").len(), 3);
        // r2-n3 stays Starting until its deadline.
        sim.set("r2-n3", Health::Starting);
        sim.advance(60 * SEC);
        sim.tick();
        assert_eq!(sim.d.phase, Phase::Reverting);
        assert_eq!(
            sim.d.revert_reason.as_deref(),
            Some("allocation r2-n3 of revision r2 was not healthy within 1m (it is starting)")
        );
        // The failed one went at once; healthy new ones stay until old
        // ones are healthy again, one surge at a time.
        assert!(sim.allocs.iter().any(|a| a.id == "r2-n3" && a.stopping));
        sim.run_healthy(300);
        assert_eq!(sim.phases(), [Phase::Reverting, Phase::Reverted]);
        assert_eq!(sim.live("r1").len(), 3);
        assert!(sim.live("r2").is_empty());
        assert!(sim.effects.contains(&Effect::RevertTo {
            revision: "r1".into()
        }));
    }

    #[test]
    fn rolling_failure_without_auto_revert_keeps_old_running() {
        let mut sim = Sim::new(rolling(1, 0, false), 3, 3);
        sim.tick();
        sim.make_healthy("r2");
        sim.advance(10 * SEC);
        sim.tick(); // r1-0 replaced by r2-n1, r2-n2 started
        sim.set("r2-n2", Health::Failed);
        sim.allocs
            .iter_mut()
            .find(|a| a.id == "r2-n2")
            .unwrap()
            .message = Some("exit code 1".into());
        let s = sim.send(Event::AllocationUpdated { id: "r2-n2".into() });
        let reason = "allocation r2-n2 of revision r2 failed: exit code 1";
        assert_eq!(
            s.effects,
            [
                Effect::StopAllocations {
                    ids: vec!["r2-n2".into()]
                },
                Effect::SetPhase(Phase::Failed {
                    reason: reason.into()
                }),
                Effect::Record(format!(
                    "deployment failed: {reason}; old allocations keep running"
                )),
            ]
        );
        assert_eq!(sim.live_ids("r1"), ["r1-1", "r1-2"]);
        assert_eq!(sim.live_ids("r2"), ["r2-n1"]);
        assert_eq!(s.requeue_after, None);
    }

    #[test]
    fn rolling_progress_deadline() {
        let mut sim = Sim::new(
            UpdateStrategy::Rolling(Rolling {
                max_surge: 1,
                max_unavailable: 0,
                min_healthy_time: secs(10),
                healthy_deadline: secs(600),
                progress_deadline: secs(120),
                auto_revert: false,
            }),
            2,
            2,
        );
        let s = sim.tick();
        assert_eq!(s.requeue_after, Some(secs(120)));
        sim.set("r2-n1", Health::Starting);
        sim.advance(119 * SEC);
        assert!(sim.tick().effects.is_empty());
        sim.advance(SEC);
        sim.tick();
        assert_eq!(
            sim.d.phase,
            Phase::Failed {
                reason: "no progress within 2m: 0/2 allocations of revision r2 healthy".into()
            }
        );
        assert_eq!(sim.live_ids("r1"), ["r1-0", "r1-1"]);
        assert!(sim.live("r2").is_empty());
    }

    #[test]
    fn progress_resets_when_an_allocation_becomes_healthy() {
        let mut sim = Sim::new(
            UpdateStrategy::Rolling(Rolling {
                max_surge: 1,
                max_unavailable: 0,
                min_healthy_time: secs(0),
                healthy_deadline: secs(600),
                progress_deadline: secs(100),
                auto_revert: false,
            }),
            2,
            2,
        );
        sim.tick();
        sim.advance(90 * SEC);
        sim.make_healthy("r2");
        sim.tick();
        assert_eq!(sim.d.last_progress_ms, sim.now);
        sim.advance(90 * SEC);
        sim.tick();
        assert_eq!(sim.d.phase, Phase::Running);
        sim.advance(10 * SEC);
        sim.tick();
        assert!(matches!(sim.d.phase, Phase::Failed { .. }));
    }

    #[test]
    fn pause_freezes_and_resume_continues() {
        let mut sim = Sim::new(rolling(1, 0, true), 3, 3);
        sim.tick();
        let s = sim.send(Event::Pause);
        assert_eq!(
            s.effects,
            [
                Effect::SetPhase(Phase::Paused),
                Effect::Record(
                    "paused: no allocations will be started or stopped until resumed".into()
                ),
            ]
        );
        assert_eq!(s.requeue_after, None);
        assert_eq!(
            sim.try_send(Event::Pause),
            Err(Rejected::AlreadyPaused { id: "d1".into() })
        );
        assert_eq!(
            sim.try_send(Event::Promote).unwrap_err().to_string(),
            "deployment d1 is not awaiting promotion (it is paused)"
        );
        // Time passes, the new allocation gets healthy: nothing happens,
        // not even the progress deadline.
        sim.make_healthy("r2");
        for _ in 0..30 {
            sim.advance(10 * SEC);
            assert!(sim.tick().effects.is_empty());
        }
        assert_eq!(sim.live("r1").len(), 3);
        let s = sim.send(Event::Resume);
        assert_eq!(s.effects[0], Effect::SetPhase(Phase::Running));
        assert!(s.effects.contains(&Effect::StopAllocations {
            ids: vec!["r1-0".into()]
        }));
        assert_eq!(
            sim.try_send(Event::Resume),
            Err(Rejected::NotPaused {
                id: "d1".into(),
                phase: Phase::Running
            })
        );
        sim.run_healthy(200);
        assert_eq!(sim.d.phase, Phase::Succeeded);
    }

    #[test]
    fn pause_during_revert_resumes_the_revert() {
        let mut sim = Sim::new(rolling(1, 0, true), 2, 2);
        sim.tick();
        sim.send(Event::Rollback);
        assert_eq!(sim.d.phase, Phase::Reverted, "nothing to bring back");

        let mut sim = Sim::new(rolling(1, 0, true), 2, 2);
        sim.tick();
        sim.make_healthy("r2");
        sim.advance(10 * SEC);
        sim.tick(); // r1-0 stopped
        sim.send(Event::Rollback);
        assert_eq!(sim.d.phase, Phase::Reverting);
        sim.send(Event::Pause);
        assert_eq!(
            sim.try_send(Event::Rollback),
            Err(Rejected::AlreadyReverting { id: "d1".into() })
        );
        sim.send(Event::Resume);
        assert_eq!(sim.d.phase, Phase::Reverting);
        sim.run_healthy(200);
        assert_eq!(sim.d.phase, Phase::Reverted);
        assert_eq!(sim.live("r1").len(), 2);
        assert!(sim.live("r2").is_empty());
    }

    #[test]
    fn a_pre_deploy_backup_holds_the_rollout_until_it_is_verified() {
        let mut sim = Sim::new(rolling(1, 0, true), 3, 3);
        sim.d = sim.d.clone().after_backup("crm-db");
        assert_eq!(
            sim.d.phase.to_string(),
            "backing up (pre-deploy backup crm-db)"
        );
        let s = sim.tick();
        assert!(
            s.effects.is_empty(),
            "nothing starts while backing up: {:?}",
            s.effects
        );
        assert!(!sim.d.phase.is_terminal());
        let s = sim.send(Event::BackupDone {
            result: Ok("backup b-1 restored in 1.2 s, 3 tables match".into()),
        });
        assert_eq!(sim.d.phase, Phase::Running);
        assert!(
            s.effects
                .iter()
                .any(|e| matches!(e, Effect::StartAllocations { .. })),
            "the rollout begins at once: {:?}",
            s.effects
        );
        assert!(s.effects.iter().any(|e| matches!(e,
            Effect::Record(text) if text.contains("pre-deploy backup of crm-db verified"))));
    }

    #[test]
    fn a_failed_pre_deploy_backup_fails_the_deployment_without_starting_anything() {
        let mut sim = Sim::new(rolling(1, 0, true), 3, 3);
        sim.d = sim.d.clone().after_backup("crm-db");
        let s = sim.send(Event::BackupDone {
            result: Err("backup b-1 failed: password authentication failed".into()),
        });
        let Phase::Failed { reason } = &sim.d.phase else {
            panic!("failed, not {}", sim.d.phase);
        };
        assert!(reason.contains("pre-deploy backup of crm-db failed: backup b-1 failed"));
        assert!(reason.contains("the rollout did not start"));
        assert!(
            !s.effects.iter().any(|e| matches!(
                e,
                Effect::StartAllocations { .. } | Effect::StopAllocations { .. }
            )),
            "{:?}",
            s.effects
        );
        assert_eq!(sim.live("r1").len(), 3, "the old revision keeps running");
    }

    #[test]
    fn backup_outcomes_are_refused_unless_a_backup_is_awaited() {
        let mut sim = Sim::new(rolling(1, 0, true), 3, 3);
        let error = sim
            .try_send(Event::BackupDone {
                result: Ok(String::new()),
            })
            .unwrap_err();
        assert!(matches!(error, Rejected::NotBackingUp { .. }), "{error}");
        // Cancelling while the backup runs ends the deployment.
        let mut sim = Sim::new(rolling(1, 0, true), 3, 3);
        sim.d = sim.d.clone().after_backup("crm-db");
        sim.send(Event::Cancel);
        assert_eq!(sim.d.phase, Phase::Cancelled);
        assert!(
            sim.try_send(Event::BackupDone {
                result: Ok(String::new())
            })
            .is_err()
        );
    }

    #[test]
    fn cancel_stops_new_and_restores_old() {
        let mut sim = Sim::new(rolling(1, 0, true), 3, 3);
        sim.tick();
        sim.make_healthy("r2");
        sim.advance(10 * SEC);
        sim.tick();
        assert_eq!(sim.live("r1").len(), 2);
        let s = sim.send(Event::Cancel);
        assert_eq!(
            s.effects,
            [
                Effect::StopAllocations {
                    ids: vec!["r2-n1".into(), "r2-n2".into()]
                },
                Effect::StartAllocations {
                    revision: "r1".into(),
                    count: 1
                },
                Effect::RevertTo {
                    revision: "r1".into()
                },
                Effect::SetPhase(Phase::Cancelled),
                Effect::Record(
                    "cancelled: stopping 2 allocations of revision r2, starting 1 of revision r1"
                        .into()
                ),
            ]
        );
        assert!(sim.live("r2").is_empty());
        assert_eq!(sim.live("r1").len(), 3);
        assert!(sim.tick().effects.is_empty());
    }

    #[test]
    fn revert_that_fails_too_ends_failed() {
        let mut sim = Sim::new(rolling(1, 0, true), 2, 2);
        sim.tick();
        sim.make_healthy("r2");
        sim.advance(10 * SEC);
        sim.tick(); // r1-0 stopped, r2-n2 started
        sim.set("r2-n2", Health::Failed);
        sim.tick();
        assert_eq!(sim.d.phase, Phase::Reverting);
        // The revert starts an r1 allocation, which never gets healthy.
        let old_new: Vec<String> = sim
            .live("r1")
            .iter()
            .filter(|a| a.created_at_ms == sim.now)
            .map(|a| a.id.clone())
            .collect();
        assert_eq!(old_new, ["r1-n3"]);
        sim.advance(60 * SEC);
        sim.tick();
        assert_eq!(
            sim.d.phase,
            Phase::Failed {
                reason: "revert to revision r1 failed: allocation r1-n3 of revision r1 was not healthy within 1m (it is pending) (it was reverting because: allocation r2-n2 of revision r2 failed)".into()
            }
        );
    }

    #[test]
    fn rollback_needs_a_previous_revision() {
        let mut sim = Sim::new(rolling(1, 0, true), 2, 0);
        sim.tick();
        assert_eq!(
            sim.try_send(Event::Rollback).unwrap_err().to_string(),
            "deployment d1 has no previous revision to roll back to (it is the service's first); stop the service instead"
        );
    }

    #[test]
    fn a_failed_allocation_from_an_earlier_deployment_does_not_count() {
        let mut sim = Sim::new(rolling(1, 0, true), 1, 1);
        sim.allocs.push(ObservedAllocation {
            id: "r2-old".into(),
            revision: "r2".into(),
            health: Health::Failed,
            created_at_ms: T0 - 1,
            stopping: false,
            message: None,
        });
        sim.run_healthy(100);
        assert_eq!(sim.d.phase, Phase::Succeeded);
    }

    // ---------- blue-green ----------

    #[test]
    fn blue_green_auto_promote_switches_then_keeps_old() {
        let mut sim = Sim::new(blue_green(true, 300, true), 3, 3);
        assert_eq!(
            sim.tick().effects,
            [Effect::StartAllocations {
                revision: "r2".into(),
                count: 3
            }]
        );
        sim.make_healthy("r2");
        sim.set("r2-n3", Health::Starting);
        sim.advance(10 * SEC);
        assert_eq!(
            sim.tick().effects,
            [Effect::MarkHealthy {
                ids: vec!["r2-n1".into(), "r2-n2".into()]
            }]
        );
        sim.make_healthy("r2");
        sim.advance(10 * SEC);
        let s = sim.tick();
        assert_eq!(
            s.effects,
            [
                Effect::MarkHealthy {
                    ids: vec!["r2-n3".into()]
                },
                Effect::SwitchTraffic { to: "r2".into() },
                Effect::Record(
                    "traffic switched to revision r2; keeping 3 old allocations for 5m for instant rollback"
                        .into()
                ),
            ]
        );
        assert_eq!(s.requeue_after, Some(secs(300)));
        assert_eq!(sim.live("r1").len(), 3);
        sim.advance(299 * SEC);
        assert!(sim.tick().effects.is_empty());
        sim.advance(SEC);
        let s = sim.tick();
        assert_eq!(
            s.effects[0],
            Effect::StopAllocations {
                ids: vec!["r1-0".into(), "r1-1".into(), "r1-2".into()]
            }
        );
        assert_eq!(sim.d.phase, Phase::Succeeded);
    }

    #[test]
    fn blue_green_manual_promotion() {
        let mut sim = Sim::new(blue_green(false, 60, true), 2, 2);
        sim.tick();
        assert_eq!(
            sim.try_send(Event::Promote),
            Err(Rejected::NotAwaitingPromotion {
                id: "d1".into(),
                phase: Phase::Running
            })
        );
        sim.make_healthy("r2");
        sim.advance(10 * SEC);
        let s = sim.tick();
        assert_eq!(sim.d.phase, Phase::AwaitingPromotion);
        assert_eq!(
            s.effects.last(),
            Some(&Effect::Record(
                "all 2 allocations of revision r2 healthy; promote to switch traffic".into()
            ))
        );
        // A new allocation turning unhealthy takes the promotion back.
        sim.set("r2-n1", Health::Unhealthy);
        sim.tick();
        assert_eq!(sim.d.phase, Phase::Running);
        sim.set("r2-n1", Health::Healthy { since_ms: sim.now });
        sim.advance(10 * SEC);
        sim.tick();
        assert_eq!(sim.d.phase, Phase::AwaitingPromotion);
        // Waiting for a person is not a failure, however long it takes.
        sim.advance(3600 * SEC);
        assert!(sim.tick().effects.is_empty());
        let s = sim.send(Event::Promote);
        assert!(
            s.effects
                .contains(&Effect::SwitchTraffic { to: "r2".into() })
        );
        assert_eq!(sim.d.phase, Phase::Running);
        sim.advance(60 * SEC);
        sim.tick();
        assert_eq!(sim.d.phase, Phase::Succeeded);
        assert!(sim.live("r1").is_empty());
    }

    #[test]
    fn blue_green_rollback_in_keep_window_switches_back() {
        let mut sim = Sim::new(blue_green(true, 600, false), 2, 2);
        sim.tick();
        sim.make_healthy("r2");
        sim.advance(10 * SEC);
        sim.tick();
        assert!(sim.switched_at.is_some());
        sim.advance(100 * SEC);
        let s = sim.send(Event::Rollback);
        assert_eq!(
            s.effects,
            [
                Effect::SwitchTraffic { to: "r1".into() },
                Effect::StopAllocations {
                    ids: vec!["r2-n1".into(), "r2-n2".into()]
                },
                Effect::RevertTo {
                    revision: "r1".into()
                },
                Effect::SetPhase(Phase::Reverted),
                Effect::Record(
                    "rollback requested; reverted to revision r1, new allocations stopped".into()
                ),
            ]
        );
        assert_eq!(sim.live_ids("r1"), ["r1-0", "r1-1"]);
    }

    #[test]
    fn blue_green_failure_stops_new_and_leaves_old() {
        for auto_revert in [true, false] {
            let mut sim = Sim::new(blue_green(true, 60, auto_revert), 2, 2);
            sim.tick();
            sim.set("r2-n1", Health::Healthy { since_ms: sim.now });
            sim.advance(60 * SEC);
            let s = sim.tick();
            let reason =
                "allocation r2-n2 of revision r2 was not healthy within 1m (it is pending)";
            let (phase, text) = if auto_revert {
                (
                    Phase::Reverted,
                    format!(
                        "deployment failed: {reason}; reverted to revision r1, new allocations stopped"
                    ),
                )
            } else {
                (
                    Phase::Failed {
                        reason: reason.into(),
                    },
                    format!(
                        "deployment failed: {reason}; new allocations stopped, old ones untouched"
                    ),
                )
            };
            assert_eq!(sim.d.phase, phase);
            assert_eq!(s.effects.last(), Some(&Effect::Record(text)));
            assert_eq!(sim.live_ids("r1"), ["r1-0", "r1-1"]);
            assert!(sim.live("r2").is_empty());
            assert_eq!(
                s.effects.contains(&Effect::RevertTo {
                    revision: "r1".into()
                }),
                auto_revert
            );
        }
    }

    #[test]
    fn blue_green_new_set_failing_after_switch_switches_back() {
        let mut sim = Sim::new(blue_green(true, 600, true), 2, 2);
        sim.tick();
        sim.make_healthy("r2");
        sim.advance(10 * SEC);
        sim.tick();
        sim.advance(100 * SEC);
        sim.set("r2-n2", Health::Failed);
        let s = sim.tick();
        assert_eq!(s.effects[0], Effect::SwitchTraffic { to: "r1".into() });
        assert_eq!(sim.d.phase, Phase::Reverted);
        assert_eq!(sim.live("r1").len(), 2);
    }

    #[test]
    fn blue_green_without_keep_window_or_old_set_ends_at_switch() {
        let mut sim = Sim::new(blue_green(true, 0, true), 2, 2);
        sim.tick();
        sim.make_healthy("r2");
        sim.advance(10 * SEC);
        let s = sim.tick();
        assert!(s.effects.contains(&Effect::StopAllocations {
            ids: vec!["r1-0".into(), "r1-1".into()]
        }));
        assert_eq!(sim.d.phase, Phase::Succeeded);

        let mut sim = Sim::new(blue_green(true, 600, true), 2, 0);
        sim.run_healthy(100);
        assert_eq!(sim.d.phase, Phase::Succeeded);
    }

    #[test]
    fn blue_green_cancel_after_switch_switches_back() {
        let mut sim = Sim::new(blue_green(true, 600, true), 2, 2);
        sim.tick();
        sim.make_healthy("r2");
        sim.advance(10 * SEC);
        sim.tick();
        let s = sim.send(Event::Cancel);
        assert_eq!(s.effects[0], Effect::SwitchTraffic { to: "r1".into() });
        assert_eq!(sim.d.phase, Phase::Cancelled);
        assert!(sim.live("r2").is_empty());
        assert_eq!(sim.live("r1").len(), 2);
    }

    // ---------- canary ----------

    #[test]
    fn canary_manual_steps() {
        let mut sim = Sim::new(canary(1, &[50, 100], false, true), 4, 4);
        assert_eq!(
            sim.tick().effects,
            [Effect::StartAllocations {
                revision: "r2".into(),
                count: 1
            }]
        );
        sim.make_healthy("r2");
        sim.advance(10 * SEC);
        let s = sim.tick();
        assert_eq!(sim.d.phase, Phase::AwaitingPromotion);
        assert_eq!(
            s.effects.last(),
            Some(&Effect::Record(
                "1 canary of revision r2 healthy; promote to continue".into()
            ))
        );
        assert_eq!(
            sim.live("r1").len(),
            4,
            "canaries come on top of the old set"
        );

        let s = sim.send(Event::Promote);
        assert_eq!(
            s.effects,
            [
                Effect::SetPhase(Phase::Running),
                Effect::Record("promoted to step 1/2: 50% (2/4 replicas) on revision r2".into()),
                Effect::StopAllocations {
                    ids: vec!["r1-0".into()]
                },
                Effect::StartAllocations {
                    revision: "r2".into(),
                    count: 1
                },
            ]
        );
        sim.make_healthy("r2");
        sim.advance(10 * SEC);
        let s = sim.tick();
        assert!(s.effects.contains(&Effect::StopAllocations {
            ids: vec!["r1-1".into()]
        }));
        assert_eq!(sim.d.phase, Phase::AwaitingPromotion);
        assert_eq!(sim.live("r1").len(), 2);
        assert_eq!(sim.live("r2").len(), 2);

        sim.send(Event::Promote);
        sim.make_healthy("r2");
        sim.advance(10 * SEC);
        sim.tick();
        assert_eq!(sim.d.phase, Phase::Succeeded);
        assert_eq!(sim.live("r2").len(), 4);
        assert!(sim.live("r1").is_empty());
    }

    #[test]
    fn canary_auto_promote_runs_to_the_end() {
        let mut sim = Sim::new(canary(2, &[25, 50, 75], true, true), 10, 10);
        sim.run_healthy(600);
        assert_eq!(sim.d.phase, Phase::Succeeded);
        assert_eq!(sim.live("r2").len(), 10);
        let steps: Vec<String> = sim
            .records()
            .into_iter()
            .filter(|r| r.starts_with("promoted"))
            .collect();
        assert_eq!(
            steps,
            [
                "promoted to step 1/4: 25% (3/10 replicas) on revision r2",
                "promoted to step 2/4: 50% (5/10 replicas) on revision r2",
                "promoted to step 3/4: 75% (8/10 replicas) on revision r2",
                "promoted to step 4/4: 100% (10/10 replicas) on revision r2",
            ]
        );
    }

    /// Steps asked about with [`Effect::AnalyzeCanary`] since `from`.
    fn asked(sim: &Sim, from: usize) -> Vec<usize> {
        sim.effects[from..]
            .iter()
            .filter_map(|e| match e {
                Effect::AnalyzeCanary { stage } => Some(*stage),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn canary_analysis_gates_every_promotion() {
        let mut sim = Sim::new(canary(1, &[50], true, true), 4, 4);
        sim.d = sim.d.clone().with_canary_analysis();
        sim.run_healthy(100);
        // The canary is healthy, but nothing moves without a verdict.
        assert_eq!(sim.d.progress, Progress::Canary { stage: 0 });
        let questions = asked(&sim, 0);
        assert!(
            !questions.is_empty() && questions.iter().all(|s| *s == 0),
            "{questions:?}"
        );
        let seen = sim.effects.len();
        sim.tick();
        assert!(
            asked(&sim, seen).is_empty(),
            "asked again before the retry time"
        );
        sim.send(Event::CanaryVerdict {
            stage: 0,
            verdict: CanaryVerdict::Promote("policy health: 1/1 healthy".into()),
        });
        assert_eq!(sim.d.progress, Progress::Canary { stage: 1 });
        // A stale verdict for a step already passed changes nothing.
        let before = sim.d.clone();
        sim.send(Event::CanaryVerdict {
            stage: 0,
            verdict: CanaryVerdict::Rollback("late".into()),
        });
        assert_eq!(sim.d, before);
        sim.run_healthy(100);
        assert_eq!(sim.d.progress, Progress::Canary { stage: 1 });
        sim.send(Event::CanaryVerdict {
            stage: 1,
            verdict: CanaryVerdict::Promote("fine".into()),
        });
        sim.run_healthy(600);
        assert_eq!(sim.d.phase, Phase::Succeeded);
        assert!(
            sim.records()
                .contains(&"canary analysis of step 1: promote (fine)".to_owned())
        );
    }

    #[test]
    fn canary_analysis_wait_asks_again_later_and_records_once() {
        let mut sim = Sim::new(canary(1, &[], false, true), 3, 3);
        sim.d = sim.d.clone().with_canary_analysis();
        sim.run_healthy(100);
        for _ in 0..2 {
            sim.send(Event::CanaryVerdict {
                stage: 0,
                verdict: CanaryVerdict::Wait("too few requests".into()),
            });
        }
        let waits = sim
            .records()
            .iter()
            .filter(|r| r.contains("wait (too few requests)"))
            .count();
        assert_eq!(waits, 1);
        assert_eq!(
            sim.d.phase,
            Phase::Running,
            "manual promotion is offered only after analysis"
        );
        let seen = sim.effects.len();
        sim.advance(ANALYSIS_RETRY_MS);
        sim.tick();
        assert_eq!(asked(&sim, seen), [0]);
        sim.send(Event::CanaryVerdict {
            stage: 0,
            verdict: CanaryVerdict::Promote("ok".into()),
        });
        assert_eq!(sim.d.phase, Phase::AwaitingPromotion);
    }

    #[test]
    fn canary_analysis_rollback_reverts() {
        let mut sim = Sim::new(canary(1, &[50], true, true), 4, 4);
        sim.d = sim.d.clone().with_canary_analysis();
        sim.run_healthy(100);
        sim.send(Event::CanaryVerdict {
            stage: 0,
            verdict: CanaryVerdict::Rollback("policy errors: 3 restarts".into()),
        });
        assert!(
            matches!(sim.d.phase, Phase::Reverting | Phase::Reverted),
            "{}",
            sim.d.phase
        );
        assert!(
            sim.records().iter().any(|r| r.contains(
                "canary analysis of the canaries said roll back: policy errors: 3 restarts"
            )),
            "{:?}",
            sim.records()
        );
        sim.run_healthy(600);
        assert_eq!(sim.d.phase, Phase::Reverted);
    }

    #[test]
    fn analysis_is_only_for_canaries() {
        let d = Deployment::new("d", "web", rolling(1, 0, true), 2, None, "r2", T0)
            .with_canary_analysis();
        assert!(!d.canary_analysis.required);
    }

    #[test]
    fn canary_step_shares_round_up_and_never_go_below_the_canaries() {
        let sim = Sim::new(canary(3, &[10, 33, 100], false, true), 7, 7);
        let m = Machine {
            d: sim.d.clone(),
            obs: &Observed::default(),
            now: 0,
            effects: vec![],
            wake: None,
        };
        let UpdateStrategy::Canary(c) = &sim.d.strategy else {
            unreachable!()
        };
        let counts: Vec<(u32, u32)> = (0..4)
            .map(|stage| {
                let g = m.canary_goal(c, stage);
                (g.target_count, g.outgoing_keep)
            })
            .collect();
        assert_eq!(counts, [(3, 7), (3, 4), (3, 4), (7, 0)]);
        assert_eq!(Machine::canary_steps(c), [10, 33, 100]);
        let no_steps = Canary {
            steps: vec![],
            ..c.clone()
        };
        assert_eq!(Machine::canary_steps(&no_steps), [100]);
    }

    #[test]
    fn canary_failure_reverts_to_full_old_count() {
        let mut sim = Sim::new(canary(1, &[50], false, true), 4, 4);
        sim.tick();
        sim.make_healthy("r2");
        sim.advance(10 * SEC);
        sim.tick();
        sim.send(Event::Promote); // r1-0 stopped, r2-n2 started
        sim.set("r2-n2", Health::Failed);
        sim.tick();
        assert_eq!(sim.d.phase, Phase::Reverting);
        sim.run_healthy(200);
        assert_eq!(sim.d.phase, Phase::Reverted);
        assert_eq!(sim.live("r1").len(), 4);
        assert!(sim.live("r2").is_empty());
    }

    #[test]
    fn canary_failure_without_auto_revert_stops_the_canary() {
        let mut sim = Sim::new(canary(2, &[], false, false), 3, 3);
        sim.tick();
        sim.set("r2-n1", Health::Healthy { since_ms: sim.now });
        sim.set("r2-n2", Health::Failed);
        let s = sim.tick();
        assert_eq!(
            s.effects[0],
            Effect::StopAllocations {
                ids: vec!["r2-n2".into()]
            }
        );
        assert!(matches!(sim.d.phase, Phase::Failed { .. }));
        assert_eq!(sim.live("r1").len(), 3);
    }

    #[test]
    fn boundary_holds_no_io_no_clock() {
        for (name, src) in [
            ("rollout.rs", include_str!("rollout.rs")),
            ("scheduler.rs", include_str!("scheduler.rs")),
        ] {
            let code = src.split("#[cfg(test)]").next().unwrap_or_default();
            for banned in [
                "tokio",
                "tonic",
                "sqlx",
                "bollard",
                "wasmtime",
                "SystemTime",
                "Instant",
                "rand::",
                "std::fs",
                "std::net::Tcp",
                "crate::store",
                "crate::fleet",
            ] {
                assert!(!code.contains(banned), "{name} mentions {banned}");
            }
        }
    }

    // ---------- randomized runs ----------

    /// SplitMix64: a seeded generator, so failures replay.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
    }

    #[derive(Clone, Copy)]
    enum Fate {
        HealthyAfter(i64),
        FailAfter(i64),
        Never,
    }

    #[test]
    fn randomized_rollouts_keep_their_invariants() {
        let mut outcomes: std::collections::BTreeMap<String, u32> = Default::default();
        for seed in 0..1000u64 {
            let mut rng = Rng(seed);
            let replicas = 1 + rng.below(6) as u32;
            let old = if rng.chance(15) { 0 } else { replicas };
            let auto_revert = rng.chance(60);
            let strategy = match rng.below(3) {
                0 => {
                    let surge = rng.below(3) as u32;
                    rolling(surge, rng.below(3) as u32, auto_revert)
                }
                1 => blue_green(rng.chance(50), rng.below(3) * 30, auto_revert),
                _ => {
                    let steps: Vec<u32> = match rng.below(3) {
                        0 => vec![],
                        1 => vec![50],
                        _ => vec![20, 60, 100],
                    };
                    canary(1 + rng.below(2) as u32, &steps, rng.chance(50), auto_revert)
                }
            };
            let bad_new = rng.below(100);
            let mut sim = Sim::new(strategy, replicas, old);
            let mut fates: std::collections::BTreeMap<String, Fate> = Default::default();
            let mut ended_at = None;
            for i in 0..3000 {
                // Allocations the controller started get a fate.
                for a in &sim.allocs {
                    if fates.contains_key(&a.id) {
                        continue;
                    }
                    let fate = if a.revision == "r2" && rng.below(100) < bad_new {
                        if rng.chance(50) {
                            Fate::FailAfter(rng.below(80) as i64 * SEC)
                        } else {
                            Fate::Never
                        }
                    } else {
                        Fate::HealthyAfter(rng.below(40) as i64 * SEC)
                    };
                    fates.insert(a.id.clone(), fate);
                }
                let now = sim.now;
                let mut changed = None;
                for a in sim.allocs.iter_mut() {
                    if !a.live() {
                        continue;
                    }
                    let age = now - a.created_at_ms;
                    let new_health = match fates.get(&a.id) {
                        Some(Fate::HealthyAfter(t)) if age >= *t && !a.healthy() => {
                            Some(Health::Healthy { since_ms: now })
                        }
                        Some(Fate::FailAfter(t)) if age >= *t => Some(Health::Failed),
                        Some(Fate::Never) if a.health == Health::Pending => Some(Health::Starting),
                        _ => None,
                    };
                    if let Some(h) = new_health {
                        a.health = h;
                        changed = Some(a.id.clone());
                    }
                }
                // Stopping allocations drain and stop.
                for a in sim.allocs.iter_mut() {
                    if a.stopping && a.health != Health::Stopped && rng.chance(50) {
                        a.health = Health::Stopped;
                    }
                }
                let event = match rng.below(100) {
                    _ if sim.d.phase == Phase::Paused => {
                        if rng.chance(20) {
                            Event::Resume
                        } else {
                            Event::Tick
                        }
                    }
                    _ if sim.d.phase == Phase::AwaitingPromotion && rng.chance(30) => {
                        Event::Promote
                    }
                    0 => Event::Pause,
                    1 => Event::Cancel,
                    2 => Event::Rollback,
                    _ => match changed {
                        Some(id) => Event::AllocationUpdated { id },
                        None => Event::Tick,
                    },
                };
                let _ = sim.try_send(event);
                if sim.d.phase.is_terminal() {
                    ended_at = Some(i);
                    break;
                }
                sim.advance(SEC * (1 + rng.below(5) as i64));
            }
            let ctx = format!("seed {seed}: {:?}\n{:#?}", sim.d, sim.records());
            assert!(ended_at.is_some(), "never ended: {ctx}");
            // Where each outcome leaves the service.
            let r = replicas as usize;
            match &sim.d.phase {
                Phase::Succeeded => {
                    assert_eq!(sim.live("r2").len(), r, "{ctx}");
                    assert!(sim.live("r1").is_empty(), "{ctx}");
                }
                Phase::Reverted => {
                    assert!(sim.live("r2").is_empty(), "{ctx}");
                    assert_eq!(sim.live("r1").len(), r, "{ctx}");
                }
                Phase::Cancelled => {
                    assert!(sim.live("r2").is_empty(), "{ctx}");
                    assert_eq!(sim.live("r1").len(), if old > 0 { r } else { 0 }, "{ctx}");
                }
                Phase::Failed { reason } => {
                    assert!(!reason.is_empty());
                    // Nothing unhealthy of the new revision is left running.
                    assert!(
                        sim.live("r2").iter().all(|a| a.healthy())
                            || sim.d.revert_started_ms.is_some(),
                        "{ctx}"
                    );
                    if matches!(sim.d.strategy, UpdateStrategy::BlueGreen(_)) {
                        assert!(sim.live("r2").is_empty(), "{ctx}");
                        assert_eq!(sim.live("r1").len(), if old > 0 { r } else { 0 }, "{ctx}");
                    }
                }
                other => panic!("ended in {other}: {ctx}"),
            }
            *outcomes.entry(phase_name(&sim.d.phase)).or_insert(0) += 1;
        }
        // Every ending is exercised.
        let kinds: Vec<&str> = outcomes.keys().map(String::as_str).collect();
        assert_eq!(
            kinds,
            ["cancelled", "failed", "reverted", "succeeded"],
            "{outcomes:?}"
        );
        assert!(outcomes.values().all(|n| *n >= 20), "{outcomes:?}");
    }

    fn phase_name(p: &Phase) -> String {
        p.to_string()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned()
    }
}
