//! Runs the backup jobs the control plane sends over the session: each at
//! most once (the [`journal`](super::journal)), at most one backup per
//! policy and [`MAX_RUNNING`] jobs at a time (the rest wait in memory; the
//! control plane sends unfinished jobs again after a reconnect anyway).
//!
//! A job asks for the secret values it names through the agent's
//! [`Secrets`] (a `SecretRequest` over the session), builds its
//! destinations and source context, runs the [`pipeline`](super::pipeline)
//! and ends with one `JobResult`. Results are journaled before they are
//! sent and sent again on every new stream until the control plane
//! acknowledges the message that carried them; a job sent again after it
//! finished is answered with its stored result. Progress is sent as it
//! comes (only the latest per job is kept while disconnected).
//!
//! After a restart, every job the journal shows started and unfinished is
//! cleaned up (partial files removed, multipart uploads aborted, asking
//! for the S3 credentials again) and reported failed.
//!
//! Nothing here runs while there is no job: no task, no timer.

use super::destinations::{
    Destination, InFlight, S3Credentials, S3Spec, SecretName, abort_in_flight,
};
use super::journal::{self, Journal, JournalError, OnJob};
use super::pipeline::{self, BackupRun, InFlightLog, RestoreRun};
use super::source;
use super::{RestoreInto, SourceContext};
use crate::agent::Clock;
use crate::secret_cache::SecretId;
use crate::secrets::Secrets;
use argosy_proto::v1::backup_destination::Kind as DestinationKind;
use argosy_proto::v1::backup_job::Task;
use argosy_proto::v1::backup_source::Kind as SourceKind;
use argosy_proto::v1::restore_target::Kind as TargetKind;
use argosy_proto::v1::{
    AgentMessage, BackupDestination, BackupJob, BackupSource, JobProgress, JobResult, JobUpdate,
    SecretRef, agent_message, job_update,
};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use zeroize::Zeroizing;

/// Jobs running at once, at most.
pub const MAX_RUNNING: usize = 2;
/// How long the clean-up after a restart keeps asking for S3 credentials.
const CLEANUP_PATIENCE: Duration = Duration::from_secs(600);
const CLEANUP_RETRY: Duration = Duration::from_secs(15);

/// What kind of job, for the concurrency rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub policy: String,
    /// A backup (at most one per policy at a time).
    pub backup: bool,
}

/// Whether a job may start beside the ones running.
pub fn may_start(job: &Slot, running: &[Slot]) -> bool {
    running.len() < MAX_RUNNING
        && !(job.backup && running.iter().any(|r| r.backup && r.policy == job.policy))
}

/// The kind and policy of a job, for the journal and the rule above.
pub fn describe(job: &BackupJob) -> (&'static str, Slot) {
    let (kind, policy, backup) = match &job.task {
        Some(Task::Backup(t)) => ("backup", t.policy.as_str(), true),
        Some(Task::Verify(t)) => ("verify", t.policy.as_str(), false),
        Some(Task::Restore(t)) => ("restore", t.policy.as_str(), false),
        Some(Task::Prune(t)) => ("prune", t.policy.as_str(), false),
        None => ("unknown", "", false),
    };
    (
        kind,
        Slot {
            policy: policy.to_owned(),
            backup,
        },
    )
}

