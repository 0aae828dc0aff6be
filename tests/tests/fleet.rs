//! The fleet as people see it: agents enroll with one join token, report
//! inventory and samples, show up in ListHosts (filtered by region and
//! labels), WatchHosts, QueryMetrics, the JSON API and `/metrics`, and go
//! offline when they die or stall.

use anyhow::{Context, ensure};
use argosy_e2e::{Agent, ControlPlane, TestEnv, both_stores, eventually, now_ms, pb};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

both_stores!(
    three_agents_enroll_and_report,
    watch_and_offline,
    http_api_and_prometheus,
    agent_serves_its_own_metrics
);

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// `argosy-agent version` prints `argosy-agent X.Y.Z`.
async fn agent_version() -> anyhow::Result<String> {
    let output = tokio::process::Command::new(&argosy_e2e::binaries().agent)
        .arg("version")
        .output()
        .await?;
    ensure!(output.status.success(), "argosy-agent version failed");
    let text = String::from_utf8(output.stdout)?;
    text.split_whitespace()
        .nth(1)
        .map(str::to_owned)
        .with_context(|| format!("unexpected `argosy-agent version` output {text:?}"))
}

async fn list(
    cp: &ControlPlane,
    region: &str,
    wanted: &[(&str, &str)],
) -> anyhow::Result<BTreeSet<String>> {
    let hosts = cp
        .fleet()
        .list_hosts(pb::ListHostsRequest {
            region: region.to_owned(),
            labels: labels(wanted),
        })
        .await?
        .into_inner()
        .hosts;
    Ok(hosts.into_iter().map(|h| h.id).collect())
}

