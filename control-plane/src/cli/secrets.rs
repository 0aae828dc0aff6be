//! `argosy secret …` and `argosy keys rotate-master`: secrets from files or
//! standard input (never from the command line, which shell history and
//! `ps` keep), listings without values, `get` printing the raw value.

use super::client::{ClientArgs, Connection, connect, status_error};
use super::output::{Output, ago, json, table};
use crate::clock::{Clock, SystemClock};
use crate::crypto::master_key::read_passphrase_file;
use crate::dto::{SecretJson, SecretVersionJson};
use anyhow::{Context, bail};
use argosy_proto::v1::{
    self as pb, key_service_client::KeyServiceClient, secret_service_client::SecretServiceClient,
};
use clap::{Args, Subcommand};
use serde_json::json;
use std::io::{Read, Write};
use std::path::PathBuf;
use zeroize::Zeroizing;

/// What `secret set` says when a value is given on the command line.
const VALUE_ON_COMMAND_LINE: &str = "refusing a secret value given on the command line: it would \
     stay in your shell history and show in `ps` to other users of this machine. Put the value in \
     a file and pass --from-file FILE (then delete the file), or pipe it in with --from-stdin";

#[derive(Debug, Subcommand)]
pub(super) enum SecretCommand {
    /// Create a secret, or store its next version, from a file or standard input.
    Set(ValueArgs),
    /// Names, versions and who changed them — never values.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a secret's value (admin only; the read is audited).
    Get {
        name: String,
        /// The version to read (default: the latest).
        #[arg(long)]
        version: Option<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Store a new version of an existing secret (fails if it does not exist).
    Rotate(ValueArgs),
    /// Delete a secret and every stored version.
    Delete {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The stored versions of a secret.
    Versions {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Args)]
pub(super) struct ValueArgs {
    /// The secret's name, like crm/db-password.
    name: String,
    /// Read the value from FILE (its exact bytes).
    #[arg(long, value_name = "FILE", conflicts_with = "from_stdin")]
    from_file: Option<PathBuf>,
    /// Read the value from standard input (its exact bytes).
    #[arg(long)]
    from_stdin: bool,
    /// Refused with a hint: values never go on the command line.
    #[arg(hide = true, allow_hyphen_values = true)]
    value_argument: Option<String>,
    /// Refused with a hint: values never go on the command line.
    #[arg(long = "value", hide = true, allow_hyphen_values = true)]
    value_flag: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub(super) enum KeysCommand {
    /// Re-wrap every secret's data key (and the audit key) under a new master
    /// key, while the control plane keeps serving. With the key file, the
    /// control plane makes the new key; with ARGOSY_MASTER_KEY, pass the new
    /// one (--new-key-file); with a passphrase, the new passphrase.
    RotateMaster(RotateMasterArgs),
}

#[derive(Debug, Args)]
pub(super) struct RotateMasterArgs {
    /// A file holding the new master key: base64 of 32 bytes (make one with
    /// `head -c 32 /dev/urandom | base64`).
    #[arg(long, value_name = "FILE", conflicts_with = "new_passphrase_file")]
    new_key_file: Option<PathBuf>,
    /// A file holding the new unseal passphrase (one trailing newline is ignored).
    #[arg(long, value_name = "FILE")]
    new_passphrase_file: Option<PathBuf>,
    #[command(flatten)]
    client: ClientArgs,
}

type SecretClient = SecretServiceClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        super::client::Bearer,
    >,
>;

fn secrets_client(connection: &Connection) -> SecretClient {
    connection.client(SecretServiceClient::with_interceptor)
}

/// The value from `--from-file` or `--from-stdin`; a value on the command
/// line is refused without being echoed.
fn read_value(args: &ValueArgs) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    if args.value_argument.is_some() || args.value_flag.is_some() {
        bail!("{VALUE_ON_COMMAND_LINE}");
    }
    let mut value = Zeroizing::new(Vec::new());
    match (&args.from_file, args.from_stdin) {
        (Some(path), _) => {
            let mut file = std::fs::File::open(path)
                .with_context(|| format!("cannot read the value file {}", path.display()))?;
            file.read_to_end(&mut value)
                .with_context(|| format!("cannot read the value file {}", path.display()))?;
        }
        (None, true) => {
            std::io::stdin()
                .read_to_end(&mut value)
                .context("cannot read the value from standard input")?;
        }
        (None, false) => bail!(
            "give the value with --from-file FILE or --from-stdin (never on the command line)"
        ),
    }
    Ok(value)
}

async fn set(args: ValueArgs, expect_existing: bool) -> anyhow::Result<()> {
    let value = read_value(&args)?;
    let connection = connect(&args.client)?;
    let set = secrets_client(&connection)
        .set_secret(pb::SetSecretRequest {
            name: args.name,
            value: value.to_vec(),
            expect_existing,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    match connection.output {
        Output::Json => println!(
            "{}",
            json(&json!({
                "name": set.name,
                "version": set.version,
                "created": set.created,
                "pruned_versions": set.pruned_versions,
            }))?
        ),
        Output::Table => {
            let what = if set.created { "created" } else { "stored" };
            let pruned = match set.pruned_versions.as_slice() {
                [] => String::new(),
                versions => format!(
                    " (deleted old version{} {})",
                    if versions.len() == 1 { "" } else { "s" },
                    versions
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            println!("secret {} version {} {what}{pruned}", set.name, set.version);
        }
    }
    Ok(())
}

pub(super) async fn secret(command: SecretCommand) -> anyhow::Result<()> {
    match command {
        SecretCommand::Set(args) => set(args, false).await,
        SecretCommand::Rotate(args) => set(args, true).await,
        SecretCommand::List { client } => {
            let connection = connect(&client)?;
            let secrets = secrets_client(&connection)
                .list_secrets(pb::ListSecretsRequest {})
                .await
                .map_err(status_error)?
                .into_inner()
                .secrets;
            match connection.output {
                Output::Json => {
                    let list: Vec<SecretJson> = secrets.into_iter().map(SecretJson::from).collect();
                    println!("{}", json(&list)?);
                }
                Output::Table => {
                    let now = SystemClock.now_ms();
                    let rows = secrets
                        .iter()
                        .map(|s| {
                            vec![
                                s.name.clone(),
                                s.latest_version.to_string(),
                                s.versions_kept.to_string(),
                                ago(s.updated_at_ms, now),
                                s.updated_by.clone(),
                                s.created_by.clone(),
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        table(
                            &[
                                "name",
                                "version",
                                "kept",
                                "updated",
                                "updated by",
                                "created by"
                            ],
                            rows
                        )
                    );
                }
            }
            Ok(())
        }
        SecretCommand::Get {
            name,
            version,
            client,
        } => {
            let connection = connect(&client)?;
            let secret = secrets_client(&connection)
                .get_secret(pb::GetSecretRequest {
                    name,
                    version: version.unwrap_or(0),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let value = Zeroizing::new(secret.value);
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&value)
                .and_then(|()| stdout.flush())
                .context("cannot write the value to standard output")?;
            Ok(())
        }
        SecretCommand::Delete { name, client } => {
            let connection = connect(&client)?;
            let deleted = secrets_client(&connection)
                .delete_secret(pb::DeleteSecretRequest { name })
                .await
                .map_err(status_error)?
                .into_inner();
            match connection.output {
                Output::Json => println!(
                    "{}",
                    json(&json!({
                        "name": deleted.name,
                        "versions_deleted": deleted.versions_deleted,
                    }))?
                ),
                Output::Table => println!(
                    "deleted secret {} ({} stored version{})",
                    deleted.name,
                    deleted.versions_deleted,
                    if deleted.versions_deleted == 1 {
                        ""
                    } else {
                        "s"
                    }
                ),
            }
            Ok(())
        }
        SecretCommand::Versions { name, client } => {
            let connection = connect(&client)?;
            let versions = secrets_client(&connection)
                .list_secret_versions(pb::ListSecretVersionsRequest { name })
                .await
                .map_err(status_error)?
                .into_inner()
                .versions;
            match connection.output {
                Output::Json => {
                    let list: Vec<SecretVersionJson> =
                        versions.into_iter().map(SecretVersionJson::from).collect();
                    println!("{}", json(&list)?);
                }
                Output::Table => {
                    let now = SystemClock.now_ms();
                    let rows = versions
                        .iter()
                        .map(|v| {
                            vec![
                                v.version.to_string(),
                                ago(v.created_at_ms, now),
                                v.created_by.clone(),
                                v.master_key_id.clone(),
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        table(&["version", "created", "by", "master key"], rows)
                    );
                }
            }
            Ok(())
        }
    }
}

pub(super) async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    let KeysCommand::RotateMaster(args) = command;
    let new_master_key = match &args.new_key_file {
        Some(path) => Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the new key file {}", path.display()))?
                .trim()
                .to_owned(),
        ),
        None => Zeroizing::new(String::new()),
    };
    let new_passphrase = match &args.new_passphrase_file {
        Some(path) => Zeroizing::new(read_passphrase_file(path)?.expose().to_owned()),
        None => Zeroizing::new(String::new()),
    };
    let connection = connect(&args.client)?;
    let rotated = connection
        .client(KeyServiceClient::with_interceptor)
        .rotate_master_key(pb::RotateMasterKeyRequest {
            new_master_key_base64: new_master_key.to_string(),
            new_passphrase: new_passphrase.to_string(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    match connection.output {
        Output::Json => println!(
            "{}",
            json(&json!({
                "old_key_id": rotated.old_key_id,
                "new_key_id": rotated.new_key_id,
                "data_keys_rewrapped": rotated.data_keys_rewrapped,
                "source": rotated.source,
                "next_step": rotated.next_step,
            }))?
        ),
        Output::Table => {
            println!(
                "master key rotated: {} -> {} ({} data keys re-wrapped, source {})",
                rotated.old_key_id, rotated.new_key_id, rotated.data_keys_rewrapped, rotated.source
            );
            println!("next: {}", rotated.next_step);
        }
    }
    Ok(())
}
