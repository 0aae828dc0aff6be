//! `SecretVault` (`cp.secrets`): the secret API the rest of the control
//! plane uses — set a new version, read a version's value, look up latest
//! versions, list, delete, and a broadcast of new versions of existing
//! secrets (which redeploys the services following them). Values are sealed
//! with `envelope` under the keyring's master key before they reach the
//! store and opened only here; no value is ever logged or put in an error.

use super::envelope::{self, CryptoError, KeyId, SealedValue, WrappedKey};
use super::keyring::{Keyring, RotateError, Rotated};
use super::plan::RotationRequest;
use crate::clock::Clock;
use crate::store::{
    NewSecretVersion, SealedVersion, SecretRow, SecretVersionRow, Store, StoreError,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use tokio::sync::broadcast;
use zeroize::Zeroizing;

/// The longest secret name.
pub const MAX_NAME_LEN: usize = 128;
/// The largest secret value: 64 KiB.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// How many versions of each secret are kept unless configured otherwise.
pub const DEFAULT_VERSIONS_KEPT: u32 = 10;

/// Why a secret operation failed. Messages name secrets and versions, never
/// values.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "secret name {name:?} is not valid: {reason}; use 1–128 lowercase letters, digits, '-', '_', '.' and '/' (as in crm/db-password)"
    )]
    InvalidName { name: String, reason: &'static str },
    #[error("a secret value must not be empty")]
    EmptyValue,
    #[error("the secret value is {size} bytes; the limit is 64 KiB (65536 bytes)")]
    TooLarge { size: usize },
    #[error("{}", missing_message(.0))]
    Missing(Vec<String>),
    #[error("secret {name} has no version {version}; the stored versions are {}", list_versions(.stored))]
    VersionMissing {
        name: String,
        version: u32,
        stored: Vec<u32>,
    },
    #[error("secret versions count from 1; version 0 of {name} does not exist")]
    VersionZero { name: String },
    #[error(
        "secret {name} version {version} cannot be decrypted: its stored ciphertext or data key was altered, damaged or copied from another row; other secrets are unaffected — set a new version (`argosy secret rotate {name} --from-file FILE`) or restore the database from a backup"
    )]
    Undecryptable { name: String, version: u32 },
    #[error(
        "secret {name} version {version} is sealed under master key {key_id}, which this control plane does not hold (it holds {current}); start it with that key, or restore the database from a backup"
    )]
    UnknownMasterKey {
        name: String,
        version: u32,
        key_id: String,
        current: KeyId,
    },
    #[error("cannot seal the secret: {0}")]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn missing_message(names: &[String]) -> String {
    match names {
        [name] => format!(
            "secret {name} does not exist; create it with `argosy secret set {name} --from-file FILE`"
        ),
        names => format!(
            "secrets {} do not exist; create each with `argosy secret set NAME --from-file FILE`",
            names.join(", ")
        ),
    }
}

fn list_versions(versions: &[u32]) -> String {
    if versions.is_empty() {
        return "none".to_owned();
    }
    versions
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl SecretError {
    /// True when the caller asked for something wrong (rather than the
    /// store or the sealed data failing).
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            SecretError::InvalidName { .. }
                | SecretError::EmptyValue
                | SecretError::TooLarge { .. }
                | SecretError::VersionZero { .. }
        )
    }
}

/// Checks a secret name: 1–128 characters of `a-z 0-9 - _ . /`, no leading
/// or trailing `/`, no empty segment, no `.` or `..` anywhere as a path
/// step (names become file names under `/run/secrets`).
pub fn validate_name(name: &str) -> Result<(), SecretError> {
    let invalid = |reason| {
        Err(SecretError::InvalidName {
            name: name.chars().take(MAX_NAME_LEN + 8).collect(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return invalid("it is longer than 128 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_./".contains(&b))
    {
        return invalid("it holds a character other than a-z, 0-9, '-', '_', '.' and '/'");
    }
    if name.starts_with('/') || name.ends_with('/') {
        return invalid("it starts or ends with '/'");
    }
    if name.split('/').any(str::is_empty) {
        return invalid("it has an empty segment ('//')");
    }
    if name.contains("..") || name.split('/').any(|segment| segment == ".") {
        return invalid("it holds '..' or a '.' segment");
    }
    Ok(())
}

/// Checks a value's size: 1 byte to 64 KiB.
pub fn validate_value(value: &[u8]) -> Result<(), SecretError> {
    match value.len() {
        0 => Err(SecretError::EmptyValue),
        size if size > MAX_VALUE_BYTES => Err(SecretError::TooLarge { size }),
        _ => Ok(()),
    }
}

/// A secret version's value, wiped from memory when dropped.
pub struct SecretValue {
    pub name: String,
    pub version: u32,
    pub bytes: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretValue")
            .field("name", &self.name)
            .field("version", &self.version)
            .field(
                "bytes",
                &format_args!("REDACTED ({} bytes)", self.bytes.len()),
            )
            .finish()
    }
}

/// A new version of an existing secret was committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretChanged {
    pub name: String,
    pub version: u32,
    /// Who set it: `user:alice`, `token:ci`.
    pub actor: String,
}

/// Whether a set may create the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetMode {
    /// `secret set`: create it, or add a version.
    CreateOrAdd,
    /// `secret rotate`: add a version; fail if it does not exist.
    ExistingOnly,
}

/// What a set did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSet {
    pub name: String,
    pub version: u32,
    pub created: bool,
    /// Versions deleted because more than the kept number were stored.
    pub pruned: Vec<u32>,
}

