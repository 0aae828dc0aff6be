//! `argosy alert`: alerts (list, show, acknowledge), silences, rules
//! (built-in and custom, from flags or a file) and notification channels.

use super::client::{Bearer, ClientArgs, Connection, connect, status_error};
use super::output::{Output, ago, table};
use crate::clock::{Clock, SystemClock};
use crate::http::alerts::{alert_json, channel_json, rule_json, silence_json};
use anyhow::Context;
use argosy_proto::v1::{self as pb, alert_service_client::AlertServiceClient};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::path::PathBuf;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

type Client = AlertServiceClient<InterceptedService<Channel, Bearer>>;

fn client(connection: &Connection) -> Client {
    connection.client(AlertServiceClient::with_interceptor)
}

#[derive(Debug, Subcommand)]
pub(super) enum AlertCommand {
    /// List alerts, newest first.
    List {
        /// Only alerts in this state: pending, firing or resolved.
        #[arg(long)]
        state: Option<String>,
        /// At most this many (default 100).
        #[arg(long, default_value_t = 0)]
        limit: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show an alert and its history.
    Show {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Acknowledge an alert: no more reminders (its resolution is still sent).
    Ack {
        id: String,
        /// Why, or who is on it.
        #[arg(long, default_value = "")]
        comment: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Hold back notifications of matching alerts for a while.
    Silence {
        /// name=value or name!=value on the alert's labels (alertname,
        /// severity, host, hostname, region, service, allocation, …); repeatable.
        #[arg(long = "matcher", required = true)]
        matchers: Vec<String>,
        /// How long, e.g. 2h.
        #[arg(long = "for")]
        duration: String,
        /// Why (required).
        #[arg(long)]
        comment: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List active silences.
    Silences {
        /// Also those that ended in the last day.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// End a silence now.
    Unsilence {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Alert rules: list, add, apply a file, tune, enable, disable, remove.
    #[command(subcommand)]
    Rule(RuleCommand),
    /// Notification channels: webhooks, Slack-compatible chats, Alertmanager.
    #[command(subcommand)]
    Channel(ChannelCommand),
}

#[derive(Debug, Subcommand)]
pub(super) enum RuleCommand {
    /// List every rule, built-in and custom.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Add a custom rule.
    Add(AddRuleArgs),
    /// Create or replace the rules of a YAML or TOML file (`rules:` and a list).
    Apply {
        /// The rules file (.yaml, .yml or .toml).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Tune a rule: threshold, for, keep_firing_for, severity.
    Set {
        name: String,
        #[arg(long, allow_negative_numbers = true)]
        threshold: Option<f64>,
        /// How long the condition must hold, e.g. 5m (0s: at once).
        #[arg(long = "for")]
        for_duration: Option<String>,
        /// How long it stays firing after the condition stops holding.
        #[arg(long)]
        keep_firing_for: Option<String>,
        /// info, warning or critical.
        #[arg(long)]
        severity: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Switch a rule on.
    Enable {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Switch a rule off (its alerts resolve).
    Disable {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a custom rule (built-in rules can only be disabled).
    Remove {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Args)]
pub(super) struct AddRuleArgs {
    /// The alert name, e.g. WebCpuHigh.
    #[arg(long)]
    name: String,
    /// What to watch: cpu, memory, disk, load, load5, load15, swap_used,
    /// net_rx, net_tx, processes, offline_seconds, certificate_days_left,
    /// allocation_unhealthy, allocation_restarts, oom_kill, deployment_failed,
    /// backup_failed, backup_overdue, backup_verification_failed.
    #[arg(long)]
    metric: String,
    /// >, >=, < or <= (default >); events take none.
    #[arg(long)]
    op: Option<String>,
    #[arg(long, allow_negative_numbers = true)]
    threshold: Option<f64>,
    /// How long the condition must hold before it fires, e.g. 5m.
    #[arg(long = "for")]
    for_duration: Option<String>,
    /// How long it stays firing after the condition stops holding (events: after the event).
    #[arg(long)]
    keep_firing_for: Option<String>,
    /// info, warning (default) or critical.
    #[arg(long)]
    severity: Option<String>,
    /// Only hosts in this region.
    #[arg(long)]
    region: Option<String>,
    /// Only hosts with this label, key=value; repeatable.
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Only this host (id or hostname).
    #[arg(long)]
    host: Option<String>,
    /// Only this service (for host metrics: the hosts running it).
    #[arg(long)]
    service: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub(super) enum ChannelCommand {
    /// Add a channel.
    Add {
        name: String,
        /// webhook (Argosy's JSON), slack (Slack-compatible incoming
        /// webhook) or alertmanager (its base URL, e.g. http://am:9093).
        #[arg(long)]
        kind: String,
        #[arg(long)]
        url: String,
        /// Alerts below this severity do not reach it (default warning).
        #[arg(long)]
        min_severity: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List channels with their delivery statistics and last error.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a channel and its undelivered notifications.
    Remove {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Send a test notification now.
    Test {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn print_json(value: Value) {
    println!("{value}");
}

fn print_rule(output: Output, verb: &str, rule: &pb::AlertRule) {
    match output {
        Output::Json => print_json(rule_json(rule)),
        Output::Table => println!(
            "rule {} {verb}: {} ({}{})",
            rule.name,
            rule.condition,
            rule.severity,
            if rule.enabled { "" } else { ", disabled" }
        ),
    }
}

fn selector_text(r: &pb::AlertRule) -> String {
    let mut parts = Vec::new();
    if !r.region.is_empty() {
        parts.push(format!("region={}", r.region));
    }
    let mut labels: Vec<_> = r.labels.iter().collect();
    labels.sort();
    for (k, v) in labels {
        parts.push(format!("{k}={v}"));
    }
    if !r.host.is_empty() {
        parts.push(format!("host={}", r.host));
    }
    if !r.service.is_empty() {
        parts.push(format!("service={}", r.service));
    }
    if parts.is_empty() {
        "everywhere".into()
    } else {
        parts.join(",")
    }
}

fn print_alert(a: &pb::Alert, now: i64) {
    println!("alert:     {} ({})", a.id, a.rule);
    println!("state:     {} ({})", a.state, a.severity);
    println!("summary:   {}", a.summary);
    println!("condition: {}", a.condition);
    let mut labels: Vec<_> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    println!("labels:    {}", labels.join(","));
    println!("started:   {}", ago(a.started_at_ms, now));
    if a.firing_since_ms > 0 {
        println!("firing:    since {}", ago(a.firing_since_ms, now));
    }
    if a.resolved_at_ms > 0 {
        println!("resolved:  {}", ago(a.resolved_at_ms, now));
    }
    if a.acknowledged_at_ms > 0 {
        println!(
            "acked:     {} by {}{}",
            ago(a.acknowledged_at_ms, now),
            a.acknowledged_by,
            if a.acknowledge_comment.is_empty() {
                String::new()
            } else {
                format!(": {}", a.acknowledge_comment)
            }
        );
    }
    if !a.history.is_empty() {
        println!("history:");
        for e in &a.history {
            println!("  {} {}", crate::clock::format_ms(e.at_ms), e.message);
        }
    }
}

pub(super) async fn alert(command: AlertCommand) -> anyhow::Result<()> {
    let now = SystemClock.now_ms();
    match command {
        AlertCommand::List {
            state,
            limit,
            client: args,
        } => {
            let connection = connect(&args)?;
            let alerts = client(&connection)
                .list_alerts(pb::ListAlertsRequest {
                    state: state.unwrap_or_default(),
                    limit,
                })
                .await
                .map_err(status_error)?
                .into_inner()
                .alerts;
            match connection.output {
                Output::Json => print_json(alerts.iter().map(alert_json).collect()),
                Output::Table => {
                    let rows = alerts
                        .iter()
                        .map(|a| {
                            vec![
                                a.id.clone(),
                                a.state.clone(),
                                a.severity.clone(),
                                a.rule.clone(),
                                a.summary.clone(),
                                ago(a.started_at_ms, now),
                                if a.acknowledged_at_ms > 0 {
                                    a.acknowledged_by.clone()
                                } else {
                                    "-".into()
                                },
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        table(
                            &[
                                "id",
                                "state",
                                "severity",
                                "alertname",
                                "summary",
                                "started",
                                "acked"
                            ],
                            rows
                        )
                    );
                }
            }
        }
        AlertCommand::Show { id, client: args } => {
            let connection = connect(&args)?;
            let a = client(&connection)
                .get_alert(pb::GetAlertRequest { id })
                .await
                .map_err(status_error)?
                .into_inner();
            match connection.output {
                Output::Json => print_json(alert_json(&a)),
                Output::Table => print_alert(&a, now),
            }
        }
        AlertCommand::Ack {
            id,
            comment,
            client: args,
        } => {
            let connection = connect(&args)?;
            let a = client(&connection)
                .acknowledge_alert(pb::AcknowledgeAlertRequest { id, comment })
                .await
                .map_err(status_error)?
                .into_inner();
            match connection.output {
                Output::Json => print_json(alert_json(&a)),
                Output::Table => println!(
                    "alert {} ({}, {}) acknowledged by {}: no more reminders",
                    a.id, a.rule, a.state, a.acknowledged_by
                ),
            }
        }
        AlertCommand::Silence {
            matchers,
            duration,
            comment,
            client: args,
        } => {
            let connection = connect(&args)?;
            let s = client(&connection)
                .create_silence(pb::CreateSilenceRequest {
                    matchers,
                    duration,
                    comment,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            match connection.output {
                Output::Json => print_json(silence_json(&s)),
                Output::Table => println!(
                    "silence {} holds back alerts matching {} until {} (`argosy alert unsilence {}` ends it)",
                    s.id,
                    s.matchers.join(","),
                    crate::clock::format_ms(s.ends_at_ms),
                    s.id
                ),
            }
        }
        AlertCommand::Silences { all, client: args } => {
            let connection = connect(&args)?;
            let silences = client(&connection)
                .list_silences(pb::ListSilencesRequest {
                    include_expired: all,
                })
                .await
                .map_err(status_error)?
                .into_inner()
                .silences;
            match connection.output {
                Output::Json => print_json(silences.iter().map(silence_json).collect()),
                Output::Table => {
                    let rows = silences
                        .iter()
                        .map(|s| {
                            vec![
                                s.id.clone(),
                                s.matchers.join(","),
                                if s.active {
                                    format!("ends {}", ago(s.ends_at_ms, now))
                                } else {
                                    format!("ended {}", ago(s.ends_at_ms, now))
                                },
                                s.created_by.clone(),
                                s.comment.clone(),
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        table(&["id", "matchers", "until", "by", "comment"], rows)
                    );
                }
            }
        }
        AlertCommand::Unsilence { id, client: args } => {
            let connection = connect(&args)?;
            let s = client(&connection)
                .expire_silence(pb::ExpireSilenceRequest { id })
                .await
                .map_err(status_error)?
                .into_inner();
            match connection.output {
                Output::Json => print_json(silence_json(&s)),
                Output::Table => println!("silence {} ended", s.id),
            }
        }
        AlertCommand::Rule(command) => rule(command).await?,
        AlertCommand::Channel(command) => channel(command).await?,
    }
    Ok(())
}

fn parse_labels(pairs: &[String]) -> anyhow::Result<std::collections::HashMap<String, String>> {
    pairs
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .with_context(|| format!("--label {pair:?} is not key=value"))
        })
        .collect()
}

async fn rule(command: RuleCommand) -> anyhow::Result<()> {
    match command {
        RuleCommand::List { client: args } => {
            let connection = connect(&args)?;
            let rules = client(&connection)
                .list_rules(pb::ListRulesRequest {})
                .await
                .map_err(status_error)?
                .into_inner()
                .rules;
            match connection.output {
                Output::Json => print_json(rules.iter().map(rule_json).collect()),
                Output::Table => {
                    let rows = rules
                        .iter()
                        .map(|r| {
                            vec![
                                r.name.clone(),
                                r.condition.clone(),
                                r.severity.clone(),
                                selector_text(r),
                                if r.enabled { "yes" } else { "no" }.into(),
                                if r.builtin { "built-in" } else { "custom" }.into(),
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        table(
                            &["name", "condition", "severity", "where", "enabled", "kind"],
                            rows
                        )
                    );
                }
            }
        }
        RuleCommand::Add(args) => {
            let connection = connect(&args.client)?;
            let rule = client(&connection)
                .add_rule(pb::AddRuleRequest {
                    name: args.name,
                    metric: args.metric,
                    op: args.op.unwrap_or_default(),
                    threshold: args.threshold,
                    for_duration: args.for_duration.unwrap_or_default(),
                    keep_firing_for: args.keep_firing_for.unwrap_or_default(),
                    severity: args.severity.unwrap_or_default(),
                    region: args.region.unwrap_or_default(),
                    labels: parse_labels(&args.labels)?,
                    host: args.host.unwrap_or_default(),
                    service: args.service.unwrap_or_default(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            print_rule(connection.output, "added", &rule);
        }
        RuleCommand::Apply { file, client: args } => {
            let format = match file.extension().and_then(|e| e.to_str()) {
                Some("toml") => "toml",
                Some("yaml" | "yml") => "yaml",
                _ => anyhow::bail!(
                    "{} should end in .yaml, .yml or .toml (the extension says the format)",
                    file.display()
                ),
            };
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let connection = connect(&args)?;
            let applied = client(&connection)
                .apply_rules(pb::ApplyRulesRequest {
                    text,
                    format: format.into(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            match connection.output {
                Output::Json => print_json(json!({
                    "created": applied.created.iter().map(rule_json).collect::<Vec<_>>(),
                    "updated": applied.updated.iter().map(rule_json).collect::<Vec<_>>(),
                })),
                Output::Table => {
                    for r in &applied.created {
                        print_rule(Output::Table, "created", r);
                    }
                    for r in &applied.updated {
                        print_rule(Output::Table, "updated", r);
                    }
                }
            }
        }
        RuleCommand::Set {
            name,
            threshold,
            for_duration,
            keep_firing_for,
            severity,
            client: args,
        } => {
            anyhow::ensure!(
                threshold.is_some()
                    || for_duration.is_some()
                    || keep_firing_for.is_some()
                    || severity.is_some(),
                "nothing to change: pass --threshold, --for, --keep-firing-for or --severity"
            );
            update(
                &args,
                pb::UpdateRuleRequest {
                    name,
                    threshold,
                    for_duration,
                    keep_firing_for,
                    severity,
                    enabled: None,
                },
                "updated",
            )
            .await?;
        }
        RuleCommand::Enable { name, client: args } => {
            update(&args, toggle(name, true), "enabled").await?;
        }
        RuleCommand::Disable { name, client: args } => {
            update(&args, toggle(name, false), "disabled").await?;
        }
        RuleCommand::Remove { name, client: args } => {
            let connection = connect(&args)?;
            let rule = client(&connection)
                .remove_rule(pb::RemoveRuleRequest { name })
                .await
                .map_err(status_error)?
                .into_inner();
            print_rule(connection.output, "removed", &rule);
        }
    }
    Ok(())
}

fn toggle(name: String, enabled: bool) -> pb::UpdateRuleRequest {
    pb::UpdateRuleRequest {
        name,
        enabled: Some(enabled),
        ..pb::UpdateRuleRequest::default()
    }
}

async fn update(
    args: &ClientArgs,
    request: pb::UpdateRuleRequest,
    verb: &str,
) -> anyhow::Result<()> {
    let connection = connect(args)?;
    let rule = client(&connection)
        .update_rule(request)
        .await
        .map_err(status_error)?
        .into_inner();
    print_rule(connection.output, verb, &rule);
    Ok(())
}

async fn channel(command: ChannelCommand) -> anyhow::Result<()> {
    let now = SystemClock.now_ms();
    match command {
        ChannelCommand::Add {
            name,
            kind,
            url,
            min_severity,
            client: args,
        } => {
            let connection = connect(&args)?;
            let c = client(&connection)
                .add_channel(pb::AddChannelRequest {
                    name,
                    kind,
                    url,
                    min_severity: min_severity.unwrap_or_default(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            match connection.output {
                Output::Json => print_json(channel_json(&c)),
                Output::Table => println!(
                    "channel {} ({} at {}) added: it gets {} alerts and above",
                    c.name, c.kind, c.url, c.min_severity
                ),
            }
        }
        ChannelCommand::List { client: args } => {
            let connection = connect(&args)?;
            let channels = client(&connection)
                .list_channels(pb::ListChannelsRequest {})
                .await
                .map_err(status_error)?
                .into_inner()
                .channels;
            match connection.output {
                Output::Json => print_json(channels.iter().map(channel_json).collect()),
                Output::Table => {
                    let rows = channels
                        .iter()
                        .map(|c| {
                            vec![
                                c.name.clone(),
                                c.kind.clone(),
                                c.url.clone(),
                                c.min_severity.clone(),
                                c.delivered.to_string(),
                                c.failures.to_string(),
                                c.pending.to_string(),
                                c.retrying.to_string(),
                                c.given_up.to_string(),
                                if c.last_error.is_empty() {
                                    "-".into()
                                } else {
                                    format!("{} ({})", c.last_error, ago(c.last_error_ms, now))
                                },
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        table(
                            &[
                                "name",
                                "kind",
                                "url",
                                "min severity",
                                "delivered",
                                "failures",
                                "pending",
                                "retrying",
                                "given up",
                                "last error"
                            ],
                            rows
                        )
                    );
                }
            }
        }
        ChannelCommand::Remove { name, client: args } => {
            let connection = connect(&args)?;
            let c = client(&connection)
                .remove_channel(pb::RemoveChannelRequest { name })
                .await
                .map_err(status_error)?
                .into_inner();
            match connection.output {
                Output::Json => print_json(channel_json(&c)),
                Output::Table => println!("channel {} removed", c.name),
            }
        }
        ChannelCommand::Test { name, client: args } => {
            let connection = connect(&args)?;
            let tested = client(&connection)
                .test_channel(pb::TestChannelRequest { name: name.clone() })
                .await
                .map_err(status_error)?
                .into_inner();
            match connection.output {
                Output::Json => print_json(json!({
                    "delivered": tested.delivered,
                    "error": (!tested.error.is_empty()).then_some(&tested.error),
                })),
                Output::Table if tested.delivered => {
                    println!("channel {name}: the test notification was delivered")
                }
                Output::Table => {}
            }
            anyhow::ensure!(
                tested.delivered,
                "channel {name}: the test notification failed: {}",
                tested.error
            );
        }
    }
    Ok(())
}
