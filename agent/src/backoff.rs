//! Exponential backoff with full jitter for reconnects and retries: the
//! n-th delay is drawn uniformly from `[0, min(cap, base * 2^n)]`, so a fleet
//! that lost its control plane does not come back in lockstep.
//!
//! Pure: the randomness is passed in, so tests use a seeded generator.

use rand::Rng;
use std::time::Duration;

/// A session that lasted at least this long counts as healthy and resets
/// the backoff.
pub const STABLE_SESSION: Duration = Duration::from_secs(60);

/// Retry delays that grow exponentially up to a cap.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// Delays start at `base` and never exceed `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// The agent's reconnect policy: 1 s doubling up to 30 s.
    pub fn reconnect() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(30))
    }

    /// The upper bound of the next delay: `min(cap, base * 2^attempt)`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .map_or(self.cap, |delay| delay.min(self.cap))
    }

    /// The largest delay this backoff ever waits.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// How many delays were drawn since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Draws the next delay and moves one step up.
    pub fn next_delay<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Duration {
        let ceiling = self.ceiling();
        // Stop counting once the cap is reached: the ceiling cannot grow.
        if ceiling < self.cap {
            self.attempt += 1;
        }
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=nanos))
    }

    /// Starts over from `base`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Accounts for a session that ended after `lasted`: a long one proves
    /// the connection works, so the next retry starts from `base` again.
    pub fn session_ended(&mut self, lasted: Duration) {
        if lasted > STABLE_SESSION {
            self.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let mut backoff = Backoff::reconnect();
        let mut rng = StdRng::seed_from_u64(7);
        let mut ceilings = Vec::new();
        for _ in 0..8 {
            ceilings.push(backoff.ceiling().as_secs());
            backoff.next_delay(&mut rng);
        }
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn delays_are_full_jitter_within_the_ceiling() {
        let mut rng = StdRng::seed_from_u64(42);
        for step in 0..20 {
            let mut backoff = Backoff::reconnect();
            for _ in 0..step {
                backoff.next_delay(&mut rng);
            }
            let ceiling = backoff.ceiling();
            let delay = backoff.next_delay(&mut rng);
            assert!(delay <= ceiling, "step {step}: {delay:?} > {ceiling:?}");
        }
        // Over many draws at the cap, the delays spread over the whole range.
        let mut backoff = Backoff::reconnect();
        for _ in 0..10 {
            backoff.next_delay(&mut rng);
        }
        let delays: Vec<Duration> = (0..1000).map(|_| backoff.next_delay(&mut rng)).collect();
        let min = delays.iter().min().unwrap();
        let max = delays.iter().max().unwrap();
        assert!(*min < 2 * S, "{min:?}");
        assert!(*max > 28 * S && *max <= 30 * S, "{max:?}");
        let mean = delays.iter().sum::<Duration>() / 1000;
        assert!(mean > 13 * S && mean < 17 * S, "{mean:?}");
    }

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut backoff = Backoff::reconnect();
            (0..6)
                .map(|_| backoff.next_delay(&mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }

    #[test]
    fn only_a_long_session_resets() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut backoff = Backoff::reconnect();
        for _ in 0..4 {
            backoff.next_delay(&mut rng);
        }
        backoff.session_ended(Duration::from_secs(5));
        assert_eq!(backoff.ceiling(), 16 * S);
        backoff.session_ended(Duration::from_secs(60));
        assert_eq!(backoff.ceiling(), 16 * S);
        backoff.session_ended(Duration::from_secs(61));
        assert_eq!(backoff.ceiling(), S);
        assert_eq!(backoff.attempt(), 0);
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut backoff = Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(u64::MAX / 4),
        );
        let mut rng = StdRng::seed_from_u64(0);
        for _ in 0..200 {
            let ceiling = backoff.ceiling();
            assert!(backoff.next_delay(&mut rng) <= ceiling);
        }
        assert!(backoff.ceiling() <= backoff.cap());
    }

    #[test]
    fn a_cap_below_base_is_raised_to_base() {
        let backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(backoff.cap(), Duration::from_secs(5));
        assert_eq!(backoff.ceiling(), Duration::from_secs(5));
    }
}
