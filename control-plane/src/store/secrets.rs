//! Secrets at rest: one `secrets` row per name (latest version, who created
//! and last changed it) and one `secret_versions` row per kept version,
//! holding only sealed bytes — the ciphertext, its nonce, the data key
//! wrapped by a master key, that wrap's nonce and the master key's id. The
//! store never sees a plaintext value or an unwrapped key: sealing happens
//! in `crypto`, inside the transaction that numbers the version (the
//! version is part of what the ciphertext is bound to).

use std::collections::{BTreeMap, BTreeSet};

use sqlx::any::AnyRow;

use super::{Dialect, Store, StoreError, col, db, to_u32};

/// A secret's metadata, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRow {
    pub name: String,
    pub latest_version: u32,
    /// How many versions are stored (at most `--secret-versions-kept`).
    pub versions_kept: u32,
    pub created_at_ms: i64,
    pub created_by: String,
    pub updated_at_ms: i64,
    pub updated_by: String,
}

/// One stored version's metadata (no sealed bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVersionRow {
    pub version: u32,
    pub master_key_id: String,
    pub created_at_ms: i64,
    pub created_by: String,
}

/// The sealed bytes of one version.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedVersion {
    pub ciphertext: Vec<u8>,
    pub nonce: Vec<u8>,
    pub wrapped_key: Vec<u8>,
    pub key_nonce: Vec<u8>,
    pub master_key_id: String,
}

impl std::fmt::Debug for SealedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedVersion")
            .field("master_key_id", &self.master_key_id)
            .finish_non_exhaustive()
    }
}

/// A version's wrapped data key, as a master-key rotation re-wraps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKeyRow {
    pub name: String,
    pub version: u32,
    pub wrapped_key: Vec<u8>,
    pub key_nonce: Vec<u8>,
    pub master_key_id: String,
}

/// A data key re-wrapped under the new master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrappedKey {
    pub wrapped_key: Vec<u8>,
    pub key_nonce: Vec<u8>,
    pub master_key_id: String,
}

/// What [`Store::add_secret_version`] is asked to add.
#[derive(Debug, Clone, Copy)]
pub struct NewSecretVersion<'a> {
    pub name: &'a str,
    pub actor: &'a str,
    pub now_ms: i64,
    /// Refuse (NotFound) instead of creating the secret (`secret rotate`).
    pub must_exist: bool,
    /// How many versions to keep; older ones are deleted in the same
    /// transaction.
    pub keep: u32,
}

/// What [`Store::add_secret_version`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedVersion {
    pub version: u32,
    /// True when this call created the secret (version 1).
    pub created: bool,
    /// Versions deleted because more than `keep` were stored.
    pub pruned: Vec<u32>,
}

/// Of the stored versions, those to delete so that only the newest `keep`
/// stay (at least one is always kept).
pub fn versions_to_prune(stored: &[u32], keep: u32) -> Vec<u32> {
    let mut newest_first = stored.to_vec();
    newest_first.sort_unstable_by(|a, b| b.cmp(a));
    newest_first.dedup();
    let keep = usize::try_from(keep.max(1)).unwrap_or(usize::MAX);
    let mut pruned = newest_first.split_off(keep.min(newest_first.len()));
    pruned.sort_unstable();
    pruned
}

fn secret_from_row(row: &AnyRow) -> Result<SecretRow, StoreError> {
    Ok(SecretRow {
        name: col(row, "name")?,
        latest_version: to_u32(col(row, "latest_version")?, "a secret's latest version")?,
        versions_kept: to_u32(col(row, "versions_kept")?, "a secret's version count")?,
        created_at_ms: col(row, "created_at_ms")?,
        created_by: col(row, "created_by")?,
        updated_at_ms: col(row, "updated_at_ms")?,
        updated_by: col(row, "updated_by")?,
    })
}

