//! Secrets encrypted at rest: the `argosy secret` commands end to end; a
//! value on the command line is refused; viewers list, operators write,
//! only admins read values (audited); neither the SQLite file with its WAL
//! nor any PostgreSQL row nor the log ever holds a value; a wrong master key
//! or passphrase stops the start and leaves the store untouched; a
//! corrupted ciphertext fails alone; `argosy keys rotate-master` re-wraps
//! while serving, and afterwards only the new key opens the store.

use anyhow::{Context, bail, ensure};
use argosy_e2e::{CliOutput, ControlPlane, Store, TestEnv, both_stores, pb};
use pb::secret_service_client::SecretServiceClient;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

both_stores!(
    the_secret_commands,
    roles_decide_who_reads_values,
    no_value_is_ever_stored_or_logged_in_clear,
    a_wrong_master_key_is_refused_and_rotation_needs_the_new_one,
    a_wrong_passphrase_is_refused_and_rotation_needs_the_new_one,
    a_corrupted_ciphertext_fails_alone,
    the_master_key_file_rotates_while_serving
);

/// A value no other byte string in the test world contains by chance.
fn distinctive(label: &str) -> String {
    format!("zq{label}-{:016x}-plaintext", rand::random::<u64>())
}

fn write_file(dir: &Path, name: &str, content: &[u8]) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, content).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}

fn refused(what: &str, out: &CliOutput, words: &[&str]) -> anyhow::Result<()> {
    ensure!(
        !out.status.success(),
        "{what} succeeded but must be refused:\n{}",
        out.stdout
    );
    for word in words {
        ensure!(
            out.stderr.contains(word),
            "{what}: the error does not say {word:?}:\n{}",
            out.stderr
        );
    }
    Ok(())
}

async fn token(cp: &ControlPlane, name: &str, role: &str) -> anyhow::Result<String> {
    let out = cp
        .cli()
        .run(&[
            "token", "create", "--name", name, "--role", role, "-o", "json",
        ])
        .await?
        .ok()?;
    Ok(out.json()?["secret"]
        .as_str()
        .context("token create printed no secret")?
        .to_owned())
}

