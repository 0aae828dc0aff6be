//! Enrolled hosts: identity, placement (region, labels), last contact, inventory and the
//! current client certificate.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;

use super::tokens::{labels_from_json, labels_to_json};
use super::{Store, StoreError, col, db, insert_err, to_u32};

/// A host as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRow {
    pub id: String,
    pub hostname: String,
    pub region: String,
    pub labels: BTreeMap<String, String>,
    pub enrolled_at_ms: i64,
    pub last_seen_ms: Option<i64>,
    /// Opaque bytes (an encoded protobuf); the store does not look inside.
    pub inventory: Vec<u8>,
    /// How often the agent sends a metric sample.
    pub interval_seconds: u32,
    pub cert_serial: String,
    pub cert_not_after_ms: i64,
    pub revoked_at_ms: Option<i64>,
    /// The join token the host enrolled with.
    pub join_token_id: String,
}

const HOST_COLS: &str = "id, hostname, region, labels_json, enrolled_at_ms, last_seen_ms, \
                         inventory, interval_seconds, cert_serial, cert_not_after_ms, \
                         revoked_at_ms, join_token_id";

fn host_from_row(row: &AnyRow) -> Result<HostRow, StoreError> {
    let id: String = col(row, "id")?;
    let labels_json: String = col(row, "labels_json")?;
    Ok(HostRow {
        labels: labels_from_json(&labels_json, "host", &id)?,
        hostname: col(row, "hostname")?,
        region: col(row, "region")?,
        enrolled_at_ms: col(row, "enrolled_at_ms")?,
        last_seen_ms: col(row, "last_seen_ms")?,
        inventory: col(row, "inventory")?,
        interval_seconds: to_u32(col(row, "interval_seconds")?, "host interval_seconds")?,
        cert_serial: col(row, "cert_serial")?,
        cert_not_after_ms: col(row, "cert_not_after_ms")?,
        revoked_at_ms: col(row, "revoked_at_ms")?,
        join_token_id: col(row, "join_token_id")?,
        id,
    })
}

/// `last_seen_ms` never moves backwards (two replicas may record the same host out of order).
const NEWER_SEEN: &str = "last_seen_ms = CASE WHEN last_seen_ms IS NULL OR last_seen_ms < $2 \
                          THEN $2 ELSE last_seen_ms END";

fn not_found(id: &str) -> StoreError {
    StoreError::NotFound {
        kind: "host",
        id: id.to_owned(),
    }
}

