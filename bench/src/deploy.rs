//! Deploy latency: the time from `DeployService.Apply` to every replica
//! reported healthy, side by side with the same containers started by plain
//! `docker run` (all in parallel, as a careful script would) and waited on
//! with `docker inspect`, on the same engine in the same run.
//!
//! Each Argosy run gets a fresh control plane and one real agent for this
//! machine; the image is already in the engine, so neither side pulls.

use crate::spawn::{Bearer, binary, control_plane};
use anyhow::{Context, bail, ensure};
use argosy_proto::v1::{
    ApplyRequest, CreateJoinTokenRequest, GetDeploymentRequest, GetServiceRequest, HostStatus,
    ListHostsRequest, deploy_service_client::DeployServiceClient,
    fleet_service_client::FleetServiceClient, join_token_service_client::JoinTokenServiceClient,
};
use std::time::{Duration, Instant};
use tokio::process::Command;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Replica counts to run.
    #[arg(long, value_delimiter = ',', default_value = "1,10,50")]
    replicas: Vec<u32>,
    /// Runs per replica count and side; the table shows the median.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// An image already present in the engine (built by
    /// `scripts/docker-engine start`), so that neither side pulls.
    #[arg(long, default_value = "argosy-test/web:v1")]
    image: String,
    /// CPU limit per replica, in cores. Lowered for a row whose replicas
    /// would not fit this machine's cores (the scheduler does not
    /// overcommit CPU), on both sides alike.
    #[arg(long, default_value_t = 0.05)]
    cpu: f64,
    /// Give up on one run after this long.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// The agent's log level (to stderr); `info` shows when each replica
    /// turned healthy, `debug` every engine event and action.
    #[arg(long, default_value = "warn")]
    agent_log_level: String,
    /// Pause after each cleanup so the engine settles before the next run.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    settle: Duration,
}

/// How often both sides are polled.
const POLL: Duration = Duration::from_millis(100);
/// The label that marks the plain-Docker containers, for cleanup.
const PLAIN_LABEL: &str = "argosy-bench=deploy";
const HEALTH_CMD: &str = "wget -q -O /dev/null http://127.0.0.1:8080/version";

type Authed = InterceptedService<Channel, Bearer>;

/// One Argosy run: from the `Apply` call.
struct ArgosyRun {
    all_running: Duration,
    all_healthy: Duration,
}

/// One plain-Docker run: from the first `docker run`.
struct PlainRun {
    all_started: Duration,
    all_healthy: Duration,
}

fn docker_host() -> anyhow::Result<String> {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .context(
            "DOCKER_HOST is not set: start an engine with `scripts/docker-engine start /tmp/dkbench` \
             and export the DOCKER_HOST=… line it prints",
        )
}

