//! The optional `--metrics-listen` endpoint: `GET /metrics` serves the
//! latest sample and the agent's own counters in the Prometheus text
//! format, written with the shared [`argosy_proto::exposition`] writer.

use crate::inventory::AGENT_VERSION;
use crate::status::{Counters, Shared};
use argosy_proto::exposition::{CONTENT_TYPE, Exposition, Kind};
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The text `/metrics` answers with.
pub fn render(shared: &Shared) -> String {
    let mut w = Exposition::new();
    let identity = shared.identity();
    w.family(
        "argosy_agent_up",
        "Whether the agent is running (always 1).",
        Kind::Gauge,
    )
    .sample(&[], 1.0);
    w.family(
        "argosy_agent_info",
        "The agent's version, host id and region.",
        Kind::Gauge,
    )
    .sample(
        &[
            ("version", AGENT_VERSION),
            ("host_id", &identity.host_id),
            ("region", &identity.region),
        ],
        1.0,
    );
    w.family(
        "argosy_agent_connected",
        "Whether a session with the control plane is established.",
        Kind::Gauge,
    )
    .sample(&[], if shared.connected() { 1.0 } else { 0.0 });
    w.family(
        "argosy_agent_certificate_expiry_timestamp_seconds",
        "When the agent's client certificate expires (Unix time).",
        Kind::Gauge,
    )
    .sample(&[], identity.not_after_ms as f64 / 1000.0);
    w.family(
        "argosy_agent_unacknowledged_samples",
        "Samples waiting for the control plane's acknowledgement.",
        Kind::Gauge,
    )
    .sample(&[], shared.buffer().len() as f64);

    let counters = &shared.counters;
    for (name, help, counter) in [
        (
            "argosy_agent_samples_taken_total",
            "Metric samples taken.",
            &counters.samples_taken,
        ),
        (
            "argosy_agent_samples_sent_total",
            "Metric samples sent to the control plane, resends included.",
            &counters.samples_sent,
        ),
        (
            "argosy_agent_samples_acked_total",
            "Metric samples the control plane acknowledged as stored.",
            &counters.samples_acked,
        ),
        (
            "argosy_agent_samples_dropped_total",
            "Unacknowledged samples dropped because the buffer was full.",
            &counters.samples_dropped,
        ),
        (
            "argosy_agent_sessions_total",
            "Sessions established with the control plane.",
            &counters.sessions,
        ),
        (
            "argosy_agent_reconnects_total",
            "Connection attempts after the first.",
            &counters.reconnects,
        ),
        (
            "argosy_agent_certificate_renewals_total",
            "Client certificates renewed.",
            &counters.renewals,
        ),
        (
            "argosy_agent_certificate_renewal_failures_total",
            "Failed certificate renewal attempts.",
            &counters.renewal_failures,
        ),
    ] {
        w.family(name, help, Kind::Counter)
            .sample(&[], Counters::get(counter) as f64);
    }

    if let Some(sample) = shared.latest() {
        let gauges: [(&str, &str, f64); 15] = [
            (
                "argosy_agent_sample_timestamp_seconds",
                "When the latest sample was taken (Unix time).",
                sample.timestamp_ms as f64 / 1000.0,
            ),
            (
                "argosy_agent_cpu_percent",
                "CPU busy time, percent of all cores.",
                sample.cpu_percent,
            ),
            ("argosy_agent_load1", "1-minute load average.", sample.load1),
            ("argosy_agent_load5", "5-minute load average.", sample.load5),
            (
                "argosy_agent_load15",
                "15-minute load average.",
                sample.load15,
            ),
            (
                "argosy_agent_memory_used_bytes",
                "Memory in use (total minus available).",
                sample.memory_used_bytes as f64,
            ),
            (
                "argosy_agent_memory_available_bytes",
                "Memory available to new work.",
                sample.memory_available_bytes as f64,
            ),
            (
                "argosy_agent_memory_total_bytes",
                "Physical memory.",
                sample.memory_total_bytes as f64,
            ),
            (
                "argosy_agent_swap_used_bytes",
                "Swap in use.",
                sample.swap_used_bytes as f64,
            ),
            (
                "argosy_agent_swap_total_bytes",
                "Swap space.",
                sample.swap_total_bytes as f64,
            ),
            (
                "argosy_agent_network_receive_bytes_per_second",
                "Bytes received per second over non-loopback interfaces.",
                sample.net_rx_bytes_per_second,
            ),
            (
                "argosy_agent_network_transmit_bytes_per_second",
                "Bytes sent per second over non-loopback interfaces.",
                sample.net_tx_bytes_per_second,
            ),
            (
                "argosy_agent_uptime_seconds",
                "Time since the host booted.",
                sample.uptime_seconds as f64,
            ),
            (
                "argosy_agent_processes",
                "Processes running on the host.",
                f64::from(sample.process_count),
            ),
            (
                "argosy_agent_disks",
                "Real filesystems reported.",
                sample.disks.len() as f64,
            ),
        ];
        for (name, help, value) in gauges {
            w.family(name, help, Kind::Gauge).sample(&[], value);
        }
        w.family(
            "argosy_agent_disk_used_bytes",
            "Bytes used on a filesystem (total minus available).",
            Kind::Gauge,
        );
        for disk in &sample.disks {
            w.sample(&[("mount", &disk.mount_point)], disk.used_bytes as f64);
        }
        w.family(
            "argosy_agent_disk_total_bytes",
            "Size of a filesystem.",
            Kind::Gauge,
        );
        for disk in &sample.disks {
            w.sample(&[("mount", &disk.mount_point)], disk.total_bytes as f64);
        }
    }
    w.finish()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render(&shared))
}

