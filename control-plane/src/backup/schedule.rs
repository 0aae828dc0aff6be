//! When backups and verifications run: standard five-field cron
//! expressions (`minute hour day-of-month month day-of-week`, as crontab
//! writes them), always evaluated in UTC so that no daylight-saving change
//! skips or repeats a run. Pure: every time is passed in, in Unix
//! milliseconds.
//!
//! A policy acts on the *newest* scheduled time that has come and that it
//! has not acted on yet ([`due`]): a control plane that was down for a day
//! runs one backup when it comes back, not one per missed slot. Times
//! before the policy existed are never due.
//!
//! Day of month and day of week combine as in Vixie cron: when both are
//! restricted, a day matching either runs (`0 4 1 * MON` is the 1st of
//! every month and every Monday).

use chrono::{DateTime, Days, NaiveDate, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;
/// Days searched for the longest gap between runs: five years from
/// 2024-01-01 hold two 29ths of February, so every schedule that runs at
/// all runs at least twice in them.
const GAP_SEARCH_DAYS: u64 = 5 * 366;

/// Why a schedule was refused. The messages quote the expression and say
/// what to write instead; the caller prefixes the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "{text:?} has {count} fields; write five (minute hour day-of-month month day-of-week, \
         in UTC), e.g. \"0 */2 * * *\" for every 2 hours"
    )]
    FieldCount { text: String, count: usize },
    #[error(
        "{text:?} has 6 fields; schedules have no seconds field, write five (minute hour \
         day-of-month month day-of-week), e.g. \"0 */2 * * *\""
    )]
    Seconds { text: String },
    #[error("{text:?} is a nickname; write the five fields instead, e.g. {instead:?}")]
    Nickname { text: String, instead: &'static str },
    #[error(
        "{text:?} is not a cron expression ({why}); write minute hour day-of-month month \
         day-of-week, e.g. \"30 4 * * *\" for 04:30 UTC daily"
    )]
    Invalid { text: String, why: String },
    #[error("{text:?} never runs (no date matches it); check the day of month and month")]
    Never { text: String },
}

/// A checked cron expression.
#[derive(Debug, Clone)]
pub struct Schedule {
    text: String,
    cron: Cron,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Schedule {
    /// Parses a five-field cron expression. Surrounding and repeated
    /// whitespace is ignored ([`Schedule::as_str`] gives the tidy form).
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let tidy = fields.join(" ");
        if let [nickname] = fields.as_slice()
            && nickname.starts_with('@')
        {
            let instead = match nickname.to_ascii_lowercase().as_str() {
                "@hourly" => "0 * * * *",
                "@daily" | "@midnight" => "0 0 * * *",
                "@weekly" => "0 0 * * 0",
                "@monthly" => "0 0 1 * *",
                "@yearly" | "@annually" => "0 0 1 1 *",
                _ => "0 0 * * *",
            };
            return Err(ScheduleError::Nickname {
                text: text.to_owned(),
                instead,
            });
        }
        match fields.len() {
            5 => {}
            6 => {
                return Err(ScheduleError::Seconds {
                    text: text.to_owned(),
                });
            }
            count => {
                return Err(ScheduleError::FieldCount {
                    text: text.to_owned(),
                    count,
                });
            }
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(&tidy)
            .map_err(|e| ScheduleError::Invalid {
                text: text.to_owned(),
                why: croner_reason(&e),
            })?;
        let schedule = Schedule { text: tidy, cron };
        if schedule.first_run_from(gap_search_start()).is_none() {
            return Err(ScheduleError::Never {
                text: text.to_owned(),
            });
        }
        Ok(schedule)
    }

    /// The expression, fields separated by one space.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first scheduled time strictly after `after_ms`.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let from = to_time(after_ms)?;
        let next = self.cron.find_next_occurrence(&from, false).ok()?;
        let next_ms = next.timestamp_millis();
        // Croner works in whole seconds; a start inside a second that is
        // itself a scheduled time must not answer with that second.
        if next_ms > after_ms {
            Some(next_ms)
        } else {
            self.next_after(next_ms)
        }
    }

