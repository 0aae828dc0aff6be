//! `ingress`: requests per second and p50/p99 latency through the agent's
//! ingress against nginx proxying the same upstream, on the same machine
//! in the same run, measured with `wrk`.
//!
//! Three targets, all on 127.0.0.1:
//!
//! - **direct**: the upstream itself — an nginx (Debian package) with one
//!   worker serving a 64-byte static `/version`; the baseline the proxies'
//!   added latency is measured against.
//! - **nginx proxy**: a second nginx with one worker in front of it, in a
//!   fair, tuned configuration: an `upstream` block with `keepalive 64`,
//!   `proxy_http_version 1.1` and `proxy_set_header Connection ""` (pooled
//!   upstream connections, as the ingress has), `keepalive_requests` lifted
//!   so no side reconnects every 1,000 requests, `access_log off`, and the
//!   same `Host` and `X-Forwarded-For/-Proto/-Host` headers the ingress
//!   sets.
//! - **argosy ingress**: `argosy_agent::ingress::Ingress` in this process,
//!   on a current-thread Tokio runtime in its own OS thread — as the agent
//!   runs it (`agent/src/main.rs` uses a current-thread runtime) — with a
//!   one-route table sending `bench.test` to the upstream.
//!
//! One core each for the proxies (one nginx worker, one runtime thread).
//! After a warm-up of each, the rounds run the targets in turn (direct,
//! nginx, ingress, direct, …) under two loads:
//!
//! - **saturated**: wrk's connections send back to back; what each target
//!   serves at most (the throughput aim) and the CPU time the measured
//!   server spent per request.
//! - **paced**: each connection waits `--pace` between a response and its
//!   next request (wrk's `delay()` hook), so every target gets about the
//!   same request rate, well below any of them saturating. Only here is
//!   "latency added over direct" well defined: saturated, the direct
//!   upstream runs twice as many requests and queues more than the
//!   proxies, so its p99 can exceed theirs. The latency aim is judged on
//!   this table.
//!
//! The tables show medians over the rounds. wrk shares the machine's
//! cores with the servers.

use crate::procfs::{self, CpuTimes};
use anyhow::{Context, bail, ensure};
use argosy_agent::ingress::{Ingress, IngressConfig};
use argosy_proto::v1::{Route, RouteBackend, RoutingTable};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// How long each measured wrk run lasts.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Open connections wrk keeps (keep-alive).
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// The paced load: each connection's wait between a response and its
    /// next request (whole milliseconds, wrk's `delay()` resolution).
    #[arg(long, default_value = "4ms", value_parser = humantime::parse_duration)]
    pace: Duration,
    /// Measured runs per target, interleaved; the table shows the median.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The warm-up run of each target before the first round.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// The nginx binary (upstream and proxy).
    #[arg(long, default_value = "/usr/sbin/nginx")]
    nginx: PathBuf,
    /// The wrk binary.
    #[arg(long, default_value = "wrk")]
    wrk: PathBuf,
}

/// The hostname of the bench route; wrk sends it to every target.
const HOSTNAME: &str = "bench.test";
/// What wrk asks for.
const PATH: &str = "/version";
/// The size of the upstream's answer.
const BODY_BYTES: usize = 64;
/// The name of the ingress's thread (and its runtime's blocking threads),
/// by which its CPU time is found in `/proc/self/task`.
const INGRESS_THREAD: &str = "bench-ingress";

/// The 64-byte body the upstream serves.
fn body() -> String {
    let mut body = String::from("argosy-bench ingress upstream /version ");
    while body.len() < BODY_BYTES - 1 {
        body.push('.');
    }
    body.push('\n');
    body
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Whether this process runs as root (then nginx's workers must be told
/// to stay root, or they could not read the temporary directory).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?;
            line.split_whitespace().nth(1).map(|uid| uid == "0")
        })
        .unwrap_or(false)
}

/// The parts of an nginx configuration both instances share: one worker,
/// every path inside `prefix`, no access log, no reconnecting every
/// 1,000 requests.
fn nginx_conf(prefix: &Path, http: &str) -> String {
    let dir = prefix.display();
    let user = if is_root() { "user root;\n" } else { "" };
    format!(
        r#"{user}worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp/client_body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    keepalive_requests 1000000;
{http}}}
"#
    )
}

