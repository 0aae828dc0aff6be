//! Metric names and query planning for the metrics history — pure functions, no I/O.
//!
//! [`plan`] turns a [`MetricQuery`] into a [`Plan`]: which resolution answers it (raw samples,
//! 1-minute or 1-hour rollups), the bucket width, the aligned time range, and the segments to
//! read from each table. Rollups lag behind the raw samples (a minute is rolled up once it has
//! closed, an hour once all its minutes are), so a plan reading rollups ends with segments from
//! the finer tables for the stretch not yet rolled up; the store merges the segments' partial
//! sums per bucket.

use std::fmt;
use std::str::FromStr;

/// One metric that can be charted. Each maps to a column of the raw samples and to an
/// avg/max column pair of the rollups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    Cpu,
    Load1,
    Load5,
    Load15,
    MemoryUsed,
    MemoryAvailable,
    MemoryPercent,
    SwapUsed,
    DiskUsedPercent,
    NetRx,
    NetTx,
    Uptime,
    Processes,
}

impl Metric {
    /// Every metric, in a stable order.
    pub const ALL: [Metric; 13] = [
        Metric::Cpu,
        Metric::Load1,
        Metric::Load5,
        Metric::Load15,
        Metric::MemoryUsed,
        Metric::MemoryAvailable,
        Metric::MemoryPercent,
        Metric::SwapUsed,
        Metric::DiskUsedPercent,
        Metric::NetRx,
        Metric::NetTx,
        Metric::Uptime,
        Metric::Processes,
    ];

