//! Waiting for the system to reach a state, instead of sleeping: poll a
//! check until it passes or the (tunable) patience runs out, then report the
//! check's last error.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long [`eventually`] waits by default, before scaling.
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(30);

/// How often a check is retried.
const POLL: Duration = Duration::from_millis(200);

/// The factor from `ARGOSY_TEST_PATIENCE` (default 1).
fn factor() -> f64 {
    std::env::var("ARGOSY_TEST_PATIENCE")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|f| f.is_finite() && *f > 0.0)
        .unwrap_or(1.0)
}

/// `base` scaled by `ARGOSY_TEST_PATIENCE`.
pub fn patience(base: Duration) -> Duration {
    base.mul_f64(factor())
}

/// Retries `check` until it returns `Ok`, for up to 30 s (scaled by
/// `ARGOSY_TEST_PATIENCE`). On timeout the error says what was awaited and
/// why the last attempt failed.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    eventually_within(what, DEFAULT_PATIENCE, check).await
}

/// [`eventually`] with an explicit base patience (still scaled).
pub async fn eventually_within<T, F, Fut>(
    what: &str,
    base: Duration,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let limit = patience(base);
    let started = Instant::now();
    loop {
        let error = match check().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        if started.elapsed() >= limit {
            return Err(error.context(format!(
                "gave up after {:.1}s waiting for {what}",
                started.elapsed().as_secs_f64()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}