/// The secrets a job names: the source's connection, the destinations'
/// credentials and the encryption key.
pub fn secrets_of(job: &BackupJob) -> Vec<SecretRef> {
    let mut refs = Vec::new();
    let mut source = |source: &Option<BackupSource>| {
        if let Some(BackupSource {
            kind: Some(SourceKind::Postgres(postgres)),
        }) = source
        {
            refs.extend(postgres.connection.clone());
        }
    };
    let (destinations, key): (&[BackupDestination], Option<&SecretRef>) = match &job.task {
        Some(Task::Backup(t)) => {
            source(&t.source);
            (&t.destinations, t.encryption_key.as_ref())
        }
        Some(Task::Verify(t)) => {
            source(&t.source);
            (&t.destinations, t.encryption_key.as_ref())
        }
        Some(Task::Restore(t)) => {
            source(&t.source);
            (&t.destinations, t.encryption_key.as_ref())
        }
        Some(Task::Prune(t)) => (&t.destinations, None),
        None => (&[], None),
    };
    for destination in destinations {
        if let Some(DestinationKind::S3(s3)) = &destination.kind {
            refs.extend(s3.access_key_id.clone());
            refs.extend(s3.secret_access_key.clone());
        }
    }
    refs.extend(key.cloned());
    refs.retain(|r| !r.name.is_empty());
    refs.sort_by(|a, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
    refs.dedup();
    refs
}

/// Whether a source needs the Docker engine.
pub fn needs_docker(source: &BackupSource) -> bool {
    match &source.kind {
        Some(SourceKind::Postgres(postgres)) => !postgres.container.is_empty(),
        Some(SourceKind::Volume(_)) => true,
        _ => false,
    }
}

/// The source kind's name for the manifest.
pub fn source_kind(source: &BackupSource) -> &'static str {
    match &source.kind {
        Some(SourceKind::Postgres(_)) => "postgres",
        Some(SourceKind::Volume(_)) => "volume",
        Some(SourceKind::Path(_)) => "path",
        Some(SourceKind::Command(_)) => "command",
        None => "unknown",
    }
}

/// The failure reported for a job the agent stopped during.
pub fn interrupted_result(restarted_at: &str, left_behind: &[String]) -> JobResult {
    let mut error = format!(
        "the agent stopped during this job (restarted at {restarted_at}); its partial files and uploads were removed"
    );
    if !left_behind.is_empty() {
        error = format!(
            "the agent stopped during this job (restarted at {restarted_at}); these could not be removed: {}",
            left_behind.join("; ")
        );
    }
    JobResult {
        ok: false,
        error,
        ..JobResult::default()
    }
}

fn failed(error: impl ToString) -> JobResult {
    JobResult {
        ok: false,
        error: error.to_string(),
        ..JobResult::default()
    }
}

/// How the runner is set up.
pub struct RunnerOptions {
    /// The agent's state directory (journal, scratch restores).
    pub state_dir: PathBuf,
    pub secrets: Secrets,
    /// The engine the allocations runtime uses (`None`: `DOCKER_HOST` or
    /// the default socket).
    pub docker_host: Option<String>,
    pub clock: Clock,
}

#[derive(Default)]
struct Outbox {
    /// The latest progress of each running job, not sent yet.
    progress: BTreeMap<String, JobProgress>,
    /// Results not acknowledged, with the message that last carried them
    /// on this stream.
    results: BTreeMap<String, (JobResult, Option<u64>)>,
}

#[derive(Default)]
struct Jobs {
    running: BTreeMap<String, Slot>,
    waiting: VecDeque<BackupJob>,
    /// Interrupted jobs being cleaned up after a restart.
    cleaning: std::collections::BTreeSet<String>,
}

struct Inner {
    journal: Journal,
    secrets: Secrets,
    docker_host: Option<String>,
    scratch_dir: PathBuf,
    clock: Clock,
    jobs: Mutex<Jobs>,
    outbox: Mutex<Outbox>,
    /// Wakes the session: something to send.
    ready: Notify,
}

