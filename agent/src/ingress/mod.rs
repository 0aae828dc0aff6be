//! The agent's ingress: an HTTP/1.1 and HTTP/2 reverse proxy (plain on
//! `--ingress-http`, TLS on `--ingress-https`) sending each request to a
//! backend of its route in the newest `RoutingTable` the control plane
//! pushed, and reporting what it measured per revision as a
//! `TrafficReport`.
//!
//! Decisions are pure and live apart: [`routes`] (host and path lookup,
//! weighted backend choice with local preference), [`ejection`] (passive
//! health), [`traffic`] (counters and latency histogram), [`certs`] (SNI
//! certificate choice, PEM parsing), [`round_trips`] (which other regions'
//! ingresses to time, the fastest handshake per region). The adapters:
//! [`proxy`] (hyper server, retries, the answers the ingress gives
//! itself), [`upstream`] (pooled HTTP/1.1 connections to backends) and this module's [`Ingress`] (listeners, the active probe of
//! ejected backends, route certificates from secrets, shutdown).
//!
//! Draining: a request holds the table it started with, so replacing the
//! table never aborts requests in flight; new requests see the new table.
//! Idle cost: two accept loops, a probe task waiting on a `Notify` (it
//! ticks only while a backend is ejected), a round-trip task (it ticks
//! every 10 s only when the fleet has other regions) and, with HTTPS and
//! secret certificates, a task waiting for certificates to fetch.

pub mod certs;
pub mod ejection;
pub mod proxy;
pub mod round_trips;
pub mod routes;
pub mod traffic;
pub mod upstream;

use crate::secret_cache::SecretId;
use crate::secrets::Secrets;
use argosy_proto::v1::{LatencyReport, RoutingTable, SecretRef, TrafficReport};
use certs::{CertSet, SniResolver};
use ejection::Ejections;
use routes::{Table, Tls};
use rustls::sign::CertifiedKey;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use traffic::{RevisionStats, Traffic};

/// The plain HTTP listener when nothing else is said.
pub const DEFAULT_HTTP: &str = "0.0.0.0:7480";
/// The HTTPS listener when nothing else is said.
pub const DEFAULT_HTTPS: &str = "0.0.0.0:8443";

/// Timing of the ingress. [`IngressTiming::default`] has the production
/// values; tests shorten them.
#[derive(Debug, Clone)]
pub struct IngressTiming {
    /// How long a backend has to accept a connection.
    pub connect_timeout: Duration,
    /// How often the ejected backends are probed (and the probe's timeout).
    pub probe_every: Duration,
    /// The first ejection; doubles on repeated failure up to `eject_cap`.
    pub eject_base: Duration,
    pub eject_cap: Duration,
    /// How long a client has to finish its TLS handshake.
    pub handshake_timeout: Duration,
    /// How long a certificate secret that could not be had waits before
    /// it is asked for again.
    pub secret_retry: Duration,
    /// How long in-flight requests have at shutdown.
    pub shutdown_grace: Duration,
    /// How often round trips to other regions' ingresses are measured.
    pub round_trip_every: Duration,
    /// How long a backend has to send a response's head once it has the
    /// request; then the client gets 504 (the request is not retried: it
    /// may have reached the backend).
    pub backend_response_timeout: Duration,
    /// How long a backend connection may stay idle before it is closed.
    pub backend_idle_timeout: Duration,
    /// How often idle backend connections are looked at while there are
    /// any (closed by the backend, or idle too long).
    pub backend_sweep_every: Duration,
}

impl Default for IngressTiming {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            probe_every: Duration::from_secs(1),
            eject_base: ejection::BASE,
            eject_cap: ejection::CAP,
            handshake_timeout: Duration::from_secs(10),
            secret_retry: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            round_trip_every: Duration::from_secs(10),
            backend_response_timeout: Duration::from_secs(60),
            backend_idle_timeout: upstream::IDLE_TIMEOUT,
            backend_sweep_every: upstream::SWEEP_EVERY,
        }
    }
}

