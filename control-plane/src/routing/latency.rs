//! Measured round trips between regions: agents time TCP handshakes with
//! a few ingresses of every other region (the `probes` of their routing
//! table) and report them; this keeps a smoothed value per
//! `(from region, to region)` and forgets pairs nobody measured lately, so
//! `nearest` routes follow what the network does now. Pure (time is a
//! parameter); the router holds one.

use super::table::Latencies;
use std::collections::BTreeMap;

/// A pair unmeasured this long no longer counts.
pub const FORGET_AFTER_MS: i64 = 2 * 60 * 1000;

/// How much a new measurement moves the smoothed value (0..1).
const SMOOTHING: f64 = 0.3;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Measured {
    micros: f64,
    at_ms: i64,
}

/// The smoothed round trips between regions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoundTrips {
    pairs: BTreeMap<(String, String), Measured>,
}

impl RoundTrips {
    /// Notes that an agent in `from` measured `micros` to `to` at `now_ms`.
    /// Measurements within a region are ignored (a region is 0 from
    /// itself).
    pub fn record(&mut self, from: &str, to: &str, micros: u64, now_ms: i64) {
        if from == to || from.is_empty() || to.is_empty() {
            return;
        }
        let sample = micros as f64;
        self.pairs
            .entry((from.to_owned(), to.to_owned()))
            .and_modify(|m| {
                m.micros += SMOOTHING * (sample - m.micros);
                m.at_ms = now_ms;
            })
            .or_insert(Measured {
                micros: sample,
                at_ms: now_ms,
            });
    }

    /// The round trips measured within [`FORGET_AFTER_MS`] of `now_ms`,
    /// in microseconds, as the routing decision takes them.
    pub fn current(&self, now_ms: i64) -> Latencies {
        self.pairs
            .iter()
            .filter(|(_, m)| now_ms - m.at_ms <= FORGET_AFTER_MS)
            .map(|(pair, m)| (pair.clone(), m.micros.round() as u64))
            .collect()
    }

    /// Drops what is too old to count.
    pub fn forget_old(&mut self, now_ms: i64) {
        self.pairs
            .retain(|_, m| now_ms - m.at_ms <= FORGET_AFTER_MS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(from: &str, to: &str) -> (String, String) {
        (from.to_owned(), to.to_owned())
    }

    #[test]
    fn measurements_are_smoothed_per_direction() {
        let mut trips = RoundTrips::default();
        trips.record("eu-west", "us-east", 80_000, 0);
        trips.record("eu-west", "us-east", 90_000, 1_000);
        trips.record("us-east", "eu-west", 70_000, 1_000);
        let now = trips.current(1_000);
        assert_eq!(now[&pair("eu-west", "us-east")], 83_000);
        assert_eq!(now[&pair("us-east", "eu-west")], 70_000);
        // A spike moves it only partly.
        trips.record("eu-west", "us-east", 1_083_000, 2_000);
        assert_eq!(trips.current(2_000)[&pair("eu-west", "us-east")], 383_000);
    }

    #[test]
    fn a_region_is_not_measured_against_itself_and_old_pairs_are_forgotten() {
        let mut trips = RoundTrips::default();
        trips.record("eu-west", "eu-west", 5, 0);
        trips.record("", "eu-west", 5, 0);
        assert!(trips.current(0).is_empty());
        trips.record("eu-west", "us-east", 80_000, 0);
        assert_eq!(trips.current(FORGET_AFTER_MS).len(), 1);
        assert!(trips.current(FORGET_AFTER_MS + 1).is_empty());
        trips.forget_old(FORGET_AFTER_MS + 1);
        assert_eq!(trips, RoundTrips::default());
    }
}
