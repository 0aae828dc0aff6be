//! Operating services on a real Docker engine: `argosy scale` starts and
//! stops allocations outside a deployment, `argosy stop` drains a service
//! until `apply` or `scale` starts it again, scaling or stopping during a
//! deployment is refused with what to do, `argosy deployments cancel`
//! restores the old revision, and the allocations of a host that stays
//! offline past the reschedule grace move to another host (or stay, saying
//! why, when no host can take them). Every operation shows in the
//! service's history with who did it.

use anyhow::{Context, ensure};
use argosy_e2e::docker::{containers, registry, remove_service as remove, unique_name as unique};
use argosy_e2e::{Agent, ControlPlane, TestEnv, both_stores, eventually_within};
use std::time::Duration;

both_stores!(
    scale_up_and_down,
    stop_then_start_again,
    busy_service_refuses_and_cancel_restores,
    lost_host_is_rescheduled
);

/// The test web image at `version`, health-checked on `path` (a path it
/// does not serve never becomes healthy).
fn web_spec(name: &str, version: &str, replicas: u32, path: &str) -> String {
    format!(
        r#"name: {name}
image: {registry}/argosy-test/web:{version}
replicas: {replicas}
resources:
  cpu: 0.05
  memory: 32MiB
health_check:
  http:
    path: {path}
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

/// Waits until exactly `n` containers of `service` run, all of `version`.
async fn wait_running(service: &str, n: usize, version: &str) -> anyhow::Result<()> {
    eventually_within(
        &format!("{n} {version} containers of {service}"),
        Duration::from_secs(40),
        || async {
            let running = containers(service).await?;
            ensure!(
                running.len() == n
                    && running
                        .iter()
                        .all(|(_, image)| image.ends_with(&format!("web:{version}"))),
                "{running:?}"
            );
            Ok(())
        },
    )
    .await
}

/// `argosy services show NAME -o json`.
async fn show(cp: &ControlPlane, service: &str) -> anyhow::Result<serde_json::Value> {
    cp.cli()
        .run(&["services", "show", service, "-o", "json"])
        .await?
        .ok()?
        .json()
}

/// The messages of the service's history.
fn history(show: &serde_json::Value) -> Vec<String> {
    show["history"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter_map(|e| e["message"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A control plane with one enrolled, online agent.
async fn one_host(env: &TestEnv) -> anyhow::Result<(ControlPlane, Agent)> {
    let cp = ControlPlane::start(env, &[]).await?;
    let join = cp.join_string("eu-west", &[], 1).await?;
    let mut agent = Agent::start(env, &join, "1s")?;
    let id = agent.wait_enrolled().await?;
    cp.wait_online(&id).await?;
    Ok((cp, agent))
}

/// Writes the spec to a file and applies it, following the deployment.
async fn apply_watched(cp: &ControlPlane, env: &TestEnv, spec: &str) -> anyhow::Result<String> {
    let path = env.new_dir("specs").join("spec.yaml");
    std::fs::write(&path, spec)?;
    let applied = cp
        .cli()
        .run(&["apply", "-f", path.to_str().unwrap_or_default(), "--watch"])
        .await?;
    ensure!(
        applied.status.success() && applied.stdout.contains("succeeded"),
        "apply: {applied:?}"
    );
    Ok(path.to_string_lossy().into_owned())
}

async fn scale_up_and_down(env: &TestEnv) -> anyhow::Result<()> {
    let (cp, mut agent) = one_host(env).await?;
    let service = unique("scale");
    apply_watched(&cp, env, &web_spec(&service, "v1", 1, "/version")).await?;
    wait_running(&service, 1, "v1").await?;

    let up = cp.cli().run(&["scale", &service, "3"]).await?.ok()?;
    ensure!(
        up.stdout.contains("from 1 to 3 replicas by token:admin")
            && up.stdout.contains("starting 2"),
        "{up:?}"
    );
    wait_running(&service, 3, "v1").await?;
    eventually_within("3 healthy", Duration::from_secs(30), || async {
        let s = show(&cp, &service).await?;
        ensure!(s["healthy"] == 3 && s["replicas"] == 3, "{s}");
        Ok(())
    })
    .await?;

    let down = cp
        .cli()
        .run(&["scale", &service, "1", "-o", "json"])
        .await?
        .ok()?
        .json()?;
    ensure!(down["stopping"] == 2 && down["started"] == 0, "{down}");
    wait_running(&service, 1, "v1").await?;
    eventually_within("1 allocation left", Duration::from_secs(30), || async {
        let s = show(&cp, &service).await?;
        let allocations = s["allocations"].as_array().map(Vec::len);
        ensure!(s["healthy"] == 1 && allocations == Some(1), "{s}");
        Ok(())
    })
    .await?;
    let s = show(&cp, &service).await?;
    let story = history(&s);
    for wanted in [
        "from 1 to 3 replicas by token:admin",
        "from 3 to 1 replica by token:admin",
    ] {
        ensure!(
            story.iter().any(|m| m.contains(wanted)),
            "{wanted:?} missing from {story:#?}"
        );
    }

    // Out of range: refused, naming the bound.
    let refused = cp.cli().run(&["scale", &service, "5000"]).await?;
    ensure!(
        !refused.status.success() && refused.stderr.contains("0 to 1000"),
        "{refused:?}"
    );
    agent.kill().await?;
    remove(&service).await;
    Ok(())
}

async fn stop_then_start_again(env: &TestEnv) -> anyhow::Result<()> {
    let (cp, mut agent) = one_host(env).await?;
    let service = unique("stop");
    let spec = apply_watched(&cp, env, &web_spec(&service, "v1", 2, "/version")).await?;
    wait_running(&service, 2, "v1").await?;

    let stopped = cp.cli().run(&["stop", &service]).await?.ok()?;
    ensure!(
        stopped.stdout.contains("by token:admin") && stopped.stdout.contains("stopping 2"),
        "{stopped:?}"
    );
    wait_running(&service, 0, "v1").await?;
    eventually_within("no allocations left", Duration::from_secs(30), || async {
        let s = show(&cp, &service).await?;
        ensure!(
            s["stopped"] == true && s["allocations"].as_array().is_some_and(Vec::is_empty),
            "{s}"
        );
        Ok(())
    })
    .await?;

    // Applying the same spec starts it again (it is not "nothing to do").
    let applied = cp
        .cli()
        .run(&["apply", "-f", &spec, "--watch"])
        .await?
        .ok()?;
    ensure!(applied.stdout.contains("succeeded"), "{applied:?}");
    wait_running(&service, 2, "v1").await?;
    let s = show(&cp, &service).await?;
    ensure!(s["stopped"] == false && s["healthy"] == 2, "{s}");

    // So does scaling.
    cp.cli().run(&["stop", &service]).await?.ok()?;
    wait_running(&service, 0, "v1").await?;
    let scaled = cp.cli().run(&["scale", &service, "1"]).await?.ok()?;
    ensure!(scaled.stdout.contains("from stopped to 1"), "{scaled:?}");
    wait_running(&service, 1, "v1").await?;
    let story = history(&show(&cp, &service).await?);
    ensure!(
        story.iter().any(|m| m.contains("the service was stopped"))
            && story
                .iter()
                .any(|m| m.starts_with("stopped ") && m.contains("by token:admin"))
            && story
                .iter()
                .any(|m| m.contains("from stopped to 1 replica by token:admin")),
        "{story:#?}"
    );
    agent.kill().await?;
    remove(&service).await;
    Ok(())
}

async fn busy_service_refuses_and_cancel_restores(env: &TestEnv) -> anyhow::Result<()> {
    let (cp, mut agent) = one_host(env).await?;
    let service = unique("busy");
    apply_watched(&cp, env, &web_spec(&service, "v1", 2, "/version")).await?;
    wait_running(&service, 2, "v1").await?;

    // v2 never becomes healthy (its check asks for a page it does not
    // serve), so its deployment stays active for the healthy deadline.
    let v2 = env.new_dir("specs").join("v2.yaml");
    std::fs::write(&v2, web_spec(&service, "v2", 2, "/missing"))?;
    let started = cp
        .cli()
        .run(&["apply", "-f", v2.to_str().unwrap_or_default(), "-o", "json"])
        .await?
        .ok()?
        .json()?;
    let id = started["deployment"]["id"]
        .as_str()
        .context("no deployment id")?
        .to_owned();
    for args in [
        vec!["scale", service.as_str(), "3"],
        vec!["stop", service.as_str()],
    ] {
        let refused = cp.cli().run(&args).await?;
        ensure!(
            !refused.status.success()
                && refused.stderr.contains(&id)
                && refused.stderr.contains("argosy deployments cancel"),
            "{args:?}: {refused:?}"
        );
    }
    let listed = cp
        .cli()
        .run(&["deployments", "list", &service, "-o", "json"])
        .await?
        .ok()?
        .json()?;
    ensure!(
        listed.as_array().map(Vec::len) == Some(2) && listed[0]["id"] == id.as_str(),
        "{listed}"
    );

    let cancelled = cp
        .cli()
        .run(&["deployments", "cancel", &id, "-o", "json"])
        .await?
        .ok()?
        .json()?;
    ensure!(
        cancelled["phase"] == "cancelled" && cancelled["finished"] == true,
        "{cancelled}"
    );
    wait_running(&service, 2, "v1").await?;
    let s = show(&cp, &service).await?;
    ensure!(s["current_revision"] == 1, "{s}");
    let story = history(&s);
    ensure!(
        story
            .iter()
            .any(|m| m == "cancellation requested by token:admin"),
        "{story:#?}"
    );
    // A finished deployment cannot be cancelled again.
    let again = cp.cli().run(&["deployments", "cancel", &id]).await?;
    ensure!(
        !again.status.success() && again.stderr.contains("already ended"),
        "{again:?}"
    );
    agent.kill().await?;
    remove(&service).await;
    Ok(())
}

async fn lost_host_is_rescheduled(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &["--reschedule-grace", "5s"]).await?;
    let join = cp.join_string("eu-west", &[], 2).await?;
    let mut first = Agent::start(env, &join, "1s")?;
    let mut second = Agent::start(env, &join, "1s")?;
    let first_id = first.wait_enrolled().await?;
    let second_id = second.wait_enrolled().await?;
    cp.wait_online(&first_id).await?;
    cp.wait_online(&second_id).await?;
    let service = unique("moved");
    apply_watched(&cp, env, &web_spec(&service, "v1", 2, "/version")).await?;
    let s = show(&cp, &service).await?;
    let hosts: Vec<&str> = s["allocations"]
        .as_array()
        .map(|a| a.iter().filter_map(|a| a["host_id"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        hosts.contains(&first_id.as_str()) && hosts.contains(&second_id.as_str()),
        "one replica per host: {s}"
    );

    // The first agent dies; its container keeps running, but nobody
    // answers for it.
    first.kill().await?;
    eventually_within(
        "2 healthy allocations on the surviving host",
        Duration::from_secs(40),
        || async {
            let s = show(&cp, &service).await?;
            let allocations = s["allocations"].as_array().cloned().unwrap_or_default();
            let live: Vec<&serde_json::Value> = allocations
                .iter()
                .filter(|a| a["stopping"] == false)
                .collect();
            ensure!(
                s["healthy"] == 2
                    && live.len() == 2
                    && live.iter().all(|a| a["host_id"] == second_id.as_str()),
                "{s}"
            );
            // The lost one stays, told to stop, until its host comes back.
            ensure!(
                allocations
                    .iter()
                    .any(|a| a["stopping"] == true && a["host_id"] == first_id.as_str()),
                "{s}"
            );
            Ok(())
        },
    )
    .await?;
    let story = history(&show(&cp, &service).await?);
    ensure!(
        story.iter().any(|m| m.contains("rescheduled")
            && m.contains(&first_id)
            && m.contains(&format!("on host {second_id}"))),
        "{story:#?}"
    );

    // With the second host gone too, no host can take its allocations:
    // they stay (they may well still run), and the history says why.
    second.kill().await?;
    eventually_within(
        "the history to say nothing can take them",
        Duration::from_secs(30),
        || async {
            let s = show(&cp, &service).await?;
            let story = history(&s);
            ensure!(
                story
                    .iter()
                    .filter(|m| m.contains(&second_id) && m.contains("no other host can take it"))
                    .count()
                    == 2,
                "{story:#?}"
            );
            let live = s["allocations"].as_array().map(|a| {
                a.iter()
                    .filter(|a| a["stopping"] == false && a["host_id"] == second_id.as_str())
                    .count()
            });
            ensure!(live == Some(2), "{s}");
            Ok(())
        },
    )
    .await?;
    remove(&service).await;
    Ok(())
}
