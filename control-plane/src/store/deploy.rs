//! Deployments: services with immutable, numbered revisions, deployments moving a service from
//! one revision to another with their event history, allocations (replicas placed on hosts),
//! and the per-host desired-state version pushed to agents.
//!
//! The store does not interpret spec text, rollout state (`state_json`) or agent reports
//! (`status_json`); the deployment controller owns their meaning.

use sqlx::any::AnyRow;

use super::{Dialect, Store, StoreError, col, db, to_u32};

/// A service as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRow {
    pub name: String,
    /// The revision number the service is (being) moved to.
    pub current_revision: Option<i64>,
    /// The last revision that rolled out successfully (the target of an automatic revert).
    pub stable_revision: Option<i64>,
    pub replicas: u32,
    pub stopped: bool,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// One immutable revision of a service's spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionRow {
    pub id: String,
    pub service: String,
    /// 1, 2, 3, … per service.
    pub number: i64,
    /// The spec as the user wrote it.
    pub spec_text: String,
    /// `"yaml"` or `"toml"` (the schema rejects anything else).
    pub spec_format: String,
    pub spec_hash: String,
    /// The versions the spec's followed secrets resolved to when the revision was created
    /// (`{"crm/db-password": 4}`); opaque to the store.
    pub secret_versions_json: String,
    pub created_at_ms: i64,
    pub created_by: String,
}

/// A deployment as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentRow {
    pub id: String,
    pub service: String,
    /// `None` for a service's first deployment.
    pub from_revision: Option<i64>,
    pub to_revision: i64,
    pub phase: String,
    /// The rollout state as the controller serialized it; opaque to the store.
    pub state_json: String,
    pub created_at_ms: i64,
    /// Also the version checked by [`Store::update_deployment`].
    pub updated_at_ms: i64,
    /// `None` while the deployment is active.
    pub finished_at_ms: Option<i64>,
    pub created_by: String,
}

/// One replica of a service revision, placed on a host or pending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationRow {
    pub id: String,
    pub service: String,
    pub revision: i64,
    pub deployment_id: Option<String>,
    /// `None` while pending (see `pending_reason`).
    pub host_id: Option<String>,
    pub desired_run: bool,
    pub state: String,
    pub health: String,
    /// The agent's last report; opaque to the store.
    pub status_json: String,
    pub pending_reason: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// One entry of a deployment's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentEventRow {
    /// Increases with every event of every deployment; within one deployment, events are
    /// numbered in the order they were stored.
    pub seq: i64,
    pub deployment_id: String,
    pub at_ms: i64,
    pub message: String,
}

const SERVICE_COLS: &str =
    "name, current_revision, stable_revision, replicas, stopped, created_at_ms, updated_at_ms";

const REVISION_COLS: &str = "id, service, number, spec_text, spec_format, spec_hash, \
                             secret_versions_json, created_at_ms, created_by";

const DEPLOYMENT_COLS: &str = "id, service, from_revision, to_revision, phase, state_json, \
                               created_at_ms, updated_at_ms, finished_at_ms, created_by";

const ALLOCATION_COLS: &str = "id, service, revision, deployment_id, host_id, desired_run, \
                               state, health, status_json, pending_reason, created_at_ms, \
                               updated_at_ms";

/// What a deployment or allocation may refer to that must exist, for
/// [`StoreError::MissingReference`].
const DEPLOYMENT_REFS: &str = "a revision of its service";
const ALLOCATION_REFS: &str = "a revision of its service, a deployment or a host";

fn service_from_row(row: &AnyRow) -> Result<ServiceRow, StoreError> {
    Ok(ServiceRow {
        name: col(row, "name")?,
        current_revision: col(row, "current_revision")?,
        stable_revision: col(row, "stable_revision")?,
        replicas: to_u32(col(row, "replicas")?, "service replicas")?,
        stopped: to_bool(col(row, "stopped")?, "service stopped")?,
        created_at_ms: col(row, "created_at_ms")?,
        updated_at_ms: col(row, "updated_at_ms")?,
    })
}

fn revision_from_row(row: &AnyRow) -> Result<RevisionRow, StoreError> {
    Ok(RevisionRow {
        id: col(row, "id")?,
        service: col(row, "service")?,
        number: col(row, "number")?,
        spec_text: col(row, "spec_text")?,
        spec_format: col(row, "spec_format")?,
        spec_hash: col(row, "spec_hash")?,
        secret_versions_json: col(row, "secret_versions_json")?,
        created_at_ms: col(row, "created_at_ms")?,
        created_by: col(row, "created_by")?,
    })
}

fn deployment_from_row(row: &AnyRow) -> Result<DeploymentRow, StoreError> {
    Ok(DeploymentRow {
        id: col(row, "id")?,
        service: col(row, "service")?,
        from_revision: col(row, "from_revision")?,
        to_revision: col(row, "to_revision")?,
        phase: col(row, "phase")?,
        state_json: col(row, "state_json")?,
        created_at_ms: col(row, "created_at_ms")?,
        updated_at_ms: col(row, "updated_at_ms")?,
        finished_at_ms: col(row, "finished_at_ms")?,
        created_by: col(row, "created_by")?,
    })
}

fn allocation_from_row(row: &AnyRow) -> Result<AllocationRow, StoreError> {
    Ok(AllocationRow {
        id: col(row, "id")?,
        service: col(row, "service")?,
        revision: col(row, "revision")?,
        deployment_id: col(row, "deployment_id")?,
        host_id: col(row, "host_id")?,
        desired_run: to_bool(col(row, "desired_run")?, "allocation desired_run")?,
        state: col(row, "state")?,
        health: col(row, "health")?,
        status_json: col(row, "status_json")?,
        pending_reason: col(row, "pending_reason")?,
        created_at_ms: col(row, "created_at_ms")?,
        updated_at_ms: col(row, "updated_at_ms")?,
    })
}

fn event_from_row(row: &AnyRow) -> Result<DeploymentEventRow, StoreError> {
    Ok(DeploymentEventRow {
        seq: col(row, "seq")?,
        deployment_id: col(row, "deployment_id")?,
        at_ms: col(row, "at_ms")?,
        message: col(row, "message")?,
    })
}

