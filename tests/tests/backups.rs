//! Backups end to end, on both control-plane stores, with real data: a
//! PostgreSQL database seeded with thousands of rows in several tables
//! (a quoted name, bytea, awkward text) dumped by the real agent to a
//! directory and to a real S3-compatible store (moto) on loopback.
//!
//! Covered: invalid policies say every error with its path; a backup's
//! manifest matches the real row counts and the stored bytes (in the
//! directory and in S3, byte-identical, encrypted); verification restores
//! it and stores the measured RTO; a corrupted, truncated or missing
//! artifact fails verification naming what is wrong; a wrong key at restore
//! fails with the key error; wrong database credentials, an unreachable
//! endpoint, a missing bucket, a bucket quota hit part-way and a full
//! directory each fail the run and leave no object, no partial file and no
//! pending multipart upload; an agent killed mid-backup ends the job failed
//! after its restart with its partial files and uploads cleaned; restore
//! into a new database gives the same rows, in place needs `--confirm`;
//! retention keeps the newest verified backup besides `keep_last`; a cron
//! schedule takes backups by itself; `pre_deploy_backup` gates a rollout;
//! a failed backup fires the alert; volume, path and command sources round
//! trip; `pg_dump`/`psql` run inside a named container (`docker exec`).

use anyhow::{Context, ensure};
use argosy_e2e::docker::{docker, registry, remove_service, unique_name};
use argosy_e2e::receiver::Receiver;
use argosy_e2e::s3::{ACCESS_KEY_ID, QuotaProxy, S3, SECRET_ACCESS_KEY, free_port};
use argosy_e2e::source_db::{self, SEEDED_TABLES, SourceDb, normalize_table};
use argosy_e2e::{Agent, CliOutput, ControlPlane, TestEnv, both_stores, eventually_within};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

both_stores!(
    bad_policies_are_refused_with_every_error,
    postgres_backup_to_dir_and_s3_is_verified_and_restored,
    corrupted_truncated_and_missing_artifacts_fail_verification,
    a_wrong_key_at_restore_fails_with_the_key_error,
    wrong_database_credentials_fail_the_run_without_an_artifact,
    an_unreachable_endpoint_or_missing_bucket_fails_without_an_object,
    an_upload_failing_part_way_leaves_nothing_behind,
    a_full_directory_fails_the_run_and_cleans_up,
    an_agent_killed_mid_backup_ends_the_job_failed_and_cleans_up,
    retention_keeps_the_newest_verified_backup_and_the_last_two,
    a_schedule_takes_backups_without_a_manual_run,
    pre_deploy_backup_gates_the_rollout,
    a_failed_backup_fires_the_alert,
    path_volume_and_command_sources_round_trip,
    postgres_tools_run_inside_the_database_container,
);

/// The bucket every scenario uses, and the key prefix in it.
const BUCKET: &str = "argosy-backups";
const PREFIX: &str = "prod/";
/// Secret names the policies reference.
const KEY_SECRET: &str = "backup/key";
const S3_KEY_ID_SECRET: &str = "s3/key-id";
const S3_SECRET_SECRET: &str = "s3/secret-key";
/// A schedule that never fires during a test (once a year) and an RPO it
/// can meet.
const YEARLY: &str = "0 0 1 1 *";
const YEARLY_RPO: &str = "9000h";

/// One scenario's world: a control plane, one agent on this machine,
/// moto with the bucket, a directory destination, and the secrets.
struct World {
    cp: ControlPlane,
    agent: Agent,
    host_id: String,
    s3: S3,
    /// The `dir` destination.
    dir: PathBuf,
    /// Where the test writes spec and secret files.
    files: PathBuf,
}

async fn world(env: &TestEnv) -> anyhow::Result<World> {
    let s3 = S3::start(env).await?;
    s3.create_bucket(BUCKET).await?;
    let cp = ControlPlane::start(env, &[]).await?;
    let join = cp.join_string("eu-west", &[], 1).await?;
    let mut agent = Agent::start(env, &join, "1s")?;
    let host_id = agent.wait_enrolled().await?;
    cp.wait_online(&host_id).await?;
    let world = World {
        cp,
        agent,
        host_id,
        s3,
        dir: env.new_dir("backups"),
        files: env.new_dir("files"),
    };
    world
        .set_secret(
            KEY_SECRET,
            &format!("backup-key-{:032x}", rand::random::<u128>()),
        )
        .await?;
    world.set_secret(S3_KEY_ID_SECRET, ACCESS_KEY_ID).await?;
    world
        .set_secret(S3_SECRET_SECRET, SECRET_ACCESS_KEY)
        .await?;
    Ok(world)
}

/// How a destination list is written in a policy.
#[derive(Debug, Clone)]
enum Dest {
    /// The world's directory.
    Dir,
    /// Another directory.
    DirAt(PathBuf),
    /// The world's moto, or another endpoint / bucket.
    S3 { endpoint: String, bucket: String },
}

impl World {
    fn cli(&self) -> argosy_e2e::Cli {
        self.cp.cli()
    }

    async fn set_secret(&self, name: &str, value: &str) -> anyhow::Result<()> {
        let file = self
            .files
            .join(format!("secret-{}", name.replace('/', "_")));
        std::fs::write(&file, value)?;
        self.cli()
            .run(&["secret", "set", name, "--from-file", path_text(&file)])
            .await?
            .ok()
            .with_context(|| format!("cannot set the secret {name}"))?;
        Ok(())
    }

    fn s3_dest(&self) -> Dest {
        Dest::S3 {
            endpoint: self.s3.endpoint(),
            bucket: BUCKET.to_owned(),
        }
    }

    /// A policy on this world's host with `source` (YAML lines under
    /// `source:`, indented two spaces) and `extra` top-level lines.
    fn policy(&self, name: &str, source: &str, dests: &[Dest], extra: &str) -> String {
        let mut text = format!(
            "name: {name}\nhost: {host}\nsource:\n{source}\nschedule: \"{YEARLY}\"\nrpo: {YEARLY_RPO}\n",
            host = self.host_id
        );
        text.push_str("destinations:\n");
        for (i, dest) in dests.iter().enumerate() {
            match dest {
                Dest::Dir => {
                    text.push_str(&format!(
                        "  - name: local\n    dir: {}\n",
                        self.dir.display()
                    ));
                }
                Dest::DirAt(path) => {
                    text.push_str(&format!("  - name: dir{i}\n    dir: {}\n", path.display()));
                }
                Dest::S3 { endpoint, bucket } => text.push_str(&format!(
                    "  - name: offsite\n    s3:\n      endpoint: {endpoint}\n      bucket: {bucket}\n      \
                     prefix: {PREFIX}\n      region: us-east-1\n      access_key_id: {{ secret: {S3_KEY_ID_SECRET} }}\n      \
                     secret_access_key: {{ secret: {S3_SECRET_SECRET} }}\n"
                )),
            }
        }
        text.push_str(&format!(
            "compression: {{ level: 3 }}\nencryption: {{ key: {{ secret: {KEY_SECRET} }} }}\n"
        ));
        if !extra.contains("retention:") {
            text.push_str("retention: { keep_last: 10 }\n");
        }
        text.push_str(extra);
        text
    }

