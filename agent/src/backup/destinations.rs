//! Where artifacts are stored: a directory on the host, or an
//! S3-compatible bucket. Both hold the same layout —
//! `<dir or prefix>/<policy>/<backup_id>.argosy` and
//! `<policy>/<backup_id>.manifest.json` beside it — and both are written so
//! that nothing half-written can pass for a backup:
//!
//! - a directory write goes to `<id>.argosy.partial` (0600), is fsynced,
//!   renamed and the directory fsynced; a failed one removes the partial
//!   file;
//! - an S3 write is a multipart upload (parts of at most 16 MiB, at most
//!   [`PARTS_IN_FLIGHT`] uploading at once) that is completed only when the
//!   whole artifact is in; a failed one is aborted, so no object exists
//!   under the artifact's key. The upload id is journaled by the caller
//!   ([`Upload::in_flight`]) so that an upload a crash interrupted can be
//!   aborted after the restart ([`abort_in_flight`]).
//!
//! Errors say which destination, what failed and what to do; they never
//! contain a credential.

use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStoreExt as _, PutPayload, RetryConfig};
use serde::{Deserialize, Serialize};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

/// How many S3 parts upload at once, per destination.
pub const PARTS_IN_FLIGHT: usize = 2;
/// S3 allows at most this many parts in one upload.
const MAX_PARTS: usize = 10_000;
/// Parts are this big for the first [`SMALL_PARTS`] parts (40 GB)…
const SMALL_PART: usize = 8 * 1024 * 1024;
const SMALL_PARTS: usize = 5_000;
/// …and this big after that, up to 120 GB in all.
const LARGE_PART: usize = 16 * 1024 * 1024;
/// How much a read of a stored artifact asks for at once.
const READ_CHUNK: usize = 256 * 1024;

/// The artifact of `backup_id` under `policy`, relative to a destination.
pub fn artifact_name(policy: &str, backup_id: &str) -> String {
    format!("{policy}/{backup_id}.argosy")
}

/// The manifest beside it.
pub fn manifest_name(policy: &str, backup_id: &str) -> String {
    format!("{policy}/{backup_id}.manifest.json")
}

/// The size of S3 part `index` (0-based): 8 MiB, then 16 MiB past part
/// 5,000, so one artifact may reach 120 GB within S3's 10,000 parts.
pub fn part_size(index: usize) -> usize {
    if index < SMALL_PARTS {
        SMALL_PART
    } else {
        LARGE_PART
    }
}

/// The most bytes one multipart upload of this agent can hold.
pub fn max_artifact_bytes() -> u64 {
    (SMALL_PARTS * SMALL_PART + (MAX_PARTS - SMALL_PARTS) * LARGE_PART) as u64
}

/// A secret named by a destination: name and version, never the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretName {
    pub name: String,
    pub version: u32,
}

impl std::fmt::Display for SecretName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// An S3 destination as the policy states it (credentials by name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Spec {
    /// `https://…` (or `http://` on loopback); empty: AWS for `region`.
    pub endpoint: String,
    pub bucket: String,
    pub prefix: String,
    pub region: String,
    pub access_key_id: SecretName,
    pub secret_access_key: SecretName,
}

impl S3Spec {
    /// The object key of `name` (an [`artifact_name`] or [`manifest_name`]).
    pub fn key(&self, name: &str) -> String {
        let prefix = self.prefix.trim_matches('/');
        if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        }
    }

    /// `s3://bucket/key` of `name`.
    pub fn location(&self, name: &str) -> String {
        self.location_of_key(&self.key(name))
    }

    fn location_of_key(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    fn endpoint_text(&self) -> String {
        if self.endpoint.is_empty() {
            format!("AWS S3 ({})", self.region_or_default())
        } else {
            self.endpoint.clone()
        }
    }

    fn region_or_default(&self) -> &str {
        if self.region.is_empty() {
            "us-east-1"
        } else {
            &self.region
        }
    }
}

/// The values of an S3 destination's credentials.
pub struct S3Credentials {
    pub access_key_id: Zeroizing<String>,
    pub secret_access_key: Zeroizing<String>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("S3Credentials(<redacted>)")
    }
}

/// What went wrong with a destination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    #[error("destination {destination}: {reason}")]
    Invalid { destination: String, reason: String },
    #[error(
        "destination {destination}: the filesystem holding {dir} is full ({written} bytes of the artifact were written); free space there or point the destination at a larger disk"
    )]
    DiskFull {
        destination: String,
        dir: String,
        written: u64,
    },
    #[error("destination {destination}: cannot {action} {path}: {reason}")]
    File {
        destination: String,
        action: &'static str,
        path: String,
        reason: String,
    },
    #[error(
        "destination {destination}: bucket {bucket} does not exist at {endpoint}; create it, or correct `bucket:` in the policy"
    )]
    NoBucket {
        destination: String,
        bucket: String,
        endpoint: String,
    },
    #[error(
        "destination {destination}: {endpoint} refuses the credentials from secrets {secrets} ({reason}); store a valid access key pair with write access to bucket {bucket} in those secrets"
    )]
    Credentials {
        destination: String,
        endpoint: String,
        bucket: String,
        /// `key-id@1 and secret-key@2`.
        secrets: String,
        reason: String,
    },
    #[error(
        "destination {destination}: cannot reach the S3 endpoint {endpoint} ({reason}); check the endpoint address and that this host can reach it"
    )]
    Unreachable {
        destination: String,
        endpoint: String,
        reason: String,
    },
    #[error("destination {destination}: S3 {action} of {location} failed: {reason}")]
    S3 {
        destination: String,
        action: &'static str,
        location: String,
        reason: String,
    },
    #[error(
        "destination {destination}: the artifact is larger than {max} bytes, the most one S3 multipart upload of this agent holds"
    )]
    TooLarge { destination: String, max: u64 },
}

