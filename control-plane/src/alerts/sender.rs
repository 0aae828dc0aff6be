//! The HTTP side of notifications: posts a rendered payload to a
//! channel's URL with a timeout, and turns what went wrong into a
//! [`DeliveryError`] that names the host but never the URL's path or
//! query, where webhook credentials live.

use super::notify::DeliveryError;
use super::routing::redacted_url;
use serde_json::Value;

/// The HTTP client deliveries go out with.
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
}

/// The client could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the HTTP client for notifications: {0}")]
pub struct SenderError(String);

/// How long one delivery attempt may take.
const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Sender {
    pub fn new() -> Result<Self, SenderError> {
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .connect_timeout(std::time::Duration::from_secs(5))
            .user_agent(concat!("argosy/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| SenderError(e.without_url().to_string()))?;
        Ok(Sender { client })
    }

    /// Posts `body` as JSON to `url`; a 2xx answer is a delivery.
    pub async fn post(&self, url: &str, body: &Value) -> Result<(), DeliveryError> {
        let target = redacted_url(url);
        let response = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| DeliveryError::Transport {
                target: target.clone(),
                reason: error_chain(&e.without_url()),
            })?;
        let code = response.status();
        if code.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let mut body: String = text.trim().chars().take(200).collect();
        if body.is_empty() {
            body = code
                .canonical_reason()
                .unwrap_or("no reason given")
                .to_owned();
        }
        Err(DeliveryError::Status {
            target,
            code: code.as_u16(),
            body,
        })
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failures_name_the_host_but_not_the_secret_path() {
        let sender = Sender::new().unwrap();
        // Nothing listens on port 9 of loopback: refused at once.
        let err = sender
            .post(
                "http://127.0.0.1:9/services/T0/SECRET",
                &serde_json::json!({}),
            )
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("cannot reach http://127.0.0.1:9/…"),
            "{text}"
        );
        assert!(!text.contains("SECRET"), "{text}");
    }
}