/// What the ingress listens on and who it is.
#[derive(Debug, Clone)]
pub struct IngressConfig {
    /// Plain HTTP (`--ingress-http`); `None`: off.
    pub http: Option<SocketAddr>,
    /// HTTPS (`--ingress-https`); `None`: off.
    pub https: Option<SocketAddr>,
    /// This agent's host id: its backends are preferred.
    pub host_id: String,
    /// Where route certificates held in secrets come from (the session's
    /// secrets); `None`: only self-signed certificates.
    pub secrets: Option<Secrets>,
    pub timing: IngressTiming,
}

impl IngressConfig {
    /// Listeners on `http` and `https` for `host_id`, production timing,
    /// no secrets.
    pub fn new(
        http: Option<SocketAddr>,
        https: Option<SocketAddr>,
        host_id: impl Into<String>,
    ) -> Self {
        Self {
            http,
            https,
            host_id: host_id.into(),
            secrets: None,
            timing: IngressTiming::default(),
        }
    }
}

/// Why the ingress could not start.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error(
        "cannot listen on {address} for the ingress ({flag}): {source}; free that port, or pass another address or `off` to {flag}"
    )]
    Bind {
        address: SocketAddr,
        flag: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl IngressError {
    /// The flag whose listener failed.
    pub fn flag(&self) -> &'static str {
        match self {
            IngressError::Bind { flag, .. } => flag,
        }
    }
}

/// The flag of the plain HTTP listener.
pub const HTTP_FLAG: &str = "--ingress-http";
/// The flag of the HTTPS listener.
pub const HTTPS_FLAG: &str = "--ingress-https";

/// A compiled table with the traffic slots of its revisions.
#[derive(Debug)]
pub(crate) struct Active {
    pub(crate) table: Table,
    /// By [`routes::RevisionGroup::slot`].
    pub(crate) stats: Vec<Arc<RevisionStats>>,
}

/// Certificates made or fetched, kept while a route uses them.
#[derive(Debug, Default)]
struct CertCache {
    /// By the route's sorted hostnames.
    self_signed: HashMap<Vec<String>, Arc<CertifiedKey>>,
    from_secrets: HashMap<SecretId, Arc<CertifiedKey>>,
    /// Secrets whose value is not a certificate and key (versions never
    /// change, so they are not asked for again).
    broken: BTreeSet<SecretId>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the request handlers and the ingress's tasks share.
pub(crate) struct State {
    host_id: String,
    active: RwLock<Arc<Active>>,
    applied: Mutex<Option<u64>>,
    ejections: Mutex<Ejections>,
    /// Wakes the probe: something was ejected.
    ejected: Notify,
    traffic: Traffic,
    /// `Some` when HTTPS is on.
    resolver: Option<Arc<SniResolver>>,
    certs: Mutex<CertCache>,
    /// Wakes the certificate task: a secret certificate is missing.
    certs_wanted: Notify,
    secrets: Option<Secrets>,
    upstreams: Arc<upstream::Upstreams>,
    timing: IngressTiming,
    /// Other regions' ingresses to time handshakes with.
    round_trip_targets: Mutex<Vec<(String, SocketAddr)>>,
    /// Wakes the round-trip task: the targets changed.
    targets_changed: Notify,
    /// The newest measurement not yet reported.
    round_trips: Mutex<Option<LatencyReport>>,
}

impl State {
    /// The newest table.
    pub(crate) fn active(&self) -> Arc<Active> {
        self.active
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn ejections(&self) -> MutexGuard<'_, Ejections> {
        lock(&self.ejections)
    }

    pub(crate) fn upstreams(&self) -> &Arc<upstream::Upstreams> {
        &self.upstreams
    }

    /// A connect to `address` failed: eject it, wake the probe.
    pub(crate) fn connect_failed(&self, address: SocketAddr, service: &str) {
        if let Some(duration) = self.ejections().connect_failed(address, Instant::now()) {
            tracing::warn!(
                service,
                backend = %address,
                ejected_for_s = duration.as_secs(),
                "cannot connect to a backend; ejecting it until it accepts connections again"
            );
            self.ejected.notify_one();
        }
    }

