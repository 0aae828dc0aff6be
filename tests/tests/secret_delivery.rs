//! Secrets delivered to containers, end to end on a real Docker engine: a
//! service references secrets as env and as files; only the agent running
//! its allocation receives them (audited), the container sees them (files
//! on tmpfs, mode 0400, absent from `docker inspect`), no log or state file
//! holds a value, rotating a secret redeploys the service, an agent asking
//! for a secret its allocations do not use is denied (and audited), a
//! missing secret fails the apply naming it, and an agent whose secrets
//! dir is not on tmpfs refuses to write secret files.

use anyhow::{Context, ensure};
use argosy_e2e::docker::{docker, registry, remove_service, unique_name as unique};
use argosy_e2e::{Agent, ControlPlane, TestEnv, both_stores, eventually_within, pb};
use argosy_proto::tls::ReloadableIdentity;
use pb::agent_service_client::AgentServiceClient;
use std::path::{Path, PathBuf};
use std::time::Duration;

both_stores!(
    secrets_reach_only_their_container_and_follow_rotation,
    missing_secrets_and_a_disk_backed_secrets_dir_are_refused,
);

/// A directory for one agent's secret files, removed on drop: on tmpfs
/// (`/dev/shm`), or on disk (`/var/tmp`) for the refusal.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn on_tmpfs(prefix: &str) -> Self {
        Self::under("/dev/shm", prefix)
    }

    fn on_disk(prefix: &str) -> Self {
        Self::under("/var/tmp", prefix)
    }

    fn under(parent: &str, prefix: &str) -> Self {
        Self(PathBuf::from(format!(
            "{parent}/argosy-e2e-{prefix}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        )))
    }

    fn arg(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every file under `dir` (recursively).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Fails if any file under `dir` contains one of `values`.
fn ensure_no_value_in_dir(dir: &Path, values: &[&str]) -> anyhow::Result<()> {
    let files = files_under(dir);
    ensure!(!files.is_empty(), "{} holds no files", dir.display());
    for file in files {
        let bytes = std::fs::read(&file).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        for value in values {
            ensure!(
                !text.contains(value),
                "{} contains a secret value",
                file.display()
            );
        }
    }
    Ok(())
}

fn ensure_no_value_in(what: &str, text: &str, values: &[&str]) -> anyhow::Result<()> {
    for value in values {
        ensure!(!text.contains(value), "{what} contains a secret value");
    }
    Ok(())
}

fn spec(service: &str) -> String {
    format!(
        r#"name: {service}
image: {registry}/argosy-test/web:v1
replicas: 1
env:
  MODE: test
  DB_PASSWORD: {{ secret: crm/db-password }}
secrets:
  - name: crm/tls-key
    file: tls.key
placement:
  constraints:
    role: web
resources:
  cpu: 0.1
  memory: 64MiB
health_check:
  http:
    path: /version
    port: 8080
  interval: 1s
  timeout: 500ms
  retries: 2
update:
  strategy: rolling
  max_parallel: 1
  min_healthy_time: 1s
  healthy_deadline: 60s
  progress_deadline: 120s
"#,
        registry = registry()
    )
}

/// `argosy secret set|rotate NAME --from-file` with `value`.
async fn set_secret(
    cp: &ControlPlane,
    dir: &Path,
    verb: &str,
    name: &str,
    value: &str,
) -> anyhow::Result<()> {
    let file = dir.join(format!(
        "{}-{}",
        name.replace('/', "_"),
        rand::random::<u32>()
    ));
    std::fs::write(&file, value)?;
    cp.cli()
        .run(&[
            "secret",
            verb,
            name,
            "--from-file",
            file.to_str().unwrap_or_default(),
        ])
        .await?
        .ok()?;
    std::fs::remove_file(&file)?;
    Ok(())
}

/// The service's running container (exactly one), once healthy.
async fn running_container(cp: &ControlPlane, service: &str) -> anyhow::Result<String> {
    let show = cp
        .cli()
        .run(&["services", "show", service, "-o", "json"])
        .await?
        .ok()?
        .json()?;
    let allocations = show["allocations"].as_array().cloned().unwrap_or_default();
    let live: Vec<&serde_json::Value> = allocations
        .iter()
        .filter(|a| a["stopping"] == false && a["health"] == "healthy")
        .collect();
    ensure!(live.len() == 1, "want one healthy allocation: {show}");
    live[0]["container_id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .with_context(|| format!("no container id: {show}"))
}

async fn exec(container: &str, script: &str) -> anyhow::Result<String> {
    docker(&["exec", container, "sh", "-c", script]).await
}

/// `argosy audit list --action secret.deliver -o json`.
async fn deliveries(cp: &ControlPlane) -> anyhow::Result<Vec<serde_json::Value>> {
    let list = cp
        .cli()
        .run(&[
            "audit",
            "list",
            "--action",
            "secret.deliver",
            "--limit",
            "1000",
            "-o",
            "json",
        ])
        .await?
        .ok()?
        .json()?;
    Ok(list.as_array().cloned().unwrap_or_default())
}

/// Opens a session as the agent whose state dir is `state` (its real
/// mutual-TLS identity), says Hello and asks for `refs`; returns the answer.
async fn ask_as(
    cp: &ControlPlane,
    state: &Path,
    refs: Vec<pb::SecretRef>,
) -> anyhow::Result<pb::SecretResponse> {
    let identity = ReloadableIdentity::from_pem(
        &std::fs::read(state.join("cert.pem")).context("the agent has no cert.pem")?,
        &std::fs::read(state.join("key.pem")).context("the agent has no key.pem")?,
    )?;
    let mut client = AgentServiceClient::new(argosy_e2e::api::pinned_channel(
        cp.grpc_addr,
        cp.ca_fingerprint,
        Some(identity),
    )?);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::AgentMessage {
        seq: 1,
        body: Some(pb::agent_message::Body::Hello(pb::Hello {
            inventory: Some(pb::Inventory {
                hostname: "secret-probe".into(),
                ..Default::default()
            }),
            interval_seconds: 10,
        })),
    })
    .await?;
    let mut inbound = client
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    tx.send(pb::AgentMessage {
        seq: 2,
        body: Some(pb::agent_message::Body::SecretRequest(pb::SecretRequest {
            refs,
        })),
    })
    .await?;
    let answer = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(message) = inbound.message().await? {
            if let Some(pb::control_message::Body::SecretResponse(response)) = message.body {
                return Ok(response);
            }
        }
        anyhow::bail!("the session ended without a SecretResponse")
    })
    .await
    .context("no SecretResponse within 30s")??;
    drop(tx);
    Ok(answer)
}

async fn secrets_reach_only_their_container_and_follow_rotation(
    env: &TestEnv,
) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let web_dir = ScratchDir::on_tmpfs("web");
    let other_dir = ScratchDir::on_tmpfs("other");
    let mut web = Agent::start_with(
        env,
        &[
            "--join",
            &cp.join_string("eu-west", &[("role", "web")], 1).await?,
            "--interval",
            "1s",
            "--secrets-dir",
            web_dir.arg(),
        ],
    )?;
    let mut other = Agent::start_with(
        env,
        &[
            "--join",
            &cp.join_string("eu-west", &[("role", "other")], 1).await?,
            "--interval",
            "1s",
            "--secrets-dir",
            other_dir.arg(),
        ],
    )?;
    let web_id = web.wait_enrolled().await?;
    let other_id = other.wait_enrolled().await?;
    cp.wait_online(&web_id).await?;
    cp.wait_online(&other_id).await?;

    let salt = format!("{:016x}", rand::random::<u64>());
    let db_v1 = format!("db-pass-{salt}-one");
    let db_v2 = format!("db-pass-{salt}-two");
    let tls_key = format!("tls-key-{salt}-file-only");
    let values = [db_v1.as_str(), db_v2.as_str(), tls_key.as_str()];
    let dir = env.new_dir("specs");
    set_secret(&cp, &dir, "set", "crm/db-password", &db_v1).await?;
    set_secret(&cp, &dir, "set", "crm/tls-key", &tls_key).await?;

    let service = unique("vault");
    let spec_file = dir.join("web.yaml");
    std::fs::write(&spec_file, spec(&service))?;
    let applied = cp
        .cli()
        .run(&[
            "apply",
            "-f",
            spec_file.to_str().unwrap_or_default(),
            "--watch",
        ])
        .await?;
    ensure!(
        applied.status.success() && applied.stdout.contains("succeeded"),
        "apply: {applied:?}"
    );
    let container = running_container(&cp, &service).await?;

    // The container sees the env secret and the file, mode 0400.
    let seen = exec(&container, "printf %s \"$DB_PASSWORD\"").await?;
    ensure!(
        seen == db_v1,
        "DB_PASSWORD in the container is not the secret"
    );
    let file = exec(&container, "cat /run/secrets/tls.key").await?;
    ensure!(file == tls_key, "/run/secrets/tls.key is not the secret");
    let mode = exec(&container, "stat -c %a /run/secrets/tls.key").await?;
    ensure!(mode.trim() == "400", "mode of the secret file: {mode}");
    let plain = exec(&container, "printf %s \"$MODE\"").await?;
    ensure!(plain == "test", "plain env: {plain}");

    // `docker inspect` shows env values (Docker keeps them in the config)
    // but never a file secret's value.
    let inspected = docker(&["inspect", &container]).await?;
    ensure!(
        inspected.contains(&format!("DB_PASSWORD={db_v1}")),
        "env secrets are in the container's config by nature; the test expects to see it"
    );
    ensure_no_value_in("docker inspect", &inspected, &[&tls_key])?;
    ensure!(
        inspected.contains("/run/secrets") && inspected.contains(web_dir.arg()),
        "the secrets bind mount is not in docker inspect"
    );
    // The files live on tmpfs, in a directory of the allocation.
    let on_tmpfs = files_under(&web_dir.0);
    ensure!(
        on_tmpfs.len() == 1 && on_tmpfs[0].ends_with("tls.key"),
        "secret files on the host: {on_tmpfs:?}"
    );

    // Only the host running the allocation received anything.
    let delivered = deliveries(&cp).await?;
    ensure!(!delivered.is_empty(), "no delivery was audited");
    for record in &delivered {
        ensure!(
            record["actor"] == format!("host:{web_id}") && record["outcome"] == "ok",
            "unexpected delivery: {record}"
        );
    }
    let targets: Vec<&str> = delivered
        .iter()
        .filter_map(|r| r["target"].as_str())
        .collect();
    ensure!(
        targets.contains(&"crm/db-password@1") && targets.contains(&"crm/tls-key@1"),
        "{targets:?}"
    );

    // An agent asking for a secret its allocations do not use is denied,
    // and the denial is audited.
    let answer = ask_as(
        &cp,
        other.state_dir(),
        vec![pb::SecretRef {
            name: "crm/db-password".into(),
            version: 1,
        }],
    )
    .await?;
    ensure!(answer.values.is_empty(), "a value went to the wrong host");
    let reason = answer
        .denied
        .first()
        .map(|d| d.reason.clone())
        .unwrap_or_default();
    ensure!(
        reason == format!("no allocation on host {other_id} uses secret crm/db-password"),
        "denial: {answer:?}"
    );
    let denied: Vec<serde_json::Value> = deliveries(&cp)
        .await?
        .into_iter()
        .filter(|r| r["actor"] == format!("host:{other_id}"))
        .collect();
    ensure!(
        denied.len() == 1
            && denied[0]["target"] == "crm/db-password@1"
            && denied[0]["outcome"]
                .as_str()
                .unwrap_or_default()
                .starts_with("denied: no allocation"),
        "the denial is not in the audit log: {denied:?}"
    );

    // Rotating the secret redeploys the service with the new value.
    set_secret(&cp, &dir, "rotate", "crm/db-password", &db_v2).await?;
    eventually_within(
        "the rotation's revision to be deployed",
        Duration::from_secs(120),
        || async {
            let show = cp
                .cli()
                .run(&["services", "show", &service, "-o", "json"])
                .await?
                .ok()?
                .json()?;
            ensure!(
                show["current_revision"] == 2 && show["stable_revision"] == 2,
                "{show}"
            );
            Ok(())
        },
    )
    .await?;
    let revisions = cp
        .cli()
        .run(&["revisions", &service, "-o", "json"])
        .await?
        .ok()?
        .json()?;
    let newest = &revisions[0];
    ensure!(
        newest["number"] == 2
            && newest["created_by"]
                .as_str()
                .is_some_and(|by| by.starts_with("secret rotation crm/db-password v2 (")),
        "the new revision does not name the rotation: {revisions}"
    );
    ensure!(
        newest["secret_versions"] == serde_json::json!({"crm/db-password": 2, "crm/tls-key": 1})
            && revisions[1]["secret_versions"]
                == serde_json::json!({"crm/db-password": 1, "crm/tls-key": 1}),
        "each revision keeps the versions it resolved: {revisions}"
    );
    let rotated = eventually_within("one new container", Duration::from_secs(60), || async {
        let container = running_container(&cp, &service).await?;
        let seen = exec(&container, "printf %s \"$DB_PASSWORD\"").await?;
        ensure!(seen == db_v2, "the container still has the old value");
        Ok(container)
    })
    .await?;
    ensure!(rotated != container, "the container was not replaced");
    // The old allocation's files are gone; the new one's are there.
    eventually_within(
        "old secret files removed",
        Duration::from_secs(30),
        || async {
            let files = files_under(&web_dir.0);
            ensure!(files.len() == 1, "{files:?}");
            Ok(())
        },
    )
    .await?;

    // A rollback runs the versions the older revision resolved.
    cp.cli()
        .run(&["rollback", &service, "--to", "1"])
        .await?
        .ok()?;
    let rolled_back = eventually_within(
        "the rollback's container",
        Duration::from_secs(60),
        || async {
            let container = running_container(&cp, &service).await?;
            let seen = exec(&container, "printf %s \"$DB_PASSWORD\"").await?;
            ensure!(
                seen == db_v1,
                "the rolled-back container does not have version 1"
            );
            Ok(container)
        },
    )
    .await?;
    let count = cp
        .cli()
        .run(&["revisions", &service, "-o", "json"])
        .await?
        .ok()?
        .json()?;
    ensure!(
        count.as_array().map(Vec::len) == Some(2),
        "the rollback was undone by a rotation: {count}"
    );

    // After an agent restart the container keeps running; one that must be
    // created again asks for its secrets again.
    web.restart().await?;
    cp.wait_online(&web_id).await?;
    eventually_within(
        "the adopted container healthy",
        Duration::from_secs(60),
        || async {
            let container = running_container(&cp, &service).await?;
            ensure!(
                container == rolled_back,
                "the agent restart replaced the container"
            );
            Ok(())
        },
    )
    .await?;
    let before = deliveries(&cp).await?.len();
    docker(&["rm", "-f", &rolled_back]).await?;
    let recreated = eventually_within(
        "the container recreated",
        Duration::from_secs(60),
        || async {
            let container = running_container(&cp, &service).await?;
            ensure!(container != rolled_back, "still the removed container");
            let seen = exec(&container, "printf %s \"$DB_PASSWORD\"").await?;
            ensure!(seen == db_v1, "the recreated container lacks the secret");
            let file = exec(&container, "cat /run/secrets/tls.key").await?;
            ensure!(file == tls_key, "the recreated container lacks the file");
            Ok(container)
        },
    )
    .await?;
    ensure!(
        deliveries(&cp).await?.len() > before,
        "the recreated container {recreated}'s secrets were not asked for again"
    );

    // No value in the logs of either binary or in the agents' state.
    ensure_no_value_in("the control plane's log", &cp.log(), &values)?;
    ensure_no_value_in("the web agent's log", &web.logs(), &values)?;
    ensure_no_value_in("the other agent's log", &other.logs(), &values)?;
    ensure_no_value_in_dir(web.state_dir(), &values)?;
    ensure_no_value_in_dir(other.state_dir(), &values)?;
    ensure!(
        files_under(&other_dir.0).is_empty(),
        "the other agent wrote secret files"
    );

    web.kill().await?;
    other.kill().await?;
    remove_service(&service).await;
    Ok(())
}

async fn missing_secrets_and_a_disk_backed_secrets_dir_are_refused(
    env: &TestEnv,
) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let dir = env.new_dir("specs");
    set_secret(&cp, &dir, "set", "crm/db-password", "only-version-one").await?;
    let service = unique("missing");
    let missing = dir.join("missing.yaml");
    std::fs::write(
        &missing,
        format!(
            "name: {service}\nimage: {}/argosy-test/web:v1\nenv:\n  A: {{secret: crm/nope}}\n  B: {{secret: crm/db-password@3}}\n",
            registry()
        ),
    )?;
    for extra in [&[][..], &["--dry-run"][..]] {
        let mut args = vec!["apply", "-f", missing.to_str().unwrap_or_default()];
        args.extend_from_slice(extra);
        let refused = cp.cli().run(&args).await?;
        ensure!(!refused.status.success(), "apply {extra:?} was accepted");
        for wanted in [
            format!(
                "service {service} references secret crm/nope, which does not exist; create it with `argosy secret set crm/nope --from-file FILE`"
            ),
            format!(
                "service {service} references version 3 of secret crm/db-password, which does not exist"
            ),
        ] {
            ensure!(
                refused.stderr.contains(&wanted),
                "apply {extra:?}: missing {wanted:?} in {}",
                refused.stderr
            );
        }
    }
    let services = cp
        .cli()
        .run(&["services", "list", "-o", "json"])
        .await?
        .ok()?
        .json()?;
    ensure!(
        !services.to_string().contains(&service),
        "a refused spec created the service: {services}"
    );

    // An agent whose secrets dir is on disk refuses to write secret files:
    // the allocation fails with a message that says how to fix it.
    let on_disk = ScratchDir::on_disk("secrets");
    let mut agent = Agent::start_with(
        env,
        &[
            "--join",
            &cp.join_string("eu-west", &[("role", "web")], 1).await?,
            "--interval",
            "1s",
            "--secrets-dir",
            on_disk.arg(),
        ],
    )?;
    let host = agent.wait_enrolled().await?;
    cp.wait_online(&host).await?;
    set_secret(&cp, &dir, "set", "crm/tls-key", "never-on-disk").await?;
    let filed = unique("ondisk");
    let spec_file = dir.join("filed.yaml");
    std::fs::write(&spec_file, spec(&filed))?;
    cp.cli()
        .run(&["apply", "-f", spec_file.to_str().unwrap_or_default()])
        .await?
        .ok()?;
    // The allocation fails (and the deployment with it) saying why.
    eventually_within(
        "the allocation to fail",
        Duration::from_secs(60),
        || async {
            let show = cp
                .cli()
                .run(&["services", "show", &filed, "-o", "json"])
                .await?
                .ok()?
                .json()?;
            let said = show["allocations"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| &a["message"])
                .chain(
                    show["history"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|e| &e["message"]),
                )
                .filter_map(|m| m.as_str())
                .any(|m| m.contains("not tmpfs or ramfs"));
            ensure!(said, "{show}");
            Ok(())
        },
    )
    .await?;
    // It never asked for the values it could not have used.
    ensure!(
        deliveries(&cp).await?.is_empty(),
        "secrets were delivered to an agent that cannot write them"
    );
    ensure!(
        files_under(&on_disk.0).is_empty(),
        "secret files were written to disk"
    );
    agent.kill().await?;
    remove_service(&filed).await;
    Ok(())
}