    /// `argosy backup policy apply -f FILE` with `text`; its output.
    async fn apply(&self, name: &str, text: &str) -> anyhow::Result<CliOutput> {
        let file = written(self, name, text)?;
        self.cli()
            .run(&["backup", "policy", "apply", "-f", path_text(&file)])
            .await
    }

    /// Applies `text`, which must be accepted.
    async fn apply_ok(&self, name: &str, text: &str) -> anyhow::Result<()> {
        self.apply(name, text)
            .await?
            .ok()
            .with_context(|| format!("applying the policy:\n{text}"))?;
        Ok(())
    }

    /// `argosy ARGS… -o json`, which must succeed.
    async fn json(&self, args: &[&str]) -> anyhow::Result<Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        self.cli().run(&all).await?.ok()?.json()
    }

    /// `argosy backup run POLICY --wait`, whatever it exits with.
    async fn run_wait(&self, policy: &str) -> anyhow::Result<CliOutput> {
        self.cli().run(&["backup", "run", policy, "--wait"]).await
    }

    /// Runs a backup that must succeed; its id.
    async fn backup_ok(&self, policy: &str) -> anyhow::Result<String> {
        let out = self.run_wait(policy).await?.ok()?;
        backup_id_in(&out.stdout)
            .with_context(|| format!("`backup run --wait` printed no backup id:\n{}", out.stdout))
    }

    /// Runs a backup that must fail; (its id, the CLI's output).
    async fn backup_failing(&self, policy: &str) -> anyhow::Result<(String, CliOutput)> {
        let out = self.run_wait(policy).await?;
        ensure!(
            !out.status.success(),
            "`backup run {policy} --wait` succeeded but must fail:\n{}\n{}",
            out.stdout,
            out.stderr
        );
        let backups = self.backups(policy).await?;
        let newest = backups
            .iter()
            .max_by_key(|b| num(&b["started_at_ms"]))
            .context("the failed run left no backup record")?;
        Ok((text(&newest["id"]).to_owned(), out))
    }

    async fn show(&self, id: &str) -> anyhow::Result<Value> {
        self.json(&["backup", "show", id]).await
    }

    async fn backups(&self, policy: &str) -> anyhow::Result<Vec<Value>> {
        let list = self.json(&["backup", "list", policy]).await?;
        list.as_array()
            .cloned()
            .with_context(|| format!("`backup list` is not a list: {list}"))
    }

    async fn verify(&self, id: &str) -> anyhow::Result<CliOutput> {
        self.cli().run(&["backup", "verify", id, "--wait"]).await
    }

    async fn restore(&self, id: &str, target: &[&str]) -> anyhow::Result<CliOutput> {
        let mut args = vec!["backup", "restore", id];
        args.extend(target);
        args.push("--wait");
        self.cli().run(&args).await
    }

    fn dir_artifact(&self, policy: &str, id: &str) -> PathBuf {
        self.dir.join(policy).join(format!("{id}.argosy"))
    }

    fn s3_key(policy: &str, id: &str) -> String {
        format!("{PREFIX}{policy}/{id}.argosy")
    }

    /// Fails unless nothing of `policy` is stored anywhere: no artifact,
    /// manifest or partial file in the directory, no object under its
    /// prefix and no pending multipart upload in the bucket.
    async fn nothing_stored(&self, policy: &str) -> anyhow::Result<()> {
        let files = files_under(&self.dir.join(policy));
        ensure!(
            files.is_empty(),
            "files left in the directory destination: {files:?}"
        );
        let keys = self.s3.keys(BUCKET, &format!("{PREFIX}{policy}/")).await?;
        ensure!(keys.is_empty(), "objects left in the bucket: {keys:?}");
        let pending = self.s3.pending_uploads(BUCKET).await?;
        ensure!(
            pending.is_empty(),
            "multipart uploads left pending: {pending:?}"
        );
        Ok(())
    }
}

/// Writes `text` to a new file in the world's folder; its path.
fn written(w: &World, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    let file = w
        .files
        .join(format!("{name}-{:08x}.yaml", rand::random::<u32>()));
    std::fs::write(&file, text)?;
    Ok(file)
}

/// A new API token with `role`; its secret.
async fn token(w: &World, name: &str, role: &str) -> anyhow::Result<String> {
    let created = w
        .json(&["token", "create", "--name", name, "--role", role])
        .await?;
    Ok(text(&created["secret"]).to_owned())
}

fn path_text(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}

/// A JSON number (or a number in a string, as some encoders write u64).
fn num(value: &Value) -> u64 {
    value
        .as_u64()
        .or_else(|| value.as_i64().and_then(|n| u64::try_from(n).ok()))
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// The first backup id (`b-…`) in `output`.
fn backup_id_in(output: &str) -> Option<String> {
    output
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .find(|word| word.starts_with("b-") && word.len() > 4)
        .map(str::to_owned)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Every file under `dir`, relative, sorted (none when it does not exist).
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, found: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                walk(root, &path, found);
            } else {
                found.push(
                    path.strip_prefix(root)
                        .unwrap_or(&path)
                        .display()
                        .to_string(),
                );
            }
        }
    }
    let mut found = Vec::new();
    walk(dir, dir, &mut found);
    found.sort();
    found
}

/// The manifest's per-table rows (`{"schema.table": rows}`), with table
/// names normalized.
fn manifest_tables(backup: &Value) -> BTreeMap<String, u64> {
    backup["manifest"]["tables"]
        .as_object()
        .map(|tables| {
            tables
                .iter()
                .map(|(table, rows)| (normalize_table(table), num(rows)))
                .collect()
        })
        .unwrap_or_default()
}

/// A `postgres` source block for `db`'s connection secret.
fn postgres_source(secret: &str) -> String {
    format!("  postgres:\n    connection: {{ secret: {secret} }}")
}

/// A `command` source block (single-quoted YAML strings).
fn command_source(backup: &str, restore: &str) -> String {
    format!(
        "  command:\n    backup: '{}'\n    restore: '{}'",
        backup.replace('\'', "''"),
        restore.replace('\'', "''")
    )
}

/// Fails unless `out` failed and its standard error says each of `words`.
fn refused(what: &str, out: &CliOutput, words: &[&str]) -> anyhow::Result<()> {
    ensure!(
        !out.status.success(),
        "{what} succeeded but must be refused:\n{}",
        out.stdout
    );
    for word in words {
        ensure!(
            out.stderr.contains(word) || out.stdout.contains(word),
            "{what}: the error does not say {word:?}:\n{}{}",
            out.stdout,
            out.stderr
        );
    }
    Ok(())
}

// ---- scenarios ---------------------------------------------------------------

