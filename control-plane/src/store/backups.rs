//! Backups: policies, the backups taken under them (with their manifests and newest
//! verification) and the jobs sent to agents (backup, verify, restore, prune) with
//! their progress and results.
//!
//! Manifests, tasks and results are protobuf messages that `crate::backup` encodes as
//! base64 text; the store keeps them opaque. Rows are written whole (`save_*` is an
//! upsert), because one decision in `crate::backup` owns each row's next state.

use sqlx::any::AnyRow;

use super::{Store, StoreError, col, db};

/// A stored backup policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupPolicyRow {
    pub name: String,
    pub spec: String,
    pub format: String,
    pub source_kind: String,
    pub schedule: String,
    /// Empty when the policy has no verification schedule.
    pub verify_schedule: String,
    pub rpo_seconds: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub updated_by: String,
    /// The newest scheduled backup time already acted on.
    pub last_scheduled_ms: Option<i64>,
    /// The newest scheduled verification time already acted on.
    pub last_verify_scheduled_ms: Option<i64>,
}

/// A backup, taken or attempted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRow {
    pub id: String,
    pub policy: String,
    pub host_id: String,
    /// running, ok, failed or pruned.
    pub state: String,
    /// schedule, manual or pre-deploy.
    pub trigger: String,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub error: Option<String>,
    pub manifest_pb: Option<String>,
    pub sha256: Option<String>,
    pub artifact_bytes: Option<i64>,
    /// not-verified, running, ok or failed.
    pub verify_state: String,
    pub verified_at_ms: Option<i64>,
    pub verify_error: Option<String>,
    pub restore_ms: Option<i64>,
    pub checks_pb: Option<String>,
    pub created_by: String,
}

/// A job sent (or to be sent) to an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupJobRow {
    pub id: String,
    /// backup, verify, restore or prune.
    pub kind: String,
    pub policy: String,
    pub backup_id: String,
    pub host_id: String,
    /// pending, running, ok or failed.
    pub state: String,
    pub trigger: String,
    /// The `BackupJob` message, exactly as (re)sent to the agent.
    pub task_pb: String,
    pub progress_stage: String,
    pub progress_bytes: i64,
    pub progress_total: i64,
    pub result_pb: Option<String>,
    pub error: Option<String>,
    /// The deployment waiting for this job (`pre_deploy_backup`).
    pub deployment_id: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub created_by: String,
}

impl BackupJobRow {
    /// True once the job has a result.
    pub fn is_finished(&self) -> bool {
        self.state == "ok" || self.state == "failed"
    }
}

const POLICY_COLS: &str = "name, spec, format, source_kind, schedule, verify_schedule, \
    rpo_seconds, created_at_ms, updated_at_ms, updated_by, last_scheduled_ms, \
    last_verify_scheduled_ms";
const BACKUP_COLS: &str = "id, policy, host_id, state, trigger_kind, started_at_ms, \
    finished_at_ms, error, manifest_pb, sha256, artifact_bytes, verify_state, verified_at_ms, \
    verify_error, restore_ms, checks_pb, created_by";
const JOB_COLS: &str = "id, kind, policy, backup_id, host_id, state, trigger_kind, task_pb, \
    progress_stage, progress_bytes, progress_total, result_pb, error, deployment_id, \
    created_at_ms, updated_at_ms, finished_at_ms, created_by";

fn policy_from_row(row: &AnyRow) -> Result<BackupPolicyRow, StoreError> {
    Ok(BackupPolicyRow {
        name: col(row, "name")?,
        spec: col(row, "spec")?,
        format: col(row, "format")?,
        source_kind: col(row, "source_kind")?,
        schedule: col(row, "schedule")?,
        verify_schedule: col(row, "verify_schedule")?,
        rpo_seconds: col(row, "rpo_seconds")?,
        created_at_ms: col(row, "created_at_ms")?,
        updated_at_ms: col(row, "updated_at_ms")?,
        updated_by: col(row, "updated_by")?,
        last_scheduled_ms: col(row, "last_scheduled_ms")?,
        last_verify_scheduled_ms: col(row, "last_verify_scheduled_ms")?,
    })
}

fn backup_from_row(row: &AnyRow) -> Result<BackupRow, StoreError> {
    Ok(BackupRow {
        id: col(row, "id")?,
        policy: col(row, "policy")?,
        host_id: col(row, "host_id")?,
        state: col(row, "state")?,
        trigger: col(row, "trigger_kind")?,
        started_at_ms: col(row, "started_at_ms")?,
        finished_at_ms: col(row, "finished_at_ms")?,
        error: col(row, "error")?,
        manifest_pb: col(row, "manifest_pb")?,
        sha256: col(row, "sha256")?,
        artifact_bytes: col(row, "artifact_bytes")?,
        verify_state: col(row, "verify_state")?,
        verified_at_ms: col(row, "verified_at_ms")?,
        verify_error: col(row, "verify_error")?,
        restore_ms: col(row, "restore_ms")?,
        checks_pb: col(row, "checks_pb")?,
        created_by: col(row, "created_by")?,
    })
}