    /// The newest scheduled time at or before `at_ms`.
    pub fn latest_at_or_before(&self, at_ms: i64) -> Option<i64> {
        let at = to_time(at_ms)?;
        self.cron
            .find_previous_occurrence(&at, true)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    /// The newest scheduled time that has come (`<= now_ms`), is not before
    /// the policy was created, and was not acted on yet (`> last_acted_ms`);
    /// `None` when nothing is due. Only the newest missed slot is returned,
    /// so a long outage leads to one run, not a burst.
    pub fn due(&self, last_acted_ms: Option<i64>, created_ms: i64, now_ms: i64) -> Option<i64> {
        let newest = self.latest_at_or_before(now_ms)?;
        let fresh = newest >= created_ms && last_acted_ms.is_none_or(|acted| newest > acted);
        fresh.then_some(newest)
    }

    /// The longest time between two consecutive runs, in milliseconds
    /// (`0 */2 * * *`: 2 h; `0 9 * * 1-5`: Friday 09:00 to Monday 09:00,
    /// 72 h). An RPO shorter than this can never be met.
    ///
    /// Hours and minutes select the same times on every day the schedule
    /// runs, so the gaps are those between the times of one day and those
    /// from the last run of a day to the first of the next day it runs.
    pub fn longest_gap_ms(&self) -> i64 {
        let start = gap_search_start();
        let Some(first) = self.first_run_from(start) else {
            return i64::MAX;
        };
        let times = self.minutes_of_day(first);
        let (Some(&earliest), Some(&latest)) = (times.first(), times.last()) else {
            return i64::MAX;
        };
        let within_a_day = times
            .windows(2)
            .map(|pair| pair[1] - pair[0])
            .max()
            .unwrap_or(0);
        let run_days: Vec<i64> = (0..GAP_SEARCH_DAYS)
            .filter_map(|day| {
                let day_start = start.checked_add_days(Days::new(day))?;
                let first_run = day_start + chrono::TimeDelta::minutes(earliest);
                self.cron
                    .is_time_matching(&first_run)
                    .ok()?
                    .then(|| i64::try_from(day).unwrap_or(i64::MAX))
            })
            .collect();
        if run_days.len() < 2 {
            return i64::MAX;
        }
        let across_days = run_days
            .windows(2)
            .map(|pair| (pair[1] - pair[0]) * (DAY_MS / MINUTE_MS) - latest + earliest)
            .max()
            .unwrap_or(0);
        within_a_day.max(across_days) * MINUTE_MS
    }

    fn first_run_from(&self, start: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&start, true).ok()
    }