async fn bad_policies_are_refused_with_every_error(env: &TestEnv) -> anyhow::Result<()> {
    let w = world(env).await?;
    let bad = format!(
        r#"name: Bad_Name
host: {host}
source:
  command:
    backup: "echo hi"
schedul: "0 * * * *"
schedule: "61 * * * *"
rpo: 6 fortnights
retention: {{ keep_last: -1 }}
destinations:
  - name: local
    dir: relative/path
  - name: offsite
    s3:
      endpoint: ftp://example
      bucket: ab
      access_key_id: {{ secret: s3/key-id }}
      secret_access_key: {{ secret: s3/secret-key }}
  - name: spare
    dir: /var/backups/spare-one
  - name: spare
    dir: /var/backups/spare-two
compression: {{ level: 40 }}
"#,
        host = w.host_id
    );
    let out = w.apply("bad", &bad).await?;
    refused(
        "an invalid policy",
        &out,
        &[
            "name",
            "schedul",
            "schedule",
            "rpo",
            "retention.keep_last",
            "source.command.restore",
            "destinations[0].dir",
            "destinations[3].name",
            "destinations[1].s3.endpoint",
            "destinations[1].s3.bucket",
            "compression.level",
            "encryption",
        ],
    )?;
    // Nothing was stored.
    let list = w.json(&["backup", "policy", "list"]).await?;
    ensure!(
        list.as_array().is_some_and(Vec::is_empty),
        "an invalid policy was stored: {list}"
    );
    // An RPO shorter than the schedule's interval can never be met.
    let unmeetable = w
        .policy(
            "unmeetable",
            &command_source("echo hi", "cat >/dev/null"),
            &[Dest::Dir],
            "",
        )
        .replace(&format!("rpo: {YEARLY_RPO}"), "rpo: 1h");
    refused(
        "an RPO shorter than the schedule",
        &w.apply("unmeetable", &unmeetable).await?,
        &["rpo"],
    )?;

    // A valid one is stored, listed, shown and removed.
    let good = w.policy(
        "crm-db",
        &command_source("echo hi", "cat >/dev/null"),
        &[Dest::Dir, w.s3_dest()],
        "",
    );
    w.apply_ok("crm-db", &good).await?;
    let list = w.json(&["backup", "policy", "list"]).await?;
    ensure!(
        list.as_array()
            .is_some_and(|l| l.len() == 1 && l[0]["name"] == "crm-db"),
        "{list}"
    );
    let shown = w.json(&["backup", "policy", "show", "crm-db"]).await?;
    ensure!(
        shown["source_kind"] == "command" && shown["host_id"] == w.host_id.as_str(),
        "{shown}"
    );
    ensure!(
        text(&shown["status"]["state"]) == "never",
        "a policy without a backup: {shown}"
    );
    // The HTTP mirror answers the same, and only with a token.
    let anonymous = w.cp.http_get("/api/v1/backups/policies", None).await?;
    ensure!(anonymous.status == 401, "anonymous: {}", anonymous.status);
    let listed =
        w.cp.http_get("/api/v1/backups/policies", Some(&w.cp.admin_token))
            .await?;
    ensure!(
        listed.status == 200 && listed.text().contains("crm-db"),
        "GET /api/v1/backups/policies: {} {}",
        listed.status,
        listed.text()
    );
    // Roles: viewers read, operators change policies, only admins restore
    // over a live source.
    let viewer = token(&w, "dash", "viewer").await?;
    let operator = token(&w, "ci", "operator").await?;
    w.cli()
        .env("ARGOSY_TOKEN", &viewer)
        .run(&["backup", "policy", "list"])
        .await?
        .ok()?;
    refused(
        "a viewer applying a policy",
        &w.cli()
            .env("ARGOSY_TOKEN", &viewer)
            .run(&[
                "backup",
                "policy",
                "apply",
                "-f",
                path_text(&written(&w, "crm-db", &good)?),
            ])
            .await?,
        &["operator"],
    )?;
    w.cli()
        .env("ARGOSY_TOKEN", &operator)
        .run(&[
            "backup",
            "policy",
            "apply",
            "-f",
            path_text(&written(&w, "crm-db", &good)?),
        ])
        .await?
        .ok()?;
    refused(
        "an operator restoring in place",
        &w.cli()
            .env("ARGOSY_TOKEN", &operator)
            .run(&[
                "backup",
                "restore",
                "b-000000000000",
                "--in-place",
                "--confirm",
            ])
            .await?,
        &["admin"],
    )?;
    w.cli()
        .run(&["backup", "policy", "remove", "crm-db"])
        .await?
        .ok()?;
    let list = w.json(&["backup", "policy", "list"]).await?;
    ensure!(list.as_array().is_some_and(Vec::is_empty), "{list}");
    Ok(())
}

