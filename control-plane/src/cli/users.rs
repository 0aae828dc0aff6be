//! The CLI for people and scopes: `argosy user add|remove|passwd|list`,
//! `argosy login --user`, `argosy logout` and `argosy whoami`. Passwords are
//! read from the terminal without echo (`rpassword`) or, for scripts, one
//! per line from standard input (`--password-stdin`) — never from a flag,
//! which would land in the shell history.

use super::client::{ClientArgs, connect, forget_saved_token, save_config, status_error};
use super::output::{self, Output, ago, table, when};
use crate::auth::{Role, Scope};
use crate::clock::{Clock, SystemClock};
use crate::dto::{UserJson, WhoAmIJson, role_name};
use anyhow::{Context, bail};
use argosy_proto::v1::{
    self as pb, api_token_service_client::ApiTokenServiceClient,
    session_service_client::SessionServiceClient, user_service_client::UserServiceClient,
};
use clap::{Args, Subcommand};
use std::io::BufRead;

/// `--scope-region` and `--scope-service`, for users and API tokens.
#[derive(Debug, Clone, Default, Args)]
pub(super) struct ScopeArgs {
    /// Limit to hosts and services in REGION; repeat for several (default:
    /// every region).
    #[arg(long = "scope-region", value_name = "REGION")]
    regions: Vec<String>,
    /// Limit to services and secrets whose names start with PREFIX; repeat
    /// for several (default: every name).
    #[arg(long = "scope-service", value_name = "PREFIX")]
    service_prefixes: Vec<String>,
}

impl ScopeArgs {
    /// The scope for the wire (the server validates it).
    pub(super) fn wire(&self) -> pb::Scope {
        pb::Scope {
            regions: self.regions.clone(),
            service_prefixes: self.service_prefixes.clone(),
        }
    }
}

/// Where passwords come from.
#[derive(Debug, Clone, Default, Args)]
pub(super) struct PasswordInput {
    /// Read the password from standard input, one line (for `user passwd`
    /// without a name: the current password, then the new one), instead of
    /// asking on the terminal.
    #[arg(long)]
    password_stdin: bool,
}

/// Reads passwords from standard input or the terminal, in order.
struct Passwords {
    lines: Option<std::io::Lines<std::io::StdinLock<'static>>>,
}

impl Passwords {
    fn new(input: &PasswordInput) -> Self {
        Self {
            lines: input
                .password_stdin
                .then(|| std::io::stdin().lock().lines()),
        }
    }

    /// The next password: a line of standard input, or asked for on the
    /// terminal without echo.
    fn read(&mut self, prompt: &str) -> anyhow::Result<String> {
        match &mut self.lines {
            Some(lines) => {
                let line = lines
                    .next()
                    .context("standard input ended before the password (--password-stdin reads one per line)")?
                    .context("cannot read the password from standard input")?;
                Ok(line.trim_end_matches('\r').to_owned())
            }
            None => rpassword::prompt_password(prompt).context(
                "cannot ask for the password without a terminal; pipe it in with --password-stdin",
            ),
        }
    }

    /// A new password: checked against the rules here for a quick answer
    /// (the server checks again), and typed twice on a terminal.
    fn read_new(&mut self, prompt: &str) -> anyhow::Result<String> {
        let password = self.read(prompt)?;
        crate::passwords::check_password_rules(&password)?;
        if self.lines.is_none() && self.read("Repeat it: ")? != password {
            bail!("the two passwords differ; nothing was changed");
        }
        Ok(password)
    }
}

/// How a scope reads for people: "the whole fleet", "regions eu-west and
/// names crm*".
pub(super) fn describe_scope(scope: Option<&pb::Scope>) -> String {
    let scope = scope.cloned().unwrap_or_default();
    Scope {
        regions: scope.regions.into_iter().collect(),
        service_prefixes: scope.service_prefixes.into_iter().collect(),
    }
    .to_string()
}

fn role_wire(role: Role) -> pb::Role {
    match role {
        Role::Admin => pb::Role::Admin,
        Role::Operator => pb::Role::Operator,
        Role::Viewer => pb::Role::Viewer,
    }
}