    /// The name used in the API and in rollup column names (`avg_<name>`, `max_<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Metric::Cpu => "cpu",
            Metric::Load1 => "load1",
            Metric::Load5 => "load5",
            Metric::Load15 => "load15",
            Metric::MemoryUsed => "memory_used",
            Metric::MemoryAvailable => "memory_available",
            Metric::MemoryPercent => "memory_percent",
            Metric::SwapUsed => "swap_used",
            Metric::DiskUsedPercent => "disk_used_percent",
            Metric::NetRx => "net_rx",
            Metric::NetTx => "net_tx",
            Metric::Uptime => "uptime",
            Metric::Processes => "processes",
        }
    }

    /// The unit of the values: `percent`, `bytes`, `bytes_per_second`, `seconds`, `count` or
    /// `load`.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::Cpu | Metric::MemoryPercent | Metric::DiskUsedPercent => "percent",
            Metric::Load1 | Metric::Load5 | Metric::Load15 => "load",
            Metric::MemoryUsed | Metric::MemoryAvailable | Metric::SwapUsed => "bytes",
            Metric::NetRx | Metric::NetTx => "bytes_per_second",
            Metric::Uptime => "seconds",
            Metric::Processes => "count",
        }
    }

    /// The SQL expression computing this metric from one raw sample row, as DOUBLE PRECISION
    /// on both dialects. `memory_percent` is NULL when the total is 0.
    pub(crate) fn raw_expr(self, table_alias: &str) -> String {
        let t = table_alias;
        let double = |c: &str| format!("CAST({t}.{c} AS DOUBLE PRECISION)");
        match self {
            Metric::Cpu => format!("{t}.cpu_percent"),
            Metric::Load1 => format!("{t}.load1"),
            Metric::Load5 => format!("{t}.load5"),
            Metric::Load15 => format!("{t}.load15"),
            Metric::MemoryUsed => double("memory_used"),
            Metric::MemoryAvailable => double("memory_available"),
            Metric::MemoryPercent => format!(
                "CAST({t}.memory_used AS DOUBLE PRECISION) * 100 \
                 / CAST(NULLIF({t}.memory_total, 0) AS DOUBLE PRECISION)"
            ),
            Metric::SwapUsed => double("swap_used"),
            Metric::DiskUsedPercent => format!("{t}.disk_used_percent"),
            Metric::NetRx => format!("{t}.net_rx_bps"),
            Metric::NetTx => format!("{t}.net_tx_bps"),
            Metric::Uptime => double("uptime_s"),
            Metric::Processes => double("processes"),
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A metric name that is not one of [`Metric::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown metric `{given}`; valid metrics are: {}", valid_names())]
pub struct UnknownMetric {
    pub given: String,
}

fn valid_names() -> String {
    Metric::ALL
        .iter()
        .map(|m| m.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for Metric {
    type Err = UnknownMetric;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Metric::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| UnknownMetric {
                given: s.to_owned(),
            })
    }
}

/// A request for one metric of one host over a time range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricQuery {
    pub host_id: String,
    pub metric: Metric,
    /// Inclusive, unix milliseconds.
    pub start_ms: i64,
    /// Inclusive, unix milliseconds.
    pub end_ms: i64,
    /// Bucket width; 0 = choose one giving about [`AUTO_POINTS`] points.
    pub step_ms: i64,
}

/// One bucket of a metric series: the bucket's start, the average and the maximum of the
/// samples in it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricPoint {
    pub timestamp_ms: i64,
    pub avg: f64,
    pub max: f64,
}

/// How long each resolution of the metrics history is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub raw_ms: i64,
    pub minute_ms: i64,
    pub hour_ms: i64,
}

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;

impl Default for Retention {
    /// Raw samples 48 h, 1-minute rollups 14 days, 1-hour rollups 400 days.
    fn default() -> Self {
        Retention {
            raw_ms: 48 * HOUR_MS,
            minute_ms: 14 * DAY_MS,
            hour_ms: 400 * DAY_MS,
        }
    }
}

/// About how many points an automatic step aims for.
pub const AUTO_POINTS: i64 = 300;
/// The most points one query may return.
pub const MAX_POINTS: i64 = 10_000;

/// Where a segment of a plan reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `metric_samples`, one row per sample.
    Raw,
    /// `metric_rollups_1m`.
    Minute,
    /// `metric_rollups_1h`.
    Hour,
}

impl Source {
    /// The finest step this source can answer. Raw samples have millisecond timestamps, but
    /// sub-second buckets are meaningless for samples taken seconds apart.
    pub fn resolution_ms(self) -> i64 {
        match self {
            Source::Raw => 1_000,
            Source::Minute => MINUTE_MS,
            Source::Hour => HOUR_MS,
        }
    }

    pub(crate) fn table(self) -> &'static str {
        match self {
            Source::Raw => "metric_samples",
            Source::Minute => "metric_rollups_1m",
            Source::Hour => "metric_rollups_1h",
        }
    }
}

/// How far the rollups are complete: every bucket before these instants has been rolled up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Watermarks {
    pub minute_until_ms: i64,
    pub hour_until_ms: i64,
}

/// A stretch of time `[from_ms, until_ms)` read from one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub source: Source,
    pub from_ms: i64,
    pub until_ms: i64,
}

/// How to answer a [`MetricQuery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The resolution chosen for the query (segments may fall back to finer ones).
    pub source: Source,
    /// The bucket width: a multiple of the source's resolution.
    pub step_ms: i64,
    /// The first bucket's start: the (clamped) start rounded down to a multiple of the step.
    pub start_ms: i64,
    /// The last instant included.
    pub end_ms: i64,
    /// What to read, in time order, covering `[start_ms, end_ms]` without overlap. Empty when
    /// the whole range is older than the retention.
    pub segments: Vec<Segment>,
}

impl Plan {
    /// How many buckets the plan spans (an upper bound on the points returned).
    pub fn buckets(&self) -> i64 {
        if self.segments.is_empty() {
            0
        } else {
            (self.end_ms - self.start_ms) / self.step_ms + 1
        }
    }
}

/// Why a metric query cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the metric query needs a host id")]
    EmptyHostId,
    #[error("the metric query's end ({end_ms}) is before its start ({start_ms}); swap them")]
    EndBeforeStart { start_ms: i64, end_ms: i64 },
    #[error("the metric query's start ({start_ms}) is negative; times are unix milliseconds")]
    NegativeStart { start_ms: i64 },
    #[error("the metric query's step ({step_ms} ms) is negative; use 0 to choose automatically")]
    NegativeStep { step_ms: i64 },
    #[error(
        "the metric query would return {points} points (step {step_ms} ms), more than the \
         limit of {MAX_POINTS}; widen the step to at least {suggested_step_ms} ms or narrow \
         the time range"
    )]
    TooManyPoints {
        points: i64,
        step_ms: i64,
        suggested_step_ms: i64,
    },
}

