//! `argosy backup …`: policies from spec files, running, listing, showing,
//! verifying and restoring backups, and following their jobs with
//! progress (`--wait`).

use super::client::{ClientArgs, Connection, connect, status_error};
use super::output::{Output, ago, bytes, json, table, when};
use crate::clock::{Clock, SystemClock};
use crate::dto::{BackupJobJson, BackupJson, BackupPolicyJson};
use anyhow::{Context, bail};
use argosy_proto::v1::{self as pb, backup_service_client::BackupServiceClient};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub(super) enum BackupCommand {
    /// Backup policies: what, where, when, how long.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Take a backup of POLICY now.
    Run {
        policy: String,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Backups, newest first (of one policy, or all).
    List {
        policy: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One backup: its manifest (sizes, hash, durations, tool versions,
    /// rows per table) and its newest verification.
    Show {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Prove a backup by restoring it into a scratch target (hash, decrypt,
    /// decompress, restore, compare, drop).
    Verify {
        id: String,
        /// Open the artifact with this secret (NAME or NAME@VERSION) instead of
        /// the key version it was sealed with.
        #[arg(long, value_name = "SECRET")]
        key_secret: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Restore a backup into a new database or directory, or over its
    /// source with --in-place --confirm.
    Restore(RestoreArgs),
    /// Backup, verify, restore and prune jobs, newest first.
    Jobs {
        policy: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One job with its progress and result.
    Job {
        id: String,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum PolicyCommand {
    /// Create or replace a policy from a YAML or TOML file.
    #[command(after_long_help = crate::backup::spec::example())]
    Apply {
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Every policy with its status against its RPO.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One policy: status, last success and its age, last verification,
    /// measured RTO, next runs, and the spec.
    Show {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a policy (its backups stay listed and restorable).
    Remove {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Args)]
pub(super) struct WaitArgs {
    /// Follow the job until it ends, printing progress; exit non-zero if it fails.
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this long (the job goes on).
    #[arg(long, default_value = "2h", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

#[derive(Debug, Args)]
pub(super) struct RestoreArgs {
    id: String,
    /// Where to: `database:NAME` (a new PostgreSQL database on the source's
    /// server) or `dir:/absolute/path` (a new or empty directory).
    #[arg(long, value_name = "TARGET", conflicts_with = "in_place")]
    to: Option<String>,
    /// Over the live source itself (needs --confirm, and the admin role).
    #[arg(long)]
    in_place: bool,
    /// Confirms an in-place restore.
    #[arg(long)]
    confirm: bool,
    /// As for `verify`.
    #[arg(long, value_name = "SECRET")]
    key_secret: Option<String>,
    #[command(flatten)]
    wait: WaitArgs,
    #[command(flatten)]
    client: ClientArgs,
}

type BackupClient = BackupServiceClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        super::client::Bearer,
    >,
>;

fn backups_client(connection: &Connection) -> BackupClient {
    connection.client(BackupServiceClient::with_interceptor)
}

/// `database:NAME` or `dir:/path` as a restore target.
fn parse_target(text: &str) -> anyhow::Result<pb::RestoreTarget> {
    let kind = match text.split_once(':') {
        Some(("database" | "db", name)) if !name.is_empty() => {
            pb::restore_target::Kind::Database(name.to_owned())
        }
        Some(("dir" | "directory", path)) if !path.is_empty() => {
            pb::restore_target::Kind::Directory(path.to_owned())
        }
        _ => {
            bail!("--to {text:?} is not a restore target: use database:NAME or dir:/absolute/path")
        }
    };
    Ok(pb::RestoreTarget { kind: Some(kind) })
}

fn rows_text(n: u64) -> String {
    format!("{n} row{}", if n == 1 { "" } else { "s" })
}

fn millis(ms: u64) -> String {
    if ms >= 1000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{ms}ms")
    }
}

fn print_policy(policy: &pb::BackupPolicy) {
    let now = SystemClock.now_ms();
    let status = policy.status.clone().unwrap_or_default();
    println!("policy:        {}", policy.name);
    println!("source:        {}", policy.source_kind);
    println!(
        "host:          {}",
        if policy.host_id.is_empty() {
            "(none now)"
        } else {
            &policy.host_id
        }
    );
    println!("schedule:      {} (UTC)", policy.schedule);
    if !policy.verify_schedule.is_empty() {
        println!("verify:        {} (UTC)", policy.verify_schedule);
    }
    println!(
        "rpo:           {}",
        humantime::format_duration(Duration::from_secs(policy.rpo_seconds))
    );
    println!("destinations:  {}", policy.destinations.join(", "));
    println!("status:        {} ({})", status.state, status.reason);
    println!("last success:  {}", ago(status.last_success_at_ms, now));
    if status.last_failure_at_ms > 0 {
        println!(
            "last failure:  {}: {}",
            ago(status.last_failure_at_ms, now),
            status.last_error
        );
    }
    println!(
        "last verified: {}{}",
        ago(status.last_verified_at_ms, now),
        if status.last_verify.is_empty() {
            String::new()
        } else {
            format!(" ({})", status.last_verify)
        }
    );
    if status.measured_rto_ms > 0 {
        println!("measured rto:  {}", millis(status.measured_rto_ms));
    }
    println!("next backup:   {}", when(status.next_run_at_ms));
    if status.next_verify_at_ms > 0 {
        println!("next verify:   {}", when(status.next_verify_at_ms));
    }
}

fn print_backup(backup: &pb::Backup) {
    println!("backup:    {}", backup.id);
    println!("policy:    {}", backup.policy);
    println!("host:      {}", backup.host_id);
    println!("state:     {}", backup.state);
    println!("trigger:   {} by {}", backup.trigger, backup.created_by);
    println!("started:   {}", when(backup.started_at_ms));
    println!("finished:  {}", when(backup.finished_at_ms));
    if !backup.error.is_empty() {
        println!("error:     {}", backup.error);
    }
    if let Some(m) = &backup.manifest {
        println!("artifact:  {} ({})", m.artifact, bytes(m.artifact_bytes));
        println!("sha256:    {}", m.sha256);
        println!(
            "sizes:     {} dumped, {} compressed, {} stored ({})",
            bytes(m.raw_bytes),
            bytes(m.compressed_bytes),
            bytes(m.artifact_bytes),
            m.encryption
        );
        println!(
            "durations: dump {}, total {}",
            millis(m.dump_ms),
            millis(m.total_ms)
        );
        for (tool, version) in &m.tool_versions {
            println!("tool:      {tool}: {version}");
        }
        for copy in &m.copies {
            println!(
                "copy:      {} → {} ({})",
                copy.destination,
                copy.location,
                bytes(copy.bytes)
            );
        }
        if !m.tables.is_empty() {
            let rows = m
                .tables
                .iter()
                .map(|t| vec![t.table.clone(), t.rows.to_string()])
                .collect();
            println!("{}", table(&["table", "rows"], rows));
        }
    }
    println!(
        "verified:  {}{}",
        backup.verify_state,
        if backup.verified_at_ms > 0 {
            format!(" at {}", when(backup.verified_at_ms))
        } else {
            String::new()
        }
    );
    if !backup.verify_error.is_empty() {
        println!("verify error: {}", backup.verify_error);
    }
    if backup.restore_ms > 0 {
        println!("restore time (RTO): {}", millis(backup.restore_ms));
    }
    let mismatched: Vec<&pb::TableCheck> = backup
        .tables
        .iter()
        .filter(|t| t.expected_rows != t.restored_rows)
        .collect();
    for t in mismatched {
        println!(
            "mismatch:  {}: {} in the backup, {} restored",
            t.table,
            rows_text(t.expected_rows),
            rows_text(t.restored_rows)
        );
    }
}

fn job_line(job: &pb::BackupJobInfo) -> String {
    let progress = job.progress.clone().unwrap_or_default();
    let mut text = format!("{} {} {}: {}", job.kind, job.id, job.backup_id, job.state);
    if !progress.stage.is_empty() {
        text.push_str(&format!(" ({}", progress.stage));
        if progress.bytes > 0 {
            text.push_str(&format!(", {}", bytes(progress.bytes)));
            if progress.total_bytes > 0 {
                text.push_str(&format!(" of {}", bytes(progress.total_bytes)));
            }
        }
        text.push(')');
    }
    text
}

/// Prints the job (or follows it with `--wait`) and fails if it failed.
async fn finish(
    connection: &Connection,
    client: &mut BackupClient,
    job: pb::BackupJobInfo,
    wait: &WaitArgs,
) -> anyhow::Result<()> {
    let mut job = job;
    if wait.wait {
        let deadline = tokio::time::Instant::now() + wait.timeout;
        let mut last = String::new();
        while job.state == "pending" || job.state == "running" {
            if connection.output == Output::Table {
                let line = job_line(&job);
                if line != last {
                    eprintln!("{line}");
                    last = line;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "gave up waiting for job {} after {}; it goes on: follow it with `argosy backup job {} --wait`",
                    job.id,
                    humantime::format_duration(wait.timeout),
                    job.id
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            job = client
                .get_job(pb::GetBackupJobRequest { id: job.id.clone() })
                .await
                .map_err(status_error)?
                .into_inner();
        }
    }
    match connection.output {
        Output::Json => println!("{}", json(&BackupJobJson::from(job.clone()))?),
        Output::Table => {
            println!("{}", job_line(&job));
            if let Some(result) = &job.result {
                if result.restore_ms > 0 {
                    println!(
                        "restored in {} ({} tables compared)",
                        millis(result.restore_ms),
                        result.tables.len()
                    );
                }
                if !result.pruned.is_empty() {
                    println!("pruned: {}", result.pruned.join(", "));
                }
            }
        }
    }
    std::io::stdout().flush().ok();
    if job.state == "failed" {
        bail!("{} job {} failed: {}", job.kind, job.id, job.error);
    }
    Ok(())
}

pub(super) async fn backup(command: BackupCommand) -> anyhow::Result<()> {
    match command {
        BackupCommand::Policy(command) => policy(command).await,
        BackupCommand::Run {
            policy,
            wait,
            client,
        } => {
            let connection = connect(&client)?;
            let mut backups = backups_client(&connection);
            let job = backups
                .run_backup(pb::RunBackupRequest { policy })
                .await
                .map_err(status_error)?
                .into_inner();
            if connection.output == Output::Table {
                eprintln!("backup {} started (job {})", job.backup_id, job.id);
            }
            finish(&connection, &mut backups, job, &wait).await
        }
        BackupCommand::List {
            policy,
            limit,
            client,
        } => {
            let connection = connect(&client)?;
            let list = backups_client(&connection)
                .list_backups(pb::ListBackupsRequest {
                    policy: policy.unwrap_or_default(),
                    limit,
                })
                .await
                .map_err(status_error)?
                .into_inner()
                .backups;
            match connection.output {
                Output::Json => {
                    let list: Vec<BackupJson> = list.into_iter().map(BackupJson::from).collect();
                    println!("{}", json(&list)?);
                }
                Output::Table => {
                    let now = SystemClock.now_ms();
                    let rows = list
                        .iter()
                        .map(|b| {
                            let size = b
                                .manifest
                                .as_ref()
                                .map(|m| bytes(m.artifact_bytes))
                                .unwrap_or_else(|| "-".to_owned());
                            vec![
                                b.id.clone(),
                                b.policy.clone(),
                                b.state.clone(),
                                ago(b.started_at_ms, now),
                                size,
                                b.verify_state.clone(),
                                b.trigger.clone(),
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        table(
                            &[
                                "id", "policy", "state", "taken", "size", "verified", "trigger"
                            ],
                            rows
                        )
                    );
                }
            }
            Ok(())
        }
        BackupCommand::Show { id, client } => {
            let connection = connect(&client)?;
            let backup = backups_client(&connection)
                .get_backup(pb::GetBackupRequest { id })
                .await
                .map_err(status_error)?
                .into_inner();
            match connection.output {
                Output::Json => println!("{}", json(&BackupJson::from(backup))?),
                Output::Table => print_backup(&backup),
            }
            Ok(())
        }
        BackupCommand::Verify {
            id,
            key_secret,
            wait,
            client,
        } => {
            let connection = connect(&client)?;
            let mut backups = backups_client(&connection);
            let job = backups
                .verify_backup(pb::VerifyBackupRequest {
                    id,
                    key_secret: key_secret.unwrap_or_default(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            finish(&connection, &mut backups, job, &wait).await
        }
        BackupCommand::Restore(args) => {
            let target = match (&args.to, args.in_place) {
                (Some(to), false) => parse_target(to)?,
                (None, true) => pb::RestoreTarget {
                    kind: Some(pb::restore_target::Kind::InPlace(true)),
                },
                _ => bail!(
                    "say where to restore: --to database:NAME, --to dir:/path, or --in-place --confirm"
                ),
            };
            if args.in_place && !args.confirm {
                bail!(
                    "--in-place overwrites the live data the backup was taken from; add --confirm if that is what you want"
                );
            }
            let connection = connect(&args.client)?;
            let mut backups = backups_client(&connection);
            let job = backups
                .restore_backup(pb::RestoreBackupRequest {
                    id: args.id,
                    target: Some(target),
                    confirm: args.confirm,
                    key_secret: args.key_secret.unwrap_or_default(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            finish(&connection, &mut backups, job, &args.wait).await
        }
        BackupCommand::Jobs {
            policy,
            limit,
            client,
        } => {
            let connection = connect(&client)?;
            let jobs = backups_client(&connection)
                .list_jobs(pb::ListBackupJobsRequest {
                    policy: policy.unwrap_or_default(),
                    limit,
                })
                .await
                .map_err(status_error)?
                .into_inner()
                .jobs;
            match connection.output {
                Output::Json => {
                    let jobs: Vec<BackupJobJson> =
                        jobs.into_iter().map(BackupJobJson::from).collect();
                    println!("{}", json(&jobs)?);
                }
                Output::Table => {
                    let now = SystemClock.now_ms();
                    let rows = jobs
                        .iter()
                        .map(|j| {
                            vec![
                                j.id.clone(),
                                j.kind.clone(),
                                j.policy.clone(),
                                j.backup_id.clone(),
                                j.state.clone(),
                                ago(j.created_at_ms, now),
                                j.error.clone(),
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        table(
                            &[
                                "id", "kind", "policy", "backup", "state", "created", "error"
                            ],
                            rows
                        )
                    );
                }
            }
            Ok(())
        }
        BackupCommand::Job { id, wait, client } => {
            let connection = connect(&client)?;
            let mut backups = backups_client(&connection);
            let job = backups
                .get_job(pb::GetBackupJobRequest { id })
                .await
                .map_err(status_error)?
                .into_inner();
            finish(&connection, &mut backups, job, &wait).await
        }
    }
}

async fn policy(command: PolicyCommand) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Apply { file, client } => {
            let spec = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read the policy file {}", file.display()))?;
            let format = match file.extension().and_then(|e| e.to_str()) {
                Some("toml") => "toml",
                _ => "yaml",
            };
            let connection = connect(&client)?;
            let policy = backups_client(&connection)
                .apply_policy(pb::ApplyBackupPolicyRequest {
                    spec,
                    format: format.to_owned(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            match connection.output {
                Output::Json => println!("{}", json(&BackupPolicyJson::from(policy))?),
                Output::Table => println!("backup policy {} applied", policy.name),
            }
            Ok(())
        }
        PolicyCommand::List { client } => {
            let connection = connect(&client)?;
            let policies = backups_client(&connection)
                .list_policies(pb::ListBackupPoliciesRequest {})
                .await
                .map_err(status_error)?
                .into_inner()
                .policies;
            match connection.output {
                Output::Json => {
                    let list: Vec<BackupPolicyJson> =
                        policies.into_iter().map(BackupPolicyJson::from).collect();
                    println!("{}", json(&list)?);
                }
                Output::Table => {
                    let now = SystemClock.now_ms();
                    let rows = policies
                        .iter()
                        .map(|p| {
                            let status = p.status.clone().unwrap_or_default();
                            vec![
                                p.name.clone(),
                                p.source_kind.clone(),
                                p.schedule.clone(),
                                status.state,
                                ago(status.last_success_at_ms, now),
                                status.last_verify,
                                if status.measured_rto_ms > 0 {
                                    millis(status.measured_rto_ms)
                                } else {
                                    "-".to_owned()
                                },
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        table(
                            &[
                                "name",
                                "source",
                                "schedule",
                                "status",
                                "last success",
                                "verified",
                                "rto"
                            ],
                            rows
                        )
                    );
                }
            }
            Ok(())
        }
        PolicyCommand::Show { name, client } => {
            let connection = connect(&client)?;
            let policy = backups_client(&connection)
                .get_policy(pb::GetBackupPolicyRequest { name })
                .await
                .map_err(status_error)?
                .into_inner();
            match connection.output {
                Output::Json => println!("{}", json(&BackupPolicyJson::from(policy))?),
                Output::Table => print_policy(&policy),
            }
            Ok(())
        }
        PolicyCommand::Remove { name, client } => {
            let connection = connect(&client)?;
            let policy = backups_client(&connection)
                .remove_policy(pb::RemoveBackupPolicyRequest { name })
                .await
                .map_err(status_error)?
                .into_inner();
            match connection.output {
                Output::Json => println!("{}", json(&BackupPolicyJson::from(policy))?),
                Output::Table => println!("backup policy {} removed", policy.name),
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_targets_parse_or_say_what_is_expected() {
        assert_eq!(
            parse_target("database:crm_restore").unwrap().kind,
            Some(pb::restore_target::Kind::Database("crm_restore".into()))
        );
        assert_eq!(
            parse_target("dir:/srv/restore").unwrap().kind,
            Some(pb::restore_target::Kind::Directory("/srv/restore".into()))
        );
        for bad in ["", "database:", "s3:bucket", "/srv/x"] {
            let error = parse_target(bad).unwrap_err().to_string();
            assert!(error.contains("database:NAME or dir:"), "{bad}: {error}");
        }
    }
}
