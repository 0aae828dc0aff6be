//! `argosy-bench`: benchmarks that print tables (never timed assertions).
//!
//! - `agent-footprint`: idle RSS and CPU of a real agent at a 10 s interval,
//!   side by side with Prometheus node_exporter scraped every 10 s, in the
//!   same run.
//! - `control-plane`: N simulated agents over real mutual-TLS gRPC streams
//!   against one control plane; control-plane CPU, RSS, bytes per agent and
//!   sample-to-ack latency.
//! - `deploy`: time from `apply` to every replica healthy through a real
//!   control plane and agent, against plain `docker run` on the same engine.
//! - `policy`: the admission hook per decision, Wasm (wasmtime, the
//!   control plane's own host) against the same rule in Rego (regorus).
//! - `backup`: `argosy backup run` of a ≥ 1 GiB PostgreSQL database against
//!   `pg_dump -Fc | zstd` (throughput, agent RSS), and `argosy backup
//!   verify` against `pg_restore` (restore time).
//! - `ingress`: requests per second and p50/p99 latency through the agent's
//!   ingress against nginx proxying the same upstream, with wrk, in the
//!   same run.
#![allow(clippy::print_stdout)]

mod backup;
mod deploy;
mod footprint;
mod ingress;
mod policy;
mod procfs;
mod scale;
mod spawn;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "argosy-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Idle agent footprint against node_exporter.
    AgentFootprint(footprint::Args),
    /// Control-plane scale with simulated agents.
    ControlPlane(scale::Args),
    /// Apply → all replicas healthy, against plain Docker.
    Deploy(deploy::Args),
    /// Admission policy cost per decision: Wasm against Rego.
    Policy(policy::Args),
    /// Backup throughput and restore time against pg_dump | zstd and pg_restore.
    Backup(backup::Args),
    /// Requests through the agent's ingress against nginx, with wrk.
    Ingress(ingress::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::AgentFootprint(args) => footprint::run(args).await,
        Command::ControlPlane(args) => scale::run(args).await,
        Command::Deploy(args) => deploy::run(args).await,
        Command::Backup(args) => backup::run(args).await,
        Command::Policy(args) => policy::run(args).await,
        Command::Ingress(args) => ingress::run(args).await,
    }
}
