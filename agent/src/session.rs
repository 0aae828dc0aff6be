//! The session loop: one bidirectional `Session` stream at a time, over
//! mutual TLS. The agent sends `Hello`, waits for `Welcome`, then sends
//! every unacknowledged sample (the ones a broken stream left behind
//! first) and each new one as it is taken, trimming the buffer on `Ack`.
//! When the stream ends it reconnects with exponential backoff and full
//! jitter.
//!
//! Protocol as the agent speaks it (the control plane must match):
//! - every `AgentMessage` carries the next number of one process-wide,
//!   strictly increasing `seq`, in send order, `Hello` included;
//! - the first message of each stream is `Hello`; the agent sends nothing
//!   else until the first `ControlMessage`, which must be `Welcome`;
//! - `Ack { seq }` means every message of this stream numbered up to `seq`
//!   is durably stored; acks are cumulative;
//! - samples not acknowledged when a stream ends are sent again, oldest
//!   first, in new messages with new numbers on the next stream (so the
//!   control plane should treat `(host, timestamp_ms)` as the identity of a
//!   sample and ignore duplicates);
//! - `Disconnect { reason }` ends the session; the agent reconnects after a
//!   backoff delay; `PermissionDenied` / `Unauthenticated` statuses are
//!   logged as errors and retried at the backoff cap;
//! - `DesiredState` goes to the allocations runtime; the runtime's
//!   `AllocationReport` is sent right after `Welcome` and whenever it
//!   changes;
//! - the secrets the runtime waits for go out as a `SecretRequest` right
//!   after `Welcome` and whenever it asks for more (each once per stream);
//!   the `SecretResponse` goes back to it. Values are never logged;
//! - a `RoutingTable` goes to the ingress, which uses it if its version is
//!   newer than the one it has (tables are pushed after every `Welcome`);
//!   every interval the ingress's `TrafficReport` goes up when something
//!   happened (not resent: a lost window is lost). The `Hello` inventory
//!   carries the advertise address and the bound ingress ports;
//! - a `BackupJob` goes to the backup runner; its `JobUpdate`s (progress,
//!   then one result) go up as they come, and a result not acknowledged
//!   when a stream ends is sent again on the next one.

use crate::allocations::Allocations;
use crate::backoff::Backoff;
use crate::backup::runner::Backups;
use crate::connection::{Connection, describe, is_certificate_alert, is_from_server, is_refusal};
use crate::ingress::Ingress;
use crate::inventory;
use crate::secret_cache::SecretId;
use crate::secrets::Secrets;
use crate::status::{Counters, Shared};
use crate::unacked::MAX_BATCH;
use argosy_proto::tls::TlsError;
use argosy_proto::v1::{
    AgentMessage, AllocationReport, ControlMessage, Hello, LogChunk, LogRequest, MetricBatch,
    SecretRequest, TrafficReport, agent_message, control_message,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;

/// Timing knobs of the session loop.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// The sampling interval announced in `Hello`.
    pub interval: Duration,
    pub reconnect_base: Duration,
    pub reconnect_cap: Duration,
    /// How long the control plane has to answer with `Welcome`.
    pub welcome_timeout: Duration,
    /// How long the Docker engine has to answer for the inventory.
    pub docker_timeout: Duration,
    /// The advertise address and ingress ports announced in `Hello`.
    pub advertised: crate::inventory::Advertised,
}

impl SessionOptions {
    /// The production settings for `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            reconnect_base: Duration::from_secs(1),
            reconnect_cap: Duration::from_secs(30),
            welcome_timeout: Duration::from_secs(30),
            docker_timeout: crate::docker::PROBE_TIMEOUT,
            advertised: crate::inventory::Advertised::default(),
        }
    }
}

/// How a session ended without an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The control plane sent `Disconnect`.
    Disconnected(String),
    /// The control plane ended the stream.
    Closed,
}

/// Why a session failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("{}", describe(.0))]
    Status(tonic::Status),
    #[error("the control plane did not send Welcome within {}s", .0.as_secs())]
    NoWelcome(Duration),
    #[error("the control plane ended the stream before sending Welcome")]
    ClosedBeforeWelcome,
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("the stream to the control plane closed while sending")]
    SendFailed,
}

