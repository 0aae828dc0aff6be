//! Metrics history: raw samples (one row per host and sample time, one column per metric),
//! 1-minute and 1-hour rollups (avg and max per metric plus the sample count), retention, and
//! bucketed queries planned by [`super::metric_query::plan`].
//!
//! Rollup progress is kept in `metric_rollup_progress`: every minute (hour) bucket before its
//! `done_until_ms` has been rolled up. Samples that arrive for an already rolled-up minute
//! (an agent resending after a disconnection) are noted in `metric_rollup_pending`, and the
//! next [`Store::roll_up`] recomputes those minutes and their hours. The `'1m'` progress row is
//! the lock ordering the two: `insert_samples` holds it shared (PostgreSQL `FOR SHARE`; SQLite
//! serializes writers anyway) while it reads the progress, and `roll_up` holds it exclusively.

use std::collections::{BTreeMap, BTreeSet};

use super::metric_query::{self, HOUR_MS, MINUTE_MS, Source, Watermarks};
use super::{Dialect, Metric, MetricPoint, MetricQuery, Retention, Store, StoreError, col, db};

/// One metrics sample of one host.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRow {
    pub host_id: String,
    pub ts_ms: i64,
    pub cpu_percent: f64,
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
    pub memory_used: i64,
    pub memory_available: i64,
    pub memory_total: i64,
    pub swap_used: i64,
    pub swap_total: i64,
    /// Of the fullest mount.
    pub disk_used_percent: f64,
    pub disk_used: i64,
    pub disk_total: i64,
    pub net_rx_bps: f64,
    pub net_tx_bps: f64,
    pub uptime_s: i64,
    pub processes: i64,
}

/// The answer to a [`MetricQuery`]: the bucketing chosen and the points.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSeries {
    /// The resolution that answered (finer tables may have filled the not-yet-rolled-up end).
    pub source: Source,
    /// The bucket width actually used (the requested or automatic step, aligned).
    pub step_ms: i64,
    /// The first bucket's start.
    pub start_ms: i64,
    /// The last instant included.
    pub end_ms: i64,
    /// One point per bucket that has samples, ordered by time.
    pub points: Vec<MetricPoint>,
}

/// What one [`Store::roll_up`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RollupReport {
    /// 1-minute rollup rows written (new buckets and recomputed late ones).
    pub minute_buckets: u64,
    /// 1-hour rollup rows written (new buckets and recomputed late ones).
    pub hour_buckets: u64,
    /// Minutes (per host) recomputed because samples arrived after they were rolled up.
    pub late_minutes: u64,
    /// Every minute before this instant is rolled up.
    pub minute_until_ms: i64,
    /// Every hour before this instant is rolled up.
    pub hour_until_ms: i64,
}

/// What one [`Store::prune`] deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PruneReport {
    pub raw_deleted: u64,
    pub minute_deleted: u64,
    pub hour_deleted: u64,
    /// Raw samples before this instant were deleted.
    pub raw_cutoff_ms: i64,
    /// 1-minute rollups before this instant were deleted.
    pub minute_cutoff_ms: i64,
    /// 1-hour rollups before this instant were deleted.
    pub hour_cutoff_ms: i64,
}

const SAMPLE_COLS: [&str; 18] = [
    "host_id",
    "ts_ms",
    "cpu_percent",
    "load1",
    "load5",
    "load15",
    "memory_used",
    "memory_available",
    "memory_total",
    "swap_used",
    "swap_total",
    "disk_used_percent",
    "disk_used",
    "disk_total",
    "net_rx_bps",
    "net_tx_bps",
    "uptime_s",
    "processes",
];

/// `prefix (…), (…) suffix` with `rows` groups of `cols` numbered placeholders.
fn values_sql(prefix: &str, cols: usize, rows: usize, suffix: &str) -> String {
    let mut sql = String::with_capacity(prefix.len() + suffix.len() + rows * cols * 7);
    sql.push_str(prefix);
    let mut n = 0;
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..cols {
            n += 1;
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&n.to_string());
        }
        sql.push(')');
    }
    sql.push_str(suffix);
    sql
}

fn validate(s: &SampleRow) -> Result<(), StoreError> {
    let invalid = |problem: String| StoreError::InvalidSample {
        host_id: s.host_id.clone(),
        ts_ms: s.ts_ms,
        problem,
    };
    if s.host_id.is_empty() {
        return Err(invalid("the host id is empty".to_owned()));
    }
    if s.ts_ms < 0 {
        return Err(invalid("the timestamp is negative".to_owned()));
    }
    let floats = [
        ("cpu_percent", s.cpu_percent),
        ("load1", s.load1),
        ("load5", s.load5),
        ("load15", s.load15),
        ("disk_used_percent", s.disk_used_percent),
        ("net_rx_bps", s.net_rx_bps),
        ("net_tx_bps", s.net_tx_bps),
    ];
    for (name, value) in floats {
        if !value.is_finite() {
            return Err(invalid(format!("{name} is {value}, not a finite number")));
        }
    }
    Ok(())
}

/// The column list of both rollup tables.
fn rollup_cols() -> String {
    let mut cols = String::from("host_id, bucket_ms, samples");
    for m in Metric::ALL {
        let n = m.name();
        cols.push_str(&format!(", avg_{n}, max_{n}"));
    }
    cols
}

/// Upsert tail shared by every rollup insert. A recomputation never replaces a bucket with
/// one built from fewer samples: that happens only when part of the source was already
/// pruned, and the stored bucket is then the better one.
fn rollup_upsert(table: &str) -> String {
    let mut sql =
        String::from(" ON CONFLICT (host_id, bucket_ms) DO UPDATE SET samples = excluded.samples");
    for m in Metric::ALL {
        let n = m.name();
        sql.push_str(&format!(
            ", avg_{n} = excluded.avg_{n}, max_{n} = excluded.max_{n}"
        ));
    }
    sql.push_str(&format!(" WHERE excluded.samples >= {table}.samples"));
    sql
}