/// Whether `name` can be one path component (a policy name, a backup id).
fn is_plain_component(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !name.starts_with('.')
}

/// Checks the parts of an artifact's name before they become a path or key.
pub fn check_names(
    destination: &str,
    policy: &str,
    backup_id: &str,
) -> Result<(), DestinationError> {
    for (what, value) in [("policy", policy), ("backup id", backup_id)] {
        if !is_plain_component(value) {
            return Err(DestinationError::Invalid {
                destination: destination.to_owned(),
                reason: format!("{what} {value:?} cannot name a file or object"),
            });
        }
    }
    Ok(())
}

/// Whether a plain-HTTP endpoint may be used: only on loopback, where
/// nothing crosses a network.
pub fn check_endpoint(destination: &str, endpoint: &str) -> Result<bool, DestinationError> {
    if endpoint.is_empty() {
        return Ok(false);
    }
    let invalid = |reason: String| DestinationError::Invalid {
        destination: destination.to_owned(),
        reason,
    };
    let url = url::Url::parse(endpoint)
        .map_err(|e| invalid(format!("S3 endpoint {endpoint:?} is not a URL: {e}")))?;
    match url.scheme() {
        "https" => Ok(false),
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
                None => false,
            };
            if loopback {
                Ok(true)
            } else {
                Err(invalid(format!(
                    "S3 endpoint {endpoint} is plain http on a network address: credentials and backups would cross the network unencrypted; use https:// (http is accepted only on loopback)"
                )))
            }
        }
        other => Err(invalid(format!(
            "S3 endpoint {endpoint} has scheme {other:?}; use https://"
        ))),
    }
}

/// Where one destination stores artifacts.
pub enum Destination {
    Dir { name: String, root: PathBuf },
    S3(Box<S3Destination>),
}

/// An S3 destination with its client.
pub struct S3Destination {
    name: String,
    spec: S3Spec,
    store: Arc<AmazonS3>,
    /// For scrubbing error texts; never shown.
    secret: Zeroizing<String>,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir { name, root } => f
                .debug_struct("Dir")
                .field("name", name)
                .field("root", root)
                .finish(),
            Self::S3(s3) => f
                .debug_struct("S3")
                .field("name", &s3.name)
                .field("spec", &s3.spec)
                .finish_non_exhaustive(),
        }
    }
}

impl Destination {
    /// A directory destination; the path must be absolute.
    pub fn dir(name: &str, path: &str) -> Result<Self, DestinationError> {
        let root = PathBuf::from(path);
        if !root.is_absolute() {
            return Err(DestinationError::Invalid {
                destination: name.to_owned(),
                reason: format!("dir {path:?} is not an absolute path"),
            });
        }
        Ok(Self::Dir {
            name: name.to_owned(),
            root,
        })
    }

    /// An S3 destination with the credentials' values.
    pub fn s3(
        name: &str,
        spec: S3Spec,
        credentials: S3Credentials,
    ) -> Result<Self, DestinationError> {
        S3Destination::new(name, spec, credentials).map(|s3| Self::S3(Box::new(s3)))
    }

    /// The destination's name in the policy.
    pub fn name(&self) -> &str {
        match self {
            Self::Dir { name, .. } => name,
            Self::S3(s3) => &s3.name,
        }
    }

    /// Whether this is a directory (read first when restoring).
    pub fn is_dir(&self) -> bool {
        matches!(self, Self::Dir { .. })
    }

    /// Where `name` is stored: a file path or `s3://bucket/key`.
    pub fn location(&self, name: &str) -> String {
        match self {
            Self::Dir { root, .. } => root.join(name).display().to_string(),
            Self::S3(s3) => s3.spec.location(name),
        }
    }

