//! `argosy server`, `argosy dev` (the control plane plus an agent for this
//! machine, on SQLite) and `argosy bootstrap-token`.

use crate::auth::Role;
use crate::config::ServerArgs;
use crate::grpc::tokens::{create_join_token, mint_api_token};
use crate::server::{self, Started};
use anyhow::Context;
use argosy_proto::v1::CreateJoinTokenRequest;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub(super) struct DevArgs {
    #[command(flatten)]
    pub(super) server: ServerArgs,
    /// The agent binary to run for this machine (default: argosy-agent beside this binary).
    #[arg(long, env = "ARGOSY_AGENT_BIN")]
    pub(super) agent_bin: Option<PathBuf>,
    /// Sample interval of the local agent.
    #[arg(long, default_value = "10s")]
    pub(super) agent_interval: String,
}

#[derive(Debug, Args)]
pub(super) struct BootstrapArgs {
    #[command(flatten)]
    pub(super) server: ServerArgs,
    /// Name of the new admin token.
    #[arg(long, default_value = "admin")]
    pub(super) name: String,
}

fn print_banner(started: &Started) {
    println!(
        "Argosy control plane is up ({}).",
        started.store_description
    );
    println!("  gRPC API (TLS):  {}", started.advertise_grpc);
    println!(
        "  dashboard:       {}/  (also REST /api/v1, /metrics, /install.sh)",
        started.public_http_url.trim_end_matches('/')
    );
    println!("  CA fingerprint:  {}", started.ca_fingerprint);
    if let Some(token) = &started.admin_token {
        println!("  admin token:     {token}");
        println!("                   (shown once; only its hash is stored)");
        println!(
            "  log in:          argosy login --addr {} --ca-fingerprint {} --token {token}",
            started.advertise_grpc, started.ca_fingerprint
        );
        println!(
            "                   (the dashboard takes the token too; `argosy user add` makes users)"
        );
    }
    println!("  add a host:      argosy join-token create --region eu-west --ttl 1h");
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

pub(super) async fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    let running = server::start(&args).await?;
    print_banner(&running.started);
    wait_for_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

pub(super) async fn run_dev(args: DevArgs) -> anyhow::Result<()> {
    let mut server_args = args.server.clone();
    if server_args.advertise_addr.is_none() && server_args.grpc_listen.ip().is_unspecified() {
        // One machine: agents reach the control plane on loopback.
        server_args.advertise_addr = Some(format!("127.0.0.1:{}", server_args.grpc_listen.port()));
    }
    let running = server::start(&server_args).await?;
    let mut started = running.started.clone();
    if started.admin_token.is_none() {
        // The first admin token was shown at an earlier start; mint one for this session.
        let (_, text) = mint_api_token(
            &running.cp.store,
            running.cp.now_ms(),
            "dev",
            Role::Admin,
            0,
            "argosy dev",
        )
        .await?;
        started.admin_token = Some(text);
    }
    print_banner(&started);

    let agent_bin = match args.agent_bin {
        Some(path) => path,
        None => std::env::current_exe()
            .context("cannot find this binary's folder")?
            .with_file_name("argosy-agent"),
    };
    anyhow::ensure!(
        agent_bin.is_file(),
        "the agent binary {} does not exist: build it with `cargo build --release` (or pass --agent-bin)",
        agent_bin.display()
    );
    let state_dir = server_args.data_dir.join("agent");
    let mut command = tokio::process::Command::new(&agent_bin);
    command
        .arg("run")
        .arg("--state-dir")
        .arg(&state_dir)
        .arg("--interval")
        .arg(&args.agent_interval)
        .kill_on_drop(true);
    // A fleet on one machine: its ingress answers on loopback unless told
    // otherwise (ARGOSY_INGRESS_HTTP / ARGOSY_INGRESS_HTTPS).
    for (variable, address) in [
        ("ARGOSY_INGRESS_HTTP", "127.0.0.1:7480"),
        ("ARGOSY_INGRESS_HTTPS", "127.0.0.1:8443"),
    ] {
        if std::env::var_os(variable).is_none() {
            command.env(variable, address);
        }
    }
    if !state_dir.join("identity.json").exists() {
        let created = create_join_token(
            &running.cp,
            "argosy dev",
            CreateJoinTokenRequest {
                region: "local".into(),
                labels: [("dev".to_owned(), "true".to_owned())].into(),
                ttl_seconds: 600,
                max_uses: 1,
            },
        )
        .await
        .map_err(|status| {
            anyhow::anyhow!(
                "cannot create a join token for the local agent: {}",
                status.message()
            )
        })?;
        // Through the environment, not argv: other users can read argv in `ps`.
        command.env("ARGOSY_JOIN", &created.join_string);
    }
    let mut agent = command
        .spawn()
        .with_context(|| format!("cannot start the local agent {}", agent_bin.display()))?;
    println!(
        "  local agent:     {} (state in {})",
        agent_bin.display(),
        state_dir.display()
    );
    println!(
        "  ingress:         http://{} https://{} (services with a route: section)",
        std::env::var("ARGOSY_INGRESS_HTTP").unwrap_or_else(|_| "127.0.0.1:7480".into()),
        std::env::var("ARGOSY_INGRESS_HTTPS").unwrap_or_else(|_| "127.0.0.1:8443".into())
    );
    println!();
    println!(
        "Try: argosy hosts list --addr {} --ca-fingerprint {} --token <admin token>",
        started.advertise_grpc, started.ca_fingerprint
    );
    println!("Press Ctrl-C to stop.");

    tokio::select! {
        () = wait_for_signal() => {}
        status = agent.wait() => {
            tracing::error!(?status, "the local agent exited; the control plane keeps running");
            wait_for_signal().await;
        }
    }
    let _ = agent.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(5), agent.wait()).await;
    running.shutdown().await;
    Ok(())
}

pub(super) async fn bootstrap_token(args: BootstrapArgs) -> anyhow::Result<()> {
    use crate::clock::Clock;
    let (store, description) = server::open_store(&args.server).await?;
    let now = crate::clock::SystemClock.now_ms();
    let (_, text) =
        mint_api_token(&store, now, &args.name, Role::Admin, 0, "bootstrap-token").await?;
    println!("new admin token {:?} in {description}:", args.name);
    println!("  {text}");
    Ok(())
}
