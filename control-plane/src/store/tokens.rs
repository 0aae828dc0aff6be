//! API tokens (people and automation) and join tokens (agent enrollment). Only a hash of each
//! secret is stored; the store never sees a secret itself.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;

use super::{Store, StoreError, col, db, insert_err, to_u32};

/// An API token as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRow {
    pub id: String,
    pub name: String,
    /// `"admin"`, `"operator"` or `"viewer"` (the schema rejects anything else).
    pub role: String,
    pub secret_hash: String,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
    pub created_by: String,
    pub last_used_ms: Option<i64>,
    /// `auth::Scope` as JSON (`{}`: the whole fleet). Ignored for login
    /// sessions, which carry their user's current scope.
    pub scope_json: String,
    /// Set for a user's login session (`argosy login --user`): the token
    /// then acts with that user's current role and scope.
    pub user_id: Option<String>,
}

/// A join token as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinTokenRow {
    pub id: String,
    pub secret_hash: String,
    pub region: String,
    /// Labels given to every host enrolled with this token (stored as JSON text).
    pub labels: BTreeMap<String, String>,
    pub created_at_ms: i64,
    /// The token is usable while `now < expires_at_ms`.
    pub expires_at_ms: i64,
    /// 0 = unlimited.
    pub max_uses: u32,
    pub uses: u32,
    pub revoked_at_ms: Option<i64>,
    pub created_by: String,
}

/// The outcome of [`Store::redeem_join_token`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redemption {
    /// One use was counted; the row is as it is after counting.
    Redeemed(JoinTokenRow),
    /// No token has this id.
    Unknown,
    /// The token expired at `expired_at_ms`.
    Expired { expired_at_ms: i64 },
    /// The token was revoked.
    Revoked,
    /// Every one of the token's `max_uses` uses has been counted.
    UsedUp { max_uses: u32 },
}

/// The roles an API token may have (the schema checks the same list).
pub const API_ROLES: [&str; 3] = ["admin", "operator", "viewer"];

const API_COLS: &str = "id, name, role, secret_hash, created_at_ms, expires_at_ms, \
                        revoked_at_ms, created_by, last_used_ms, scope_json, user_id";

const JOIN_COLS: &str = "id, secret_hash, region, labels_json, created_at_ms, expires_at_ms, \
                         max_uses, uses, revoked_at_ms, created_by";

fn api_token_from_row(row: &AnyRow) -> Result<ApiTokenRow, StoreError> {
    Ok(ApiTokenRow {
        id: col(row, "id")?,
        name: col(row, "name")?,
        role: col(row, "role")?,
        secret_hash: col(row, "secret_hash")?,
        created_at_ms: col(row, "created_at_ms")?,
        expires_at_ms: col(row, "expires_at_ms")?,
        revoked_at_ms: col(row, "revoked_at_ms")?,
        created_by: col(row, "created_by")?,
        last_used_ms: col(row, "last_used_ms")?,
        scope_json: col(row, "scope_json")?,
        user_id: col(row, "user_id")?,
    })
}

fn join_token_from_row(row: &AnyRow) -> Result<JoinTokenRow, StoreError> {
    let id: String = col(row, "id")?;
    let labels_json: String = col(row, "labels_json")?;
    Ok(JoinTokenRow {
        labels: labels_from_json(&labels_json, "join token", &id)?,
        secret_hash: col(row, "secret_hash")?,
        region: col(row, "region")?,
        created_at_ms: col(row, "created_at_ms")?,
        expires_at_ms: col(row, "expires_at_ms")?,
        max_uses: to_u32(col(row, "max_uses")?, "join token max_uses")?,
        uses: to_u32(col(row, "uses")?, "join token uses")?,
        revoked_at_ms: col(row, "revoked_at_ms")?,
        created_by: col(row, "created_by")?,
        id,
    })
}

pub(crate) fn labels_to_json(labels: &BTreeMap<String, String>) -> String {
    // A map of strings always serializes.
    serde_json::to_string(labels).unwrap_or_else(|_| "{}".to_owned())
}

pub(crate) fn labels_from_json(
    json: &str,
    kind: &str,
    id: &str,
) -> Result<BTreeMap<String, String>, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
        what: format!("labels of {kind} `{id}` are not a JSON object of strings: {e}"),
    })
}

