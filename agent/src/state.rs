//! The state directory: the agent's private key, client certificate, the
//! control plane's CA and `identity.json`, written atomically with private
//! file modes so a crash or a reader never sees half a file.
//!
//! Layout: `key.pem` (0600), `cert.pem` (0600), `ca.pem` (0644),
//! `identity.json` (0600), in a directory created 0700.

use argosy_proto::join::CaFingerprint;
use argosy_proto::tls::certificates_from_pem;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const KEY: &str = "key.pem";
const CERT: &str = "cert.pem";
const CA: &str = "ca.pem";
const IDENTITY: &str = "identity.json";

/// What `identity.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The id the control plane gave this host at enrollment.
    pub host_id: String,
    /// `host:port` of the control plane's gRPC listener.
    pub address: String,
    /// `sha256:HEX` of the control plane's CA certificate.
    pub ca_fingerprint: String,
    /// When the current client certificate expires (Unix ms).
    pub not_after_ms: i64,
    /// When the current client certificate was received (Unix ms, agent clock).
    pub issued_at_ms: i64,
    pub region: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Everything in the state directory.
#[derive(Clone, PartialEq, Eq)]
pub struct Stored {
    pub identity: Identity,
    pub key_pem: String,
    pub cert_pem: String,
    pub ca_pem: String,
}

impl fmt::Debug for Stored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stored")
            .field("identity", &self.identity)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Why the state directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create the state directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not valid: {message}; delete the state directory and enroll again with a new join token"
    )]
    Corrupt { path: PathBuf, message: String },
}

