//! The alerting loops, started with the control plane: every few seconds
//! gather the facts (hosts from the fleet registry, allocations and
//! finished deployments from the store), evaluate every rule against the
//! stored series state, and store the outcome — new state, alert history
//! and the deliveries it decided — in one transaction; meanwhile post due
//! deliveries from the outbox. Everything decided here is decided by the
//! pure modules; this file only moves data.

use super::evaluate::{self, AlertSnapshot, ChangeKind, Context, Outcome, Policy, SeriesState};
use super::facts::{self, AllocationFacts, BackupPolicyFacts, DeploymentOutcome, Facts, HostFacts};
use super::notify::{self, Links, Payload};
use super::routing::{self, ALERTMANAGER_RESEND_MS, Channel, ChannelKind};
use super::rules::{Rule, Signal, builtin_rules};
use super::sender::Sender;
use super::silences::{Matcher, Silence};
use crate::deploy::controller::{DeployError, ReportedStatus};
use crate::state::ControlPlane;
use crate::store::{
    AlertRound, AlertRow, AlertRuleRow, AlertSeriesRow, ChannelRow, DeliveryResult, DeliveryRow,
    NewDelivery, SilenceRow, StoreError,
};
use argosy_proto::v1 as pb;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often every rule is evaluated.
pub const EVALUATION_INTERVAL: Duration = Duration::from_secs(2);
/// How often the outbox is checked for due deliveries.
const DELIVERY_INTERVAL: Duration = Duration::from_secs(1);
/// Deliveries sent at once, at most.
const DELIVERY_BATCH: u32 = 32;
/// How long a claimed delivery is left to its sender before another may
/// retry it (an attempt takes at most 10 s).
const DELIVERY_LEASE_MS: i64 = 60_000;
/// Finished deliveries are kept this long for diagnostics.
const DELIVERY_RETENTION_MS: i64 = 7 * 86_400_000;
/// The actor recorded for rules the control plane creates itself.
pub const SYSTEM_ACTOR: &str = "system";

/// Rules as stored, for the built-ins.
pub fn rule_row(rule: &Rule, now_ms: i64, actor: &str) -> AlertRuleRow {
    AlertRuleRow {
        name: rule.name.clone(),
        builtin: rule.builtin,
        rule_json: serde_json::to_string(rule).unwrap_or_else(|_| "{}".into()),
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
        updated_by: actor.to_owned(),
    }
}

/// A stored rule, or why it cannot be read.
pub fn parse_rule(row: &AlertRuleRow) -> Result<Rule, StoreError> {
    serde_json::from_str(&row.rule_json).map_err(|e| StoreError::Corrupt {
        what: format!("alert rule `{}`: {e}", row.name),
    })
}

/// A stored silence, or why it cannot be read.
pub fn parse_silence(row: &SilenceRow) -> Result<Silence, StoreError> {
    let matchers: Vec<Matcher> =
        serde_json::from_str(&row.matchers_json).map_err(|e| StoreError::Corrupt {
            what: format!("matchers of silence `{}`: {e}", row.id),
        })?;
    Ok(Silence {
        id: row.id.clone(),
        matchers,
        starts_at_ms: row.starts_at_ms,
        ends_at_ms: row.ends_at_ms,
        comment: row.comment.clone(),
        created_by: row.created_by.clone(),
    })
}

/// A stored channel, or why it cannot be read.
pub fn parse_channel(row: &ChannelRow) -> Result<Channel, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt { what };
    Ok(Channel {
        name: row.name.clone(),
        kind: row
            .kind
            .parse()
            .map_err(|e: routing::ChannelError| corrupt(format!("channel `{}`: {e}", row.name)))?,
        url: row.url.clone(),
        min_severity: row
            .min_severity
            .parse()
            .map_err(|e: super::rules::UnknownSeverity| {
                corrupt(format!("channel `{}`: {e}", row.name))
            })?,
    })
}

/// Stores the built-in rules that are not stored yet (tuned ones stay).
pub async fn seed_builtin_rules(cp: &ControlPlane) -> Result<(), StoreError> {
    let now = cp.now_ms();
    let rows: Vec<AlertRuleRow> = builtin_rules(cp.settings.agent_cert_ttl_ms)
        .iter()
        .map(|r| rule_row(r, now, SYSTEM_ACTOR))
        .collect();
    cp.store.seed_alert_rules(&rows).await
}

