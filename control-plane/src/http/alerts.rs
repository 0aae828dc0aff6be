//! `/api/v1/alerts/…`: alerting as JSON for the dashboard and scripts —
//! alerts (list, show, acknowledge), rules (list, add, apply a file, tune,
//! remove), silences and channels. A thin adapter over the gRPC
//! `AlertService` handlers: the token, the authorization, the audit and
//! every rule are theirs. The JSON shapes here are also what the CLI
//! prints with `-o json`.

use super::{ApiError, grpc_request as request};
use crate::grpc::alerts::AlertApi;
use crate::state::ControlPlane;
use argosy_proto::v1::{self as pb, alert_service_server::AlertService};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

fn api(cp: Arc<ControlPlane>) -> AlertApi {
    AlertApi { cp }
}

fn ms(value: i64) -> Value {
    if value > 0 { json!(value) } else { Value::Null }
}

fn text(value: &str) -> Value {
    if value.is_empty() {
        Value::Null
    } else {
        json!(value)
    }
}

/// An alert as JSON.
pub(crate) fn alert_json(a: &pb::Alert) -> Value {
    let labels: BTreeMap<&String, &String> = a.labels.iter().collect();
    let acknowledged = (a.acknowledged_at_ms > 0).then(|| {
        json!({
            "at_ms": a.acknowledged_at_ms,
            "by": a.acknowledged_by,
            "comment": a.acknowledge_comment,
        })
    });
    let mut value = json!({
        "id": a.id,
        "fingerprint": a.fingerprint,
        "alertname": a.rule,
        "severity": a.severity,
        "state": a.state,
        "labels": labels,
        "summary": a.summary,
        "condition": a.condition,
        "value": a.value,
        "started_at_ms": a.started_at_ms,
        "firing_since_ms": ms(a.firing_since_ms),
        "resolved_at_ms": ms(a.resolved_at_ms),
        "acknowledged": acknowledged,
    });
    if !a.history.is_empty() {
        value["history"] = a
            .history
            .iter()
            .map(|e| json!({"at_ms": e.at_ms, "message": e.message}))
            .collect();
    }
    value
}

/// A rule as JSON.
pub(crate) fn rule_json(r: &pb::AlertRule) -> Value {
    let labels: BTreeMap<&String, &String> = r.labels.iter().collect();
    json!({
        "name": r.name,
        "metric": r.metric,
        "op": text(&r.op),
        "threshold": if r.event { Value::Null } else { json!(r.threshold) },
        "for_seconds": r.for_seconds,
        "keep_firing_for_seconds": r.keep_firing_for_seconds,
        "severity": r.severity,
        "selector": {
            "region": text(&r.region),
            "labels": labels,
            "host": text(&r.host),
            "service": text(&r.service),
        },
        "enabled": r.enabled,
        "builtin": r.builtin,
        "event": r.event,
        "condition": r.condition,
        "updated_at_ms": r.updated_at_ms,
        "updated_by": r.updated_by,
    })
}

/// A silence as JSON.
pub(crate) fn silence_json(s: &pb::Silence) -> Value {
    json!({
        "id": s.id,
        "matchers": s.matchers,
        "starts_at_ms": s.starts_at_ms,
        "ends_at_ms": s.ends_at_ms,
        "comment": s.comment,
        "created_by": s.created_by,
        "active": s.active,
        "expired_by": text(&s.expired_by),
    })
}

/// A channel as JSON (its URL redacted).
pub(crate) fn channel_json(c: &pb::Channel) -> Value {
    json!({
        "name": c.name,
        "kind": c.kind,
        "url": c.url,
        "min_severity": c.min_severity,
        "created_at_ms": c.created_at_ms,
        "created_by": c.created_by,
        "attempts": c.attempts,
        "failures": c.failures,
        "delivered": c.delivered,
        "last_success_ms": ms(c.last_success_ms),
        "last_error": text(&c.last_error),
        "last_error_ms": ms(c.last_error_ms),
        "pending": c.pending,
        "retrying": c.retrying,
        "given_up": c.given_up,
    })
}

