//! A webhook receiver on loopback (a small axum server): records every
//! request it gets and answers with a status the test chooses, to stand in
//! for a chat's incoming webhook or an on-call tool.

use anyhow::Context;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub body: serde_json::Value,
    /// What the receiver answered.
    pub status: u16,
}

#[derive(Debug)]
struct Shared {
    requests: Mutex<Vec<Received>>,
    status: AtomicU16,
}

/// A running receiver; stops when dropped.
#[derive(Debug)]
pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

async fn record(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    uri: axum::http::Uri,
    body: String,
) -> axum::http::StatusCode {
    let status = shared.status.load(Ordering::SeqCst);
    let body = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
    shared
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Received {
            path: uri.path().to_owned(),
            body,
            status,
        });
    axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK)
}

impl Receiver {
    /// Starts a receiver answering 200 on a free loopback port.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind the webhook receiver")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            status: AtomicU16::new(200),
        });
        let app = axum::Router::new()
            .fallback(axum::routing::post(record))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    /// The URL to give a channel.
    pub fn url(&self) -> String {
        format!("http://{}/hook/secret-path", self.addr)
    }

    /// Answer every following request with `status`.
    pub fn answer_with(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// Every request so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
