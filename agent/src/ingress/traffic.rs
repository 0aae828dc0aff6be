//! What the ingress measured, per service and revision: requests, errors
//! (backend 5xx and requests it could not deliver) and latency in a small
//! fixed-bucket histogram (1-2-5 steps from 50 µs to 60 s: a percentile
//! is the upper bound of its bucket, capped at the slowest request seen).
//! Recording is a few relaxed atomic adds on a slot the compiled table
//! holds, so the request path takes no lock and allocates nothing;
//! [`Traffic::report`] drains the window into a `TrafficReport`.
//!
//! A fixed histogram rather than `hdrhistogram`: the control plane wants
//! p50/p99 to compare revisions (canary analysis), where a bucket's
//! resolution (at worst 2.5×, typically 2×) is enough, and 20 atomic
//! counters per revision keep the idle agent small.

use argosy_proto::v1::{RevisionTraffic, TrafficReport};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Upper bounds of the latency buckets, in microseconds; a last bucket
/// holds everything slower.
pub const BOUNDS_MICROS: [u64; 19] = [
    50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000,
    1_000_000, 2_000_000, 5_000_000, 10_000_000, 20_000_000, 60_000_000,
];
const BUCKETS: usize = BOUNDS_MICROS.len() + 1;

/// The bucket a latency falls in.
pub fn bucket(micros: u64) -> usize {
    BOUNDS_MICROS.partition_point(|bound| *bound < micros)
}

/// The `quantile` (0..=1) of a window's `counts`: the upper bound of the
/// bucket it falls in, at most `max` (the slowest request seen). 0 for an
/// empty window.
pub fn quantile(counts: &[u64; BUCKETS], quantile: f64, max: u64) -> u64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0;
    }
    // The rank of the quantile, from 1.
    let rank = ((total as f64) * quantile).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, count) in counts.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return BOUNDS_MICROS.get(i).map_or(max, |bound| (*bound).min(max));
        }
    }
    max
}

