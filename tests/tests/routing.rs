//! Traffic routing end to end: a real control plane, a real agent whose
//! ingress routes by hostname to allocations in a real Docker engine, and
//! a continuous load from a real HTTP load generator (`hey`) on loopback.
//! Rolling updates, blue-green switches and canary steps move traffic with
//! zero failed requests, the answering revision follows the weights, and
//! bad routes are refused with the reason.

use anyhow::{Context, ensure};
use argosy_e2e::docker::{registry, remove_service};
use argosy_e2e::{Agent, ControlPlane, TestEnv, both_stores, eventually_within};
use std::net::SocketAddr;
use std::time::Duration;

both_stores!(
    rollouts_move_traffic_without_failing_a_request,
    bad_routes_are_refused_with_the_reason,
    a_region_without_healthy_allocations_fails_over_and_back
);

/// The test web image at `version` as service `name`, reached at `host`,
/// with `update` as its update block.
fn routed_spec(name: &str, host: &str, version: &str, replicas: u32, update: &str) -> String {
    format!(
        "name: {name}\nimage: {}/argosy-test/web:{version}\nreplicas: {replicas}\n\
         resources:\n  cpu: 0.05\n  memory: 32MiB\n\
         health_check:\n  http:\n    path: /version\n    port: 8080\n  interval: 1s\n  timeout: 500ms\n  retries: 2\n\
         route:\n  hostnames: [{host}]\n  port: 8080\n  drain: 2s\n\
         update:\n{update}",
        registry()
    )
}

const ROLLING: &str = "  strategy: rolling\n  max_parallel: 1\n  min_healthy_time: 1s\n  healthy_deadline: 60s\n  progress_deadline: 120s\n";
const BLUE_GREEN: &str = "  strategy: blue_green\n  auto_promote: true\n  min_healthy_time: 1s\n  healthy_deadline: 60s\n  keep_old_for: 3s\n";
const CANARY: &str = "  strategy: canary\n  canaries: 1\n  steps: [50, 100]\n  auto_promote: false\n  min_healthy_time: 1s\n  healthy_deadline: 60s\n";

struct Fixture {
    cp: ControlPlane,
    agent: Agent,
    ingress: SocketAddr,
    service: String,
    hostname: String,
    dir: std::path::PathBuf,
}

impl Fixture {
    async fn new(env: &TestEnv, prefix: &str) -> anyhow::Result<Self> {
        let cp = ControlPlane::start(env, &[]).await?;
        let join = cp.join_string("eu-west", &[], 1).await?;
        let mut agent = Agent::start(env, &join, "1s")?;
        let id = agent.wait_enrolled().await?;
        let host = cp.wait_online(&id).await?;
        let port = host
            .inventory
            .as_ref()
            .map(|i| i.ingress_http_port)
            .filter(|p| *p != 0)
            .context("the agent reported no ingress port")?;
        let service = format!("{prefix}-{}", rand::random::<u32>() % 100_000);
        Ok(Self {
            cp,
            agent,
            ingress: SocketAddr::from(([127, 0, 0, 1], u16::try_from(port)?)),
            hostname: format!("{service}.apps.test"),
            service,
            dir: env.new_dir("specs"),
        })
    }

    async fn apply(&self, text: &str) -> anyhow::Result<argosy_e2e::CliOutput> {
        let path = self.dir.join(format!("{}.yaml", rand::random::<u32>()));
        std::fs::write(&path, text)?;
        self.cp
            .cli()
            .run(&["apply", "-f", path.to_str().unwrap(), "-o", "json"])
            .await
    }

    /// Applies a spec and returns its deployment id.
    async fn deploy(&self, text: &str) -> anyhow::Result<String> {
        let json = self.apply(text).await?.ok()?.json()?;
        json["deployment"]["id"]
            .as_str()
            .map(str::to_owned)
            .context("apply started no deployment")
    }

    async fn wait_phase(&self, id: &str, phase: &str) -> anyhow::Result<()> {
        eventually_within(
            &format!("deployment {id} {phase}"),
            Duration::from_secs(120),
            || async {
                let d = self
                    .cp
                    .cli()
                    .run(&["deployments", "show", id, "-o", "json"])
                    .await?
                    .ok()?
                    .json()?;
                ensure!(d["phase"] == phase, "phase is {}", d["phase"]);
                Ok(())
            },
        )
        .await
    }

