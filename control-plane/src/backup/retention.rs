//! Which backups a policy keeps and which it deletes: grandfather-father-son
//! retention over the successful backups, plus the rules that make deleting
//! safe. Pure: the backups are passed in as plain data.
//!
//! The convention is restic's `forget`: `hourly: 24` keeps the newest
//! backup of each of the last 24 hours *that have a backup*, not of the 24
//! hours before now, so a policy whose backups stopped never loses its old
//! ones to the passing of time. Buckets are UTC calendar hours, days, ISO
//! weeks (Monday to Sunday) and months. Every rule is applied on its own
//! and a backup kept by any rule is kept, with every reason that keeps it.
//!
//! Beyond the rules, always:
//! - the newest backup whose verification (a real restore) succeeded is
//!   never deleted, whatever the rules say: it is the one known to work;
//! - the newest successful backup is never deleted;
//! - a running backup is never deleted;
//! - a failed backup is deleted once a successful backup was taken after
//!   it (it holds no data, but a partial artifact may be left to clean);
//!   until then it stays, as the record of why there is no newer backup;
//! - a pruned backup is gone already and is neither kept nor deleted.
//!
//! Verification does not change which backups the rules keep: a backup
//! whose verification failed still fills its slot, so one failed restore
//! never makes retention reach further back and delete more.

use std::fmt;

use chrono::{DateTime, Datelike};

use super::model::Retention;
use crate::store::BackupRow;

/// A backup as retention (and `status`) sees it: the store's row, less
/// what neither needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    /// When the backup started: its data is as of then.
    pub taken_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    /// `running`, `ok`, `failed` or `pruned`.
    pub state: String,
    /// `not-verified`, `running`, `ok` or `failed`.
    pub verify_state: String,
    pub verified_at_ms: Option<i64>,
    /// How long the newest verification's restore took (the measured RTO).
    pub restore_ms: Option<i64>,
    pub error: Option<String>,
    pub verify_error: Option<String>,
}

impl From<&BackupRow> for Candidate {
    fn from(row: &BackupRow) -> Self {
        Candidate {
            id: row.id.clone(),
            taken_at_ms: row.started_at_ms,
            finished_at_ms: row.finished_at_ms,
            state: row.state.clone(),
            verify_state: row.verify_state.clone(),
            verified_at_ms: row.verified_at_ms,
            restore_ms: row.restore_ms,
            error: row.error.clone(),
            verify_error: row.verify_error.clone(),
        }
    }
}

/// Where a backup stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupState {
    Running,
    Ok,
    Failed,
    Pruned,
}

/// How its newest verification went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyState {
    NotVerified,
    Running,
    Ok,
    Failed,
}

impl Candidate {
    /// The state, read cautiously: a state this version does not know is
    /// taken as running, which nothing deletes.
    pub fn backup_state(&self) -> BackupState {
        match self.state.as_str() {
            "ok" => BackupState::Ok,
            "failed" => BackupState::Failed,
            "pruned" => BackupState::Pruned,
            _ => BackupState::Running,
        }
    }

    /// The verification state; anything unknown counts as not verified.
    pub fn verify_state(&self) -> VerifyState {
        match self.verify_state.as_str() {
            "ok" => VerifyState::Ok,
            "failed" => VerifyState::Failed,
            "running" => VerifyState::Running,
            _ => VerifyState::NotVerified,
        }
    }
}

/// Why a backup is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepReason {
    /// One of the newest `keep_last`.
    Last,
    /// The newest of its hour (`2026-05-01T13`), day (`2026-05-01`), ISO
    /// week (`2026-W18`) or month (`2026-05`).
    Hourly(String),
    Daily(String),
    Weekly(String),
    Monthly(String),
    /// The newest backup whose verification succeeded.
    NewestVerified,
    /// The newest successful backup (kept even by a policy keeping nothing).
    Newest,
    Running,
    /// Failed, and no successful backup was taken after it.
    LatestFailure,
}

