//! How the agent dials the control plane: over TLS with the pinned CA for
//! enrollment, and over mutual TLS with its own (renewable) certificate for
//! everything else. Also turns gRPC statuses into text people can act on.

use argosy_proto::join::CaFingerprint;
use argosy_proto::tls::{self, ReloadableIdentity, ServerTrust, TlsError, error_chain};
use argosy_proto::v1::agent_service_client::AgentServiceClient;
use std::error::Error as _;
use std::sync::Arc;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// A client for the enrollment call: no client certificate, and the server
/// must present a chain holding the CA with `fingerprint`.
pub fn pinned_client(
    address: &str,
    fingerprint: CaFingerprint,
) -> Result<AgentServiceClient<Channel>, TlsError> {
    let config = tls::client_config(ServerTrust::Pinned(fingerprint), None)?;
    Ok(AgentServiceClient::new(tls::channel(address, config)?))
}

/// The agent's mutual-TLS connection settings. Every [`Connection::client`]
/// dials afresh, with whatever certificate the identity holds at that
/// moment, so a renewed certificate is used from the next call on.
#[derive(Clone, Debug)]
pub struct Connection {
    address: String,
    identity: Arc<ReloadableIdentity>,
    config: Arc<rustls::ClientConfig>,
}

impl Connection {
    /// Mutual TLS to `address`, trusting the CA in `ca_pem`, presenting the
    /// certificate `cert_pem` with key `key_pem`.
    pub fn new(
        address: &str,
        ca_pem: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<Self, TlsError> {
        let ca =
            tls::certificates_from_pem(ca_pem.as_bytes(), "the control plane's CA certificate")?
                .swap_remove(0);
        let identity = ReloadableIdentity::from_pem(cert_pem.as_bytes(), key_pem.as_bytes())?;
        // client_config turns TLS session resumption off when an identity is
        // given, so a renewed certificate is presented from the next dial on.
        let config = tls::client_config(ServerTrust::Ca(ca), Some(identity.clone()))?;
        Ok(Self {
            address: address.to_owned(),
            identity,
            config,
        })
    }

    /// `host:port` of the control plane.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// A client on a new, lazily connecting channel.
    pub fn client(&self) -> Result<AgentServiceClient<Channel>, TlsError> {
        Ok(AgentServiceClient::new(tls::channel(
            &self.address,
            self.config.clone(),
        )?))
    }

    /// Uses a new certificate and key for the connections made from now on.
    pub fn replace_identity(&self, cert_pem: &str, key_pem: &str) -> Result<(), TlsError> {
        self.identity
            .replace(cert_pem.as_bytes(), key_pem.as_bytes())
    }
}

/// A gRPC status as a person reads it: the server's own message when the
/// server answered, the whole cause chain (TLS errors included) when the
/// call never reached it.
pub fn describe(status: &Status) -> String {
    match status.source() {
        Some(source) => error_chain(source),
        None if status.message().is_empty() => status.code().description().to_owned(),
        None => status.message().to_owned(),
    }
}

/// Whether the control plane (not the network) answered with `status`.
pub fn is_from_server(status: &Status) -> bool {
    status.source().is_none()
}

/// Whether `status` says this host's identity is refused (revoked, unknown
/// or expired certificate).
pub fn is_refusal(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::PermissionDenied | Code::Unauthenticated
    )
}

/// Whether a failure text says the control plane refused this host's
/// certificate during the TLS handshake (a TLS alert about the
/// certificate), rather than the network failing.
pub fn is_certificate_alert(text: &str) -> bool {
    const ALERTS: &[&str] = &[
        "CertificateRevoked",
        "CertificateExpired",
        "BadCertificate",
        "CertificateUnknown",
        "UnknownCA",
        "AccessDenied",
        "CertificateRequired",
    ];
    text.contains("alert") && ALERTS.iter().any(|alert| text.contains(alert))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_alerts_are_told_from_network_failures() {
        assert!(is_certificate_alert(
            "transport error: received fatal alert: CertificateRevoked"
        ));
        assert!(is_certificate_alert("received fatal alert: BadCertificate"));
        assert!(!is_certificate_alert(
            "tcp connect error: Connection refused"
        ));
        assert!(!is_certificate_alert(
            "received fatal alert: HandshakeFailure"
        ));
    }

    #[test]
    fn statuses_from_the_server_show_its_message() {
        let status = Status::permission_denied("host h-1 is revoked");
        assert!(is_from_server(&status));
        assert!(is_refusal(&status));
        assert_eq!(describe(&status), "host h-1 is revoked");
        assert_eq!(describe(&Status::unknown("")), Code::Unknown.description());
        assert!(!is_refusal(&Status::unavailable("down")));
    }
}
