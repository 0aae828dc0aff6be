//! `BackupService`: backup policies, backups, verification, restores and
//! jobs. Reads need `ReadBackups` (viewers), changes `ManageBackups`
//! (operators), restoring over a live source `RestoreInPlace` (admins);
//! every change is audited. The work is `backup::controller`'s; this
//! adapter authorizes and converts.

use crate::auth::{Action, Target};
use crate::backup::controller::{BackupError, decode};
use crate::backup::status::{PolicyFacts, PolicyStatus};
use crate::grpc::{begin, principal, store_status};
use crate::state::ControlPlane;
use crate::store::{BackupJobRow, BackupPolicyRow, BackupRow};
use argosy_proto::v1::{self as pb, backup_service_server};
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct BackupApi {
    pub cp: Arc<ControlPlane>,
}

/// Listed when the request sets no limit, and at most.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 10_000;

pub(crate) fn backup_status(error: BackupError) -> Status {
    match error {
        BackupError::Store(error) => store_status(error),
        BackupError::Invalid(_)
        | BackupError::Format(_)
        | BackupError::BadTarget(_)
        | BackupError::ConfirmRequired(_) => Status::invalid_argument(error.to_string()),
        BackupError::NoPolicy(_) | BackupError::NoBackup(_) | BackupError::NoJob(_) => {
            Status::not_found(error.to_string())
        }
        BackupError::NoHost { .. } | BackupError::Busy { .. } | BackupError::NotUsable { .. } => {
            Status::failed_precondition(error.to_string())
        }
        BackupError::Secrets(_) => Status::unavailable(error.to_string()),
        BackupError::StoredPolicy { .. } | BackupError::StoredMessage { .. } => {
            Status::internal(error.to_string())
        }
    }
}

fn limit(asked: u32) -> i64 {
    i64::from(if asked == 0 {
        DEFAULT_LIMIT
    } else {
        asked.min(MAX_LIMIT)
    })
}

