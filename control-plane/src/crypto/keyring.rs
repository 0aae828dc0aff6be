//! The keyring: the master key the running control plane holds, the audit
//! log's HMAC key it protects, unsealing at start and rotating the master
//! key while serving.
//!
//! Unsealing reads the key check from `settings` and compares the presented
//! key with it BEFORE anything is written, so a wrong key or passphrase
//! leaves the store exactly as it was. Only a store that was never sealed
//! gets its key check, passphrase parameters and audit key written.
//!
//! Rotation re-wraps every data key, the audit key and the key check in one
//! transaction; writers of new versions wait on the keyring's gate, readers
//! never wait (they pick the key by the id stored with each row, and the
//! retired key stays in memory until the process ends). With a key file,
//! the new key is written to `master.key.next` first and renamed over
//! `master.key` after the commit; a start after a crash in between finishes
//! the rename (`plan::plan_key_file`).

use super::envelope::{self, CryptoError, KeyCheck, KeyId, MasterKey, SecretKey, WrappedKey};
use super::master_key::{self, KdfParams, KeyError, KeySource, SecretText, SourceKind};
use super::plan::{
    FileKey, KeyFilePlan, NewKeyPlan, RotationRefused, RotationRequest, plan_key_file,
    plan_rotation, unseal_hint,
};
use crate::store::{RewrappedKey, Store, StoreError, WrappedKeyRow};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use zeroize::Zeroizing;

/// `settings` key of the key check.
pub const KEY_CHECK_SETTING: &str = "crypto.key_check";
/// `settings` key of the audit key wrapped by the master key.
pub const AUDIT_KEY_SETTING: &str = "crypto.audit_key";
/// `settings` key of the passphrase's argon2id parameters and salt.
pub const KDF_SETTING: &str = "crypto.passphrase_kdf";

/// The key check as stored (JSON, base64 fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredKeyCheck {
    key_id: String,
    sealed_with: SourceKind,
    nonce: String,
    sealed: String,
}

/// A wrapped key as stored (JSON, base64 fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredWrappedKey {
    key_id: String,
    nonce: String,
    wrapped: String,
}

fn decode(what: &str, text: &str) -> Result<Vec<u8>, UnsealError> {
    BASE64.decode(text).map_err(|_| UnsealError::Corrupt {
        what: format!("{what} is not base64"),
    })
}

impl StoredKeyCheck {
    fn new(check: &KeyCheck, sealed_with: SourceKind) -> StoredKeyCheck {
        StoredKeyCheck {
            key_id: check.key_id.to_string(),
            sealed_with,
            nonce: BASE64.encode(&check.nonce),
            sealed: BASE64.encode(&check.sealed),
        }
    }

    fn check(&self) -> Result<KeyCheck, UnsealError> {
        Ok(KeyCheck {
            key_id: KeyId::from_stored(&self.key_id),
            nonce: decode(KEY_CHECK_SETTING, &self.nonce)?,
            sealed: decode(KEY_CHECK_SETTING, &self.sealed)?,
        })
    }
}

impl StoredWrappedKey {
    fn new(wrapped: &WrappedKey) -> StoredWrappedKey {
        StoredWrappedKey {
            key_id: wrapped.master_key_id.to_string(),
            nonce: BASE64.encode(&wrapped.nonce),
            wrapped: BASE64.encode(&wrapped.wrapped),
        }
    }