    /// One request through the ingress: status and body.
    async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let response = argosy_e2e::api::http_request_with(
            self.ingress,
            http::Method::GET,
            path,
            &[("host", &self.hostname)],
            Vec::new(),
        )
        .await?;
        Ok((response.status, response.text().trim().to_owned()))
    }

    /// The revision answering `/version`, sampled `n` times in a row.
    async fn sample(&self, n: usize) -> anyhow::Result<Vec<String>> {
        let mut seen = Vec::with_capacity(n);
        for _ in 0..n {
            let (status, body) = self.get("/version").await?;
            ensure!(status == 200, "the ingress answered {status}: {body}");
            seen.push(body);
        }
        Ok(seen)
    }

    async fn routes(&self) -> anyhow::Result<serde_json::Value> {
        self.cp
            .cli()
            .run(&["routes", "show", &self.service, "-o", "json"])
            .await?
            .ok()?
            .json()
    }

    /// Starts `hey` against the ingress for `seconds`.
    fn load(&self, seconds: u32) -> anyhow::Result<tokio::process::Child> {
        hey(self.ingress, &self.hostname, seconds)
    }

    async fn finish(mut self) -> anyhow::Result<()> {
        self.agent.kill().await?;
        remove_service(&self.service).await;
        Ok(())
    }
}

