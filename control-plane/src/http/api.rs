//! `/api/v1/…`: the fleet as JSON, with the same bearer-token auth as gRPC.

use super::ApiError;
use crate::auth::{Action, Principal};
use crate::dto::{HostJson, MetricsJson, PointJson};
use crate::state::ControlPlane;
use crate::store::{Metric, MetricQuery};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;

async fn caller(
    cp: &ControlPlane,
    headers: &HeaderMap,
    action: Action,
) -> Result<Principal, ApiError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    Ok(cp.authenticate(header, action).await?)
}

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
    caller(&cp, &headers, Action::ReadFleet).await?;
    let mut labels = HashMap::new();
    for pair in filter.labels.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            ApiError::bad_request(format!("label filter {pair:?} is not key=value"))
        })?;
        labels.insert(k.to_owned(), v.to_owned());
    }
    Ok(Json(
        cp.fleet
            .list(&filter.region, &labels)
            .into_iter()
            .map(HostJson::from)
            .collect(),
    ))
}

pub(super) async fn get_host(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<HostJson>, ApiError> {
    caller(&cp, &headers, Action::ReadFleet).await?;
    cp.fleet
        .get(&id)
        .map(|h| Json(HostJson::from(h)))
        .ok_or_else(|| ApiError::not_found(format!("no host with id {id:?}")))
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
    caller(&cp, &headers, Action::ReadMetrics).await?;
    if cp.fleet.get(&id).is_none() {
        return Err(ApiError::not_found(format!("no host with id {id:?}")));
    }
    let metric: Metric = params
        .metric
        .parse()
        .map_err(|e: crate::store::UnknownMetric| ApiError::bad_request(e.to_string()))?;
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
    let query = MetricQuery {
        host_id: id.clone(),
        metric,
        start_ms,
        end_ms: params.until.unwrap_or(now),
        step_ms,
    };
    let result = cp
        .store
        .query_metric(&query, &cp.settings.retention, now)
        .await?;
    Ok(Json(MetricsJson {
        host_id: id,
        metric: metric.name().to_owned(),
        unit: metric.unit().to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_durations_and_milliseconds() {
        assert_eq!(parse_since("10m", 1_000_000), Ok(400_000));
        assert_eq!(parse_since("123", 1_000_000), Ok(123));
        assert!(parse_since("yesterday", 0).unwrap_err().contains("10m"));
    }
}
