//! `/api/v1/tokens` and `/api/v1/join-tokens`: API tokens and join tokens
//! as JSON, for the dashboard's administration page. A thin adapter over
//! the gRPC `ApiTokenService` and `JoinTokenService` handlers — their
//! authorization, audit and rules apply unchanged.

use super::users::{body, wire_role};
use super::{ApiError, grpc_request as request};
use crate::dto::{ApiTokenJson, JoinTokenJson, ScopeJson};
use crate::grpc::tokens::{ApiTokenApi, JoinTokenApi};
use crate::state::ControlPlane;
use argosy_proto::v1::{
    self as pb, api_token_service_server::ApiTokenService,
    join_token_service_server::JoinTokenService,
};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

pub(super) async fn list_tokens(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
) -> Result<Json<Vec<ApiTokenJson>>, ApiError> {
    let list = ApiTokenApi { cp }
        .list_api_tokens(request(&headers, pb::ListApiTokensRequest {}))
        .await?
        .into_inner();
    Ok(Json(
        list.tokens.into_iter().map(ApiTokenJson::from).collect(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateTokenBody {
    name: String,
    /// `admin`, `operator` or `viewer`.
    role: String,
    /// 0 or absent: it never expires.
    #[serde(default)]
    ttl_seconds: u64,
    #[serde(default)]
    scope: ScopeJson,
}

/// `POST /api/v1/tokens` with `{"name", "role", "ttl_seconds"?, "scope"?}`
/// → `{"token": {…}, "secret"}`; the secret is shown once.
pub(super) async fn create_token(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    json: Bytes,
) -> Result<Json<Value>, ApiError> {
    let create: CreateTokenBody = body(
        &json,
        r#"{"name": string, "role": "admin"|"operator"|"viewer", "ttl_seconds": number (optional), "scope": {"regions": [string], "service_prefixes": [string]} (optional)}"#,
    )?;
    let role = wire_role(&create.role);
    let created = ApiTokenApi { cp }
        .create_api_token(request(
            &headers,
            pb::CreateApiTokenRequest {
                name: create.name,
                role: role as i32,
                ttl_seconds: create.ttl_seconds,
                scope: Some(create.scope.into()),
            },
        ))
        .await?
        .into_inner();
    Ok(Json(json!({
        "token": created.token.map(ApiTokenJson::from),
        "secret": created.secret,
    })))
}

/// `DELETE /api/v1/tokens/{id}`: revokes it at once.
pub(super) async fn revoke_token(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<ApiTokenJson>, ApiError> {
    let revoked = ApiTokenApi { cp }
        .revoke_api_token(request(&headers, pb::RevokeApiTokenRequest { id }))
        .await?
        .into_inner();
    Ok(Json(revoked.into()))
}

pub(super) async fn list_join_tokens(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
) -> Result<Json<Vec<JoinTokenJson>>, ApiError> {
    let list = JoinTokenApi { cp }
        .list_join_tokens(request(&headers, pb::ListJoinTokensRequest {}))
        .await?
        .into_inner();
    Ok(Json(
        list.tokens.into_iter().map(JoinTokenJson::from).collect(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateJoinTokenBody {
    #[serde(default)]
    region: String,
    #[serde(default)]
    labels: HashMap<String, String>,
    #[serde(default)]
    ttl_seconds: u64,
    /// 0 or absent: unlimited.
    #[serde(default)]
    max_uses: u32,
}

/// `POST /api/v1/join-tokens` with `{"region", "labels"?, "ttl_seconds",
/// "max_uses"?}` → `{"token": {…}, "join_string", "install_command"}`.
pub(super) async fn create_join_token(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    json: Bytes,
) -> Result<Json<Value>, ApiError> {
    let create: CreateJoinTokenBody = body(
        &json,
        r#"{"region": string, "labels": {string: string} (optional), "ttl_seconds": number, "max_uses": number (optional)}"#,
    )?;
    let created = JoinTokenApi { cp }
        .create_join_token(request(
            &headers,
            pb::CreateJoinTokenRequest {
                region: create.region,
                labels: create.labels,
                ttl_seconds: create.ttl_seconds,
                max_uses: create.max_uses,
            },
        ))
        .await?
        .into_inner();
    Ok(Json(json!({
        "token": created.token.map(JoinTokenJson::from),
        "join_string": created.join_string,
        "install_command": created.install_command,
    })))
}

/// `DELETE /api/v1/join-tokens/{id}`: no host can enroll with it any more.
pub(super) async fn revoke_join_token(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<JoinTokenJson>, ApiError> {
    let revoked = JoinTokenApi { cp }
        .revoke_join_token(request(&headers, pb::RevokeJoinTokenRequest { id }))
        .await?
        .into_inner();
    Ok(Json(revoked.into()))
}
