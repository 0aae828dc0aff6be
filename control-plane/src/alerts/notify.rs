//! Notifications, the decisions: the payload each kind of channel gets (a
//! generic JSON webhook, a Slack-compatible incoming webhook, Prometheus
//! Alertmanager's `POST /api/v2/alerts`) and the retry policy — a failed
//! delivery is retried with backoff and, when it gives up, shown as failed
//! on its channel, never silently dropped. Pure; `sender` posts.

use super::evaluate::{AlertSnapshot, AlertStatus};
use super::routing::{ALERTMANAGER_RESEND_MS, ChannelKind};
use crate::clock::format_ms;
use crate::store::DeliveryResult;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What a delivery in the outbox carries: why it is sent and the alerts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    /// firing, repeat, resolved or refresh.
    pub kind: String,
    pub alerts: Vec<AlertSnapshot>,
}

/// Where links in notifications point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Links {
    /// The control plane's public HTTP URL.
    pub base_url: String,
}

impl Links {
    /// The alert's page in the HTTP API.
    pub fn alert(&self, id: &str) -> String {
        format!("{}/api/v1/alerts/{id}", self.base_url.trim_end_matches('/'))
    }
}

/// How long Alertmanager should consider a firing alert live without
/// hearing of it again (Prometheus uses four resend intervals too).
pub const ALERTMANAGER_VALIDITY_MS: i64 = 4 * ALERTMANAGER_RESEND_MS;

fn status(alert: &AlertSnapshot) -> &'static str {
    match alert.status {
        AlertStatus::Resolved => "resolved",
        AlertStatus::Firing | AlertStatus::Pending => "firing",
    }
}

fn ends_at_ms(alert: &AlertSnapshot) -> Option<i64> {
    match alert.status {
        AlertStatus::Resolved => alert.resolved_at_ms,
        _ => None,
    }
}

fn starts_at_ms(alert: &AlertSnapshot) -> i64 {
    alert.firing_since_ms.unwrap_or(alert.started_at_ms)
}

/// The request body for a channel of `kind`, sent at `now_ms`.
pub fn render(
    kind: ChannelKind,
    channel: &str,
    payload: &Payload,
    links: &Links,
    now_ms: i64,
) -> Value {
    match kind {
        ChannelKind::Webhook => webhook_body(channel, payload, links),
        ChannelKind::Slack => slack_body(payload, links),
        ChannelKind::Alertmanager => alertmanager_body(payload, links, now_ms),
    }
}

fn webhook_body(channel: &str, payload: &Payload, links: &Links) -> Value {
    let any_firing = payload.alerts.iter().any(|a| status(a) == "firing");
    let alerts: Vec<Value> = payload
        .alerts
        .iter()
        .map(|a| {
            json!({
                "id": a.id,
                "fingerprint": a.fingerprint,
                "alertname": a.rule,
                "status": status(a),
                "severity": a.severity.as_str(),
                "labels": a.labels,
                "summary": a.summary,
                "condition": a.condition,
                "value": a.value,
                "starts_at": format_ms(starts_at_ms(a)),
                "ends_at": ends_at_ms(a).map(format_ms),
                "url": links.alert(&a.id),
            })
        })
        .collect();
    json!({
        "version": "1",
        "source": "argosy",
        "receiver": channel,
        "kind": payload.kind,
        "status": if any_firing { "firing" } else { "resolved" },
        "alerts": alerts,
    })
}

fn slack_line(a: &AlertSnapshot, kind: &str, links: &Links) -> String {
    let (mark, word) = match (status(a), kind) {
        ("resolved", _) => (":large_green_circle:", "RESOLVED"),
        (_, "repeat") => (":red_circle:", "STILL FIRING"),
        _ => (":red_circle:", "FIRING"),
    };
    format!(
        "{mark} *[{word}] {}* ({}): {} — {} <{}|{}>",
        a.rule,
        a.severity,
        a.summary,
        a.condition,
        links.alert(&a.id),
        a.id
    )
}

fn slack_body(payload: &Payload, links: &Links) -> Value {
    let lines: Vec<String> = payload
        .alerts
        .iter()
        .map(|a| slack_line(a, &payload.kind, links))
        .collect();
    json!({ "text": lines.join("\n") })
}

fn alertmanager_body(payload: &Payload, links: &Links, now_ms: i64) -> Value {
    let alerts: Vec<Value> = payload
        .alerts
        .iter()
        .map(|a| {
            let ends = ends_at_ms(a).unwrap_or(now_ms + ALERTMANAGER_VALIDITY_MS);
            json!({
                "labels": a.labels,
                "annotations": {
                    "summary": a.summary,
                    "description": a.condition,
                    "argosy_alert_id": a.id,
                },
                "startsAt": format_ms(starts_at_ms(a)),
                "endsAt": format_ms(ends),
                "generatorURL": links.alert(&a.id),
            })
        })
        .collect();
    Value::Array(alerts)
}