    fn wrapped(&self) -> Result<WrappedKey, UnsealError> {
        Ok(WrappedKey {
            master_key_id: KeyId::from_stored(&self.key_id),
            nonce: decode(AUDIT_KEY_SETTING, &self.nonce)?,
            wrapped: decode(AUDIT_KEY_SETTING, &self.wrapped)?,
        })
    }
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn from_json<T: for<'de> Deserialize<'de>>(key: &str, text: &str) -> Result<T, UnsealError> {
    serde_json::from_str(text).map_err(|e| UnsealError::Corrupt {
        what: format!("{key}: {e}"),
    })
}

/// What the store says about how it is sealed.
#[derive(Debug, Clone, Default)]
struct Sealing {
    check: Option<StoredKeyCheck>,
    kdf: Option<KdfParams>,
    audit_key: Option<StoredWrappedKey>,
}

impl Sealing {
    async fn load(store: &Store) -> Result<Sealing, UnsealError> {
        let read = |key| async move { store.setting(key).await };
        Ok(Sealing {
            check: read(KEY_CHECK_SETTING)
                .await?
                .map(|t| from_json(KEY_CHECK_SETTING, &t))
                .transpose()?,
            kdf: read(KDF_SETTING)
                .await?
                .map(|t| from_json(KDF_SETTING, &t))
                .transpose()?,
            audit_key: read(AUDIT_KEY_SETTING)
                .await?
                .map(|t| from_json(AUDIT_KEY_SETTING, &t))
                .transpose()?,
        })
    }
}

/// Why the control plane refused to unseal its store. Every variant means
/// nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum UnsealError {
    #[error(
        "{presented} (key id {presented_id}) does not match the key this store was sealed with \
         (key id {sealed_id}, from {}); the control plane did not start and changed nothing. {hint}",
        sealed_with.describe()
    )]
    WrongKey {
        presented: String,
        presented_id: KeyId,
        sealed_id: KeyId,
        sealed_with: SourceKind,
        hint: String,
    },
    #[error(
        "this store is sealed with master key {sealed_id} (from {}), but {} does not exist; \
         the control plane did not start and changed nothing. {hint}",
        sealed_with.describe(), path.display()
    )]
    KeyFileMissing {
        path: PathBuf,
        sealed_id: KeyId,
        sealed_with: SourceKind,
        hint: String,
    },
    #[error(
        "{presented} was given, but this store was sealed with {} (key id {sealed_id}) and has no \
         passphrase parameters; the control plane did not start and changed nothing. {hint}",
        sealed_with.describe()
    )]
    NotPassphraseSealed {
        presented: String,
        sealed_id: KeyId,
        sealed_with: SourceKind,
        hint: String,
    },
    #[error(
        "the audit key stored in settings ({AUDIT_KEY_SETTING}) does not open with the master \
         key although the key check does: the row was altered; restore it from a backup"
    )]
    AuditKey,
    #[error(
        "the sealing record in settings is damaged ({what}); the database was changed by hand: \
         restore it from a backup"
    )]
    Corrupt { what: String },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a rotation was refused or failed; nothing changed unless it says so.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error(transparent)]
    Refused(#[from] RotationRefused),
    #[error("the new master key is the current one (key id {0}); nothing to do")]
    SameKey(KeyId),
    #[error(
        "secret {name} version {version} cannot be re-wrapped ({reason}); nothing was changed: \
         delete that secret or restore it from a backup, then rotate again"
    )]
    Undecryptable {
        name: String,
        version: u32,
        reason: String,
    },
    #[error(
        "the re-wrap was committed but {} could not be renamed to {} ({source}); rename it by hand \
         before the next restart (a restart also finishes it)",
        next.display(), path.display()
    )]
    Promote {
        next: PathBuf,
        path: PathBuf,
        source: KeyError,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a finished rotation reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    pub old_key_id: KeyId,
    pub new_key_id: KeyId,
    pub data_keys_rewrapped: u64,
    pub source: SourceKind,
    /// What the operator must do before the next restart, if anything.
    pub next_step: String,
}

/// Every master key this process has held: the current one first.
struct Keys {
    current: MasterKey,
    /// The key a rotation in progress re-wraps under: readers may see rows
    /// it committed before the switch to it.
    incoming: Option<MasterKey>,
    retired: Vec<MasterKey>,
}

/// The unsealed keys of a running control plane.
pub struct Keyring {
    source: SourceKind,
    /// `<data-dir>/master.key` for the key-file source.
    key_file: Option<PathBuf>,
    keys: RwLock<Keys>,
    audit_key: SecretKey,
    /// Held shared while a new version is sealed and stored, exclusively
    /// while the master key is rotated.
    gate: tokio::sync::RwLock<()>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("source", &self.source)
            .field("current_key_id", &self.current_key_id())
            .finish_non_exhaustive()
    }
}

async fn derive_off_thread(
    params: KdfParams,
    passphrase: SecretText,
) -> Result<SecretKey, KeyError> {
    tokio::task::spawn_blocking(move || params.derive(passphrase.expose()))
        .await
        .map_err(|e| KeyError::Kdf(format!("the key derivation task failed: {e}")))?
}

fn wrong_key(
    presented: String,
    presented_kind: SourceKind,
    master: &MasterKey,
    check: &StoredKeyCheck,
) -> UnsealError {
    UnsealError::WrongKey {
        presented,
        presented_id: master.id().clone(),
        sealed_id: KeyId::from_stored(&check.key_id),
        sealed_with: check.sealed_with,
        hint: unseal_hint(presented_kind, check.sealed_with),
    }
}

