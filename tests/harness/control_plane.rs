//! A real `argosy server` in a temporary data folder on loopback ports,
//! with typed API clients, an HTTP helper and the real CLI pointed at it.

use crate::api::{self, Authed, Bearer, HttpResponse};
use crate::env::TestEnv;
use crate::process::{Process, Spec, clean_command};
use crate::wait::patience;
use crate::{binaries, eventually, pb};
use anyhow::{Context, bail};
use argosy_proto::join::CaFingerprint;
use pb::api_token_service_client::ApiTokenServiceClient;
use pb::fleet_service_client::FleetServiceClient;
use pb::join_token_service_client::JoinTokenServiceClient;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// How long a control plane may take to come up, before scaling.
const START_PATIENCE: Duration = Duration::from_secs(60);

/// What `<data-dir>/endpoints.json` says.
#[derive(Debug, Clone, serde::Deserialize)]
struct Endpoints {
    grpc: SocketAddr,
    http: SocketAddr,
    ca_fingerprint: String,
}

/// A running control plane.
#[derive(Debug)]
pub struct ControlPlane {
    process: Process,
    dir: PathBuf,
    data_dir: PathBuf,
    /// The gRPC listener (TLS).
    pub grpc_addr: SocketAddr,
    /// The HTTP listener.
    pub http_addr: SocketAddr,
    /// The CA's fingerprint, `sha256:…`.
    pub ca_fingerprint: CaFingerprint,
    /// The admin token printed at the first start.
    pub admin_token: String,
    channel: Channel,
    /// The PostgreSQL database, when the test runs on PostgreSQL.
    database_url: Option<String>,
}

