//! Deployments under faults, on a real Docker engine: the control plane or
//! the agent killed in the middle of a rollout (it finishes, with no lost or
//! duplicated allocations), an image that does not exist, and a host port a
//! process outside Argosy already holds.

use anyhow::{Context, ensure};
use argosy_e2e::docker::{docker, registry, remove_service as remove, unique_name as name};
use argosy_e2e::{Agent, ControlPlane, TestEnv, both_stores, eventually_within};
use std::time::Duration;

both_stores!(
    control_plane_restart_mid_rollout,
    agent_killed_mid_rollout,
    missing_image_fails_naming_it,
    port_in_use_fails_with_that_message,
    out_of_memory_is_reported_and_restarted,
    docker_engine_down_is_reported_and_recovers
);

/// (running, all) containers of `service`.
async fn counts(service: &str) -> anyhow::Result<(usize, usize)> {
    let filter = format!("label=argosy.service={service}");
    let running = docker(&["ps", "-q", "--filter", &filter])
        .await?
        .lines()
        .count();
    let all = docker(&["ps", "-aq", "--filter", &filter])
        .await?
        .lines()
        .count();
    Ok((running, all))
}

fn web(name: &str, version: &str, replicas: u32, extra: &str) -> String {
    format!(
        "name: {name}\nimage: {}/argosy-test/web:{version}\nreplicas: {replicas}\n\
         resources:\n  cpu: 0.05\n  memory: 32MiB\n\
         health_check:\n  http:\n    path: /version\n    port: 8080\n  interval: 1s\n  timeout: 500ms\n  retries: 2\n\
         update:\n  strategy: rolling\n  max_parallel: 1\n  min_healthy_time: 2s\n  healthy_deadline: 60s\n  progress_deadline: 120s\n{extra}",
        registry()
    )
}

async fn apply(
    cp: &ControlPlane,
    dir: &std::path::Path,
    file: &str,
    text: &str,
) -> anyhow::Result<serde_json::Value> {
    let path = dir.join(file);
    std::fs::write(&path, text)?;
    cp.cli()
        .run(&["apply", "-f", path.to_str().unwrap(), "-o", "json"])
        .await?
        .ok()?
        .json()
}

async fn service(cp: &ControlPlane, name: &str) -> anyhow::Result<serde_json::Value> {
    cp.cli()
        .run(&["services", "show", name, "-o", "json"])
        .await?
        .ok()?
        .json()
}

async fn phase(cp: &ControlPlane, id: &str) -> anyhow::Result<String> {
    let d = cp
        .cli()
        .run(&["deployments", "show", id, "-o", "json"])
        .await?
        .ok()?
        .json()?;
    Ok(d["phase"].as_str().unwrap_or_default().to_owned())
}

async fn start(env: &TestEnv) -> anyhow::Result<(ControlPlane, Agent)> {
    let cp = ControlPlane::start(env, &[]).await?;
    let join = cp.join_string("eu-west", &[], 1).await?;
    let mut agent = Agent::start(env, &join, "1s")?;
    let id = agent.wait_enrolled().await?;
    cp.wait_online(&id).await?;
    Ok((cp, agent))
}

/// Three replicas, one at a time, 2 s healthy each: the control plane dies
/// after the first is up and comes back; the rollout finishes with exactly
/// three containers and three allocations.
async fn control_plane_restart_mid_rollout(env: &TestEnv) -> anyhow::Result<()> {
    let (mut cp, mut agent) = start(env).await?;
    let svc = name("cprestart");
    let dir = env.new_dir("specs");
    let first = apply(&cp, &dir, "v1.yaml", &web(&svc, "v1", 3, "")).await?;
    let id = first["deployment"]["id"]
        .as_str()
        .context("no deployment")?
        .to_owned();
    eventually_within("the first container", Duration::from_secs(60), || async {
        ensure!(counts(&svc).await?.0 >= 1, "none yet");
        Ok(())
    })
    .await?;
    cp.kill().await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    cp.start_again().await?;
    eventually_within(
        "the rollout to finish after the restart",
        Duration::from_secs(90),
        || async {
            let p = phase(&cp, &id).await?;
            ensure!(p == "succeeded", "phase {p}");
            Ok(())
        },
    )
    .await?;
    let s = service(&cp, &svc).await?;
    ensure!(
        s["allocations"].as_array().map(Vec::len) == Some(3) && s["healthy"] == 3,
        "{s}"
    );
    eventually_within(
        "three containers, no duplicates",
        Duration::from_secs(30),
        || async {
            let (running, all) = counts(&svc).await?;
            ensure!(running == 3 && all == 3, "running {running}, all {all}");
            Ok(())
        },
    )
    .await?;
    agent.kill().await?;
    remove(&svc).await;
    Ok(())
}

