//! Idle footprint of the agent against Prometheus node_exporter, measured
//! the same way in the same run: RSS sampled every second (median and max)
//! and CPU time (utime + stime) over the window, as a share of one core.

use crate::procfs::{cpu_time, median, mib, rss_bytes};
use crate::spawn::{bin_dir, binary, control_plane};
use anyhow::Context;
use argosy_proto::tls::{self, ServerTrust};
use argosy_proto::v1::{CreateJoinTokenRequest, join_token_service_client::JoinTokenServiceClient};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Measurement window after warm-up.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Agent sample interval and node_exporter scrape interval.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Warm-up before measuring.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Agent binary to measure (default: the size-optimised `agent` profile
    /// build if present, else the one beside this benchmark).
    #[arg(long)]
    agent_bin: Option<std::path::PathBuf>,
    /// node_exporter binary (Debian's prometheus-node-exporter).
    #[arg(long, default_value = "/usr/bin/prometheus-node-exporter")]
    node_exporter: String,
}

struct Measured {
    rss_median: u64,
    rss_max: u64,
    cpu_share: f64,
}

async fn scrape(addr: &str) -> anyhow::Result<usize> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut body = Vec::new();
    stream.read_to_end(&mut body).await?;
    Ok(body.len())
}

async fn measure(
    pids: &[u32],
    duration: Duration,
    scrape_addr: Option<(&str, Duration)>,
) -> Vec<Measured> {
    let start_cpu: Vec<Duration> = pids
        .iter()
        .map(|p| cpu_time(*p).unwrap_or_default())
        .collect();
    let started = Instant::now();
    let mut rss: Vec<Vec<u64>> = vec![Vec::new(); pids.len()];
    let mut next_scrape = Instant::now();
    while started.elapsed() < duration {
        for (i, pid) in pids.iter().enumerate() {
            if let Some(bytes) = rss_bytes(*pid) {
                rss[i].push(bytes);
            }
        }
        if let Some((addr, every)) = scrape_addr
            && Instant::now() >= next_scrape
        {
            let _ = scrape(addr).await;
            next_scrape += every;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let elapsed = started.elapsed();
    pids.iter()
        .enumerate()
        .map(|(i, pid)| {
            let used = cpu_time(*pid)
                .unwrap_or_default()
                .saturating_sub(start_cpu[i]);
            let max = rss[i].iter().copied().max().unwrap_or(0);
            Measured {
                rss_median: median(&mut rss[i]),
                rss_max: max,
                cpu_share: used.as_secs_f64() / elapsed.as_secs_f64() * 100.0,
            }
        })
        .collect()
}

/// `target/agent/argosy-agent`, built by `cargo build --profile agent -p argosy-agent`.
fn agent_profile_binary() -> Option<std::path::PathBuf> {
    let path = bin_dir().ok()?.parent()?.join("agent").join("argosy-agent");
    path.is_file().then_some(path)
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let cp = control_plane(&[]).await?;
    let config = tls::client_config(ServerTrust::Pinned(cp.fingerprint.parse()?), None)?;
    let channel = tls::channel(&cp.grpc, config)?;
    let token: tonic::metadata::AsciiMetadataValue = format!("Bearer {}", cp.token).parse()?;
    let mut tokens =
        JoinTokenServiceClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
            r.metadata_mut().insert("authorization", token.clone());
            Ok(r)
        });
    let join = tokens
        .create_join_token(CreateJoinTokenRequest {
            region: "bench".into(),
            labels: Default::default(),
            ttl_seconds: 600,
            max_uses: 1,
        })
        .await?
        .into_inner()
        .join_string;
    let state = tempfile::tempdir()?;
    let interval = humantime::format_duration(args.interval).to_string();
    let agent_bin = match args.agent_bin.clone() {
        Some(path) => path,
        None => agent_profile_binary().map_or_else(|| binary("argosy-agent"), Ok)?,
    };
    println!("agent binary: {}", agent_bin.display());
    let agent = Command::new(&agent_bin)
        .args(["run", "--join", &join, "--interval", &interval])
        .arg("--state-dir")
        .arg(state.path())
        .env("ARGOSY_LOG_LEVEL", "warn")
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the agent")?;
    let exporter_addr = "127.0.0.1:19100";
    let exporter = Command::new(&args.node_exporter)
        .arg(format!("--web.listen-address={exporter_addr}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {} (apt-get install prometheus-node-exporter)",
                args.node_exporter
            )
        })?;
    let pids = [
        agent.id().context("agent exited")?,
        exporter.id().context("node_exporter exited")?,
    ];
    println!(
        "warming up for {}…",
        humantime::format_duration(args.warmup)
    );
    tokio::time::sleep(args.warmup).await;
    println!(
        "measuring for {}…",
        humantime::format_duration(args.duration)
    );
    let results = measure(&pids, args.duration, Some((exporter_addr, args.interval))).await;
    println!();
    println!(
        "| process (idle, {} interval, {} window) | RSS median | RSS max | CPU of one core |",
        interval,
        humantime::format_duration(args.duration)
    );
    println!("| --- | --- | --- | --- |");
    for (name, m) in ["argosy-agent", "node_exporter (scraped every interval)"]
        .iter()
        .zip(&results)
    {
        println!(
            "| {name} | {:.1} MiB | {:.1} MiB | {:.3} % |",
            mib(m.rss_median),
            mib(m.rss_max),
            m.cpu_share
        );
    }
    drop(cp);
    Ok(())
}
