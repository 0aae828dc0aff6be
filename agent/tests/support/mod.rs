//! Shared helpers of the `docker_*` tests: the engine they run against
//! (`DOCKER_HOST`, started by `scripts/docker-engine` via `scripts/test`),
//! the test images it built, a runtime per test with its own owner label
//! and state directory, waiting on reports, and cleanup of every container
//! a test leaves behind.

#![allow(dead_code, unreachable_pub)]

use argosy_agent::allocations::{Allocations, AllocationsOptions};
use argosy_agent::docker::Engine;
use argosy_proto::v1::allocation_status::{Health, State};
use argosy_proto::v1::restart_spec::Policy;
use argosy_proto::v1::{
    Allocation, AllocationReport, AllocationStatus, ContainerSpec, HealthCheckSpec, RestartSpec,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// The test image: busybox httpd on 8080 serving `/version` (`v1`/`v2`).
pub const WEB_V1: &str = "argosy-test/web:v1";
pub const WEB_V2: &str = "argosy-test/web:v2";

const HOW: &str = "these tests need a real Docker engine: run them with scripts/test (which starts one), \
     or start one with `scripts/docker-engine start DIR --registry` and export the \
     DOCKER_HOST (and ARGOSY_TEST_REGISTRY) it prints";

/// The engine under test; fails (never skips) without one.
pub fn docker_host() -> String {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() => host,
        _ => panic!("DOCKER_HOST is not set: {HOW}"),
    }
}

/// The loopback registry holding `argosy-test/web:v1` and `:v2`.
pub fn registry() -> String {
    match std::env::var("ARGOSY_TEST_REGISTRY") {
        Ok(registry) if !registry.is_empty() => registry,
        _ => panic!("ARGOSY_TEST_REGISTRY is not set: {HOW}"),
    }
}

