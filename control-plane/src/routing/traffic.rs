//! What the ingresses measured, per service and revision: the agents'
//! `TrafficReport`s kept for a few minutes in memory, and summed over a
//! window for canary analysis (`rollout.analyze` sees each revision's
//! requests, error rate and latency) and for `argosy routes show`.
//!
//! Each replica keeps what its own agents report; that is what a canary
//! is judged on (a replica holding no agent of the service sees no
//! traffic and says so).

use argosy_proto::v1 as pb;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

/// How long reports are kept.
pub const KEEP_MS: i64 = 10 * 60 * 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    at_ms: i64,
    service: String,
    revision: u64,
    requests: u64,
    errors: u64,
    p50_micros: u64,
    p99_micros: u64,
}

/// One revision's traffic over a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RevisionStats {
    pub requests: u64,
    pub errors: u64,
    /// `errors / requests`, 0 without requests.
    pub error_rate: f64,
    /// Request-weighted mean of the reported medians.
    pub p50_ms: f64,
    /// The worst reported 99th percentile (conservative).
    pub p99_ms: f64,
}

impl RevisionStats {
    /// Several revisions' stats as one (the stable side of a canary).
    pub fn combine<'s>(stats: impl IntoIterator<Item = &'s RevisionStats>) -> RevisionStats {
        let mut sum = RevisionStats::default();
        let mut weighted_p50 = 0.0;
        for s in stats {
            sum.requests += s.requests;
            sum.errors += s.errors;
            weighted_p50 += s.p50_ms * s.requests as f64;
            sum.p99_ms = sum.p99_ms.max(s.p99_ms);
        }
        if sum.requests > 0 {
            sum.error_rate = sum.errors as f64 / sum.requests as f64;
            sum.p50_ms = weighted_p50 / sum.requests as f64;
        }
        sum
    }
}

/// The recent reports of every agent connected to this replica.
#[derive(Debug, Default)]
pub struct TrafficLog {
    entries: Mutex<VecDeque<Entry>>,
}

impl TrafficLog {
    /// Keeps `report` from `host` as of `now_ms`, and forgets what is older
    /// than [`KEEP_MS`].
    pub fn record(&self, _host: &str, report: pb::TrafficReport, now_ms: i64) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for r in report.revisions {
            entries.push_back(Entry {
                at_ms: now_ms,
                service: r.service,
                revision: r.revision,
                requests: r.requests,
                errors: r.errors,
                p50_micros: r.p50_micros,
                p99_micros: r.p99_micros,
            });
        }
        while entries.front().is_some_and(|e| e.at_ms < now_ms - KEEP_MS) {
            entries.pop_front();
        }
    }

    /// `service`'s traffic per revision reported since `since_ms`.
    pub fn since(&self, service: &str, since_ms: i64) -> BTreeMap<u64, RevisionStats> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        summarize(
            entries
                .iter()
                .filter(|e| e.service == service && e.at_ms >= since_ms),
        )
    }
}

fn summarize<'e>(entries: impl Iterator<Item = &'e Entry>) -> BTreeMap<u64, RevisionStats> {
    #[derive(Default)]
    struct Sum {
        requests: u64,
        errors: u64,
        weighted_p50: u128,
        p99: u64,
    }
    let mut sums: BTreeMap<u64, Sum> = BTreeMap::new();
    for e in entries {
        let sum = sums.entry(e.revision).or_default();
        sum.requests += e.requests;
        sum.errors += e.errors;
        sum.weighted_p50 += u128::from(e.p50_micros) * u128::from(e.requests);
        sum.p99 = sum.p99.max(e.p99_micros);
    }
    sums.into_iter()
        .map(|(revision, s)| {
            let ratio = |a: u128, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
            (
                revision,
                RevisionStats {
                    requests: s.requests,
                    errors: s.errors,
                    error_rate: ratio(u128::from(s.errors), s.requests),
                    p50_ms: ratio(s.weighted_p50, s.requests) / 1000.0,
                    p99_ms: s.p99 as f64 / 1000.0,
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(
        service: &str,
        revision: u64,
        requests: u64,
        errors: u64,
        p50: u64,
        p99: u64,
    ) -> pb::TrafficReport {
        pb::TrafficReport {
            revisions: vec![pb::RevisionTraffic {
                service: service.to_owned(),
                revision,
                requests,
                errors,
                p50_micros: p50,
                p99_micros: p99,
            }],
        }
    }

    #[test]
    fn reports_sum_per_revision_over_the_window() {
        let log = TrafficLog::default();
        log.record("h1", report("web", 7, 100, 1, 2_000, 9_000), 1_000);
        log.record("h2", report("web", 7, 300, 2, 4_000, 12_000), 2_000);
        log.record("h1", report("web", 8, 10, 5, 1_000, 3_000), 2_000);
        log.record("h1", report("api", 8, 999, 999, 1, 1), 2_000);
        let stats = log.since("web", 0);
        assert_eq!(stats.len(), 2);
        let stable = &stats[&7];
        assert_eq!((stable.requests, stable.errors), (400, 3));
        assert!((stable.error_rate - 0.0075).abs() < 1e-12);
        // (100 × 2 ms + 300 × 4 ms) / 400
        assert!((stable.p50_ms - 3.5).abs() < 1e-12);
        assert!((stable.p99_ms - 12.0).abs() < 1e-12);
        assert!((stats[&8].error_rate - 0.5).abs() < 1e-12);
        // Only what came after the window began.
        assert_eq!(log.since("web", 1_500)[&7].requests, 300);
        assert!(log.since("db", 0).is_empty());
    }

    #[test]
    fn revisions_combine_into_one() {
        let a = RevisionStats {
            requests: 100,
            errors: 1,
            error_rate: 0.01,
            p50_ms: 2.0,
            p99_ms: 9.0,
        };
        let b = RevisionStats {
            requests: 300,
            errors: 5,
            error_rate: 5.0 / 300.0,
            p50_ms: 4.0,
            p99_ms: 7.0,
        };
        let both = RevisionStats::combine([&a, &b]);
        assert_eq!((both.requests, both.errors), (400, 6));
        assert!((both.error_rate - 0.015).abs() < 1e-12);
        assert!((both.p50_ms - 3.5).abs() < 1e-12);
        assert!((both.p99_ms - 9.0).abs() < 1e-12);
        assert_eq!(RevisionStats::combine([]), RevisionStats::default());
    }

    #[test]
    fn old_reports_are_forgotten() {
        let log = TrafficLog::default();
        log.record("h1", report("web", 7, 100, 0, 1, 1), 0);
        log.record("h1", report("web", 7, 5, 0, 1, 1), KEEP_MS + 1);
        assert_eq!(log.since("web", 0)[&7].requests, 5);
    }

    #[test]
    fn no_requests_means_no_rate_rather_than_nan() {
        let log = TrafficLog::default();
        log.record("h1", report("web", 7, 0, 0, 0, 0), 0);
        let stats = &log.since("web", 0)[&7];
        assert_eq!(stats.error_rate, 0.0);
        assert_eq!(stats.p50_ms, 0.0);
    }
}