fn file_key(key: Option<&SecretKey>, check: Option<&KeyCheck>) -> FileKey {
    match (key, check) {
        (None, _) => FileKey::Absent,
        (Some(_), None) => FileKey::Matches,
        (Some(key), Some(check)) => {
            if envelope::key_matches(&MasterKey::new(key.clone()), check) {
                FileKey::Matches
            } else {
                FileKey::Mismatch
            }
        }
    }
}

/// Finds the master key of the key-file source, finishing an interrupted
/// rotation or creating the file for a store never sealed.
fn unseal_key_file(path: &Path, sealing: &Sealing) -> Result<MasterKey, UnsealError> {
    let next_path = master_key::next_key_path(path);
    let current = master_key::read_key_file(path)?;
    let next = master_key::read_key_file(&next_path)?;
    let check = sealing
        .check
        .as_ref()
        .map(StoredKeyCheck::check)
        .transpose()?;
    let plan = plan_key_file(
        check.is_some(),
        file_key(current.as_ref(), check.as_ref()),
        file_key(next.as_ref(), check.as_ref()),
    );
    let discard = |discard_next: bool| {
        if discard_next {
            tracing::warn!(path = %next_path.display(), "removing the new key of a master-key rotation that never committed");
            if let Err(error) = std::fs::remove_file(&next_path) {
                tracing::warn!(%error, path = %next_path.display(), "could not remove it");
            }
        }
    };
    let stored = sealing.check.as_ref();
    match (plan, current, next, stored) {
        (KeyFilePlan::Use { discard_next }, Some(key), _, _) => {
            discard(discard_next);
            Ok(MasterKey::new(key))
        }
        (KeyFilePlan::PromoteNext, _, Some(key), _) => {
            tracing::warn!(
                from = %next_path.display(), to = %path.display(),
                "finishing an interrupted master-key rotation: the store is sealed with the new key"
            );
            master_key::promote_key_file(&next_path, path)?;
            Ok(MasterKey::new(key))
        }
        (KeyFilePlan::Create { discard_next }, _, _, _) => {
            discard(discard_next);
            let key = SecretKey::random()?;
            if master_key::create_key_file(path, &key)? {
                tracing::info!(path = %path.display(), "created the master key file (mode 0600); back it up apart from the database");
                Ok(MasterKey::new(key))
            } else {
                // Another process created it first: use that one.
                let key = master_key::read_key_file(path)?.ok_or_else(|| UnsealError::Corrupt {
                    what: format!("{} vanished while starting", path.display()),
                })?;
                Ok(MasterKey::new(key))
            }
        }
        (KeyFilePlan::RefuseMissing, _, _, Some(stored)) => Err(UnsealError::KeyFileMissing {
            path: path.to_owned(),
            sealed_id: KeyId::from_stored(&stored.key_id),
            sealed_with: stored.sealed_with,
            hint: unseal_hint(SourceKind::KeyFile, stored.sealed_with),
        }),
        (_, Some(key), _, Some(stored)) => Err(wrong_key(
            format!("the master key in {}", path.display()),
            SourceKind::KeyFile,
            &MasterKey::new(key),
            stored,
        )),
        (plan, ..) => Err(UnsealError::Corrupt {
            what: format!("unexpected key-file state {plan:?}"),
        }),
    }
}