async fn postgres_backup_to_dir_and_s3_is_verified_and_restored(
    env: &TestEnv,
) -> anyhow::Result<()> {
    let w = world(env).await?;
    let db = SourceDb::seeded(3000).await?;
    w.set_secret("crm/pg-url", db.url()).await?;
    let policy = "crm-db";
    w.apply_ok(
        policy,
        &w.policy(
            policy,
            &postgres_source("crm/pg-url"),
            &[Dest::Dir, w.s3_dest()],
            "verify:\n  sql_assertion: \"select count(*) = 3000 from customers\"\n",
        ),
    )
    .await?;

    let id = w.backup_ok(policy).await?;
    let backup = w.show(&id).await?;
    ensure!(backup["state"] == "ok", "{backup}");
    let manifest = &backup["manifest"];
    // Row counts: every table, equal to the real counts.
    let real = db.row_counts().await?;
    ensure!(real.len() == SEEDED_TABLES.len(), "seeded tables: {real:?}");
    let counted = manifest_tables(&backup);
    ensure!(
        counted == real,
        "the manifest's row counts {counted:?} differ from the database's {real:?}"
    );
    ensure!(real["public.customers"] == 3000 && real["public.audit_empty"] == 0);
    // Sizes, hash, tools, encryption.
    let sha = text(&manifest["sha256"]).to_owned();
    ensure!(sha.len() == 64, "manifest sha256: {manifest}");
    ensure!(
        num(&manifest["raw_bytes"]) > num(&manifest["compressed_bytes"])
            && num(&manifest["compressed_bytes"]) > 0
            && num(&manifest["artifact_bytes"]) >= num(&manifest["compressed_bytes"]),
        "sizes: {manifest}"
    );
    ensure!(
        text(&manifest["encryption"]).contains("xchacha20poly1305"),
        "encryption: {manifest}"
    );
    let tools = manifest["tool_versions"].to_string();
    ensure!(tools.contains("pg_dump"), "tool versions: {tools}");
    ensure!(
        num(&manifest["total_ms"]) >= num(&manifest["dump_ms"]),
        "durations: {manifest}"
    );

    // The stored copies: byte-identical, hashed as the manifest says, and
    // sealed (no plaintext row in them).
    let in_dir = std::fs::read(w.dir_artifact(policy, &id))
        .with_context(|| format!("no artifact in the directory: {:?}", files_under(&w.dir)))?;
    let in_s3 =
        w.s3.get(BUCKET, &World::s3_key(policy, &id))
            .await?
            .context("no artifact in S3")?;
    ensure!(in_dir == in_s3, "the directory and S3 copies differ");
    ensure!(
        sha256_hex(&in_dir) == sha,
        "sha256 of the stored artifact {} is not the manifest's {sha}",
        sha256_hex(&in_dir)
    );
    ensure!(
        u64::try_from(in_dir.len())? == num(&manifest["artifact_bytes"]),
        "artifact_bytes"
    );
    ensure!(
        !in_dir
            .windows(b"c1500@example.test".len())
            .any(|w| w == b"c1500@example.test"),
        "the artifact holds plaintext rows"
    );
    let manifest_file = w.dir.join(policy).join(format!("{id}.manifest.json"));
    ensure!(manifest_file.is_file(), "no manifest beside the artifact");
    ensure!(
        w.s3.get(BUCKET, &format!("{PREFIX}{policy}/{id}.manifest.json"))
            .await?
            .is_some(),
        "no manifest beside the S3 artifact"
    );
    let left = files_under(&w.dir);
    ensure!(
        left.iter().all(|f| !f.ends_with(".partial")),
        "partial files left: {left:?}"
    );

    // Verification restores it into a scratch database and stores the RTO.
    let verified = w.verify(&id).await?.ok()?;
    ensure!(
        verified.stdout.contains("ok") || verified.stdout.contains("verified"),
        "verify output: {}",
        verified.stdout
    );
    let backup = w.show(&id).await?;
    ensure!(
        backup["verify_state"] == "ok" && num(&backup["restore_ms"]) > 0,
        "after verification: {backup}"
    );
    let checks = backup["tables"].as_array().cloned().unwrap_or_default();
    ensure!(
        checks.len() == real.len()
            && checks
                .iter()
                .all(|c| num(&c["expected_rows"]) == num(&c["restored_rows"])),
        "table checks: {checks:?}"
    );
    // Scratch databases on the shared server: ours must be gone; those of
    // tests running beside this one go soon after their verification.
    let seen = source_db::databases_like("argosy_verify").await?;
    eventually_within(
        "the scratch database to be dropped",
        Duration::from_secs(30),
        || async {
            let now = source_db::databases_like("argosy_verify").await?;
            let left: Vec<&String> = seen.iter().filter(|d| now.contains(d)).collect();
            ensure!(left.is_empty(), "scratch databases left: {left:?}");
            Ok(())
        },
    )
    .await?;
    let status = w.json(&["backup", "policy", "show", policy]).await?;
    ensure!(
        status["status"]["state"] == "ok"
            && status["status"]["last_verify"] == "ok"
            && num(&status["status"]["measured_rto_ms"]) > 0,
        "policy status: {status}"
    );

    // Restore into a new database: the same rows.
    let target = format!("restored_{:08x}", rand::random::<u32>());
    let _cleanup = DropDatabase(target.clone());
    w.restore(&id, &[&format!("--to=database:{target}")])
        .await?
        .ok()?;
    let restored = source_db::fingerprint(&db.sibling_url(&target)?).await?;
    ensure!(
        restored == db.fingerprint().await?,
        "the restored database differs from the source"
    );
    // A target that exists is refused.
    let again = w
        .restore(&id, &[&format!("--to=database:{target}")])
        .await?;
    ensure!(
        !again.status.success(),
        "restoring over an existing database"
    );

    // In place needs --confirm; with it, the deleted rows come back.
    refused(
        "an in-place restore without --confirm",
        &w.restore(&id, &["--in-place"]).await?,
        &["--confirm"],
    )?;
    // The server refuses it too, whatever client asks.
    let unconfirmed =
        w.cp.http_post(
            &format!("/api/v1/backups/{id}/restore"),
            Some(&w.cp.admin_token),
            r#"{"in_place": true}"#,
        )
        .await?;
    ensure!(
        unconfirmed.status >= 400 && unconfirmed.text().contains("--confirm"),
        "an unconfirmed in-place restore over HTTP: {} {}",
        unconfirmed.status,
        unconfirmed.text()
    );
    db.execute("DELETE FROM \"Order Items\" WHERE order_id % 2 = 0")
        .await?;
    ensure!(db.row_counts().await? != real, "the delete changed nothing");
    w.restore(&id, &["--in-place", "--confirm"]).await?.ok()?;
    ensure!(
        db.row_counts().await? == real,
        "in-place restore did not bring the rows back"
    );
    // The HTTP mirror shows the backup.
    let http =
        w.cp.http_get(&format!("/api/v1/backups/{id}"), Some(&w.cp.admin_token))
            .await?;
    ensure!(
        http.status == 200 && http.text().contains(&sha),
        "GET /api/v1/backups/{id}: {} {}",
        http.status,
        http.text()
    );
    Ok(())
}

/// Drops a database the test created through the product, at the end.
struct DropDatabase(String);

impl Drop for DropDatabase {
    fn drop(&mut self) {
        if let Ok(admin) = source_db::admin_url() {
            source_db::drop_database(&admin, &self.0);
        }
    }
}

async fn corrupted_truncated_and_missing_artifacts_fail_verification(
    env: &TestEnv,
) -> anyhow::Result<()> {
    let w = world(env).await?;
    let db = SourceDb::seeded(2000).await?;
    w.set_secret("crm/pg-url", db.url()).await?;
    let policy = "crm-db";
    w.apply_ok(
        policy,
        &w.policy(
            policy,
            &postgres_source("crm/pg-url"),
            &[Dest::Dir, w.s3_dest()],
            "",
        ),
    )
    .await?;
    let id = w.backup_ok(policy).await?;
    let key = World::s3_key(policy, &id);
    let original = w.s3.get(BUCKET, &key).await?.context("no S3 artifact")?;

    // The dir copy is gone and one byte of the S3 copy is flipped.
    std::fs::remove_file(w.dir_artifact(policy, &id))?;
    let mut corrupted = original.clone();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0x01;
    w.s3.put(BUCKET, &key, corrupted).await?;
    let out = w.verify(&id).await?;
    refused("verifying a corrupted artifact", &out, &["corrupt"])?;
    let backup = w.show(&id).await?;
    ensure!(
        backup["verify_state"] == "failed" && text(&backup["verify_error"]).contains("corrupt"),
        "{backup}"
    );
    let status = w.json(&["backup", "policy", "show", policy]).await?;
    ensure!(
        status["status"]["state"] == "unverified",
        "policy status after a failed verification: {status}"
    );

    // Truncated: the last 1000 bytes are cut off.
    w.s3.put(BUCKET, &key, original[..original.len() - 1000].to_vec())
        .await?;
    let out = w.verify(&id).await?;
    ensure!(!out.status.success(), "a truncated artifact verified");
    let error = text(&w.show(&id).await?["verify_error"]).to_owned();
    ensure!(
        error.contains("truncated")
            || (error.contains(&original.len().to_string())
                && error.contains(&(original.len() - 1000).to_string())),
        "the error does not say the artifact is truncated: {error}"
    );

    // Missing from every destination.
    w.s3.delete(BUCKET, &key).await?;
    let out = w.verify(&id).await?;
    refused("verifying a missing artifact", &out, &["missing"])?;
    let error = text(&w.show(&id).await?["verify_error"]).to_owned();
    ensure!(
        error.contains("local") && error.contains("offsite"),
        "the error does not name the destinations it looked in: {error}"
    );

    // Put back intact, it verifies again.
    w.s3.put(BUCKET, &key, original).await?;
    w.verify(&id).await?.ok()?;
    Ok(())
}

