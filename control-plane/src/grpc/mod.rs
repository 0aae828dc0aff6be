//! The gRPC adapters (`argosy.v1`): thin translations between the wire and
//! the control plane's state, plus the router with server reflection and
//! the standard health service.

pub mod agent;
pub mod deploy;
pub mod fleet;
pub mod tokens;

use crate::auth::{Action, Principal};
use crate::state::{AuthError, ControlPlane};
use crate::store::StoreError;
use argosy_proto::v1::{
    agent_service_server::AgentServiceServer, api_token_service_server::ApiTokenServiceServer,
    deploy_service_server::DeployServiceServer, fleet_service_server::FleetServiceServer,
    join_token_service_server::JoinTokenServiceServer,
};
use std::sync::Arc;
use tonic::{Request, Status};

/// A store failure as a gRPC status the caller can act on.
pub(crate) fn store_status(error: StoreError) -> Status {
    tracing::error!(%error, "store failure");
    Status::unavailable(format!(
        "the control plane's store is unavailable: {error}; retry shortly"
    ))
}

pub(crate) fn auth_status(error: AuthError) -> Status {
    match error {
        AuthError::Denied(denied) => Status::permission_denied(denied.to_string()),
        AuthError::Store(error) => store_status(error),
        other => Status::unauthenticated(other.to_string()),
    }
}

/// Authenticates the request's bearer token and authorizes `action`.
pub(crate) async fn principal<T>(
    cp: &ControlPlane,
    request: &Request<T>,
    action: Action,
) -> Result<Principal, Status> {
    let header = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    cp.authenticate(header, action).await.map_err(auth_status)
}

/// Every gRPC service the control plane serves, with reflection and health.
pub fn routes(
    cp: Arc<ControlPlane>,
) -> Result<tonic::service::Routes, tonic_reflection::server::Error> {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(argosy_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(argosy_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let (reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(async move {
        reporter
            .set_serving::<FleetServiceServer<fleet::FleetApi>>()
            .await;
        reporter
            .set_serving::<AgentServiceServer<agent::AgentApi>>()
            .await;
        reporter
            .set_serving::<JoinTokenServiceServer<tokens::JoinTokenApi>>()
            .await;
        reporter
            .set_serving::<ApiTokenServiceServer<tokens::ApiTokenApi>>()
            .await;
    });
    let mut routes = tonic::service::Routes::builder();
    routes
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(AgentServiceServer::new(agent::AgentApi { cp: cp.clone() }))
        .add_service(FleetServiceServer::new(fleet::FleetApi { cp: cp.clone() }))
        .add_service(DeployServiceServer::new(deploy::DeployApi {
            cp: cp.clone(),
        }))
        .add_service(JoinTokenServiceServer::new(tokens::JoinTokenApi {
            cp: cp.clone(),
        }))
        .add_service(ApiTokenServiceServer::new(tokens::ApiTokenApi { cp }));
    Ok(routes.routes())
}
