//! `SecretService` and `KeyService`: the secret API over gRPC (and, through
//! `http::secrets`, over JSON). Thin: every rule is `crypto::vault` or
//! `crypto::keyring`; this adapter authorizes, audits and translates.
//!
//! Every change and every read of a value is audited before it happens
//! (`secret.set`, `secret.rotate`, `secret.delete`, `secret.read`,
//! `keys.rotate_master`) and refused if its record cannot be written.
//! Listings are reads, filtered by the caller's scope, and never carry a
//! value.

use crate::auth::{Action, Target};
use crate::crypto::{RotateError, RotationRequest, SecretError, SecretText, SetMode};
use crate::grpc::{Caller, caller, store_status};
use crate::state::ControlPlane;
use crate::store::{SecretRow, SecretVersionRow};
use argosy_proto::v1::{
    self as pb, key_service_server::KeyService, secret_service_server::SecretService,
};
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct SecretApi {
    pub cp: Arc<ControlPlane>,
}

pub struct KeyApi {
    pub cp: Arc<ControlPlane>,
}

/// A secret failure as a status the caller can act on.
pub(crate) fn secret_status(error: SecretError) -> Status {
    match error {
        SecretError::Store(error) => store_status(error),
        SecretError::Missing(_) | SecretError::VersionMissing { .. } => {
            Status::not_found(error.to_string())
        }
        SecretError::Undecryptable { .. } | SecretError::UnknownMasterKey { .. } => {
            Status::data_loss(error.to_string())
        }
        SecretError::Crypto(_) => Status::internal(error.to_string()),
        error if error.is_invalid_input() => Status::invalid_argument(error.to_string()),
        error => Status::internal(error.to_string()),
    }
}

fn rotate_status(error: RotateError) -> Status {
    match error {
        RotateError::Store(error) => store_status(error),
        RotateError::Refused(_) | RotateError::SameKey(_) => {
            Status::invalid_argument(error.to_string())
        }
        RotateError::Undecryptable { .. } => Status::failed_precondition(error.to_string()),
        error => {
            tracing::error!(%error, "master key rotation failed");
            Status::internal(error.to_string())
        }
    }
}

fn secret_wire(row: SecretRow) -> pb::SecretInfo {
    pb::SecretInfo {
        name: row.name,
        latest_version: row.latest_version,
        versions_kept: row.versions_kept,
        created_at_ms: row.created_at_ms,
        created_by: row.created_by,
        updated_at_ms: row.updated_at_ms,
        updated_by: row.updated_by,
    }
}

fn version_wire(row: SecretVersionRow) -> pb::SecretVersionInfo {
    pb::SecretVersionInfo {
        version: row.version,
        created_at_ms: row.created_at_ms,
        created_by: row.created_by,
        master_key_id: row.master_key_id,
    }
}

/// Refuses a malformed name before anything is audited under it (a value
/// pasted into the name field must not land in the audit log), but only
/// for callers whose role could have taken the action.
fn checked_name(caller: &Caller, action: Action, name: &str) -> Result<(), Status> {
    if let Err(error) = crate::crypto::vault::validate_name(name) {
        caller.read_role(action)?;
        return Err(secret_status(error));
    }
    Ok(())
}

#[tonic::async_trait]
impl SecretService for SecretApi {
    async fn set_secret(
        &self,
        request: Request<pb::SetSecretRequest>,
    ) -> Result<Response<pb::SetSecretResponse>, Status> {
        let caller = caller(&self.cp, &request).await?;
        let r = request.into_inner();
        checked_name(&caller, Action::WriteSecrets, &r.name)?;
        let (event, mode) = if r.expect_existing {
            ("secret.rotate", SetMode::ExistingOnly)
        } else {
            ("secret.set", SetMode::CreateOrAdd)
        };
        let call = caller
            .change(
                &self.cp,
                Action::WriteSecrets,
                Target::Secret(&r.name),
                event,
                &r.name,
            )
            .await?;
        let value = zeroize::Zeroizing::new(r.value);
        call.run(&self.cp, async |principal| {
            self.cp
                .secrets
                .set(&r.name, &value, mode, &principal.actor())
                .await
                .map(|set| pb::SetSecretResponse {
                    name: set.name,
                    version: set.version,
                    created: set.created,
                    pruned_versions: set.pruned,
                })
                .map_err(secret_status)
        })
        .await
    }

