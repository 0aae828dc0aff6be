//! Starting the control plane: opens the store, loads or creates the CA,
//! bootstraps the first admin token, and runs the gRPC and HTTP listeners
//! and the background loops (status sweep, metric rollups and retention,
//! alert evaluation and notifications).

use crate::clock::{Clock, SystemClock};
use crate::config::ServerArgs;
use crate::fleet::Fleet;
use crate::grpc;
use crate::pki::{self, Ca, StoredCa};
use crate::state::{ControlPlane, Settings};
use crate::store::{Store, StoreError};
use crate::{auth::Role, grpc::tokens::mint_api_token};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

const CA_SETTING: &str = "pki.ca";

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    MasterKey(#[from] crate::crypto::KeyError),
    #[error(transparent)]
    Unseal(#[from] crate::crypto::UnsealError),
    #[error("the stored CA record is corrupt ({0}); restore the database from a backup")]
    CaRecord(serde_json::Error),
    #[error("cannot create the data folder {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr} for {what}: {source} (is another process using the port?)")]
    Listen {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot set up the gRPC server: {0}")]
    Grpc(String),
    #[error("cannot write {path}: {source}")]
    WriteFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a started control plane tells the person who started it.
#[derive(Debug, Clone)]
pub struct Started {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// The DNS listener's bound address, when `--dns-listen` was given.
    pub dns_addr: Option<SocketAddr>,
    pub advertise_grpc: String,
    pub public_http_url: String,
    pub ca_fingerprint: String,
    /// A new admin token, when one was created at this start.
    pub admin_token: Option<String>,
    pub store_description: String,
}

/// A running control plane.
pub struct Running {
    pub cp: Arc<ControlPlane>,
    pub started: Started,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops the listeners and loops and waits for them.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        // Closing every connection lets SQLite fold its WAL into the
        // database file and remove it, so a stopped store is one file.
        let closing = self.cp.store.close();
        if tokio::time::timeout(Duration::from_secs(5), closing)
            .await
            .is_err()
        {
            tracing::warn!("the store did not close within 5 s; stopping anyway");
        }
    }
}

/// Opens the store named by the flags: PostgreSQL if a URL is given,
/// otherwise SQLite in the data folder.
pub async fn open_store(args: &ServerArgs) -> Result<(Store, String), StartError> {
    create_private_dir(&args.data_dir)?;
    match &args.database_url {
        Some(url) => Ok((Store::open(url).await?, "PostgreSQL".to_owned())),
        None => {
            let path = args.data_dir.join("argosy.db");
            let store = Store::open_sqlite_file(&path).await?;
            Ok((store, format!("SQLite at {}", path.display())))
        }
    }
}

fn create_private_dir(path: &Path) -> Result<(), StartError> {
    std::fs::create_dir_all(path).map_err(|source| StartError::DataDir {
        path: path.to_owned(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

/// Loads the CA from the store, creating it on first start. Safe when
/// several replicas start at once: the first insert wins.
pub async fn load_or_create_ca(store: &Store, now_ms: i64) -> Result<Ca, StartError> {
    if store.setting(CA_SETTING).await?.is_none() {
        let fresh = pki::generate_ca(now_ms)?;
        let json = serde_json::to_string(&fresh).map_err(StartError::CaRecord)?;
        if store.insert_setting_if_absent(CA_SETTING, &json).await? {
            tracing::info!("created the control plane's certificate authority");
        }
    }
    let json = store.setting(CA_SETTING).await?.unwrap_or_default();
    let stored: StoredCa = serde_json::from_str(&json).map_err(StartError::CaRecord)?;
    Ok(Ca::load(&stored)?)
}

fn hostname() -> String {
    sysinfo_free_hostname().unwrap_or_else(|| "localhost".to_owned())
}

fn sysinfo_free_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Starts everything and returns once the listeners are bound.
pub async fn start(args: &ServerArgs) -> Result<Running, StartError> {
    let validated = args.validate(&hostname())?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let key_source = crate::crypto::KeySource::from_flags(&crate::crypto::KeySourceFlags {
        master_key: args.master_key.as_ref(),
        passphrase_file: args.unseal_passphrase_file.as_deref(),
        passphrase: args.unseal_passphrase.as_ref(),
        data_dir: &args.data_dir,
    })?;
    let (store, store_description) = open_store(args).await?;
    // Before anything else touches the store: a wrong key changes nothing.
    let keyring = match crate::crypto::Keyring::unseal(&store, key_source).await {
        Ok(keyring) => Arc::new(keyring),
        Err(error) => {
            // A clean close leaves SQLite's files as they were.
            store.close().await;
            return Err(error.into());
        }
    };
    let ca = Arc::new(load_or_create_ca(&store, clock.now_ms()).await?);

    let grpc_listener = TcpListener::bind(args.grpc_listen)
        .await
        .map_err(|source| StartError::Listen {
            what: "gRPC",
            addr: args.grpc_listen,
            source,
        })?;
    let grpc_addr = grpc_listener
        .local_addr()
        .map_err(|source| StartError::Listen {
            what: "gRPC",
            addr: args.grpc_listen,
            source,
        })?;
    let http_listener = TcpListener::bind(args.http_listen)
        .await
        .map_err(|source| StartError::Listen {
            what: "HTTP",
            addr: args.http_listen,
            source,
        })?;
    let http_addr = http_listener
        .local_addr()
        .map_err(|source| StartError::Listen {
            what: "HTTP",
            addr: args.http_listen,
            source,
        })?;
    let dns_socket = match (args.dns_listen, &validated.dns) {
        (Some(addr), Some(settings)) => {
            let listen_error = |source| StartError::Listen {
                what: "DNS",
                addr,
                source,
            };
            let socket = tokio::net::UdpSocket::bind(addr)
                .await
                .map_err(listen_error)?;
            let bound = socket.local_addr().map_err(listen_error)?;
            tracing::info!(%bound, zone = settings.zone, "answering DNS");
            Some((socket, bound, settings.clone()))
        }
        _ => None,
    };
    let advertise_grpc = match &args.advertise_addr {
        Some(_) => validated.advertise_grpc.clone(),
        None if args.grpc_listen.ip().is_unspecified() => {
            format!("{}:{}", hostname(), grpc_addr.port())
        }
        None => grpc_addr.to_string(),
    };
    let public_http_url = match &args.public_url {
        Some(_) => validated.public_http_url.clone(),
        None => format!("http://{http_addr}"),
    };
    let hosts = store.list_hosts().await?;
    let fleet = Arc::new(Fleet::new(hosts, args.offline_after_intervals));
    let agent_binary_dir = args.agent_binary_dir.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."))
    });
    let settings = Settings {
        advertise_grpc: advertise_grpc.clone(),
        public_http_url: public_http_url.clone(),
        agent_cert_ttl_ms: validated.agent_cert_ttl_ms,
        offline_after_intervals: args.offline_after_intervals,
        retention: validated.retention,
        agent_binary_dir,
        reschedule_grace: args.reschedule_grace,
    };
    let secrets = crate::crypto::SecretVault::new(
        store.clone(),
        keyring,
        clock.clone(),
        args.secret_versions_kept,
    );
    let cp = ControlPlane::new(
        store.clone(),
        fleet,
        ca.clone(),
        clock.clone(),
        settings,
        secrets,
    );

    let admin_token = if store.count_api_tokens().await? == 0 {
        let (_, text) =
            mint_api_token(&store, clock.now_ms(), "admin", Role::Admin, 0, "bootstrap").await?;
        tracing::info!("created the first admin token (printed once on standard output)");
        Some(text)
    } else {
        None
    };

    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();

    // gRPC over TLS; client certificates optional at the TLS layer (Enroll and
    // API calls come without one) and required by the agent calls themselves.
    let (chain, key) = ca.server_identity(&validated.server_names, clock.now_ms())?;
    let tls = tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(chain, key))
        .client_ca_root(tonic::transport::Certificate::from_pem(
            ca.certificate_pem(),
        ))
        .client_auth_optional(true);
    let routes = grpc::routes(cp.clone()).map_err(|e| StartError::Grpc(e.to_string()))?;
    let server = tonic::transport::Server::builder()
        .tls_config(tls)
        .map_err(|e| StartError::Grpc(e.to_string()))?
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .tcp_nodelay(true)
        .add_routes(routes);
    let mut stop = shutdown_rx.clone();
    let incoming =
        tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
    tasks.push(tokio::spawn(async move {
        let result = server
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(error) = result {
            tracing::error!(%error, "gRPC server failed");
        }
    }));

    let router = crate::http::router(cp.clone());
    let mut stop = shutdown_rx.clone();
    tasks.push(tokio::spawn(async move {
        let result = axum::serve(
            http_listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
        if let Err(error) = result {
            tracing::error!(%error, "HTTP server failed");
        }
    }));

    tasks.push(tokio::spawn(sweep_loop(cp.clone(), shutdown_rx.clone())));
    tasks.push(tokio::spawn(deploy_loop(cp.clone(), shutdown_rx.clone())));
    tasks.push(tokio::spawn(backup_loop(cp.clone(), shutdown_rx.clone())));
    let dns_addr = dns_socket.as_ref().map(|(_, bound, _)| *bound);
    if let Some((socket, _, settings)) = dns_socket {
        let router = cp.clone();
        tasks.push(tokio::spawn(crate::routing::dns_server::serve(
            socket,
            settings,
            move || router.routing.dns_table(),
            shutdown_rx.clone(),
        )));
    }
    tasks.push(tokio::spawn(crate::routing::controller::run(
        cp.clone(),
        Duration::from_secs(2),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(crate::deploy::rotation::run(
        cp.clone(),
        shutdown_rx.clone(),
    )));
    crate::alerts::engine::seed_builtin_rules(&cp).await?;
    tasks.push(tokio::spawn(crate::alerts::engine::run(
        cp.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(maintenance_loop(cp.clone(), shutdown_rx)));

    let started = Started {
        grpc_addr,
        http_addr,
        dns_addr,
        advertise_grpc,
        public_http_url,
        ca_fingerprint: ca.fingerprint().to_string(),
        admin_token,
        store_description,
    };
    write_endpoints(&args.data_dir, &started)?;
    tracing::info!(grpc = %grpc_addr, http = %http_addr, store = started.store_description, "control plane started");
    Ok(Running {
        cp,
        started,
        shutdown,
        tasks,
    })
}

/// Writes `<data-dir>/endpoints.json` so scripts and tests find the bound
/// ports (useful with port 0).
fn write_endpoints(data_dir: &Path, started: &Started) -> Result<(), StartError> {
    let json = serde_json::json!({
        "grpc": started.grpc_addr.to_string(),
        "http": started.http_addr.to_string(),
        "dns": started.dns_addr.map(|a| a.to_string()),
        "advertise_grpc": started.advertise_grpc,
        "ca_fingerprint": started.ca_fingerprint,
    });
    let path = data_dir.join("endpoints.json");
    std::fs::write(&path, json.to_string()).map_err(|source| StartError::WriteFile { path, source })
}

async fn sweep_loop(cp: Arc<ControlPlane>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => { cp.fleet.sweep(cp.now_ms()); }
            _ = stop.changed() => break,
        }
    }
}

async fn deploy_loop(cp: Arc<ControlPlane>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(error) = cp.deploy.tick().await {
                    tracing::warn!(%error, "deployment controller tick failed; retrying");
                }
            }
            _ = stop.changed() => break,
        }
    }
}

/// Backup schedules, job deadlines and pre-deploy backups, every 2 s.
async fn backup_loop(cp: Arc<ControlPlane>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match cp.backups.tick(&cp.secrets).await {
                    Ok(outcomes) => cp.pre_deploy_backups_done(outcomes).await,
                    Err(error) => tracing::warn!(%error, "backup controller tick failed; retrying"),
                }
            }
            _ = stop.changed() => break,
        }
    }
}

async fn maintenance_loop(cp: Arc<ControlPlane>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = cp.now_ms();
                if let Err(error) = cp.store.roll_up(now).await {
                    tracing::warn!(%error, "metric rollup failed; retrying next minute");
                }
                if let Err(error) = cp.store.prune(&cp.settings.retention, now).await {
                    tracing::warn!(%error, "metric retention failed; retrying next minute");
                }
            }
            _ = stop.changed() => break,
        }
    }
}