/// One `(service, revision)`'s counters for the current window.
#[derive(Debug, Default)]
pub struct RevisionStats {
    requests: AtomicU64,
    errors: AtomicU64,
    max_micros: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

impl RevisionStats {
    /// Records one request: how long it took and whether it failed.
    pub fn record(&self, latency: Duration, error: bool) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.requests.fetch_add(1, Ordering::Relaxed);
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.max_micros.fetch_max(micros, Ordering::Relaxed);
        self.buckets[bucket(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the window's numbers and starts a new window.
    fn drain(&self) -> Option<(u64, u64, u64, u64)> {
        let requests = self.requests.swap(0, Ordering::Relaxed);
        if requests == 0 {
            return None;
        }
        let errors = self.errors.swap(0, Ordering::Relaxed);
        let max = self.max_micros.swap(0, Ordering::Relaxed);
        let counts: [u64; BUCKETS] =
            std::array::from_fn(|i| self.buckets[i].swap(0, Ordering::Relaxed));
        Some((
            requests,
            errors,
            quantile(&counts, 0.5, max),
            quantile(&counts, 0.99, max),
        ))
    }
}

/// The counters of every `(service, revision)` a table routes to.
#[derive(Debug, Default)]
pub struct Traffic {
    slots: Mutex<BTreeMap<(String, u64), Arc<RevisionStats>>>,
}

impl Traffic {
    fn slots(&self) -> MutexGuard<'_, BTreeMap<(String, u64), Arc<RevisionStats>>> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The slots for `revisions` (in that order), kept across tables so a
    /// new table does not reset a window.
    pub fn slots_for(&self, revisions: &[(String, u64)]) -> Vec<Arc<RevisionStats>> {
        let mut slots = self.slots();
        revisions
            .iter()
            .map(|key| slots.entry(key.clone()).or_default().clone())
            .collect()
    }

    /// The window since the last report, `None` when nothing happened.
    /// Slots no table holds any more are dropped once drained.
    pub fn report(&self) -> Option<TrafficReport> {
        let mut slots = self.slots();
        let mut revisions = Vec::new();
        slots.retain(|(service, revision), stats| {
            if let Some((requests, errors, p50, p99)) = stats.drain() {
                revisions.push(RevisionTraffic {
                    service: service.clone(),
                    revision: *revision,
                    requests,
                    errors,
                    p50_micros: p50,
                    p99_micros: p99,
                });
            }
            Arc::strong_count(stats) > 1
        });
        (!revisions.is_empty()).then_some(TrafficReport { revisions })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_fall_in_their_buckets() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(50), 0);
        assert_eq!(bucket(51), 1);
        assert_eq!(bucket(1_000), 4);
        assert_eq!(bucket(60_000_000), 18);
        assert_eq!(bucket(60_000_001), 19);
        assert_eq!(bucket(u64::MAX), 19);
    }

    #[test]
    fn quantiles_are_bucket_bounds_capped_by_the_maximum() {
        let mut counts = [0u64; BUCKETS];
        assert_eq!(quantile(&counts, 0.5, 0), 0);
        // 98 fast (≤ 1 ms), 2 slow (≤ 500 ms, the slowest 300 ms).
        counts[bucket(800)] = 98;
        counts[bucket(300_000)] = 2;
        assert_eq!(quantile(&counts, 0.5, 300_000), 1_000);
        assert_eq!(quantile(&counts, 0.98, 300_000), 1_000);
        assert_eq!(quantile(&counts, 0.99, 300_000), 300_000);
        // One request: both percentiles are that request, capped.
        let mut one = [0u64; BUCKETS];
        one[bucket(70)] = 1;
        assert_eq!(quantile(&one, 0.5, 70), 70);
        assert_eq!(quantile(&one, 0.99, 70), 70);
        // Slower than the last bound: the maximum.
        let mut slow = [0u64; BUCKETS];
        slow[BUCKETS - 1] = 1;
        assert_eq!(quantile(&slow, 0.5, 90_000_000), 90_000_000);
    }

    #[test]
    fn a_report_drains_the_window_and_says_nothing_when_idle() {
        let traffic = Traffic::default();
        assert_eq!(traffic.report(), None);
        let slots = traffic.slots_for(&[("web".into(), 1), ("web".into(), 2)]);
        assert_eq!(traffic.report(), None);
        for _ in 0..99 {
            slots[0].record(Duration::from_micros(900), false);
        }
        slots[0].record(Duration::from_millis(150), true);
        slots[1].record(Duration::from_millis(3), true);
        let report = traffic.report().unwrap();
        assert_eq!(
            report.revisions,
            [
                RevisionTraffic {
                    service: "web".into(),
                    revision: 1,
                    requests: 100,
                    errors: 1,
                    p50_micros: 1_000,
                    p99_micros: 1_000,
                },
                RevisionTraffic {
                    service: "web".into(),
                    revision: 2,
                    requests: 1,
                    errors: 1,
                    p50_micros: 3_000,
                    p99_micros: 3_000,
                },
            ]
        );
        assert_eq!(traffic.report(), None);
        // The same key gets the same slot while a table holds it.
        let again = traffic.slots_for(&[("web".into(), 1)]);
        assert!(Arc::ptr_eq(&again[0], &slots[0]));
        // Slots no table holds go once drained.
        drop((slots, again));
        let fresh = traffic.slots_for(&[("web".into(), 3)]);
        fresh[0].record(Duration::from_millis(1), false);
        assert_eq!(traffic.report().unwrap().revisions.len(), 1);
        assert_eq!(traffic.slots().len(), 1);
    }

    /// The boundary this module promises: decisions only, no runtime, no
    /// sockets, no clock of its own.
    #[test]
    fn the_decisions_do_no_io() {
        crate::purity::assert_avoids(
            "traffic.rs",
            include_str!("traffic.rs"),
            crate::purity::INGRESS_IO,
        );
    }
}
