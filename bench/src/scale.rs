//! Control-plane scale: N simulated agents, each enrolled with its own key
//! and certificate, each holding its own mutual-TLS gRPC session and sending
//! one sample per interval, spread evenly. Reports control-plane CPU and RSS,
//! bytes per connected agent and sample-to-ack latency (the ack is sent
//! after the sample is durably stored).

use crate::procfs::{cpu_time, mib, percentile, rss_bytes};
use crate::spawn::control_plane;
use anyhow::Context;
use argosy_proto::tls::{self, ReloadableIdentity, ServerTrust};
use argosy_proto::v1::{
    self as pb, AgentMessage, CreateJoinTokenRequest, EnrollRequest, agent_message,
    agent_service_client::AgentServiceClient, control_message,
    join_token_service_client::JoinTokenServiceClient,
};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Agent counts to run, one fresh control plane each.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,5000")]
    agents: Vec<usize>,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Steady-state window measured after every agent is connected.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
}

struct Simulated {
    host_id: String,
    identity: Arc<ReloadableIdentity>,
}

async fn enroll(address: &str, fingerprint: &str, join_token: &str) -> anyhow::Result<Simulated> {
    let key = rcgen::KeyPair::generate()?;
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)?
        .pem()?;
    let config = tls::client_config(ServerTrust::Pinned(fingerprint.parse()?), None)?;
    let mut client = AgentServiceClient::new(tls::channel(address, config)?);
    let response = client
        .enroll(EnrollRequest {
            join_token: join_token.to_owned(),
            csr_pem: csr,
            inventory: Some(inventory()),
        })
        .await?
        .into_inner();
    let identity = ReloadableIdentity::from_pem(
        response.certificate_pem.as_bytes(),
        key.serialize_pem().as_bytes(),
    )?;
    Ok(Simulated {
        host_id: response.host_id,
        identity,
    })
}

fn inventory() -> pb::Inventory {
    pb::Inventory {
        hostname: "sim".into(),
        os: "Linux".into(),
        arch: "x86_64".into(),
        cpu_count: 4,
        memory_bytes: 8 << 30,
        agent_version: "bench".into(),
        ..Default::default()
    }
}

