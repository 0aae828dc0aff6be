//! Checks the control plane's code-map invariants: every module (here, in
//! `proto/` and in `bench/`) starts with a `//!` line saying what it is for,
//! and the pure decision modules do no I/O — they name no async runtime,
//! database, RPC or HTTP crate.

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

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn every_module_starts_with_a_doc_line() {
    let mut files = Vec::new();
    for dir in [
        "control-plane/src",
        "control-plane/tests",
        "proto/src",
        "bench/src",
    ] {
        sources(&workspace().join(dir), &mut files);
    }
    files.push(workspace().join("proto/build.rs"));
    files.push(workspace().join("control-plane/build.rs"));
    assert!(files.len() > 30, "found only {} files", files.len());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("//! "),
            "{} does not start with a `//!` line saying what it is for",
            file.display()
        );
    }
}

#[test]
fn decisions_do_no_io() {
    let decisions = [
        "control-plane/src/alerts/evaluate.rs",
        "control-plane/src/alerts/facts.rs",
        "control-plane/src/alerts/notify.rs",
        "control-plane/src/alerts/routing.rs",
        "control-plane/src/alerts/rules.rs",
        "control-plane/src/alerts/silences.rs",
        "control-plane/src/audit.rs",
        "control-plane/src/auth.rs",
        "control-plane/src/backup/retention.rs",
        "control-plane/src/backup/schedule.rs",
        "control-plane/src/backup/spec.rs",
        "control-plane/src/backup/status.rs",
        "control-plane/src/backup/wire.rs",
        "control-plane/src/config.rs",
        "control-plane/src/crypto/envelope.rs",
        "control-plane/src/crypto/plan.rs",
        "control-plane/src/store/metric_query.rs",
        "control-plane/src/deploy/secret_refs.rs",
        "control-plane/src/deploy/secret_access.rs",
        "control-plane/src/users.rs",
        "control-plane/src/passwords.rs",
        "control-plane/src/policy/decision.rs",
        "control-plane/src/policy/defaults.rs",
        "control-plane/src/policy/hook.rs",
        "control-plane/src/policy/input.rs",
    ];
    for file in decisions {
        let text = std::fs::read_to_string(workspace().join(file)).unwrap();
        for io in [
            "tokio",
            "sqlx",
            "tonic",
            "axum",
            "reqwest",
            "std::fs",
            "std::net::TcpStream",
            "wasmtime",
        ] {
            assert!(
                !text.contains(&format!("{io}::")) && !text.contains(&format!("use {io}")),
                "{file} names {io}: decisions take data and return data, adapters do the I/O"
            );
        }
    }
}