async fn three_agents_enroll_and_report(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let join = cp.join_string("eu-west", &[("role", "db")], 3).await?;
    let mut agents = Vec::new();
    for _ in 0..3 {
        agents.push(Agent::start(env, &join, "1s")?);
    }
    let mut ids = BTreeSet::new();
    for agent in &mut agents {
        ids.insert(agent.wait_enrolled().await?);
    }
    ensure!(
        ids.len() == 3,
        "three agents must get three host ids, got {ids:?}"
    );
    for id in &ids {
        cp.wait_online(id).await?;
    }

    // The token is used up: its counter says so.
    let tokens = cp
        .join_tokens()
        .list_join_tokens(pb::ListJoinTokensRequest {})
        .await?
        .into_inner()
        .tokens;
    ensure!(
        tokens.len() == 1 && tokens[0].uses == 3 && tokens[0].max_uses == 3,
        "join tokens: {tokens:?}"
    );

    let version = agent_version().await?;
    let hostname = system_hostname();
    let hosts = cp.hosts().await?;
    ensure!(
        hosts.len() == 3,
        "ListHosts must show 3 hosts, got {}",
        hosts.len()
    );
    for host in &hosts {
        ensure!(ids.contains(&host.id), "unexpected host {}", host.id);
        ensure!(
            host.status == pb::HostStatus::Online as i32,
            "{} is not online: {host:?}",
            host.id
        );
        ensure!(
            host.region == "eu-west",
            "region of {}: {:?}",
            host.id,
            host.region
        );
        ensure!(
            host.labels == labels(&[("role", "db")]),
            "labels of {}: {:?}",
            host.id,
            host.labels
        );
        ensure!(
            host.interval_seconds == 1,
            "interval of {}: {}",
            host.id,
            host.interval_seconds
        );
        ensure!(
            host.hostname == hostname,
            "hostname {:?}, this machine is {hostname:?}",
            host.hostname
        );
        let now = now_ms();
        ensure!(
            (now - 60_000..=now + 5_000).contains(&host.enrolled_at_ms),
            "enrolled_at_ms {}",
            host.enrolled_at_ms
        );
        ensure!(
            host.certificate_not_after_ms > now,
            "certificate already expired: {}",
            host.certificate_not_after_ms
        );
        let inventory = host.inventory.as_ref().context("no inventory")?;
        ensure!(
            inventory.hostname == hostname,
            "inventory hostname {:?}",
            inventory.hostname
        );
        ensure!(!inventory.os.is_empty(), "no os");
        ensure!(!inventory.kernel.is_empty(), "no kernel version");
        ensure!(
            inventory.arch == std::env::consts::ARCH,
            "arch {:?}",
            inventory.arch
        );
        ensure!(inventory.cpu_count > 0, "cpu_count 0");
        ensure!(inventory.memory_bytes > 0, "memory_bytes 0");
        ensure!(
            inventory.agent_version == version,
            "agent_version {:?}, binary says {version}",
            inventory.agent_version
        );
        let latest = host.latest.as_ref().context("no latest sample")?;
        ensure!(
            latest.memory_total_bytes > 0,
            "latest sample has memory_total_bytes 0: {latest:?}"
        );
        ensure!(
            latest.memory_used_bytes > 0 && latest.memory_used_bytes <= latest.memory_total_bytes,
            "memory used {latest:?}"
        );
        ensure!(
            (now - 30_000..=now + 5_000).contains(&latest.timestamp_ms),
            "stale sample at {}",
            latest.timestamp_ms
        );
        ensure!(
            (0.0..=100.0).contains(&latest.cpu_percent),
            "cpu {}",
            latest.cpu_percent
        );
    }

    // Metric history over the last minute.
    let id = ids.iter().next().context("no host")?;
    let cpu = eventually("cpu points", || async {
        let result = cp.query_metric(id, "cpu", now_ms() - 60_000, 0, 0).await?;
        ensure!(!result.points.is_empty(), "no cpu points yet");
        Ok(result)
    })
    .await?;
    ensure!(
        cpu.metric == "cpu" && cpu.host_id == *id,
        "answer names {} of {}",
        cpu.metric,
        cpu.host_id
    );
    ensure!(
        !cpu.unit.is_empty() && cpu.step_ms > 0,
        "unit {:?} step {}",
        cpu.unit,
        cpu.step_ms
    );
    for point in &cpu.points {
        ensure!(
            (0.0..=100.0).contains(&point.avg) && point.max >= point.avg - 1e-9,
            "cpu point {point:?}"
        );
        ensure!(
            point.timestamp_ms >= now_ms() - 120_000,
            "point outside the window: {point:?}"
        );
    }
    let memory = cp
        .query_metric(id, "memory_used", now_ms() - 60_000, 0, 0)
        .await?;
    ensure!(
        memory.points.iter().any(|p| p.avg > 0.0),
        "memory_used points {:?}",
        memory.points
    );
    let unknown = cp
        .query_metric(id, "no_such_metric", now_ms() - 60_000, 0, 0)
        .await;
    let status = unknown
        .err()
        .and_then(|e| e.downcast::<tonic::Status>().ok())
        .context("an unknown metric must fail")?;
    ensure!(
        status.code() == tonic::Code::InvalidArgument,
        "unknown metric: {status:?}"
    );

    // Filters, with a second region and label set.
    let other = cp
        .join_string("us-east", &[("role", "web"), ("tier", "edge")], 1)
        .await?;
    let mut web = Agent::start(env, &other, "1s")?;
    let web_id = web.wait_enrolled().await?;
    cp.wait_online(&web_id).await?;
    let web_only = BTreeSet::from([web_id.clone()]);
    ensure!(list(&cp, "", &[]).await?.len() == 4, "four hosts in all");
    ensure!(list(&cp, "eu-west", &[]).await? == ids, "region eu-west");
    ensure!(
        list(&cp, "us-east", &[]).await? == web_only,
        "region us-east"
    );
    ensure!(
        list(&cp, "", &[("role", "db")]).await? == ids,
        "label role=db"
    );
    ensure!(
        list(&cp, "", &[("role", "web"), ("tier", "edge")]).await? == web_only,
        "labels role=web,tier=edge"
    );
    ensure!(
        list(&cp, "", &[("role", "web"), ("tier", "core")])
            .await?
            .is_empty(),
        "every label must match"
    );
    ensure!(
        list(&cp, "us-east", &[("role", "db")]).await?.is_empty(),
        "region and label together"
    );
    ensure!(
        list(&cp, "nowhere", &[]).await?.is_empty(),
        "unknown region"
    );
    Ok(())
}

