//! `/api/v1/policies/…`: Wasm policies as JSON for the dashboard and
//! scripts — list, show, upload (the module base64-encoded), enable,
//! disable, remove and test. A thin adapter over the gRPC `PolicyService`
//! handlers: the token, the authorization, the audit and the upload checks
//! are theirs. The JSON shapes are also what the CLI prints with `-o json`.

use super::{ApiError, grpc_request as request};
use crate::grpc::policies::PolicyApi;
use crate::state::ControlPlane;
use argosy_proto::v1::{self as pb, policy_service_server::PolicyService};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// The largest upload body: a module at the 8 MiB limit, base64-encoded,
/// with its configuration.
pub(super) const UPLOAD_BODY_BYTES: usize = 12 << 20;

fn api(cp: Arc<ControlPlane>) -> PolicyApi {
    PolicyApi { cp }
}

/// A policy as JSON.
pub(crate) fn policy_json(p: &pb::Policy) -> Value {
    let config: Value = serde_json::from_str(&p.config_json).unwrap_or(Value::Null);
    let mut value = json!({
        "name": p.name,
        "hook": p.hook,
        "version": p.version,
        "sha256": p.sha256,
        "size_bytes": p.size_bytes,
        "config": config,
        "enabled": p.enabled,
        "created_at_ms": p.created_at_ms,
        "created_by": p.created_by,
        "updated_at_ms": p.updated_at_ms,
        "updated_by": p.updated_by,
    });
    if !p.versions.is_empty() {
        value["versions"] = p
            .versions
            .iter()
            .map(|v| {
                json!({
                    "version": v.version,
                    "sha256": v.sha256,
                    "size_bytes": v.size_bytes,
                    "config": serde_json::from_str::<Value>(&v.config_json).unwrap_or(Value::Null),
                    "created_at_ms": v.created_at_ms,
                    "created_by": v.created_by,
                })
            })
            .collect();
    }
    value
}

/// A test result as JSON.
pub(crate) fn test_json(t: &pb::TestPolicyResponse) -> Value {
    let defaults: Value = if t.defaults_json.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&t.defaults_json).unwrap_or(Value::Null)
    };
    json!({
        "policy": t.policy,
        "hook": t.hook,
        "version": t.version,
        "decision": t.decision,
        "reasons": t.reasons,
        "warnings": t.warnings,
        "defaults": defaults,
        "elapsed_us": t.elapsed_us,
    })
}

pub(super) async fn list(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let list = api(cp)
        .list_policies(request(&headers, pb::ListPoliciesRequest {}))
        .await?
        .into_inner();
    Ok(Json(list.policies.iter().map(policy_json).collect()))
}

pub(super) async fn show(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let policy = api(cp)
        .get_policy(request(&headers, pb::GetPolicyRequest { name }))
        .await?
        .into_inner();
    Ok(Json(policy_json(&policy)))
}

/// `POST /api/v1/policies`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AddBody {
    name: String,
    hook: String,
    /// The module, base64 (standard alphabet, padded).
    wasm_base64: String,
    /// A JSON object; absent means `{}`.
    #[serde(default)]
    config: Option<Value>,
    #[serde(default)]
    replace: bool,
}

pub(super) async fn add(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Json(body): Json<AddBody>,
) -> Result<Json<Value>, ApiError> {
    let wasm = base64::engine::general_purpose::STANDARD
        .decode(body.wasm_base64.trim())
        .map_err(|e| {
            ApiError::from(tonic::Status::invalid_argument(format!(
                "wasm_base64 is not base64: {e}"
            )))
        })?;
    let policy = api(cp)
        .add_policy(request(
            &headers,
            pb::AddPolicyRequest {
                name: body.name,
                hook: body.hook,
                wasm,
                config_json: body.config.map(|c| c.to_string()).unwrap_or_default(),
                replace: body.replace,
            },
        ))
        .await?
        .into_inner();
    Ok(Json(policy_json(&policy)))
}

pub(super) async fn enable(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let policy = api(cp)
        .enable_policy(request(&headers, pb::EnablePolicyRequest { name }))
        .await?
        .into_inner();
    Ok(Json(policy_json(&policy)))
}

pub(super) async fn disable(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let policy = api(cp)
        .disable_policy(request(&headers, pb::DisablePolicyRequest { name }))
        .await?
        .into_inner();
    Ok(Json(policy_json(&policy)))
}

pub(super) async fn remove(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let policy = api(cp)
        .remove_policy(request(&headers, pb::RemovePolicyRequest { name }))
        .await?
        .into_inner();
    Ok(Json(policy_json(&policy)))
}

/// `POST /api/v1/policies/{name}/test` with the hook's input as the body.
pub(super) async fn test(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: String,
) -> Result<Json<Value>, ApiError> {
    let result = api(cp)
        .test_policy(request(
            &headers,
            pb::TestPolicyRequest {
                name,
                input_json: body,
            },
        ))
        .await?
        .into_inner();
    Ok(Json(test_json(&result)))
}