impl Store {
    /// Stores a newly enrolled host. Fails with [`StoreError::AlreadyExists`] if the id is taken.
    pub async fn insert_host(&self, h: &HostRow) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO hosts ({HOST_COLS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(&h.id)
        .bind(&h.hostname)
        .bind(&h.region)
        .bind(labels_to_json(&h.labels))
        .bind(h.enrolled_at_ms)
        .bind(h.last_seen_ms)
        .bind(&h.inventory)
        .bind(i64::from(h.interval_seconds))
        .bind(&h.cert_serial)
        .bind(h.cert_not_after_ms)
        .bind(h.revoked_at_ms)
        .bind(&h.join_token_id)
        .execute(&self.pool)
        .await
        .map_err(insert_err("storing a host", "host", &h.id))?;
        Ok(())
    }

    /// The host with this id, if any.
    pub async fn host(&self, id: &str) -> Result<Option<HostRow>, StoreError> {
        sqlx::query(&format!("SELECT {HOST_COLS} FROM hosts WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a host"))?
            .map(|r| host_from_row(&r))
            .transpose()
    }

    /// Every host (revoked ones included), ordered by id.
    pub async fn list_hosts(&self) -> Result<Vec<HostRow>, StoreError> {
        sqlx::query(&format!("SELECT {HOST_COLS} FROM hosts ORDER BY id"))
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing hosts"))?
            .iter()
            .map(host_from_row)
            .collect()
    }

    /// Records an agent's hello: when, its inventory, hostname and sampling interval.
    /// Fails with [`StoreError::NotFound`] for an unknown host.
    pub async fn record_host_connected(
        &self,
        id: &str,
        now_ms: i64,
        inventory: &[u8],
        hostname: &str,
        interval_seconds: u32,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(&format!(
            "UPDATE hosts SET {NEWER_SEEN}, inventory = $3, hostname = $4, interval_seconds = $5 \
             WHERE id = $1"
        ))
        .bind(id)
        .bind(now_ms)
        .bind(inventory)
        .bind(hostname)
        .bind(i64::from(interval_seconds))
        .execute(&self.pool)
        .await
        .map_err(db("recording a host connection"))?;
        if done.rows_affected() == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }

    /// Records that the host was heard from at `now_ms`. Fails with [`StoreError::NotFound`]
    /// for an unknown host.
    pub async fn record_host_seen(&self, id: &str, now_ms: i64) -> Result<(), StoreError> {
        let done = sqlx::query(&format!("UPDATE hosts SET {NEWER_SEEN} WHERE id = $1"))
            .bind(id)
            .bind(now_ms)
            .execute(&self.pool)
            .await
            .map_err(db("recording a host contact"))?;
        if done.rows_affected() == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }

    /// Records the host's current client certificate (after enrollment or renewal). Fails
    /// with [`StoreError::NotFound`] for an unknown host.
    pub async fn set_host_certificate(
        &self,
        id: &str,
        serial_hex: &str,
        not_after_ms: i64,
    ) -> Result<(), StoreError> {
        let done =
            sqlx::query("UPDATE hosts SET cert_serial = $2, cert_not_after_ms = $3 WHERE id = $1")
                .bind(id)
                .bind(serial_hex)
                .bind(not_after_ms)
                .execute(&self.pool)
                .await
                .map_err(db("recording a host certificate"))?;
        if done.rows_affected() == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }

    /// Marks the host revoked at `now_ms` (a second revocation keeps the first time) and
    /// returns it, or `None` if there is no such host.
    pub async fn revoke_host(&self, id: &str, now_ms: i64) -> Result<Option<HostRow>, StoreError> {
        sqlx::query(&format!(
            "UPDATE hosts SET revoked_at_ms = COALESCE(revoked_at_ms, $2) WHERE id = $1 \
             RETURNING {HOST_COLS}"
        ))
        .bind(id)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("revoking a host"))?
        .map(|r| host_from_row(&r))
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    fn host(id: &str) -> HostRow {
        HostRow {
            id: id.to_owned(),
            hostname: format!("{id}.example"),
            region: "eu-west".to_owned(),
            labels: BTreeMap::from([("role".to_owned(), "web".to_owned())]),
            enrolled_at_ms: 1_000,
            last_seen_ms: None,
            inventory: vec![],
            interval_seconds: 10,
            cert_serial: "0a1b".to_owned(),
            cert_not_after_ms: 90_000,
            revoked_at_ms: None,
            join_token_id: "jt-1".to_owned(),
        }
    }

    store_test!(hosts_insert_list_connected_seen_revoke);
    async fn hosts_insert_list_connected_seen_revoke(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        let h2 = host("h-2");
        store.insert_host(&h2).await?;
        store.insert_host(&host("h-1")).await?;
        assert!(matches!(
            store.insert_host(&h2).await,
            Err(StoreError::AlreadyExists { kind: "host", .. })
        ));
        assert_eq!(store.host("h-2").await?, Some(h2.clone()));
        assert_eq!(store.host("h-9").await?, None);
        let ids: Vec<String> = store
            .list_hosts()
            .await?
            .into_iter()
            .map(|h| h.id)
            .collect();
        assert_eq!(ids, ["h-1", "h-2"]);

        // Inventory is opaque bytes, including NUL and non-UTF-8.
        let inventory = vec![0_u8, 159, 146, 150, 255, 10];
        store
            .record_host_connected("h-2", 5_000, &inventory, "renamed.example", 15)
            .await?;
        let got = store.host("h-2").await?.unwrap();
        assert_eq!(got.last_seen_ms, Some(5_000));
        assert_eq!(got.inventory, inventory);
        assert_eq!(got.hostname, "renamed.example");
        assert_eq!(got.interval_seconds, 15);
        assert_eq!(got.labels, h2.labels);

        store.record_host_seen("h-2", 7_000).await?;
        store.record_host_seen("h-2", 6_000).await?; // older: ignored
        assert_eq!(store.host("h-2").await?.unwrap().last_seen_ms, Some(7_000));
        assert!(matches!(
            store.record_host_seen("h-9", 1).await,
            Err(StoreError::NotFound { kind: "host", .. })
        ));
        assert!(matches!(
            store.record_host_connected("h-9", 1, &[], "x", 10).await,
            Err(StoreError::NotFound { .. })
        ));

        store.set_host_certificate("h-1", "ff00", 123_456).await?;
        let h1 = store.host("h-1").await?.unwrap();
        assert_eq!(
            (h1.cert_serial.as_str(), h1.cert_not_after_ms),
            ("ff00", 123_456)
        );
        assert!(store.set_host_certificate("h-9", "00", 1).await.is_err());

        let revoked = store.revoke_host("h-1", 8_000).await?.unwrap();
        assert_eq!(revoked.revoked_at_ms, Some(8_000));
        assert_eq!(
            store
                .revoke_host("h-1", 9_000)
                .await?
                .unwrap()
                .revoked_at_ms,
            Some(8_000)
        );
        assert_eq!(store.revoke_host("h-9", 9_000).await?, None);
        assert_eq!(store.host("h-2").await?.unwrap().revoked_at_ms, None);
        Ok(())
    }
}
