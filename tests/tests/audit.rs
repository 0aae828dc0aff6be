//! The audit log: every change is recorded (with actor, source and
//! outcome) before it happens, denials too; `argosy audit list` filters and
//! exports; `argosy audit verify` names an edited, deleted or inserted
//! record; and a change whose record cannot be written is refused.

use anyhow::{Context, ensure};
use argosy_e2e::{ControlPlane, Store, TestEnv, both_stores};
use serde_json::Value;

both_stores!(
    changes_and_denials_are_recorded,
    verify_names_tampered_records,
    an_unwritable_audit_log_refuses_changes
);

fn spec(name: &str) -> String {
    format!("name: {name}\nimage: registry.invalid/web:v1\nreplicas: 1\n")
}

async fn apply(
    cp: &ControlPlane,
    env: &TestEnv,
    cli: &argosy_e2e::Cli,
    name: &str,
) -> anyhow::Result<argosy_e2e::CliOutput> {
    let path = env.new_dir("specs").join(format!("{name}.yaml"));
    std::fs::write(&path, spec(name))?;
    let _ = cp;
    cli.run(&["apply", "-f", path.to_str().unwrap_or_default()])
        .await
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

async fn audit_list(cp: &ControlPlane, args: &[&str]) -> anyhow::Result<Vec<Value>> {
    let mut all = vec!["audit", "list", "-o", "json"];
    all.extend_from_slice(args);
    let out = cp.cli().run(&all).await?.ok()?;
    Ok(out.json()?.as_array().cloned().unwrap_or_default())
}

async fn changes_and_denials_are_recorded(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let viewer = token(&cp, "watcher", "viewer").await?;
    apply(&cp, env, &cp.cli(), "web").await?.ok()?;
    let denied = apply(&cp, env, &cp.cli().env("ARGOSY_TOKEN", &viewer), "sneaky").await?;
    ensure!(
        !denied.status.success(),
        "a viewer applied a spec: {}",
        denied.stdout
    );
    // A change over HTTP is recorded with the HTTP caller's address.
    let applied = cp
        .http_post("/api/v1/services", Some(&cp.admin_token), &spec("api"))
        .await?;
    ensure!(applied.status == 200, "apply over HTTP: {}", applied.text());

    let records = audit_list(&cp, &[]).await?;
    let find = |action: &str, target: &str, outcome: &str| {
        records.iter().find(|r| {
            r["action"] == action
                && r["target"] == target
                && r["outcome"]
                    .as_str()
                    .is_some_and(|o| o.starts_with(outcome))
        })
    };
    let started =
        find("service.apply", "web", "started").context("no started record for the apply")?;
    let finished = find("service.apply", "web", "ok").context("no outcome record for the apply")?;
    ensure!(started["actor"] == "token:admin", "{started}");
    ensure!(
        started["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("127.0.0.1:")),
        "the source is the caller's address: {started}"
    );
    ensure!(
        finished["outcome"] == format!("ok (#{})", started["seq"]),
        "the outcome names its request: {finished}"
    );
    find("api_token.create", "watcher", "ok").context("token creation is recorded")?;
    let denial = find("service.apply", "sneaky", "denied:")
        .context("the viewer's denied apply is recorded")?;
    ensure!(denial["actor"] == "token:watcher", "{denial}");
    ensure!(
        denial["outcome"]
            .as_str()
            .is_some_and(|o| o.contains("role viewer")),
        "{denial}"
    );
    let http = find("service.apply", "api", "ok").context("the HTTP apply is recorded")?;
    ensure!(
        http["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("127.0.0.1:")),
        "{http}"
    );
    // Reads are not recorded.
    ensure!(
        records.iter().all(|r| r["action"] != "hosts.list"),
        "reads are not audited"
    );

    // Filters.
    let by_viewer = audit_list(&cp, &["--actor", "token:watcher"]).await?;
    ensure!(
        !by_viewer.is_empty() && by_viewer.iter().all(|r| r["actor"] == "token:watcher"),
        "{by_viewer:?}"
    );
    let applies = audit_list(&cp, &["--action", "service.apply", "--since", "1h"]).await?;
    ensure!(
        applies.len() == 5 && applies.iter().all(|r| r["action"] == "service.apply"),
        "two records for each of the admin's applies, one for the denial: {applies:?}"
    );
    let newest = audit_list(&cp, &["--limit", "1"]).await?;
    ensure!(
        newest.len() == 1 && newest[0]["seq"] == records[0]["seq"],
        "newest first: {newest:?}"
    );
    let table = cp.cli().run(&["audit", "list"]).await?.ok()?;
    ensure!(
        table.stdout.contains("service.apply") && table.stdout.contains("token:admin"),
        "{}",
        table.stdout
    );

    // Over HTTP: an operator may read it, a viewer may not.
    let operator = token(&cp, "ops", "operator").await?;
    let listed = cp
        .http_get(
            "/api/v1/audit?action=service.apply&limit=2",
            Some(&operator),
        )
        .await?;
    ensure!(listed.status == 200, "{}", listed.text());
    let listed = listed.json()?;
    ensure!(listed.as_array().is_some_and(|a| a.len() == 2), "{listed}");
    let refused = cp.http_get("/api/v1/audit", Some(&viewer)).await?;
    ensure!(
        refused.status == 403,
        "a viewer read the audit log: {}",
        refused.text()
    );
    let verified = cp
        .http_get("/api/v1/audit/verify", Some(&operator))
        .await?
        .json()?;
    ensure!(verified["ok"] == true, "{verified}");
    Ok(())
}

async fn verify_names_tampered_records(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    for name in ["a", "b", "c", "d"] {
        token(&cp, name, "viewer").await?;
    }
    let ok = cp.cli().run(&["audit", "verify"]).await?.ok()?;
    ensure!(ok.stdout.contains("8 records checked"), "{}", ok.stdout);

    // Someone with the database edits who did something…
    cp.sql_execute("UPDATE audit_events SET actor = 'user:nobody' WHERE seq = 3")
        .await?;
    // …deletes a record…
    cp.sql_execute("DELETE FROM audit_events WHERE seq = 5")
        .await?;
    // …and forges one at the end without the audit key.
    cp.sql_execute(
        "INSERT INTO audit_events (seq, at_ms, actor, source, action, target, outcome, prev_hash, hash) \
         SELECT seq + 1, at_ms, actor, source, action, target, outcome, hash, hash FROM audit_events \
         WHERE seq = (SELECT MAX(seq) FROM audit_events)",
    )
    .await?;
    let broken = cp.cli().run(&["audit", "verify"]).await?;
    ensure!(
        !broken.status.success(),
        "verify passed a tampered log: {}",
        broken.stdout
    );
    for expected in [
        "record 3 was edited",
        "records 5..=5 are missing",
        "record 9 was edited",
    ] {
        ensure!(
            broken.stdout.contains(expected),
            "verify does not say {expected:?}:\n{}",
            broken.stdout
        );
    }
    ensure!(broken.stderr.contains("tampered"), "{}", broken.stderr);
    let json = cp.cli().run(&["audit", "verify", "-o", "json"]).await?;
    let json = json.json()?;
    ensure!(
        json["ok"] == false && json["problems"].as_array().is_some_and(|p| p.len() == 3),
        "{json}"
    );

    // Renumbering to hide the deletion breaks the links instead.
    cp.sql_execute("UPDATE audit_events SET seq = seq - 1 WHERE seq > 5")
        .await?;
    let relinked = cp.cli().run(&["audit", "verify"]).await?;
    ensure!(
        relinked
            .stdout
            .contains("record 5 does not follow record 4"),
        "{}",
        relinked.stdout
    );
    Ok(())
}

async fn an_unwritable_audit_log_refuses_changes(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let block = match env.store() {
        Store::Sqlite => "CREATE TRIGGER audit_blocked BEFORE INSERT ON audit_events \
                          BEGIN SELECT RAISE(ABORT, 'audit storage is read-only'); END;"
            .to_owned(),
        Store::Postgres => "CREATE FUNCTION audit_blocked() RETURNS trigger AS $$ \
                            BEGIN RAISE EXCEPTION 'audit storage is read-only'; END $$ LANGUAGE plpgsql; \
                            CREATE TRIGGER audit_blocked BEFORE INSERT ON audit_events \
                            FOR EACH ROW EXECUTE FUNCTION audit_blocked();"
            .to_owned(),
    };
    cp.sql_execute(&block).await?;

    let refused = cp
        .cli()
        .run(&[
            "token",
            "create",
            "--name",
            "unrecorded",
            "--role",
            "viewer",
        ])
        .await?;
    ensure!(
        !refused.status.success(),
        "a change went through unrecorded: {}",
        refused.stdout
    );
    ensure!(
        refused.stderr.contains("audit log cannot be written")
            && refused.stderr.contains("refused"),
        "{}",
        refused.stderr
    );
    let refused = apply(&cp, env, &cp.cli(), "web").await?;
    ensure!(
        !refused.status.success() && refused.stderr.contains("audit log cannot be written"),
        "{}",
        refused.stderr
    );
    // Nothing happened, and reads still work.
    let tokens = cp.cli().run(&["token", "list", "-o", "json"]).await?.ok()?;
    ensure!(!tokens.stdout.contains("unrecorded"), "{}", tokens.stdout);
    let services = cp
        .cli()
        .run(&["services", "list", "-o", "json"])
        .await?
        .ok()?;
    ensure!(!services.stdout.contains("\"web\""), "{}", services.stdout);
    cp.cli().run(&["hosts", "list"]).await?.ok()?;

    let unblock = match env.store() {
        Store::Sqlite => "DROP TRIGGER audit_blocked;",
        Store::Postgres => {
            "DROP TRIGGER audit_blocked ON audit_events; DROP FUNCTION audit_blocked();"
        }
    };
    cp.sql_execute(unblock).await?;
    cp.cli()
        .run(&["token", "create", "--name", "recorded", "--role", "viewer"])
        .await?
        .ok()?;
    let verified = cp.cli().run(&["audit", "verify"]).await?.ok()?;
    ensure!(
        verified.stdout.contains("records checked"),
        "{}",
        verified.stdout
    );
    Ok(())
}
