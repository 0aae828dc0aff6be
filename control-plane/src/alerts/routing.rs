//! Notification channels and routing: which channels hear about which
//! alerts (every channel has a minimum severity), how a channel is
//! validated, and what Prometheus Alertmanager is re-sent to keep its
//! copy of the firing alerts alive. Pure.

use super::evaluate::{AlertSnapshot, Notification, SeriesState};
use super::rules::Severity;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// How a channel is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// A generic JSON webhook (Argosy's own payload).
    Webhook,
    /// A Slack-compatible incoming webhook (`{"text": …}`; also Mattermost
    /// and Rocket.Chat).
    Slack,
    /// Prometheus Alertmanager's `POST /api/v2/alerts`.
    Alertmanager,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 3] = [
        ChannelKind::Webhook,
        ChannelKind::Slack,
        ChannelKind::Alertmanager,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Slack => "slack",
            ChannelKind::Alertmanager => "alertmanager",
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChannelKind {
    type Err = ChannelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ChannelKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ChannelError::Kind(s.to_owned()))
    }
}

/// A configured channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub name: String,
    pub kind: ChannelKind,
    /// Where deliveries go (for Alertmanager, the full `/api/v2/alerts`
    /// URL). It may carry a credential (Slack's URLs do): shown only
    /// through [`redacted_url`].
    pub url: String,
    /// Alerts below this severity do not reach the channel.
    pub min_severity: Severity,
}

/// Why a channel was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("unknown channel kind {0:?}: use webhook, slack or alertmanager")]
    Kind(String),
    #[error("channel name {0:?} is not valid: use 1–63 letters, digits, '-', '_' or '.'")]
    Name(String),
    #[error("the channel URL is not a valid http:// or https:// URL with a host: {0}")]
    Url(String),
}

/// Checks a new channel's name and URL, and for Alertmanager completes a
/// base URL (`http://am:9093`) with `/api/v2/alerts`.
pub fn validate(name: &str, kind: ChannelKind, url: &str) -> Result<String, ChannelError> {
    if !crate::deploy::units::is_label_part(name) || name.contains('/') {
        return Err(ChannelError::Name(name.to_owned()));
    }
    let mut parsed = url::Url::parse(url.trim()).map_err(|e| ChannelError::Url(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(ChannelError::Url(format!(
            "{} has no http(s) host",
            redacted_url(url)
        )));
    }
    if kind == ChannelKind::Alertmanager && !parsed.path().ends_with("/api/v2/alerts") {
        let base = parsed.path().trim_end_matches('/').to_owned();
        parsed.set_path(&format!("{base}/api/v2/alerts"));
    }
    Ok(parsed.to_string())
}

/// A URL fit to show: scheme, host and port; the path and query (where
/// webhook credentials live) are elided.
pub fn redacted_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => {
            let host = parsed.host_str().unwrap_or_default();
            let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
            let rest = if parsed.path().len() > 1 || parsed.query().is_some() {
                "/…"
            } else {
                ""
            };
            format!("{}://{host}{port}{rest}", parsed.scheme())
        }
        Err(_) => "(not a URL)".to_owned(),
    }
}

/// Whether a channel hears about alerts of `severity`.
pub fn accepts(channel: &Channel, severity: Severity) -> bool {
    severity >= channel.min_severity
}

/// The channels a notification goes to.
pub fn route<'a>(notification: &Notification, channels: &'a [Channel]) -> Vec<&'a Channel> {
    channels
        .iter()
        .filter(|c| accepts(c, notification.alert.severity))
        .collect()
}

/// How often Alertmanager is re-sent the alerts it was told are firing.
/// Alertmanager resolves an alert nobody re-sends once its `endsAt` has
/// passed; Argosy sends `endsAt` a few of these intervals ahead (see
/// `notify`), as Prometheus does.
pub const ALERTMANAGER_RESEND_MS: i64 = 60_000;