/// The workloads side of a session: where desired state goes and where
/// allocation reports come from.
#[derive(Debug, Clone)]
pub struct Workloads {
    pub allocations: Allocations,
    pub reports: watch::Receiver<AllocationReport>,
}

/// Runs sessions forever, reconnecting with backoff.
pub async fn run(
    connection: Connection,
    shared: Arc<Shared>,
    options: SessionOptions,
    mut workloads: Option<Workloads>,
    backups: Option<Backups>,
    ingress: Option<Ingress>,
) {
    let mut backoff = Backoff::new(options.reconnect_base, options.reconnect_cap);
    let mut rng = StdRng::from_rng(&mut rand::rng());
    loop {
        let mut established = None;
        let result = session_once(
            &connection,
            &shared,
            &options,
            workloads.as_mut(),
            backups.as_ref(),
            ingress.as_ref(),
            &mut established,
        )
        .await;
        shared.set_connected(false);
        if let Some(at) = established {
            backoff.session_ended(at.elapsed());
        }
        let delay = match result {
            Ok(End::Disconnected(reason)) => {
                tracing::info!(reason = %reason, "the control plane ended the session");
                backoff.next_delay(&mut rng)
            }
            Ok(End::Closed) => {
                tracing::warn!("the control plane closed the session");
                backoff.next_delay(&mut rng)
            }
            Err(SessionError::Status(status)) if is_refusal(&status) && is_from_server(&status) => {
                tracing::error!(
                    error = %describe(&status),
                    "the control plane refuses this host (revoked or unknown); \
                     if it was revoked on purpose, stop this agent; retrying"
                );
                backoff.cap()
            }
            Err(error) => {
                let text = error.to_string();
                if is_certificate_alert(&text) {
                    tracing::error!(
                        address = connection.address(),
                        error = %text,
                        "the control plane refuses this host's certificate (revoked, expired or unknown); retrying"
                    );
                    backoff.cap()
                } else {
                    tracing::warn!(address = connection.address(), error = %text, "session failed");
                    backoff.next_delay(&mut rng)
                }
            }
        };
        tracing::info!(
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "reconnecting"
        );
        tokio::time::sleep(delay).await;
        Counters::add(&shared.counters.reconnects, 1);
    }
}

fn interval_seconds(interval: Duration) -> u32 {
    let seconds = interval.as_secs_f64().round().max(1.0);
    if seconds >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        seconds as u32
    }
}

