//! Alerting: rules, the evaluator's state per alert series, alert instances with their
//! history, silences, notification channels with their delivery statistics, and the
//! delivery outbox. Also two read-only views of deployment tables the rules look at
//! (running allocations, recently finished deployments).
//!
//! Rule definitions (`rule_json`), series state (`state_json`), silence matchers and
//! delivery payloads are JSON owned by `crate::alerts`; the store does not interpret them.
//! Everything one evaluation decided is written in one transaction
//! ([`Store::commit_alert_round`]), so its notifications are stored with the state that
//! says they were sent: a crash never loses one nor causes a second.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::any::AnyRow;

use super::tokens::{labels_from_json, labels_to_json};
use super::{Store, StoreError, col, db, insert_err};

/// A stored alert rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRuleRow {
    pub name: String,
    pub builtin: bool,
    pub rule_json: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub updated_by: String,
}

/// The evaluator's memory of one alert series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSeriesRow {
    pub fingerprint: String,
    pub rule: String,
    pub state_json: String,
    pub updated_at_ms: i64,
}

/// An alert instance. `acked_*` are written only by [`Store::acknowledge_alert`].
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    pub id: String,
    pub fingerprint: String,
    pub rule: String,
    pub severity: String,
    pub labels: BTreeMap<String, String>,
    pub summary: String,
    pub condition: String,
    pub value: f64,
    /// pending, firing or resolved.
    pub state: String,
    pub started_at_ms: i64,
    pub firing_since_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
    pub acked_at_ms: Option<i64>,
    pub acked_by: Option<String>,
    pub ack_comment: Option<String>,
    pub updated_at_ms: i64,
}

/// One entry of an alert's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertEventRow {
    pub seq: i64,
    pub alert_id: String,
    pub at_ms: i64,
    pub message: String,
}

/// A stored silence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilenceRow {
    pub id: String,
    pub matchers_json: String,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub comment: String,
    pub created_by: String,
    pub created_at_ms: i64,
    /// Who ended it before its time, if someone did.
    pub expired_by: Option<String>,
}

/// A notification channel and how its deliveries went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRow {
    pub name: String,
    pub kind: String,
    /// May hold a credential: show it redacted.
    pub url: String,
    pub min_severity: String,
    pub created_at_ms: i64,
    pub created_by: String,
    pub attempts: i64,
    pub failures: i64,
    pub delivered: i64,
    pub last_success_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
    pub last_refresh_ms: Option<i64>,
    /// Deliveries waiting to be sent (read-only, computed).
    pub pending: i64,
    /// Of those, deliveries that failed at least once and wait for a retry.
    pub retrying: i64,
    /// Deliveries that ran out of attempts (read-only, computed).
    pub given_up: i64,
}

/// A delivery in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    pub id: i64,
    pub channel: String,
    /// firing, repeat, resolved or refresh.
    pub kind: String,
    pub payload_json: String,
    /// pending, delivered or failed (out of attempts).
    pub state: String,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A delivery to add to the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub channel: String,
    pub kind: String,
    pub payload_json: String,
}

/// Everything one evaluation decided, written at once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertRound {
    pub now_ms: i64,
    pub save_series: Vec<AlertSeriesRow>,
    pub forget_series: Vec<String>,
    /// Alert instances to insert or update (the `acked_*` fields are ignored).
    pub alerts: Vec<AlertRow>,
    /// Pending instances that cleared before they fired: removed with their history.
    pub drop_alerts: Vec<String>,
    /// (alert id, at, message).
    pub events: Vec<(String, i64, String)>,
    pub deliveries: Vec<NewDelivery>,
    /// Alertmanager re-sends: added only if the channel has none waiting; the channel's
    /// `last_refresh_ms` moves to `now_ms` either way.
    pub refreshes: Vec<NewDelivery>,
}

/// What became of a delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryResult {
    Delivered,
    /// Failed; retried at `next_attempt_ms`.
    Retry {
        error: String,
        next_attempt_ms: i64,
    },
    /// Failed for the last time.
    GaveUp {
        error: String,
    },
}

/// An allocation that should be running on a host, as the alert rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningAllocationRow {
    pub id: String,
    pub service: String,
    pub host_id: String,
    pub state: String,
    pub health: String,
    /// The agent's last report (owned by the deployment controller).
    pub status_json: String,
    pub updated_at_ms: i64,
}

/// A deployment that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedDeploymentRow {
    pub id: String,
    pub service: String,
    pub phase: String,
    pub finished_at_ms: i64,
}

const RULE_COLS: &str = "name, builtin, rule_json, created_at_ms, updated_at_ms, updated_by";
const ALERT_COLS: &str = "id, fingerprint, rule, severity, labels_json, summary, condition_text, \
                          value, state, started_at_ms, firing_since_ms, resolved_at_ms, \
                          acked_at_ms, acked_by, ack_comment, updated_at_ms";
const SILENCE_COLS: &str = "id, matchers_json, starts_at_ms, ends_at_ms, comment, created_by, \
                            created_at_ms, expired_by";
const DELIVERY_COLS: &str = "id, channel, kind, payload_json, state, attempts, next_attempt_ms, \
                             last_error, created_at_ms, updated_at_ms";

