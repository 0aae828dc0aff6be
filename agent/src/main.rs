//! `argosy-agent`: parses the command line, sets up logging, runs the agent
//! until SIGINT or SIGTERM, and turns a fatal error into a clear message
//! and a non-zero exit.

use anyhow::Context as _;
use argosy_agent::config::{Cli, Command, Config};
use clap::Parser as _;
use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            #[allow(clippy::print_stdout)]
            {
                println!("argosy-agent {}", argosy_agent::inventory::AGENT_VERSION);
            }
            ExitCode::SUCCESS
        }
        Command::Run(args) => {
            let config = match Config::load(*args) {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("argosy-agent: {error}");
                    return ExitCode::from(2);
                }
            };
            argosy_agent::logging::init(config.log_format, &config.log_level);
            match run(config).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!("{error:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let options = argosy_agent::Options::new(config.interval);
    argosy_agent::run(&config, options, shutdown_signal())
        .await
        .context("argosy-agent stopped")
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the agent");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