/// The upstream: `/version` from a file.
fn upstream_conf(prefix: &Path, port: u16) -> String {
    let http = format!(
        r#"    open_file_cache max=16;
    server {{
        listen 127.0.0.1:{port};
        root {dir}/www;
        location = {PATH} {{
            default_type text/plain;
        }}
    }}
"#,
        dir = prefix.display()
    );
    nginx_conf(prefix, &http)
}

/// The nginx proxy: pooled HTTP/1.1 connections to the upstream, the
/// headers the ingress sets.
fn proxy_conf(prefix: &Path, port: u16, upstream: SocketAddr) -> String {
    let http = format!(
        r#"    upstream backend {{
        server {upstream};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
        }}
    }}
"#
    );
    nginx_conf(prefix, &http)
}

/// A running nginx (master and one worker), stopped with SIGTERM when
/// dropped.
struct Nginx {
    child: Child,
    address: SocketAddr,
}

impl Nginx {
    /// Starts nginx with `conf` in `prefix` and waits until it accepts
    /// connections on `address`.
    async fn start(
        binary: &Path,
        prefix: &Path,
        conf: &str,
        address: SocketAddr,
    ) -> anyhow::Result<Self> {
        for dir in ["tmp", "www"] {
            std::fs::create_dir_all(prefix.join(dir))?;
        }
        let conf_path = prefix.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let stderr = std::fs::File::create(prefix.join("stderr.log"))?;
        let child = std::process::Command::new(binary)
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(prefix)
            .arg("-e")
            .arg(prefix.join("error.log"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut nginx = Self { child, address };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = nginx.child.try_wait()? {
                let log = |name| std::fs::read_to_string(prefix.join(name)).unwrap_or_default();
                bail!(
                    "nginx ({}) exited with {status}: {}{}",
                    prefix.display(),
                    log("stderr.log").trim(),
                    log("error.log").trim()
                );
            }
            if tokio::net::TcpStream::connect(address).await.is_ok() {
                return Ok(nginx);
            }
            ensure!(
                Instant::now() < deadline,
                "nginx ({}) does not accept connections on {address} after 10 s",
                prefix.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// CPU time of the master and its workers so far.
    fn cpu_time(&self) -> CpuTimes {
        let master = self.child.id();
        std::iter::once(master)
            .chain(children(master))
            .filter_map(|pid| procfs::cpu_times_at(&format!("/proc/{pid}/stat")))
            .sum()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its worker; SIGKILL would orphan it.
        let stopped = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| procfs::parent(*child) == Some(pid))
        .collect()
}

/// CPU time of this process's threads named [`INGRESS_THREAD`].
fn ingress_cpu_time() -> CpuTimes {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return CpuTimes::default();
    };
    tasks
        .filter_map(Result::ok)
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.trim() == INGRESS_THREAD)
        })
        .filter_map(|task| procfs::cpu_times_at(&task.path().join("stat").to_string_lossy()))
        .sum()
}

