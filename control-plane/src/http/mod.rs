//! The HTTP listener (axum): JSON API for the dashboard and scripts, health
//! and readiness probes, Prometheus `/metrics`, the CA certificate, the
//! agent install script and the agent binaries it downloads.

mod api;
mod deploy;
mod downloads;
mod prometheus;

use crate::state::{AuthError, ControlPlane};
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;

/// The one error type of the HTTP layer: what the caller can act on goes in
/// the body; internals stay in the trace.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        let status = match &error {
            AuthError::Denied(_) => StatusCode::FORBIDDEN,
            AuthError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        };
        Self::new(status, error.to_string())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        tracing::error!(%error, "store failure");
        match error {
            crate::store::StoreError::InvalidQuery(message) => {
                Self::bad_request(message.to_string())
            }
            other => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the control plane's store is unavailable: {other}; retry shortly"),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

/// The HTTP router.
pub fn router(cp: Arc<ControlPlane>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(prometheus::metrics))
        .route("/ca.pem", get(ca_pem))
        .route("/install.sh", get(downloads::install_script))
        .route("/downloads/{file}", get(downloads::download))
        .route("/api/v1/hosts", get(api::list_hosts))
        .route("/api/v1/hosts/{id}", get(api::get_host))
        .route("/api/v1/hosts/{id}/metrics", get(api::host_metrics))
        .route(
            "/api/v1/services",
            get(deploy::list_services).post(deploy::apply),
        )
        .route("/api/v1/services/{name}", get(deploy::get_service))
        .route(
            "/api/v1/services/{name}/revisions",
            get(deploy::list_revisions),
        )
        .route("/api/v1/services/{name}/rollback", post(deploy::rollback))
        .route("/api/v1/services/{name}/scale", post(deploy::scale))
        .route("/api/v1/services/{name}/stop", post(deploy::stop))
        .route("/api/v1/deployments", get(deploy::list_deployments))
        .route("/api/v1/deployments/{id}", get(deploy::get_deployment))
        .route("/api/v1/deployments/{id}/{action}", post(deploy::command))
        .with_state(cp)
}

async fn readyz(axum::extract::State(cp): axum::extract::State<Arc<ControlPlane>>) -> Response {
    match cp.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: the store is unavailable: {error}\n"),
        )
            .into_response(),
    }
}

async fn ca_pem(axum::extract::State(cp): axum::extract::State<Arc<ControlPlane>>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/x-pem-file")],
        cp.ca.certificate_pem().to_owned(),
    )
        .into_response()
}
