//! The gRPC adapters (`argosy.v1`): thin translations between the wire and
//! the control plane's state, plus the router with server reflection and
//! the standard health service.

pub mod agent;
pub mod alerts;
pub mod audit;
pub mod backups;
pub mod deploy;
pub mod fleet;
pub mod policies;
pub mod routing;
pub mod secret_delivery;
pub mod secrets;
pub mod tokens;
pub mod users;

use crate::auth::{self, Action, Principal, Target};
use crate::state::{AuthError, ControlPlane};
use crate::store::StoreError;
use argosy_proto::v1::{
    agent_service_server::AgentServiceServer, api_token_service_server::ApiTokenServiceServer,
    audit_service_server::AuditServiceServer, deploy_service_server::DeployServiceServer,
    fleet_service_server::FleetServiceServer, join_token_service_server::JoinTokenServiceServer,
    key_service_server::KeyServiceServer, secret_service_server::SecretServiceServer,
    session_service_server::SessionServiceServer, user_service_server::UserServiceServer,
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
        AuthError::Audit(error) => Status::unavailable(error.to_string()),
        other => Status::unauthenticated(other.to_string()),
    }
}

/// The caller's address, set by the HTTP adapter on the requests it
/// forwards to the gRPC handlers (they have no connection of their own).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SourceAddr(pub std::net::SocketAddr);

/// Where a request came from, for the audit log.
pub(crate) fn source_of<T>(request: &Request<T>) -> String {
    request
        .extensions()
        .get::<SourceAddr>()
        .map(|s| s.0)
        .or_else(|| request.remote_addr())
        .map_or_else(|| "unknown".to_owned(), |addr| addr.to_string())
}

/// An authenticated caller, not yet authorized for anything: every API
/// handler goes through [`Caller::read`] or [`Caller::change`], which ask
/// the one pure decision `auth::authorize`.
pub(crate) struct Caller {
    principal: Principal,
    source: String,
}

impl Caller {
    pub(crate) fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Authorizes a read (not audited).
    pub(crate) fn read(&self, action: Action, target: Target<'_>) -> Result<&Principal, Status> {
        auth::authorize(&self.principal, action, target)
            .map_err(|denied| Status::permission_denied(denied.to_string()))?;
        Ok(&self.principal)
    }

    /// Checks the role alone, for requests whose target cannot be known
    /// (a spec that does not parse): invalid input is only explained to
    /// callers who could have acted on valid input.
    pub(crate) fn read_role(&self, action: Action) -> Result<&Principal, Status> {
        auth::authorize_role(&self.principal, action)
            .map_err(|denied| Status::permission_denied(denied.to_string()))?;
        Ok(&self.principal)
    }

    /// Authorizes a change (or a secret read) and audits it before it
    /// happens; refused if the record cannot be written. Call
    /// [`AuditedCall::finish`] with the result.
    pub(crate) async fn change(
        self,
        cp: &ControlPlane,
        action: Action,
        target: Target<'_>,
        event: &str,
        subject: &str,
    ) -> Result<AuditedCall, Status> {
        let started_seq = cp
            .authorize_change(
                &self.principal,
                &self.source,
                action,
                target,
                event,
                subject,
            )
            .await
            .map_err(auth_status)?;
        Ok(AuditedCall {
            principal: self.principal,
            source: self.source,
            event: event.to_owned(),
            subject: subject.to_owned(),
            started_seq,
        })
    }
}

/// An authorized, audited change in progress.
pub(crate) struct AuditedCall {
    pub principal: Principal,
    source: String,
    event: String,
    subject: String,
    started_seq: i64,
}

impl AuditedCall {
    /// Does the change, records its outcome, and answers with it: the one
    /// shape of every audited handler.
    pub(crate) async fn run<R>(
        self,
        cp: &ControlPlane,
        work: impl AsyncFnOnce(&Principal) -> Result<R, Status>,
    ) -> Result<tonic::Response<R>, Status> {
        let result = work(&self.principal).await;
        self.finish(cp, &result).await;
        result.map(tonic::Response::new)
    }

    /// Records the outcome of the change.
    pub(crate) async fn finish<R>(self, cp: &ControlPlane, result: &Result<R, Status>) {
        let outcome = match result {
            Ok(_) => Ok(()),
            Err(status) => Err(status.message()),
        };
        cp.record_outcome(
            &self.principal,
            &self.source,
            &self.event,
            &self.subject,
            self.started_seq,
            outcome,
        )
        .await;
    }
}

