//! Secrets on the agent: asking the control plane for values over the
//! session, holding them in memory ([`SecretCache`]), writing file secrets
//! to a memory-backed directory, and handing the container runtime what
//! to inject.
//!
//! - The runtime calls [`Secrets::prepare`] before it creates a container:
//!   it asks for the values it does not hold ([`Secrets::outstanding`] is
//!   what the session sends as a `SecretRequest`) and waits for the
//!   session to [`Secrets::deliver`] the answer, or fails with the
//!   control plane's reason or a timeout. The allocation then reports that
//!   failure and is retried with the usual backoff.
//! - Env secrets go into the container's environment (visible to whoever
//!   may inspect the container, as Docker has it). File secrets go into
//!   `<secrets dir>/<allocation id>/<file>` with the spec's mode, uid and
//!   gid, bind-mounted read-only at `/run/secrets`. The directory is 0700
//!   unless a file belongs to a non-root user or grants group or other
//!   access (then 0711: searchable, not listable, so that user can reach
//!   its file); the secrets dir itself is 0700, so no other host user can.
//! - The secrets dir must be on tmpfs or ramfs (checked in
//!   `/proc/self/mountinfo`, [`crate::mountinfo`]); otherwise file secrets
//!   are refused with an error saying how to fix it — nothing is written.
//! - Values are dropped from memory when no allocation references them
//!   ([`Secrets::retain`]); a directory goes when its allocation has
//!   neither a place in the desired state nor a container, and orphans are
//!   removed at start ([`Secrets::clean_files`]).

use crate::mountinfo;
use crate::secret_cache::{Known, SecretCache, SecretId, wanted_by};
use argosy_proto::v1::{Allocation, SecretRef, SecretResponse};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use zeroize::Zeroizing;

/// Where secret files go when nothing else is said.
pub const DEFAULT_SECRETS_DIR: &str = "/run/argosy-agent/secrets";
/// How long the runtime waits for the control plane to answer.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(20);
/// Where the files appear in the container.
pub const CONTAINER_DIR: &str = "/run/secrets";

/// Why an allocation's secrets could not be provided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    #[error("the control plane refused secret {secret}: {reason}")]
    Denied { secret: String, reason: String },
    #[error(
        "the control plane did not send secret {secrets} within {}; it is asked again when the allocation is retried",
        humantime::format_duration(*.waited)
    )]
    NoAnswer { secrets: String, waited: Duration },
    #[error(
        "secret {secret} is not UTF-8 text without NUL bytes, so it cannot be the environment variable {variable}; mount it as a file (secrets:) instead"
    )]
    NotText { secret: String, variable: String },
    #[error("secret files cannot be written: {0}")]
    Files(String),
}

/// What a container gets from its secrets.
#[derive(Default)]
pub struct Injected {
    /// `VARIABLE` → value.
    pub env: Vec<(String, Zeroizing<String>)>,
    /// The host directory to bind-mount read-only at [`CONTAINER_DIR`].
    pub files_dir: Option<PathBuf>,
}

impl std::fmt::Debug for Injected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Injected")
            .field(
                "env",
                &self.env.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            )
            .field("files_dir", &self.files_dir)
            .finish()
    }
}

struct Inner {
    cache: Mutex<SecretCache>,
    /// Asked for by the runtime, not answered yet.
    outstanding: Mutex<BTreeSet<SecretId>>,
    /// Bumped whenever an answer arrives.
    answered: watch::Sender<u64>,
    /// Wakes the session: there is something to ask for.
    ask: Notify,
    files: SecretFiles,
    wait: Duration,
    /// What the allocations use (their last [`Secrets::retain`]).
    allocations_use: Mutex<BTreeSet<SecretId>>,
    /// What backup jobs are waiting for, with how many jobs wait for each.
    jobs_use: Mutex<BTreeMap<SecretId, usize>>,
}

