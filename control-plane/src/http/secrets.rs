//! `/api/v1/secrets`: the secret API as JSON for the dashboard and scripts.
//! A thin adapter over the gRPC `SecretService` handlers — the token, the
//! authorization, the audit and every rule are theirs.
//!
//! Secret names hold `/`, so every per-secret route is one wildcard
//! (`/api/v1/secrets/{*path}`) whose method says what the path ends with:
//! `GET …/NAME/versions`, `POST …/NAME/reveal`, `DELETE …/NAME`.

use super::{ApiError, grpc_request as request};
use crate::dto::{SecretJson, SecretVersionJson};
use crate::grpc::secrets::SecretApi;
use crate::state::ControlPlane;
use argosy_proto::v1::{self as pb, secret_service_server::SecretService};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// The secret name in a wildcard path that must end with `/suffix`.
pub(super) fn name_before<'a>(path: &'a str, suffix: &str) -> Option<&'a str> {
    path.strip_suffix(suffix)?
        .strip_suffix('/')
        .filter(|name| !name.is_empty())
}

fn named<'a>(path: &'a str, suffix: &str, example: &str) -> Result<&'a str, ApiError> {
    name_before(path, suffix).ok_or_else(|| {
        ApiError::not_found(format!(
            "no such route: use {example} (for example /api/v1/secrets/crm/db-password/{suffix})"
        ))
    })
}

/// `GET /api/v1/secrets`: names, versions and who changed them.
pub(super) async fn list(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
) -> Result<Json<Vec<SecretJson>>, ApiError> {
    let list = SecretApi { cp }
        .list_secrets(request(&headers, pb::ListSecretsRequest {}))
        .await?
        .into_inner();
    Ok(Json(
        list.secrets.into_iter().map(SecretJson::from).collect(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetBody {
    name: String,
    value_base64: String,
    #[serde(default)]
    expect_existing: bool,
}

/// `POST /api/v1/secrets` with `{"name", "value_base64", "expect_existing"?}`
/// (read as JSON whatever the content type says, as `curl -d` sends it).
pub(super) async fn set(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: SetBody = serde_json::from_slice(&body).map_err(|error| {
        // Only where it failed: serde's own message can quote the input.
        ApiError::bad_request(format!(
            "the JSON body is not valid (at line {} column {}); send {{\"name\": string, \"value_base64\": string, \"expect_existing\": bool (optional)}}",
            error.line(),
            error.column()
        ))
    })?;
    let value = zeroize::Zeroizing::new(
        BASE64
            .decode(body.value_base64.trim())
            .map_err(|_| ApiError::bad_request("value_base64 is not valid base64"))?,
    );
    let set = SecretApi { cp }
        .set_secret(request(
            &headers,
            pb::SetSecretRequest {
                name: body.name,
                value: value.to_vec(),
                expect_existing: body.expect_existing,
            },
        ))
        .await?
        .into_inner();
    Ok(Json(json!({
        "name": set.name,
        "version": set.version,
        "created": set.created,
        "pruned_versions": set.pruned_versions,
    })))
}

/// `GET /api/v1/secrets/{NAME}/versions`.
pub(super) async fn versions(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(path): Path<String>,
) -> Result<Json<Vec<SecretVersionJson>>, ApiError> {
    let name = named(&path, "versions", "GET /api/v1/secrets/NAME/versions")?;
    let list = SecretApi { cp }
        .list_secret_versions(request(
            &headers,
            pb::ListSecretVersionsRequest {
                name: name.to_owned(),
            },
        ))
        .await?
        .into_inner();
    Ok(Json(
        list.versions
            .into_iter()
            .map(SecretVersionJson::from)
            .collect(),
    ))
}

#[derive(Deserialize)]
pub(super) struct RevealParams {
    #[serde(default)]
    version: u32,
}

/// `POST /api/v1/secrets/{NAME}/reveal[?version=N]`: the value (admin only,
/// audited).
pub(super) async fn reveal(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(path): Path<String>,
    Query(params): Query<RevealParams>,
) -> Result<Json<Value>, ApiError> {
    let name = named(&path, "reveal", "POST /api/v1/secrets/NAME/reveal")?;
    let secret = SecretApi { cp }
        .get_secret(request(
            &headers,
            pb::GetSecretRequest {
                name: name.to_owned(),
                version: params.version,
            },
        ))
        .await?
        .into_inner();
    let value = zeroize::Zeroizing::new(BASE64.encode(&secret.value));
    Ok(Json(json!({
        "name": secret.name,
        "version": secret.version,
        "value_base64": value.as_str(),
    })))
}

/// `DELETE /api/v1/secrets/{NAME}`.
pub(super) async fn delete(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let deleted = SecretApi { cp }
        .delete_secret(request(&headers, pb::DeleteSecretRequest { name }))
        .await?
        .into_inner();
    Ok(Json(json!({
        "name": deleted.name,
        "versions_deleted": deleted.versions_deleted,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_before_the_action() {
        assert_eq!(name_before("crm/db/versions", "versions"), Some("crm/db"));
        assert_eq!(name_before("a/reveal", "reveal"), Some("a"));
        // A secret named like the action still works: only the last step is the action.
        assert_eq!(
            name_before("x/versions/versions", "versions"),
            Some("x/versions")
        );
        assert_eq!(name_before("versions", "versions"), None);
        assert_eq!(name_before("/versions", "versions"), None);
        assert_eq!(name_before("crm/db", "versions"), None);
        assert_eq!(name_before("crm/dbversions", "versions"), None);
    }
}
