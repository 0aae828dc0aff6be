//! The backup controller (I/O): stores policies, turns "run", "verify",
//! "restore", the schedules and pre-deploy backups into jobs for the host
//! that holds the data, sends them over that host's session (again after
//! every reconnect; the agent runs each at most once), and records what
//! comes back — manifests, verifications, measured restore times — then
//! lets retention prune.
//!
//! The decisions are pure and live beside it: `spec` (validation),
//! `schedule` (what is due), `retention` (what to delete), `status` (how a
//! policy stands against its RPO) and `wire` (jobs as the agent sees them).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use argosy_proto::v1 as pb;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use prost::Message;

use super::model::{BackupPolicySpec, RunsOn};
use super::{retention, schedule, spec, status, wire};
use crate::clock::Clock;
use crate::deploy::model::SecretRef;
use crate::deploy::rollout::{Deployment, Phase};
use crate::deploy::secret_catalog::{CatalogError, SecretCatalog};
use crate::deploy::secret_refs::VersionedSecret;
use crate::deploy::spec::Format;
use crate::fleet::Fleet;
use crate::secrets::random_id;
use crate::store::{BackupJobRow, BackupPolicyRow, BackupRow, Store, StoreError};

/// How long a job may wait for its host to connect before it fails.
pub const PENDING_DEADLINE_MS: i64 = 10 * 60 * 1000;
/// How long a job may run without a result before it fails.
pub const RUNNING_DEADLINE_MS: i64 = 6 * 60 * 60 * 1000;
/// How long a job may go without any word from the agent (progress or
/// result) while its host is connected.
pub const SILENCE_DEADLINE_MS: i64 = 30 * 60 * 1000;
/// Backups retention considers per policy.
const RETENTION_WINDOW: i64 = 10_000;

/// Why a backup operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the backup policy is invalid:\n{0}")]
    Invalid(String),
    #[error("spec format `{0}` is not supported; use yaml or toml")]
    Format(String),
    #[error("no backup policy named `{0}`; list them with `argosy backup policy list`")]
    NoPolicy(String),
    #[error("no backup with id `{0}`; list them with `argosy backup list`")]
    NoBackup(String),
    #[error("no backup job with id `{0}`; list them with `argosy backup jobs`")]
    NoJob(String),
    #[error("stored backup policy `{name}` no longer parses ({why}); apply it again")]
    StoredPolicy { name: String, why: String },
    #[error("stored {what} of `{id}` is damaged ({why})")]
    StoredMessage {
        what: &'static str,
        id: String,
        why: String,
    },
    #[error("policy `{policy}` has no host to run on: {why}")]
    NoHost { policy: String, why: String },
    #[error(
        "a {kind} job of policy `{policy}` is already running ({job}); follow it with `argosy backup job {job} --wait`"
    )]
    Busy {
        policy: String,
        kind: String,
        job: String,
    },
    #[error("backup `{id}` cannot be {action}: it is {state}{why}")]
    NotUsable {
        id: String,
        action: &'static str,
        state: String,
        why: String,
    },
    #[error(
        "restoring in place overwrites the live data of policy `{0}`; pass --confirm if that is what you want"
    )]
    ConfirmRequired(String),
    #[error("restore target is invalid: {0}")]
    BadTarget(String),
    #[error("cannot look up the secrets the policy references: {0}; try again")]
    Secrets(String),
}

/// How a pre-deploy backup ended, for the deployment waiting on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreDeployOutcome {
    pub deployment_id: String,
    /// `Ok` with what was verified, `Err` with why it failed.
    pub result: Result<String, String>,
}

/// The stored form of a protobuf message.
pub fn encode<M: Message>(message: &M) -> String {
    BASE64.encode(message.encode_to_vec())
}

/// A stored protobuf message.
pub fn decode<M: Message + Default>(
    text: &str,
    what: &'static str,
    id: &str,
) -> Result<M, BackupError> {
    let damaged = |why: String| BackupError::StoredMessage {
        what,
        id: id.to_owned(),
        why,
    };
    let bytes = BASE64.decode(text).map_err(|e| damaged(e.to_string()))?;
    M::decode(bytes.as_slice()).map_err(|e| damaged(e.to_string()))
}

fn spec_format(format: &str) -> Result<Format, BackupError> {
    match format {
        "" | "yaml" | "yml" => Ok(Format::Yaml),
        "toml" => Ok(Format::Toml),
        other => Err(BackupError::Format(other.to_owned())),
    }
}

fn parse_policy(row: &BackupPolicyRow) -> Result<BackupPolicySpec, BackupError> {
    spec::parse(&row.spec, spec_format(&row.format)?).map_err(|e| BackupError::StoredPolicy {
        name: row.name.clone(),
        why: e.to_string(),
    })
}

/// The name a policy spec gives itself, for the audit log (empty when it
/// does not parse: the refusal says why).
pub fn policy_name(text: &str, format: &str) -> String {
    spec_format(format)
        .ok()
        .and_then(|format| spec::parse(text, format).ok())
        .map(|policy| policy.name)
        .unwrap_or_default()
}

fn kind_of(job: &pb::BackupJob) -> &'static str {
    match job.task {
        Some(pb::backup_job::Task::Backup(_)) => "backup",
        Some(pb::backup_job::Task::Verify(_)) => "verify",
        Some(pb::backup_job::Task::Restore(_)) => "restore",
        Some(pb::backup_job::Task::Prune(_)) => "prune",
        None => "unknown",
    }
}

fn stored_u64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// "1.2 s", "340 ms".
fn millis_text(ms: u64) -> String {
    if ms >= 1000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{ms} ms")
    }
}

/// Backups as retention and status see them.
fn candidates(rows: &[BackupRow]) -> Vec<retention::Candidate> {
    rows.iter().map(retention::Candidate::from).collect()
}

/// A PostgreSQL database name Argosy will create: lowercase letters,
/// digits and `_`, not starting with a digit, at most 63 bytes.
fn check_database_name(name: &str) -> Result<(), BackupError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(BackupError::BadTarget(format!(
            "`{name}` is not a database name Argosy creates: use lowercase letters, digits and _ \
             (at most 63, not starting with a digit)"
        )))
    }
}

/// Where a policy runs now: the host, and for a service the container of
/// its running allocation.
struct Placement {
    host_id: String,
    container: Option<String>,
}

/// What a verification or restore needs besides the backup.
struct RestoreInputs {
    manifest: pb::BackupManifest,
    source: Option<pb::BackupSource>,
    destinations: Vec<pb::BackupDestination>,
    key: Option<pb::SecretRef>,
    host_id: String,
    sql_assertion: String,
}

