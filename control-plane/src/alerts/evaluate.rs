//! Rule evaluation, the heart of alerting: a pure function over (what was
//! observed, the rules, the previous state of every alert series, the
//! silences and acknowledgements, now) returning the new state, the
//! lifecycle changes to record and the notifications to send.
//!
//! A series is one rule applied to one subject (a host, an allocation, a
//! service), identified by a fingerprint of the rule name and the subject's
//! labels, so the same problem is one alert however often it is seen
//! (de-duplication). Its lifecycle:
//!
//! - the condition starts holding → *pending* (or *firing* at once when the
//!   rule has no `for`); a pending alert whose condition stops holding
//!   before `for` has passed is dropped without a word;
//! - held for `for` → *firing*: receivers are told, and told again every
//!   repeat interval unless the alert is acknowledged;
//! - the condition stopped holding for `keep_firing_for` → *resolved*:
//!   receivers that were told it fired are told it resolved.
//!
//! Events (an OOM kill, a failed deployment) hold for the one evaluation
//! that first sees them, so they fire at once and resolve after
//! `keep_firing_for`; an event already seen (same key) never fires twice.
//!
//! A subject that cannot be read (an offline host has no fresh sample)
//! keeps its series as it is: neither fires nor resolves. A subject that
//! is gone (a removed allocation, a revoked host) resolves.
//!
//! Flapping: a series that started firing `flap_threshold` times within
//! `flap_window` is *flapping*; while it is, receivers told it was firing
//! are not told it resolved (they would get a storm of firing/resolved
//! pairs); once it has calmed down they get the resolution. Silences stop
//! notifications of matching alerts; receivers told an alert was firing
//! still hear when it resolves.
//!
//! What receivers were told is part of the state (`told_firing`,
//! `last_notified_ms`), so a control plane that restarts with its state
//! from the store sends nothing twice.

use super::rules::{Labels, Rule, Severity};
use super::silences::{self, Silence};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// What a signal read for one subject at this evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    /// A value, compared with the rule's threshold.
    Level(f64),
    /// The latest event of the subject: `key` tells events apart (a
    /// deployment id, a restart count), `at_ms` is when it happened.
    Event { key: String, at_ms: i64 },
    /// The subject exists but there is nothing to read now (a host that
    /// is offline, or not yet reconnected after a control-plane restart).
    /// No data is not good news: the series stays as it is.
    Unknown,
}

/// One subject's reading of a rule's signal.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The subject's labels (host, hostname, region, service, …): with the
    /// rule name, they identify the alert.
    pub labels: Labels,
    pub reading: Reading,
    /// The reading in words, for people: `cpu 93.2 % on web-1 (eu-west)`.
    pub detail: String,
}

/// Where a series stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Inactive,
    Pending,
    Firing,
}

/// Everything evaluation remembers about one series between evaluations;
/// stored as is, so a restart continues where it left off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesState {
    pub fingerprint: String,
    pub rule: String,
    /// The subject's labels (without alertname and severity).
    pub labels: Labels,
    pub severity: Severity,
    pub phase: Phase,
    /// The latest alert instance of this series (the pending or firing one,
    /// or the last that resolved).
    pub alert_id: Option<String>,
    /// When the condition started holding (the instance's start).
    pub active_since_ms: Option<i64>,
    pub firing_since_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
    /// The last evaluation at which the condition held (kept up to date
    /// only for rules with a `keep_firing_for`).
    pub last_active_ms: Option<i64>,
    pub value: f64,
    pub summary: String,
    /// Receivers were told it fires and not yet that it resolved.
    pub told_firing: bool,
    pub last_notified_ms: Option<i64>,
    /// When the series started firing, within the flap window.
    #[serde(default)]
    pub firing_starts: Vec<i64>,
    #[serde(default)]
    pub flapping: bool,
    /// The key of the latest event seen (event rules).
    #[serde(default)]
    pub event_key: Option<String>,
    /// The silence that holds its notifications back, while one does.
    #[serde(default)]
    pub silenced_by: Option<String>,
    /// When its instance was last recorded (value-only changes are
    /// recorded at most every [`RECORD_VALUE_EVERY_MS`]).
    #[serde(default)]
    pub recorded_ms: Option<i64>,
}

/// How often a pending or firing alert whose only change is its value (a
/// CPU reading, an offline host's silence growing) is recorded again.
pub const RECORD_VALUE_EVERY_MS: i64 = 60_000;

/// The state without what changes at every reading: two states equal in
/// this view need not be stored again.
fn lasting(s: &SeriesState) -> SeriesState {
    SeriesState {
        value: 0.0,
        summary: String::new(),
        ..s.clone()
    }
}

impl SeriesState {
    fn new(fingerprint: String, rule: &Rule, labels: Labels) -> Self {
        SeriesState {
            fingerprint,
            rule: rule.name.clone(),
            labels,
            severity: rule.severity,
            phase: Phase::Inactive,
            alert_id: None,
            active_since_ms: None,
            firing_since_ms: None,
            resolved_at_ms: None,
            last_active_ms: None,
            value: 0.0,
            summary: String::new(),
            told_firing: false,
            last_notified_ms: None,
            firing_starts: Vec::new(),
            flapping: false,
            event_key: None,
            silenced_by: None,
            recorded_ms: None,
        }
    }

    /// The alert's labels: the subject's plus `alertname` and `severity`.
    pub fn alert_labels(&self) -> Labels {
        let mut labels = self.labels.clone();
        labels.insert("alertname".into(), self.rule.clone());
        labels.insert("severity".into(), self.severity.as_str().into());
        labels
    }

    /// The state of its latest instance as people see it.
    pub fn status(&self) -> AlertStatus {
        match self.phase {
            Phase::Pending => AlertStatus::Pending,
            Phase::Firing => AlertStatus::Firing,
            Phase::Inactive => AlertStatus::Resolved,
        }
    }