fn unsigned(n: Option<i64>) -> u64 {
    n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

fn status_wire(
    facts: &PolicyFacts,
    status: &PolicyStatus,
    next: (Option<i64>, Option<i64>),
) -> pb::BackupPolicyStatus {
    let failure = facts.last_failure.clone().unwrap_or_default();
    let verification = facts.last_verification.clone();
    pb::BackupPolicyStatus {
        state: status.state.as_str().to_owned(),
        reason: status.reason.clone(),
        last_success_at_ms: facts.last_success_ms.unwrap_or(0),
        age_seconds: unsigned(status.age_ms) / 1000,
        last_failure_at_ms: failure.failed_at_ms,
        last_error: failure.error,
        last_verified_at_ms: verification.as_ref().map_or(0, |v| v.at_ms),
        last_verify: verification
            .as_ref()
            .map(|v| if v.passed { "ok" } else { "failed" }.to_owned())
            .unwrap_or_default(),
        measured_rto_ms: unsigned(facts.measured_rto_ms),
        next_run_at_ms: next.0.unwrap_or(0),
        next_verify_at_ms: next.1.unwrap_or(0),
    }
}

fn policy_wire(
    row: BackupPolicyRow,
    host_id: String,
    destinations: Vec<String>,
    status: Option<pb::BackupPolicyStatus>,
) -> pb::BackupPolicy {
    pb::BackupPolicy {
        name: row.name,
        spec: row.spec,
        format: row.format,
        source_kind: row.source_kind,
        host_id,
        schedule: row.schedule,
        verify_schedule: row.verify_schedule,
        rpo_seconds: unsigned(Some(row.rpo_seconds)),
        destinations,
        created_at_ms: row.created_at_ms,
        updated_at_ms: row.updated_at_ms,
        updated_by: row.updated_by,
        status,
    }
}

fn backup_wire(row: BackupRow) -> Result<pb::Backup, BackupError> {
    let manifest = row
        .manifest_pb
        .as_deref()
        .map(|text| decode::<pb::BackupManifest>(text, "manifest", &row.id))
        .transpose()?;
    let checks = row
        .checks_pb
        .as_deref()
        .map(|text| decode::<pb::JobResult>(text, "verification", &row.id))
        .transpose()?
        .unwrap_or_default();
    Ok(pb::Backup {
        id: row.id,
        policy: row.policy,
        host_id: row.host_id,
        state: row.state,
        trigger: row.trigger,
        started_at_ms: row.started_at_ms,
        finished_at_ms: row.finished_at_ms.unwrap_or(0),
        error: row.error.unwrap_or_default(),
        manifest,
        verify_state: row.verify_state,
        verified_at_ms: row.verified_at_ms.unwrap_or(0),
        verify_error: row.verify_error.unwrap_or_default(),
        restore_ms: unsigned(row.restore_ms),
        tables: checks.tables,
        created_by: row.created_by,
    })
}

fn job_wire(row: BackupJobRow) -> Result<pb::BackupJobInfo, BackupError> {
    let result = row
        .result_pb
        .as_deref()
        .map(|text| decode::<pb::JobResult>(text, "job result", &row.id))
        .transpose()?;
    Ok(pb::BackupJobInfo {
        progress: Some(pb::JobProgress {
            stage: row.progress_stage,
            bytes: unsigned(Some(row.progress_bytes)),
            total_bytes: unsigned(Some(row.progress_total)),
        }),
        id: row.id,
        kind: row.kind,
        policy: row.policy,
        backup_id: row.backup_id,
        host_id: row.host_id,
        state: row.state,
        trigger: row.trigger,
        created_at_ms: row.created_at_ms,
        finished_at_ms: row.finished_at_ms.unwrap_or(0),
        error: row.error.unwrap_or_default(),
        result,
        created_by: row.created_by,
    })
}

impl BackupApi {
    /// A policy with its status, host and destinations as they are now.
    async fn policy_view(&self, row: BackupPolicyRow) -> Result<pb::BackupPolicy, BackupError> {
        let backups = &self.cp.backups;
        let (facts, status) = backups.status(&row).await?;
        let next = backups.next_runs(&row);
        let (host_id, destinations) = backups.describe(&row).await;
        Ok(policy_wire(
            row,
            host_id,
            destinations,
            Some(status_wire(&facts, &status, next)),
        ))
    }
}

#[tonic::async_trait]
impl backup_service_server::BackupService for BackupApi {
    async fn apply_policy(
        &self,
        request: Request<pb::ApplyBackupPolicyRequest>,
    ) -> Result<Response<pb::BackupPolicy>, Status> {
        let name = crate::backup::controller::policy_name(
            &request.get_ref().spec,
            &request.get_ref().format,
        );
        let call = begin(
            &self.cp,
            &request,
            Action::ManageBackups,
            Target::Global,
            "backup.policy.apply",
            &name,
        )
        .await?;
        let body = request.into_inner();
        call.run(&self.cp, async |principal| {
            let backups = &self.cp.backups;
            let row = backups
                .apply_policy(
                    &body.spec,
                    &body.format,
                    &principal.actor(),
                    &self.cp.secrets,
                )
                .await
                .map_err(backup_status)?;
            self.policy_view(row).await.map_err(backup_status)
        })
        .await
    }

    async fn list_policies(
        &self,
        request: Request<pb::ListBackupPoliciesRequest>,
    ) -> Result<Response<pb::ListBackupPoliciesResponse>, Status> {
        principal(&self.cp, &request, Action::ReadBackups).await?;
        let rows = self.cp.backups.policies().await.map_err(backup_status)?;
        let mut policies = Vec::with_capacity(rows.len());
        for row in rows {
            policies.push(self.policy_view(row).await.map_err(backup_status)?);
        }
        Ok(Response::new(pb::ListBackupPoliciesResponse { policies }))
    }

    async fn get_policy(
        &self,
        request: Request<pb::GetBackupPolicyRequest>,
    ) -> Result<Response<pb::BackupPolicy>, Status> {
        principal(&self.cp, &request, Action::ReadBackups).await?;
        let row = self
            .cp
            .backups
            .policy(&request.get_ref().name)
            .await
            .map_err(backup_status)?;
        let view = self.policy_view(row).await.map_err(backup_status)?;
        Ok(Response::new(view))
    }

    async fn remove_policy(
        &self,
        request: Request<pb::RemoveBackupPolicyRequest>,
    ) -> Result<Response<pb::BackupPolicy>, Status> {
        let name = request.get_ref().name.clone();
        let call = begin(
            &self.cp,
            &request,
            Action::ManageBackups,
            Target::Global,
            "backup.policy.remove",
            &name,
        )
        .await?;
        call.run(&self.cp, async |_| {
            let row = self.cp.backups.remove_policy(&name).await;
            row.map(|row| policy_wire(row, String::new(), Vec::new(), None))
                .map_err(backup_status)
        })
        .await
    }

    async fn run_backup(
        &self,
        request: Request<pb::RunBackupRequest>,
    ) -> Result<Response<pb::BackupJobInfo>, Status> {
        let policy = request.get_ref().policy.clone();
        let call = begin(
            &self.cp,
            &request,
            Action::ManageBackups,
            Target::Global,
            "backup.run",
            &policy,
        )
        .await?;
        call.run(&self.cp, async |principal| {
            let backups = &self.cp.backups;
            backups
                .run(&policy, "manual", &principal.actor(), &self.cp.secrets)
                .await
                .and_then(job_wire)
                .map_err(backup_status)
        })
        .await
    }

    async fn list_backups(
        &self,
        request: Request<pb::ListBackupsRequest>,
    ) -> Result<Response<pb::ListBackupsResponse>, Status> {
        principal(&self.cp, &request, Action::ReadBackups).await?;
        let body = request.get_ref();
        let policy = Some(body.policy.trim()).filter(|p| !p.is_empty());
        let rows = self
            .cp
            .backups
            .backups(policy, limit(body.limit))
            .await
            .map_err(backup_status)?;
        let backups = rows
            .into_iter()
            .map(backup_wire)
            .collect::<Result<_, _>>()
            .map_err(backup_status)?;
        Ok(Response::new(pb::ListBackupsResponse { backups }))
    }

    async fn get_backup(
        &self,
        request: Request<pb::GetBackupRequest>,
    ) -> Result<Response<pb::Backup>, Status> {
        principal(&self.cp, &request, Action::ReadBackups).await?;
        let row = self
            .cp
            .backups
            .backup(&request.get_ref().id)
            .await
            .map_err(backup_status)?;
        Ok(Response::new(backup_wire(row).map_err(backup_status)?))
    }

    async fn verify_backup(
        &self,
        request: Request<pb::VerifyBackupRequest>,
    ) -> Result<Response<pb::BackupJobInfo>, Status> {
        let id = request.get_ref().id.clone();
        let call = begin(
            &self.cp,
            &request,
            Action::ManageBackups,
            Target::Global,
            "backup.verify",
            &id,
        )
        .await?;
        let key = request.get_ref().key_secret.clone();
        call.run(&self.cp, async |principal| {
            let backups = &self.cp.backups;
            backups
                .verify(
                    &id,
                    "manual",
                    &principal.actor(),
                    Some(&key),
                    &self.cp.secrets,
                )
                .await
                .and_then(job_wire)
                .map_err(backup_status)
        })
        .await
    }

    async fn restore_backup(
        &self,
        request: Request<pb::RestoreBackupRequest>,
    ) -> Result<Response<pb::BackupJobInfo>, Status> {
        let body = request.get_ref().clone();
        let in_place = matches!(
            body.target.as_ref().and_then(|t| t.kind.as_ref()),
            Some(pb::restore_target::Kind::InPlace(true))
        );
        let action = if in_place {
            Action::RestoreInPlace
        } else {
            Action::ManageBackups
        };
        let event = if in_place {
            "backup.restore.in-place"
        } else {
            "backup.restore"
        };
        let call = begin(&self.cp, &request, action, Target::Global, event, &body.id).await?;
        call.run(&self.cp, async |principal| {
            let backups = &self.cp.backups;
            backups
                .restore(
                    &body.id,
                    body.target.clone().unwrap_or_default(),
                    body.confirm,
                    Some(&body.key_secret),
                    &principal.actor(),
                    &self.cp.secrets,
                )
                .await
                .and_then(job_wire)
                .map_err(backup_status)
        })
        .await
    }

    async fn get_job(
        &self,
        request: Request<pb::GetBackupJobRequest>,
    ) -> Result<Response<pb::BackupJobInfo>, Status> {
        principal(&self.cp, &request, Action::ReadBackups).await?;
        let row = self
            .cp
            .backups
            .job(&request.get_ref().id)
            .await
            .map_err(backup_status)?;
        Ok(Response::new(job_wire(row).map_err(backup_status)?))
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListBackupJobsRequest>,
    ) -> Result<Response<pb::ListBackupJobsResponse>, Status> {
        principal(&self.cp, &request, Action::ReadBackups).await?;
        let body = request.get_ref();
        let policy = Some(body.policy.trim()).filter(|p| !p.is_empty());
        let rows = self
            .cp
            .backups
            .jobs(policy, limit(body.limit))
            .await
            .map_err(backup_status)?;
        let jobs = rows
            .into_iter()
            .map(job_wire)
            .collect::<Result<_, _>>()
            .map_err(backup_status)?;
        Ok(Response::new(pb::ListBackupJobsResponse { jobs }))
    }
}
