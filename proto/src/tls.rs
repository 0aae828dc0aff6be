//! Client-side TLS for everything that dials the control plane's gRPC
//! listener: the agent (pinned CA at enrollment, then mutual TLS) and the CLI.
//!
//! The control plane's server certificate always carries the name
//! [`SERVER_NAME`], whatever address it is reached at; trust comes from the
//! CA (pinned by fingerprint or given as a certificate), never from the
//! system's web roots.

use crate::join::CaFingerprint;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::fmt;
use std::sync::{Arc, RwLock};
use tonic::transport::{Channel, Endpoint};

/// The DNS name every control-plane server certificate carries and every
/// client verifies, independent of the address it dialed.
pub const SERVER_NAME: &str = "control-plane.argosy.internal";

/// What the client trusts the server by.
#[derive(Clone, Debug)]
pub enum ServerTrust {
    /// Only a server whose chain contains a CA certificate with this
    /// SHA-256 fingerprint, and whose leaf that CA signed.
    Pinned(CaFingerprint),
    /// A server whose leaf this CA certificate signed.
    Ca(CertificateDer<'static>),
}

/// Why a TLS client could not be set up or connect.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("invalid PEM in {what}: {source}")]
    Pem {
        what: &'static str,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{what} holds no certificate")]
    NoCertificate { what: &'static str },
    #[error("the client certificate or key is unusable: {0}")]
    Identity(#[source] rustls::Error),
    #[error("could not build the TLS configuration: {0}")]
    Config(#[source] rustls::Error),
    #[error("invalid control-plane address {address:?}: {source}")]
    Address {
        address: String,
        #[source]
        source: tonic::transport::Error,
    },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses every certificate in a PEM document.
pub fn certificates_from_pem(
    pem: &[u8],
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem { what, source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what });
    }
    Ok(certs)
}

/// A client certificate that can be swapped while connections are being
/// made: renewed certificates take effect on the next connection, without a
/// restart.
pub struct ReloadableIdentity {
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for ReloadableIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReloadableIdentity")
    }
}

impl ReloadableIdentity {
    /// An identity from a PEM certificate chain and a PEM private key.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Arc<Self>, TlsError> {
        let key = Self::certified_key(chain_pem, key_pem)?;
        Ok(Arc::new(Self {
            current: RwLock::new(Arc::new(key)),
        }))
    }

    /// Replaces the certificate and key used by new connections.
    pub fn replace(&self, chain_pem: &[u8], key_pem: &[u8]) -> Result<(), TlsError> {
        let key = Arc::new(Self::certified_key(chain_pem, key_pem)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = key;
        Ok(())
    }

    fn certified_key(chain_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
        let chain = certificates_from_pem(chain_pem, "the client certificate")?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|source| TlsError::Pem {
            what: "the client key",
            source,
        })?;
        CertifiedKey::from_der(chain, key, &provider()).map_err(TlsError::Identity)
    }
}

impl ResolvesClientCert for ReloadableIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Verifies the server against a pinned or given CA.
#[derive(Debug)]
struct CaVerifier {
    trust: ServerTrust,
    algorithms: WebPkiSupportedAlgorithms,
}

impl CaVerifier {
    fn error(message: String) -> rustls::Error {
        rustls::Error::General(message)
    }

    fn verifier_for(
        &self,
        ca: CertificateDer<'static>,
    ) -> Result<Arc<WebPkiServerVerifier>, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).map_err(|e| {
            Self::error(format!(
                "the control plane's CA certificate is unusable: {e}"
            ))
        })?;
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| Self::error(format!("cannot verify against the control plane's CA: {e}")))
    }
}

impl ServerCertVerifier for CaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = match &self.trust {
            ServerTrust::Ca(ca) => ca.clone(),
            ServerTrust::Pinned(pin) => intermediates
                .iter()
                .find(|cert| CaFingerprint::of_der(cert) == *pin)
                .map(|cert| cert.clone().into_owned())
                .ok_or_else(|| {
                    Self::error(format!(
                        "the control plane's CA does not match the pinned fingerprint {pin}: \
                         this is not the control plane the join string was made for \
                         (or someone is in between); get a fresh join string from `argosy join-token create`"
                    ))
                })?,
        };
        self.verifier_for(ca)?
            .verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A rustls client configuration that trusts the server by `trust` and,
/// when given, presents `identity` for mutual TLS.
pub fn client_config(
    trust: ServerTrust,
    identity: Option<Arc<ReloadableIdentity>>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = Arc::new(CaVerifier {
        trust,
        algorithms: provider.signature_verification_algorithms,
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some(identity) => {
            let mut config = builder.with_client_cert_resolver(identity);
            // A resumed TLS session re-presents the certificate of the session
            // it resumes, not the current one: after a renewal the control
            // plane would still see the old (soon expired) certificate.
            // Always do a full handshake when presenting an identity.
            config.resumption = rustls::client::Resumption::disabled();
            config
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// A lazily connecting gRPC channel to `address` (`host:port`) over TLS
/// with `config`. Reconnects use the configuration's current identity.
pub fn channel(address: &str, config: Arc<rustls::ClientConfig>) -> Result<Channel, TlsError> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|source| TlsError::Address {
            address: address.to_owned(),
            source,
        })?
        .connect_timeout(std::time::Duration::from_secs(10))
        .http2_keep_alive_interval(std::time::Duration::from_secs(30))
        .keep_alive_timeout(std::time::Duration::from_secs(20))
        .keep_alive_while_idle(true);
    let address = address.to_owned();
    let connector = tokio_rustls::TlsConnector::from(config);
    let connect = tower::service_fn(move |_uri: http::Uri| {
        let address = address.clone();
        let connector = connector.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(&address).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(SERVER_NAME).map_err(std::io::Error::other)?;
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connect))
}

/// Renders an error and all its causes on one line, for messages people read.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