    /// Starts writing the artifact of `backup_id`.
    pub async fn begin(&self, policy: &str, backup_id: &str) -> Result<Upload, DestinationError> {
        check_names(self.name(), policy, backup_id)?;
        let name = artifact_name(policy, backup_id);
        match self {
            Self::Dir { name: dest, root } => {
                let dir = root.join(policy);
                let file_error = |action, path: &Path, e: std::io::Error| DestinationError::File {
                    destination: dest.clone(),
                    action,
                    path: path.display().to_string(),
                    reason: e.to_string(),
                };
                let builder = {
                    let mut builder = std::fs::DirBuilder::new();
                    builder.recursive(true).mode(0o700);
                    builder
                };
                let created = dir.clone();
                tokio::task::spawn_blocking(move || builder.create(&created))
                    .await
                    .map_err(|e| file_error("create", &dir, std::io::Error::other(e)))?
                    .map_err(|e| file_error("create", &dir, e))?;
                let path = root.join(&name);
                let partial = partial_path(&path);
                let file = tokio::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&partial)
                    .await
                    .map_err(|e| file_error("create", &partial, e))?;
                Ok(Upload::File(FileUpload {
                    destination: dest.clone(),
                    file: Some(file),
                    dir,
                    partial,
                    path,
                    written: 0,
                }))
            }
            Self::S3(s3) => {
                let key = s3.spec.key(&name);
                let path = s3.object_path(&key)?;
                let id = s3
                    .store
                    .create_multipart(&path)
                    .await
                    .map_err(|e| s3.error("upload", &key, &e))?;
                Ok(Upload::Multipart(MultipartUpload {
                    destination: s3.name.clone(),
                    spec: s3.spec.clone(),
                    store: s3.store.clone(),
                    secret: s3.secret.clone(),
                    key,
                    path,
                    id,
                    buffer: Vec::new(),
                    parts: Vec::new(),
                    uploading: std::collections::VecDeque::new(),
                    next_part: 0,
                    written: 0,
                }))
            }
        }
    }

    /// Writes `contents` (a manifest) as `name`, whole or not at all.
    pub async fn put_small(&self, name: &str, contents: Bytes) -> Result<String, DestinationError> {
        match self {
            Self::Dir { name: dest, root } => {
                let path = root.join(name);
                let written = path.clone();
                tokio::task::spawn_blocking(move || {
                    write_file_atomically(&written, &contents, 0o600)
                })
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r)
                .map_err(|e| dir_write_error(dest, &path, 0, e))?;
                Ok(path.display().to_string())
            }
            Self::S3(s3) => {
                let key = s3.spec.key(name);
                let path = s3.object_path(&key)?;
                s3.store
                    .put(&path, PutPayload::from(contents))
                    .await
                    .map_err(|e| s3.error("upload", &key, &e))?;
                Ok(s3.spec.location(name))
            }
        }
    }

    /// Reads the artifact of `backup_id`; `None` when this destination
    /// does not have it.
    pub async fn open(
        &self,
        policy: &str,
        backup_id: &str,
    ) -> Result<Option<Stored>, DestinationError> {
        check_names(self.name(), policy, backup_id)?;
        let name = artifact_name(policy, backup_id);
        match self {
            Self::Dir { name: dest, root } => {
                let path = root.join(&name);
                let file = match tokio::fs::File::open(&path).await {
                    Ok(file) => file,
                    Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(read_error(dest, &path, e)),
                };
                let size = file
                    .metadata()
                    .await
                    .map_err(|e| read_error(dest, &path, e))?
                    .len();
                let dest = dest.clone();
                let bytes = futures_util::stream::unfold(Some(file), move |file| {
                    let dest = dest.clone();
                    let path = path.clone();
                    async move {
                        let mut file = file?;
                        let mut buffer = Vec::with_capacity(READ_CHUNK);
                        match (&mut file)
                            .take(READ_CHUNK as u64)
                            .read_to_end(&mut buffer)
                            .await
                        {
                            Ok(0) => None,
                            Ok(_) => Some((Ok(Bytes::from(buffer)), Some(file))),
                            Err(e) => Some((Err(read_error(&dest, &path, e)), None)),
                        }
                    }
                })
                .boxed();
                Ok(Some(Stored { size, bytes }))
            }
            Self::S3(s3) => {
                let key = s3.spec.key(&name);
                let path = s3.object_path(&key)?;
                let result = match s3.store.get(&path).await {
                    Ok(result) => result,
                    Err(object_store::Error::NotFound { source, .. })
                        if !chain(source.as_ref()).contains("NoSuchBucket") =>
                    {
                        return Ok(None);
                    }
                    Err(e) => return Err(s3.error("download", &key, &e)),
                };
                let size = result.meta.size;
                let s3 = S3Errors {
                    destination: s3.name.clone(),
                    spec: s3.spec.clone(),
                    secret: s3.secret.clone(),
                };
                let bytes = result
                    .into_stream()
                    .map(move |chunk| chunk.map_err(|e| s3.error("download", &key, &e)))
                    .boxed();
                Ok(Some(Stored { size, bytes }))
            }
        }
    }

    /// Deletes the artifact and manifest of `backup_id` (and a leftover
    /// partial file); what is already gone is fine.
    pub async fn delete(&self, policy: &str, backup_id: &str) -> Result<(), DestinationError> {
        check_names(self.name(), policy, backup_id)?;
        let names = [
            artifact_name(policy, backup_id),
            manifest_name(policy, backup_id),
        ];
        match self {
            Self::Dir { name: dest, root } => {
                let artifact = root.join(&names[0]);
                let paths = [partial_path(&artifact), artifact, root.join(&names[1])];
                for path in paths {
                    match tokio::fs::remove_file(&path).await {
                        Ok(()) => {}
                        Err(e) if e.kind() == ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(DestinationError::File {
                                destination: dest.clone(),
                                action: "delete",
                                path: path.display().to_string(),
                                reason: e.to_string(),
                            });
                        }
                    }
                }
                Ok(())
            }
            Self::S3(s3) => {
                for name in &names {
                    let key = s3.spec.key(name);
                    let path = s3.object_path(&key)?;
                    match s3.store.delete(&path).await {
                        Ok(()) => {}
                        Err(object_store::Error::NotFound { source, .. })
                            if !chain(source.as_ref()).contains("NoSuchBucket") => {}
                        Err(e) => return Err(s3.error("delete", &key, &e)),
                    }
                }
                Ok(())
            }
        }
    }
}

