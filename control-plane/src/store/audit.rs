//! Rows of the audit log: appending a chained record inside one write
//! transaction (read the head, chain, insert), filtered listing, and
//! reading the chain in order for verification.

use super::{Store, StoreError, col, db};
use crate::audit::{self, AuditEntry, AuditRecord};
use sqlx::Row;
use sqlx::any::AnyRow;

const COLS: &str = "seq, at_ms, actor, source, action, target, outcome, prev_hash, hash";

/// Which records `Store::list_audit` returns, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub since_ms: Option<i64>,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Only records with `seq` below this (paging backwards).
    pub before_seq: Option<i64>,
    pub limit: u32,
}

fn record_from_row(row: &AnyRow) -> Result<AuditRecord, StoreError> {
    Ok(AuditRecord {
        seq: col(row, "seq")?,
        at_ms: col(row, "at_ms")?,
        entry: AuditEntry {
            actor: col(row, "actor")?,
            source: col(row, "source")?,
            action: col(row, "action")?,
            target: col(row, "target")?,
            outcome: col(row, "outcome")?,
        },
        prev_hash: col(row, "prev_hash")?,
        hash: col(row, "hash")?,
    })
}

impl Store {
    /// Appends `entry` after the current head of the chain, hashed with
    /// `key`, and returns the stored record. Callers serialize appends; the
    /// primary key on `seq` turns a race between replicas into an error
    /// rather than a fork.
    pub async fn append_audit(
        &self,
        key: &[u8],
        at_ms: i64,
        entry: AuditEntry,
    ) -> Result<AuditRecord, StoreError> {
        let mut tx = self.begin_write("appending to the audit log").await?;
        let head = sqlx::query("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("reading the audit log's head"))?;
        let head = match head {
            Some(row) => Some((
                row.try_get::<i64, _>("seq")
                    .map_err(db("reading the audit log's head"))?,
                row.try_get::<String, _>("hash")
                    .map_err(db("reading the audit log's head"))?,
            )),
            None => None,
        };
        let record = audit::next_record(
            key,
            head.as_ref().map(|(seq, hash)| (*seq, hash.as_str())),
            at_ms,
            entry,
        );
        sqlx::query(&format!(
            "INSERT INTO audit_events ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(record.seq)
        .bind(record.at_ms)
        .bind(&record.entry.actor)
        .bind(&record.entry.source)
        .bind(&record.entry.action)
        .bind(&record.entry.target)
        .bind(&record.entry.outcome)
        .bind(&record.prev_hash)
        .bind(&record.hash)
        .execute(&mut *tx)
        .await
        .map_err(db("appending to the audit log"))?;
        tx.commit()
            .await
            .map_err(db("appending to the audit log"))?;
        Ok(record)
    }

    /// Records matching `filter`, newest first.
    pub async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let mut sql = format!("SELECT {COLS} FROM audit_events WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if filter.since_ms.is_some() {
            sql.push_str(&format!(" AND at_ms >= {}", next()));
        }
        if filter.actor.is_some() {
            sql.push_str(&format!(" AND actor = {}", next()));
        }
        if filter.action.is_some() {
            sql.push_str(&format!(" AND action = {}", next()));
        }
        if filter.before_seq.is_some() {
            sql.push_str(&format!(" AND seq < {}", next()));
        }
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT {}", next()));
        let mut query = sqlx::query(&sql);
        if let Some(since) = filter.since_ms {
            query = query.bind(since);
        }
        if let Some(actor) = &filter.actor {
            query = query.bind(actor);
        }
        if let Some(action) = &filter.action {
            query = query.bind(action);
        }
        if let Some(before) = filter.before_seq {
            query = query.bind(before);
        }
        query
            .bind(i64::from(filter.limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing the audit log"))?
            .iter()
            .map(record_from_row)
            .collect()
    }

    /// Up to `limit` records after `after_seq`, oldest first: the chain in
    /// the order it is verified.
    pub async fn audit_chain_page(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading the audit log"))?
        .iter()
        .map(record_from_row)
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::*;

    fn entry(action: &str, actor: &str) -> AuditEntry {
        AuditEntry {
            actor: actor.into(),
            source: "127.0.0.1:1".into(),
            action: action.into(),
            target: "web".into(),
            outcome: "ok".into(),
        }
    }

    store_test!(appended_records_form_a_verifiable_chain_and_filter);
    async fn appended_records_form_a_verifiable_chain_and_filter(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        let key = [7u8; 32];
        for (i, (action, actor)) in [
            ("service.apply", "user:alice"),
            ("secret.read", "token:ci"),
            ("service.apply", "token:ci"),
        ]
        .into_iter()
        .enumerate()
        {
            let record = store
                .append_audit(&key, 1_000 * (i as i64 + 1), entry(action, actor))
                .await?;
            assert_eq!(record.seq, i as i64 + 1);
        }
        let chain = store.audit_chain_page(0, 100).await?;
        assert_eq!(chain.len(), 3);
        assert_eq!(audit::verify(&key, &chain).problems, vec![]);
        assert_eq!(store.audit_chain_page(2, 100).await?.len(), 1);

        let all = AuditFilter {
            limit: 100,
            ..AuditFilter::default()
        };
        let newest_first: Vec<i64> = store
            .list_audit(&all)
            .await?
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(newest_first, vec![3, 2, 1]);
        let by_ci = AuditFilter {
            actor: Some("token:ci".into()),
            action: Some("service.apply".into()),
            since_ms: Some(2_000),
            ..all.clone()
        };
        let found = store.list_audit(&by_ci).await?;
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].seq, 3);
        let paged = AuditFilter {
            before_seq: Some(3),
            limit: 1,
            ..all
        };
        assert_eq!(store.list_audit(&paged).await?[0].seq, 2);
        Ok(())
    }
}
