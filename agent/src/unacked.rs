//! The bounded buffer of metric samples the control plane has not yet
//! acknowledged. Samples stay here until an `Ack` covers the message that
//! carried them, are sent again on the next session if it never comes, and
//! the oldest are dropped when the buffer is full.
//!
//! Sequence numbers: every message the agent sends gets the next number of
//! one process-wide counter, in send order. A resent sample travels in a new
//! message with a new number. `Ack { seq }` covers every message of the
//! current session numbered up to `seq`.

use argosy_proto::v1::MetricSample;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// 2 hours of samples at the default 10 s interval.
pub const DEFAULT_CAPACITY: usize = 720;

/// How many samples one `MetricBatch` carries at most.
pub const MAX_BATCH: usize = 60;

#[derive(Debug, Clone)]
struct Entry {
    sample: MetricSample,
    /// The message that last carried this sample in the current session.
    sent_in: Option<u64>,
}

/// Samples awaiting acknowledgement, oldest first.
#[derive(Debug, Clone)]
pub struct Unacked {
    entries: VecDeque<Entry>,
    capacity: usize,
}

impl Unacked {
    /// An empty buffer holding at most `capacity` samples (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            entries: VecDeque::with_capacity(capacity.min(64)),
            capacity,
        }
    }

    /// Adds a new sample. Returns `true` when the buffer was full and the
    /// oldest sample was dropped to make room.
    pub fn push(&mut self, sample: MetricSample) -> bool {
        let dropped = self.entries.len() >= self.capacity;
        if dropped {
            self.entries.pop_front();
        }
        self.entries.push_back(Entry {
            sample,
            sent_in: None,
        });
        dropped
    }

    /// How many samples are held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no sample is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether some sample was not sent in the current session yet.
    pub fn has_unsent(&self) -> bool {
        self.entries.back().is_some_and(|e| e.sent_in.is_none())
    }

    /// Takes up to `max` of the oldest unsent samples to send in the
    /// message numbered `seq`, and remembers that they went with it.
    pub fn take_batch(&mut self, seq: u64, max: usize) -> Vec<MetricSample> {
        // Sent samples always form a prefix: they are sent oldest first.
        let first_unsent = self.entries.partition_point(|e| e.sent_in.is_some());
        self.entries
            .iter_mut()
            .skip(first_unsent)
            .take(max)
            .map(|entry| {
                entry.sent_in = Some(seq);
                entry.sample.clone()
            })
            .collect()
    }

    /// Forgets the samples carried by messages numbered up to `seq`.
    /// Returns how many were acknowledged.
    pub fn ack(&mut self, seq: u64) -> usize {
        let covered = self
            .entries
            .partition_point(|e| e.sent_in.is_some_and(|sent| sent <= seq));
        self.entries.drain(..covered);
        covered
    }

    /// A new session starts: nothing has been sent in it yet, so every
    /// held sample is sent again, oldest first.
    pub fn restart(&mut self) {
        for entry in &mut self.entries {
            entry.sent_in = None;
        }
    }

    /// The timestamps of the held samples, oldest first.
    pub fn timestamps(&self) -> Vec<i64> {
        self.entries.iter().map(|e| e.sample.timestamp_ms).collect()
    }
}

/// Lets one warning through per period and counts the ones held back, so
/// a persistent condition cannot flood the log.
#[derive(Debug, Clone)]
pub struct RateLimit {
    period: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` if the event at `now` should be logged, `n` being how many
    /// were suppressed since the last logged one; `None` to stay quiet.
    pub fn check(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.period => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ts: i64) -> MetricSample {
        MetricSample {
            timestamp_ms: ts,
            ..MetricSample::default()
        }
    }

    fn stamps(samples: &[MetricSample]) -> Vec<i64> {
        samples.iter().map(|s| s.timestamp_ms).collect()
    }

    #[test]
    fn sends_in_order_and_trims_on_ack() {
        let mut buf = Unacked::new(10);
        for ts in 1..=5 {
            assert!(!buf.push(sample(ts)));
        }
        assert!(buf.has_unsent());
        assert_eq!(stamps(&buf.take_batch(100, 2)), [1, 2]);
        assert_eq!(stamps(&buf.take_batch(101, 2)), [3, 4]);
        assert_eq!(stamps(&buf.take_batch(102, 2)), [5]);
        assert!(!buf.has_unsent());
        assert!(buf.take_batch(103, 2).is_empty());

        // An ack for an earlier message covers only what it carried.
        assert_eq!(buf.ack(100), 2);
        assert_eq!(buf.timestamps(), [3, 4, 5]);
        // Acks are cumulative and idempotent.
        assert_eq!(buf.ack(100), 0);
        assert_eq!(buf.ack(99), 0);
        assert_eq!(buf.ack(102), 3);
        assert!(buf.is_empty());
    }

    #[test]
    fn an_ack_never_covers_unsent_samples() {
        let mut buf = Unacked::new(10);
        buf.push(sample(1));
        buf.take_batch(5, 10);
        buf.push(sample(2));
        // Seq 9 was, say, a Hello: sample 2 was never sent, so it stays.
        assert_eq!(buf.ack(9), 1);
        assert_eq!(buf.timestamps(), [2]);
        assert!(buf.has_unsent());
    }

    #[test]
    fn a_new_session_resends_everything_unacked_oldest_first() {
        let mut buf = Unacked::new(10);
        for ts in 1..=4 {
            buf.push(sample(ts));
        }
        buf.take_batch(1, 2);
        buf.take_batch(2, 2);
        buf.ack(1);
        buf.push(sample(5));
        // The stream broke: the ack for 2 never came.
        buf.restart();
        assert_eq!(stamps(&buf.take_batch(7, 60)), [3, 4, 5]);
        // A late number from the old session can't cover the new sends
        // wrongly: numbers only grow.
        assert_eq!(buf.ack(2), 0);
        assert_eq!(buf.ack(7), 3);
        assert!(buf.is_empty());
    }

    #[test]
    fn the_oldest_samples_are_dropped_when_full() {
        let mut buf = Unacked::new(3);
        assert!(!buf.push(sample(1)));
        assert!(!buf.push(sample(2)));
        buf.take_batch(1, 1);
        assert!(!buf.push(sample(3)));
        // Full: the oldest goes, even though it was in flight.
        assert!(buf.push(sample(4)));
        assert_eq!(buf.timestamps(), [2, 3, 4]);
        assert!(buf.push(sample(5)));
        assert_eq!(buf.timestamps(), [3, 4, 5]);
        assert_eq!(buf.len(), 3);
        // The ack of the message that carried the dropped sample is harmless.
        assert_eq!(buf.ack(1), 0);
        assert_eq!(stamps(&buf.take_batch(2, 60)), [3, 4, 5]);
    }

    #[test]
    fn capacity_is_at_least_one() {
        let mut buf = Unacked::new(0);
        assert!(!buf.push(sample(1)));
        assert!(buf.push(sample(2)));
        assert_eq!(buf.timestamps(), [2]);
    }

    #[test]
    fn rate_limit_lets_one_through_per_period() {
        let start = Instant::now();
        let mut limit = RateLimit::new(Duration::from_secs(60));
        assert_eq!(limit.check(start), Some(0));
        assert_eq!(limit.check(start + Duration::from_secs(1)), None);
        assert_eq!(limit.check(start + Duration::from_secs(59)), None);
        assert_eq!(limit.check(start + Duration::from_secs(60)), Some(2));
        assert_eq!(limit.check(start + Duration::from_secs(61)), None);
        assert_eq!(limit.check(start + Duration::from_secs(200)), Some(1));
    }
}
