//! The ingress's TLS certificates: a route's certificate from a secret
//! (the PEM chain followed by the PEM private key) or made by the agent
//! (`self_signed`, with rcgen, for the route's hostnames), and the SNI
//! resolver rustls asks per handshake: exact hostname, then the wildcard
//! of its parent domain. The set is swapped whole when the table or a
//! certificate changes; handshakes in progress keep the one they got.

use super::routes::{request_host, wildcard_suffix};
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Why a route's certificate cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error(
        "secret {secret} holds no PEM certificate; store the certificate chain followed by the private key, both PEM"
    )]
    NoCertificate { secret: String },
    #[error(
        "secret {secret} holds no usable PEM private key ({reason}); store the certificate chain followed by its private key (PKCS#8, PKCS#1 or SEC1)"
    )]
    NoKey { secret: String, reason: String },
    #[error("cannot make a self-signed certificate for {hostnames}: {reason}")]
    SelfSigned { hostnames: String, reason: String },
}

/// Parses a secret's value: the PEM chain, then the PEM private key.
pub fn from_pem(secret: &str, pem: &[u8]) -> Result<CertifiedKey, CertError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(CertError::NoCertificate {
            secret: secret.to_owned(),
        });
    }
    let no_key = |reason: String| CertError::NoKey {
        secret: secret.to_owned(),
        reason,
    };
    let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| no_key(e.to_string()))?;
    let key = any_supported_type(&key).map_err(|e| no_key(e.to_string()))?;
    Ok(CertifiedKey::new(chain, key))
}

/// A certificate for `hostnames` signed by its own key.
pub fn self_signed(hostnames: &[String]) -> Result<CertifiedKey, CertError> {
    let failed = |reason: String| CertError::SelfSigned {
        hostnames: hostnames.join(", "),
        reason,
    };
    let made = rcgen::generate_simple_self_signed(hostnames.to_vec())
        .map_err(|e| failed(e.to_string()))?;
    let key = PrivateKeyDer::try_from(made.signing_key.serialize_der())
        .map_err(|e| failed(e.to_owned()))?;
    let key = any_supported_type(&key).map_err(|e| failed(e.to_string()))?;
    Ok(CertifiedKey::new(vec![made.cert.der().clone()], key))
}

/// The certificates by hostname the resolver answers from.
#[derive(Debug, Default, Clone)]
pub struct CertSet {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `example.com` for `*.example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl CertSet {
    /// Serves `key` for `hostname` (lowercase, maybe `*.`); the first
    /// route to name a hostname keeps it.
    pub fn insert(&mut self, hostname: &str, key: Arc<CertifiedKey>) {
        match hostname.strip_prefix("*.") {
            Some(suffix) => self.wildcard.entry(suffix.to_owned()).or_insert(key),
            None => self.exact.entry(hostname.to_owned()).or_insert(key),
        };
    }

    /// The certificate for an SNI name: exact, then wildcard.
    pub fn get(&self, server_name: &str) -> Option<&Arc<CertifiedKey>> {
        let host = request_host(server_name);
        self.exact
            .get(host.as_ref())
            .or_else(|| self.wildcard.get(wildcard_suffix(&host)?))
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }
}

/// Picks the route's certificate by SNI.
#[derive(Debug, Default)]
pub struct SniResolver {
    set: RwLock<Arc<CertSet>>,
}

impl SniResolver {
    pub fn replace(&self, set: CertSet) {
        *self
            .set
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(set);
    }

    fn current(&self) -> Arc<CertSet> {
        self.set
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = client_hello.server_name()?;
        let found = self.current().get(name).cloned();
        if found.is_none() {
            tracing::debug!(
                server_name = name,
                "no certificate for this TLS server name"
            );
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(key: &CertifiedKey) -> Vec<u8> {
        key.cert[0].to_vec()
    }

    #[test]
    fn self_signed_certificates_cover_their_hostnames() {
        let key = self_signed(&["a.example.com".into(), "*.example.org".into()]).unwrap();
        assert_eq!(key.cert.len(), 1);
        assert!(
            key.key
                .choose_scheme(&[rustls::SignatureScheme::ECDSA_NISTP256_SHA256])
                .is_some()
        );
    }

    #[test]
    fn a_secret_is_the_chain_then_the_key() {
        let made = rcgen::generate_simple_self_signed(vec!["s.example.com".to_owned()]).unwrap();
        let pem = format!("{}{}", made.cert.pem(), made.signing_key.serialize_pem());
        let key = from_pem("certs/s@1", pem.as_bytes()).unwrap();
        assert_eq!(names(&key), made.cert.der().to_vec());

        let err = from_pem("certs/s@1", made.signing_key.serialize_pem().as_bytes()).unwrap_err();
        assert!(matches!(err, CertError::NoCertificate { .. }), "{err}");
        let err = from_pem("certs/s@1", made.cert.pem().as_bytes()).unwrap_err();
        assert!(matches!(err, CertError::NoKey { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("secret certs/s@1 holds no usable PEM private key")
        );
    }

    #[test]
    fn sni_picks_the_exact_name_then_the_wildcard() {
        let exact = Arc::new(self_signed(&["a.example.com".into()]).unwrap());
        let wild = Arc::new(self_signed(&["*.example.com".into()]).unwrap());
        let mut set = CertSet::default();
        assert!(set.is_empty());
        set.insert("*.example.com", wild.clone());
        set.insert("a.example.com", exact.clone());
        set.insert("a.example.com", wild.clone());
        assert!(Arc::ptr_eq(set.get("a.example.com").unwrap(), &exact));
        assert!(Arc::ptr_eq(set.get("A.Example.com").unwrap(), &exact));
        assert!(Arc::ptr_eq(set.get("b.example.com").unwrap(), &wild));
        assert!(set.get("b.c.example.com").is_none());
        assert!(set.get("example.com").is_none());
    }
}
