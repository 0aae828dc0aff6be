//! Users (people who log in with a password), the revocation of their login
//! sessions, and the failed logins the lockout rule counts. Only an argon2id
//! hash of a password is stored; the store never sees a password itself.

use std::fmt;

use sqlx::any::AnyRow;

use super::{Store, StoreError, col, db, insert_err};
use crate::store::API_ROLES;

/// A user as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRow {
    /// A random id, so a later user of the same name never inherits the
    /// sessions of a removed one.
    pub id: String,
    pub name: String,
    /// An argon2id PHC string.
    pub password_hash: String,
    /// `"admin"`, `"operator"` or `"viewer"` (the schema rejects anything else).
    pub role: String,
    /// `auth::Scope` as JSON (`{}`: the whole fleet).
    pub scope_json: String,
    pub created_at_ms: i64,
    /// Who added the user (`user:alice`, `token:ci`).
    pub created_by: String,
    pub updated_at_ms: i64,
    pub password_changed_at_ms: i64,
}

impl fmt::Debug for UserRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRow")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("password_hash", &"<redacted>")
            .field("role", &self.role)
            .field("scope_json", &self.scope_json)
            .field("created_at_ms", &self.created_at_ms)
            .field("created_by", &self.created_by)
            .field("updated_at_ms", &self.updated_at_ms)
            .field("password_changed_at_ms", &self.password_changed_at_ms)
            .finish()
    }
}

/// How long failed logins are kept: longer than any lockout can look back
/// (`users::FAILURE_LOOKBACK_MS`).
const LOGIN_FAILURE_RETENTION_MS: i64 = 3_600_000;

const USER_COLS: &str = "id, name, password_hash, role, scope_json, created_at_ms, created_by, \
                         updated_at_ms, password_changed_at_ms";

fn user_from_row(row: &AnyRow) -> Result<UserRow, StoreError> {
    Ok(UserRow {
        id: col(row, "id")?,
        name: col(row, "name")?,
        password_hash: col(row, "password_hash")?,
        role: col(row, "role")?,
        scope_json: col(row, "scope_json")?,
        created_at_ms: col(row, "created_at_ms")?,
        created_by: col(row, "created_by")?,
        updated_at_ms: col(row, "updated_at_ms")?,
        password_changed_at_ms: col(row, "password_changed_at_ms")?,
    })
}

/// Revokes the sessions of `user_id` at `now_ms`, except `keep` (the session
/// a user changes their own password from).
async fn revoke_sessions<'c, E>(
    executor: E,
    user_id: &str,
    now_ms: i64,
    keep: Option<&str>,
) -> Result<u64, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let done = sqlx::query(
        "UPDATE api_tokens SET revoked_at_ms = $2 \
         WHERE user_id = $1 AND revoked_at_ms IS NULL AND id <> $3",
    )
    .bind(user_id)
    .bind(now_ms)
    .bind(keep.unwrap_or(""))
    .execute(executor)
    .await?;
    Ok(done.rows_affected())
}

