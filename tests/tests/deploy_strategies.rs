//! Update strategies on a real Docker engine: a rolling update whose new
//! revision never becomes healthy reverts automatically to the last good
//! one; blue-green keeps the old set until promotion and for the keep
//! window; canary runs canaries next to the old set and promotes in steps.

use anyhow::{Context, ensure};
use argosy_e2e::docker::{docker, registry, remove_service as remove};
use argosy_e2e::{Agent, ControlPlane, TestEnv, both_stores, eventually_within};
use std::time::Duration;

both_stores!(
    failed_rollout_reverts,
    blue_green_waits_for_promotion,
    canary_promotes_in_steps
);

/// A spec of the test web image at `version` whose health check asks for
/// `path`, with `update` as the update block.
fn spec(name: &str, version: &str, path: &str, update: &str) -> String {
    format!(
        "name: {name}\nimage: {}/argosy-test/web:{version}\nreplicas: 2\n\
         resources:\n  cpu: 0.05\n  memory: 32MiB\n\
         health_check:\n  http:\n    path: {path}\n    port: 8080\n  interval: 1s\n  timeout: 500ms\n  retries: 2\n\
         update:\n{update}",
        registry()
    )
}

const ROLLING: &str = "  strategy: rolling\n  max_parallel: 1\n  min_healthy_time: 1s\n  healthy_deadline: 8s\n  progress_deadline: 30s\n  auto_revert: true\n";

/// Images of the running containers of `service`, sorted.
async fn images(service: &str) -> anyhow::Result<Vec<String>> {
    let text = docker(&[
        "ps",
        "--filter",
        &format!("label=argosy.service={service}"),
        "--format",
        "{{.Image}}",
    ])
    .await?;
    let mut images: Vec<String> = text
        .lines()
        .map(|l| l.rsplit('/').next().unwrap_or(l).to_owned())
        .collect();
    images.sort();
    Ok(images)
}

struct Fixture {
    cp: ControlPlane,
    agent: Agent,
    service: String,
    dir: std::path::PathBuf,
}

impl Fixture {
    async fn new(env: &TestEnv, prefix: &str) -> anyhow::Result<Self> {
        let cp = ControlPlane::start(env, &[]).await?;
        let join = cp.join_string("eu-west", &[], 1).await?;
        let mut agent = Agent::start(env, &join, "1s")?;
        let id = agent.wait_enrolled().await?;
        cp.wait_online(&id).await?;
        Ok(Self {
            cp,
            agent,
            service: format!("{prefix}-{}", rand::random::<u32>() % 100_000),
            dir: env.new_dir("specs"),
        })
    }

    /// Applies a spec; returns the deployment id.
    async fn apply(&self, file: &str, text: &str) -> anyhow::Result<String> {
        let path = self.dir.join(file);
        std::fs::write(&path, text)?;
        let out = self
            .cp
            .cli()
            .run(&["apply", "-f", path.to_str().unwrap(), "-o", "json"])
            .await?
            .ok()?;
        let json = out.json()?;
        json["deployment"]["id"]
            .as_str()
            .map(str::to_owned)
            .context("apply started no deployment")
    }

    async fn deployment(&self, id: &str) -> anyhow::Result<serde_json::Value> {
        self.cp
            .cli()
            .run(&["deployments", "show", id, "-o", "json"])
            .await?
            .ok()?
            .json()
    }

    async fn wait_phase(
        &self,
        id: &str,
        phase: &str,
        patience: Duration,
    ) -> anyhow::Result<serde_json::Value> {
        eventually_within(&format!("deployment {id} {phase}"), patience, || async {
            let d = self.deployment(id).await?;
            ensure!(d["phase"] == phase, "phase is {}", d["phase"]);
            Ok(d)
        })
        .await
    }

    async fn finish(mut self) -> anyhow::Result<()> {
        self.agent.kill().await?;
        remove(&self.service).await;
        Ok(())
    }
}