fn job_from_row(row: &AnyRow) -> Result<BackupJobRow, StoreError> {
    Ok(BackupJobRow {
        id: col(row, "id")?,
        kind: col(row, "kind")?,
        policy: col(row, "policy")?,
        backup_id: col(row, "backup_id")?,
        host_id: col(row, "host_id")?,
        state: col(row, "state")?,
        trigger: col(row, "trigger_kind")?,
        task_pb: col(row, "task_pb")?,
        progress_stage: col(row, "progress_stage")?,
        progress_bytes: col(row, "progress_bytes")?,
        progress_total: col(row, "progress_total")?,
        result_pb: col(row, "result_pb")?,
        error: col(row, "error")?,
        deployment_id: col(row, "deployment_id")?,
        created_at_ms: col(row, "created_at_ms")?,
        updated_at_ms: col(row, "updated_at_ms")?,
        finished_at_ms: col(row, "finished_at_ms")?,
        created_by: col(row, "created_by")?,
    })
}

/// When the newest backup of `policy` whose verification succeeded was taken
/// (`None`: no verified backup).
pub async fn last_verified_backup_ms(
    store: &Store,
    policy: &str,
) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query(
        "SELECT MAX(started_at_ms) AS at FROM backups \
         WHERE policy = $1 AND state = 'ok' AND verify_state = 'ok'",
    )
    .bind(policy)
    .fetch_one(&store.pool)
    .await
    .map_err(db("reading the newest verified backup"))?;
    col(&row, "at")
}

