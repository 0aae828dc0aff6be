//! `/api/v1/users`, `/api/v1/login` and `/api/v1/logout`: users and login
//! sessions as JSON. A thin adapter over the gRPC `UserService` and
//! `SessionService` handlers — the token, the authorization, the audit and
//! every rule are theirs.

use super::{ApiError, grpc_request as request};
use crate::auth::Role;
use crate::dto::{ScopeJson, UserJson, role_name};
use crate::grpc::tokens::role_wire;
use crate::grpc::users::{SessionApi, UserApi};
use crate::state::ControlPlane;
use argosy_proto::v1::{
    self as pb, session_service_server::SessionService, user_service_server::UserService,
};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// The body as JSON, or a 400 that says where it is wrong. Read whatever
/// the content type says, so `curl -d '{…}'` works as it is. Only the place
/// is reported: serde's own message can quote the input, a password here.
pub(super) fn body<T: serde::de::DeserializeOwned>(
    body: &Bytes,
    shape: &str,
) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|error| {
        ApiError::bad_request(format!(
            "the JSON body is not valid (at line {} column {}); send {shape}",
            error.line(),
            error.column()
        ))
    })
}

/// A role named in a JSON body, for the wire. An unknown name goes
/// through as unspecified, so the gRPC handler checks the caller before it
/// explains the input.
pub(super) fn wire_role(name: &str) -> pb::Role {
    name.parse::<Role>()
        .map_or(pb::Role::Unspecified, role_wire)
}

pub(super) async fn list_users(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
) -> Result<Json<Vec<UserJson>>, ApiError> {
    let list = UserApi { cp }
        .list_users(request(&headers, pb::ListUsersRequest {}))
        .await?
        .into_inner();
    Ok(Json(list.users.into_iter().map(UserJson::from).collect()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AddUserBody {
    name: String,
    /// `admin`, `operator` or `viewer`.
    role: String,
    password: String,
    #[serde(default)]
    scope: ScopeJson,
}

/// `POST /api/v1/users` with `{"name", "role", "password", "scope"?}`.
pub(super) async fn add_user(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    json: Bytes,
) -> Result<Json<UserJson>, ApiError> {
    let add: AddUserBody = body(
        &json,
        r#"{"name": string, "role": "admin"|"operator"|"viewer", "password": string, "scope": {"regions": [string], "service_prefixes": [string]} (optional)}"#,
    )?;
    let role = wire_role(&add.role);
    let added = UserApi { cp }
        .add_user(request(
            &headers,
            pb::AddUserRequest {
                name: add.name,
                role: role as i32,
                scope: Some(add.scope.into()),
                password: add.password,
            },
        ))
        .await?
        .into_inner();
    Ok(Json(added.into()))
}

pub(super) async fn remove_user(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<UserJson>, ApiError> {
    let removed = UserApi { cp }
        .remove_user(request(&headers, pb::RemoveUserRequest { name }))
        .await?
        .into_inner();
    Ok(Json(removed.into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PasswordBody {
    new_password: String,
    /// Needed when users change their own password.
    #[serde(default)]
    current_password: String,
}

/// `POST /api/v1/users/{name}/password` with `{"new_password",
/// "current_password"?}`.
pub(super) async fn set_password(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    json: Bytes,
) -> Result<Json<UserJson>, ApiError> {
    let change: PasswordBody = body(
        &json,
        r#"{"new_password": string, "current_password": string (for your own)}"#,
    )?;
    let changed = UserApi { cp }
        .set_password(request(
            &headers,
            pb::SetPasswordRequest {
                name,
                current_password: change.current_password,
                new_password: change.new_password,
            },
        ))
        .await?
        .into_inner();
    Ok(Json(changed.into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginBody {
    username: String,
    password: String,
    /// 0 or absent: 12 hours.
    #[serde(default)]
    ttl_seconds: u64,
}

impl LoginBody {
    pub(super) fn into_request(self) -> pb::LoginRequest {
        pb::LoginRequest {
            username: self.username,
            password: self.password,
            ttl_seconds: self.ttl_seconds,
        }
    }
}

/// `POST /api/v1/login` with `{"username", "password", "ttl_seconds"?}`:
/// the session token to send as `Authorization: Bearer`.
pub(super) async fn login(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    json: Bytes,
) -> Result<Json<Value>, ApiError> {
    let login: LoginBody = body(
        &json,
        r#"{"username": string, "password": string, "ttl_seconds": number (optional)}"#,
    )?;
    let session = SessionApi { cp }
        .login(request(&headers, login.into_request()))
        .await?
        .into_inner();
    Ok(Json(json!({
        "token": session.token,
        "token_id": session.token_id,
        "expires_at_ms": session.expires_at_ms,
        "username": session.username,
        "role": role_name(session.role),
        "scope": ScopeJson::from(session.scope),
    })))
}

/// `POST /api/v1/logout`: ends the session the request comes with.
pub(super) async fn logout(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let ended = SessionApi { cp }
        .logout(request(&headers, pb::LogoutRequest {}))
        .await?
        .into_inner();
    Ok(Json(json!({ "token_id": ended.token_id })))
}
