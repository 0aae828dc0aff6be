//! How a backup policy stands against its RPO, now: one state and a reason
//! people can act on (`last success 7h ago, RPO 6h`). Pure: the policy's
//! backups and the time are passed in. The API shows it per policy and the
//! alert rules (`alerts::facts`) read it.
//!
//! | state | when |
//! | --- | --- |
//! | `never` | no backup has succeeded yet |
//! | `overdue` | the newest successful backup is older than the RPO |
//! | `failing` | within the RPO, but the newest backup failed |
//! | `unverified` | within the RPO, the newest backup worked, but the newest verification (a real restore) failed |
//! | `ok` | within the RPO, the newest backup worked, and no verification failed since the last that passed |
//!
//! The first that applies wins, in that order: being past the RPO is the
//! data-loss exposure itself, a failing backup is how it gets there. Age
//! is measured from when the backup *started* (its data is as of then); at
//! exactly the RPO a policy is still within it.
//!
//! A policy without a successful backup is unprotected since it was
//! created, so `never` breaches the RPO once the policy is older than it
//! ([`PolicyStatus::rpo_breached`]): as `rpo` is longer than the longest
//! gap between scheduled backups (`backup::spec`), that leaves the first
//! scheduled backup time to run.

use std::time::Duration;

use super::retention::{BackupState, Candidate, VerifyState};

/// Where a policy stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyState {
    Ok,
    Overdue,
    Failing,
    Unverified,
    Never,
}

impl PolicyState {
    /// `ok`, `overdue`, `failing`, `unverified` or `never`, as the API says it.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyState::Ok => "ok",
            PolicyState::Overdue => "overdue",
            PolicyState::Failing => "failing",
            PolicyState::Unverified => "unverified",
            PolicyState::Never => "never",
        }
    }
}

/// A backup that failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failure {
    pub backup_id: String,
    pub taken_at_ms: i64,
    /// When it was found to have failed (its start when unknown).
    pub failed_at_ms: i64,
    pub error: String,
}

/// The newest verification of any of the policy's backups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verification {
    pub backup_id: String,
    pub at_ms: i64,
    pub passed: bool,
    /// How long the restore took (set when it passed).
    pub restore_ms: Option<i64>,
    pub error: String,
}

/// What status is decided from: a policy's backups, summarized.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyFacts {
    /// When the policy was created; with no successful backup, its data is
    /// unprotected since then. `None`: `never` does not breach the RPO.
    pub created_at_ms: Option<i64>,
    /// When the newest successful backup was taken.
    pub last_success_ms: Option<i64>,
    pub last_success_id: Option<String>,
    /// The newest failed backup, however old.
    pub last_failure: Option<Failure>,
    pub last_verification: Option<Verification>,
    /// The restore time measured by the newest verification that passed:
    /// the real RTO.
    pub measured_rto_ms: Option<i64>,
    /// A backup of the policy is running now.
    pub running: bool,
}

impl PolicyFacts {
    /// The facts of a policy's backups (any order, of any age). Set
    /// `created_at_ms` too, so that `never` can breach the RPO.
    pub fn from_backups(backups: &[Candidate]) -> PolicyFacts {
        let newest = |state: BackupState| {
            backups
                .iter()
                .filter(|b| b.backup_state() == state)
                .max_by(|a, b| (a.taken_at_ms, &a.id).cmp(&(b.taken_at_ms, &b.id)))
        };
        let success = newest(BackupState::Ok);
        let last_failure = newest(BackupState::Failed).map(|b| Failure {
            backup_id: b.id.clone(),
            taken_at_ms: b.taken_at_ms,
            failed_at_ms: b.finished_at_ms.unwrap_or(b.taken_at_ms),
            error: b.error.clone().unwrap_or_default(),
        });
        let verified = |passed: VerifyState| {
            backups
                .iter()
                .filter(move |b| b.verify_state() == passed)
                .filter_map(|b| Some((b.verified_at_ms?, b)))
        };
        let last_verification = verified(VerifyState::Ok)
            .chain(verified(VerifyState::Failed))
            .max_by(|(a_at, a), (b_at, b)| (a_at, &a.id).cmp(&(b_at, &b.id)))
            .map(|(at_ms, b)| Verification {
                backup_id: b.id.clone(),
                at_ms,
                passed: b.verify_state() == VerifyState::Ok,
                restore_ms: b.restore_ms,
                error: b.verify_error.clone().unwrap_or_default(),
            });
        let measured_rto_ms = verified(VerifyState::Ok)
            .max_by(|(a_at, a), (b_at, b)| (a_at, &a.id).cmp(&(b_at, &b.id)))
            .and_then(|(_, b)| b.restore_ms);
        PolicyFacts {
            created_at_ms: None,
            last_success_ms: success.map(|b| b.taken_at_ms),
            last_success_id: success.map(|b| b.id.clone()),
            last_failure,
            last_verification,
            measured_rto_ms,
            running: backups
                .iter()
                .any(|b| b.backup_state() == BackupState::Running),
        }
    }