impl fmt::Display for KeepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeepReason::Last => f.write_str("keep_last"),
            KeepReason::Hourly(hour) => write!(f, "hourly {hour}"),
            KeepReason::Daily(day) => write!(f, "daily {day}"),
            KeepReason::Weekly(week) => write!(f, "weekly {week}"),
            KeepReason::Monthly(month) => write!(f, "monthly {month}"),
            KeepReason::NewestVerified => f.write_str("newest verified"),
            KeepReason::Newest => f.write_str("newest"),
            KeepReason::Running => f.write_str("running"),
            KeepReason::LatestFailure => f.write_str("failed, no good backup since"),
        }
    }
}

/// A backup retention keeps, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub id: String,
    pub reasons: Vec<KeepReason>,
}

/// What retention decided, newest first in both lists. Every backup that
/// is not pruned is in exactly one of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub keep: Vec<Kept>,
    pub delete: Vec<String>,
}

/// One grandfather-father-son rule: how many buckets, the bucket of a
/// time (as a label that compares), and the reason it gives.
struct BucketRule {
    count: u32,
    bucket_of: fn(i64) -> String,
    reason: fn(String) -> KeepReason,
}

const HOUR_MS: i64 = 3_600_000;

fn hour_of(ms: i64) -> String {
    calendar(ms, |t| t.format("%Y-%m-%dT%H").to_string())
}

fn day_of(ms: i64) -> String {
    calendar(ms, |t| t.format("%Y-%m-%d").to_string())
}

fn iso_week_of(ms: i64) -> String {
    calendar(ms, |t| {
        let week = t.iso_week();
        format!("{}-W{:02}", week.year(), week.week())
    })
}

fn month_of(ms: i64) -> String {
    calendar(ms, |t| t.format("%Y-%m").to_string())
}

/// Times outside chrono's range (hundreds of thousands of years away)
/// each get a bucket of their own hour count.
fn calendar(ms: i64, label: impl Fn(DateTime<chrono::Utc>) -> String) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(label)
        .unwrap_or_else(|| format!("hour {}", ms.div_euclid(HOUR_MS)))
}