/// The routing table: every path of [`HOSTNAME`] to the upstream.
fn table(upstream: SocketAddr) -> RoutingTable {
    RoutingTable {
        version: 1,
        routes: vec![Route {
            service: "bench".into(),
            hostnames: vec![HOSTNAME.into()],
            paths: vec!["/".into()],
            backends: vec![RouteBackend {
                allocation: "a1".into(),
                host: "h1".into(),
                region: "r".into(),
                revision: 1,
                address: upstream.to_string(),
                weight: 1_000_000,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The ingress on its own thread and current-thread runtime; shut down
/// gracefully when dropped.
struct InProcessIngress {
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcessIngress {
    async fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<anyhow::Result<SocketAddr>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(INGRESS_THREAD.into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .thread_name(INGRESS_THREAD)
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = ready_tx.send(Err(error.into()));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
                    let config = IngressConfig::new(Some(listen), None, "h1");
                    let ingress = match Ingress::start(config).await {
                        Ok(ingress) => ingress,
                        Err(error) => {
                            let _ = ready_tx.send(Err(error.into()));
                            return;
                        }
                    };
                    let applied = ingress.apply(table(upstream));
                    let address = ingress
                        .http_address()
                        .filter(|_| applied)
                        .context("the ingress has no HTTP address or refused the table");
                    let _ = ready_tx.send(address);
                    let _ = stop_rx.await;
                    ingress.shutdown().await;
                });
            })?;
        let address = ready_rx
            .await
            .context("the ingress thread ended before it started")??;
        Ok(Self {
            address,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for InProcessIngress {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One `GET /version` with `Connection: close`: the status and the body
/// must be the upstream's.
async fn check(target: &str, address: SocketAddr) -> anyhow::Result<()> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream
        .write_all(
            format!("GET {PATH} HTTP/1.1\r\nHost: {HOSTNAME}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .with_context(|| format!("{target}: no answer within 5 s"))??;
    let answer = String::from_utf8_lossy(&answer);
    ensure!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with(&body()),
        "{target} does not answer {PATH} with the upstream's body: {answer:?}"
    );
    Ok(())
}

/// What one wrk run measured.
#[derive(Debug, Clone, PartialEq)]
struct WrkRun {
    requests_per_sec: f64,
    requests: u64,
    /// Latency distribution lines, in microseconds.
    p50_us: f64,
    p99_us: f64,
    /// Responses wrk counts as errors (status ≥ 400).
    non_2xx: u64,
    /// connect, read, write, timeout.
    socket_errors: [u64; 4],
}

impl WrkRun {
    fn errors(&self) -> u64 {
        self.non_2xx + self.socket_errors.iter().sum::<u64>()
    }

    fn error_text(&self) -> String {
        let [connect, read, write, timeout] = self.socket_errors;
        format!(
            "{} non-2xx/3xx, socket errors: connect {connect}, read {read}, write {write}, timeout {timeout}",
            self.non_2xx
        )
    }
}

/// A wrk duration (`321.45us`, `1.20ms`, `2.00s`, `1.00m`) in microseconds.
fn parse_wrk_time(text: &str) -> anyhow::Result<f64> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("no unit in {text:?}"))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .with_context(|| format!("not a number in {text:?}"))?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => bail!("unknown unit in {text:?}"),
    };
    Ok(number * scale)
}

/// Reads wrk's `--latency` report.
fn parse_wrk(output: &str) -> anyhow::Result<WrkRun> {
    let mut requests_per_sec = None;
    let mut requests = None;
    let mut p50_us = None;
    let mut p99_us = None;
    let mut non_2xx = 0;
    let mut socket_errors = [0; 4];
    for line in output.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", rate] => requests_per_sec = Some(rate.parse::<f64>()?),
            ["50%", time] => p50_us = Some(parse_wrk_time(time)?),
            ["99%", time] => p99_us = Some(parse_wrk_time(time)?),
            [count, "requests", "in", ..] => requests = Some(count.parse::<u64>()?),
            ["Non-2xx", "or", "3xx", "responses:", count] => non_2xx = count.parse()?,
            ["Socket", "errors:", rest @ ..] => {
                // connect 0, read 0, write 0, timeout 0
                let numbers: Vec<u64> = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse().ok())
                    .collect();
                ensure!(numbers.len() == 4, "cannot read {line:?}");
                socket_errors.copy_from_slice(&numbers);
            }
            _ => {}
        }
    }
    Ok(WrkRun {
        requests_per_sec: requests_per_sec.context("no Requests/sec line")?,
        requests: requests.context("no `N requests in` line")?,
        p50_us: p50_us.context("no 50% line (was --latency passed?)")?,
        p99_us: p99_us.context("no 99% line (was --latency passed?)")?,
        non_2xx,
        socket_errors,
    })
}

/// The load of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    /// Requests back to back.
    Saturated,
    /// `--pace` between a response and the next request.
    Paced,
}

impl Load {
    const ALL: [Load; 2] = [Load::Saturated, Load::Paced];

    fn label(self) -> &'static str {
        match self {
            Load::Saturated => "saturated",
            Load::Paced => "paced",
        }
    }
}

/// wrk's script for the paced load.
fn pace_script(pace: Duration) -> String {
    format!(
        "-- argosy-bench ingress: wait between a response and the next request\n\
         function delay()\n  return {}\nend\n",
        pace.as_millis().max(1)
    )
}