/// Converts a stored 0/1 flag, reporting anything else as corruption.
fn to_bool(value: i64, what: &str) -> Result<bool, StoreError> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(StoreError::Corrupt {
            what: format!("{what} is {value}, not 0 or 1"),
        }),
    }
}

/// Maps a unique violation to [`StoreError::AlreadyExists`], a foreign-key violation to
/// [`StoreError::MissingReference`], anything else to [`db`].
fn write_err(
    op: &'static str,
    kind: &'static str,
    id: &str,
    target: &'static str,
) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| match &source {
        sqlx::Error::Database(e) if e.is_unique_violation() => StoreError::AlreadyExists {
            kind,
            id: id.to_owned(),
        },
        sqlx::Error::Database(e) if e.is_foreign_key_violation() => StoreError::MissingReference {
            kind,
            id: id.to_owned(),
            target,
        },
        _ => StoreError::Query { op, source },
    }
}

fn not_found(kind: &'static str, id: &str) -> StoreError {
    StoreError::NotFound {
        kind,
        id: id.to_owned(),
    }
}

/// A new revision id: `rev-` and 12 random characters.
fn new_revision_id() -> String {
    format!("rev-{}", crate::secrets::random_id(12))
}

impl Store {
    /// Creates the service if it is new (with `replicas`, not stopped, no current or stable
    /// revision; an existing service is left as it is) and appends revision number max+1, in
    /// one transaction. Returns the revision and whether it was created: if the service's
    /// newest revision already has `spec_hash` and `secret_versions_json`, that revision is
    /// returned with `false` and nothing is stored (an older revision with the same hash does
    /// not count: re-applying it is a change; nor does the same spec with other secret
    /// versions: that is a rotation).
    ///
    /// Concurrent appliers, on one replica or several, get distinct numbers: the transaction
    /// holds the service row's lock (SQLite's write lock) from reading the newest revision
    /// to inserting the next, and `UNIQUE (service, number)` backs it.
    #[allow(clippy::too_many_arguments)]
    pub async fn append_revision(
        &self,
        service: &str,
        spec_text: &str,
        spec_format: &str,
        spec_hash: &str,
        secret_versions_json: &str,
        replicas: u32,
        created_by: &str,
        now_ms: i64,
    ) -> Result<(RevisionRow, bool), StoreError> {
        const OP: &str = "storing a revision";
        let mut tx = self.begin_write(OP).await?;
        sqlx::query(
            "INSERT INTO services (name, current_revision, stable_revision, replicas, stopped, \
             created_at_ms, updated_at_ms) VALUES ($1, NULL, NULL, $2, 0, $3, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(service)
        .bind(i64::from(replicas))
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(db(OP))?;
        if self.dialect == Dialect::Postgres {
            // Serializes appliers of this service until commit. NO KEY: foreign-key checks
            // of concurrent deployment and allocation writes are not blocked.
            sqlx::query("SELECT name FROM services WHERE name = $1 FOR NO KEY UPDATE")
                .bind(service)
                .execute(&mut *tx)
                .await
                .map_err(db(OP))?;
        }
        let newest = sqlx::query(&format!(
            "SELECT {REVISION_COLS} FROM revisions WHERE service = $1 \
             ORDER BY number DESC LIMIT 1"
        ))
        .bind(service)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db(OP))?
        .map(|r| revision_from_row(&r))
        .transpose()?;
        if let Some(newest) = newest
            .as_ref()
            .filter(|r| r.spec_hash == spec_hash && r.secret_versions_json == secret_versions_json)
        {
            tx.commit().await.map_err(db(OP))?;
            return Ok((newest.clone(), false));
        }
        let revision = RevisionRow {
            id: new_revision_id(),
            service: service.to_owned(),
            number: newest.map_or(1, |r| r.number + 1),
            spec_text: spec_text.to_owned(),
            spec_format: spec_format.to_owned(),
            spec_hash: spec_hash.to_owned(),
            secret_versions_json: secret_versions_json.to_owned(),
            created_at_ms: now_ms,
            created_by: created_by.to_owned(),
        };
        sqlx::query(&format!(
            "INSERT INTO revisions ({REVISION_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(&revision.id)
        .bind(&revision.service)
        .bind(revision.number)
        .bind(&revision.spec_text)
        .bind(&revision.spec_format)
        .bind(&revision.spec_hash)
        .bind(&revision.secret_versions_json)
        .bind(revision.created_at_ms)
        .bind(&revision.created_by)
        .execute(&mut *tx)
        .await
        .map_err(db(OP))?;
        tx.commit().await.map_err(db(OP))?;
        Ok((revision, true))
    }

    /// The service with this name, if any.
    pub async fn service(&self, name: &str) -> Result<Option<ServiceRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {SERVICE_COLS} FROM services WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading a service"))?
        .map(|r| service_from_row(&r))
        .transpose()
    }

    /// Every service, ordered by name.
    pub async fn list_services(&self) -> Result<Vec<ServiceRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {SERVICE_COLS} FROM services ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing services"))?
        .iter()
        .map(service_from_row)
        .collect()
    }

