//! The HTTP listener (axum): JSON API for the dashboard and scripts, health
//! and readiness probes, Prometheus `/metrics`, the CA certificate, the
//! agent install script and the agent binaries it downloads.

pub(crate) mod alerts;
mod api;
mod audit;
mod backups;
mod dashboard;
mod deploy;
mod downloads;
pub(crate) mod policies;
mod prometheus;
mod routing;
mod secrets;
mod session;
mod tokens;
mod users;

use crate::state::{AuthError, ControlPlane};
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
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

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        use tonic::Code;
        let code = match status.code() {
            Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => StatusCode::CONFLICT,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(code, status.message().to_owned())
    }
}

/// The header the listener stamps with the peer's address (any value a
/// client sends is replaced), so forwarded calls can be audited with it.
const SOURCE_HEADER: &str = "x-argosy-source";

/// Replaces any client-sent source header with the connection's address.
async fn stamp_source(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    request.headers_mut().remove(SOURCE_HEADER);
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.to_string());
    if let Some(value) = peer.and_then(|p| p.parse().ok()) {
        request.headers_mut().insert(SOURCE_HEADER, value);
    }
    next.run(request).await
}

/// A gRPC request carrying the HTTP request's bearer token and source
/// address: the JSON API calls the gRPC handlers with it, so both
/// encodings share one implementation, one authorization and one audit.
pub(crate) fn grpc_request<T>(headers: &HeaderMap, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
    {
        request.metadata_mut().insert("authorization", value);
    }
    if let Some(addr) = headers
        .get(SOURCE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
    {
        request
            .extensions_mut()
            .insert(crate::grpc::SourceAddr(addr));
    }
    request
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
        .route("/", get(dashboard::index))
        .route("/assets/{name}", get(dashboard::asset))
        .route(
            session::SESSION_PATH,
            get(session::show)
                .post(session::create)
                .delete(session::remove),
        )
        .route(
            "/api/v1/tokens",
            get(tokens::list_tokens).post(tokens::create_token),
        )
        .route("/api/v1/tokens/{id}", delete(tokens::revoke_token))
        .route(
            "/api/v1/join-tokens",
            get(tokens::list_join_tokens).post(tokens::create_join_token),
        )
        .route(
            "/api/v1/join-tokens/{id}",
            delete(tokens::revoke_join_token),
        )
        .route("/api/v1/hosts/{id}/metrics/live", get(api::live_metrics))
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
        .route(
            "/api/v1/users",
            get(users::list_users).post(users::add_user),
        )
        .route("/api/v1/users/{name}", delete(users::remove_user))
        .route("/api/v1/users/{name}/password", post(users::set_password))
        .route("/api/v1/login", post(users::login))
        .route("/api/v1/logout", post(users::logout))
        .route("/api/v1/alerts", get(alerts::list_alerts))
        .route(
            "/api/v1/alerts/rules",
            get(alerts::list_rules).post(alerts::add_rule),
        )
        .route("/api/v1/alerts/rules/apply", post(alerts::apply_rules))
        .route(
            "/api/v1/alerts/rules/{name}",
            patch(alerts::update_rule).delete(alerts::remove_rule),
        )
        .route(
            "/api/v1/alerts/silences",
            get(alerts::list_silences).post(alerts::create_silence),
        )
        .route(
            "/api/v1/alerts/silences/{id}",
            delete(alerts::expire_silence),
        )
        .route(
            "/api/v1/alerts/channels",
            get(alerts::list_channels).post(alerts::add_channel),
        )
        .route(
            "/api/v1/alerts/channels/{name}",
            delete(alerts::remove_channel),
        )
        .route(
            "/api/v1/alerts/channels/{name}/test",
            post(alerts::test_channel),
        )
        .route("/api/v1/alerts/{id}", get(alerts::get_alert))
        .route("/api/v1/alerts/{id}/ack", post(alerts::acknowledge))
        .route(
            "/api/v1/policies",
            get(policies::list)
                .post(policies::add)
                .layer(axum::extract::DefaultBodyLimit::max(
                    policies::UPLOAD_BODY_BYTES,
                )),
        )
        .route(
            "/api/v1/policies/{name}",
            get(policies::show).delete(policies::remove),
        )
        .route("/api/v1/policies/{name}/enable", post(policies::enable))
        .route("/api/v1/policies/{name}/disable", post(policies::disable))
        .route("/api/v1/policies/{name}/test", post(policies::test))
        .route(
            "/api/v1/backups/policies",
            get(backups::list_policies).post(backups::apply_policy),
        )
        .route(
            "/api/v1/backups/policies/{name}",
            get(backups::get_policy).delete(backups::remove_policy),
        )
        .route("/api/v1/backups", get(backups::list_backups))
        .route("/api/v1/backups/run", post(backups::run))
        .route("/api/v1/backups/jobs", get(backups::list_jobs))
        .route("/api/v1/backups/jobs/{id}", get(backups::get_job))
        .route("/api/v1/backups/{id}", get(backups::get_backup))
        .route("/api/v1/backups/{id}/verify", post(backups::verify))
        .route("/api/v1/backups/{id}/restore", post(backups::restore))
        .route("/api/v1/routes", get(routing::list))
        .route("/api/v1/routes/{service}", get(routing::show))
        .route("/api/v1/audit", get(audit::list))
        .route("/api/v1/audit/verify", get(audit::verify))
        .route("/api/v1/secrets", get(secrets::list).post(secrets::set))
        .route(
            "/api/v1/secrets/{*path}",
            get(secrets::versions)
                .post(secrets::reveal)
                .delete(secrets::delete),
        )
        // Outermost first on the way in: the peer's address, then the
        // session cookie (as a bearer token, after the CSRF check).
        .layer(axum::middleware::from_fn(session::cookie_session))
        .layer(axum::middleware::from_fn(stamp_source))
        .layer(axum::middleware::from_fn(dashboard::security_headers))
        .layer(tower_http::compression::CompressionLayer::new())
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