async fn a_wrong_key_at_restore_fails_with_the_key_error(env: &TestEnv) -> anyhow::Result<()> {
    let w = world(env).await?;
    let db = SourceDb::seeded(500).await?;
    w.set_secret("crm/pg-url", db.url()).await?;
    let policy = "crm-db";
    w.apply_ok(
        policy,
        &w.policy(policy, &postgres_source("crm/pg-url"), &[Dest::Dir], ""),
    )
    .await?;
    let id = w.backup_ok(policy).await?;
    // A key secret holding a different value.
    w.set_secret("other/key", "not-the-key-the-backup-was-sealed-with")
        .await?;
    let target = format!("wrongkey_{:08x}", rand::random::<u32>());
    let _cleanup = DropDatabase(target.clone());
    let out = w
        .restore(
            &id,
            &[
                &format!("--to=database:{target}"),
                "--key-secret",
                "other/key",
            ],
        )
        .await?;
    refused("a restore with the wrong key", &out, &["encryption key"])?;
    ensure!(
        !source_db::database_exists(&target).await?
            || source_db::row_counts(&db.sibling_url(&target)?)
                .await?
                .is_empty(),
        "a restore with the wrong key wrote data"
    );
    // Rotating the policy's key does not lock out older backups: they
    // open with the version they were sealed with.
    w.set_secret(KEY_SECRET, "a-rotated-key-value-0123456789abcdef")
        .await?;
    w.verify(&id).await?.ok()?;
    // And a new backup is sealed with the new version (and verifies).
    let newer = w.backup_ok(policy).await?;
    w.verify(&newer).await?.ok()?;
    Ok(())
}

async fn wrong_database_credentials_fail_the_run_without_an_artifact(
    env: &TestEnv,
) -> anyhow::Result<()> {
    let w = world(env).await?;
    let db = SourceDb::seeded(100).await?;
    // The test server trusts every password, so the wrong credential is a
    // login that does not exist.
    let password = format!("pw{:016x}", rand::random::<u64>());
    w.set_secret("crm/pg-url", &db.url_as("no_such_login", &password)?)
        .await?;
    let policy = "crm-db";
    w.apply_ok(
        policy,
        &w.policy(
            policy,
            &postgres_source("crm/pg-url"),
            &[Dest::Dir, w.s3_dest()],
            "",
        ),
    )
    .await?;
    let (id, out) = w.backup_failing(policy).await?;
    let said = format!("{}{}", out.stdout, out.stderr);
    ensure!(
        said.contains("no_such_login"),
        "the error does not name the login that was refused:\n{said}"
    );
    ensure!(!said.contains(&password), "the error shows the password");
    let backup = w.show(&id).await?;
    ensure!(backup["state"] == "failed", "{backup}");
    ensure!(
        !backup.to_string().contains(&password)
            && !w.agent.logs().contains(&password)
            && !w.cp.log().contains(&password),
        "the password leaked into the record or a log"
    );
    w.nothing_stored(policy).await?;
    let status = w.json(&["backup", "policy", "show", policy]).await?;
    ensure!(
        status["status"]["state"] == "failing" || status["status"]["state"] == "never",
        "policy status after a failed backup: {status}"
    );
    Ok(())
}

async fn an_unreachable_endpoint_or_missing_bucket_fails_without_an_object(
    env: &TestEnv,
) -> anyhow::Result<()> {
    let w = world(env).await?;
    let source = command_source("head -c 3000000 /dev/urandom", "cat >/dev/null");
    // Nobody listens on this port.
    let closed = format!("http://127.0.0.1:{}", free_port().await?);
    w.apply_ok(
        "unreachable",
        &w.policy(
            "unreachable",
            &source,
            &[
                Dest::Dir,
                Dest::S3 {
                    endpoint: closed.clone(),
                    bucket: BUCKET.to_owned(),
                },
            ],
            "",
        ),
    )
    .await?;
    let (_, out) = w.backup_failing("unreachable").await?;
    let said = format!("{}{}", out.stdout, out.stderr);
    ensure!(
        said.contains(&closed) || said.contains(closed.trim_start_matches("http://")),
        "the error does not name the endpoint:\n{said}"
    );
    w.nothing_stored("unreachable").await?;

    w.apply_ok(
        "nobucket",
        &w.policy(
            "nobucket",
            &source,
            &[
                Dest::Dir,
                Dest::S3 {
                    endpoint: w.s3.endpoint(),
                    bucket: "no-such-bucket".to_owned(),
                },
            ],
            "",
        ),
    )
    .await?;
    let (_, out) = w.backup_failing("nobucket").await?;
    let said = format!("{}{}", out.stdout, out.stderr);
    ensure!(
        said.contains("no-such-bucket"),
        "the error does not name the missing bucket:\n{said}"
    );
    w.nothing_stored("nobucket").await?;
    Ok(())
}

async fn an_upload_failing_part_way_leaves_nothing_behind(env: &TestEnv) -> anyhow::Result<()> {
    let w = world(env).await?;
    // One byte of quota: the first part goes through, the next is refused.
    let proxy = QuotaProxy::start(&w.s3, 1).await?;
    let policy = "quota";
    // 48 MB of random bytes: several parts of at most 16 MiB.
    w.apply_ok(
        policy,
        &w.policy(
            policy,
            &command_source("head -c 48000000 /dev/urandom", "cat >/dev/null"),
            &[
                Dest::Dir,
                Dest::S3 {
                    endpoint: proxy.endpoint(),
                    bucket: BUCKET.to_owned(),
                },
            ],
            "",
        ),
    )
    .await?;
    let (id, out) = w.backup_failing(policy).await?;
    ensure!(
        proxy.accepted_bytes() > 0 && proxy.refused_uploads() > 0,
        "the upload did not get part-way: {} bytes accepted, {} refused",
        proxy.accepted_bytes(),
        proxy.refused_uploads()
    );
    let said = format!("{}{}", out.stdout, out.stderr);
    ensure!(
        said.contains("QuotaExceeded") || said.contains("403") || said.contains("quota"),
        "the error does not say why the upload failed:\n{said}"
    );
    let backup = w.show(&id).await?;
    ensure!(backup["state"] == "failed", "{backup}");
    w.nothing_stored(policy).await?;
    // A bucket quota is not a credentials problem: the first part was
    // accepted with the very same keys.
    ensure!(
        !said.contains("credentials"),
        "the error blames the credentials for a full bucket:\n{said}"
    );
    Ok(())
}

