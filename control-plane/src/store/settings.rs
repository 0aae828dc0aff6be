//! Small key/value settings (CA material, cluster id, …) shared by every replica.

use super::{Store, StoreError, col, db};

impl Store {
    /// The value stored under `key`, if any.
    pub async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a setting"))?;
        row.map(|r| col(&r, "value")).transpose()
    }

    /// Stores `value` under `key` unless the key already has a value. Returns true if this call
    /// stored it. Race-safe between replicas: of several concurrent callers exactly one wins,
    /// and the others then read the winner's value with [`Store::setting`].
    pub async fn insert_setting_if_absent(
        &self,
        key: &str,
        value: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(db("storing a setting"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Stores `value` under `key`, replacing any previous value.
    pub async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(db("storing a setting"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;

    store_test!(settings_roundtrip);
    async fn settings_roundtrip(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        assert_eq!(store.setting("ca.cert").await?, None);
        assert!(store.insert_setting_if_absent("ca.cert", "PEM-1").await?);
        assert!(!store.insert_setting_if_absent("ca.cert", "PEM-2").await?);
        assert_eq!(store.setting("ca.cert").await?.as_deref(), Some("PEM-1"));
        store.put_setting("ca.cert", "PEM-3").await?;
        assert_eq!(store.setting("ca.cert").await?.as_deref(), Some("PEM-3"));
        store.put_setting("other", "x").await?;
        assert_eq!(store.setting("other").await?.as_deref(), Some("x"));
        Ok(())
    }

    store_test!(settings_insert_if_absent_race_has_one_winner);
    async fn settings_insert_if_absent_race_has_one_winner(db: TestDb) -> anyhow::Result<()> {
        // Two independent pools, as two replicas would have.
        let stores = [db.store(), db.reopen().await?];
        let mut tasks = Vec::new();
        for i in 0..10 {
            let store = stores[i % 2].clone();
            tasks.push(tokio::spawn(async move {
                let value = format!("value-{i}");
                let won = store.insert_setting_if_absent("cluster.id", &value).await?;
                Ok::<_, super::super::StoreError>((won, value))
            }));
        }
        let mut winners = Vec::new();
        for task in tasks {
            let (won, value) = task.await??;
            if won {
                winners.push(value);
            }
        }
        assert_eq!(winners.len(), 1, "winners: {winners:?}");
        assert_eq!(
            stores[0].setting("cluster.id").await?.as_deref(),
            Some(winners[0].as_str())
        );
        stores[1].close().await;
        Ok(())
    }
}
