//! `argosy policy`: Wasm policies — add (or replace with a new version),
//! list, show, enable, disable, remove, and test on an input file.

use super::client::{Bearer, ClientArgs, Connection, connect, status_error};
use super::output::{Output, ago, bytes, table, when};
use crate::clock::{Clock, SystemClock};
use crate::http::policies::{policy_json, test_json};
use anyhow::Context;
use argosy_proto::v1::{self as pb, policy_service_client::PolicyServiceClient};
use clap::Subcommand;
use std::path::PathBuf;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

type Client = PolicyServiceClient<InterceptedService<Channel, Bearer>>;

/// The largest message the CLI sends or accepts (a module at the upload
/// limit and its configuration).
const MESSAGE_BYTES: usize = 9 << 20;

fn client(connection: &Connection) -> Client {
    connection
        .client(PolicyServiceClient::with_interceptor)
        .max_encoding_message_size(MESSAGE_BYTES)
        .max_decoding_message_size(MESSAGE_BYTES)
}

#[derive(Debug, Subcommand)]
pub(super) enum PolicyCommand {
    /// Upload a Wasm module as a policy (enabled at once).
    Add {
        name: String,
        /// deployment.admit, placement.filter or rollout.analyze.
        #[arg(long)]
        hook: String,
        /// The module (.wasm, built for wasm32-unknown-unknown).
        #[arg(long)]
        file: PathBuf,
        /// A JSON file with the policy's configuration (an object).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Upload it as the next version of the existing policy NAME.
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List policies.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a policy and its versions.
    Show {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Let a policy take part in decisions again.
    Enable {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Keep a policy (and its versions) but stop consulting it.
    Disable {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a policy and its versions.
    Remove {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Evaluate a policy on an input (JSON, the hook's input object; see
    /// docs/policies.md) with no side effect: prints the decision and the
    /// time it took.
    Test {
        name: String,
        #[arg(long)]
        input: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn read(path: &PathBuf, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
}

fn print_policy(output: Output, verb: &str, policy: &pb::Policy) {
    match output {
        Output::Json => println!("{}", policy_json(policy)),
        Output::Table => println!(
            "policy {} {verb}: {} version {} (sha256:{}), {}",
            policy.name,
            policy.hook,
            policy.version,
            policy.sha256,
            if policy.enabled {
                "enabled"
            } else {
                "disabled"
            }
        ),
    }
}

pub(super) async fn policy(command: PolicyCommand) -> anyhow::Result<()> {
    let now = SystemClock.now_ms();
    match command {
        PolicyCommand::Add {
            name,
            hook,
            file,
            config,
            replace,
            client: args,
        } => {
            let wasm = read(&file, "module")?;
            let config_json = match config {
                Some(path) => String::from_utf8(read(&path, "configuration")?)
                    .with_context(|| format!("{} is not UTF-8 text", path.display()))?,
                None => String::new(),
            };
            let connection = connect(&args)?;
            let policy = client(&connection)
                .add_policy(pb::AddPolicyRequest {
                    name,
                    hook,
                    wasm,
                    config_json,
                    replace,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            print_policy(
                connection.output,
                if replace { "replaced" } else { "added" },
                &policy,
            );
        }
        PolicyCommand::List { client: args } => {
            let connection = connect(&args)?;
            let policies = client(&connection)
                .list_policies(pb::ListPoliciesRequest {})
                .await
                .map_err(status_error)?
                .into_inner()
                .policies;
            match connection.output {
                Output::Json => println!(
                    "{}",
                    serde_json::Value::Array(policies.iter().map(policy_json).collect())
                ),
                Output::Table => {
                    let rows = policies
                        .iter()
                        .map(|p| {
                            vec![
                                p.name.clone(),
                                p.hook.clone(),
                                if p.enabled { "yes" } else { "no" }.to_owned(),
                                p.version.to_string(),
                                p.sha256.chars().take(12).collect(),
                                bytes(p.size_bytes),
                                format!("{} by {}", ago(p.updated_at_ms, now), p.updated_by),
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        table(
                            &[
                                "NAME", "HOOK", "ENABLED", "VERSION", "SHA256", "SIZE", "UPDATED"
                            ],
                            rows
                        )
                    );
                }
            }
        }
        PolicyCommand::Show { name, client: args } => {
            let connection = connect(&args)?;
            let policy = client(&connection)
                .get_policy(pb::GetPolicyRequest { name })
                .await
                .map_err(status_error)?
                .into_inner();
            match connection.output {
                Output::Json => println!("{}", policy_json(&policy)),
                Output::Table => {
                    println!("name:     {}", policy.name);
                    println!("hook:     {}", policy.hook);
                    println!("enabled:  {}", policy.enabled);
                    println!("version:  {} (sha256:{})", policy.version, policy.sha256);
                    println!("size:     {}", bytes(policy.size_bytes));
                    println!("config:   {}", policy.config_json);
                    println!(
                        "updated:  {} by {}",
                        when(policy.updated_at_ms),
                        policy.updated_by
                    );
                    let rows = policy
                        .versions
                        .iter()
                        .map(|v| {
                            vec![
                                v.version.to_string(),
                                v.sha256.clone(),
                                bytes(v.size_bytes),
                                v.config_json.clone(),
                                format!("{} by {}", when(v.created_at_ms), v.created_by),
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        table(&["VERSION", "SHA256", "SIZE", "CONFIG", "CREATED"], rows)
                    );
                }
            }
        }
        PolicyCommand::Enable { name, client: args } => {
            let connection = connect(&args)?;
            let policy = client(&connection)
                .enable_policy(pb::EnablePolicyRequest { name })
                .await
                .map_err(status_error)?
                .into_inner();
            print_policy(connection.output, "enabled", &policy);
        }
        PolicyCommand::Disable { name, client: args } => {
            let connection = connect(&args)?;
            let policy = client(&connection)
                .disable_policy(pb::DisablePolicyRequest { name })
                .await
                .map_err(status_error)?
                .into_inner();
            print_policy(connection.output, "disabled", &policy);
        }
        PolicyCommand::Remove { name, client: args } => {
            let connection = connect(&args)?;
            let policy = client(&connection)
                .remove_policy(pb::RemovePolicyRequest { name })
                .await
                .map_err(status_error)?
                .into_inner();
            print_policy(connection.output, "removed", &policy);
        }
        PolicyCommand::Test {
            name,
            input,
            client: args,
        } => {
            let input_json = String::from_utf8(read(&input, "input")?)
                .with_context(|| format!("{} is not UTF-8 text", input.display()))?;
            let connection = connect(&args)?;
            let result = client(&connection)
                .test_policy(pb::TestPolicyRequest { name, input_json })
                .await
                .map_err(status_error)?
                .into_inner();
            match connection.output {
                Output::Json => println!("{}", test_json(&result)),
                Output::Table => {
                    println!(
                        "{} ({} version {}): {} in {} µs",
                        result.policy,
                        result.hook,
                        result.version,
                        result.decision,
                        result.elapsed_us
                    );
                    for reason in &result.reasons {
                        println!("  reason: {reason}");
                    }
                    for warning in &result.warnings {
                        println!("  warning: {warning}");
                    }
                    if !result.defaults_json.is_empty() {
                        println!("  defaults: {}", result.defaults_json);
                    }
                }
            }
        }
    }
    Ok(())
}