    /// The newest finished backup failed (nothing succeeded after it).
    pub fn latest_backup_failed(&self) -> Option<&Failure> {
        self.last_failure
            .as_ref()
            .filter(|f| self.last_success_ms.is_none_or(|ok| f.taken_at_ms > ok))
    }
}

/// How a policy stands, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyStatus {
    pub state: PolicyState,
    /// For people: `last success 7h ago, RPO 6h`.
    pub reason: String,
    /// The newest good backup is older than the RPO, or there is none and
    /// the policy is older than the RPO: data written now could be lost
    /// beyond what the RPO promises.
    pub rpo_breached: bool,
    /// How old the newest successful backup is.
    pub age_ms: Option<i64>,
    /// When the RPO runs (or ran) out without a new successful backup.
    pub deadline_ms: Option<i64>,
}

/// Decides a policy's status at `now_ms`.
pub fn evaluate(facts: &PolicyFacts, rpo: Duration, now_ms: i64) -> PolicyStatus {
    let rpo_ms = i64::try_from(rpo.as_millis()).unwrap_or(i64::MAX);
    let rpo_text = span(rpo_ms);
    let failure_text = |f: &Failure| {
        format!(
            "the latest backup failed {} ago{}",
            span(now_ms - f.failed_at_ms),
            because(&f.error)
        )
    };
    let Some(success_ms) = facts.last_success_ms else {
        let deadline_ms = facts.created_at_ms.map(|c| c.saturating_add(rpo_ms));
        let rpo_breached = deadline_ms.is_some_and(|d| now_ms > d);
        let mut reason = "no successful backup yet".to_owned();
        if let Some(failure) = &facts.last_failure {
            reason.push_str(&format!("; {}", failure_text(failure)));
        } else if facts.running {
            reason.push_str("; the first is running");
        }
        match (facts.created_at_ms, deadline_ms) {
            (Some(created), Some(_)) if rpo_breached => reason.push_str(&format!(
                "; the policy was created {} ago, RPO {rpo_text}",
                span(now_ms - created)
            )),
            (_, Some(deadline)) => reason.push_str(&format!(
                "; the RPO ({rpo_text}) runs out in {}",
                span(deadline - now_ms)
            )),
            _ => reason.push_str(&format!(", RPO {rpo_text}")),
        }
        return PolicyStatus {
            state: PolicyState::Never,
            reason,
            rpo_breached,
            age_ms: None,
            deadline_ms,
        };
    };
    let age_ms = (now_ms - success_ms).max(0);
    let rpo_breached = age_ms > rpo_ms;
    let base = format!("last success {} ago, RPO {rpo_text}", span(age_ms));
    let failed = facts.latest_backup_failed();
    let failed_verification = facts.last_verification.as_ref().filter(|v| !v.passed);
    let (state, reason) = if rpo_breached {
        let mut reason = base;
        if let Some(failure) = failed {
            reason.push_str(&format!("; {}", failure_text(failure)));
        } else if facts.running {
            reason.push_str("; a backup is running");
        }
        (PolicyState::Overdue, reason)
    } else if let Some(failure) = failed {
        (
            PolicyState::Failing,
            format!("{}; {base}", failure_text(failure)),
        )
    } else if let Some(v) = failed_verification {
        (
            PolicyState::Unverified,
            format!(
                "{base}; the latest verification (backup {}, {} ago) failed{}",
                v.backup_id,
                span(now_ms - v.at_ms),
                because(&v.error)
            ),
        )
    } else {
        let verified = match (&facts.last_verification, facts.measured_rto_ms) {
            (Some(v), Some(rto)) => format!(
                "; verified {} ago, the restore took {}",
                span(now_ms - v.at_ms),
                span(rto)
            ),
            (Some(v), None) => format!("; verified {} ago", span(now_ms - v.at_ms)),
            (None, _) => "; not verified by a restore yet".to_owned(),
        };
        (PolicyState::Ok, format!("{base}{verified}"))
    };
    PolicyStatus {
        state,
        reason,
        rpo_breached,
        age_ms: Some(age_ms),
        deadline_ms: Some(success_ms.saturating_add(rpo_ms)),
    }
}