impl Keyring {
    /// Unseals the store with the key from `source`: refuses, changing
    /// nothing, when the key does not open the stored key check; seals a
    /// store that was never sealed; loads (or first creates) the audit key.
    pub async fn unseal(store: &Store, source: KeySource) -> Result<Keyring, UnsealError> {
        let sealing = Sealing::load(store).await?;
        let kind = source.kind();
        let mut key_file = None;
        let master = match source {
            KeySource::MasterKey(key) => {
                let master = MasterKey::new(key);
                if let Some(check) = &sealing.check
                    && !envelope::key_matches(&master, &check.check()?)
                {
                    let presented = "the master key from ARGOSY_MASTER_KEY (--master-key)";
                    return Err(wrong_key(presented.to_owned(), kind, &master, check));
                }
                master
            }
            KeySource::Passphrase { passphrase, origin } => {
                let params = match (&sealing.kdf, &sealing.check) {
                    (Some(params), _) => params.clone(),
                    (None, Some(check)) => {
                        return Err(UnsealError::NotPassphraseSealed {
                            presented: origin.to_string(),
                            sealed_id: KeyId::from_stored(&check.key_id),
                            sealed_with: check.sealed_with,
                            hint: unseal_hint(SourceKind::Passphrase, check.sealed_with),
                        });
                    }
                    // Never sealed: store fresh parameters. When several
                    // replicas start at once, the first to store them wins
                    // and every one derives with the winner's.
                    (None, None) => {
                        master_key::check_new_passphrase(passphrase.expose())?;
                        store
                            .insert_setting_if_absent(KDF_SETTING, &to_json(&KdfParams::fresh()?))
                            .await?;
                        let text = store.setting(KDF_SETTING).await?.unwrap_or_default();
                        from_json(KDF_SETTING, &text)?
                    }
                };
                let master = MasterKey::new(derive_off_thread(params, passphrase).await?);
                if let Some(check) = &sealing.check
                    && !envelope::key_matches(&master, &check.check()?)
                {
                    return Err(wrong_key(origin.to_string(), kind, &master, check));
                }
                master
            }
            KeySource::KeyFile(path) => {
                let master = unseal_key_file(&path, &sealing)?;
                key_file = Some(path);
                master
            }
        };

        // The key is right (or the store was never sealed): from here on
        // writing is allowed.
        if sealing.check.is_none() {
            seal_store(store, &master, kind).await?;
        }
        let audit_key = load_or_create_audit_key(store, &master, sealing.audit_key).await?;
        tracing::info!(key_id = %master.id(), source = ?kind, "store unsealed");
        Ok(Keyring {
            source: kind,
            key_file,
            keys: RwLock::new(Keys {
                current: master,
                incoming: None,
                retired: Vec::new(),
            }),
            audit_key,
            gate: tokio::sync::RwLock::new(()),
        })
    }

    /// The audit log's HMAC key (32 bytes).
    pub fn audit_key(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(*self.audit_key.expose())
    }

    /// Where the master key comes from.
    pub fn source(&self) -> SourceKind {
        self.source
    }

    pub fn current_key_id(&self) -> KeyId {
        self.read_keys().current.id().clone()
    }