fn flag(value: i64, what: &str) -> Result<bool, StoreError> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(StoreError::Corrupt {
            what: format!("{what} is {other}, not 0 or 1"),
        }),
    }
}

fn rule_from_row(row: &AnyRow) -> Result<AlertRuleRow, StoreError> {
    Ok(AlertRuleRow {
        name: col(row, "name")?,
        builtin: flag(col(row, "builtin")?, "alert rule builtin")?,
        rule_json: col(row, "rule_json")?,
        created_at_ms: col(row, "created_at_ms")?,
        updated_at_ms: col(row, "updated_at_ms")?,
        updated_by: col(row, "updated_by")?,
    })
}

fn alert_from_row(row: &AnyRow) -> Result<AlertRow, StoreError> {
    let id: String = col(row, "id")?;
    let labels_json: String = col(row, "labels_json")?;
    Ok(AlertRow {
        labels: labels_from_json(&labels_json, "alert", &id)?,
        fingerprint: col(row, "fingerprint")?,
        rule: col(row, "rule")?,
        severity: col(row, "severity")?,
        summary: col(row, "summary")?,
        condition: col(row, "condition_text")?,
        value: col(row, "value")?,
        state: col(row, "state")?,
        started_at_ms: col(row, "started_at_ms")?,
        firing_since_ms: col(row, "firing_since_ms")?,
        resolved_at_ms: col(row, "resolved_at_ms")?,
        acked_at_ms: col(row, "acked_at_ms")?,
        acked_by: col(row, "acked_by")?,
        ack_comment: col(row, "ack_comment")?,
        updated_at_ms: col(row, "updated_at_ms")?,
        id,
    })
}

fn silence_from_row(row: &AnyRow) -> Result<SilenceRow, StoreError> {
    Ok(SilenceRow {
        id: col(row, "id")?,
        matchers_json: col(row, "matchers_json")?,
        starts_at_ms: col(row, "starts_at_ms")?,
        ends_at_ms: col(row, "ends_at_ms")?,
        comment: col(row, "comment")?,
        created_by: col(row, "created_by")?,
        created_at_ms: col(row, "created_at_ms")?,
        expired_by: col(row, "expired_by")?,
    })
}

fn delivery_from_row(row: &AnyRow) -> Result<DeliveryRow, StoreError> {
    Ok(DeliveryRow {
        id: col(row, "id")?,
        channel: col(row, "channel")?,
        kind: col(row, "kind")?,
        payload_json: col(row, "payload_json")?,
        state: col(row, "state")?,
        attempts: col(row, "attempts")?,
        next_attempt_ms: col(row, "next_attempt_ms")?,
        last_error: col(row, "last_error")?,
        created_at_ms: col(row, "created_at_ms")?,
        updated_at_ms: col(row, "updated_at_ms")?,
    })
}

fn channel_from_row(row: &AnyRow) -> Result<ChannelRow, StoreError> {
    Ok(ChannelRow {
        name: col(row, "name")?,
        kind: col(row, "kind")?,
        url: col(row, "url")?,
        min_severity: col(row, "min_severity")?,
        created_at_ms: col(row, "created_at_ms")?,
        created_by: col(row, "created_by")?,
        attempts: col(row, "attempts")?,
        failures: col(row, "failures")?,
        delivered: col(row, "delivered")?,
        last_success_ms: col(row, "last_success_ms")?,
        last_error: col(row, "last_error")?,
        last_error_ms: col(row, "last_error_ms")?,
        last_refresh_ms: col(row, "last_refresh_ms")?,
        pending: col(row, "pending")?,
        retrying: col(row, "retrying")?,
        given_up: col(row, "given_up")?,
    })
}

fn not_found(kind: &'static str, id: &str) -> StoreError {
    StoreError::NotFound {
        kind,
        id: id.to_owned(),
    }
}

/// The `INSERT … ON CONFLICT` writing an alert instance; never touches `acked_*`.
const UPSERT_ALERT: &str = "INSERT INTO alerts (id, fingerprint, rule, severity, labels_json, \
     summary, condition_text, value, state, started_at_ms, firing_since_ms, resolved_at_ms, \
     updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
     ON CONFLICT (id) DO UPDATE SET severity = excluded.severity, \
     labels_json = excluded.labels_json, summary = excluded.summary, \
     condition_text = excluded.condition_text, value = excluded.value, \
     state = excluded.state, firing_since_ms = excluded.firing_since_ms, \
     resolved_at_ms = excluded.resolved_at_ms, updated_at_ms = excluded.updated_at_ms";

/// Adds a pending delivery (`$1` channel, `$2` kind, `$3` payload, `$4` now) if the
/// channel still exists; callers may append more conditions with `AND`.
const INSERT_DELIVERY: &str = "INSERT INTO alert_deliveries (channel, kind, payload_json, state, \
     attempts, next_attempt_ms, created_at_ms, updated_at_ms) \
     SELECT $1, $2, $3, 'pending', 0, $4, $4, $4 \
     WHERE EXISTS (SELECT 1 FROM alert_channels WHERE name = $1)";

impl Store {
    // ---- rules ----