    /// Its latest instance as a record (for the history and notifications).
    pub fn snapshot(&self, condition: &str) -> AlertSnapshot {
        AlertSnapshot {
            id: self.alert_id.clone().unwrap_or_default(),
            fingerprint: self.fingerprint.clone(),
            rule: self.rule.clone(),
            severity: self.severity,
            labels: self.alert_labels(),
            summary: self.summary.clone(),
            condition: condition.to_owned(),
            value: self.value,
            status: self.status(),
            started_at_ms: self.active_since_ms.unwrap_or_default(),
            firing_since_ms: self.firing_since_ms,
            resolved_at_ms: match self.phase {
                Phase::Inactive => self.resolved_at_ms,
                _ => None,
            },
        }
    }
}

/// The state of an alert instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Pending,
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Pending => "pending",
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// An alert instance as recorded and sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertSnapshot {
    pub id: String,
    pub fingerprint: String,
    pub rule: String,
    pub severity: Severity,
    /// Including `alertname` and `severity`.
    pub labels: Labels,
    pub summary: String,
    /// The rule's condition in words (`cpu > 80 % for 5m`).
    pub condition: String,
    pub value: f64,
    pub status: AlertStatus,
    pub started_at_ms: i64,
    pub firing_since_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
}

/// A lifecycle change to record in an alert's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    Pending,
    Firing,
    /// A pending alert whose condition stopped holding before `for`.
    Cleared,
    Resolved,
    FlappingStarted,
    FlappingStopped,
    Silenced {
        silence_id: String,
    },
    Unsilenced,
}

impl ChangeKind {
    /// The history line.
    pub fn describe(&self) -> String {
        match self {
            ChangeKind::Pending => "pending: the condition holds".to_owned(),
            ChangeKind::Firing => "firing".to_owned(),
            ChangeKind::Cleared => "cleared before it fired".to_owned(),
            ChangeKind::Resolved => "resolved".to_owned(),
            ChangeKind::FlappingStarted => {
                "flapping: resolutions are held back until it calms down".to_owned()
            }
            ChangeKind::FlappingStopped => "stopped flapping".to_owned(),
            ChangeKind::Silenced { silence_id } => {
                format!("notifications held back by silence {silence_id}")
            }
            ChangeKind::Unsilenced => "no longer silenced".to_owned(),
        }
    }
}

/// One change of one alert instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub alert_id: String,
    pub kind: ChangeKind,
    pub at_ms: i64,
}

/// Why receivers are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationKind {
    Firing,
    /// Still firing, told again after the repeat interval.
    Repeat,
    Resolved,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Firing => "firing",
            NotificationKind::Repeat => "repeat",
            NotificationKind::Resolved => "resolved",
        }
    }
}

/// Something to tell receivers.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub kind: NotificationKind,
    pub alert: AlertSnapshot,
}

/// Knobs of the lifecycle that are not per rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// How often receivers are reminded of an alert that keeps firing.
    pub repeat_interval_ms: i64,
    pub flap_window_ms: i64,
    /// Starts within the window that make a series flapping.
    pub flap_threshold: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            repeat_interval_ms: 4 * 3_600_000,
            flap_window_ms: 30 * 60_000,
            flap_threshold: 4,
        }
    }
}

/// What else an evaluation needs besides rules, observations and state.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub now_ms: i64,
    pub policy: &'a Policy,
    pub silences: &'a [Silence],
    /// Alert instances someone acknowledged (no repeats for them).
    pub acknowledged: &'a BTreeSet<String>,
}

/// What one evaluation decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Series whose state changed and must be stored.
    pub save: Vec<SeriesState>,
    /// Fingerprints of series there is nothing more to remember about.
    pub forget: Vec<String>,
    /// Alert instances to record (new, changed state, or a new value).
    pub alerts: Vec<AlertSnapshot>,
    pub changes: Vec<Change>,
    pub notifications: Vec<Notification>,
    /// Series firing now, for `/metrics`: (alertname, severity) → count.
    pub firing: BTreeMap<(String, Severity), usize>,
}

/// The series' fingerprint: the rule name and the subject's labels.
pub fn fingerprint(rule: &str, labels: &Labels) -> String {
    let mut hash = Sha256::new();
    hash.update(rule.as_bytes());
    for (k, v) in labels {
        hash.update(b"\0");
        hash.update(k.as_bytes());
        hash.update(b"=");
        hash.update(v.as_bytes());
    }
    hex::encode(&hash.finalize()[..8])
}

/// The id of the alert instance of series `fingerprint` that started at
/// `started_at_ms`: stable, so a restart names it the same.
pub fn alert_id(fingerprint: &str, started_at_ms: i64) -> String {
    let mut hash = Sha256::new();
    hash.update(fingerprint.as_bytes());
    hash.update(started_at_ms.to_be_bytes());
    hex::encode(&hash.finalize()[..6])
}

/// Evaluates every rule. Series of rules that were removed or disabled are
/// wound down: pending ones cleared, firing ones resolved.
pub fn evaluate(
    rules: &[Rule],
    observations: &BTreeMap<String, Vec<Observation>>,
    previous: &[SeriesState],
    ctx: Context<'_>,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut by_rule: BTreeMap<&str, BTreeMap<&str, &SeriesState>> = BTreeMap::new();
    for state in previous {
        by_rule
            .entry(state.rule.as_str())
            .or_default()
            .insert(state.fingerprint.as_str(), state);
    }
    let empty = Vec::new();
    for rule in rules.iter().filter(|r| r.enabled) {
        let seen = observations.get(&rule.name).unwrap_or(&empty);
        let before = by_rule.remove(rule.name.as_str()).unwrap_or_default();
        evaluate_rule(rule, seen, &before, ctx, &mut outcome);
    }
    for series in by_rule.into_values().flat_map(BTreeMap::into_values) {
        retire(series, ctx, &mut outcome);
    }
    outcome
}

/// Observations of one rule, one per fingerprint: for levels the worse
/// value, for events the latest.
fn deduplicate<'a>(rule: &Rule, seen: &'a [Observation]) -> BTreeMap<String, &'a Observation> {
    let mut merged: BTreeMap<String, &Observation> = BTreeMap::new();
    for observation in seen {
        let key = fingerprint(&rule.name, &observation.labels);
        let keep = match merged.get(&key) {
            None => true,
            Some(held) => match (&held.reading, &observation.reading) {
                (Reading::Level(a), Reading::Level(b)) => rule.op.worse(*a, *b) != *a,
                (Reading::Event { at_ms: a, .. }, Reading::Event { at_ms: b, .. }) => b > a,
                (Reading::Unknown, _) => true,
                _ => false,
            },
        };
        if keep {
            merged.insert(key, observation);
        }
    }
    merged
}