    fn read_keys(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.keys.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The master key new versions are sealed with.
    pub(crate) fn current(&self) -> MasterKey {
        self.read_keys().current.clone()
    }

    /// The master key with id `id`, if this process holds it.
    pub(crate) fn by_id(&self, id: &str) -> Option<MasterKey> {
        let keys = self.read_keys();
        std::iter::once(&keys.current)
            .chain(keys.incoming.iter())
            .chain(keys.retired.iter())
            .find(|key| key.id().as_str() == id)
            .cloned()
    }

    /// Held while a new version is sealed and stored, so a rotation never
    /// misses it.
    pub(crate) async fn sealing(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().await
    }

    /// Re-wraps every data key, the audit key and the key check under a new
    /// master key in one transaction, then switches to it. See the module
    /// docs for the key-file steps.
    pub async fn rotate(
        &self,
        store: &Store,
        request: RotationRequest,
    ) -> Result<Rotated, RotateError> {
        let _exclusive = self.gate.write().await;
        let plan = plan_rotation(self.source, request)?;
        let old = self.current();
        let (new, kdf) = match plan {
            NewKeyPlan::KeyFile(Some(key)) | NewKeyPlan::MasterKey(key) => {
                (MasterKey::new(key), None)
            }
            NewKeyPlan::KeyFile(None) => (MasterKey::new(SecretKey::random()?), None),
            NewKeyPlan::Passphrase(passphrase) => {
                let params = KdfParams::fresh()?;
                let key = derive_off_thread(params.clone(), passphrase).await?;
                (MasterKey::new(key), Some(params))
            }
        };
        if new.id() == old.id() {
            return Err(RotateError::SameKey(old.id().clone()));
        }
        let next_file = match &self.key_file {
            Some(path) => {
                let next = master_key::next_key_path(path);
                master_key::replace_key_file(&next, &SecretKey::from_bytes(new.expose())?)?;
                Some((next, path.clone()))
            }
            None => None,
        };
        // Rows re-wrapped under the new key become visible when the
        // transaction commits, before the switch below: readers must be
        // able to open them in between.
        self.keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .incoming = Some(new.clone());
        let result = self.rewrap(store, &new, kdf.as_ref()).await;
        let count = match result {
            Ok(count) => count,
            Err(error) => {
                self.keys
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .incoming = None;
                if let Some((next, _)) = &next_file {
                    let _ = std::fs::remove_file(next);
                }
                return Err(error);
            }
        };
        {
            let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
            keys.retired.push(old.clone());
            keys.current = new.clone();
            keys.incoming = None;
        }
        if let Some((next, path)) = next_file {
            master_key::promote_key_file(&next, &path).map_err(|source| RotateError::Promote {
                next,
                path,
                source,
            })?;
        }
        let next_step = match self.source {
            SourceKind::MasterKey => format!(
                "set ARGOSY_MASTER_KEY to the new key (key id {}) before the next restart: the old key no longer opens the store",
                new.id()
            ),
            SourceKind::Passphrase => {
                "use the new passphrase from the next restart on: the old one no longer opens the store"
                    .to_owned()
            }
            SourceKind::KeyFile => format!(
                "master.key in the data folder now holds the new key (key id {}); replace your backup of it",
                new.id()
            ),
        };
        tracing::info!(old_key_id = %old.id(), new_key_id = %new.id(), data_keys = count, "master key rotated");
        Ok(Rotated {
            old_key_id: old.id().clone(),
            new_key_id: new.id().clone(),
            data_keys_rewrapped: count,
            source: self.source,
            next_step,
        })
    }

    async fn rewrap(
        &self,
        store: &Store,
        new: &MasterKey,
        kdf: Option<&KdfParams>,
    ) -> Result<u64, RotateError> {
        let mut settings = vec![
            (
                KEY_CHECK_SETTING,
                to_json(&StoredKeyCheck::new(
                    &envelope::key_check(new)?,
                    self.source,
                )),
            ),
            (
                AUDIT_KEY_SETTING,
                to_json(&StoredWrappedKey::new(&envelope::wrap_audit_key(
                    new,
                    &self.audit_key,
                )?)),
            ),
        ];
        if let Some(params) = kdf {
            settings.push((KDF_SETTING, to_json(params)));
        }
        store
            .rewrap_secret_keys(
                |row: &WrappedKeyRow| {
                    let undecryptable = |reason: String| RotateError::Undecryptable {
                        name: row.name.clone(),
                        version: row.version,
                        reason,
                    };
                    let holder = self.by_id(&row.master_key_id).ok_or_else(|| {
                        undecryptable(format!(
                            "it is sealed under master key {}, which this control plane does not hold",
                            row.master_key_id
                        ))
                    })?;
                    let wrapped = WrappedKey {
                        master_key_id: holder.id().clone(),
                        nonce: row.key_nonce.clone(),
                        wrapped: row.wrapped_key.clone(),
                    };
                    let rewrapped = envelope::rewrap_data_key(
                        &holder,
                        new,
                        &wrapped,
                        &row.name,
                        row.version,
                    )
                    .map_err(|e| undecryptable(e.to_string()))?;
                    Ok::<_, RotateError>(RewrappedKey {
                        wrapped_key: rewrapped.wrapped,
                        key_nonce: rewrapped.nonce,
                        master_key_id: rewrapped.master_key_id.to_string(),
                    })
                },
                &settings,
            )
            .await
    }
}

/// Writes the key check of a store never sealed before. When another
/// replica sealed it first, its check must match this key.
async fn seal_store(
    store: &Store,
    master: &MasterKey,
    kind: SourceKind,
) -> Result<(), UnsealError> {
    let check = StoredKeyCheck::new(&envelope::key_check(master)?, kind);
    if !store
        .insert_setting_if_absent(KEY_CHECK_SETTING, &to_json(&check))
        .await?
    {
        let text = store.setting(KEY_CHECK_SETTING).await?.unwrap_or_default();
        let winner: StoredKeyCheck = from_json(KEY_CHECK_SETTING, &text)?;
        if !envelope::key_matches(master, &winner.check()?) {
            return Err(wrong_key(
                "this control plane's master key".to_owned(),
                kind,
                master,
                &winner,
            ));
        }
    } else {
        tracing::info!(key_id = %master.id(), "sealed the store with a new master key");
    }
    Ok(())
}

async fn load_or_create_audit_key(
    store: &Store,
    master: &MasterKey,
    stored: Option<StoredWrappedKey>,
) -> Result<SecretKey, UnsealError> {
    let stored = match stored {
        Some(stored) => stored,
        None => {
            let fresh =
                StoredWrappedKey::new(&envelope::wrap_audit_key(master, &SecretKey::random()?)?);
            store
                .insert_setting_if_absent(AUDIT_KEY_SETTING, &to_json(&fresh))
                .await?;
            let text = store.setting(AUDIT_KEY_SETTING).await?.unwrap_or_default();
            from_json(AUDIT_KEY_SETTING, &text)?
        }
    };
    envelope::unwrap_audit_key(master, &stored.wrapped()?).map_err(|_| UnsealError::AuditKey)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::master_key::PassphraseOrigin;
    use crate::store::test_support::*;

    fn text(s: &str) -> Option<SecretText> {
        Some(SecretText::new(s.to_owned()))
    }

    fn env_source(bytes: u8) -> KeySource {
        KeySource::MasterKey(SecretKey::from_bytes(&[bytes; 32]).unwrap())
    }

    /// Every row of every table, as text, to prove a refused start wrote nothing.
    async fn snapshot(store: &Store) -> anyhow::Result<Vec<String>> {
        let mut rows = Vec::new();
        for (key, value) in
            sqlx::query_as::<_, (String, String)>("SELECT key, value FROM settings ORDER BY key")
                .fetch_all(store.pool())
                .await?
        {
            rows.push(format!("{key}={value}"));
        }
        let versions = store.list_secrets().await?;
        rows.push(format!("{versions:?}"));
        Ok(rows)
    }

    async fn seal_one_secret(store: &Store, keyring: &Keyring, name: &str) -> anyhow::Result<()> {
        let master = keyring.current();
        store
            .add_secret_version(
                &crate::store::NewSecretVersion {
                    name,
                    actor: "test",
                    now_ms: 1,
                    must_exist: false,
                    keep: 10,
                },
                |version| {
                    let sealed =
                        envelope::seal_value(&master, name, version, b"value").map_err(|e| {
                            StoreError::Corrupt {
                                what: e.to_string(),
                            }
                        })?;
                    Ok::<_, StoreError>(crate::store::SealedVersion {
                        ciphertext: sealed.ciphertext,
                        nonce: sealed.nonce,
                        wrapped_key: sealed.data_key.wrapped,
                        key_nonce: sealed.data_key.nonce,
                        master_key_id: sealed.data_key.master_key_id.to_string(),
                    })
                },
            )
            .await?;
        Ok(())
    }

    store_test!(a_wrong_master_key_is_refused_before_anything_is_written);
    async fn a_wrong_master_key_is_refused_before_anything_is_written(
        db: TestDb,
    ) -> anyhow::Result<()> {
        let store = db.store();
        let keyring = Keyring::unseal(&store, env_source(1)).await?;
        let audit_key = keyring.audit_key();
        seal_one_secret(&store, &keyring, "a").await?;
        let before = snapshot(&store).await?;
        let error = Keyring::unseal(&store, env_source(2)).await.unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, UnsealError::WrongKey { .. }), "{message}");
        assert!(
            message.starts_with("the master key from ARGOSY_MASTER_KEY (--master-key) (key id mk-"),
            "{message}"
        );
        assert!(
            message.contains(&format!(
                "does not match the key this store was sealed with (key id {}",
                keyring.current_key_id()
            )),
            "{message}"
        );
        assert!(message.contains("changed nothing"), "{message}");
        assert!(message.contains("Set ARGOSY_MASTER_KEY"), "{message}");
        assert_eq!(snapshot(&store).await?, before);
        // The right key still opens it, with the same audit key.
        let again = Keyring::unseal(&store, env_source(1)).await?;
        assert_eq!(*again.audit_key(), *audit_key);
        assert_eq!(snapshot(&store).await?, before);
        Ok(())
    }

    fn passphrase(text: &str) -> KeySource {
        KeySource::Passphrase {
            passphrase: SecretText::new(text.to_owned()),
            origin: PassphraseOrigin::Environment,
        }
    }

    store_test!(a_passphrase_seals_with_recorded_parameters);
    async fn a_passphrase_seals_with_recorded_parameters(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        let keyring = Keyring::unseal(&store, passphrase("correct horse battery")).await?;
        assert_eq!(keyring.source(), SourceKind::Passphrase);
        let params: KdfParams = serde_json::from_str(&store.setting(KDF_SETTING).await?.unwrap())?;
        assert_eq!(params.algorithm, "argon2id");
        assert_eq!(params.memory_kib, argon2::Params::DEFAULT_M_COST);
        let before = snapshot(&store).await?;
        let error = Keyring::unseal(&store, passphrase("correct horse batteries"))
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("the unseal passphrase from ARGOSY_UNSEAL_PASSPHRASE (key id"),
            "{message}"
        );
        assert!(message.contains("Check the unseal passphrase"), "{message}");
        assert_eq!(snapshot(&store).await?, before);
        // A key instead of the passphrase is refused with a pointer to it.
        let message = Keyring::unseal(&store, env_source(3))
            .await
            .unwrap_err()
            .to_string();
        assert!(message.contains("from an unseal passphrase"), "{message}");
        assert!(message.contains("--unseal-passphrase-file"), "{message}");
        let again = Keyring::unseal(&store, passphrase("correct horse battery")).await?;
        assert_eq!(again.current_key_id(), keyring.current_key_id());
        assert_eq!(snapshot(&store).await?, before);
        Ok(())
    }

    store_test!(a_short_first_passphrase_is_refused);
    async fn a_short_first_passphrase_is_refused(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        let error = Keyring::unseal(&store, passphrase("short"))
            .await
            .unwrap_err();
        assert!(matches!(
            error,
            UnsealError::Key(KeyError::WeakPassphrase { .. })
        ));
        assert_eq!(store.setting(KEY_CHECK_SETTING).await?, None);
        assert_eq!(store.setting(KDF_SETTING).await?, None);
        // A passphrase for a store sealed with a key is refused too.
        Keyring::unseal(&store, env_source(1)).await?;
        let error = Keyring::unseal(&store, passphrase("a long passphrase here"))
            .await
            .unwrap_err();
        assert!(
            matches!(error, UnsealError::NotPassphraseSealed { .. }),
            "{error}"
        );
        Ok(())
    }

    store_test!(the_key_file_is_created_then_required);
    async fn the_key_file_is_created_then_required(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(master_key::KEY_FILE_NAME);
        let keyring = Keyring::unseal(&store, KeySource::KeyFile(path.clone())).await?;
        let key = master_key::read_key_file(&path)?.expect("created");
        assert_eq!(*MasterKey::new(key).id(), keyring.current_key_id());
        let before = snapshot(&store).await?;

        std::fs::rename(&path, dir.path().join("elsewhere"))?;
        let error = Keyring::unseal(&store, KeySource::KeyFile(path.clone()))
            .await
            .unwrap_err();
        assert!(
            matches!(error, UnsealError::KeyFileMissing { .. }),
            "{error}"
        );
        assert!(!path.exists(), "a sealed store never gets a new key file");

        master_key::create_key_file(&path, &SecretKey::random()?)?;
        let error = Keyring::unseal(&store, KeySource::KeyFile(path.clone()))
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("the master key in {} (key id", path.display())),
            "{message}"
        );
        assert!(
            message.contains("Restore this store's master.key"),
            "{message}"
        );
        assert_eq!(snapshot(&store).await?, before);
        Ok(())
    }

    fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, bytes)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
    }

    store_test!(rotation_rewraps_everything_and_survives_an_interrupted_rename);
    async fn rotation_rewraps_everything_and_survives_an_interrupted_rename(
        db: TestDb,
    ) -> anyhow::Result<()> {
        let store = db.store();
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(master_key::KEY_FILE_NAME);
        let keyring = Keyring::unseal(&store, KeySource::KeyFile(path.clone())).await?;
        let audit_key = keyring.audit_key();
        seal_one_secret(&store, &keyring, "a").await?;
        seal_one_secret(&store, &keyring, "b").await?;
        let old_key = std::fs::read(&path)?;
        let old_id = keyring.current_key_id();

        let rotated = keyring.rotate(&store, RotationRequest::default()).await?;
        assert_eq!(rotated.old_key_id, old_id);
        assert_eq!(rotated.data_keys_rewrapped, 2);
        assert_eq!(keyring.current_key_id(), rotated.new_key_id);
        assert!(!master_key::next_key_path(&path).exists());
        for version in store.secret_versions("a").await? {
            assert_eq!(version.master_key_id, rotated.new_key_id.as_str());
        }
        // The old key is still held for readers that fetched a row before.
        assert!(keyring.by_id(old_id.as_str()).is_some());
        // Both sealed rows open with the new key.
        let sealed = store.sealed_secret_version("a", 1).await?.unwrap();
        let opened = envelope::open_value(
            &keyring.current(),
            &envelope::SealedValue {
                ciphertext: sealed.ciphertext,
                nonce: sealed.nonce,
                data_key: WrappedKey {
                    master_key_id: KeyId::from_stored(&sealed.master_key_id),
                    nonce: sealed.key_nonce,
                    wrapped: sealed.wrapped_key,
                },
            },
            "a",
            1,
        )?;
        assert_eq!(opened.as_slice(), b"value");

        // After a restart, the new key file unseals with the same audit key.
        let again = Keyring::unseal(&store, KeySource::KeyFile(path.clone())).await?;
        assert_eq!(again.current_key_id(), rotated.new_key_id);
        assert_eq!(*again.audit_key(), *audit_key);

        // A crash after the commit but before the rename: master.key still
        // holds the old key and master.key.next the new one.
        let new_key = std::fs::read(&path)?;
        write_private(&master_key::next_key_path(&path), &new_key)?;
        write_private(&path, &old_key)?;
        let recovered = Keyring::unseal(&store, KeySource::KeyFile(path.clone())).await?;
        assert_eq!(recovered.current_key_id(), rotated.new_key_id);
        assert_eq!(std::fs::read(&path)?, new_key);
        assert!(!master_key::next_key_path(&path).exists());

        // The old key alone is refused.
        write_private(&path, &old_key)?;
        let error = Keyring::unseal(&store, KeySource::KeyFile(path.clone()))
            .await
            .unwrap_err();
        assert!(matches!(error, UnsealError::WrongKey { .. }), "{error}");
        Ok(())
    }

    store_test!(rotating_a_given_key_and_a_passphrase);
    async fn rotating_a_given_key_and_a_passphrase(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        let keyring = Keyring::unseal(&store, env_source(1)).await?;
        seal_one_secret(&store, &keyring, "a").await?;
        let same = keyring
            .rotate(
                &store,
                RotationRequest {
                    new_master_key: text(&BASE64.encode([1u8; 32])),
                    new_passphrase: None,
                },
            )
            .await;
        assert!(matches!(same, Err(RotateError::SameKey(_))));
        let rotated = keyring
            .rotate(
                &store,
                RotationRequest {
                    new_master_key: text(&BASE64.encode([2u8; 32])),
                    new_passphrase: None,
                },
            )
            .await?;
        assert!(
            rotated.next_step.contains("ARGOSY_MASTER_KEY"),
            "{}",
            rotated.next_step
        );
        assert!(matches!(
            Keyring::unseal(&store, env_source(1)).await,
            Err(UnsealError::WrongKey { .. })
        ));
        Keyring::unseal(&store, env_source(2)).await?;
        Ok(())
    }

    store_test!(rotating_a_passphrase_records_new_parameters);
    async fn rotating_a_passphrase_records_new_parameters(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        let keyring = Keyring::unseal(&store, passphrase("first passphrase")).await?;
        seal_one_secret(&store, &keyring, "a").await?;
        let old_params = store.setting(KDF_SETTING).await?;
        keyring
            .rotate(
                &store,
                RotationRequest {
                    new_master_key: None,
                    new_passphrase: text("second passphrase"),
                },
            )
            .await?;
        assert_ne!(
            store.setting(KDF_SETTING).await?,
            old_params,
            "a fresh salt"
        );
        assert!(
            Keyring::unseal(&store, passphrase("first passphrase"))
                .await
                .is_err()
        );
        Keyring::unseal(&store, passphrase("second passphrase")).await?;
        Ok(())
    }

    store_test!(a_failed_rewrap_changes_nothing);
    async fn a_failed_rewrap_changes_nothing(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(master_key::KEY_FILE_NAME);
        let keyring = Keyring::unseal(&store, KeySource::KeyFile(path.clone())).await?;
        seal_one_secret(&store, &keyring, "a").await?;
        seal_one_secret(&store, &keyring, "b").await?;
        sqlx::query("UPDATE secret_versions SET wrapped_key = $1 WHERE name = 'b'")
            .bind(vec![0u8; 48])
            .execute(store.pool())
            .await?;
        let before = snapshot(&store).await?;
        let key_before = std::fs::read(&path)?;
        let error = keyring
            .rotate(&store, RotationRequest::default())
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("secret b version 1 cannot be re-wrapped"),
            "{message}"
        );
        assert_eq!(snapshot(&store).await?, before);
        assert_eq!(std::fs::read(&path)?, key_before);
        assert!(!master_key::next_key_path(&path).exists());
        assert_eq!(
            keyring.current().id(),
            MasterKey::new(master_key::read_key_file(&path)?.unwrap()).id()
        );
        Ok(())
    }
}
