//! The shared state every API adapter works on: store, fleet registry, CA,
//! metric writer, clock, audit log, authentication and the settings they
//! need.

use crate::audit::AuditEntry;
use crate::audit_log::{AuditError, AuditLog};
use crate::auth::{self, Action, Principal, PrincipalKind, Scope, Target};
use crate::clock::{Clock, format_ms};
use crate::fleet::Fleet;
use crate::ingest::SampleWriter;
use crate::pki::Ca;
use crate::secrets;
use crate::store::{Retention, Store, StoreError};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Settings the adapters need, validated at start-up.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `host:port` agents dial; goes into join strings.
    pub advertise_grpc: String,
    /// Base URL of the HTTP listener, for the install script.
    pub public_http_url: String,
    /// Lifetime of agent client certificates.
    pub agent_cert_ttl_ms: i64,
    /// Missed intervals before a host is offline.
    pub offline_after_intervals: u32,
    pub retention: Retention,
    /// Folder holding `argosy-agent-<os>-<arch>` binaries to serve.
    pub agent_binary_dir: PathBuf,
    /// How long a host may stay offline before its allocations move.
    pub reschedule_grace: std::time::Duration,
}

/// Counters for the control plane's own `/metrics`.
#[derive(Debug, Default)]
pub struct Telemetry {
    pub samples_stored: AtomicU64,
    pub samples_rejected: AtomicU64,
    pub store_write_failures: AtomicU64,
    pub enrollments: AtomicU64,
    pub enrollment_failures: AtomicU64,
    pub sessions_opened: AtomicU64,
    pub auth_failures: AtomicU64,
    pub certificates_renewed: AtomicU64,
}

