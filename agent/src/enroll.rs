//! Enrollment: a new ECDSA P-256 key and CSR, the `Enroll` call to a
//! control plane pinned by the join string's CA fingerprint, and the checks
//! on its answer before anything is saved.

use crate::connection::{self, describe};
use crate::state::{Identity, Stored};
use argosy_proto::join::{CaFingerprint, JoinString};
use argosy_proto::tls::{ReloadableIdentity, TlsError, certificates_from_pem};
use argosy_proto::v1::{EnrollRequest, Inventory};
use std::fmt;
use std::time::Duration;

/// A private key and a certificate signing request for it.
pub struct KeyAndCsr {
    pub key_pem: String,
    pub csr_pem: String,
}

impl fmt::Debug for KeyAndCsr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyAndCsr")
            .field("key_pem", &"<redacted>")
            .field("csr_pem", &self.csr_pem)
            .finish()
    }
}

/// Why enrollment failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("cannot generate a key and certificate request: {0}")]
    Key(#[from] rcgen::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot connect to the control plane at {address}: {detail}")]
    Unreachable { address: String, detail: String },
    #[error("the control plane at {address} did not answer within {}s", timeout.as_secs())]
    Timeout { address: String, timeout: Duration },
    #[error("the control plane refused to enroll this host: {message}")]
    Refused { code: tonic::Code, message: String },
    #[error("the control plane's enrollment answer is unusable: {0}")]
    BadAnswer(String),
}

/// A fresh ECDSA P-256 key and a CSR for it.
pub fn new_key_and_csr() -> Result<KeyAndCsr, rcgen::Error> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    // The control plane names the certificate after the host id it assigns;
    // the subject here is only a hint.
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "argosy-agent");
    let csr = params.serialize_request(&key)?;
    Ok(KeyAndCsr {
        key_pem: key.serialize_pem(),
        csr_pem: csr.pem()?,
    })
}

/// Redeems the join token: dials the join string's address trusting only
/// the pinned CA, sends a CSR with `inventory`, and checks the answer.
/// Nothing is written; the caller saves the returned state.
pub async fn enroll(
    join: &JoinString,
    inventory: Inventory,
    timeout: Duration,
    now_ms: impl Fn() -> i64,
) -> Result<Stored, EnrollError> {
    let key = new_key_and_csr()?;
    let mut client = connection::pinned_client(&join.address, join.ca_fingerprint)?;
    let request = EnrollRequest {
        join_token: join.token.clone(),
        csr_pem: key.csr_pem.clone(),
        inventory: Some(inventory),
    };
    let response = tokio::time::timeout(timeout, client.enroll(request))
        .await
        .map_err(|_| EnrollError::Timeout {
            address: join.address.clone(),
            timeout,
        })?
        .map_err(|status| {
            if connection::is_from_server(&status) {
                EnrollError::Refused {
                    code: status.code(),
                    message: describe(&status),
                }
            } else {
                EnrollError::Unreachable {
                    address: join.address.clone(),
                    detail: describe(&status),
                }
            }
        })?
        .into_inner();

    let ca = certificates_from_pem(
        response.ca_certificate_pem.as_bytes(),
        "the returned CA certificate",
    )
    .map_err(|e| EnrollError::BadAnswer(e.to_string()))?;
    if !ca
        .iter()
        .any(|cert| CaFingerprint::of_der(cert) == join.ca_fingerprint)
    {
        return Err(EnrollError::BadAnswer(format!(
            "the returned CA certificate is not the pinned {}",
            join.ca_fingerprint
        )));
    }
    // The certificate must be for our key.
    ReloadableIdentity::from_pem(response.certificate_pem.as_bytes(), key.key_pem.as_bytes())
        .map_err(|e| EnrollError::BadAnswer(e.to_string()))?;
    if response.host_id.is_empty() {
        return Err(EnrollError::BadAnswer("no host id".into()));
    }
    let issued_at_ms = now_ms();
    if response.not_after_ms <= issued_at_ms {
        return Err(EnrollError::BadAnswer(format!(
            "the certificate is already expired (not_after_ms {} <= now {issued_at_ms}); check this host's clock",
            response.not_after_ms
        )));
    }
    Ok(Stored {
        identity: Identity {
            host_id: response.host_id,
            address: join.address.clone(),
            ca_fingerprint: join.ca_fingerprint.to_string(),
            not_after_ms: response.not_after_ms,
            issued_at_ms,
            region: response.region,
            labels: response.labels.into_iter().collect(),
        },
        key_pem: key.key_pem,
        cert_pem: response.certificate_pem,
        ca_pem: response.ca_certificate_pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_a_p256_key_and_a_csr_for_it() {
        let made = new_key_and_csr().unwrap();
        assert!(made.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let params = rcgen::CertificateSigningRequestParams::from_pem(&made.csr_pem).unwrap();
        let key = rcgen::KeyPair::from_pem(&made.key_pem).unwrap();
        assert_eq!(key.algorithm(), &rcgen::PKCS_ECDSA_P256_SHA256);
        use rcgen::PublicKeyData as _;
        assert_eq!(params.public_key.der_bytes(), key.public_key_raw());
        // Two calls, two keys.
        assert_ne!(new_key_and_csr().unwrap().key_pem, made.key_pem);
        assert!(!format!("{made:?}").contains("PRIVATE KEY"));
    }
}