fn sample(now_ms: i64) -> pb::MetricSample {
    pb::MetricSample {
        timestamp_ms: now_ms,
        cpu_percent: 12.0,
        load1: 0.3,
        load5: 0.2,
        load15: 0.1,
        memory_used_bytes: 2 << 30,
        memory_available_bytes: 6 << 30,
        memory_total_bytes: 8 << 30,
        disks: vec![pb::DiskUsage {
            mount_point: "/".into(),
            used_bytes: 10 << 30,
            total_bytes: 50 << 30,
        }],
        net_rx_bytes_per_second: 1000.0,
        net_tx_bytes_per_second: 2000.0,
        uptime_seconds: 1000,
        process_count: 120,
        ..Default::default()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// When and how a simulated agent sends.
#[derive(Clone)]
struct Schedule {
    address: String,
    ca: tonic::transport::Certificate,
    interval: Duration,
    measure_from: Instant,
    until: Instant,
}

/// One simulated agent session: Hello, then one sample per interval starting
/// at `offset`, until `until`. Returns the sample-to-ack latencies.
async fn session(
    schedule: Schedule,
    agent: Simulated,
    offset: Duration,
    connected: mpsc::Sender<()>,
) -> anyhow::Result<Vec<Duration>> {
    let Schedule {
        address,
        ca,
        interval,
        measure_from,
        until,
    } = schedule;
    let ca_der = tls::certificates_from_pem(ca.as_ref(), "ca")?.remove(0);
    let config = tls::client_config(ServerTrust::Ca(ca_der), Some(agent.identity.clone()))?;
    let mut client = AgentServiceClient::new(tls::channel(&address, config)?);
    let (tx, rx) = mpsc::channel(16);
    tx.send(AgentMessage {
        seq: 1,
        body: Some(agent_message::Body::Hello(pb::Hello {
            inventory: Some(inventory()),
            interval_seconds: interval.as_secs() as u32,
        })),
    })
    .await?;
    let mut inbound = client
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .with_context(|| format!("session of {}", agent.host_id))?
        .into_inner();
    // Welcome and the Hello's ack.
    let _ = inbound.next().await;
    let _ = connected.send(()).await;
    let mut sent: HashMap<u64, Instant> = HashMap::new();
    let mut latencies = Vec::new();
    let mut seq = 1u64;
    let mut next = tokio::time::Instant::now() + offset;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {
                if Instant::now() >= until { break; }
                seq += 1;
                sent.insert(seq, Instant::now());
                tx.send(AgentMessage { seq, body: Some(agent_message::Body::Metrics(pb::MetricBatch { samples: vec![sample(now_ms())] })) }).await?;
                next += interval;
            }
            message = inbound.next() => {
                let Some(message) = message else { break };
                if let Some(control_message::Body::Ack(ack)) = message?.body
                    && let Some(at) = sent.remove(&ack.seq)
                    && at >= measure_from
                {
                    latencies.push(at.elapsed());
                }
            }
        }
    }
    Ok(latencies)
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for &n in &args.agents {
        println!("{n} agents: starting a control plane…");
        let cp = control_plane(&[]).await?;
        let pid = cp.child.id().context("control plane exited")?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let baseline_rss = rss_bytes(pid).unwrap_or(0);
        let config = tls::client_config(ServerTrust::Pinned(cp.fingerprint.parse()?), None)?;
        let token: tonic::metadata::AsciiMetadataValue = format!("Bearer {}", cp.token).parse()?;
        let mut tokens = JoinTokenServiceClient::with_interceptor(
            tls::channel(&cp.grpc, config)?,
            move |mut r: tonic::Request<()>| {
                r.metadata_mut().insert("authorization", token.clone());
                Ok(r)
            },
        );
        let join = tokens
            .create_join_token(CreateJoinTokenRequest {
                region: "bench".into(),
                labels: Default::default(),
                ttl_seconds: 3600,
                max_uses: n as u32,
            })
            .await?
            .into_inner()
            .join_string;
        let join: argosy_proto::join::JoinString = join.parse()?;
        let enroll_started = Instant::now();
        let agents: Vec<Simulated> = futures_util::stream::iter(0..n)
            .map(|_| enroll(&cp.grpc, &cp.fingerprint, &join.token))
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        let enroll_time = enroll_started.elapsed();
        println!("  enrolled {n} in {enroll_time:.1?}; connecting…");
        let ca_pem = reqwest_ca(&cp.http).await?;
        let ca = tonic::transport::Certificate::from_pem(ca_pem);
        let connect_budget = Duration::from_secs(60);
        let measure_from = Instant::now() + connect_budget;
        let until = measure_from + args.duration;
        let (connected_tx, mut connected_rx) = mpsc::channel(n.max(1));
        let mut handles = Vec::with_capacity(n);
        let schedule = Schedule {
            address: cp.grpc.clone(),
            ca,
            interval: args.interval,
            measure_from,
            until,
        };
        for (i, agent) in agents.into_iter().enumerate() {
            let offset = args.interval.mul_f64(i as f64 / n as f64);
            handles.push(tokio::spawn(session(
                schedule.clone(),
                agent,
                offset,
                connected_tx.clone(),
            )));
        }
        drop(connected_tx);
        let connect_started = Instant::now();
        let mut connected = 0;
        while connected < n {
            match tokio::time::timeout(connect_budget, connected_rx.recv()).await {
                Ok(Some(())) => connected += 1,
                _ => break,
            }
        }
        println!(
            "  {connected}/{n} sessions open after {:.1?}; steady state from the 60 s mark for {}",
            connect_started.elapsed(),
            humantime::format_duration(args.duration)
        );
        tokio::time::sleep_until(tokio::time::Instant::from_std(measure_from)).await;
        let cpu_start = cpu_time(pid).unwrap_or_default();
        let window_start = Instant::now();
        let mut peak_rss = 0;
        while Instant::now() < until {
            peak_rss = peak_rss.max(rss_bytes(pid).unwrap_or(0));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let cpu = cpu_time(pid)
            .unwrap_or_default()
            .saturating_sub(cpu_start)
            .as_secs_f64()
            / window_start.elapsed().as_secs_f64()
            * 100.0;
        let rss = rss_bytes(pid).unwrap_or(0);
        let mut latencies = Vec::new();
        let mut failed = 0;
        for handle in handles {
            match handle.await {
                Ok(Ok(l)) => latencies.extend(l),
                _ => failed += 1,
            }
        }
        latencies.sort_unstable();
        let per_agent = rss.saturating_sub(baseline_rss) / n.max(1) as u64;
        rows.push(format!(
            "| {n} | {connected} | {:.1} % | {:.1} MiB | {:.1} KiB | {} | {:.1} ms | {:.1} ms | {failed} |",
            cpu,
            mib(peak_rss),
            per_agent as f64 / 1024.0,
            latencies.len(),
            percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
            percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        ));
        drop(cp);
    }
    println!();
    println!(
        "| agents | connected | CP CPU (of one core) | CP peak RSS | CP RSS per agent | samples acked | p50 sample→ack | p99 sample→ack | failed sessions |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for row in rows {
        println!("{row}");
    }
    Ok(())
}

/// Fetches the CA certificate from the control plane's HTTP listener.
async fn reqwest_ca(http: &str) -> anyhow::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(http).await?;
    stream
        .write_all(format!("GET /ca.pem HTTP/1.0\r\nHost: {http}\r\n\r\n").as_bytes())
        .await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8(response)?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .context("bad /ca.pem response")?;
    Ok(body.as_bytes().to_vec())
}