/// The secret store: sealed at rest, opened on demand.
pub struct SecretVault {
    store: Store,
    keyring: Arc<Keyring>,
    clock: Arc<dyn Clock>,
    versions_kept: u32,
    changes: broadcast::Sender<SecretChanged>,
}

impl fmt::Debug for SecretVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretVault")
            .field("keyring", &self.keyring)
            .field("versions_kept", &self.versions_kept)
            .finish_non_exhaustive()
    }
}

fn to_stored(sealed: SealedValue) -> SealedVersion {
    SealedVersion {
        ciphertext: sealed.ciphertext,
        nonce: sealed.nonce,
        wrapped_key: sealed.data_key.wrapped,
        key_nonce: sealed.data_key.nonce,
        master_key_id: sealed.data_key.master_key_id.to_string(),
    }
}

fn from_stored(stored: SealedVersion) -> SealedValue {
    SealedValue {
        ciphertext: stored.ciphertext,
        nonce: stored.nonce,
        data_key: WrappedKey {
            master_key_id: KeyId::from_stored(&stored.master_key_id),
            nonce: stored.key_nonce,
            wrapped: stored.wrapped_key,
        },
    }
}

impl SecretVault {
    /// A vault over `store` sealing with `keyring`, keeping the newest
    /// `versions_kept` versions of each secret.
    pub fn new(
        store: Store,
        keyring: Arc<Keyring>,
        clock: Arc<dyn Clock>,
        versions_kept: u32,
    ) -> SecretVault {
        let (changes, _) = broadcast::channel(256);
        SecretVault {
            store,
            keyring,
            clock,
            versions_kept: versions_kept.max(1),
            changes,
        }
    }

    /// The keyring (the audit key, the current master key id).
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    pub fn versions_kept(&self) -> u32 {
        self.versions_kept
    }

    /// New versions of existing secrets, after they are committed.
    pub fn subscribe(&self) -> broadcast::Receiver<SecretChanged> {
        self.changes.subscribe()
    }

    /// Stores `value` as the next version of `name` (creating the secret
    /// unless `mode` is [`SetMode::ExistingOnly`]).
    pub async fn set(
        &self,
        name: &str,
        value: &[u8],
        mode: SetMode,
        actor: &str,
    ) -> Result<SecretSet, SecretError> {
        validate_name(name)?;
        validate_value(value)?;
        let _sealing = self.keyring.sealing().await;
        let master = self.keyring.current();
        let added = self
            .store
            .add_secret_version(
                &NewSecretVersion {
                    name,
                    actor,
                    now_ms: self.clock.now_ms(),
                    must_exist: mode == SetMode::ExistingOnly,
                    keep: self.versions_kept,
                },
                |version| {
                    Ok::<_, SecretError>(to_stored(envelope::seal_value(
                        &master, name, version, value,
                    )?))
                },
            )
            .await
            .map_err(|error| match error {
                SecretError::Store(StoreError::NotFound { .. }) => {
                    SecretError::Missing(vec![name.to_owned()])
                }
                other => other,
            })?;
        tracing::info!(
            secret = name,
            version = added.version,
            created = added.created,
            by = actor,
            "secret version stored"
        );
        if !added.created {
            // Nobody listening is fine: there is nothing to redeploy.
            let _ = self.changes.send(SecretChanged {
                name: name.to_owned(),
                version: added.version,
                actor: actor.to_owned(),
            });
        }
        Ok(SecretSet {
            name: name.to_owned(),
            version: added.version,
            created: added.created,
            pruned: added.pruned,
        })
    }