/// A small tmpfs mounted for one test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> anyhow::Result<Self> {
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "argosy-full",
            ])
            .arg(path)
            .status()
            .context("cannot run mount")?;
        ensure!(
            status.success(),
            "mounting a tmpfs at {} failed (the test needs root)",
            path.display()
        );
        Ok(Self(path.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

async fn a_full_directory_fails_the_run_and_cleans_up(env: &TestEnv) -> anyhow::Result<()> {
    let w = world(env).await?;
    let small = env.new_dir("small-disk");
    let _mounted = Tmpfs::mount(&small, "8m")?;
    let policy = "fills";
    w.apply_ok(
        policy,
        &w.policy(
            policy,
            &command_source("head -c 40000000 /dev/urandom", "cat >/dev/null"),
            &[Dest::DirAt(small.clone()), w.s3_dest()],
            "",
        ),
    )
    .await?;
    let (id, out) = w.backup_failing(policy).await?;
    let said = format!("{}{}", out.stdout, out.stderr);
    ensure!(
        said.contains(path_text(&small)),
        "the error does not name the directory that filled up:\n{said}"
    );
    ensure!(
        said.to_lowercase().contains("space") || said.contains("full"),
        "the error does not say the disk is full:\n{said}"
    );
    let backup = w.show(&id).await?;
    ensure!(backup["state"] == "failed", "{backup}");
    let left = files_under(&small);
    ensure!(left.is_empty(), "files left on the full disk: {left:?}");
    w.nothing_stored(policy).await?;
    Ok(())
}

async fn an_agent_killed_mid_backup_ends_the_job_failed_and_cleans_up(
    env: &TestEnv,
) -> anyhow::Result<()> {
    let mut w = world(env).await?;
    let db = SourceDb::seeded(1000).await?;
    db.add_big_table(160).await?;
    w.set_secret("crm/pg-url", db.url()).await?;
    let policy = "big-db";
    w.apply_ok(
        policy,
        &w.policy(
            policy,
            &postgres_source("crm/pg-url"),
            &[Dest::Dir, w.s3_dest()],
            "",
        ),
    )
    .await?;
    let started = w.cli().run(&["backup", "run", policy]).await?.ok()?;
    let id = backup_id_in(&started.stdout)
        .with_context(|| format!("`backup run` printed no backup id: {}", started.stdout))?;
    // Wait until the agent is well into it: bytes uploaded.
    let job_id = eventually_within(
        "the backup to be under way",
        Duration::from_secs(60),
        || async {
            let jobs = w.json(&["backup", "jobs", policy]).await?;
            let job = jobs
                .as_array()
                .and_then(|jobs| jobs.iter().find(|j| j["backup_id"] == id.as_str()))
                .cloned()
                .with_context(|| format!("no job for {id}: {jobs}"))?;
            ensure!(
                job["state"] == "running" && num(&job["bytes"]) > 8 << 20,
                "not far enough yet: {job}"
            );
            Ok(text(&job["id"]).to_owned())
        },
    )
    .await?;
    w.agent.kill().await?;
    // What it left: a partial file and/or an open multipart upload.
    let partials: Vec<String> = files_under(&w.dir)
        .into_iter()
        .filter(|f| f.ends_with(".partial"))
        .collect();
    let pending = w.s3.pending_uploads(BUCKET).await?;
    ensure!(
        !partials.is_empty() || !pending.is_empty(),
        "the kill left nothing to clean up (was the backup already done?)"
    );
    w.agent.restart().await?;
    let job = eventually_within("the job to end failed", Duration::from_secs(60), || async {
        // A failed job prints its JSON and exits 1.
        let job = w
            .cli()
            .run(&["backup", "job", &job_id, "-o", "json"])
            .await?
            .json()?;
        ensure!(
            job["state"] != "running" && job["state"] != "pending",
            "{job}"
        );
        Ok(job)
    })
    .await?;
    ensure!(job["state"] == "failed", "{job}");
    ensure!(
        text(&job["error"]).contains("agent stopped") || text(&job["error"]).contains("restart"),
        "the error does not say the agent stopped: {job}"
    );
    let backup = w.show(&id).await?;
    ensure!(backup["state"] == "failed", "{backup}");
    eventually_within(
        "the partial files and uploads to be gone",
        Duration::from_secs(30),
        || w.nothing_stored(policy),
    )
    .await?;
    Ok(())
}

async fn retention_keeps_the_newest_verified_backup_and_the_last_two(
    env: &TestEnv,
) -> anyhow::Result<()> {
    let w = world(env).await?;
    let policy = "keep2";
    w.apply_ok(
        policy,
        &w.policy(
            policy,
            &command_source("echo backup taken at $(date +%s%N)", "cat >/dev/null"),
            &[Dest::Dir, w.s3_dest()],
            "retention: { keep_last: 2 }\n",
        ),
    )
    .await?;
    let first = w.backup_ok(policy).await?;
    let second = w.backup_ok(policy).await?;
    w.verify(&second).await?.ok()?;
    let third = w.backup_ok(policy).await?;
    let fourth = w.backup_ok(policy).await?;
    let kept = [&second, &third, &fourth];
    eventually_within("retention to prune", Duration::from_secs(60), || async {
        let backups = w.backups(policy).await?;
        let state = |id: &str| {
            backups
                .iter()
                .find(|b| b["id"] == id)
                .map(|b| text(&b["state"]).to_owned())
                .unwrap_or_default()
        };
        ensure!(
            state(&first) == "pruned",
            "the first backup is {}",
            state(&first)
        );
        for id in kept {
            ensure!(state(id) == "ok", "{id} is {}", state(id));
        }
        Ok(())
    })
    .await?;
    let in_dir: Vec<String> = files_under(&w.dir.join(policy))
        .into_iter()
        .filter(|f| f.ends_with(".argosy"))
        .collect();
    let mut expected: Vec<String> = kept.iter().map(|id| format!("{id}.argosy")).collect();
    expected.sort();
    ensure!(in_dir == expected, "artifacts in the directory: {in_dir:?}");
    let in_s3: Vec<String> =
        w.s3.keys(BUCKET, &format!("{PREFIX}{policy}/"))
            .await?
            .into_iter()
            .filter(|k| k.ends_with(".argosy"))
            .collect();
    let mut expected: Vec<String> = kept.iter().map(|id| World::s3_key(policy, id)).collect();
    expected.sort();
    ensure!(in_s3 == expected, "artifacts in S3: {in_s3:?}");
    ensure!(
        !w.dir
            .join(policy)
            .join(format!("{first}.manifest.json"))
            .exists(),
        "the pruned backup's manifest is still there"
    );
    Ok(())
}

async fn a_schedule_takes_backups_without_a_manual_run(env: &TestEnv) -> anyhow::Result<()> {
    let w = world(env).await?;
    let policy = "every-minute";
    let text_policy = w
        .policy(
            policy,
            &command_source("echo scheduled", "cat >/dev/null"),
            &[Dest::Dir],
            "",
        )
        .replace(
            &format!("schedule: \"{YEARLY}\""),
            "schedule: \"* * * * *\"",
        )
        .replace(&format!("rpo: {YEARLY_RPO}"), "rpo: 10m");
    w.apply_ok(policy, &text_policy).await?;
    let shown = w.json(&["backup", "policy", "show", policy]).await?;
    ensure!(
        num(&shown["status"]["next_run_at_ms"]) > 0,
        "no next run: {shown}"
    );
    let backup = eventually_within("a scheduled backup", Duration::from_secs(90), || async {
        let backups = w.backups(policy).await?;
        backups
            .into_iter()
            .find(|b| b["state"] == "ok")
            .with_context(|| "no finished scheduled backup yet".to_owned())
    })
    .await?;
    ensure!(backup["trigger"] == "schedule", "{backup}");
    ensure!(
        w.dir_artifact(policy, text(&backup["id"])).is_file(),
        "the scheduled backup stored nothing"
    );
    Ok(())
}

fn web_spec(name: &str, pre_deploy_backup: &str) -> String {
    format!(
        r#"name: {name}
image: {registry}/argosy-test/web:v1
replicas: 1
pre_deploy_backup: {pre_deploy_backup}
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
"#,
        registry = registry()
    )
}

async fn pre_deploy_backup_gates_the_rollout(env: &TestEnv) -> anyhow::Result<()> {
    let w = world(env).await?;
    w.apply_ok(
        "good",
        &w.policy(
            "good",
            &command_source("echo state of the app", "cat >/dev/null"),
            &[Dest::Dir],
            "",
        ),
    )
    .await?;
    w.apply_ok(
        "broken",
        &w.policy(
            "broken",
            &command_source(
                "echo cannot reach the database >&2; exit 3",
                "cat >/dev/null",
            ),
            &[Dest::Dir],
            "",
        ),
    )
    .await?;
    let guarded = unique_name("guarded");
    let spec = w.files.join("guarded.yaml");
    std::fs::write(&spec, web_spec(&guarded, "good"))?;
    let applied = w
        .cli()
        .run(&["apply", "-f", path_text(&spec), "--watch"])
        .await?;
    ensure!(
        applied.status.success(),
        "apply with a good backup: {applied:?}"
    );
    let backups = w.backups("good").await?;
    let taken = backups
        .iter()
        .find(|b| b["trigger"] == "pre-deploy")
        .with_context(|| format!("no pre-deploy backup: {backups:?}"))?;
    ensure!(
        taken["state"] == "ok" && taken["verify_state"] == "ok",
        "the pre-deploy backup is not verified: {taken}"
    );
    let service = w.json(&["services", "show", &guarded]).await?;
    let history = service["history"].to_string();
    ensure!(
        history.contains(text(&taken["id"])) && history.contains("verified"),
        "the deployment history does not say the backup was verified: {history}"
    );
    ensure!(service["healthy"] == 1, "{service}");

    let blocked = unique_name("blocked");
    let spec = w.files.join("blocked.yaml");
    std::fs::write(&spec, web_spec(&blocked, "broken"))?;
    let applied = w
        .cli()
        .run(&["apply", "-f", path_text(&spec), "--watch"])
        .await?;
    ensure!(
        !applied.status.success(),
        "a rollout behind a failing backup succeeded: {applied:?}"
    );
    let service = w.json(&["services", "show", &blocked]).await?;
    let history = service["history"].to_string();
    ensure!(
        history.contains("backup") && history.contains("cannot reach the database"),
        "the history does not say why the rollout did not start: {history}"
    );
    ensure!(
        service["allocations"].as_array().is_none_or(Vec::is_empty) && service["running"] == 0,
        "the service rolled out anyway: {service}"
    );
    let running = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=argosy.service={blocked}"),
    ])
    .await?;
    ensure!(
        running.trim().is_empty(),
        "containers of {blocked}: {running}"
    );
    remove_service(&guarded).await;
    remove_service(&blocked).await;
    Ok(())
}

