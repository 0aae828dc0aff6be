//! Health checks of running allocations: the pure state machine of one
//! check ([`observe`]: start period, consecutive failures, healthy since)
//! and the probes that feed it — an HTTP GET or a TCP connect to the
//! container, or a command run inside it through the engine.
//!
//! Where HTTP and TCP probes connect: to the container's own address on
//! its Docker network (the bridge is routable from the host, so the probe
//! needs no published port and sees the container itself, not a proxy).
//! Only when the container has no address (for example `--network host`)
//! do they use the published host port of the probed port, or loopback.
//!
//! Semantics follow Docker's HEALTHCHECK, which compose users know:
//! failures during the start period do not count (a success there ends
//! it); after `retries` consecutive failures the container is unhealthy;
//! one success makes it healthy again. Unlike Docker, the first probe runs
//! after `min(interval, 1 s)` rather than a full interval, so a fast
//! service is reported healthy quickly.

use crate::agent::Clock;
use crate::docker::Engine;
use argosy_proto::v1::HealthCheckSpec;
use argosy_proto::v1::allocation_status::Health;
use argosy_proto::v1::health_check_spec::Probe;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Docker's defaults, used where the spec says 0.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_RETRIES: u32 = 3;
/// The first probe runs at most this long after the container started.
pub const FIRST_PROBE: Duration = Duration::from_secs(1);

/// Timing of one check, with defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckSettings {
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

impl CheckSettings {
    pub fn from_spec(spec: &HealthCheckSpec) -> Self {
        let or = |ms: u64, default: Duration| {
            if ms == 0 {
                default
            } else {
                Duration::from_millis(ms)
            }
        };
        Self {
            interval: or(spec.interval_ms, DEFAULT_INTERVAL),
            timeout: or(spec.timeout_ms, DEFAULT_TIMEOUT),
            retries: if spec.retries == 0 {
                DEFAULT_RETRIES
            } else {
                spec.retries
            },
            start_period: Duration::from_millis(spec.start_period_ms),
        }
    }
}

/// Where one check stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckState {
    /// `Starting`, `Healthy` or `Unhealthy`.
    pub health: Health,
    /// Consecutive failures that counted.
    pub failures: u32,
    /// Unix ms since when it is healthy; 0 when it is not.
    pub healthy_since_ms: i64,
    /// When the container started (the start period counts from here).
    pub started_ms: i64,
    /// Why the last probe failed; empty after a success.
    pub last_error: String,
}

impl CheckState {
    pub fn new(started_ms: i64) -> Self {
        Self {
            health: Health::Starting,
            failures: 0,
            healthy_since_ms: 0,
            started_ms,
            last_error: String::new(),
        }
    }
}

/// The state after one probe's `outcome` at `now_ms`.
pub fn observe(
    state: &CheckState,
    settings: &CheckSettings,
    outcome: &Result<(), String>,
    now_ms: i64,
) -> CheckState {
    let mut next = state.clone();
    match outcome {
        Ok(()) => {
            if state.health != Health::Healthy {
                next.healthy_since_ms = now_ms;
            }
            next.health = Health::Healthy;
            next.failures = 0;
            next.last_error.clear();
        }
        Err(error) => {
            next.last_error.clone_from(error);
            let start_period_ms = i64::try_from(settings.start_period.as_millis()).unwrap_or(0);
            let in_start_period = state.health == Health::Starting
                && now_ms < state.started_ms.saturating_add(start_period_ms);
            if in_start_period {
                return next;
            }
            next.failures = state.failures.saturating_add(1);
            if next.failures >= settings.retries {
                next.health = Health::Unhealthy;
                next.healthy_since_ms = 0;
            }
        }
    }
    next
}

/// Where a probe reaches a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// The container's address on its network, if it has one.
    pub ip: Option<IpAddr>,
    /// Published host addresses by container port (tcp).
    pub published: BTreeMap<u16, SocketAddr>,
}

impl Target {
    /// The address to connect to for container `port`.
    pub fn address(&self, port: u16) -> SocketAddr {
        if let Some(ip) = self.ip {
            return SocketAddr::new(ip, port);
        }
        if let Some(mut published) = self.published.get(&port).copied() {
            if published.ip().is_unspecified() {
                published.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
            }
            return published;
        }
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    }
}

/// Connects to `address` within `timeout`.
async fn connect(address: SocketAddr, timeout: Duration) -> Result<TcpStream, String> {
    match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(format!("cannot connect to {address}: {e}")),
        Err(_) => Err(format!(
            "connecting to {address} took longer than {}",
            humantime::format_duration(timeout)
        )),
    }
}

/// Whether a TCP connection to `address` opens within `timeout`.
pub async fn tcp_probe(address: SocketAddr, timeout: Duration) -> Result<(), String> {
    connect(address, timeout).await.map(drop)
}

