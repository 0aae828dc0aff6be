//! The only module that talks to the Docker engine (through bollard): its
//! version for the inventory ([`probe`]), and the [`Engine`] the
//! allocations runtime drives — list the agent's managed containers,
//! pull, create with labels and limits, start, stop, remove, exec, engine
//! events and container logs — and, for backups, commands streaming their
//! stdin and stdout ([`Engine::exec_streaming`]) and where a volume lives
//! on the host ([`Engine::volume_mountpoint`]).
//!
//! Containers are created with Docker's restart policy `no`: the agent
//! restarts them itself (see `reconcile`), so it sees every exit and OOM
//! kill and applies its own backoff. Every error says what failed in
//! words a person can act on; an engine that cannot be reached is
//! [`EngineError::Unreachable`], which the runtime reports as the host's
//! error rather than an allocation's.

use crate::health::Target;
use crate::reconcile::{
    LABEL_ALLOCATION, LABEL_MANAGED, LABEL_OWNER, LABEL_REVISION, LABEL_SERVICE, LABEL_SPEC_HASH,
    ObservedContainer, RunState, protocol,
};
use crate::secrets::{CONTAINER_DIR, Injected};
use argosy_proto::v1::{Allocation, DockerInfo};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EventMessage, HostConfig, Mount, MountType,
    PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, EventsOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, StopContainerOptions,
};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_stream::{Stream, StreamExt};

/// How long the engine gets to answer before it counts as unavailable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the engine is when neither the caller nor `DOCKER_HOST` says.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// Whether the Docker engine (`DOCKER_HOST` or the default socket)
/// answers, and its version or why not.
pub async fn probe(timeout: Duration) -> DockerInfo {
    let answer = async {
        let engine = Engine::connect(None).await?;
        engine.version().await
    };
    match tokio::time::timeout(timeout, answer).await {
        Ok(Ok(version)) => DockerInfo {
            available: true,
            version,
            error: String::new(),
        },
        Ok(Err(e)) => unavailable(e.to_string()),
        Err(_) => unavailable(format!(
            "the Docker engine did not answer within {}",
            humantime::format_duration(timeout)
        )),
    }
}

fn unavailable(error: String) -> DockerInfo {
    DockerInfo {
        available: false,
        version: String::new(),
        error,
    }
}

/// Why an engine operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("the Docker engine at {host} is not reachable: {reason}; is dockerd running?")]
    Unreachable { host: String, reason: String },
    #[error("image {image} could not be pulled: {reason}")]
    Pull { image: String, reason: String },
    #[error("cannot start the container: a published host port is already in use ({reason})")]
    PortInUse { reason: String },
    #[error("{what} failed: {reason}")]
    Refused {
        what: String,
        /// The HTTP status of the engine's answer (0: in a stream).
        status: u16,
        reason: String,
    },
    #[error("{what} did not finish within {}", humantime::format_duration(*.timeout))]
    Timeout { what: String, timeout: Duration },
}

impl EngineError {
    /// Whether the engine itself is away (a host-level problem).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }

    /// Whether the engine answered 404 (no such container or image).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Refused { status: 404, .. })
    }
}

/// One line or chunk of a container's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    pub stream: LogStream,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// A container event the runtime reacts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineEvent {
    /// `start`, `die`, `oom`, `stop`, `destroy`, …
    pub action: String,
    pub container_id: String,
    pub allocation: Option<String>,
}

/// A managed container and where its health probes reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub container: ObservedContainer,
    pub target: Target,
}

/// Bytes of a streaming exec's output in flight before the command waits
/// for its reader.
const EXEC_PIPE_BYTES: usize = 64 * 1024;

/// How long the engine gets to record a finished exec's exit code.
const EXEC_EXIT_PATIENCE: Duration = Duration::from_secs(10);

/// Which standard streams of an exec to attach (stderr always is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExecStdio {
    pub stdin: bool,
    pub stdout: bool,
}

/// A command running in a container; see [`Engine::exec_streaming`].
pub struct ExecStreams {
    /// Its stdout (empty when not attached).
    pub stdout: Pin<Box<dyn AsyncRead + Send>>,
    /// Its stderr: read it to its end or drop it.
    pub stderr: Pin<Box<dyn AsyncRead + Send>>,
    /// Its stdin (a sink when not attached); shut it down to close it.
    pub stdin: Pin<Box<dyn AsyncWrite + Send>>,
    /// Its exit code, once its output has ended.
    pub exit_code: Pin<Box<dyn Future<Output = Result<i64, EngineError>> + Send>>,
}