fn evaluate_rule(
    rule: &Rule,
    seen: &[Observation],
    before: &BTreeMap<&str, &SeriesState>,
    ctx: Context<'_>,
    outcome: &mut Outcome,
) {
    let observed = deduplicate(rule, seen);
    let mut fingerprints: BTreeSet<&str> = before.keys().copied().collect();
    fingerprints.extend(observed.keys().map(String::as_str));
    for fp in fingerprints {
        let previous = before.get(fp).copied();
        let observation = observed.get(fp).copied();
        if previous.is_none() && observation.is_none_or(|o| !opens(rule, o, ctx.now_ms)) {
            // Nothing remembered and nothing wrong: no state to keep.
            continue;
        }
        step(rule, previous, observation, fp, ctx, outcome);
    }
}

/// Whether an observation of a subject without state starts anything.
fn opens(rule: &Rule, observation: &Observation, now_ms: i64) -> bool {
    match &observation.reading {
        Reading::Level(value) => rule.breached_by(*value),
        // Remember every event seen, so it cannot fire later.
        Reading::Event { at_ms, .. } => now_ms - at_ms <= rule.keep_firing_for_ms,
        Reading::Unknown => false,
    }
}

/// One series, one evaluation.
fn step(
    rule: &Rule,
    previous: Option<&SeriesState>,
    observation: Option<&Observation>,
    fingerprint: &str,
    ctx: Context<'_>,
    outcome: &mut Outcome,
) {
    let now = ctx.now_ms;
    let mut s = previous.cloned().unwrap_or_else(|| {
        let labels = observation.map(|o| o.labels.clone()).unwrap_or_default();
        SeriesState::new(fingerprint.to_owned(), rule, labels)
    });
    s.severity = rule.severity;
    let mut changes = Vec::new();

    // None: the subject cannot be read now, so nothing changes.
    let holds = match observation.map(|o| &o.reading) {
        None => Some(false),
        Some(Reading::Unknown) => None,
        Some(Reading::Level(value)) => {
            s.value = *value;
            Some(rule.breached_by(*value))
        }
        Some(Reading::Event { key, at_ms }) => {
            let new = s.event_key.as_deref() != Some(key.as_str())
                && now - at_ms <= rule.keep_firing_for_ms;
            s.event_key = Some(key.clone());
            if new {
                s.value = 1.0;
            }
            Some(new)
        }
    };
    if let Some(observation) = observation
        && (holds == Some(true) || matches!(observation.reading, Reading::Level(_)))
    {
        s.summary.clone_from(&observation.detail);
    }

    let Some(holds) = holds else {
        let notification = decide_notification(&mut s, ctx, &mut changes);
        let keep = s.phase != Phase::Inactive || s.told_firing || !s.firing_starts.is_empty();
        let condition = rule.condition();
        record(
            previous,
            s,
            keep,
            &condition,
            changes,
            notification,
            now,
            outcome,
        );
        return;
    };
    match (s.phase, holds) {
        (Phase::Inactive, true) => {
            s.active_since_ms = Some(now);
            s.alert_id = Some(alert_id(fingerprint, now));
            s.firing_since_ms = None;
            s.resolved_at_ms = None;
            s.last_active_ms = Some(now);
            if rule.for_ms == 0 {
                fire(&mut s, now, &mut changes);
            } else {
                s.phase = Phase::Pending;
                changes.push(ChangeKind::Pending);
            }
        }
        (Phase::Pending, true) => {
            if now - s.active_since_ms.unwrap_or(now) >= rule.for_ms {
                fire(&mut s, now, &mut changes);
            }
        }
        (Phase::Pending, false) => {
            s.phase = Phase::Inactive;
            changes.push(ChangeKind::Cleared);
        }
        // Only `keep_firing_for` needs it: not updating it otherwise spares
        // the store a write per firing alert per evaluation.
        (Phase::Firing, true) if rule.keep_firing_for_ms > 0 => s.last_active_ms = Some(now),
        (Phase::Firing, true) => {}
        (Phase::Firing, false) => {
            if now - s.last_active_ms.unwrap_or(now) >= rule.keep_firing_for_ms {
                s.phase = Phase::Inactive;
                s.resolved_at_ms = Some(now);
                changes.push(ChangeKind::Resolved);
            }
        }
        (Phase::Inactive, false) => {}
    }

    track_flapping(&mut s, ctx, &mut changes);
    let notification = decide_notification(&mut s, ctx, &mut changes);
    let condition = rule.condition();
    let keep = s.phase != Phase::Inactive
        || s.told_firing
        || !s.firing_starts.is_empty()
        || (rule.signal.is_event() && observation.is_some());
    record(
        previous,
        s,
        keep,
        &condition,
        changes,
        notification,
        now,
        outcome,
    );
}

fn fire(s: &mut SeriesState, now: i64, changes: &mut Vec<ChangeKind>) {
    s.phase = Phase::Firing;
    s.last_active_ms = Some(now);
    s.firing_since_ms = Some(now);
    s.firing_starts.push(now);
    changes.push(ChangeKind::Firing);
}

fn track_flapping(s: &mut SeriesState, ctx: Context<'_>, changes: &mut Vec<ChangeKind>) {
    let window_start = ctx.now_ms - ctx.policy.flap_window_ms;
    s.firing_starts.retain(|at| *at > window_start);
    let flapping = s.firing_starts.len() >= ctx.policy.flap_threshold.max(2);
    if flapping != s.flapping {
        s.flapping = flapping;
        changes.push(if flapping {
            ChangeKind::FlappingStarted
        } else {
            ChangeKind::FlappingStopped
        });
    }
}