/// The backup runner; cheap to clone, shared with the session.
#[derive(Clone)]
pub struct Backups {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Backups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backups")
            .field("running", &lock(&self.inner.jobs).running.len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Backups {
    /// Opens the journal; queues the unacknowledged results it holds and
    /// starts cleaning up the jobs the agent stopped during (if any).
    pub fn start(options: RunnerOptions) -> Result<Self, JournalError> {
        let journal = Journal::open(&options.state_dir)?;
        let backups = Self {
            inner: Arc::new(Inner {
                journal,
                secrets: options.secrets,
                docker_host: options.docker_host,
                scratch_dir: options.state_dir.join("backup-scratch"),
                clock: options.clock,
                jobs: Mutex::default(),
                outbox: Mutex::default(),
                ready: Notify::new(),
            }),
        };
        let index = backups.inner.journal.index();
        for (job_id, status) in &index {
            if let journal::Status::Finished {
                acknowledged: false,
                ..
            } = status
                && let Some(result) = backups.inner.journal.result(job_id)
            {
                lock(&backups.inner.outbox)
                    .results
                    .insert(job_id.clone(), (result, None));
            }
        }
        let interrupted = journal::interrupted(&index);
        if !interrupted.is_empty() {
            lock(&backups.inner.jobs)
                .cleaning
                .extend(interrupted.iter().cloned());
            let runner = backups.clone();
            tokio::spawn(async move {
                for job_id in interrupted {
                    runner.clean_up_interrupted(&job_id).await;
                }
            });
        }
        Ok(backups)
    }

    /// The secrets jobs ask for (the session sends and answers them).
    pub fn secrets(&self) -> &Secrets {
        &self.inner.secrets
    }

    // --- The session's side.

    /// Takes in a job from the control plane.
    pub fn receive(&self, job: BackupJob) {
        let job_id = job.id.clone();
        if job_id.is_empty() {
            tracing::warn!("ignoring a backup job without an id");
            return;
        }
        {
            let jobs = lock(&self.inner.jobs);
            if jobs.running.contains_key(&job_id)
                || jobs.cleaning.contains(&job_id)
                || jobs.waiting.iter().any(|j| j.id == job_id)
            {
                tracing::debug!(job = %job_id, "this backup job is already running or waiting");
                return;
            }
        }
        match journal::on_job(self.inner.journal.status(&job_id).as_ref()) {
            OnJob::Run => {
                lock(&self.inner.jobs).waiting.push_back(job);
                self.start_waiting();
            }
            OnJob::Resend => {
                if let Some(result) = self.inner.journal.result(&job_id) {
                    tracing::info!(job = %job_id, "this backup job already finished; sending its result again");
                    self.queue_result(&job_id, result);
                }
            }
            OnJob::Ignore => tracing::debug!(job = %job_id, "this backup job is running"),
        }
    }

    /// Completes when there is something to send.
    pub async fn ready(&self) {
        self.inner.ready.notified().await;
    }

    /// The updates to send now: progress, then every result not sent on
    /// this stream yet, each numbered with `next_seq`.
    pub fn outbound(&self, mut next_seq: impl FnMut() -> u64) -> Vec<AgentMessage> {
        let mut outbox = lock(&self.inner.outbox);
        let mut messages: Vec<AgentMessage> = std::mem::take(&mut outbox.progress)
            .into_iter()
            .map(|(job_id, progress)| AgentMessage {
                seq: next_seq(),
                body: Some(agent_message::Body::JobUpdate(JobUpdate {
                    job_id,
                    body: Some(job_update::Body::Progress(progress)),
                })),
            })
            .collect();
        for (job_id, (result, sent_in)) in &mut outbox.results {
            if sent_in.is_some() {
                continue;
            }
            let seq = next_seq();
            *sent_in = Some(seq);
            messages.push(AgentMessage {
                seq,
                body: Some(agent_message::Body::JobUpdate(JobUpdate {
                    job_id: job_id.clone(),
                    body: Some(job_update::Body::Result(result.clone())),
                })),
            });
        }
        messages
    }

    /// The control plane stored every message up to `seq` of this stream.
    pub fn acked(&self, seq: u64) {
        let done: Vec<String> = {
            let mut outbox = lock(&self.inner.outbox);
            let done: Vec<String> = outbox
                .results
                .iter()
                .filter(|(_, (_, sent_in))| sent_in.is_some_and(|s| s <= seq))
                .map(|(id, _)| id.clone())
                .collect();
            for id in &done {
                outbox.results.remove(id);
            }
            done
        };
        for job_id in done {
            if let Err(error) = self.inner.journal.acknowledge(&job_id) {
                tracing::warn!(job = %job_id, %error, "cannot record that a backup job's result was stored");
            }
        }
    }

    /// A new stream: every unacknowledged result goes again.
    pub fn stream_restarted(&self) {
        let mut outbox = lock(&self.inner.outbox);
        for (_, sent_in) in outbox.results.values_mut() {
            *sent_in = None;
        }
        let pending = !outbox.results.is_empty();
        drop(outbox);
        if pending {
            self.inner.ready.notify_one();
        }
    }

    // --- Running jobs.

    fn queue_result(&self, job_id: &str, result: JobResult) {
        let mut outbox = lock(&self.inner.outbox);
        outbox.progress.remove(job_id);
        outbox.results.insert(job_id.to_owned(), (result, None));
        drop(outbox);
        self.inner.ready.notify_one();
    }

    fn report_progress(&self, job_id: &str, progress: JobProgress) {
        lock(&self.inner.outbox)
            .progress
            .insert(job_id.to_owned(), progress);
        self.inner.ready.notify_one();
    }

    /// Starts waiting jobs while the rules allow.
    fn start_waiting(&self) {
        loop {
            let job = {
                let mut jobs = lock(&self.inner.jobs);
                let running: Vec<Slot> = jobs.running.values().cloned().collect();
                let Some(index) = jobs
                    .waiting
                    .iter()
                    .position(|job| may_start(&describe(job).1, &running))
                else {
                    return;
                };
                let Some(job) = jobs.waiting.remove(index) else {
                    return;
                };
                jobs.running.insert(job.id.clone(), describe(&job).1);
                job
            };
            let (kind, slot) = describe(&job);
            let now = (self.inner.clock)();
            if let Err(error) = self.inner.journal.start(&job.id, kind, &slot.policy, now) {
                // Without the journal the job could run twice: refuse it.
                tracing::error!(job = %job.id, %error, "cannot journal a backup job");
                lock(&self.inner.jobs).running.remove(&job.id);
                self.queue_result(
                    &job.id,
                    failed(format!("the agent cannot journal this job: {error}")),
                );
                continue;
            }
            tracing::info!(job = %job.id, kind, policy = %slot.policy, "starting a backup job");
            let runner = self.clone();
            tokio::spawn(async move {
                let job_id = job.id.clone();
                let started = Instant::now();
                let mut result = runner.run(job).await;
                result.duration_ms =
                    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                runner.finish(&job_id, result);
            });
        }
    }

    fn finish(&self, job_id: &str, result: JobResult) {
        if result.ok {
            tracing::info!(job = %job_id, duration_ms = result.duration_ms, "backup job finished");
        } else {
            tracing::warn!(job = %job_id, error = %result.error, "backup job failed");
        }
        if let Err(error) = self
            .inner
            .journal
            .finish(job_id, &result, (self.inner.clock)())
        {
            tracing::error!(job = %job_id, %error, "cannot journal a backup job's result; sending it anyway");
        }
        lock(&self.inner.jobs).running.remove(job_id);
        self.queue_result(job_id, result);
        self.start_waiting();
    }

    async fn run(&self, job: BackupJob) -> JobResult {
        let values = match self.inner.secrets.values_for(&secrets_of(&job)).await {
            Ok(values) => Values(values),
            Err(error) => return failed(format!("the job's secrets are not available: {error}")),
        };
        let log = JobLog {
            journal: &self.inner.journal,
            job_id: &job.id,
        };
        let job_id = job.id.clone();
        let progress = |p: JobProgress| self.report_progress(&job_id, p);
        match job.task {
            Some(Task::Backup(task)) => {
                let started = Instant::now();
                let started_at_ms = (self.inner.clock)();
                let prepared = self
                    .prepare(&task.destinations, task.source.as_ref(), &values)
                    .await
                    .and_then(|(destinations, context, source)| {
                        let key = values.key(task.encryption_key.as_ref())?;
                        Ok((destinations, context, source, key))
                    });
                let (destinations, context, source, key) = match prepared {
                    Ok(prepared) => prepared,
                    Err(error) => return failed(error),
                };
                let dump = match source::start_dump(&source, &context).await {
                    Ok(dump) => dump,
                    Err(error) => return failed(error),
                };
                let run = BackupRun {
                    policy: &task.policy,
                    backup_id: &task.backup_id,
                    source_kind: source_kind(&source),
                    zstd_level: task.zstd_level,
                    key: key.as_deref().map(Vec::as_slice),
                    started_at_ms,
                    started,
                };
                let clock = self.inner.clock.clone();
                let now_ms = move || clock();
                let outcome =
                    pipeline::backup(dump, &destinations, &run, &log, &progress, &now_ms).await;
                JobResult {
                    ok: outcome.error.is_none(),
                    error: outcome.error.map(|e| e.to_string()).unwrap_or_default(),
                    manifest: Some(outcome.manifest),
                    ..JobResult::default()
                }
            }
            Some(Task::Verify(task)) => {
                let manifest = task.manifest.clone().unwrap_or_default();
                let assertion = Some(task.sql_assertion.as_str()).filter(|a| !a.trim().is_empty());
                self.restore(
                    &task.backup_id,
                    &task.policy,
                    task.source.as_ref(),
                    &task.destinations,
                    &manifest,
                    task.encryption_key.as_ref(),
                    RestoreInto::Scratch,
                    assertion,
                    &values,
                    &progress,
                )
                .await
            }
            Some(Task::Restore(task)) => {
                let into = match task.target.and_then(|t| t.kind) {
                    Some(TargetKind::Database(name)) => RestoreInto::Database(name),
                    Some(TargetKind::Directory(path)) => RestoreInto::Directory(path),
                    Some(TargetKind::InPlace(true)) => RestoreInto::InPlace,
                    Some(TargetKind::InPlace(false)) | None => {
                        return failed(
                            "the restore job names no target; give a database, a directory or in-place",
                        );
                    }
                };
                let manifest = task.manifest.clone().unwrap_or_default();
                self.restore(
                    &task.backup_id,
                    &task.policy,
                    task.source.as_ref(),
                    &task.destinations,
                    &manifest,
                    task.encryption_key.as_ref(),
                    into,
                    None,
                    &values,
                    &progress,
                )
                .await
            }
            Some(Task::Prune(task)) => {
                let destinations = match build_destinations(&task.destinations, &values) {
                    Ok(destinations) => destinations,
                    Err(error) => return failed(error),
                };
                prune(&destinations, &task.policy, &task.backup_ids).await
            }
            None => failed("the job has no task; upgrade the agent"),
        }
    }

    /// The destinations, the source's context and the source itself.
    async fn prepare(
        &self,
        destinations: &[BackupDestination],
        source: Option<&BackupSource>,
        values: &Values,
    ) -> Result<(Vec<Destination>, SourceContext, BackupSource), String> {
        let source = source
            .cloned()
            .ok_or("the job names no source; upgrade the agent")?;
        let destinations = build_destinations(destinations, values)?;
        let mut context = SourceContext {
            scratch_dir: Some(self.inner.scratch_dir.clone()),
            ..SourceContext::default()
        };
        if let Some(SourceKind::Postgres(postgres)) = &source.kind {
            context.connection_url =
                Some(values.text(postgres.connection.as_ref(), "the PostgreSQL connection")?);
        }
        if needs_docker(&source) {
            let engine = crate::docker::Engine::connect(self.inner.docker_host.as_deref())
                .await
                .map_err(|e| format!("the source needs the Docker engine: {e}"))?;
            context.docker = Some(engine);
        }
        Ok((destinations, context, source))
    }

    #[allow(clippy::too_many_arguments)]
    async fn restore(
        &self,
        backup_id: &str,
        policy: &str,
        source: Option<&BackupSource>,
        destinations: &[BackupDestination],
        manifest: &argosy_proto::v1::BackupManifest,
        key: Option<&SecretRef>,
        into: RestoreInto,
        sql_assertion: Option<&str>,
        values: &Values,
        progress: pipeline::ProgressSink<'_>,
    ) -> JobResult {
        let started = Instant::now();
        let prepared = self
            .prepare(destinations, source, values)
            .await
            .and_then(|p| Ok((p, values.key(key)?)));
        let ((destinations, context, source), key) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => return failed(error),
        };
        let (stored, location) = match pipeline::fetch(&destinations, policy, backup_id).await {
            Ok(found) => found,
            Err(error) => return failed(error),
        };
        let in_place = into == RestoreInto::InPlace;
        let target = match source::start_restore(&source, into, sql_assertion, &context).await {
            Ok(target) => target,
            Err(error) => return failed(error),
        };
        let run = RestoreRun {
            backup_id,
            manifest,
            key: key.as_deref().map(Vec::as_slice),
        };
        let report = match pipeline::restore(stored, &location, target, &run, progress).await {
            Ok(report) => report,
            Err(error) => return failed(error),
        };
        let restore_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let verdict = pipeline::judge_restore(
            &pipeline::manifest_tables(manifest),
            &report,
            sql_assertion,
            in_place,
        );
        JobResult {
            ok: verdict.ok(),
            error: verdict.problems.join("; "),
            restore_ms,
            tables: verdict.tables,
            ..JobResult::default()
        }
    }

    /// Cleans up after a job the agent stopped during and reports it failed.
    async fn clean_up_interrupted(&self, job_id: &str) {
        let restarted_at =
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let in_flight = self
            .inner
            .journal
            .read(job_id)
            .map(|entry| entry.in_flight)
            .unwrap_or_default();
        let mut left_behind = Vec::new();
        for item in &in_flight {
            match self.abort_with_retries(item).await {
                Ok(()) => {
                    tracing::info!(job = %job_id, removed = %item.describe(), "removed what an interrupted backup job left")
                }
                Err(error) => left_behind.push(format!("{} ({error})", item.describe())),
            }
        }
        let result = interrupted_result(&restarted_at, &left_behind);
        if let Err(error) = self
            .inner
            .journal
            .finish(job_id, &result, (self.inner.clock)())
        {
            tracing::error!(job = %job_id, %error, "cannot journal an interrupted backup job's result");
        }
        lock(&self.inner.jobs).cleaning.remove(job_id);
        self.queue_result(job_id, result);
    }

    async fn abort_with_retries(&self, item: &InFlight) -> Result<(), String> {
        let refs: Vec<SecretRef> = item
            .secrets()
            .into_iter()
            .map(|s| SecretRef {
                name: s.name.clone(),
                version: s.version,
            })
            .collect();
        let deadline = Instant::now() + CLEANUP_PATIENCE;
        loop {
            let attempt = async {
                let credentials = match item {
                    InFlight::File { .. } => None,
                    InFlight::Multipart { spec, .. } => {
                        let values = Values(
                            self.inner
                                .secrets
                                .values_for(&refs)
                                .await
                                .map_err(|e| e.to_string())?,
                        );
                        Some(values.credentials(spec)?)
                    }
                };
                abort_in_flight(item, credentials)
                    .await
                    .map_err(|e| e.to_string())
            };
            match attempt.await {
                Ok(()) => return Ok(()),
                Err(error) if Instant::now() >= deadline => return Err(error),
                Err(error) => {
                    tracing::info!(upload = %item.describe(), %error, "cannot clean up yet; trying again");
                    tokio::time::sleep(CLEANUP_RETRY).await;
                }
            }
        }
    }
}

/// Deletes the artifacts of `backup_ids` from every destination; the
/// result lists those gone from all of them.
async fn prune(destinations: &[Destination], policy: &str, backup_ids: &[String]) -> JobResult {
    let mut pruned = Vec::new();
    let mut problems = Vec::new();
    for backup_id in backup_ids {
        let results = futures_util::future::join_all(
            destinations.iter().map(|d| d.delete(policy, backup_id)),
        )
        .await;
        let errors: Vec<String> = results
            .into_iter()
            .filter_map(|r| r.err().map(|e| e.to_string()))
            .collect();
        if errors.is_empty() {
            pruned.push(backup_id.clone());
        } else {
            problems.push(format!("backup {backup_id}: {}", errors.join("; ")));
        }
    }
    JobResult {
        ok: problems.is_empty(),
        error: problems.join("; "),
        pruned,
        ..JobResult::default()
    }
}

/// A job's secret values.
struct Values(BTreeMap<SecretId, Zeroizing<Vec<u8>>>);

impl Values {
    fn bytes(&self, secret: Option<&SecretRef>, what: &str) -> Result<&Zeroizing<Vec<u8>>, String> {
        let secret = secret
            .filter(|s| !s.name.is_empty())
            .ok_or(format!("the job names no secret for {what}"))?;
        self.0.get(&SecretId::from_wire(secret)).ok_or_else(|| {
            format!(
                "the control plane did not send secret {}@{} ({what})",
                secret.name, secret.version
            )
        })
    }

