//! The Docker engine stopped under a running agent: the runtime reports a
//! clear host-level error, and when the engine returns it reconnects by
//! itself and brings the allocation back in the same container.
//!
//! The test runs its own throwaway engine (`scripts/docker-engine`), so
//! stopping it does not disturb the other `docker_*` tests.

mod support;

use argosy_proto::v1::allocation_status::State;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::*;

/// A dockerd of this test's own, stopped when dropped.
struct OwnEngine {
    dir: PathBuf,
    host: String,
}

impl OwnEngine {
    fn script(command: &str, dir: &Path) -> String {
        let script = repo_root().join("scripts/docker-engine");
        let output = Command::new(&script)
            .arg(command)
            .arg(dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            output.status.success(),
            "scripts/docker-engine {command} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn start(dir: &Path) -> Self {
        let out = Self::script("start", dir);
        let host = out
            .lines()
            .find_map(|l| l.strip_prefix("DOCKER_HOST="))
            .unwrap_or_else(|| panic!("scripts/docker-engine printed no DOCKER_HOST: {out}"))
            .to_owned();
        Self {
            dir: dir.to_path_buf(),
            host,
        }
    }

    fn stop(&self) {
        Self::script("stop", &self.dir);
    }

    fn restart(&self) {
        Self::script("start", &self.dir);
    }
}

impl Drop for OwnEngine {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/docker-engine"))
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_engine_stopped_is_a_host_error_and_the_agent_recovers() {
    // Run like the other docker tests: through scripts/test.
    let _ = docker_host();
    let dir = tempfile::Builder::new()
        .prefix("argosy-engine-")
        .tempdir_in("/tmp")
        .unwrap();
    let engine = OwnEngine::start(dir.path());
    let mut h = Harness::start_on(&engine.host, "engine").await;
    h.apply(1, vec![allocation("survivor", web(WEB_V1))]);
    let before = h.wait_running("survivor").await;

    engine.stop();
    let report = h
        .wait_for("a host error", Duration::from_secs(30), |r| {
            !r.host_error.is_empty()
        })
        .await;
    assert!(
        report.host_error.starts_with(&format!(
            "the Docker engine at {} is not reachable: ",
            engine.host
        )) && report.host_error.ends_with("; is dockerd running?"),
        "{}",
        report.host_error
    );
    // The allocations are still reported (as last seen) with the error.
    assert_eq!(report.applied_version, 1);
    assert!(status(&report, "survivor").is_some());

    engine.restart();
    let report = h
        .wait_for("recovery", Duration::from_secs(60), |r| {
            r.host_error.is_empty()
                && status(r, "survivor").is_some_and(|s| {
                    s.state() == State::Running && s.container_id == before.container_id
                })
        })
        .await;
    // dockerd stopped the container when it went down; the agent started
    // the same one again (Docker's own restart policy is `no`).
    assert!(status(&report, "survivor").unwrap().restarts >= 1);
    assert_eq!(h.containers(), vec![before.container_id]);
}
