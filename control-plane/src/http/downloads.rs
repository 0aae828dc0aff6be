//! `/install.sh` and `/downloads/argosy-agent-<os>-<arch>[.sha256]`: what a
//! new host fetches to install the agent.

use crate::state::ControlPlane;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;

/// The install script, with the control plane's URL filled in.
const INSTALL_SCRIPT: &str = include_str!("../../../deploy/install-agent.sh");
const URL_PLACEHOLDER: &str = "__ARGOSY_URL__";

pub(super) async fn install_script(State(cp): State<Arc<ControlPlane>>) -> Response {
    let script = INSTALL_SCRIPT.replace(URL_PLACEHOLDER, &cp.settings.public_http_url);
    (
        [(header::CONTENT_TYPE, "text/x-shellscript; charset=utf-8")],
        script,
    )
        .into_response()
}

/// The `os-arch` this control plane was built for, as `uname` spells it.
pub(super) fn native_platform() -> String {
    format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH)
}

/// Where the binary for `platform` lives: `argosy-agent-<platform>` in the
/// binary folder, or, for the native platform, a plain `argosy-agent` beside
/// it (the layout of a cargo build or a release archive).
pub(super) fn agent_binary_path(dir: &std::path::Path, platform: &str) -> Option<PathBuf> {
    let named = dir.join(format!("argosy-agent-{platform}"));
    if named.is_file() {
        return Some(named);
    }
    let plain = dir.join("argosy-agent");
    (platform == native_platform() && plain.is_file()).then_some(plain)
}

/// Splits `argosy-agent-linux-x86_64[.sha256]` into platform and whether
/// the checksum is asked for.
pub(super) fn parse_download_name(file: &str) -> Option<(&str, bool)> {
    let rest = file.strip_prefix("argosy-agent-")?;
    let (platform, checksum) = match rest.strip_suffix(".sha256") {
        Some(platform) => (platform, true),
        None => (rest, false),
    };
    let (os, arch) = platform.split_once('-')?;
    let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    (ok(os) && ok(arch)).then_some((platform, checksum))
}

pub(super) async fn download(
    State(cp): State<Arc<ControlPlane>>,
    Path(file): Path<String>,
) -> Response {
    let Some((platform, checksum)) = parse_download_name(&file) else {
        return (
            StatusCode::NOT_FOUND,
            "unknown download; try /downloads/argosy-agent-linux-x86_64\n",
        )
            .into_response();
    };
    let Some(path) = agent_binary_path(&cp.settings.agent_binary_dir, platform) else {
        return (
            StatusCode::NOT_FOUND,
            format!(
                "this control plane has no agent binary for {platform}; put argosy-agent-{platform} in {}\n",
                cp.settings.agent_binary_dir.display()
            ),
        )
            .into_response();
    };
    let bytes = match tokio::fs::read(&path).await {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::error!(%error, path = %path.display(), "cannot read agent binary");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot read the agent binary; see the control plane's log\n",
            )
                .into_response();
        }
    };
    if checksum {
        let digest = hex::encode(Sha256::digest(&bytes));
        (
            [(header::CONTENT_TYPE, "text/plain")],
            format!("{digest}  argosy-agent-{platform}\n"),
        )
            .into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_names() {
        assert_eq!(
            parse_download_name("argosy-agent-linux-x86_64"),
            Some(("linux-x86_64", false))
        );
        assert_eq!(
            parse_download_name("argosy-agent-linux-aarch64.sha256"),
            Some(("linux-aarch64", true))
        );
        for bad in [
            "argosy-agent-",
            "argosy-agent-linux",
            "argosy-agent-../etc-passwd",
            "other-linux-x86_64",
            "argosy-agent-linux-",
        ] {
            assert_eq!(parse_download_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn finds_named_then_native_plain_binary() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(agent_binary_path(dir.path(), &native_platform()), None);
        std::fs::write(dir.path().join("argosy-agent"), b"x").unwrap();
        assert_eq!(
            agent_binary_path(dir.path(), &native_platform()),
            Some(dir.path().join("argosy-agent"))
        );
        assert_eq!(agent_binary_path(dir.path(), "plan9-mips"), None);
        std::fs::write(dir.path().join("argosy-agent-plan9-mips"), b"x").unwrap();
        assert_eq!(
            agent_binary_path(dir.path(), "plan9-mips"),
            Some(dir.path().join("argosy-agent-plan9-mips"))
        );
    }

    #[test]
    fn install_script_has_the_placeholder_to_fill() {
        assert!(INSTALL_SCRIPT.contains(URL_PLACEHOLDER));
    }
}
