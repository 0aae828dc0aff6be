//! Deployments end to end on a real Docker engine: `argosy apply` stores a
//! revision and rolls it out through the agent (pulled from a loopback
//! registry, resource limits applied, health-checked), a new revision rolls
//! over it, `argosy rollback` brings the old one back, and an invalid spec
//! or an impossible placement says precisely what is wrong.

use anyhow::{Context, ensure};
use argosy_e2e::docker::{containers, docker, registry, unique_name as unique, web_spec};
use argosy_e2e::{Agent, ControlPlane, TestEnv, both_stores, eventually_within};
use std::time::Duration;

both_stores!(
    apply_roll_over_and_roll_back,
    bad_specs_and_impossible_placements,
    json_over_http,
    container_logs
);

async fn apply_roll_over_and_roll_back(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let join = cp.join_string("eu-west", &[], 1).await?;
    let mut agent = Agent::start(env, &join, "1s")?;
    let id = agent.wait_enrolled().await?;
    cp.wait_online(&id).await?;
    let service = unique("web");
    let dir = env.new_dir("specs");
    let v1 = dir.join("web-v1.yaml");
    std::fs::write(&v1, web_spec(&service, "v1", 2))?;

    let applied = cp
        .cli()
        .run(&["apply", "-f", v1.to_str().unwrap(), "--watch"])
        .await?;
    ensure!(
        applied.status.success() && applied.stdout.contains("succeeded"),
        "apply v1: {applied:?}"
    );
    let running = containers(&service).await?;
    ensure!(running.len() == 2, "two v1 containers, got {running:?}");
    ensure!(
        running.iter().all(|(_, image)| image.ends_with("web:v1")),
        "{running:?}"
    );
    // The limits are what the spec says.
    let memory = docker(&[
        "inspect",
        "--format",
        "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}",
        &running[0].0,
    ])
    .await?;
    ensure!(
        memory.trim() == format!("{} 100000000", 64 << 20),
        "limits: {memory}"
    );

    // A second revision rolls over the first.
    let v2 = dir.join("web-v2.yaml");
    std::fs::write(&v2, web_spec(&service, "v2", 2))?;
    let applied = cp
        .cli()
        .run(&["apply", "-f", v2.to_str().unwrap(), "--watch"])
        .await?;
    ensure!(applied.status.success(), "apply v2: {applied:?}");
    eventually_within("only v2 containers", Duration::from_secs(60), || async {
        let running = containers(&service).await?;
        ensure!(
            running.len() == 2 && running.iter().all(|(_, image)| image.ends_with("web:v2")),
            "{running:?}"
        );
        Ok(())
    })
    .await?;
    let show = cp
        .cli()
        .run(&["services", "show", &service, "-o", "json"])
        .await?
        .ok()?;
    let json = show.json()?;
    ensure!(
        json["current_revision"] == 2 && json["healthy"] == 2,
        "{json}"
    );

    // Applying the same spec again changes nothing.
    let again = cp
        .cli()
        .run(&["apply", "-f", v2.to_str().unwrap()])
        .await?
        .ok()?;
    ensure!(again.stdout.contains("nothing to do"), "{again:?}");

    // Roll back to revision 1.
    let rollback = cp
        .cli()
        .run(&["rollback", &service, "-o", "json"])
        .await?
        .ok()?;
    let deployment = rollback.json()?;
    ensure!(deployment["to_revision"] == 1, "{deployment}");
    let watched = cp
        .cli()
        .run(&[
            "deployments",
            "watch",
            deployment["id"].as_str().unwrap_or_default(),
        ])
        .await?;
    ensure!(watched.status.success(), "rollback watch: {watched:?}");
    eventually_within("v1 back", Duration::from_secs(60), || async {
        let running = containers(&service).await?;
        ensure!(
            running.len() == 2 && running.iter().all(|(_, image)| image.ends_with("web:v1")),
            "{running:?}"
        );
        Ok(())
    })
    .await?;
    let revisions = cp
        .cli()
        .run(&["revisions", &service, "-o", "json"])
        .await?
        .ok()?
        .json()?;
    ensure!(revisions.as_array().map(Vec::len) == Some(2), "{revisions}");
    agent.kill().await?;
    // Clean up the engine for the other tests.
    for (id, _) in containers(&service).await? {
        let _ = docker(&["rm", "-f", &id]).await;
    }
    Ok(())
}

