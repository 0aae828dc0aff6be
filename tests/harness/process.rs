//! A child process whose standard output and error go to one log file, that
//! can be killed and started again with the same command line, and that is
//! killed when dropped.

use anyhow::Context;
use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::process::{Child, Command};

/// What to run: the same spec starts the process again on restart.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Human name, for messages.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Extra environment (every inherited `ARGOSY_*` variable is removed
    /// first, so the developer's shell cannot change what is tested).
    pub env: Vec<(OsString, OsString)>,
    pub log: PathBuf,
}

/// A command with the inherited `ARGOSY_*` variables removed.
pub fn clean_command(program: &Path) -> Command {
    let mut command = Command::new(program);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ARGOSY_") {
            command.env_remove(&key);
        }
    }
    command
}

/// A running (or exited) child process.
#[derive(Debug)]
pub struct Process {
    spec: Spec,
    child: Option<Child>,
    exited: Option<ExitStatus>,
}

impl Process {
    /// Starts `spec`, appending its output to its log file.
    pub fn spawn(spec: Spec) -> anyhow::Result<Self> {
        let mut process = Self {
            spec,
            child: None,
            exited: None,
        };
        process.start()?;
        Ok(process)
    }

    fn start(&mut self) -> anyhow::Result<()> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.spec.log)
            .with_context(|| format!("cannot open {}", self.spec.log.display()))?;
        let args: Vec<String> = self
            .spec
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        writeln!(
            log,
            "=== harness: starting {} {}",
            self.spec.program.display(),
            args.join(" ")
        )?;
        let err = log.try_clone()?;
        let mut command = clean_command(&self.spec.program);
        command
            .args(&self.spec.args)
            .env("NO_COLOR", "1")
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        let child = command.spawn().with_context(|| {
            format!(
                "cannot start {} ({})",
                self.spec.name,
                self.spec.program.display()
            )
        })?;
        self.child = Some(child);
        self.exited = None;
        Ok(())
    }

    /// The spec this process runs.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Changes the spec used by the next [`Process::restart`].
    pub fn spec_mut(&mut self) -> &mut Spec {
        &mut self.spec
    }

    /// The operating-system process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.spec.log).unwrap_or_default()
    }

    /// The log path.
    pub fn log_path(&self) -> &Path {
        &self.spec.log
    }

    /// Whether it exited, without waiting.
    pub fn try_exit_status(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        if let Some(status) = self.exited {
            return Ok(Some(status));
        }
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        let status = child.try_wait()?;
        self.exited = status;
        Ok(status)
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.exited {
            return Ok(status);
        }
        let child = self
            .child
            .as_mut()
            .context("the process was never started")?;
        let status = tokio::time::timeout(timeout, child.wait())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "{} did not exit within {:.0}s",
                    self.spec.name,
                    timeout.as_secs_f64()
                )
            })??;
        self.exited = Some(status);
        Ok(status)
    }

    /// Kills it at once (SIGKILL) and reaps it.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut()
            && self.exited.is_none()
        {
            let _ = child.start_kill();
            self.exited = Some(child.wait().await?);
        }
        Ok(())
    }

    /// Sends `signal` (a name `kill` understands, e.g. `STOP`, `CONT`).
    pub async fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.pid().context("the process is not running")?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .await?;
        anyhow::ensure!(
            status.success(),
            "kill -{signal} {pid} failed with {status}"
        );
        Ok(())
    }

    /// Asks it to stop (SIGTERM) and waits up to `timeout`, then kills it.
    pub async fn terminate(&mut self, timeout: Duration) -> anyhow::Result<()> {
        if let (Some(pid), None) = (self.pid(), self.exited) {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
            if self.wait_exit(timeout).await.is_ok() {
                return Ok(());
            }
        }
        self.kill().await
    }

    /// Kills it and starts the same spec again (the log is appended to).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill().await?;
        self.start()
    }
}