/// Whether `GET path` on `address` answers `expected` (0: any 2xx or 3xx)
/// within `timeout`.
pub async fn http_probe(
    address: SocketAddr,
    path: &str,
    expected: u16,
    timeout: Duration,
) -> Result<(), String> {
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let exchange = async {
        let mut stream = connect(address, timeout).await?;
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: {address}\r\nUser-Agent: argosy-agent\r\nConnection: close\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("GET http://{address}{path}: {e}"))?;
        let mut head = Vec::with_capacity(256);
        let mut buf = [0u8; 256];
        while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
            let n = stream
                .read(&mut buf)
                .await
                .map_err(|e| format!("GET http://{address}{path}: {e}"))?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let line = String::from_utf8_lossy(&head);
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .filter(|_| line.starts_with("HTTP/"))
            .ok_or_else(|| format!("GET http://{address}{path}: not an HTTP answer"))?;
        let ok = if expected == 0 {
            (200..400).contains(&status)
        } else {
            status == expected
        };
        if ok {
            Ok(())
        } else {
            let wanted = if expected == 0 {
                "2xx or 3xx".to_owned()
            } else {
                expected.to_string()
            };
            Err(format!(
                "GET http://{address}{path} answered {status}, expected {wanted}"
            ))
        }
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "GET http://{address}{path} took longer than {}",
            humantime::format_duration(timeout)
        )),
    }
}

/// Runs one probe of `spec` against a container.
pub async fn probe_once(
    engine: &Engine,
    container_id: &str,
    target: &Target,
    probe: &Probe,
    timeout: Duration,
) -> Result<(), String> {
    let port = |port: u32| u16::try_from(port).map_err(|_| format!("port {port} is not a port"));
    match probe {
        Probe::Http(http) => {
            let expected = u16::try_from(http.expected_status).unwrap_or(0);
            http_probe(
                target.address(port(http.port)?),
                &http.path,
                expected,
                timeout,
            )
            .await
        }
        Probe::Tcp(tcp) => tcp_probe(target.address(port(tcp.port)?), timeout).await,
        Probe::Exec(exec) => match engine.exec(container_id, &exec.command, timeout).await {
            Ok(0) => Ok(()),
            Ok(code) => Err(format!(
                "`{}` exited with code {code}",
                exec.command.join(" ")
            )),
            Err(e) => Err(e.to_string()),
        },
    }
}

/// A changed check result of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthUpdate {
    pub container_id: String,
    pub state: CheckState,
}