/// The `/metrics` router.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(shared)
}

/// Serves `/metrics` on `listener` until the process stops.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) -> std::io::Result<()> {
    axum::serve(listener, router(shared)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Identity;
    use argosy_proto::v1::{DiskUsage, MetricSample};

    fn shared() -> Shared {
        Shared::new(
            Identity {
                host_id: "h-1".into(),
                address: "cp:7443".into(),
                ca_fingerprint: String::new(),
                not_after_ms: 1_700_000_000_500,
                issued_at_ms: 0,
                region: "eu \"west\"".into(),
                labels: Default::default(),
            },
            10,
        )
    }

    #[test]
    fn without_a_sample_only_the_agent_is_described() {
        let shared = shared();
        let text = render(&shared);
        assert!(text.contains("argosy_agent_up 1\n"), "{text}");
        assert!(text.contains(&format!(
            "argosy_agent_info{{version=\"{AGENT_VERSION}\",host_id=\"h-1\",region=\"eu \\\"west\\\"\"}} 1\n"
        )), "{text}");
        assert!(text.contains("argosy_agent_connected 0\n"));
        assert!(text.contains("argosy_agent_certificate_expiry_timestamp_seconds 1700000000.5\n"));
        assert!(text.contains("# TYPE argosy_agent_reconnects_total counter\n"));
        assert!(!text.contains("argosy_agent_cpu_percent"));
    }

    #[test]
    fn the_latest_sample_and_counters_are_exported() {
        let shared = shared();
        shared.push_sample(MetricSample {
            timestamp_ms: 1_000,
            cpu_percent: 12.5,
            memory_used_bytes: 4096,
            disks: vec![
                DiskUsage {
                    mount_point: "/".into(),
                    used_bytes: 10,
                    total_bytes: 100,
                },
                DiskUsage {
                    mount_point: "/data".into(),
                    used_bytes: 20,
                    total_bytes: 200,
                },
            ],
            process_count: 42,
            ..MetricSample::default()
        });
        shared.set_connected(true);
        Counters::add(&shared.counters.reconnects, 3);
        let text = render(&shared);
        for line in [
            "argosy_agent_cpu_percent 12.5\n",
            "argosy_agent_memory_used_bytes 4096\n",
            "argosy_agent_processes 42\n",
            "argosy_agent_disk_used_bytes{mount=\"/\"} 10\n",
            "argosy_agent_disk_used_bytes{mount=\"/data\"} 20\n",
            "argosy_agent_disk_total_bytes{mount=\"/data\"} 200\n",
            "argosy_agent_samples_taken_total 1\n",
            "argosy_agent_reconnects_total 3\n",
            "argosy_agent_connected 1\n",
            "argosy_agent_unacknowledged_samples 1\n",
            "argosy_agent_sample_timestamp_seconds 1\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        // Every family is described once, and every sample line belongs to
        // the family declared just before it.
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                current = rest.split(' ').next().unwrap().to_owned();
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(name, current, "{line}");
            }
        }
    }

    #[tokio::test]
    async fn serves_get_metrics_over_http() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let shared = Arc::new(shared());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, shared));
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(
            response.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
            "{response}"
        );
        assert!(response.contains("argosy_agent_up 1"), "{response}");
    }
}