    /// Every rule, ordered by name.
    pub async fn alert_rules(&self) -> Result<Vec<AlertRuleRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {RULE_COLS} FROM alert_rules ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing alert rules"))?
        .iter()
        .map(rule_from_row)
        .collect()
    }

    pub async fn alert_rule(&self, name: &str) -> Result<Option<AlertRuleRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {RULE_COLS} FROM alert_rules WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading an alert rule"))?
        .map(|r| rule_from_row(&r))
        .transpose()
    }

    /// Stores the rules that are not stored yet (the built-ins at start); stored ones,
    /// perhaps tuned, are left alone. Safe when several replicas start at once.
    pub async fn seed_alert_rules(&self, rules: &[AlertRuleRow]) -> Result<(), StoreError> {
        const OP: &str = "storing the built-in alert rules";
        let mut tx = self.begin_write(OP).await?;
        for r in rules {
            sqlx::query(&format!(
                "INSERT INTO alert_rules ({RULE_COLS}) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (name) DO NOTHING"
            ))
            .bind(&r.name)
            .bind(i64::from(r.builtin))
            .bind(&r.rule_json)
            .bind(r.created_at_ms)
            .bind(r.updated_at_ms)
            .bind(&r.updated_by)
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?;
        }
        tx.commit().await.map_err(db(OP))
    }

    /// Stores a new rule; [`StoreError::AlreadyExists`] if the name is taken.
    pub async fn insert_alert_rule(&self, r: &AlertRuleRow) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO alert_rules ({RULE_COLS}) VALUES ($1, $2, $3, $4, $5, $6)"
        ))
        .bind(&r.name)
        .bind(i64::from(r.builtin))
        .bind(&r.rule_json)
        .bind(r.created_at_ms)
        .bind(r.updated_at_ms)
        .bind(&r.updated_by)
        .execute(&self.pool)
        .await
        .map_err(insert_err("storing an alert rule", "alert rule", &r.name))?;
        Ok(())
    }

    /// Stores a rule, replacing the definition of a stored one with the same name (its
    /// `builtin` flag and creation time stay).
    pub async fn save_alert_rule(&self, r: &AlertRuleRow) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO alert_rules ({RULE_COLS}) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (name) DO UPDATE SET rule_json = excluded.rule_json, \
             updated_at_ms = excluded.updated_at_ms, updated_by = excluded.updated_by"
        ))
        .bind(&r.name)
        .bind(i64::from(r.builtin))
        .bind(&r.rule_json)
        .bind(r.created_at_ms)
        .bind(r.updated_at_ms)
        .bind(&r.updated_by)
        .execute(&self.pool)
        .await
        .map_err(db("storing an alert rule"))?;
        Ok(())
    }

    /// Removes a rule; `None` if there was none.
    pub async fn delete_alert_rule(&self, name: &str) -> Result<Option<AlertRuleRow>, StoreError> {
        sqlx::query(&format!(
            "DELETE FROM alert_rules WHERE name = $1 RETURNING {RULE_COLS}"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("removing an alert rule"))?
        .map(|r| rule_from_row(&r))
        .transpose()
    }

    // ---- evaluation ----

    /// Every remembered series.
    pub async fn alert_series(&self) -> Result<Vec<AlertSeriesRow>, StoreError> {
        sqlx::query(
            "SELECT fingerprint, rule, state_json, updated_at_ms FROM alert_series \
             ORDER BY fingerprint",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading alert series"))?
        .iter()
        .map(|row| {
            Ok(AlertSeriesRow {
                fingerprint: col(row, "fingerprint")?,
                rule: col(row, "rule")?,
                state_json: col(row, "state_json")?,
                updated_at_ms: col(row, "updated_at_ms")?,
            })
        })
        .collect()
    }

    /// Ids of pending and firing alerts someone acknowledged.
    pub async fn acknowledged_open_alerts(&self) -> Result<BTreeSet<String>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM alerts WHERE acked_at_ms IS NOT NULL AND state <> 'resolved'",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading acknowledged alerts"))?;
        Ok(ids.into_iter().collect())
    }

    /// Writes everything one evaluation decided, in one transaction.
    pub async fn commit_alert_round(&self, round: &AlertRound) -> Result<(), StoreError> {
        const OP: &str = "storing an alert evaluation";
        let mut tx = self.begin_write(OP).await?;
        for s in &round.save_series {
            sqlx::query(
                "INSERT INTO alert_series (fingerprint, rule, state_json, updated_at_ms) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (fingerprint) DO UPDATE SET \
                 rule = excluded.rule, state_json = excluded.state_json, \
                 updated_at_ms = excluded.updated_at_ms",
            )
            .bind(&s.fingerprint)
            .bind(&s.rule)
            .bind(&s.state_json)
            .bind(s.updated_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?;
        }
        for fingerprint in &round.forget_series {
            sqlx::query("DELETE FROM alert_series WHERE fingerprint = $1")
                .bind(fingerprint)
                .execute(&mut *tx)
                .await
                .map_err(db(OP))?;
        }
        for a in &round.alerts {
            sqlx::query(UPSERT_ALERT)
                .bind(&a.id)
                .bind(&a.fingerprint)
                .bind(&a.rule)
                .bind(&a.severity)
                .bind(labels_to_json(&a.labels))
                .bind(&a.summary)
                .bind(&a.condition)
                .bind(a.value)
                .bind(&a.state)
                .bind(a.started_at_ms)
                .bind(a.firing_since_ms)
                .bind(a.resolved_at_ms)
                .bind(a.updated_at_ms)
                .execute(&mut *tx)
                .await
                .map_err(db(OP))?;
        }
        for (alert_id, at_ms, message) in &round.events {
            sqlx::query(
                "INSERT INTO alert_events (alert_id, at_ms, message) \
                 SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM alerts WHERE id = $1)",
            )
            .bind(alert_id)
            .bind(*at_ms)
            .bind(message)
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?;
        }
        for id in &round.drop_alerts {
            sqlx::query("DELETE FROM alert_events WHERE alert_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db(OP))?;
            sqlx::query("DELETE FROM alerts WHERE id = $1 AND state = 'pending'")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db(OP))?;
        }
        for d in &round.deliveries {
            // Skipped for a channel removed since the evaluation started.
            sqlx::query(INSERT_DELIVERY)
                .bind(&d.channel)
                .bind(&d.kind)
                .bind(&d.payload_json)
                .bind(round.now_ms)
                .execute(&mut *tx)
                .await
                .map_err(db(OP))?;
        }
        for d in &round.refreshes {
            sqlx::query(&format!(
                "{INSERT_DELIVERY} AND NOT EXISTS (SELECT 1 FROM alert_deliveries \
                 WHERE channel = $1 AND kind = $2 AND state = 'pending')"
            ))
            .bind(&d.channel)
            .bind(&d.kind)
            .bind(&d.payload_json)
            .bind(round.now_ms)
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?;
            sqlx::query("UPDATE alert_channels SET last_refresh_ms = $2 WHERE name = $1")
                .bind(&d.channel)
                .bind(round.now_ms)
                .execute(&mut *tx)
                .await
                .map_err(db(OP))?;
        }
        tx.commit().await.map_err(db(OP))
    }

    /// Allocations that should run and are placed on a host.
    pub async fn running_allocations(&self) -> Result<Vec<RunningAllocationRow>, StoreError> {
        sqlx::query(
            "SELECT id, service, host_id, state, health, status_json, updated_at_ms \
             FROM allocations WHERE desired_run = 1 AND host_id IS NOT NULL ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading allocations for alerting"))?
        .iter()
        .map(|row| {
            Ok(RunningAllocationRow {
                id: col(row, "id")?,
                service: col(row, "service")?,
                host_id: col(row, "host_id")?,
                state: col(row, "state")?,
                health: col(row, "health")?,
                status_json: col(row, "status_json")?,
                updated_at_ms: col(row, "updated_at_ms")?,
            })
        })
        .collect()
    }

    /// Deployments that ended at or after `since_ms`.
    pub async fn finished_deployments(
        &self,
        since_ms: i64,
    ) -> Result<Vec<FinishedDeploymentRow>, StoreError> {
        sqlx::query(
            "SELECT id, service, phase, finished_at_ms FROM deployments \
             WHERE finished_at_ms IS NOT NULL AND finished_at_ms >= $1 \
             ORDER BY finished_at_ms, id",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading finished deployments for alerting"))?
        .iter()
        .map(|row| {
            Ok(FinishedDeploymentRow {
                id: col(row, "id")?,
                service: col(row, "service")?,
                phase: col(row, "phase")?,
                finished_at_ms: col(row, "finished_at_ms")?,
            })
        })
        .collect()
    }

    // ---- alerts ----

    /// Alerts newest first, of one state or all.
    pub async fn list_alerts(
        &self,
        state: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AlertRow>, StoreError> {
        let filter = if state.is_some() {
            "WHERE state = $2 "
        } else {
            ""
        };
        let sql = format!(
            "SELECT {ALERT_COLS} FROM alerts {filter}ORDER BY started_at_ms DESC, id LIMIT $1"
        );
        let mut query = sqlx::query(&sql).bind(i64::from(limit));
        if let Some(state) = state {
            query = query.bind(state);
        }
        query
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing alerts"))?
            .iter()
            .map(alert_from_row)
            .collect()
    }

    pub async fn alert(&self, id: &str) -> Result<Option<AlertRow>, StoreError> {
        sqlx::query(&format!("SELECT {ALERT_COLS} FROM alerts WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading an alert"))?
            .map(|r| alert_from_row(&r))
            .transpose()
    }

    /// The alert's history, oldest first.
    pub async fn alert_events(&self, alert_id: &str) -> Result<Vec<AlertEventRow>, StoreError> {
        sqlx::query(
            "SELECT seq, alert_id, at_ms, message FROM alert_events WHERE alert_id = $1 \
             ORDER BY seq",
        )
        .bind(alert_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading an alert's history"))?
        .iter()
        .map(|row| {
            Ok(AlertEventRow {
                seq: col(row, "seq")?,
                alert_id: col(row, "alert_id")?,
                at_ms: col(row, "at_ms")?,
                message: col(row, "message")?,
            })
        })
        .collect()
    }

    /// Records who acknowledged the alert (again: the latest wins) and notes it in its
    /// history. [`StoreError::NotFound`] for an unknown alert.
    pub async fn acknowledge_alert(
        &self,
        id: &str,
        by: &str,
        comment: &str,
        now_ms: i64,
    ) -> Result<AlertRow, StoreError> {
        const OP: &str = "acknowledging an alert";
        let mut tx = self.begin_write(OP).await?;
        let updated = sqlx::query(
            "UPDATE alerts SET acked_at_ms = $2, acked_by = $3, ack_comment = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(now_ms)
        .bind(by)
        .bind(comment)
        .execute(&mut *tx)
        .await
        .map_err(db(OP))?;
        if updated.rows_affected() == 0 {
            return Err(not_found("alert", id));
        }
        let message = if comment.is_empty() {
            format!("acknowledged by {by}")
        } else {
            format!("acknowledged by {by}: {comment}")
        };
        sqlx::query("INSERT INTO alert_events (alert_id, at_ms, message) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(now_ms)
            .bind(message)
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?;
        let row = sqlx::query(&format!("SELECT {ALERT_COLS} FROM alerts WHERE id = $1"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db(OP))?;
        tx.commit().await.map_err(db(OP))?;
        alert_from_row(&row)
    }

    // ---- silences ----

    pub async fn insert_silence(&self, s: &SilenceRow) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO alert_silences ({SILENCE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&s.id)
        .bind(&s.matchers_json)
        .bind(s.starts_at_ms)
        .bind(s.ends_at_ms)
        .bind(&s.comment)
        .bind(&s.created_by)
        .bind(s.created_at_ms)
        .bind(&s.expired_by)
        .execute(&self.pool)
        .await
        .map_err(insert_err("storing a silence", "silence", &s.id))?;
        Ok(())
    }

    /// Silences that end after `ends_after_ms`, soonest end first.
    pub async fn silences(&self, ends_after_ms: i64) -> Result<Vec<SilenceRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {SILENCE_COLS} FROM alert_silences WHERE ends_at_ms > $1 \
             ORDER BY ends_at_ms, id"
        ))
        .bind(ends_after_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing silences"))?
        .iter()
        .map(silence_from_row)
        .collect()
    }

    /// Ends a silence now (if it has not ended yet) and returns it.
    /// [`StoreError::NotFound`] for an unknown silence.
    pub async fn expire_silence(
        &self,
        id: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<SilenceRow, StoreError> {
        const OP: &str = "ending a silence";
        let mut tx = self.begin_write(OP).await?;
        sqlx::query(
            "UPDATE alert_silences SET ends_at_ms = $2, expired_by = $3 \
             WHERE id = $1 AND ends_at_ms > $2",
        )
        .bind(id)
        .bind(now_ms)
        .bind(by)
        .execute(&mut *tx)
        .await
        .map_err(db(OP))?;
        let row = sqlx::query(&format!(
            "SELECT {SILENCE_COLS} FROM alert_silences WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db(OP))?
        .ok_or_else(|| not_found("silence", id))?;
        tx.commit().await.map_err(db(OP))?;
        silence_from_row(&row)
    }

    // ---- channels and deliveries ----

    pub async fn insert_channel(&self, c: &ChannelRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO alert_channels (name, kind, url, min_severity, created_at_ms, \
             created_by) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&c.name)
        .bind(&c.kind)
        .bind(&c.url)
        .bind(&c.min_severity)
        .bind(c.created_at_ms)
        .bind(&c.created_by)
        .execute(&self.pool)
        .await
        .map_err(insert_err("storing a channel", "channel", &c.name))?;
        Ok(())
    }

    /// Every channel with its outbox counts, ordered by name.
    pub async fn channels(&self) -> Result<Vec<ChannelRow>, StoreError> {
        sqlx::query(
            "SELECT c.name, c.kind, c.url, c.min_severity, c.created_at_ms, c.created_by, \
             c.attempts, c.failures, c.delivered, c.last_success_ms, c.last_error, \
             c.last_error_ms, c.last_refresh_ms, \
             CAST((SELECT COUNT(*) FROM alert_deliveries d WHERE d.channel = c.name \
                   AND d.state = 'pending') AS BIGINT) AS pending, \
             CAST((SELECT COUNT(*) FROM alert_deliveries d WHERE d.channel = c.name \
                   AND d.state = 'pending' AND d.attempts > 0) AS BIGINT) AS retrying, \
             CAST((SELECT COUNT(*) FROM alert_deliveries d WHERE d.channel = c.name \
                   AND d.state = 'failed') AS BIGINT) AS given_up \
             FROM alert_channels c ORDER BY c.name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing channels"))?
        .iter()
        .map(channel_from_row)
        .collect()
    }

    /// Removes a channel and its outbox; `None` if there was none.
    pub async fn delete_channel(&self, name: &str) -> Result<Option<ChannelRow>, StoreError> {
        let found = self.channels().await?.into_iter().find(|c| c.name == name);
        if found.is_some() {
            const OP: &str = "removing a channel";
            let mut tx = self.begin_write(OP).await?;
            sqlx::query("DELETE FROM alert_deliveries WHERE channel = $1")
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(db(OP))?;
            sqlx::query("DELETE FROM alert_channels WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(db(OP))?;
            tx.commit().await.map_err(db(OP))?;
        }
        Ok(found)
    }

    /// Pending deliveries due at `now_ms`, oldest first.
    pub async fn due_deliveries(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {DELIVERY_COLS} FROM alert_deliveries \
             WHERE state = 'pending' AND next_attempt_ms <= $1 ORDER BY id LIMIT $2"
        ))
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading due deliveries"))?
        .iter()
        .map(delivery_from_row)
        .collect()
    }

    /// Every delivery of a channel, newest first (for tests and diagnostics).
    pub async fn channel_deliveries(
        &self,
        channel: &str,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {DELIVERY_COLS} FROM alert_deliveries WHERE channel = $1 \
             ORDER BY id DESC LIMIT $2"
        ))
        .bind(channel)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading a channel's deliveries"))?
        .iter()
        .map(delivery_from_row)
        .collect()
    }

    /// Takes a due delivery for sending: moves its next attempt to `lease_until_ms` so no
    /// other sender (another replica) takes it meanwhile, and so it is retried if this
    /// process dies mid-send. False if someone else took it first.
    pub async fn claim_delivery(
        &self,
        d: &DeliveryRow,
        lease_until_ms: i64,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE alert_deliveries SET next_attempt_ms = $3 \
             WHERE id = $1 AND state = 'pending' AND next_attempt_ms = $2",
        )
        .bind(d.id)
        .bind(d.next_attempt_ms)
        .bind(lease_until_ms)
        .execute(&self.pool)
        .await
        .map_err(db("claiming a delivery"))?;
        Ok(result.rows_affected() == 1)
    }

    /// Records an attempt at a delivery and counts it on its channel.
    pub async fn finish_delivery(
        &self,
        d: &DeliveryRow,
        result: &DeliveryResult,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        const OP: &str = "recording a delivery attempt";
        let (state, next, error) = match result {
            DeliveryResult::Delivered => ("delivered", now_ms, None),
            DeliveryResult::Retry {
                error,
                next_attempt_ms,
            } => ("pending", *next_attempt_ms, Some(error.as_str())),
            DeliveryResult::GaveUp { error } => ("failed", now_ms, Some(error.as_str())),
        };
        let mut tx = self.begin_write(OP).await?;
        sqlx::query(
            "UPDATE alert_deliveries SET state = $2, attempts = attempts + 1, \
             next_attempt_ms = $3, last_error = $4, updated_at_ms = $5 WHERE id = $1",
        )
        .bind(d.id)
        .bind(state)
        .bind(next)
        .bind(error)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(db(OP))?;
        let channel_update = match error {
            None => {
                "UPDATE alert_channels SET attempts = attempts + 1, delivered = delivered + 1, \
                 last_success_ms = $2 WHERE name = $1"
            }
            Some(_) => {
                "UPDATE alert_channels SET attempts = attempts + 1, failures = failures + 1, \
                 last_error = $3, last_error_ms = $2 WHERE name = $1"
            }
        };
        sqlx::query(channel_update)
            .bind(&d.channel)
            .bind(now_ms)
            .bind(error)
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?;
        tx.commit().await.map_err(db(OP))
    }

    /// Deletes finished deliveries (delivered or given up) last touched before
    /// `before_ms`; returns how many.
    pub async fn prune_deliveries(&self, before_ms: i64) -> Result<u64, StoreError> {
        let result = sqlx::query(
            "DELETE FROM alert_deliveries WHERE state <> 'pending' AND updated_at_ms < $1",
        )
        .bind(before_ms)
        .execute(&self.pool)
        .await
        .map_err(db("pruning old deliveries"))?;
        Ok(result.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    const T: i64 = 1_800_000_000_000;

    fn rule(name: &str, json: &str) -> AlertRuleRow {
        AlertRuleRow {
            name: name.into(),
            builtin: true,
            rule_json: json.into(),
            created_at_ms: T,
            updated_at_ms: T,
            updated_by: "system".into(),
        }
    }

    fn alert(id: &str, state: &str, started: i64) -> AlertRow {
        AlertRow {
            id: id.into(),
            fingerprint: format!("fp-{id}"),
            rule: "HostCpuHigh".into(),
            severity: "warning".into(),
            labels: [("host".to_owned(), "h1".to_owned())].into(),
            summary: "cpu 95 %".into(),
            condition: "cpu > 80 %".into(),
            value: 95.5,
            state: state.into(),
            started_at_ms: started,
            firing_since_ms: (state != "pending").then_some(started),
            resolved_at_ms: (state == "resolved").then_some(started + 1),
            acked_at_ms: None,
            acked_by: None,
            ack_comment: None,
            updated_at_ms: started,
        }
    }

    fn channel(name: &str) -> ChannelRow {
        ChannelRow {
            name: name.into(),
            kind: "webhook".into(),
            url: "http://127.0.0.1:9/hook".into(),
            min_severity: "warning".into(),
            created_at_ms: T,
            created_by: "user:alice".into(),
            attempts: 0,
            failures: 0,
            delivered: 0,
            last_success_ms: None,
            last_error: None,
            last_error_ms: None,
            last_refresh_ms: None,
            pending: 0,
            retrying: 0,
            given_up: 0,
        }
    }

    fn delivery(channel: &str, kind: &str) -> NewDelivery {
        NewDelivery {
            channel: channel.into(),
            kind: kind.into(),
            payload_json: "[]".into(),
        }
    }

    store_test!(rules_are_seeded_once_and_tuned_in_place);
    async fn rules_are_seeded_once_and_tuned_in_place(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        store
            .seed_alert_rules(&[rule("A", "{\"v\":1}"), rule("B", "{}")])
            .await?;
        let mut tuned = rule("A", "{\"v\":2}");
        tuned.updated_at_ms = T + 5;
        tuned.updated_by = "user:bob".into();
        tuned.builtin = false;
        store.save_alert_rule(&tuned).await?;
        // A later start seeds again: the tuned rule stays tuned.
        store
            .seed_alert_rules(&[rule("A", "{\"v\":1}"), rule("B", "{}")])
            .await?;
        let a = store.alert_rule("A").await?.unwrap();
        assert_eq!(a.rule_json, "{\"v\":2}");
        assert!(a.builtin, "saving keeps the builtin flag");
        assert_eq!((a.created_at_ms, a.updated_at_ms), (T, T + 5));
        assert!(matches!(
            store.insert_alert_rule(&rule("B", "{}")).await,
            Err(StoreError::AlreadyExists { .. })
        ));
        assert_eq!(
            store.delete_alert_rule("B").await?.map(|r| r.name),
            Some("B".into())
        );
        assert_eq!(store.delete_alert_rule("B").await?, None);
        let names: Vec<String> = store
            .alert_rules()
            .await?
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, vec!["A"]);
        Ok(())
    }

    store_test!(a_round_is_written_at_once_and_read_back);
    async fn a_round_is_written_at_once_and_read_back(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        store.insert_channel(&channel("ops")).await?;
        let round = AlertRound {
            now_ms: T,
            save_series: vec![AlertSeriesRow {
                fingerprint: "f1".into(),
                rule: "HostCpuHigh".into(),
                state_json: "{\"phase\":\"firing\"}".into(),
                updated_at_ms: T,
            }],
            forget_series: vec![],
            alerts: vec![alert("a1", "firing", T), alert("a2", "pending", T + 1)],
            drop_alerts: vec![],
            events: vec![("a1".into(), T, "firing".into())],
            deliveries: vec![delivery("ops", "firing"), delivery("gone", "firing")],
            refreshes: vec![],
        };
        store.commit_alert_round(&round).await?;
        let series = store.alert_series().await?;
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].state_json, "{\"phase\":\"firing\"}");
        let listed = store.list_alerts(None, 10).await?;
        assert_eq!(
            listed.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
            vec!["a2", "a1"],
            "newest first"
        );
        assert_eq!(listed[1].value, 95.5);
        assert_eq!(listed[1].labels["host"], "h1");
        assert_eq!(store.list_alerts(Some("firing"), 10).await?.len(), 1);
        let due = store.due_deliveries(T, 10).await?;
        assert_eq!(due.len(), 1, "none for a channel that does not exist");
        assert_eq!(due[0].channel, "ops");

        // The next round resolves a1, drops the cleared a2 and forgets the series.
        let mut resolved = alert("a1", "resolved", T);
        resolved.value = 10.0;
        let next = AlertRound {
            now_ms: T + 10,
            forget_series: vec!["f1".into()],
            alerts: vec![resolved],
            drop_alerts: vec!["a2".into()],
            events: vec![
                ("a1".into(), T + 10, "resolved".into()),
                ("a2".into(), T + 10, "cleared".into()),
            ],
            ..AlertRound::default()
        };
        store.commit_alert_round(&next).await?;
        assert!(store.alert_series().await?.is_empty());
        assert!(store.alert("a2").await?.is_none());
        let a1 = store.alert("a1").await?.unwrap();
        assert_eq!((a1.state.as_str(), a1.value), ("resolved", 10.0));
        let history: Vec<String> = store
            .alert_events("a1")
            .await?
            .into_iter()
            .map(|e| e.message)
            .collect();
        assert_eq!(history, vec!["firing", "resolved"]);
        Ok(())
    }

    store_test!(acknowledgements_survive_the_evaluator);
    async fn acknowledgements_survive_the_evaluator(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        store
            .commit_alert_round(&AlertRound {
                now_ms: T,
                alerts: vec![alert("a1", "firing", T)],
                ..AlertRound::default()
            })
            .await?;
        let acked = store
            .acknowledge_alert("a1", "user:alice", "looking", T + 1)
            .await?;
        assert_eq!(acked.acked_by.as_deref(), Some("user:alice"));
        assert_eq!(
            store.acknowledged_open_alerts().await?,
            BTreeSet::from(["a1".to_owned()])
        );
        // The evaluator writes the instance again: the acknowledgement stays.
        let mut again = alert("a1", "firing", T);
        again.value = 99.0;
        store
            .commit_alert_round(&AlertRound {
                now_ms: T + 2,
                alerts: vec![again],
                ..AlertRound::default()
            })
            .await?;
        let a1 = store.alert("a1").await?.unwrap();
        assert_eq!((a1.acked_at_ms, a1.value), (Some(T + 1), 99.0));
        assert_eq!(a1.ack_comment.as_deref(), Some("looking"));
        let history = store.alert_events("a1").await?;
        assert_eq!(history[0].message, "acknowledged by user:alice: looking");
        assert!(matches!(
            store.acknowledge_alert("nope", "x", "", T).await,
            Err(StoreError::NotFound { .. })
        ));
        Ok(())
    }

    store_test!(silences_expire_early_and_list_by_end);
    async fn silences_expire_early_and_list_by_end(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        let silence = |id: &str, ends: i64| SilenceRow {
            id: id.into(),
            matchers_json: "[]".into(),
            starts_at_ms: T,
            ends_at_ms: ends,
            comment: "maintenance".into(),
            created_by: "user:alice".into(),
            created_at_ms: T,
            expired_by: None,
        };
        store.insert_silence(&silence("s1", T + 100)).await?;
        store.insert_silence(&silence("s2", T + 50)).await?;
        let ids = |rows: Vec<SilenceRow>| rows.into_iter().map(|s| s.id).collect::<Vec<_>>();
        assert_eq!(ids(store.silences(T).await?), vec!["s2", "s1"]);
        let ended = store.expire_silence("s1", "user:bob", T + 10).await?;
        assert_eq!(
            (ended.ends_at_ms, ended.expired_by.as_deref()),
            (T + 10, Some("user:bob"))
        );
        // Ending it again changes nothing.
        let again = store.expire_silence("s1", "user:carol", T + 20).await?;
        assert_eq!(again.expired_by.as_deref(), Some("user:bob"));
        assert_eq!(ids(store.silences(T + 10).await?), vec!["s2"]);
        assert!(matches!(
            store.expire_silence("nope", "x", T).await,
            Err(StoreError::NotFound { .. })
        ));
        Ok(())
    }

    store_test!(deliveries_are_claimed_retried_and_counted);
    async fn deliveries_are_claimed_retried_and_counted(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        store.insert_channel(&channel("ops")).await?;
        assert!(matches!(
            store.insert_channel(&channel("ops")).await,
            Err(StoreError::AlreadyExists { .. })
        ));
        store
            .commit_alert_round(&AlertRound {
                now_ms: T,
                deliveries: vec![delivery("ops", "firing"), delivery("ops", "resolved")],
                ..AlertRound::default()
            })
            .await?;
        let due = store.due_deliveries(T, 10).await?;
        assert_eq!(due.len(), 2);
        assert!(store.claim_delivery(&due[0], T + 30_000).await?);
        assert!(
            !store.claim_delivery(&due[0], T + 30_000).await?,
            "taken once only"
        );
        assert_eq!(store.due_deliveries(T, 10).await?.len(), 1, "leased away");
        store
            .finish_delivery(
                &due[0],
                &DeliveryResult::Retry {
                    error: "HTTP 500".into(),
                    next_attempt_ms: T + 1_000,
                },
                T,
            )
            .await?;
        store
            .finish_delivery(&due[1], &DeliveryResult::Delivered, T)
            .await?;
        let ops = &store.channels().await?[0];
        assert_eq!((ops.attempts, ops.failures, ops.delivered), (2, 1, 1));
        assert_eq!((ops.pending, ops.retrying, ops.given_up), (1, 1, 0));
        assert_eq!(ops.last_error.as_deref(), Some("HTTP 500"));
        assert_eq!(ops.last_success_ms, Some(T));
        let retry = store.due_deliveries(T + 1_000, 10).await?;
        assert_eq!((retry.len(), retry[0].attempts), (1, 1));
        store
            .finish_delivery(
                &retry[0],
                &DeliveryResult::GaveUp {
                    error: "HTTP 500".into(),
                },
                T + 1_000,
            )
            .await?;
        let ops = &store.channels().await?[0];
        assert_eq!((ops.pending, ops.retrying, ops.given_up), (0, 0, 1));
        assert_eq!(
            store.prune_deliveries(T + 500).await?,
            1,
            "the delivered one"
        );
        assert_eq!(store.channel_deliveries("ops", 10).await?.len(), 1);
        assert!(store.delete_channel("ops").await?.is_some());
        assert!(store.channels().await?.is_empty());
        assert!(store.delete_channel("ops").await?.is_none());
        Ok(())
    }

    store_test!(alertmanager_refreshes_do_not_pile_up);
    async fn alertmanager_refreshes_do_not_pile_up(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        store.insert_channel(&channel("am")).await?;
        for i in 0..3 {
            store
                .commit_alert_round(&AlertRound {
                    now_ms: T + i,
                    refreshes: vec![delivery("am", "refresh")],
                    ..AlertRound::default()
                })
                .await?;
        }
        assert_eq!(store.due_deliveries(T + 10, 10).await?.len(), 1);
        assert_eq!(store.channels().await?[0].last_refresh_ms, Some(T + 2));
        Ok(())
    }
}