    /// The value of version `version` of `name`.
    pub async fn value(&self, name: &str, version: u32) -> Result<SecretValue, SecretError> {
        validate_name(name)?;
        if version == 0 {
            return Err(SecretError::VersionZero {
                name: name.to_owned(),
            });
        }
        let Some(stored) = self.store.sealed_secret_version(name, version).await? else {
            let stored: Vec<u32> = self
                .store
                .secret_versions(name)
                .await?
                .iter()
                .map(|v| v.version)
                .collect();
            if stored.is_empty() {
                return Err(SecretError::Missing(vec![name.to_owned()]));
            }
            return Err(SecretError::VersionMissing {
                name: name.to_owned(),
                version,
                stored,
            });
        };
        let Some(master) = self.keyring.by_id(&stored.master_key_id) else {
            return Err(SecretError::UnknownMasterKey {
                name: name.to_owned(),
                version,
                key_id: stored.master_key_id,
                current: self.keyring.current_key_id(),
            });
        };
        match envelope::open_value(&master, &from_stored(stored), name, version) {
            Ok(bytes) => Ok(SecretValue {
                name: name.to_owned(),
                version,
                bytes,
            }),
            Err(error) => {
                tracing::error!(secret = name, version, %error, "a stored secret version does not decrypt");
                Err(SecretError::Undecryptable {
                    name: name.to_owned(),
                    version,
                })
            }
        }
    }

    /// The value of the latest version of `name`.
    pub async fn latest_value(&self, name: &str) -> Result<SecretValue, SecretError> {
        validate_name(name)?;
        let row = self
            .store
            .secret(name)
            .await?
            .ok_or_else(|| SecretError::Missing(vec![name.to_owned()]))?;
        self.value(name, row.latest_version).await
    }