impl S3Destination {
    /// A client for `spec` with the credentials' values.
    fn new(name: &str, spec: S3Spec, credentials: S3Credentials) -> Result<Self, DestinationError> {
        let allow_http = check_endpoint(name, &spec.endpoint)?;
        if spec.bucket.is_empty() {
            return Err(DestinationError::Invalid {
                destination: name.to_owned(),
                reason: "the S3 bucket is empty".into(),
            });
        }
        let client = ClientOptions::new()
            .with_allow_http(allow_http)
            .with_connect_timeout(Duration::from_secs(10))
            // A 16 MiB part over a slow uplink.
            .with_timeout(Duration::from_secs(600));
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 3,
            retry_timeout: Duration::from_secs(60),
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&spec.bucket)
            .with_region(spec.region_or_default())
            .with_access_key_id(credentials.access_key_id.as_str())
            .with_secret_access_key(credentials.secret_access_key.as_str())
            .with_virtual_hosted_style_request(false)
            .with_client_options(client)
            .with_retry(retry);
        if !spec.endpoint.is_empty() {
            builder = builder.with_endpoint(&spec.endpoint);
        }
        let store = builder.build().map_err(|e| DestinationError::Invalid {
            destination: name.to_owned(),
            reason: format!(
                "the S3 settings are not usable: {}",
                scrub(&chain(&e), &credentials.secret_access_key)
            ),
        })?;
        Ok(S3Destination {
            name: name.to_owned(),
            spec,
            store: Arc::new(store),
            secret: credentials.secret_access_key,
        })
    }

    fn object_path(&self, key: &str) -> Result<ObjectPath, DestinationError> {
        ObjectPath::parse(key).map_err(|e| DestinationError::Invalid {
            destination: self.name.clone(),
            reason: format!("{key:?} is not a valid object key: {e}"),
        })
    }

    fn error(
        &self,
        action: &'static str,
        key: &str,
        error: &object_store::Error,
    ) -> DestinationError {
        S3Errors {
            destination: self.name.clone(),
            spec: self.spec.clone(),
            secret: self.secret.clone(),
        }
        .error(action, key, error)
    }
}

/// What is needed to describe an S3 failure.
struct S3Errors {
    destination: String,
    spec: S3Spec,
    secret: Zeroizing<String>,
}

impl S3Errors {
    fn error(
        &self,
        action: &'static str,
        key: &str,
        error: &object_store::Error,
    ) -> DestinationError {
        let reason = scrub(&chain(error), &self.secret);
        let problem = match error {
            object_store::Error::NotFound { .. } if reason.contains("NoSuchBucket") => {
                S3Problem::NoBucket
            }
            // A 403 is not always the keys: S3 says which in its error
            // code (a full quota is `QuotaExceeded`, also a 403).
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
                if s3_code(&reason).is_none() =>
            {
                S3Problem::Credentials
            }
            _ => classify_s3(&reason),
        };
        describe_s3(problem, &self.destination, &self.spec, action, key, reason)
    }
}

/// What kind of S3 failure an error text shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Problem {
    NoBucket,
    Credentials,
    Unreachable,
    Other,
}

/// Sorts an S3 error text (the error and its causes) into what the user
/// has to fix.
pub fn classify_s3(text: &str) -> S3Problem {
    const CREDENTIAL_CODES: [&str; 6] = [
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "InvalidToken",
        "ExpiredToken",
        "InvalidSecurity",
    ];
    // The error code, when S3 sent one, says what is wrong; the HTTP
    // status alone (403 is also a full quota) only when it did not.
    if let Some(code) = s3_code(text) {
        return if code == "NoSuchBucket" {
            S3Problem::NoBucket
        } else if CREDENTIAL_CODES.contains(&code.as_str()) {
            S3Problem::Credentials
        } else {
            S3Problem::Other
        };
    }
    const CREDENTIALS: [&str; 4] = [
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "403 Forbidden",
        "401 Unauthorized",
    ];
    const UNREACHABLE: [&str; 7] = [
        "error sending request",
        "Connection refused",
        "connection refused",
        "dns error",
        "failed to lookup address",
        "timed out",
        "tcp connect error",
    ];
    if text.contains("NoSuchBucket") {
        S3Problem::NoBucket
    } else if CREDENTIALS.iter().any(|c| text.contains(c)) {
        S3Problem::Credentials
    } else if UNREACHABLE.iter().any(|c| text.contains(c)) {
        S3Problem::Unreachable
    } else {
        S3Problem::Other
    }
}

fn describe_s3(
    problem: S3Problem,
    destination: &str,
    spec: &S3Spec,
    action: &'static str,
    key: &str,
    reason: String,
) -> DestinationError {
    let destination = destination.to_owned();
    let endpoint = spec.endpoint_text();
    match problem {
        S3Problem::NoBucket => DestinationError::NoBucket {
            destination,
            bucket: spec.bucket.clone(),
            endpoint,
        },
        S3Problem::Credentials => DestinationError::Credentials {
            destination,
            endpoint,
            bucket: spec.bucket.clone(),
            secrets: format!("{} and {}", spec.access_key_id, spec.secret_access_key),
            reason: short(&reason),
        },
        S3Problem::Unreachable => DestinationError::Unreachable {
            destination,
            endpoint,
            reason: short(&reason),
        },
        S3Problem::Other => DestinationError::S3 {
            destination,
            action,
            location: format!("s3://{}/{key}", spec.bucket),
            reason: short(&reason),
        },
    }
}