async fn watch_and_offline(env: &TestEnv) -> anyhow::Result<()> {
    use pb::host_event::Kind;
    let cp = ControlPlane::start(env, &[]).await?;
    let join = cp.join_string("eu-west", &[("role", "db")], 0).await?;
    let mut watch = cp.watch(false).await?;

    // A new agent: Enrolled, then Online.
    let mut first = Agent::start(env, &join, "1s")?;
    let first_id = first.wait_enrolled().await?;
    let enrolled = watch.next(Kind::Enrolled, &first_id).await?;
    ensure!(
        enrolled
            .host
            .as_ref()
            .is_some_and(|h| h.region == "eu-west"),
        "enrolled event {enrolled:?}"
    );
    let online = watch.next(Kind::Online, &first_id).await?;
    let host = online.host.context("event without host")?;
    ensure!(
        host.status == pb::HostStatus::Online as i32,
        "online event carries {host:?}"
    );
    ensure!(
        online.at_ms > 0 && host.labels.get("role").map(String::as_str) == Some("db"),
        "online event {host:?}"
    );

    // Killed: the stream closes and it is offline well within 3 intervals.
    let mut second = Agent::start(env, &join, "1s")?;
    let second_id = second.wait_enrolled().await?;
    watch.next(Kind::Online, &second_id).await?;
    cp.wait_online(&second_id).await?;
    let killed_at = Instant::now();
    second.kill().await?;
    let offline = watch.next(Kind::Offline, &second_id).await?;
    let took = killed_at.elapsed();
    ensure!(
        took <= Duration::from_secs(3 + 5),
        "offline {took:?} after the kill; allowed 3 intervals + 5 s"
    );
    ensure!(
        offline
            .host
            .is_some_and(|h| h.status == pb::HostStatus::Offline as i32),
        "offline event status"
    );
    ensure!(
        cp.host(&second_id).await?.status == pb::HostStatus::Offline as i32,
        "GetHost after the kill"
    );

    // Frozen (connection open, nothing sent): offline after 3 missed intervals.
    cp.wait_online(&first_id).await?;
    let frozen_at = Instant::now();
    first.freeze().await?;
    watch.next(Kind::Offline, &first_id).await?;
    let took = frozen_at.elapsed();
    ensure!(
        took >= Duration::from_millis(1_500) && took <= Duration::from_secs(3 + 5),
        "a stalled host went offline {took:?} after it stopped; expected about 3 intervals of 1 s"
    );
    // And back online when it sends again.
    first.thaw().await?;
    watch.next(Kind::Online, &first_id).await?;
    cp.wait_online(&first_id).await?;

    // Metric events only when asked for.
    ensure!(
        watch.seen().iter().all(|e| e.kind != Kind::Metrics as i32),
        "metrics events without include_metrics"
    );
    let mut with_metrics = cp.watch(true).await?;
    let sample = with_metrics.next(Kind::Metrics, &first_id).await?;
    ensure!(
        sample.host.and_then(|h| h.latest).is_some(),
        "a metrics event carries the sample"
    );
    Ok(())
}

