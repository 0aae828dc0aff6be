//! A real Prometheus Alertmanager (Debian's `prometheus-alertmanager`) on
//! a loopback port with its own configuration and storage, and its
//! `/api/v2/alerts` to see what it was sent.

use crate::env::TestEnv;
use crate::process::{Process, Spec};
use crate::{api, eventually};
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The binary Debian's package installs.
pub const BINARY: &str = "prometheus-alertmanager";

/// Routes everything to a receiver that sends nothing: the tests look at
/// what Alertmanager holds, not at what it would page.
const CONFIG: &str = "route:\n  receiver: blackhole\n  group_wait: 1s\n  group_interval: 1s\nreceivers:\n  - name: blackhole\n";

/// A running Alertmanager.
#[derive(Debug)]
pub struct Alertmanager {
    _process: Process,
    pub addr: SocketAddr,
}

fn program() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(BINARY))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{BINARY} is not installed: apt-get install prometheus-alertmanager \
                 (.ci/run does); the alerting tests never skip"
            )
        })
}

impl Alertmanager {
    /// Starts one and waits until it is ready.
    pub async fn start(env: &TestEnv) -> anyhow::Result<Self> {
        let dir = env.new_dir("alertmanager");
        let config = dir.join("alertmanager.yml");
        std::fs::write(&config, CONFIG)?;
        let log = dir.join("alertmanager.log");
        env.register_log("alertmanager", &log);
        let mut last_error = anyhow::anyhow!("not started");
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let spec = Spec {
                name: "alertmanager".into(),
                program: program(),
                args: vec![
                    format!("--config.file={}", config.display()).into(),
                    format!("--storage.path={}", dir.join("data").display()).into(),
                    format!("--web.listen-address={addr}").into(),
                    // No cluster: no gossip port, no peers.
                    "--cluster.listen-address=".into(),
                ],
                env: Vec::new(),
                log: log.clone(),
            };
            let mut process = Process::spawn(spec)?;
            let ready = eventually("Alertmanager to be ready", || {
                let exited = process.try_exit_status();
                async move {
                    if let Some(status) = exited? {
                        anyhow::bail!("it exited with {status}");
                    }
                    let response = api::http_get(addr, "/-/ready", None).await?;
                    anyhow::ensure!(
                        response.status == 200,
                        "/-/ready answered {}",
                        response.status
                    );
                    Ok(())
                }
            })
            .await;
            match ready {
                Ok(()) => {
                    return Ok(Self {
                        _process: process,
                        addr,
                    });
                }
                Err(error) => last_error = error,
            }
        }
        Err(last_error.context(format!(
            "Alertmanager did not start; its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )))
    }

    /// Its base URL, as a channel is configured with.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The alerts it holds as active (`GET /api/v2/alerts`).
    pub async fn alerts(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let response = api::http_get(self.addr, "/api/v2/alerts", None).await?;
        anyhow::ensure!(
            response.status == 200,
            "/api/v2/alerts answered {}: {}",
            response.status,
            response.text()
        );
        response
            .json()?
            .as_array()
            .cloned()
            .context("/api/v2/alerts did not answer a list")
    }

    /// The active alerts with `alertname`.
    pub async fn active(&self, alertname: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        Ok(self
            .alerts()
            .await?
            .into_iter()
            .filter(|a| a["labels"]["alertname"] == alertname)
            .filter(|a| a["status"]["state"] == "active")
            .collect())
    }
}
