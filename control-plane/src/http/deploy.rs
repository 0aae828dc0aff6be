//! `/api/v1/services` and `/api/v1/deployments`: the deployment operations
//! as JSON for the dashboard and scripts. A thin adapter over the same
//! `DeployService` the gRPC API serves — the bearer token, the
//! authorization and every rule are the gRPC handler's.

use super::{ApiError, grpc_request as request};
use crate::dto::{deployment_json, revision_json, service_change_json, service_json};
use crate::grpc::deploy::DeployApi;
use crate::state::ControlPlane;
use argosy_proto::v1::{self as pb, deploy_service_server::DeployService};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

fn api(cp: Arc<ControlPlane>) -> DeployApi {
    DeployApi { cp }
}

pub(super) async fn list_services(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let list = api(cp)
        .list_services(request(&headers, pb::ListServicesRequest {}))
        .await?
        .into_inner();
    Ok(Json(Value::Array(
        list.services.iter().map(service_json).collect(),
    )))
}

pub(super) async fn get_service(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let service = api(cp)
        .get_service(request(&headers, pb::GetServiceRequest { name }))
        .await?
        .into_inner();
    Ok(Json(service_json(&service)))
}

pub(super) async fn list_revisions(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(service): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let list = api(cp)
        .list_revisions(request(&headers, pb::ListRevisionsRequest { service }))
        .await?
        .into_inner();
    Ok(Json(Value::Array(
        list.revisions.iter().map(revision_json).collect(),
    )))
}

#[derive(Deserialize)]
pub(super) struct ApplyParams {
    /// `yaml` (default) or `toml`.
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

/// `POST /api/v1/services` with the spec as the body.
pub(super) async fn apply(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Query(params): Query<ApplyParams>,
    body: String,
) -> Result<Json<Value>, ApiError> {
    let applied = api(cp)
        .apply(request(
            &headers,
            pb::ApplyRequest {
                spec: body,
                format: params.format.unwrap_or_else(|| "yaml".into()),
                dry_run: params.dry_run,
            },
        ))
        .await?
        .into_inner();
    Ok(Json(serde_json::json!({
        "service": applied.service,
        "revision": applied.revision,
        "created": applied.created,
        "deployment": applied.deployment.as_ref().map(deployment_json),
        "warnings": applied.warnings,
        "defaults_applied": applied.defaults_applied,
    })))
}

#[derive(Deserialize)]
pub(super) struct RollbackParams {
    #[serde(default)]
    to: Option<u64>,
}

pub(super) async fn rollback(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(service): Path<String>,
    Query(params): Query<RollbackParams>,
) -> Result<Json<Value>, ApiError> {
    let deployment = api(cp)
        .rollback(request(
            &headers,
            pb::RollbackRequest {
                service,
                to_revision: params.to.unwrap_or(0),
            },
        ))
        .await?
        .into_inner();
    Ok(Json(deployment_json(&deployment)))
}

#[derive(Deserialize)]
pub(super) struct ScaleParams {
    replicas: u32,
}

pub(super) async fn scale(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(service): Path<String>,
    Query(params): Query<ScaleParams>,
) -> Result<Json<Value>, ApiError> {
    let change = api(cp)
        .scale(request(
            &headers,
            pb::ScaleRequest {
                service,
                replicas: params.replicas,
            },
        ))
        .await?
        .into_inner();
    Ok(Json(service_change_json(&change)))
}

pub(super) async fn stop(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(service): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let change = api(cp)
        .stop_service(request(&headers, pb::StopServiceRequest { service }))
        .await?
        .into_inner();
    Ok(Json(service_change_json(&change)))
}

#[derive(Deserialize)]
pub(super) struct ListParams {
    #[serde(default)]
    service: String,
    #[serde(default)]
    limit: u32,
}

pub(super) async fn list_deployments(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let list = api(cp)
        .list_deployments(request(
            &headers,
            pb::ListDeploymentsRequest {
                service: params.service,
                limit: params.limit,
            },
        ))
        .await?
        .into_inner();
    Ok(Json(Value::Array(
        list.deployments.iter().map(deployment_json).collect(),
    )))
}

pub(super) async fn get_deployment(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let deployment = api(cp)
        .get_deployment(request(&headers, pb::GetDeploymentRequest { id }))
        .await?
        .into_inner();
    Ok(Json(deployment_json(&deployment)))
}

/// `POST /api/v1/deployments/{id}/{promote|pause|resume|cancel}`.
pub(super) async fn command(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let api = api(cp);
    let req = request(&headers, pb::DeploymentCommand { id });
    let deployment = match action.as_str() {
        "promote" => api.promote(req).await?,
        "pause" => api.pause(req).await?,
        "resume" => api.resume(req).await?,
        "cancel" => api.cancel(req).await?,
        other => {
            return Err(ApiError::not_found(format!(
                "unknown deployment action {other:?}: use promote, pause, resume or cancel"
            )));
        }
    }
    .into_inner();
    Ok(Json(deployment_json(&deployment)))
}
