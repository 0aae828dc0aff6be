//! The control plane's certificate authority: creates the CA on first start,
//! issues the gRPC server certificate, signs agents' CSRs into short-lived
//! client certificates bound to a host id, and reads host ids back from
//! presented certificates.

use argosy_proto::join::CaFingerprint;
use argosy_proto::tls::SERVER_NAME;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Why a certificate operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("could not generate a certificate: {0}")]
    Generate(#[source] rcgen::Error),
    #[error(
        "the stored CA is unreadable ({0}); restore the database from a backup or start with an empty one"
    )]
    BadCa(String),
    #[error(
        "the certificate signing request is invalid: {0}; the agent must send a PKCS#10 CSR in PEM"
    )]
    BadCsr(#[source] rcgen::Error),
    #[error("the client certificate is unreadable: {0}")]
    BadPeerCertificate(String),
    #[error("time {0} ms is out of range")]
    Time(i64),
}

/// The CA as stored (PEM certificate and PEM private key).
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredCa {
    pub certificate_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for StoredCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCa").finish_non_exhaustive()
    }
}

/// A certificate the CA signed.
#[derive(Debug, Clone)]
pub struct Issued {
    pub certificate_pem: String,
    pub serial_hex: String,
    pub not_after_ms: i64,
}

/// The loaded certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    certificate_pem: String,
    certificate_der: CertificateDer<'static>,
    fingerprint: CaFingerprint,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

fn datetime(ms: i64) -> Result<OffsetDateTime, PkiError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|_| PkiError::Time(ms))
}

fn random_serial() -> (SerialNumber, String) {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // no leading zero byte to strip
    (SerialNumber::from_slice(&bytes), hex::encode(bytes))
}

/// A new CA valid for ten years from `now_ms`.
pub fn generate_ca(now_ms: i64) -> Result<StoredCa, PkiError> {
    let key = KeyPair::generate().map_err(PkiError::Generate)?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "Argosy control-plane CA");
    name.push(DnType::OrganizationName, "Argosy");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = datetime(now_ms - 60_000)?;
    params.not_after = datetime(now_ms + 10 * 365 * 24 * 3_600_000)?;
    params.serial_number = Some(random_serial().0);
    let cert = params.self_signed(&key).map_err(PkiError::Generate)?;
    Ok(StoredCa {
        certificate_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

impl Ca {
    /// Loads a stored CA.
    pub fn load(stored: &StoredCa) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(&stored.key_pem).map_err(|e| PkiError::BadCa(e.to_string()))?;
        let certificate_der = CertificateDer::from_pem_slice(stored.certificate_pem.as_bytes())
            .map_err(|e| PkiError::BadCa(e.to_string()))?;
        let issuer = Issuer::from_ca_cert_der(&certificate_der, key)
            .map_err(|e| PkiError::BadCa(e.to_string()))?;
        Ok(Self {
            fingerprint: CaFingerprint::of_der(&certificate_der),
            issuer,
            certificate_pem: stored.certificate_pem.clone(),
            certificate_der,
        })
    }

    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    pub fn certificate_der(&self) -> &CertificateDer<'static> {
        &self.certificate_der
    }

    pub fn fingerprint(&self) -> CaFingerprint {
        self.fingerprint
    }

    /// A server certificate for the gRPC listener, valid for a year, with
    /// the fixed name every client verifies plus `extra_names` (DNS names or
    /// IP addresses). Returns (chain PEM: leaf then CA, key PEM).
    pub fn server_identity(
        &self,
        extra_names: &[String],
        now_ms: i64,
    ) -> Result<(String, String), PkiError> {
        let key = KeyPair::generate().map_err(PkiError::Generate)?;
        let mut names = vec![SERVER_NAME.to_owned()];
        names.extend(extra_names.iter().cloned());
        let mut params = CertificateParams::new(names).map_err(PkiError::Generate)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, SERVER_NAME);
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = datetime(now_ms - 60_000)?;
        params.not_after = datetime(now_ms + 365 * 24 * 3_600_000)?;
        params.serial_number = Some(random_serial().0);
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(PkiError::Generate)?;
        Ok((
            format!("{}{}", cert.pem(), self.certificate_pem),
            key.serialize_pem(),
        ))
    }

    /// Signs an agent's CSR into a client certificate for `host_id`, valid
    /// for `ttl_ms` from `now_ms`. The CSR contributes only its public key:
    /// the subject and extensions are the control plane's.
    pub fn sign_host_csr(
        &self,
        csr_pem: &str,
        host_id: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Issued, PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(PkiError::BadCsr)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host_id);
        dn.push(DnType::OrganizationName, "Argosy hosts");
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::URI(
            format!("urn:argosy:host:{host_id}")
                .try_into()
                .map_err(PkiError::Generate)?,
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let not_after_ms = now_ms + ttl_ms;
        params.not_before = datetime(now_ms - 60_000)?;
        params.not_after = datetime(not_after_ms)?;
        let (serial, serial_hex) = random_serial();
        params.serial_number = Some(serial);
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(PkiError::Generate)?;
        Ok(Issued {
            certificate_pem: cert.pem(),
            serial_hex,
            not_after_ms: (not_after_ms / 1000) * 1000,
        })
    }
}