/// `hey` against `ingress` with `Host: hostname` for `seconds`.
fn hey(ingress: SocketAddr, hostname: &str, seconds: u32) -> anyhow::Result<tokio::process::Child> {
    tokio::process::Command::new("hey")
        .args([
            "-z",
            &format!("{seconds}s"),
            "-c",
            "4",
            "-host",
            hostname,
            &format!("http://{ingress}/version"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot run hey (apt-get install hey)")
}

/// `dig` against the control plane's DNS from `source`: the A records.
async fn dig(dns: SocketAddr, source: &str, name: &str) -> anyhow::Result<Vec<String>> {
    let output = tokio::process::Command::new("dig")
        .args([
            "-b",
            source,
            &format!("@{}", dns.ip()),
            "-p",
            &dns.port().to_string(),
            name,
            "A",
            "+short",
            "+tries=1",
            "+time=2",
        ])
        .output()
        .await
        .context("cannot run dig (apt-get install dnsutils)")?;
    ensure!(output.status.success(), "dig failed: {output:?}");
    let mut answers: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    answers.sort();
    Ok(answers)
}

/// What `hey` reported: the number of 200 answers, and every other status
/// or error line.
fn load_outcome(output: &std::process::Output) -> (u64, Vec<String>) {
    let text = String::from_utf8_lossy(&output.stdout);
    let mut ok = 0;
    let mut failures = Vec::new();
    let mut section = "";
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("Status code distribution") {
            section = "status";
            continue;
        }
        if trimmed.starts_with("Error distribution") {
            section = "error";
            continue;
        }
        if trimmed.is_empty() || !trimmed.starts_with('[') {
            if !line.starts_with("  ") {
                section = "";
            }
            continue;
        }
        match section {
            "status" if trimmed.starts_with("[200]") => {
                ok = trimmed
                    .trim_start_matches("[200]")
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
            }
            "status" | "error" => failures.push(trimmed.to_owned()),
            _ => {}
        }
    }
    (ok, failures)
}

/// Waits for `hey` and fails unless every one of at least `min` requests
/// was answered 200.
async fn no_request_failed(load: tokio::process::Child, min: u64) -> anyhow::Result<u64> {
    let output = load.wait_with_output().await?;
    ensure!(
        output.status.success(),
        "hey failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (ok, failures) = load_outcome(&output);
    ensure!(
        failures.is_empty(),
        "requests failed under load: {failures:?}\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    ensure!(
        ok >= min,
        "only {ok} requests were answered; expected at least {min}"
    );
    Ok(ok)
}

fn share(samples: &[String], version: &str) -> f64 {
    samples.iter().filter(|s| *s == version).count() as f64 / samples.len() as f64
}

async fn rollouts_move_traffic_without_failing_a_request(env: &TestEnv) -> anyhow::Result<()> {
    let f = Fixture::new(env, "routed").await?;
    let first = f
        .deploy(&routed_spec(&f.service, &f.hostname, "v1", 2, ROLLING))
        .await?;
    f.wait_phase(&first, "succeeded").await?;
    eventually_within("the ingress serves v1", Duration::from_secs(30), || async {
        ensure!(f.get("/version").await? == (200, "v1".to_owned()));
        Ok(())
    })
    .await?;
    // Another hostname, and a path nothing serves, are told apart.
    let other = argosy_e2e::api::http_request_with(
        f.ingress,
        http::Method::GET,
        "/version",
        &[("host", "nobody.apps.test")],
        Vec::new(),
    )
    .await?;
    ensure!(other.status == 404, "{} {}", other.status, other.text());
    ensure!(
        other.text().contains("nobody.apps.test"),
        "{}",
        other.text()
    );

    // Rolling update v1 → v2 under load.
    let load = f.load(25)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rolling = f
        .deploy(&routed_spec(&f.service, &f.hostname, "v2", 2, ROLLING))
        .await?;
    f.wait_phase(&rolling, "succeeded").await?;
    let answered = no_request_failed(load, 200).await?;
    ensure!(f.sample(20).await?.iter().all(|v| v == "v2"));
    eprintln!("rolling update: {answered} requests, none failed");

    // Blue-green v2 → v1 under load: one atomic switch, so a client
    // asking one request after another sees v2, then only v1.
    let load = f.load(20)?;
    let switch = f
        .deploy(&routed_spec(&f.service, &f.hostname, "v1", 2, BLUE_GREEN))
        .await?;
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while tokio::time::Instant::now() < deadline {
        seen.extend(f.sample(5).await?);
        if seen.iter().rev().take(20).filter(|v| *v == "v1").count() == 20 {
            break;
        }
    }
    let switched_at = seen
        .iter()
        .position(|v| v == "v1")
        .context("blue-green never switched to v1")?;
    ensure!(
        seen[switched_at..].iter().all(|v| v == "v1"),
        "after the switch only v1 may answer: {seen:?}"
    );
    f.wait_phase(&switch, "succeeded").await?;
    let answered = no_request_failed(load, 200).await?;
    eprintln!("blue-green: {answered} requests, none failed");

    // Canary v1 → v2 with 4 replicas: one canary takes a quarter of the
    // requests, the 50 % step half, then all.
    let scaled = f
        .deploy(&routed_spec(&f.service, &f.hostname, "v1", 4, ROLLING))
        .await?;
    f.wait_phase(&scaled, "succeeded").await?;
    let load = f.load(60)?;
    let canary = f
        .deploy(&routed_spec(&f.service, &f.hostname, "v2", 4, CANARY))
        .await?;
    f.wait_phase(&canary, "awaiting promotion").await?;
    let at_canary = f.sample(400).await?;
    let canary_share = share(&at_canary, "v2");
    ensure!(
        (0.15..=0.35).contains(&canary_share),
        "one canary of 4 replicas should take about 25 % of requests, took {canary_share}"
    );
    let routes = f.routes().await?;
    let region = &routes["by_region"][0];
    ensure!(
        region["explanation"]
            .as_str()
            .unwrap_or("")
            .contains("25 %"),
        "routes show explains the split: {routes}"
    );
    f.cp.cli()
        .run(&["deployments", "promote", &canary])
        .await?
        .ok()?;
    eventually_within("the 50 % step", Duration::from_secs(90), || async {
        let samples = f.sample(400).await?;
        let half = share(&samples, "v2");
        ensure!(
            (0.4..=0.6).contains(&half),
            "v2 took {half} at the 50 % step"
        );
        Ok(())
    })
    .await?;
    f.wait_phase(&canary, "awaiting promotion").await?;
    f.cp.cli()
        .run(&["deployments", "promote", &canary])
        .await?
        .ok()?;
    f.wait_phase(&canary, "succeeded").await?;
    ensure!(f.sample(40).await?.iter().all(|v| v == "v2"));
    let answered = no_request_failed(load, 300).await?;
    eprintln!("canary: {answered} requests, none failed");

    // The ingress counted the requests per revision for canary analysis.
    let routes = f.routes().await?;
    let traffic = routes["traffic"].as_array().context("no traffic")?;
    ensure!(
        traffic.iter().any(|t| t["requests"].as_u64() > Some(0)),
        "routes show reports what the ingress measured: {routes}"
    );
    f.finish().await
}

async fn bad_routes_are_refused_with_the_reason(env: &TestEnv) -> anyhow::Result<()> {
    let f = Fixture::new(env, "claims").await?;
    let owner = f
        .deploy(&routed_spec(&f.service, &f.hostname, "v1", 1, ROLLING))
        .await?;
    f.wait_phase(&owner, "succeeded").await?;

    // Another service may not take the same hostname and path.
    let thief = format!("{}-other", f.service);
    let refused = f
        .apply(&routed_spec(&thief, &f.hostname, "v1", 1, ROLLING))
        .await?;
    ensure!(!refused.status.success(), "{refused:?}");
    ensure!(
        refused.stderr.contains(&format!(
            "spec.route.hostnames: {}/ is already routed to service {}",
            f.hostname, f.service
        )),
        "{}",
        refused.stderr
    );

    // A certificate secret that holds no key, or a certificate for other
    // names, is refused before anything is deployed.
    let cert_only = f.dir.join("cert.pem");
    let key = rcgen::KeyPair::generate()?;
    let cert =
        rcgen::CertificateParams::new(vec!["elsewhere.test".to_owned()])?.self_signed(&key)?;
    std::fs::write(&cert_only, cert.pem())?;
    f.cp.cli()
        .run(&[
            "secret",
            "set",
            "web/tls",
            "--from-file",
            cert_only.to_str().unwrap(),
        ])
        .await?
        .ok()?;
    let with_tls = |name: &str| {
        routed_spec(name, &format!("{name}.apps.test"), "v1", 1, ROLLING).replace(
            "  drain: 2s\n",
            "  drain: 2s\n  tls:\n    certificate: web/tls\n",
        )
    };
    let tls_service = format!("{}-tls", f.service);
    let refused = f.apply(&with_tls(&tls_service)).await?;
    ensure!(!refused.status.success(), "{refused:?}");
    ensure!(
        refused
            .stderr
            .contains("spec.route.tls.certificate: secret web/tls@1 holds no PEM private key"),
        "{}",
        refused.stderr
    );
    let both = f.dir.join("both.pem");
    std::fs::write(&both, format!("{}{}", cert.pem(), key.serialize_pem()))?;
    f.cp.cli()
        .run(&[
            "secret",
            "set",
            "web/tls",
            "--from-file",
            both.to_str().unwrap(),
        ])
        .await?
        .ok()?;
    let refused = f.apply(&with_tls(&tls_service)).await?;
    ensure!(
        refused.stderr.contains(&format!(
            "secret web/tls@2 its certificate does not cover {tls_service}.apps.test (it names elsewhere.test)"
        )),
        "{}",
        refused.stderr
    );

    // A first deployment that never becomes healthy: its ingresses answer
    // 503 saying why, and the RouteUnserved alert fires (tuned here to
    // fire at once instead of after a minute).
    f.cp.cli()
        .run(&["alert", "rule", "set", "RouteUnserved", "--for", "0s"])
        .await?
        .ok()?;
    let sick = format!("{}-sick", f.service);
    let sick_host = format!("{sick}.apps.test");
    let sick_spec = routed_spec(&sick, &sick_host, "v1", 1, ROLLING)
        .replace("path: /version", "path: /missing");
    let sick_deployment = f.deploy(&sick_spec).await?;
    eventually_within("a 503 and an alert", Duration::from_secs(60), || async {
        let response = argosy_e2e::api::http_request_with(
            f.ingress,
            http::Method::GET,
            "/version",
            &[("host", &sick_host)],
            Vec::new(),
        )
        .await?;
        let body = response.text();
        ensure!(response.status == 503, "{} {body}", response.status);
        ensure!(
            body.contains(&format!(
                "service {sick} has no healthy allocation in any region it may be served from (eu-west: 0 of 1 healthy)"
            )),
            "{body}"
        );
        ensure!(
            response.headers.get("retry-after").is_some(),
            "a 503 says when to retry"
        );
        let alerts = f
            .cp
            .cli()
            .run(&["alert", "list", "--state", "firing", "-o", "json"])
            .await?
            .ok()?
            .json()?;
        let fired = alerts.as_array().into_iter().flatten().any(|a| {
            a["alertname"] == "RouteUnserved" && a["labels"]["service"] == sick.as_str()
        });
        ensure!(fired, "RouteUnserved is not firing for {sick}: {alerts}");
        Ok(())
    })
    .await?;
    f.cp.cli()
        .run(&["deployments", "cancel", &sick_deployment])
        .await?;
    remove_service(&sick).await;

    // A stopped service: nothing to send requests to, and a 503 that says so.
    f.cp.cli().run(&["stop", &f.service]).await?.ok()?;
    eventually_within("a 503 with the reason", Duration::from_secs(60), || async {
        let (status, body) = f.get("/version").await?;
        ensure!(status == 503, "{status} {body}");
        let why = format!("service {} has no allocation in any region", f.service);
        ensure!(body.contains(&why), "{body}");
        Ok(())
    })
    .await?;
    let routes = f.routes().await?;
    ensure!(
        routes["by_region"][0]["serving"] == false,
        "routes show says the region cannot serve: {routes}"
    );
    f.finish().await
}

/// The ingress address a host reported.
async fn ingress_of(cp: &ControlPlane, host_id: &str) -> anyhow::Result<SocketAddr> {
    let host = cp.wait_online(host_id).await?;
    let inventory = host.inventory.context("no inventory")?;
    ensure!(
        inventory.ingress_http_port != 0,
        "the agent reported no ingress port"
    );
    Ok(SocketAddr::new(
        inventory.advertise_address.parse()?,
        u16::try_from(inventory.ingress_http_port)?,
    ))
}

async fn a_region_without_healthy_allocations_fails_over_and_back(
    env: &TestEnv,
) -> anyhow::Result<()> {
    // Two regions on one machine: eu-west's host advertises 127.0.0.1 and
    // us-east's 127.0.0.3; the DNS places clients from 127.0.0.3 in us-east.
    let dns_port = std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dns = SocketAddr::from(([127, 0, 0, 1], dns_port));
    let cp = ControlPlane::start(
        env,
        &[
            "--dns-listen",
            &dns.to_string(),
            "--dns-zone",
            "apps.test",
            "--dns-region",
            "127.0.0.3/32=us-east",
        ],
    )
    .await?;
    let mut hosts = Vec::new();
    let mut agents = Vec::new();
    for (region, ip) in [("eu-west", "127.0.0.1"), ("us-east", "127.0.0.3")] {
        let join = cp.join_string(region, &[], 1).await?;
        let listen = format!("{ip}:0");
        let mut agent = Agent::start_with(
            env,
            &[
                "--join",
                &join,
                "--interval",
                "1s",
                "--advertise-address",
                ip,
                "--ingress-http",
                &listen,
                "--ingress-https",
                "off",
            ],
        )?;
        hosts.push(agent.wait_enrolled().await?);
        agents.push(agent);
    }
    let eu_ingress = ingress_of(&cp, &hosts[0]).await?;
    let us_ingress = ingress_of(&cp, &hosts[1]).await?;
    let service = format!("failover-{}", rand::random::<u32>() % 100_000);
    let hostname = format!("{service}.apps.test");
    let spec = routed_spec(&service, &hostname, "v1", 2, ROLLING)
        .replace(
            "  drain: 2s\n",
            "  drain: 2s\n  regions:\n    primary: eu-west\n    failover: [us-east]\n",
        )
        .replace(
            "resources:",
            "placement:\n  regions:\n    eu-west: 1\n    us-east: 1\nresources:",
        );
    let dir = env.new_dir("specs");
    let path = dir.join("failover.yaml");
    std::fs::write(&path, spec)?;
    let applied = cp
        .cli()
        .run(&["apply", "-f", path.to_str().unwrap(), "-o", "json"])
        .await?
        .ok()?
        .json()?;
    let id = applied["deployment"]["id"]
        .as_str()
        .context("no deployment")?
        .to_owned();
    eventually_within(
        "the deployment succeeds",
        Duration::from_secs(120),
        || async {
            let d = cp
                .cli()
                .run(&["deployments", "show", &id, "-o", "json"])
                .await?
                .ok()?
                .json()?;
            ensure!(d["phase"] == "succeeded", "phase is {}", d["phase"]);
            Ok(())
        },
    )
    .await?;
    let show = || async {
        cp.cli()
            .run(&["routes", "show", &service, "-o", "json"])
            .await?
            .ok()?
            .json()
    };
    let region_route = |routes: &serde_json::Value, region: &str| {
        routes["by_region"]
            .as_array()
            .and_then(|all| all.iter().find(|r| r["region"] == region).cloned())
            .unwrap_or_default()
    };
    let serving_regions = |route: &serde_json::Value| -> Vec<String> {
        let mut regions: Vec<String> = route["backends"]
            .as_array()
            .map(|all| {
                all.iter()
                    .filter(|b| b["weight_ppm"].as_u64() > Some(0))
                    .filter_map(|b| b["region"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        regions.dedup();
        regions
    };
    // Healthy primary: both regions' ingresses send to eu-west, and the DNS
    // answers eu-west's ingress to everyone.
    eventually_within("eu-west serves", Duration::from_secs(30), || async {
        let routes = show().await?;
        for region in ["eu-west", "us-east"] {
            let route = region_route(&routes, region);
            ensure!(serving_regions(&route) == ["eu-west"], "{region}: {route}");
        }
        ensure!(dig(dns, "127.0.0.1", &hostname).await? == ["127.0.0.1"]);
        ensure!(dig(dns, "127.0.0.3", &hostname).await? == ["127.0.0.1"]);
        Ok(())
    })
    .await?;
    let via_us = argosy_e2e::api::http_request_with(
        us_ingress,
        http::Method::GET,
        "/version",
        &[("host", &hostname)],
        Vec::new(),
    )
    .await?;
    ensure!(via_us.status == 200, "{} {}", via_us.status, via_us.text());

    // eu-west goes dark: its agent freezes (the host goes offline), then
    // its container is killed. us-east's ingress keeps answering, from
    // us-east, without a failed request; the DNS sends everyone there.
    let load = hey(us_ingress, &hostname, 30)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    agents[0].freeze().await?;
    eventually_within("failover to us-east", Duration::from_secs(30), || async {
        let routes = show().await?;
        let route = region_route(&routes, "us-east");
        ensure!(serving_regions(&route) == ["us-east"], "{route}");
        let eu = region_route(&routes, "eu-west");
        ensure!(
            eu["explanation"]
                .as_str()
                .unwrap_or("")
                .contains("failing over to us-east"),
            "{eu}"
        );
        Ok(())
    })
    .await?;
    let eu_containers = argosy_e2e::docker::docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=argosy.service={service}"),
        "--filter",
        &format!("label=argosy.host={}", hosts[0]),
    ])
    .await?;
    for container in eu_containers.split_whitespace() {
        argosy_e2e::docker::docker(&["kill", container]).await?;
    }
    eventually_within("the DNS follows", Duration::from_secs(15), || async {
        ensure!(dig(dns, "127.0.0.1", &hostname).await? == ["127.0.0.3"]);
        ensure!(dig(dns, "127.0.0.3", &hostname).await? == ["127.0.0.3"]);
        Ok(())
    })
    .await?;
    // The region recovers: its agent comes back and restarts its
    // container; traffic and the DNS answer go back to eu-west.
    agents[0].thaw().await?;
    eventually_within(
        "eu-west takes its traffic back",
        Duration::from_secs(60),
        || async {
            let routes = show().await?;
            let route = region_route(&routes, "us-east");
            ensure!(serving_regions(&route) == ["eu-west"], "{route}");
            ensure!(dig(dns, "127.0.0.3", &hostname).await? == ["127.0.0.1"]);
            Ok(())
        },
    )
    .await?;
    let answered = no_request_failed(load, 200).await?;
    eprintln!("failover and back: {answered} requests through us-east, none failed");
    let via_eu = argosy_e2e::api::http_request_with(
        eu_ingress,
        http::Method::GET,
        "/version",
        &[("host", &hostname)],
        Vec::new(),
    )
    .await?;
    ensure!(via_eu.status == 200, "{} {}", via_eu.status, via_eu.text());
    for mut agent in agents {
        agent.kill().await?;
    }
    remove_service(&service).await;
    Ok(())
}