async fn failed_rollout_reverts(env: &TestEnv) -> anyhow::Result<()> {
    let f = Fixture::new(env, "revert").await?;
    let first = f
        .apply("v1.yaml", &spec(&f.service, "v1", "/version", ROLLING))
        .await?;
    f.wait_phase(&first, "succeeded", Duration::from_secs(60))
        .await?;
    // v2 never answers its health check: it fails its healthy deadline and
    // the deployment reverts to revision 1 on its own.
    let second = f
        .apply("v2.yaml", &spec(&f.service, "v2", "/missing", ROLLING))
        .await?;
    let watched = f.cp.cli().run(&["deployments", "watch", &second]).await?;
    ensure!(
        !watched.status.success(),
        "watching a reverted deployment must fail: {watched:?}"
    );
    ensure!(watched.stdout.contains("reverted"), "{}", watched.stdout);
    let d = f.deployment(&second).await?;
    ensure!(d["phase"] == "reverted", "{d}");
    eventually_within("only v1 running", Duration::from_secs(30), || async {
        let images = images(&f.service).await?;
        ensure!(images == ["web:v1", "web:v1"], "{images:?}");
        Ok(())
    })
    .await?;
    let service =
        f.cp.cli()
            .run(&["services", "show", &f.service, "-o", "json"])
            .await?
            .ok()?
            .json()?;
    ensure!(
        service["current_revision"] == 1 && service["stable_revision"] == 1,
        "{service}"
    );
    f.finish().await
}

async fn blue_green_waits_for_promotion(env: &TestEnv) -> anyhow::Result<()> {
    let f = Fixture::new(env, "bg").await?;
    let first = f
        .apply("v1.yaml", &spec(&f.service, "v1", "/version", ROLLING))
        .await?;
    f.wait_phase(&first, "succeeded", Duration::from_secs(60))
        .await?;
    let blue_green = "  strategy: blue_green\n  min_healthy_time: 1s\n  healthy_deadline: 30s\n  auto_promote: false\n  keep_old_for: 3s\n";
    let second = f
        .apply("v2.yaml", &spec(&f.service, "v2", "/version", blue_green))
        .await?;
    f.wait_phase(&second, "awaiting promotion", Duration::from_secs(60))
        .await?;
    // Both full sets run side by side until promotion.
    let both = images(&f.service).await?;
    ensure!(both == ["web:v1", "web:v1", "web:v2", "web:v2"], "{both:?}");
    f.cp.cli()
        .run(&["deployments", "promote", &second])
        .await?
        .ok()?;
    f.wait_phase(&second, "succeeded", Duration::from_secs(60))
        .await?;
    eventually_within(
        "only v2 after the keep window",
        Duration::from_secs(30),
        || async {
            let images = images(&f.service).await?;
            ensure!(images == ["web:v2", "web:v2"], "{images:?}");
            Ok(())
        },
    )
    .await?;
    f.finish().await
}

async fn canary_promotes_in_steps(env: &TestEnv) -> anyhow::Result<()> {
    let f = Fixture::new(env, "canary").await?;
    let first = f
        .apply("v1.yaml", &spec(&f.service, "v1", "/version", ROLLING))
        .await?;
    f.wait_phase(&first, "succeeded", Duration::from_secs(60))
        .await?;
    let canary = "  strategy: canary\n  canaries: 1\n  steps: [50, 100]\n  min_healthy_time: 1s\n  healthy_deadline: 30s\n  auto_promote: false\n";
    let second = f
        .apply("v2.yaml", &spec(&f.service, "v2", "/version", canary))
        .await?;
    f.wait_phase(&second, "awaiting promotion", Duration::from_secs(60))
        .await?;
    let canaries = images(&f.service).await?;
    ensure!(
        canaries == ["web:v1", "web:v1", "web:v2"],
        "one canary next to the old set: {canaries:?}"
    );
    // Promote until it is done (50 %, then 100 %).
    eventually_within(
        "the canary promoted to the end",
        Duration::from_secs(90),
        || async {
            let d = f.deployment(&second).await?;
            if d["phase"] == "awaiting promotion" {
                f.cp.cli()
                    .run(&["deployments", "promote", &second])
                    .await?
                    .ok()?;
            }
            ensure!(d["phase"] == "succeeded", "phase {}", d["phase"]);
            Ok(())
        },
    )
    .await?;
    eventually_within("only v2", Duration::from_secs(30), || async {
        let images = images(&f.service).await?;
        ensure!(images == ["web:v2", "web:v2"], "{images:?}");
        Ok(())
    })
    .await?;
    f.finish().await
}