async fn bad_specs_and_impossible_placements(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let dir = env.new_dir("specs");
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "name: web\nimage: busybox\nresources:\n  memory: 64XB\nreplics: 2\n",
    )?;
    let refused = cp
        .cli()
        .run(&["apply", "-f", bad.to_str().unwrap()])
        .await?;
    ensure!(!refused.status.success(), "an invalid spec was accepted");
    for wanted in [
        "spec.resources.memory: \"64XB\" is not a size, write e.g. 64MiB",
        "spec.replics",
    ] {
        ensure!(
            refused.stderr.contains(wanted),
            "missing {wanted:?} in {}",
            refused.stderr
        );
    }
    // No host can run it: the allocations stay pending with the reason.
    let service = unique("huge");
    let huge = dir.join("huge.yaml");
    std::fs::write(
        &huge,
        format!(
            "name: {service}\nimage: {}/argosy-test/web:v1\nreplicas: 1\nresources:\n  memory: 4TiB\nplacement:\n  regions:\n    eu-west: 1\n",
            registry()
        ),
    )?;
    cp.cli()
        .run(&["apply", "-f", huge.to_str().unwrap()])
        .await?
        .ok()?;
    let show = cp
        .cli()
        .run(&["services", "show", &service, "-o", "json"])
        .await?
        .ok()?
        .json()?;
    let message = show["allocations"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    ensure!(message.contains("eu-west"), "pending reason: {show}");
    Ok(())
}

/// The same operations as JSON over HTTP, with the same tokens and roles.
async fn json_over_http(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let join = cp.join_string("eu-west", &[], 1).await?;
    let mut agent = Agent::start(env, &join, "1s")?;
    let id = agent.wait_enrolled().await?;
    cp.wait_online(&id).await?;
    let service = unique("http");
    let token = cp.admin_token.clone();
    let spec = web_spec(&service, "v1", 1);

    let anonymous = cp.http_post("/api/v1/services", None, &spec).await?;
    ensure!(
        anonymous.status == 401,
        "apply without a token: {}",
        anonymous.status
    );
    let viewer = cp
        .cli()
        .run(&[
            "token", "create", "--name", "dash", "--role", "viewer", "-o", "json",
        ])
        .await?
        .ok()?
        .json()?;
    let viewer = viewer["secret"].as_str().context("no secret")?.to_owned();
    let denied = cp
        .http_post("/api/v1/services", Some(&viewer), &spec)
        .await?;
    ensure!(
        denied.status == 403 && denied.text().contains("operator"),
        "apply as viewer: {} {}",
        denied.status,
        denied.text()
    );
    let invalid = cp
        .http_post(
            "/api/v1/services",
            Some(&token),
            "name: web\nimage: x\nresources: {memory: 64XB}\n",
        )
        .await?;
    ensure!(
        invalid.status == 400 && invalid.text().contains("spec.resources.memory"),
        "invalid spec: {} {}",
        invalid.status,
        invalid.text()
    );

    let applied = cp
        .http_post("/api/v1/services", Some(&token), &spec)
        .await?;
    ensure!(
        applied.status == 200,
        "apply: {} {}",
        applied.status,
        applied.text()
    );
    let deployment = applied.json()?["deployment"]["id"]
        .as_str()
        .context("no deployment")?
        .to_owned();
    eventually_within(
        "the deployment to succeed",
        Duration::from_secs(60),
        || async {
            let d = cp
                .http_get(&format!("/api/v1/deployments/{deployment}"), Some(&viewer))
                .await?
                .json()?;
            ensure!(d["phase"] == "succeeded", "{d}");
            Ok(())
        },
    )
    .await?;
    let shown = cp
        .http_get(&format!("/api/v1/services/{service}"), Some(&viewer))
        .await?
        .json()?;
    ensure!(
        shown["healthy"] == 1 && shown["current_revision"] == 1,
        "{shown}"
    );
    let listed = cp
        .http_get("/api/v1/services", Some(&viewer))
        .await?
        .json()?;
    ensure!(
        listed
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s["name"] == service.as_str())),
        "{listed}"
    );
    let busy = cp
        .http_post(
            &format!("/api/v1/deployments/{deployment}/promote"),
            Some(&token),
            "",
        )
        .await?;
    ensure!(
        busy.status == 409,
        "promoting a finished deployment: {} {}",
        busy.status,
        busy.text()
    );
    let missing = cp
        .http_get("/api/v1/services/no-such-service", Some(&viewer))
        .await?;
    ensure!(missing.status == 404, "{}", missing.status);
    agent.kill().await?;
    for (id, _) in containers(&service).await? {
        let _ = docker(&["rm", "-f", &id]).await;
    }
    Ok(())
}

