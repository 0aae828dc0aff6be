//! Certificate renewal: once two thirds of the client certificate's
//! lifetime have passed, a new key and CSR go to `RenewCertificate` over
//! mutual TLS; the new key and certificate are saved atomically and take
//! effect on the next connection, without a restart.

use crate::backoff::Backoff;
use crate::connection::{Connection, describe, is_refusal};
use crate::enroll::new_key_and_csr;
use crate::state::StateDir;
use crate::status::{Counters, Shared};
use argosy_proto::tls::ReloadableIdentity;
use argosy_proto::v1::RenewCertificateRequest;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::sync::Arc;
use std::time::Duration;

/// What to do about the certificate now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Two thirds of its lifetime have passed: renew.
    RenewNow,
    /// Not yet: look again after this long.
    Wait(Duration),
}

/// When to renew a certificate received at `issued_at_ms` and valid until
/// `not_after_ms`, at `now_ms` (all Unix ms): at two thirds of its lifetime.
/// A lifetime that is empty or negative (bad clocks, bad data) means now.
pub fn plan(issued_at_ms: i64, not_after_ms: i64, now_ms: i64) -> Plan {
    let lifetime = i128::from(not_after_ms) - i128::from(issued_at_ms);
    if lifetime <= 0 {
        return Plan::RenewNow;
    }
    let renew_at = i128::from(issued_at_ms) + lifetime * 2 / 3;
    let wait = renew_at - i128::from(now_ms);
    if wait <= 0 {
        Plan::RenewNow
    } else {
        Plan::Wait(Duration::from_millis(
            u64::try_from(wait).unwrap_or(u64::MAX),
        ))
    }
}

/// Why one renewal attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error("cannot generate a key and certificate request: {0}")]
    Key(#[from] rcgen::Error),
    #[error(transparent)]
    Tls(#[from] argosy_proto::tls::TlsError),
    #[error("the control plane refused to renew this host's certificate: {0}")]
    Refused(String),
    #[error("renewal failed: {0}")]
    Call(String),
    #[error("the control plane did not answer the renewal within {}s", .0.as_secs())]
    Timeout(Duration),
    #[error("the renewed certificate is unusable: {0}")]
    BadAnswer(String),
    #[error(transparent)]
    Save(#[from] crate::state::StateError),
}

/// Timing knobs of the renewal loop.
#[derive(Debug, Clone)]
pub struct RenewOptions {
    /// Look at the certificate at least this often.
    pub check_every: Duration,
    /// Retry delays after a failure.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    pub call_timeout: Duration,
}

impl Default for RenewOptions {
    fn default() -> Self {
        Self {
            check_every: Duration::from_secs(60),
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(30),
            call_timeout: Duration::from_secs(30),
        }
    }
}

/// One renewal: new key, CSR, call, checks, save, swap.
pub async fn renew_once(
    connection: &Connection,
    state: &StateDir,
    shared: &Shared,
    call_timeout: Duration,
    now_ms: &(dyn Fn() -> i64 + Sync),
) -> Result<(), RenewError> {
    let key = new_key_and_csr()?;
    let mut client = connection.client()?;
    let request = RenewCertificateRequest {
        csr_pem: key.csr_pem.clone(),
    };
    let response = tokio::time::timeout(call_timeout, client.renew_certificate(request))
        .await
        .map_err(|_| RenewError::Timeout(call_timeout))?
        .map_err(|status| {
            if is_refusal(&status) {
                RenewError::Refused(describe(&status))
            } else {
                RenewError::Call(describe(&status))
            }
        })?
        .into_inner();
    // The certificate must be for the new key before anything is replaced.
    ReloadableIdentity::from_pem(response.certificate_pem.as_bytes(), key.key_pem.as_bytes())
        .map_err(|e| RenewError::BadAnswer(e.to_string()))?;
    let issued_at_ms = now_ms();
    if response.not_after_ms <= issued_at_ms {
        return Err(RenewError::BadAnswer(format!(
            "it expired already (not_after_ms {} <= now {issued_at_ms}); check this host's clock",
            response.not_after_ms
        )));
    }
    let mut identity = shared.identity();
    identity.not_after_ms = response.not_after_ms;
    identity.issued_at_ms = issued_at_ms;
    state.save_certificate(&identity, &key.key_pem, &response.certificate_pem)?;
    connection.replace_identity(&response.certificate_pem, &key.key_pem)?;
    shared.set_identity(identity);
    Ok(())
}

/// The certificate expired and could not be renewed: the host must enroll
/// again.
#[derive(Debug, thiserror::Error)]
#[error(
    "this host's client certificate expired at {not_after_ms} (Unix ms) and could not be renewed ({last_error}); \
     enroll again: delete the state directory {state_dir} and run with a new --join from `argosy join-token create`"
)]
pub struct Expired {
    pub not_after_ms: i64,
    pub last_error: String,
    pub state_dir: String,
}

