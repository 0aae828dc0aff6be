//! The agent's top level: load the identity or enroll, refuse an expired
//! certificate, then run the sampler, the session, the renewer and the
//! optional `/metrics` endpoint together until shutdown.

use crate::config::Config;
use crate::connection::Connection;
use crate::enroll::{self, EnrollError};
use crate::exporter;
use crate::ingress::{Ingress, IngressConfig};
use crate::inventory;
use crate::metrics::{CPU_WARMUP, MetricsError, Sampler};
use crate::renew::{self, RenewOptions};
use crate::secrets::Secrets;
use crate::session::{self, SessionOptions};
use crate::state::{StateDir, StateError, Stored};
use crate::status::Shared;
use crate::unacked::DEFAULT_CAPACITY;
use argosy_proto::join::JoinString;
use argosy_proto::tls::TlsError;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::time::MissedTickBehavior;

/// A wall clock in Unix milliseconds.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system's wall clock in Unix milliseconds.
pub fn system_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Timing and sizing of the running agent. [`Options::new`] has the
/// production values; tests shorten them.
#[derive(Clone)]
pub struct Options {
    pub session: SessionOptions,
    pub renew: RenewOptions,
    /// Unacknowledged samples kept at most.
    pub buffer_capacity: usize,
    /// How long the enrollment call may take.
    pub enroll_timeout: Duration,
    pub clock: Clock,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("session", &self.session)
            .field("renew", &self.renew)
            .field("buffer_capacity", &self.buffer_capacity)
            .field("enroll_timeout", &self.enroll_timeout)
            .finish_non_exhaustive()
    }
}

impl Options {
    /// Production settings for a sampling `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            session: SessionOptions::new(interval),
            renew: RenewOptions::default(),
            buffer_capacity: DEFAULT_CAPACITY,
            enroll_timeout: Duration::from_secs(30),
            clock: Arc::new(system_now_ms),
        }
    }
}