impl Store {
    /// Stores a new user. Fails with [`StoreError::AlreadyExists`] if the
    /// name is taken and [`StoreError::InvalidRole`] for a role other than
    /// admin, operator or viewer.
    pub async fn insert_user(&self, user: &UserRow) -> Result<(), StoreError> {
        if !API_ROLES.contains(&user.role.as_str()) {
            return Err(StoreError::InvalidRole {
                role: user.role.clone(),
            });
        }
        sqlx::query(&format!(
            "INSERT INTO users ({USER_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(&user.id)
        .bind(&user.name)
        .bind(&user.password_hash)
        .bind(&user.role)
        .bind(&user.scope_json)
        .bind(user.created_at_ms)
        .bind(&user.created_by)
        .bind(user.updated_at_ms)
        .bind(user.password_changed_at_ms)
        .execute(&self.pool)
        .await
        .map_err(insert_err("storing a user", "user", &user.name))?;
        Ok(())
    }

    /// The user named `name`, if any.
    pub async fn user_by_name(&self, name: &str) -> Result<Option<UserRow>, StoreError> {
        sqlx::query(&format!("SELECT {USER_COLS} FROM users WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a user"))?
            .map(|r| user_from_row(&r))
            .transpose()
    }

    /// The user with id `id`, if any (a login session's owner).
    pub async fn user_by_id(&self, id: &str) -> Result<Option<UserRow>, StoreError> {
        sqlx::query(&format!("SELECT {USER_COLS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a user"))?
            .map(|r| user_from_row(&r))
            .transpose()
    }

    /// Every user, by name.
    pub async fn list_users(&self) -> Result<Vec<UserRow>, StoreError> {
        sqlx::query(&format!("SELECT {USER_COLS} FROM users ORDER BY name"))
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing users"))?
            .iter()
            .map(user_from_row)
            .collect()
    }

    /// Removes the user named `name` and revokes every session of theirs, in
    /// one transaction; returns the removed user, or `None` if there is none.
    pub async fn remove_user(
        &self,
        name: &str,
        now_ms: i64,
    ) -> Result<Option<UserRow>, StoreError> {
        const OP: &str = "removing a user";
        let mut tx = self.begin_write(OP).await?;
        let removed = sqlx::query(&format!(
            "DELETE FROM users WHERE name = $1 RETURNING {USER_COLS}"
        ))
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db(OP))?
        .map(|r| user_from_row(&r))
        .transpose()?;
        if let Some(user) = &removed {
            revoke_sessions(&mut *tx, &user.id, now_ms, None)
                .await
                .map_err(db(OP))?;
        }
        tx.commit().await.map_err(db(OP))?;
        Ok(removed)
    }

    /// Sets the password hash of the user named `name` and revokes their
    /// sessions other than `keep_session`, in one transaction; returns the
    /// updated user, or `None` if there is none.
    pub async fn set_user_password(
        &self,
        name: &str,
        password_hash: &str,
        now_ms: i64,
        keep_session: Option<&str>,
    ) -> Result<Option<UserRow>, StoreError> {
        const OP: &str = "changing a password";
        let mut tx = self.begin_write(OP).await?;
        let updated = sqlx::query(&format!(
            "UPDATE users SET password_hash = $2, updated_at_ms = $3, \
             password_changed_at_ms = $3 WHERE name = $1 RETURNING {USER_COLS}"
        ))
        .bind(name)
        .bind(password_hash)
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db(OP))?
        .map(|r| user_from_row(&r))
        .transpose()?;
        if let Some(user) = &updated {
            revoke_sessions(&mut *tx, &user.id, now_ms, keep_session)
                .await
                .map_err(db(OP))?;
        }
        tx.commit().await.map_err(db(OP))?;
        Ok(updated)
    }

    /// Records a failed login for `user_name` (known or not) at `at_ms`, and
    /// forgets the name's failures too old to matter.
    pub async fn record_login_failure(
        &self,
        user_name: &str,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        const OP: &str = "recording a failed login";
        let mut tx = self.begin_write(OP).await?;
        sqlx::query("DELETE FROM login_failures WHERE user_name = $1 AND at_ms < $2")
            .bind(user_name)
            .bind(at_ms - LOGIN_FAILURE_RETENTION_MS)
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?;
        sqlx::query("INSERT INTO login_failures (user_name, at_ms) VALUES ($1, $2)")
            .bind(user_name)
            .bind(at_ms)
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?;
        tx.commit().await.map_err(db(OP))
    }

    /// The times of failed logins for `user_name` at or after `since_ms`,
    /// oldest first.
    pub async fn login_failures_since(
        &self,
        user_name: &str,
        since_ms: i64,
    ) -> Result<Vec<i64>, StoreError> {
        sqlx::query_scalar(
            "SELECT at_ms FROM login_failures WHERE user_name = $1 AND at_ms >= $2 ORDER BY at_ms",
        )
        .bind(user_name)
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading failed logins"))
    }