/// Renews the certificate whenever [`plan`] says so, forever; returns only
/// when the certificate expired without a successful renewal.
pub async fn run(
    connection: Connection,
    state: StateDir,
    shared: Arc<Shared>,
    options: RenewOptions,
    now_ms: Arc<dyn Fn() -> i64 + Send + Sync>,
) -> Expired {
    let mut backoff = Backoff::new(options.retry_base, options.retry_cap);
    let mut rng = StdRng::from_rng(&mut rand::rng());
    loop {
        let identity = shared.identity();
        let now = now_ms();
        match plan(identity.issued_at_ms, identity.not_after_ms, now) {
            Plan::Wait(wait) => {
                tokio::time::sleep(wait.min(options.check_every)).await;
            }
            Plan::RenewNow => {
                tracing::info!(
                    not_after_ms = identity.not_after_ms,
                    "renewing the client certificate"
                );
                match renew_once(&connection, &state, &shared, options.call_timeout, &*now_ms).await
                {
                    Ok(()) => {
                        backoff.reset();
                        Counters::add(&shared.counters.renewals, 1);
                        tracing::info!(
                            not_after_ms = shared.identity().not_after_ms,
                            "client certificate renewed"
                        );
                    }
                    Err(error) => {
                        Counters::add(&shared.counters.renewal_failures, 1);
                        let now = now_ms();
                        if now >= identity.not_after_ms {
                            return Expired {
                                not_after_ms: identity.not_after_ms,
                                last_error: error.to_string(),
                                state_dir: state.path().display().to_string(),
                            };
                        }
                        let delay = if matches!(error, RenewError::Refused(_)) {
                            tracing::error!(error = %error, "certificate renewal refused; retrying");
                            backoff.cap()
                        } else {
                            tracing::warn!(error = %error, "certificate renewal failed; retrying");
                            backoff.next_delay(&mut rng)
                        };
                        // Never sleep past the expiry without one last try.
                        let until_expiry = Duration::from_millis(
                            u64::try_from(identity.not_after_ms - now).unwrap_or(0),
                        );
                        tokio::time::sleep(delay.min(until_expiry).max(Duration::from_millis(10)))
                            .await;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn renews_at_two_thirds_of_the_lifetime() {
        // A 90-minute certificate issued at t=0 renews at t=60min.
        let issued = 1_000_000;
        let not_after = issued + 90 * MIN;
        assert_eq!(
            plan(issued, not_after, issued),
            Plan::Wait(Duration::from_secs(60 * 60))
        );
        assert_eq!(
            plan(issued, not_after, issued + 59 * MIN),
            Plan::Wait(Duration::from_secs(60))
        );
        assert_eq!(
            plan(issued, not_after, issued + 60 * MIN - 1),
            Plan::Wait(Duration::from_millis(1))
        );
        assert_eq!(plan(issued, not_after, issued + 60 * MIN), Plan::RenewNow);
        assert_eq!(plan(issued, not_after, issued + 89 * MIN), Plan::RenewNow);
        // Expired: still "renew" (the caller decides it is too late).
        assert_eq!(plan(issued, not_after, issued + 100 * MIN), Plan::RenewNow);
    }

    #[test]
    fn short_certificates_work() {
        // A 20 s certificate renews after 13.333 s.
        let issued = 50_000;
        assert_eq!(
            plan(issued, issued + 20_000, issued),
            Plan::Wait(Duration::from_millis(13_333))
        );
        assert_eq!(
            plan(issued, issued + 20_000, issued + 13_333),
            Plan::RenewNow
        );
    }

    #[test]
    fn a_clock_before_issue_waits_longer_not_forever() {
        // The clock went back 10 s after issue.
        assert_eq!(
            plan(100_000, 100_000 + 30_000, 90_000),
            Plan::Wait(Duration::from_secs(30))
        );
    }

    #[test]
    fn empty_or_negative_lifetimes_renew_now() {
        assert_eq!(plan(5_000, 5_000, 0), Plan::RenewNow);
        assert_eq!(plan(5_000, 4_000, 0), Plan::RenewNow);
        // Extreme values neither overflow nor panic.
        assert!(matches!(plan(i64::MIN, i64::MAX, 0), Plan::Wait(_)));
        assert_eq!(plan(i64::MIN, i64::MAX, i64::MAX), Plan::RenewNow);
    }
}