/// Select list turning raw samples `s` into 1-minute rollup rows.
fn minute_select() -> String {
    let mut sql = format!("s.host_id, (s.ts_ms / {MINUTE_MS}) * {MINUTE_MS}, COUNT(*)");
    for m in Metric::ALL {
        let e = m.raw_expr("s");
        sql.push_str(&format!(", AVG({e}), MAX({e})"));
    }
    sql
}

/// Select list turning 1-minute rollups `m` into 1-hour rollup rows (averages weighted by
/// sample count).
fn hour_select() -> String {
    let mut sql =
        format!("m.host_id, (m.bucket_ms / {HOUR_MS}) * {HOUR_MS}, CAST(SUM(m.samples) AS BIGINT)");
    for metric in Metric::ALL {
        let n = metric.name();
        sql.push_str(&format!(
            ", CAST(SUM(m.avg_{n} * m.samples) / CAST(NULLIF(SUM(CASE WHEN m.avg_{n} IS NULL \
             THEN 0 ELSE m.samples END), 0) AS DOUBLE PRECISION) AS DOUBLE PRECISION), \
             MAX(m.max_{n})"
        ));
    }
    sql
}

fn roll_minutes_sql() -> String {
    format!(
        "INSERT INTO metric_rollups_1m ({}) SELECT {} FROM metric_samples s \
         WHERE s.ts_ms >= $1 AND s.ts_ms < $2 GROUP BY 1, 2{}",
        rollup_cols(),
        minute_select(),
        rollup_upsert("metric_rollups_1m"),
    )
}

fn recompute_pending_minutes_sql() -> String {
    format!(
        "INSERT INTO metric_rollups_1m ({}) SELECT {} FROM metric_rollup_pending p \
         JOIN metric_samples s ON s.host_id = p.host_id \
           AND s.ts_ms >= p.bucket_ms AND s.ts_ms < p.bucket_ms + {MINUTE_MS} \
         WHERE p.bucket_ms >= 0 GROUP BY 1, 2{}",
        rollup_cols(),
        minute_select(),
        rollup_upsert("metric_rollups_1m"),
    )
}

fn roll_hours_sql() -> String {
    format!(
        "INSERT INTO metric_rollups_1h ({}) SELECT {} FROM metric_rollups_1m m \
         WHERE m.bucket_ms >= $1 AND m.bucket_ms < $2 GROUP BY 1, 2{}",
        rollup_cols(),
        hour_select(),
        rollup_upsert("metric_rollups_1h"),
    )
}

fn recompute_pending_hours_sql() -> String {
    format!(
        "INSERT INTO metric_rollups_1h ({}) SELECT {} FROM \
         (SELECT DISTINCT host_id, (bucket_ms / {HOUR_MS}) * {HOUR_MS} AS hour_ms \
          FROM metric_rollup_pending WHERE bucket_ms < $1) p \
         JOIN metric_rollups_1m m ON m.host_id = p.host_id \
           AND m.bucket_ms >= p.hour_ms AND m.bucket_ms < p.hour_ms + {HOUR_MS} \
         WHERE p.hour_ms >= 0 GROUP BY 1, 2{}",
        rollup_cols(),
        hour_select(),
        rollup_upsert("metric_rollups_1h"),
    )
}

/// One query per segment: per step bucket, the sum and count behind the average, and the
/// maximum, so that segments from different sources merge exactly.
fn segment_sql(source: Source, metric: Metric) -> String {
    let table = source.table();
    match source {
        Source::Raw => {
            let e = metric.raw_expr("s");
            format!(
                "SELECT (s.ts_ms / $2) * $2 AS bucket, SUM({e}) AS total, COUNT({e}) AS n, \
                 MAX({e}) AS peak FROM {table} s \
                 WHERE s.host_id = $1 AND s.ts_ms >= $3 AND s.ts_ms < $4 \
                 GROUP BY 1 ORDER BY 1"
            )
        }
        Source::Minute | Source::Hour => {
            let n = metric.name();
            format!(
                "SELECT (m.bucket_ms / $2) * $2 AS bucket, SUM(m.avg_{n} * m.samples) AS total, \
                 CAST(SUM(CASE WHEN m.avg_{n} IS NULL THEN 0 ELSE m.samples END) AS BIGINT) AS n, \
                 MAX(m.max_{n}) AS peak FROM {table} m \
                 WHERE m.host_id = $1 AND m.bucket_ms >= $3 AND m.bucket_ms < $4 \
                 GROUP BY 1 ORDER BY 1"
            )
        }
    }
}

#[derive(Default)]
struct Bucket {
    total: f64,
    n: i64,
    peak: Option<f64>,
}