    fn text(&self, secret: Option<&SecretRef>, what: &str) -> Result<Zeroizing<String>, String> {
        let bytes = self.bytes(secret, what)?;
        let text = std::str::from_utf8(bytes).map_err(|_| {
            let name = secret.map(|s| s.name.as_str()).unwrap_or_default();
            format!("secret {name} ({what}) is not UTF-8 text")
        })?;
        Ok(Zeroizing::new(
            text.trim_end_matches(['\n', '\r']).to_owned(),
        ))
    }

    /// The encryption key's bytes, if the job names one.
    fn key(&self, secret: Option<&SecretRef>) -> Result<Option<Zeroizing<Vec<u8>>>, String> {
        match secret.filter(|s| !s.name.is_empty()) {
            None => Ok(None),
            Some(secret) => Ok(Some(
                self.bytes(Some(secret), "the encryption key")?.clone(),
            )),
        }
    }

    fn credentials(&self, spec: &S3Spec) -> Result<S3Credentials, String> {
        let wire = |name: &SecretName| SecretRef {
            name: name.name.clone(),
            version: name.version,
        };
        Ok(S3Credentials {
            access_key_id: self.text(Some(&wire(&spec.access_key_id)), "the S3 access key id")?,
            secret_access_key: self.text(
                Some(&wire(&spec.secret_access_key)),
                "the S3 secret access key",
            )?,
        })
    }
}

fn build_destinations(
    wire: &[BackupDestination],
    values: &Values,
) -> Result<Vec<Destination>, String> {
    if wire.is_empty() {
        return Err("the job names no destination".into());
    }
    wire.iter()
        .map(|destination| match &destination.kind {
            Some(DestinationKind::Dir(dir)) => {
                Destination::dir(&destination.name, &dir.path).map_err(|e| e.to_string())
            }
            Some(DestinationKind::S3(s3)) => {
                let name = |r: &Option<SecretRef>| {
                    let r = r.clone().unwrap_or_default();
                    SecretName {
                        name: r.name,
                        version: r.version,
                    }
                };
                let spec = S3Spec {
                    endpoint: s3.endpoint.clone(),
                    bucket: s3.bucket.clone(),
                    prefix: s3.prefix.clone(),
                    region: s3.region.clone(),
                    access_key_id: name(&s3.access_key_id),
                    secret_access_key: name(&s3.secret_access_key),
                };
                let credentials = values.credentials(&spec)?;
                Destination::s3(&destination.name, spec, credentials).map_err(|e| e.to_string())
            }
            None => Err(format!(
                "destination {} has no kind; upgrade the agent",
                destination.name
            )),
        })
        .collect()
}

/// Journals a job's open uploads.
struct JobLog<'a> {
    journal: &'a Journal,
    job_id: &'a str,
}