/// A delivery attempt that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("{target} answered HTTP {code}: {body}")]
    Status {
        target: String,
        code: u16,
        body: String,
    },
    #[error("cannot reach {target}: {reason}")]
    Transport { target: String, reason: String },
}

impl DeliveryError {
    /// A refusal that retrying will not change (a 4xx other than 408
    /// Request Timeout and 429 Too Many Requests).
    pub fn is_permanent(&self) -> bool {
        matches!(self, DeliveryError::Status { code, .. }
            if (400..500).contains(code) && *code != 408 && *code != 429)
    }
}

/// How many times a delivery is tried before it is given up (and shown as
/// failed on its channel). Alertmanager re-sends are regenerated every
/// minute anyway, so they get fewer.
pub fn max_attempts(kind: &str) -> i64 {
    if kind == "refresh" { 3 } else { 10 }
}

/// The wait before retry number `attempts_made` (1 after the first
/// failure): 1 s doubling to at most 5 minutes; ten attempts span about a
/// quarter of an hour.
pub fn retry_delay_ms(attempts_made: i64) -> i64 {
    let exponent = u32::try_from(attempts_made.clamp(1, 20) - 1).unwrap_or(0);
    (1_000_i64 << exponent).min(5 * 60_000)
}

/// What to do after an attempt: done, retry later, or give up.
pub fn after_attempt(
    kind: &str,
    attempts_before: i64,
    outcome: Result<(), DeliveryError>,
    now_ms: i64,
) -> DeliveryResult {
    let Err(error) = outcome else {
        return DeliveryResult::Delivered;
    };
    let made = attempts_before + 1;
    if error.is_permanent() || made >= max_attempts(kind) {
        DeliveryResult::GaveUp {
            error: format!("{error} (gave up after {made} attempt(s))"),
        }
    } else {
        DeliveryResult::Retry {
            error: error.to_string(),
            next_attempt_ms: now_ms + retry_delay_ms(made),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::rules::Severity;

    const T: i64 = 1_700_000_000_000;

    fn alert(status: AlertStatus) -> AlertSnapshot {
        AlertSnapshot {
            id: "4f2a9c0d1e3b".into(),
            fingerprint: "0123456789abcdef".into(),
            rule: "HostCpuHigh".into(),
            severity: Severity::Warning,
            labels: [
                ("alertname".to_owned(), "HostCpuHigh".to_owned()),
                ("host".to_owned(), "h1".to_owned()),
                ("region".to_owned(), "eu-west".to_owned()),
                ("severity".to_owned(), "warning".to_owned()),
            ]
            .into(),
            summary: "cpu 93.2 % on web-1 (eu-west)".into(),
            condition: "cpu > 80 % for 5m".into(),
            value: 93.2,
            status,
            started_at_ms: T - 300_000,
            firing_since_ms: Some(T),
            resolved_at_ms: (status == AlertStatus::Resolved).then_some(T + 60_000),
        }
    }

    fn links() -> Links {
        Links {
            base_url: "http://argosy.example:8080/".into(),
        }
    }

    fn payload(kind: &str, status: AlertStatus) -> Payload {
        Payload {
            kind: kind.into(),
            alerts: vec![alert(status)],
        }
    }

    #[test]
    fn the_webhook_gets_argosys_own_json() {
        let body = render(
            ChannelKind::Webhook,
            "ops",
            &payload("firing", AlertStatus::Firing),
            &links(),
            T,
        );
        expect_test::expect![[r#"
            {
              "alerts": [
                {
                  "alertname": "HostCpuHigh",
                  "condition": "cpu > 80 % for 5m",
                  "ends_at": null,
                  "fingerprint": "0123456789abcdef",
                  "id": "4f2a9c0d1e3b",
                  "labels": {
                    "alertname": "HostCpuHigh",
                    "host": "h1",
                    "region": "eu-west",
                    "severity": "warning"
                  },
                  "severity": "warning",
                  "starts_at": "2023-11-14T22:13:20Z",
                  "status": "firing",
                  "summary": "cpu 93.2 % on web-1 (eu-west)",
                  "url": "http://argosy.example:8080/api/v1/alerts/4f2a9c0d1e3b",
                  "value": 93.2
                }
              ],
              "kind": "firing",
              "receiver": "ops",
              "source": "argosy",
              "status": "firing",
              "version": "1"
            }"#]]
        .assert_eq(&serde_json::to_string_pretty(&body).unwrap());
        let resolved = render(
            ChannelKind::Webhook,
            "ops",
            &payload("resolved", AlertStatus::Resolved),
            &links(),
            T,
        );
        assert_eq!(resolved["status"], "resolved");
        assert_eq!(resolved["alerts"][0]["ends_at"], "2023-11-14T22:14:20Z");
    }

    #[test]
    fn slack_gets_a_text_line_per_alert() {
        let firing = render(
            ChannelKind::Slack,
            "chat",
            &payload("firing", AlertStatus::Firing),
            &links(),
            T,
        );
        expect_test::expect![[r#"{"text":":red_circle: *[FIRING] HostCpuHigh* (warning): cpu 93.2 % on web-1 (eu-west) — cpu > 80 % for 5m <http://argosy.example:8080/api/v1/alerts/4f2a9c0d1e3b|4f2a9c0d1e3b>"}"#]]
            .assert_eq(&firing.to_string());
        let repeat = render(
            ChannelKind::Slack,
            "chat",
            &payload("repeat", AlertStatus::Firing),
            &links(),
            T,
        );
        assert!(repeat["text"].as_str().unwrap().contains("[STILL FIRING]"));
        let resolved = render(
            ChannelKind::Slack,
            "chat",
            &payload("resolved", AlertStatus::Resolved),
            &links(),
            T,
        );
        assert!(
            resolved["text"]
                .as_str()
                .unwrap()
                .starts_with(":large_green_circle: *[RESOLVED]")
        );
    }

    #[test]
    fn alertmanager_gets_its_v2_alert_list() {
        let firing = render(
            ChannelKind::Alertmanager,
            "am",
            &payload("firing", AlertStatus::Firing),
            &links(),
            T + 1_000,
        );
        expect_test::expect![[r#"
            [
              {
                "annotations": {
                  "argosy_alert_id": "4f2a9c0d1e3b",
                  "description": "cpu > 80 % for 5m",
                  "summary": "cpu 93.2 % on web-1 (eu-west)"
                },
                "endsAt": "2023-11-14T22:17:21Z",
                "generatorURL": "http://argosy.example:8080/api/v1/alerts/4f2a9c0d1e3b",
                "labels": {
                  "alertname": "HostCpuHigh",
                  "host": "h1",
                  "region": "eu-west",
                  "severity": "warning"
                },
                "startsAt": "2023-11-14T22:13:20Z"
              }
            ]"#]]
        .assert_eq(&serde_json::to_string_pretty(&firing).unwrap());
        let resolved = render(
            ChannelKind::Alertmanager,
            "am",
            &payload("resolved", AlertStatus::Resolved),
            &links(),
            T + 120_000,
        );
        assert_eq!(
            resolved[0]["endsAt"], "2023-11-14T22:14:20Z",
            "when it resolved"
        );
    }

    #[test]
    fn retries_back_off_and_end() {
        let delays: Vec<i64> = (1..=11).map(retry_delay_ms).collect();
        assert_eq!(
            delays,
            vec![
                1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000,
                300_000
            ]
        );
        let fail = || {
            Err(DeliveryError::Status {
                target: "http://x".into(),
                code: 500,
                body: "boom".into(),
            })
        };
        assert_eq!(
            after_attempt("firing", 0, Ok(()), T),
            DeliveryResult::Delivered
        );
        assert_eq!(
            after_attempt("firing", 0, fail(), T),
            DeliveryResult::Retry {
                error: "http://x answered HTTP 500: boom".into(),
                next_attempt_ms: T + 1_000
            }
        );
        assert_eq!(
            after_attempt("firing", 3, fail(), T),
            DeliveryResult::Retry {
                error: "http://x answered HTTP 500: boom".into(),
                next_attempt_ms: T + 8_000
            }
        );
        assert!(matches!(
            after_attempt("firing", 9, fail(), T),
            DeliveryResult::GaveUp { error } if error.ends_with("(gave up after 10 attempt(s))")
        ));
        assert!(matches!(
            after_attempt("refresh", 2, fail(), T),
            DeliveryResult::GaveUp { .. }
        ));
    }

    #[test]
    fn client_errors_are_not_retried_except_timeouts_and_rate_limits() {
        let status = |code| DeliveryError::Status {
            target: "t".into(),
            code,
            body: String::new(),
        };
        assert!(status(400).is_permanent());
        assert!(status(404).is_permanent());
        assert!(!status(408).is_permanent());
        assert!(!status(429).is_permanent());
        assert!(!status(500).is_permanent());
        assert!(!status(503).is_permanent());
        let transport = DeliveryError::Transport {
            target: "t".into(),
            reason: "refused".into(),
        };
        assert!(!transport.is_permanent());
        assert!(matches!(
            after_attempt("firing", 0, Err(status(400)), T),
            DeliveryResult::GaveUp { .. }
        ));
    }
}