#[derive(Debug, Subcommand)]
pub(super) enum UserCommand {
    /// Add a user who logs in with a password (asked for, or --password-stdin).
    Add {
        /// 1–64 lowercase letters, digits, '.', '_' or '-'.
        name: String,
        /// admin, operator or viewer.
        #[arg(long)]
        role: Role,
        #[command(flatten)]
        scope: ScopeArgs,
        #[command(flatten)]
        password: PasswordInput,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a user; their sessions end at once.
    Remove {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change your own password (asks for the current one), or as an admin
    /// reset NAME's. Ends the user's other sessions.
    Passwd {
        name: Option<String>,
        #[command(flatten)]
        password: PasswordInput,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List users (never their passwords).
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub(super) async fn user(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add {
            name,
            role,
            scope,
            password,
            client,
        } => {
            let password = Passwords::new(&password).read_new(&format!("Password for {name}: "))?;
            let connection = connect(&client)?;
            let mut users = connection.client(UserServiceClient::with_interceptor);
            let added = users
                .add_user(pb::AddUserRequest {
                    name,
                    role: role_wire(role) as i32,
                    scope: Some(scope.wire()),
                    password,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            match connection.output {
                Output::Json => println!("{}", output::json(&UserJson::from(added))?),
                Output::Table => println!(
                    "added user {} (role {}, {}); they log in with `argosy login --user {}`",
                    added.name,
                    role_name(added.role),
                    describe_scope(added.scope.as_ref()),
                    added.name
                ),
            }
        }
        UserCommand::Remove { name, client } => {
            let connection = connect(&client)?;
            let mut users = connection.client(UserServiceClient::with_interceptor);
            users
                .remove_user(pb::RemoveUserRequest { name: name.clone() })
                .await
                .map_err(status_error)?;
            println!("removed user {name}; their sessions have ended");
        }
        UserCommand::Passwd {
            name,
            password,
            client,
        } => {
            let mut passwords = Passwords::new(&password);
            let (current_password, new_password) = match &name {
                None => (
                    passwords.read("Current password: ")?,
                    passwords.read_new("New password: ")?,
                ),
                Some(name) => (
                    String::new(),
                    passwords.read_new(&format!("New password for {name}: "))?,
                ),
            };
            let connection = connect(&client)?;
            let mut users = connection.client(UserServiceClient::with_interceptor);
            let changed = users
                .set_password(pb::SetPasswordRequest {
                    name: name.unwrap_or_default(),
                    current_password,
                    new_password,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            println!(
                "changed the password of {}; their other sessions have ended",
                changed.name
            );
        }
        UserCommand::List { client } => {
            let connection = connect(&client)?;
            let mut users = connection.client(UserServiceClient::with_interceptor);
            let list = users
                .list_users(pb::ListUsersRequest {})
                .await
                .map_err(status_error)?
                .into_inner()
                .users;
            match connection.output {
                Output::Json => {
                    let json: Vec<UserJson> = list.into_iter().map(UserJson::from).collect();
                    println!("{}", output::json(&json)?);
                }
                Output::Table => {
                    let now = SystemClock.now_ms();
                    let rows = list
                        .iter()
                        .map(|u| {
                            vec![
                                u.name.clone(),
                                role_name(u.role).to_owned(),
                                describe_scope(u.scope.as_ref()),
                                u.created_by.clone(),
                                ago(u.password_changed_at_ms, now),
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        table(
                            &["name", "role", "scope", "created by", "password changed"],
                            rows
                        )
                    );
                }
            }
        }
    }
    Ok(())
}

/// `argosy login --user NAME`: logs in with a password and saves the
/// session token where `argosy login` saves API tokens.
pub(super) async fn login(
    user: &str,
    password: &PasswordInput,
    ttl: std::time::Duration,
    client: &ClientArgs,
) -> anyhow::Result<()> {
    let password = Passwords::new(password).read(&format!("Password for {user}: "))?;
    let connection = connect(client)?;
    let mut sessions = connection.client(SessionServiceClient::with_interceptor);
    let session = sessions
        .login(pb::LoginRequest {
            username: user.to_owned(),
            password,
            ttl_seconds: ttl.as_secs(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let path = save_config(client, Some(session.token))?;
    println!(
        "logged in as user:{} (role {}, {}) until {}; saved to {}",
        session.username,
        role_name(session.role),
        describe_scope(session.scope.as_ref()),
        when(session.expires_at_ms),
        path.display()
    );
    Ok(())
}

#[derive(Debug, Args)]
pub(super) struct LogoutArgs {
    #[command(flatten)]
    client: ClientArgs,
}

/// `argosy logout`: ends the login session in use and forgets the saved
/// token.
pub(super) async fn logout(args: LogoutArgs) -> anyhow::Result<()> {
    let connection = connect(&args.client)?;
    let mut sessions = connection.client(SessionServiceClient::with_interceptor);
    let ended = sessions.logout(pb::LogoutRequest {}).await;
    let note = match ended {
        Ok(ended) => format!("logged out: session {} ended", ended.into_inner().token_id),
        // The session ended already (expired, revoked, user removed).
        Err(status) if status.code() == tonic::Code::Unauthenticated => {
            format!("the session had already ended ({})", status.message())
        }
        // An API token: it stays valid; only the saved copy goes.
        Err(status) if status.code() == tonic::Code::FailedPrecondition => {
            status.message().to_owned()
        }
        Err(status) => return Err(status_error(status)),
    };
    match forget_saved_token(&args.client)? {
        Some(path) => println!("{note}; removed the token from {}", path.display()),
        None => println!("{note}"),
    }
    Ok(())
}

#[derive(Debug, Args)]
pub(super) struct WhoAmIArgs {
    #[command(flatten)]
    client: ClientArgs,
}

/// Asks the control plane who the CLI's token is.
pub(super) async fn who_am_i(client: &ClientArgs) -> anyhow::Result<(Output, pb::WhoAmIResponse)> {
    let connection = connect(client)?;
    let mut tokens = connection.client(ApiTokenServiceClient::with_interceptor);
    let me = tokens
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    Ok((connection.output, me))
}

/// `argosy whoami`: who the CLI acts as — user or token, role and scope.
pub(super) async fn whoami(args: WhoAmIArgs) -> anyhow::Result<()> {
    let (output, me) = who_am_i(&args.client).await?;
    let scope = describe_scope(me.scope.as_ref());
    let json = WhoAmIJson::from(me);
    match output {
        Output::Json => println!("{}", output::json(&json)?),
        Output::Table => {
            let credential = if json.kind == "user" {
                "session"
            } else {
                "token"
            };
            println!("{} ({credential} {})", json.actor, json.token_id);
            println!("role:  {}", json.role);
            println!("scope: {scope}");
        }
    }
    Ok(())
}