/// One wrk run against `address`; `script` paces it.
async fn wrk(
    args: &Args,
    address: SocketAddr,
    duration: Duration,
    script: Option<&Path>,
) -> anyhow::Result<WrkRun> {
    let mut command = Command::new(&args.wrk);
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let output = command
        .args(["-t", &args.threads.to_string()])
        .args(["-c", &args.connections.to_string()])
        .args(["-d", &format!("{}s", duration.as_secs().max(1))])
        .arg("--latency")
        .args(["-H", &format!("Host: {HOSTNAME}")])
        .arg(format!("http://{address}{PATH}"))
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run {}", args.wrk.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "wrk failed ({}): {}{}",
        output.status,
        stdout.trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    parse_wrk(&stdout).with_context(|| format!("cannot read wrk's output: {stdout}"))
}

/// What is measured, in the order the rounds run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Direct,
    Nginx,
    Ingress,
}

impl Target {
    const ALL: [Target; 3] = [Target::Direct, Target::Nginx, Target::Ingress];

    fn label(self) -> &'static str {
        match self {
            Target::Direct => "direct (upstream nginx, no proxy)",
            Target::Nginx => "nginx proxy (1 worker, keepalive 64)",
            Target::Ingress => "argosy ingress (current-thread runtime)",
        }
    }
}

/// A run and the CPU time the measured server spent in it.
struct Measured {
    run: WrkRun,
    cpu: CpuTimes,
}

impl Measured {
    fn per_request(&self, time: Duration) -> f64 {
        time.as_secs_f64() * 1e6 / self.run.requests.max(1) as f64
    }

    /// CPU microseconds per request of the measured server.
    fn cpu_us_per_request(&self) -> f64 {
        self.per_request(self.cpu.total())
    }

    /// Of which in user space.
    fn user_us_per_request(&self) -> f64 {
        self.per_request(self.cpu.user)
    }

    /// Of which in the kernel.
    fn system_us_per_request(&self) -> f64 {
        self.per_request(self.cpu.system)
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or_default()
}

fn ms(us: f64) -> String {
    format!("{:.3} ms", us / 1e3)
}

fn signed_ms(us: f64) -> String {
    format!("{:+.3} ms", us / 1e3)
}

/// `1234567.8` → `1,234,568`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default().trim()
}

/// Cores, CPU model, kernel, load, versions.
async fn machine(args: &Args) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let version = |binary: &Path, flag: &'static str| {
        let binary = binary.to_path_buf();
        async move {
            match Command::new(&binary).arg(flag).output().await {
                // nginx prints its version to stderr, wrk to stdout.
                Ok(o) => {
                    let text = format!(
                        "{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    );
                    first_line(&text).to_owned()
                }
                Err(error) => format!("{}: {error}", binary.display()),
            }
        }
    };
    format!(
        "machine: {cores} cores ({model}), kernel {}, load average {}\n{}; {}",
        kernel.trim(),
        load_average(),
        version(&args.nginx, "-v").await,
        version(&args.wrk, "-v").await,
    )
}

