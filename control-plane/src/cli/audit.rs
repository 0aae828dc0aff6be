//! `argosy audit list|verify`: read the audit log with filters (a table or
//! JSON for export) and verify its hash chain.

use super::client::{ClientArgs, connect, status_error};
use super::output::{self, Output, table, when};
use crate::clock::Clock;
use crate::dto::{AuditRecordJson, AuditVerificationJson};
use anyhow::{Context, bail};
use argosy_proto::v1::{self as pb, audit_service_client::AuditServiceClient};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(super) enum AuditCommand {
    /// Records, newest first.
    List {
        /// How far back, e.g. 1h or 7d (default: all).
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
        /// Only this actor, e.g. user:alice, token:ci or host:h-abc.
        #[arg(long)]
        actor: Option<String>,
        /// Only this action, e.g. service.apply, secret.read, secret.deliver.
        #[arg(long)]
        action: Option<String>,
        /// At most this many records (up to 1000 a page; more pages are fetched).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Walk the whole chain; exit non-zero and name every broken record.
    Verify {
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub(super) async fn audit(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::List {
            since,
            actor,
            action,
            limit,
            client,
        } => {
            let connection = connect(&client)?;
            let mut api = connection.client(AuditServiceClient::with_interceptor);
            let since_ms = match since {
                Some(since) => {
                    let back = i64::try_from(since.as_millis()).context("--since is too long")?;
                    crate::clock::SystemClock.now_ms() - back
                }
                None => 0,
            };
            let mut records: Vec<AuditRecordJson> = Vec::new();
            let mut before_seq = 0;
            while records.len() < limit as usize {
                let page = api
                    .list_audit(pb::ListAuditRequest {
                        since_ms,
                        actor: actor.clone().unwrap_or_default(),
                        action: action.clone().unwrap_or_default(),
                        before_seq,
                        limit: (limit - records.len() as u32).min(1000),
                    })
                    .await
                    .map_err(status_error)?
                    .into_inner()
                    .records;
                let Some(last) = page.last() else { break };
                before_seq = last.seq;
                records.extend(page.into_iter().map(AuditRecordJson::from));
            }
            match connection.output {
                Output::Json => println!("{}", output::json(&records)?),
                Output::Table => {
                    let rows = records
                        .into_iter()
                        .map(|r| {
                            vec![
                                r.seq.to_string(),
                                when(r.at_ms),
                                r.actor,
                                r.source,
                                r.action,
                                r.target,
                                r.outcome,
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        table(
                            &[
                                "seq", "time", "actor", "source", "action", "target", "outcome"
                            ],
                            rows
                        )
                    );
                }
            }
            Ok(())
        }
        AuditCommand::Verify { client } => {
            let connection = connect(&client)?;
            let mut api = connection.client(AuditServiceClient::with_interceptor);
            let result: AuditVerificationJson = api
                .verify_audit(pb::VerifyAuditRequest {})
                .await
                .map_err(status_error)?
                .into_inner()
                .into();
            match connection.output {
                Output::Json => println!("{}", output::json(&result)?),
                Output::Table => {
                    for problem in &result.problems {
                        println!("BROKEN: {problem}");
                    }
                    println!(
                        "{} records checked; head #{} {}",
                        result.records, result.head_seq, result.head_hash
                    );
                }
            }
            if !result.ok {
                bail!(
                    "the audit log has been tampered with: {} problem(s) found",
                    result.problems.len()
                );
            }
            Ok(())
        }
    }
}