impl Store {
    /// Stores a new API token. Fails with [`StoreError::AlreadyExists`] if the id is taken and
    /// [`StoreError::InvalidRole`] for a role other than admin, operator or viewer.
    pub async fn insert_api_token(&self, t: &ApiTokenRow) -> Result<(), StoreError> {
        if !API_ROLES.contains(&t.role.as_str()) {
            return Err(StoreError::InvalidRole {
                role: t.role.clone(),
            });
        }
        sqlx::query(
            "INSERT INTO api_tokens (id, name, role, secret_hash, created_at_ms, expires_at_ms, \
             revoked_at_ms, created_by, last_used_ms, scope_json, user_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&t.id)
        .bind(&t.name)
        .bind(&t.role)
        .bind(&t.secret_hash)
        .bind(t.created_at_ms)
        .bind(t.expires_at_ms)
        .bind(t.revoked_at_ms)
        .bind(&t.created_by)
        .bind(t.last_used_ms)
        .bind(&t.scope_json)
        .bind(&t.user_id)
        .execute(&self.pool)
        .await
        .map_err(insert_err("storing an API token", "API token", &t.id))?;
        Ok(())
    }

    /// The API token with this id, if any.
    pub async fn api_token(&self, id: &str) -> Result<Option<ApiTokenRow>, StoreError> {
        sqlx::query(&format!("SELECT {API_COLS} FROM api_tokens WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading an API token"))?
            .map(|r| api_token_from_row(&r))
            .transpose()
    }

    /// Every API token (revoked and expired ones included), oldest first.
    pub async fn list_api_tokens(&self) -> Result<Vec<ApiTokenRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {API_COLS} FROM api_tokens ORDER BY created_at_ms, id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing API tokens"))?
        .iter()
        .map(api_token_from_row)
        .collect()
    }

    /// Marks the token revoked at `now_ms` (a second revocation keeps the first time) and
    /// returns it, or `None` if there is no such token.
    pub async fn revoke_api_token(
        &self,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<ApiTokenRow>, StoreError> {
        sqlx::query(&format!(
            "UPDATE api_tokens SET revoked_at_ms = COALESCE(revoked_at_ms, $2) WHERE id = $1 \
             RETURNING {API_COLS}"
        ))
        .bind(id)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("revoking an API token"))?
        .map(|r| api_token_from_row(&r))
        .transpose()
    }