pub(super) fn parse_body<T: serde::de::DeserializeOwned>(
    body: &str,
    what: &str,
) -> Result<T, ApiError> {
    let body = if body.trim().is_empty() { "{}" } else { body };
    serde_json::from_str(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not a valid {what}: {e}")))
}

#[derive(Deserialize)]
pub(super) struct ListParams {
    #[serde(default)]
    state: String,
    #[serde(default)]
    limit: u32,
}

pub(super) async fn list_alerts(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let list = api(cp)
        .list_alerts(request(
            &headers,
            pb::ListAlertsRequest {
                state: params.state,
                limit: params.limit,
            },
        ))
        .await?
        .into_inner();
    Ok(Json(list.alerts.iter().map(alert_json).collect()))
}

pub(super) async fn get_alert(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let alert = api(cp)
        .get_alert(request(&headers, pb::GetAlertRequest { id }))
        .await?
        .into_inner();
    Ok(Json(alert_json(&alert)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    #[serde(default)]
    comment: String,
}

/// `POST /api/v1/alerts/{id}/ack` with an optional `{"comment": …}`.
pub(super) async fn acknowledge(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: String,
) -> Result<Json<Value>, ApiError> {
    let AckBody { comment } = parse_body(&body, "acknowledgement ({\"comment\": …})")?;
    let alert = api(cp)
        .acknowledge_alert(request(
            &headers,
            pb::AcknowledgeAlertRequest { id, comment },
        ))
        .await?
        .into_inner();
    Ok(Json(alert_json(&alert)))
}

pub(super) async fn list_rules(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let list = api(cp)
        .list_rules(request(&headers, pb::ListRulesRequest {}))
        .await?
        .into_inner();
    Ok(Json(list.rules.iter().map(rule_json).collect()))
}

/// A new rule as the JSON body spells it (the rules file's fields).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleBody {
    name: String,
    metric: String,
    #[serde(default)]
    op: String,
    #[serde(default)]
    threshold: Option<f64>,
    #[serde(default, rename = "for")]
    for_duration: String,
    #[serde(default)]
    keep_firing_for: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    labels: std::collections::HashMap<String, String>,
    #[serde(default)]
    host: String,
    #[serde(default)]
    service: String,
}

pub(super) async fn add_rule(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    body: String,
) -> Result<Json<Value>, ApiError> {
    let b: RuleBody = parse_body(&body, "rule")?;
    let rule = api(cp)
        .add_rule(request(
            &headers,
            pb::AddRuleRequest {
                name: b.name,
                metric: b.metric,
                op: b.op,
                threshold: b.threshold,
                for_duration: b.for_duration,
                keep_firing_for: b.keep_firing_for,
                severity: b.severity,
                region: b.region,
                labels: b.labels,
                host: b.host,
                service: b.service,
            },
        ))
        .await?
        .into_inner();
    Ok(Json(rule_json(&rule)))
}

#[derive(Deserialize)]
pub(super) struct ApplyParams {
    #[serde(default)]
    format: String,
}

/// `POST /api/v1/alerts/rules/apply?format=yaml|toml` with the rules file.
pub(super) async fn apply_rules(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Query(params): Query<ApplyParams>,
    body: String,
) -> Result<Json<Value>, ApiError> {
    let applied = api(cp)
        .apply_rules(request(
            &headers,
            pb::ApplyRulesRequest {
                text: body,
                format: params.format,
            },
        ))
        .await?
        .into_inner();
    Ok(Json(json!({
        "created": applied.created.iter().map(rule_json).collect::<Vec<_>>(),
        "updated": applied.updated.iter().map(rule_json).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TuneBody {
    #[serde(default)]
    threshold: Option<f64>,
    #[serde(default, rename = "for")]
    for_duration: Option<String>,
    #[serde(default)]
    keep_firing_for: Option<String>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
}

/// `PATCH /api/v1/alerts/rules/{name}` with the knobs to change.
pub(super) async fn update_rule(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: String,
) -> Result<Json<Value>, ApiError> {
    let b: TuneBody = parse_body(&body, "rule change")?;
    let rule = api(cp)
        .update_rule(request(
            &headers,
            pb::UpdateRuleRequest {
                name,
                threshold: b.threshold,
                for_duration: b.for_duration,
                keep_firing_for: b.keep_firing_for,
                severity: b.severity,
                enabled: b.enabled,
            },
        ))
        .await?
        .into_inner();
    Ok(Json(rule_json(&rule)))
}

pub(super) async fn remove_rule(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let rule = api(cp)
        .remove_rule(request(&headers, pb::RemoveRuleRequest { name }))
        .await?
        .into_inner();
    Ok(Json(rule_json(&rule)))
}

#[derive(Deserialize)]
pub(super) struct SilenceParams {
    #[serde(default)]
    include_expired: bool,
}

pub(super) async fn list_silences(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Query(params): Query<SilenceParams>,
) -> Result<Json<Value>, ApiError> {
    let list = api(cp)
        .list_silences(request(
            &headers,
            pb::ListSilencesRequest {
                include_expired: params.include_expired,
            },
        ))
        .await?
        .into_inner();
    Ok(Json(list.silences.iter().map(silence_json).collect()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceBody {
    matchers: Vec<String>,
    #[serde(rename = "for")]
    duration: String,
    comment: String,
}

/// `POST /api/v1/alerts/silences` with `{"matchers": […], "for": "2h", "comment": …}`.
pub(super) async fn create_silence(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    body: String,
) -> Result<Json<Value>, ApiError> {
    let b: SilenceBody = parse_body(&body, "silence")?;
    let silence = api(cp)
        .create_silence(request(
            &headers,
            pb::CreateSilenceRequest {
                matchers: b.matchers,
                duration: b.duration,
                comment: b.comment,
            },
        ))
        .await?
        .into_inner();
    Ok(Json(silence_json(&silence)))
}

pub(super) async fn expire_silence(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let silence = api(cp)
        .expire_silence(request(&headers, pb::ExpireSilenceRequest { id }))
        .await?
        .into_inner();
    Ok(Json(silence_json(&silence)))
}

pub(super) async fn list_channels(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let list = api(cp)
        .list_channels(request(&headers, pb::ListChannelsRequest {}))
        .await?
        .into_inner();
    Ok(Json(list.channels.iter().map(channel_json).collect()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelBody {
    name: String,
    kind: String,
    url: String,
    #[serde(default)]
    min_severity: String,
}

pub(super) async fn add_channel(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    body: String,
) -> Result<Json<Value>, ApiError> {
    let b: ChannelBody = parse_body(&body, "channel")?;
    let channel = api(cp)
        .add_channel(request(
            &headers,
            pb::AddChannelRequest {
                name: b.name,
                kind: b.kind,
                url: b.url,
                min_severity: b.min_severity,
            },
        ))
        .await?
        .into_inner();
    Ok(Json(channel_json(&channel)))
}

pub(super) async fn remove_channel(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let channel = api(cp)
        .remove_channel(request(&headers, pb::RemoveChannelRequest { name }))
        .await?
        .into_inner();
    Ok(Json(channel_json(&channel)))
}

pub(super) async fn test_channel(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tested = api(cp)
        .test_channel(request(&headers, pb::TestChannelRequest { name }))
        .await?
        .into_inner();
    Ok(Json(json!({
        "delivered": tested.delivered,
        "error": text(&tested.error),
    })))
}