    /// A connect to `address` succeeded: forget its failures.
    pub(crate) fn connect_succeeded(&self, address: SocketAddr) {
        let mut ejections = self.ejections();
        if !ejections.is_empty() && ejections.connect_succeeded(address) {
            tracing::debug!(backend = %address, "backend connects again");
        }
    }

    /// Builds the certificate set of the current table from the cache,
    /// making self-signed certificates it lacks; returns whether secret
    /// certificates are missing.
    fn refresh_certs(&self) -> bool {
        let Some(resolver) = &self.resolver else {
            return false;
        };
        let active = self.active();
        let mut cache = lock(&self.certs);
        let mut set = CertSet::default();
        let mut used_self_signed = HashSet::new();
        let mut used_secrets = HashSet::new();
        let mut missing = false;
        for route in &active.table.routes {
            let key = match &route.tls {
                Tls::None => continue,
                Tls::SelfSigned => {
                    let mut names = route.hostnames.clone();
                    names.sort();
                    used_self_signed.insert(names.clone());
                    match cache.self_signed.get(&names) {
                        Some(key) => key.clone(),
                        None => match certs::self_signed(&names) {
                            Ok(key) => {
                                let key = Arc::new(key);
                                cache.self_signed.insert(names, key.clone());
                                key
                            }
                            Err(error) => {
                                tracing::error!(service = %route.service, %error, "no TLS for this route");
                                continue;
                            }
                        },
                    }
                }
                Tls::Secret(id) => {
                    used_secrets.insert(id.clone());
                    match cache.from_secrets.get(id) {
                        Some(key) => key.clone(),
                        None => {
                            missing |= !cache.broken.contains(id);
                            continue;
                        }
                    }
                }
            };
            for hostname in &route.hostnames {
                set.insert(hostname, key.clone());
            }
        }
        cache
            .self_signed
            .retain(|names, _| used_self_signed.contains(names));
        cache.from_secrets.retain(|id, _| used_secrets.contains(id));
        cache.broken.retain(|id| used_secrets.contains(id));
        drop(cache);
        resolver.replace(set);
        missing
    }

    /// The secret certificates the current table needs and the cache
    /// lacks.
    fn missing_secrets(&self) -> Vec<SecretRef> {
        let active = self.active();
        let cache = lock(&self.certs);
        let wanted: BTreeSet<&SecretId> = active
            .table
            .routes
            .iter()
            .filter_map(|r| match &r.tls {
                Tls::Secret(id) => Some(id),
                _ => None,
            })
            .filter(|id| !cache.from_secrets.contains_key(id) && !cache.broken.contains(id))
            .collect();
        wanted.into_iter().map(SecretId::to_wire).collect()
    }
}

/// Aborts its task when dropped.
struct Abort(JoinHandle<()>);

impl Drop for Abort {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Inner {
    state: Arc<State>,
    http: Option<SocketAddr>,
    https: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    listeners: Mutex<Vec<JoinHandle<()>>>,
    _background: Vec<Abort>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in lock(&self.listeners).iter() {
            task.abort();
        }
    }
}

/// A running ingress. Cheap to clone; it stops when the last clone is
/// dropped, or gracefully with [`Ingress::shutdown`].
#[derive(Clone)]
pub struct Ingress {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Ingress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingress")
            .field("http", &self.inner.http)
            .field("https", &self.inner.https)
            .field("applied", &*lock(&self.inner.state.applied))
            .finish_non_exhaustive()
    }
}

async fn bind(address: SocketAddr, flag: &'static str) -> Result<TcpListener, IngressError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| IngressError::Bind {
            address,
            flag,
            source,
        })
}