/// Runs evaluation and delivery until `stop` turns true (the built-in
/// rules are stored before, by [`seed_builtin_rules`]).
pub async fn run(cp: Arc<ControlPlane>, stop: tokio::sync::watch::Receiver<bool>) {
    let sender = match Sender::new() {
        Ok(sender) => Some(sender),
        Err(error) => {
            tracing::error!(%error, "alert notifications cannot be sent; they wait in the outbox");
            None
        }
    };
    let watching_since_ms = cp.now_ms();
    tokio::join!(
        evaluation_loop(cp.clone(), watching_since_ms, stop.clone()),
        delivery_loop(cp, sender, stop)
    );
}

async fn evaluation_loop(
    cp: Arc<ControlPlane>,
    watching_since_ms: i64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(EVALUATION_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune_ms = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let started = Instant::now();
        match evaluate_once(&cp, &Policy::default(), watching_since_ms).await {
            Ok(outcome) => cp.alerting.evaluated(started.elapsed(), &outcome.firing),
            Err(error) => {
                cp.alerting.evaluation_failed();
                tracing::warn!(%error, "alert evaluation failed; retrying at the next interval");
            }
        }
        let now = cp.now_ms();
        if now - last_prune_ms >= 3_600_000 {
            last_prune_ms = now;
            if let Err(error) = cp.store.prune_deliveries(now - DELIVERY_RETENTION_MS).await {
                tracing::warn!(%error, "could not prune old alert deliveries");
            }
        }
    }
}

async fn delivery_loop(
    cp: Arc<ControlPlane>,
    sender: Option<Sender>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Some(sender) = sender else {
        let _ = stop.wait_for(|s| *s).await;
        return;
    };
    let mut tick = tokio::time::interval(DELIVERY_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        if let Err(error) = deliver_due(&cp, &sender).await {
            tracing::warn!(%error, "could not read the alert outbox; retrying shortly");
        }
    }
}

fn host_facts(host: &pb::Host, now_ms: i64) -> HostFacts {
    let online = host.status == pb::HostStatus::Online as i32;
    HostFacts {
        id: host.id.clone(),
        hostname: host.hostname.clone(),
        region: host.region.clone(),
        labels: host.labels.clone().into_iter().collect(),
        online,
        revoked: host.status == pb::HostStatus::Revoked as i32,
        last_seen_ms: (host.last_seen_ms > 0).then_some(host.last_seen_ms),
        enrolled_at_ms: host.enrolled_at_ms,
        cert_not_after_ms: host.certificate_not_after_ms,
        sample: host
            .latest
            .as_ref()
            .and_then(|s| crate::ingest::sample_row(&host.id, s, now_ms).ok()),
    }
}