/// One stream from connect to end. Sets `established` when `Welcome` came.
async fn session_once(
    connection: &Connection,
    shared: &Arc<Shared>,
    options: &SessionOptions,
    mut workloads: Option<&mut Workloads>,
    backups: Option<&Backups>,
    ingress: Option<&Ingress>,
    established: &mut Option<Instant>,
) -> Result<End, SessionError> {
    let identity = shared.identity();
    let mut inventory =
        inventory::collect(&identity.region, &identity.labels, options.docker_timeout).await;
    options.advertised.fill(&mut inventory);
    let mut client = connection.client()?;
    let (tx, rx) = mpsc::channel::<AgentMessage>(4);
    let hello = AgentMessage {
        seq: shared.next_seq(),
        body: Some(agent_message::Body::Hello(Hello {
            inventory: Some(inventory),
            interval_seconds: interval_seconds(options.interval),
        })),
    };
    tx.send(hello).await.map_err(|_| SessionError::SendFailed)?;

    let response = tokio::time::timeout(
        options.welcome_timeout,
        client.session(ReceiverStream::new(rx)),
    )
    .await
    .map_err(|_| SessionError::NoWelcome(options.welcome_timeout))?
    .map_err(SessionError::Status)?;
    let mut inbound = response.into_inner();
    let first = tokio::time::timeout(options.welcome_timeout, inbound.next())
        .await
        .map_err(|_| SessionError::NoWelcome(options.welcome_timeout))?;
    match first {
        None => return Err(SessionError::ClosedBeforeWelcome),
        Some(Err(status)) => return Err(SessionError::Status(status)),
        Some(Ok(ControlMessage {
            body: Some(control_message::Body::Welcome(welcome)),
        })) => {
            let skew_ms = welcome.server_time_ms - crate::agent::system_now_ms();
            if welcome.host_id != identity.host_id {
                tracing::warn!(
                    ours = %identity.host_id,
                    theirs = %welcome.host_id,
                    "the control plane welcomed a different host id"
                );
            }
            if skew_ms.abs() > 60_000 {
                tracing::warn!(
                    skew_ms,
                    "this host's clock differs from the control plane's by over a minute"
                );
            }
        }
        Some(Ok(ControlMessage {
            body: Some(control_message::Body::Disconnect(disconnect)),
        })) => return Ok(End::Disconnected(disconnect.reason)),
        Some(Ok(other)) => {
            return Err(SessionError::Protocol(format!(
                "expected Welcome first, got {other:?}"
            )));
        }
    }
    *established = Some(Instant::now());
    shared.set_connected(true);
    Counters::add(&shared.counters.sessions, 1);
    let resend = {
        let mut buffer = shared.buffer();
        buffer.restart();
        buffer.len()
    };
    tracing::info!(
        address = connection.address(),
        host_id = %identity.host_id,
        unacknowledged = resend,
        "connected to the control plane"
    );

    // Secrets asked for on this stream (a new stream asks again).
    let mut asked = BTreeSet::new();
    if let Some(workloads) = workloads.as_deref_mut() {
        let report = workloads.reports.borrow_and_update().clone();
        send_report(shared, &tx, report).await?;
    }
    // The runtime's and the backup jobs' secrets (one `Secrets` when both run).
    let secrets = workloads
        .as_deref()
        .map(|w| w.allocations.secrets().clone())
        .or_else(|| backups.map(|b| b.secrets().clone()))
        .or_else(|| ingress.and_then(|i| i.secrets().cloned()));
    if let Some(secrets) = &secrets {
        send_secret_request(shared, &tx, secrets, &mut asked).await?;
    }
    if let Some(backups) = backups {
        backups.stream_restarted();
        send_job_updates(&tx, backups, shared).await?;
    }

    // Log streams the control plane asked for; aborted with the session.
    let mut logs = LogTasks::default();
    let mut traffic_tick = tokio::time::interval(options.interval);
    traffic_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        send_pending(shared, &tx).await?;
        let secrets_asked = async {
            match &secrets {
                Some(secrets) => secrets.asked().await,
                None => std::future::pending().await,
            }
        };
        let report_changed = async {
            match workloads.as_deref_mut() {
                Some(w) => w.reports.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        let jobs_ready = async {
            match backups {
                Some(backups) => backups.ready().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shared.sample_pushed() => {}
            _ = traffic_tick.tick(), if ingress.is_some() => {
                if let Some(report) = ingress.and_then(Ingress::traffic) {
                    send_traffic(shared, &tx, report).await?;
                }
                if let Some(report) = ingress.and_then(Ingress::round_trips) {
                    let message = AgentMessage {
                        seq: shared.next_seq(),
                        body: Some(agent_message::Body::Latency(report)),
                    };
                    tx.send(message).await.map_err(|_| SessionError::SendFailed)?;
                }
            }
            () = jobs_ready => {
                if let Some(backups) = backups {
                    send_job_updates(&tx, backups, shared).await?;
                }
            }
            () = secrets_asked => {
                if let Some(secrets) = &secrets {
                    send_secret_request(shared, &tx, secrets, &mut asked).await?;
                }
            }
            changed = report_changed => {
                if let Some(workloads) = workloads.as_deref_mut().filter(|_| changed) {
                    let report = workloads.reports.borrow_and_update().clone();
                    send_report(shared, &tx, report).await?;
                }
            }
            message = inbound.next() => match message {
                None => return Ok(End::Closed),
                Some(Err(status)) => return Err(SessionError::Status(status)),
                Some(Ok(ControlMessage { body })) => match body {
                    Some(control_message::Body::Ack(ack)) => {
                        let acked = shared.buffer().ack(ack.seq);
                        if let Some(backups) = backups {
                            backups.acked(ack.seq);
                        }
                        Counters::add(&shared.counters.samples_acked, acked as u64);
                        tracing::debug!(seq = ack.seq, acked, "acknowledged");
                    }
                    Some(control_message::Body::Disconnect(disconnect)) => {
                        return Ok(End::Disconnected(disconnect.reason));
                    }
                    Some(control_message::Body::Welcome(_)) => {
                        tracing::warn!("ignoring a second Welcome");
                    }
                    Some(control_message::Body::Desired(desired)) => match workloads.as_deref() {
                        Some(w) => {
                            let version = desired.version;
                            match w.allocations.apply(desired) {
                                Ok(true) => tracing::info!(version, "applying desired state"),
                                Ok(false) => tracing::debug!(version, "desired state already applied"),
                                Err(error) => tracing::error!(%error, version, "cannot apply desired state"),
                            }
                        }
                        None => tracing::warn!(
                            version = desired.version,
                            "this agent runs without a container runtime; ignoring desired state"
                        ),
                    },
                    Some(control_message::Body::LogRequest(request)) => match workloads.as_deref() {
                        Some(w) => logs.start(request, w.allocations.clone(), shared.clone(), tx.clone()),
                        None => {
                            let end = LogChunk {
                                request_id: request.request_id,
                                end: true,
                                error: "this agent runs without a container runtime".into(),
                                ..LogChunk::default()
                            };
                            send_log(shared, &tx, end).await?;
                        }
                    },
                    Some(control_message::Body::LogCancel(cancel)) => logs.cancel(cancel.request_id),
                    Some(control_message::Body::SecretResponse(response)) => match &secrets {
                        Some(secrets) => {
                            for answered in response
                                .values
                                .iter()
                                .filter_map(|v| v.secret.as_ref())
                                .chain(response.denied.iter().filter_map(|d| d.secret.as_ref()))
                            {
                                asked.remove(&SecretId::from_wire(answered));
                            }
                            secrets.deliver(response);
                        }
                        None => tracing::debug!("ignoring secrets: this agent runs no containers"),
                    },
                    Some(control_message::Body::BackupJob(job)) => match backups {
                        Some(backups) => backups.receive(job),
                        None => tracing::warn!(job = %job.id, "this agent's backup runner did not start (see the log at start); ignoring a backup job"),
                    },
                    Some(control_message::Body::Routing(table)) => match ingress {
                        Some(ingress) => {
                            let version = table.version;
                            if !ingress.apply(table) {
                                tracing::debug!(version, "routing table already applied");
                            }
                        }
                        None => tracing::debug!(
                            version = table.version,
                            "this agent's ingress is off; ignoring the routing table"
                        ),
                    },
                    None => tracing::debug!("ignoring an empty control message"),
                },
            },
        }
    }
}

/// The log streams of one session, by request id.
#[derive(Default)]
struct LogTasks(std::collections::HashMap<u64, tokio::task::JoinHandle<()>>);

impl LogTasks {
    fn start(
        &mut self,
        request: LogRequest,
        allocations: Allocations,
        shared: Arc<Shared>,
        tx: mpsc::Sender<AgentMessage>,
    ) {
        self.0.retain(|_, task| !task.is_finished());
        let id = request.request_id;
        let task = tokio::spawn(async move {
            let tail = (request.tail > 0).then_some(request.tail as usize);
            let mut end = LogChunk {
                request_id: id,
                end: true,
                ..LogChunk::default()
            };
            match allocations
                .logs(&request.allocation_id, request.follow, tail)
                .await
            {
                Ok(mut stream) => {
                    while let Some(chunk) = stream.next().await {
                        match chunk {
                            Ok(chunk) => {
                                let message = LogChunk {
                                    request_id: id,
                                    stderr: chunk.stream == crate::docker::LogStream::Stderr,
                                    data: chunk.data,
                                    ..LogChunk::default()
                                };
                                if send_log(&shared, &tx, message).await.is_err() {
                                    return;
                                }
                            }
                            Err(error) => {
                                end.error = error.to_string();
                                break;
                            }
                        }
                    }
                }
                Err(error) => end.error = error.to_string(),
            }
            let _ = send_log(&shared, &tx, end).await;
        });
        self.0.insert(id, task);
    }

    fn cancel(&mut self, id: u64) {
        if let Some(task) = self.0.remove(&id) {
            task.abort();
        }
    }
}

impl Drop for LogTasks {
    fn drop(&mut self) {
        for task in self.0.values() {
            task.abort();
        }
    }
}

async fn send_log(
    shared: &Shared,
    tx: &mpsc::Sender<AgentMessage>,
    chunk: LogChunk,
) -> Result<(), SessionError> {
    let message = AgentMessage {
        seq: shared.next_seq(),
        body: Some(agent_message::Body::LogChunk(chunk)),
    };
    tx.send(message).await.map_err(|_| SessionError::SendFailed)
}

/// Asks for the secrets the runtime waits for and this stream has not
/// asked for yet.
async fn send_secret_request(
    shared: &Shared,
    tx: &mpsc::Sender<AgentMessage>,
    secrets: &Secrets,
    asked: &mut BTreeSet<SecretId>,
) -> Result<(), SessionError> {
    let outstanding = secrets.outstanding();
    // An ask the runtime gave up on is forgotten, so asking again resends it.
    asked.retain(|id| outstanding.iter().any(|r| SecretId::from_wire(r) == *id));
    let refs: Vec<_> = outstanding
        .into_iter()
        .filter(|r| asked.insert(SecretId::from_wire(r)))
        .collect();
    if refs.is_empty() {
        return Ok(());
    }
    tracing::debug!(count = refs.len(), "asking for secrets");
    let message = AgentMessage {
        seq: shared.next_seq(),
        body: Some(agent_message::Body::SecretRequest(SecretRequest { refs })),
    };
    tx.send(message).await.map_err(|_| SessionError::SendFailed)
}

/// Sends the backup runner's progress and unsent results.
async fn send_job_updates(
    tx: &mpsc::Sender<AgentMessage>,
    backups: &Backups,
    shared: &Shared,
) -> Result<(), SessionError> {
    for message in backups.outbound(|| shared.next_seq()) {
        tx.send(message)
            .await
            .map_err(|_| SessionError::SendFailed)?;
    }
    Ok(())
}

/// Sends what the ingress measured.
async fn send_traffic(
    shared: &Shared,
    tx: &mpsc::Sender<AgentMessage>,
    report: TrafficReport,
) -> Result<(), SessionError> {
    let message = AgentMessage {
        seq: shared.next_seq(),
        body: Some(agent_message::Body::Traffic(report)),
    };
    tx.send(message).await.map_err(|_| SessionError::SendFailed)
}

/// Sends an allocation report.
async fn send_report(
    shared: &Shared,
    tx: &mpsc::Sender<AgentMessage>,
    report: AllocationReport,
) -> Result<(), SessionError> {
    let message = AgentMessage {
        seq: shared.next_seq(),
        body: Some(agent_message::Body::Allocations(report)),
    };
    tx.send(message).await.map_err(|_| SessionError::SendFailed)
}

/// Sends every sample not yet sent on this stream, in batches.
async fn send_pending(
    shared: &Shared,
    tx: &mpsc::Sender<AgentMessage>,
) -> Result<(), SessionError> {
    loop {
        let (seq, samples) = {
            let mut buffer = shared.buffer();
            if !buffer.has_unsent() {
                return Ok(());
            }
            let seq = shared.next_seq();
            (seq, buffer.take_batch(seq, MAX_BATCH))
        };
        let count = samples.len() as u64;
        let message = AgentMessage {
            seq,
            body: Some(agent_message::Body::Metrics(MetricBatch { samples })),
        };
        tx.send(message)
            .await
            .map_err(|_| SessionError::SendFailed)?;
        Counters::add(&shared.counters.samples_sent, count);
        tracing::debug!(seq, samples = count, "sent metrics");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_announces_whole_seconds_of_at_least_one() {
        assert_eq!(interval_seconds(Duration::from_secs(10)), 10);
        assert_eq!(interval_seconds(Duration::from_millis(200)), 1);
        assert_eq!(interval_seconds(Duration::from_millis(1_600)), 2);
        assert_eq!(interval_seconds(Duration::from_secs(u64::MAX)), u32::MAX);
    }
}