    /// Records a use of the token at `now_ms` (never moves `last_used_ms` backwards). Does
    /// nothing if the token does not exist. Callers on a hot path should throttle this.
    pub async fn touch_api_token(&self, id: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE api_tokens SET last_used_ms = $2 \
             WHERE id = $1 AND (last_used_ms IS NULL OR last_used_ms < $2)",
        )
        .bind(id)
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(db("recording an API token use"))?;
        Ok(())
    }

    /// How many API tokens exist (revoked ones included); 0 means the cluster still needs its
    /// first admin token.
    pub async fn count_api_tokens(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM api_tokens")
            .fetch_one(&self.pool)
            .await
            .map_err(db("counting API tokens"))
    }

    /// Stores a new join token. Fails with [`StoreError::AlreadyExists`] if the id is taken.
    pub async fn insert_join_token(&self, t: &JoinTokenRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO join_tokens (id, secret_hash, region, labels_json, created_at_ms, \
             expires_at_ms, max_uses, uses, revoked_at_ms, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&t.id)
        .bind(&t.secret_hash)
        .bind(&t.region)
        .bind(labels_to_json(&t.labels))
        .bind(t.created_at_ms)
        .bind(t.expires_at_ms)
        .bind(i64::from(t.max_uses))
        .bind(i64::from(t.uses))
        .bind(t.revoked_at_ms)
        .bind(&t.created_by)
        .execute(&self.pool)
        .await
        .map_err(insert_err("storing a join token", "join token", &t.id))?;
        Ok(())
    }

    /// The join token with this id, if any.
    pub async fn join_token(&self, id: &str) -> Result<Option<JoinTokenRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {JOIN_COLS} FROM join_tokens WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading a join token"))?
        .map(|r| join_token_from_row(&r))
        .transpose()
    }

    /// Every join token (revoked, expired and used-up ones included), oldest first.
    pub async fn list_join_tokens(&self) -> Result<Vec<JoinTokenRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {JOIN_COLS} FROM join_tokens ORDER BY created_at_ms, id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing join tokens"))?
        .iter()
        .map(join_token_from_row)
        .collect()
    }

    /// Marks the token revoked at `now_ms` (a second revocation keeps the first time) and
    /// returns it, or `None` if there is no such token.
    pub async fn revoke_join_token(
        &self,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<JoinTokenRow>, StoreError> {
        sqlx::query(&format!(
            "UPDATE join_tokens SET revoked_at_ms = COALESCE(revoked_at_ms, $2) WHERE id = $1 \
             RETURNING {JOIN_COLS}"
        ))
        .bind(id)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("revoking a join token"))?
        .map(|r| join_token_from_row(&r))
        .transpose()
    }

    /// Atomically counts one use of the token if it is usable at `now_ms` (not revoked,
    /// `now_ms < expires_at_ms`, uses left). One conditional `UPDATE … RETURNING`, so concurrent
    /// redeemers on either dialect never overspend a token. When nothing was counted, says why
    /// (checked in the order revoked, expired, used up). The caller checks the secret hash
    /// before redeeming.
    pub async fn redeem_join_token(&self, id: &str, now_ms: i64) -> Result<Redemption, StoreError> {
        let counted = sqlx::query(&format!(
            "UPDATE join_tokens SET uses = uses + 1 \
             WHERE id = $1 AND revoked_at_ms IS NULL AND $2 < expires_at_ms \
               AND (max_uses = 0 OR uses < max_uses) \
             RETURNING {JOIN_COLS}"
        ))
        .bind(id)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("redeeming a join token"))?;
        if let Some(row) = counted {
            return Ok(Redemption::Redeemed(join_token_from_row(&row)?));
        }
        let Some(token) = self.join_token(id).await? else {
            return Ok(Redemption::Unknown);
        };
        Ok(if token.revoked_at_ms.is_some() {
            Redemption::Revoked
        } else if now_ms >= token.expires_at_ms {
            Redemption::Expired {
                expired_at_ms: token.expires_at_ms,
            }
        } else {
            Redemption::UsedUp {
                max_uses: token.max_uses,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    fn api(id: &str, created: i64) -> ApiTokenRow {
        ApiTokenRow {
            id: id.to_owned(),
            name: format!("token {id}"),
            role: "operator".to_owned(),
            secret_hash: format!("sha256:{id}"),
            created_at_ms: created,
            expires_at_ms: Some(created + 86_400_000),
            revoked_at_ms: None,
            created_by: "bootstrap".to_owned(),
            last_used_ms: None,
            scope_json: r#"{"regions":["eu-west"]}"#.to_owned(),
            user_id: None,
        }
    }

    fn join(id: &str, expires: i64, max_uses: u32) -> JoinTokenRow {
        JoinTokenRow {
            id: id.to_owned(),
            secret_hash: format!("sha256:{id}"),
            region: "eu-west".to_owned(),
            labels: BTreeMap::from([
                ("tier".to_owned(), "db".to_owned()),
                ("team".to_owned(), "core \"ops\" ü".to_owned()),
            ]),
            created_at_ms: 1_000,
            expires_at_ms: expires,
            max_uses,
            uses: 0,
            revoked_at_ms: None,
            created_by: "alice".to_owned(),
        }
    }

    store_test!(api_tokens_crud_and_revoke);
    async fn api_tokens_crud_and_revoke(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        assert_eq!(store.count_api_tokens().await?, 0);
        let mut admin = api("tok-b", 2_000);
        admin.role = "admin".to_owned();
        admin.expires_at_ms = None;
        store.insert_api_token(&admin).await?;
        store.insert_api_token(&api("tok-a", 1_000)).await?;
        assert_eq!(store.count_api_tokens().await?, 2);

        let err = store.insert_api_token(&api("tok-a", 5)).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::AlreadyExists { kind: "API token", id } if id == "tok-a"),
            "{err}"
        );

        let mut bad = api("tok-c", 3_000);
        bad.role = "root".to_owned();
        assert!(
            store.insert_api_token(&bad).await.is_err(),
            "role is checked"
        );

        assert_eq!(store.api_token("tok-b").await?, Some(admin.clone()));
        assert_eq!(store.api_token("nope").await?, None);
        let ids: Vec<String> = store
            .list_api_tokens()
            .await?
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(ids, ["tok-a", "tok-b"]);

        store.touch_api_token("tok-a", 5_000).await?;
        store.touch_api_token("tok-a", 4_000).await?; // older: ignored
        store.touch_api_token("unknown", 4_000).await?; // no-op
        assert_eq!(
            store.api_token("tok-a").await?.unwrap().last_used_ms,
            Some(5_000)
        );

        let revoked = store.revoke_api_token("tok-a", 7_000).await?.unwrap();
        assert_eq!(revoked.revoked_at_ms, Some(7_000));
        assert_eq!(revoked.last_used_ms, Some(5_000));
        let again = store.revoke_api_token("tok-a", 9_000).await?.unwrap();
        assert_eq!(
            again.revoked_at_ms,
            Some(7_000),
            "first revocation time kept"
        );
        assert_eq!(store.revoke_api_token("nope", 9_000).await?, None);
        assert_eq!(
            store.api_token("tok-a").await?.unwrap().revoked_at_ms,
            Some(7_000)
        );
        Ok(())
    }

    store_test!(join_tokens_crud_and_labels);
    async fn join_tokens_crud_and_labels(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        let t = join("jt-1", 10_000, 3);
        store.insert_join_token(&t).await?;
        store.insert_join_token(&join("jt-0", 20_000, 0)).await?;
        assert_eq!(store.join_token("jt-1").await?, Some(t.clone()));
        assert_eq!(store.join_token("missing").await?, None);
        let listed = store.list_join_tokens().await?;
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].id, "jt-0", "ties on created_at ordered by id");
        assert_eq!(
            listed[1].labels.get("team").map(String::as_str),
            Some("core \"ops\" ü")
        );
        assert!(matches!(
            store.insert_join_token(&t).await,
            Err(StoreError::AlreadyExists {
                kind: "join token",
                ..
            })
        ));
        let revoked = store.revoke_join_token("jt-1", 5_000).await?.unwrap();
        assert_eq!(revoked.revoked_at_ms, Some(5_000));
        assert_eq!(store.revoke_join_token("missing", 5_000).await?, None);
        Ok(())
    }

    store_test!(join_token_redemption_outcomes);
    async fn join_token_redemption_outcomes(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        assert_eq!(
            store.redeem_join_token("nope", 1).await?,
            Redemption::Unknown
        );

        store.insert_join_token(&join("two", 10_000, 2)).await?;
        let Redemption::Redeemed(first) = store.redeem_join_token("two", 9_999).await? else {
            panic!("first use must succeed");
        };
        assert_eq!(first.uses, 1);
        assert_eq!(first.labels, join("two", 0, 0).labels);
        assert!(matches!(
            store.redeem_join_token("two", 2_000).await?,
            Redemption::Redeemed(JoinTokenRow { uses: 2, .. })
        ));
        assert_eq!(
            store.redeem_join_token("two", 3_000).await?,
            Redemption::UsedUp { max_uses: 2 }
        );
        assert_eq!(
            store.join_token("two").await?.unwrap().uses,
            2,
            "not overspent"
        );

        store.insert_join_token(&join("exp", 10_000, 0)).await?;
        assert_eq!(
            store.redeem_join_token("exp", 10_000).await?,
            Redemption::Expired {
                expired_at_ms: 10_000
            },
            "expiry is exclusive"
        );
        assert_eq!(store.join_token("exp").await?.unwrap().uses, 0);

        store
            .insert_join_token(&join("unlimited", 10_000, 0))
            .await?;
        for n in 1..=5 {
            let Redemption::Redeemed(t) = store.redeem_join_token("unlimited", 5).await? else {
                panic!("unlimited token must redeem");
            };
            assert_eq!(t.uses, n);
        }

        store.insert_join_token(&join("rev", 10_000, 1)).await?;
        store.revoke_join_token("rev", 100).await?;
        assert_eq!(
            store.redeem_join_token("rev", 200).await?,
            Redemption::Revoked
        );
        // Revoked wins over expired in the explanation.
        assert_eq!(
            store.redeem_join_token("rev", 20_000).await?,
            Redemption::Revoked
        );
        Ok(())
    }

    store_test!(join_token_concurrent_single_use_has_one_winner);
    async fn join_token_concurrent_single_use_has_one_winner(db: TestDb) -> anyhow::Result<()> {
        let stores = [db.store(), db.reopen().await?];
        stores[0]
            .insert_join_token(&join("once", 10_000, 1))
            .await?;
        let mut tasks = Vec::new();
        for i in 0..10 {
            let store = stores[i % 2].clone();
            tasks.push(tokio::spawn(async move {
                store.redeem_join_token("once", 500).await
            }));
        }
        let mut redeemed = 0;
        let mut used_up = 0;
        for task in tasks {
            match task.await?? {
                Redemption::Redeemed(t) => {
                    assert_eq!(t.uses, 1);
                    redeemed += 1;
                }
                Redemption::UsedUp { max_uses: 1 } => used_up += 1,
                other => panic!("unexpected outcome {other:?}"),
            }
        }
        assert_eq!((redeemed, used_up), (1, 9));
        assert_eq!(stores[0].join_token("once").await?.unwrap().uses, 1);
        stores[1].close().await;
        Ok(())
    }
}