/// What the control plane itself wrote to its log (the harness's own lines
/// quote the command line, which a test may have put a key on).
fn server_output(cp: &ControlPlane) -> String {
    cp.log()
        .lines()
        .filter(|line| !line.starts_with("=== harness:"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn the_secret_commands(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let cli = cp.cli();
    let dir = env.new_dir("values");
    let first = distinctive("first");
    let second = distinctive("second");
    let api_key = distinctive("apikey");
    let first_file = write_file(&dir, "first", first.as_bytes())?;
    let second_file = write_file(&dir, "second", second.as_bytes())?;

    let out = cli
        .run(&[
            "secret",
            "set",
            "crm/db-password",
            "--from-file",
            text(&first_file),
        ])
        .await?
        .ok()?;
    ensure!(
        out.stdout
            .contains("secret crm/db-password version 1 created"),
        "{}",
        out.stdout
    );
    cli.clone()
        .stdin(&api_key)
        .run(&["secret", "set", "crm/api-key", "--from-stdin"])
        .await?
        .ok()?;

    // A value on the command line is refused, without being echoed.
    let on_line = distinctive("online");
    for args in [
        vec!["secret", "set", "crm/typed", on_line.as_str()],
        vec!["secret", "set", "crm/typed", "--value", on_line.as_str()],
        vec!["secret", "rotate", "crm/db-password", on_line.as_str()],
    ] {
        let out = cli.run(&args).await?;
        refused(
            "a value on the command line",
            &out,
            &["shell history", "--from-file"],
        )?;
        ensure!(
            !out.stderr.contains(&on_line) && !out.stdout.contains(&on_line),
            "the refusal echoes the value:\n{}",
            out.stderr
        );
    }
    let out = cli.run(&["secret", "set", "crm/typed"]).await?;
    refused(
        "a set without a value",
        &out,
        &["--from-file", "--from-stdin"],
    )?;

    let list = cli.run(&["secret", "list", "-o", "json"]).await?.ok()?;
    ensure!(
        !list.stdout.contains(&first) && !list.stdout.contains(&api_key),
        "a listing shows a value: {}",
        list.stdout
    );
    let listed = list.json()?;
    ensure!(
        names(&listed) == ["crm/api-key", "crm/db-password"],
        "the command-line value was not stored: {listed}"
    );
    let entry = &listed[1];
    ensure!(
        entry["latest_version"] == 1
            && entry["versions_kept"] == 1
            && entry["created_by"] == "token:admin"
            && entry["updated_by"] == "token:admin"
            && entry["updated_at_ms"].as_i64().is_some_and(|t| t > 0),
        "{entry}"
    );
    let table = cli.run(&["secret", "list"]).await?.ok()?;
    ensure!(
        table.stdout.contains("crm/db-password") && table.stdout.contains("token:admin"),
        "{}",
        table.stdout
    );

    let got = cli.run(&["secret", "get", "crm/db-password"]).await?.ok()?;
    ensure!(
        got.stdout == first,
        "get prints the raw value: {:?}",
        got.stdout
    );
    let got = cli.run(&["secret", "get", "crm/api-key"]).await?.ok()?;
    ensure!(
        got.stdout == api_key,
        "a value from stdin: {:?}",
        got.stdout
    );

    let out = cli
        .run(&[
            "secret",
            "rotate",
            "crm/db-password",
            "--from-file",
            text(&second_file),
        ])
        .await?
        .ok()?;
    ensure!(out.stdout.contains("version 2 stored"), "{}", out.stdout);
    let got = cli.run(&["secret", "get", "crm/db-password"]).await?.ok()?;
    ensure!(got.stdout == second, "the latest version after rotate");
    let got = cli
        .run(&["secret", "get", "crm/db-password", "--version", "1"])
        .await?
        .ok()?;
    ensure!(got.stdout == first, "an older version by number");
    let out = cli
        .run(&["secret", "get", "crm/db-password", "--version", "9"])
        .await?;
    refused(
        "a missing version",
        &out,
        &["has no version 9", "2, 1", "NotFound"],
    )?;

    let versions = cli
        .run(&["secret", "versions", "crm/db-password", "-o", "json"])
        .await?
        .ok()?
        .json()?;
    let numbers: Vec<i64> = versions
        .as_array()
        .context("versions is a list")?
        .iter()
        .filter_map(|v| v["version"].as_i64())
        .collect();
    ensure!(numbers == [2, 1], "newest first: {versions}");
    ensure!(
        versions[0]["master_key_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("mk-")),
        "{versions}"
    );

    let out = cli
        .run(&[
            "secret",
            "rotate",
            "crm/nope",
            "--from-file",
            text(&first_file),
        ])
        .await?;
    refused(
        "rotating a missing secret",
        &out,
        &[
            "secret crm/nope does not exist",
            "argosy secret set crm/nope",
        ],
    )?;
    let out = cli
        .run(&["secret", "set", "CRM/Bad", "--from-file", text(&first_file)])
        .await?;
    refused(
        "an invalid name",
        &out,
        &["is not valid", "InvalidArgument"],
    )?;

    let out = cli.run(&["secret", "delete", "crm/api-key"]).await?.ok()?;
    ensure!(
        out.stdout.contains("deleted secret crm/api-key"),
        "{}",
        out.stdout
    );
    let out = cli.run(&["secret", "get", "crm/api-key"]).await?;
    refused("a deleted secret", &out, &["crm/api-key does not exist"])?;

    // The JSON API: the same operations, names with slashes included.
    let body = serde_json::json!({
        "name": "web/token",
        "value_base64": base64_encode(first.as_bytes()),
    });
    let set = cp
        .http_post("/api/v1/secrets", Some(&cp.admin_token), &body.to_string())
        .await?;
    ensure!(set.status == 200, "POST /api/v1/secrets: {}", set.text());
    ensure!(set.json()?["version"] == 1, "{}", set.text());
    let listed = cp
        .http_get("/api/v1/secrets", Some(&cp.admin_token))
        .await?;
    ensure!(
        names(&listed.json()?) == ["crm/db-password", "web/token"]
            && !listed.text().contains(&first),
        "{}",
        listed.text()
    );
    let versions = cp
        .http_get(
            "/api/v1/secrets/crm/db-password/versions",
            Some(&cp.admin_token),
        )
        .await?;
    ensure!(versions.status == 200, "{}", versions.text());
    ensure!(
        versions.json()?.as_array().map(Vec::len) == Some(2),
        "{}",
        versions.text()
    );
    let revealed = cp
        .http_post(
            "/api/v1/secrets/crm/db-password/reveal?version=1",
            Some(&cp.admin_token),
            "",
        )
        .await?;
    ensure!(revealed.status == 200, "{}", revealed.text());
    ensure!(
        revealed.json()?["value_base64"] == base64_encode(first.as_bytes()),
        "{}",
        revealed.text()
    );
    let deleted = argosy_e2e::api::http_request(
        cp.http_addr,
        http::Method::DELETE,
        "/api/v1/secrets/web/token",
        Some(&cp.admin_token),
        Vec::new(),
    )
    .await?;
    ensure!(deleted.status == 200, "{}", deleted.text());

    let log = server_output(&cp);
    for value in [&first, &second, &api_key, &on_line] {
        ensure!(
            !log.contains(value.as_str()),
            "the control plane logged a value"
        );
    }
    Ok(())
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn roles_decide_who_reads_values(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let viewer = token(&cp, "watcher", "viewer").await?;
    let operator = token(&cp, "ops", "operator").await?;
    let as_viewer = cp.cli().env("ARGOSY_TOKEN", &viewer);
    let as_operator = cp.cli().env("ARGOSY_TOKEN", &operator);
    let dir = env.new_dir("values");
    let value = distinctive("roles");
    let file = write_file(&dir, "value", value.as_bytes())?;

    // A viewer lists names but may not write or read values.
    let out = as_viewer
        .run(&["secret", "set", "crm/db", "--from-file", text(&file)])
        .await?;
    refused("a viewer's set", &out, &["role viewer", "PermissionDenied"])?;
    // An operator writes and rotates but may not read values back.
    as_operator
        .run(&["secret", "set", "crm/db", "--from-file", text(&file)])
        .await?
        .ok()?;
    as_operator
        .run(&["secret", "rotate", "crm/db", "--from-file", text(&file)])
        .await?
        .ok()?;
    let out = as_operator.run(&["secret", "get", "crm/db"]).await?;
    refused(
        "an operator's get",
        &out,
        &["role operator", "read secret values", "PermissionDenied"],
    )?;
    ensure!(!out.stdout.contains(&value));
    let listed = as_viewer
        .run(&["secret", "list", "-o", "json"])
        .await?
        .ok()?;
    ensure!(names(&listed.json()?) == ["crm/db"], "{}", listed.stdout);
    ensure!(
        listed.json()?[0]["updated_by"] == "token:ops",
        "{}",
        listed.stdout
    );
    as_viewer
        .run(&["secret", "versions", "crm/db"])
        .await?
        .ok()?;
    let out = as_viewer.run(&["secret", "get", "crm/db"]).await?;
    refused("a viewer's get", &out, &["role viewer", "PermissionDenied"])?;
    let out = as_viewer.run(&["secret", "delete", "crm/db"]).await?;
    refused("a viewer's delete", &out, &["role viewer"])?;
    let out = as_operator.run(&["keys", "rotate-master"]).await?;
    refused(
        "an operator's master-key rotation",
        &out,
        &["role operator", "PermissionDenied"],
    )?;
    // An admin reads the value.
    let got = cp.cli().run(&["secret", "get", "crm/db"]).await?.ok()?;
    ensure!(got.stdout == value);

    // The same boundaries over HTTP.
    let body =
        serde_json::json!({"name": "crm/other", "value_base64": base64_encode(b"x")}).to_string();
    let set = cp
        .http_post("/api/v1/secrets", Some(&viewer), &body)
        .await?;
    ensure!(
        set.status == 403,
        "a viewer's POST: {} {}",
        set.status,
        set.text()
    );
    let set = cp
        .http_post("/api/v1/secrets", Some(&operator), &body)
        .await?;
    ensure!(set.status == 200, "an operator's POST: {}", set.text());
    let listed = cp.http_get("/api/v1/secrets", Some(&viewer)).await?;
    ensure!(
        listed.status == 200 && !listed.text().contains(&value),
        "{}",
        listed.text()
    );
    for token in [&viewer, &operator] {
        let reveal = cp
            .http_post("/api/v1/secrets/crm/db/reveal", Some(token), "")
            .await?;
        ensure!(reveal.status == 403, "{} {}", reveal.status, reveal.text());
        ensure!(!reveal.text().contains(&value));
    }
    let reveal = cp
        .http_post("/api/v1/secrets/crm/db/reveal", Some(&cp.admin_token), "")
        .await?;
    ensure!(reveal.status == 200, "{}", reveal.text());

    // Every read of a value is audited, denied ones too.
    let records = cp
        .cli()
        .run(&["audit", "list", "-o", "json", "--action", "secret.read"])
        .await?
        .ok()?
        .json()?;
    let records = records.as_array().context("audit list is a list")?;
    let has = |actor: &str, outcome: &str| {
        records.iter().any(|r| {
            r["actor"] == actor
                && r["target"] == "crm/db"
                && r["outcome"]
                    .as_str()
                    .is_some_and(|o| o.starts_with(outcome))
        })
    };
    ensure!(has("token:admin", "ok"), "the admin's read: {records:?}");
    ensure!(
        has("token:ops", "denied"),
        "the operator's denied read: {records:?}"
    );
    ensure!(
        has("token:watcher", "denied"),
        "the viewer's denied read: {records:?}"
    );
    let sets = cp
        .cli()
        .run(&["audit", "list", "-o", "json", "--action", "secret.rotate"])
        .await?
        .ok()?
        .json()?;
    ensure!(
        sets.as_array()
            .is_some_and(|a| a.iter().any(|r| r["actor"] == "token:ops")),
        "{sets}"
    );
    Ok(())
}

/// Every byte of the SQLite database, its WAL and its shared-memory file.
/// Folds a WAL that a stopped server left (a shutdown cut short on a busy
/// machine) into the database file, as any next open would: the files are
/// then compared in the state no reader changes, so only a real write by
/// the start under test shows.
async fn settle_sqlite(cp: &ControlPlane) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let path = cp.data_dir().join("argosy.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path);
    let mut db = sqlx::SqliteConnection::connect_with(&options).await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut db)
        .await?;
    db.close().await?;
    Ok(())
}

fn sqlite_files(cp: &ControlPlane) -> Vec<(String, Option<Vec<u8>>)> {
    ["argosy.db", "argosy.db-wal", "argosy.db-shm"]
        .iter()
        .map(|name| {
            (
                (*name).to_owned(),
                std::fs::read(cp.data_dir().join(name)).ok(),
            )
        })
        .collect()
}

async fn postgres_tables(cp: &ControlPlane) -> anyhow::Result<Vec<String>> {
    Ok(cp
        .sql_rows(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' ORDER BY table_name",
        )
        .await?
        .into_iter()
        .filter_map(|row| row.into_iter().next().flatten())
        .collect())
}

/// Fails if any stored byte holds `value`, as text or hex-encoded.
async fn ensure_not_stored(env: &TestEnv, cp: &ControlPlane, value: &str) -> anyhow::Result<()> {
    let needles = [value.as_bytes().to_vec(), hex::encode(value).into_bytes()];
    match env.store() {
        Store::Sqlite => {
            let files = sqlite_files(cp);
            ensure!(
                files[0].1.is_some(),
                "no SQLite file at {}",
                cp.data_dir().display()
            );
            for (name, bytes) in files {
                let bytes = bytes.unwrap_or_default();
                for needle in &needles {
                    ensure!(
                        !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                        "{name} holds the plaintext value"
                    );
                }
            }
        }
        Store::Postgres => {
            let tables = postgres_tables(cp).await?;
            ensure!(tables.iter().any(|t| t == "secret_versions"), "{tables:?}");
            for table in tables {
                for row in cp
                    .sql_rows(&format!("SELECT t::text FROM \"{table}\" t"))
                    .await?
                {
                    let row = row.into_iter().flatten().collect::<String>();
                    for needle in &needles {
                        ensure!(
                            !row.as_bytes()
                                .windows(needle.len())
                                .any(|w| w == needle.as_slice()),
                            "a row of {table} holds the plaintext value"
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

async fn no_value_is_ever_stored_or_logged_in_clear(env: &TestEnv) -> anyhow::Result<()> {
    let mut cp = ControlPlane::start(env, &[]).await?;
    let cli = cp.cli();
    let dir = env.new_dir("values");
    let values = [distinctive("rest1"), distinctive("rest2")];
    for (i, value) in values.iter().enumerate() {
        let file = write_file(&dir, &format!("v{i}"), value.as_bytes())?;
        cli.run(&["secret", "set", "crm/db", "--from-file", text(&file)])
            .await?
            .ok()?;
    }
    let got = cli.run(&["secret", "get", "crm/db"]).await?.ok()?;
    ensure!(got.stdout == values[1]);
    // While it runs (the WAL holds the newest pages) and after a stop.
    for value in &values {
        ensure_not_stored(env, &cp, value).await?;
    }
    cp.terminate().await?;
    for value in &values {
        ensure_not_stored(env, &cp, value).await?;
        ensure!(
            !server_output(&cp).contains(value.as_str()),
            "the log holds a value"
        );
    }
    // The master key is not in the store either.
    let key = std::fs::read_to_string(cp.data_dir().join("master.key"))?;
    ensure_not_stored(env, &cp, key.trim()).await?;
    Ok(())
}

/// What a refused start must leave exactly as it was: the SQLite files
/// byte for byte, or every PostgreSQL table's rows.
async fn store_snapshot(env: &TestEnv, cp: &ControlPlane) -> anyhow::Result<Vec<String>> {
    match env.store() {
        Store::Sqlite => {
            settle_sqlite(cp).await?;
            Ok(sqlite_files(cp)
                .into_iter()
                .map(|(name, bytes)| match bytes {
                    Some(bytes) => format!("{name}: {}", hex::encode(Sha256::digest(&bytes))),
                    None => format!("{name}: absent"),
                })
                .collect())
        }
        Store::Postgres => {
            let mut snapshot = Vec::new();
            for table in postgres_tables(cp).await? {
                let rows = cp
                    .sql_rows(&format!(
                        "SELECT COUNT(*)::text, md5(COALESCE(string_agg(t::text, '|' ORDER BY t::text), '')) \
                         FROM \"{table}\" t"
                    ))
                    .await?;
                snapshot.push(format!("{table}: {rows:?}"));
            }
            Ok(snapshot)
        }
    }
}

fn new_master_key() -> String {
    base64_encode(&rand::random::<[u8; 32]>())
}

/// Removes `--flag VALUE` from a command line.
fn without_flag(args: &mut Vec<std::ffi::OsString>, flag: &str) {
    if let Some(at) = args.iter().position(|a| a == flag) {
        args.drain(at..(at + 2).min(args.len()));
    }
}

fn set_env(spec: &mut argosy_e2e::process::Spec, key: &str, value: &str) {
    spec.env.retain(|(k, _)| k != key);
    spec.env.push((key.into(), value.into()));
}

async fn a_wrong_master_key_is_refused_and_rotation_needs_the_new_one(
    env: &TestEnv,
) -> anyhow::Result<()> {
    let first_key = new_master_key();
    let mut cp = ControlPlane::start(env, &["--master-key", &first_key]).await?;
    let dir = env.new_dir("values");
    let value = distinctive("envkey");
    let file = write_file(&dir, "value", value.as_bytes())?;
    cp.cli()
        .run(&["secret", "set", "crm/db", "--from-file", text(&file)])
        .await?
        .ok()?;
    ensure!(
        !cp.data_dir().join("master.key").exists(),
        "no key file is made when the key is given"
    );
    cp.terminate().await?;
    // From here on the key comes from the environment, not the flag.
    without_flag(&mut cp.spec_mut().args, "--master-key");
    set_env(cp.spec_mut(), "ARGOSY_MASTER_KEY", &first_key);

    let before = store_snapshot(env, &cp).await?;
    let wrong = new_master_key();
    let out = cp
        .run_once(|spec| set_env(spec, "ARGOSY_MASTER_KEY", &wrong))
        .await?;
    refused(
        "a start with the wrong master key",
        &out,
        &[
            "the master key from ARGOSY_MASTER_KEY (--master-key) (key id mk-",
            "does not match the key this store was sealed with (key id mk-",
            "changed nothing",
            "Set ARGOSY_MASTER_KEY",
        ],
    )?;
    ensure!(!out.stderr.contains(&wrong) && !out.stderr.contains(&first_key));
    ensure!(
        store_snapshot(env, &cp).await? == before,
        "a refused start changed the store"
    );
    let out = cp
        .run_once(|spec| set_env(spec, "ARGOSY_MASTER_KEY", "not-a-key"))
        .await?;
    refused(
        "a malformed master key",
        &out,
        &["not base64 of 32 bytes", "head -c 32"],
    )?;

    // The right key opens it; rotating needs the new key.
    cp.start_again().await?;
    let got = cp.cli().run(&["secret", "get", "crm/db"]).await?.ok()?;
    ensure!(got.stdout == value);
    let out = cp.cli().run(&["keys", "rotate-master"]).await?;
    refused("a rotation without the new key", &out, &["--new-key-file"])?;
    let next_key = new_master_key();
    let key_file = write_file(&dir, "new.key", format!("{next_key}\n").as_bytes())?;
    let rotated = cp
        .cli()
        .run(&[
            "keys",
            "rotate-master",
            "--new-key-file",
            text(&key_file),
            "-o",
            "json",
        ])
        .await?
        .ok()?
        .json()?;
    ensure!(
        rotated["source"] == "master-key"
            && rotated["data_keys_rewrapped"] == 1
            && rotated["next_step"]
                .as_str()
                .is_some_and(|s| s.contains("set ARGOSY_MASTER_KEY to the new key")),
        "{rotated}"
    );
    let got = cp.cli().run(&["secret", "get", "crm/db"]).await?.ok()?;
    ensure!(
        got.stdout == value,
        "a value set before the rotation reads after it"
    );
    cp.terminate().await?;
    let out = cp.run_once(|_| {}).await?;
    refused(
        "a start with the key from before the rotation",
        &out,
        &["does not match"],
    )?;
    set_env(cp.spec_mut(), "ARGOSY_MASTER_KEY", &next_key);
    cp.start_again().await?;
    let got = cp.cli().run(&["secret", "get", "crm/db"]).await?.ok()?;
    ensure!(
        got.stdout == value,
        "the new key opens the store after a restart"
    );
    let logged = server_output(&cp);
    for key in [&first_key, &next_key] {
        ensure!(!logged.contains(key.as_str()), "the log holds a master key");
    }
    Ok(())
}

async fn a_wrong_passphrase_is_refused_and_rotation_needs_the_new_one(
    env: &TestEnv,
) -> anyhow::Result<()> {
    let dir = env.new_dir("passphrases");
    let first = write_file(&dir, "first", b"correct horse battery staple\n")?;
    let mut cp = ControlPlane::start(env, &["--unseal-passphrase-file", text(&first)]).await?;
    let value = distinctive("pass");
    let file = write_file(&dir, "value", value.as_bytes())?;
    cp.cli()
        .run(&["secret", "set", "crm/db", "--from-file", text(&file)])
        .await?
        .ok()?;
    cp.terminate().await?;

    let before = store_snapshot(env, &cp).await?;
    let wrong = write_file(&dir, "wrong", b"correct horse battery stable\n")?;
    let out = cp
        .run_once(|spec| {
            without_flag(&mut spec.args, "--unseal-passphrase-file");
            spec.args.push("--unseal-passphrase-file".into());
            spec.args.push(wrong.clone().into());
        })
        .await?;
    refused(
        "a start with the wrong passphrase",
        &out,
        &[
            &format!("the unseal passphrase in {} (key id mk-", wrong.display()),
            "does not match the key this store was sealed with",
            "Check the unseal passphrase",
        ],
    )?;
    ensure!(!out.stderr.contains("battery"), "the passphrase is echoed");
    let out = cp
        .run_once(|spec| without_flag(&mut spec.args, "--unseal-passphrase-file"))
        .await?;
    refused(
        "a start without the passphrase",
        &out,
        &["master.key", "does not exist", "unseal passphrase"],
    )?;
    ensure!(
        !cp.data_dir().join("master.key").exists(),
        "a refused start made a key file"
    );
    ensure!(
        store_snapshot(env, &cp).await? == before,
        "a refused start changed the store"
    );

    cp.start_again().await?;
    let second = write_file(&dir, "second", b"a different long passphrase\n")?;
    let out = cp
        .cli()
        .run(&[
            "keys",
            "rotate-master",
            "--new-passphrase-file",
            text(&second),
        ])
        .await?
        .ok()?;
    ensure!(out.stdout.contains("master key rotated"), "{}", out.stdout);
    cp.terminate().await?;
    let out = cp.run_once(|_| {}).await?;
    refused(
        "the old passphrase after a rotation",
        &out,
        &["does not match"],
    )?;
    let args = &mut cp.spec_mut().args;
    without_flag(args, "--unseal-passphrase-file");
    args.push("--unseal-passphrase-file".into());
    args.push(second.into());
    cp.start_again().await?;
    let got = cp.cli().run(&["secret", "get", "crm/db"]).await?.ok()?;
    ensure!(got.stdout == value);
    Ok(())
}

async fn a_corrupted_ciphertext_fails_alone(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let cli = cp.cli();
    let dir = env.new_dir("values");
    for name in ["crm/damaged", "crm/intact"] {
        let file = write_file(&dir, "value", distinctive(name).as_bytes())?;
        cli.run(&["secret", "set", name, "--from-file", text(&file)])
            .await?
            .ok()?;
    }
    let intact = cli
        .run(&["secret", "get", "crm/intact"])
        .await?
        .ok()?
        .stdout;
    // Behind the control plane's back: the nonce's bytes in place of the
    // ciphertext (a BLOB/BYTEA on both stores).
    let changed = cp
        .sql_execute("UPDATE secret_versions SET ciphertext = nonce WHERE name = 'crm/damaged'")
        .await?;
    ensure!(changed == 1, "{changed} rows changed");
    let out = cli.run(&["secret", "get", "crm/damaged"]).await?;
    refused(
        "reading a corrupted secret",
        &out,
        &[
            "secret crm/damaged version 1 cannot be decrypted",
            "DataLoss",
        ],
    )?;
    let got = cli.run(&["secret", "get", "crm/intact"]).await?.ok()?;
    ensure!(got.stdout == intact, "another secret still reads");
    cli.run(&["secret", "list"]).await?.ok()?;
    // A new version repairs it.
    let file = write_file(&dir, "fresh", b"fresh")?;
    cli.run(&[
        "secret",
        "rotate",
        "crm/damaged",
        "--from-file",
        text(&file),
    ])
    .await?
    .ok()?;
    let got = cli.run(&["secret", "get", "crm/damaged"]).await?.ok()?;
    ensure!(got.stdout == "fresh");
    Ok(())
}

async fn the_master_key_file_rotates_while_serving(env: &TestEnv) -> anyhow::Result<()> {
    let mut cp = ControlPlane::start(env, &[]).await?;
    let key_path = cp.data_dir().join("master.key");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path)?.permissions().mode() & 0o777;
        ensure!(mode == 0o600, "master.key has mode {mode:o}");
    }
    let dir = env.new_dir("values");
    let value = distinctive("rotate");
    let file = write_file(&dir, "value", value.as_bytes())?;
    let cli = cp.cli();
    cli.run(&["secret", "set", "crm/db", "--from-file", text(&file)])
        .await?
        .ok()?;
    let old_key = std::fs::read(&key_path)?;

    // Readers keep reading while the rotation runs.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let mut client = SecretServiceClient::new(cp.authed(Some(&cp.admin_token)));
        let stop = stop.clone();
        let value = value.clone();
        tokio::spawn(async move {
            let mut reads = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || reads == 0 {
                let got = client
                    .get_secret(pb::GetSecretRequest {
                        name: "crm/db".into(),
                        version: 0,
                    })
                    .await
                    .map_err(|status| {
                        anyhow::anyhow!("a read during the rotation failed: {status}")
                    })?
                    .into_inner();
                if got.value != value.as_bytes() {
                    bail!("a read during the rotation returned another value");
                }
                reads += 1;
            }
            anyhow::Ok(reads)
        })
    };
    let rotated = cli
        .run(&["keys", "rotate-master", "-o", "json"])
        .await?
        .ok()?
        .json()?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.await??;
    ensure!(reads > 0);
    ensure!(
        rotated["source"] == "key-file"
            && rotated["data_keys_rewrapped"] == 1
            && rotated["old_key_id"] != rotated["new_key_id"],
        "{rotated}"
    );
    let new_key = std::fs::read(&key_path)?;
    ensure!(new_key != old_key, "master.key holds the new key");
    ensure!(
        !cp.data_dir().join("master.key.next").exists(),
        "master.key.next was renamed over master.key"
    );
    let got = cli.run(&["secret", "get", "crm/db"]).await?.ok()?;
    ensure!(
        got.stdout == value,
        "read after the rotation, without a restart"
    );
    let versions = cli
        .run(&["secret", "versions", "crm/db", "-o", "json"])
        .await?
        .ok()?
        .json()?;
    ensure!(
        versions[0]["master_key_id"] == rotated["new_key_id"],
        "{versions}"
    );

    // A restart with the new key file.
    cp.restart().await?;
    let got = cp.cli().run(&["secret", "get", "crm/db"]).await?.ok()?;
    ensure!(got.stdout == value, "read after a restart with the new key");

    // The old key is refused at start, and the store is left alone.
    cp.terminate().await?;
    let write_key = |bytes: &[u8]| -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(&key_path, bytes)?;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))?;
        Ok(())
    };
    write_key(&old_key)?;
    let before = store_snapshot(env, &cp).await?;
    let out = cp.run_once(|_| {}).await?;
    refused(
        "a start with the key from before the rotation",
        &out,
        &[
            "the master key in",
            "does not match",
            "Restore this store's master.key",
        ],
    )?;
    ensure!(
        store_snapshot(env, &cp).await? == before,
        "a refused start changed the store"
    );

    // A key file others may read is refused with the fix.
    write_key(&new_key)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644))?;
    }
    let out = cp.run_once(|_| {}).await?;
    refused("a readable key file", &out, &["mode 644", "chmod 600"])?;
    write_key(&new_key)?;
    cp.start_again().await?;
    let got = cp.cli().run(&["secret", "get", "crm/db"]).await?.ok()?;
    ensure!(got.stdout == value);
    Ok(())
}