/// The `<Code>` of an S3 error document in `text`, if there is one.
fn s3_code(text: &str) -> Option<String> {
    let start = text.find("<Code>")? + "<Code>".len();
    let end = text[start..].find("</Code>")? + start;
    Some(text[start..end].trim().to_owned()).filter(|code| !code.is_empty())
}

/// The S3 error code and message when the text has them, else the text
/// cut to a readable length.
fn short(text: &str) -> String {
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{name}>"))? + start;
        Some(text[start..end].to_owned())
    };
    match (tag("Code"), tag("Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        _ if text.chars().count() > 400 => text.chars().take(400).collect::<String>() + "…",
        _ => text.to_owned(),
    }
}

/// An error and its causes, each once.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

/// `text` without `secret` in it.
fn scrub(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_owned()
    } else {
        text.replace(secret, "<redacted>")
    }
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".partial");
    path.with_file_name(name)
}

fn is_disk_full(error: &std::io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    matches!(
        error.kind(),
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded
    ) || matches!(error.raw_os_error(), Some(ENOSPC | EDQUOT))
}

fn dir_write_error(
    destination: &str,
    path: &Path,
    written: u64,
    error: std::io::Error,
) -> DestinationError {
    if is_disk_full(&error) {
        DestinationError::DiskFull {
            destination: destination.to_owned(),
            dir: path.parent().unwrap_or(path).display().to_string(),
            written,
        }
    } else {
        DestinationError::File {
            destination: destination.to_owned(),
            action: "write",
            path: path.display().to_string(),
            reason: error.to_string(),
        }
    }
}

fn read_error(destination: &str, path: &Path, error: std::io::Error) -> DestinationError {
    DestinationError::File {
        destination: destination.to_owned(),
        action: "read",
        path: path.display().to_string(),
        reason: error.to_string(),
    }
}

/// Writes `contents` to `path` through `<name>.partial`: written with
/// `mode`, fsynced, renamed over `path`, directory fsynced.
pub fn write_file_atomically(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write as _;
    let partial = partial_path(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&partial)?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    drop(file);
    if let Err(error) = written.and_then(|()| std::fs::rename(&partial, path)) {
        let _ = std::fs::remove_file(&partial);
        return Err(error);
    }
    sync_dir(path.parent());
    Ok(())
}

fn sync_dir(dir: Option<&Path>) {
    // Makes a rename durable; best effort (not every filesystem allows it).
    if let Some(dir) = dir
        && let Ok(handle) = std::fs::File::open(dir)
    {
        let _ = handle.sync_all();
    }
}

/// A stored artifact being read.
pub struct Stored {
    /// Its size as stored.
    pub size: u64,
    pub bytes: BoxStream<'static, Result<Bytes, DestinationError>>,
}

/// What a crash could leave behind of an upload, for the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InFlight {
    /// A `.partial` file.
    File { destination: String, path: PathBuf },
    /// A multipart upload not completed.
    Multipart {
        destination: String,
        spec: S3Spec,
        key: String,
        upload_id: String,
    },
}

impl InFlight {
    /// The S3 credentials needed to clean this up, if any.
    pub fn secrets(&self) -> Vec<&SecretName> {
        match self {
            Self::File { .. } => Vec::new(),
            Self::Multipart { spec, .. } => vec![&spec.access_key_id, &spec.secret_access_key],
        }
    }

    /// Describes it for a log line or a report.
    pub fn describe(&self) -> String {
        match self {
            Self::File { path, .. } => path.display().to_string(),
            Self::Multipart {
                spec,
                key,
                upload_id,
                ..
            } => format!("multipart upload {upload_id} of s3://{}/{key}", spec.bucket),
        }
    }
}

/// Removes what an interrupted upload left: the partial file, or the
/// multipart upload (with `credentials`, which S3 needs).
pub async fn abort_in_flight(
    in_flight: &InFlight,
    credentials: Option<S3Credentials>,
) -> Result<(), DestinationError> {
    match in_flight {
        InFlight::File { destination, path } => match tokio::fs::remove_file(path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(DestinationError::File {
                destination: destination.clone(),
                action: "remove",
                path: path.display().to_string(),
                reason: e.to_string(),
            }),
        },
        InFlight::Multipart {
            destination,
            spec,
            key,
            upload_id,
        } => {
            let credentials = credentials.ok_or_else(|| DestinationError::Invalid {
                destination: destination.clone(),
                reason: format!(
                    "the credentials to abort {} are not available",
                    in_flight.describe()
                ),
            })?;
            let s3 = S3Destination::new(destination, spec.clone(), credentials)?;
            let path = s3.object_path(key)?;
            match s3.store.abort_multipart(&path, upload_id).await {
                Ok(()) => Ok(()),
                // Already completed or aborted.
                Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(s3.error("abort", key, &e)),
            }
        }
    }
}

/// An artifact being written to one destination.
pub enum Upload {
    File(FileUpload),
    Multipart(MultipartUpload),
}

pub struct FileUpload {
    destination: String,
    file: Option<tokio::fs::File>,
    dir: PathBuf,
    partial: PathBuf,
    path: PathBuf,
    written: u64,
}

pub struct MultipartUpload {
    destination: String,
    spec: S3Spec,
    store: Arc<AmazonS3>,
    secret: Zeroizing<String>,
    key: String,
    path: ObjectPath,
    id: String,
    buffer: Vec<u8>,
    parts: Vec<PartId>,
    uploading: std::collections::VecDeque<JoinHandle<Result<PartId, object_store::Error>>>,
    next_part: usize,
    written: u64,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.in_flight().describe())
    }
}