fn endpoints(data_dir: &Path) -> anyhow::Result<Endpoints> {
    let path = data_dir.join("endpoints.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{} is not there yet", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not complete JSON yet: {text}", path.display()))
}

fn admin_token(log: &str) -> Option<String> {
    log.lines()
        .find_map(|line| line.trim().strip_prefix("admin token:"))
        .map(|token| token.trim().to_owned())
}

impl ControlPlane {
    /// Starts `argosy server` on the test's store with `extra_args`, on
    /// free loopback ports, and waits until it is ready.
    pub async fn start(env: &TestEnv, extra_args: &[&str]) -> anyhow::Result<Self> {
        let dir = env.new_dir("control-plane");
        let data_dir = dir.join("data");
        let log = dir.join("server.log");
        env.register_log("control plane", &log);
        let mut args: Vec<OsString> = vec![
            "server".into(),
            "--data-dir".into(),
            data_dir.clone().into(),
            "--grpc-listen".into(),
            "127.0.0.1:0".into(),
            "--http-listen".into(),
            "127.0.0.1:0".into(),
        ];
        if let Some(url) = env.database_url() {
            args.push("--database-url".into());
            args.push(url.into());
        }
        args.extend(extra_args.iter().map(OsString::from));
        let spec = Spec {
            name: "the control plane".into(),
            program: binaries().argosy.clone(),
            args,
            env: vec![("ARGOSY_LOG_LEVEL".into(), "info".into())],
            log,
        };
        let mut process = Process::spawn(spec)?;
        let found = wait_ready(&mut process, &data_dir).await?;
        let admin_token = admin_token(&process.log())
            .context("the control plane did not print `admin token:` at its first start")?;
        let ca_fingerprint: CaFingerprint = found
            .ca_fingerprint
            .parse()
            .context("endpoints.json holds a malformed CA fingerprint")?;
        let channel = api::pinned_channel(found.grpc, ca_fingerprint, None)?;
        Ok(Self {
            process,
            dir,
            data_dir,
            grpc_addr: found.grpc,
            http_addr: found.http,
            ca_fingerprint,
            admin_token,
            channel,
            database_url: env.database_url().map(str::to_owned),
        })
    }

    /// Kills the control plane (SIGKILL, like a crash) and starts it again
    /// on the same ports, data folder and store, so agents' join addresses
    /// stay valid. Retries a few times if a port is briefly taken.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.process.kill().await?;
        self.start_again().await
    }

    /// Starts a control plane that was killed with [`ControlPlane::kill`].
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        self.process.kill().await?;
        let grpc = self.grpc_addr.to_string();
        let http = self.http_addr.to_string();
        {
            let args = &mut self.process.spec_mut().args;
            for (flag, value) in [("--grpc-listen", &grpc), ("--http-listen", &http)] {
                let at = args
                    .iter()
                    .position(|a| a == flag)
                    .context("the spec lost a listen flag")?;
                args[at + 1] = value.into();
            }
        }
        let mut attempts = 0;
        loop {
            let _ = std::fs::remove_file(self.data_dir.join("endpoints.json"));
            self.process.restart().await?;
            match wait_ready(&mut self.process, &self.data_dir).await {
                Ok(found) => {
                    anyhow::ensure!(
                        found.grpc == self.grpc_addr && found.http == self.http_addr,
                        "the restarted control plane listens on {} / {}, not {} / {}",
                        found.grpc,
                        found.http,
                        self.grpc_addr,
                        self.http_addr
                    );
                    return Ok(());
                }
                Err(error) if attempts < 10 && self.process.log().contains("cannot listen") => {
                    attempts += 1;
                    eprintln!("restart: a port is still taken ({error:#}); retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The command line and environment it (re)starts with: change them
    /// (a master key, a passphrase file) before [`ControlPlane::start_again`].
    pub fn spec_mut(&mut self) -> &mut crate::process::Spec {
        self.process.spec_mut()
    }

    /// Runs `argosy` with this control plane's command line and environment
    /// changed by `change`, expecting it to exit on its own (a refused
    /// start), and returns its exit status and output.
    pub async fn run_once(
        &self,
        change: impl FnOnce(&mut crate::process::Spec),
    ) -> anyhow::Result<CliOutput> {
        let mut spec = self.process.spec().clone();
        change(&mut spec);
        let output = tokio::time::timeout(
            patience(Duration::from_secs(60)),
            clean_command(&spec.program)
                .args(&spec.args)
                .envs(spec.env.iter().map(|(k, v)| (k, v)))
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .context("the control plane neither started nor exited within the time limit")??;
        Ok(CliOutput {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// Kills the control plane (SIGKILL) without starting it again.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.process.kill().await
    }

    /// Stops it with SIGTERM (a graceful shutdown), killing it after 10 s.
    pub async fn terminate(&mut self) -> anyhow::Result<()> {
        self.process.terminate(Duration::from_secs(10)).await
    }

    /// The server's log so far (stdout and stderr).
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The data folder (`--data-dir`).
    /// The URL of the control plane's own database (its SQLite file or its
    /// PostgreSQL database), for tests that read or tamper with it directly.
    pub fn database(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("argosy.db").display()))
    }

    /// Runs SQL statements on the control plane's database behind its
    /// back (tests of tampering and faults); returns the rows affected.
    pub async fn sql_execute(&self, sql: &str) -> anyhow::Result<u64> {
        use sqlx::Connection as _;
        sqlx::any::install_default_drivers();
        let mut db = sqlx::AnyConnection::connect(&self.database()).await?;
        let done = sqlx::raw_sql(sql).execute(&mut db).await?;
        db.close().await?;
        Ok(done.rows_affected())
    }

    /// The rows of a query on the control plane's database; select text
    /// columns (cast them in SQL when needed).
    pub async fn sql_rows(&self, sql: &str) -> anyhow::Result<Vec<Vec<Option<String>>>> {
        use sqlx::{Connection as _, Row as _};
        sqlx::any::install_default_drivers();
        let mut db = sqlx::AnyConnection::connect(&self.database()).await?;
        let rows = sqlx::query(sql).fetch_all(&mut db).await?;
        db.close().await?;
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| row.try_get::<Option<String>, _>(i).map_err(Into::into))
                    .collect()
            })
            .collect()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `host:port` of the gRPC listener.
    pub fn grpc(&self) -> String {
        self.grpc_addr.to_string()
    }

    /// `http://host:port` of the HTTP listener.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// A TLS channel pinned to this control plane's CA, without a token.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// `token` (or none) attached to this control plane's channel.
    pub fn authed(&self, token: Option<&str>) -> Authed {
        Authed::new(self.channel(), Bearer::new(token))
    }

    /// FleetService as admin.
    pub fn fleet(&self) -> FleetServiceClient<Authed> {
        self.fleet_as(Some(&self.admin_token))
    }

    /// FleetService with `token`.
    pub fn fleet_as(&self, token: Option<&str>) -> FleetServiceClient<Authed> {
        FleetServiceClient::new(self.authed(token))
    }

    /// JoinTokenService as admin.
    pub fn join_tokens(&self) -> JoinTokenServiceClient<Authed> {
        self.join_tokens_as(Some(&self.admin_token))
    }

    /// JoinTokenService with `token`.
    pub fn join_tokens_as(&self, token: Option<&str>) -> JoinTokenServiceClient<Authed> {
        JoinTokenServiceClient::new(self.authed(token))
    }

    /// ApiTokenService as admin.
    pub fn api_tokens(&self) -> ApiTokenServiceClient<Authed> {
        self.api_tokens_as(Some(&self.admin_token))
    }

    /// ApiTokenService with `token`.
    pub fn api_tokens_as(&self, token: Option<&str>) -> ApiTokenServiceClient<Authed> {
        ApiTokenServiceClient::new(self.authed(token))
    }

    /// Creates a join token (1 h) and returns the whole answer.
    pub async fn create_join_token(
        &self,
        region: &str,
        labels: &[(&str, &str)],
        max_uses: u32,
    ) -> anyhow::Result<pb::CreateJoinTokenResponse> {
        let response = self
            .join_tokens()
            .create_join_token(pb::CreateJoinTokenRequest {
                region: region.to_owned(),
                labels: labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                ttl_seconds: 3600,
                max_uses,
            })
            .await
            .context("CreateJoinToken failed")?
            .into_inner();
        Ok(response)
    }

    /// A join string for a new token (1 h, `max_uses`, region, labels).
    pub async fn join_string(
        &self,
        region: &str,
        labels: &[(&str, &str)],
        max_uses: u32,
    ) -> anyhow::Result<String> {
        Ok(self
            .create_join_token(region, labels, max_uses)
            .await?
            .join_string)
    }

    /// Every host, as admin.
    pub async fn hosts(&self) -> anyhow::Result<Vec<pb::Host>> {
        Ok(self
            .fleet()
            .list_hosts(pb::ListHostsRequest::default())
            .await
            .context("ListHosts failed")?
            .into_inner()
            .hosts)
    }

    /// One host, as admin.
    pub async fn host(&self, id: &str) -> anyhow::Result<pb::Host> {
        Ok(self
            .fleet()
            .get_host(pb::GetHostRequest { id: id.to_owned() })
            .await
            .with_context(|| format!("GetHost {id} failed"))?
            .into_inner())
    }

    /// Waits until host `id` satisfies `check` (which says what is missing)
    /// and returns it.
    pub async fn wait_for_host(
        &self,
        id: &str,
        what: &str,
        check: impl Fn(&pb::Host) -> anyhow::Result<()>,
    ) -> anyhow::Result<pb::Host> {
        eventually(&format!("host {id} to be {what}"), || async {
            let host = self.host(id).await?;
            check(&host).map(|()| host)
        })
        .await
    }

    /// Waits until host `id` is online and has sent a sample.
    pub async fn wait_online(&self, id: &str) -> anyhow::Result<pb::Host> {
        self.wait_for_host(id, "online with a sample", |host| {
            anyhow::ensure!(
                host.status == pb::HostStatus::Online as i32,
                "status is {}",
                crate::status_name(host.status)
            );
            anyhow::ensure!(host.latest.is_some(), "no sample yet");
            Ok(())
        })
        .await
    }

    /// Waits until host `id` has `status`.
    pub async fn wait_status(&self, id: &str, status: pb::HostStatus) -> anyhow::Result<pb::Host> {
        self.wait_for_host(id, status.as_str_name(), |host| {
            anyhow::ensure!(
                host.status == status as i32,
                "status is {}",
                crate::status_name(host.status)
            );
            Ok(())
        })
        .await
    }

    /// `QueryMetrics` as admin (`end_ms` 0 means now, `step_ms` 0 lets the
    /// server pick).
    pub async fn query_metric(
        &self,
        host_id: &str,
        metric: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> anyhow::Result<pb::QueryMetricsResponse> {
        Ok(self
            .fleet()
            .query_metrics(pb::QueryMetricsRequest {
                host_id: host_id.to_owned(),
                metric: metric.to_owned(),
                start_ms,
                end_ms,
                step_ms,
            })
            .await
            .with_context(|| format!("QueryMetrics {metric} of {host_id} failed"))?
            .into_inner())
    }

    /// Opens `WatchHosts` as admin.
    pub async fn watch(&self, include_metrics: bool) -> anyhow::Result<Watch> {
        let stream = self
            .fleet()
            .watch_hosts(pb::WatchHostsRequest { include_metrics })
            .await
            .context("WatchHosts failed")?
            .into_inner();
        Ok(Watch {
            stream,
            seen: Vec::new(),
        })
    }

    /// `GET path` on the HTTP listener, with an optional bearer token.
    pub async fn http_get(&self, path: &str, token: Option<&str>) -> anyhow::Result<HttpResponse> {
        api::http_get(self.http_addr, path, token).await
    }

    /// `POST path` with `body` on the HTTP listener, with an optional bearer token.
    pub async fn http_post(
        &self,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> anyhow::Result<HttpResponse> {
        api::http_request(
            self.http_addr,
            http::Method::POST,
            path,
            token,
            body.as_bytes().to_vec(),
        )
        .await
    }

    /// `argosy user add NAME --role ROLE --password-stdin` as admin.
    pub async fn add_user(&self, name: &str, role: &str, password: &str) -> anyhow::Result<()> {
        self.cli()
            .stdin(&format!("{password}\n"))
            .run(&["user", "add", name, "--role", role, "--password-stdin"])
            .await?
            .ok()?;
        Ok(())
    }

    /// `DELETE path` on the HTTP listener, with an optional bearer token.
    pub async fn http_delete(
        &self,
        path: &str,
        token: Option<&str>,
    ) -> anyhow::Result<HttpResponse> {
        api::http_request(
            self.http_addr,
            http::Method::DELETE,
            path,
            token,
            Vec::new(),
        )
        .await
    }

    /// The real CLI, pointed at this control plane as admin through
    /// `ARGOSY_ADDR`, `ARGOSY_TOKEN` and `ARGOSY_CA_FINGERPRINT`, with an
    /// empty CLI config.
    pub fn cli(&self) -> Cli {
        Cli::bare(&self.dir.join("cli-home"))
            .env("ARGOSY_ADDR", &self.grpc())
            .env("ARGOSY_TOKEN", &self.admin_token)
            .env("ARGOSY_CA_FINGERPRINT", &self.ca_fingerprint.to_string())
    }
}

/// An open `WatchHosts` stream.
#[derive(Debug)]
pub struct Watch {
    stream: tonic::Streaming<pb::HostEvent>,
    seen: Vec<pb::HostEvent>,
}

impl Watch {
    /// Reads events until one of `kind` for `host_id` arrives (scaled
    /// 30 s at most) and returns it.
    pub async fn next(
        &mut self,
        kind: pb::host_event::Kind,
        host_id: &str,
    ) -> anyhow::Result<pb::HostEvent> {
        let limit = patience(Duration::from_secs(30));
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let event = tokio::time::timeout_at(deadline, self.stream.message())
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "no {kind:?} event for {host_id} within {:.0}s; saw: {:?}",
                        limit.as_secs_f64(),
                        self.seen
                            .iter()
                            .map(|e| (e.kind, e.host.as_ref().map(|h| h.id.clone())))
                            .collect::<Vec<_>>()
                    )
                })?
                .context("the WatchHosts stream failed")?
                .context("the WatchHosts stream ended")?;
            self.seen.push(event.clone());
            if event.kind == kind as i32 && event.host.as_ref().is_some_and(|h| h.id == host_id) {
                return Ok(event);
            }
        }
    }

    /// Every event read so far.
    pub fn seen(&self) -> &[pb::HostEvent] {
        &self.seen
    }
}

/// Waits for endpoints.json and `/readyz`; fails at once if the process
/// exits.
async fn wait_ready(process: &mut Process, data_dir: &Path) -> anyhow::Result<Endpoints> {
    let limit = patience(START_PATIENCE);
    let started = Instant::now();
    let mut last_error = anyhow::anyhow!("not checked yet");
    while started.elapsed() < limit {
        if let Some(status) = process.try_exit_status()? {
            bail!(
                "the control plane exited with {status} while starting; its log:\n{}",
                process.log()
            );
        }
        match endpoints(data_dir) {
            Ok(found) => match api::http_get(found.http, "/readyz", None).await {
                Ok(response) if response.status == 200 => {
                    if admin_token(&process.log()).is_some() || !is_first_start(process) {
                        return Ok(found);
                    }
                    last_error = anyhow::anyhow!("ready, but the banner is not printed yet");
                }
                Ok(response) => {
                    last_error =
                        anyhow::anyhow!("/readyz answered {}: {}", response.status, response.text())
                }
                Err(error) => last_error = error,
            },
            Err(error) => last_error = error,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last_error.context(format!(
        "the control plane was not ready within {:.0}s; its log:\n{}",
        limit.as_secs_f64(),
        process.log()
    )))
}

/// Whether the log shows exactly one start (the admin token is printed only
/// at the first start of a store).
fn is_first_start(process: &Process) -> bool {
    process.log().matches("=== harness: starting").count() <= 1
}

/// What a CLI run printed.
#[derive(Debug, Clone)]
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// Fails, showing both streams, unless the command succeeded.
    pub fn ok(self) -> anyhow::Result<Self> {
        anyhow::ensure!(
            self.status.success(),
            "the CLI failed with {}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        Ok(self)
    }

    /// Standard output as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(&self.stdout).with_context(|| {
            format!(
                "the CLI's output is not JSON:\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// The real `argosy` CLI with a controlled environment: no inherited
/// `ARGOSY_*` variables, its own `HOME`, and `ARGOSY_CLI_CONFIG` in it.
#[derive(Debug, Clone)]
pub struct Cli {
    home: PathBuf,
    env: Vec<(String, String)>,
    /// What the CLI reads on standard input (nothing when unset).
    stdin: Option<String>,
}

impl Cli {
    /// A CLI with nothing configured but `HOME=home` and
    /// `ARGOSY_CLI_CONFIG=home/cli.toml`.
    pub fn bare(home: &Path) -> Self {
        Self {
            home: home.to_owned(),
            env: vec![(
                "ARGOSY_CLI_CONFIG".into(),
                home.join("cli.toml").to_string_lossy().into_owned(),
            )],
            stdin: None,
        }
    }

    /// Feeds `text` to the CLI's standard input (e.g. `--password-stdin`).
    pub fn stdin(mut self, text: &str) -> Self {
        self.stdin = Some(text.to_owned());
        self
    }

    /// Sets (or replaces) an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Removes an environment variable this CLI would set.
    pub fn without(mut self, key: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self
    }

    /// The CLI config file it uses.
    pub fn config_path(&self) -> PathBuf {
        self.env
            .iter()
            .find(|(k, _)| k == "ARGOSY_CLI_CONFIG")
            .map_or_else(
                || self.home.join(".config/argosy/cli.toml"),
                |(_, v)| PathBuf::from(v),
            )
    }

    /// Runs `argosy args…` (60 s at most) and returns what it printed.
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<CliOutput> {
        std::fs::create_dir_all(&self.home)?;
        let mut command = clean_command(&binaries().argosy);
        command
            .args(args)
            .env("HOME", &self.home)
            .env_remove("XDG_CONFIG_HOME")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        command.stdin(if self.stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        });
        let run = async {
            let mut child = command.spawn()?;
            if let (Some(text), Some(mut input)) = (&self.stdin, child.stdin.take()) {
                use tokio::io::AsyncWriteExt as _;
                input.write_all(text.as_bytes()).await?;
            }
            child.wait_with_output().await
        };
        let output = tokio::time::timeout(patience(Duration::from_secs(60)), run)
            .await
            .with_context(|| format!("`argosy {}` did not finish in time", args.join(" ")))??;
        Ok(CliOutput {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}