/// The agent's secrets; cheap to clone, shared by the runtime and the
/// session.
#[derive(Clone)]
pub struct Secrets {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("cache", &*self.cache())
            .field("files", &self.inner.files)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Secrets {
    /// Secrets whose files go to `files`, waiting `wait` for answers.
    pub fn new(files: SecretFiles, wait: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                cache: Mutex::new(SecretCache::default()),
                outstanding: Mutex::new(BTreeSet::new()),
                answered: watch::channel(0).0,
                ask: Notify::new(),
                files,
                wait,
                allocations_use: Mutex::new(BTreeSet::new()),
                jobs_use: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    fn cache(&self) -> MutexGuard<'_, SecretCache> {
        lock(&self.inner.cache)
    }

    /// The files' side.
    pub fn files(&self) -> &SecretFiles {
        &self.inner.files
    }

    // --- The session's side.

    /// What the runtime waits for and the control plane has not answered.
    pub fn outstanding(&self) -> Vec<SecretRef> {
        lock(&self.inner.outstanding)
            .iter()
            .map(SecretId::to_wire)
            .collect()
    }

    /// Completes when there may be something new to ask for.
    pub async fn asked(&self) {
        self.inner.ask.notified().await;
    }

    /// Takes in the control plane's answer.
    pub fn deliver(&self, response: SecretResponse) {
        let mut answered = Vec::new();
        {
            let mut cache = self.cache();
            for value in response.values {
                let Some(secret) = value.secret.as_ref().map(SecretId::from_wire) else {
                    continue;
                };
                cache.insert(secret.clone(), Zeroizing::new(value.value));
                answered.push(secret);
            }
            for denial in response.denied {
                let Some(secret) = denial.secret.as_ref().map(SecretId::from_wire) else {
                    continue;
                };
                tracing::warn!(secret = %secret, reason = %denial.reason, "the control plane refused a secret");
                cache.deny(secret.clone(), denial.reason);
                answered.push(secret);
            }
        }
        let mut outstanding = lock(&self.inner.outstanding);
        for secret in &answered {
            outstanding.remove(secret);
        }
        drop(outstanding);
        self.inner.answered.send_modify(|n| *n += 1);
    }

    // --- The runtime's side.

    /// The values of `wanted`, asking the control plane for those not held.
    async fn values(
        &self,
        wanted: &BTreeSet<SecretId>,
    ) -> Result<BTreeMap<SecretId, Zeroizing<Vec<u8>>>, SecretsError> {
        let mut answers = self.inner.answered.subscribe();
        let unknown = {
            let mut cache = self.cache();
            cache.forget_denials(wanted);
            cache.unknown(wanted)
        };
        if !unknown.is_empty() {
            tracing::info!(
                secrets = %join(&unknown),
                "asking the control plane for secrets"
            );
            lock(&self.inner.outstanding).extend(unknown);
            self.inner.ask.notify_one();
        }
        let deadline = tokio::time::Instant::now() + self.inner.wait;
        loop {
            answers.borrow_and_update();
            {
                let cache = self.cache();
                let mut values = BTreeMap::new();
                let mut missing = BTreeSet::new();
                for id in wanted {
                    match cache.get(id) {
                        Known::Value(value) => {
                            values.insert(id.clone(), Zeroizing::new(value.to_vec()));
                        }
                        Known::Denied(reason) => {
                            return Err(SecretsError::Denied {
                                secret: id.to_string(),
                                reason: reason.to_owned(),
                            });
                        }
                        Known::Unknown => {
                            missing.insert(id.clone());
                        }
                    }
                }
                if missing.is_empty() {
                    return Ok(values);
                }
                if tokio::time::Instant::now() >= deadline {
                    let mut outstanding = lock(&self.inner.outstanding);
                    for id in &missing {
                        outstanding.remove(id);
                    }
                    return Err(SecretsError::NoAnswer {
                        secrets: join(&missing),
                        waited: self.inner.wait,
                    });
                }
            }
            let _ = tokio::time::timeout_at(deadline, answers.changed()).await;
        }
    }

    /// Gets `allocation`'s secrets ready for a new container: the env
    /// values, and its files written (replacing any from before).
    pub async fn prepare(&self, allocation: &Allocation) -> Result<Injected, SecretsError> {
        let wanted = wanted_by(allocation);
        if wanted.is_empty() {
            return Ok(Injected::default());
        }
        let spec = allocation.container.clone().unwrap_or_default();
        // Values that could not be written are not asked for.
        if let Some(reason) = self
            .inner
            .files
            .refused()
            .filter(|_| !spec.secret_files.is_empty())
        {
            return Err(SecretsError::Files(reason.to_owned()));
        }
        let values = self.values(&wanted).await?;
        let mut injected = Injected::default();
        for env in &spec.secret_env {
            let Some(secret) = env.secret.as_ref().map(SecretId::from_wire) else {
                continue;
            };
            let text = values
                .get(&secret)
                .and_then(|v| std::str::from_utf8(v).ok())
                .filter(|text| !text.contains('\0'))
                .ok_or_else(|| SecretsError::NotText {
                    secret: secret.to_string(),
                    variable: env.variable.clone(),
                })?;
            injected
                .env
                .push((env.variable.clone(), Zeroizing::new(text.to_owned())));
        }
        if !spec.secret_files.is_empty() {
            let files: Vec<FileToWrite<'_>> = spec
                .secret_files
                .iter()
                .filter_map(|file| {
                    let secret = SecretId::from_wire(file.secret.as_ref()?);
                    Some(FileToWrite {
                        name: &file.file,
                        mode: file.mode,
                        uid: file.uid,
                        gid: file.gid,
                        value: values.get(&secret)?,
                    })
                })
                .collect();
            injected.files_dir = Some(self.inner.files.write(&allocation.id, &files)?);
        }
        Ok(injected)
    }

    /// Before (re)starting an existing container: writes the allocation's
    /// files again if they are gone (a reboot empties tmpfs).
    pub async fn ensure_files(&self, allocation: &Allocation) -> Result<(), SecretsError> {
        let Some(spec) = &allocation.container else {
            return Ok(());
        };
        if spec.secret_files.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = spec.secret_files.iter().map(|f| f.file.as_str()).collect();
        if self.inner.files.has_files(&allocation.id, &names) {
            return Ok(());
        }
        tracing::info!(allocation = %allocation.id, "the secret files are gone; writing them again");
        self.prepare(allocation).await.map(drop)
    }

    /// Drops every value no allocation in `referenced` needs (and no
    /// backup job is waiting for).
    pub fn retain(&self, referenced: &BTreeSet<SecretId>) {
        lock(&self.inner.allocations_use).clone_from(referenced);
        let mut keep = referenced.clone();
        keep.extend(lock(&self.inner.jobs_use).keys().cloned());
        self.cache().retain(&keep);
    }

    // --- Backup jobs' side.

    /// The values of `refs` for a backup job, asked for like an
    /// allocation's. The cache holds them only while jobs wait for them:
    /// once they are handed over, it keeps only what allocations use.
    pub async fn values_for(
        &self,
        refs: &[SecretRef],
    ) -> Result<BTreeMap<SecretId, Zeroizing<Vec<u8>>>, SecretsError> {
        let wanted: BTreeSet<SecretId> = refs.iter().map(SecretId::from_wire).collect();
        if wanted.is_empty() {
            return Ok(BTreeMap::new());
        }
        {
            let mut jobs = lock(&self.inner.jobs_use);
            for id in &wanted {
                *jobs.entry(id.clone()).or_default() += 1;
            }
        }
        let values = self.values(&wanted).await;
        let mut keep = lock(&self.inner.allocations_use).clone();
        {
            let mut jobs = lock(&self.inner.jobs_use);
            for id in &wanted {
                if let Some(count) = jobs.get_mut(id) {
                    *count -= 1;
                    if *count == 0 {
                        jobs.remove(id);
                    }
                }
            }
            keep.extend(jobs.keys().cloned());
        }
        self.cache().retain(&keep);
        values
    }

    /// Removes the secret files of every allocation not in `keep`.
    pub fn clean_files(&self, keep: &BTreeSet<String>) {
        self.inner.files.clean(keep);
    }
}

fn join(ids: &BTreeSet<SecretId>) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One file to write for an allocation.
#[derive(Clone, Copy)]
pub struct FileToWrite<'a> {
    pub name: &'a str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub value: &'a [u8],
}

