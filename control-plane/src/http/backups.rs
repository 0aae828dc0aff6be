//! `/api/v1/backups`: the backup API as JSON for the dashboard and
//! scripts. A thin adapter over the gRPC `BackupService` handlers — the
//! token, the authorization, the audit and every rule are theirs.
//!
//! - `GET|POST /api/v1/backups/policies`, `GET|DELETE …/policies/{name}`
//! - `GET /api/v1/backups?policy=&limit=`, `GET /api/v1/backups/{id}`
//! - `POST /api/v1/backups/run` `{"policy"}`, `POST …/{id}/verify`
//!   `{"key_secret"?}`, `POST …/{id}/restore` `{"to"? | "in_place"?,
//!   "confirm"?, "key_secret"?}`
//! - `GET /api/v1/backups/jobs?policy=&limit=`, `GET …/jobs/{id}`

use super::alerts::parse_body;
use super::{ApiError, grpc_request as request};
use crate::dto::{BackupJobJson, BackupJson, BackupPolicyJson};
use crate::grpc::backups::BackupApi;
use crate::state::ControlPlane;
use argosy_proto::v1::{self as pb, backup_service_server::BackupService};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use std::sync::Arc;

fn api(cp: Arc<ControlPlane>) -> BackupApi {
    BackupApi { cp }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    spec: String,
    #[serde(default)]
    format: String,
}

pub(super) async fn list_policies(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
) -> Result<Json<Vec<BackupPolicyJson>>, ApiError> {
    let list = api(cp)
        .list_policies(request(&headers, pb::ListBackupPoliciesRequest {}))
        .await?
        .into_inner();
    Ok(Json(
        list.policies
            .into_iter()
            .map(BackupPolicyJson::from)
            .collect(),
    ))
}

/// `POST /api/v1/backups/policies` with `{"spec": "...", "format": "yaml"}`.
pub(super) async fn apply_policy(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    body: String,
) -> Result<Json<BackupPolicyJson>, ApiError> {
    let b: PolicyBody = parse_body(&body, "policy ({\"spec\": …, \"format\": yaml|toml})")?;
    let policy = api(cp)
        .apply_policy(request(
            &headers,
            pb::ApplyBackupPolicyRequest {
                spec: b.spec,
                format: b.format,
            },
        ))
        .await?
        .into_inner();
    Ok(Json(policy.into()))
}

pub(super) async fn get_policy(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<BackupPolicyJson>, ApiError> {
    let policy = api(cp)
        .get_policy(request(&headers, pb::GetBackupPolicyRequest { name }))
        .await?
        .into_inner();
    Ok(Json(policy.into()))
}

pub(super) async fn remove_policy(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<BackupPolicyJson>, ApiError> {
    let policy = api(cp)
        .remove_policy(request(&headers, pb::RemoveBackupPolicyRequest { name }))
        .await?
        .into_inner();
    Ok(Json(policy.into()))
}

#[derive(Deserialize)]
pub(super) struct ListParams {
    #[serde(default)]
    policy: String,
    #[serde(default)]
    limit: u32,
}

pub(super) async fn list_backups(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> Result<Json<Vec<BackupJson>>, ApiError> {
    let list = api(cp)
        .list_backups(request(
            &headers,
            pb::ListBackupsRequest {
                policy: params.policy,
                limit: params.limit,
            },
        ))
        .await?
        .into_inner();
    Ok(Json(
        list.backups.into_iter().map(BackupJson::from).collect(),
    ))
}

pub(super) async fn get_backup(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<BackupJson>, ApiError> {
    let backup = api(cp)
        .get_backup(request(&headers, pb::GetBackupRequest { id }))
        .await?
        .into_inner();
    Ok(Json(backup.into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunBody {
    policy: String,
}

pub(super) async fn run(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    body: String,
) -> Result<Json<BackupJobJson>, ApiError> {
    let b: RunBody = parse_body(&body, "run request ({\"policy\": …})")?;
    let job = api(cp)
        .run_backup(request(&headers, pb::RunBackupRequest { policy: b.policy }))
        .await?
        .into_inner();
    Ok(Json(job.into()))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    #[serde(default)]
    key_secret: String,
}

pub(super) async fn verify(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: String,
) -> Result<Json<BackupJobJson>, ApiError> {
    let b: VerifyBody = parse_body(&body, "verify request ({\"key_secret\"?: …})")?;
    let job = api(cp)
        .verify_backup(request(
            &headers,
            pb::VerifyBackupRequest {
                id,
                key_secret: b.key_secret,
            },
        ))
        .await?
        .into_inner();
    Ok(Json(job.into()))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RestoreBody {
    /// `database:NAME` or `dir:/path`.
    #[serde(default)]
    to: String,
    #[serde(default)]
    in_place: bool,
    #[serde(default)]
    confirm: bool,
    #[serde(default)]
    key_secret: String,
}

pub(super) async fn restore(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: String,
) -> Result<Json<BackupJobJson>, ApiError> {
    let b: RestoreBody = parse_body(
        &body,
        "restore request ({\"to\": \"database:NAME\"|\"dir:/path\"} or {\"in_place\": true, \"confirm\": true})",
    )?;
    let kind = match (b.to.split_once(':'), b.in_place) {
        (None, true) if b.to.is_empty() => pb::restore_target::Kind::InPlace(true),
        (Some(("database", name)), false) => pb::restore_target::Kind::Database(name.to_owned()),
        (Some(("dir", path)), false) => pb::restore_target::Kind::Directory(path.to_owned()),
        _ => {
            return Err(ApiError::bad_request(
                "say where to restore: \"to\": \"database:NAME\" or \"dir:/path\", or \"in_place\": true with \"confirm\": true",
            ));
        }
    };
    let job = api(cp)
        .restore_backup(request(
            &headers,
            pb::RestoreBackupRequest {
                id,
                target: Some(pb::RestoreTarget { kind: Some(kind) }),
                confirm: b.confirm,
                key_secret: b.key_secret,
            },
        ))
        .await?
        .into_inner();
    Ok(Json(job.into()))
}

pub(super) async fn list_jobs(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> Result<Json<Vec<BackupJobJson>>, ApiError> {
    let list = api(cp)
        .list_jobs(request(
            &headers,
            pb::ListBackupJobsRequest {
                policy: params.policy,
                limit: params.limit,
            },
        ))
        .await?
        .into_inner();
    Ok(Json(
        list.jobs.into_iter().map(BackupJobJson::from).collect(),
    ))
}

pub(super) async fn get_job(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<BackupJobJson>, ApiError> {
    let job = api(cp)
        .get_job(request(&headers, pb::GetBackupJobRequest { id }))
        .await?
        .into_inner();
    Ok(Json(job.into()))
}
