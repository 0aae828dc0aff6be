//! `/api/v1/audit`: the audit log as JSON, over the gRPC `AuditService`.

use super::{ApiError, grpc_request};
use crate::dto::{AuditRecordJson, AuditVerificationJson};
use crate::grpc::audit::AuditApi;
use crate::state::ControlPlane;
use argosy_proto::v1::{self as pb, audit_service_server::AuditService};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
pub(super) struct AuditQuery {
    /// A duration back from now (`1h`) or Unix milliseconds.
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    before: i64,
    #[serde(default)]
    limit: u32,
}

pub(super) async fn list(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Vec<AuditRecordJson>>, ApiError> {
    let since_ms = match query.since.as_deref() {
        None | Some("") => 0,
        Some(text) => super::api::parse_since(text, cp.now_ms()).map_err(ApiError::bad_request)?,
    };
    let records = AuditApi { cp }
        .list_audit(grpc_request(
            &headers,
            pb::ListAuditRequest {
                since_ms,
                actor: query.actor,
                action: query.action,
                before_seq: query.before,
                limit: query.limit,
            },
        ))
        .await?
        .into_inner()
        .records;
    Ok(Json(
        records.into_iter().map(AuditRecordJson::from).collect(),
    ))
}

pub(super) async fn verify(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
) -> Result<Json<AuditVerificationJson>, ApiError> {
    let result = AuditApi { cp }
        .verify_audit(grpc_request(&headers, pb::VerifyAuditRequest {}))
        .await?
        .into_inner();
    Ok(Json(result.into()))
}