/// The directory of secret files: one 0700 (or 0711) directory per
/// allocation, under a root that must be memory-backed.
#[derive(Debug, Clone)]
pub struct SecretFiles {
    root: PathBuf,
    /// Why files cannot be written there, if they cannot.
    refused: Option<String>,
}

impl SecretFiles {
    /// Secret files under `root`, checked against `/proc/self/mountinfo`.
    pub fn open(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let refused = check_root(&root, &mountinfo).err();
        if let Some(reason) = &refused {
            tracing::error!(secrets_dir = %root.display(), "{reason}");
        }
        Self { root, refused }
    }

    /// Secret files under `root`, whatever it is on (tests).
    pub fn unchecked(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            refused: None,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Why files cannot be written, if they cannot.
    pub fn refused(&self) -> Option<&str> {
        self.refused.as_deref()
    }

    fn dir_of(&self, allocation: &str) -> Result<PathBuf, SecretsError> {
        if !is_plain_name(allocation) {
            return Err(SecretsError::Files(format!(
                "allocation id {allocation:?} cannot name a directory"
            )));
        }
        Ok(self.root.join(allocation))
    }

    /// Writes `files` into the allocation's directory (replacing what was
    /// there) and returns the directory.
    pub fn write(
        &self,
        allocation: &str,
        files: &[FileToWrite<'_>],
    ) -> Result<PathBuf, SecretsError> {
        if let Some(reason) = &self.refused {
            return Err(SecretsError::Files(reason.clone()));
        }
        let dir = self.dir_of(allocation)?;
        let io = |what: &str, path: &Path, e: std::io::Error| {
            SecretsError::Files(format!("{what} {}: {e}", path.display()))
        };
        fs::create_dir_all(&self.root).map_err(|e| io("cannot create", &self.root, e))?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
            .map_err(|e| io("cannot restrict", &self.root, e))?;
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("cannot replace", &dir, e)),
        }
        fs::create_dir(&dir).map_err(|e| io("cannot create", &dir, e))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(directory_mode(files)))
            .map_err(|e| io("cannot restrict", &dir, e))?;
        for file in files {
            if !is_plain_name(file.name) {
                return Err(SecretsError::Files(format!(
                    "{:?} cannot be a file name under {CONTAINER_DIR}",
                    file.name
                )));
            }
            let path = dir.join(file.name);
            let mut out = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| io("cannot create", &path, e))?;
            out.write_all(file.value)
                .map_err(|e| io("cannot write", &path, e))?;
            drop(out);
            std::os::unix::fs::chown(&path, Some(file.uid), Some(file.gid)).map_err(|e| {
                io(
                    &format!("cannot give uid {} gid {}", file.uid, file.gid),
                    &path,
                    e,
                )
            })?;
            fs::set_permissions(&path, fs::Permissions::from_mode(file.mode & 0o777))
                .map_err(|e| io("cannot set the mode of", &path, e))?;
        }
        Ok(dir)
    }

    /// Whether the allocation's directory holds every one of `names`.
    pub fn has_files(&self, allocation: &str, names: &[&str]) -> bool {
        self.dir_of(allocation)
            .is_ok_and(|dir| names.iter().all(|name| dir.join(name).is_file()))
    }

    /// Removes the directories of allocations not in `keep`.
    pub fn clean(&self, keep: &BTreeSet<String>) {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if keep.contains(&name) {
                continue;
            }
            let path = entry.path();
            match fs::remove_dir_all(&path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "removed secret files no allocation uses")
                }
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot remove secret files")
                }
            }
        }
    }
}

