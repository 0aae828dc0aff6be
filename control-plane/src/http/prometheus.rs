//! `/metrics`: the control plane's own health (alerting's included), the
//! alerts firing, and one gauge per host metric, labelled by host and
//! region, in the Prometheus text format.

use crate::state::ControlPlane;
use argosy_proto::exposition::{Exposition, Kind};
use argosy_proto::v1 as pb;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub(super) async fn metrics(State(cp): State<Arc<ControlPlane>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&cp),
    )
        .into_response()
}

/// Renders every family.
pub(super) fn render(cp: &ControlPlane) -> String {
    let mut w = Exposition::new();
    let counts = cp.fleet.state_counts();
    w.family(
        "argosy_hosts",
        "Hosts known to the control plane, by status.",
        Kind::Gauge,
    );
    w.sample(&[("status", "online")], counts.online as f64);
    w.sample(&[("status", "offline")], counts.offline as f64);
    w.sample(&[("status", "revoked")], counts.revoked as f64);
    let t = &cp.telemetry;
    let counters = [
        (
            "argosy_samples_stored_total",
            "Metric samples stored.",
            &t.samples_stored,
        ),
        (
            "argosy_samples_rejected_total",
            "Metric samples refused as invalid.",
            &t.samples_rejected,
        ),
        (
            "argosy_store_write_failures_total",
            "Metric batches the store failed to write.",
            &t.store_write_failures,
        ),
        (
            "argosy_enrollments_total",
            "Hosts enrolled.",
            &t.enrollments,
        ),
        (
            "argosy_enrollment_failures_total",
            "Enrollment attempts refused.",
            &t.enrollment_failures,
        ),
        (
            "argosy_agent_sessions_opened_total",
            "Agent sessions opened.",
            &t.sessions_opened,
        ),
        (
            "argosy_auth_failures_total",
            "API calls refused for a missing, invalid or insufficient token.",
            &t.auth_failures,
        ),
        (
            "argosy_certificates_renewed_total",
            "Agent certificates renewed.",
            &t.certificates_renewed,
        ),
    ];
    for (name, help, counter) in counters {
        w.family(name, help, Kind::Counter);
        w.sample(&[], counter.load(Ordering::Relaxed) as f64);
    }

    cp.alerting.write(&mut w);

    let hosts = cp.fleet.list("", &Default::default());
    w.family(
        "argosy_host_up",
        "1 if the host is online, 0 otherwise.",
        Kind::Gauge,
    );
    for h in &hosts {
        let up = if h.status == pb::HostStatus::Online as i32 {
            1.0
        } else {
            0.0
        };
        w.sample(
            &[
                ("host", &h.id),
                ("hostname", &h.hostname),
                ("region", &h.region),
            ],
            up,
        );
    }
    w.family(
        "argosy_host_last_seen_seconds",
        "Unix time the host was last heard from.",
        Kind::Gauge,
    );
    for h in hosts.iter().filter(|h| h.last_seen_ms > 0) {
        w.sample(
            &[("host", &h.id), ("region", &h.region)],
            h.last_seen_ms as f64 / 1000.0,
        );
    }
    w.family(
        "argosy_host_certificate_expiry_seconds",
        "Unix time the host's client certificate expires.",
        Kind::Gauge,
    );
    for h in &hosts {
        w.sample(
            &[("host", &h.id), ("region", &h.region)],
            h.certificate_not_after_ms as f64 / 1000.0,
        );
    }
    type Field = fn(&pb::MetricSample) -> f64;
    let gauges: [(&str, &str, Field); 13] = [
        (
            "argosy_host_cpu_percent",
            "CPU busy, percent of all cores.",
            |s| s.cpu_percent,
        ),
        ("argosy_host_load1", "1-minute load average.", |s| s.load1),
        ("argosy_host_load5", "5-minute load average.", |s| s.load5),
        ("argosy_host_load15", "15-minute load average.", |s| {
            s.load15
        }),
        ("argosy_host_memory_used_bytes", "Memory in use.", |s| {
            s.memory_used_bytes as f64
        }),
        (
            "argosy_host_memory_available_bytes",
            "Memory available.",
            |s| s.memory_available_bytes as f64,
        ),
        ("argosy_host_memory_total_bytes", "Total memory.", |s| {
            s.memory_total_bytes as f64
        }),
        ("argosy_host_swap_used_bytes", "Swap in use.", |s| {
            s.swap_used_bytes as f64
        }),
        (
            "argosy_host_network_receive_bytes_per_second",
            "Network receive rate.",
            |s| s.net_rx_bytes_per_second,
        ),
        (
            "argosy_host_network_transmit_bytes_per_second",
            "Network transmit rate.",
            |s| s.net_tx_bytes_per_second,
        ),
        ("argosy_host_uptime_seconds", "Host uptime.", |s| {
            s.uptime_seconds as f64
        }),
        ("argosy_host_processes", "Processes running.", |s| {
            f64::from(s.process_count)
        }),
        (
            "argosy_host_sample_timestamp_seconds",
            "Unix time of the latest sample.",
            |s| s.timestamp_ms as f64 / 1000.0,
        ),
    ];
    for (name, help, field) in gauges {
        w.family(name, help, Kind::Gauge);
        for h in &hosts {
            if let Some(sample) = &h.latest {
                w.sample(&[("host", &h.id), ("region", &h.region)], field(sample));
            }
        }
    }
    w.family(
        "argosy_host_disk_used_bytes",
        "Disk space in use, per mount.",
        Kind::Gauge,
    );
    for h in &hosts {
        for d in h.latest.iter().flat_map(|s| &s.disks) {
            w.sample(
                &[
                    ("host", &h.id),
                    ("region", &h.region),
                    ("mount", &d.mount_point),
                ],
                d.used_bytes as f64,
            );
        }
    }
    w.family(
        "argosy_host_disk_total_bytes",
        "Disk size, per mount.",
        Kind::Gauge,
    );
    for h in &hosts {
        for d in h.latest.iter().flat_map(|s| &s.disks) {
            w.sample(
                &[
                    ("host", &h.id),
                    ("region", &h.region),
                    ("mount", &d.mount_point),
                ],
                d.total_bytes as f64,
            );
        }
    }
    w.finish()
}