/// The backup controller.
pub struct Backups {
    store: Store,
    fleet: Arc<Fleet>,
    clock: Arc<dyn Clock>,
    /// Serializes job state changes (results, new jobs, the tick).
    lock: tokio::sync::Mutex<()>,
}

impl Backups {
    pub fn new(store: Store, fleet: Arc<Fleet>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            fleet,
            clock,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    // ---- policies ----

    /// Validates and stores a policy (creating or replacing it). The
    /// secrets it names must exist.
    pub async fn apply_policy(
        &self,
        text: &str,
        format: &str,
        actor: &str,
        secrets: &dyn SecretCatalog,
    ) -> Result<BackupPolicyRow, BackupError> {
        let format = spec_format(format)?;
        let policy = spec::parse(text, format).map_err(|e| BackupError::Invalid(e.to_string()))?;
        self.latest_versions(&policy, secrets).await?;
        let now = self.now();
        let existing = self.store.backup_policy(&policy.name).await?;
        let row = BackupPolicyRow {
            name: policy.name.clone(),
            spec: text.to_owned(),
            format: match format {
                Format::Yaml => "yaml".to_owned(),
                Format::Toml => "toml".to_owned(),
            },
            source_kind: policy.source.kind().to_owned(),
            schedule: policy.schedule.clone(),
            verify_schedule: policy.verify.schedule.clone().unwrap_or_default(),
            rpo_seconds: i64::try_from(policy.rpo.as_secs()).unwrap_or(i64::MAX),
            created_at_ms: existing.as_ref().map_or(now, |e| e.created_at_ms),
            updated_at_ms: now,
            updated_by: actor.to_owned(),
            // A changed schedule counts from now: no burst of "missed" runs.
            last_scheduled_ms: Some(now),
            last_verify_scheduled_ms: Some(now),
        };
        self.store.save_backup_policy(&row).await?;
        Ok(row)
    }

    pub async fn remove_policy(&self, name: &str) -> Result<BackupPolicyRow, BackupError> {
        let row = self.policy(name).await?;
        self.store.remove_backup_policy(name).await?;
        Ok(row)
    }

    pub async fn policy(&self, name: &str) -> Result<BackupPolicyRow, BackupError> {
        self.store
            .backup_policy(name)
            .await?
            .ok_or_else(|| BackupError::NoPolicy(name.to_owned()))
    }

    pub async fn policies(&self) -> Result<Vec<BackupPolicyRow>, BackupError> {
        Ok(self.store.backup_policies().await?)
    }

    /// What is known of `row`'s backups, and how it stands against its
    /// RPO now.
    pub async fn status(
        &self,
        row: &BackupPolicyRow,
    ) -> Result<(status::PolicyFacts, status::PolicyStatus), BackupError> {
        let backups = self.store.backups(Some(&row.name), 200).await?;
        let mut facts = status::PolicyFacts::from_backups(&candidates(&backups));
        facts.created_at_ms = Some(row.created_at_ms);
        let rpo = std::time::Duration::from_secs(u64::try_from(row.rpo_seconds).unwrap_or(0));
        let status = status::evaluate(&facts, rpo, self.now());
        Ok((facts, status))
    }

    /// When the policy's next backup and verification are scheduled.
    pub fn next_runs(&self, row: &BackupPolicyRow) -> (Option<i64>, Option<i64>) {
        let now = self.now();
        let next_verify = if row.verify_schedule.is_empty() {
            None
        } else {
            schedule::next_after(&row.verify_schedule, now)
        };
        (schedule::next_after(&row.schedule, now), next_verify)
    }

    /// The host a policy runs on now (empty if none) and its destinations.
    pub async fn describe(&self, row: &BackupPolicyRow) -> (String, Vec<String>) {
        let Ok(policy) = parse_policy(row) else {
            return (String::new(), Vec::new());
        };
        let host = self
            .placement(&policy)
            .await
            .map(|p| p.host_id)
            .unwrap_or_default();
        let destinations = policy.destinations.iter().map(|d| d.name.clone()).collect();
        (host, destinations)
    }

    // ---- backups and jobs ----

    pub async fn backup(&self, id: &str) -> Result<BackupRow, BackupError> {
        self.store
            .backup(id)
            .await?
            .ok_or_else(|| BackupError::NoBackup(id.to_owned()))
    }

    pub async fn backups(
        &self,
        policy: Option<&str>,
        limit: i64,
    ) -> Result<Vec<BackupRow>, BackupError> {
        Ok(self.store.backups(policy, limit).await?)
    }

    pub async fn job(&self, id: &str) -> Result<BackupJobRow, BackupError> {
        self.store
            .backup_job(id)
            .await?
            .ok_or_else(|| BackupError::NoJob(id.to_owned()))
    }

    pub async fn jobs(
        &self,
        policy: Option<&str>,
        limit: i64,
    ) -> Result<Vec<BackupJobRow>, BackupError> {
        Ok(self.store.backup_jobs(policy, limit).await?)
    }

    async fn latest_versions(
        &self,
        policy: &BackupPolicySpec,
        secrets: &dyn SecretCatalog,
    ) -> Result<BTreeMap<String, u32>, BackupError> {
        let names = wire::secret_names(policy);
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        secrets.latest_versions(&names).await.map_err(|e| match e {
            CatalogError::Missing(names) => BackupError::Invalid(format!(
                "the policy references secrets that do not exist: {}; create them with \
                 `argosy secret set NAME --from-file FILE`",
                names.join(", ")
            )),
            CatalogError::Unavailable(why) => BackupError::Secrets(why),
        })
    }

    /// Where `policy` runs now.
    async fn placement(&self, policy: &BackupPolicySpec) -> Result<Placement, BackupError> {
        match &policy.runs_on {
            RunsOn::Host(name) => {
                let hosts = self.fleet.list("", &Default::default());
                let host = hosts
                    .iter()
                    .find(|h| h.id == *name)
                    .or_else(|| hosts.iter().find(|h| h.hostname == *name))
                    .ok_or_else(|| BackupError::NoHost {
                        policy: policy.name.clone(),
                        why: format!("no enrolled host has the id or hostname `{name}`"),
                    })?;
                Ok(Placement {
                    host_id: host.id.clone(),
                    container: None,
                })
            }
            RunsOn::Service(service) => {
                let allocations = self.store.allocations_for_service(service).await?;
                allocations
                    .iter()
                    .filter(|a| a.desired_run && a.state == "running")
                    .find_map(|a| {
                        let host_id = a.host_id.clone()?;
                        let status: serde_json::Value =
                            serde_json::from_str(&a.status_json).ok()?;
                        let container = status.get("container_id")?.as_str()?.to_owned();
                        (!container.is_empty()).then_some(Placement {
                            host_id,
                            container: Some(container),
                        })
                    })
                    .ok_or_else(|| BackupError::NoHost {
                        policy: policy.name.clone(),
                        why: format!(
                            "service `{service}` has no running allocation; deploy it, or see \
                             `argosy services show {service}`"
                        ),
                    })
            }
        }
    }

    /// The unfinished job of one of `kinds` for `policy`, if any.
    async fn running_job(
        &self,
        policy: &str,
        kinds: &[&str],
    ) -> Result<Option<BackupJobRow>, BackupError> {
        Ok(self
            .store
            .unfinished_backup_jobs(None)
            .await?
            .into_iter()
            .find(|j| j.policy == policy && kinds.contains(&j.kind.as_str())))
    }

    fn send(&self, row: &BackupJobRow, job: pb::BackupJob) -> bool {
        let message = pb::ControlMessage {
            body: Some(pb::control_message::Body::BackupJob(job)),
        };
        let sent = self.fleet.send(&row.host_id, message);
        if sent {
            tracing::info!(
                job = row.id,
                kind = row.kind,
                policy = row.policy,
                host_id = row.host_id,
                "backup job sent"
            );
        }
        sent
    }

    /// Stores a new job and sends it if its host is connected.
    #[allow(clippy::too_many_arguments)]
    async fn dispatch(
        &self,
        job: pb::BackupJob,
        policy: &str,
        backup_id: &str,
        host_id: &str,
        trigger: &str,
        actor: &str,
        deployment_id: Option<&str>,
    ) -> Result<BackupJobRow, BackupError> {
        let now = self.now();
        let mut row = BackupJobRow {
            id: job.id.clone(),
            kind: kind_of(&job).to_owned(),
            policy: policy.to_owned(),
            backup_id: backup_id.to_owned(),
            host_id: host_id.to_owned(),
            state: "pending".to_owned(),
            trigger: trigger.to_owned(),
            task_pb: encode(&job),
            progress_stage: String::new(),
            progress_bytes: 0,
            progress_total: 0,
            result_pb: None,
            error: None,
            deployment_id: deployment_id.map(str::to_owned),
            created_at_ms: now,
            updated_at_ms: now,
            finished_at_ms: None,
            created_by: actor.to_owned(),
        };
        // Stored before it is sent: a job the agent reports on is known.
        self.store.save_backup_job(&row).await?;
        if self.send(&row, job) {
            row.state = "running".to_owned();
            self.store.save_backup_job(&row).await?;
        }
        Ok(row)
    }

    /// Takes a backup of `policy` now.
    pub async fn run(
        &self,
        policy: &str,
        trigger: &str,
        actor: &str,
        secrets: &dyn SecretCatalog,
    ) -> Result<BackupJobRow, BackupError> {
        let _guard = self.lock.lock().await;
        self.run_locked(policy, trigger, actor, None, secrets).await
    }

    async fn run_locked(
        &self,
        policy_name: &str,
        trigger: &str,
        actor: &str,
        deployment_id: Option<&str>,
        secrets: &dyn SecretCatalog,
    ) -> Result<BackupJobRow, BackupError> {
        let row = self.policy(policy_name).await?;
        let policy = parse_policy(&row)?;
        if let Some(job) = self.running_job(policy_name, &["backup"]).await? {
            return Err(BackupError::Busy {
                policy: policy_name.to_owned(),
                kind: job.kind,
                job: job.id,
            });
        }
        let now = self.now();
        let backup_id = format!("b-{}", random_id(12));
        let mut backup = BackupRow {
            id: backup_id.clone(),
            policy: policy_name.to_owned(),
            host_id: String::new(),
            state: "running".to_owned(),
            trigger: trigger.to_owned(),
            started_at_ms: now,
            finished_at_ms: None,
            error: None,
            manifest_pb: None,
            sha256: None,
            artifact_bytes: None,
            verify_state: "not-verified".to_owned(),
            verified_at_ms: None,
            verify_error: None,
            restore_ms: None,
            checks_pb: None,
            created_by: actor.to_owned(),
        };
        let prepared = async {
            let latest = self.latest_versions(&policy, secrets).await?;
            let placement = self.placement(&policy).await?;
            Ok::<_, BackupError>((latest, placement))
        }
        .await;
        let (latest, placement) = match prepared {
            Ok(ready) => ready,
            Err(error) => {
                // Recorded as a failed backup, so status and alerts see it.
                backup.state = "failed".to_owned();
                backup.finished_at_ms = Some(now);
                backup.error = Some(error.to_string());
                self.store.save_backup(&backup).await?;
                return Err(error);
            }
        };
        backup.host_id = placement.host_id.clone();
        self.store.save_backup(&backup).await?;
        let task = wire::backup_task(&policy, &backup_id, placement.container.as_deref(), &latest);
        let job = pb::BackupJob {
            id: format!("j-{}", random_id(12)),
            task: Some(pb::backup_job::Task::Backup(task)),
        };
        self.dispatch(
            job,
            policy_name,
            &backup_id,
            &placement.host_id,
            trigger,
            actor,
            deployment_id,
        )
        .await
    }

    /// The job that took `backup` (its source, destinations and key
    /// version as they were).
    async fn original_task(&self, backup: &BackupRow) -> Result<pb::BackupTask, BackupError> {
        let jobs = self
            .store
            .backup_jobs(Some(&backup.policy), 100_000)
            .await?;
        let job = jobs
            .iter()
            .find(|j| j.backup_id == backup.id && j.kind == "backup")
            .ok_or_else(|| BackupError::NotUsable {
                id: backup.id.clone(),
                action: "restored",
                state: backup.state.clone(),
                why: ": the job that took it is not recorded".to_owned(),
            })?;
        let message: pb::BackupJob = decode(&job.task_pb, "job task", &job.id)?;
        match message.task {
            Some(pb::backup_job::Task::Backup(task)) => Ok(task),
            _ => Err(BackupError::StoredMessage {
                what: "job task",
                id: job.id.clone(),
                why: "not a backup task".to_owned(),
            }),
        }
    }

    /// What a verification or restore of `backup` needs: its manifest, the
    /// source and destinations as the policy has them now (fresh
    /// credentials, the service's current container) — or as the backup
    /// was taken if the policy is gone —, the key version it was sealed
    /// with (or `key_secret`), and the host.
    async fn restore_inputs(
        &self,
        backup: &BackupRow,
        action: &'static str,
        key_secret: Option<&str>,
        secrets: &dyn SecretCatalog,
    ) -> Result<RestoreInputs, BackupError> {
        if backup.state != "ok" {
            return Err(BackupError::NotUsable {
                id: backup.id.clone(),
                action,
                state: backup.state.clone(),
                why: match backup.state.as_str() {
                    "failed" => ": a failed backup has no complete artifact".to_owned(),
                    "pruned" => ": retention deleted its artifacts".to_owned(),
                    _ => ": wait until it has finished".to_owned(),
                },
            });
        }
        let manifest: pb::BackupManifest = decode(
            backup.manifest_pb.as_deref().unwrap_or_default(),
            "manifest",
            &backup.id,
        )?;
        let original = self.original_task(backup).await?;
        let mut inputs = RestoreInputs {
            manifest,
            source: original.source.clone(),
            destinations: original.destinations.clone(),
            key: original.encryption_key.clone(),
            host_id: backup.host_id.clone(),
            sql_assertion: String::new(),
        };
        if let Some(row) = self.store.backup_policy(&backup.policy).await? {
            let policy = parse_policy(&row)?;
            let latest = self.latest_versions(&policy, secrets).await?;
            let placement = self.placement(&policy).await?;
            inputs.source = Some(wire::source(
                &policy,
                placement.container.as_deref(),
                &latest,
            ));
            // Destinations removed from the policy since still hold the artifact.
            let mut destinations = wire::destinations(&policy, &latest);
            let names: BTreeSet<String> = destinations.iter().map(|d| d.name.clone()).collect();
            destinations.extend(
                original
                    .destinations
                    .iter()
                    .filter(|d| !names.contains(&d.name))
                    .cloned(),
            );
            inputs.destinations = destinations;
            inputs.host_id = placement.host_id;
            inputs.sql_assertion = policy.verify.sql_assertion.clone().unwrap_or_default();
        }
        if let Some(text) = key_secret.map(str::trim).filter(|k| !k.is_empty()) {
            let reference: SecretRef = crate::deploy::units::parse_secret_ref(text)
                .map_err(|why| BackupError::BadTarget(format!("key secret `{text}`: {why}")))?;
            let names = BTreeSet::from([reference.name.clone()]);
            let latest = secrets.latest_versions(&names).await.map_err(|e| match e {
                CatalogError::Missing(names) => {
                    BackupError::BadTarget(format!("no secret named {}", names.join(", ")))
                }
                CatalogError::Unavailable(why) => BackupError::Secrets(why),
            })?;
            inputs.key = Some(wire::resolve(&reference, &latest));
        }
        Ok(inputs)
    }

    /// Verifies `backup_id` by restoring it into a scratch target.
    pub async fn verify(
        &self,
        backup_id: &str,
        trigger: &str,
        actor: &str,
        key_secret: Option<&str>,
        secrets: &dyn SecretCatalog,
    ) -> Result<BackupJobRow, BackupError> {
        let _guard = self.lock.lock().await;
        self.verify_locked(backup_id, trigger, actor, None, key_secret, secrets)
            .await
    }

    async fn verify_locked(
        &self,
        backup_id: &str,
        trigger: &str,
        actor: &str,
        deployment_id: Option<&str>,
        key_secret: Option<&str>,
        secrets: &dyn SecretCatalog,
    ) -> Result<BackupJobRow, BackupError> {
        let mut backup = self.backup(backup_id).await?;
        let inputs = self
            .restore_inputs(&backup, "verified", key_secret, secrets)
            .await?;
        if let Some(job) = self
            .running_job(&backup.policy, &["verify", "restore"])
            .await?
        {
            return Err(BackupError::Busy {
                policy: backup.policy.clone(),
                kind: job.kind,
                job: job.id,
            });
        }
        let task = pb::VerifyTask {
            backup_id: backup.id.clone(),
            policy: backup.policy.clone(),
            source: inputs.source,
            destinations: inputs.destinations,
            manifest: Some(inputs.manifest),
            encryption_key: inputs.key,
            sql_assertion: inputs.sql_assertion,
        };
        let job = pb::BackupJob {
            id: format!("j-{}", random_id(12)),
            task: Some(pb::backup_job::Task::Verify(task)),
        };
        backup.verify_state = "running".to_owned();
        self.store.save_backup(&backup).await?;
        self.dispatch(
            job,
            &backup.policy,
            &backup.id,
            &inputs.host_id,
            trigger,
            actor,
            deployment_id,
        )
        .await
    }

    /// Restores `backup_id` into `target` (in place only with `confirm`).
    pub async fn restore(
        &self,
        backup_id: &str,
        target: pb::RestoreTarget,
        confirm: bool,
        key_secret: Option<&str>,
        actor: &str,
        secrets: &dyn SecretCatalog,
    ) -> Result<BackupJobRow, BackupError> {
        let _guard = self.lock.lock().await;
        let backup = self.backup(backup_id).await?;
        let source_kind = self.source_kind(&backup).await?;
        match &target.kind {
            Some(pb::restore_target::Kind::InPlace(true)) if !confirm => {
                return Err(BackupError::ConfirmRequired(backup.policy.clone()));
            }
            Some(pb::restore_target::Kind::InPlace(true)) => {}
            Some(pb::restore_target::Kind::Database(name)) => {
                check_database_name(name)?;
                if source_kind != "postgres" {
                    return Err(BackupError::BadTarget(format!(
                        "database: targets are for postgres backups, and this is a {source_kind} \
                         backup; use dir:/path"
                    )));
                }
            }
            Some(pb::restore_target::Kind::Directory(path)) => {
                if !path.starts_with('/') || path == "/" {
                    return Err(BackupError::BadTarget(format!(
                        "`{path}` is not an absolute directory other than /"
                    )));
                }
                if source_kind == "postgres" || source_kind == "command" {
                    return Err(BackupError::BadTarget(format!(
                        "dir: targets are for volume and path backups, and this is a \
                         {source_kind} backup; use {}",
                        if source_kind == "postgres" {
                            "database:NAME"
                        } else {
                            "--in-place --confirm (the policy's restore command)"
                        }
                    )));
                }
            }
            _ => {
                return Err(BackupError::BadTarget(
                    "say where to restore: database:NAME, dir:/path, or --in-place --confirm"
                        .to_owned(),
                ));
            }
        }
        let inputs = self
            .restore_inputs(&backup, "restored", key_secret, secrets)
            .await?;
        if let Some(job) = self
            .running_job(&backup.policy, &["verify", "restore"])
            .await?
        {
            return Err(BackupError::Busy {
                policy: backup.policy.clone(),
                kind: job.kind,
                job: job.id,
            });
        }
        let task = pb::RestoreTask {
            backup_id: backup.id.clone(),
            policy: backup.policy.clone(),
            source: inputs.source,
            destinations: inputs.destinations,
            manifest: Some(inputs.manifest),
            encryption_key: inputs.key,
            target: Some(target),
        };
        let job = pb::BackupJob {
            id: format!("j-{}", random_id(12)),
            task: Some(pb::backup_job::Task::Restore(task)),
        };
        self.dispatch(
            job,
            &backup.policy,
            &backup.id,
            &inputs.host_id,
            "manual",
            actor,
            None,
        )
        .await
    }

    /// The source kind a backup was taken from.
    async fn source_kind(&self, backup: &BackupRow) -> Result<String, BackupError> {
        if let Some(manifest) = &backup.manifest_pb {
            let manifest: pb::BackupManifest = decode(manifest, "manifest", &backup.id)?;
            if !manifest.source_kind.is_empty() {
                return Ok(manifest.source_kind);
            }
        }
        Ok(self
            .store
            .backup_policy(&backup.policy)
            .await?
            .map(|p| p.source_kind)
            .unwrap_or_default())
    }

    // ---- what agents say ----

    /// Sends every unfinished job of `host_id` (again) after it connected.
    pub async fn host_connected(&self, host_id: &str) -> Result<(), BackupError> {
        let _guard = self.lock.lock().await;
        for mut row in self.store.unfinished_backup_jobs(Some(host_id)).await? {
            let job: pb::BackupJob = decode(&row.task_pb, "job task", &row.id)?;
            if self.send(&row, job) && row.state == "pending" {
                row.state = "running".to_owned();
                row.updated_at_ms = self.now();
                self.store.save_backup_job(&row).await?;
            }
        }
        Ok(())
    }

    /// The secret versions `host_id`'s unfinished jobs may ask for, each
    /// with the job that uses it.
    pub async fn host_secrets(
        &self,
        host_id: &str,
    ) -> Result<Vec<(String, VersionedSecret)>, BackupError> {
        let mut used = Vec::new();
        for row in self.store.unfinished_backup_jobs(Some(host_id)).await? {
            let job: pb::BackupJob = decode(&row.task_pb, "job task", &row.id)?;
            for reference in wire::job_secrets(&job) {
                used.push((
                    format!("backup job {}", row.id),
                    VersionedSecret::new(reference.name, reference.version),
                ));
            }
        }
        Ok(used)
    }

    /// Takes in a job update from `host_id`. Returns what a waiting
    /// deployment needs to hear, if anything.
    pub async fn job_update(
        &self,
        host_id: &str,
        update: pb::JobUpdate,
        secrets: &dyn SecretCatalog,
    ) -> Result<Option<PreDeployOutcome>, BackupError> {
        let _guard = self.lock.lock().await;
        let Some(mut row) = self.store.backup_job(&update.job_id).await? else {
            tracing::warn!(
                host_id,
                job = update.job_id,
                "update for an unknown backup job"
            );
            return Ok(None);
        };
        if row.host_id != host_id {
            tracing::warn!(
                host_id,
                job = row.id,
                owner = row.host_id,
                "update for another host's backup job refused"
            );
            return Ok(None);
        }
        if row.is_finished() {
            // A result resent after a reconnect: already recorded.
            return Ok(None);
        }
        let now = self.now();
        row.updated_at_ms = now;
        match update.body {
            Some(pb::job_update::Body::Progress(progress)) => {
                row.state = "running".to_owned();
                row.progress_stage = progress.stage;
                row.progress_bytes = stored_u64(progress.bytes);
                row.progress_total = stored_u64(progress.total_bytes);
                self.store.save_backup_job(&row).await?;
                Ok(None)
            }
            Some(pb::job_update::Body::Result(result)) => {
                self.finish(row, result, now, secrets).await
            }
            None => Ok(None),
        }
    }

    async fn finish(
        &self,
        mut row: BackupJobRow,
        result: pb::JobResult,
        now: i64,
        secrets: &dyn SecretCatalog,
    ) -> Result<Option<PreDeployOutcome>, BackupError> {
        row.state = if result.ok { "ok" } else { "failed" }.to_owned();
        row.error = (!result.ok).then(|| {
            if result.error.is_empty() {
                "the agent reported a failure without a reason".to_owned()
            } else {
                result.error.clone()
            }
        });
        row.result_pb = Some(encode(&result));
        row.finished_at_ms = Some(now);
        row.updated_at_ms = now;
        self.store.save_backup_job(&row).await?;
        tracing::info!(
            job = row.id,
            kind = row.kind,
            policy = row.policy,
            state = row.state,
            error = row.error.as_deref().unwrap_or(""),
            "backup job finished"
        );
        match row.kind.as_str() {
            "backup" => self.backup_finished(&row, &result, now, secrets).await,
            "verify" => self.verify_finished(&row, &result, now).await,
            "prune" => {
                for id in &result.pruned {
                    if let Some(mut backup) = self.store.backup(id).await? {
                        backup.state = "pruned".to_owned();
                        self.store.save_backup(&backup).await?;
                    }
                }
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    async fn backup_finished(
        &self,
        row: &BackupJobRow,
        result: &pb::JobResult,
        now: i64,
        secrets: &dyn SecretCatalog,
    ) -> Result<Option<PreDeployOutcome>, BackupError> {
        let mut backup = self.backup(&row.backup_id).await?;
        backup.finished_at_ms = Some(now);
        if let Some(manifest) = &result.manifest {
            backup.manifest_pb = Some(encode(manifest));
            backup.sha256 = (!manifest.sha256.is_empty()).then(|| manifest.sha256.clone());
            backup.artifact_bytes = Some(stored_u64(manifest.artifact_bytes));
        }
        if result.ok {
            backup.state = "ok".to_owned();
            backup.error = None;
        } else {
            backup.state = "failed".to_owned();
            backup.error = row.error.clone();
        }
        self.store.save_backup(&backup).await?;
        if result.ok {
            self.prune(&backup.policy).await?;
        }
        let Some(deployment_id) = &row.deployment_id else {
            return Ok(None);
        };
        if !result.ok {
            return Ok(Some(PreDeployOutcome {
                deployment_id: deployment_id.clone(),
                result: Err(format!(
                    "backup {} failed: {}",
                    backup.id,
                    backup.error.clone().unwrap_or_default()
                )),
            }));
        }
        // A pre-deploy backup is proven by restoring it before the rollout.
        match self
            .verify_locked(
                &backup.id,
                "pre-deploy",
                &row.created_by,
                Some(deployment_id),
                None,
                secrets,
            )
            .await
        {
            Ok(_) => Ok(None),
            Err(error) => Ok(Some(PreDeployOutcome {
                deployment_id: deployment_id.clone(),
                result: Err(format!(
                    "backup {} could not be verified: {error}",
                    backup.id
                )),
            })),
        }
    }

    async fn verify_finished(
        &self,
        row: &BackupJobRow,
        result: &pb::JobResult,
        now: i64,
    ) -> Result<Option<PreDeployOutcome>, BackupError> {
        let mut backup = self.backup(&row.backup_id).await?;
        backup.verify_state = if result.ok { "ok" } else { "failed" }.to_owned();
        backup.verified_at_ms = Some(now);
        backup.verify_error = row.error.clone();
        backup.restore_ms = (result.restore_ms > 0).then(|| stored_u64(result.restore_ms));
        backup.checks_pb = Some(encode(&pb::JobResult {
            tables: result.tables.clone(),
            restore_ms: result.restore_ms,
            ..Default::default()
        }));
        self.store.save_backup(&backup).await?;
        if result.ok {
            // A newly verified backup changes what retention protects.
            self.prune(&backup.policy).await?;
        }
        Ok(row
            .deployment_id
            .as_ref()
            .map(|deployment_id| PreDeployOutcome {
                deployment_id: deployment_id.clone(),
                result: if result.ok {
                    Ok(format!(
                        "backup {} restored in {}, {} tables match",
                        backup.id,
                        millis_text(result.restore_ms),
                        result.tables.len()
                    ))
                } else {
                    Err(format!(
                        "verification of backup {} failed: {}",
                        backup.id,
                        row.error.clone().unwrap_or_default()
                    ))
                },
            }))
    }

    /// Sends a prune job for what retention no longer keeps of `policy`.
    async fn prune(&self, policy_name: &str) -> Result<(), BackupError> {
        let Some(row) = self.store.backup_policy(policy_name).await? else {
            return Ok(());
        };
        let policy = parse_policy(&row)?;
        if self.running_job(policy_name, &["prune"]).await?.is_some() {
            return Ok(());
        }
        let backups = self
            .store
            .backups(Some(policy_name), RETENTION_WINDOW)
            .await?;
        let selection = retention::select(&candidates(&backups), &policy.retention, self.now());
        let doomed: Vec<String> = selection
            .delete
            .into_iter()
            .filter(|id| {
                backups
                    .iter()
                    .any(|b| b.id == *id && (b.state == "ok" || b.state == "failed"))
            })
            .collect();
        // The newest good backup's job knows where artifacts go and how to
        // reach them; its host prunes.
        let Some(newest) = backups.iter().find(|b| b.state == "ok") else {
            return Ok(());
        };
        if doomed.is_empty() {
            return Ok(());
        }
        let destinations = self.original_task(newest).await?.destinations;
        let task = pb::PruneTask {
            policy: policy_name.to_owned(),
            destinations,
            backup_ids: doomed,
        };
        let job = pb::BackupJob {
            id: format!("j-{}", random_id(12)),
            task: Some(pb::backup_job::Task::Prune(task)),
        };
        self.dispatch(
            job,
            policy_name,
            "",
            &newest.host_id,
            "retention",
            "retention",
            None,
        )
        .await?;
        Ok(())
    }

    // ---- time ----

    /// Runs what the schedules say is due, starts pre-deploy backups, and
    /// fails jobs that have waited or run too long. Returns what waiting
    /// deployments need to hear.
    pub async fn tick(
        &self,
        secrets: &dyn SecretCatalog,
    ) -> Result<Vec<PreDeployOutcome>, BackupError> {
        let _guard = self.lock.lock().await;
        let now = self.now();
        for row in self.store.backup_policies().await? {
            self.run_schedules(row, now, secrets).await?;
        }
        let mut outcomes = self.pre_deploy_backups(secrets).await?;
        for row in self.store.unfinished_backup_jobs(None).await? {
            let connected = self.fleet.has_session(&row.host_id);
            let why = if row.state == "pending" && now - row.created_at_ms > PENDING_DEADLINE_MS {
                Some(format!(
                    "host {} did not connect within {} minutes of the job's creation",
                    row.host_id,
                    PENDING_DEADLINE_MS / 60_000
                ))
            } else if now - row.created_at_ms > RUNNING_DEADLINE_MS {
                Some(format!(
                    "no result within {} hours",
                    RUNNING_DEADLINE_MS / 3_600_000
                ))
            } else if connected
                && row.state == "running"
                && now - row.updated_at_ms > SILENCE_DEADLINE_MS
            {
                Some(format!(
                    "the agent on host {} sent nothing about it for {} minutes",
                    row.host_id,
                    SILENCE_DEADLINE_MS / 60_000
                ))
            } else {
                None
            };
            if let Some(why) = why {
                let result = pb::JobResult {
                    ok: false,
                    error: format!("the job was given up: {why}"),
                    ..Default::default()
                };
                outcomes.extend(self.finish(row, result, now, secrets).await?);
            }
        }
        Ok(outcomes)
    }

    /// Starts the backup and verification `row`'s schedules say are due.
    async fn run_schedules(
        &self,
        mut row: BackupPolicyRow,
        now: i64,
        secrets: &dyn SecretCatalog,
    ) -> Result<(), BackupError> {
        let due_backup =
            schedule::due(&row.schedule, row.last_scheduled_ms, row.created_at_ms, now);
        let due_verify = if row.verify_schedule.is_empty() {
            None
        } else {
            schedule::due(
                &row.verify_schedule,
                row.last_verify_scheduled_ms,
                row.created_at_ms,
                now,
            )
        };
        if due_backup.is_none() && due_verify.is_none() {
            return Ok(());
        }
        row.last_scheduled_ms = due_backup.or(row.last_scheduled_ms);
        row.last_verify_scheduled_ms = due_verify.or(row.last_verify_scheduled_ms);
        // The mark moves first: a run that cannot start is tried again at
        // the next scheduled time, not at every tick.
        self.store.save_backup_policy(&row).await?;
        if due_backup.is_some()
            && let Err(error) = self
                .run_locked(&row.name, "schedule", "schedule", None, secrets)
                .await
        {
            tracing::warn!(policy = row.name, %error, "scheduled backup not started");
        }
        if due_verify.is_some() {
            let newest_ok = self
                .store
                .backups(Some(&row.name), 50)
                .await?
                .into_iter()
                .find(|b| b.state == "ok");
            if let Some(backup) = newest_ok
                && let Err(error) = self
                    .verify_locked(&backup.id, "schedule", "schedule", None, None, secrets)
                    .await
            {
                tracing::warn!(policy = row.name, %error, "scheduled verification not started");
            }
        }
        Ok(())
    }

    /// Starts the backup of every deployment waiting for one that has no
    /// job yet, and repeats the outcome for those whose jobs ended while
    /// they still wait (the control plane stopped in between).
    async fn pre_deploy_backups(
        &self,
        secrets: &dyn SecretCatalog,
    ) -> Result<Vec<PreDeployOutcome>, BackupError> {
        let mut outcomes = Vec::new();
        for (deployment_id, state_json) in self.store.deployments_backing_up().await? {
            let Ok(machine) = serde_json::from_str::<Deployment>(&state_json) else {
                continue;
            };
            let Phase::BackingUp { policy } = &machine.phase else {
                continue;
            };
            let jobs = self
                .store
                .backup_jobs_for_deployment(&deployment_id)
                .await?;
            let outcome = |result| PreDeployOutcome {
                deployment_id: deployment_id.clone(),
                result,
            };
            match jobs.last() {
                None => {
                    let actor = format!("deployment:{deployment_id}");
                    if let Err(error) = self
                        .run_locked(policy, "pre-deploy", &actor, Some(&deployment_id), secrets)
                        .await
                    {
                        outcomes.push(outcome(Err(error.to_string())));
                    }
                }
                Some(job) if job.state == "failed" => outcomes.push(outcome(Err(format!(
                    "{} job {} failed: {}",
                    job.kind,
                    job.id,
                    job.error.clone().unwrap_or_default()
                )))),
                Some(job) if job.state == "ok" && job.kind == "verify" => {
                    outcomes.push(outcome(Ok(format!("backup {} verified", job.backup_id))));
                }
                Some(job) if job.state == "ok" && job.kind == "backup" => {
                    if let Err(error) = self
                        .verify_locked(
                            &job.backup_id,
                            "pre-deploy",
                            &job.created_by,
                            Some(&deployment_id),
                            None,
                            secrets,
                        )
                        .await
                    {
                        outcomes.push(outcome(Err(format!(
                            "backup {} could not be verified: {error}",
                            job.backup_id
                        ))));
                    }
                }
                Some(_) => {}
            }
        }
        Ok(outcomes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::deploy::secret_catalog::tests::MapCatalog;
    use crate::store::HostRow;
    use crate::store::test_support::{TestDb, store_test};

    const T0: i64 = 1_800_000_000_000;

    const POLICY: &str = r#"
name: files
host: db-1
source:
  path: { path: /srv/files }
schedule: "0 * * * *"
rpo: 2h
retention: { keep_last: 2 }
destinations:
  - name: local
    dir: /var/backups/argosy
encryption: { key: { secret: files/key } }
"#;

    fn host(id: &str, hostname: &str) -> HostRow {
        HostRow {
            id: id.into(),
            hostname: hostname.into(),
            region: "eu-west".into(),
            labels: Default::default(),
            enrolled_at_ms: T0,
            last_seen_ms: None,
            inventory: Vec::new(),
            interval_seconds: 10,
            cert_serial: String::new(),
            cert_not_after_ms: T0,
            revoked_at_ms: None,
            join_token_id: String::new(),
        }
    }

    fn controller(db: &TestDb, clock: &ManualClock) -> Backups {
        let fleet = Arc::new(Fleet::new(vec![host("h-1", "db-1")], 3));
        Backups::new(db.store(), fleet, Arc::new(clock.clone()))
    }

    fn task(row: &BackupJobRow) -> pb::BackupJob {
        decode(&row.task_pb, "job task", &row.id).unwrap()
    }

    fn result(job: &str, result: pb::JobResult) -> pb::JobUpdate {
        pb::JobUpdate {
            job_id: job.into(),
            body: Some(pb::job_update::Body::Result(result)),
        }
    }

    store_test!(a_backup_is_sent_recorded_and_proven_by_restoring_it);
    async fn a_backup_is_sent_recorded_and_proven_by_restoring_it(
        db: TestDb,
    ) -> anyhow::Result<()> {
        let clock = ManualClock::at(T0);
        let backups = controller(&db, &clock);
        let secrets = MapCatalog::with(&[("files/key", &[1])]);
        backups
            .apply_policy(POLICY, "yaml", "user:ann", &secrets)
            .await?;
        let job = backups.run("files", "manual", "user:ann", &secrets).await?;
        assert_eq!((job.kind.as_str(), job.host_id.as_str()), ("backup", "h-1"));
        assert_eq!(
            job.state, "pending",
            "the host is not connected: the job waits"
        );
        let Some(pb::backup_job::Task::Backup(sent)) = task(&job).task else {
            panic!("a backup task");
        };
        assert_eq!(sent.encryption_key.as_ref().map(|k| k.version), Some(1));
        // The job's secrets are granted to its host only while it runs.
        let granted = backups.host_secrets("h-1").await?;
        assert_eq!(granted.len(), 1);
        assert_eq!(granted[0].1, VersionedSecret::new("files/key", 1));
        assert!(backups.host_secrets("h-2").await?.is_empty());
        // A second run while one is unfinished is refused, naming the job.
        let busy = backups.run("files", "manual", "user:ann", &secrets).await;
        assert!(matches!(busy, Err(BackupError::Busy { .. })), "{busy:?}");

        // Another host cannot report on this job.
        let manifest = pb::BackupManifest {
            backup_id: job.backup_id.clone(),
            sha256: "a".repeat(64),
            artifact_bytes: 4096,
            source_kind: "path".into(),
            ..Default::default()
        };
        let ok = pb::JobResult {
            ok: true,
            manifest: Some(manifest.clone()),
            ..Default::default()
        };
        backups
            .job_update("h-2", result(&job.id, ok.clone()), &secrets)
            .await?;
        assert_eq!(backups.backup(&job.backup_id).await?.state, "running");

        clock.advance_ms(5_000);
        backups
            .job_update("h-1", result(&job.id, ok.clone()), &secrets)
            .await?;
        let backup = backups.backup(&job.backup_id).await?;
        assert_eq!(backup.state, "ok");
        assert_eq!(backup.sha256.as_deref(), Some("a".repeat(64).as_str()));
        assert_eq!(backup.artifact_bytes, Some(4096));
        assert!(
            backups.host_secrets("h-1").await?.is_empty(),
            "nothing granted after"
        );
        // The result resent after a reconnect changes nothing.
        backups
            .job_update("h-1", result(&job.id, ok), &secrets)
            .await?;
        assert_eq!(backups.job(&job.id).await?.state, "ok");

        // The key is rotated; the backup is opened with the version it was sealed with.
        let secrets = MapCatalog::with(&[("files/key", &[1, 2])]);
        let verify = backups
            .verify(&backup.id, "manual", "user:ann", None, &secrets)
            .await?;
        let Some(pb::backup_job::Task::Verify(sent)) = task(&verify).task else {
            panic!("a verify task");
        };
        assert_eq!(sent.encryption_key.as_ref().map(|k| k.version), Some(1));
        assert_eq!(
            sent.manifest.as_ref().map(|m| m.sha256.clone()),
            Some(manifest.sha256)
        );
        assert_eq!(backups.backup(&backup.id).await?.verify_state, "running");
        let verified = pb::JobResult {
            ok: true,
            restore_ms: 1_234,
            ..Default::default()
        };
        backups
            .job_update("h-1", result(&verify.id, verified), &secrets)
            .await?;
        let backup = backups.backup(&backup.id).await?;
        assert_eq!(backup.verify_state, "ok");
        assert_eq!(backup.restore_ms, Some(1_234));
        let policy = backups.policy("files").await?;
        let (facts, status) = backups.status(&policy).await?;
        assert_eq!(status.state, status::PolicyState::Ok, "{}", status.reason);
        assert_eq!(facts.measured_rto_ms, Some(1_234));
        assert_eq!(
            crate::store::backups::last_verified_backup_ms(&db.store(), "files").await?,
            Some(T0)
        );
        Ok(())
    }

    store_test!(a_backup_that_cannot_start_is_recorded_as_failed);
    async fn a_backup_that_cannot_start_is_recorded_as_failed(db: TestDb) -> anyhow::Result<()> {
        let clock = ManualClock::at(T0);
        let backups = controller(&db, &clock);
        let secrets = MapCatalog::with(&[("files/key", &[1])]);
        let on_unknown_host = POLICY.replace("host: db-1", "host: db-9");
        backups
            .apply_policy(&on_unknown_host, "yaml", "user:ann", &secrets)
            .await?;
        let error = backups
            .run("files", "manual", "user:ann", &secrets)
            .await
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("no enrolled host has the id or hostname `db-9`"),
            "{error}"
        );
        let listed = backups.backups(Some("files"), 10).await?;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].state, "failed");
        let policy = backups.policy("files").await?;
        let (_, status) = backups.status(&policy).await?;
        assert_eq!(status.state, status::PolicyState::Never);
        // A policy naming a secret that does not exist is refused at apply.
        let missing = MapCatalog::with(&[]);
        let refused = backups
            .apply_policy(POLICY, "yaml", "user:ann", &missing)
            .await;
        assert!(
            refused.unwrap_err().to_string().contains("files/key"),
            "the missing secret is named"
        );
        Ok(())
    }

    store_test!(jobs_whose_host_never_connects_are_given_up);
    async fn jobs_whose_host_never_connects_are_given_up(db: TestDb) -> anyhow::Result<()> {
        let clock = ManualClock::at(T0);
        let backups = controller(&db, &clock);
        let secrets = MapCatalog::with(&[("files/key", &[1])]);
        backups
            .apply_policy(POLICY, "yaml", "user:ann", &secrets)
            .await?;
        let job = backups.run("files", "manual", "user:ann", &secrets).await?;
        backups.tick(&secrets).await?;
        assert_eq!(backups.job(&job.id).await?.state, "pending");
        clock.advance_ms(PENDING_DEADLINE_MS + 1);
        backups.tick(&secrets).await?;
        let job = backups.job(&job.id).await?;
        assert_eq!(job.state, "failed");
        assert!(
            job.error
                .as_deref()
                .unwrap_or_default()
                .contains("did not connect within 10 minutes"),
            "{:?}",
            job.error
        );
        assert_eq!(backups.backup(&job.backup_id).await?.state, "failed");
        Ok(())
    }

    store_test!(the_schedule_starts_one_backup_per_slot);
    async fn the_schedule_starts_one_backup_per_slot(db: TestDb) -> anyhow::Result<()> {
        // 10:59:30 UTC on an hourly schedule.
        let start = T0 - T0 % 3_600_000 + 3_570_000;
        let clock = ManualClock::at(start);
        let backups = controller(&db, &clock);
        let secrets = MapCatalog::with(&[("files/key", &[1])]);
        backups
            .apply_policy(POLICY, "yaml", "user:ann", &secrets)
            .await?;
        backups.tick(&secrets).await?;
        assert!(backups.backups(Some("files"), 10).await?.is_empty());
        clock.advance_ms(40_000);
        backups.tick(&secrets).await?;
        backups.tick(&secrets).await?;
        let taken = backups.backups(Some("files"), 10).await?;
        assert_eq!(taken.len(), 1, "one backup for the 11:00 slot");
        assert_eq!(taken[0].trigger, "schedule");
        Ok(())
    }

    #[test]
    fn database_names_argosy_creates_are_plain() {
        for good in ["crm_restore", "a", "restore_2026_11_22"] {
            assert!(check_database_name(good).is_ok(), "{good}");
        }
        let long = "x".repeat(64);
        for bad in ["", "1db", "Crm", "crm-db", "crm;drop", long.as_str()] {
            assert!(check_database_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stored_messages_round_trip_and_damage_is_named() {
        let manifest = pb::BackupManifest {
            backup_id: "b-1".into(),
            sha256: "ab".into(),
            ..Default::default()
        };
        let back: pb::BackupManifest = decode(&encode(&manifest), "manifest", "b-1").unwrap();
        assert_eq!(back, manifest);
        let error = decode::<pb::BackupManifest>("%%%", "manifest", "b-1").unwrap_err();
        assert!(
            error.to_string().contains("manifest of `b-1` is damaged"),
            "{error}"
        );
    }

    #[test]
    fn policy_names_are_read_for_the_audit_log_or_left_empty() {
        assert_eq!(policy_name(spec::example(), "yaml"), "crm-db");
        assert_eq!(policy_name("name: [", "yaml"), "");
        assert_eq!(policy_name("name: x", "xml"), "");
    }
}