    /// The minutes after midnight (UTC) at which the schedule runs on the
    /// day of `first`, a time it runs at (the first of its day).
    fn minutes_of_day(&self, first: DateTime<Utc>) -> Vec<i64> {
        let day = first.date_naive();
        let midnight = first.timestamp_millis().div_euclid(DAY_MS) * DAY_MS;
        let mut minutes = Vec::new();
        let mut at = Some(first);
        while let Some(time) = at.filter(|t| t.date_naive() == day) {
            minutes.push((time.timestamp_millis() - midnight) / MINUTE_MS);
            at = self.cron.find_next_occurrence(&time, false).ok();
        }
        minutes
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// The first scheduled time of `cron` strictly after `after_ms`; `None`
/// when the expression is not a valid schedule (stored schedules were
/// checked by `backup::spec` when the policy was applied).
pub fn next_after(cron: &str, after_ms: i64) -> Option<i64> {
    Schedule::parse(cron).ok()?.next_after(after_ms)
}

/// The scheduled time of `cron` to act on now, if any: see
/// [`Schedule::due`]. An invalid expression is never due.
pub fn due(cron: &str, last_acted_ms: Option<i64>, created_ms: i64, now_ms: i64) -> Option<i64> {
    Schedule::parse(cron)
        .ok()?
        .due(last_acted_ms, created_ms, now_ms)
}

/// Whole seconds (croner's resolution), rounded down.
fn to_time(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(ms.div_euclid(1000), 0)
}

fn gap_search_start() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(2024, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .unwrap_or_default()
}

/// Croner's error without its type-name prefixes, lower-cased.
fn croner_reason(error: &croner::errors::CronError) -> String {
    let text = error.to_string();
    let text = text
        .trim_start_matches("Invalid pattern: ")
        .trim_start_matches("Component error: ")
        .trim_end_matches('.');
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of a UTC time written `2026-03-31 23:59`.
    fn at(text: &str) -> i64 {
        chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M")
            .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.3f"))
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

    fn schedule(text: &str) -> Schedule {
        Schedule::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The next `n` runs after `from`.
    fn runs(text: &str, from: &str, n: usize) -> Vec<String> {
        let s = schedule(text);
        let mut out = Vec::new();
        let mut t = at(from);
        for _ in 0..n {
            t = s.next_after(t).unwrap();
            out.push(show(t));
        }
        out
    }

    #[test]
    fn steps_lists_and_ranges() {
        assert_eq!(
            runs("0 */2 * * *", "2026-05-01 23:00", 3),
            ["2026-05-02 00:00", "2026-05-02 02:00", "2026-05-02 04:00"]
        );
        assert_eq!(
            runs("*/15 * * * *", "2026-05-01 10:07", 3),
            ["2026-05-01 10:15", "2026-05-01 10:30", "2026-05-01 10:45"]
        );
        assert_eq!(
            runs("0 6,18 * * *", "2026-05-01 07:00", 3),
            ["2026-05-01 18:00", "2026-05-02 06:00", "2026-05-02 18:00"]
        );
        assert_eq!(
            runs("30 9-11 * * *", "2026-05-01 10:30", 3),
            ["2026-05-01 11:30", "2026-05-02 09:30", "2026-05-02 10:30"]
        );
        assert_eq!(
            runs("0 8-20/6 * * *", "2026-05-01 00:00", 4),
            [
                "2026-05-01 08:00",
                "2026-05-01 14:00",
                "2026-05-01 20:00",
                "2026-05-02 08:00"
            ]
        );
        // 2026-05-01 is a Friday.
        assert_eq!(
            runs("0 9 * * 1-5", "2026-05-01 09:00", 2),
            ["2026-05-04 09:00", "2026-05-05 09:00"]
        );
        assert_eq!(
            runs("0 3 * * SUN", "2026-05-01 00:00", 2),
            ["2026-05-03 03:00", "2026-05-10 03:00"]
        );
        assert_eq!(
            runs("0 0 * JAN,jul *", "2026-05-01 00:00", 2),
            ["2026-07-01 00:00", "2026-07-02 00:00"]
        );
    }

    #[test]
    fn month_ends_and_leap_days() {
        assert_eq!(
            runs("0 0 31 * *", "2026-01-31 00:00", 3),
            ["2026-03-31 00:00", "2026-05-31 00:00", "2026-07-31 00:00"],
            "months without a 31st are skipped"
        );
        assert_eq!(
            runs("0 0 29 2 *", "2026-01-01 00:00", 2),
            ["2028-02-29 00:00", "2032-02-29 00:00"]
        );
        assert_eq!(
            runs("59 23 28-31 * *", "2026-02-27 00:00", 3),
            ["2026-02-28 23:59", "2026-03-28 23:59", "2026-03-29 23:59"]
        );
        assert_eq!(
            runs("0 0 1 * *", "2026-12-15 00:00", 2),
            ["2027-01-01 00:00", "2027-02-01 00:00"],
            "across the year end"
        );
    }

    #[test]
    fn day_of_month_or_day_of_week_as_vixie_cron() {
        // The 13th (a Wednesday in May 2026) and every Friday.
        assert_eq!(
            runs("0 0 13 * FRI", "2026-05-09 00:00", 3),
            ["2026-05-13 00:00", "2026-05-15 00:00", "2026-05-22 00:00"]
        );
    }

    #[test]
    fn utc_has_no_daylight_saving_jumps() {
        // Europe and the US change clocks on these nights; UTC does not.
        assert_eq!(
            runs("30 1 * * *", "2026-03-28 12:00", 3),
            ["2026-03-29 01:30", "2026-03-30 01:30", "2026-03-31 01:30"]
        );
        assert_eq!(
            runs("0 * * * *", "2026-10-25 00:30", 3),
            ["2026-10-25 01:00", "2026-10-25 02:00", "2026-10-25 03:00"]
        );
    }

    #[test]
    fn next_is_strictly_after_even_within_a_second() {
        let s = schedule("0 */2 * * *");
        let slot = at("2026-05-01 10:00");
        assert_eq!(s.next_after(slot), Some(at("2026-05-01 12:00")));
        assert_eq!(s.next_after(slot + 500), Some(at("2026-05-01 12:00")));
        assert_eq!(s.next_after(slot - 1), Some(slot));
        assert_eq!(s.next_after(slot - 1_000), Some(slot));
        assert_eq!(s.latest_at_or_before(slot), Some(slot));
        assert_eq!(s.latest_at_or_before(slot + 999), Some(slot));
        assert_eq!(
            s.latest_at_or_before(slot - 1),
            Some(at("2026-05-01 08:00"))
        );
    }

    #[test]
    fn due_is_the_newest_unacted_slot_since_creation() {
        let s = schedule("0 */2 * * *");
        let created = at("2026-05-01 09:15");
        // Nothing scheduled since the policy was created.
        assert_eq!(s.due(None, created, at("2026-05-01 09:59")), None);
        assert_eq!(
            s.due(None, created, at("2026-05-01 10:00")),
            Some(at("2026-05-01 10:00"))
        );
        // Acted on: not due again until the next slot.
        let acted = Some(at("2026-05-01 10:00"));
        assert_eq!(s.due(acted, created, at("2026-05-01 10:00:30.000")), None);
        assert_eq!(s.due(acted, created, at("2026-05-01 11:59")), None);
        assert_eq!(
            s.due(acted, created, at("2026-05-01 12:00")),
            Some(at("2026-05-01 12:00"))
        );
        // After a day down: once, for the newest slot only.
        let back = at("2026-05-02 13:05");
        assert_eq!(s.due(acted, created, back), Some(at("2026-05-02 12:00")));
        assert_eq!(s.due(Some(at("2026-05-02 12:00")), created, back), None);
        // A slot at the very moment of creation counts.
        assert_eq!(
            s.due(None, at("2026-05-01 10:00"), at("2026-05-01 10:00")),
            Some(at("2026-05-01 10:00"))
        );
        // A mark from a former schedule that is newer than every slot.
        assert_eq!(
            s.due(
                Some(at("2026-05-01 11:00")),
                created,
                at("2026-05-01 11:30")
            ),
            None
        );
    }

    #[test]
    fn string_forms_refuse_invalid_expressions() {
        assert_eq!(next_after("nonsense", 0), None);
        assert_eq!(due("nonsense", None, 0, at("2026-05-01 10:00")), None);
        assert_eq!(
            next_after("0 */2 * * *", at("2026-05-01 10:00")),
            Some(at("2026-05-01 12:00"))
        );
        assert_eq!(
            due("0 */2 * * *", None, 0, at("2026-05-01 11:00")),
            Some(at("2026-05-01 10:00"))
        );
    }

    #[test]
    fn longest_gaps() {
        const H: i64 = 60;
        const D: i64 = 24 * H;
        let minutes = |text: &str| schedule(text).longest_gap_ms() / MINUTE_MS;
        assert_eq!(minutes("* * * * *"), 1);
        assert_eq!(minutes("*/15 * * * *"), 15);
        assert_eq!(minutes("0 * * * *"), H);
        assert_eq!(minutes("0 */2 * * *"), 2 * H);
        assert_eq!(minutes("0 6,18 * * *"), 12 * H);
        assert_eq!(minutes("0 1,2,23 * * *"), 21 * H, "02:00 to 23:00");
        assert_eq!(minutes("30 4 * * *"), D);
        assert_eq!(minutes("0 9 * * 1-5"), 3 * D, "Friday to Monday");
        assert_eq!(minutes("*/5 * * * 1-5"), 2 * D + 5, "the weekend");
        assert_eq!(minutes("0 3 * * 0"), 7 * D);
        assert_eq!(minutes("0 0 1 * *"), 31 * D);
        assert_eq!(minutes("0 0 31 * *"), 61 * D, "31 Aug to 31 Oct");
        assert_eq!(
            minutes("* * 1 1 *"),
            365 * D + 1,
            "1 Jan 2024 23:59 to 1 Jan 2025"
        );
        assert_eq!(minutes("0 0 29 2 *"), (4 * 365 + 1) * D);
    }

    #[test]
    fn expressions_are_checked() {
        let err = |text: &str| Schedule::parse(text).unwrap_err().to_string();
        assert_eq!(schedule("  0  */2 * *   * ").as_str(), "0 */2 * * *");
        assert_eq!(
            err("0 */2 * *"),
            "\"0 */2 * *\" has 4 fields; write five (minute hour day-of-month month \
             day-of-week, in UTC), e.g. \"0 */2 * * *\" for every 2 hours"
        );
        assert!(err("").contains("has 0 fields"), "{}", err(""));
        assert_eq!(
            err("0 0 */2 * * *"),
            "\"0 0 */2 * * *\" has 6 fields; schedules have no seconds field, write five \
             (minute hour day-of-month month day-of-week), e.g. \"0 */2 * * *\""
        );
        assert_eq!(
            err("@daily"),
            "\"@daily\" is a nickname; write the five fields instead, e.g. \"0 0 * * *\""
        );
        assert!(err("@weekly").contains("\"0 0 * * 0\""));
        for bad in [
            "60 * * * *",
            "0 24 * * *",
            "0 0 0 * *",
            "0 0 * 13 *",
            "x * * * *",
        ] {
            let text = err(bad);
            assert!(
                text.starts_with(&format!("{bad:?} is not a cron expression (")),
                "{text}"
            );
        }
        assert_eq!(
            err("0 0 30 2 *"),
            "\"0 0 30 2 *\" never runs (no date matches it); check the day of month and month"
        );
        assert!(Schedule::parse("0 0 31 4 *").is_err(), "April has 30 days");
    }
}