/// Steps an automatic choice may take, smallest first; past the last one, whole days.
const NICE_STEPS_MS: [i64; 18] = [
    1_000,
    2_000,
    5_000,
    10_000,
    15_000,
    30_000,
    MINUTE_MS,
    2 * MINUTE_MS,
    5 * MINUTE_MS,
    10 * MINUTE_MS,
    15 * MINUTE_MS,
    30 * MINUTE_MS,
    HOUR_MS,
    2 * HOUR_MS,
    3 * HOUR_MS,
    6 * HOUR_MS,
    12 * HOUR_MS,
    DAY_MS,
];

/// The smallest "nice" step (1 s, 2 s, 5 s, … 12 h, 1 d, then whole days) that is at least
/// `at_least_ms`.
pub fn nice_step(at_least_ms: i64) -> i64 {
    NICE_STEPS_MS
        .into_iter()
        .find(|&s| s >= at_least_ms)
        .unwrap_or_else(|| round_up(at_least_ms, DAY_MS))
}

/// `value / divisor` rounded up, for `value >= 0` and `divisor > 0` (`i64::div_ceil` is not
/// stable).
fn ceil_div(value: i64, divisor: i64) -> i64 {
    value / divisor + i64::from(value % divisor != 0)
}

/// `value` rounded up to a multiple of `multiple` (`value >= 0`, `multiple > 0`).
fn round_up(value: i64, multiple: i64) -> i64 {
    ceil_div(value, multiple).saturating_mul(multiple)
}