impl Store {
    /// Stores a batch of samples in one transaction, with multi-row inserts sized to the
    /// dialect's bind-parameter limit. A sample whose (host, time) is already stored is
    /// ignored, so resending is harmless. Fails without storing anything if any sample has an
    /// empty host id, a negative time or a non-finite number.
    pub async fn insert_samples(&self, samples: &[SampleRow]) -> Result<(), StoreError> {
        if samples.is_empty() {
            return Ok(());
        }
        for s in samples {
            validate(s)?;
        }
        const OP: &str = "storing metric samples";
        let per_statement = self.dialect.rows_per_statement(SAMPLE_COLS.len());
        let mut tx = self.begin_write(OP).await?;
        for chunk in samples.chunks(per_statement) {
            let sql = values_sql(
                &format!(
                    "INSERT INTO metric_samples ({}) VALUES ",
                    SAMPLE_COLS.join(", ")
                ),
                SAMPLE_COLS.len(),
                chunk.len(),
                " ON CONFLICT (host_id, ts_ms) DO NOTHING",
            );
            // Only full-size statements repeat often enough to be worth caching.
            let mut query = sqlx::query(&sql).persistent(chunk.len() == per_statement);
            for s in chunk {
                query = query
                    .bind(s.host_id.as_str())
                    .bind(s.ts_ms)
                    .bind(s.cpu_percent)
                    .bind(s.load1)
                    .bind(s.load5)
                    .bind(s.load15)
                    .bind(s.memory_used)
                    .bind(s.memory_available)
                    .bind(s.memory_total)
                    .bind(s.swap_used)
                    .bind(s.swap_total)
                    .bind(s.disk_used_percent)
                    .bind(s.disk_used)
                    .bind(s.disk_total)
                    .bind(s.net_rx_bps)
                    .bind(s.net_tx_bps)
                    .bind(s.uptime_s)
                    .bind(s.processes);
            }
            query.execute(&mut *tx).await.map_err(db(OP))?;
        }

        // Samples for minutes already rolled up: note them for recomputation.
        let lock = match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR SHARE",
        };
        let minute_done: i64 = sqlx::query_scalar(&format!(
            "SELECT done_until_ms FROM metric_rollup_progress WHERE resolution = '1m'{lock}"
        ))
        .fetch_one(&mut *tx)
        .await
        .map_err(db(OP))?;
        let late: BTreeSet<(&str, i64)> = samples
            .iter()
            .filter(|s| s.ts_ms < minute_done)
            .map(|s| {
                (
                    s.host_id.as_str(),
                    s.ts_ms.div_euclid(MINUTE_MS) * MINUTE_MS,
                )
            })
            .collect();
        let late: Vec<_> = late.into_iter().collect();
        for chunk in late.chunks(self.dialect.rows_per_statement(2)) {
            let sql = values_sql(
                "INSERT INTO metric_rollup_pending (host_id, bucket_ms) VALUES ",
                2,
                chunk.len(),
                " ON CONFLICT (host_id, bucket_ms) DO NOTHING",
            );
            let mut query = sqlx::query(&sql).persistent(false);
            for (host_id, bucket_ms) in chunk {
                query = query.bind(*host_id).bind(*bucket_ms);
            }
            query.execute(&mut *tx).await.map_err(db(OP))?;
        }
        tx.commit().await.map_err(db(OP))
    }

    /// How far the rollups are complete.
    pub async fn rollup_watermarks(&self) -> Result<Watermarks, StoreError> {
        let rows = sqlx::query("SELECT resolution, done_until_ms FROM metric_rollup_progress")
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading the rollup progress"))?;
        watermarks_from(&rows)
    }

    /// Rolls up every closed minute (raw samples before `now_ms` rounded down to a minute) and
    /// every closed hour whose minutes are all rolled up, then recomputes minutes and hours that
    /// received late samples. Idempotent: running it again with the same `now_ms` writes
    /// nothing new. Safe to run from several replicas (they serialize), though one leader is
    /// enough.
    pub async fn roll_up(&self, now_ms: i64) -> Result<RollupReport, StoreError> {
        const OP: &str = "rolling up metrics";
        let mut tx = self.begin_write(OP).await?;
        let lock = match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        };
        let rows = sqlx::query(&format!(
            "SELECT resolution, done_until_ms FROM metric_rollup_progress{lock}"
        ))
        .fetch_all(&mut *tx)
        .await
        .map_err(db(OP))?;
        let done = watermarks_from(&rows)?;

        let late: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM metric_rollup_pending")
            .fetch_one(&mut *tx)
            .await
            .map_err(db(OP))?;
        let mut report = RollupReport {
            late_minutes: u64::try_from(late).unwrap_or(0),
            ..RollupReport::default()
        };

        if late > 0 {
            report.minute_buckets += sqlx::query(&recompute_pending_minutes_sql())
                .execute(&mut *tx)
                .await
                .map_err(db(OP))?
                .rows_affected();
        }
        let closed_minute = now_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        if closed_minute > done.minute_until_ms {
            report.minute_buckets += sqlx::query(&roll_minutes_sql())
                .bind(done.minute_until_ms)
                .bind(closed_minute)
                .execute(&mut *tx)
                .await
                .map_err(db(OP))?
                .rows_affected();
        }
        report.minute_until_ms = done.minute_until_ms.max(closed_minute);

        if late > 0 {
            report.hour_buckets += sqlx::query(&recompute_pending_hours_sql())
                .bind(done.hour_until_ms)
                .execute(&mut *tx)
                .await
                .map_err(db(OP))?
                .rows_affected();
            sqlx::query("DELETE FROM metric_rollup_pending")
                .execute(&mut *tx)
                .await
                .map_err(db(OP))?;
        }
        let closed_hour = report.minute_until_ms.div_euclid(HOUR_MS) * HOUR_MS;
        if closed_hour > done.hour_until_ms {
            report.hour_buckets += sqlx::query(&roll_hours_sql())
                .bind(done.hour_until_ms)
                .bind(closed_hour)
                .execute(&mut *tx)
                .await
                .map_err(db(OP))?
                .rows_affected();
        }
        report.hour_until_ms = done.hour_until_ms.max(closed_hour);

        for (resolution, until) in [("1m", report.minute_until_ms), ("1h", report.hour_until_ms)] {
            sqlx::query(
                "UPDATE metric_rollup_progress SET done_until_ms = $2 WHERE resolution = $1",
            )
            .bind(resolution)
            .bind(until)
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?;
        }
        tx.commit().await.map_err(db(OP))?;
        Ok(report)
    }

    /// Deletes raw samples older than `retention.raw_ms`, 1-minute rollups older than
    /// `retention.minute_ms` and 1-hour rollups older than `retention.hour_ms` (relative to
    /// `now_ms`). Never deletes data not yet rolled up into the next resolution, so a stalled
    /// `roll_up` delays pruning instead of losing history.
    pub async fn prune(
        &self,
        retention: &Retention,
        now_ms: i64,
    ) -> Result<PruneReport, StoreError> {
        const OP: &str = "pruning metrics history";
        let done = self.rollup_watermarks().await?;
        let raw_cutoff_ms = now_ms
            .saturating_sub(retention.raw_ms)
            .min(done.minute_until_ms);
        let minute_cutoff_ms = now_ms
            .saturating_sub(retention.minute_ms)
            .min(done.hour_until_ms);
        let hour_cutoff_ms = now_ms.saturating_sub(retention.hour_ms);
        let delete = |sql: &'static str, cutoff: i64| async move {
            sqlx::query(sql)
                .bind(cutoff)
                .execute(&self.pool)
                .await
                .map(|r| r.rows_affected())
                .map_err(db(OP))
        };
        let raw_deleted =
            delete("DELETE FROM metric_samples WHERE ts_ms < $1", raw_cutoff_ms).await?;
        // Late minutes whose raw samples are (partly) gone can no longer be recomputed.
        delete(
            "DELETE FROM metric_rollup_pending WHERE bucket_ms < $1",
            raw_cutoff_ms,
        )
        .await?;
        let minute_deleted = delete(
            "DELETE FROM metric_rollups_1m WHERE bucket_ms < $1",
            minute_cutoff_ms,
        )
        .await?;
        let hour_deleted = delete(
            "DELETE FROM metric_rollups_1h WHERE bucket_ms < $1",
            hour_cutoff_ms,
        )
        .await?;
        Ok(PruneReport {
            raw_deleted,
            minute_deleted,
            hour_deleted,
            raw_cutoff_ms,
            minute_cutoff_ms,
            hour_cutoff_ms,
        })
    }

    /// One metric of one host over a time range, bucketed as [`metric_query::plan`] decides
    /// for this retention and clock. Points are ordered by time; buckets without samples are
    /// absent. Fails with [`StoreError::InvalidQuery`] before touching the database if the
    /// query cannot be planned.
    pub async fn query_metric(
        &self,
        q: &MetricQuery,
        retention: &Retention,
        now_ms: i64,
    ) -> Result<MetricSeries, StoreError> {
        // Validate before touching the database.
        metric_query::plan(q, retention, now_ms, Watermarks::default())?;
        let watermarks = self.rollup_watermarks().await?;
        let plan = metric_query::plan(q, retention, now_ms, watermarks)?;
        let mut buckets: BTreeMap<i64, Bucket> = BTreeMap::new();
        for segment in &plan.segments {
            let rows = sqlx::query(&segment_sql(segment.source, q.metric))
                .bind(q.host_id.as_str())
                .bind(plan.step_ms)
                .bind(segment.from_ms)
                .bind(segment.until_ms)
                .fetch_all(&self.pool)
                .await
                .map_err(db("querying metrics history"))?;
            for row in &rows {
                let bucket: i64 = col(row, "bucket")?;
                let total: Option<f64> = col(row, "total")?;
                let n: i64 = col(row, "n")?;
                let peak: Option<f64> = col(row, "peak")?;
                let b = buckets.entry(bucket).or_default();
                b.total += total.unwrap_or(0.0);
                b.n += n;
                b.peak = match (b.peak, peak) {
                    (Some(a), Some(p)) => Some(a.max(p)),
                    (a, p) => a.or(p),
                };
            }
        }
        let points = buckets
            .into_iter()
            .filter(|(_, b)| b.n > 0)
            .map(|(timestamp_ms, b)| {
                let avg = b.total / b.n as f64;
                MetricPoint {
                    timestamp_ms,
                    avg,
                    max: b.peak.unwrap_or(avg),
                }
            })
            .collect();
        Ok(MetricSeries {
            source: plan.source,
            step_ms: plan.step_ms,
            start_ms: plan.start_ms,
            end_ms: plan.end_ms,
            points,
        })
    }
}