/// The alerts an Alertmanager channel should be re-sent now: those its
/// receivers were told are firing, at or above its minimum severity.
/// `conditions` gives each rule's condition in words.
pub fn alertmanager_refresh(
    series: &[SeriesState],
    channel: &Channel,
    conditions: &BTreeMap<String, String>,
) -> Vec<AlertSnapshot> {
    if channel.kind != ChannelKind::Alertmanager {
        return Vec::new();
    }
    series
        .iter()
        .filter(|s| s.told_firing && s.silenced_by.is_none() && accepts(channel, s.severity))
        .map(|s| {
            let condition = conditions.get(&s.rule).map_or("", String::as_str);
            let mut snapshot = s.snapshot(condition);
            // Receivers were told it fires; a flapping series that is
            // resolved at this moment is still firing to them.
            snapshot.status = super::evaluate::AlertStatus::Firing;
            snapshot.resolved_at_ms = None;
            snapshot
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::evaluate::{AlertStatus, NotificationKind, Phase};

    fn channel(name: &str, kind: ChannelKind, min: Severity) -> Channel {
        Channel {
            name: name.into(),
            kind,
            url: "http://127.0.0.1:9/hook".into(),
            min_severity: min,
        }
    }

    fn notification(severity: Severity) -> Notification {
        Notification {
            kind: NotificationKind::Firing,
            alert: AlertSnapshot {
                id: "a".into(),
                fingerprint: "f".into(),
                rule: "R".into(),
                severity,
                labels: Default::default(),
                summary: String::new(),
                condition: String::new(),
                value: 1.0,
                status: AlertStatus::Firing,
                started_at_ms: 0,
                firing_since_ms: Some(0),
                resolved_at_ms: None,
            },
        }
    }

    #[test]
    fn channels_hear_their_severity_and_above() {
        let channels = [
            channel("all", ChannelKind::Webhook, Severity::Info),
            channel("pager", ChannelKind::Alertmanager, Severity::Critical),
            channel("chat", ChannelKind::Slack, Severity::Warning),
        ];
        let names = |severity| -> Vec<&str> {
            route(&notification(severity), &channels)
                .iter()
                .map(|c| c.name.as_str())
                .collect()
        };
        assert_eq!(names(Severity::Info), vec!["all"]);
        assert_eq!(names(Severity::Warning), vec!["all", "chat"]);
        assert_eq!(names(Severity::Critical), vec!["all", "pager", "chat"]);
        assert!(route(&notification(Severity::Critical), &[]).is_empty());
    }

    #[test]
    fn urls_are_checked_and_alertmanager_gets_its_path() {
        assert_eq!(
            validate("am", ChannelKind::Alertmanager, "http://127.0.0.1:9093").unwrap(),
            "http://127.0.0.1:9093/api/v2/alerts"
        );
        assert_eq!(
            validate("am", ChannelKind::Alertmanager, "http://am:9093/prefix/").unwrap(),
            "http://am:9093/prefix/api/v2/alerts"
        );
        assert_eq!(
            validate("am", ChannelKind::Alertmanager, "http://am/api/v2/alerts").unwrap(),
            "http://am/api/v2/alerts"
        );
        assert_eq!(
            validate("ops", ChannelKind::Webhook, "https://hooks.example/x?k=1").unwrap(),
            "https://hooks.example/x?k=1"
        );
        assert!(matches!(
            validate("ops", ChannelKind::Webhook, "ftp://x/"),
            Err(ChannelError::Url(_))
        ));
        assert!(matches!(
            validate("ops", ChannelKind::Webhook, "not a url"),
            Err(ChannelError::Url(_))
        ));
        assert!(matches!(
            validate("a/b", ChannelKind::Webhook, "http://x/"),
            Err(ChannelError::Name(_))
        ));
        assert!(matches!(
            "pagerduty".parse::<ChannelKind>(),
            Err(ChannelError::Kind(_))
        ));
    }

    #[test]
    fn shown_urls_keep_no_credentials() {
        assert_eq!(
            redacted_url("https://hooks.slack.com/services/T0/B0/SECRET"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            redacted_url("http://127.0.0.1:9093/"),
            "http://127.0.0.1:9093"
        );
        assert_eq!(redacted_url("http://x/?token=s"), "http://x/…");
        let err = validate("x", ChannelKind::Webhook, "ftp://h/SECRET").unwrap_err();
        assert!(!err.to_string().contains("SECRET"), "{err}");
    }

    #[test]
    fn alertmanager_is_resent_what_its_receivers_think_fires() {
        let base = SeriesState {
            fingerprint: "f1".into(),
            rule: "HostCpuHigh".into(),
            labels: Default::default(),
            severity: Severity::Warning,
            phase: Phase::Firing,
            alert_id: Some("a1".into()),
            active_since_ms: Some(1),
            firing_since_ms: Some(1),
            resolved_at_ms: None,
            last_active_ms: None,
            value: 1.0,
            summary: "s".into(),
            told_firing: true,
            last_notified_ms: Some(1),
            firing_starts: vec![],
            flapping: false,
            event_key: None,
            silenced_by: None,
            recorded_ms: None,
        };
        let untold = SeriesState {
            fingerprint: "f2".into(),
            told_firing: false,
            ..base.clone()
        };
        let held = SeriesState {
            fingerprint: "f3".into(),
            phase: Phase::Inactive,
            flapping: true,
            resolved_at_ms: Some(5),
            ..base.clone()
        };
        let silenced = SeriesState {
            fingerprint: "f4".into(),
            silenced_by: Some("s".into()),
            ..base.clone()
        };
        let series = [base, untold, held, silenced];
        let am = channel("am", ChannelKind::Alertmanager, Severity::Info);
        let conditions = [("HostCpuHigh".to_owned(), "cpu > 80 %".to_owned())].into();
        let sent = alertmanager_refresh(&series, &am, &conditions);
        assert_eq!(sent[0].condition, "cpu > 80 %");
        let fps: Vec<&str> = sent.iter().map(|a| a.fingerprint.as_str()).collect();
        assert_eq!(fps, vec!["f1", "f3"]);
        assert!(
            sent.iter()
                .all(|a| a.status == AlertStatus::Firing && a.resolved_at_ms.is_none())
        );
        let critical_only = channel("am", ChannelKind::Alertmanager, Severity::Critical);
        assert!(alertmanager_refresh(&series, &critical_only, &conditions).is_empty());
        let hook = channel("hook", ChannelKind::Webhook, Severity::Info);
        assert!(alertmanager_refresh(&series, &hook, &conditions).is_empty());
    }
}
