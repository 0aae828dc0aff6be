//! Whether a secret holds a certificate an ingress can serve for a route:
//! PEM certificates (the server's first, then its chain) and the PEM
//! private key that matches the first, valid now and covering every
//! hostname of the route. Checked when a spec is applied, so a bad
//! certificate is refused with the reason instead of failing handshakes
//! on every agent. Pure (the time is a parameter).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Why a certificate secret cannot serve a route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate,
    #[error("holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC)")]
    NoKey,
    #[error("its certificate does not parse: {0}")]
    Unparsable(String),
    #[error("its private key cannot be used: {0}")]
    BadKey(String),
    #[error("its private key does not belong to its first certificate")]
    KeyMismatch,
    #[error("its certificate expired at {0}")]
    Expired(String),
    #[error("its certificate is not valid before {0}")]
    NotYetValid(String),
    #[error("its certificate does not cover {0} (it names {1})")]
    NotCovering(String, String),
}

/// Checks `pem` for `hostnames` at `now_unix` seconds.
pub fn check(pem: &[u8], hostnames: &[String], now_unix: i64) -> Result<(), CertificateError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| CertificateError::Unparsable(e.to_string()))?;
    let Some(first) = chain.first() else {
        return Err(CertificateError::NoCertificate);
    };
    let key = PrivateKeyDer::from_pem_slice(pem).map_err(|_| CertificateError::NoKey)?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| CertificateError::BadKey(e.to_string()))?;
    match rustls::sign::CertifiedKey::new(chain.clone(), signing).keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(CertificateError::KeyMismatch);
        }
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(other) => return Err(CertificateError::Unparsable(other.to_string())),
    }
    let (_, cert) = X509Certificate::from_der(first.as_ref())
        .map_err(|e| CertificateError::Unparsable(e.to_string()))?;
    let validity = cert.validity();
    if now_unix > validity.not_after.timestamp() {
        return Err(CertificateError::Expired(validity.not_after.to_string()));
    }
    if now_unix < validity.not_before.timestamp() {
        return Err(CertificateError::NotYetValid(
            validity.not_before.to_string(),
        ));
    }
    let names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    for host in hostnames {
        if !names.iter().any(|name| covers(name, host)) {
            let named = if names.is_empty() {
                "no DNS names".to_owned()
            } else {
                names.join(", ")
            };
            return Err(CertificateError::NotCovering(host.clone(), named));
        }
    }
    Ok(())
}

/// Whether certificate name `name` covers route hostname `host`: equal, or
/// a wildcard covering it (`*.example.com` covers `a.example.com` and the
/// route wildcard `*.example.com`, not `a.b.example.com`).
fn covers(name: &str, host: &str) -> bool {
    if name == host {
        return true;
    }
    match name.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .and_then(|label| label.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty() && !label.contains('.') && label != "*"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn hosts(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    /// A self-signed certificate for `names`, valid around `NOW`, with its key.
    fn pem_for(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        params.not_before = time::OffsetDateTime::from_unix_timestamp(NOW - 3600).unwrap();
        params.not_after = time::OffsetDateTime::from_unix_timestamp(NOW + 3600).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_matching_chain_and_key_covering_every_hostname_passes() {
        let (cert, key) = pem_for(&["web.example.com", "*.api.example.com"]);
        let pem = format!("{cert}{key}");
        let names = hosts(&["web.example.com", "v1.api.example.com", "*.api.example.com"]);
        assert_eq!(check(pem.as_bytes(), &names, NOW), Ok(()));
        // The key may come first.
        assert_eq!(
            check(format!("{key}{cert}").as_bytes(), &names, NOW),
            Ok(())
        );
    }

    #[test]
    fn missing_parts_are_named() {
        let (cert, key) = pem_for(&["web.example.com"]);
        let names = hosts(&["web.example.com"]);
        assert_eq!(
            check(b"hello", &names, NOW),
            Err(CertificateError::NoCertificate)
        );
        assert_eq!(
            check(key.as_bytes(), &names, NOW),
            Err(CertificateError::NoCertificate)
        );
        assert_eq!(
            check(cert.as_bytes(), &names, NOW),
            Err(CertificateError::NoKey)
        );
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let (cert, _) = pem_for(&["web.example.com"]);
        let (_, other_key) = pem_for(&["web.example.com"]);
        assert_eq!(
            check(
                format!("{cert}{other_key}").as_bytes(),
                &hosts(&["web.example.com"]),
                NOW
            ),
            Err(CertificateError::KeyMismatch)
        );
    }

    #[test]
    fn validity_is_checked_at_the_given_time() {
        let (cert, key) = pem_for(&["web.example.com"]);
        let pem = format!("{cert}{key}");
        let names = hosts(&["web.example.com"]);
        assert!(matches!(
            check(pem.as_bytes(), &names, NOW + 7200),
            Err(CertificateError::Expired(_))
        ));
        assert!(matches!(
            check(pem.as_bytes(), &names, NOW - 7200),
            Err(CertificateError::NotYetValid(_))
        ));
    }

    #[test]
    fn every_hostname_must_be_covered() {
        let (cert, key) = pem_for(&["web.example.com", "*.example.org"]);
        let pem = format!("{cert}{key}");
        assert_eq!(
            check(
                pem.as_bytes(),
                &hosts(&["web.example.com", "shop.example.net"]),
                NOW
            ),
            Err(CertificateError::NotCovering(
                "shop.example.net".to_owned(),
                "web.example.com, *.example.org".to_owned()
            ))
        );
        // A wildcard covers one label only.
        assert!(check(pem.as_bytes(), &hosts(&["a.b.example.org"]), NOW).is_err());
        assert!(check(pem.as_bytes(), &hosts(&["example.org"]), NOW).is_err());
        assert_eq!(
            check(pem.as_bytes(), &hosts(&["a.example.org"]), NOW),
            Ok(())
        );
    }
}
