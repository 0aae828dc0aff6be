//! Starting a real control plane for a benchmark and reading what it prints.

use anyhow::{Context, bail};
use argosy_proto::tls::{self, ServerTrust};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub(crate) struct ControlPlane {
    pub(crate) child: Child,
    pub(crate) grpc: String,
    pub(crate) http: String,
    pub(crate) fingerprint: String,
    pub(crate) token: String,
    _dir: tempfile::TempDir,
}

/// The folder the running benchmark binary sits in (target/release).
pub(crate) fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.parent().context("no parent folder")?.to_path_buf())
}

pub(crate) fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir()?.join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: run `cargo build --release --workspace --bins` first",
            path.display()
        );
    }
    Ok(path)
}

pub(crate) async fn control_plane(extra: &[&str]) -> anyhow::Result<ControlPlane> {
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(binary("argosy")?)
        .args([
            "server",
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--log-level",
            "warn",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut token = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while token.is_none() {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .context("the control plane did not start within 60 s")??
            .context("the control plane exited")?;
        if let Some(rest) = line.trim().strip_prefix("admin token:") {
            token = Some(rest.trim().to_owned());
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let endpoints = read_endpoints(dir.path())?;
    Ok(ControlPlane {
        child,
        grpc: endpoints["grpc"].as_str().unwrap_or_default().to_owned(),
        http: endpoints["http"].as_str().unwrap_or_default().to_owned(),
        fingerprint: endpoints["ca_fingerprint"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        token: token.unwrap_or_default(),
        _dir: dir,
    })
}

/// Adds the admin token to every request.
#[derive(Clone)]
pub(crate) struct Bearer(tonic::metadata::AsciiMetadataValue);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

impl ControlPlane {
    /// A channel to the gRPC API that pins the control plane's CA, and the
    /// admin token for it.
    pub(crate) fn api(&self) -> anyhow::Result<(tonic::transport::Channel, Bearer)> {
        let config = tls::client_config(ServerTrust::Pinned(self.fingerprint.parse()?), None)?;
        let channel = tls::channel(&self.grpc, config)?;
        Ok((channel, Bearer(format!("Bearer {}", self.token).parse()?)))
    }
}

fn read_endpoints(dir: &Path) -> anyhow::Result<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("endpoints.json"))?;
    Ok(serde_json::from_str(&text)?)
}
