//! The agent install script as served by the control plane, run for real
//! with `--prefix` and the simple supervisor: it downloads and verifies the
//! agent, writes a private config, starts it, is idempotent, uninstalls,
//! and refuses a download whose checksum does not match.

use anyhow::{Context, ensure};
use argosy_e2e::{ControlPlane, TestEnv, binaries, both_stores, eventually, pb};
use sha2::Digest as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

both_stores!(install_upgrade_uninstall, tampered_checksum_is_refused);

/// An installation under a temporary prefix, uninstalled (supervisor and
/// agent stopped) when dropped, whatever happened.
struct Installed {
    prefix: PathBuf,
    script: PathBuf,
}

impl Installed {
    fn pidfile(&self) -> PathBuf {
        self.prefix.join("var/run/argosy-agent/supervisor.pid")
    }

    fn supervisor_pid(&self) -> Option<String> {
        std::fs::read_to_string(self.pidfile())
            .ok()
            .map(|s| s.trim().to_owned())
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if self.pidfile().exists() {
            let pid = self.supervisor_pid();
            let _ = std::process::Command::new("sh")
                .arg(&self.script)
                .args(["--uninstall", "--no-systemd", "--prefix"])
                .arg(&self.prefix)
                .env_remove("ARGOSY_URL")
                .output();
            if let Some(pid) = pid {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid])
                    .output();
            }
        }
    }
}

/// Whether `pid` runs (a zombie, which nobody may reap here, counts as gone).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // pid (comm) STATE …; comm may hold spaces, so look after the last ')'.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

fn show(output: &Output) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `sh -c COMMAND` without inherited `ARGOSY_*` variables.
async fn shell(command: &str) -> anyhow::Result<Output> {
    let output = argosy_e2e::process::clean_command(Path::new("sh"))
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(
        argosy_e2e::patience(std::time::Duration::from_secs(120)),
        output,
    )
    .await
    .with_context(|| format!("`{command}` did not finish"))?
    .with_context(|| format!("cannot run `{command}`"))
}

fn quote(path: &Path) -> String {
    format!("'{}'", path.display())
}

fn sha256(path: &Path) -> anyhow::Result<String> {
    Ok(hex::encode(sha2::Sha256::digest(std::fs::read(path)?)))
}

/// Saves the served install script (for uninstalling from `Drop`).
async fn fetch_script(cp: &ControlPlane, dir: &Path) -> anyhow::Result<PathBuf> {
    let response = cp.http_get("/install.sh", None).await?;
    ensure!(
        response.status == 200,
        "/install.sh answered {}",
        response.status
    );
    let script = response.text();
    ensure!(
        script.starts_with("#!/bin/sh"),
        "/install.sh is not a shell script"
    );
    ensure!(
        script.contains(&format!(
            "ARGOSY_URL=\"${{ARGOSY_URL:-{}}}\"",
            cp.http_url()
        )),
        "the served script does not carry this control plane's URL {}",
        cp.http_url()
    );
    let path = dir.join("install.sh");
    std::fs::write(&path, script)?;
    Ok(path)
}