/// `argosy logs` reads a service's container output through its agent:
/// stdout and stderr apart, the tail, and following new lines; viewers may
/// not read logs.
async fn container_logs(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let join = cp.join_string("eu-west", &[], 1).await?;
    let mut agent = Agent::start(env, &join, "1s")?;
    let id = agent.wait_enrolled().await?;
    cp.wait_online(&id).await?;
    let service = unique("logs");
    let dir = env.new_dir("specs");
    let spec = dir.join("logs.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: {service}\nimage: {}/argosy-test/web:v1\n\
             command: \"echo hello-out; echo hello-err >&2; i=0; while :; do i=$((i+1)); echo tick-$i; sleep 1; done\"\n\
             resources:\n  memory: 16MiB\nupdate:\n  strategy: rolling\n  min_healthy_time: 1s\n",
            registry()
        ),
    )?;
    cp.cli()
        .run(&["apply", "-f", spec.to_str().unwrap(), "--watch"])
        .await?
        .ok()?;
    let out = eventually_within("the first lines", Duration::from_secs(30), || async {
        let out = cp
            .cli()
            .run(&["logs", &service, "--tail", "50"])
            .await?
            .ok()?;
        ensure!(
            out.stdout.contains("hello-out") && out.stderr.contains("hello-err"),
            "{out:?}"
        );
        Ok(out)
    })
    .await?;
    ensure!(
        !out.stdout.contains("hello-err"),
        "stderr leaked into stdout: {}",
        out.stdout
    );

    // Following shows lines written after the call.
    let before = out.stdout.lines().filter(|l| l.contains("tick-")).count();
    let mut follow = tokio::process::Command::new(&argosy_e2e::binaries().argosy)
        .args(["logs", &service, "--follow", "--tail", "1"])
        .env("ARGOSY_ADDR", cp.grpc())
        .env("ARGOSY_TOKEN", &cp.admin_token)
        .env("ARGOSY_CA_FINGERPRINT", cp.ca_fingerprint.to_string())
        .env("HOME", dir.join("home"))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = follow.stdout.take().context("no stdout")?;
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while seen.len() < 3 {
            match lines.next_line().await? {
                Some(line) => seen.push(line),
                None => anyhow::bail!("logs --follow ended early after {seen:?}"),
            }
        }
        anyhow::Ok(())
    })
    .await
    .context("logs --follow showed no new lines")??;
    ensure!(
        seen.iter().all(|l| l.contains("tick-")),
        "{seen:?} (had {before} ticks before)"
    );
    follow.kill().await?;

    // Logs may hold secrets: viewers may not read them.
    let viewer = cp
        .cli()
        .run(&[
            "token", "create", "--name", "ro", "--role", "viewer", "-o", "json",
        ])
        .await?
        .ok()?
        .json()?;
    let denied = cp
        .cli()
        .env(
            "ARGOSY_TOKEN",
            viewer["secret"].as_str().unwrap_or_default(),
        )
        .run(&["logs", &service])
        .await?;
    ensure!(
        !denied.status.success() && denied.stderr.contains("operator"),
        "{denied:?}"
    );
    agent.kill().await?;
    for (id, _) in containers(&service).await? {
        let _ = docker(&["rm", "-f", &id]).await;
    }
    Ok(())
}