    async fn list_secrets(
        &self,
        request: Request<pb::ListSecretsRequest>,
    ) -> Result<Response<pb::ListSecretsResponse>, Status> {
        let caller = caller(&self.cp, &request).await?;
        let principal = caller.read(Action::ReadSecrets, Target::Global)?;
        let secrets = self
            .cp
            .secrets
            .list()
            .await
            .map_err(secret_status)?
            .into_iter()
            .filter(|row| principal.scope.allows_name(&row.name))
            .map(secret_wire)
            .collect();
        Ok(Response::new(pb::ListSecretsResponse { secrets }))
    }

    async fn get_secret(
        &self,
        request: Request<pb::GetSecretRequest>,
    ) -> Result<Response<pb::GetSecretResponse>, Status> {
        let caller = caller(&self.cp, &request).await?;
        let r = request.into_inner();
        checked_name(&caller, Action::RevealSecret, &r.name)?;
        let subject = match r.version {
            0 => r.name.clone(),
            version => format!("{}@{version}", r.name),
        };
        let call = caller
            .change(
                &self.cp,
                Action::RevealSecret,
                Target::Secret(&r.name),
                "secret.read",
                &subject,
            )
            .await?;
        let value = match r.version {
            0 => self.cp.secrets.latest_value(&r.name).await,
            version => self.cp.secrets.value(&r.name, version).await,
        };
        call.run(&self.cp, async |_| {
            value
                .map(|value| pb::GetSecretResponse {
                    name: value.name.clone(),
                    version: value.version,
                    value: value.bytes.to_vec(),
                })
                .map_err(secret_status)
        })
        .await
    }

    async fn delete_secret(
        &self,
        request: Request<pb::DeleteSecretRequest>,
    ) -> Result<Response<pb::DeleteSecretResponse>, Status> {
        let caller = caller(&self.cp, &request).await?;
        let r = request.into_inner();
        checked_name(&caller, Action::WriteSecrets, &r.name)?;
        let call = caller
            .change(
                &self.cp,
                Action::WriteSecrets,
                Target::Secret(&r.name),
                "secret.delete",
                &r.name,
            )
            .await?;
        call.run(&self.cp, async |principal| {
            self.cp
                .secrets
                .delete(&r.name, &principal.actor())
                .await
                .map(|versions_deleted| pb::DeleteSecretResponse {
                    name: r.name.clone(),
                    versions_deleted,
                })
                .map_err(secret_status)
        })
        .await
    }

    async fn list_secret_versions(
        &self,
        request: Request<pb::ListSecretVersionsRequest>,
    ) -> Result<Response<pb::ListSecretVersionsResponse>, Status> {
        let caller = caller(&self.cp, &request).await?;
        let r = request.into_inner();
        checked_name(&caller, Action::ReadSecrets, &r.name)?;
        caller.read(Action::ReadSecrets, Target::Secret(&r.name))?;
        let versions = self
            .cp
            .secrets
            .versions(&r.name)
            .await
            .map_err(secret_status)?
            .into_iter()
            .map(version_wire)
            .collect();
        Ok(Response::new(pb::ListSecretVersionsResponse {
            name: r.name,
            versions,
        }))
    }
}

fn given(text: String) -> Option<SecretText> {
    (!text.is_empty()).then(|| SecretText::new(text))
}

#[tonic::async_trait]
impl KeyService for KeyApi {
    async fn rotate_master_key(
        &self,
        request: Request<pb::RotateMasterKeyRequest>,
    ) -> Result<Response<pb::RotateMasterKeyResponse>, Status> {
        let caller = caller(&self.cp, &request).await?;
        let r = request.into_inner();
        let rotation = RotationRequest {
            new_master_key: given(r.new_master_key_base64),
            new_passphrase: given(r.new_passphrase),
        };
        let call = caller
            .change(
                &self.cp,
                Action::RotateMasterKey,
                Target::Global,
                "keys.rotate_master",
                "master key",
            )
            .await?;
        call.run(&self.cp, async |_| {
            self.cp
                .secrets
                .rotate_master_key(rotation)
                .await
                .map(|rotated| pb::RotateMasterKeyResponse {
                    old_key_id: rotated.old_key_id.to_string(),
                    new_key_id: rotated.new_key_id.to_string(),
                    data_keys_rewrapped: rotated.data_keys_rewrapped,
                    source: source_name(rotated.source).to_owned(),
                    next_step: rotated.next_step,
                })
                .map_err(rotate_status)
        })
        .await
    }
}

fn source_name(source: crate::crypto::SourceKind) -> &'static str {
    match source {
        crate::crypto::SourceKind::KeyFile => "key-file",
        crate::crypto::SourceKind::MasterKey => "master-key",
        crate::crypto::SourceKind::Passphrase => "passphrase",
    }
}