const SECRET_SELECT: &str = "SELECT s.name, s.latest_version, \
     CAST(COUNT(v.version) AS BIGINT) AS versions_kept, s.created_at_ms, s.created_by, \
     s.updated_at_ms, s.updated_by \
     FROM secrets s LEFT JOIN secret_versions v ON v.name = s.name";

const SECRET_GROUP: &str = "GROUP BY s.name, s.latest_version, s.created_at_ms, s.created_by, \
     s.updated_at_ms, s.updated_by";

fn not_found(name: &str) -> StoreError {
    StoreError::NotFound {
        kind: "secret",
        id: name.to_owned(),
    }
}

impl Store {
    /// Adds the next version of secret `new.name` (creating the secret at
    /// version 1 unless `must_exist`), sealing the value with `seal(version)`
    /// inside the transaction, and prunes versions beyond `new.keep`.
    /// Concurrent writers of one secret are serialized; each gets its own
    /// version number.
    pub async fn add_secret_version<E: From<StoreError>>(
        &self,
        new: &NewSecretVersion<'_>,
        seal: impl FnOnce(u32) -> Result<SealedVersion, E>,
    ) -> Result<AddedVersion, E> {
        const OP: &str = "adding a secret version";
        let mut tx = self.begin_write(OP).await?;
        let bump = "UPDATE secrets SET latest_version = latest_version + 1, \
                    updated_at_ms = $2, updated_by = $3 WHERE name = $1 RETURNING latest_version";
        let bumped: Option<i64> = sqlx::query_scalar(bump)
            .bind(new.name)
            .bind(new.now_ms)
            .bind(new.actor)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(OP))?;
        let (version, created) = match bumped {
            Some(version) => (version, false),
            None if new.must_exist => return Err(not_found(new.name).into()),
            None => {
                let inserted = sqlx::query(
                    "INSERT INTO secrets (name, latest_version, created_at_ms, created_by, \
                     updated_at_ms, updated_by) VALUES ($1, 1, $2, $3, $2, $3) \
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(new.name)
                .bind(new.now_ms)
                .bind(new.actor)
                .execute(&mut *tx)
                .await
                .map_err(db(OP))?
                .rows_affected();
                if inserted == 1 {
                    (1, true)
                } else {
                    // Another writer created it meanwhile (PostgreSQL): take the next number.
                    let version: i64 = sqlx::query_scalar(bump)
                        .bind(new.name)
                        .bind(new.now_ms)
                        .bind(new.actor)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(db(OP))?;
                    (version, false)
                }
            }
        };
        let version = to_u32(version, "a secret's latest version")?;
        let sealed = seal(version)?;
        sqlx::query(
            "INSERT INTO secret_versions (name, version, ciphertext, nonce, wrapped_key, \
             key_nonce, master_key_id, created_at_ms, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(new.name)
        .bind(i64::from(version))
        .bind(sealed.ciphertext)
        .bind(sealed.nonce)
        .bind(sealed.wrapped_key)
        .bind(sealed.key_nonce)
        .bind(sealed.master_key_id)
        .bind(new.now_ms)
        .bind(new.actor)
        .execute(&mut *tx)
        .await
        .map_err(db(OP))?;
        let stored: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM secret_versions WHERE name = $1")
                .bind(new.name)
                .fetch_all(&mut *tx)
                .await
                .map_err(db(OP))?;
        let stored = stored
            .into_iter()
            .map(|v| to_u32(v, "a secret version"))
            .collect::<Result<Vec<_>, _>>()?;
        let pruned = versions_to_prune(&stored, new.keep);
        if let Some(newest_pruned) = pruned.last() {
            sqlx::query("DELETE FROM secret_versions WHERE name = $1 AND version <= $2")
                .bind(new.name)
                .bind(i64::from(*newest_pruned))
                .execute(&mut *tx)
                .await
                .map_err(db(OP))?;
        }
        tx.commit().await.map_err(db(OP))?;
        Ok(AddedVersion {
            version,
            created,
            pruned,
        })
    }

    /// One secret's metadata.
    pub async fn secret(&self, name: &str) -> Result<Option<SecretRow>, StoreError> {
        sqlx::query(&format!("{SECRET_SELECT} WHERE s.name = $1 {SECRET_GROUP}"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a secret"))?
            .map(|row| secret_from_row(&row))
            .transpose()
    }

    /// Every secret's metadata, by name.
    pub async fn list_secrets(&self) -> Result<Vec<SecretRow>, StoreError> {
        sqlx::query(&format!("{SECRET_SELECT} {SECRET_GROUP} ORDER BY s.name"))
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing secrets"))?
            .iter()
            .map(secret_from_row)
            .collect()
    }

    /// The stored versions of a secret, newest first (empty when the secret
    /// does not exist).
    pub async fn secret_versions(&self, name: &str) -> Result<Vec<SecretVersionRow>, StoreError> {
        sqlx::query(
            "SELECT version, master_key_id, created_at_ms, created_by FROM secret_versions \
             WHERE name = $1 ORDER BY version DESC",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing secret versions"))?
        .iter()
        .map(|row| {
            Ok(SecretVersionRow {
                version: to_u32(col(row, "version")?, "a secret version")?,
                master_key_id: col(row, "master_key_id")?,
                created_at_ms: col(row, "created_at_ms")?,
                created_by: col(row, "created_by")?,
            })
        })
        .collect()
    }

    /// The sealed bytes of one version, if it is stored.
    pub async fn sealed_secret_version(
        &self,
        name: &str,
        version: u32,
    ) -> Result<Option<SealedVersion>, StoreError> {
        let row = sqlx::query(
            "SELECT ciphertext, nonce, wrapped_key, key_nonce, master_key_id \
             FROM secret_versions WHERE name = $1 AND version = $2",
        )
        .bind(name)
        .bind(i64::from(version))
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading a secret version"))?;
        row.map(|row| {
            Ok(SealedVersion {
                ciphertext: col(&row, "ciphertext")?,
                nonce: col(&row, "nonce")?,
                wrapped_key: col(&row, "wrapped_key")?,
                key_nonce: col(&row, "key_nonce")?,
                master_key_id: col(&row, "master_key_id")?,
            })
        })
        .transpose()
    }

    /// Whether version `version` of `name` is stored.
    pub async fn secret_version_stored(
        &self,
        name: &str,
        version: u32,
    ) -> Result<bool, StoreError> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM secret_versions WHERE name = $1 AND version = $2",
        )
        .bind(name)
        .bind(i64::from(version))
        .fetch_optional(&self.pool)
        .await
        .map_err(db("looking up a secret version"))?;
        Ok(found.is_some())
    }

    /// The latest version of each of `names` that exists (missing names are
    /// simply absent from the map).
    pub async fn latest_secret_versions(
        &self,
        names: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, u32>, StoreError> {
        let mut found = BTreeMap::new();
        let names: Vec<&String> = names.iter().collect();
        let per_statement = self.dialect.rows_per_statement(1);
        for chunk in names.chunks(per_statement) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT name, latest_version FROM secrets WHERE name IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for name in chunk {
                query = query.bind(name.as_str());
            }
            for row in query
                .fetch_all(&self.pool)
                .await
                .map_err(db("reading latest secret versions"))?
            {
                let name: String = col(&row, "name")?;
                let version = to_u32(col(&row, "latest_version")?, "a secret's latest version")?;
                found.insert(name, version);
            }
        }
        Ok(found)
    }

    /// Deletes a secret and every stored version; returns how many versions
    /// were deleted, or `None` when there was no such secret.
    pub async fn delete_secret(&self, name: &str) -> Result<Option<u32>, StoreError> {
        const OP: &str = "deleting a secret";
        let mut tx = self.begin_write(OP).await?;
        let versions = sqlx::query("DELETE FROM secret_versions WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?
            .rows_affected();
        let secrets = sqlx::query("DELETE FROM secrets WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?
            .rows_affected();
        tx.commit().await.map_err(db(OP))?;
        Ok((secrets == 1).then(|| u32::try_from(versions).unwrap_or(u32::MAX)))
    }

    /// In one transaction: re-wraps every stored data key with `rewrap` and
    /// writes `settings` (the new key check, the re-wrapped audit key, …).
    /// Any failure leaves everything as it was. Returns how many data keys
    /// were re-wrapped.
    pub async fn rewrap_secret_keys<E: From<StoreError>>(
        &self,
        mut rewrap: impl FnMut(&WrappedKeyRow) -> Result<RewrappedKey, E>,
        settings: &[(&str, String)],
    ) -> Result<u64, E> {
        const OP: &str = "re-wrapping data keys under a new master key";
        let mut tx = self.begin_write(OP).await?;
        if self.dialect == Dialect::Postgres {
            // Writers of new versions wait until the re-wrap commits.
            sqlx::query("LOCK TABLE secret_versions IN SHARE ROW EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await
                .map_err(db(OP))?;
        }
        let rows = sqlx::query(
            "SELECT name, version, wrapped_key, key_nonce, master_key_id FROM secret_versions \
             ORDER BY name, version",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db(OP))?;
        let mut count = 0u64;
        for row in &rows {
            let current = WrappedKeyRow {
                name: col(row, "name")?,
                version: to_u32(col(row, "version")?, "a secret version")?,
                wrapped_key: col(row, "wrapped_key")?,
                key_nonce: col(row, "key_nonce")?,
                master_key_id: col(row, "master_key_id")?,
            };
            let new = rewrap(&current)?;
            sqlx::query(
                "UPDATE secret_versions SET wrapped_key = $3, key_nonce = $4, master_key_id = $5 \
                 WHERE name = $1 AND version = $2",
            )
            .bind(&current.name)
            .bind(i64::from(current.version))
            .bind(new.wrapped_key)
            .bind(new.key_nonce)
            .bind(new.master_key_id)
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?;
            count += 1;
        }
        for (key, value) in settings {
            sqlx::query(
                "INSERT INTO settings (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(*key)
            .bind(value)
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?;
        }
        tx.commit().await.map_err(db(OP))?;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn pruning_keeps_the_newest_versions() {
        assert_eq!(versions_to_prune(&[], 10), Vec::<u32>::new());
        assert_eq!(versions_to_prune(&[1, 2, 3], 10), Vec::<u32>::new());
        assert_eq!(versions_to_prune(&[1, 2, 3], 3), Vec::<u32>::new());
        assert_eq!(versions_to_prune(&[3, 1, 2, 4], 2), vec![1, 2]);
        assert_eq!(versions_to_prune(&[5, 7, 9], 1), vec![5, 7]);
        // Never everything: keeping zero would lose the latest value.
        assert_eq!(versions_to_prune(&[5, 7, 9], 0), vec![5, 7]);
        // Gaps (earlier pruning) do not matter.
        assert_eq!(versions_to_prune(&[2, 9, 14, 15], 3), vec![2]);
    }

    fn sealed(tag: u8, key_id: &str) -> SealedVersion {
        SealedVersion {
            ciphertext: vec![tag; 20],
            nonce: vec![tag; 24],
            wrapped_key: vec![tag; 48],
            key_nonce: vec![tag; 24],
            master_key_id: key_id.to_owned(),
        }
    }

    fn new<'a>(name: &'a str, must_exist: bool, keep: u32, now_ms: i64) -> NewSecretVersion<'a> {
        NewSecretVersion {
            name,
            actor: "user:alice",
            now_ms,
            must_exist,
            keep,
        }
    }

    async fn add(
        store: &Store,
        version: NewSecretVersion<'_>,
        tag: u8,
    ) -> Result<AddedVersion, StoreError> {
        store
            .add_secret_version(&version, |_| Ok::<_, StoreError>(sealed(tag, "mk-a")))
            .await
    }

    store_test!(versions_are_numbered_listed_and_read_back);
    async fn versions_are_numbered_listed_and_read_back(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        let first = add(&store, new("crm/db", false, 10, 1_000), 1).await?;
        assert_eq!(
            first,
            AddedVersion {
                version: 1,
                created: true,
                pruned: vec![]
            }
        );
        let mut seen_version = None;
        let second = store
            .add_secret_version(
                &NewSecretVersion {
                    actor: "token:ci",
                    ..new("crm/db", true, 10, 2_000)
                },
                |version| {
                    seen_version = Some(version);
                    Ok::<_, StoreError>(sealed(2, "mk-a"))
                },
            )
            .await?;
        assert_eq!(seen_version, Some(2), "sealing learns the version it binds");
        assert_eq!((second.version, second.created), (2, false));
        add(&store, new("billing/key", false, 10, 3_000), 3).await?;

        let listed = store.list_secrets().await?;
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].name, "billing/key");
        assert_eq!(
            listed[1],
            SecretRow {
                name: "crm/db".into(),
                latest_version: 2,
                versions_kept: 2,
                created_at_ms: 1_000,
                created_by: "user:alice".into(),
                updated_at_ms: 2_000,
                updated_by: "token:ci".into(),
            }
        );
        assert_eq!(store.secret("crm/db").await?, Some(listed[1].clone()));
        assert_eq!(store.secret("nope").await?, None);

        let versions = store.secret_versions("crm/db").await?;
        assert_eq!(
            versions.iter().map(|v| v.version).collect::<Vec<_>>(),
            vec![2, 1]
        );
        assert_eq!(versions[0].created_by, "token:ci");
        assert_eq!(versions[0].master_key_id, "mk-a");
        assert_eq!(
            store.sealed_secret_version("crm/db", 1).await?,
            Some(sealed(1, "mk-a"))
        );
        assert_eq!(store.sealed_secret_version("crm/db", 3).await?, None);
        assert!(store.secret_version_stored("crm/db", 2).await?);
        assert!(!store.secret_version_stored("crm/db", 3).await?);

        let names: BTreeSet<String> = ["crm/db", "billing/key", "missing"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let latest = store.latest_secret_versions(&names).await?;
        assert_eq!(
            latest,
            BTreeMap::from([("billing/key".to_owned(), 1), ("crm/db".to_owned(), 2)])
        );
        Ok(())
    }

    store_test!(adding_to_a_missing_secret_can_be_refused);
    async fn adding_to_a_missing_secret_can_be_refused(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        let err = add(&store, new("crm/db", true, 10, 1), 1)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound { kind: "secret", .. }),
            "{err}"
        );
        assert!(store.list_secrets().await?.is_empty());
        Ok(())
    }

    store_test!(a_failed_seal_stores_nothing);
    async fn a_failed_seal_stores_nothing(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        let result = store
            .add_secret_version(&new("crm/db", false, 10, 1), |_| {
                Err::<SealedVersion, _>(StoreError::Corrupt {
                    what: "test".into(),
                })
            })
            .await;
        assert!(result.is_err());
        assert!(store.list_secrets().await?.is_empty());
        Ok(())
    }

    store_test!(pruning_keeps_n_versions);
    async fn pruning_keeps_n_versions(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        for i in 1..=5u8 {
            let added = add(&store, new("a", false, 3, i64::from(i)), i).await?;
            let expected: Vec<u32> = if i > 3 {
                vec![u32::from(i) - 3]
            } else {
                vec![]
            };
            assert_eq!(added.pruned, expected, "adding version {i}");
        }
        let versions: Vec<u32> = store
            .secret_versions("a")
            .await?
            .iter()
            .map(|v| v.version)
            .collect();
        assert_eq!(versions, vec![5, 4, 3]);
        let row = store.secret("a").await?.unwrap();
        assert_eq!((row.latest_version, row.versions_kept), (5, 3));
        // Lowering the limit prunes down to it on the next write.
        let added = add(&store, new("a", true, 1, 9), 9).await?;
        assert_eq!(added.pruned, vec![3, 4, 5]);
        assert_eq!(store.secret("a").await?.unwrap().versions_kept, 1);
        Ok(())
    }

    store_test!(concurrent_writers_get_distinct_versions);
    async fn concurrent_writers_get_distinct_versions(db: TestDb) -> anyhow::Result<()> {
        let stores = [db.store(), db.reopen().await?];
        let mut tasks = Vec::new();
        for i in 0..8u8 {
            let store = stores[usize::from(i) % 2].clone();
            tasks.push(tokio::spawn(async move {
                add(&store, new("race", false, 100, i64::from(i)), i)
                    .await
                    .map(|a| a.version)
            }));
        }
        let mut versions = Vec::new();
        for task in tasks {
            versions.push(task.await??);
        }
        versions.sort_unstable();
        assert_eq!(versions, (1..=8).collect::<Vec<u32>>());
        stores[1].close().await;
        Ok(())
    }

    store_test!(deleting_removes_every_version);
    async fn deleting_removes_every_version(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        add(&store, new("a", false, 10, 1), 1).await?;
        add(&store, new("a", false, 10, 2), 2).await?;
        add(&store, new("b", false, 10, 3), 3).await?;
        assert_eq!(store.delete_secret("a").await?, Some(2));
        assert_eq!(store.delete_secret("a").await?, None);
        assert!(store.secret_versions("a").await?.is_empty());
        assert_eq!(store.list_secrets().await?.len(), 1);
        // A new secret of the same name starts over.
        assert_eq!(add(&store, new("a", false, 10, 4), 4).await?.version, 1);
        Ok(())
    }

    store_test!(rewrapping_is_all_or_nothing);
    async fn rewrapping_is_all_or_nothing(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        add(&store, new("a", false, 10, 1), 1).await?;
        add(&store, new("a", false, 10, 2), 2).await?;
        add(&store, new("b", false, 10, 3), 3).await?;
        // A failure half-way changes nothing, settings included.
        let mut calls = 0;
        let failed = store
            .rewrap_secret_keys(
                |row| {
                    calls += 1;
                    if calls == 2 {
                        return Err(StoreError::Corrupt {
                            what: format!("{} v{}", row.name, row.version),
                        });
                    }
                    Ok(RewrappedKey {
                        wrapped_key: vec![0xEE; 48],
                        key_nonce: vec![0xEE; 24],
                        master_key_id: "mk-b".into(),
                    })
                },
                &[("crypto.test", "new".to_owned())],
            )
            .await;
        assert!(failed.is_err());
        assert_eq!(store.setting("crypto.test").await?, None);
        for (name, version) in [("a", 1), ("a", 2), ("b", 1)] {
            let row = store.sealed_secret_version(name, version).await?.unwrap();
            assert_eq!(row.master_key_id, "mk-a", "{name} v{version}");
        }
        // A full pass re-wraps every row, keeps the ciphertexts, writes settings.
        let count = store
            .rewrap_secret_keys(
                |row| {
                    assert_eq!(row.master_key_id, "mk-a");
                    Ok::<_, StoreError>(RewrappedKey {
                        wrapped_key: vec![row.wrapped_key[0] + 100; 48],
                        key_nonce: vec![0xEE; 24],
                        master_key_id: "mk-b".into(),
                    })
                },
                &[("crypto.test", "new".to_owned())],
            )
            .await?;
        assert_eq!(count, 3);
        assert_eq!(store.setting("crypto.test").await?.as_deref(), Some("new"));
        let row = store.sealed_secret_version("a", 2).await?.unwrap();
        assert_eq!(row.master_key_id, "mk-b");
        assert_eq!(row.wrapped_key, vec![102; 48]);
        assert_eq!(row.key_nonce, vec![0xEE; 24]);
        assert_eq!(row.ciphertext, vec![2; 20], "values are not touched");
        Ok(())
    }
}