/// Gathers what the enabled rules look at.
async fn gather_facts(
    cp: &ControlPlane,
    rules: &[Rule],
    watching_since_ms: i64,
    now_ms: i64,
) -> Result<Facts, StoreError> {
    let hosts = cp
        .fleet
        .list("", &HashMap::new())
        .iter()
        .map(|h| host_facts(h, now_ms))
        .collect();
    let allocations = cp
        .store
        .running_allocations()
        .await?
        .into_iter()
        .map(|row| {
            let status: ReportedStatus = serde_json::from_str(&row.status_json).unwrap_or_default();
            AllocationFacts {
                reported_at_ms: if status.updated_at_ms > 0 {
                    status.updated_at_ms
                } else {
                    row.updated_at_ms
                },
                id: row.id,
                service: row.service,
                host_id: row.host_id,
                state: row.state,
                health: row.health,
                restarts: status.restarts,
                oom_killed: status.oom_killed,
                message: status.message,
                healthy_since_ms: status.healthy_since_ms,
            }
        })
        .collect();
    let window = rules
        .iter()
        .filter(|r| r.enabled && r.signal == Signal::DeploymentFailed)
        .map(|r| r.keep_firing_for_ms)
        .max();
    let deployments = match window {
        Some(window) => cp
            .store
            .finished_deployments(now_ms - window)
            .await?
            .into_iter()
            .map(|d| DeploymentOutcome {
                id: d.id,
                service: d.service,
                phase: d.phase,
                finished_at_ms: d.finished_at_ms,
            })
            .collect(),
        None => Vec::new(),
    };
    let backup_rules = rules.iter().any(|r| {
        r.enabled
            && matches!(
                r.signal,
                Signal::BackupFailed | Signal::BackupOverdue | Signal::BackupVerificationFailed
            )
    });
    let backup_policies = if backup_rules {
        let mut policies = Vec::new();
        for row in cp.store.backup_policies().await? {
            let backups = cp
                .store
                .backups(Some(&row.name), BACKUPS_PER_POLICY)
                .await?;
            policies.push(BackupPolicyFacts::from_rows(&row, &backups));
        }
        policies
    } else {
        Vec::new()
    };
    let route_rules = rules
        .iter()
        .any(|r| r.enabled && r.signal == Signal::RouteUnserved);
    let routes = if route_rules {
        match route_facts(cp).await {
            Ok(routes) => routes,
            Err(DeployError::Store(error)) => return Err(error),
            Err(error) => {
                tracing::warn!(%error, "cannot tell which routes are served; skipping route_unserved");
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    Ok(Facts {
        hosts,
        allocations,
        deployments,
        backup_policies,
        routes,
        watching_since_ms,
    })
}

/// Every routed service that is not stopped, with the regions whose
/// ingresses cannot serve it.
async fn route_facts(cp: &ControlPlane) -> Result<Vec<facts::RouteFacts>, DeployError> {
    let services = cp.deploy.routed_services().await?;
    let decisions = cp.routing.compute(&cp.deploy).await?;
    Ok(services
        .iter()
        .filter(|s| !s.stopped)
        .map(|s| facts::RouteFacts {
            service: s.name.clone(),
            unserved: decisions
                .iter()
                .filter_map(|(region, routes)| {
                    let route = routes.get(&s.name)?;
                    (!route.decided.serves())
                        .then(|| (region.clone(), route.decided.explanation.clone()))
                })
                .collect(),
        })
        .collect())
}

/// The newest backups of a policy read for its alerts: enough to find the
/// newest success, failure and verification of any policy that is not
/// failing for weeks (and one that is, is past its RPO anyway).
const BACKUPS_PER_POLICY: i64 = 200;

fn alert_row(a: &AlertSnapshot, now_ms: i64) -> AlertRow {
    AlertRow {
        id: a.id.clone(),
        fingerprint: a.fingerprint.clone(),
        rule: a.rule.clone(),
        severity: a.severity.as_str().to_owned(),
        labels: a.labels.clone(),
        summary: a.summary.clone(),
        condition: a.condition.clone(),
        value: a.value,
        state: a.status.as_str().to_owned(),
        started_at_ms: a.started_at_ms,
        firing_since_ms: a.firing_since_ms,
        resolved_at_ms: a.resolved_at_ms,
        acked_at_ms: None,
        acked_by: None,
        ack_comment: None,
        updated_at_ms: now_ms,
    }
}

fn payload_json(kind: &str, alerts: Vec<AlertSnapshot>) -> String {
    serde_json::to_string(&Payload {
        kind: kind.to_owned(),
        alerts,
    })
    .unwrap_or_else(|_| "{}".into())
}

/// Turns an evaluation's outcome into what the store writes: the series,
/// alert instances and their history, and a delivery per notification and
/// channel that takes it; plus Alertmanager re-sends that are due.
pub fn round_of(
    outcome: &Outcome,
    previous: &[SeriesState],
    channels: &[Channel],
    conditions: &BTreeMap<String, String>,
    now_ms: i64,
) -> AlertRound {
    let cleared: Vec<String> = outcome
        .changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Cleared)
        .map(|c| c.alert_id.clone())
        .collect();
    let mut events: Vec<(String, i64, String)> = outcome
        .changes
        .iter()
        .filter(|c| !cleared.contains(&c.alert_id))
        .map(|c| (c.alert_id.clone(), c.at_ms, c.kind.describe()))
        .collect();
    let mut deliveries = Vec::new();
    for n in &outcome.notifications {
        let routed = routing::route(n, channels);
        if routed.is_empty() {
            continue;
        }
        let names: Vec<&str> = routed.iter().map(|c| c.name.as_str()).collect();
        events.push((
            n.alert.id.clone(),
            now_ms,
            format!(
                "{} notification queued for {}",
                n.kind.as_str(),
                names.join(", ")
            ),
        ));
        for channel in routed {
            deliveries.push(NewDelivery {
                channel: channel.name.clone(),
                kind: n.kind.as_str().to_owned(),
                payload_json: payload_json(n.kind.as_str(), vec![n.alert.clone()]),
            });
        }
    }
    // The series as they stand after this round, for Alertmanager re-sends.
    let mut current: BTreeMap<&str, &SeriesState> = previous
        .iter()
        .map(|s| (s.fingerprint.as_str(), s))
        .collect();
    for fp in &outcome.forget {
        current.remove(fp.as_str());
    }
    for s in &outcome.save {
        current.insert(s.fingerprint.as_str(), s);
    }
    let current: Vec<SeriesState> = current.into_values().cloned().collect();
    AlertRound {
        now_ms,
        save_series: outcome
            .save
            .iter()
            .map(|s| AlertSeriesRow {
                fingerprint: s.fingerprint.clone(),
                rule: s.rule.clone(),
                state_json: serde_json::to_string(s).unwrap_or_else(|_| "{}".into()),
                updated_at_ms: now_ms,
            })
            .collect(),
        forget_series: outcome.forget.clone(),
        alerts: outcome
            .alerts
            .iter()
            .filter(|a| !cleared.contains(&a.id))
            .map(|a| alert_row(a, now_ms))
            .collect(),
        drop_alerts: cleared,
        events,
        deliveries,
        refreshes: channels
            .iter()
            .filter(|c| c.kind == ChannelKind::Alertmanager)
            .filter_map(|c| {
                let alerts = routing::alertmanager_refresh(&current, c, conditions);
                (!alerts.is_empty()).then(|| NewDelivery {
                    channel: c.name.clone(),
                    kind: "refresh".into(),
                    payload_json: payload_json("refresh", alerts),
                })
            })
            .collect(),
    }
}

/// One evaluation: read, decide, write. `watching_since_ms` is when this
/// control plane started (hosts get a grace to reconnect to it).
pub async fn evaluate_once(
    cp: &ControlPlane,
    policy: &Policy,
    watching_since_ms: i64,
) -> Result<Outcome, StoreError> {
    let now = cp.now_ms();
    let mut rules = Vec::new();
    for row in cp.store.alert_rules().await? {
        match parse_rule(&row) {
            Ok(rule) => rules.push(rule),
            Err(error) => tracing::warn!(%error, "skipping an unreadable alert rule"),
        }
    }
    let mut previous = Vec::new();
    for row in cp.store.alert_series().await? {
        match serde_json::from_str::<SeriesState>(&row.state_json) {
            Ok(state) => previous.push(state),
            Err(error) => {
                tracing::warn!(%error, fingerprint = row.fingerprint, "skipping unreadable alert state")
            }
        }
    }
    let silences: Vec<Silence> = cp
        .store
        .silences(now)
        .await?
        .iter()
        .filter_map(|row| parse_silence(row).map_err(|e| tracing::warn!(%e)).ok())
        .collect();
    let acknowledged = cp.store.acknowledged_open_alerts().await?;
    let facts = gather_facts(cp, &rules, watching_since_ms, now).await?;
    let observations = rules
        .iter()
        .filter(|r| r.enabled)
        .map(|r| (r.name.clone(), facts::observe(r, &facts, now)))
        .collect();
    let outcome = evaluate::evaluate(
        &rules,
        &observations,
        &previous,
        Context {
            now_ms: now,
            policy,
            silences: &silences,
            acknowledged: &acknowledged,
        },
    );
    let channel_rows = cp.store.channels().await?;
    let refresh_due = |row: &ChannelRow| {
        row.last_refresh_ms
            .is_none_or(|at| now - at >= ALERTMANAGER_RESEND_MS)
    };
    let channels: Vec<Channel> = channel_rows
        .iter()
        .filter_map(|row| parse_channel(row).map_err(|e| tracing::warn!(%e)).ok())
        .collect();
    let conditions: BTreeMap<String, String> = rules
        .iter()
        .map(|r| (r.name.clone(), r.condition()))
        .collect();
    let mut round = round_of(&outcome, &previous, &channels, &conditions, now);
    round.refreshes.retain(|d| {
        channel_rows
            .iter()
            .any(|c| c.name == d.channel && refresh_due(c))
    });
    let quiet = round.save_series.is_empty()
        && round.forget_series.is_empty()
        && round.alerts.is_empty()
        && round.events.is_empty()
        && round.deliveries.is_empty()
        && round.refreshes.is_empty();
    if !quiet {
        cp.store.commit_alert_round(&round).await?;
    }
    for n in &outcome.notifications {
        tracing::info!(
            alert = n.alert.id,
            alertname = n.alert.rule,
            kind = n.kind.as_str(),
            summary = n.alert.summary,
            "alert notification"
        );
    }
    Ok(outcome)
}

fn links(cp: &ControlPlane) -> Links {
    Links {
        base_url: cp.settings.public_http_url.clone(),
    }
}

/// Posts one claimed delivery and records how it went.
async fn deliver(cp: &ControlPlane, sender: &Sender, channel: &Channel, d: &DeliveryRow) {
    let outcome = match serde_json::from_str::<Payload>(&d.payload_json) {
        Ok(payload) => {
            let body = notify::render(
                channel.kind,
                &channel.name,
                &payload,
                &links(cp),
                cp.now_ms(),
            );
            sender.post(&channel.url, &body).await
        }
        Err(error) => Err(notify::DeliveryError::Transport {
            target: "the outbox".into(),
            reason: format!("the stored notification is unreadable ({error})"),
        }),
    };
    let failed = outcome.is_err();
    let now = cp.now_ms();
    let result = notify::after_attempt(&d.kind, d.attempts, outcome, now);
    match &result {
        DeliveryResult::Delivered => {}
        DeliveryResult::Retry { error, .. } => {
            tracing::warn!(channel = channel.name, delivery = d.id, %error, "notification failed; will retry")
        }
        DeliveryResult::GaveUp { error } => {
            tracing::error!(channel = channel.name, delivery = d.id, %error, "notification failed for good")
        }
    }
    cp.alerting.attempted(&channel.name, failed);
    if let Err(error) = cp.store.finish_delivery(d, &result, now).await {
        tracing::warn!(%error, delivery = d.id, "could not record a delivery attempt; it will be retried");
    }
}

/// Sends every due delivery (claimed first, so no replica sends one twice).
pub async fn deliver_due(cp: &ControlPlane, sender: &Sender) -> Result<usize, StoreError> {
    let now = cp.now_ms();
    let due = cp.store.due_deliveries(now, DELIVERY_BATCH).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let channels: BTreeMap<String, Channel> = cp
        .store
        .channels()
        .await?
        .iter()
        .filter_map(|row| parse_channel(row).ok())
        .map(|c| (c.name.clone(), c))
        .collect();
    let mut sends = Vec::new();
    for d in &due {
        let Some(channel) = channels.get(&d.channel) else {
            continue;
        };
        if !cp.store.claim_delivery(d, now + DELIVERY_LEASE_MS).await? {
            continue;
        }
        sends.push(deliver(cp, sender, channel, d));
    }
    let count = sends.len();
    futures_util::future::join_all(sends).await;
    Ok(count)
}

/// Sends a test notification to a channel now, outside the outbox.
pub async fn test_channel(
    cp: &ControlPlane,
    channel: &Channel,
) -> Result<(), notify::DeliveryError> {
    let sender = Sender::new().map_err(|e| notify::DeliveryError::Transport {
        target: routing::redacted_url(&channel.url),
        reason: e.to_string(),
    })?;
    let now = cp.now_ms();
    let alert = AlertSnapshot {
        id: format!("test-{now}"),
        fingerprint: "test".into(),
        rule: "ArgosyTestNotification".into(),
        severity: super::rules::Severity::Info,
        labels: [
            ("alertname".to_owned(), "ArgosyTestNotification".to_owned()),
            ("severity".to_owned(), "info".to_owned()),
            ("channel".to_owned(), channel.name.clone()),
        ]
        .into(),
        summary: format!("a test notification to channel {}", channel.name),
        condition: "sent by `argosy alert channel test`".into(),
        value: 0.0,
        status: evaluate::AlertStatus::Resolved,
        started_at_ms: now,
        firing_since_ms: Some(now),
        resolved_at_ms: Some(now),
    };
    let payload = Payload {
        kind: "test".into(),
        alerts: vec![alert],
    };
    let body = notify::render(channel.kind, &channel.name, &payload, &links(cp), now);
    sender.post(&channel.url, &body).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::evaluate::{AlertStatus, Change, Notification, NotificationKind, Phase};
    use crate::alerts::rules::Severity;

    fn snapshot(id: &str, severity: Severity) -> AlertSnapshot {
        AlertSnapshot {
            id: id.into(),
            fingerprint: format!("fp-{id}"),
            rule: "HostCpuHigh".into(),
            severity,
            labels: Default::default(),
            summary: "s".into(),
            condition: "c".into(),
            value: 1.0,
            status: AlertStatus::Firing,
            started_at_ms: 1,
            firing_since_ms: Some(1),
            resolved_at_ms: None,
        }
    }

    fn channel(name: &str, kind: ChannelKind, min: Severity) -> Channel {
        Channel {
            name: name.into(),
            kind,
            url: "http://x/".into(),
            min_severity: min,
        }
    }

    #[test]
    fn a_round_routes_notifications_and_drops_cleared_alerts() {
        let series = SeriesState {
            fingerprint: "fp-a1".into(),
            rule: "HostCpuHigh".into(),
            labels: Default::default(),
            severity: Severity::Critical,
            phase: Phase::Firing,
            alert_id: Some("a1".into()),
            active_since_ms: Some(1),
            firing_since_ms: Some(1),
            resolved_at_ms: None,
            last_active_ms: Some(1),
            value: 1.0,
            summary: "s".into(),
            told_firing: true,
            last_notified_ms: Some(10),
            firing_starts: vec![1],
            flapping: false,
            event_key: None,
            silenced_by: None,
            recorded_ms: None,
        };
        let outcome = Outcome {
            save: vec![series],
            forget: vec![],
            alerts: vec![
                snapshot("a1", Severity::Critical),
                snapshot("a2", Severity::Warning),
            ],
            changes: vec![
                Change {
                    alert_id: "a1".into(),
                    kind: ChangeKind::Firing,
                    at_ms: 10,
                },
                Change {
                    alert_id: "a2".into(),
                    kind: ChangeKind::Cleared,
                    at_ms: 10,
                },
            ],
            notifications: vec![Notification {
                kind: NotificationKind::Firing,
                alert: snapshot("a1", Severity::Critical),
            }],
            firing: BTreeMap::new(),
        };
        let channels = [
            channel("ops", ChannelKind::Webhook, Severity::Warning),
            channel("am", ChannelKind::Alertmanager, Severity::Critical),
            channel("info", ChannelKind::Slack, Severity::Info),
        ];
        let round = round_of(&outcome, &[], &channels, &BTreeMap::new(), 10);
        assert_eq!(round.drop_alerts, vec!["a2"]);
        assert_eq!(round.alerts.len(), 1);
        assert_eq!(
            round.events,
            vec![
                ("a1".into(), 10, "firing".into()),
                (
                    "a1".into(),
                    10,
                    "firing notification queued for ops, am, info".into()
                ),
            ]
        );
        let to: Vec<&str> = round
            .deliveries
            .iter()
            .map(|d| d.channel.as_str())
            .collect();
        assert_eq!(to, vec!["ops", "am", "info"]);
        let payload: Payload = serde_json::from_str(&round.deliveries[0].payload_json).unwrap();
        assert_eq!(
            (payload.kind.as_str(), payload.alerts[0].id.as_str()),
            ("firing", "a1")
        );
        assert_eq!(
            round.refreshes.len(),
            1,
            "Alertmanager is re-sent the firing alert"
        );
        assert_eq!(round.refreshes[0].channel, "am");
        assert_eq!(round.save_series.len(), 1);
    }
}
