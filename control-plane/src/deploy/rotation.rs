//! Redeploy on rotation: a loop that listens to the secret store's change
//! events and moves every service following the rotated secret to its new
//! version ([`Deployments::follow_rotation`]: a new revision, deployed
//! through the service's update strategy).
//!
//! Nothing is skipped silently: when events were lost (the broadcast
//! lagged), at start (another replica may have stored a rotation and died
//! before redeploying), and after a failure, it rescans every service,
//! comparing what each runs with the newest versions; a service busy with
//! another deployment is retried until that ends.
//!
//! [`Deployments::follow_rotation`]: super::controller::Deployments::follow_rotation

use super::controller::RotationOutcome;
use super::secret_catalog::{self, SecretCatalog};
use super::secret_refs::RotationCause;
use crate::state::ControlPlane;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// How often services that could not be moved yet are tried again.
pub const RETRY_EVERY: Duration = Duration::from_secs(5);

/// What is left to do: services to try again (with why), and whether a
/// full rescan is owed.
#[derive(Debug, Default)]
struct Backlog {
    services: BTreeMap<String, RotationCause>,
    rescan: bool,
}

/// Runs until `stop` turns true (or the secret store's events end).
pub async fn run(cp: Arc<ControlPlane>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut changes = cp.secrets.subscribe();
    let mut backlog = Backlog {
        rescan: true,
        ..Backlog::default()
    };
    let mut retry = tokio::time::interval(RETRY_EVERY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            changed = changes.recv() => match changed {
                Ok(changed) => {
                    tracing::info!(
                        secret = changed.name,
                        version = changed.version,
                        by = changed.actor,
                        "secret rotated; redeploying the services that follow it"
                    );
                    let cause = RotationCause::Changed {
                        name: changed.name.clone(),
                        actor: changed.actor.clone(),
                    };
                    follow(&cp, Some(&changed.name), &cause, &mut backlog).await;
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "secret change events were lost; rescanning every service"
                    );
                    backlog.rescan = true;
                    follow(&cp, None, &RotationCause::Rescan, &mut backlog).await;
                }
                Err(RecvError::Closed) => return,
            },
            _ = retry.tick() => {
                if backlog.rescan {
                    follow(&cp, None, &RotationCause::Rescan, &mut backlog).await;
                }
                let waiting = std::mem::take(&mut backlog.services);
                for (service, cause) in waiting {
                    follow_one(&cp, &service, None, &cause, &mut backlog).await;
                }
            }
        }
    }
}

/// Moves every service following `name` (every service, for `None`).
async fn follow(
    cp: &ControlPlane,
    name: Option<&str>,
    cause: &RotationCause,
    backlog: &mut Backlog,
) {
    let services = match cp.deploy.services_following(name).await {
        Ok(services) => services,
        Err(error) => {
            tracing::warn!(%error, "cannot list the services that follow secrets; retrying");
            backlog.rescan = true;
            return;
        }
    };
    if name.is_none() {
        backlog.rescan = false;
    }
    for (service, followed) in services {
        follow_one(cp, &service, Some(followed), cause, backlog).await;
    }
}

/// Moves one service, or puts it on the backlog.
async fn follow_one(
    cp: &ControlPlane,
    service: &str,
    followed: Option<BTreeSet<String>>,
    cause: &RotationCause,
    backlog: &mut Backlog,
) {
    let followed = match followed {
        Some(names) => names,
        None => match cp.deploy.secrets_followed_by(service).await {
            Ok(names) => names,
            Err(error) => {
                tracing::warn!(service, %error, "cannot read the service; retrying");
                backlog.services.insert(service.to_owned(), cause.clone());
                return;
            }
        },
    };
    if followed.is_empty() {
        return;
    }
    let catalog: &dyn SecretCatalog = &cp.secrets;
    let latest = match secret_catalog::latest_existing(catalog, &followed).await {
        Ok(latest) => latest,
        Err(error) => {
            tracing::warn!(service, %error, "cannot read the newest secret versions; retrying");
            backlog.services.insert(service.to_owned(), cause.clone());
            return;
        }
    };
    match cp.deploy.follow_rotation(service, &latest, cause).await {
        Ok(RotationOutcome::UpToDate) => {}
        Ok(RotationOutcome::Busy { deployment }) => {
            tracing::info!(
                service,
                deployment,
                "a deployment is moving the service; redeploying for the rotation when it ends"
            );
            backlog.services.insert(service.to_owned(), cause.clone());
        }
        Ok(RotationOutcome::Stopped { revision }) => {
            tracing::info!(
                service,
                revision,
                "the service is stopped; its new revision waits until it is started"
            );
        }
        Ok(RotationOutcome::Deployed(deployment)) => {
            tracing::info!(
                service,
                deployment = deployment.id,
                revision = deployment.to_revision,
                "redeploying for a secret rotation"
            );
        }
        Err(error) => {
            tracing::warn!(service, %error, "cannot redeploy for a secret rotation; retrying");
            backlog.services.insert(service.to_owned(), cause.clone());
        }
    }
}