impl InFlightLog for JobLog<'_> {
    fn opened(&self, item: &InFlight) {
        if let Err(error) = self.journal.add_in_flight(self.job_id, item) {
            tracing::warn!(job = %self.job_id, %error, "cannot journal an upload; a crash now would leave it behind");
        }
    }

    fn closed(&self, item: &InFlight) {
        if let Err(error) = self.journal.remove_in_flight(self.job_id, item) {
            tracing::warn!(job = %self.job_id, %error, "cannot journal the end of an upload");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argosy_proto::v1::{
        BackupTask, DirDestination, PostgresSource, PruneTask, S3Destination, VerifyTask,
    };

    fn slot(policy: &str, backup: bool) -> Slot {
        Slot {
            policy: policy.into(),
            backup,
        }
    }

    #[test]
    fn one_backup_per_policy_and_two_jobs_at_most() {
        assert!(may_start(&slot("a", true), &[]));
        assert!(!may_start(&slot("a", true), &[slot("a", true)]));
        assert!(may_start(&slot("a", true), &[slot("b", true)]));
        assert!(may_start(&slot("a", false), &[slot("a", true)]));
        assert!(may_start(&slot("a", true), &[slot("a", false)]));
        assert!(!may_start(
            &slot("c", false),
            &[slot("a", true), slot("b", false)]
        ));
    }

    fn reference(name: &str, version: u32) -> Option<SecretRef> {
        Some(SecretRef {
            name: name.into(),
            version,
        })
    }

    fn s3_destination() -> BackupDestination {
        BackupDestination {
            name: "offsite".into(),
            kind: Some(DestinationKind::S3(S3Destination {
                endpoint: "http://127.0.0.1:9000".into(),
                bucket: "crm".into(),
                access_key_id: reference("s3/key-id", 1),
                secret_access_key: reference("s3/secret", 3),
                ..S3Destination::default()
            })),
        }
    }

    #[test]
    fn a_job_asks_for_exactly_the_secrets_it_names() {
        let postgres = BackupSource {
            kind: Some(SourceKind::Postgres(PostgresSource {
                connection: reference("crm/pg-url", 2),
                container: String::new(),
            })),
        };
        let job = BackupJob {
            id: "j-1".into(),
            task: Some(Task::Backup(BackupTask {
                policy: "crm-db".into(),
                backup_id: "b-1".into(),
                source: Some(postgres.clone()),
                destinations: vec![
                    BackupDestination {
                        name: "local".into(),
                        kind: Some(DestinationKind::Dir(DirDestination { path: "/b".into() })),
                    },
                    s3_destination(),
                    s3_destination(),
                ],
                zstd_level: 3,
                encryption_key: reference("crm/backup-key", 1),
            })),
        };
        let names: Vec<String> = secrets_of(&job)
            .iter()
            .map(|r| format!("{}@{}", r.name, r.version))
            .collect();
        assert_eq!(
            names,
            [
                "crm/backup-key@1",
                "crm/pg-url@2",
                "s3/key-id@1",
                "s3/secret@3"
            ]
        );
        assert_eq!(describe(&job), ("backup", slot("crm-db", true)));

        let verify = BackupJob {
            id: "j-2".into(),
            task: Some(Task::Verify(VerifyTask {
                policy: "files".into(),
                source: Some(BackupSource {
                    kind: Some(SourceKind::Path(argosy_proto::v1::PathSource {
                        path: "/srv".into(),
                    })),
                }),
                encryption_key: Some(SecretRef::default()),
                ..VerifyTask::default()
            })),
        };
        assert!(secrets_of(&verify).is_empty());
        assert_eq!(describe(&verify), ("verify", slot("files", false)));
        let prune = BackupJob {
            id: "j-3".into(),
            task: Some(Task::Prune(PruneTask {
                policy: "crm-db".into(),
                destinations: vec![s3_destination()],
                backup_ids: vec!["b-1".into()],
            })),
        };
        assert_eq!(secrets_of(&prune).len(), 2);
        assert_eq!(describe(&BackupJob::default()).0, "unknown");

        assert!(!needs_docker(&postgres));
        assert_eq!(source_kind(&postgres), "postgres");
        let in_container = BackupSource {
            kind: Some(SourceKind::Postgres(PostgresSource {
                connection: None,
                container: "crm-pg".into(),
            })),
        };
        assert!(needs_docker(&in_container));
        let volume = BackupSource {
            kind: Some(SourceKind::Volume(argosy_proto::v1::VolumeSource {
                name: "v".into(),
            })),
        };
        assert!(needs_docker(&volume));
    }

    #[test]
    fn an_interrupted_job_says_what_happened() {
        let clean = interrupted_result("2025-01-02T03:04:05Z", &[]);
        assert!(!clean.ok);
        assert_eq!(
            clean.error,
            "the agent stopped during this job (restarted at 2025-01-02T03:04:05Z); its partial files and uploads were removed"
        );
        let left = interrupted_result(
            "T",
            &["multipart upload u-1 of s3://b/k (unreachable)".into()],
        );
        assert_eq!(
            left.error,
            "the agent stopped during this job (restarted at T); these could not be removed: multipart upload u-1 of s3://b/k (unreachable)"
        );
    }
}