async fn http_api_and_prometheus(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let join = cp.join_string("eu-west", &[("role", "db")], 2).await?;
    let mut agents = vec![
        Agent::start(env, &join, "1s")?,
        Agent::start(env, &join, "1s")?,
    ];
    let mut ids = BTreeSet::new();
    for agent in &mut agents {
        let id = agent.wait_enrolled().await?;
        cp.wait_online(&id).await?;
        ids.insert(id);
    }

    for path in ["/healthz", "/readyz"] {
        let response = cp.http_get(path, None).await?;
        ensure!(
            response.status == 200,
            "{path} answered {}: {}",
            response.status,
            response.text()
        );
    }

    // The JSON API shows what gRPC shows.
    let response = cp.http_get("/api/v1/hosts", Some(&cp.admin_token)).await?;
    ensure!(
        response.status == 200,
        "/api/v1/hosts answered {}: {}",
        response.status,
        response.text()
    );
    let json = response.json()?;
    let hosts = json.as_array().context("/api/v1/hosts is not an array")?;
    let json_ids: BTreeSet<String> = hosts
        .iter()
        .filter_map(|h| h["id"].as_str().map(str::to_owned))
        .collect();
    ensure!(json_ids == ids, "JSON hosts {json_ids:?}, agents {ids:?}");
    let grpc = cp.hosts().await?;
    for host in hosts {
        let id = host["id"].as_str().unwrap_or_default();
        let same = grpc
            .iter()
            .find(|h| h.id == id)
            .context("a JSON host gRPC does not know")?;
        ensure!(
            host["hostname"] == same.hostname.as_str(),
            "hostname {host}"
        );
        ensure!(
            host["region"] == "eu-west" && host["labels"]["role"] == "db",
            "region/labels {host}"
        );
        ensure!(host["status"] == "online", "status {host}");
        ensure!(
            host["inventory"]["cpu_count"].as_u64().unwrap_or(0) > 0,
            "inventory {host}"
        );
        ensure!(
            host["latest"]["memory_total_bytes"].as_u64().unwrap_or(0) > 0,
            "latest {host}"
        );
    }
    let filtered = cp
        .http_get("/api/v1/hosts?region=us-east", Some(&cp.admin_token))
        .await?
        .json()?;
    ensure!(
        filtered.as_array().is_some_and(Vec::is_empty),
        "region filter over HTTP: {filtered}"
    );
    let filtered = cp
        .http_get("/api/v1/hosts?labels=role=db", Some(&cp.admin_token))
        .await?
        .json()?;
    ensure!(
        filtered.as_array().map(Vec::len) == Some(2),
        "label filter over HTTP: {filtered}"
    );

    let id = ids.iter().next().context("no host")?;
    let one = cp
        .http_get(&format!("/api/v1/hosts/{id}"), Some(&cp.admin_token))
        .await?;
    ensure!(
        one.status == 200 && one.json()?["id"] == id.as_str(),
        "GET /api/v1/hosts/{id}: {}",
        one.text()
    );
    let missing = cp
        .http_get("/api/v1/hosts/h-doesnotexist", Some(&cp.admin_token))
        .await?;
    ensure!(
        missing.status == 404,
        "unknown host answered {}",
        missing.status
    );

    let metrics = eventually("cpu points over HTTP", || async {
        let response = cp
            .http_get(
                &format!("/api/v1/hosts/{id}/metrics?metric=cpu&since=5m"),
                Some(&cp.admin_token),
            )
            .await?;
        ensure!(
            response.status == 200,
            "metrics answered {}: {}",
            response.status,
            response.text()
        );
        let json = response.json()?;
        ensure!(
            json["points"].as_array().is_some_and(|p| !p.is_empty()),
            "no points yet: {json}"
        );
        Ok(json)
    })
    .await?;
    ensure!(
        metrics["metric"] == "cpu" && metrics["host_id"] == id.as_str(),
        "metrics answer {metrics}"
    );
    let bad = cp
        .http_get(
            &format!("/api/v1/hosts/{id}/metrics?metric=cpu&since=yesterday"),
            Some(&cp.admin_token),
        )
        .await?;
    ensure!(
        bad.status == 400 && bad.text().contains("since"),
        "bad since answered {}: {}",
        bad.status,
        bad.text()
    );

    // Without a token, or with a wrong one: 401 with a reason.
    let anonymous = cp.http_get("/api/v1/hosts", None).await?;
    ensure!(
        anonymous.status == 401,
        "no token answered {}",
        anonymous.status
    );
    ensure!(
        anonymous.json()?["error"]
            .as_str()
            .is_some_and(|e| e.contains("no API token")),
        "{}",
        anonymous.text()
    );
    let wrong = cp
        .http_get("/api/v1/hosts", Some("argosy_nosuchid_nosuchsecret"))
        .await?;
    ensure!(wrong.status == 401, "wrong token answered {}", wrong.status);
    let anonymous = cp
        .http_get(&format!("/api/v1/hosts/{id}/metrics?metric=cpu"), None)
        .await?;
    ensure!(
        anonymous.status == 401,
        "metrics without a token answered {}",
        anonymous.status
    );

    // Prometheus exposition: one argosy_host_up per host, valid for promtool.
    let response = cp.http_get("/metrics", None).await?;
    ensure!(
        response.status == 200,
        "/metrics answered {}",
        response.status
    );
    let text = response.text();
    for host in &grpc {
        let wanted = format!(
            "argosy_host_up{{host=\"{}\",hostname=\"{}\",region=\"eu-west\"}} 1",
            host.id, host.hostname
        );
        ensure!(
            text.lines().any(|l| l.trim() == wanted),
            "/metrics lacks `{wanted}`:\n{text}"
        );
    }
    ensure!(
        text.lines()
            .any(|l| l.trim() == "argosy_hosts{status=\"online\"} 2"),
        "argosy_hosts online:\n{text}"
    );
    ensure!(
        text.lines()
            .any(|l| l.starts_with("argosy_host_memory_total_bytes{")
                && l.contains(&format!("host=\"{id}\""))),
        "no memory gauge for {id}:\n{text}"
    );
    promtool_check(&text).await?;

    // A killed host is reported down.
    let victim = agents[0].host_id()?;
    agents[0].kill().await?;
    cp.wait_status(&victim, pb::HostStatus::Offline).await?;
    let text = cp.http_get("/metrics", None).await?.text();
    ensure!(
        text.lines().any(|l| l.starts_with("argosy_host_up{")
            && l.contains(&format!("host=\"{victim}\""))
            && l.ends_with(" 0")),
        "the killed host is not 0 in argosy_host_up:\n{text}"
    );
    Ok(())
}