/// Probes `container_id` per `spec` until the returned task is aborted (or
/// `updates` closes), sending every change of its health.
pub fn spawn(
    engine: Engine,
    container_id: String,
    target: Target,
    spec: HealthCheckSpec,
    started_ms: i64,
    clock: Clock,
    updates: mpsc::Sender<HealthUpdate>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(probe) = spec.probe.clone() else {
            return;
        };
        let settings = CheckSettings::from_spec(&spec);
        let mut state = CheckState::new(started_ms);
        let mut delay = settings.interval.min(FIRST_PROBE);
        loop {
            tokio::time::sleep(delay).await;
            delay = settings.interval;
            let outcome =
                probe_once(&engine, &container_id, &target, &probe, settings.timeout).await;
            let next = observe(&state, &settings, &outcome, clock());
            if let Err(error) = &outcome {
                tracing::debug!(container = %container_id, %error, failures = next.failures, "health probe failed");
            }
            if next.health != state.health
                || next.last_error.is_empty() != state.last_error.is_empty()
            {
                let update = HealthUpdate {
                    container_id: container_id.clone(),
                    state: next.clone(),
                };
                if updates.send(update).await.is_err() {
                    return;
                }
            }
            state = next;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn settings(retries: u32, start_period_ms: u64) -> CheckSettings {
        CheckSettings {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            retries,
            start_period: Duration::from_millis(start_period_ms),
        }
    }

    /// Feeds `outcomes` (`true`: success) at `(time, ok)` and returns the
    /// health and healthy-since after each.
    fn run(settings: CheckSettings, outcomes: &[(i64, bool)]) -> Vec<(Health, u32, i64)> {
        let mut state = CheckState::new(0);
        outcomes
            .iter()
            .map(|&(now, ok)| {
                let outcome = if ok { Ok(()) } else { Err("no".to_owned()) };
                state = observe(&state, &settings, &outcome, now);
                (state.health, state.failures, state.healthy_since_ms)
            })
            .collect()
    }

    use Health::{Healthy, Starting, Unhealthy};

    #[test]
    fn the_first_success_makes_it_healthy() {
        assert_eq!(run(settings(3, 0), &[(10, true)]), [(Healthy, 0, 10)]);
    }

    #[test]
    fn it_takes_retries_consecutive_failures_to_become_unhealthy() {
        assert_eq!(
            run(
                settings(3, 0),
                &[
                    (1, false),
                    (2, false),
                    (3, true),
                    (4, false),
                    (5, false),
                    (6, false)
                ]
            ),
            [
                (Starting, 1, 0),
                (Starting, 2, 0),
                (Healthy, 0, 3),
                (Healthy, 1, 3),
                (Healthy, 2, 3),
                (Unhealthy, 3, 0),
            ]
        );
    }

    #[test]
    fn healthy_since_keeps_the_first_success_of_a_streak() {
        assert_eq!(
            run(
                settings(1, 0),
                &[(1, true), (2, true), (3, false), (4, true)]
            ),
            [
                (Healthy, 0, 1),
                (Healthy, 0, 1),
                (Unhealthy, 1, 0),
                (Healthy, 0, 4),
            ]
        );
    }

    #[test]
    fn failures_in_the_start_period_do_not_count() {
        assert_eq!(
            run(
                settings(2, 100),
                &[
                    (10, false),
                    (50, false),
                    (99, false),
                    (100, false),
                    (110, false)
                ]
            ),
            [
                (Starting, 0, 0),
                (Starting, 0, 0),
                (Starting, 0, 0),
                (Starting, 1, 0),
                (Unhealthy, 2, 0),
            ]
        );
    }

    #[test]
    fn a_success_ends_the_start_period() {
        assert_eq!(
            run(settings(1, 1_000), &[(10, true), (20, false)]),
            [(Healthy, 0, 10), (Unhealthy, 1, 0)]
        );
    }

    #[test]
    fn an_unhealthy_check_recovers_with_one_success() {
        assert_eq!(
            run(settings(1, 0), &[(1, false), (2, false), (3, true)]),
            [(Unhealthy, 1, 0), (Unhealthy, 2, 0), (Healthy, 0, 3)]
        );
    }

    #[test]
    fn defaults_are_dockers() {
        let s = CheckSettings::from_spec(&HealthCheckSpec::default());
        assert_eq!(
            s,
            CheckSettings {
                interval: Duration::from_secs(30),
                timeout: Duration::from_secs(30),
                retries: 3,
                start_period: Duration::ZERO,
            }
        );
        let s = CheckSettings::from_spec(&HealthCheckSpec {
            interval_ms: 200,
            timeout_ms: 100,
            retries: 1,
            start_period_ms: 5,
            probe: None,
        });
        assert_eq!(s.interval, Duration::from_millis(200));
        assert_eq!(s.retries, 1);
    }

    #[test]
    fn targets_prefer_the_container_address() {
        let published: SocketAddr = "0.0.0.0:18080".parse().unwrap();
        let mut target = Target {
            ip: Some("10.0.0.2".parse().unwrap()),
            published: [(8080, published)].into_iter().collect(),
        };
        assert_eq!(target.address(8080), "10.0.0.2:8080".parse().unwrap());
        target.ip = None;
        assert_eq!(target.address(8080), "127.0.0.1:18080".parse().unwrap());
        assert_eq!(target.address(9090), "127.0.0.1:9090".parse().unwrap());
    }

    async fn serve(answer: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        address
    }

    #[tokio::test]
    async fn http_probes_check_the_status() {
        let timeout = Duration::from_secs(2);
        let ok = serve("HTTP/1.0 200 OK\r\n\r\nv1\n").await;
        assert_eq!(http_probe(ok, "/version", 0, timeout).await, Ok(()));
        assert_eq!(http_probe(ok, "version", 200, timeout).await, Ok(()));
        let err = http_probe(ok, "/version", 204, timeout).await.unwrap_err();
        assert!(err.ends_with("answered 200, expected 204"), "{err}");
        let missing = serve("HTTP/1.1 404 Not Found\r\n\r\n").await;
        let err = http_probe(missing, "/nope", 0, timeout).await.unwrap_err();
        assert_eq!(
            err,
            format!("GET http://{missing}/nope answered 404, expected 2xx or 3xx")
        );
        let garbage = serve("SSH-2.0-OpenSSH\r\n").await;
        let err = http_probe(garbage, "/", 0, timeout).await.unwrap_err();
        assert!(err.ends_with("not an HTTP answer"), "{err}");
    }

    #[tokio::test]
    async fn probes_fail_on_a_closed_port_and_on_silence() {
        let closed = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap()
        };
        let err = tcp_probe(closed, Duration::from_secs(2)).await.unwrap_err();
        assert!(
            err.starts_with(&format!("cannot connect to {closed}")),
            "{err}"
        );
        let open = serve("").await;
        assert_eq!(tcp_probe(open, Duration::from_secs(2)).await, Ok(()));
        // Accepts but never answers.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = silent.local_addr().unwrap();
        let err = http_probe(address, "/", 0, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(err.contains("took longer than 200ms"), "{err}");
        drop(silent);
    }
}