/// Compares what receivers should know with what they were told.
fn decide_notification(
    s: &mut SeriesState,
    ctx: Context<'_>,
    changes: &mut Vec<ChangeKind>,
) -> Option<NotificationKind> {
    let now = ctx.now_ms;
    // While flapping, receivers told it fires keep that picture.
    let should_know_firing = s.phase == Phase::Firing || (s.flapping && s.told_firing);
    if !should_know_firing {
        s.silenced_by = None;
        if s.told_firing {
            s.told_firing = false;
            s.last_notified_ms = Some(now);
            return Some(NotificationKind::Resolved);
        }
        return None;
    }
    let silence = silences::silencing(ctx.silences, &s.alert_labels(), now);
    match (silence, s.silenced_by.take()) {
        (Some(silence), held_by) => {
            if held_by.as_deref() != Some(silence.id.as_str()) {
                changes.push(ChangeKind::Silenced {
                    silence_id: silence.id.clone(),
                });
            }
            s.silenced_by = Some(silence.id.clone());
            return None;
        }
        (None, Some(_)) => changes.push(ChangeKind::Unsilenced),
        (None, None) => {}
    }
    if !s.told_firing {
        s.told_firing = true;
        s.last_notified_ms = Some(now);
        return Some(NotificationKind::Firing);
    }
    let acknowledged = s
        .alert_id
        .as_ref()
        .is_some_and(|id| ctx.acknowledged.contains(id));
    let due = now - s.last_notified_ms.unwrap_or(i64::MIN / 2) >= ctx.policy.repeat_interval_ms;
    if s.phase == Phase::Firing && due && !acknowledged {
        s.last_notified_ms = Some(now);
        return Some(NotificationKind::Repeat);
    }
    None
}

#[allow(clippy::too_many_arguments)]
fn record(
    previous: Option<&SeriesState>,
    s: SeriesState,
    keep: bool,
    condition: &str,
    changes: Vec<ChangeKind>,
    notification: Option<NotificationKind>,
    now: i64,
    outcome: &mut Outcome,
) {
    if s.phase == Phase::Firing {
        *outcome
            .firing
            .entry((s.rule.clone(), s.severity))
            .or_default() += 1;
    }
    let mut s = s;
    let news = !changes.is_empty()
        || previous.is_none_or(|p| {
            p.alert_id != s.alert_id || p.phase != s.phase || p.severity != s.severity
        });
    let drifted = previous.is_some_and(|p| p.value != s.value || p.summary != s.summary)
        && s.phase != Phase::Inactive
        && now - s.recorded_ms.unwrap_or(i64::MIN / 2) >= RECORD_VALUE_EVERY_MS;
    if s.alert_id.is_some() && (news || drifted) {
        s.recorded_ms = Some(now);
        outcome.alerts.push(s.snapshot(condition));
    }
    if let Some(id) = &s.alert_id {
        outcome
            .changes
            .extend(changes.into_iter().map(|kind| Change {
                alert_id: id.clone(),
                kind,
                at_ms: now,
            }));
    }
    if let Some(kind) = notification {
        outcome.notifications.push(Notification {
            kind,
            alert: s.snapshot(condition),
        });
    }
    if keep {
        if previous.map(lasting) != Some(lasting(&s)) {
            outcome.save.push(s);
        }
    } else if previous.is_some() {
        outcome.forget.push(s.fingerprint);
    }
}