fn load_average() -> String {
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    loadavg
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(args.rounds > 0, "--rounds must be at least 1");
    if cfg!(debug_assertions) {
        println!("warning: a debug build; measure with `cargo build --release -p argosy-bench`");
    }
    println!("{}", machine(&args).await);

    let dir = tempfile::tempdir()?;
    let upstream_prefix = dir.path().join("upstream");
    let proxy_prefix = dir.path().join("proxy");
    std::fs::create_dir_all(upstream_prefix.join("www"))?;
    std::fs::write(upstream_prefix.join("www/version"), body())?;

    let upstream_address = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let upstream = Nginx::start(
        &args.nginx,
        &upstream_prefix,
        &upstream_conf(&upstream_prefix, upstream_address.port()),
        upstream_address,
    )
    .await?;
    let proxy_address = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let proxy = Nginx::start(
        &args.nginx,
        &proxy_prefix,
        &proxy_conf(&proxy_prefix, proxy_address.port(), upstream_address),
        proxy_address,
    )
    .await?;
    let ingress = InProcessIngress::start(upstream_address).await?;

    let address = |target| match target {
        Target::Direct => upstream.address,
        Target::Nginx => proxy.address,
        Target::Ingress => ingress.address,
    };
    // CPU of the server wrk talks to: the upstream for direct, else the proxy.
    let cpu = |target| match target {
        Target::Direct => upstream.cpu_time(),
        Target::Nginx => proxy.cpu_time(),
        Target::Ingress => ingress_cpu_time(),
    };
    for target in Target::ALL {
        check(target.label(), address(target)).await?;
    }
    let script = dir.path().join("paced.lua");
    std::fs::write(&script, pace_script(args.pace))?;
    let script_of = |load| match load {
        Load::Saturated => None,
        Load::Paced => Some(script.as_path()),
    };
    println!(
        "wrk -t {} -c {} -d {}s --latency -H 'Host: {HOSTNAME}' http://ADDRESS{PATH}; \
         paced: the same with -s paced.lua (delay() returns {} ms); \
         {} rounds after a {} s warm-up of each target\n",
        args.threads,
        args.connections,
        args.duration.as_secs().max(1),
        args.pace.as_millis().max(1),
        args.rounds,
        args.warmup.as_secs().max(1),
    );
    for target in Target::ALL {
        wrk(&args, address(target), args.warmup, None).await?;
    }

    let mut results: Vec<(Load, Target, Measured)> = Vec::new();
    for round in 1..=args.rounds {
        for load in Load::ALL {
            for target in Target::ALL {
                let before = cpu(target);
                let run = wrk(&args, address(target), args.duration, script_of(load)).await?;
                let measured = Measured {
                    cpu: cpu(target).since(before),
                    run,
                };
                let flag = if measured.run.errors() > 0 {
                    format!("  ERRORS: {}", measured.run.error_text())
                } else {
                    String::new()
                };
                println!(
                    "round {round} {:<9} {:<40} {:>9} req/s  p50 {}  p99 {}  {:.1} µs CPU/request ({:.1} user){flag}",
                    load.label(),
                    target.label(),
                    thousands(measured.run.requests_per_sec),
                    ms(measured.run.p50_us),
                    ms(measured.run.p99_us),
                    measured.cpu_us_per_request(),
                    measured.user_us_per_request(),
                );
                results.push((load, target, measured));
            }
        }
    }
    drop(ingress);
    drop(proxy);
    drop(upstream);

    let of = |load: Load, target: Target| {
        results
            .iter()
            .filter(move |(l, t, _)| *l == load && *t == target)
            .map(|(_, _, m)| m)
    };
    let med = |load: Load, target: Target, value: fn(&Measured) -> f64| {
        median(of(load, target).map(value).collect())
    };
    let rate = |l, t| med(l, t, |m| m.run.requests_per_sec);
    let p50 = |l, t| med(l, t, |m| m.run.p50_us);
    let p99 = |l, t| med(l, t, |m| m.run.p99_us);

    for load in Load::ALL {
        let mut table = format!(
            "\n{} load:\n\n\
             | target | req/s (median) | p50 | p99 | added p50 over direct | added p99 over direct | CPU per request (the server wrk talks to) | of which user | of which kernel | errors |\n\
             | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
            load.label()
        );
        for target in Target::ALL {
            let added = |value: &dyn Fn(Load, Target) -> f64| match target {
                Target::Direct => "—".to_owned(),
                _ => signed_ms(value(load, target) - value(load, Target::Direct)),
            };
            let errors: u64 = of(load, target).map(|m| m.run.errors()).sum();
            let _ = writeln!(
                table,
                "| {} | {} | {} | {} | {} | {} | {:.1} µs | {:.1} µs | {:.1} µs | {}{} |",
                target.label(),
                thousands(rate(load, target)),
                ms(p50(load, target)),
                ms(p99(load, target)),
                added(&p50),
                added(&p99),
                med(load, target, Measured::cpu_us_per_request),
                med(load, target, Measured::user_us_per_request),
                med(load, target, Measured::system_us_per_request),
                errors,
                if errors > 0 { " ⚠" } else { "" },
            );
        }
        println!("{table}");
    }

    let throughput = rate(Load::Saturated, Target::Ingress) / rate(Load::Saturated, Target::Nginx);
    let verdict = |met: bool| if met { "met" } else { "missed" };
    println!(
        "saturated: ingress req/s ÷ nginx req/s: {throughput:.2}× (aim ≥ 1.00×: {})",
        verdict(throughput >= 1.0)
    );
    let added = |target| p99(Load::Paced, target) - p99(Load::Paced, Target::Direct);
    let (added_nginx, added_ingress) = (added(Target::Nginx), added(Target::Ingress));
    if added_nginx > 0.0 {
        let ratio = added_ingress / added_nginx;
        println!(
            "paced: ingress added p99 ÷ nginx added p99: {} ÷ {} = {ratio:.2}× (aim ≤ 1.20×: {})",
            signed_ms(added_ingress),
            signed_ms(added_nginx),
            verdict(ratio <= 1.2)
        );
    } else {
        println!(
            "paced: ingress added p99 {} against nginx's {}: no ratio (nginx added nothing measurable)",
            signed_ms(added_ingress),
            signed_ms(added_nginx)
        );
    }
    println!(
        "ingress p99 ÷ nginx p99: saturated {:.2}×, paced {:.2}×",
        p99(Load::Saturated, Target::Ingress) / p99(Load::Saturated, Target::Nginx),
        p99(Load::Paced, Target::Ingress) / p99(Load::Paced, Target::Nginx),
    );
    let failed: Vec<String> = results
        .iter()
        .filter(|(_, _, m)| m.run.errors() > 0)
        .map(|(l, t, m)| format!("{} {}: {}", l.label(), t.label(), m.run.error_text()))
        .collect();
    if !failed.is_empty() {
        println!(
            "WARNING: {} run(s) had errors; their figures are suspect:\n  {}",
            failed.len(),
            failed.join("\n  ")
        );
    }
    println!("load average after the runs: {}", load_average());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "Running 10s test @ http://127.0.0.1:41234/version
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   412.33us  201.50us  12.04ms   93.10%
    Req/Sec    38.91k     2.10k   43.87k    71.50%
  Latency Distribution
     50%  380.00us
     75%  450.12us
     90%  540.00us
     99%    1.21ms
  774321 requests in 10.00s, 214.12MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:  77402.51
Transfer/sec:     21.40MB
";

    #[test]
    fn wrk_reports_are_read() {
        let run = parse_wrk(OUTPUT).unwrap();
        assert_eq!(
            run,
            WrkRun {
                requests_per_sec: 77402.51,
                requests: 774_321,
                p50_us: 380.0,
                p99_us: 1210.0,
                non_2xx: 7,
                socket_errors: [0, 3, 0, 1],
            }
        );
        assert_eq!(run.errors(), 11);
    }

    #[test]
    fn a_clean_report_has_no_errors_and_a_report_without_latency_is_refused() {
        let clean: String = OUTPUT
            .lines()
            .filter(|l| !l.contains("errors") && !l.contains("Non-2xx"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(parse_wrk(&clean).unwrap().errors(), 0);
        let no_latency: String = OUTPUT
            .lines()
            .filter(|l| !l.trim_start().starts_with("99%"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(parse_wrk(&no_latency).is_err());
    }

    #[test]
    fn wrk_times_in_every_unit() {
        for (text, micros) in [
            ("321.45us", 321.45),
            ("1.50ms", 1500.0),
            ("2.00s", 2_000_000.0),
            ("1.00m", 60_000_000.0),
        ] {
            assert!(
                (parse_wrk_time(text).unwrap() - micros).abs() < 1e-6,
                "{text}"
            );
        }
        assert!(parse_wrk_time("12").is_err());
        assert!(parse_wrk_time("12ns").is_err());
    }

    #[test]
    fn the_paced_script_waits_whole_milliseconds() {
        assert!(pace_script(Duration::from_millis(4)).contains("return 4\n"));
        assert!(pace_script(Duration::from_micros(10)).contains("return 1\n"));
    }

    #[test]
    fn the_body_is_64_bytes_and_numbers_get_separators() {
        assert_eq!(body().len(), BODY_BYTES);
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(thousands(999.0), "999");
    }
}