/// `: <the first line of the error>`, at most 200 characters; nothing
/// when there is no error text.
fn because(error: &str) -> String {
    let line = error.lines().map(str::trim).find(|l| !l.is_empty());
    match line {
        None => String::new(),
        Some(line) if line.chars().count() > 200 => {
            format!(": {}…", line.chars().take(200).collect::<String>())
        }
        Some(line) => format!(": {line}"),
    }
}

/// A span of time the way people say it, to the minute once it is one:
/// `45s`, `42m`, `7h`, `7h5m`, `3d4h`.
fn span(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    let (days, hours, minutes) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60);
    let part = |n: i64, unit: &str| {
        if n > 0 {
            format!("{n}{unit}")
        } else {
            String::new()
        }
    };
    if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{minutes}m")
    } else if days == 0 {
        format!("{hours}h{}", part(minutes, "m"))
    } else {
        format!("{days}d{}", part(hours, "h"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;
    const NOW: i64 = 1_800_000_000_000;
    const RPO: Duration = Duration::from_secs(6 * 3600);

    fn backup(id: &str, taken_at_ms: i64, state: &str) -> Candidate {
        Candidate {
            id: id.into(),
            taken_at_ms,
            finished_at_ms: (state != "running").then_some(taken_at_ms + 5 * MIN),
            state: state.into(),
            verify_state: "not-verified".into(),
            verified_at_ms: None,
            restore_ms: None,
            error: (state == "failed").then(|| "pg_dump: connection refused\nmore".into()),
            verify_error: None,
        }
    }

    fn verified(mut b: Candidate, at_ms: i64, passed: bool) -> Candidate {
        b.verify_state = if passed { "ok" } else { "failed" }.into();
        b.verified_at_ms = Some(at_ms);
        if passed {
            b.restore_ms = Some(42_000);
        } else {
            b.verify_error = Some("artifact b-1 is corrupted: sha256 X, manifest says Y".into());
        }
        b
    }

    fn status(backups: &[Candidate], created: Option<i64>) -> PolicyStatus {
        let facts = PolicyFacts {
            created_at_ms: created,
            ..PolicyFacts::from_backups(backups)
        };
        evaluate(&facts, RPO, NOW)
    }

    #[test]
    fn ok_within_the_rpo() {
        let s = status(&[backup("b-1", NOW - HOUR, "ok")], Some(NOW - 100 * HOUR));
        assert_eq!(s.state, PolicyState::Ok);
        assert_eq!(
            s.reason,
            "last success 1h ago, RPO 6h; not verified by a restore yet"
        );
        assert!(!s.rpo_breached);
        assert_eq!(s.age_ms, Some(HOUR));
        assert_eq!(s.deadline_ms, Some(NOW + 5 * HOUR));
        let s = status(
            &[verified(
                backup("b-1", NOW - HOUR, "ok"),
                NOW - 30 * MIN,
                true,
            )],
            None,
        );
        assert_eq!(s.state, PolicyState::Ok);
        assert_eq!(
            s.reason,
            "last success 1h ago, RPO 6h; verified 30m ago, the restore took 42s"
        );
    }

    #[test]
    fn overdue_past_the_rpo_exactly_at_the_boundary() {
        let at_rpo = status(&[backup("b-1", NOW - 6 * HOUR, "ok")], None);
        assert_eq!(at_rpo.state, PolicyState::Ok, "at exactly the RPO");
        assert!(!at_rpo.rpo_breached);
        let past = status(&[backup("b-1", NOW - 6 * HOUR - 1, "ok")], None);
        assert_eq!(past.state, PolicyState::Overdue);
        assert!(past.rpo_breached);
        let s = status(&[backup("b-1", NOW - 7 * HOUR, "ok")], None);
        assert_eq!(s.reason, "last success 7h ago, RPO 6h");
        assert_eq!(s.deadline_ms, Some(NOW - HOUR));
        // Overdue wins over failing, and says why.
        let s = status(
            &[
                backup("b-2", NOW - HOUR, "failed"),
                backup("b-1", NOW - 7 * HOUR, "ok"),
            ],
            None,
        );
        assert_eq!(s.state, PolicyState::Overdue);
        assert_eq!(
            s.reason,
            "last success 7h ago, RPO 6h; the latest backup failed 55m ago: pg_dump: connection refused"
        );
        let s = status(
            &[
                backup("b-2", NOW - MIN, "running"),
                backup("b-1", NOW - 7 * HOUR, "ok"),
            ],
            None,
        );
        assert_eq!(s.reason, "last success 7h ago, RPO 6h; a backup is running");
    }

    #[test]
    fn failing_when_the_newest_backup_failed() {
        let s = status(
            &[
                backup("b-2", NOW - HOUR, "failed"),
                backup("b-1", NOW - 3 * HOUR, "ok"),
            ],
            None,
        );
        assert_eq!(s.state, PolicyState::Failing);
        assert_eq!(
            s.reason,
            "the latest backup failed 55m ago: pg_dump: connection refused; last success 3h ago, RPO 6h"
        );
        assert!(!s.rpo_breached);
        // A failure before the newest success is history.
        let s = status(
            &[
                backup("b-2", NOW - HOUR, "ok"),
                backup("b-1", NOW - 3 * HOUR, "failed"),
            ],
            None,
        );
        assert_eq!(s.state, PolicyState::Ok);
        // A running backup after a failure does not hide it.
        let s = status(
            &[
                backup("b-3", NOW - MIN, "running"),
                backup("b-2", NOW - HOUR, "failed"),
                backup("b-1", NOW - 3 * HOUR, "ok"),
            ],
            None,
        );
        assert_eq!(s.state, PolicyState::Failing);
    }

    #[test]
    fn unverified_when_the_newest_verification_failed() {
        let backups = [
            backup("b-3", NOW - HOUR, "ok"),
            verified(backup("b-2", NOW - 3 * HOUR, "ok"), NOW - 2 * HOUR, false),
            verified(backup("b-1", NOW - 5 * HOUR, "ok"), NOW - 4 * HOUR, true),
        ];
        let s = status(&backups, None);
        assert_eq!(s.state, PolicyState::Unverified);
        assert_eq!(
            s.reason,
            "last success 1h ago, RPO 6h; the latest verification (backup b-2, 2h ago) failed: \
             artifact b-1 is corrupted: sha256 X, manifest says Y"
        );
        // A later verification that passed clears it, whichever backup it was of.
        let mut backups = backups.to_vec();
        backups[2] = verified(backup("b-1", NOW - 5 * HOUR, "ok"), NOW - MIN, true);
        let s = status(&backups, None);
        assert_eq!(s.state, PolicyState::Ok);
        let facts = PolicyFacts::from_backups(&backups);
        assert_eq!(facts.measured_rto_ms, Some(42_000));
        // Failing wins over unverified.
        backups.push(backup("b-4", NOW - 10 * MIN, "failed"));
        assert_eq!(status(&backups, None).state, PolicyState::Failing);
    }

    #[test]
    fn never_until_the_first_success() {
        let s = status(&[], Some(NOW - 2 * HOUR));
        assert_eq!(s.state, PolicyState::Never);
        assert_eq!(
            s.reason,
            "no successful backup yet; the RPO (6h) runs out in 4h"
        );
        assert!(!s.rpo_breached);
        assert_eq!((s.age_ms, s.deadline_ms), (None, Some(NOW + 4 * HOUR)));
        let s = status(&[], Some(NOW - 6 * HOUR));
        assert!(!s.rpo_breached, "at exactly the RPO");
        let s = status(&[], Some(NOW - 6 * HOUR - 1));
        assert!(s.rpo_breached);
        assert_eq!(s.state, PolicyState::Never);
        let s = status(
            &[backup("b-1", NOW - 8 * HOUR, "failed")],
            Some(NOW - 9 * HOUR),
        );
        assert_eq!(
            s.reason,
            "no successful backup yet; the latest backup failed 7h55m ago: pg_dump: connection \
             refused; the policy was created 9h ago, RPO 6h"
        );
        let s = status(&[backup("b-1", NOW - MIN, "running")], Some(NOW - 5 * MIN));
        assert_eq!(
            s.reason,
            "no successful backup yet; the first is running; the RPO (6h) runs out in 5h55m"
        );
        let s = status(&[], None);
        assert_eq!(s.reason, "no successful backup yet, RPO 6h");
        assert!(
            !s.rpo_breached,
            "without a creation time nothing is breached"
        );
        // Pruned backups were good once, but are gone.
        let s = status(&[backup("b-1", NOW - HOUR, "pruned")], None);
        assert_eq!(s.state, PolicyState::Never);
    }

    #[test]
    fn facts_pick_the_newest_of_each_kind() {
        let backups = [
            backup("b-1", NOW - 3 * HOUR, "ok"),
            backup("b-4", NOW - HOUR, "failed"),
            backup("b-2", NOW - 2 * HOUR, "ok"),
            backup("b-3", NOW - 4 * HOUR, "failed"),
        ];
        let facts = PolicyFacts::from_backups(&backups);
        assert_eq!(facts.last_success_id.as_deref(), Some("b-2"));
        assert_eq!(facts.last_success_ms, Some(NOW - 2 * HOUR));
        let failure = facts.last_failure.clone().unwrap();
        assert_eq!(
            (failure.backup_id.as_str(), failure.failed_at_ms),
            ("b-4", NOW - HOUR + 5 * MIN)
        );
        assert_eq!(failure.error, "pg_dump: connection refused\nmore");
        assert_eq!(
            facts.latest_backup_failed().map(|f| f.backup_id.as_str()),
            Some("b-4")
        );
        assert!(!facts.running);
        assert_eq!(facts.last_verification, None);
        assert_eq!(PolicyFacts::from_backups(&[]), PolicyFacts::default());
    }

    #[test]
    fn spans_read_like_people_write_them() {
        for (ms, text) in [
            (-5, "0s"),
            (0, "0s"),
            (59_999, "59s"),
            (MIN, "1m"),
            (59 * MIN + 59_000, "59m"),
            (HOUR, "1h"),
            (7 * HOUR + 5 * MIN + 30_000, "7h5m"),
            (24 * HOUR - 1, "23h59m"),
            (24 * HOUR, "1d"),
            (76 * HOUR + 59 * MIN, "3d4h"),
        ] {
            assert_eq!(span(ms), text, "{ms}");
        }
        assert_eq!(because(""), "");
        assert_eq!(because("\n  disk full  \nat /x"), ": disk full");
        assert_eq!(because(&"x".repeat(300)).chars().count(), 2 + 200 + 1);
    }

    #[test]
    fn states_have_api_names() {
        let names: Vec<&str> = [
            PolicyState::Ok,
            PolicyState::Overdue,
            PolicyState::Failing,
            PolicyState::Unverified,
            PolicyState::Never,
        ]
        .into_iter()
        .map(PolicyState::as_str)
        .collect();
        assert_eq!(names, ["ok", "overdue", "failing", "unverified", "never"]);
    }
}
