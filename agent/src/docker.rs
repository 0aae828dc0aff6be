//! The only module that talks to the Docker engine: asks its version, for
//! the inventory, through `DOCKER_HOST` or the default socket.

use argosy_proto::v1::DockerInfo;
use std::time::Duration;

/// How long the engine gets to answer before it counts as unavailable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the Docker engine answers, and its version or why not.
pub async fn probe(timeout: Duration) -> DockerInfo {
    let docker = match bollard::Docker::connect_with_defaults() {
        Ok(docker) => docker,
        Err(e) => return unavailable(e.to_string()),
    };
    match tokio::time::timeout(timeout, docker.version()).await {
        Ok(Ok(version)) => DockerInfo {
            available: true,
            version: version.version.unwrap_or_default(),
            error: String::new(),
        },
        Ok(Err(e)) => unavailable(e.to_string()),
        Err(_) => unavailable(format!(
            "the Docker engine did not answer within {}",
            humantime::format_duration(timeout)
        )),
    }
}

fn unavailable(error: String) -> DockerInfo {
    DockerInfo {
        available: false,
        version: String::new(),
        error,
    }
}
