//! The Docker engine and registry `scripts/test` starts for the deployment
//! tests: where they are, the `docker` client pointed at them, and the
//! containers a service left behind.

use anyhow::{Context, ensure};

/// The engine under test (`DOCKER_HOST`); fails, never skips, without one.
pub fn docker_host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .expect("DOCKER_HOST is not set: run scripts/test, which starts a Docker engine")
}

/// The loopback registry holding `argosy-test/web:v1` and `:v2`.
pub fn registry() -> String {
    std::env::var("ARGOSY_TEST_REGISTRY")
        .ok()
        .filter(|r| !r.is_empty())
        .expect("ARGOSY_TEST_REGISTRY is not set: run scripts/test, which starts a registry")
}

/// `docker ARGS…` on the test engine; its standard output.
pub async fn docker(args: &[&str]) -> anyhow::Result<String> {
    let output = tokio::process::Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", docker_host())
        .output()
        .await
        .context("cannot run the docker client")?;
    ensure!(
        output.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

/// Running containers of `service` as (id, image).
pub async fn containers(service: &str) -> anyhow::Result<Vec<(String, String)>> {
    let text = docker(&[
        "ps",
        "--filter",
        &format!("label=argosy.service={service}"),
        "--format",
        "{{.ID}} {{.Image}}",
    ])
    .await?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(id, image)| (id.to_owned(), image.to_owned()))
        .collect())
}

/// Removes every container of `service` from the engine, for the other tests.
pub async fn remove_service(service: &str) {
    let filter = format!("label=argosy.service={service}");
    if let Ok(ids) = docker(&["ps", "-aq", "--filter", &filter]).await {
        for id in ids.lines().filter(|l| !l.is_empty()) {
            let _ = docker(&["rm", "-f", id]).await;
        }
    }
}

/// A service name no other test uses: `prefix-NNNNN`.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", rand::random::<u32>() % 100_000)
}

/// A spec of the test web image (`argosy-test/web:VERSION` from the
/// loopback registry): small limits, an HTTP health check on `/version`,
/// a one-at-a-time rolling update with short deadlines.
pub fn web_spec(name: &str, version: &str, replicas: u32) -> String {
    format!(
        r#"name: {name}
image: {registry}/argosy-test/web:{version}
replicas: {replicas}
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