impl Store {
    /// Unfinished deployments waiting for their pre-deploy backup: (id,
    /// state JSON).
    pub async fn deployments_backing_up(&self) -> Result<Vec<(String, String)>, StoreError> {
        sqlx::query(
            "SELECT id, state_json FROM deployments \
             WHERE finished_at_ms IS NULL AND phase LIKE 'backing up%' ORDER BY created_at_ms",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing deployments waiting for a backup"))?
        .iter()
        .map(|row| Ok((col(row, "id")?, col(row, "state_json")?)))
        .collect()
    }

    /// The jobs run for a deployment's pre-deploy backup, oldest first.
    pub async fn backup_jobs_for_deployment(
        &self,
        deployment_id: &str,
    ) -> Result<Vec<BackupJobRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {JOB_COLS} FROM backup_jobs WHERE deployment_id = $1 \
             ORDER BY created_at_ms, id"
        ))
        .bind(deployment_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing a deployment's backup jobs"))?
        .iter()
        .map(job_from_row)
        .collect()
    }

    // ---- policies ----

    /// Creates or replaces a policy (keeping its creation time and schedule marks
    /// when it exists).
    pub async fn save_backup_policy(&self, policy: &BackupPolicyRow) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO backup_policies ({POLICY_COLS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, format = excluded.format, \
             source_kind = excluded.source_kind, schedule = excluded.schedule, \
             verify_schedule = excluded.verify_schedule, rpo_seconds = excluded.rpo_seconds, \
             updated_at_ms = excluded.updated_at_ms, updated_by = excluded.updated_by, \
             last_scheduled_ms = excluded.last_scheduled_ms, \
             last_verify_scheduled_ms = excluded.last_verify_scheduled_ms"
        ))
        .bind(&policy.name)
        .bind(&policy.spec)
        .bind(&policy.format)
        .bind(&policy.source_kind)
        .bind(&policy.schedule)
        .bind(&policy.verify_schedule)
        .bind(policy.rpo_seconds)
        .bind(policy.created_at_ms)
        .bind(policy.updated_at_ms)
        .bind(&policy.updated_by)
        .bind(policy.last_scheduled_ms)
        .bind(policy.last_verify_scheduled_ms)
        .execute(&self.pool)
        .await
        .map_err(db("saving a backup policy"))?;
        Ok(())
    }

    /// Every policy, by name.
    pub async fn backup_policies(&self) -> Result<Vec<BackupPolicyRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {POLICY_COLS} FROM backup_policies ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing backup policies"))?
        .iter()
        .map(policy_from_row)
        .collect()
    }

    pub async fn backup_policy(&self, name: &str) -> Result<Option<BackupPolicyRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {POLICY_COLS} FROM backup_policies WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading a backup policy"))?
        .as_ref()
        .map(policy_from_row)
        .transpose()
    }

    /// Removes a policy; its backups and jobs stay.
    pub async fn remove_backup_policy(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM backup_policies WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(db("removing a backup policy"))?;
        Ok(done.rows_affected() > 0)
    }

    // ---- backups ----

    /// Inserts or replaces a backup row.
    pub async fn save_backup(&self, backup: &BackupRow) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO backups ({BACKUP_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
             $10, $11, $12, $13, $14, $15, $16, $17) \
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, \
             finished_at_ms = excluded.finished_at_ms, error = excluded.error, \
             manifest_pb = excluded.manifest_pb, sha256 = excluded.sha256, \
             artifact_bytes = excluded.artifact_bytes, verify_state = excluded.verify_state, \
             verified_at_ms = excluded.verified_at_ms, verify_error = excluded.verify_error, \
             restore_ms = excluded.restore_ms, checks_pb = excluded.checks_pb"
        ))
        .bind(&backup.id)
        .bind(&backup.policy)
        .bind(&backup.host_id)
        .bind(&backup.state)
        .bind(&backup.trigger)
        .bind(backup.started_at_ms)
        .bind(backup.finished_at_ms)
        .bind(&backup.error)
        .bind(&backup.manifest_pb)
        .bind(&backup.sha256)
        .bind(backup.artifact_bytes)
        .bind(&backup.verify_state)
        .bind(backup.verified_at_ms)
        .bind(&backup.verify_error)
        .bind(backup.restore_ms)
        .bind(&backup.checks_pb)
        .bind(&backup.created_by)
        .execute(&self.pool)
        .await
        .map_err(db("saving a backup"))?;
        Ok(())
    }

    pub async fn backup(&self, id: &str) -> Result<Option<BackupRow>, StoreError> {
        sqlx::query(&format!("SELECT {BACKUP_COLS} FROM backups WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a backup"))?
            .as_ref()
            .map(backup_from_row)
            .transpose()
    }

    /// Backups, newest first: of one policy (or all), at most `limit`.
    pub async fn backups(
        &self,
        policy: Option<&str>,
        limit: i64,
    ) -> Result<Vec<BackupRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {BACKUP_COLS} FROM backups WHERE ($1 = '' OR policy = $1) \
             ORDER BY started_at_ms DESC, id DESC LIMIT $2"
        ))
        .bind(policy.unwrap_or_default().to_owned())
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing backups"))?
        .iter()
        .map(backup_from_row)
        .collect()
    }

    // ---- jobs ----

    /// Inserts or replaces a job row.
    pub async fn save_backup_job(&self, job: &BackupJobRow) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO backup_jobs ({JOB_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
             $10, $11, $12, $13, $14, $15, $16, $17, $18) \
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, host_id = excluded.host_id, \
             progress_stage = excluded.progress_stage, \
             progress_bytes = excluded.progress_bytes, \
             progress_total = excluded.progress_total, result_pb = excluded.result_pb, \
             error = excluded.error, updated_at_ms = excluded.updated_at_ms, \
             finished_at_ms = excluded.finished_at_ms"
        ))
        .bind(&job.id)
        .bind(&job.kind)
        .bind(&job.policy)
        .bind(&job.backup_id)
        .bind(&job.host_id)
        .bind(&job.state)
        .bind(&job.trigger)
        .bind(&job.task_pb)
        .bind(&job.progress_stage)
        .bind(job.progress_bytes)
        .bind(job.progress_total)
        .bind(&job.result_pb)
        .bind(&job.error)
        .bind(&job.deployment_id)
        .bind(job.created_at_ms)
        .bind(job.updated_at_ms)
        .bind(job.finished_at_ms)
        .bind(&job.created_by)
        .execute(&self.pool)
        .await
        .map_err(db("saving a backup job"))?;
        Ok(())
    }

    pub async fn backup_job(&self, id: &str) -> Result<Option<BackupJobRow>, StoreError> {
        sqlx::query(&format!("SELECT {JOB_COLS} FROM backup_jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a backup job"))?
            .as_ref()
            .map(job_from_row)
            .transpose()
    }

    /// Jobs, newest first: of one policy (or all), at most `limit`.
    pub async fn backup_jobs(
        &self,
        policy: Option<&str>,
        limit: i64,
    ) -> Result<Vec<BackupJobRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {JOB_COLS} FROM backup_jobs WHERE ($1 = '' OR policy = $1) \
             ORDER BY created_at_ms DESC, id DESC LIMIT $2"
        ))
        .bind(policy.unwrap_or_default().to_owned())
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing backup jobs"))?
        .iter()
        .map(job_from_row)
        .collect()
    }

    /// Jobs without a result, oldest first: of one host, or of every host.
    pub async fn unfinished_backup_jobs(
        &self,
        host_id: Option<&str>,
    ) -> Result<Vec<BackupJobRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {JOB_COLS} FROM backup_jobs \
             WHERE state IN ('pending', 'running') AND ($1 = '' OR host_id = $1) \
             ORDER BY created_at_ms, id"
        ))
        .bind(host_id.unwrap_or_default().to_owned())
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing unfinished backup jobs"))?
        .iter()
        .map(job_from_row)
        .collect()
    }
}
