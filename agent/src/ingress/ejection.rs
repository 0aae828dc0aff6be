//! Passive health of the ingress's backends (pure: time is an argument):
//! a backend whose connect fails is ejected for 5 s, doubling up to 60 s
//! while it keeps failing; a successful connect forgets its failures. The
//! active probe (in the ingress adapter) connects to the ejected backends
//! every second and readmits those that accept — keeping their streak, so
//! one that fails again right away is ejected for longer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The first ejection.
pub const BASE: Duration = Duration::from_secs(5);
/// The longest ejection.
pub const CAP: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// Connect failures since the last successful connect.
    streak: u32,
    /// Ejected until then; `None`: readmitted by a probe.
    until: Option<Instant>,
}

/// Which backends are ejected, and for how long.
#[derive(Debug, Clone)]
pub struct Ejections {
    entries: HashMap<SocketAddr, Entry>,
    base: Duration,
    cap: Duration,
}

impl Default for Ejections {
    fn default() -> Self {
        Self::new(BASE, CAP)
    }
}

impl Ejections {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            base,
            cap,
        }
    }

    /// How long the `streak`th failure in a row ejects.
    fn duration(&self, streak: u32) -> Duration {
        let factor = 1u32
            .checked_shl(streak.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .map_or(self.cap, |d| d.min(self.cap))
    }

    /// Whether `address` gets no new requests at `now`.
    pub fn is_ejected(&self, address: SocketAddr, now: Instant) -> bool {
        self.entries
            .get(&address)
            .and_then(|e| e.until)
            .is_some_and(|until| now < until)
    }

    /// A connect to `address` failed: ejects it and says for how long.
    /// `None` when it was already ejected (a request that started before
    /// the ejection), which does not lengthen it.
    pub fn connect_failed(&mut self, address: SocketAddr, now: Instant) -> Option<Duration> {
        if self.is_ejected(address, now) {
            return None;
        }
        let entry = self.entries.entry(address).or_insert(Entry {
            streak: 0,
            until: None,
        });
        entry.streak = entry.streak.saturating_add(1);
        let streak = entry.streak;
        let duration = self.duration(streak);
        if let Some(entry) = self.entries.get_mut(&address) {
            entry.until = Some(now + duration);
        }
        Some(duration)
    }

    /// A connect to `address` succeeded: forgets its failures. Returns
    /// whether it had any.
    pub fn connect_succeeded(&mut self, address: SocketAddr) -> bool {
        self.entries.remove(&address).is_some()
    }

    /// The probe reached `address`: it gets requests again. Returns
    /// whether it was ejected.
    pub fn probe_succeeded(&mut self, address: SocketAddr, now: Instant) -> bool {
        let was = self.is_ejected(address, now);
        if let Some(entry) = self.entries.get_mut(&address) {
            entry.until = None;
        }
        was
    }

    /// The backends ejected at `now` (what the probe connects to).
    pub fn ejected(&self, now: Instant) -> impl Iterator<Item = SocketAddr> + '_ {
        self.entries
            .iter()
            .filter(move |(_, e)| e.until.is_some_and(|until| now < until))
            .map(|(address, _)| *address)
    }

    /// Whether anything is tracked at all (cheap check before locking
    /// work on the hot path).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets backends no longer in the table.
    pub fn retain(&mut self, keep: impl Fn(&SocketAddr) -> bool) {
        self.entries.retain(|address, _| keep(address));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    #[test]
    fn a_failed_connect_ejects_for_five_seconds_then_readmits() {
        let t0 = Instant::now();
        let mut ejections = Ejections::default();
        assert!(!ejections.is_ejected(addr(1), t0));
        assert_eq!(
            ejections.connect_failed(addr(1), t0),
            Some(Duration::from_secs(5))
        );
        assert!(ejections.is_ejected(addr(1), t0));
        assert!(ejections.is_ejected(addr(1), t0 + Duration::from_millis(4_999)));
        assert!(!ejections.is_ejected(addr(1), t0 + Duration::from_secs(5)));
        assert!(!ejections.is_ejected(addr(2), t0));
        assert_eq!(ejections.ejected(t0).collect::<Vec<_>>(), [addr(1)]);
        assert_eq!(ejections.ejected(t0 + Duration::from_secs(6)).count(), 0);
    }

    #[test]
    fn repeated_failures_double_up_to_a_minute_and_success_resets() {
        let mut now = Instant::now();
        let mut ejections = Ejections::default();
        let mut seen = Vec::new();
        for _ in 0..7 {
            let duration = ejections.connect_failed(addr(1), now).unwrap();
            seen.push(duration.as_secs());
            now += duration;
        }
        assert_eq!(seen, [5, 10, 20, 40, 60, 60, 60]);
        assert!(ejections.connect_succeeded(addr(1)));
        assert!(ejections.is_empty());
        assert_eq!(ejections.connect_failed(addr(1), now), Some(BASE));
        // Huge streaks saturate instead of overflowing.
        let mut ejections = Ejections::default();
        for _ in 0..100 {
            now += CAP;
            assert!(ejections.connect_failed(addr(1), now).unwrap() <= CAP);
        }
    }

    #[test]
    fn failures_while_ejected_do_not_lengthen_the_ejection() {
        let t0 = Instant::now();
        let mut ejections = Ejections::default();
        assert!(ejections.connect_failed(addr(1), t0).is_some());
        assert_eq!(
            ejections.connect_failed(addr(1), t0 + Duration::from_secs(1)),
            None
        );
        assert!(!ejections.is_ejected(addr(1), t0 + Duration::from_secs(5)));
    }

    #[test]
    fn a_probe_readmits_but_keeps_the_streak() {
        let t0 = Instant::now();
        let mut ejections = Ejections::default();
        ejections.connect_failed(addr(1), t0);
        assert!(ejections.probe_succeeded(addr(1), t0 + Duration::from_secs(1)));
        assert!(!ejections.is_ejected(addr(1), t0 + Duration::from_secs(1)));
        assert_eq!(ejections.ejected(t0).count(), 0);
        // Failing again right after: the second step of the ladder.
        assert_eq!(
            ejections.connect_failed(addr(1), t0 + Duration::from_secs(2)),
            Some(Duration::from_secs(10))
        );
        assert!(!ejections.probe_succeeded(addr(9), t0));
    }

    #[test]
    fn backends_leaving_the_table_are_forgotten() {
        let t0 = Instant::now();
        let mut ejections = Ejections::default();
        ejections.connect_failed(addr(1), t0);
        ejections.connect_failed(addr(2), t0);
        ejections.retain(|a| *a == addr(2));
        assert!(!ejections.is_ejected(addr(1), t0));
        assert!(ejections.is_ejected(addr(2), t0));
    }

    /// The boundary this module promises: decisions only, no runtime, no
    /// sockets, no clock of its own.
    #[test]
    fn the_decisions_do_no_io() {
        crate::purity::assert_avoids(
            "ejection.rs",
            include_str!("ejection.rs"),
            crate::purity::INGRESS_IO,
        );
    }
}