    /// The latest version of each of `names`; fails naming every one that
    /// does not exist.
    pub async fn latest_versions(
        &self,
        names: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, u32>, SecretError> {
        for name in names {
            validate_name(name)?;
        }
        let found = self.store.latest_secret_versions(names).await?;
        let missing: Vec<String> = names
            .iter()
            .filter(|name| !found.contains_key(*name))
            .cloned()
            .collect();
        if missing.is_empty() {
            Ok(found)
        } else {
            Err(SecretError::Missing(missing))
        }
    }

    /// Whether version `version` of `name` is stored (not pruned, not
    /// deleted).
    pub async fn version_exists(&self, name: &str, version: u32) -> Result<bool, SecretError> {
        validate_name(name)?;
        Ok(version >= 1 && self.store.secret_version_stored(name, version).await?)
    }

    /// Every secret's metadata, by name.
    pub async fn list(&self) -> Result<Vec<SecretRow>, SecretError> {
        Ok(self.store.list_secrets().await?)
    }

    /// The stored versions of `name`, newest first.
    pub async fn versions(&self, name: &str) -> Result<Vec<SecretVersionRow>, SecretError> {
        validate_name(name)?;
        let versions = self.store.secret_versions(name).await?;
        if versions.is_empty() {
            return Err(SecretError::Missing(vec![name.to_owned()]));
        }
        Ok(versions)
    }

    /// Deletes `name` and every stored version; returns how many versions
    /// were deleted.
    pub async fn delete(&self, name: &str, actor: &str) -> Result<u32, SecretError> {
        validate_name(name)?;
        let deleted = self
            .store
            .delete_secret(name)
            .await?
            .ok_or_else(|| SecretError::Missing(vec![name.to_owned()]))?;
        tracing::info!(
            secret = name,
            versions = deleted,
            by = actor,
            "secret deleted"
        );
        Ok(deleted)
    }

    /// Re-wraps every data key under a new master key (see
    /// [`Keyring::rotate`]).
    pub async fn rotate_master_key(
        &self,
        request: RotationRequest,
    ) -> Result<Rotated, RotateError> {
        self.keyring.rotate(&self.store, request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::crypto::envelope::SecretKey;
    use crate::crypto::master_key::KeySource;
    use crate::store::test_support::*;

    #[test]
    fn secret_names() {
        let ok = [
            "a",
            "crm/db-password",
            "team_1/app.env/key-2",
            "a.b",
            ".hidden",
            &"x".repeat(128),
        ];
        for name in ok {
            assert!(validate_name(name).is_ok(), "{name}");
        }
        let bad = [
            ("", "it is empty"),
            (&"x".repeat(129), "it is longer than 128 characters"),
            ("CRM/db", "it holds a character other than"),
            ("crm db", "it holds a character other than"),
            ("crm\ndb", "it holds a character other than"),
            ("crm/dé", "it holds a character other than"),
            ("/crm", "it starts or ends with '/'"),
            ("crm/", "it starts or ends with '/'"),
            ("crm//db", "it has an empty segment"),
            ("crm/../etc", "it holds '..'"),
            ("..", "it holds '..'"),
            ("a..b", "it holds '..'"),
            ("crm/./db", "it holds '..' or a '.' segment"),
            (".", "it holds '..' or a '.' segment"),
        ];
        for (name, reason) in bad {
            let message = validate_name(name).unwrap_err().to_string();
            assert!(message.contains(reason), "{name:?}: {message}");
            assert!(message.contains("use 1–128 lowercase letters"), "{message}");
        }
    }

    #[test]
    fn value_sizes() {
        assert!(matches!(validate_value(b""), Err(SecretError::EmptyValue)));
        assert!(validate_value(b"x").is_ok());
        assert!(validate_value(&vec![0; MAX_VALUE_BYTES]).is_ok());
        let message = validate_value(&vec![0; MAX_VALUE_BYTES + 1])
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "the secret value is 65537 bytes; the limit is 64 KiB (65536 bytes)"
        );
    }

    #[test]
    fn missing_secrets_are_all_named() {
        assert_eq!(
            SecretError::Missing(vec!["crm/db".into()]).to_string(),
            "secret crm/db does not exist; create it with `argosy secret set crm/db --from-file FILE`"
        );
        assert_eq!(
            SecretError::Missing(vec!["a".into(), "b".into()]).to_string(),
            "secrets a, b do not exist; create each with `argosy secret set NAME --from-file FILE`"
        );
    }

    #[test]
    fn values_are_redacted_in_debug() {
        let value = SecretValue {
            name: "a".into(),
            version: 2,
            bytes: Zeroizing::new(b"hunter2".to_vec()),
        };
        let shown = format!("{value:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("104"),
            "{shown}"
        );
        assert!(shown.contains("REDACTED (7 bytes)"), "{shown}");
    }

    async fn vault(db: &TestDb, keep: u32) -> anyhow::Result<SecretVault> {
        let store = db.store();
        let key = SecretKey::from_bytes(&[4; 32])?;
        let keyring = Keyring::unseal(&store, KeySource::MasterKey(key)).await?;
        Ok(SecretVault::new(
            store,
            Arc::new(keyring),
            Arc::new(SystemClock),
            keep,
        ))
    }

    store_test!(set_get_and_the_change_broadcast);
    async fn set_get_and_the_change_broadcast(db: TestDb) -> anyhow::Result<()> {
        let vault = vault(&db, 10).await?;
        let mut changes = vault.subscribe();
        let first = vault
            .set("crm/db", b"one", SetMode::CreateOrAdd, "user:alice")
            .await?;
        assert_eq!((first.version, first.created), (1, true));
        let second = vault
            .set("crm/db", b"two", SetMode::ExistingOnly, "user:bob")
            .await?;
        assert_eq!((second.version, second.created), (2, false));
        assert_eq!(
            changes.try_recv()?,
            SecretChanged {
                name: "crm/db".into(),
                version: 2,
                actor: "user:bob".into()
            },
            "only new versions of existing secrets are announced"
        );
        assert!(changes.try_recv().is_err());
        assert_eq!(vault.value("crm/db", 1).await?.bytes.as_slice(), b"one");
        assert_eq!(vault.value("crm/db", 2).await?.bytes.as_slice(), b"two");
        assert_eq!(vault.latest_value("crm/db").await?.version, 2);
        assert!(vault.version_exists("crm/db", 2).await?);
        assert!(!vault.version_exists("crm/db", 3).await?);
        assert!(!vault.version_exists("crm/db", 0).await?);
        assert!(!vault.version_exists("nope", 1).await?);

        let message = vault.value("crm/db", 7).await.unwrap_err().to_string();
        assert_eq!(
            message,
            "secret crm/db has no version 7; the stored versions are 2, 1"
        );
        assert!(matches!(
            vault.value("nope", 1).await,
            Err(SecretError::Missing(_))
        ));
        assert!(matches!(
            vault.set("nope", b"x", SetMode::ExistingOnly, "u").await,
            Err(SecretError::Missing(names)) if names == ["nope"]
        ));
        assert!(matches!(
            vault.set("Bad Name", b"x", SetMode::CreateOrAdd, "u").await,
            Err(SecretError::InvalidName { .. })
        ));
        Ok(())
    }

    store_test!(latest_versions_names_every_missing_secret);
    async fn latest_versions_names_every_missing_secret(db: TestDb) -> anyhow::Result<()> {
        let vault = vault(&db, 10).await?;
        vault.set("a", b"1", SetMode::CreateOrAdd, "u").await?;
        vault.set("a", b"2", SetMode::CreateOrAdd, "u").await?;
        vault.set("b", b"1", SetMode::CreateOrAdd, "u").await?;
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(
            vault.latest_versions(&names(&["a", "b"])).await?,
            BTreeMap::from([("a".to_owned(), 2), ("b".to_owned(), 1)])
        );
        assert_eq!(vault.latest_versions(&names(&[])).await?, BTreeMap::new());
        match vault.latest_versions(&names(&["a", "x", "y"])).await {
            Err(SecretError::Missing(missing)) => assert_eq!(missing, ["x", "y"]),
            other => panic!("{other:?}"),
        }
        Ok(())
    }

    store_test!(a_corrupted_ciphertext_fails_alone);
    async fn a_corrupted_ciphertext_fails_alone(db: TestDb) -> anyhow::Result<()> {
        let vault = vault(&db, 10).await?;
        vault
            .set("a", b"value-a", SetMode::CreateOrAdd, "u")
            .await?;
        vault
            .set("b", b"value-b", SetMode::CreateOrAdd, "u")
            .await?;
        let store = db.store();
        let sealed = store.sealed_secret_version("a", 1).await?.unwrap();
        let mut ciphertext = sealed.ciphertext.clone();
        ciphertext[0] ^= 0xFF;
        sqlx::query("UPDATE secret_versions SET ciphertext = $1 WHERE name = 'a'")
            .bind(ciphertext)
            .execute(store.pool())
            .await?;
        let message = vault.value("a", 1).await.unwrap_err().to_string();
        assert!(
            message.starts_with("secret a version 1 cannot be decrypted"),
            "{message}"
        );
        assert!(!message.contains("value-a"), "{message}");
        assert_eq!(vault.value("b", 1).await?.bytes.as_slice(), b"value-b");

        // A whole sealed row copied onto another name does not open either.
        let b = store.sealed_secret_version("b", 1).await?.unwrap();
        sqlx::query(
            "UPDATE secret_versions SET ciphertext = $1, nonce = $2, wrapped_key = $3, \
             key_nonce = $4 WHERE name = 'a'",
        )
        .bind(b.ciphertext)
        .bind(b.nonce)
        .bind(b.wrapped_key)
        .bind(b.key_nonce)
        .execute(store.pool())
        .await?;
        assert!(matches!(
            vault.value("a", 1).await,
            Err(SecretError::Undecryptable { .. })
        ));
        // A row claiming an unknown master key says so.
        sqlx::query(
            "UPDATE secret_versions SET master_key_id = 'mk-0000000000000000' WHERE name = 'a'",
        )
        .execute(store.pool())
        .await?;
        let message = vault.value("a", 1).await.unwrap_err().to_string();
        assert!(
            message.contains("sealed under master key mk-0000000000000000"),
            "{message}"
        );
        Ok(())
    }

    store_test!(the_vault_keeps_n_versions_and_deletes);
    async fn the_vault_keeps_n_versions_and_deletes(db: TestDb) -> anyhow::Result<()> {
        let vault = vault(&db, 2).await?;
        for value in [b"1", b"2", b"3"] {
            vault.set("a", value, SetMode::CreateOrAdd, "u").await?;
        }
        let versions: Vec<u32> = vault
            .versions("a")
            .await?
            .iter()
            .map(|v| v.version)
            .collect();
        assert_eq!(versions, [3, 2]);
        assert!(matches!(
            vault.value("a", 1).await,
            Err(SecretError::VersionMissing { .. })
        ));
        assert_eq!(vault.list().await?[0].versions_kept, 2);
        assert_eq!(vault.delete("a", "u").await?, 2);
        assert!(matches!(
            vault.delete("a", "u").await,
            Err(SecretError::Missing(_))
        ));
        assert!(matches!(
            vault.versions("a").await,
            Err(SecretError::Missing(_))
        ));
        Ok(())
    }

    store_test!(the_plaintext_never_reaches_the_store);
    async fn the_plaintext_never_reaches_the_store(db: TestDb) -> anyhow::Result<()> {
        let vault = vault(&db, 10).await?;
        let marker = b"zq-distinctive-plaintext-7731";
        vault.set("a", marker, SetMode::CreateOrAdd, "u").await?;
        let rows: Vec<(Vec<u8>, Vec<u8>)> =
            sqlx::query_as("SELECT ciphertext, wrapped_key FROM secret_versions")
                .fetch_all(db.store().pool())
                .await?;
        for (ciphertext, wrapped) in rows {
            for bytes in [ciphertext, wrapped] {
                assert!(!bytes.windows(marker.len()).any(|w| w == marker));
            }
        }
        Ok(())
    }
}