/// A boxed stream, for what the engine streams back.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, EngineError>> + Send>>;

/// A handle on one Docker engine. Cheap to clone; connecting does no I/O
/// until [`Engine::connect`] negotiates the API version.
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    host: String,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// The engine address to use: `host`, else `DOCKER_HOST`, else the
/// default socket.
pub fn resolve_host(host: Option<&str>) -> String {
    host.filter(|h| !h.is_empty())
        .map(str::to_owned)
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| DEFAULT_HOST.to_owned())
}

impl Engine {
    /// Connects to `host` (see [`resolve_host`]) and agrees on an API
    /// version with it (engines older than bollard's default answer only
    /// to their own).
    pub async fn connect(host: Option<&str>) -> Result<Self, EngineError> {
        let host = resolve_host(host);
        let unreachable = |reason: String| EngineError::Unreachable {
            host: host.clone(),
            reason,
        };
        let docker = Docker::connect_with_host(&host).map_err(|e| unreachable(chain(&e)))?;
        let docker = tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version())
            .await
            .map_err(|_| unreachable("it did not answer within 10s".into()))?
            .map_err(|e| unreachable(chain(&e)))?;
        Ok(Self { docker, host })
    }

    /// The engine's address, as in `unix:///var/run/docker.sock`.
    pub fn host(&self) -> &str {
        &self.host
    }

    fn error(&self, what: impl Into<String>, error: BollardError) -> EngineError {
        let what = what.into();
        match error {
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } => EngineError::Refused {
                what,
                status: status_code,
                reason: message,
            },
            BollardError::DockerStreamError { error } => EngineError::Refused {
                what,
                status: 0,
                reason: error,
            },
            e @ (BollardError::JsonDataError { .. }
            | BollardError::JsonSerdeError { .. }
            | BollardError::DockerContainerWaitError { .. }
            | BollardError::APIVersionParseError {}) => EngineError::Refused {
                what,
                status: 0,
                reason: chain(&e),
            },
            BollardError::RequestTimeoutError => EngineError::Unreachable {
                host: self.host.clone(),
                reason: format!("{what} timed out"),
            },
            e => EngineError::Unreachable {
                host: self.host.clone(),
                reason: chain(&e),
            },
        }
    }

    /// The engine's version; fails if it is not reachable.
    pub async fn version(&self) -> Result<String, EngineError> {
        let version = self
            .docker
            .version()
            .await
            .map_err(|e| self.error("asking the engine's version", e))?;
        Ok(version.version.unwrap_or_default())
    }

    /// The containers labelled `argosy.managed=true` and owned by `owner`,
    /// in any state, inspected.
    pub async fn list_managed(&self, owner: &str) -> Result<Vec<Listed>, EngineError> {
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![
                format!("{LABEL_MANAGED}=true"),
                format!("{LABEL_OWNER}={owner}"),
            ],
        )]);
        let summaries = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| self.error("listing containers", e))?;
        let mut listed = Vec::with_capacity(summaries.len());
        for summary in summaries {
            let Some(id) = summary.id else { continue };
            let inspected = match self.inspect(&id).await {
                Ok(inspected) => inspected,
                // Removed between the list and the inspect.
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            // The inspected time has nanoseconds (the summary's only
            // seconds), so two containers made in one second are ordered.
            let created_ms = serde_json::to_value(&inspected.created)
                .ok()
                .and_then(|v| v.as_str().map(|t| unix_ms(Some(t))))
                .filter(|ms| *ms > 0)
                .unwrap_or_else(|| summary.created.unwrap_or(0).saturating_mul(1000));
            listed.push(observe(&id, created_ms, &inspected));
        }
        Ok(listed)
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInspectResponse, EngineError> {
        self.docker
            .inspect_container(id, None)
            .await
            .map_err(|e| self.error(format!("inspecting container {id}"), e))
    }

    /// `docker inspect` of one container, as JSON (for tests and
    /// diagnostics).
    pub async fn inspect_json(&self, id: &str) -> Result<serde_json::Value, EngineError> {
        let inspected = self.inspect(id).await?;
        serde_json::to_value(inspected).map_err(|e| EngineError::Refused {
            what: format!("inspecting container {id}"),
            status: 0,
            reason: e.to_string(),
        })
    }

    /// Whether the engine has `image` locally.
    pub async fn has_image(&self, image: &str) -> Result<bool, EngineError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) => {
                let e = self.error(format!("inspecting image {image}"), e);
                if e.is_not_found() { Ok(false) } else { Err(e) }
            }
        }
    }

    /// Pulls `image` (no registry credentials).
    pub async fn pull(&self, image: &str) -> Result<(), EngineError> {
        let (from_image, tag) = split_reference(image);
        let options = CreateImageOptions {
            from_image: Some(from_image.to_owned()),
            tag: tag.map(str::to_owned),
            ..Default::default()
        };
        let mut progress = self.docker.create_image(Some(options), None, None);
        while let Some(step) = progress.next().await {
            if let Err(e) = step {
                return Err(match self.error("pulling", e) {
                    EngineError::Refused { reason, .. } => EngineError::Pull {
                        image: image.to_owned(),
                        reason,
                    },
                    other => other,
                });
            }
        }
        // Some engines end the stream without an error for a reference
        // they could not resolve: make sure.
        if self.has_image(image).await? {
            Ok(())
        } else {
            Err(EngineError::Pull {
                image: image.to_owned(),
                reason: "the engine finished pulling but does not have it".into(),
            })
        }
    }

    /// Creates (does not start) the container of `allocation`, labelled
    /// for `owner` with `spec_hash`, with its secrets `injected` and its
    /// route port published on `advertise`, and returns its id.
    pub async fn create(
        &self,
        owner: &str,
        allocation: &Allocation,
        spec_hash: &str,
        injected: &Injected,
        advertise: IpAddr,
    ) -> Result<String, EngineError> {
        let body = create_body(owner, allocation, spec_hash, injected, advertise);
        let name = container_name(allocation);
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| {
                let image = allocation
                    .container
                    .as_ref()
                    .map(|c| c.image.as_str())
                    .unwrap_or_default();
                match self.error(format!("creating the container from {image}"), e) {
                    EngineError::Refused {
                        status: 404,
                        reason,
                        ..
                    } => EngineError::Pull {
                        image: image.to_owned(),
                        reason,
                    },
                    other => other,
                }
            })?;
        for warning in created.warnings {
            tracing::warn!(allocation = %allocation.id, %warning, "the engine warned about the container");
        }
        Ok(created.id)
    }

    /// Starts a created or exited container.
    pub async fn start(&self, id: &str) -> Result<(), EngineError> {
        self.docker.start_container(id, None).await.map_err(|e| {
            match self.error(format!("starting container {id}"), e) {
                EngineError::Refused { reason, .. }
                    if reason.contains("port is already allocated")
                        || reason.contains("address already in use") =>
                {
                    EngineError::PortInUse { reason }
                }
                other => other,
            }
        })
    }

    /// Stops a container: SIGTERM, then SIGKILL after `grace`. A container
    /// that is gone or already stopped counts as stopped.
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<(), EngineError> {
        let t = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        match self
            .docker
            .stop_container(
                id,
                Some(StopContainerOptions {
                    t: Some(t),
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => match self.error(format!("stopping container {id}"), e) {
                e if e.is_not_found() => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Removes a container (forcibly, with its anonymous volumes; named
    /// volumes stay). A container that is already gone counts as removed.
    pub async fn remove(&self, id: &str) -> Result<(), EngineError> {
        match self
            .docker
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => match self.error(format!("removing container {id}"), e) {
                e if e.is_not_found() => Ok(()),
                // Already being removed.
                EngineError::Refused { status: 409, .. } => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Runs `command` in the container and returns its exit code.
    pub async fn exec(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<i64, EngineError> {
        let what = format!("running `{}` in container {id}", command.join(" "));
        let run = async {
            let exec = self
                .docker
                .create_exec(
                    id,
                    CreateExecOptions {
                        cmd: Some(command.to_vec()),
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| self.error(what.clone(), e))?;
            if let StartExecResults::Attached { mut output, .. } = self
                .docker
                .start_exec(&exec.id, None)
                .await
                .map_err(|e| self.error(what.clone(), e))?
            {
                while output.next().await.is_some() {}
            }
            let inspected = self
                .docker
                .inspect_exec(&exec.id)
                .await
                .map_err(|e| self.error(what.clone(), e))?;
            Ok(inspected.exit_code.unwrap_or(-1))
        };
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| EngineError::Timeout {
                what: what.clone(),
                timeout,
            })?
    }

    /// Starts `command` in container `id` with its standard streams
    /// attached as `stdio` asks and `env` (`KEY=value`) added to its
    /// environment, and returns the streams as they flow: stdout and
    /// stdin with backpressure (64 KiB in flight), stderr separately, and
    /// the exit code once the command has ended.
    ///
    /// The caller must read `stderr` to its end or drop it (an unread
    /// stderr stalls the command), and read `stdout` to its end when it
    /// was attached; dropping an attached `stdout` early closes the
    /// connection, so the command gets a broken pipe instead of running
    /// on unseen. Shutting `stdin` down closes the command's stdin.
    pub async fn exec_streaming(
        &self,
        id: &str,
        command: &[String],
        env: Vec<String>,
        stdio: ExecStdio,
    ) -> Result<ExecStreams, EngineError> {
        let program = command.first().map_or("", String::as_str);
        let what = format!("running `{program}` in container {id}");
        let exec = self
            .docker
            .create_exec(
                id,
                CreateExecOptions {
                    cmd: Some(command.to_vec()),
                    env: Some(env).filter(|e| !e.is_empty()),
                    attach_stdin: Some(stdio.stdin),
                    attach_stdout: Some(stdio.stdout),
                    attach_stderr: Some(true),
                    tty: Some(false),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| self.error(what.clone(), e))?;
        let started = self
            .docker
            .start_exec(
                &exec.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: false,
                    output_capacity: Some(EXEC_PIPE_BYTES),
                }),
            )
            .await
            .map_err(|e| self.error(what.clone(), e))?;
        let StartExecResults::Attached { mut output, input } = started else {
            return Err(EngineError::Refused {
                what,
                status: 0,
                reason: "the engine started the command detached".into(),
            });
        };
        let stdin: Pin<Box<dyn AsyncWrite + Send>> = if stdio.stdin {
            input
        } else {
            // Holding the unused half would keep the connection open
            // after the reader is gone.
            drop(input);
            Box::pin(tokio::io::sink())
        };
        let (mut stdout_pipe, stdout) = tokio::io::duplex(EXEC_PIPE_BYTES);
        let (mut stderr_pipe, stderr) = tokio::io::duplex(EXEC_PIPE_BYTES);
        let engine = self.clone();
        let pump_what = what.clone();
        let pump = tokio::spawn(async move {
            let mut stderr_open = true;
            while let Some(frame) = output.next().await {
                match frame {
                    Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                        if stdout_pipe.write_all(&message).await.is_err() {
                            // The reader is gone: end the connection.
                            return Ok(());
                        }
                    }
                    Ok(LogOutput::StdErr { message }) => {
                        if stderr_open && stderr_pipe.write_all(&message).await.is_err() {
                            stderr_open = false;
                        }
                    }
                    Ok(LogOutput::StdIn { .. }) => {}
                    Err(e) => return Err(engine.error(pump_what.clone(), e)),
                }
            }
            Ok(())
        });
        let engine = self.clone();
        let exec_id = exec.id;
        let exit_code = async move {
            match pump.await {
                Ok(pumped) => pumped?,
                Err(e) => {
                    return Err(EngineError::Refused {
                        what,
                        status: 0,
                        reason: format!("copying its output stopped: {e}"),
                    });
                }
            }
            // The output ends when the command does; the engine may take
            // a moment to record the exit code.
            let deadline = tokio::time::Instant::now() + EXEC_EXIT_PATIENCE;
            loop {
                let inspected = engine
                    .docker
                    .inspect_exec(&exec_id)
                    .await
                    .map_err(|e| engine.error(what.clone(), e))?;
                if inspected.running != Some(true) {
                    return Ok(inspected.exit_code.unwrap_or(-1));
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(EngineError::Timeout {
                        what: format!("{what} (waiting for its exit code)"),
                        timeout: EXEC_EXIT_PATIENCE,
                    });
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        Ok(ExecStreams {
            stdout: Box::pin(stdout),
            stderr: Box::pin(stderr),
            stdin,
            exit_code: Box::pin(exit_code),
        })
    }

    /// Where the engine keeps volume `name` on this host.
    pub async fn volume_mountpoint(&self, name: &str) -> Result<PathBuf, EngineError> {
        let volume = self
            .docker
            .inspect_volume(name)
            .await
            .map_err(|e| self.error(format!("inspecting volume {name}"), e))?;
        if volume.mountpoint.is_empty() {
            return Err(EngineError::Refused {
                what: format!("inspecting volume {name}"),
                status: 0,
                reason: format!(
                    "the volume's driver ({}) has no mount point on this host",
                    volume.driver
                ),
            });
        }
        Ok(PathBuf::from(volume.mountpoint))
    }

    /// Engine events about `owner`'s managed containers, until the engine
    /// goes away (the stream then ends, or yields an error and ends).
    pub fn events(&self, owner: &str) -> BoxStream<EngineEvent> {
        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            (
                "label".to_owned(),
                vec![
                    format!("{LABEL_MANAGED}=true"),
                    format!("{LABEL_OWNER}={owner}"),
                ],
            ),
            (
                "event".to_owned(),
                [
                    "create", "start", "die", "oom", "stop", "destroy", "pause", "unpause",
                ]
                .map(str::to_owned)
                .to_vec(),
            ),
        ]);
        let engine = self.clone();
        let stream = self
            .docker
            .events(Some(EventsOptions {
                filters: Some(filters),
                ..Default::default()
            }))
            .map(move |event| match event {
                Ok(message) => Ok(event_of(message)),
                Err(e) => Err(engine.error("watching engine events", e)),
            });
        Box::pin(stream)
    }

    /// The container's output (stdout and stderr), the last `tail` lines
    /// (all if `None`), then, with `follow`, what it writes until it stops.
    pub fn logs(&self, id: &str, follow: bool, tail: Option<usize>) -> BoxStream<LogChunk> {
        let engine = self.clone();
        let what = format!("reading the logs of container {id}");
        let stream = self
            .docker
            .logs(
                id,
                Some(LogsOptions {
                    follow,
                    stdout: true,
                    stderr: true,
                    tail: tail.map_or_else(|| "all".to_owned(), |n| n.to_string()),
                    ..Default::default()
                }),
            )
            .filter_map(move |chunk| match chunk {
                Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                    Some(Ok(LogChunk {
                        stream: LogStream::Stdout,
                        data: message.to_vec(),
                    }))
                }
                Ok(LogOutput::StdErr { message }) => Some(Ok(LogChunk {
                    stream: LogStream::Stderr,
                    data: message.to_vec(),
                })),
                Ok(LogOutput::StdIn { .. }) => None,
                Err(e) => Some(Err(engine.error(what.clone(), e))),
            });
        Box::pin(stream)
    }
}

fn event_of(message: EventMessage) -> EngineEvent {
    let actor = message.actor.unwrap_or_default();
    let attributes = actor.attributes.unwrap_or_default();
    EngineEvent {
        action: message.action.unwrap_or_default(),
        container_id: actor.id.unwrap_or_default(),
        allocation: attributes.get(LABEL_ALLOCATION).cloned(),
    }
}

/// An error and its causes, `: `-separated.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `name[:tag]` or `name@digest` → (fromImage, tag). A reference without
/// a tag means `latest` (an empty tag would pull every tag).
fn split_reference(image: &str) -> (&str, Option<&str>) {
    if image.contains('@') {
        return (image, None);
    }
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(colon) => {
            let at = last_slash + colon;
            (&image[..at], Some(&image[at + 1..]))
        }
        None => (image, Some("latest")),
    }
}

/// `argosy-<service>-<allocation>-<random>`, in the characters Docker
/// allows.
fn container_name(allocation: &Allocation) -> String {
    let clean = |s: &str, max: usize| {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .take(max)
            .collect::<String>()
    };
    let nonce: u32 = rand::random();
    format!(
        "argosy-{}-{}-{nonce:08x}",
        clean(&allocation.service, 40),
        clean(&allocation.id, 60)
    )
}

fn positive(n: u64) -> Option<i64> {
    (n > 0).then(|| i64::try_from(n).unwrap_or(i64::MAX))
}

/// The engine's view of an allocation's container: env secrets join the
/// environment, file secrets are bind-mounted read-only, and a route port
/// `ports` does not publish goes on an ephemeral port of `advertise`.
fn create_body(
    owner: &str,
    allocation: &Allocation,
    spec_hash: &str,
    injected: &Injected,
    advertise: IpAddr,
) -> ContainerCreateBody {
    let spec = allocation.container.clone().unwrap_or_default();
    let labels = HashMap::from([
        (LABEL_MANAGED.to_owned(), "true".to_owned()),
        (LABEL_OWNER.to_owned(), owner.to_owned()),
        (LABEL_ALLOCATION.to_owned(), allocation.id.clone()),
        (LABEL_SERVICE.to_owned(), allocation.service.clone()),
        (LABEL_REVISION.to_owned(), allocation.revision_id.clone()),
        (LABEL_SPEC_HASH.to_owned(), spec_hash.to_owned()),
    ]);
    let env: BTreeMap<&str, &str> = spec
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(injected.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .collect();
    let env: Vec<String> = env.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut exposed = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for port in &spec.ports {
        let key = format!("{}/{}", port.container_port, protocol(&port.protocol));
        exposed.push(key.clone());
        if port.host_port > 0 {
            bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: Some(port.host_ip.clone()).filter(|ip| !ip.is_empty()),
                    host_port: Some(port.host_port.to_string()),
                });
        }
    }
    if let Some(route_port) = crate::reconcile::unpublished_route_port(&spec) {
        let key = format!("{route_port}/tcp");
        if !exposed.contains(&key) {
            exposed.push(key.clone());
        }
        bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: Some(advertise.to_string()),
                // None: an ephemeral port the engine picks.
                host_port: None,
            });
    }
    let mut mounts: Vec<Mount> = spec
        .volumes
        .iter()
        .map(|volume| Mount {
            target: Some(volume.target.clone()),
            source: Some(volume.source.clone()),
            typ: Some(if volume.bind {
                MountType::BIND
            } else {
                MountType::VOLUME
            }),
            read_only: Some(volume.read_only),
            ..Default::default()
        })
        .collect();
    if let Some(dir) = &injected.files_dir {
        mounts.push(Mount {
            target: Some(CONTAINER_DIR.to_owned()),
            source: Some(dir.display().to_string()),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        });
    }
    let memory = positive(spec.memory_bytes);
    // 0: no swap, i.e. memory + swap = memory.
    let memory_swap = positive(spec.memory_swap_bytes).or(memory);
    let host_config = HostConfig {
        memory,
        memory_swap,
        nano_cpus: positive(u64::from(spec.cpu_millis) * 1_000_000),
        pids_limit: positive(u64::from(spec.pids_limit)),
        port_bindings: Some(bindings).filter(|b| !b.is_empty()),
        mounts: Some(mounts).filter(|m| !m.is_empty()),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: Some(spec.command.clone()).filter(|c| !c.is_empty()),
        env: Some(env).filter(|e| !e.is_empty()),
        labels: Some(labels),
        exposed_ports: Some(exposed).filter(|e| !e.is_empty()),
        host_config: Some(host_config),
        ..Default::default()
    }
}

/// Docker's RFC 3339 times (`0001-01-01T00:00:00Z` for never) in Unix ms.
fn unix_ms(time: Option<&str>) -> i64 {
    time.and_then(|t| humantime::parse_rfc3339_weak(t).ok())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn observe(id: &str, created_ms: i64, inspected: &ContainerInspectResponse) -> Listed {
    let state = inspected.state.clone().unwrap_or_default();
    let labels: BTreeMap<String, String> = inspected
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    let run_state = state
        .status
        .map_or(RunState::Unknown, |s| RunState::from_docker(s.as_ref()));
    let container = ObservedContainer {
        id: id.to_owned(),
        name: inspected
            .name
            .as_deref()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned(),
        labels,
        state: run_state,
        exit_code: state.exit_code.unwrap_or(0),
        oom_killed: state.oom_killed.unwrap_or(false),
        created_ms,
        started_ms: unix_ms(state.started_at.as_deref()),
        finished_ms: unix_ms(state.finished_at.as_deref()),
        healthy: false,
    };
    let network = inspected.network_settings.clone().unwrap_or_default();
    let ip = network
        .networks
        .unwrap_or_default()
        .values()
        .filter_map(|endpoint| endpoint.ip_address.as_deref())
        .find_map(|ip| ip.parse::<IpAddr>().ok());
    let mut published = BTreeMap::new();
    for (key, bindings) in network.ports.unwrap_or_default() {
        let Some(port) = key.strip_suffix("/tcp").and_then(|p| p.parse::<u16>().ok()) else {
            continue;
        };
        let Some(binding) = bindings.unwrap_or_default().into_iter().next() else {
            continue;
        };
        let ip = binding
            .host_ip
            .as_deref()
            .filter(|ip| !ip.is_empty())
            .unwrap_or("0.0.0.0");
        let address = binding
            .host_port
            .as_deref()
            .and_then(|p| p.parse::<u16>().ok())
            .and_then(|p| Some(SocketAddr::new(ip.parse().ok()?, p)));
        if let Some(address) = address {
            published.insert(port, address);
        }
    }
    Listed {
        container,
        target: Target { ip, published },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argosy_proto::v1::{ContainerSpec, PortSpec, VolumeSpec};

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn a_route_port_is_published_on_an_ephemeral_port_of_the_advertise_address() {
        let advertise: IpAddr = "10.0.0.7".parse().unwrap();
        let allocation = |ports: Vec<PortSpec>| Allocation {
            id: "a".into(),
            container: Some(ContainerSpec {
                image: "web:v1".into(),
                ports,
                route_port: 8080,
                ..Default::default()
            }),
            run: true,
            ..Default::default()
        };
        let body = create_body(
            "h",
            &allocation(vec![]),
            "x",
            &Injected::default(),
            advertise,
        );
        assert_eq!(body.exposed_ports.unwrap(), ["8080/tcp"]);
        let bindings = body.host_config.unwrap().port_bindings.unwrap();
        let binding = &bindings["8080/tcp"].as_ref().unwrap()[0];
        assert_eq!(binding.host_ip.as_deref(), Some("10.0.0.7"));
        assert_eq!(binding.host_port, None);

        // Exposed but not published by `ports`: published for the route.
        let exposed_only = vec![PortSpec {
            container_port: 8080,
            ..Default::default()
        }];
        let body = create_body(
            "h",
            &allocation(exposed_only),
            "x",
            &Injected::default(),
            advertise,
        );
        assert_eq!(body.exposed_ports.unwrap(), ["8080/tcp"]);
        let bindings = body.host_config.unwrap().port_bindings.unwrap();
        assert_eq!(bindings["8080/tcp"].as_ref().unwrap().len(), 1);

        // Already published with a fixed host port: left as it is.
        let fixed = vec![PortSpec {
            container_port: 8080,
            host_port: 18080,
            ..Default::default()
        }];
        let body = create_body(
            "h",
            &allocation(fixed),
            "x",
            &Injected::default(),
            advertise,
        );
        let bindings = body.host_config.unwrap().port_bindings.unwrap();
        let only = bindings["8080/tcp"].as_ref().unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].host_port.as_deref(), Some("18080"));
        assert_eq!(only[0].host_ip, None);
    }

    #[test]
    fn references_split_into_image_and_tag() {
        assert_eq!(split_reference("busybox"), ("busybox", Some("latest")));
        assert_eq!(split_reference("web:v1"), ("web", Some("v1")));
        assert_eq!(
            split_reference("127.0.0.1:5000/argosy-test/web:v2"),
            ("127.0.0.1:5000/argosy-test/web", Some("v2"))
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/web"),
            ("127.0.0.1:5000/web", Some("latest"))
        );
        assert_eq!(split_reference("web@sha256:ab"), ("web@sha256:ab", None));
    }

    #[test]
    fn the_create_body_carries_labels_limits_ports_and_volumes() {
        let allocation = Allocation {
            id: "a/1".into(),
            service: "web".into(),
            revision_id: "r1".into(),
            revision: 1,
            container: Some(ContainerSpec {
                image: "web:v1".into(),
                command: vec!["httpd".into(), "-f".into()],
                env: [("B".into(), "2".into()), ("A".into(), "1".into())].into(),
                ports: vec![
                    PortSpec {
                        container_port: 8080,
                        host_port: 18080,
                        host_ip: "127.0.0.1".into(),
                        protocol: String::new(),
                    },
                    PortSpec {
                        container_port: 53,
                        host_port: 0,
                        host_ip: String::new(),
                        protocol: "udp".into(),
                    },
                ],
                volumes: vec![
                    VolumeSpec {
                        source: "data".into(),
                        bind: false,
                        target: "/data".into(),
                        read_only: false,
                    },
                    VolumeSpec {
                        source: "/etc/hosts".into(),
                        bind: true,
                        target: "/h".into(),
                        read_only: true,
                    },
                ],
                cpu_millis: 500,
                memory_bytes: 64 << 20,
                memory_swap_bytes: 0,
                pids_limit: 50,
                health_check: None,
                restart: None,
                ..Default::default()
            }),
            run: true,
            drain_ms: 0,
        };
        let body = create_body("host-1", &allocation, "abc", &Injected::default(), LOCAL);
        let labels = body.labels.unwrap();
        assert_eq!(labels[LABEL_MANAGED], "true");
        assert_eq!(labels[LABEL_OWNER], "host-1");
        assert_eq!(labels[LABEL_ALLOCATION], "a/1");
        assert_eq!(labels[LABEL_SPEC_HASH], "abc");
        assert_eq!(body.env.unwrap(), ["A=1", "B=2"]);
        assert_eq!(body.cmd.unwrap(), ["httpd", "-f"]);
        assert_eq!(body.exposed_ports.unwrap(), ["8080/tcp", "53/udp"]);
        let host = body.host_config.unwrap();
        assert_eq!(host.memory, Some(64 << 20));
        assert_eq!(host.memory_swap, Some(64 << 20));
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(host.pids_limit, Some(50));
        let bindings = host.port_bindings.unwrap();
        assert_eq!(bindings.len(), 1);
        assert_eq!(
            bindings["8080/tcp"].as_ref().unwrap()[0]
                .host_port
                .as_deref(),
            Some("18080")
        );
        let mounts = host.mounts.unwrap();
        assert_eq!(mounts[0].typ, Some(MountType::VOLUME));
        assert_eq!(mounts[1].typ, Some(MountType::BIND));
        assert_eq!(mounts[1].read_only, Some(true));
        assert_eq!(
            host.restart_policy.unwrap().name,
            Some(RestartPolicyNameEnum::NO)
        );
        let name = container_name(&allocation);
        assert!(name.starts_with("argosy-web-a-1-"), "{name}");
    }

    #[test]
    fn secrets_join_the_environment_and_mount_read_only() {
        let allocation = Allocation {
            id: "a-1".into(),
            container: Some(ContainerSpec {
                image: "web:v1".into(),
                env: [("MODE".into(), "prod".into())].into(),
                ..Default::default()
            }),
            run: true,
            ..Default::default()
        };
        let injected = Injected {
            env: vec![(
                "DB_PASSWORD".into(),
                zeroize::Zeroizing::new("s3cret".into()),
            )],
            files_dir: Some("/dev/shm/argosy/a-1".into()),
        };
        let body = create_body("host-1", &allocation, "abc", &injected, LOCAL);
        assert_eq!(body.env.unwrap(), ["DB_PASSWORD=s3cret", "MODE=prod"]);
        let mounts = body.host_config.unwrap().mounts.unwrap();
        assert_eq!(
            (
                mounts[0].source.as_deref(),
                mounts[0].target.as_deref(),
                mounts[0].typ,
                mounts[0].read_only
            ),
            (
                Some("/dev/shm/argosy/a-1"),
                Some("/run/secrets"),
                Some(MountType::BIND),
                Some(true)
            )
        );
        // No secrets: no mount.
        let plain = create_body("host-1", &allocation, "abc", &Injected::default(), LOCAL);
        assert!(plain.host_config.unwrap().mounts.is_none());
    }

    #[test]
    fn docker_times_parse() {
        assert_eq!(unix_ms(Some("0001-01-01T00:00:00Z")), 0);
        assert_eq!(unix_ms(None), 0);
        assert_eq!(
            unix_ms(Some("2024-01-02T03:04:05.678901234Z")),
            1_704_164_645_678
        );
        // Docker trims trailing zeros.
        assert_eq!(
            unix_ms(Some("2024-01-02T03:04:05.6789Z")),
            1_704_164_645_678
        );
        assert_eq!(unix_ms(Some("2024-01-02T03:04:05Z")), 1_704_164_645_000);
    }

    #[tokio::test]
    async fn an_absent_engine_is_unreachable_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let host = format!("unix://{}/docker.sock", dir.path().display());
        let error = Engine::connect(Some(&host)).await.unwrap_err();
        assert!(error.is_unreachable());
        let text = error.to_string();
        assert!(
            text.starts_with(&format!("the Docker engine at {host} is not reachable: ")),
            "{text}"
        );
        assert!(text.ends_with("; is dockerd running?"), "{text}");
    }
}
