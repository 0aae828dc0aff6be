//! Metric ingestion: validates samples from agents, converts them to store
//! rows, and writes them with group commit — every write request waiting
//! when the writer becomes free goes into one transaction, so latency stays
//! one commit at low load and throughput grows with load.

use crate::store::{SampleRow, Store};
use argosy_proto::v1::MetricSample;
use tokio::sync::{mpsc, oneshot};

/// Samples further in the future than this are refused (clock skew guard).
const MAX_FUTURE_SKEW_MS: i64 = 5 * 60_000;
/// Upper bound of rows in one transaction.
const MAX_BATCH_ROWS: usize = 20_000;

/// Why a sample was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InvalidSample {
    #[error(
        "sample timestamp {0} ms is before 2020 or more than 5 minutes in the future; check the host's clock (NTP)"
    )]
    Timestamp(i64),
    #[error("sample field {field} is {value}, which is not a finite non-negative number")]
    NotFinite { field: &'static str, value: f64 },
    #[error("sample field {field} ({value}) does not fit in a 63-bit integer")]
    TooLarge { field: &'static str, value: u64 },
}

fn finite(field: &'static str, value: f64) -> Result<f64, InvalidSample> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(InvalidSample::NotFinite { field, value })
    }
}

fn integer(field: &'static str, value: u64) -> Result<i64, InvalidSample> {
    i64::try_from(value).map_err(|_| InvalidSample::TooLarge { field, value })
}

/// Converts one wire sample into a store row, refusing nonsense.
pub fn sample_row(
    host_id: &str,
    sample: &MetricSample,
    now_ms: i64,
) -> Result<SampleRow, InvalidSample> {
    const YEAR_2020_MS: i64 = 1_577_836_800_000;
    let ts = sample.timestamp_ms;
    if ts < YEAR_2020_MS || ts > now_ms + MAX_FUTURE_SKEW_MS {
        return Err(InvalidSample::Timestamp(ts));
    }
    let mut disk_used = 0u64;
    let mut disk_total = 0u64;
    let mut fullest = 0.0f64;
    for disk in &sample.disks {
        disk_used = disk_used.saturating_add(disk.used_bytes);
        disk_total = disk_total.saturating_add(disk.total_bytes);
        if disk.total_bytes > 0 {
            fullest = fullest.max(disk.used_bytes as f64 / disk.total_bytes as f64 * 100.0);
        }
    }
    Ok(SampleRow {
        host_id: host_id.to_owned(),
        ts_ms: ts,
        cpu_percent: finite("cpu_percent", sample.cpu_percent)?,
        load1: finite("load1", sample.load1)?,
        load5: finite("load5", sample.load5)?,
        load15: finite("load15", sample.load15)?,
        memory_used: integer("memory_used_bytes", sample.memory_used_bytes)?,
        memory_available: integer("memory_available_bytes", sample.memory_available_bytes)?,
        memory_total: integer("memory_total_bytes", sample.memory_total_bytes)?,
        swap_used: integer("swap_used_bytes", sample.swap_used_bytes)?,
        swap_total: integer("swap_total_bytes", sample.swap_total_bytes)?,
        disk_used_percent: fullest,
        disk_used: integer("disks.used_bytes", disk_used)?,
        disk_total: integer("disks.total_bytes", disk_total)?,
        net_rx_bps: finite("net_rx_bytes_per_second", sample.net_rx_bytes_per_second)?,
        net_tx_bps: finite("net_tx_bytes_per_second", sample.net_tx_bytes_per_second)?,
        uptime_s: integer("uptime_seconds", sample.uptime_seconds)?,
        processes: i64::from(sample.process_count),
    })
}

struct WriteRequest {
    rows: Vec<SampleRow>,
    done: oneshot::Sender<Result<(), String>>,
}

/// Why samples were not stored.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the metric writer has stopped")]
    Stopped,
    #[error("the store refused the samples: {0}")]
    Store(String),
}

/// Handle to the group-commit writer task.
#[derive(Clone)]
pub struct SampleWriter {
    tx: mpsc::Sender<WriteRequest>,
}

impl SampleWriter {
    /// Starts the writer task on `store`.
    pub fn spawn(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(16_384);
        tokio::spawn(run_writer(store, rx));
        Self { tx }
    }