impl Telemetry {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Why a caller was not let in.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no API token: send `authorization: Bearer <token>` (the CLI reads --token, ARGOSY_TOKEN or `argosy login`)"
    )]
    Missing,
    #[error("the API token is malformed: tokens look like argosy_<id>_<secret>")]
    Malformed,
    #[error(
        "the API token is not valid: unknown token or wrong secret; create one with `argosy token create`"
    )]
    Invalid,
    #[error("the API token {name:?} was revoked at {at}; ask an admin for a new one")]
    Revoked { name: String, at: String },
    #[error("the API token {name:?} expired at {at}; ask an admin for a new one")]
    Expired { name: String, at: String },
    #[error(
        "the login session of {name:?} ended at {at} (logged out, or the password changed); log in again with `argosy login --user {name}`"
    )]
    SessionEnded { name: String, at: String },
    #[error(
        "the login session of {name:?} expired at {at}; log in again with `argosy login --user {name}`"
    )]
    SessionExpired { name: String, at: String },
    #[error(
        "the user {name:?} was removed, which ended their sessions; ask an admin to add them again"
    )]
    UserRemoved { name: String },
    #[error(transparent)]
    Denied(#[from] auth::Denied),
    #[error("cannot check the API token because the store is unavailable: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// The control plane's shared state.
pub struct ControlPlane {
    pub store: Store,
    pub logs: crate::logs::LogRelay,
    pub deploy: crate::deploy::controller::Deployments,
    /// The routing tables pushed to the agents' ingresses.
    pub routing: crate::routing::Router,
    pub backups: crate::backup::controller::Backups,
    pub fleet: Arc<Fleet>,
    pub ca: Arc<Ca>,
    pub writer: SampleWriter,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    pub telemetry: Telemetry,
    /// Alerting's own health and the firing alerts, for `/metrics`.
    pub alerting: crate::alerts::AlertTelemetry,
    pub audit: AuditLog,
    /// Secrets, sealed at rest; its keyring also holds the audit key.
    pub secrets: crate::crypto::SecretVault,
    next_session_id: AtomicU64,
    last_token_touch: Mutex<HashMap<String, i64>>,
}

impl ControlPlane {
    pub fn new(
        store: Store,
        fleet: Arc<Fleet>,
        ca: Arc<Ca>,
        clock: Arc<dyn Clock>,
        settings: Settings,
        secrets: crate::crypto::SecretVault,
    ) -> Arc<Self> {
        let audit_key = zeroize::Zeroizing::new(secrets.keyring().audit_key().to_vec());
        Arc::new(Self {
            audit: AuditLog::new(store.clone(), clock.clone(), audit_key),
            secrets,
            writer: SampleWriter::spawn(store.clone()),
            logs: crate::logs::LogRelay::default(),
            backups: crate::backup::controller::Backups::new(
                store.clone(),
                fleet.clone(),
                clock.clone(),
            ),
            routing: crate::routing::Router::new(fleet.clone(), clock.clone()),

            deploy: crate::deploy::controller::Deployments::new(
                store.clone(),
                fleet.clone(),
                clock.clone(),
            )
            .with_reschedule_grace(settings.reschedule_grace),
            store,
            fleet,
            ca,
            clock,
            settings,
            telemetry: Telemetry::default(),
            alerting: crate::alerts::AlertTelemetry::default(),
            next_session_id: AtomicU64::new(1),
            last_token_touch: Mutex::new(HashMap::new()),
        })
    }

    /// Tells deployments waiting for their pre-deploy backup how it went:
    /// the rollout begins, or the deployment fails saying why.
    pub async fn pre_deploy_backups_done(
        &self,
        outcomes: Vec<crate::backup::controller::PreDeployOutcome>,
    ) {
        for outcome in outcomes {
            let event = crate::deploy::rollout::Event::BackupDone {
                result: outcome.result,
            };
            if let Err(error) = self
                .deploy
                .command(&outcome.deployment_id, event, "backup-controller")
                .await
            {
                tracing::warn!(deployment = outcome.deployment_id, %error, "could not pass on the pre-deploy backup's outcome; retrying");
            }
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub fn next_session_id(&self) -> u64 {
        self.next_session_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Who is calling: checks a bearer token (the value after `Bearer `).
    /// What they may do is `auth::authorize`, asked by the adapters.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        let result = self.check_token(authorization).await;
        if result.is_err() {
            Telemetry::inc(&self.telemetry.auth_failures);
        }
        result
    }

    async fn check_token(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        let header = authorization
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .ok_or(AuthError::Missing)?;
        let text = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .unwrap_or(header);
        let (id, secret) = secrets::parse_api_token(text).ok_or(AuthError::Malformed)?;
        let row = self.store.api_token(id).await?.ok_or(AuthError::Invalid)?;
        if !secrets::secret_matches(secret, &row.secret_hash) {
            return Err(AuthError::Invalid);
        }
        // A login session acts as its user as the user is now: a changed
        // role or scope applies at once, a removed user is refused at once.
        let user = match &row.user_id {
            Some(user_id) => Some(self.store.user_by_id(user_id).await?.ok_or_else(|| {
                AuthError::UserRemoved {
                    name: row.name.clone(),
                }
            })?),
            None => None,
        };
        let now = self.now_ms();
        if let Some(at) = row.revoked_at_ms {
            let (name, at) = (row.name, format_ms(at));
            return Err(match user {
                Some(_) => AuthError::SessionEnded { name, at },
                None => AuthError::Revoked { name, at },
            });
        }
        if let Some(at) = row.expires_at_ms.filter(|at| *at <= now) {
            let (name, at) = (row.name, format_ms(at));
            return Err(match user {
                Some(_) => AuthError::SessionExpired { name, at },
                None => AuthError::Expired { name, at },
            });
        }
        let principal = match user {
            Some(user) => Principal {
                kind: PrincipalKind::User,
                token_id: row.id,
                role: user.role.parse().map_err(|_| AuthError::Invalid)?,
                scope: Scope::from_json(&user.scope_json),
                name: user.name,
            },
            None => Principal {
                kind: PrincipalKind::Token,
                token_id: row.id,
                role: row.role.parse().map_err(|_| AuthError::Invalid)?,
                scope: Scope::from_json(&row.scope_json),
                name: row.name,
            },
        };
        self.touch_token(&principal.token_id, now).await;
        Ok(principal)
    }

    /// Authorizes a change (or a secret read) and records it before it
    /// happens: a denial is recorded and returned; an allowed call whose
    /// record cannot be written is refused (fail closed). Returns the
    /// sequence number of the `started` record.
    pub async fn authorize_change(
        &self,
        principal: &Principal,
        source: &str,
        action: Action,
        target: Target<'_>,
        event: &str,
        subject: &str,
    ) -> Result<i64, AuthError> {
        let entry = |outcome: String| AuditEntry {
            actor: principal.actor(),
            source: source.to_owned(),
            action: event.to_owned(),
            target: subject.to_owned(),
            outcome,
        };
        if let Err(denied) = auth::authorize(principal, action, target) {
            // The call does nothing, so it is refused whether or not the
            // denial could be recorded (a failure is logged by the audit log).
            let _ = self.audit.record(entry(format!("denied: {denied}"))).await;
            return Err(denied.into());
        }
        let record = self.audit.record(entry("started".to_owned())).await?;
        Ok(record.seq)
    }

    /// Records how an authorized change ended. The change has happened, so
    /// a record that cannot be written is logged, not returned.
    pub async fn record_outcome(
        &self,
        principal: &Principal,
        source: &str,
        event: &str,
        subject: &str,
        started_seq: i64,
        outcome: Result<(), &str>,
    ) {
        let outcome = match outcome {
            Ok(()) => format!("ok (#{started_seq})"),
            Err(message) => format!("failed (#{started_seq}): {message}"),
        };
        let _ = self
            .audit
            .record(AuditEntry {
                actor: principal.actor(),
                source: source.to_owned(),
                action: event.to_owned(),
                target: subject.to_owned(),
                outcome,
            })
            .await;
    }

    /// Records the token's last use, at most once a minute per token.
    async fn touch_token(&self, id: &str, now: i64) {
        let due = {
            let mut touched = self
                .last_token_touch
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let due = touched.get(id).is_none_or(|at| now - at >= 60_000);
            if due {
                touched.insert(id.to_owned(), now);
            }
            due
        };
        if due && let Err(error) = self.store.touch_api_token(id, now).await {
            tracing::warn!(%error, token_id = id, "could not record API token use");
        }
    }
}