/// `docker ARGS` on the engine in `DOCKER_HOST`; its stdout.
async fn docker(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("docker")
        .args(args)
        .output()
        .await
        .context("cannot run the docker client")?;
    ensure!(
        output.status.success(),
        "docker {} failed: {}",
        args.first().copied().unwrap_or_default(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8(output.stdout)?)
}

/// Removes every container (running or not) carrying `label` and waits
/// until the engine has let go of them.
async fn remove_labelled(label: &str) -> anyhow::Result<usize> {
    let filter = format!("label={label}");
    let listed = docker(&["ps", "-aq", "--filter", &filter]).await?;
    let ids: Vec<&str> = listed.split_whitespace().collect();
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(&ids);
        docker(&args).await?;
    }
    Ok(ids.len())
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

/// Millicores per replica for `n` replicas: `wanted`, or less when `n` of
/// them would not fit `cores`.
fn cpu_millis(wanted: f64, n: u32, cores: u32) -> u32 {
    let wanted = (wanted * 1000.0).round() as u32;
    wanted.min(cores * 1000 / n.max(1)).max(1)
}

fn spec(name: &str, image: &str, n: u32, millis: u32) -> String {
    format!(
        r#"name: {name}
image: {image}
replicas: {n}
resources:
  cpu: {millis}m
  memory: 16MiB
health_check:
  http:
    path: /version
    port: 8080
  interval: 1s
update:
  strategy: rolling
  max_parallel: {n}
  min_healthy_time: 0s
"#
    )
}

/// Waits until exactly one host is online with a usable Docker engine.
async fn wait_online(fleet: &mut FleetServiceClient<Authed>) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let hosts = fleet
            .list_hosts(ListHostsRequest::default())
            .await?
            .into_inner()
            .hosts;
        let ready = hosts.iter().any(|h| {
            h.status == HostStatus::Online as i32
                && h.inventory
                    .as_ref()
                    .and_then(|i| i.docker.as_ref())
                    .is_some_and(|d| d.available)
        });
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the agent was not online with Docker available within 60 s: {hosts:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Starts a control plane and an agent, waits until the host is online,
/// then times `Apply` → every replica healthy. Stops both before it
/// returns; the containers stay for the caller to remove.
async fn argosy_timed(
    args: &Args,
    docker_host: &str,
    name: &str,
    n: u32,
    millis: u32,
) -> anyhow::Result<ArgosyRun> {
    let mut cp = control_plane(&[]).await?;
    let (channel, bearer) = cp.api()?;
    let join = JoinTokenServiceClient::with_interceptor(channel.clone(), bearer.clone())
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
    let mut agent = Command::new(binary("argosy-agent")?)
        .args(["run", "--join", &join, "--interval", "10s"])
        .arg("--state-dir")
        .arg(state.path())
        .env("DOCKER_HOST", docker_host)
        .env("ARGOSY_LOG_LEVEL", &args.agent_log_level)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the agent")?;
    let mut fleet = FleetServiceClient::with_interceptor(channel.clone(), bearer.clone());
    wait_online(&mut fleet).await?;

    let mut deploy = DeployServiceClient::with_interceptor(channel, bearer);
    let spec = spec(name, &args.image, n, millis);
    let started = Instant::now();
    let applied = deploy
        .apply(ApplyRequest {
            spec,
            format: "yaml".into(),
            dry_run: false,
        })
        .await?
        .into_inner();
    let mut all_running = None;
    let all_healthy = loop {
        let service = deploy
            .get_service(GetServiceRequest { name: name.into() })
            .await?
            .into_inner();
        if all_running.is_none() && service.running >= n {
            all_running = Some(started.elapsed());
        }
        if service.healthy >= n {
            break started.elapsed();
        }
        if started.elapsed() > args.timeout {
            let why: Vec<String> = service
                .allocations
                .iter()
                .map(|a| format!("{} {}/{} {}", a.id, a.state, a.health, a.message))
                .collect();
            bail!(
                "{name}: {} of {n} healthy after {}: {why:?}",
                service.healthy,
                humantime::format_duration(args.timeout)
            );
        }
        tokio::time::sleep(POLL).await;
    };
    if let Some(deployment) = applied.deployment {
        let phase = deploy
            .get_deployment(GetDeploymentRequest { id: deployment.id })
            .await?
            .into_inner()
            .phase;
        if phase != "succeeded" {
            println!("  note: {name}'s deployment is {phase:?} once all replicas are healthy");
        }
    }
    // The agent goes first so it cannot restart what the caller removes.
    agent.kill().await?;
    cp.child.kill().await?;
    Ok(ArgosyRun {
        all_running: all_running.unwrap_or(all_healthy),
        all_healthy,
    })
}

async fn argosy_once(
    args: &Args,
    docker_host: &str,
    name: &str,
    n: u32,
    millis: u32,
) -> anyhow::Result<ArgosyRun> {
    let result = argosy_timed(args, docker_host, name, n, millis).await;
    let removed = remove_labelled(&format!("argosy.service={name}")).await?;
    let run = result?;
    ensure!(
        removed == n as usize,
        "{name}: {removed} containers, expected {n}"
    );
    Ok(run)
}

/// `n` × `docker run -d` at once, then `docker inspect` every [`POLL`]
/// until all are healthy.
async fn plain_timed(args: &Args, n: u32, millis: u32) -> anyhow::Result<PlainRun> {
    let cpus = format!("{:.3}", f64::from(millis) / 1000.0);
    let label = PLAIN_LABEL;
    let run = [
        "run",
        "-d",
        "--label",
        label,
        "--memory",
        "16m",
        "--cpus",
        &cpus,
        "--health-cmd",
        HEALTH_CMD,
        "--health-interval",
        "1s",
        &args.image,
    ];
    let started = Instant::now();
    let ids: Vec<String> = futures_util::future::try_join_all((0..n).map(|_| docker(&run)))
        .await?
        .into_iter()
        .map(|id| id.trim().to_owned())
        .collect();
    let all_started = started.elapsed();
    let mut inspect = vec!["inspect", "--format", "{{.State.Health.Status}}"];
    inspect.extend(ids.iter().map(String::as_str));
    loop {
        let statuses = docker(&inspect).await?;
        if statuses.lines().filter(|s| s.trim() == "healthy").count() == ids.len() {
            return Ok(PlainRun {
                all_started,
                all_healthy: started.elapsed(),
            });
        }
        if started.elapsed() > args.timeout {
            bail!(
                "plain docker: not all {n} healthy after {}: {statuses}",
                humantime::format_duration(args.timeout)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn plain_once(args: &Args, n: u32, millis: u32) -> anyhow::Result<PlainRun> {
    let result = plain_timed(args, n, millis).await;
    remove_labelled(PLAIN_LABEL).await?;
    result
}

fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(args.runs >= 1, "--runs must be at least 1");
    ensure!(
        args.replicas.iter().all(|n| (1..=1000).contains(n)),
        "--replicas: each count must be 1 to 1000"
    );
    let docker_host = docker_host()?;
    docker(&["image", "inspect", "--format", "{{.Id}}", &args.image])
        .await
        .with_context(|| {
            format!(
                "{} is not in the engine at {docker_host}: `scripts/docker-engine start DIR` builds it",
                args.image
            )
        })?;
    let leftovers = remove_labelled(PLAIN_LABEL).await?;
    if leftovers > 0 {
        println!("removed {leftovers} plain containers left by an earlier run");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    println!("engine {docker_host}, image {}, {cores} cores", args.image);

    struct Row {
        n: u32,
        millis: u32,
        plain: Vec<PlainRun>,
        argosy: Vec<ArgosyRun>,
    }
    let mut rows = Vec::new();
    for &n in &args.replicas {
        let millis = cpu_millis(args.cpu, n, cores);
        let mut row = Row {
            n,
            millis,
            plain: Vec::new(),
            argosy: Vec::new(),
        };
        for i in 1..=args.runs {
            let name = format!("bench-{n}-{i}-{}", std::process::id());
            let a = argosy_once(&args, &docker_host, &name, n, millis).await?;
            println!(
                "{n} replicas, run {i}: argosy all running {} s, all healthy {} s",
                secs(a.all_running),
                secs(a.all_healthy)
            );
            row.argosy.push(a);
            tokio::time::sleep(args.settle).await;
            let p = plain_once(&args, n, millis).await?;
            println!(
                "{n} replicas, run {i}: plain docker all started {} s, all healthy {} s",
                secs(p.all_started),
                secs(p.all_healthy)
            );
            row.plain.push(p);
            tokio::time::sleep(args.settle).await;
        }
        rows.push(row);
    }

    println!();
    println!(
        "| replicas | plain docker (s) | argosy apply→healthy (s, rolling, max_parallel = replicas) | ratio |"
    );
    println!("| --- | --- | --- | --- |");
    for row in &rows {
        let plain = median(row.plain.iter().map(|r| r.all_healthy).collect());
        let argosy = median(row.argosy.iter().map(|r| r.all_healthy).collect());
        println!(
            "| {} | {} | {} | {:.2}× |",
            row.n,
            secs(plain),
            secs(argosy),
            argosy.as_secs_f64() / plain.as_secs_f64().max(f64::EPSILON)
        );
    }
    println!();
    println!(
        "| replicas | CPU limit per replica | plain: all `docker run` returned (s) | argosy: all running (s) |"
    );
    println!("| --- | --- | --- | --- |");
    for row in &rows {
        println!(
            "| {} | {} m | {} | {} |",
            row.n,
            row.millis,
            secs(median(row.plain.iter().map(|r| r.all_started).collect())),
            secs(median(row.argosy.iter().map(|r| r.all_running).collect())),
        );
    }
    println!();
    println!(
        "Medians of {} runs each; the image is local (no pulls); health checks every 1 s \
         (Argosy: HTTP GET from the agent; Docker: wget inside the container).",
        args.runs
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_fits_the_cores() {
        assert_eq!(cpu_millis(0.05, 1, 2), 50);
        assert_eq!(cpu_millis(0.05, 40, 2), 50);
        assert_eq!(cpu_millis(0.05, 50, 2), 40);
    }

    #[test]
    fn median_of_three() {
        let s = Duration::from_secs;
        assert_eq!(median(vec![s(3), s(1), s(2)]), s(2));
    }
}