/// The agent dies in the middle of a rollout and comes back: it adopts its
/// containers and the rollout finishes without duplicates.
async fn agent_killed_mid_rollout(env: &TestEnv) -> anyhow::Result<()> {
    let (cp, mut agent) = start(env).await?;
    let svc = name("agentkill");
    let dir = env.new_dir("specs");
    let first = apply(&cp, &dir, "v1.yaml", &web(&svc, "v1", 3, "")).await?;
    let id = first["deployment"]["id"]
        .as_str()
        .context("no deployment")?
        .to_owned();
    eventually_within("the first container", Duration::from_secs(60), || async {
        ensure!(counts(&svc).await?.0 >= 1, "none yet");
        Ok(())
    })
    .await?;
    agent.kill().await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    agent.restart().await?;
    eventually_within(
        "the rollout to finish after the agent restart",
        Duration::from_secs(90),
        || async {
            let p = phase(&cp, &id).await?;
            ensure!(p == "succeeded", "phase {p}");
            Ok(())
        },
    )
    .await?;
    eventually_within(
        "three containers, no duplicates",
        Duration::from_secs(30),
        || async {
            let (running, all) = counts(&svc).await?;
            ensure!(running == 3 && all == 3, "running {running}, all {all}");
            Ok(())
        },
    )
    .await?;
    agent.kill().await?;
    remove(&svc).await;
    Ok(())
}

async fn missing_image_fails_naming_it(env: &TestEnv) -> anyhow::Result<()> {
    let (cp, mut agent) = start(env).await?;
    let svc = name("noimage");
    let dir = env.new_dir("specs");
    let text = web(&svc, "v1", 1, "")
        .replace("argosy-test/web:v1", "argosy-test/does-not-exist:v9")
        .replace("healthy_deadline: 60s", "healthy_deadline: 10s");
    let applied = apply(&cp, &dir, "bad.yaml", &text).await?;
    let id = applied["deployment"]["id"]
        .as_str()
        .context("no deployment")?
        .to_owned();
    // The deployment fails at once, saying which image.
    eventually_within(
        "the deployment to fail naming the image",
        Duration::from_secs(60),
        || async {
            let p = phase(&cp, &id).await?;
            ensure!(
                p.starts_with("failed") && p.contains("does-not-exist"),
                "phase {p}"
            );
            Ok(())
        },
    )
    .await?;
    let s = service(&cp, &svc).await?;
    ensure!(s["healthy"] == 0, "{s}");
    agent.kill().await?;
    remove(&svc).await;
    Ok(())
}

async fn port_in_use_fails_with_that_message(env: &TestEnv) -> anyhow::Result<()> {
    let (cp, mut agent) = start(env).await?;
    // A process outside Argosy holds the port on the host.
    let holder = std::net::TcpListener::bind("0.0.0.0:0")?;
    let port = holder.local_addr()?.port();
    let svc = name("portbusy");
    let dir = env.new_dir("specs");
    let text = web(&svc, "v1", 1, "").replace(
        "replicas: 1\n",
        &format!("replicas: 1\nports:\n  - \"{port}:8080\"\n"),
    );
    let applied = apply(&cp, &dir, "busy.yaml", &text).await?;
    let id = applied["deployment"]["id"]
        .as_str()
        .context("no deployment")?
        .to_owned();
    eventually_within(
        "the deployment to fail saying the port is taken",
        Duration::from_secs(60),
        || async {
            let p = phase(&cp, &id).await?;
            ensure!(
                p.starts_with("failed") && p.contains("port") && p.contains("in use"),
                "phase {p}"
            );
            Ok(())
        },
    )
    .await?;
    drop(holder);
    agent.kill().await?;
    remove(&svc).await;
    Ok(())
}

