//! The `argosy` command line: `server` and `dev` start the control plane;
//! every other command is a client of the gRPC API. This is the binary's
//! edge, so it uses `anyhow` and prints to standard output.
#![allow(clippy::print_stdout)]

mod alerts;
mod audit;
mod backups;
mod client;
mod commands;
mod deploy;
mod dev;
mod output;
mod policies;
mod routes;
mod secrets;
mod users;

use crate::config::ServerArgs;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "argosy",
    version,
    about = "Argosy fleet manager: control plane and CLI"
)]
pub struct Cli {
    /// Log format: text or json.
    #[arg(long, env = "ARGOSY_LOG_FORMAT", default_value = "text", global = true)]
    log_format: LogFormat,
    /// Log filter, e.g. info or argosy=debug.
    #[arg(long, env = "ARGOSY_LOG_LEVEL", default_value = "info", global = true)]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane.
    Server(ServerArgs),
    /// Run a whole fleet on this machine: the control plane on SQLite plus a local agent.
    Dev(dev::DevArgs),
    /// Mint a new admin API token directly in the store (recovery; needs access to the data folder or database).
    BootstrapToken(dev::BootstrapArgs),
    /// Check a token against the control plane and save address, CA and token for later commands;
    /// with --user, log in with a password and save the session token.
    Login(client::LoginArgs),
    /// End the login session in use and forget the saved token.
    Logout(users::LogoutArgs),
    /// Show who the CLI acts as: user or API token, role and scope.
    Whoami(users::WhoAmIArgs),
    /// Users who log in with a password: add, remove, passwd, list.
    #[command(subcommand)]
    User(users::UserCommand),
    /// Hosts of the fleet.
    #[command(subcommand)]
    Hosts(commands::HostsCommand),
    /// Metric history of a host.
    Metrics(commands::MetricsArgs),
    /// Join tokens that let new hosts enroll.
    #[command(subcommand, name = "join-token")]
    JoinToken(commands::JoinTokenCommand),
    /// API tokens for people and automation.
    #[command(subcommand)]
    Token(commands::TokenCommand),
    /// Validate a service spec, store it as a new revision and deploy it.
    Apply(deploy::ApplyArgs),
    /// Services and their allocations.
    #[command(subcommand)]
    Services(deploy::ServicesCommand),
    /// The revisions of a service.
    Revisions(deploy::RevisionsArgs),
    /// Deployments: list, show, watch, promote, pause, resume, cancel.
    #[command(subcommand)]
    Deployments(deploy::DeploymentsCommand),
    /// Deploy an earlier revision of a service (or revert the one in progress).
    Rollback(deploy::RollbackArgs),
    /// Container logs of a service, through the agents that run it.
    Logs(deploy::LogsArgs),
    /// Change how many allocations of a service run, until its next deployment.
    Scale(deploy::ScaleArgs),
    /// Drain and stop every allocation of a service (`scale` or `apply` starts it again).
    Stop(deploy::StopArgs),
    /// Secrets, encrypted at rest: set, list, get, rotate, delete, versions.
    #[command(subcommand)]
    Secret(secrets::SecretCommand),
    /// The master key that seals secrets: rotate-master.
    #[command(subcommand)]
    Keys(secrets::KeysCommand),
    /// The audit log: list (filter, export) and verify its hash chain.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Alerts, silences, alert rules and notification channels.
    #[command(subcommand)]
    Alert(alerts::AlertCommand),
    /// Wasm policies: admission, placement and canary analysis.
    #[command(subcommand)]
    Policy(policies::PolicyCommand),
    /// Backups: policies, running, verifying and restoring.
    #[command(subcommand)]
    Backup(backups::BackupCommand),
    /// Traffic routing: routed services, and where each region's ingresses send their requests.
    #[command(subcommand)]
    Routes(routes::RoutesCommand),
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Entry point of the `argosy` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let is_server = matches!(cli.command, Command::Server(_) | Command::Dev(_));
    init_logging(
        cli.log_format,
        if is_server { &cli.log_level } else { "warn" },
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", chain(&error));
            ExitCode::FAILURE
        }
    }
}

fn chain(error: &anyhow::Error) -> String {
    argosy_proto::tls::error_chain(error.as_ref())
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Server(args) => dev::run_server(args).await,
        Command::Dev(args) => dev::run_dev(args).await,
        Command::BootstrapToken(args) => dev::bootstrap_token(args).await,
        Command::Login(args) => client::login(args).await,
        Command::Logout(args) => users::logout(args).await,
        Command::Whoami(args) => users::whoami(args).await,
        Command::User(command) => users::user(command).await,
        Command::Hosts(command) => commands::hosts(command).await,
        Command::Metrics(args) => commands::metrics(args).await,
        Command::JoinToken(command) => commands::join_token(command).await,
        Command::Token(command) => commands::token(command).await,
        Command::Apply(args) => deploy::apply(args).await,
        Command::Services(command) => deploy::services(command).await,
        Command::Revisions(args) => deploy::revisions(args).await,
        Command::Deployments(command) => deploy::deployments(command).await,
        Command::Rollback(args) => deploy::rollback(args).await,
        Command::Logs(args) => deploy::logs(args).await,
        Command::Scale(args) => deploy::scale(args).await,
        Command::Stop(args) => deploy::stop(args).await,
        Command::Secret(command) => secrets::secret(command).await,
        Command::Policy(command) => policies::policy(command).await,
        Command::Keys(command) => secrets::keys(command).await,
        Command::Audit(command) => audit::audit(command).await,
        Command::Alert(command) => alerts::alert(command).await,
        Command::Backup(command) => backups::backup(command).await,
        Command::Routes(command) => routes::routes(command).await,
    }
}