async fn a_failed_backup_fires_the_alert(env: &TestEnv) -> anyhow::Result<()> {
    let w = world(env).await?;
    let receiver = Receiver::start().await?;
    w.json(&[
        "alert",
        "channel",
        "add",
        "hook",
        "--kind",
        "webhook",
        "--url",
        &receiver.url(),
        "--min-severity",
        "info",
    ])
    .await?;
    let policy = "doomed";
    w.apply_ok(
        policy,
        &w.policy(
            policy,
            &command_source("echo disk on fire >&2; exit 1", "cat >/dev/null"),
            &[Dest::Dir],
            "",
        ),
    )
    .await?;
    w.backup_failing(policy).await?;
    let alert = eventually_within("the backup alert", Duration::from_secs(60), || async {
        receiver
            .received()
            .iter()
            .flat_map(|r| r.body["alerts"].as_array().cloned().unwrap_or_default())
            .find(|a| a["alertname"] == "BackupFailed" && a.to_string().contains(policy))
            .context("no backup alert received yet")
    })
    .await?;
    ensure!(
        alert["severity"] == "critical",
        "a failed backup is not critical: {alert}"
    );
    let firing = w.json(&["alert", "list", "--state", "firing"]).await?;
    ensure!(
        firing.to_string().contains(policy),
        "the alert list does not show it: {firing}"
    );
    Ok(())
}

/// (relative path, sha256, mode) of every file under `dir`.
fn tree(dir: &Path) -> anyhow::Result<Vec<(String, String, u32)>> {
    use std::os::unix::fs::PermissionsExt as _;
    files_under(dir)
        .into_iter()
        .map(|relative| {
            let path = dir.join(&relative);
            let bytes = std::fs::read(&path)?;
            let mode = std::fs::metadata(&path)?.permissions().mode() & 0o7777;
            Ok((relative, sha256_hex(&bytes), mode))
        })
        .collect()
}

fn write_tree(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir.join("nested/deeper"))?;
    std::fs::write(dir.join("readme.txt"), "hello\nworld\n")?;
    std::fs::write(dir.join("empty"), "")?;
    let random: Vec<u8> = (0..300_000).map(|_| rand::random::<u8>()).collect();
    std::fs::write(dir.join("nested/blob.bin"), &random)?;
    std::fs::write(dir.join("nested/deeper/name with spaces.txt"), "x")?;
    std::fs::write(dir.join("script.sh"), "#!/bin/sh\necho hi\n")?;
    std::fs::set_permissions(
        dir.join("script.sh"),
        std::fs::Permissions::from_mode(0o750),
    )?;
    Ok(())
}

