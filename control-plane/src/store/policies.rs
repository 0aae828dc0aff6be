//! Policies: Wasm modules stored once per sha256, each policy's current
//! version (hook, module, configuration, enabled) and every version it had.
//! The store does not look inside modules or configurations.

use sqlx::any::AnyRow;

use super::{Store, StoreError, col, db};

/// A policy as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRow {
    pub name: String,
    pub hook: String,
    pub version: i64,
    pub sha256: String,
    pub size_bytes: i64,
    pub config_json: String,
    pub enabled: bool,
    pub created_at_ms: i64,
    pub created_by: String,
    pub updated_at_ms: i64,
    pub updated_by: String,
}

/// One version a policy had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersionRow {
    pub version: i64,
    pub sha256: String,
    pub size_bytes: i64,
    pub config_json: String,
    pub created_at_ms: i64,
    pub created_by: String,
}

/// A new policy, or a new version of one.
#[derive(Debug, Clone, Copy)]
pub struct NewPolicyVersion<'a> {
    pub name: &'a str,
    pub hook: &'a str,
    pub sha256: &'a str,
    pub wasm: &'a [u8],
    pub config_json: &'a str,
    pub actor: &'a str,
    pub now_ms: i64,
}

const POLICY_SELECT: &str = "SELECT p.name, p.hook, p.version, p.sha256, m.size_bytes, \
     p.config_json, p.enabled, p.created_at_ms, p.created_by, p.updated_at_ms, p.updated_by \
     FROM policies p JOIN policy_modules m ON m.sha256 = p.sha256";

fn policy_row(row: &AnyRow) -> Result<PolicyRow, StoreError> {
    let enabled: i64 = col(row, "enabled")?;
    Ok(PolicyRow {
        name: col(row, "name")?,
        hook: col(row, "hook")?,
        version: col(row, "version")?,
        sha256: col(row, "sha256")?,
        size_bytes: col(row, "size_bytes")?,
        config_json: col(row, "config_json")?,
        enabled: enabled != 0,
        created_at_ms: col(row, "created_at_ms")?,
        created_by: col(row, "created_by")?,
        updated_at_ms: col(row, "updated_at_ms")?,
        updated_by: col(row, "updated_by")?,
    })
}

