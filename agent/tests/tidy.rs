//! Checks the agent's code map invariants: every module says what it is for
//! in a leading `//!` line, only `docker.rs` talks to Docker, and the agent
//! never links the control plane's heavy dependencies.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn agent_sources() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    sources(&root.join("tests"), &mut files);
    assert!(files.len() > 10, "found only {files:?}");
    files
}

#[test]
fn every_module_starts_with_a_doc_line() {
    for file in agent_sources() {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("//! "),
            "{} does not start with a `//!` line saying what it is for",
            file.display()
        );
    }
}

#[test]
fn only_the_docker_module_talks_to_docker() {
    for file in agent_sources() {
        if file.ends_with("src/docker.rs") || file.ends_with("tests/tidy.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("bollard"),
            "{} uses bollard; only src/docker.rs may",
            file.display()
        );
    }
}

#[test]
fn the_agent_stays_small() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    for heavy in ["sqlx", "wasmtime"] {
        assert!(
            !manifest.contains(heavy),
            "the agent must not depend on {heavy}"
        );
    }
    // Nor on the control plane (package `argosy`).
    assert!(
        !manifest.lines().any(|line| line.starts_with("argosy ")
            || line.starts_with("argosy.")
            || line.starts_with("argosy=")),
        "the agent must not depend on the control plane"
    );
}
