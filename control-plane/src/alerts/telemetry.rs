//! Alerting's contribution to the control plane's `/metrics`: the alerts
//! firing now by name and severity, how long evaluations take, and
//! notification attempts and failures per channel, so an existing
//! Prometheus can watch Argosy's alerting itself.

use super::rules::Severity;
use argosy_proto::exposition::{Exposition, Kind};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the evaluation-duration histogram.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
struct Inner {
    /// (alertname, severity) → firing now. Names seen once stay, at 0.
    firing: BTreeMap<(String, Severity), usize>,
    evaluations: Histogram,
    evaluation_failures: u64,
    /// channel → (attempts, failures) since start.
    notifications: BTreeMap<String, (u64, u64)>,
}

/// Shared between the evaluation loop, the sender and `/metrics`.
#[derive(Debug, Default)]
pub struct AlertTelemetry {
    inner: Mutex<Inner>,
}

impl AlertTelemetry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a finished evaluation and what fires after it.
    pub fn evaluated(&self, took: Duration, firing: &BTreeMap<(String, Severity), usize>) {
        let mut inner = self.lock();
        let seconds = took.as_secs_f64();
        let h = &mut inner.evaluations;
        for (bound, count) in BUCKETS.iter().zip(h.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
        for count in inner.firing.values_mut() {
            *count = 0;
        }
        for (key, count) in firing {
            inner.firing.insert(key.clone(), *count);
        }
    }

    pub fn evaluation_failed(&self) {
        self.lock().evaluation_failures += 1;
    }

    /// Records one delivery attempt to `channel`.
    pub fn attempted(&self, channel: &str, failed: bool) {
        let mut inner = self.lock();
        let entry = inner.notifications.entry(channel.to_owned()).or_default();
        entry.0 += 1;
        if failed {
            entry.1 += 1;
        }
    }

    /// Writes alerting's families.
    pub fn write(&self, w: &mut Exposition) {
        let inner = self.lock();
        w.family(
            "argosy_alerts_firing",
            "Alerts firing now, by alert name and severity.",
            Kind::Gauge,
        );
        for ((name, severity), count) in &inner.firing {
            w.sample(
                &[("alertname", name), ("severity", severity.as_str())],
                *count as f64,
            );
        }
        w.family(
            "argosy_alert_evaluation_duration_seconds",
            "How long one evaluation of every alert rule took.",
            Kind::Histogram,
        );
        let h = &inner.evaluations;
        let buckets: Vec<(f64, u64)> = BUCKETS.iter().copied().zip(h.counts).collect();
        w.histogram(&[], &buckets, h.sum, h.count);
        w.family(
            "argosy_alert_evaluation_failures_total",
            "Evaluations that failed (the store was unavailable); retried at the next interval.",
            Kind::Counter,
        );
        w.sample(&[], inner.evaluation_failures as f64);
        w.family(
            "argosy_alert_notifications_total",
            "Notification delivery attempts, by channel.",
            Kind::Counter,
        );
        for (channel, (attempts, _)) in &inner.notifications {
            w.sample(&[("channel", channel)], *attempts as f64);
        }
        w.family(
            "argosy_alert_notification_failures_total",
            "Notification delivery attempts that failed, by channel (each is retried or shown as given up).",
            Kind::Counter,
        );
        for (channel, (_, failures)) in &inner.notifications {
            w.sample(&[("channel", channel)], *failures as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firing_counts_drop_to_zero_instead_of_vanishing() {
        let t = AlertTelemetry::default();
        let key = ("HostCpuHigh".to_owned(), Severity::Warning);
        t.evaluated(Duration::from_millis(3), &[(key.clone(), 2)].into());
        t.evaluated(Duration::from_millis(30), &BTreeMap::new());
        t.attempted("ops", false);
        t.attempted("ops", true);
        let mut w = Exposition::new();
        t.write(&mut w);
        let text = w.finish();
        for line in [
            "argosy_alerts_firing{alertname=\"HostCpuHigh\",severity=\"warning\"} 0",
            "argosy_alert_evaluation_duration_seconds_bucket{le=\"0.005\"} 1",
            "argosy_alert_evaluation_duration_seconds_bucket{le=\"0.05\"} 2",
            "argosy_alert_evaluation_duration_seconds_count 2",
            "argosy_alert_notifications_total{channel=\"ops\"} 2",
            "argosy_alert_notification_failures_total{channel=\"ops\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
    }
}