impl Store {
    /// Stores a policy's first version (`existing` false) or its next one
    /// (`existing` true, keeping its hook and enabled flag). The module is
    /// stored once per sha256. Fails with `AlreadyExists` / `NotFound` when
    /// the policy's presence is not what `existing` says.
    pub async fn put_policy(
        &self,
        new: NewPolicyVersion<'_>,
        existing: bool,
    ) -> Result<PolicyRow, StoreError> {
        const OP: &str = "storing a policy";
        let mut tx = self.begin_write(OP).await?;
        let known: Option<i64> = sqlx::query_scalar("SELECT version FROM policies WHERE name = $1")
            .bind(new.name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(OP))?;
        match (known, existing) {
            (Some(_), false) => {
                return Err(StoreError::AlreadyExists {
                    kind: "policy",
                    id: new.name.to_owned(),
                });
            }
            (None, true) => {
                return Err(StoreError::NotFound {
                    kind: "policy",
                    id: new.name.to_owned(),
                });
            }
            _ => {}
        }
        let have_module: Option<String> =
            sqlx::query_scalar("SELECT sha256 FROM policy_modules WHERE sha256 = $1")
                .bind(new.sha256)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db(OP))?;
        let size = i64::try_from(new.wasm.len()).unwrap_or(i64::MAX);
        if have_module.is_none() {
            sqlx::query(
                "INSERT INTO policy_modules (sha256, wasm, size_bytes, created_at_ms) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(new.sha256)
            .bind(new.wasm.to_vec())
            .bind(size)
            .bind(new.now_ms)
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?;
        }
        let version = known.map_or(1, |v| v + 1);
        if known.is_some() {
            sqlx::query(
                "UPDATE policies SET version = $2, sha256 = $3, config_json = $4, \
                 updated_at_ms = $5, updated_by = $6 WHERE name = $1",
            )
            .bind(new.name)
            .bind(version)
            .bind(new.sha256)
            .bind(new.config_json)
            .bind(new.now_ms)
            .bind(new.actor)
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?;
        } else {
            sqlx::query(
                "INSERT INTO policies (name, hook, version, sha256, config_json, enabled, \
                 created_at_ms, created_by, updated_at_ms, updated_by) \
                 VALUES ($1, $2, 1, $3, $4, 1, $5, $6, $5, $6)",
            )
            .bind(new.name)
            .bind(new.hook)
            .bind(new.sha256)
            .bind(new.config_json)
            .bind(new.now_ms)
            .bind(new.actor)
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?;
        }
        sqlx::query(
            "INSERT INTO policy_versions (name, version, sha256, size_bytes, config_json, \
             created_at_ms, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(new.name)
        .bind(version)
        .bind(new.sha256)
        .bind(size)
        .bind(new.config_json)
        .bind(new.now_ms)
        .bind(new.actor)
        .execute(&mut *tx)
        .await
        .map_err(db(OP))?;
        let row = sqlx::query(&format!("{POLICY_SELECT} WHERE p.name = $1"))
            .bind(new.name)
            .fetch_one(&mut *tx)
            .await
            .map_err(db(OP))?;
        let row = policy_row(&row)?;
        tx.commit().await.map_err(db(OP))?;
        Ok(row)
    }

    /// Every policy, by name.
    pub async fn policies(&self) -> Result<Vec<PolicyRow>, StoreError> {
        let rows = sqlx::query(&format!("{POLICY_SELECT} ORDER BY p.name"))
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing policies"))?;
        rows.iter().map(policy_row).collect()
    }

    /// The enabled policies of a hook, by name (the order they run in).
    pub async fn enabled_policies(&self, hook: &str) -> Result<Vec<PolicyRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "{POLICY_SELECT} WHERE p.hook = $1 AND p.enabled = 1 ORDER BY p.name"
        ))
        .bind(hook)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading the enabled policies"))?;
        rows.iter().map(policy_row).collect()
    }

    pub async fn policy(&self, name: &str) -> Result<Option<PolicyRow>, StoreError> {
        sqlx::query(&format!("{POLICY_SELECT} WHERE p.name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a policy"))?
            .as_ref()
            .map(policy_row)
            .transpose()
    }

    /// Every version of a policy, newest first.
    pub async fn policy_versions(&self, name: &str) -> Result<Vec<PolicyVersionRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT version, sha256, size_bytes, config_json, created_at_ms, created_by \
             FROM policy_versions WHERE name = $1 ORDER BY version DESC",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading a policy's versions"))?;
        rows.iter()
            .map(|row| {
                Ok(PolicyVersionRow {
                    version: col(row, "version")?,
                    sha256: col(row, "sha256")?,
                    size_bytes: col(row, "size_bytes")?,
                    config_json: col(row, "config_json")?,
                    created_at_ms: col(row, "created_at_ms")?,
                    created_by: col(row, "created_by")?,
                })
            })
            .collect()
    }

    /// Enables or disables a policy; `None` when there is none by that name.
    pub async fn set_policy_enabled(
        &self,
        name: &str,
        enabled: bool,
        actor: &str,
        now_ms: i64,
    ) -> Result<Option<PolicyRow>, StoreError> {
        let changed = sqlx::query(
            "UPDATE policies SET enabled = $2, updated_at_ms = $3, updated_by = $4 \
             WHERE name = $1",
        )
        .bind(name)
        .bind(i64::from(enabled))
        .bind(now_ms)
        .bind(actor)
        .execute(&self.pool)
        .await
        .map_err(db("enabling or disabling a policy"))?
        .rows_affected();
        if changed == 0 {
            return Ok(None);
        }
        self.policy(name).await
    }

    /// Removes a policy with its versions, and the modules nothing uses
    /// any more. Returns what was removed.
    pub async fn remove_policy(&self, name: &str) -> Result<Option<PolicyRow>, StoreError> {
        const OP: &str = "removing a policy";
        let Some(row) = self.policy(name).await? else {
            return Ok(None);
        };
        let mut tx = self.begin_write(OP).await?;
        for statement in [
            "DELETE FROM policy_versions WHERE name = $1",
            "DELETE FROM policies WHERE name = $1",
        ] {
            sqlx::query(statement)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(db(OP))?;
        }
        sqlx::query(
            "DELETE FROM policy_modules WHERE sha256 NOT IN (SELECT sha256 FROM policies) \
             AND sha256 NOT IN (SELECT sha256 FROM policy_versions)",
        )
        .execute(&mut *tx)
        .await
        .map_err(db(OP))?;
        tx.commit().await.map_err(db(OP))?;
        Ok(Some(row))
    }

    /// A module's bytes.
    pub async fn policy_module(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        sqlx::query_scalar("SELECT wasm FROM policy_modules WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a policy module"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{TestDb, store_test};

    async fn versions_enable_and_remove(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        let new = |name: &'static str, wasm: &'static [u8], sha: &'static str, at: i64| {
            NewPolicyVersion {
                name,
                hook: "deployment.admit",
                sha256: sha,
                wasm,
                config_json: "{}",
                actor: "user:alice",
                now_ms: at,
            }
        };
        let first = store
            .put_policy(new("limits", b"one", "aa", 1), false)
            .await?;
        assert_eq!(
            (first.version, first.enabled, first.size_bytes),
            (1, true, 3)
        );
        assert!(matches!(
            store
                .put_policy(new("limits", b"one", "aa", 2), false)
                .await,
            Err(StoreError::AlreadyExists { .. })
        ));
        assert!(matches!(
            store.put_policy(new("other", b"one", "aa", 2), true).await,
            Err(StoreError::NotFound { .. })
        ));
        store
            .put_policy(new("shared", b"one", "aa", 2), false)
            .await?;
        let second = store
            .put_policy(new("limits", b"second", "bb", 3), true)
            .await?;
        assert_eq!((second.version, second.sha256.as_str()), (2, "bb"));
        let versions = store.policy_versions("limits").await?;
        assert_eq!(
            versions.iter().map(|v| v.version).collect::<Vec<_>>(),
            [2, 1]
        );
        let off = store
            .set_policy_enabled("limits", false, "user:bob", 4)
            .await?
            .unwrap();
        assert!(!off.enabled);
        assert_eq!(off.updated_by, "user:bob");
        assert_eq!(
            store
                .enabled_policies("deployment.admit")
                .await?
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>(),
            ["shared"]
        );
        assert!(
            store
                .set_policy_enabled("nope", true, "x", 5)
                .await?
                .is_none()
        );
        assert_eq!(
            store.policy_module("bb").await?.as_deref(),
            Some(&b"second"[..])
        );
        store.remove_policy("limits").await?.unwrap();
        // "bb" was only used by the removed policy; "aa" is still shared.
        assert_eq!(store.policy_module("bb").await?, None);
        assert!(store.policy_module("aa").await?.is_some());
        assert!(store.policy_versions("limits").await?.is_empty());
        assert_eq!(store.policies().await?.len(), 1);
        assert!(store.remove_policy("limits").await?.is_none());
        Ok(())
    }

    store_test!(versions_enable_and_remove);
}