/// The host id and serial of a client certificate the TLS layer already
/// verified against the CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerHost {
    pub host_id: String,
    pub serial_hex: String,
}

/// Reads the host id (common name) out of a verified client certificate.
pub fn peer_host(der: &[u8]) -> Result<PeerHost, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| PkiError::BadPeerCertificate(e.to_string()))?;
    let host_id = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or_else(|| PkiError::BadPeerCertificate("it names no host".into()))?
        .to_owned();
    Ok(PeerHost {
        host_id,
        serial_hex: hex::encode(cert.raw_serial()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn csr() -> (String, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let csr = CertificateParams::default()
            .serialize_request(&key)
            .unwrap();
        (csr.pem().unwrap(), key)
    }

    #[test]
    fn signs_a_csr_into_a_client_certificate_bound_to_the_host() {
        let ca = Ca::load(&generate_ca(NOW).unwrap()).unwrap();
        let (csr, _key) = csr();
        let issued = ca.sign_host_csr(&csr, "h-abc", NOW, 3_600_000).unwrap();
        assert_eq!(issued.not_after_ms, NOW + 3_600_000);
        let der = CertificateDer::from_pem_slice(issued.certificate_pem.as_bytes()).unwrap();
        let peer = peer_host(&der).unwrap();
        assert_eq!(peer.host_id, "h-abc");
        assert_eq!(peer.serial_hex, issued.serial_hex);
        // The certificate chains to the CA: webpki accepts it as a client cert.
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.certificate_der().clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let now = rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_millis(
            (NOW + 1000) as u64,
        ));
        verifier.verify_client_cert(&der, &[], now).unwrap();
        let later = rustls::pki_types::UnixTime::since_unix_epoch(
            std::time::Duration::from_millis((NOW + 3_700_000) as u64),
        );
        assert!(
            verifier.verify_client_cert(&der, &[], later).is_err(),
            "expired"
        );
    }

    #[test]
    fn another_ca_does_not_verify() {
        let ca = Ca::load(&generate_ca(NOW).unwrap()).unwrap();
        let other = Ca::load(&generate_ca(NOW).unwrap()).unwrap();
        assert_ne!(ca.fingerprint(), other.fingerprint());
        let (csr, _key) = csr();
        let issued = other.sign_host_csr(&csr, "h-x", NOW, 3_600_000).unwrap();
        let der = CertificateDer::from_pem_slice(issued.certificate_pem.as_bytes()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.certificate_der().clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let now = rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_millis(
            (NOW + 1000) as u64,
        ));
        assert!(verifier.verify_client_cert(&der, &[], now).is_err());
    }

    #[test]
    fn garbage_csr_is_refused_with_a_hint() {
        let ca = Ca::load(&generate_ca(NOW).unwrap()).unwrap();
        let err = ca.sign_host_csr("nope", "h", NOW, 1000).unwrap_err();
        assert!(err.to_string().contains("PKCS#10"), "{err}");
    }

    #[test]
    fn server_chain_carries_the_fixed_name_and_the_ca() {
        let ca = Ca::load(&generate_ca(NOW).unwrap()).unwrap();
        let (chain, _key) = ca.server_identity(&["127.0.0.1".into()], NOW).unwrap();
        let certs = argosy_proto::tls::certificates_from_pem(chain.as_bytes(), "chain").unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(CaFingerprint::of_der(&certs[1]), ca.fingerprint());
    }

    #[test]
    fn stored_ca_round_trips() {
        let stored = generate_ca(NOW).unwrap();
        let a = Ca::load(&stored).unwrap();
        let b = Ca::load(&stored).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert!(!format!("{stored:?}").contains("PRIVATE"));
    }
}