/// The agent's state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// Opens the directory, creating it (and its parents) if needed. The
    /// directory itself is made 0700.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, StateError> {
        let path = path.into();
        let create_err = |source| StateError::CreateDir {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(create_err)?;
        }
        match fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => {}
            Err(e) => return Err(create_err(e)),
        }
        // Whoever created it, nobody else reads our key material.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).map_err(create_err)?;
        Ok(Self { path })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the directory holds an identity at all.
    pub fn has_identity(&self) -> bool {
        self.path.join(IDENTITY).exists()
    }

    /// Loads the stored identity, or `None` if the host never enrolled.
    pub fn load(&self) -> Result<Option<Stored>, StateError> {
        let identity_path = self.path.join(IDENTITY);
        let identity_text = match fs::read_to_string(&identity_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Read {
                    path: identity_path,
                    source,
                });
            }
        };
        let identity: Identity =
            serde_json::from_str(&identity_text).map_err(|e| StateError::Corrupt {
                path: identity_path.clone(),
                message: e.to_string(),
            })?;
        let read = |name: &str| {
            let path = self.path.join(name);
            fs::read_to_string(&path).map_err(|source| StateError::Read { path, source })
        };
        let stored = Stored {
            key_pem: read(KEY)?,
            cert_pem: read(CERT)?,
            ca_pem: read(CA)?,
            identity,
        };
        let expected: CaFingerprint =
            stored
                .identity
                .ca_fingerprint
                .parse()
                .map_err(|_| StateError::Corrupt {
                    path: identity_path.clone(),
                    message: "ca_fingerprint is not sha256:HEX".into(),
                })?;
        let ca_path = self.path.join(CA);
        let ca = certificates_from_pem(stored.ca_pem.as_bytes(), "ca.pem").map_err(|e| {
            StateError::Corrupt {
                path: ca_path.clone(),
                message: e.to_string(),
            }
        })?;
        if CaFingerprint::of_der(&ca[0]) != expected {
            return Err(StateError::Corrupt {
                path: ca_path,
                message: format!("its fingerprint is not {expected} as identity.json says"),
            });
        }
        Ok(Some(stored))
    }

    /// Saves a fresh enrollment: every file.
    pub fn save(&self, stored: &Stored) -> Result<(), StateError> {
        self.write_atomic(CA, stored.ca_pem.as_bytes(), 0o644)?;
        self.save_certificate(&stored.identity, &stored.key_pem, &stored.cert_pem)
    }

    /// Saves a renewed key and certificate and the identity that records
    /// their dates. Both PEM files are fully written before either replaces
    /// its predecessor, so the window in which they do not match is a
    /// rename.
    pub fn save_certificate(
        &self,
        identity: &Identity,
        key_pem: &str,
        cert_pem: &str,
    ) -> Result<(), StateError> {
        let key_tmp = self.write_temp(KEY, key_pem.as_bytes(), 0o600)?;
        let cert_tmp = self.write_temp(CERT, cert_pem.as_bytes(), 0o600)?;
        self.commit(&key_tmp, KEY)?;
        self.commit(&cert_tmp, CERT)?;
        let json = serde_json::to_vec_pretty(identity).map_err(|e| StateError::Write {
            path: self.path.join(IDENTITY),
            source: std::io::Error::other(e),
        })?;
        self.write_atomic(IDENTITY, &json, 0o600)?;
        self.sync_dir();
        Ok(())
    }

    fn write_atomic(&self, name: &str, contents: &[u8], mode: u32) -> Result<(), StateError> {
        let tmp = self.write_temp(name, contents, mode)?;
        self.commit(&tmp, name)?;
        self.sync_dir();
        Ok(())
    }

    fn write_temp(&self, name: &str, contents: &[u8], mode: u32) -> Result<PathBuf, StateError> {
        let tmp = self.path.join(format!(".{name}.tmp"));
        let write_err = |source| StateError::Write {
            path: tmp.clone(),
            source,
        };
        // A leftover from a crash may have other permissions: start afresh.
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(write_err(e)),
        }
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(write_err)?;
        // The umask may have narrowed the mode; make it exact.
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(write_err)?;
        file.write_all(contents).map_err(write_err)?;
        file.sync_all().map_err(write_err)?;
        Ok(tmp)
    }

    fn commit(&self, tmp: &Path, name: &str) -> Result<(), StateError> {
        let path = self.path.join(name);
        fs::rename(tmp, &path).map_err(|source| StateError::Write { path, source })
    }

    fn sync_dir(&self) {
        // Makes the renames durable; best effort (not every filesystem allows it).
        if let Ok(dir) = fs::File::open(&self.path) {
            let _ = dir.sync_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn sample_stored() -> Stored {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key).unwrap();
        Stored {
            identity: Identity {
                host_id: "h-123".into(),
                address: "cp.example:7443".into(),
                ca_fingerprint: CaFingerprint::of_der(ca.der()).to_string(),
                not_after_ms: 2_000,
                issued_at_ms: 1_000,
                region: "eu-west".into(),
                labels: BTreeMap::from([("role".into(), "db".into())]),
            },
            key_pem: "-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n".into(),
            cert_pem: "-----BEGIN CERTIFICATE-----\ncert\n-----END CERTIFICATE-----\n".into(),
            ca_pem: ca.pem(),
        }
    }

    #[test]
    fn round_trips_with_private_modes() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("nested").join("state");
        let state = StateDir::open(&path).unwrap();
        assert_eq!(mode(&path), 0o700);
        assert!(!state.has_identity());
        assert_eq!(state.load().unwrap(), None);

        let stored = sample_stored();
        state.save(&stored).unwrap();
        assert!(state.has_identity());
        assert_eq!(state.load().unwrap(), Some(stored.clone()));
        assert_eq!(mode(&path.join("key.pem")), 0o600);
        assert_eq!(mode(&path.join("cert.pem")), 0o600);
        assert_eq!(mode(&path.join("identity.json")), 0o600);
        assert_eq!(mode(&path.join("ca.pem")), 0o644);
        // No temporary file is left behind.
        let names: Vec<String> = fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 4, "{names:?}");

        // identity.json is plain JSON with the documented fields.
        let json: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(path.join("identity.json")).unwrap()).unwrap();
        for field in [
            "host_id",
            "address",
            "ca_fingerprint",
            "not_after_ms",
            "issued_at_ms",
            "region",
            "labels",
        ] {
            assert!(json.get(field).is_some(), "{field} missing from {json}");
        }
    }

    #[test]
    fn renewal_replaces_key_certificate_and_dates() {
        let root = tempfile::tempdir().unwrap();
        let state = StateDir::open(root.path().join("s")).unwrap();
        let stored = sample_stored();
        state.save(&stored).unwrap();
        let mut identity = stored.identity.clone();
        identity.not_after_ms = 9_000;
        identity.issued_at_ms = 8_000;
        state
            .save_certificate(&identity, "new key", "new cert")
            .unwrap();
        let loaded = state.load().unwrap().unwrap();
        assert_eq!(loaded.identity, identity);
        assert_eq!(loaded.key_pem, "new key");
        assert_eq!(loaded.cert_pem, "new cert");
        assert_eq!(loaded.ca_pem, stored.ca_pem);
        assert_eq!(mode(&state.path().join("key.pem")), 0o600);
    }

    #[test]
    fn an_existing_directory_is_tightened_to_0700() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("s");
        fs::create_dir(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        StateDir::open(&path).unwrap();
        assert_eq!(mode(&path), 0o700);
    }

    #[test]
    fn a_stale_temp_file_with_loose_mode_is_not_reused() {
        let root = tempfile::tempdir().unwrap();
        let state = StateDir::open(root.path().join("s")).unwrap();
        let stale = state.path().join(".key.pem.tmp");
        fs::write(&stale, "old").unwrap();
        fs::set_permissions(&stale, fs::Permissions::from_mode(0o666)).unwrap();
        state.save(&sample_stored()).unwrap();
        assert_eq!(mode(&state.path().join("key.pem")), 0o600);
    }

    #[test]
    fn corruption_is_reported_with_what_to_do() {
        let root = tempfile::tempdir().unwrap();
        let state = StateDir::open(root.path().join("s")).unwrap();
        let stored = sample_stored();
        state.save(&stored).unwrap();

        fs::write(state.path().join("identity.json"), "{").unwrap();
        let err = state.load().unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("enroll again"), "{err}");

        // A CA that does not match the recorded fingerprint is refused.
        let mut other = sample_stored();
        other.identity = stored.identity.clone();
        state.save(&other).unwrap();
        let err = state.load().unwrap_err();
        assert!(err.to_string().contains("fingerprint"), "{err}");

        // A missing key is an error, not "not enrolled".
        state.save(&stored).unwrap();
        fs::remove_file(state.path().join("key.pem")).unwrap();
        assert!(matches!(state.load(), Err(StateError::Read { .. })));
    }

    #[test]
    fn debug_hides_the_key() {
        let stored = sample_stored();
        assert!(!format!("{stored:?}").contains("BEGIN PRIVATE KEY"));
    }
}
