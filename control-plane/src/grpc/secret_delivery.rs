//! Secret deliveries to agents: the answer to a `SecretRequest` on an
//! agent's session. Which versions the host may receive is the pure
//! [`secret_access::decide`]; this gathers the host's allocations, reads
//! the granted values from the secret store, and writes every grant and
//! every denial to the audit log (`secret.deliver`, actor `host:<id>`)
//! before anything is sent — a grant that cannot be audited is not
//! delivered. Logs name secrets and versions, never values.

use crate::audit::AuditEntry;
use crate::deploy::secret_access::{self, Access, Denial, HostSecrets};
use crate::deploy::secret_refs::VersionedSecret;
use crate::state::ControlPlane;
use argosy_proto::v1 as pb;
use zeroize::Zeroizing;

/// The audit log's name for a delivery.
pub const DELIVER_EVENT: &str = "secret.deliver";

/// Answers `request` from host `host_id`, connected from `source`.
pub(crate) async fn answer(
    cp: &ControlPlane,
    host_id: &str,
    source: &str,
    request: pb::SecretRequest,
) -> pb::SecretResponse {
    let requested: Vec<VersionedSecret> = request
        .refs
        .iter()
        .map(|r| VersionedSecret::new(&r.name, r.version))
        .collect();
    let host = match cp.deploy.host_secrets(host_id).await {
        Ok(mut host) => match cp.backups.host_secrets(host_id).await {
            Ok(jobs) => {
                for (job, secret) in jobs {
                    host.add(job.as_str(), [secret]);
                }
                Ok(host)
            }
            Err(error) => Err(error.to_string()),
        },
        Err(error) => Err(error.to_string()),
    };
    let decisions = match host {
        Ok(host) => secret_access::decide(&requested, &host),
        Err(error) => secret_access::decide(&requested, &HostSecrets::new(host_id))
            .into_iter()
            .map(|(secret, _)| {
                let denial = Denial::Unchecked {
                    host: host_id.to_owned(),
                    reason: error.clone(),
                };
                (secret, Access::Denied(denial))
            })
            .collect(),
    };
    let mut response = pb::SecretResponse::default();
    for (secret, access) in decisions {
        let outcome = match access {
            Access::Granted => read(cp, &secret).await,
            Access::Denied(denial) => Err(denial),
        };
        let recorded = match &outcome {
            Ok(_) => Access::Granted,
            Err(denial) => Access::Denied(denial.clone()),
        };
        let entry = AuditEntry {
            actor: format!("host:{host_id}"),
            source: source.to_owned(),
            action: DELIVER_EVENT.to_owned(),
            target: secret.to_string(),
            outcome: secret_access::audit_outcome(&recorded),
        };
        let audited = cp.audit.record(entry).await;
        let reference = Some(pb::SecretRef {
            name: secret.name.clone(),
            version: secret.version,
        });
        let denial = match (outcome, audited) {
            (Ok(value), Ok(_)) => {
                tracing::info!(host_id, secret = %secret, "secret delivered");
                response.values.push(pb::SecretValue {
                    secret: reference,
                    value: value.to_vec(),
                });
                continue;
            }
            (Ok(_), Err(error)) => {
                let denial = Denial::AuditUnavailable(error.to_string());
                tracing::error!(host_id, secret = %secret, reason = %denial, "secret not delivered");
                denial
            }
            (Err(denial), audited) => {
                if let Err(error) = audited {
                    tracing::error!(host_id, secret = %secret, %error, "a denied delivery could not be audited");
                }
                tracing::warn!(host_id, secret = %secret, reason = %denial, "secret delivery denied");
                denial
            }
        };
        response.denied.push(pb::SecretDenial {
            secret: reference,
            reason: denial.to_string(),
        });
    }
    response
}

/// The value of a granted version, or why it cannot be read (a corrupted
/// ciphertext fails this secret only).
async fn read(cp: &ControlPlane, secret: &VersionedSecret) -> Result<Zeroizing<Vec<u8>>, Denial> {
    cp.secrets
        .value(&secret.name, secret.version)
        .await
        .map(|value| value.bytes)
        .map_err(|error| Denial::Unreadable(error.to_string()))
}