    /// Forgets the failed logins of `user_name` (after a successful login).
    pub async fn clear_login_failures(&self, user_name: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM login_failures WHERE user_name = $1")
            .bind(user_name)
            .execute(&self.pool)
            .await
            .map_err(db("clearing failed logins"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::auth::Scope;
    use crate::store::ApiTokenRow;

    fn user(id: &str, name: &str) -> UserRow {
        UserRow {
            id: id.to_owned(),
            name: name.to_owned(),
            password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$salt${id}"),
            role: "operator".to_owned(),
            scope_json: "{}".to_owned(),
            created_at_ms: 1_000,
            created_by: "token:admin".to_owned(),
            updated_at_ms: 1_000,
            password_changed_at_ms: 1_000,
        }
    }

    fn session(id: &str, user_id: &str) -> ApiTokenRow {
        ApiTokenRow {
            id: id.to_owned(),
            name: "alice".to_owned(),
            role: "operator".to_owned(),
            secret_hash: format!("sha256:{id}"),
            created_at_ms: 1_000,
            expires_at_ms: Some(90_000_000),
            revoked_at_ms: None,
            created_by: "user:alice".to_owned(),
            last_used_ms: None,
            scope_json: "{}".to_owned(),
            user_id: Some(user_id.to_owned()),
        }
    }

    store_test!(users_crud_and_scope_round_trip);
    async fn users_crud_and_scope_round_trip(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        let scope = Scope {
            regions: ["eu-west".to_owned(), "us-east".to_owned()].into(),
            service_prefixes: ["crm".to_owned()].into(),
        };
        let mut alice = user("u-1", "alice");
        alice.scope_json = scope.to_json();
        store.insert_user(&alice).await?;
        store.insert_user(&user("u-2", "bob")).await?;

        let read = store.user_by_name("alice").await?.expect("alice is stored");
        assert_eq!(read, alice);
        assert_eq!(Scope::from_json(&read.scope_json), scope);
        assert_eq!(
            store.user_by_id("u-2").await?.map(|u| u.name),
            Some("bob".into())
        );
        assert_eq!(store.user_by_name("carol").await?, None);
        let names: Vec<String> = store
            .list_users()
            .await?
            .into_iter()
            .map(|u| u.name)
            .collect();
        assert_eq!(names, ["alice", "bob"]);

        let err = store.insert_user(&user("u-3", "alice")).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::AlreadyExists { kind: "user", id } if id == "alice"),
            "{err}"
        );
        let mut root = user("u-4", "root");
        root.role = "root".to_owned();
        assert!(matches!(
            store.insert_user(&root).await,
            Err(StoreError::InvalidRole { .. })
        ));
        assert!(
            !format!("{alice:?}").contains("$argon2id"),
            "Debug hides the hash"
        );
        Ok(())
    }

    store_test!(password_changes_and_removal_end_sessions);
    async fn password_changes_and_removal_end_sessions(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        store.insert_user(&user("u-1", "alice")).await?;
        for id in ["s-1", "s-2", "s-3"] {
            store.insert_api_token(&session(id, "u-1")).await?;
        }
        let mut api = session("t-1", "none");
        api.user_id = None;
        api.name = "ci".into();
        store.insert_api_token(&api).await?;
        assert_eq!(
            store.api_token("s-1").await?.and_then(|t| t.user_id),
            Some("u-1".to_owned())
        );

        let changed = store
            .set_user_password("alice", "$argon2id$new", 5_000, Some("s-1"))
            .await?
            .expect("alice exists");
        assert_eq!(changed.password_hash, "$argon2id$new");
        assert_eq!(
            (changed.updated_at_ms, changed.password_changed_at_ms),
            (5_000, 5_000)
        );
        assert_eq!(
            store.api_token("s-1").await?.unwrap().revoked_at_ms,
            None,
            "kept"
        );
        assert_eq!(
            store.api_token("s-2").await?.unwrap().revoked_at_ms,
            Some(5_000)
        );
        assert_eq!(
            store.set_user_password("nobody", "x", 5_000, None).await?,
            None
        );

        let removed = store.remove_user("alice", 7_000).await?.expect("removed");
        assert_eq!(removed.id, "u-1");
        assert_eq!(store.user_by_name("alice").await?, None);
        assert_eq!(
            store.api_token("s-1").await?.unwrap().revoked_at_ms,
            Some(7_000)
        );
        assert_eq!(
            store.api_token("s-2").await?.unwrap().revoked_at_ms,
            Some(5_000),
            "the first revocation time is kept"
        );
        assert_eq!(
            store.api_token("t-1").await?.unwrap().revoked_at_ms,
            None,
            "API tokens stay"
        );
        assert_eq!(store.remove_user("alice", 8_000).await?, None);
        Ok(())
    }

    store_test!(login_failures_are_counted_and_forgotten);
    async fn login_failures_are_counted_and_forgotten(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        for at in [1_000, 2_000, 3_000] {
            store.record_login_failure("alice", at).await?;
        }
        store.record_login_failure("bob", 2_500).await?;
        assert_eq!(
            store.login_failures_since("alice", 0).await?,
            [1_000, 2_000, 3_000]
        );
        assert_eq!(
            store.login_failures_since("alice", 2_000).await?,
            [2_000, 3_000]
        );
        // A failure an hour later forgets the old ones.
        store
            .record_login_failure("alice", 2_500 + LOGIN_FAILURE_RETENTION_MS)
            .await?;
        assert_eq!(
            store.login_failures_since("alice", 0).await?,
            [3_000, 2_500 + LOGIN_FAILURE_RETENTION_MS]
        );
        store.clear_login_failures("alice").await?;
        assert!(store.login_failures_since("alice", 0).await?.is_empty());
        assert_eq!(store.login_failures_since("bob", 0).await?, [2_500]);
        Ok(())
    }
}
