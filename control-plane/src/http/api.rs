//! `/api/v1/hosts…`: the fleet as JSON — a thin adapter over the gRPC
//! `FleetService` handlers (same token, authorization and scope filtering).

use super::{ApiError, grpc_request};
use crate::dto::{HostJson, MetricsJson, PointJson};
use crate::grpc::fleet::FleetApi;
use crate::state::ControlPlane;
use argosy_proto::v1::{self as pb, fleet_service_server::FleetService};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Deserialize)]
pub(super) struct HostFilter {
    #[serde(default)]
    region: String,
    /// `key=value,key=value`
    #[serde(default)]
    labels: String,
}

pub(super) async fn list_hosts(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Query(filter): Query<HostFilter>,
) -> Result<Json<Vec<HostJson>>, ApiError> {
    let mut labels = HashMap::new();
    for pair in filter.labels.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            ApiError::bad_request(format!("label filter {pair:?} is not key=value"))
        })?;
        labels.insert(k.to_owned(), v.to_owned());
    }
    let listed = FleetApi { cp }
        .list_hosts(grpc_request(
            &headers,
            pb::ListHostsRequest {
                region: filter.region,
                labels,
            },
        ))
        .await?
        .into_inner();
    Ok(Json(listed.hosts.into_iter().map(HostJson::from).collect()))
}

pub(super) async fn get_host(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<HostJson>, ApiError> {
    let host = FleetApi { cp }
        .get_host(grpc_request(&headers, pb::GetHostRequest { id }))
        .await?
        .into_inner();
    Ok(Json(HostJson::from(host)))
}

#[derive(Deserialize)]
pub(super) struct MetricsParams {
    metric: String,
    /// A duration back from now (`10m`, `24h`) or Unix milliseconds.
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    until: Option<i64>,
    /// A duration (`30s`, `5m`).
    #[serde(default)]
    step: Option<String>,
}

/// Parses `since`: a duration back from now (`10m`) or absolute Unix ms.
pub(super) fn parse_since(text: &str, now_ms: i64) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    humantime::parse_duration(text)
        .map(|d| now_ms - i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2))
        .map_err(|_| {
            format!("since {text:?} is neither a duration like 10m or 24h nor Unix milliseconds")
        })
}

pub(super) async fn host_metrics(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<MetricsParams>,
) -> Result<Json<MetricsJson>, ApiError> {
    let now = cp.now_ms();
    let start_ms =
        parse_since(params.since.as_deref().unwrap_or("1h"), now).map_err(ApiError::bad_request)?;
    let step_ms = match params.step.as_deref() {
        None | Some("") => 0,
        Some(text) => humantime::parse_duration(text)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .map_err(|_| {
                ApiError::bad_request(format!("step {text:?} is not a duration like 30s or 5m"))
            })?,
    };
    let result = FleetApi { cp }
        .query_metrics(grpc_request(
            &headers,
            pb::QueryMetricsRequest {
                host_id: id,
                metric: params.metric,
                start_ms,
                end_ms: params.until.unwrap_or(now),
                step_ms,
            },
        ))
        .await?
        .into_inner();
    Ok(Json(MetricsJson {
        host_id: result.host_id,
        metric: result.metric,
        unit: result.unit,
        step_ms: result.step_ms,
        points: result
            .points
            .into_iter()
            .map(|p| PointJson {
                timestamp_ms: p.timestamp_ms,
                avg: p.avg,
                max: p.max,
            })
            .collect(),
    }))
}

#[derive(Deserialize)]
pub(super) struct LiveParams {
    /// Comma-separated metric names.
    metric: String,
}

/// How often the live stream looks for new samples (agents report every
/// few seconds; the store is the one source, so any replica serves it).
const LIVE_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// The metric names of a live request: `cpu,memory` → both, in order,
/// without blanks or repeats.
pub(super) fn live_metrics_of(text: &str) -> Result<Vec<String>, String> {
    let mut metrics: Vec<String> = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !metrics.iter().any(|m| m == name) {
            metrics.push(name.to_owned());
        }
    }
    if metrics.is_empty() || metrics.len() > 16 {
        return Err("metric must name 1 to 16 metrics, comma-separated (cpu,memory)".into());
    }
    Ok(metrics)
}

/// `GET /api/v1/hosts/{id}/metrics/live?metric=cpu,memory`: Server-Sent
/// Events, one `point` event (`{"metric", "timestamp_ms", "avg", "max"}`)
/// per new sample. Every poll is an authorized query, so a revoked
/// session or token ends the stream with an `error` event.
pub(super) async fn live_metrics(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<LiveParams>,
) -> Result<
    axum::response::sse::Sse<
        impl futures_util::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
    ApiError,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let metrics = live_metrics_of(&params.metric).map_err(ApiError::bad_request)?;
    let api = FleetApi { cp: cp.clone() };
    // The first query answers now: an unknown host, metric or a missing
    // right is a plain HTTP error rather than a stream that ends at once.
    let mut last_seen: HashMap<String, i64> = HashMap::new();
    let now = cp.now_ms();
    for metric in &metrics {
        api.query_metrics(grpc_request(
            &headers,
            pb::QueryMetricsRequest {
                host_id: id.clone(),
                metric: metric.clone(),
                start_ms: now,
                end_ms: now,
                step_ms: 0,
            },
        ))
        .await?;
        last_seen.insert(metric.clone(), now);
    }
    let stream = async_stream::stream! {
        let mut ticker = tokio::time::interval(LIVE_POLL);
        loop {
            ticker.tick().await;
            let now = cp.now_ms();
            for metric in &metrics {
                let since = last_seen.get(metric).copied().unwrap_or(now);
                let answer = api
                    .query_metrics(grpc_request(
                        &headers,
                        pb::QueryMetricsRequest {
                            host_id: id.clone(),
                            metric: metric.clone(),
                            start_ms: since + 1,
                            end_ms: now,
                            step_ms: 0,
                        },
                    ))
                    .await;
                let points = match answer {
                    Ok(answer) => answer.into_inner().points,
                    Err(status) => {
                        yield Ok(Event::default().event("error").data(status.message()));
                        return;
                    }
                };
                for point in points {
                    if point.timestamp_ms <= since {
                        continue;
                    }
                    last_seen.insert(metric.clone(), point.timestamp_ms);
                    let data = serde_json::json!({
                        "metric": metric,
                        "timestamp_ms": point.timestamp_ms,
                        "avg": point.avg,
                        "max": point.max,
                    });
                    yield Ok(Event::default().event("point").data(data.to_string()));
                }
            }
        }
    };
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_metrics_are_named_once_each() {
        assert_eq!(
            live_metrics_of(" cpu,memory,,cpu ").unwrap(),
            vec!["cpu".to_owned(), "memory".to_owned()]
        );
        assert!(live_metrics_of(" , ").is_err());
        assert!(
            live_metrics_of(
                &vec!["m"; 17]
                    .iter()
                    .enumerate()
                    .map(|(i, m)| format!("{m}{i}"))
                    .collect::<Vec<_>>()
                    .join(",")
            )
            .is_err()
        );
    }

    #[test]
    fn since_accepts_durations_and_milliseconds() {
        assert_eq!(parse_since("10m", 1_000_000), Ok(400_000));
        assert_eq!(parse_since("123", 1_000_000), Ok(123));
        assert!(parse_since("yesterday", 0).unwrap_err().contains("10m"));
    }
}