/// Why the agent stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("this host is not enrolled: pass --join (from `argosy join-token create`)")]
    NotEnrolled,
    #[error("enrollment failed: {0}")]
    Enroll(#[from] EnrollError),
    #[error(
        "this host's client certificate expired at {not_after_ms} (Unix ms); enroll again: \
         delete the state directory {state_dir} and run with a new --join from `argosy join-token create`"
    )]
    CertificateExpired {
        not_after_ms: i64,
        state_dir: String,
    },
    #[error("the stored identity is unusable ({0}); delete the state directory and enroll again")]
    Identity(#[source] TlsError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("cannot listen on {address} for --metrics-listen: {source}")]
    MetricsListen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Expired(#[from] renew::Expired),
}

/// Loads the stored identity, or enrolls with `join` and saves it.
pub async fn load_or_enroll(
    state: &StateDir,
    join: Option<&JoinString>,
    options: &Options,
) -> Result<Stored, AgentError> {
    if let Some(stored) = state.load()? {
        if join.is_some() {
            tracing::info!(
                host_id = %stored.identity.host_id,
                "this host is already enrolled; ignoring the join string"
            );
        }
        return Ok(stored);
    }
    let join = join.ok_or(AgentError::NotEnrolled)?;
    tracing::info!(
        address = %join.address,
        ca_fingerprint = %join.ca_fingerprint,
        "enrolling with the control plane"
    );
    let inventory = inventory::collect("", &BTreeMap::new(), options.session.docker_timeout).await;
    let clock = options.clock.clone();
    let stored = enroll::enroll(join, inventory, options.enroll_timeout, move || clock()).await?;
    state.save(&stored)?;
    tracing::info!(
        host_id = %stored.identity.host_id,
        region = %stored.identity.region,
        state_dir = %state.path().display(),
        "enrolled"
    );
    Ok(stored)
}

/// Runs the agent until `shutdown` completes (`Ok`) or it cannot go on.
pub async fn run(
    config: &Config,
    options: Options,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    tracing::info!(config = ?config, "starting argosy-agent {}", inventory::AGENT_VERSION);
    let state = StateDir::open(&config.state_dir)?;
    let stored = load_or_enroll(&state, config.join.as_ref(), &options).await?;
    let now = (options.clock)();
    if now >= stored.identity.not_after_ms {
        return Err(AgentError::CertificateExpired {
            not_after_ms: stored.identity.not_after_ms,
            state_dir: state.path().display().to_string(),
        });
    }
    let connection = Connection::new(
        &stored.identity.address,
        &stored.ca_pem,
        &stored.cert_pem,
        &stored.key_pem,
    )
    .map_err(AgentError::Identity)?;
    let shared = Arc::new(Shared::new(
        stored.identity.clone(),
        options.buffer_capacity,
    ));
    let listener = match config.metrics_listen {
        Some(address) => {
            let listener = TcpListener::bind(address)
                .await
                .map_err(|source| AgentError::MetricsListen { address, source })?;
            tracing::info!(%address, "serving /metrics");
            Some(listener)
        }
        None => None,
    };
    let sampler = Sampler::new()?;
    let advertise = match config.advertise_address {
        Some(address) => address,
        None => inventory::advertise_address(&stored.identity.address).await,
    };
    tracing::info!(%advertise, "advertise address (ingress and route ports)");
    let mut runtime_options =
        crate::allocations::AllocationsOptions::new(state.path(), stored.identity.host_id.clone());
    runtime_options.secrets_dir = config.secrets_dir.clone();
    runtime_options.advertise = advertise;
    let docker_host = runtime_options.docker_host.clone();
    let workloads = match crate::allocations::Allocations::start(runtime_options) {
        Ok((allocations, reports)) => Some(session::Workloads {
            allocations,
            reports,
        }),
        Err(error) => {
            tracing::error!(%error, "cannot start the container runtime; this host runs no workloads");
            None
        }
    };
    // Backup jobs share the runtime's secrets (one cache, one ask); without
    // a runtime they have their own, which never writes files.
    let job_secrets = match &workloads {
        Some(workloads) => workloads.allocations.secrets().clone(),
        None => crate::secrets::Secrets::new(
            crate::secrets::SecretFiles::unchecked(&config.secrets_dir),
            crate::secrets::DEFAULT_WAIT,
        ),
    };
    let backups = match crate::backup::runner::Backups::start(
        crate::backup::runner::RunnerOptions {
            state_dir: state.path().to_owned(),
            secrets: job_secrets.clone(),
            docker_host,
            clock: options.clock.clone(),
        },
    ) {
        Ok(backups) => Some(backups),
        Err(error) => {
            tracing::error!(%error, "cannot start the backup runner; this host runs no backup jobs");
            None
        }
    };

    let ingress = start_ingress(config, &stored.identity.host_id, &job_secrets).await;
    let mut options = options;
    options.session.advertised = crate::inventory::Advertised {
        address: Some(advertise),
        http_port: ingress
            .as_ref()
            .and_then(Ingress::http_address)
            .map_or(0, |a| a.port()),
        https_port: ingress
            .as_ref()
            .and_then(Ingress::https_address)
            .map_or(0, |a| a.port()),
    };

    let exporter = async {
        match listener {
            Some(listener) => exporter::serve(listener, shared.clone()).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = shutdown => {
            tracing::info!("shutting down");
            if let Some(ingress) = &ingress {
                ingress.shutdown().await;
            }
            Ok(())
        }
        expired = renew::run(
            connection.clone(),
            state.clone(),
            shared.clone(),
            options.renew.clone(),
            options.clock.clone(),
        ) => Err(expired.into()),
        () = session::run(connection.clone(), shared.clone(), options.session.clone(), workloads, backups, ingress.clone()) => Ok(()),
        () = sample_loop(sampler, shared.clone(), options.session.interval, options.clock.clone()) => Ok(()),
        result = exporter => {
            let address = config.metrics_listen.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
            result.map_err(|source| AgentError::MetricsListen { address, source })
        }
    }
}

/// Starts the ingress on the configured listeners. A listener that cannot
/// bind is logged and left off, and the agent goes on without it: its
/// metrics, deployments and backups do not depend on the ingress, and the
/// `Hello` inventory reports that listener's port as 0, so the control
/// plane routes no traffic to it. `None` when both are off.
async fn start_ingress(config: &Config, host_id: &str, secrets: &Secrets) -> Option<Ingress> {
    let mut ingress_config = IngressConfig::new(config.ingress_http, config.ingress_https, host_id);
    ingress_config.secrets = Some(secrets.clone());
    loop {
        if ingress_config.http.is_none() && ingress_config.https.is_none() {
            tracing::info!("the ingress is off (--ingress-http off, --ingress-https off)");
            return None;
        }
        match Ingress::start(ingress_config.clone()).await {
            Ok(ingress) => return Some(ingress),
            Err(error) => {
                tracing::error!(%error, "running without this ingress listener");
                if error.flag() == crate::ingress::HTTP_FLAG {
                    ingress_config.http = None;
                } else {
                    ingress_config.https = None;
                }
            }
        }
    }
}

/// Takes a sample every `interval`, forever.
async fn sample_loop(mut sampler: Sampler, shared: Arc<Shared>, interval: Duration, clock: Clock) {
    // CPU usage is a difference between two readings.
    tokio::time::sleep(CPU_WARMUP).await;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let sample = sampler.sample(clock());
        tracing::trace!(cpu = sample.cpu_percent, "sampled");
        shared.push_sample(sample);
    }
}