/// Authenticates the request's bearer token.
pub(crate) async fn caller<T>(cp: &ControlPlane, request: &Request<T>) -> Result<Caller, Status> {
    let header = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let principal = cp.authenticate(header).await.map_err(auth_status)?;
    Ok(Caller {
        principal,
        source: source_of(request),
    })
}

/// Authenticates and authorizes a read of the whole fleet (results are
/// filtered by the principal's scope by the handler).
pub(crate) async fn principal<T>(
    cp: &ControlPlane,
    request: &Request<T>,
    action: Action,
) -> Result<Principal, Status> {
    let caller = caller(cp, request).await?;
    caller.read(action, Target::Global)?;
    Ok(caller.principal)
}

/// Authenticates, authorizes and audits a change.
pub(crate) async fn begin<T>(
    cp: &ControlPlane,
    request: &Request<T>,
    action: Action,
    target: Target<'_>,
    event: &str,
    subject: &str,
) -> Result<AuditedCall, Status> {
    caller(cp, request)
        .await?
        .change(cp, action, target, event, subject)
        .await
}

/// The largest `AddPolicy` request: a module at the upload limit plus its
/// configuration (tonic's default of 4 MiB would refuse big modules with a
/// vaguer message than the upload check).
const POLICY_MESSAGE_BYTES: usize = 9 << 20;

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
            .set_serving::<AuditServiceServer<audit::AuditApi>>()
            .await;
        reporter
            .set_serving::<argosy_proto::v1::alert_service_server::AlertServiceServer<alerts::AlertApi>>()
            .await;
        reporter
            .set_serving::<argosy_proto::v1::backup_service_server::BackupServiceServer<backups::BackupApi>>()
            .await;
        reporter
            .set_serving::<ApiTokenServiceServer<tokens::ApiTokenApi>>()
            .await;
        reporter
            .set_serving::<SecretServiceServer<secrets::SecretApi>>()
            .await;
        reporter
            .set_serving::<KeyServiceServer<secrets::KeyApi>>()
            .await;
        reporter
            .set_serving::<UserServiceServer<users::UserApi>>()
            .await;
        reporter
            .set_serving::<argosy_proto::v1::policy_service_server::PolicyServiceServer<policies::PolicyApi>>()
            .await;
        reporter
            .set_serving::<SessionServiceServer<users::SessionApi>>()
            .await;
    });
    let mut routes = tonic::service::Routes::builder();
    routes
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(AgentServiceServer::new(agent::AgentApi { cp: cp.clone() }))
        .add_service(FleetServiceServer::new(fleet::FleetApi { cp: cp.clone() }))
        .add_service(AuditServiceServer::new(audit::AuditApi { cp: cp.clone() }))
        .add_service(
            argosy_proto::v1::alert_service_server::AlertServiceServer::new(alerts::AlertApi {
                cp: cp.clone(),
            }),
        )
        .add_service(
            argosy_proto::v1::backup_service_server::BackupServiceServer::new(backups::BackupApi {
                cp: cp.clone(),
            }),
        )
        .add_service(DeployServiceServer::new(deploy::DeployApi {
            cp: cp.clone(),
        }))
        .add_service(JoinTokenServiceServer::new(tokens::JoinTokenApi {
            cp: cp.clone(),
        }))
        .add_service(SecretServiceServer::new(secrets::SecretApi {
            cp: cp.clone(),
        }))
        .add_service(KeyServiceServer::new(secrets::KeyApi { cp: cp.clone() }))
        .add_service(
            argosy_proto::v1::policy_service_server::PolicyServiceServer::new(
                policies::PolicyApi { cp: cp.clone() },
            )
            .max_decoding_message_size(POLICY_MESSAGE_BYTES),
        )
        .add_service(UserServiceServer::new(users::UserApi { cp: cp.clone() }))
        .add_service(
            argosy_proto::v1::routing_service_server::RoutingServiceServer::new(
                routing::RoutingApi { cp: cp.clone() },
            ),
        )
        .add_service(SessionServiceServer::new(users::SessionApi {
            cp: cp.clone(),
        }))
        .add_service(ApiTokenServiceServer::new(tokens::ApiTokenApi { cp }));
    Ok(routes.routes())
}