impl Ingress {
    /// Binds the listeners and starts serving (every request answers 404
    /// until a table is applied). Must run inside a Tokio runtime.
    pub async fn start(config: IngressConfig) -> Result<Self, IngressError> {
        let http = match config.http {
            Some(address) => Some(bind(address, HTTP_FLAG).await?),
            None => None,
        };
        let https = match config.https {
            Some(address) => Some(bind(address, HTTPS_FLAG).await?),
            None => None,
        };
        let resolver = https.as_ref().map(|_| Arc::new(SniResolver::default()));
        let timing = config.timing;
        let state = Arc::new(State {
            host_id: config.host_id,
            active: RwLock::new(Arc::new(Active {
                table: Table::default(),
                stats: Vec::new(),
            })),
            applied: Mutex::new(None),
            ejections: Mutex::new(Ejections::new(timing.eject_base, timing.eject_cap)),
            ejected: Notify::new(),
            traffic: Traffic::default(),
            resolver: resolver.clone(),
            certs: Mutex::new(CertCache::default()),
            certs_wanted: Notify::new(),
            secrets: config.secrets,
            upstreams: upstream::Upstreams::new(&timing),
            timing,
            round_trip_targets: Mutex::new(Vec::new()),
            targets_changed: Notify::new(),
            round_trips: Mutex::new(None),
        });
        let (stop, _) = watch::channel(false);
        let address = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
        let (http_address, https_address) = (address(&http), address(&https));
        let mut listeners = Vec::new();
        if let Some(listener) = http {
            tracing::info!(address = ?http_address, "ingress serving HTTP");
            listeners.push(tokio::spawn(proxy::serve(
                listener,
                None,
                state.clone(),
                stop.subscribe(),
            )));
        }
        if let (Some(listener), Some(resolver)) = (https, resolver) {
            tracing::info!(address = ?https_address, "ingress serving HTTPS");
            listeners.push(tokio::spawn(proxy::serve(
                listener,
                Some(proxy::tls_acceptor(resolver)),
                state.clone(),
                stop.subscribe(),
            )));
        }
        let mut background = vec![
            Abort(tokio::spawn(probe_loop(state.clone()))),
            Abort(tokio::spawn(round_trip_loop(state.clone()))),
            Abort(tokio::spawn(state.upstreams.clone().sweep_loop())),
        ];
        if state.resolver.is_some() && state.secrets.is_some() {
            background.push(Abort(tokio::spawn(certificate_loop(state.clone()))));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                state,
                http: http_address,
                https: https_address,
                stop,
                listeners: Mutex::new(listeners),
                _background: background,
            }),
        })
    }

    /// Where plain HTTP is served (`None`: off).
    pub fn http_address(&self) -> Option<SocketAddr> {
        self.inner.http
    }

    /// Where HTTPS is served (`None`: off).
    pub fn https_address(&self) -> Option<SocketAddr> {
        self.inner.https
    }

    /// The secrets route certificates come from.
    pub fn secrets(&self) -> Option<&Secrets> {
        self.inner.state.secrets.as_ref()
    }

    /// The version of the table in use (`None`: none yet).
    pub fn applied_version(&self) -> Option<u64> {
        *lock(&self.inner.state.applied)
    }

    /// Uses `table` for new requests if it is newer than the one in use;
    /// returns whether it was applied. Requests in flight finish where
    /// they started.
    pub fn apply(&self, wire: RoutingTable) -> bool {
        let state = &self.inner.state;
        {
            let mut applied = lock(&state.applied);
            if applied.is_some_and(|version| wire.version <= version) {
                return false;
            }
            let (table, problems) = Table::compile(&wire, &state.host_id);
            for problem in &problems {
                tracing::warn!(version = wire.version, "routing table: {problem}");
            }
            let stats = state.traffic.slots_for(&table.revisions);
            let targets = round_trips::targets(&wire);
            let mut current = lock(&state.round_trip_targets);
            if *current != targets {
                *current = targets;
                state.targets_changed.notify_one();
            }
            drop(current);
            let addresses: HashSet<SocketAddr> = table.addresses().collect();
            *state
                .active
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Arc::new(Active { table, stats });
            *applied = Some(wire.version);
            state.ejections().retain(|a| addresses.contains(a));
            state.upstreams.retain(|a| addresses.contains(a));
        }
        if state.refresh_certs() {
            state.certs_wanted.notify_one();
        }
        tracing::info!(
            version = wire.version,
            routes = wire.routes.len(),
            "routing table applied"
        );
        true
    }

    /// The newest round trips to other regions not yet taken, if any.
    pub fn round_trips(&self) -> Option<LatencyReport> {
        lock(&self.inner.state.round_trips).take()
    }

    /// What was measured since the last call, `None` when nothing
    /// happened.
    pub fn traffic(&self) -> Option<TrafficReport> {
        self.inner.state.traffic.report()
    }

    /// Stops accepting, lets requests in flight finish (up to the
    /// shutdown grace) and closes idle connections.
    pub async fn shutdown(&self) {
        self.inner.stop.send_replace(true);
        let tasks = std::mem::take(&mut *lock(&self.inner.listeners));
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// Connects to the ejected backends every `probe_every` and readmits
/// those that accept; sleeps on a `Notify` while nothing is ejected.
async fn probe_loop(state: Arc<State>) {
    let every = state.timing.probe_every;
    loop {
        let due: Vec<SocketAddr> = state.ejections().ejected(Instant::now()).collect();
        if due.is_empty() {
            state.ejected.notified().await;
            continue;
        }
        tokio::time::sleep(every).await;
        let probes = due.into_iter().map(|address| async move {
            let reached = tokio::time::timeout(every, tokio::net::TcpStream::connect(address))
                .await
                .is_ok_and(|connected| connected.is_ok());
            (address, reached)
        });
        for (address, reached) in futures_util::future::join_all(probes).await {
            if reached && state.ejections().probe_succeeded(address, Instant::now()) {
                tracing::info!(backend = %address, "backend accepts connections again; readmitted");
            }
        }
    }
}

/// Times a TCP handshake with every round-trip target each
/// `round_trip_every`; sleeps while there are none.
async fn round_trip_loop(state: Arc<State>) {
    let every = state.timing.round_trip_every;
    loop {
        let targets = lock(&state.round_trip_targets).clone();
        if targets.is_empty() {
            state.targets_changed.notified().await;
            continue;
        }
        let timings = targets.into_iter().map(|(region, address)| async move {
            let started = Instant::now();
            let connected = tokio::time::timeout(every, tokio::net::TcpStream::connect(address))
                .await
                .is_ok_and(|c| c.is_ok());
            (region, connected.then(|| started.elapsed()))
        });
        let measured = futures_util::future::join_all(timings).await;
        let report = round_trips::fastest_per_region(&measured);
        if !report.regions.is_empty() {
            *lock(&state.round_trips) = Some(report);
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = state.targets_changed.notified() => {}
        }
    }
}

/// Fetches the certificates held in secrets that the table needs, over
/// the session's secrets, and installs them.
async fn certificate_loop(state: Arc<State>) {
    let Some(secrets) = state.secrets.clone() else {
        return;
    };
    loop {
        let missing = state.missing_secrets();
        if missing.is_empty() {
            state.certs_wanted.notified().await;
            continue;
        }
        match secrets.values_for(&missing).await {
            Ok(values) => {
                {
                    let mut cache = lock(&state.certs);
                    for (id, value) in values {
                        match certs::from_pem(&id.to_string(), &value) {
                            Ok(key) => {
                                tracing::info!(secret = %id, "route certificate loaded");
                                cache.from_secrets.insert(id, Arc::new(key));
                            }
                            Err(error) => {
                                tracing::error!(%error, "route certificate unusable");
                                cache.broken.insert(id);
                            }
                        }
                    }
                }
                state.refresh_certs();
            }
            Err(error) => {
                tracing::warn!(
                    %error,
                    retry_s = state.timing.secret_retry.as_secs(),
                    "cannot get a route certificate; HTTPS for its hostnames fails until it comes"
                );
                tokio::time::sleep(state.timing.secret_retry).await;
            }
        }
    }
}