fn watermarks_from(rows: &[sqlx::any::AnyRow]) -> Result<Watermarks, StoreError> {
    let mut marks = Watermarks::default();
    let mut seen = (false, false);
    for row in rows {
        let resolution: String = col(row, "resolution")?;
        let until: i64 = col(row, "done_until_ms")?;
        match resolution.as_str() {
            "1m" => (marks.minute_until_ms, seen.0) = (until, true),
            "1h" => (marks.hour_until_ms, seen.1) = (until, true),
            _ => {}
        }
    }
    if seen != (true, true) {
        return Err(StoreError::Corrupt {
            what: "metric_rollup_progress lacks its '1m' or '1h' row".to_owned(),
        });
    }
    Ok(marks)
}

#[cfg(test)]
mod tests {
    use super::super::PlanError;
    use super::super::test_support::*;
    use super::*;
    use sqlx::Row;

    /// An hour boundary: 2023-11-14 22:00 UTC.
    const T: i64 = 472_222 * HOUR_MS;
    const SEC: i64 = 1_000;

    fn sample(host: &str, ts_ms: i64, cpu: f64) -> SampleRow {
        SampleRow {
            host_id: host.to_owned(),
            ts_ms,
            cpu_percent: cpu,
            load1: cpu / 100.0,
            load5: 0.5,
            load15: 0.25,
            memory_used: 1 << 30,
            memory_available: 3 << 30,
            memory_total: 4 << 30,
            swap_used: 0,
            swap_total: 1 << 30,
            disk_used_percent: 42.5,
            disk_used: 425,
            disk_total: 1_000,
            net_rx_bps: 1_000.0,
            net_tx_bps: 500.0,
            uptime_s: ts_ms / 1_000,
            processes: 100,
        }
    }

