//! The API commands of the CLI: hosts, metrics, join tokens and API tokens.

use super::client::{ClientArgs, Connection, connect, status_error};
use super::output::{self, Output, ago, bytes, table, when};
use crate::clock::{Clock, SystemClock};
use crate::dto::{ApiTokenJson, HostJson, JoinTokenJson, MetricsJson, PointJson, status_name};
use anyhow::{Context, bail};
use argosy_proto::v1::{
    self as pb, api_token_service_client::ApiTokenServiceClient,
    fleet_service_client::FleetServiceClient, join_token_service_client::JoinTokenServiceClient,
};
use clap::{Args, Subcommand};
use std::collections::HashMap;

fn parse_label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("label {text:?} is not key=value"))
}

#[derive(Debug, Subcommand)]
pub(super) enum HostsCommand {
    /// List hosts.
    List {
        #[arg(long)]
        region: Option<String>,
        /// key=value; repeat to require several.
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one host in detail.
    Show {
        /// Host id or hostname.
        host: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cut a host off at once: its connection closes and its certificate is refused.
    Revoke {
        host: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stream host changes until interrupted.
    Watch {
        /// Also print every metric sample.
        #[arg(long)]
        metrics: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn now() -> i64 {
    SystemClock.now_ms()
}

/// Finds a host by id, or by hostname when that is unique.
async fn resolve_host(connection: &Connection, host: &str) -> anyhow::Result<pb::Host> {
    let mut fleet = connection.client(FleetServiceClient::with_interceptor);
    match fleet
        .get_host(pb::GetHostRequest {
            id: host.to_owned(),
        })
        .await
    {
        Ok(found) => return Ok(found.into_inner()),
        Err(status) if status.code() == tonic::Code::NotFound => {}
        Err(status) => return Err(status_error(status)),
    }
    let hosts = fleet
        .list_hosts(pb::ListHostsRequest::default())
        .await
        .map_err(status_error)?
        .into_inner()
        .hosts;
    let mut matches: Vec<pb::Host> = hosts.into_iter().filter(|h| h.hostname == host).collect();
    match matches.len() {
        1 => Ok(matches.remove(0)),
        0 => bail!("no host with id or hostname {host:?}; `argosy hosts list` shows them"),
        n => bail!("{n} hosts are named {host:?}; use the host id instead"),
    }
}

fn host_rows(hosts: &[pb::Host]) -> Vec<Vec<String>> {
    let now = now();
    hosts
        .iter()
        .map(|h| {
            let latest = h.latest.as_ref();
            vec![
                h.id.clone(),
                h.hostname.clone(),
                h.region.clone(),
                status_name(h.status).to_owned(),
                latest.map_or("-".into(), |s| format!("{:.1}%", s.cpu_percent)),
                latest.map_or("-".into(), |s| {
                    if s.memory_total_bytes == 0 {
                        "-".into()
                    } else {
                        format!(
                            "{:.1}%",
                            s.memory_used_bytes as f64 / s.memory_total_bytes as f64 * 100.0
                        )
                    }
                }),
                ago(h.last_seen_ms, now),
                h.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ]
        })
        .collect()
}

pub(super) async fn hosts(command: HostsCommand) -> anyhow::Result<()> {
    match command {
        HostsCommand::List {
            region,
            labels,
            client,
        } => {
            let connection = connect(&client)?;
            let mut fleet = connection.client(FleetServiceClient::with_interceptor);
            let hosts = fleet
                .list_hosts(pb::ListHostsRequest {
                    region: region.unwrap_or_default(),
                    labels: labels.into_iter().collect::<HashMap<_, _>>(),
                })
                .await
                .map_err(status_error)?
                .into_inner()
                .hosts;
            match connection.output {
                Output::Json => {
                    let json: Vec<HostJson> = hosts.into_iter().map(HostJson::from).collect();
                    println!("{}", output::json(&json)?);
                }
                Output::Table => println!(
                    "{}",
                    table(
                        &[
                            "id",
                            "hostname",
                            "region",
                            "status",
                            "cpu",
                            "memory",
                            "last seen",
                            "labels"
                        ],
                        host_rows(&hosts)
                    )
                ),
            }
        }
        HostsCommand::Show { host, client } => {
            let connection = connect(&client)?;
            let host = resolve_host(&connection, &host).await?;
            match connection.output {
                Output::Json => println!("{}", output::json(&HostJson::from(host))?),
                Output::Table => print_host(&host),
            }
        }
        HostsCommand::Revoke { host, client } => {
            let connection = connect(&client)?;
            let found = resolve_host(&connection, &host).await?;
            let mut fleet = connection.client(FleetServiceClient::with_interceptor);
            let revoked = fleet
                .revoke_host(pb::RevokeHostRequest {
                    id: found.id.clone(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            match connection.output {
                Output::Json => println!("{}", output::json(&HostJson::from(revoked))?),
                Output::Table => println!(
                    "revoked host {} ({}); it is disconnected and its certificate is refused",
                    found.id, found.hostname
                ),
            }
        }
        HostsCommand::Watch { metrics, client } => {
            let connection = connect(&client)?;
            let mut fleet = connection.client(FleetServiceClient::with_interceptor);
            let mut stream = fleet
                .watch_hosts(pb::WatchHostsRequest {
                    include_metrics: metrics,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            while let Some(event) = stream.message().await.map_err(status_error)? {
                let kind = pb::host_event::Kind::try_from(event.kind)
                    .map(|k| k.as_str_name().trim_start_matches("KIND_").to_lowercase())
                    .unwrap_or_else(|_| "unknown".into());
                let host = event.host.unwrap_or_default();
                match connection.output {
                    Output::Json => println!(
                        "{}",
                        serde_json::json!({ "kind": kind, "at_ms": event.at_ms, "host": HostJson::from(host) })
                    ),
                    Output::Table => println!(
                        "{} {kind:<9} {} {} {}",
                        when(event.at_ms),
                        host.id,
                        host.hostname,
                        host.region
                    ),
                }
            }
        }
    }
    Ok(())
}

fn print_host(h: &pb::Host) {
    let now = now();
    println!("id:            {}", h.id);
    println!("hostname:      {}", h.hostname);
    println!("region:        {}", h.region);
    let labels: Vec<String> = h.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!(
        "labels:        {}",
        if labels.is_empty() {
            "-".into()
        } else {
            labels.join(", ")
        }
    );
    println!("status:        {}", status_name(h.status));
    println!(
        "last seen:     {} ({})",
        when(h.last_seen_ms),
        ago(h.last_seen_ms, now)
    );
    println!("enrolled:      {}", when(h.enrolled_at_ms));
    println!(
        "certificate:   expires {} ({})",
        when(h.certificate_not_after_ms),
        ago(h.certificate_not_after_ms, now)
    );
    println!("interval:      {}s", h.interval_seconds);
    if !h.runtime_error.is_empty() {
        println!("runtime:       cannot run containers: {}", h.runtime_error);
    }
    if let Some(i) = &h.inventory {
        println!(
            "os:            {} {} (kernel {}, {})",
            i.os, i.os_version, i.kernel, i.arch
        );
        println!("cpu:           {} × {}", i.cpu_count, i.cpu_model);
        println!(
            "memory:        {} (swap {})",
            bytes(i.memory_bytes),
            bytes(i.swap_bytes)
        );
        println!("agent:         {}", i.agent_version);
        let docker = i.docker.clone().unwrap_or_default();
        if docker.available {
            println!("docker:        {}", docker.version);
        } else {
            println!("docker:        unavailable ({})", docker.error);
        }
        for d in &i.disks {
            println!(
                "disk:          {} {} {} {}",
                d.mount_point,
                d.device,
                d.filesystem,
                bytes(d.total_bytes)
            );
        }
    }
    if let Some(s) = &h.latest {
        println!(
            "latest sample: {} ({})",
            when(s.timestamp_ms),
            ago(s.timestamp_ms, now)
        );
        println!(
            "  cpu          {:.1}%  load {:.2} {:.2} {:.2}",
            s.cpu_percent, s.load1, s.load5, s.load15
        );
        println!(
            "  memory       {} used, {} available of {}",
            bytes(s.memory_used_bytes),
            bytes(s.memory_available_bytes),
            bytes(s.memory_total_bytes)
        );
        println!(
            "  swap         {} of {}",
            bytes(s.swap_used_bytes),
            bytes(s.swap_total_bytes)
        );
        for d in &s.disks {
            println!(
                "  disk         {} {} of {}",
                d.mount_point,
                bytes(d.used_bytes),
                bytes(d.total_bytes)
            );
        }
        println!(
            "  network      rx {}/s tx {}/s",
            bytes(s.net_rx_bytes_per_second as u64),
            bytes(s.net_tx_bytes_per_second as u64)
        );
        println!(
            "  uptime       {}s, {} processes",
            s.uptime_seconds, s.process_count
        );
    }
}

#[derive(Debug, Args)]
pub(super) struct MetricsArgs {
    /// Host id or hostname.
    host: String,
    /// cpu, load1, load5, load15, memory_used, memory_available, memory_percent, swap_used, disk_used_percent, net_rx, net_tx, uptime, processes.
    #[arg(long, default_value = "cpu")]
    metric: String,
    /// How far back, e.g. 10m, 24h.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    since: std::time::Duration,
    /// Bucket width, e.g. 30s, 5m (default: about 300 points).
    #[arg(long, value_parser = humantime::parse_duration)]
    step: Option<std::time::Duration>,
    #[command(flatten)]
    client: ClientArgs,
}

pub(super) async fn metrics(args: MetricsArgs) -> anyhow::Result<()> {
    let connection = connect(&args.client)?;
    let host = resolve_host(&connection, &args.host).await?;
    let mut fleet = connection.client(FleetServiceClient::with_interceptor);
    let now = now();
    let since_ms = i64::try_from(args.since.as_millis()).context("--since is too long")?;
    let result = fleet
        .query_metrics(pb::QueryMetricsRequest {
            host_id: host.id.clone(),
            metric: args.metric,
            start_ms: now - since_ms,
            end_ms: now,
            step_ms: args
                .step
                .map_or(0, |s| i64::try_from(s.as_millis()).unwrap_or(i64::MAX)),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    match connection.output {
        Output::Json => {
            let json = MetricsJson {
                host_id: result.host_id,
                metric: result.metric,
                unit: result.unit,
                step_ms: result.step_ms,
                points: result
                    .points
                    .into_iter()
                    .map(|p| PointJson {
                        timestamp_ms: p.timestamp_ms,
                        avg: p.avg,
                        max: p.max,
                    })
                    .collect(),
            };
            println!("{}", output::json(&json)?);
        }
        Output::Table => {
            println!(
                "{} on {} ({}), step {}s, {} points",
                result.metric,
                host.hostname,
                result.unit,
                result.step_ms / 1000,
                result.points.len()
            );
            let rows = result
                .points
                .iter()
                .map(|p| {
                    vec![
                        when(p.timestamp_ms),
                        format!("{:.2}", p.avg),
                        format!("{:.2}", p.max),
                    ]
                })
                .collect();
            println!("{}", table(&["time", "avg", "max"], rows));
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub(super) enum JoinTokenCommand {
    /// Create a join token and print the join string and install command.
    Create {
        /// Region the enrolled hosts belong to.
        #[arg(long, default_value = "default")]
        region: String,
        /// key=value label given to enrolled hosts; repeat for several.
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// How long the token is valid.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
        /// How many hosts may enroll with it (0 = unlimited until it expires).
        #[arg(long, default_value_t = 0)]
        uses: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List join tokens.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a join token.
    Revoke {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub(super) async fn join_token(command: JoinTokenCommand) -> anyhow::Result<()> {
    match command {
        JoinTokenCommand::Create {
            region,
            labels,
            ttl,
            uses,
            client,
        } => {
            let connection = connect(&client)?;
            let mut tokens = connection.client(JoinTokenServiceClient::with_interceptor);
            let created = tokens
                .create_join_token(pb::CreateJoinTokenRequest {
                    region,
                    labels: labels.into_iter().collect(),
                    ttl_seconds: ttl.as_secs(),
                    max_uses: uses,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let token = created.token.unwrap_or_default();
            match connection.output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "token": JoinTokenJson::from(token),
                        "join_string": created.join_string,
                        "install_command": created.install_command,
                    }))?
                ),
                Output::Table => {
                    println!(
                        "join token {} for region {} (expires {})",
                        token.id,
                        token.region,
                        when(token.expires_at_ms)
                    );
                    println!();
                    println!("join string (shown once):");
                    println!("  {}", created.join_string);
                    println!();
                    println!("on a new host:");
                    println!("  {}", created.install_command);
                    println!("or run the agent directly:");
                    println!("  argosy-agent run --join '{}'", created.join_string);
                }
            }
        }
        JoinTokenCommand::List { client } => {
            let connection = connect(&client)?;
            let mut tokens = connection.client(JoinTokenServiceClient::with_interceptor);
            let list = tokens
                .list_join_tokens(pb::ListJoinTokensRequest {})
                .await
                .map_err(status_error)?
                .into_inner()
                .tokens;
            match connection.output {
                Output::Json => {
                    let json: Vec<JoinTokenJson> =
                        list.into_iter().map(JoinTokenJson::from).collect();
                    println!("{}", output::json(&json)?);
                }
                Output::Table => {
                    let now = now();
                    let rows = list
                        .iter()
                        .map(|t| {
                            let state = if t.revoked {
                                "revoked"
                            } else if t.expires_at_ms <= now {
                                "expired"
                            } else if t.max_uses > 0 && t.uses >= t.max_uses {
                                "used up"
                            } else {
                                "active"
                            };
                            vec![
                                t.id.clone(),
                                t.region.clone(),
                                state.to_owned(),
                                if t.max_uses == 0 {
                                    format!("{}/∞", t.uses)
                                } else {
                                    format!("{}/{}", t.uses, t.max_uses)
                                },
                                ago(t.expires_at_ms, now),
                                t.created_by.clone(),
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        table(
                            &["id", "region", "state", "uses", "expires", "created by"],
                            rows
                        )
                    );
                }
            }
        }
        JoinTokenCommand::Revoke { id, client } => {
            let connection = connect(&client)?;
            let mut tokens = connection.client(JoinTokenServiceClient::with_interceptor);
            tokens
                .revoke_join_token(pb::RevokeJoinTokenRequest { id: id.clone() })
                .await
                .map_err(status_error)?;
            println!("revoked join token {id}");
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub(super) enum TokenCommand {
    /// Create an API token (the secret is shown once).
    Create {
        /// Who or what uses it, e.g. "ci-deploy".
        #[arg(long)]
        name: String,
        /// admin, operator or viewer.
        #[arg(long, default_value = "viewer")]
        role: crate::auth::Role,
        /// Lifetime, e.g. 30d (default: no expiry).
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<std::time::Duration>,
        #[command(flatten)]
        scope: super::users::ScopeArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List API tokens.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke an API token.
    Revoke {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show which token and role the CLI uses (`argosy whoami` also shows the scope).
    Whoami {
        #[command(flatten)]
        client: ClientArgs,
    },
}

impl clap::builder::ValueParserFactory for crate::auth::Role {
    type Parser = clap::builder::ValueParser;
    fn value_parser() -> Self::Parser {
        clap::builder::ValueParser::new(|s: &str| s.parse::<crate::auth::Role>())
    }
}

pub(super) async fn token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            name,
            role,
            ttl,
            scope,
            client,
        } => {
            let connection = connect(&client)?;
            let mut tokens = connection.client(ApiTokenServiceClient::with_interceptor);
            let role = match role {
                crate::auth::Role::Admin => pb::Role::Admin,
                crate::auth::Role::Operator => pb::Role::Operator,
                crate::auth::Role::Viewer => pb::Role::Viewer,
            };
            let created = tokens
                .create_api_token(pb::CreateApiTokenRequest {
                    name,
                    role: role as i32,
                    ttl_seconds: ttl.map_or(0, |t| t.as_secs()),
                    scope: Some(scope.wire()),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let token = created.token.unwrap_or_default();
            match connection.output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "token": ApiTokenJson::from(token),
                        "secret": created.secret,
                    }))?
                ),
                Output::Table => {
                    println!(
                        "API token {} ({:?}, role {}, {})",
                        token.id,
                        token.name,
                        crate::dto::role_name(token.role),
                        super::users::describe_scope(token.scope.as_ref())
                    );
                    println!("secret (shown once, only its hash is stored):");
                    println!("  {}", created.secret);
                }
            }
        }
        TokenCommand::List { client } => {
            let connection = connect(&client)?;
            let mut tokens = connection.client(ApiTokenServiceClient::with_interceptor);
            let list = tokens
                .list_api_tokens(pb::ListApiTokensRequest {})
                .await
                .map_err(status_error)?
                .into_inner()
                .tokens;
            match connection.output {
                Output::Json => {
                    let json: Vec<ApiTokenJson> =
                        list.into_iter().map(ApiTokenJson::from).collect();
                    println!("{}", output::json(&json)?);
                }
                Output::Table => {
                    let now = now();
                    let rows = list
                        .iter()
                        .map(|t| {
                            vec![
                                t.id.clone(),
                                t.name.clone(),
                                crate::dto::role_name(t.role).to_owned(),
                                if t.revoked {
                                    "revoked".into()
                                } else {
                                    "active".into()
                                },
                                if t.expires_at_ms == 0 {
                                    "never".into()
                                } else {
                                    ago(t.expires_at_ms, now)
                                },
                                ago(t.last_used_ms, now),
                                super::users::describe_scope(t.scope.as_ref()),
                                if t.user.is_empty() {
                                    "token"
                                } else {
                                    "session"
                                }
                                .to_owned(),
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        table(
                            &[
                                "id",
                                "name",
                                "role",
                                "state",
                                "expires",
                                "last used",
                                "scope",
                                "kind"
                            ],
                            rows
                        )
                    );
                }
            }
        }
        TokenCommand::Revoke { id, client } => {
            let connection = connect(&client)?;
            let mut tokens = connection.client(ApiTokenServiceClient::with_interceptor);
            tokens
                .revoke_api_token(pb::RevokeApiTokenRequest { id: id.clone() })
                .await
                .map_err(status_error)?;
            println!("revoked API token {id}");
        }
        TokenCommand::Whoami { client } => {
            let (output, me) = super::users::who_am_i(&client).await?;
            match output {
                Output::Json => println!("{}", output::json(&crate::dto::WhoAmIJson::from(me))?),
                Output::Table => println!(
                    "{} ({}), role {}",
                    me.name,
                    me.token_id,
                    crate::dto::role_name(me.role)
                ),
            }
        }
    }
    Ok(())
}