/// `argosy-agent --metrics-listen` serves its own latest sample in the
/// Prometheus text format, valid for promtool.
async fn agent_serves_its_own_metrics(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let join = cp.join_string("eu-west", &[], 1).await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut agent = Agent::start_with(
        env,
        &[
            "--join",
            &join,
            "--interval",
            "1s",
            "--metrics-listen",
            &listen,
        ],
    )?;
    let id = agent.wait_enrolled().await?;
    cp.wait_online(&id).await?;
    let addr: std::net::SocketAddr = listen.parse()?;
    let text = eventually("the agent's /metrics to show a sample", || async {
        let response = argosy_e2e::api::http_get(addr, "/metrics", None).await?;
        ensure!(
            response.status == 200,
            "/metrics answered {}",
            response.status
        );
        let text = response.text();
        ensure!(
            text.lines()
                .any(|l| l.starts_with("argosy_agent_memory_used_bytes ")),
            "no memory sample yet:\n{text}"
        );
        Ok(text)
    })
    .await?;
    ensure!(
        text.lines().any(|l| l.starts_with("argosy_agent_info{")
            && l.contains(&format!("host_id=\"{id}\""))
            && l.contains("region=\"eu-west\"")),
        "argosy_agent_info names the host and region:\n{text}"
    );
    promtool_check(&text).await
}

/// Runs the real `promtool check metrics` on `text`.
async fn promtool_check(text: &str) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context(
            "cannot run promtool: install it (`apt-get install prometheus`, which .ci/run does)",
        )?;
    let mut stdin = child.stdin.take().context("no stdin")?;
    stdin.write_all(text.as_bytes()).await?;
    drop(stdin);
    let output = child.wait_with_output().await?;
    ensure!(
        output.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- input:\n{text}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}
