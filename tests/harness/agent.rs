//! A real `argosy-agent run` with its own state folder and log.

use crate::binaries;
use crate::env::TestEnv;
use crate::process::{Process, Spec};
use anyhow::Context;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

/// A running (or exited) agent.
#[derive(Debug)]
pub struct Agent {
    process: Process,
    state_dir: PathBuf,
}

impl Agent {
    /// `argosy-agent run --join JOIN --state-dir <new dir> --interval INTERVAL`.
    pub fn start(env: &TestEnv, join: &str, interval: &str) -> anyhow::Result<Self> {
        Self::start_with(env, &["--join", join, "--interval", interval])
    }

    /// `argosy-agent run --state-dir <new dir> ARGS…`. Unless `ARGS` say
    /// otherwise, the ingress listens on ephemeral loopback ports (the
    /// host's inventory reports them) and the host advertises 127.0.0.1, so
    /// agents of parallel tests never compete for the default ports.
    pub fn start_with(env: &TestEnv, args: &[&str]) -> anyhow::Result<Self> {
        Self::start_with_env(env, args, &[])
    }

    /// Like [`Agent::start_with`], with extra environment variables (e.g. a
    /// `DOCKER_HOST` of its own).
    pub fn start_with_env(
        env: &TestEnv,
        args: &[&str],
        vars: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let dir = env.new_dir("agent");
        let state_dir = dir.join("state");
        let log = dir.join("agent.log");
        env.register_log(&format!("agent {}", dir.display()), &log);
        let mut all: Vec<OsString> =
            vec!["run".into(), "--state-dir".into(), state_dir.clone().into()];
        for (flag, default) in [
            ("--ingress-http", "127.0.0.1:0"),
            ("--ingress-https", "127.0.0.1:0"),
            ("--advertise-address", "127.0.0.1"),
        ] {
            if !args.contains(&flag) {
                all.extend([flag.into(), default.into()]);
            }
        }
        all.extend(args.iter().map(OsString::from));
        let spec = Spec {
            name: "the agent".into(),
            program: binaries().agent.clone(),
            args: all,
            env: std::iter::once(("ARGOSY_LOG_LEVEL".into(), "info".into()))
                .chain(
                    vars.iter()
                        .map(|(k, v)| (OsString::from(k), OsString::from(v))),
                )
                .collect(),
            log,
        };
        Ok(Self {
            process: Process::spawn(spec)?,
            state_dir,
        })
    }

    /// The state folder (`--state-dir`).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The host id from `identity.json`, once enrolled.
    pub fn host_id(&self) -> anyhow::Result<String> {
        let path = self.state_dir.join("identity.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{} is not there (not enrolled yet?)", path.display()))?;
        let identity: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        identity["host_id"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("{} has no host_id: {text}", path.display()))
    }

    /// Waits for enrollment and returns the host id.
    pub async fn wait_enrolled(&mut self) -> anyhow::Result<String> {
        crate::eventually("the agent to enroll", || {
            let exited = self.process.try_exit_status();
            let id = self.host_id();
            async move {
                if let Some(status) = exited? {
                    anyhow::bail!("the agent exited with {status} instead of enrolling");
                }
                id
            }
        })
        .await
        .with_context(|| format!("agent log:\n{}", self.logs()))
    }

    /// The log so far.
    pub fn logs(&self) -> String {
        self.process.log()
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// Whether it has exited, without waiting.
    pub fn exit_status(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        self.process.try_exit_status()
    }

    /// Kills it at once (SIGKILL).
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.process.kill().await
    }

    /// Stops it with SIGTERM, killing it after 10 s.
    pub async fn terminate(&mut self) -> anyhow::Result<()> {
        self.process.terminate(Duration::from_secs(10)).await
    }

    /// Freezes it (SIGSTOP): its connection stays open but it sends nothing.
    pub async fn freeze(&self) -> anyhow::Result<()> {
        self.process.signal("STOP").await
    }

    /// Lets a frozen agent go on (SIGCONT).
    pub async fn thaw(&self) -> anyhow::Result<()> {
        self.process.signal("CONT").await
    }

    /// Kills it and runs the same command line again, same state folder.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.process.restart().await
    }

    /// Waits (scaled by `ARGOSY_TEST_PATIENCE`) for the agent to exit on
    /// its own; returns its status and log.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<(ExitStatus, String)> {
        let status = self
            .process
            .wait_exit(crate::patience(timeout))
            .await
            .with_context(|| format!("agent log:\n{}", self.logs()))?;
        Ok((status, self.logs()))
    }
}