/// Plans a metric query against the given retention, clock and rollup progress.
///
/// - The step is the requested one, or (step 0) the nice step giving at most about
///   [`AUTO_POINTS`] points.
/// - The source is raw samples if the step is under a minute and the start is within raw
///   retention; else 1-minute rollups if the step is under an hour and the start is within
///   minute retention; else 1-hour rollups.
/// - The step is rounded up to a multiple of the source's resolution, the start is clamped to
///   the hour retention (older data is gone) and rounded down to a multiple of the step.
/// - More than [`MAX_POINTS`] buckets is an error suggesting a wider step.
pub fn plan(
    q: &MetricQuery,
    retention: &Retention,
    now_ms: i64,
    watermarks: Watermarks,
) -> Result<Plan, PlanError> {
    if q.host_id.is_empty() {
        return Err(PlanError::EmptyHostId);
    }
    if q.start_ms < 0 {
        return Err(PlanError::NegativeStart {
            start_ms: q.start_ms,
        });
    }
    if q.end_ms < q.start_ms {
        return Err(PlanError::EndBeforeStart {
            start_ms: q.start_ms,
            end_ms: q.end_ms,
        });
    }
    if q.step_ms < 0 {
        return Err(PlanError::NegativeStep { step_ms: q.step_ms });
    }
    let span = q.end_ms - q.start_ms;
    let wanted = if q.step_ms == 0 {
        nice_step(ceil_div(span, AUTO_POINTS))
    } else {
        q.step_ms
    };
    let source = if wanted < MINUTE_MS && q.start_ms >= now_ms - retention.raw_ms {
        Source::Raw
    } else if wanted < HOUR_MS && q.start_ms >= now_ms - retention.minute_ms {
        Source::Minute
    } else {
        Source::Hour
    };
    let step_ms = round_up(wanted, source.resolution_ms());
    let clamped_start = match source {
        Source::Hour => q.start_ms.max(now_ms - retention.hour_ms),
        Source::Raw | Source::Minute => q.start_ms,
    };
    let end_ms = q.end_ms;
    if clamped_start > end_ms {
        return Ok(Plan {
            source,
            step_ms,
            start_ms: clamped_start.div_euclid(step_ms) * step_ms,
            end_ms,
            segments: Vec::new(),
        });
    }
    let start_ms = clamped_start.div_euclid(step_ms) * step_ms;
    let points = (end_ms - start_ms) / step_ms + 1;
    if points > MAX_POINTS {
        // span / step <= MAX_POINTS - 2 keeps the aligned range within MAX_POINTS buckets.
        let at_least = round_up(
            ceil_div(span, MAX_POINTS - 2).max(1),
            source.resolution_ms(),
        );
        return Err(PlanError::TooManyPoints {
            points,
            step_ms,
            suggested_step_ms: round_up(nice_step(at_least), source.resolution_ms()),
        });
    }
    let tiers: &[(Source, i64)] = match source {
        Source::Raw => &[(Source::Raw, i64::MAX)],
        Source::Minute => &[
            (Source::Minute, watermarks.minute_until_ms),
            (Source::Raw, i64::MAX),
        ],
        Source::Hour => &[
            (Source::Hour, watermarks.hour_until_ms),
            (Source::Minute, watermarks.minute_until_ms),
            (Source::Raw, i64::MAX),
        ],
    };
    let until_end = end_ms.saturating_add(1);
    let mut segments = Vec::new();
    let mut cursor = start_ms;
    for &(source, until) in tiers {
        let until = until.min(until_end);
        if until > cursor {
            segments.push(Segment {
                source,
                from_ms: cursor,
                until_ms: until,
            });
            cursor = until;
        }
    }
    Ok(Plan {
        source,
        step_ms,
        start_ms,
        end_ms,
        segments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 20_833 * DAY_MS; // 2027-01-15 00:00 UTC, a multiple of every nice step
    const SEC: i64 = 1_000;

    fn q(start_ms: i64, end_ms: i64, step_ms: i64) -> MetricQuery {
        MetricQuery {
            host_id: "h-1".to_owned(),
            metric: Metric::Cpu,
            start_ms,
            end_ms,
            step_ms,
        }
    }

    /// Rollups complete up to 2 minutes ago (minutes) and 1 hour ago (hours).
    fn marks() -> Watermarks {
        Watermarks {
            minute_until_ms: NOW - 2 * MINUTE_MS,
            hour_until_ms: NOW - HOUR_MS,
        }
    }

    fn check(query: MetricQuery) -> Plan {
        plan(&query, &Retention::default(), NOW, marks()).expect("plannable")
    }

    fn seg(source: Source, from_ms: i64, until_ms: i64) -> Segment {
        Segment {
            source,
            from_ms,
            until_ms,
        }
    }

    #[test]
    fn planner_stays_free_of_io() {
        // The planner is a pure decision: it must not grow a database or runtime dependency.
        let source = include_str!("metric_query.rs");
        for banned in [
            concat!("sq", "lx"),
            concat!("tok", "io"),
            concat!("std::", "fs"),
        ] {
            assert!(
                !source.contains(banned),
                "metric_query.rs mentions {banned}"
            );
        }
    }

    #[test]
    fn metric_names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for m in Metric::ALL {
            assert_eq!(m.name().parse::<Metric>(), Ok(m));
            assert_eq!(m.to_string(), m.name());
            assert!(seen.insert(m.name()));
        }
        assert_eq!(seen.len(), 13);
    }

    #[test]
    fn metric_parse_table() {
        let cases = [
            ("cpu", Metric::Cpu, "percent"),
            ("load1", Metric::Load1, "load"),
            ("load5", Metric::Load5, "load"),
            ("load15", Metric::Load15, "load"),
            ("memory_used", Metric::MemoryUsed, "bytes"),
            ("memory_available", Metric::MemoryAvailable, "bytes"),
            ("memory_percent", Metric::MemoryPercent, "percent"),
            ("swap_used", Metric::SwapUsed, "bytes"),
            ("disk_used_percent", Metric::DiskUsedPercent, "percent"),
            ("net_rx", Metric::NetRx, "bytes_per_second"),
            ("net_tx", Metric::NetTx, "bytes_per_second"),
            ("uptime", Metric::Uptime, "seconds"),
            ("processes", Metric::Processes, "count"),
        ];
        for (name, metric, unit) in cases {
            let parsed: Metric = name.parse().unwrap();
            assert_eq!(parsed, metric, "{name}");
            assert_eq!(parsed.unit(), unit, "{name}");
        }
    }

    #[test]
    fn unknown_metric_lists_valid_names() {
        for bad in ["", "CPU", "cpu ", "memory", "net_rx_bps"] {
            let err = bad.parse::<Metric>().unwrap_err();
            assert_eq!(err.given, bad);
            let msg = err.to_string();
            assert!(msg.starts_with(&format!("unknown metric `{bad}`")), "{msg}");
            assert!(
                msg.ends_with(
                    "valid metrics are: cpu, load1, load5, load15, memory_used, \
                     memory_available, memory_percent, swap_used, disk_used_percent, net_rx, \
                     net_tx, uptime, processes"
                ),
                "{msg}"
            );
        }
    }

    #[test]
    fn nice_steps() {
        let cases = [
            (0, 1_000),
            (1, 1_000),
            (1_000, 1_000),
            (1_001, 2_000),
            (7_000, 10_000),
            (12_000, 15_000),
            (30_001, 60_000),
            (61_000, 120_000),
            (4 * MINUTE_MS, 5 * MINUTE_MS),
            (33 * MINUTE_MS, HOUR_MS),
            (HOUR_MS + 1, 2 * HOUR_MS),
            (4 * HOUR_MS, 6 * HOUR_MS),
            (13 * HOUR_MS, DAY_MS),
            (DAY_MS + 1, 2 * DAY_MS),
            (9 * DAY_MS + 5, 10 * DAY_MS),
        ];
        for (at_least, want) in cases {
            assert_eq!(nice_step(at_least), want, "nice_step({at_least})");
        }
    }

    #[test]
    fn default_retention() {
        let r = Retention::default();
        assert_eq!(r.raw_ms, 172_800_000);
        assert_eq!(r.minute_ms, 1_209_600_000);
        assert_eq!(r.hour_ms, 34_560_000_000);
    }

    #[test]
    fn validation_errors() {
        let r = Retention::default();
        let mut no_host = q(0, 1, 0);
        no_host.host_id.clear();
        assert_eq!(
            plan(&no_host, &r, NOW, marks()),
            Err(PlanError::EmptyHostId)
        );
        assert_eq!(
            plan(&q(NOW, NOW - 1, 0), &r, NOW, marks()),
            Err(PlanError::EndBeforeStart {
                start_ms: NOW,
                end_ms: NOW - 1
            })
        );
        assert_eq!(
            plan(&q(-5, NOW, 0), &r, NOW, marks()),
            Err(PlanError::NegativeStart { start_ms: -5 })
        );
        assert_eq!(
            plan(&q(NOW - 1, NOW, -1), &r, NOW, marks()),
            Err(PlanError::NegativeStep { step_ms: -1 })
        );
    }

    #[test]
    fn one_hour_auto_reads_raw_at_fifteen_seconds() {
        // 3600 s / 300 = 12 s -> 15 s.
        let p = check(q(NOW - HOUR_MS, NOW, 0));
        assert_eq!(p.source, Source::Raw);
        assert_eq!(p.step_ms, 15 * SEC);
        assert_eq!(p.start_ms, NOW - HOUR_MS);
        assert_eq!(p.buckets(), 241);
        assert_eq!(p.segments, [seg(Source::Raw, NOW - HOUR_MS, NOW + 1)]);
    }

    #[test]
    fn raw_start_is_aligned_down_to_the_step() {
        let p = check(q(NOW - HOUR_MS + 7 * SEC, NOW - 5, 30 * SEC));
        assert_eq!(p.source, Source::Raw);
        assert_eq!(p.step_ms, 30 * SEC);
        assert_eq!(p.start_ms, NOW - HOUR_MS);
        assert_eq!(p.end_ms, NOW - 5);
        assert_eq!(p.segments, [seg(Source::Raw, NOW - HOUR_MS, NOW - 4)]);
    }

    #[test]
    fn sub_second_step_is_rounded_up_to_a_second() {
        let p = check(q(NOW - 60 * SEC, NOW, 250));
        assert_eq!((p.source, p.step_ms), (Source::Raw, SEC));
        let p = check(q(NOW - 60 * SEC, NOW, 1_500));
        assert_eq!((p.source, p.step_ms), (Source::Raw, 2 * SEC));
    }

    #[test]
    fn one_day_auto_reads_minutes_with_a_raw_tail() {
        // 86400 s / 300 = 288 s -> 5 min.
        let p = check(q(NOW - DAY_MS, NOW, 0));
        assert_eq!(p.source, Source::Minute);
        assert_eq!(p.step_ms, 5 * MINUTE_MS);
        assert_eq!(p.buckets(), 289);
        assert_eq!(
            p.segments,
            [
                seg(Source::Minute, NOW - DAY_MS, NOW - 2 * MINUTE_MS),
                seg(Source::Raw, NOW - 2 * MINUTE_MS, NOW + 1),
            ]
        );
    }

    #[test]
    fn small_step_beyond_raw_retention_falls_back_to_minutes() {
        // 10 s asked, but three days ago raw samples are gone: minute rollups, 1 min step.
        let start = NOW - 3 * DAY_MS;
        let p = check(q(start, start + HOUR_MS, 10 * SEC));
        assert_eq!(p.source, Source::Minute);
        assert_eq!(p.step_ms, MINUTE_MS);
        assert_eq!(
            p.segments,
            [seg(Source::Minute, start, start + HOUR_MS + 1)]
        );
    }

    #[test]
    fn odd_step_is_rounded_up_to_the_source_resolution() {
        let start = NOW - 3 * DAY_MS;
        let p = check(q(start, start + HOUR_MS, 90 * SEC));
        assert_eq!((p.source, p.step_ms), (Source::Minute, 2 * MINUTE_MS));
        let p = check(q(NOW - 30 * DAY_MS, NOW, 90 * MINUTE_MS));
        assert_eq!((p.source, p.step_ms), (Source::Hour, 2 * HOUR_MS));
    }

    #[test]
    fn thirty_days_auto_reads_hours_then_minutes_then_raw() {
        // 30 d / 300 = 2.4 h -> 3 h.
        let p = check(q(NOW - 30 * DAY_MS, NOW, 0));
        assert_eq!(p.source, Source::Hour);
        assert_eq!(p.step_ms, 3 * HOUR_MS);
        assert_eq!(p.buckets(), 241);
        assert_eq!(
            p.segments,
            [
                seg(Source::Hour, NOW - 30 * DAY_MS, NOW - HOUR_MS),
                seg(Source::Minute, NOW - HOUR_MS, NOW - 2 * MINUTE_MS),
                seg(Source::Raw, NOW - 2 * MINUTE_MS, NOW + 1),
            ]
        );
    }

    #[test]
    fn minute_step_beyond_minute_retention_reads_hours() {
        let start = NOW - 20 * DAY_MS;
        let p = check(q(start, start + 6 * HOUR_MS, 5 * MINUTE_MS));
        assert_eq!((p.source, p.step_ms), (Source::Hour, HOUR_MS));
        assert_eq!(
            p.segments,
            [seg(Source::Hour, start, start + 6 * HOUR_MS + 1)]
        );
    }

    #[test]
    fn start_beyond_hour_retention_is_clamped() {
        let p = check(q(0, NOW, 30 * DAY_MS));
        assert_eq!(p.source, Source::Hour);
        assert_eq!(p.step_ms, 30 * DAY_MS);
        let horizon = NOW - 400 * DAY_MS;
        assert_eq!(p.start_ms, horizon.div_euclid(30 * DAY_MS) * 30 * DAY_MS);
        assert!(p.start_ms <= horizon && horizon - p.start_ms < 30 * DAY_MS);
        assert_eq!(p.segments[0].from_ms, p.start_ms);
        assert_eq!(p.segments.last().unwrap().until_ms, NOW + 1);
    }

    #[test]
    fn range_entirely_beyond_retention_is_empty() {
        let p = check(q(1_000, 2_000, 0));
        assert_eq!(p.source, Source::Hour);
        assert!(p.segments.is_empty());
        assert_eq!(p.buckets(), 0);
    }

    #[test]
    fn single_instant_query() {
        let p = check(q(NOW - 10 * SEC, NOW - 10 * SEC, 0));
        assert_eq!((p.source, p.step_ms), (Source::Raw, SEC));
        assert_eq!(p.buckets(), 1);
        assert_eq!(
            p.segments,
            [seg(Source::Raw, NOW - 10 * SEC, NOW - 10 * SEC + 1)]
        );
    }

    #[test]
    fn future_end_is_kept() {
        // Samples slightly ahead of the control plane's clock still show.
        let p = check(q(NOW - HOUR_MS, NOW + MINUTE_MS, 0));
        assert_eq!(p.end_ms, NOW + MINUTE_MS);
        assert_eq!(p.segments.last().unwrap().until_ms, NOW + MINUTE_MS + 1);
    }

    #[test]
    fn lagging_rollups_are_covered_by_finer_sources() {
        // Rollups never ran: everything comes from raw (what is left of it).
        let none = Watermarks::default();
        let p = plan(&q(NOW - DAY_MS, NOW, 0), &Retention::default(), NOW, none).unwrap();
        assert_eq!(p.source, Source::Minute);
        assert_eq!(p.segments, [seg(Source::Raw, NOW - DAY_MS, NOW + 1)]);
        // Hours lag further than minutes.
        let lag = Watermarks {
            minute_until_ms: NOW - 10 * MINUTE_MS,
            hour_until_ms: NOW - 5 * HOUR_MS,
        };
        let p = plan(
            &q(NOW - 30 * DAY_MS, NOW, 0),
            &Retention::default(),
            NOW,
            lag,
        )
        .unwrap();
        assert_eq!(
            p.segments,
            [
                seg(Source::Hour, NOW - 30 * DAY_MS, NOW - 5 * HOUR_MS),
                seg(Source::Minute, NOW - 5 * HOUR_MS, NOW - 10 * MINUTE_MS),
                seg(Source::Raw, NOW - 10 * MINUTE_MS, NOW + 1),
            ]
        );
    }

    #[test]
    fn query_ending_before_the_watermarks_uses_one_source() {
        let p = check(q(NOW - 10 * DAY_MS, NOW - 9 * DAY_MS, 0));
        assert_eq!(p.source, Source::Minute);
        assert_eq!(p.segments.len(), 1);
        assert_eq!(p.segments[0].source, Source::Minute);
    }

    #[test]
    fn segments_tile_the_range_without_gaps() {
        let spans = [
            MINUTE_MS,
            HOUR_MS,
            6 * HOUR_MS,
            3 * DAY_MS,
            20 * DAY_MS,
            300 * DAY_MS,
        ];
        for span in spans {
            for offset in [0, 7 * SEC, 3 * HOUR_MS] {
                let end = NOW - offset;
                let p = check(q(end - span, end, 0));
                assert!(p.buckets() <= AUTO_POINTS + 1, "span {span}: {p:?}");
                assert_eq!(p.step_ms % p.source.resolution_ms(), 0);
                assert_eq!(p.start_ms % p.step_ms, 0);
                let mut cursor = p.start_ms;
                for s in &p.segments {
                    assert_eq!(s.from_ms, cursor, "span {span}: {p:?}");
                    assert!(s.until_ms > s.from_ms);
                    cursor = s.until_ms;
                }
                assert_eq!(cursor, end + 1);
            }
        }
    }

    #[test]
    fn too_many_points_suggests_a_wider_step() {
        let err = plan(
            &q(NOW - DAY_MS, NOW, SEC),
            &Retention::default(),
            NOW,
            marks(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            PlanError::TooManyPoints {
                points: 86_401,
                step_ms: SEC,
                suggested_step_ms: 10 * SEC,
            }
        );
        assert!(
            err.to_string()
                .contains("widen the step to at least 10000 ms")
        );
        // The suggestion is accepted.
        let p = check(q(NOW - DAY_MS, NOW, 10 * SEC));
        assert_eq!(p.buckets(), 8_641);
        // Exactly the limit is fine.
        let p = check(q(NOW - (MAX_POINTS - 1) * SEC, NOW, SEC));
        assert_eq!(p.buckets(), MAX_POINTS);
        assert!(
            plan(
                &q(NOW - MAX_POINTS * SEC, NOW, SEC),
                &Retention::default(),
                NOW,
                marks()
            )
            .is_err()
        );
    }
}