/// A factor for every wait (`ARGOSY_TEST_PATIENCE`, default 1).
pub fn patience(base: Duration) -> Duration {
    let factor: f64 = std::env::var("ARGOSY_TEST_PATIENCE")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(1.0);
    base.mul_f64(factor.max(0.1))
}

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs the docker CLI against `host`; returns stdout, panics on failure.
pub fn docker_cli(host: &str, args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", host)
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker {args:?}: {e}; {HOW}"));
    assert!(
        output.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The same, ignoring failure.
pub fn docker_cli_quiet(host: &str, args: &[&str]) {
    let _ = Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", host)
        .output();
}

/// Logs of the runtime on stderr when `RUST_LOG` is set (for example
/// `RUST_LOG=argosy_agent=debug`).
pub fn init_tracing() {
    if let Ok(filter) = std::env::var("RUST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// A name unique to this test run.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{name}-{}-{nanos:x}", std::process::id())
}

/// A free TCP port on loopback (free when this returns).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `ContainerSpec` of the web image with a 64 MiB limit.
pub fn web(image: &str) -> ContainerSpec {
    ContainerSpec {
        image: image.into(),
        memory_bytes: 64 << 20,
        restart: Some(RestartSpec {
            policy: Policy::Always as i32,
            max_retries: 0,
        }),
        ..ContainerSpec::default()
    }
}

pub fn allocation(id: &str, spec: ContainerSpec) -> Allocation {
    Allocation {
        id: id.into(),
        service: "web".into(),
        revision_id: "rev-1".into(),
        revision: 1,
        container: Some(spec),
        run: true,
        drain_ms: 0,
    }
}

/// Fast probing for tests.
pub fn check(probe: argosy_proto::v1::health_check_spec::Probe) -> HealthCheckSpec {
    HealthCheckSpec {
        probe: Some(probe),
        interval_ms: 300,
        timeout_ms: 1_000,
        retries: 2,
        start_period_ms: 0,
    }
}

/// One test's runtime: its own owner label and state directory, against
/// the engine under test. Dropping it removes every container of its
/// owner (even when the test failed).
pub struct Harness {
    pub host: String,
    pub owner: String,
    pub state_dir: PathBuf,
    _dir: Option<tempfile::TempDir>,
    pub allocations: Option<Allocations>,
    pub reports: watch::Receiver<AllocationReport>,
}

impl Harness {
    pub fn options(host: &str, owner: &str, state_dir: &Path) -> AllocationsOptions {
        let mut options = AllocationsOptions::new(state_dir, owner);
        options.docker_host = Some(host.to_owned());
        options.tick = Duration::from_millis(500);
        options.stop_grace = Duration::from_secs(1);
        options
    }

    /// A runtime on the engine under test, checking the test image is there.
    pub async fn start(name: &str) -> Self {
        let host = docker_host();
        Self::start_on(&host, name).await
    }

    pub async fn start_on(host: &str, name: &str) -> Self {
        init_tracing();
        let engine = Engine::connect(Some(host))
            .await
            .unwrap_or_else(|e| panic!("{e}; {HOW}"));
        assert!(
            engine.has_image(WEB_V1).await.unwrap(),
            "the engine at {host} has no {WEB_V1}; {HOW}"
        );
        let dir = tempfile::tempdir().unwrap();
        let owner = unique(name);
        let state_dir = dir.path().join("state");
        let (allocations, reports) =
            Allocations::start(Self::options(host, &owner, &state_dir)).unwrap();
        Self {
            host: host.to_owned(),
            owner,
            state_dir,
            _dir: Some(dir),
            allocations: Some(allocations),
            reports,
        }
    }

    /// The runtime's `allocation-history.json` (`{}` before it has one).
    pub fn history(&self) -> serde_json::Value {
        std::fs::read(self.state_dir.join("allocation-history.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_else(|| serde_json::json!({}))
    }

    /// The desired-state version of the latest report.
    pub fn report_version(&self) -> u64 {
        self.reports.borrow().applied_version
    }

    pub fn allocations(&self) -> &Allocations {
        self.allocations.as_ref().expect("the runtime was stopped")
    }

    /// Stops the runtime (containers keep running).
    pub fn stop_runtime(&mut self) {
        self.allocations = None;
    }

    /// Starts a new runtime on the same owner and state directory.
    pub fn restart_runtime(&mut self) {
        self.allocations = None;
        let (allocations, reports) =
            Allocations::start(Self::options(&self.host, &self.owner, &self.state_dir)).unwrap();
        self.allocations = Some(allocations);
        self.reports = reports;
    }

    pub fn apply(&self, version: u64, allocations: Vec<Allocation>) {
        assert!(
            self.allocations()
                .apply(argosy_proto::v1::DesiredState {
                    version,
                    allocations,
                })
                .unwrap()
        );
    }

    /// Waits until `condition` holds for the latest report.
    pub async fn wait_for(
        &mut self,
        what: &str,
        within: Duration,
        condition: impl Fn(&AllocationReport) -> bool,
    ) -> AllocationReport {
        let deadline = Instant::now() + patience(within);
        loop {
            {
                let report = self.reports.borrow_and_update();
                if condition(&report) {
                    return report.clone();
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero()
                || tokio::time::timeout(left, self.reports.changed())
                    .await
                    .is_err()
            {
                let report = self.reports.borrow().clone();
                if condition(&report) {
                    return report;
                }
                panic!("timed out waiting for {what}; the last report: {report:#?}");
            }
        }
    }

    /// Waits until allocation `id`'s status satisfies `condition`.
    pub async fn wait_status(
        &mut self,
        id: &str,
        what: &str,
        within: Duration,
        condition: impl Fn(&AllocationStatus) -> bool,
    ) -> AllocationStatus {
        let report = self
            .wait_for(&format!("{id}: {what}"), within, |r| {
                status(r, id).is_some_and(&condition)
            })
            .await;
        status(&report, id).unwrap().clone()
    }

    /// Waits until `id` runs (and is healthy, or has no check).
    pub async fn wait_running(&mut self, id: &str) -> AllocationStatus {
        self.wait_status(id, "running and healthy", Duration::from_secs(60), |s| {
            s.state() == State::Running && matches!(s.health(), Health::Healthy | Health::None)
        })
        .await
    }

    /// The ids of every container of this owner, running or not.
    pub fn containers(&self) -> Vec<String> {
        let out = docker_cli(
            &self.host,
            &[
                "ps",
                "-aq",
                "--no-trunc",
                "--filter",
                &format!("label=argosy.host={}", self.owner),
            ],
        );
        out.lines().map(str::to_owned).collect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.allocations = None;
        let ids = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=argosy.host={}", self.owner),
            ])
            .env("DOCKER_HOST", &self.host)
            .output();
        if let Ok(output) = ids {
            let ids = String::from_utf8_lossy(&output.stdout);
            let ids: Vec<&str> = ids.lines().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f", "-v"];
                args.extend(ids);
                docker_cli_quiet(&self.host, &args);
            }
        }
    }
}

/// The wall clock in Unix ms.
pub fn now_ms() -> i64 {
    argosy_agent::agent::system_now_ms()
}

pub fn status<'a>(report: &'a AllocationReport, id: &str) -> Option<&'a AllocationStatus> {
    report.allocations.iter().find(|s| s.allocation_id == id)
}

/// `GET path` over plain HTTP/1.0; returns (status code, body).
pub async fn http_get(address: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())
        .await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    let code = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}