    /// Stores the service's current and stable revision, replicas, stopped flag and
    /// `updated_at_ms` (`created_at_ms` is kept). Fails with [`StoreError::NotFound`] for an
    /// unknown service and [`StoreError::MissingReference`] for a revision number the
    /// service does not have.
    pub async fn update_service(&self, s: &ServiceRow) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE services SET current_revision = $2, stable_revision = $3, replicas = $4, \
             stopped = $5, updated_at_ms = $6 WHERE name = $1",
        )
        .bind(&s.name)
        .bind(s.current_revision)
        .bind(s.stable_revision)
        .bind(i64::from(s.replicas))
        .bind(i64::from(s.stopped))
        .bind(s.updated_at_ms)
        .execute(&self.pool)
        .await
        .map_err(write_err(
            "updating a service",
            "service",
            &s.name,
            "a revision of its own",
        ))?;
        if done.rows_affected() == 0 {
            return Err(not_found("service", &s.name));
        }
        Ok(())
    }

    /// Revision `number` of `service`, if any.
    pub async fn revision(
        &self,
        service: &str,
        number: i64,
    ) -> Result<Option<RevisionRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {REVISION_COLS} FROM revisions WHERE service = $1 AND number = $2"
        ))
        .bind(service)
        .bind(number)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading a revision"))?
        .map(|r| revision_from_row(&r))
        .transpose()
    }

    /// Every revision of `service`, newest (highest number) first; empty for an unknown
    /// service.
    pub async fn list_revisions(&self, service: &str) -> Result<Vec<RevisionRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {REVISION_COLS} FROM revisions WHERE service = $1 ORDER BY number DESC"
        ))
        .bind(service)
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing revisions"))?
        .iter()
        .map(revision_from_row)
        .collect()
    }

    /// Stores a new deployment. Fails with [`StoreError::AlreadyExists`] if the id is taken
    /// and [`StoreError::MissingReference`] if the service has no revision `to_revision` (or
    /// `from_revision`).
    pub async fn insert_deployment(&self, d: &DeploymentRow) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO deployments ({DEPLOYMENT_COLS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&d.id)
        .bind(&d.service)
        .bind(d.from_revision)
        .bind(d.to_revision)
        .bind(&d.phase)
        .bind(&d.state_json)
        .bind(d.created_at_ms)
        .bind(d.updated_at_ms)
        .bind(d.finished_at_ms)
        .bind(&d.created_by)
        .execute(&self.pool)
        .await
        .map_err(write_err(
            "storing a deployment",
            "deployment",
            &d.id,
            DEPLOYMENT_REFS,
        ))?;
        Ok(())
    }

    /// Stores the deployment's phase, state, `updated_at_ms` and `finished_at_ms` (the other
    /// fields never change) if its stored `updated_at_ms` still equals
    /// `expected_updated_at_ms`. Returns false, storing nothing, when another writer updated
    /// it first: reread it and decide again. Fails with [`StoreError::NotFound`] for an
    /// unknown deployment.
    ///
    /// `d.updated_at_ms` must differ from `expected_updated_at_ms` (normally it is later),
    /// or a concurrent writer that stored the same time would go unnoticed.
    pub async fn update_deployment(
        &self,
        d: &DeploymentRow,
        expected_updated_at_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE deployments SET phase = $2, state_json = $3, updated_at_ms = $4, \
             finished_at_ms = $5 WHERE id = $1 AND updated_at_ms = $6",
        )
        .bind(&d.id)
        .bind(&d.phase)
        .bind(&d.state_json)
        .bind(d.updated_at_ms)
        .bind(d.finished_at_ms)
        .bind(expected_updated_at_ms)
        .execute(&self.pool)
        .await
        .map_err(db("updating a deployment"))?;
        if done.rows_affected() == 1 {
            return Ok(true);
        }
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM deployments WHERE id = $1")
            .bind(&d.id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("updating a deployment"))?;
        match exists {
            Some(_) => Ok(false),
            None => Err(not_found("deployment", &d.id)),
        }
    }

    /// The deployment with this id, if any.
    pub async fn deployment(&self, id: &str) -> Result<Option<DeploymentRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLS} FROM deployments WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading a deployment"))?
        .map(|r| deployment_from_row(&r))
        .transpose()
    }

    /// The service's newest unfinished deployment (`finished_at_ms` unset), if any.
    pub async fn active_deployment(
        &self,
        service: &str,
    ) -> Result<Option<DeploymentRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLS} FROM deployments \
             WHERE service = $1 AND finished_at_ms IS NULL \
             ORDER BY created_at_ms DESC, id DESC LIMIT 1"
        ))
        .bind(service)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading the active deployment"))?
        .map(|r| deployment_from_row(&r))
        .transpose()
    }

    /// At most `limit` deployments, of one service or of all, newest first (ties by id,
    /// descending).
    pub async fn list_deployments(
        &self,
        service: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeploymentRow>, StoreError> {
        let filter = if service.is_some() {
            "WHERE service = $2 "
        } else {
            ""
        };
        let sql = format!(
            "SELECT {DEPLOYMENT_COLS} FROM deployments {filter}\
             ORDER BY created_at_ms DESC, id DESC LIMIT $1"
        );
        let mut query = sqlx::query(&sql).bind(i64::from(limit));
        if let Some(service) = service {
            query = query.bind(service);
        }
        query
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing deployments"))?
            .iter()
            .map(deployment_from_row)
            .collect()
    }

    /// Appends an event to the deployment's history and returns its sequence number. Fails
    /// with [`StoreError::NotFound`] for an unknown deployment.
    ///
    /// Appends to one deployment are serialized (its row stays locked until commit), so a
    /// reader that has seen sequence number `n` never later finds an event of that
    /// deployment numbered below `n` — [`Store::deployment_events`] with `after_seq` misses
    /// nothing.
    pub async fn append_deployment_event(
        &self,
        deployment_id: &str,
        at_ms: i64,
        message: &str,
    ) -> Result<i64, StoreError> {
        const OP: &str = "storing a deployment event";
        let mut tx = self.begin_write(OP).await?;
        let lock = match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR NO KEY UPDATE",
        };
        let found: Option<String> =
            sqlx::query_scalar(&format!("SELECT id FROM deployments WHERE id = $1{lock}"))
                .bind(deployment_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db(OP))?;
        if found.is_none() {
            return Err(not_found("deployment", deployment_id));
        }
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO deployment_events (deployment_id, at_ms, message) \
             VALUES ($1, $2, $3) RETURNING seq",
        )
        .bind(deployment_id)
        .bind(at_ms)
        .bind(message)
        .fetch_one(&mut *tx)
        .await
        .map_err(db(OP))?;
        tx.commit().await.map_err(db(OP))?;
        Ok(seq)
    }

    /// The deployment's events with a sequence number above `after_seq` (0 for all), oldest
    /// first.
    pub async fn deployment_events(
        &self,
        deployment_id: &str,
        after_seq: i64,
    ) -> Result<Vec<DeploymentEventRow>, StoreError> {
        sqlx::query(
            "SELECT seq, deployment_id, at_ms, message FROM deployment_events \
             WHERE deployment_id = $1 AND seq > $2 ORDER BY seq",
        )
        .bind(deployment_id)
        .bind(after_seq)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading deployment events"))?
        .iter()
        .map(event_from_row)
        .collect()
    }

    /// Stores the allocation, replacing every field of a stored one with the same id except
    /// `created_at_ms`. Fails with [`StoreError::MissingReference`] if its service revision,
    /// deployment or host does not exist.
    pub async fn upsert_allocation(&self, a: &AllocationRow) -> Result<(), StoreError> {
        const OP: &str = "storing an allocation";
        upsert_allocation_query(a)
            .execute(&self.pool)
            .await
            .map_err(write_err(OP, "allocation", &a.id, ALLOCATION_REFS))?;
        Ok(())
    }

    /// [`Store::upsert_allocation`] for each allocation, in one transaction: all are stored
    /// or none. When an id occurs twice, the later row wins.
    pub async fn upsert_allocations(
        &self,
        allocations: &[AllocationRow],
    ) -> Result<(), StoreError> {
        const OP: &str = "storing allocations";
        if allocations.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write(OP).await?;
        for a in allocations {
            upsert_allocation_query(a)
                .execute(&mut *tx)
                .await
                .map_err(write_err(OP, "allocation", &a.id, ALLOCATION_REFS))?;
        }
        tx.commit().await.map_err(db(OP))
    }

    /// The allocation with this id, if any.
    pub async fn allocation(&self, id: &str) -> Result<Option<AllocationRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {ALLOCATION_COLS} FROM allocations WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading an allocation"))?
        .map(|r| allocation_from_row(&r))
        .transpose()
    }

    /// Every allocation of the service (all revisions), oldest first (ties by id).
    pub async fn allocations_for_service(
        &self,
        service: &str,
    ) -> Result<Vec<AllocationRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {ALLOCATION_COLS} FROM allocations WHERE service = $1 \
             ORDER BY created_at_ms, id"
        ))
        .bind(service)
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing a service's allocations"))?
        .iter()
        .map(allocation_from_row)
        .collect()
    }

    /// Every allocation placed on the host, oldest first (ties by id).
    pub async fn allocations_for_host(
        &self,
        host_id: &str,
    ) -> Result<Vec<AllocationRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {ALLOCATION_COLS} FROM allocations WHERE host_id = $1 \
             ORDER BY created_at_ms, id"
        ))
        .bind(host_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing a host's allocations"))?
        .iter()
        .map(allocation_from_row)
        .collect()
    }

    /// Deletes the allocations with these ids, in one transaction, and returns how many
    /// existed. Unknown ids are ignored.
    pub async fn delete_allocations(&self, ids: &[String]) -> Result<u64, StoreError> {
        const OP: &str = "deleting allocations";
        if ids.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_write(OP).await?;
        let mut deleted = 0;
        for chunk in ids.chunks(self.dialect.rows_per_statement(1)) {
            let params: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
            let sql = format!(
                "DELETE FROM allocations WHERE id IN ({})",
                params.join(", ")
            );
            let mut query = sqlx::query(&sql).persistent(false);
            for id in chunk {
                query = query.bind(id.as_str());
            }
            deleted += query
                .execute(&mut *tx)
                .await
                .map_err(db(OP))?
                .rows_affected();
        }
        tx.commit().await.map_err(db(OP))?;
        Ok(deleted)
    }

    /// Increments the host's desired-state version and returns the new value (1 the first
    /// time). One atomic upsert: concurrent callers, on any replica, each get a distinct
    /// version.
    pub async fn bump_desired_version(&self, host_id: &str) -> Result<u64, StoreError> {
        let version: i64 = sqlx::query_scalar(
            "INSERT INTO host_desired_versions (host_id, version) VALUES ($1, 1) \
             ON CONFLICT (host_id) DO UPDATE SET version = host_desired_versions.version + 1 \
             RETURNING version",
        )
        .bind(host_id)
        .fetch_one(&self.pool)
        .await
        .map_err(db("bumping a desired-state version"))?;
        to_version(version)
    }

    /// The host's desired-state version: 0 if it was never bumped.
    pub async fn desired_version(&self, host_id: &str) -> Result<u64, StoreError> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT version FROM host_desired_versions WHERE host_id = $1")
                .bind(host_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db("reading a desired-state version"))?;
        to_version(version.unwrap_or(0))
    }
}