    /// Stores `rows` durably; returns once they are committed.
    pub async fn write(&self, rows: Vec<SampleRow>) -> Result<(), WriteError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(WriteRequest { rows, done })
            .await
            .map_err(|_| WriteError::Stopped)?;
        wait.await
            .map_err(|_| WriteError::Stopped)?
            .map_err(WriteError::Store)
    }
}

async fn run_writer(store: Store, mut rx: mpsc::Receiver<WriteRequest>) {
    let mut waiting = Vec::new();
    let mut rows = Vec::new();
    while let Some(first) = rx.recv().await {
        rows.extend(first.rows);
        waiting.push(first.done);
        while rows.len() < MAX_BATCH_ROWS {
            match rx.try_recv() {
                Ok(next) => {
                    rows.extend(next.rows);
                    waiting.push(next.done);
                }
                Err(_) => break,
            }
        }
        let result = store.insert_samples(&rows).await.map_err(|e| {
            tracing::error!(error = %e, rows = rows.len(), "could not store metric samples");
            e.to_string()
        });
        for done in waiting.drain(..) {
            let _ = done.send(result.clone());
        }
        rows.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argosy_proto::v1::DiskUsage;

    const NOW: i64 = 1_800_000_000_000;

    fn sample() -> MetricSample {
        MetricSample {
            timestamp_ms: NOW,
            cpu_percent: 12.5,
            load1: 0.5,
            load5: 0.4,
            load15: 0.3,
            memory_used_bytes: 1024,
            memory_available_bytes: 3072,
            memory_total_bytes: 4096,
            swap_used_bytes: 0,
            swap_total_bytes: 0,
            disks: vec![
                DiskUsage {
                    mount_point: "/".into(),
                    used_bytes: 50,
                    total_bytes: 100,
                },
                DiskUsage {
                    mount_point: "/data".into(),
                    used_bytes: 90,
                    total_bytes: 100,
                },
                DiskUsage {
                    mount_point: "/empty".into(),
                    used_bytes: 0,
                    total_bytes: 0,
                },
            ],
            net_rx_bytes_per_second: 10.0,
            net_tx_bytes_per_second: 20.0,
            uptime_seconds: 3600,
            process_count: 42,
        }
    }

    #[test]
    fn converts_and_summarises_disks() {
        let row = sample_row("h1", &sample(), NOW).unwrap();
        assert_eq!(row.host_id, "h1");
        assert_eq!(row.ts_ms, NOW);
        assert_eq!(row.disk_used, 140);
        assert_eq!(row.disk_total, 200);
        assert!(
            (row.disk_used_percent - 90.0).abs() < 1e-9,
            "fullest mount wins"
        );
        assert_eq!(row.processes, 42);
        assert_eq!(row.memory_total, 4096);
    }

    #[test]
    fn refuses_bad_timestamps() {
        let mut s = sample();
        s.timestamp_ms = 0;
        assert_eq!(sample_row("h", &s, NOW), Err(InvalidSample::Timestamp(0)));
        s.timestamp_ms = NOW + 6 * 60_000;
        assert!(matches!(
            sample_row("h", &s, NOW),
            Err(InvalidSample::Timestamp(_))
        ));
        s.timestamp_ms = NOW + 60_000;
        assert!(sample_row("h", &s, NOW).is_ok(), "small skew is fine");
    }

    #[test]
    fn refuses_non_finite_and_huge_values() {
        let mut s = sample();
        s.cpu_percent = f64::NAN;
        assert!(matches!(
            sample_row("h", &s, NOW),
            Err(InvalidSample::NotFinite {
                field: "cpu_percent",
                ..
            })
        ));
        let mut s = sample();
        s.load1 = -1.0;
        assert!(matches!(
            sample_row("h", &s, NOW),
            Err(InvalidSample::NotFinite { field: "load1", .. })
        ));
        let mut s = sample();
        s.memory_used_bytes = u64::MAX;
        assert!(matches!(
            sample_row("h", &s, NOW),
            Err(InvalidSample::TooLarge {
                field: "memory_used_bytes",
                ..
            })
        ));
    }
}