/// Chooses what `policy` keeps of `backups` (any order). Buckets count
/// back from the newest backup, not from now (see the module docs), so
/// `_now_ms` does not change the answer; callers pass it so that every
/// decision of the backup controller reads the same clock.
pub fn select(backups: &[Candidate], policy: &Retention, _now_ms: i64) -> Selection {
    let mut ordered: Vec<&Candidate> = backups
        .iter()
        .filter(|b| b.backup_state() != BackupState::Pruned)
        .collect();
    // Newest first; equal times by id, so the answer never depends on the
    // order the store returned.
    ordered.sort_by(|a, b| (b.taken_at_ms, b.id.as_str()).cmp(&(a.taken_at_ms, a.id.as_str())));
    let mut reasons: Vec<Vec<KeepReason>> = vec![Vec::new(); ordered.len()];
    let good: Vec<usize> = (0..ordered.len())
        .filter(|i| ordered[*i].backup_state() == BackupState::Ok)
        .collect();

    for &i in good.iter().take(policy.keep_last as usize) {
        reasons[i].push(KeepReason::Last);
    }
    let rules = [
        BucketRule {
            count: policy.hourly,
            bucket_of: hour_of,
            reason: KeepReason::Hourly,
        },
        BucketRule {
            count: policy.daily,
            bucket_of: day_of,
            reason: KeepReason::Daily,
        },
        BucketRule {
            count: policy.weekly,
            bucket_of: iso_week_of,
            reason: KeepReason::Weekly,
        },
        BucketRule {
            count: policy.monthly,
            bucket_of: month_of,
            reason: KeepReason::Monthly,
        },
    ];
    for rule in rules {
        let mut previous: Option<String> = None;
        let mut used = 0;
        for &i in &good {
            if used == rule.count {
                break;
            }
            let bucket = (rule.bucket_of)(ordered[i].taken_at_ms);
            if previous.as_ref() != Some(&bucket) {
                // The first seen of a bucket is its newest.
                previous = Some(bucket.clone());
                used += 1;
                reasons[i].push((rule.reason)(bucket));
            }
        }
    }
    if let Some(&newest) = good.first()
        && reasons[newest].is_empty()
    {
        reasons[newest].push(KeepReason::Newest);
    }
    if let Some(&verified) = good
        .iter()
        .find(|i| ordered[**i].verify_state() == VerifyState::Ok)
    {
        reasons[verified].push(KeepReason::NewestVerified);
    }
    let newest_good_ms = good.first().map(|i| ordered[*i].taken_at_ms);
    for (i, backup) in ordered.iter().enumerate() {
        match backup.backup_state() {
            BackupState::Running => reasons[i].push(KeepReason::Running),
            BackupState::Failed if newest_good_ms.is_none_or(|ms| ms <= backup.taken_at_ms) => {
                reasons[i].push(KeepReason::LatestFailure);
            }
            BackupState::Failed | BackupState::Ok | BackupState::Pruned => {}
        }
    }

    let mut selection = Selection::default();
    for (backup, reasons) in ordered.into_iter().zip(reasons) {
        if reasons.is_empty() {
            selection.delete.push(backup.id.clone());
        } else {
            selection.keep.push(Kept {
                id: backup.id.clone(),
                reasons,
            });
        }
    }
    selection
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const MIN: i64 = 60_000;
    const DAY: i64 = 24 * HOUR_MS;

    /// Unix ms of `2026-01-01 00:00` UTC style text.
    fn at(text: &str) -> i64 {
        chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M")
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .and_utc()
            .timestamp_millis()
    }

    fn show(ms: i64) -> String {
        DateTime::from_timestamp_millis(ms)
            .unwrap()
            .format("%Y-%m-%d %H:%M")
            .to_string()
    }

    fn backup(taken_at_ms: i64, state: &str, verify_state: &str) -> Candidate {
        Candidate {
            id: show(taken_at_ms),
            taken_at_ms,
            finished_at_ms: (state != "running").then_some(taken_at_ms + MIN),
            state: state.into(),
            verify_state: verify_state.into(),
            verified_at_ms: None,
            restore_ms: None,
            error: None,
            verify_error: None,
        }
    }

    fn ok(text: &str) -> Candidate {
        backup(at(text), "ok", "not-verified")
    }

    /// A backup every `step_ms` from `start`, `count` of them, all ok.
    fn history(start: &str, step_ms: i64, count: i64) -> Vec<Candidate> {
        (0..count)
            .map(|n| backup(at(start) + n * step_ms, "ok", "not-verified"))
            .collect()
    }

    fn keep(keep_last: u32, hourly: u32, daily: u32, weekly: u32, monthly: u32) -> Retention {
        Retention {
            keep_last,
            hourly,
            daily,
            weekly,
            monthly,
        }
    }

    fn kept_ids(selection: &Selection) -> Vec<&str> {
        selection.keep.iter().map(|k| k.id.as_str()).collect()
    }

    fn reasons_of(selection: &Selection, id: &str) -> Vec<String> {
        selection
            .keep
            .iter()
            .find(|k| k.id == id)
            .map(|k| k.reasons.iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    #[test]
    fn keep_last_keeps_the_newest() {
        let backups = history("2026-01-01 00:00", 2 * HOUR_MS, 5);
        let s = select(&backups, &keep(2, 0, 0, 0, 0), 0);
        assert_eq!(kept_ids(&s), ["2026-01-01 08:00", "2026-01-01 06:00"]);
        assert_eq!(
            s.delete,
            ["2026-01-01 04:00", "2026-01-01 02:00", "2026-01-01 00:00"]
        );
        assert_eq!(reasons_of(&s, "2026-01-01 08:00"), ["keep_last"]);
    }

    #[test]
    fn each_bucket_keeps_its_newest_backup() {
        let backups = vec![
            ok("2026-03-02 10:05"),
            ok("2026-03-02 10:55"),
            ok("2026-03-02 09:30"),
            ok("2026-03-01 23:59"),
            ok("2026-03-01 00:00"),
            ok("2026-02-28 12:00"),
        ];
        let s = select(&backups, &keep(0, 2, 0, 0, 0), 0);
        assert_eq!(kept_ids(&s), ["2026-03-02 10:55", "2026-03-02 09:30"]);
        assert_eq!(reasons_of(&s, "2026-03-02 10:55"), ["hourly 2026-03-02T10"]);
        let s = select(&backups, &keep(0, 0, 3, 0, 0), 0);
        assert_eq!(
            kept_ids(&s),
            ["2026-03-02 10:55", "2026-03-01 23:59", "2026-02-28 12:00"]
        );
        // 2026-03-02 is a Monday: the week before ends on Sunday 1 March.
        let s = select(&backups, &keep(0, 0, 0, 5, 0), 0);
        assert_eq!(kept_ids(&s), ["2026-03-02 10:55", "2026-03-01 23:59"]);
        assert_eq!(reasons_of(&s, "2026-03-01 23:59"), ["weekly 2026-W09"]);
        let s = select(&backups, &keep(0, 0, 0, 0, 12), 0);
        assert_eq!(kept_ids(&s), ["2026-03-02 10:55", "2026-02-28 12:00"]);
        assert_eq!(reasons_of(&s, "2026-02-28 12:00"), ["monthly 2026-02"]);
    }

    #[test]
    fn buckets_are_those_with_backups_not_those_before_now() {
        // Backups stopped a year ago: a daily rule still keeps 3 of them.
        let backups = history("2025-01-01 00:00", DAY, 10);
        let s = select(&backups, &keep(0, 0, 3, 0, 0), at("2026-01-01 00:00"));
        assert_eq!(
            kept_ids(&s),
            ["2025-01-10 00:00", "2025-01-09 00:00", "2025-01-08 00:00"]
        );
    }

    #[test]
    fn iso_weeks_span_the_year_end() {
        // 2026-01-01 is a Thursday: 29 Dec 2025 to 4 Jan 2026 is 2026-W01.
        let backups = vec![
            ok("2026-01-04 12:00"),
            ok("2025-12-29 00:00"),
            ok("2025-12-28 23:00"),
        ];
        let s = select(&backups, &keep(0, 0, 0, 2, 0), 0);
        assert_eq!(kept_ids(&s), ["2026-01-04 12:00", "2025-12-28 23:00"]);
        assert_eq!(reasons_of(&s, "2026-01-04 12:00"), ["weekly 2026-W01"]);
        assert_eq!(reasons_of(&s, "2025-12-28 23:00"), ["weekly 2025-W52"]);
    }

    #[test]
    fn a_backup_kept_by_several_rules_says_so() {
        let backups = history("2026-01-01 00:00", 2 * HOUR_MS, 3);
        let s = select(&backups, &keep(1, 1, 1, 1, 1), 0);
        assert_eq!(
            reasons_of(&s, "2026-01-01 04:00"),
            [
                "keep_last",
                "hourly 2026-01-01T04",
                "daily 2026-01-01",
                "weekly 2026-W01",
                "monthly 2026-01"
            ]
        );
        assert_eq!(s.delete.len(), 2);
    }

    /// Every 2 h for 100 days, from Thursday 1 Jan 2026 00:00 to Friday
    /// 10 Apr 22:00: 1,200 backups.
    #[test]
    fn a_hundred_days_of_two_hourly_backups() {
        let backups = history("2026-01-01 00:00", 2 * HOUR_MS, 1200);
        assert_eq!(show(backups[1199].taken_at_ms), "2026-04-10 22:00");
        let rows = [
            (keep(1, 0, 0, 0, 0), 1),
            (keep(3, 0, 0, 0, 0), 3),
            (keep(5000, 0, 0, 0, 0), 1200),
            // Every backup is alone in its hour.
            (keep(0, 24, 0, 0, 0), 24),
            (keep(0, 0, 7, 0, 0), 7),
            (keep(0, 0, 100, 0, 0), 100),
            (keep(0, 0, 1000, 0, 0), 100),
            (keep(0, 0, 0, 4, 0), 4),
            // 1 Jan is in 2026-W01; 10 Apr in W15.
            (keep(0, 0, 0, 52, 0), 15),
            (keep(0, 0, 0, 0, 12), 4),
            // hourly: all of 9 and 10 Apr (24); daily adds 4-8 Apr (5);
            // weekly adds the Sundays 29 and 22 Mar (5 Apr is a day kept);
            // monthly adds 31 Mar, 28 Feb and 31 Jan.
            (keep(3, 24, 7, 4, 12), 24 + 5 + 2 + 3),
            (keep(0, 0, 7, 4, 0), 7 + 2),
            (keep(1, 0, 0, 0, 12), 4),
        ];
        for (policy, expected) in rows {
            let s = select(&backups, &policy, 0);
            assert_eq!(s.keep.len(), expected, "{policy:?}");
            assert_eq!(s.keep.len() + s.delete.len(), 1200, "{policy:?}");
        }
        let s = select(&backups, &keep(3, 24, 7, 4, 12), 0);
        let oldest_kept: Vec<&str> = kept_ids(&s).into_iter().rev().take(3).collect();
        assert_eq!(
            oldest_kept,
            ["2026-01-31 22:00", "2026-02-28 22:00", "2026-03-22 22:00"]
        );
    }

    #[test]
    fn the_newest_verified_backup_is_never_deleted() {
        let mut backups = history("2026-01-01 00:00", DAY, 10);
        backups[2].verify_state = "ok".into();
        backups[5].verify_state = "failed".into();
        backups[9].verify_state = "running".into();
        let s = select(&backups, &keep(2, 0, 0, 0, 0), 0);
        assert_eq!(
            kept_ids(&s),
            ["2026-01-10 00:00", "2026-01-09 00:00", "2026-01-03 00:00"]
        );
        assert_eq!(reasons_of(&s, "2026-01-03 00:00"), ["newest verified"]);
        // An older verified backup is not protected by it.
        backups[1].verify_state = "ok".into();
        let s = select(&backups, &keep(2, 0, 0, 0, 0), 0);
        assert!(s.delete.contains(&"2026-01-02 00:00".to_owned()));
        // A verified backup the rules keep anyway gets both reasons.
        backups[9].verify_state = "ok".into();
        let s = select(&backups, &keep(1, 0, 0, 0, 0), 0);
        assert_eq!(kept_ids(&s), ["2026-01-10 00:00"]);
        assert_eq!(
            reasons_of(&s, "2026-01-10 00:00"),
            ["keep_last", "newest verified"]
        );
    }

    #[test]
    fn the_newest_good_backup_survives_a_policy_keeping_nothing() {
        let backups = history("2026-01-01 00:00", DAY, 3);
        let s = select(&backups, &Retention::default(), 0);
        assert_eq!(kept_ids(&s), ["2026-01-03 00:00"]);
        assert_eq!(reasons_of(&s, "2026-01-03 00:00"), ["newest"]);
    }

    #[test]
    fn failed_running_and_pruned_backups() {
        let backups = vec![
            backup(at("2026-01-05 00:00"), "running", "not-verified"),
            backup(at("2026-01-04 00:00"), "failed", "not-verified"),
            backup(at("2026-01-03 00:00"), "ok", "not-verified"),
            backup(at("2026-01-02 00:00"), "failed", "not-verified"),
            backup(at("2026-01-01 12:00"), "pruned", "ok"),
            backup(at("2026-01-01 00:00"), "ok", "not-verified"),
        ];
        let s = select(&backups, &keep(1, 0, 0, 0, 0), 0);
        assert_eq!(
            kept_ids(&s),
            ["2026-01-05 00:00", "2026-01-04 00:00", "2026-01-03 00:00"]
        );
        assert_eq!(reasons_of(&s, "2026-01-05 00:00"), ["running"]);
        assert_eq!(
            reasons_of(&s, "2026-01-04 00:00"),
            ["failed, no good backup since"]
        );
        assert_eq!(s.delete, ["2026-01-02 00:00", "2026-01-01 00:00"]);
        // A pruned backup is in neither list, verified or not.
        assert!(!s.delete.contains(&"2026-01-01 12:00".to_owned()));
        // With no good backup at all, failures stay as the record of why.
        let failures = vec![
            backup(at("2026-01-02 00:00"), "failed", "not-verified"),
            backup(at("2026-01-01 00:00"), "failed", "not-verified"),
        ];
        let s = select(&failures, &keep(3, 0, 0, 0, 0), 0);
        assert_eq!(s.keep.len(), 2);
        assert!(s.delete.is_empty());
        // A state this version does not know is never deleted.
        let odd = vec![
            backup(at("2026-01-01 00:00"), "quarantined", "not-verified"),
            ok("2026-01-02 00:00"),
        ];
        let s = select(&odd, &keep(1, 0, 0, 0, 0), 0);
        assert_eq!(s.keep.len(), 2);
    }

    #[test]
    fn ties_and_input_order_do_not_matter() {
        let mut backups = vec![ok("2026-01-01 00:00"), ok("2026-01-01 00:00")];
        backups[0].id = "b".into();
        backups[1].id = "a".into();
        let forward = select(&backups, &keep(1, 0, 0, 0, 0), 0);
        backups.reverse();
        assert_eq!(select(&backups, &keep(1, 0, 0, 0, 0), 0), forward);
        assert_eq!(kept_ids(&forward), ["b"]);
        assert_eq!(select(&[], &keep(3, 1, 1, 1, 1), 0), Selection::default());
    }

    #[test]
    fn rows_become_candidates() {
        let row = BackupRow {
            id: "b-1".into(),
            policy: "crm-db".into(),
            host_id: "h1".into(),
            state: "ok".into(),
            trigger: "schedule".into(),
            started_at_ms: 10,
            finished_at_ms: Some(20),
            error: None,
            manifest_pb: None,
            sha256: None,
            artifact_bytes: None,
            verify_state: "failed".into(),
            verified_at_ms: Some(30),
            verify_error: Some("sha256 mismatch".into()),
            restore_ms: None,
            checks_pb: None,
            created_by: "user:alice".into(),
        };
        let c = Candidate::from(&row);
        assert_eq!((c.taken_at_ms, c.finished_at_ms), (10, Some(20)));
        assert_eq!(c.backup_state(), BackupState::Ok);
        assert_eq!(c.verify_state(), VerifyState::Failed);
        assert_eq!(c.verify_error.as_deref(), Some("sha256 mismatch"));
    }

    /// Random histories and policies: the invariants hold for every one.
    #[test]
    fn invariants_hold_for_random_histories() {
        let mut rng = StdRng::seed_from_u64(0x5eed_bac0);
        let states = ["ok", "ok", "ok", "failed", "running", "pruned"];
        let verifications = ["not-verified", "not-verified", "ok", "failed", "running"];
        for round in 0..2_000 {
            let count = rng.random_range(0..60);
            let start = at("2025-12-20 00:00");
            let backups: Vec<Candidate> = (0..count)
                .map(|n| {
                    let mut b = backup(
                        start + rng.random_range(0..120 * DAY),
                        states[rng.random_range(0..states.len())],
                        verifications[rng.random_range(0..verifications.len())],
                    );
                    b.id = format!("b{n}");
                    b
                })
                .collect();
            let policy = keep(
                rng.random_range(0..4),
                rng.random_range(0..30),
                rng.random_range(0..10),
                rng.random_range(0..6),
                rng.random_range(0..4),
            );
            let s = select(&backups, &policy, 0);
            let context = format!("round {round}, {policy:?}");
            let newest = |pred: &dyn Fn(&Candidate) -> bool| {
                backups
                    .iter()
                    .filter(|b| pred(b))
                    .max_by(|a, b| (a.taken_at_ms, &a.id).cmp(&(b.taken_at_ms, &b.id)))
            };
            if let Some(verified) = newest(&|b| b.state == "ok" && b.verify_state == "ok") {
                assert!(!s.delete.contains(&verified.id), "{context}");
            }
            if let Some(good) = newest(&|b| b.state == "ok") {
                assert!(!s.delete.contains(&good.id), "{context}");
            }
            for b in &backups {
                let kept = s.keep.iter().filter(|k| k.id == b.id).count();
                let deleted = s.delete.iter().filter(|d| **d == b.id).count();
                match b.state.as_str() {
                    "pruned" => assert_eq!((kept, deleted), (0, 0), "{context}"),
                    "running" => assert_eq!((kept, deleted), (1, 0), "{context}"),
                    _ => assert_eq!(kept + deleted, 1, "{context}: {b:?}"),
                }
            }
            let kept_good = s
                .keep
                .iter()
                .filter(|k| backups.iter().any(|b| b.id == k.id && b.state == "ok"))
                .count();
            let total_good = backups.iter().filter(|b| b.state == "ok").count();
            let rules_keep =
                (policy.keep_last + policy.hourly + policy.daily + policy.weekly + policy.monthly)
                    as usize
                    + 2;
            assert!(kept_good <= rules_keep.min(total_good), "{context}");
        }
    }
}
