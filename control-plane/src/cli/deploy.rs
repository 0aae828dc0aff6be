//! The deployment commands of the CLI: `apply`, `services`, `revisions`,
//! `deployments`, `rollback`, `scale` and `stop`.

use super::client::{ClientArgs, Connection, connect, status_error};
use super::output::{Output, ago, table, when};
use crate::clock::{Clock, SystemClock};
use crate::dto::{deployment_json, revision_json, service_change_json, service_json};
use anyhow::Context;
use argosy_proto::v1::{self as pb, deploy_service_client::DeployServiceClient};
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub(super) struct ApplyArgs {
    /// Spec file (.yaml, .yml or .toml); `-` reads YAML from standard input.
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// Only validate.
    #[arg(long)]
    dry_run: bool,
    /// Follow the deployment until it ends.
    #[arg(long)]
    watch: bool,
    #[command(flatten)]
    client: ClientArgs,
}

fn deploy_client(
    connection: &Connection,
) -> DeployServiceClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        super::client::Bearer,
    >,
> {
    connection.client(DeployServiceClient::with_interceptor)
}

pub(super) async fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let (text, format) = if args.file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
        (text, "yaml".to_owned())
    } else {
        let format = crate::deploy::spec::Format::from_path(&args.file)?;
        let text = std::fs::read_to_string(&args.file)
            .with_context(|| format!("cannot read {}", args.file.display()))?;
        (
            text,
            match format {
                crate::deploy::spec::Format::Yaml => "yaml".to_owned(),
                crate::deploy::spec::Format::Toml => "toml".to_owned(),
            },
        )
    };
    let connection = connect(&args.client)?;
    let mut client = deploy_client(&connection);
    let applied = client
        .apply(pb::ApplyRequest {
            spec: text,
            format,
            dry_run: args.dry_run,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    match connection.output {
        Output::Json => println!(
            "{}",
            json!({
                "service": applied.service, "revision": applied.revision, "created": applied.created,
                "deployment": applied.deployment.as_ref().map(deployment_json),
                "warnings": applied.warnings, "defaults_applied": applied.defaults_applied,
            })
        ),
        Output::Table => {
            if args.dry_run {
                println!("{}: the spec is valid", applied.service);
            } else if let Some(d) = &applied.deployment {
                println!(
                    "{} revision {}: deployment {} started ({})",
                    applied.service, applied.revision, d.id, d.strategy
                );
            } else {
                println!(
                    "{} revision {} is already deployed: nothing to do",
                    applied.service, applied.revision
                );
            }
            for filled in &applied.defaults_applied {
                println!("default filled in: {filled}");
            }
            for warning in &applied.warnings {
                println!("warning: {warning}");
            }
        }
    }
    if let Some(d) = applied.deployment.filter(|_| args.watch) {
        return watch(&connection, &d.id).await;
    }
    Ok(())
}

async fn watch(connection: &Connection, id: &str) -> anyhow::Result<()> {
    let mut client = deploy_client(connection);
    let mut stream = client
        .watch_deployment(pb::GetDeploymentRequest { id: id.to_owned() })
        .await
        .map_err(status_error)?
        .into_inner();
    let mut last = None;
    while let Some(event) = stream.message().await.map_err(status_error)? {
        match connection.output {
            Output::Json => println!(
                "{}",
                json!({"seq": event.seq, "at_ms": event.at_ms, "message": event.message,
                       "deployment": event.deployment.as_ref().map(deployment_json)})
            ),
            Output::Table => println!("{} {}", when(event.at_ms), event.message),
        }
        last = event.deployment;
    }
    let Some(last) = last else { return Ok(()) };
    if connection.output == Output::Table {
        println!("deployment {} {}", last.id, last.phase);
    }
    anyhow::ensure!(
        last.phase == "succeeded",
        "deployment {} ended {}",
        last.id,
        last.phase
    );
    Ok(())
}

#[derive(Debug, Subcommand)]
pub(super) enum ServicesCommand {
    /// List services.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a service and its allocations.
    Show {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub(super) async fn services(command: ServicesCommand) -> anyhow::Result<()> {
    match command {
        ServicesCommand::List { client } => {
            let connection = connect(&client)?;
            let list = deploy_client(&connection)
                .list_services(pb::ListServicesRequest {})
                .await
                .map_err(status_error)?
                .into_inner()
                .services;
            match connection.output {
                Output::Json => println!(
                    "{}",
                    serde_json::Value::Array(list.iter().map(service_json).collect())
                ),
                Output::Table => {
                    let now = SystemClock.now_ms();
                    let rows = list
                        .iter()
                        .map(|s| {
                            vec![
                                s.name.clone(),
                                s.current_revision.to_string(),
                                format!("{}/{}", s.healthy, s.replicas),
                                if s.active_deployment_id.is_empty() {
                                    "-".into()
                                } else {
                                    s.active_deployment_id.clone()
                                },
                                ago(s.updated_at_ms, now),
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        table(
                            &["name", "revision", "healthy", "deploying", "updated"],
                            rows
                        )
                    );
                }
            }
        }
        ServicesCommand::Show { name, client } => {
            let connection = connect(&client)?;
            let s = deploy_client(&connection)
                .get_service(pb::GetServiceRequest { name })
                .await
                .map_err(status_error)?
                .into_inner();
            print_service(connection.output, &s);
        }
    }
    Ok(())
}

fn print_service(output: Output, s: &pb::Service) {
    match output {
        Output::Json => println!("{}", service_json(s)),
        Output::Table => {
            println!("service:   {}", s.name);
            println!(
                "revision:  {} (last successful: {})",
                s.current_revision, s.stable_revision
            );
            if s.stopped {
                println!("stopped:   yes (`argosy scale` or `argosy apply` starts it again)");
            }
            println!(
                "healthy:   {} of {} replicas ({} running)",
                s.healthy, s.replicas, s.running
            );
            if !s.active_deployment_id.is_empty() {
                println!("deploying: {}", s.active_deployment_id);
            }
            let rows = s
                .allocations
                .iter()
                .map(|a| {
                    vec![
                        a.id.clone(),
                        a.revision.to_string(),
                        if a.host_id.is_empty() {
                            "-".into()
                        } else {
                            a.host_id.clone()
                        },
                        if a.stopping {
                            format!("{} (stopping)", a.state)
                        } else {
                            a.state.clone()
                        },
                        a.health.clone(),
                        a.restarts.to_string(),
                        a.message.clone(),
                    ]
                })
                .collect();
            println!(
                "{}",
                table(
                    &[
                        "allocation",
                        "rev",
                        "host",
                        "state",
                        "health",
                        "restarts",
                        "message"
                    ],
                    rows
                )
            );
            if !s.history.is_empty() {
                println!("history:");
                for e in &s.history {
                    println!("  {} [{}] {}", when(e.at_ms), e.deployment_id, e.message);
                }
            }
        }
    }
}

#[derive(Debug, Args)]
pub(super) struct RevisionsArgs {
    service: String,
    #[command(flatten)]
    client: ClientArgs,
}

pub(super) async fn revisions(args: RevisionsArgs) -> anyhow::Result<()> {
    let connection = connect(&args.client)?;
    let list = deploy_client(&connection)
        .list_revisions(pb::ListRevisionsRequest {
            service: args.service,
        })
        .await
        .map_err(status_error)?
        .into_inner()
        .revisions;
    match connection.output {
        Output::Json => println!(
            "{}",
            serde_json::Value::Array(list.iter().map(revision_json).collect())
        ),
        Output::Table => {
            let rows = list
                .iter()
                .map(|r| {
                    let mut secrets: Vec<String> = r
                        .secret_versions
                        .iter()
                        .map(|(name, version)| format!("{name}@{version}"))
                        .collect();
                    secrets.sort();
                    vec![
                        r.number.to_string(),
                        when(r.created_at_ms),
                        r.created_by.clone(),
                        secrets.join(" "),
                    ]
                })
                .collect();
            println!(
                "{}",
                table(&["revision", "created", "by", "secrets (followed)"], rows)
            );
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub(super) enum DeploymentsCommand {
    /// List deployments, newest first: all, or those of one service.
    List {
        service: Option<String>,
        /// At most this many (default 50).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a deployment.
    Show {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stream a deployment's progress until it ends (exit status 1 unless it succeeds).
    Watch {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Promote a blue-green or canary deployment waiting for it.
    Promote {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Freeze a deployment where it is.
    Pause {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Continue a paused deployment.
    Resume {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stop the new revision at once and restore the old one.
    Cancel {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn print_deployment(output: Output, d: &pb::Deployment) {
    match output {
        Output::Json => println!("{}", deployment_json(d)),
        Output::Table => {
            println!(
                "deployment {} of {}: revision {} → {} ({})",
                d.id, d.service, d.from_revision, d.to_revision, d.strategy
            );
            println!("phase:      {}", d.phase);
            println!(
                "new:        {} healthy of {} started, {} wanted; {} old still running",
                d.new_healthy, d.new_total, d.replicas, d.old_total
            );
            println!("started:    {} by {}", when(d.created_at_ms), d.created_by);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Steer {
    Show,
    Watch,
    Promote,
    Pause,
    Resume,
    Cancel,
}

pub(super) async fn deployments(command: DeploymentsCommand) -> anyhow::Result<()> {
    let (id, client, steer) = match command {
        DeploymentsCommand::List {
            service,
            limit,
            client,
        } => return list_deployments(service, limit, client).await,
        DeploymentsCommand::Show { id, client } => (id, client, Steer::Show),
        DeploymentsCommand::Watch { id, client } => (id, client, Steer::Watch),
        DeploymentsCommand::Promote { id, client } => (id, client, Steer::Promote),
        DeploymentsCommand::Pause { id, client } => (id, client, Steer::Pause),
        DeploymentsCommand::Resume { id, client } => (id, client, Steer::Resume),
        DeploymentsCommand::Cancel { id, client } => (id, client, Steer::Cancel),
    };
    let connection = connect(&client)?;
    if steer == Steer::Watch {
        return watch(&connection, &id).await;
    }
    let mut api = deploy_client(&connection);
    let request = pb::DeploymentCommand { id: id.clone() };
    let d = match steer {
        Steer::Promote => api.promote(request).await,
        Steer::Pause => api.pause(request).await,
        Steer::Resume => api.resume(request).await,
        Steer::Cancel => api.cancel(request).await,
        Steer::Show | Steer::Watch => api.get_deployment(pb::GetDeploymentRequest { id }).await,
    }
    .map_err(status_error)?
    .into_inner();
    print_deployment(connection.output, &d);
    Ok(())
}

async fn list_deployments(
    service: Option<String>,
    limit: u32,
    client: ClientArgs,
) -> anyhow::Result<()> {
    let connection = connect(&client)?;
    let list = deploy_client(&connection)
        .list_deployments(pb::ListDeploymentsRequest {
            service: service.unwrap_or_default(),
            limit,
        })
        .await
        .map_err(status_error)?
        .into_inner()
        .deployments;
    match connection.output {
        Output::Json => println!(
            "{}",
            serde_json::Value::Array(list.iter().map(deployment_json).collect())
        ),
        Output::Table => {
            let now = SystemClock.now_ms();
            let rows = list
                .iter()
                .map(|d| {
                    vec![
                        d.id.clone(),
                        d.service.clone(),
                        if d.from_revision == 0 {
                            d.to_revision.to_string()
                        } else {
                            format!("{} → {}", d.from_revision, d.to_revision)
                        },
                        d.strategy.clone(),
                        d.phase.clone(),
                        d.created_by.clone(),
                        ago(d.created_at_ms, now),
                    ]
                })
                .collect();
            println!(
                "{}",
                table(
                    &[
                        "id", "service", "revision", "strategy", "phase", "by", "started"
                    ],
                    rows
                )
            );
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub(super) struct RollbackArgs {
    service: String,
    /// Revision to go back to (default: the last one that deployed successfully).
    #[arg(long)]
    to: Option<u64>,
    #[command(flatten)]
    client: ClientArgs,
}

pub(super) async fn rollback(args: RollbackArgs) -> anyhow::Result<()> {
    let connection = connect(&args.client)?;
    let d = deploy_client(&connection)
        .rollback(pb::RollbackRequest {
            service: args.service,
            to_revision: args.to.unwrap_or(0),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    print_deployment(connection.output, &d);
    Ok(())
}

#[derive(Debug, Args)]
pub(super) struct ScaleArgs {
    service: String,
    /// How many allocations should run (0 to 1000).
    replicas: u32,
    #[command(flatten)]
    client: ClientArgs,
}

pub(super) async fn scale(args: ScaleArgs) -> anyhow::Result<()> {
    let connection = connect(&args.client)?;
    let change = deploy_client(&connection)
        .scale(pb::ScaleRequest {
            service: args.service,
            replicas: args.replicas,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    print_change(connection.output, &change);
    Ok(())
}

#[derive(Debug, Args)]
pub(super) struct StopArgs {
    service: String,
    #[command(flatten)]
    client: ClientArgs,
}

pub(super) async fn stop(args: StopArgs) -> anyhow::Result<()> {
    let connection = connect(&args.client)?;
    let change = deploy_client(&connection)
        .stop_service(pb::StopServiceRequest {
            service: args.service,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    print_change(connection.output, &change);
    Ok(())
}

fn print_change(output: Output, change: &pb::ServiceChange) {
    match output {
        Output::Json => println!("{}", service_change_json(change)),
        Output::Table => println!("{}", change.message),
    }
}

#[derive(Debug, Args)]
pub(super) struct LogsArgs {
    service: String,
    /// Only this allocation (default: every placed allocation, interleaved).
    #[arg(long)]
    alloc: Option<String>,
    /// Keep streaming new output.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Lines from the end per allocation.
    #[arg(long, default_value_t = 100)]
    tail: u32,
    #[command(flatten)]
    client: ClientArgs,
}

/// `argosy logs`: container output through the agents; stdout to stdout,
/// stderr to stderr, prefixed with the allocation when several are shown.
pub(super) async fn logs(args: LogsArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let connection = connect(&args.client)?;
    let several = args.alloc.is_none();
    let mut stream = deploy_client(&connection)
        .logs(pb::LogsRequest {
            service: args.service,
            allocation_id: args.alloc.unwrap_or_default(),
            follow: args.follow,
            tail: args.tail,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    while let Some(line) = stream.message().await.map_err(status_error)? {
        let prefix = if several {
            format!("{} | ", line.allocation_id)
        } else {
            String::new()
        };
        let text = String::from_utf8_lossy(&line.data);
        let mut out: Box<dyn std::io::Write> = if line.stderr {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::stdout())
        };
        for piece in text.split_inclusive('\n') {
            write!(out, "{prefix}{piece}")?;
        }
        out.flush()?;
    }
    Ok(())
}