/// Winds down a series whose rule is gone or disabled.
fn retire(previous: &SeriesState, ctx: Context<'_>, outcome: &mut Outcome) {
    let now = ctx.now_ms;
    let mut s = previous.clone();
    let mut changes = Vec::new();
    match s.phase {
        Phase::Pending => changes.push(ChangeKind::Cleared),
        Phase::Firing => {
            s.resolved_at_ms = Some(now);
            changes.push(ChangeKind::Resolved);
        }
        Phase::Inactive => {}
    }
    s.phase = Phase::Inactive;
    let notification = s.told_firing.then(|| {
        s.told_firing = false;
        NotificationKind::Resolved
    });
    let condition = format!("rule {} was removed or disabled", s.rule);
    record(
        Some(previous),
        s,
        false,
        &condition,
        changes,
        notification,
        now,
        outcome,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::rules::{Comparison, RuleDefinition, Signal};
    use crate::alerts::silences::Matcher;

    const T0: i64 = 1_800_000_000_000;
    const S: i64 = 1_000;
    const MIN: i64 = 60 * S;

    fn cpu_rule(threshold: f64, for_ms: i64) -> Rule {
        Rule {
            name: "HostCpuHigh".into(),
            signal: "cpu".parse().unwrap(),
            op: Comparison::Above,
            threshold,
            for_ms,
            keep_firing_for_ms: 0,
            severity: Severity::Warning,
            selector: Default::default(),
            enabled: true,
            builtin: true,
        }
    }

    fn oom_rule() -> Rule {
        RuleDefinition {
            name: "AllocationOomKilled".into(),
            metric: "oom_kill".into(),
            keep_firing_for: Some("10m".into()),
            ..RuleDefinition::default()
        }
        .validate(true)
        .unwrap()
    }

    fn host(id: &str) -> Labels {
        [
            ("host".to_owned(), id.to_owned()),
            ("region".to_owned(), "eu-west".to_owned()),
        ]
        .into()
    }

    fn level(id: &str, value: f64) -> Observation {
        Observation {
            labels: host(id),
            reading: Reading::Level(value),
            detail: format!("cpu {value} % on {id}"),
        }
    }

    fn event(alloc: &str, key: &str, at_ms: i64) -> Observation {
        Observation {
            labels: [("allocation".to_owned(), alloc.to_owned())].into(),
            reading: Reading::Event {
                key: key.to_owned(),
                at_ms,
            },
            detail: format!("allocation {alloc} was OOM-killed ({key})"),
        }
    }

    /// Runs evaluations one after another, keeping the state as the store
    /// would (saved series replace, forgotten ones go).
    struct Harness {
        rules: Vec<Rule>,
        state: BTreeMap<String, SeriesState>,
        policy: Policy,
        silences: Vec<Silence>,
        acknowledged: BTreeSet<String>,
        sent: Vec<(i64, NotificationKind, String)>,
        changes: Vec<(i64, ChangeKind)>,
        last: Outcome,
    }

    impl Harness {
        fn new(rules: Vec<Rule>) -> Self {
            Harness {
                rules,
                state: BTreeMap::new(),
                policy: Policy::default(),
                silences: Vec::new(),
                acknowledged: BTreeSet::new(),
                sent: Vec::new(),
                changes: Vec::new(),
                last: Outcome::default(),
            }
        }

        fn run(&mut self, now: i64, seen: Vec<Observation>) -> &Outcome {
            let mut observations = BTreeMap::new();
            for rule in &self.rules {
                observations.insert(rule.name.clone(), seen.clone());
            }
            let previous: Vec<SeriesState> = self.state.values().cloned().collect();
            let outcome = evaluate(
                &self.rules,
                &observations,
                &previous,
                Context {
                    now_ms: now,
                    policy: &self.policy,
                    silences: &self.silences,
                    acknowledged: &self.acknowledged,
                },
            );
            for s in &outcome.save {
                self.state.insert(s.fingerprint.clone(), s.clone());
            }
            for fp in &outcome.forget {
                self.state.remove(fp);
            }
            for n in &outcome.notifications {
                self.sent.push((now, n.kind, n.alert.summary.clone()));
            }
            for c in &outcome.changes {
                self.changes.push((c.at_ms, c.kind.clone()));
            }
            self.last = outcome;
            &self.last
        }

        /// Runs every `step` from `from` to `to` (inclusive) with the same reading.
        fn hold(&mut self, from: i64, to: i64, step: i64, seen: impl Fn(i64) -> Vec<Observation>) {
            let mut t = from;
            while t <= to {
                self.run(t, seen(t));
                t += step;
            }
        }

        fn kinds(&self) -> Vec<NotificationKind> {
            self.sent.iter().map(|(_, k, _)| *k).collect()
        }

        fn only(&self) -> &SeriesState {
            assert_eq!(self.state.len(), 1, "{:#?}", self.state);
            self.state.values().next().unwrap()
        }
    }

    use NotificationKind::{Firing, Repeat, Resolved};

    #[test]
    fn a_breach_held_for_the_duration_fires_once() {
        let mut h = Harness::new(vec![cpu_rule(80.0, 5 * MIN)]);
        h.run(T0, vec![level("h1", 95.0)]);
        assert_eq!(h.only().phase, Phase::Pending);
        assert_eq!(h.last.alerts[0].status, AlertStatus::Pending);
        assert!(h.sent.is_empty());
        h.hold(T0 + 10 * S, T0 + 5 * MIN - S, 10 * S, |_| {
            vec![level("h1", 90.0)]
        });
        assert_eq!(
            h.only().phase,
            Phase::Pending,
            "not yet: 5m have not passed"
        );
        h.run(T0 + 5 * MIN, vec![level("h1", 91.0)]);
        assert_eq!(h.only().phase, Phase::Firing);
        assert_eq!(h.kinds(), vec![Firing]);
        assert_eq!(h.sent[0].2, "cpu 91 % on h1");
        let alert = &h.last.notifications[0].alert;
        assert_eq!(alert.started_at_ms, T0);
        assert_eq!(alert.firing_since_ms, Some(T0 + 5 * MIN));
        assert_eq!(alert.labels["alertname"], "HostCpuHigh");
        assert_eq!(alert.labels["severity"], "warning");
        assert_eq!(alert.condition, "cpu > 80 % for 5m");
        // Keeps firing without telling again before the repeat interval.
        h.hold(T0 + 5 * MIN + 10 * S, T0 + 30 * MIN, 10 * S, |_| {
            vec![level("h1", 99.0)]
        });
        assert_eq!(h.kinds(), vec![Firing]);
        assert_eq!(
            h.last.firing[&("HostCpuHigh".to_owned(), Severity::Warning)],
            1
        );
    }

    #[test]
    fn a_pending_alert_that_clears_before_for_says_nothing() {
        let mut h = Harness::new(vec![cpu_rule(80.0, 5 * MIN)]);
        h.hold(T0, T0 + 4 * MIN, 10 * S, |_| vec![level("h1", 95.0)]);
        let id = h.only().alert_id.clone().unwrap();
        h.run(T0 + 4 * MIN + 10 * S, vec![level("h1", 50.0)]);
        assert!(h.state.is_empty(), "nothing left to remember");
        assert_eq!(h.last.forget.len(), 1);
        assert!(h.sent.is_empty());
        assert_eq!(
            h.changes.iter().map(|(_, k)| k.clone()).collect::<Vec<_>>(),
            vec![ChangeKind::Pending, ChangeKind::Cleared]
        );
        assert_eq!(h.last.changes[0].alert_id, id);
        // A new breach starts the wait over, as a new instance.
        h.run(T0 + 5 * MIN, vec![level("h1", 95.0)]);
        assert_eq!(h.only().phase, Phase::Pending);
        assert_ne!(h.only().alert_id.as_deref(), Some(id.as_str()));
        h.run(T0 + 9 * MIN, vec![level("h1", 95.0)]);
        assert_eq!(h.only().phase, Phase::Pending, "4m into the new wait");
    }

    #[test]
    fn a_value_at_the_threshold_does_not_breach_a_strict_comparison() {
        let mut h = Harness::new(vec![cpu_rule(80.0, 0)]);
        h.run(T0, vec![level("h1", 80.0)]);
        assert!(h.state.is_empty() && h.sent.is_empty());
        h.run(T0 + S, vec![level("h1", 80.1)]);
        assert_eq!(h.kinds(), vec![Firing], "no `for`: fires at once");
    }

    #[test]
    fn firing_resolves_when_the_condition_stops_and_tells_receivers() {
        let mut h = Harness::new(vec![cpu_rule(80.0, MIN)]);
        h.hold(T0, T0 + 2 * MIN, 10 * S, |_| vec![level("h1", 95.0)]);
        let id = h.only().alert_id.clone().unwrap();
        h.run(T0 + 2 * MIN + 10 * S, vec![level("h1", 20.0)]);
        assert_eq!(h.kinds(), vec![Firing, Resolved]);
        let resolved = &h.last.notifications[0].alert;
        assert_eq!(resolved.status, AlertStatus::Resolved);
        assert_eq!(resolved.id, id);
        assert_eq!(resolved.resolved_at_ms, Some(T0 + 2 * MIN + 10 * S));
        assert_eq!(resolved.value, 20.0, "the value that resolved it");
        assert!(h.last.firing.is_empty());
        // Remembered only for flap detection now.
        assert_eq!(h.only().phase, Phase::Inactive);
        assert!(!h.only().told_firing);
    }

    #[test]
    fn a_subject_that_disappears_resolves() {
        let mut h = Harness::new(vec![cpu_rule(80.0, 0)]);
        h.run(T0, vec![level("h1", 95.0)]);
        h.run(T0 + 10 * S, vec![]);
        assert_eq!(h.kinds(), vec![Firing, Resolved]);
    }

    fn unknown(id: &str) -> Observation {
        Observation {
            labels: host(id),
            reading: Reading::Unknown,
            detail: format!("no recent sample from {id}"),
        }
    }

    #[test]
    fn a_subject_that_cannot_be_read_keeps_its_alert_as_it_is() {
        let mut h = Harness::new(vec![cpu_rule(80.0, 0)]);
        h.run(T0, vec![level("h1", 95.0)]);
        let id = h.only().alert_id.clone();
        // Offline (or not reconnected after a restart) for a while: no data
        // is not good news.
        h.hold(T0 + 10 * S, T0 + 5 * MIN, 10 * S, |_| vec![unknown("h1")]);
        assert_eq!(h.kinds(), vec![Firing]);
        assert_eq!(h.only().phase, Phase::Firing);
        assert_eq!(
            h.only().summary,
            "cpu 95 % on h1",
            "the last known reading stays"
        );
        h.run(T0 + 6 * MIN, vec![level("h1", 96.0)]);
        assert_eq!(h.kinds(), vec![Firing], "the same alert goes on");
        assert_eq!(h.only().alert_id, id);
        h.run(T0 + 7 * MIN, vec![level("h1", 10.0)]);
        assert_eq!(h.kinds(), vec![Firing, Resolved]);
    }

    #[test]
    fn an_unreadable_subject_neither_opens_nor_advances_a_pending_alert() {
        let mut h = Harness::new(vec![cpu_rule(80.0, MIN)]);
        h.run(T0, vec![unknown("h1")]);
        assert!(h.state.is_empty());
        h.run(T0 + S, vec![level("h1", 95.0)]);
        h.hold(T0 + 10 * S, T0 + 2 * MIN, 10 * S, |_| vec![unknown("h1")]);
        assert_eq!(h.only().phase, Phase::Pending, "no reading: it cannot fire");
        assert!(h.sent.is_empty());
        h.run(T0 + 3 * MIN, vec![level("h1", 95.0)]);
        assert_eq!(h.kinds(), vec![Firing], "the breach held when read again");
        // A reading and an unknown of the same subject: the reading wins.
        h.run(T0 + 4 * MIN, vec![unknown("h1"), level("h1", 10.0)]);
        assert_eq!(h.kinds(), vec![Firing, Resolved]);
    }

    #[test]
    fn keep_firing_for_rides_out_short_dips() {
        let mut rule = cpu_rule(80.0, 0);
        rule.keep_firing_for_ms = MIN;
        let mut h = Harness::new(vec![rule]);
        h.run(T0, vec![level("h1", 95.0)]);
        h.run(T0 + 10 * S, vec![level("h1", 10.0)]);
        h.run(T0 + 50 * S, vec![level("h1", 90.0)]);
        h.run(T0 + 60 * S, vec![level("h1", 10.0)]);
        h.run(T0 + 100 * S, vec![level("h1", 10.0)]);
        assert_eq!(
            h.kinds(),
            vec![Firing],
            "still within a minute of the last breach"
        );
        h.run(T0 + 110 * S, vec![level("h1", 10.0)]);
        assert_eq!(h.kinds(), vec![Firing, Resolved]);
    }

    #[test]
    fn a_firing_alert_repeats_after_the_interval_until_acknowledged() {
        let mut h = Harness::new(vec![cpu_rule(80.0, 0)]);
        h.policy.repeat_interval_ms = 10 * MIN;
        h.hold(T0, T0 + 25 * MIN, MIN, |_| vec![level("h1", 95.0)]);
        assert_eq!(h.kinds(), vec![Firing, Repeat, Repeat]);
        assert_eq!(
            h.sent
                .iter()
                .map(|(t, _, _)| (t - T0) / MIN)
                .collect::<Vec<_>>(),
            vec![0, 10, 20]
        );
        h.acknowledged.insert(h.only().alert_id.clone().unwrap());
        h.hold(T0 + 26 * MIN, T0 + 60 * MIN, MIN, |_| {
            vec![level("h1", 95.0)]
        });
        assert_eq!(h.kinds().len(), 3, "acknowledged: no more reminders");
        h.run(T0 + 61 * MIN, vec![]);
        assert_eq!(
            h.kinds().last(),
            Some(&Resolved),
            "but the resolution is told"
        );
    }

    #[test]
    fn the_same_problem_seen_twice_is_one_alert() {
        let mut h = Harness::new(vec![cpu_rule(80.0, 0)]);
        h.run(
            T0,
            vec![level("h1", 85.0), level("h1", 97.0), level("h2", 99.0)],
        );
        assert_eq!(h.state.len(), 2);
        assert_eq!(h.kinds(), vec![Firing, Firing]);
        let h1 = h.state.values().find(|s| s.labels["host"] == "h1").unwrap();
        assert_eq!(h1.value, 97.0, "the worse of the two readings");
        assert_eq!(h1.fingerprint, fingerprint("HostCpuHigh", &host("h1")));
        h.run(T0 + 10 * S, vec![level("h1", 90.0), level("h2", 99.0)]);
        assert_eq!(h.kinds().len(), 2, "still the same two alerts");
    }

    #[test]
    fn fingerprints_and_ids_are_stable_and_distinct() {
        assert_eq!(fingerprint("A", &host("h1")), fingerprint("A", &host("h1")));
        assert_ne!(fingerprint("A", &host("h1")), fingerprint("B", &host("h1")));
        assert_ne!(fingerprint("A", &host("h1")), fingerprint("A", &host("h2")));
        assert_eq!(fingerprint("A", &host("h1")).len(), 16);
        assert_ne!(alert_id("f", 1), alert_id("f", 2));
        assert_eq!(alert_id("f", 1).len(), 12);
    }

    #[test]
    fn flapping_holds_resolutions_back_until_it_calms_down() {
        let mut h = Harness::new(vec![cpu_rule(80.0, 0)]);
        h.policy.flap_threshold = 3;
        h.policy.flap_window_ms = 10 * MIN;
        // Up, down, up, down, up: the third start makes it flapping.
        for (i, value) in [95.0, 10.0, 95.0, 10.0, 95.0, 10.0, 95.0, 10.0]
            .iter()
            .enumerate()
        {
            h.run(T0 + i as i64 * MIN, vec![level("h1", *value)]);
        }
        assert_eq!(
            h.kinds(),
            vec![Firing, Resolved, Firing, Resolved, Firing],
            "after the third start, receivers keep seeing it firing"
        );
        assert!(h.only().flapping && h.only().told_firing);
        assert!(
            h.changes
                .iter()
                .any(|(_, k)| *k == ChangeKind::FlappingStarted)
        );
        // Quiet (resolved) long enough for the starts to leave the window.
        h.hold(T0 + 8 * MIN, T0 + 11 * MIN, MIN, |_| {
            vec![level("h1", 10.0)]
        });
        assert_eq!(
            h.kinds().last(),
            Some(&Firing),
            "the window still holds 3 starts"
        );
        h.run(T0 + 12 * MIN, vec![level("h1", 10.0)]);
        assert_eq!(h.kinds().last(), Some(&Resolved), "calm: now it is told");
        assert!(
            h.changes
                .iter()
                .any(|(_, k)| *k == ChangeKind::FlappingStopped)
        );
        h.run(T0 + 30 * MIN, vec![level("h1", 10.0)]);
        assert!(
            h.state.is_empty(),
            "forgotten once nothing is left in the window"
        );
    }

    #[test]
    fn flapping_faster_than_for_never_fires() {
        let mut h = Harness::new(vec![cpu_rule(80.0, MIN)]);
        for i in 0..60 {
            let value = if i % 4 == 3 { 10.0 } else { 95.0 };
            h.run(T0 + i * 15 * S, vec![level("h1", value)]);
        }
        assert!(h.sent.is_empty(), "never held for a whole minute");
    }

    #[test]
    fn a_silence_holds_notifications_back_and_its_end_releases_them() {
        let mut h = Harness::new(vec![cpu_rule(80.0, 0)]);
        h.silences.push(Silence {
            id: "sil1".into(),
            matchers: vec!["alertname=HostCpuHigh".parse::<Matcher>().unwrap()],
            starts_at_ms: T0,
            ends_at_ms: T0 + 10 * MIN,
            comment: "maintenance".into(),
            created_by: "user:alice".into(),
        });
        h.hold(T0, T0 + 9 * MIN, MIN, |_| vec![level("h1", 95.0)]);
        assert!(h.sent.is_empty());
        assert_eq!(h.only().phase, Phase::Firing, "it still fires");
        assert_eq!(h.only().silenced_by.as_deref(), Some("sil1"));
        assert_eq!(
            h.changes
                .iter()
                .filter(|(_, k)| matches!(k, ChangeKind::Silenced { .. }))
                .count(),
            1,
            "recorded once, not every evaluation"
        );
        h.run(T0 + 10 * MIN, vec![level("h1", 95.0)]);
        assert_eq!(h.kinds(), vec![Firing], "the silence expired");
        assert!(h.changes.iter().any(|(_, k)| *k == ChangeKind::Unsilenced));
    }

    #[test]
    fn a_silenced_alert_that_resolves_says_nothing_but_a_told_one_is_resolved() {
        let silence = |matcher: &str| Silence {
            id: "s".into(),
            matchers: vec![matcher.parse().unwrap()],
            starts_at_ms: T0,
            ends_at_ms: T0 + 60 * MIN,
            comment: "x".into(),
            created_by: "x".into(),
        };
        let mut h = Harness::new(vec![cpu_rule(80.0, 0)]);
        h.silences.push(silence("host=h1"));
        h.run(T0, vec![level("h1", 95.0)]);
        h.run(T0 + MIN, vec![level("h1", 10.0)]);
        assert!(h.sent.is_empty());

        let mut h = Harness::new(vec![cpu_rule(80.0, 0)]);
        h.run(T0, vec![level("h1", 95.0)]);
        h.silences.push(silence("host=h1"));
        h.run(T0 + MIN, vec![level("h1", 95.0)]);
        h.run(T0 + 2 * MIN, vec![level("h1", 10.0)]);
        assert_eq!(h.kinds(), vec![Firing, Resolved]);
    }

    #[test]
    fn silences_match_on_the_alert_labels_and_other_alerts_still_notify() {
        let mut h = Harness::new(vec![cpu_rule(80.0, 0)]);
        h.silences.push(Silence {
            id: "s".into(),
            matchers: vec![
                "host=h1".parse().unwrap(),
                "severity=warning".parse().unwrap(),
            ],
            starts_at_ms: T0,
            ends_at_ms: T0 + MIN,
            comment: "x".into(),
            created_by: "x".into(),
        });
        h.run(T0, vec![level("h1", 95.0), level("h2", 95.0)]);
        assert_eq!(h.sent.len(), 1);
        assert!(h.sent[0].2.contains("h2"));
    }

    #[test]
    fn a_restart_with_the_stored_state_sends_nothing_twice() {
        let rules = vec![cpu_rule(80.0, MIN)];
        let mut h = Harness::new(rules.clone());
        h.hold(T0, T0 + 2 * MIN, 10 * S, |_| vec![level("h1", 95.0)]);
        assert_eq!(h.kinds(), vec![Firing]);
        // The store keeps the state as JSON; a new process reads it back.
        let stored: Vec<String> = h
            .state
            .values()
            .map(|s| serde_json::to_string(s).unwrap())
            .collect();
        let mut again = Harness::new(rules);
        for text in stored {
            let s: SeriesState = serde_json::from_str(&text).unwrap();
            again.state.insert(s.fingerprint.clone(), s);
        }
        again.hold(T0 + 2 * MIN + 30 * S, T0 + 10 * MIN, 10 * S, |_| {
            vec![level("h1", 95.0)]
        });
        assert!(again.sent.is_empty(), "{:?}", again.sent);
        assert!(again.changes.is_empty(), "{:?}", again.changes);
        assert_eq!(
            again.only().alert_id,
            h.only().alert_id,
            "the same instance"
        );
        again.run(T0 + 11 * MIN, vec![]);
        assert_eq!(again.kinds(), vec![Resolved]);
    }

    #[test]
    fn a_restart_while_pending_keeps_the_wait() {
        let rules = vec![cpu_rule(80.0, 5 * MIN)];
        let mut h = Harness::new(rules.clone());
        h.hold(T0, T0 + 3 * MIN, MIN, |_| vec![level("h1", 95.0)]);
        let mut again = Harness::new(rules);
        again.state = h.state.clone();
        again.run(T0 + 5 * MIN, vec![level("h1", 95.0)]);
        assert_eq!(
            again.kinds(),
            vec![Firing],
            "5m after the first breach, not after the restart"
        );
    }

    #[test]
    fn events_fire_once_and_resolve_after_keep_firing_for() {
        let mut h = Harness::new(vec![oom_rule()]);
        h.run(T0, vec![event("a1", "restart-1", T0 - 2 * S)]);
        assert_eq!(h.kinds(), vec![Firing]);
        assert_eq!(h.sent[0].2, "allocation a1 was OOM-killed (restart-1)");
        // The same event seen again and again is not news.
        h.hold(T0 + 10 * S, T0 + 9 * MIN, 10 * S, |_| {
            vec![event("a1", "restart-1", T0 - 2 * S)]
        });
        assert_eq!(h.kinds(), vec![Firing]);
        h.run(T0 + 10 * MIN, vec![event("a1", "restart-1", T0 - 2 * S)]);
        assert_eq!(h.kinds(), vec![Firing, Resolved]);
        // Remembered while the subject still shows that event: no refire.
        h.hold(T0 + 11 * MIN, T0 + 20 * MIN, MIN, |_| {
            vec![event("a1", "restart-1", T0 - 2 * S)]
        });
        assert_eq!(h.kinds(), vec![Firing, Resolved]);
        // A new event fires again, as a new instance.
        h.run(T0 + 21 * MIN, vec![event("a1", "restart-2", T0 + 21 * MIN)]);
        assert_eq!(h.kinds(), vec![Firing, Resolved, Firing]);
    }

    #[test]
    fn a_new_event_while_firing_extends_it_without_a_second_notification() {
        let mut h = Harness::new(vec![oom_rule()]);
        h.run(T0, vec![event("a1", "1", T0)]);
        h.run(T0 + 8 * MIN, vec![event("a1", "2", T0 + 8 * MIN)]);
        h.run(T0 + 12 * MIN, vec![event("a1", "2", T0 + 8 * MIN)]);
        assert_eq!(
            h.kinds(),
            vec![Firing],
            "10m after the second event it is still firing"
        );
        assert!(h.only().summary.ends_with("(2)"), "{}", h.only().summary);
        h.run(T0 + 18 * MIN, vec![event("a1", "2", T0 + 8 * MIN)]);
        assert_eq!(h.kinds(), vec![Firing, Resolved]);
    }

    #[test]
    fn events_older_than_keep_firing_for_never_fire() {
        let mut h = Harness::new(vec![oom_rule()]);
        h.run(T0, vec![event("a1", "1", T0 - 11 * MIN)]);
        assert!(h.sent.is_empty());
        assert!(h.state.is_empty(), "nothing to remember about old news");
    }

    #[test]
    fn event_state_survives_a_restart() {
        let rules = vec![oom_rule()];
        let mut h = Harness::new(rules.clone());
        h.run(T0, vec![event("a1", "1", T0)]);
        let mut again = Harness::new(rules);
        again.state = h.state.clone();
        again.hold(T0 + MIN, T0 + 5 * MIN, MIN, |_| vec![event("a1", "1", T0)]);
        assert!(again.sent.is_empty());
    }

    #[test]
    fn disabling_or_removing_a_rule_resolves_its_alerts() {
        let mut h = Harness::new(vec![cpu_rule(80.0, 0)]);
        h.run(T0, vec![level("h1", 95.0)]);
        h.rules[0].enabled = false;
        h.run(T0 + MIN, vec![level("h1", 95.0)]);
        assert_eq!(h.kinds(), vec![Firing, Resolved]);
        assert!(h.state.is_empty());

        let mut h = Harness::new(vec![cpu_rule(80.0, MIN)]);
        h.run(T0, vec![level("h1", 95.0)]);
        h.rules.clear();
        h.run(T0 + 10 * S, vec![]);
        assert!(h.sent.is_empty(), "it was only pending");
        assert_eq!(
            h.changes.last().map(|(_, k)| k.clone()),
            Some(ChangeKind::Cleared)
        );
        assert!(h.state.is_empty());
    }

    #[test]
    fn tuning_a_rule_applies_at_the_next_evaluation() {
        let mut h = Harness::new(vec![cpu_rule(80.0, 0)]);
        h.run(T0, vec![level("h1", 85.0)]);
        h.rules[0].threshold = 90.0;
        h.rules[0].severity = Severity::Critical;
        h.run(T0 + 10 * S, vec![level("h1", 85.0)]);
        assert_eq!(h.kinds(), vec![Firing, Resolved]);
        assert_eq!(h.last.notifications[0].alert.severity, Severity::Critical);
    }

    #[test]
    fn only_changed_series_are_saved_and_only_changed_alerts_recorded() {
        let mut rule = cpu_rule(80.0, 0);
        rule.signal = Signal::OfflineSeconds;
        let mut h = Harness::new(vec![rule]);
        h.run(T0, vec![level("h1", 95.0)]);
        assert_eq!(h.last.save.len(), 1);
        assert_eq!(h.last.alerts.len(), 1);
        h.run(T0 + 10 * S, vec![level("h1", 95.0)]);
        assert!(h.last.save.is_empty(), "{:?}", h.last.save);
        assert!(h.last.alerts.is_empty());
        h.run(T0 + 20 * S, vec![level("h1", 105.0)]);
        assert!(
            h.last.save.is_empty(),
            "a new value alone is not worth a write"
        );
        assert!(h.last.alerts.is_empty());
        h.run(T0 + MIN, vec![level("h1", 106.0)]);
        assert_eq!(h.last.alerts.len(), 1, "but it is recorded once a minute");
        assert_eq!(h.last.alerts[0].value, 106.0);
        assert_eq!(h.last.save.len(), 1);
        assert!(h.last.changes.is_empty());
    }
}