async fn path_volume_and_command_sources_round_trip(env: &TestEnv) -> anyhow::Result<()> {
    let w = world(env).await?;

    // A host path.
    let source = env.new_dir("app-files");
    write_tree(&source)?;
    w.apply_ok(
        "files",
        &w.policy(
            "files",
            &format!("  path:\n    path: {}", source.display()),
            &[Dest::Dir, w.s3_dest()],
            "",
        ),
    )
    .await?;
    let id = w.backup_ok("files").await?;
    w.verify(&id).await?.ok()?;
    let target = env.root().join("restored-files");
    w.restore(&id, &[&format!("--to=dir:{}", target.display())])
        .await?
        .ok()?;
    ensure!(
        tree(&target)? == tree(&source)?,
        "the restored directory differs:\n{:?}\n{:?}",
        tree(&target)?,
        tree(&source)?
    );

    // A Docker volume, filled by a container.
    let volume = unique_name("argosy-vol");
    let image = format!("{}/argosy-test/web:v1", registry());
    docker(&["pull", "-q", &image]).await?;
    docker(&["volume", "create", &volume]).await?;
    let filled = docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{volume}:/data"),
        &image,
        "sh",
        "-c",
        "mkdir -p /data/db && seq 1 20000 > /data/db/numbers && echo volume > /data/name && \
         head -c 100000 /dev/urandom > /data/db/random && sha256sum /data/db/numbers /data/db/random /data/name",
    ])
    .await;
    let result = async {
        let sums = filled?;
        w.apply_ok(
            "volume",
            &w.policy(
                "volume",
                &format!("  volume:\n    name: {volume}"),
                &[Dest::Dir],
                "",
            ),
        )
        .await?;
        let id = w.backup_ok("volume").await?;
        w.verify(&id).await?.ok()?;
        let target = env.root().join("restored-volume");
        w.restore(&id, &[&format!("--to=dir:{}", target.display())])
            .await?
            .ok()?;
        for line in sums.lines() {
            let (sum, path) = line
                .split_once("  ")
                .with_context(|| format!("sha256sum said {line}"))?;
            let restored = target.join(path.trim_start_matches("/data/"));
            let bytes = std::fs::read(&restored)
                .with_context(|| format!("{} was not restored", restored.display()))?;
            ensure!(sha256_hex(&bytes) == sum, "{} differs", restored.display());
        }
        anyhow::Ok(())
    }
    .await;
    let _ = docker(&["volume", "rm", "-f", &volume]).await;
    result?;

    // A command: its output is the dump, its restore command reads it.
    let original = env.root().join("command-source.bin");
    let random: Vec<u8> = (0..500_000).map(|_| rand::random::<u8>()).collect();
    std::fs::write(&original, &random)?;
    let restored = env.root().join("command-restored.bin");
    w.apply_ok(
        "command",
        &w.policy(
            "command",
            &command_source(
                &format!("cat {}", original.display()),
                &format!("cat > {}", restored.display()),
            ),
            &[w.s3_dest()],
            "",
        ),
    )
    .await?;
    let id = w.backup_ok("command").await?;
    let backup = w.show(&id).await?;
    ensure!(
        num(&backup["manifest"]["raw_bytes"]) == 500_000,
        "raw bytes of the command's output: {backup}"
    );
    w.verify(&id).await?.ok()?;
    w.restore(&id, &["--in-place", "--confirm"]).await?.ok()?;
    ensure!(
        std::fs::read(&restored).ok() == Some(random),
        "the restore command did not get the same bytes"
    );
    Ok(())
}

/// The image holding this machine's PostgreSQL client tools (`pg_dump`,
/// `psql` and the libraries they load) on busybox, built once per engine:
/// the stand-in for a database server's own container.
const PG_TOOLS_IMAGE: &str = "argosy-test/pgtools:local";

async fn pg_tools_image(env: &TestEnv) -> anyhow::Result<()> {
    if docker(&["image", "inspect", PG_TOOLS_IMAGE]).await.is_ok() {
        return Ok(());
    }
    let bindir = tokio::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .await
        .context("cannot run pg_config")?;
    let bindir = PathBuf::from(String::from_utf8(bindir.stdout)?.trim());
    let context = env.new_dir("pgtools-image");
    let rootfs = context.join("rootfs");
    let copy = |from: &Path, to: &Path| -> anyhow::Result<()> {
        let at = rootfs.join(to.strip_prefix("/").unwrap_or(to));
        std::fs::create_dir_all(at.parent().context("a path without a parent")?)?;
        std::fs::copy(from, &at).with_context(|| format!("cannot copy {}", from.display()))?;
        Ok(())
    };
    copy(Path::new("/bin/busybox"), Path::new("/bin/busybox"))?;
    for tool in ["pg_dump", "psql"] {
        let binary = bindir.join(tool);
        copy(&binary, &Path::new("/usr/bin").join(tool))?;
        let ldd = tokio::process::Command::new("ldd")
            .arg(&binary)
            .output()
            .await?;
        for line in String::from_utf8(ldd.stdout)?.lines() {
            // "libpq.so.5 => /lib/…/libpq.so.5 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
            let library = line
                .split_whitespace()
                .find(|word| word.starts_with('/'))
                .map(PathBuf::from);
            if let Some(library) = library {
                copy(&library, &library)?;
            }
        }
    }
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY rootfs/ /\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nCMD [\"sleep\", \"3600\"]\n",
    )?;
    let output = tokio::process::Command::new("docker")
        .args(["build", "-q", "-t", PG_TOOLS_IMAGE])
        .arg(&context)
        .env("DOCKER_HOST", argosy_e2e::docker::docker_host())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .await?;
    ensure!(
        output.status.success(),
        "building {PG_TOOLS_IMAGE} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// `pg_dump` and `psql` run with `docker exec` in a container the policy
/// names (on the host network, reaching the test server on loopback).
async fn postgres_tools_run_inside_the_database_container(env: &TestEnv) -> anyhow::Result<()> {
    let w = world(env).await?;
    pg_tools_image(env).await?;
    let container = unique_name("pgtools");
    docker(&[
        "run",
        "-d",
        "--name",
        &container,
        "--network",
        "host",
        PG_TOOLS_IMAGE,
    ])
    .await?;
    let result = async {
        let db = SourceDb::seeded(1500).await?;
        w.set_secret("crm/pg-url", db.url()).await?;
        let policy = "in-container";
        w.apply_ok(
            policy,
            &w.policy(
                policy,
                &format!(
                    "{}\n    container: {container}",
                    postgres_source("crm/pg-url")
                ),
                &[Dest::Dir],
                "",
            ),
        )
        .await?;
        let id = w.backup_ok(policy).await?;
        let backup = w.show(&id).await?;
        ensure!(
            manifest_tables(&backup) == db.row_counts().await?,
            "row counts from the container's dump: {backup}"
        );
        w.verify(&id).await?.ok()?;
        let target = format!("fromcontainer_{:08x}", rand::random::<u32>());
        let _cleanup = DropDatabase(target.clone());
        w.restore(&id, &[&format!("--to=database:{target}")])
            .await?
            .ok()?;
        ensure!(
            source_db::fingerprint(&db.sibling_url(&target)?).await? == db.fingerprint().await?,
            "the database restored through the container differs"
        );
        // The tools ran in the container: stopping it fails the next run.
        docker(&["stop", "-t", "0", &container]).await?;
        let (_, out) = w.backup_failing(policy).await?;
        let said = format!("{}{}", out.stdout, out.stderr);
        ensure!(
            said.contains(&container),
            "the error does not name the container:\n{said}"
        );
        anyhow::Ok(())
    }
    .await;
    let _ = docker(&["rm", "-f", &container]).await;
    result
}

#[test]
fn backup_ids_are_found_in_output() {
    assert_eq!(
        backup_id_in("backup b-abc123def456 ok (12 MiB)").as_deref(),
        Some("b-abc123def456")
    );
    assert_eq!(backup_id_in("no id here"), None);
}