    async fn count(store: &Store, table: &str) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(store.pool())
            .await?)
    }

    /// (samples, avg, max) of one rollup bucket for one metric.
    async fn rollup(
        store: &Store,
        table: &str,
        host: &str,
        bucket: i64,
        metric: &str,
    ) -> anyhow::Result<(i64, f64, f64)> {
        let row = sqlx::query(&format!(
            "SELECT samples, avg_{metric} AS a, max_{metric} AS m FROM {table} \
             WHERE host_id = $1 AND bucket_ms = $2"
        ))
        .bind(host)
        .bind(bucket)
        .fetch_one(store.pool())
        .await?;
        Ok((
            row.try_get("samples")?,
            row.try_get("a")?,
            row.try_get("m")?,
        ))
    }

    fn point(timestamp_ms: i64, avg: f64, max: f64) -> MetricPoint {
        MetricPoint {
            timestamp_ms,
            avg,
            max,
        }
    }

    #[test]
    fn values_sql_numbers_placeholders_across_rows() {
        assert_eq!(
            values_sql(
                "INSERT INTO t (a, b) VALUES ",
                2,
                3,
                " ON CONFLICT DO NOTHING"
            ),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4), ($5, $6) ON CONFLICT DO NOTHING"
        );
        assert_eq!(values_sql("V ", 1, 1, ""), "V ($1)");
    }

    #[test]
    fn chunk_sizes_stay_under_the_bind_limits() {
        assert_eq!(Dialect::Sqlite.rows_per_statement(SAMPLE_COLS.len()), 28);
        assert_eq!(Dialect::Postgres.rows_per_statement(SAMPLE_COLS.len()), 222);
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            for cols in [1, 2, 18, 40_000, 100_000] {
                let rows = dialect.rows_per_statement(cols);
                assert!(rows >= 1);
                assert!(
                    rows * cols <= dialect.max_bind_params() || rows == 1,
                    "{dialect} {cols}"
                );
            }
        }
    }

    #[test]
    fn invalid_samples_are_named() {
        let mut s = sample("h", 5, 1.0);
        s.net_rx_bps = f64::NAN;
        let err = validate(&s).unwrap_err().to_string();
        assert!(err.contains("host `h` at 5"), "{err}");
        assert!(err.contains("net_rx_bps is NaN"), "{err}");
        let mut s = sample("", 5, 1.0);
        assert!(
            validate(&s)
                .unwrap_err()
                .to_string()
                .contains("host id is empty")
        );
        s.host_id = "h".into();
        s.ts_ms = -1;
        assert!(validate(&s).is_err());
    }

    store_test!(samples_insert_ignores_duplicates);
    async fn samples_insert_ignores_duplicates(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        store.insert_samples(&[]).await?;
        store
            .insert_samples(&[sample("h1", T, 10.0), sample("h1", T + 10 * SEC, 20.0)])
            .await?;
        // Resent sample with different values, plus a new one and another host.
        store
            .insert_samples(&[
                sample("h1", T, 99.0),
                sample("h1", T + 20 * SEC, 30.0),
                sample("h2", T, 50.0),
            ])
            .await?;
        assert_eq!(count(&store, "metric_samples").await?, 4);
        let cpu: f64 = sqlx::query_scalar(
            "SELECT cpu_percent FROM metric_samples WHERE host_id = $1 AND ts_ms = $2",
        )
        .bind("h1")
        .bind(T)
        .fetch_one(store.pool())
        .await?;
        assert_eq!(cpu, 10.0, "first write wins");
        // Duplicates inside one batch are fine too.
        store
            .insert_samples(&[sample("h3", T, 1.0), sample("h3", T, 2.0)])
            .await?;
        assert_eq!(count(&store, "metric_samples").await?, 5);
        // An invalid sample rejects the whole batch.
        let mut bad = sample("h4", T, 1.0);
        bad.cpu_percent = f64::INFINITY;
        let err = store
            .insert_samples(&[sample("h4", T + SEC, 1.0), bad])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::InvalidSample { .. }), "{err}");
        assert_eq!(count(&store, "metric_samples").await?, 5);
        Ok(())
    }

    store_test!(samples_large_batch_in_one_call);
    async fn samples_large_batch_in_one_call(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        // 5,000 rows = 90,000 parameters: several statements on both dialects.
        let batch: Vec<SampleRow> = (0..5_000)
            .map(|i| {
                let mut s = sample(
                    &format!("host-{}", i % 100),
                    T + (i / 100) * 10 * SEC,
                    i as f64,
                );
                s.memory_used = i;
                s
            })
            .collect();
        store.insert_samples(&batch).await?;
        assert_eq!(count(&store, "metric_samples").await?, 5_000);
        let sum: i64 =
            sqlx::query_scalar("SELECT CAST(SUM(memory_used) AS BIGINT) FROM metric_samples")
                .fetch_one(store.pool())
                .await?;
        assert_eq!(sum, (0..5_000).sum::<i64>());
        let row = sqlx::query(
            "SELECT cpu_percent, memory_used FROM metric_samples WHERE host_id = $1 AND ts_ms = $2",
        )
        .bind("host-42")
        .bind(T + 49 * 10 * SEC)
        .fetch_one(store.pool())
        .await?;
        assert_eq!(row.try_get::<f64, _>("cpu_percent")?, 4_942.0);
        assert_eq!(row.try_get::<i64, _>("memory_used")?, 4_942);
        // Resending the whole batch changes nothing.
        store.insert_samples(&batch).await?;
        assert_eq!(count(&store, "metric_samples").await?, 5_000);
        Ok(())
    }

    store_test!(rollups_are_correct_and_idempotent);
    async fn rollups_are_correct_and_idempotent(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        let mut minute0 = vec![
            sample("h1", T, 10.0),
            sample("h1", T + 10 * SEC, 20.0),
            sample("h1", T + 20 * SEC, 60.0),
        ];
        minute0[2].memory_used = 2 << 30; // 50 % of 4 GiB
        store.insert_samples(&minute0).await?;
        store
            .insert_samples(&[
                sample("h1", T + MINUTE_MS + 5 * SEC, 40.0),
                sample("h2", T + 30 * SEC, 5.0),
                // Second hour, minute 0.
                sample("h1", T + HOUR_MS + 10 * SEC, 70.0),
                // Open minute at roll-up time: not rolled yet.
                sample("h1", T + HOUR_MS + MINUTE_MS + SEC, 90.0),
            ])
            .await?;

        let now = T + HOUR_MS + MINUTE_MS + 30 * SEC;
        let report = store.roll_up(now).await?;
        assert_eq!(report.minute_buckets, 4, "{report:?}");
        assert_eq!(report.hour_buckets, 2, "{report:?}");
        assert_eq!(report.late_minutes, 0);
        assert_eq!(report.minute_until_ms, T + HOUR_MS + MINUTE_MS);
        assert_eq!(report.hour_until_ms, T + HOUR_MS);
        assert_eq!(
            store.rollup_watermarks().await?,
            Watermarks {
                minute_until_ms: T + HOUR_MS + MINUTE_MS,
                hour_until_ms: T + HOUR_MS,
            }
        );

        let m1 = "metric_rollups_1m";
        assert_eq!(rollup(&store, m1, "h1", T, "cpu").await?, (3, 30.0, 60.0));
        assert_eq!(
            rollup(&store, m1, "h1", T + MINUTE_MS, "cpu").await?,
            (1, 40.0, 40.0)
        );
        assert_eq!(rollup(&store, m1, "h2", T, "cpu").await?, (1, 5.0, 5.0));
        assert_eq!(
            rollup(&store, m1, "h1", T + HOUR_MS, "cpu").await?,
            (1, 70.0, 70.0)
        );
        // memory_percent: 25 %, 25 %, 50 %.
        let (_, avg, max) = rollup(&store, m1, "h1", T, "memory_percent").await?;
        assert!((avg - 100.0 / 3.0).abs() < 1e-9, "{avg}");
        assert_eq!(max, 50.0);
        assert_eq!(
            rollup(&store, m1, "h1", T, "memory_used").await?.2,
            (2_i64 << 30) as f64
        );
        let (_, avg, max) = rollup(&store, m1, "h1", T, "load1").await?;
        assert!((avg - 0.3).abs() < 1e-12, "{avg}");
        assert_eq!(max, 0.6);
        assert_eq!(count(&store, m1).await?, 4);

        // The hour average is weighted by samples: (10 + 20 + 60 + 40) / 4, not (30 + 40) / 2.
        let h1 = "metric_rollups_1h";
        assert_eq!(rollup(&store, h1, "h1", T, "cpu").await?, (4, 32.5, 60.0));
        assert_eq!(rollup(&store, h1, "h2", T, "cpu").await?, (1, 5.0, 5.0));
        assert_eq!(count(&store, h1).await?, 2);

        // Again at the same time: nothing new, nothing changed.
        let again = store.roll_up(now).await?;
        assert_eq!(
            (again.minute_buckets, again.hour_buckets),
            (0, 0),
            "{again:?}"
        );
        assert_eq!(rollup(&store, h1, "h1", T, "cpu").await?, (4, 32.5, 60.0));
        assert_eq!(count(&store, m1).await?, 4);

        // A later run rolls the remaining minute and, once closed, the second hour.
        let later = store.roll_up(T + 2 * HOUR_MS).await?;
        assert_eq!(
            (later.minute_buckets, later.hour_buckets),
            (1, 1),
            "{later:?}"
        );
        assert_eq!(
            rollup(&store, h1, "h1", T + HOUR_MS, "cpu").await?,
            (2, 80.0, 90.0)
        );
        Ok(())
    }

    store_test!(late_samples_are_rolled_up_again);
    async fn late_samples_are_rolled_up_again(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        store
            .insert_samples(&[
                sample("h1", T, 10.0),
                sample("h1", T + 10 * SEC, 20.0),
                sample("h1", T + 2 * MINUTE_MS, 40.0),
                sample("h2", T, 1.0),
            ])
            .await?;
        store.roll_up(T + HOUR_MS + MINUTE_MS).await?;
        let h1 = "metric_rollups_1h";
        assert_eq!(
            rollup(&store, h1, "h1", T, "cpu").await?,
            (3, 70.0 / 3.0, 40.0)
        );

        // The agent reconnects and sends a buffered sample for minute 0, plus a resend.
        store
            .insert_samples(&[sample("h1", T + 30 * SEC, 90.0), sample("h1", T, 10.0)])
            .await?;
        let report = store.roll_up(T + HOUR_MS + MINUTE_MS).await?;
        assert_eq!(report.late_minutes, 1, "{report:?}");
        assert_eq!(
            (report.minute_buckets, report.hour_buckets),
            (1, 1),
            "{report:?}"
        );
        assert_eq!(
            rollup(&store, "metric_rollups_1m", "h1", T, "cpu").await?,
            (3, 40.0, 90.0)
        );
        assert_eq!(rollup(&store, h1, "h1", T, "cpu").await?, (4, 40.0, 90.0));
        // Other hosts untouched, pending list emptied.
        assert_eq!(rollup(&store, h1, "h2", T, "cpu").await?, (1, 1.0, 1.0));
        assert_eq!(count(&store, "metric_rollup_pending").await?, 0);
        let quiet = store.roll_up(T + HOUR_MS + MINUTE_MS).await?;
        assert_eq!(
            (quiet.minute_buckets, quiet.hour_buckets, quiet.late_minutes),
            (0, 0, 0)
        );
        Ok(())
    }

    store_test!(prune_by_retention);
    async fn prune_by_retention(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        let day = 24 * HOUR_MS;
        // One sample per day for 10 days.
        let batch: Vec<SampleRow> = (0..10)
            .map(|d| sample("h1", T + d * day, d as f64))
            .collect();
        store.insert_samples(&batch).await?;
        let now = T + 9 * day + HOUR_MS;
        let retention = Retention {
            raw_ms: 2 * day,
            minute_ms: 5 * day,
            hour_ms: 7 * day,
        };
        // Nothing rolled up yet: nothing may be pruned.
        let early = store.prune(&retention, now).await?;
        assert_eq!(
            (early.raw_deleted, early.minute_deleted, early.hour_deleted),
            (0, 0, 0)
        );
        assert_eq!(early.raw_cutoff_ms, 0);

        store.roll_up(now).await?;
        assert_eq!(count(&store, "metric_rollups_1m").await?, 10);
        assert_eq!(count(&store, "metric_rollups_1h").await?, 10);
        let report = store.prune(&retention, now).await?;
        assert_eq!(report.raw_cutoff_ms, now - 2 * day);
        assert_eq!(report.minute_cutoff_ms, now - 5 * day);
        assert_eq!(report.hour_cutoff_ms, now - 7 * day);
        // Days 0..=7 are older than 2 days (day 7 sample at T+7d < now-2d = T+7d+1h).
        assert_eq!(report.raw_deleted, 8);
        assert_eq!(report.minute_deleted, 5);
        assert_eq!(report.hour_deleted, 3);
        assert_eq!(count(&store, "metric_samples").await?, 2);
        let oldest: i64 = sqlx::query_scalar("SELECT MIN(ts_ms) FROM metric_samples")
            .fetch_one(store.pool())
            .await?;
        assert_eq!(oldest, T + 8 * day);
        let oldest: i64 = sqlx::query_scalar("SELECT MIN(bucket_ms) FROM metric_rollups_1m")
            .fetch_one(store.pool())
            .await?;
        assert_eq!(oldest, T + 5 * day);
        let oldest: i64 = sqlx::query_scalar("SELECT MIN(bucket_ms) FROM metric_rollups_1h")
            .fetch_one(store.pool())
            .await?;
        assert_eq!(oldest, T + 3 * day);
        // Pruning again deletes nothing more.
        let again = store.prune(&retention, now).await?;
        assert_eq!(
            (again.raw_deleted, again.minute_deleted, again.hour_deleted),
            (0, 0, 0)
        );
        Ok(())
    }

    store_test!(late_sample_for_a_pruned_minute_keeps_the_rollup);
    async fn late_sample_for_a_pruned_minute_keeps_the_rollup(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        let day = 24 * HOUR_MS;
        store
            .insert_samples(&[sample("h1", T, 10.0), sample("h1", T + 10 * SEC, 30.0)])
            .await?;
        let now = T + 3 * day;
        store.roll_up(now).await?;
        let retention = Retention {
            raw_ms: day,
            ..Retention::default()
        };
        store.prune(&retention, now).await?;
        assert_eq!(count(&store, "metric_samples").await?, 0);
        // A very late sample for that minute arrives before the next prune.
        store
            .insert_samples(&[sample("h1", T + 20 * SEC, 90.0)])
            .await?;
        store.roll_up(now).await?;
        // The stored 2-sample bucket is not replaced by a 1-sample recomputation.
        assert_eq!(
            rollup(&store, "metric_rollups_1m", "h1", T, "cpu").await?,
            (2, 20.0, 30.0)
        );
        assert_eq!(
            rollup(&store, "metric_rollups_1h", "h1", T, "cpu").await?,
            (2, 20.0, 30.0)
        );
        Ok(())
    }

    store_test!(query_metric_from_raw);
    async fn query_metric_from_raw(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        let mut batch = Vec::new();
        for i in 0..12 {
            // Every 10 s for 2 minutes, cpu = i.
            batch.push(sample("h1", T + i * 10 * SEC, i as f64));
        }
        batch.push(sample("h2", T, 1_000.0));
        store.insert_samples(&batch).await?;
        let retention = Retention::default();
        let q = MetricQuery {
            host_id: "h1".to_owned(),
            metric: Metric::Cpu,
            start_ms: T,
            end_ms: T + 2 * MINUTE_MS - 1,
            step_ms: 30 * SEC,
        };
        let now = T + 2 * MINUTE_MS;
        let points = store.query_metric(&q, &retention, now).await?.points;
        assert_eq!(
            points,
            [
                point(T, 1.0, 2.0),
                point(T + 30 * SEC, 4.0, 5.0),
                point(T + 60 * SEC, 7.0, 8.0),
                point(T + 90 * SEC, 10.0, 11.0),
            ]
        );
        // Unaligned start: the first bucket starts on a step boundary and is complete (its
        // value does not depend on where the range starts); the end is inclusive.
        let q2 = MetricQuery {
            start_ms: T + 40 * SEC,
            end_ms: T + 60 * SEC,
            ..q.clone()
        };
        let points = store.query_metric(&q2, &retention, now).await?.points;
        assert_eq!(
            points,
            [point(T + 30 * SEC, 4.0, 5.0), point(T + 60 * SEC, 6.0, 6.0)]
        );
        // Byte metric through a cast; memory_percent computed per sample.
        let q3 = MetricQuery {
            metric: Metric::MemoryPercent,
            step_ms: MINUTE_MS / 2,
            ..q.clone()
        };
        let points = store.query_metric(&q3, &retention, now).await?.points;
        assert_eq!(points.len(), 4);
        assert!(
            points.iter().all(|p| p.avg == 25.0 && p.max == 25.0),
            "{points:?}"
        );
        let q4 = MetricQuery {
            metric: Metric::Uptime,
            step_ms: 2 * MINUTE_MS,
            ..q.clone()
        };
        let points = store.query_metric(&q4, &retention, now).await?.points;
        let secs: Vec<f64> = (0..12)
            .map(|i| ((T + i * 10 * SEC) / 1_000) as f64)
            .collect();
        let mean = secs.iter().sum::<f64>() / 12.0;
        assert_eq!(points, [point(T, mean, secs[11])]);
        // Unknown host: no points. Invalid query: a typed error.
        let q5 = MetricQuery {
            host_id: "nobody".to_owned(),
            ..q.clone()
        };
        assert!(
            store
                .query_metric(&q5, &retention, now)
                .await?
                .points
                .is_empty()
        );
        let bad = MetricQuery {
            end_ms: T - 1,
            ..q.clone()
        };
        assert!(matches!(
            store.query_metric(&bad, &retention, now).await,
            Err(StoreError::InvalidQuery(PlanError::EndBeforeStart { .. }))
        ));
        Ok(())
    }

    store_test!(query_metric_from_rollups_with_raw_tail);
    async fn query_metric_from_rollups_with_raw_tail(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        let mut batch = Vec::new();
        // Three hours of samples every 10 s; cpu = minute index within the hour, so each
        // minute averages to its index and each hour to 29.5.
        for minute in 0..180 {
            for k in 0..6 {
                let cpu = (minute % 60) as f64 + if k == 5 { 0.5 } else { 0.0 };
                batch.push(sample("h1", T + minute * MINUTE_MS + k * 10 * SEC, cpu));
            }
        }
        store.insert_samples(&batch).await?;
        // Roll up 2 h 30 min: hours 0 and 1 complete, minutes up to 2:30.
        store.roll_up(T + 2 * HOUR_MS + 30 * MINUTE_MS).await?;

        // Days later raw is out of retention: 10-minute buckets come from 1-minute rollups.
        let retention = Retention {
            raw_ms: HOUR_MS,
            ..Retention::default()
        };
        let now = T + 2 * HOUR_MS + 30 * MINUTE_MS;
        let q = MetricQuery {
            host_id: "h1".to_owned(),
            metric: Metric::Cpu,
            start_ms: T,
            end_ms: T + 3 * HOUR_MS - 1,
            step_ms: 10 * MINUTE_MS,
        };
        let points = store.query_metric(&q, &retention, now).await?.points;
        assert_eq!(points.len(), 18);
        // Bucket 0 holds minutes 0..=9: each minute avg = m + 0.5/6, max = m + 0.5.
        let first = points[0];
        assert_eq!(first.timestamp_ms, T);
        assert!((first.avg - (4.5 + 0.5 / 6.0)).abs() < 1e-9, "{first:?}");
        assert_eq!(first.max, 9.5);
        // The last hour's second half comes from raw (not rolled up yet): same values.
        let last = points[17];
        assert_eq!(last.timestamp_ms, T + 2 * HOUR_MS + 50 * MINUTE_MS);
        assert!((last.avg - (54.5 + 0.5 / 6.0)).abs() < 1e-9, "{last:?}");
        assert_eq!(last.max, 59.5);
        for w in points.windows(2) {
            assert_eq!(w[1].timestamp_ms - w[0].timestamp_ms, 10 * MINUTE_MS);
        }

        // 2-hour buckets far in the future of the data: hour rollups for hours 0-1, then
        // minute rollups and raw for hour 2, merged in the second bucket.
        let q = MetricQuery {
            step_ms: 2 * HOUR_MS,
            ..q
        };
        let points = store.query_metric(&q, &retention, now).await?.points;
        let hour_avg = 29.5 + 0.5 / 6.0;
        assert_eq!(points.len(), 2, "{points:?}");
        assert_eq!(points[0].timestamp_ms, T);
        assert!((points[0].avg - hour_avg).abs() < 1e-9, "{points:?}");
        assert_eq!(points[0].max, 59.5);
        assert_eq!(points[1].timestamp_ms, T + 2 * HOUR_MS);
        assert!((points[1].avg - hour_avg).abs() < 1e-9, "{points:?}");
        assert_eq!(points[1].max, 59.5);

        // Auto step over the three hours when raw is in retention: raw at 1 minute... 3 h /
        // 300 = 36 s -> 1 min step (minute rollups + raw tail), 180 points, identical to
        // the per-minute averages.
        let auto = MetricQuery { step_ms: 0, ..q };
        let points = store
            .query_metric(&auto, &Retention::default(), now)
            .await?
            .points;
        assert_eq!(points.len(), 180);
        for (i, p) in points.iter().enumerate() {
            let m = (i % 60) as f64;
            assert_eq!(p.timestamp_ms, T + i as i64 * MINUTE_MS);
            assert!((p.avg - (m + 0.5 / 6.0)).abs() < 1e-9, "{i}: {p:?}");
            assert_eq!(p.max, m + 0.5);
        }
        Ok(())
    }

    /// (count, max cpu) per (host, bucket) computed from raw samples, and the same from a
    /// rollup table.
    async fn raw_vs_rollup(
        store: &Store,
        width_ms: i64,
        table: &str,
    ) -> anyhow::Result<(Vec<(String, i64, i64, f64)>, Vec<(String, i64, i64, f64)>)> {
        let raw = sqlx::query(&format!(
            "SELECT host_id, (ts_ms / {width_ms}) * {width_ms} AS b, COUNT(*) AS n, \
             MAX(cpu_percent) AS m FROM metric_samples GROUP BY 1, 2 ORDER BY 1, 2"
        ))
        .fetch_all(store.pool())
        .await?;
        let rolled = sqlx::query(&format!(
            "SELECT host_id, bucket_ms AS b, samples AS n, max_cpu AS m FROM {table} \
             ORDER BY 1, 2"
        ))
        .fetch_all(store.pool())
        .await?;
        let decode = |rows: Vec<sqlx::any::AnyRow>| -> anyhow::Result<Vec<_>> {
            rows.iter()
                .map(|r| {
                    Ok((
                        r.try_get("host_id")?,
                        r.try_get("b")?,
                        r.try_get("n")?,
                        r.try_get("m")?,
                    ))
                })
                .collect()
        };
        Ok((decode(raw)?, decode(rolled)?))
    }

    store_test!(late_samples_racing_roll_up_are_never_lost);
    async fn late_samples_racing_roll_up_are_never_lost(db: TestDb) -> anyhow::Result<()> {
        // One replica rolls up every "minute" while another ingests samples, many of them for
        // minutes that may just have been rolled up. Afterwards every rollup must match the
        // raw samples exactly.
        let roller = db.store();
        let ingester = db.reopen().await?;
        let ingest = tokio::spawn(async move {
            for batch in 0..30_i64 {
                let rows: Vec<SampleRow> = (0..40_i64)
                    .map(|i| {
                        let host = format!("h{}", i % 4);
                        // Spread over the first 40 minutes; unique timestamps per batch.
                        let ts = T + (i % 40) * MINUTE_MS + batch * 1_000 + i / 4;
                        sample(&host, ts, (batch * 40 + i) as f64)
                    })
                    .collect();
                ingester.insert_samples(&rows).await?;
                tokio::task::yield_now().await;
            }
            ingester.close().await;
            anyhow::Ok(())
        });
        let roll = tokio::spawn(async move {
            for step in 1..=30_i64 {
                roller.roll_up(T + step * 2 * MINUTE_MS).await?;
                tokio::task::yield_now().await;
            }
            anyhow::Ok(())
        });
        ingest.await??;
        roll.await??;

        let store = db.store();
        store.roll_up(T + 2 * HOUR_MS).await?;
        assert_eq!(count(&store, "metric_samples").await?, 30 * 40);
        let (raw, rolled) = raw_vs_rollup(&store, MINUTE_MS, "metric_rollups_1m").await?;
        assert_eq!(raw.len(), 40, "40 minutes, one host each");
        assert_eq!(raw, rolled);
        let (raw, rolled) = raw_vs_rollup(&store, HOUR_MS, "metric_rollups_1h").await?;
        assert_eq!(raw.len(), 4);
        assert_eq!(raw, rolled);
        Ok(())
    }
}