fn to_version(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt {
        what: format!("desired-state version is {value}, below 0"),
    })
}

fn upsert_allocation_query(
    a: &AllocationRow,
) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
    sqlx::query(UPSERT_ALLOCATION)
        .bind(&a.id)
        .bind(&a.service)
        .bind(a.revision)
        .bind(a.deployment_id.as_deref())
        .bind(a.host_id.as_deref())
        .bind(i64::from(a.desired_run))
        .bind(&a.state)
        .bind(&a.health)
        .bind(&a.status_json)
        .bind(a.pending_reason.as_deref())
        .bind(a.created_at_ms)
        .bind(a.updated_at_ms)
}

const UPSERT_ALLOCATION: &str = "INSERT INTO allocations (id, service, revision, deployment_id, \
     host_id, desired_run, state, health, status_json, pending_reason, created_at_ms, \
     updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
     ON CONFLICT (id) DO UPDATE SET service = excluded.service, revision = excluded.revision, \
     deployment_id = excluded.deployment_id, host_id = excluded.host_id, \
     desired_run = excluded.desired_run, state = excluded.state, health = excluded.health, \
     status_json = excluded.status_json, pending_reason = excluded.pending_reason, \
     updated_at_ms = excluded.updated_at_ms";

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::super::HostRow;
    use super::super::test_support::*;
    use super::*;

    fn host(id: &str) -> HostRow {
        HostRow {
            id: id.to_owned(),
            hostname: format!("{id}.example"),
            region: "eu-west".to_owned(),
            labels: BTreeMap::new(),
            enrolled_at_ms: 1_000,
            last_seen_ms: None,
            inventory: vec![],
            interval_seconds: 10,
            cert_serial: "0a".to_owned(),
            cert_not_after_ms: 90_000,
            revoked_at_ms: None,
            join_token_id: "jt-1".to_owned(),
        }
    }

    async fn append(
        store: &Store,
        service: &str,
        hash: &str,
        now_ms: i64,
    ) -> Result<(RevisionRow, bool), StoreError> {
        let text = format!("name: {service}\nimage: busybox # {hash}\n");
        store
            .append_revision(service, &text, "yaml", hash, "{}", 3, "alice", now_ms)
            .await
    }

    fn deployment(id: &str, service: &str, to: i64, created: i64) -> DeploymentRow {
        DeploymentRow {
            id: id.to_owned(),
            service: service.to_owned(),
            from_revision: (to > 1).then_some(to - 1),
            to_revision: to,
            phase: "running".to_owned(),
            state_json: format!(r#"{{"step":0,"to":{to}}}"#),
            created_at_ms: created,
            updated_at_ms: created,
            finished_at_ms: None,
            created_by: "alice".to_owned(),
        }
    }

    fn allocation(id: &str, service: &str, revision: i64, host: Option<&str>) -> AllocationRow {
        AllocationRow {
            id: id.to_owned(),
            service: service.to_owned(),
            revision,
            deployment_id: None,
            host_id: host.map(str::to_owned),
            desired_run: true,
            state: "pending".to_owned(),
            health: "unknown".to_owned(),
            status_json: "{}".to_owned(),
            pending_reason: host
                .is_none()
                .then(|| "no host in region eu-west has 2 GiB of free memory".to_owned()),
            created_at_ms: 1_000,
            updated_at_ms: 1_000,
        }
    }

    fn ids(allocations: &[AllocationRow]) -> Vec<&str> {
        allocations.iter().map(|a| a.id.as_str()).collect()
    }

    store_test!(revisions_are_numbered_and_deduplicated_by_hash);
    async fn revisions_are_numbered_and_deduplicated_by_hash(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        assert_eq!(store.service("web").await?, None);
        assert_eq!(store.list_revisions("web").await?, []);

        let (r1, created) = append(&store, "web", "sha256:a", 1_000).await?;
        assert!(created);
        assert_eq!(r1.number, 1);
        assert_eq!(r1.service, "web");
        assert_eq!(r1.spec_text, "name: web\nimage: busybox # sha256:a\n");
        assert_eq!(r1.spec_format, "yaml");
        assert_eq!(r1.spec_hash, "sha256:a");
        assert_eq!(r1.secret_versions_json, "{}");
        assert_eq!((r1.created_at_ms, r1.created_by.as_str()), (1_000, "alice"));
        assert!(r1.id.starts_with("rev-") && r1.id.len() == 16, "{}", r1.id);
        assert_eq!(
            store.service("web").await?,
            Some(ServiceRow {
                name: "web".to_owned(),
                current_revision: None,
                stable_revision: None,
                replicas: 3,
                stopped: false,
                created_at_ms: 1_000,
                updated_at_ms: 1_000,
            })
        );

        // Same spec as the newest: the newest is returned, nothing is stored.
        let (again, created) = append(&store, "web", "sha256:a", 2_000).await?;
        assert!(!created);
        assert_eq!(again, r1);

        let (r2, created) = append(&store, "web", "sha256:b", 3_000).await?;
        assert!(created);
        assert_eq!(r2.number, 2);
        assert_ne!(r2.id, r1.id);
        // Back to the first spec: a change from the newest, so a new revision.
        let (r3, created) = append(&store, "web", "sha256:a", 4_000).await?;
        assert!(created);
        assert_eq!((r3.number, r3.created_at_ms), (3, 4_000));

        // The same spec resolved to other secret versions (a rotation) is a new revision;
        // the same versions again are not.
        let rotated = |at| {
            let text = r3.spec_text.clone();
            let store = store.clone();
            async move {
                store
                    .append_revision(
                        "web",
                        &text,
                        "yaml",
                        "sha256:a",
                        r#"{"crm/db":4}"#,
                        3,
                        "rot",
                        at,
                    )
                    .await
            }
        };
        let (r4, created) = rotated(4_500).await?;
        assert!(created);
        assert_eq!(
            (r4.number, r4.secret_versions_json.as_str()),
            (4, r#"{"crm/db":4}"#)
        );
        let (again, created) = rotated(4_600).await?;
        assert!(!created);
        assert_eq!(again, r4);

        // Numbers are per service; an existing service keeps its replicas.
        let toml = store
            .append_revision(
                "api",
                "name = \"api\"",
                "toml",
                "sha256:t",
                "{}",
                1,
                "bob",
                5_000,
            )
            .await?;
        assert_eq!((toml.0.number, toml.1), (1, true));
        assert_eq!(toml.0.spec_format, "toml");
        assert_eq!(store.service("web").await?.unwrap().replicas, 3);

        assert_eq!(store.list_revisions("web").await?, [r4, r3, r2.clone(), r1]);
        assert_eq!(store.revision("web", 2).await?, Some(r2));
        assert_eq!(store.revision("web", 5).await?, None);
        assert_eq!(store.revision("nope", 1).await?, None);
        let err = store
            .append_revision("web", "x", "json", "sha256:j", "{}", 1, "alice", 6_000)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Query { .. }), "{err}");
        assert_eq!(store.list_revisions("web").await?.len(), 4);

        let names: Vec<String> = store
            .list_services()
            .await?
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["api", "web"]);

        let updated = ServiceRow {
            name: "web".to_owned(),
            current_revision: Some(3),
            stable_revision: Some(2),
            replicas: 5,
            stopped: true,
            created_at_ms: 99,
            updated_at_ms: 7_000,
        };
        store.update_service(&updated).await?;
        assert_eq!(
            store.service("web").await?,
            Some(ServiceRow {
                created_at_ms: 1_000,
                ..updated.clone()
            })
        );
        let err = store
            .update_service(&ServiceRow {
                name: "gone".to_owned(),
                ..updated.clone()
            })
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::NotFound { kind: "service", id } if id == "gone"),
            "{err}"
        );
        let err = store
            .update_service(&ServiceRow {
                current_revision: Some(9),
                ..updated
            })
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::MissingReference { kind: "service", id, .. } if id == "web"),
            "{err}"
        );
        assert_eq!(
            store.service("web").await?.unwrap().current_revision,
            Some(3)
        );
        Ok(())
    }

    store_test!(concurrent_appends_get_distinct_numbers);
    async fn concurrent_appends_get_distinct_numbers(db: TestDb) -> anyhow::Result<()> {
        // Two independent pools, as two replicas would have; the service does not exist yet.
        let stores = [db.store(), db.reopen().await?];
        let mut tasks = Vec::new();
        for i in 0..10 {
            let store = stores[i % 2].clone();
            tasks.push(tokio::spawn(async move {
                append(&store, "web", &format!("sha256:{i}"), 1_000 + i as i64).await
            }));
        }
        let mut numbers = BTreeSet::new();
        let mut revision_ids = BTreeSet::new();
        for task in tasks {
            let (revision, created) = task.await??;
            assert!(created);
            numbers.insert(revision.number);
            revision_ids.insert(revision.id);
        }
        assert_eq!(numbers, (1..=10).collect());
        assert_eq!(revision_ids.len(), 10);
        let stored = stores[0].list_revisions("web").await?;
        let stored_numbers: Vec<i64> = stored.iter().map(|r| r.number).collect();
        assert_eq!(stored_numbers, (1..=10).rev().collect::<Vec<_>>());
        let hashes: BTreeSet<&str> = stored.iter().map(|r| r.spec_hash.as_str()).collect();
        assert_eq!(hashes.len(), 10, "every spec stored once");
        assert_eq!(stores[0].list_services().await?.len(), 1);
        stores[1].close().await;
        Ok(())
    }

    store_test!(concurrent_appends_of_one_spec_store_it_once);
    async fn concurrent_appends_of_one_spec_store_it_once(db: TestDb) -> anyhow::Result<()> {
        let stores = [db.store(), db.reopen().await?];
        let mut tasks = Vec::new();
        for i in 0..10 {
            let store = stores[i % 2].clone();
            tasks.push(tokio::spawn(async move {
                append(&store, "web", "sha256:same", 1_000 + i as i64).await
            }));
        }
        let mut created = 0;
        let mut revision_ids = BTreeSet::new();
        for task in tasks {
            let (revision, was_created) = task.await??;
            assert_eq!(revision.number, 1);
            created += usize::from(was_created);
            revision_ids.insert(revision.id);
        }
        assert_eq!(created, 1);
        assert_eq!(revision_ids.len(), 1, "everyone got the same revision");
        let stored = stores[0].list_revisions("web").await?;
        assert_eq!(stored.len(), 1);
        assert_eq!(Some(&stored[0].id), revision_ids.first());
        stores[1].close().await;
        Ok(())
    }

    store_test!(deployment_update_is_optimistic);
    async fn deployment_update_is_optimistic(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        append(&store, "web", "sha256:a", 1_000).await?;
        append(&store, "web", "sha256:b", 2_000).await?;
        let d = deployment("d-1", "web", 2, 3_000);
        store.insert_deployment(&d).await?;
        assert_eq!(store.deployment("d-1").await?, Some(d.clone()));
        assert_eq!(store.deployment("d-9").await?, None);
        let err = store.insert_deployment(&d).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::AlreadyExists { kind: "deployment", id } if id == "d-1"),
            "{err}"
        );
        let err = store
            .insert_deployment(&deployment("d-2", "web", 7, 3_000))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::MissingReference { kind: "deployment", id, .. } if id == "d-2"),
            "{err}"
        );
        assert_eq!(store.deployment("d-2").await?, None);

        let step1 = DeploymentRow {
            phase: "waiting_healthy".to_owned(),
            state_json: r#"{"step":1}"#.to_owned(),
            updated_at_ms: 4_000,
            // Fields other than phase, state and times never change.
            created_by: "mallory".to_owned(),
            to_revision: 1,
            ..d.clone()
        };
        assert!(store.update_deployment(&step1, 3_000).await?);
        let stored = store.deployment("d-1").await?.unwrap();
        assert_eq!(
            stored,
            DeploymentRow {
                created_by: "alice".to_owned(),
                to_revision: 2,
                ..step1.clone()
            }
        );

        // A writer that read the row before step1 loses.
        let stale = DeploymentRow {
            phase: "failed".to_owned(),
            updated_at_ms: 4_500,
            finished_at_ms: Some(4_500),
            ..d.clone()
        };
        assert!(!store.update_deployment(&stale, 3_000).await?);
        assert_eq!(store.deployment("d-1").await?, Some(stored.clone()));

        let done = DeploymentRow {
            phase: "succeeded".to_owned(),
            updated_at_ms: 5_000,
            finished_at_ms: Some(5_000),
            ..stored
        };
        assert!(store.update_deployment(&done, 4_000).await?);
        assert_eq!(store.deployment("d-1").await?, Some(done.clone()));

        let err = store
            .update_deployment(&deployment("d-9", "web", 1, 1), 1)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::NotFound { kind: "deployment", id } if id == "d-9"),
            "{err}"
        );

        // Racing writers with the same expectation: exactly one wins.
        let stores = [db.store(), db.reopen().await?];
        let mut tasks = Vec::new();
        for i in 0..10_i64 {
            let store = stores[(i % 2) as usize].clone();
            let next = DeploymentRow {
                phase: format!("writer-{i}"),
                updated_at_ms: 6_000 + i,
                ..done.clone()
            };
            tasks.push(tokio::spawn(async move {
                let won = store.update_deployment(&next, 5_000).await?;
                Ok::<_, StoreError>((won, next))
            }));
        }
        let mut winners = Vec::new();
        for task in tasks {
            let (won, row) = task.await??;
            if won {
                winners.push(row);
            }
        }
        assert_eq!(winners.len(), 1, "{winners:?}");
        assert_eq!(store.deployment("d-1").await?.as_ref(), winners.first());
        stores[1].close().await;
        Ok(())
    }

    store_test!(active_deployment_and_listing);
    async fn active_deployment_and_listing(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        for hash in ["a", "b", "c"] {
            append(&store, "web", hash, 1_000).await?;
        }
        append(&store, "api", "a", 1_000).await?;
        assert_eq!(store.active_deployment("web").await?, None);

        let mut d1 = deployment("d-1", "web", 1, 1_000);
        d1.finished_at_ms = Some(1_500);
        let d2 = deployment("d-2", "web", 2, 2_000);
        let d3 = deployment("d-3", "web", 3, 3_000);
        let other = deployment("d-4", "api", 1, 4_000);
        for d in [&d2, &d1, &other, &d3] {
            store.insert_deployment(d).await?;
        }
        assert_eq!(store.active_deployment("web").await?, Some(d3.clone()));
        assert_eq!(store.active_deployment("api").await?, Some(other.clone()));
        assert_eq!(store.active_deployment("none").await?, None);

        let finished = DeploymentRow {
            finished_at_ms: Some(3_500),
            updated_at_ms: 3_500,
            ..d3.clone()
        };
        assert!(store.update_deployment(&finished, 3_000).await?);
        assert_eq!(store.active_deployment("web").await?, Some(d2.clone()));
        let finished2 = DeploymentRow {
            finished_at_ms: Some(3_600),
            updated_at_ms: 3_600,
            ..d2.clone()
        };
        assert!(store.update_deployment(&finished2, 2_000).await?);
        assert_eq!(store.active_deployment("web").await?, None);

        let listed = store.list_deployments(Some("web"), 10).await?;
        assert_eq!(listed, [finished, finished2, d1]);
        let all: Vec<String> = store
            .list_deployments(None, 10)
            .await?
            .into_iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(all, ["d-4", "d-3", "d-2", "d-1"]);
        let two: Vec<String> = store
            .list_deployments(None, 2)
            .await?
            .into_iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(two, ["d-4", "d-3"]);
        assert_eq!(store.list_deployments(Some("web"), 0).await?, []);
        assert_eq!(store.list_deployments(Some("none"), 10).await?, []);
        Ok(())
    }

    store_test!(deployment_events_keep_order);
    async fn deployment_events_keep_order(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        append(&store, "web", "a", 1_000).await?;
        store
            .insert_deployment(&deployment("d-1", "web", 1, 1_000))
            .await?;
        store
            .insert_deployment(&deployment("d-2", "web", 1, 1_100))
            .await?;
        assert_eq!(store.deployment_events("d-1", 0).await?, []);

        let s1 = store
            .append_deployment_event("d-1", 1_000, "started")
            .await?;
        let other = store
            .append_deployment_event("d-2", 1_001, "started too")
            .await?;
        let s2 = store
            .append_deployment_event("d-1", 900, "clock went back")
            .await?;
        let s3 = store
            .append_deployment_event("d-1", 2_000, "allocation a-1 healthy ✓")
            .await?;
        assert!(
            s1 < other && other < s2 && s2 < s3,
            "{s1} {other} {s2} {s3}"
        );

        let events = store.deployment_events("d-1", 0).await?;
        assert_eq!(
            events,
            [
                DeploymentEventRow {
                    seq: s1,
                    deployment_id: "d-1".to_owned(),
                    at_ms: 1_000,
                    message: "started".to_owned(),
                },
                DeploymentEventRow {
                    seq: s2,
                    deployment_id: "d-1".to_owned(),
                    at_ms: 900,
                    message: "clock went back".to_owned(),
                },
                DeploymentEventRow {
                    seq: s3,
                    deployment_id: "d-1".to_owned(),
                    at_ms: 2_000,
                    message: "allocation a-1 healthy ✓".to_owned(),
                },
            ]
        );
        assert_eq!(store.deployment_events("d-1", s1).await?, events[1..]);
        assert_eq!(store.deployment_events("d-1", s2).await?, events[2..]);
        assert_eq!(store.deployment_events("d-1", s3).await?, []);
        let d2_events = store.deployment_events("d-2", 0).await?;
        assert_eq!(d2_events.len(), 1);
        assert_eq!(
            (d2_events[0].seq, d2_events[0].message.as_str()),
            (other, "started too")
        );

        let err = store
            .append_deployment_event("d-9", 1, "x")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::NotFound { kind: "deployment", id } if id == "d-9"),
            "{err}"
        );

        // Concurrent appends from two replicas: every event stored once, in seq order.
        let stores = [db.store(), db.reopen().await?];
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = stores[i % 2].clone();
            tasks.push(tokio::spawn(async move {
                let message = format!("event {i}");
                let seq = store
                    .append_deployment_event("d-2", 5_000, &message)
                    .await?;
                Ok::<_, StoreError>((seq, message))
            }));
        }
        let mut appended = BTreeMap::new();
        for task in tasks {
            let (seq, message) = task.await??;
            appended.insert(seq, message);
        }
        assert_eq!(appended.len(), 20, "distinct sequence numbers");
        let stored: Vec<(i64, String)> = store
            .deployment_events("d-2", other)
            .await?
            .into_iter()
            .map(|e| (e.seq, e.message))
            .collect();
        assert_eq!(stored, appended.into_iter().collect::<Vec<_>>());
        stores[1].close().await;
        Ok(())
    }

    store_test!(allocations_upsert_list_delete);
    async fn allocations_upsert_list_delete(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        store.insert_host(&host("h-1")).await?;
        store.insert_host(&host("h-2")).await?;
        append(&store, "web", "a", 1_000).await?;
        append(&store, "web", "b", 1_000).await?;
        append(&store, "api", "a", 1_000).await?;
        store
            .insert_deployment(&deployment("d-1", "web", 2, 1_000))
            .await?;

        let mut a1 = allocation("a-1", "web", 1, Some("h-1"));
        a1.desired_run = false;
        let mut a2 = allocation("a-2", "web", 2, Some("h-2"));
        a2.deployment_id = Some("d-1".to_owned());
        a2.created_at_ms = 500;
        let a3 = allocation("a-3", "web", 2, None);
        let a4 = allocation("a-4", "api", 1, Some("h-1"));
        store.upsert_allocation(&a1).await?;
        store
            .upsert_allocations(&[a2.clone(), a3.clone(), a4.clone()])
            .await?;
        store.upsert_allocations(&[]).await?;

        assert_eq!(store.allocation("a-1").await?, Some(a1.clone()));
        assert_eq!(store.allocation("a-3").await?, Some(a3.clone()));
        assert_eq!(store.allocation("a-9").await?, None);
        assert_eq!(
            store.allocations_for_service("web").await?,
            [a2.clone(), a1.clone(), a3.clone()]
        );
        assert_eq!(store.allocations_for_service("api").await?, [a4]);
        assert_eq!(
            ids(&store.allocations_for_host("h-1").await?),
            ["a-1", "a-4"]
        );
        assert_eq!(store.allocations_for_host("h-2").await?, [a2.clone()]);
        assert_eq!(store.allocations_for_host("h-9").await?, []);

        // An upsert replaces everything but the creation time; the agent's report is opaque.
        let placed = AllocationRow {
            host_id: Some("h-2".to_owned()),
            pending_reason: None,
            state: "running".to_owned(),
            health: "healthy".to_owned(),
            status_json: r#"{"container":"c0ffee","exit_code":null,"oom":false}"#.to_owned(),
            created_at_ms: 9_999,
            updated_at_ms: 2_000,
            ..a3.clone()
        };
        store.upsert_allocation(&placed).await?;
        let stored = store.allocation("a-3").await?.unwrap();
        assert_eq!(
            stored,
            AllocationRow {
                created_at_ms: 1_000,
                ..placed
            }
        );
        assert_eq!(
            ids(&store.allocations_for_host("h-2").await?),
            ["a-2", "a-3"]
        );

        // One bad row: nothing of the batch is stored.
        let moved = AllocationRow {
            state: "stopping".to_owned(),
            ..a1.clone()
        };
        let bad = allocation("a-5", "web", 1, Some("h-9"));
        let err = store
            .upsert_allocations(&[moved.clone(), bad])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::MissingReference { kind: "allocation", id, .. } if id == "a-5"),
            "{err}"
        );
        assert_eq!(store.allocation("a-1").await?, Some(a1.clone()));
        assert_eq!(store.allocation("a-5").await?, None);
        let err = store
            .upsert_allocation(&allocation("a-6", "web", 3, None))
            .await
            .unwrap_err();
        assert!(
            matches!(
                &err,
                StoreError::MissingReference {
                    kind: "allocation",
                    ..
                }
            ),
            "{err}"
        );
        // The same id twice in one batch: the later row wins.
        store
            .upsert_allocations(&[
                moved.clone(),
                AllocationRow {
                    state: "stopped".to_owned(),
                    ..moved.clone()
                },
            ])
            .await?;
        assert_eq!(store.allocation("a-1").await?.unwrap().state, "stopped");

        // A host that goes away leaves its allocations unplaced.
        sqlx::query("DELETE FROM hosts WHERE id = $1")
            .bind("h-1")
            .execute(store.pool())
            .await?;
        assert_eq!(store.allocation("a-4").await?.unwrap().host_id, None);

        let deleted = store
            .delete_allocations(&["a-1".to_owned(), "a-4".to_owned(), "a-9".to_owned()])
            .await?;
        assert_eq!(deleted, 2);
        assert_eq!(store.delete_allocations(&[]).await?, 0);
        assert_eq!(store.allocation("a-1").await?, None);
        assert_eq!(
            ids(&store.allocations_for_service("web").await?),
            ["a-2", "a-3"]
        );
        assert_eq!(store.allocations_for_service("api").await?, []);

        // More ids than one statement carries.
        let many: Vec<AllocationRow> = (0..1_200)
            .map(|i| allocation(&format!("m-{i:04}"), "api", 1, Some("h-2")))
            .collect();
        store.upsert_allocations(&many).await?;
        assert_eq!(store.allocations_for_service("api").await?.len(), 1_200);
        let many_ids: Vec<String> = many.into_iter().map(|a| a.id).collect();
        assert_eq!(store.delete_allocations(&many_ids).await?, 1_200);
        assert_eq!(
            ids(&store.allocations_for_host("h-2").await?),
            ["a-2", "a-3"]
        );
        Ok(())
    }

    store_test!(desired_version_increments_atomically);
    async fn desired_version_increments_atomically(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        assert_eq!(store.desired_version("h-1").await?, 0);
        assert_eq!(store.bump_desired_version("h-1").await?, 1);
        assert_eq!(store.bump_desired_version("h-1").await?, 2);
        assert_eq!(store.desired_version("h-1").await?, 2);

        let stores = [db.store(), db.reopen().await?];
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = stores[i % 2].clone();
            tasks.push(tokio::spawn(async move {
                store.bump_desired_version("h-2").await
            }));
        }
        let mut versions = Vec::new();
        for task in tasks {
            versions.push(task.await??);
        }
        versions.sort_unstable();
        assert_eq!(versions, (1..=20).collect::<Vec<u64>>());
        assert_eq!(store.desired_version("h-2").await?, 20);
        assert_eq!(store.desired_version("h-1").await?, 2, "per host");
        stores[1].close().await;
        Ok(())
    }

    store_test!(deploy_migration_applies_cleanly_on_reopen);
    async fn deploy_migration_applies_cleanly_on_reopen(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        let (r1, _) = append(&store, "web", "a", 1_000).await?;
        store
            .insert_deployment(&deployment("d-1", "web", 1, 1_000))
            .await?;
        let seq = store
            .append_deployment_event("d-1", 1_000, "started")
            .await?;
        store
            .upsert_allocation(&allocation("a-1", "web", 1, None))
            .await?;
        store.bump_desired_version("h-1").await?;

        let again = db.reopen().await?;
        let versions: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
                .fetch_all(again.pool())
                .await?;
        // The deploy schema (3) and the secret references of revisions (7), among the others.
        assert!(
            versions.starts_with(&[1, 2, 3]) && versions.contains(&7),
            "{versions:?}"
        );
        assert_eq!(again.revision("web", 1).await?, Some(r1));
        assert_eq!(
            again.deployment("d-1").await?,
            Some(deployment("d-1", "web", 1, 1_000))
        );
        assert_eq!(again.deployment_events("d-1", 0).await?[0].seq, seq);
        assert_eq!(
            again.allocation("a-1").await?,
            Some(allocation("a-1", "web", 1, None))
        );
        assert_eq!(again.desired_version("h-1").await?, 1);
        // Sequence numbers keep rising after a reopen.
        assert!(
            again
                .append_deployment_event("d-1", 2_000, "resumed")
                .await?
                > seq
        );
        again.close().await;
        Ok(())
    }
}