/// 0700, unless a file is for a non-root owner or grants group or other
/// access: then 0711, so the container user can reach (not list) it.
fn directory_mode(files: &[FileToWrite<'_>]) -> u32 {
    if files.iter().all(|f| f.uid == 0 && f.mode & 0o077 == 0) {
        0o700
    } else {
        0o711
    }
}

/// A single path component that is not `.` or `..`.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// Whether secret files may go under `root`, given the mount table: it
/// must be an absolute path on tmpfs or ramfs (judged by its nearest
/// existing ancestor, so the directory need not exist yet).
pub fn check_root(root: &Path, mountinfo: &str) -> Result<(), String> {
    if !root.is_absolute() {
        return Err(format!(
            "--secrets-dir {} is not an absolute path; give one on tmpfs, e.g. {DEFAULT_SECRETS_DIR}",
            root.display()
        ));
    }
    // The nearest existing ancestor, with symlinks resolved, and the rest.
    let resolved = root
        .ancestors()
        .find_map(|ancestor| {
            let real = fs::canonicalize(ancestor).ok()?;
            Some(real.join(root.strip_prefix(ancestor).ok()?))
        })
        .unwrap_or_else(|| root.to_path_buf());
    let mounts = mountinfo::parse(mountinfo);
    match mountinfo::mount_of(&mounts, &resolved) {
        Some(mount) if mountinfo::is_memory_backed(&mount.fs_type) => Ok(()),
        Some(mount) => Err(format!(
            "--secrets-dir {} is on {} ({}), not tmpfs or ramfs, so secret files are refused: they must never reach a disk; mount a tmpfs there (`mount -t tmpfs -o mode=0700 tmpfs {}`) or point --secrets-dir at one, e.g. /dev/shm/argosy-secrets",
            root.display(),
            mount.fs_type,
            mount.mount_point.display(),
            root.display()
        )),
        None => Err(format!(
            "cannot tell which filesystem --secrets-dir {} is on (no mount in /proc/self/mountinfo), so secret files are refused; point it at a tmpfs, e.g. /dev/shm/argosy-secrets",
            root.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argosy_proto::v1::{ContainerSpec, SecretDenial, SecretEnv, SecretFile, SecretValue};

    fn reference(name: &str, version: u32) -> Option<SecretRef> {
        Some(SecretRef {
            name: name.into(),
            version,
        })
    }

    fn allocation() -> Allocation {
        Allocation {
            id: "a-1".into(),
            run: true,
            container: Some(ContainerSpec {
                secret_env: vec![SecretEnv {
                    variable: "DB_PASSWORD".into(),
                    secret: reference("crm/db", 4),
                }],
                secret_files: vec![SecretFile {
                    secret: reference("crm/tls", 2),
                    file: "tls.key".into(),
                    mode: 0o400,
                    uid: 0,
                    gid: 0,
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn value(name: &str, version: u32, bytes: &[u8]) -> SecretValue {
        SecretValue {
            secret: reference(name, version),
            value: bytes.to_vec(),
        }
    }

    fn secrets(dir: &Path, wait: Duration) -> Secrets {
        Secrets::new(SecretFiles::unchecked(dir.join("secrets")), wait)
    }

    /// Answers every request with `answer`, as the session would.
    fn answer_with(
        secrets: &Secrets,
        answer: SecretResponse,
    ) -> tokio::task::JoinHandle<Vec<SecretRef>> {
        let secrets = secrets.clone();
        tokio::spawn(async move {
            secrets.asked().await;
            let asked = secrets.outstanding();
            secrets.deliver(answer);
            asked
        })
    }

    #[tokio::test]
    async fn asks_once_then_injects_env_and_writes_files() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = secrets(dir.path(), Duration::from_secs(10));
        let session = answer_with(
            &secrets,
            SecretResponse {
                values: vec![
                    value("crm/db", 4, b"s3cret-db"),
                    value("crm/tls", 2, b"-----KEY-----"),
                ],
                denied: vec![],
            },
        );
        let injected = secrets.prepare(&allocation()).await.unwrap();
        let asked = session.await.unwrap();
        assert_eq!(
            asked,
            [
                reference("crm/db", 4).unwrap(),
                reference("crm/tls", 2).unwrap()
            ]
        );
        assert!(secrets.outstanding().is_empty());
        assert_eq!(injected.env.len(), 1);
        assert_eq!(injected.env[0].0, "DB_PASSWORD");
        assert_eq!(injected.env[0].1.as_str(), "s3cret-db");
        let files = injected.files_dir.clone().unwrap();
        assert_eq!(files, dir.path().join("secrets").join("a-1"));
        let key = files.join("tls.key");
        assert_eq!(fs::read(&key).unwrap(), b"-----KEY-----");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&key), 0o400);
        assert_eq!(mode(&files), 0o700);
        assert_eq!(mode(&dir.path().join("secrets")), 0o700);
        assert!(!format!("{injected:?} {secrets:?}").contains("s3cret"));

        // Held in memory now: a second container needs no answer.
        let again = secrets.prepare(&allocation()).await.unwrap();
        assert_eq!(again.env[0].1.as_str(), "s3cret-db");
        assert!(secrets.outstanding().is_empty());

        // Dropped once no allocation references them.
        secrets.retain(&BTreeSet::new());
        assert!(secrets.cache().is_empty());

        // With no answer, the allocation fails after the wait.
        let fast = Secrets::new(
            SecretFiles::unchecked(dir.path().join("x")),
            Duration::from_millis(50),
        );
        let error = fast.prepare(&allocation()).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "the control plane did not send secret crm/db@4, crm/tls@2 within 50ms; it is asked again when the allocation is retried"
        );
        assert!(
            fast.outstanding().is_empty(),
            "a timed-out ask is withdrawn"
        );
    }

    #[tokio::test]
    async fn a_denial_fails_the_allocation_and_a_retry_asks_again() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = secrets(dir.path(), Duration::from_secs(10));
        let session = answer_with(
            &secrets,
            SecretResponse {
                values: vec![value("crm/tls", 2, b"key")],
                denied: vec![SecretDenial {
                    secret: reference("crm/db", 4),
                    reason: "no allocation on host h-1 uses secret crm/db".into(),
                }],
            },
        );
        let error = secrets.prepare(&allocation()).await.unwrap_err();
        session.await.unwrap();
        assert_eq!(
            error.to_string(),
            "the control plane refused secret crm/db@4: no allocation on host h-1 uses secret crm/db"
        );
        // The retry asks for the denied one again (not for the one it holds).
        let session = answer_with(
            &secrets,
            SecretResponse {
                values: vec![value("crm/db", 4, b"now-granted")],
                denied: vec![],
            },
        );
        let injected = secrets.prepare(&allocation()).await.unwrap();
        assert_eq!(session.await.unwrap(), [reference("crm/db", 4).unwrap()]);
        assert_eq!(injected.env[0].1.as_str(), "now-granted");
    }

    #[tokio::test]
    async fn binary_values_cannot_be_env() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = secrets(dir.path(), Duration::from_secs(10));
        let session = answer_with(
            &secrets,
            SecretResponse {
                values: vec![value("crm/db", 4, &[0xff, 0x00]), value("crm/tls", 2, b"k")],
                denied: vec![],
            },
        );
        let error = secrets.prepare(&allocation()).await.unwrap_err();
        session.await.unwrap();
        assert_eq!(
            error.to_string(),
            "secret crm/db@4 is not UTF-8 text without NUL bytes, so it cannot be the environment variable DB_PASSWORD; mount it as a file (secrets:) instead"
        );
    }

    #[tokio::test]
    async fn files_are_rewritten_when_gone_and_cleaned_when_unused() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = secrets(dir.path(), Duration::from_secs(10));
        secrets.deliver(SecretResponse {
            values: vec![value("crm/db", 4, b"db"), value("crm/tls", 2, b"key")],
            denied: vec![],
        });
        let files = secrets.files().root().join("a-1");
        secrets.ensure_files(&allocation()).await.unwrap();
        assert!(files.join("tls.key").is_file());
        fs::remove_dir_all(&files).unwrap();
        secrets.ensure_files(&allocation()).await.unwrap();
        assert_eq!(fs::read(files.join("tls.key")).unwrap(), b"key");

        fs::create_dir_all(secrets.files().root().join("a-orphan")).unwrap();
        secrets.clean_files(&BTreeSet::from(["a-1".to_owned()]));
        assert!(files.is_dir());
        assert!(!secrets.files().root().join("a-orphan").exists());
        secrets.clean_files(&BTreeSet::new());
        assert!(!files.exists());
    }

    #[tokio::test]
    async fn a_backup_job_gets_its_values_and_the_cache_lets_them_go() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = secrets(dir.path(), Duration::from_secs(10));
        // An allocation uses crm/db; the job wants it and its own key.
        secrets.retain(&BTreeSet::from([SecretId::new("crm/db", 4)]));
        let asker = secrets.clone();
        let session = tokio::spawn(async move {
            asker.asked().await;
            let asked = asker.outstanding();
            // The runtime's pass while the job waits must not drop them.
            asker.retain(&BTreeSet::from([SecretId::new("crm/db", 4)]));
            asker.deliver(SecretResponse {
                values: vec![value("crm/db", 4, b"db"), value("crm/backup-key", 1, b"k")],
                denied: vec![],
            });
            asked
        });
        let refs = [
            reference("crm/db", 4).unwrap(),
            reference("crm/backup-key", 1).unwrap(),
        ];
        let values = secrets.values_for(&refs).await.unwrap();
        assert_eq!(session.await.unwrap().len(), 2);
        assert_eq!(values[&SecretId::new("crm/backup-key", 1)].as_slice(), b"k");
        assert_eq!(values[&SecretId::new("crm/db", 4)].as_slice(), b"db");
        // Afterwards the cache keeps only what the allocation uses.
        assert_eq!(secrets.cache().len(), 1);
        assert_eq!(
            secrets.cache().get(&SecretId::new("crm/db", 4)),
            Known::Value(b"db")
        );
        assert!(secrets.values_for(&[]).await.unwrap().is_empty());
    }

    #[test]
    fn directory_modes_let_only_the_owner_in() {
        let file = |uid, mode| FileToWrite {
            name: "f",
            mode,
            uid,
            gid: 0,
            value: b"",
        };
        assert_eq!(directory_mode(&[file(0, 0o400), file(0, 0o600)]), 0o700);
        assert_eq!(directory_mode(&[file(0, 0o400), file(1000, 0o400)]), 0o711);
        assert_eq!(directory_mode(&[file(0, 0o440)]), 0o711);
        assert!(is_plain_name("a-1") && is_plain_name(".env"));
        for bad in ["", ".", "..", "a/b", "a\0"] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
        let files = SecretFiles::unchecked("/tmp/x");
        assert!(matches!(
            files.write("../etc", &[]),
            Err(SecretsError::Files(_))
        ));
    }

    #[test]
    fn only_memory_backed_roots_are_accepted() {
        let mountinfo = "\
1 0 0:1 / / rw - ext4 /dev/vda rw
2 1 0:2 / /dev/shm rw - tmpfs tmpfs rw
3 1 0:3 / /run rw - tmpfs tmpfs rw
";
        // /dev/shm exists here; a directory below it need not.
        assert_eq!(
            check_root(Path::new("/dev/shm/argosy/secrets"), mountinfo),
            Ok(())
        );
        let refused =
            check_root(Path::new("/var/lib/argosy-agent/secrets"), mountinfo).unwrap_err();
        assert_eq!(
            refused,
            "--secrets-dir /var/lib/argosy-agent/secrets is on ext4 (/), not tmpfs or ramfs, so secret files are refused: they must never reach a disk; mount a tmpfs there (`mount -t tmpfs -o mode=0700 tmpfs /var/lib/argosy-agent/secrets`) or point --secrets-dir at one, e.g. /dev/shm/argosy-secrets"
        );
        assert!(
            check_root(Path::new("relative/dir"), mountinfo)
                .unwrap_err()
                .contains("not an absolute path")
        );
        assert!(
            check_root(Path::new("/x"), "")
                .unwrap_err()
                .contains("cannot tell")
        );
        let files = SecretFiles {
            root: PathBuf::from("/var/lib/x"),
            refused: Some("on ext4".into()),
        };
        assert_eq!(
            files.write("a-1", &[]).unwrap_err().to_string(),
            "secret files cannot be written: on ext4"
        );
    }
}