/// A container that outgrows its memory limit is OOM-killed by the kernel;
/// the allocation shows it and is restarted per its policy.
async fn out_of_memory_is_reported_and_restarted(env: &TestEnv) -> anyhow::Result<()> {
    let (cp, mut agent) = start(env).await?;
    let svc = name("oom");
    let dir = env.new_dir("specs");
    let text = format!(
        "name: {svc}\nimage: {}/argosy-test/web:v1\n\
         command: \"sleep 4; x=0123456789; while :; do x=$x$x; done\"\n\
         replicas: 1\nresources:\n  memory: 8MiB\n  memory_swap: 8MiB\n  pids: 64\nrestart: always\n\
         update:\n  strategy: rolling\n  min_healthy_time: 1s\n  healthy_deadline: 30s\n",
        registry()
    );
    apply(&cp, &dir, "oom.yaml", &text).await?;
    let s = eventually_within(
        "an OOM kill and a restart",
        Duration::from_secs(90),
        || async {
            let s = service(&cp, &svc).await?;
            let a = &s["allocations"][0];
            ensure!(
                a["oom_killed"] == true && a["restarts"].as_u64().unwrap_or(0) >= 1,
                "{a}"
            );
            Ok(s)
        },
    )
    .await?;
    // The kill is in the service's history.
    let history = s["history"].to_string();
    ensure!(history.contains("OOM-killed"), "history: {history}");
    // The limits Docker enforces are the spec's.
    let container = s["allocations"][0]["container_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let limits = docker(&[
        "inspect",
        "--format",
        "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.PidsLimit}}",
        &container,
    ])
    .await?;
    ensure!(
        limits.trim() == format!("{0} {0} 64", 8 << 20),
        "limits: {limits}"
    );
    agent.kill().await?;
    remove(&svc).await;
    Ok(())
}

/// Runs `scripts/docker-engine start|stop DIR`; returns the DOCKER_HOST it printed.
async fn engine(action: &str, dir: &std::path::Path) -> anyhow::Result<String> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/docker-engine");
    let mut command = tokio::process::Command::new("bash");
    command.arg(script).arg(action).arg(dir);
    if action == "start" {
        // Its own engine must not touch the main engine's NAT chains.
        command.arg("--no-iptables");
    }
    let output = command.output().await?;
    ensure!(
        output.status.success(),
        "scripts/docker-engine {action} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout)?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("DOCKER_HOST="))
        .unwrap_or_default()
        .to_owned())
}

/// The Docker engine stops under a running agent: the host reports a
/// precise runtime error; when the engine returns the error clears and the
/// workload runs again.
async fn docker_engine_down_is_reported_and_recovers(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    // An engine of this test's own, so stopping it disturbs no other test.
    let dir = std::path::PathBuf::from(format!(
        "/tmp/argosy-dk-{}",
        rand::random::<u32>() % 1_000_000
    ));
    let host = engine("start", &dir).await?;
    let result = async {
        let join = cp.join_string("eu-west", &[], 1).await?;
        let mut agent = Agent::start_with_env(
            env,
            &["--join", &join, "--interval", "1s"],
            &[("DOCKER_HOST", &host)],
        )?;
        let id = agent.wait_enrolled().await?;
        cp.wait_online(&id).await?;
        let svc = name("engine");
        let text = format!(
            "name: {svc}\nimage: argosy-test/web:v1\nreplicas: 1\nresources:\n  memory: 32MiB\n\
             update:\n  strategy: rolling\n  min_healthy_time: 1s\n  healthy_deadline: 30s\n"
        );
        apply(&cp, &env.new_dir("specs"), "engine.yaml", &text).await?;
        eventually_within("the service healthy", Duration::from_secs(60), || async {
            ensure!(service(&cp, &svc).await?["healthy"] == 1, "not yet");
            Ok(())
        })
        .await?;
        engine("stop", &dir).await?;
        eventually_within(
            "the host to report its engine down",
            Duration::from_secs(60),
            || async {
                let h = cp.host(&id).await?;
                ensure!(
                    h.runtime_error.contains("not reachable"),
                    "runtime_error {:?}",
                    h.runtime_error
                );
                Ok(())
            },
        )
        .await?;
        engine("start", &dir).await?;
        eventually_within(
            "the engine back and the service healthy",
            Duration::from_secs(90),
            || async {
                let h = cp.host(&id).await?;
                ensure!(
                    h.runtime_error.is_empty(),
                    "runtime_error {:?}",
                    h.runtime_error
                );
                ensure!(
                    service(&cp, &svc).await?["healthy"] == 1,
                    "not healthy again yet"
                );
                Ok(())
            },
        )
        .await?;
        agent.kill().await?;
        anyhow::Ok(())
    }
    .await;
    let _ = engine("stop", &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}