async fn install_upgrade_uninstall(env: &TestEnv) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let cp = ControlPlane::start(env, &[]).await?;
    // One use: a re-run that enrolled again would be refused.
    let join = cp.join_string("eu-west", &[("role", "db")], 1).await?;
    let dir = env.new_dir("install");
    let prefix = dir.join("prefix");
    let installed = Installed {
        script: fetch_script(&cp, &dir).await?,
        prefix: prefix.clone(),
    };
    env.register_log("installed agent", &prefix.join("var/log/argosy-agent.log"));

    let install = format!(
        "curl -fsSL {}/install.sh | sh -s -- --join '{join}' --prefix {} --no-systemd --interval 1s",
        cp.http_url(),
        quote(&prefix)
    );
    let output = shell(&install).await?;
    ensure!(
        output.status.success(),
        "the install script failed: {}",
        show(&output)
    );
    let said = String::from_utf8_lossy(&output.stderr);
    ensure!(
        said.contains("simple supervisor") && said.contains("done"),
        "install output: {}",
        show(&output)
    );

    // The binary is the one the control plane serves, i.e. the built agent.
    let bin = prefix.join("bin/argosy-agent");
    ensure!(bin.is_file(), "no {}", bin.display());
    ensure!(
        sha256(&bin)? == sha256(&binaries().agent)?,
        "the installed agent differs from the served one"
    );
    let served = cp
        .http_get(
            &format!(
                "/downloads/argosy-agent-linux-{}.sha256",
                std::env::consts::ARCH
            ),
            None,
        )
        .await?
        .text();
    ensure!(
        served.starts_with(&sha256(&bin)?),
        "the served checksum {served:?} is not the binary's"
    );
    let config = prefix.join("etc/argosy/agent.toml");
    let mode = std::fs::metadata(&config)
        .context("no agent.toml")?
        .permissions()
        .mode();
    ensure!(
        mode & 0o777 == 0o600,
        "agent.toml is mode {:o}",
        mode & 0o777
    );
    let text = std::fs::read_to_string(&config)?;
    ensure!(
        text.contains(&join) && text.contains("interval = \"1s\""),
        "agent.toml:\n{text}"
    );

    // The supervised agent enrolls and reports.
    let state = prefix.join("var/lib/argosy-agent/identity.json");
    let id = eventually("the installed agent to enroll", || async {
        let text = std::fs::read_to_string(&state).context("no identity.json yet")?;
        let identity: serde_json::Value = serde_json::from_str(&text)?;
        identity["host_id"]
            .as_str()
            .map(str::to_owned)
            .context("no host_id")
    })
    .await?;
    let host = cp.wait_online(&id).await?;
    ensure!(
        host.region == "eu-west" && host.labels.get("role").map(String::as_str) == Some("db"),
        "{host:?}"
    );
    let first_pid = installed
        .supervisor_pid()
        .context("no supervisor pid file")?;
    ensure!(
        alive(&first_pid),
        "the supervisor {first_pid} is not running"
    );

    // Running it again upgrades in place: same host, still one.
    let output = shell(&install).await?;
    // The old agent is stopped by now: later samples come from the new one.
    let rerun_at = argosy_e2e::now_ms();
    ensure!(
        output.status.success(),
        "the second run failed: {}",
        show(&output)
    );
    let second_pid = installed
        .supervisor_pid()
        .context("no supervisor pid after the re-run")?;
    ensure!(
        second_pid != first_pid && alive(&second_pid),
        "the re-run did not restart the supervisor"
    );
    ensure!(
        !alive(&first_pid),
        "the old supervisor {first_pid} is still running"
    );
    eventually("a sample from the reinstalled agent", || async {
        let host = cp.host(&id).await?;
        argosy_e2e::ensure_online(&host)?;
        ensure!(
            host.latest.map_or(0, |s| s.timestamp_ms) > rerun_at + 500,
            "no sample since the re-run"
        );
        Ok(())
    })
    .await?;
    let hosts = cp.hosts().await?;
    ensure!(
        hosts.len() == 1 && hosts[0].id == id,
        "the re-run made another host: {hosts:?}"
    );
    let log = std::fs::read_to_string(prefix.join("var/log/argosy-agent.log"))?;
    ensure!(
        log.contains("already enrolled"),
        "the reinstalled agent does not say it kept its identity"
    );

    // Uninstall: the agent stops (host goes offline) and the binary goes.
    let output = shell(&format!(
        "sh {} --uninstall --no-systemd --prefix {}",
        quote(&installed.script),
        quote(&prefix)
    ))
    .await?;
    ensure!(
        output.status.success(),
        "--uninstall failed: {}",
        show(&output)
    );
    cp.wait_status(&id, pb::HostStatus::Offline).await?;
    ensure!(!bin.exists(), "--uninstall left {}", bin.display());
    ensure!(!config.exists(), "--uninstall left {}", config.display());
    ensure!(!alive(&second_pid), "the supervisor survived --uninstall");
    ensure!(
        state.exists(),
        "--uninstall without --purge must keep the identity"
    );
    Ok(())
}

/// A tiny HTTP server handing out the real agent with a wrong checksum.
async fn serve_tampered(agent: Vec<u8>) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let checksum = format!(
        "{}  argosy-agent-linux-{}\n",
        "0".repeat(64),
        std::env::consts::ARCH
    );
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let agent = agent.clone();
            let checksum = checksum.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let path = head.split_whitespace().nth(1).unwrap_or("/");
                let (status, body) = if path.ends_with(".sha256") {
                    ("200 OK", checksum.into_bytes())
                } else if path.starts_with("/downloads/argosy-agent-") {
                    ("200 OK", agent)
                } else {
                    ("404 Not Found", b"not found\n".to_vec())
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.write_all(&body).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok(addr)
}

async fn tampered_checksum_is_refused(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let join = cp.join_string("eu-west", &[], 1).await?;
    let dir = env.new_dir("install");
    let prefix = dir.join("prefix");
    let installed = Installed {
        script: fetch_script(&cp, &dir).await?,
        prefix: prefix.clone(),
    };
    let mirror = serve_tampered(std::fs::read(&binaries().agent)?).await?;

    let output = shell(&format!(
        "sh {} --join '{join}' --prefix {} --no-systemd --interval 1s --url http://{mirror}",
        quote(&installed.script),
        quote(&prefix)
    ))
    .await?;
    ensure!(
        !output.status.success(),
        "a tampered download was installed: {}",
        show(&output)
    );
    let said = String::from_utf8_lossy(&output.stderr);
    ensure!(
        said.contains("checksum mismatch") && said.contains("not installing"),
        "{}",
        show(&output)
    );
    ensure!(
        !prefix.join("bin/argosy-agent").exists(),
        "the tampered binary was installed"
    );
    ensure!(
        installed.supervisor_pid().is_none(),
        "a supervisor was started"
    );
    ensure!(
        !prefix.join("etc/argosy/agent.toml").exists(),
        "a config was written"
    );
    ensure!(cp.hosts().await?.is_empty(), "a host enrolled");

    // Without --url the same script installs from the control plane.
    let output = shell(&format!(
        "sh {} --join '{join}' --prefix {} --no-systemd --interval 1s",
        quote(&installed.script),
        quote(&prefix)
    ))
    .await?;
    ensure!(
        output.status.success(),
        "installing from the control plane failed: {}",
        show(&output)
    );
    env.register_log("installed agent", &prefix.join("var/log/argosy-agent.log"));
    eventually("the installed host to come online", || async {
        let hosts = cp.hosts().await?;
        ensure!(
            hosts.len() == 1 && hosts[0].status == pb::HostStatus::Online as i32,
            "hosts {hosts:?}"
        );
        Ok(())
    })
    .await?;
    Ok(())
}