impl Drop for MultipartUpload {
    fn drop(&mut self) {
        for task in &self.uploading {
            task.abort();
        }
    }
}

impl Upload {
    /// What to journal while this upload is open.
    pub fn in_flight(&self) -> InFlight {
        match self {
            Self::File(file) => InFlight::File {
                destination: file.destination.clone(),
                path: file.partial.clone(),
            },
            Self::Multipart(upload) => InFlight::Multipart {
                destination: upload.destination.clone(),
                spec: upload.spec.clone(),
                key: upload.key.clone(),
                upload_id: upload.id.clone(),
            },
        }
    }

    /// The destination's name.
    pub fn destination(&self) -> &str {
        match self {
            Self::File(file) => &file.destination,
            Self::Multipart(upload) => &upload.destination,
        }
    }

    /// Appends the artifact's next bytes. Waits while the destination is
    /// behind (a full set of parts uploading), which slows the pipeline.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), DestinationError> {
        match self {
            Self::File(upload) => {
                let Some(file) = upload.file.as_mut() else {
                    return Ok(());
                };
                file.write_all(chunk).await.map_err(|e| {
                    dir_write_error(&upload.destination, &upload.partial, upload.written, e)
                })?;
                upload.written += chunk.len() as u64;
                Ok(())
            }
            Self::Multipart(upload) => {
                upload.written += chunk.len() as u64;
                if upload.written > max_artifact_bytes() {
                    return Err(DestinationError::TooLarge {
                        destination: upload.destination.clone(),
                        max: max_artifact_bytes(),
                    });
                }
                let mut chunk = chunk;
                while !chunk.is_empty() {
                    let size = part_size(upload.next_part);
                    if upload.buffer.capacity() < size {
                        upload.buffer.reserve_exact(size - upload.buffer.len());
                    }
                    let take = (size - upload.buffer.len()).min(chunk.len());
                    upload.buffer.extend_from_slice(&chunk[..take]);
                    chunk = &chunk[take..];
                    if upload.buffer.len() == size {
                        upload.send_part().await?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Makes the artifact visible under its name: the file fsynced and
    /// renamed, or the multipart upload completed. Returns where it is
    /// and its size.
    pub async fn commit(&mut self) -> Result<(String, u64), DestinationError> {
        match self {
            Self::File(upload) => {
                let Some(mut file) = upload.file.take() else {
                    return Ok((upload.path.display().to_string(), upload.written));
                };
                let (destination, partial, written) =
                    (&upload.destination, &upload.partial, upload.written);
                file.flush()
                    .await
                    .map_err(|e| dir_write_error(destination, partial, written, e))?;
                file.sync_all()
                    .await
                    .map_err(|e| dir_write_error(destination, partial, written, e))?;
                drop(file);
                tokio::fs::rename(&upload.partial, &upload.path)
                    .await
                    .map_err(|e| DestinationError::File {
                        destination: upload.destination.clone(),
                        action: "rename",
                        path: upload.partial.display().to_string(),
                        reason: e.to_string(),
                    })?;
                let dir = upload.dir.clone();
                let _ = tokio::task::spawn_blocking(move || sync_dir(Some(&dir))).await;
                Ok((upload.path.display().to_string(), upload.written))
            }
            Self::Multipart(upload) => {
                if !upload.buffer.is_empty() || upload.next_part == 0 {
                    upload.send_part().await?;
                }
                while let Some(task) = upload.uploading.pop_front() {
                    let part = upload.joined(task).await?;
                    upload.parts.push(part);
                }
                let parts = std::mem::take(&mut upload.parts);
                upload
                    .store
                    .complete_multipart(&upload.path, &upload.id, parts)
                    .await
                    .map_err(|e| upload.error("complete the upload", &e))?;
                Ok((upload.spec.location_of_key(&upload.key), upload.written))
            }
        }
    }

    /// Gives up: removes the partial file, or aborts the multipart upload
    /// so that no object appears. Returns what could not be cleaned.
    pub async fn abort(&mut self) -> Result<(), DestinationError> {
        match self {
            Self::File(upload) => {
                upload.file = None;
                abort_in_flight(
                    &InFlight::File {
                        destination: upload.destination.clone(),
                        path: upload.partial.clone(),
                    },
                    None,
                )
                .await
            }
            Self::Multipart(upload) => {
                for task in upload.uploading.drain(..) {
                    task.abort();
                }
                match upload.store.abort_multipart(&upload.path, &upload.id).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(upload.error("abort the upload", &e)),
                }
            }
        }
    }
}

impl MultipartUpload {
    /// Starts uploading the buffer as the next part, first waiting for the
    /// oldest part if [`PARTS_IN_FLIGHT`] are uploading.
    async fn send_part(&mut self) -> Result<(), DestinationError> {
        while self.uploading.len() >= PARTS_IN_FLIGHT {
            let Some(task) = self.uploading.pop_front() else {
                break;
            };
            let part = self.joined(task).await?;
            self.parts.push(part);
        }
        if self.next_part >= MAX_PARTS {
            return Err(DestinationError::TooLarge {
                destination: self.destination.clone(),
                max: max_artifact_bytes(),
            });
        }
        let data = Bytes::from(std::mem::take(&mut self.buffer));
        let (store, path, id, index) = (
            self.store.clone(),
            self.path.clone(),
            self.id.clone(),
            self.next_part,
        );
        self.uploading.push_back(tokio::spawn(async move {
            store
                .put_part(&path, &id, index, PutPayload::from(data))
                .await
        }));
        self.next_part += 1;
        Ok(())
    }

    async fn joined(
        &self,
        task: JoinHandle<Result<PartId, object_store::Error>>,
    ) -> Result<PartId, DestinationError> {
        match task.await {
            Ok(Ok(part)) => Ok(part),
            Ok(Err(e)) => Err(self.error("upload a part", &e)),
            Err(e) => Err(DestinationError::S3 {
                destination: self.destination.clone(),
                action: "upload a part",
                location: self.spec.location_of_key(&self.key),
                reason: e.to_string(),
            }),
        }
    }

    fn error(&self, action: &'static str, error: &object_store::Error) -> DestinationError {
        S3Errors {
            destination: self.destination.clone(),
            spec: self.spec.clone(),
            secret: self.secret.clone(),
        }
        .error(action, &self.key, error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(endpoint: &str, prefix: &str) -> S3Spec {
        S3Spec {
            endpoint: endpoint.into(),
            bucket: "crm-backups".into(),
            prefix: prefix.into(),
            region: String::new(),
            access_key_id: SecretName {
                name: "s3/key-id".into(),
                version: 1,
            },
            secret_access_key: SecretName {
                name: "s3/secret-key".into(),
                version: 2,
            },
        }
    }

    #[test]
    fn names_and_keys_follow_one_layout() {
        assert_eq!(artifact_name("crm-db", "b-1"), "crm-db/b-1.argosy");
        assert_eq!(manifest_name("crm-db", "b-1"), "crm-db/b-1.manifest.json");
        for prefix in ["prod/", "prod", "/prod/", "prod//"] {
            assert_eq!(
                spec("", prefix).key("crm-db/b-1.argosy"),
                "prod/crm-db/b-1.argosy"
            );
        }
        assert_eq!(spec("", "").key("p/b.argosy"), "p/b.argosy");
        assert_eq!(
            spec("", "a/b/").location("p/b.argosy"),
            "s3://crm-backups/a/b/p/b.argosy"
        );
        assert_eq!(spec("", "").endpoint_text(), "AWS S3 (us-east-1)");
        assert_eq!(
            partial_path(Path::new("/b/p/x.argosy")),
            PathBuf::from("/b/p/x.argosy.partial")
        );
        assert!(check_names("local", "crm-db", "b-01J").is_ok());
        for bad in ["", ".", "..", "a/b", ".hidden", "a\\b"] {
            assert!(check_names("local", bad, "b").is_err(), "{bad:?}");
            assert!(check_names("local", "p", bad).is_err(), "{bad:?}");
        }
        assert!(Destination::dir("local", "relative/dir").is_err());
    }

    #[test]
    fn parts_grow_so_that_an_artifact_fits_in_ten_thousand() {
        assert_eq!(part_size(0), 8 << 20);
        assert_eq!(part_size(4_999), 8 << 20);
        assert_eq!(part_size(5_000), 16 << 20);
        assert!((0..MAX_PARTS).all(|i| part_size(i) <= 16 << 20 && part_size(i) >= 5 << 20));
        assert_eq!(max_artifact_bytes(), 5_000 * (8 << 20) + 5_000 * (16 << 20));
    }

    #[test]
    fn plain_http_only_on_loopback() {
        assert_eq!(check_endpoint("o", ""), Ok(false));
        assert_eq!(check_endpoint("o", "https://s3.example.com"), Ok(false));
        for loopback in [
            "http://127.0.0.1:9000",
            "http://localhost:9000",
            "http://[::1]:9000",
        ] {
            assert_eq!(check_endpoint("o", loopback), Ok(true), "{loopback}");
        }
        let refused = check_endpoint("offsite", "http://10.0.0.5:9000").unwrap_err();
        assert_eq!(
            refused.to_string(),
            "destination offsite: S3 endpoint http://10.0.0.5:9000 is plain http on a network address: credentials and backups would cross the network unencrypted; use https:// (http is accepted only on loopback)"
        );
        assert!(check_endpoint("o", "ftp://x").is_err());
        assert!(check_endpoint("o", "not a url").is_err());
    }

    #[test]
    fn s3_failures_say_what_to_fix() {
        let cases = [
            (
                "Client error with status 404 Not Found: <Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>",
                S3Problem::NoBucket,
            ),
            (
                "Client error with status 403 Forbidden: <Error><Code>InvalidAccessKeyId</Code></Error>",
                S3Problem::Credentials,
            ),
            ("<Code>SignatureDoesNotMatch</Code>", S3Problem::Credentials),
            (
                "Generic S3 error: Error after 3 retries in 1.2s, max_retries:3, retry_timeout:60s, source:error sending request for url (http://127.0.0.1:1/b/k?uploads): client error (Connect): tcp connect error: Connection refused (os error 111)",
                S3Problem::Unreachable,
            ),
            (
                "dns error: failed to lookup address information",
                S3Problem::Unreachable,
            ),
            (
                "Client error with status 400 Bad Request: EntityTooSmall",
                S3Problem::Other,
            ),
            (
                "Client error with status 403 Forbidden: <Error><Code>QuotaExceeded</Code><Message>The bucket quota is used up</Message></Error>",
                S3Problem::Other,
            ),
            (
                "Client error with status 403 Forbidden: <Error><Code>AccessDenied</Code></Error>",
                S3Problem::Credentials,
            ),
            (
                "Client error with status 403 Forbidden",
                S3Problem::Credentials,
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(classify_s3(text), expected, "{text}");
        }
        let s = spec("http://127.0.0.1:9000", "prod/");
        let error = describe_s3(
            S3Problem::NoBucket,
            "offsite",
            &s,
            "upload",
            "k",
            String::new(),
        );
        assert_eq!(
            error.to_string(),
            "destination offsite: bucket crm-backups does not exist at http://127.0.0.1:9000; create it, or correct `bucket:` in the policy"
        );
        let error = describe_s3(
            S3Problem::Credentials,
            "offsite",
            &s,
            "upload",
            "k",
            "Client error with status 403 Forbidden: <Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id you provided does not exist in our records.</Message></Error>".into(),
        );
        assert_eq!(
            error.to_string(),
            "destination offsite: http://127.0.0.1:9000 refuses the credentials from secrets s3/key-id@1 and s3/secret-key@2 (InvalidAccessKeyId: The AWS Access Key Id you provided does not exist in our records.); store a valid access key pair with write access to bucket crm-backups in those secrets"
        );
        let error = describe_s3(
            S3Problem::Other,
            "offsite",
            &s,
            "upload",
            "prod/p/b.argosy",
            "x".repeat(1000),
        );
        assert!(error.to_string().len() < 600, "{error}");
        assert!(
            error
                .to_string()
                .contains("s3://crm-backups/prod/p/b.argosy")
        );
        assert_eq!(
            scrub("key=hunter2hunter2 failed", "hunter2hunter2"),
            "key=<redacted> failed"
        );
    }

    #[test]
    fn a_full_disk_is_named_with_the_bytes_written() {
        let full = std::io::Error::from_raw_os_error(28);
        let error = dir_write_error(
            "local",
            Path::new("/backups/crm-db/b-1.argosy.partial"),
            1_048_576,
            full,
        );
        assert_eq!(
            error.to_string(),
            "destination local: the filesystem holding /backups/crm-db is full (1048576 bytes of the artifact were written); free space there or point the destination at a larger disk"
        );
        let other = dir_write_error(
            "local",
            Path::new("/x/y"),
            0,
            std::io::Error::from_raw_os_error(13),
        );
        assert!(matches!(
            other,
            DestinationError::File {
                action: "write",
                ..
            }
        ));
    }

    async fn read_all(stored: Stored) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut stream = stored.bytes;
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.unwrap());
        }
        bytes
    }

    #[tokio::test]
    async fn a_directory_holds_only_finished_artifacts() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = tempfile::tempdir().unwrap();
        let dest = Destination::dir("local", root.path().to_str().unwrap()).unwrap();
        assert!(dest.open("crm-db", "b-1").await.unwrap().is_none());

        let mut upload = dest.begin("crm-db", "b-1").await.unwrap();
        let partial = root.path().join("crm-db/b-1.argosy.partial");
        assert_eq!(
            upload.in_flight(),
            InFlight::File {
                destination: "local".into(),
                path: partial.clone()
            }
        );
        let data: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        for chunk in data.chunks(65_000) {
            upload.write(chunk).await.unwrap();
        }
        assert!(partial.exists());
        assert!(
            dest.open("crm-db", "b-1").await.unwrap().is_none(),
            "not visible before commit"
        );
        let (location, bytes) = upload.commit().await.unwrap();
        let artifact = root.path().join("crm-db/b-1.argosy");
        assert_eq!(location, artifact.display().to_string());
        assert_eq!(bytes, data.len() as u64);
        assert!(!partial.exists());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&artifact), 0o600);
        assert_eq!(mode(&root.path().join("crm-db")), 0o700);

        let stored = dest.open("crm-db", "b-1").await.unwrap().unwrap();
        assert_eq!(stored.size, data.len() as u64);
        assert_eq!(read_all(stored).await, data);

        let manifest = dest
            .put_small(&manifest_name("crm-db", "b-1"), Bytes::from_static(b"{}"))
            .await
            .unwrap();
        assert_eq!(std::fs::read(&manifest).unwrap(), b"{}");
        assert_eq!(mode(Path::new(&manifest)), 0o600);

        // An aborted upload leaves nothing.
        let mut failed = dest.begin("crm-db", "b-2").await.unwrap();
        failed.write(b"half").await.unwrap();
        failed.abort().await.unwrap();
        assert_eq!(
            std::fs::read_dir(root.path().join("crm-db"))
                .unwrap()
                .count(),
            2,
            "only b-1's artifact and manifest"
        );

        dest.delete("crm-db", "b-1").await.unwrap();
        dest.delete("crm-db", "b-1").await.unwrap();
        assert_eq!(
            std::fs::read_dir(root.path().join("crm-db"))
                .unwrap()
                .count(),
            0
        );
    }

    #[tokio::test]
    async fn an_unwritable_directory_is_named() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let dest = Destination::dir("local", file.to_str().unwrap()).unwrap();
        let error = dest.begin("crm-db", "b-1").await.unwrap_err();
        assert!(
            error.to_string().starts_with(&format!(
                "destination local: cannot create {}/crm-db:",
                file.display()
            )),
            "{error}"
        );
    }
}
