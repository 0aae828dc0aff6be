//! Access control end to end. Every role — as an API token and as a user's
//! login session — calls one representative of every API class over gRPC
//! (the CLI) and over HTTP, and exactly the calls its role allows succeed;
//! scopes limit a token to a region or to service-name prefixes, in what it
//! sees and what it may change; users log in with a password (CLI and
//! HTTP), are refused without learning which part was wrong, are locked out
//! after 5 failures, change passwords, log out, lose their sessions at once
//! when removed, and no password is stored or logged in plain text.

use anyhow::{Context, ensure};
use argosy_e2e::docker::{registry, remove_service, unique_name as unique};
use argosy_e2e::{Agent, ControlPlane, HttpResponse, TestEnv, both_stores, pb};
use serde_json::{Value, json};
use std::path::Path;

both_stores!(
    every_role_against_every_api_class,
    region_scope,
    service_prefix_scope,
    users_log_in_and_out,
    lockout_after_failed_logins
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    const ALL: [Role; 3] = [Role::Admin, Role::Operator, Role::Viewer];

    fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }
}

/// Someone calling the API: a token or a user's session, with its role.
struct Caller {
    label: String,
    role: Role,
    token: String,
}

/// One call of the API.
enum Call {
    /// `argosy ARGS…` with the caller's token (gRPC).
    Cli(Vec<String>),
    /// `METHOD PATH` with a body on the HTTP listener with the caller's token.
    Http(http::Method, String, String),
}

/// A row of the table: a call and the least role that may make it.
struct Row {
    class: &'static str,
    least: Role,
    call: Call,
}

fn cli(args: &[&str]) -> Call {
    Call::Cli(args.iter().map(|a| (*a).to_owned()).collect())
}

fn get(path: &str) -> Call {
    Call::Http(http::Method::GET, path.to_owned(), String::new())
}

fn post(path: &str, body: Value) -> Call {
    Call::Http(http::Method::POST, path.to_owned(), body.to_string())
}

fn web_spec(name: &str, regions: &[&str]) -> String {
    let placement = if regions.is_empty() {
        String::new()
    } else {
        format!("placement:\n  regions: [{}]\n", regions.join(", "))
    };
    format!(
        r#"name: {name}
image: {registry}/argosy-test/web:v1
replicas: 1
{placement}resources:
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

fn write_spec(dir: &Path, name: &str, regions: &[&str]) -> anyhow::Result<String> {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, web_spec(name, regions))?;
    Ok(path.to_string_lossy().into_owned())
}

/// `argosy token create` → the secret.
async fn token(
    cp: &ControlPlane,
    name: &str,
    role: &str,
    scope: &[&str],
) -> anyhow::Result<String> {
    let mut args = vec![
        "token", "create", "--name", name, "--role", role, "-o", "json",
    ];
    args.extend_from_slice(scope);
    let json = cp.cli().run(&args).await?.ok()?.json()?;
    Ok(json["secret"].as_str().context("no secret")?.to_owned())
}

/// `POST /api/v1/login`.
async fn http_login(cp: &ControlPlane, name: &str, password: &str) -> anyhow::Result<HttpResponse> {
    let body = json!({ "username": name, "password": password }).to_string();
    cp.http_post("/api/v1/login", None, &body).await
}

/// The `error` of an HTTP JSON answer.
fn error(response: &HttpResponse) -> String {
    response
        .json()
        .ok()
        .and_then(|body| body["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| response.text())
}

/// A session token from `POST /api/v1/login`, which must succeed.
async fn session(cp: &ControlPlane, name: &str, password: &str) -> anyhow::Result<String> {
    let response = http_login(cp, name, password).await?;
    ensure!(
        response.status == 200,
        "login as {name}: {} {}",
        response.status,
        response.text()
    );
    Ok(response.json()?["token"]
        .as_str()
        .context("no session token")?
        .to_owned())
}

/// The CLI with `token` and nothing saved.
fn cli_as(cp: &ControlPlane, token: &str) -> argosy_e2e::Cli {
    cp.cli().env("ARGOSY_TOKEN", token)
}

async fn call(cp: &ControlPlane, caller: &Caller, call: &Call) -> anyhow::Result<(bool, String)> {
    Ok(match call {
        Call::Cli(args) => {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = cli_as(cp, &caller.token).run(&args).await?;
            (out.status.success(), out.stderr)
        }
        Call::Http(method, path, body) => {
            let response = argosy_e2e::api::http_request(
                cp.http_addr,
                method.clone(),
                path,
                Some(&caller.token),
                body.clone().into_bytes(),
            )
            .await?;
            let ok = (200..300).contains(&response.status);
            (ok, format!("HTTP {} {}", response.status, response.text()))
        }
    })
}

/// Runs every row as every caller; collects every mismatch before failing.
async fn check_table(cp: &ControlPlane, callers: &[Caller], rows: &[Row]) -> anyhow::Result<()> {
    let mut wrong = Vec::new();
    for caller in callers {
        for row in rows {
            let allowed = caller.role >= row.least;
            let (ok, said) = call(cp, caller, &row.call).await?;
            let what = match &row.call {
                Call::Cli(args) => format!("argosy {}", args.join(" ")),
                Call::Http(method, path, _) => format!("{method} {path}"),
            };
            let denied_as_expected = match &row.call {
                Call::Cli(_) => said.contains("PermissionDenied"),
                Call::Http(..) => said.starts_with("HTTP 403"),
            } && said
                .contains(&format!("has role {}, which may not", caller.role.name()))
                && said.contains(&format!("ask an admin for role {}", row.least.name()));
            if allowed && !ok {
                wrong.push(format!(
                    "{} ({}) may {}: `{what}` failed: {said}",
                    caller.label,
                    caller.role.name(),
                    row.class
                ));
            } else if !allowed && (ok || !denied_as_expected) {
                wrong.push(format!(
                    "{} ({}) may not {}: `{what}` must be refused with the role message, got ok={ok}: {said}",
                    caller.label,
                    caller.role.name(),
                    row.class
                ));
            }
        }
    }
    ensure!(
        wrong.is_empty(),
        "{} wrong answers:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    Ok(())
}

async fn every_role_against_every_api_class(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let mut worker = Agent::start(env, &cp.join_string("eu-west", &[], 1).await?, "1s")?;
    let mut victim = Agent::start(env, &cp.join_string("us-east", &[], 1).await?, "1s")?;
    let worker_id = worker.wait_enrolled().await?;
    let victim_id = victim.wait_enrolled().await?;
    cp.wait_online(&worker_id).await?;
    cp.wait_online(&victim_id).await?;

    // A running service, so logs, scale and a repeated apply have something to act on.
    let service = unique("access");
    let dir = env.new_dir("specs");
    let spec = write_spec(&dir, &service, &["eu-west"])?;
    let applied = cp.cli().run(&["apply", "-f", &spec, "--watch"]).await?;
    ensure!(applied.status.success(), "apply as admin: {applied:?}");
    // A secret to list, write and reveal.
    let value = dir.join("value");
    std::fs::write(&value, "table value")?;
    let value = value.to_string_lossy().into_owned();
    cp.cli()
        .run(&["secret", "set", "access/seed", "--from-file", &value])
        .await?
        .ok()?;

    let mut callers = Vec::new();
    for role in Role::ALL {
        let name = role.name();
        callers.push(Caller {
            label: format!("token:{name}-token"),
            role,
            token: token(&cp, &format!("{name}-token"), name, &[]).await?,
        });
        let user = format!("{name}-person");
        let password = format!("{name} has a long password");
        cp.add_user(&user, name, &password).await?;
        callers.push(Caller {
            label: format!("user:{user}"),
            role,
            token: session(&cp, &user, &password).await?,
        });
    }
    let metrics = format!("/api/v1/hosts/{worker_id}/metrics?metric=cpu&since=10m");
    let rows = [
        Row {
            class: "ask who it is",
            least: Role::Viewer,
            call: cli(&["whoami"]),
        },
        Row {
            class: "read the fleet",
            least: Role::Viewer,
            call: cli(&["hosts", "list"]),
        },
        Row {
            class: "read the fleet",
            least: Role::Viewer,
            call: get("/api/v1/hosts"),
        },
        Row {
            class: "read metrics",
            least: Role::Viewer,
            call: cli(&["metrics", &worker_id, "--since", "10m"]),
        },
        Row {
            class: "read metrics",
            least: Role::Viewer,
            call: get(&metrics),
        },
        Row {
            class: "read services",
            least: Role::Viewer,
            call: cli(&["services", "list"]),
        },
        Row {
            class: "read services",
            least: Role::Viewer,
            call: get("/api/v1/services"),
        },
        Row {
            class: "deploy",
            least: Role::Operator,
            call: cli(&["apply", "-f", &spec]),
        },
        Row {
            class: "deploy",
            least: Role::Operator,
            call: cli(&["scale", &service, "1"]),
        },
        Row {
            class: "deploy",
            least: Role::Operator,
            call: post(
                &format!("/api/v1/services/{service}/scale?replicas=1"),
                json!({}),
            ),
        },
        Row {
            class: "read logs",
            least: Role::Operator,
            call: cli(&["logs", &service, "--tail", "5"]),
        },
        Row {
            class: "read the audit log",
            least: Role::Operator,
            call: cli(&["audit", "list", "--limit", "1"]),
        },
        Row {
            class: "read the audit log",
            least: Role::Operator,
            call: get("/api/v1/audit?limit=1"),
        },
        Row {
            class: "list secrets",
            least: Role::Viewer,
            call: cli(&["secret", "list"]),
        },
        Row {
            class: "list secrets",
            least: Role::Viewer,
            call: get("/api/v1/secrets"),
        },
        Row {
            class: "write secrets",
            least: Role::Operator,
            call: cli(&["secret", "set", "access/cli", "--from-file", &value]),
        },
        Row {
            class: "write secrets",
            least: Role::Operator,
            call: post(
                "/api/v1/secrets",
                json!({"name": "access/http", "value_base64": "dGFibGUgdmFsdWU="}),
            ),
        },
        Row {
            class: "read secret values",
            least: Role::Admin,
            call: cli(&["secret", "get", "access/seed"]),
        },
        Row {
            class: "read secret values",
            least: Role::Admin,
            call: post("/api/v1/secrets/access/seed/reveal", json!({})),
        },
        Row {
            class: "read alerts",
            least: Role::Viewer,
            call: cli(&["alert", "list"]),
        },
        Row {
            class: "read alerts",
            least: Role::Viewer,
            call: get("/api/v1/alerts"),
        },
        Row {
            class: "manage alerts",
            least: Role::Operator,
            call: cli(&[
                "alert",
                "silence",
                "--matcher",
                "alertname=access",
                "--for",
                "1h",
                "--comment",
                "table",
            ]),
        },
        Row {
            class: "manage alerts",
            least: Role::Operator,
            call: post(
                "/api/v1/alerts/silences",
                json!({"matchers": ["alertname=access"], "for": "1h", "comment": "table"}),
            ),
        },
        Row {
            class: "revoke hosts",
            least: Role::Operator,
            call: cli(&["hosts", "revoke", &victim_id]),
        },
        Row {
            class: "manage join tokens",
            least: Role::Admin,
            call: cli(&["join-token", "list"]),
        },
        Row {
            class: "manage API tokens",
            least: Role::Admin,
            call: cli(&["token", "list"]),
        },
        Row {
            class: "manage users",
            least: Role::Admin,
            call: cli(&["user", "list"]),
        },
        Row {
            class: "manage users",
            least: Role::Admin,
            call: get("/api/v1/users"),
        },
    ];
    check_table(&cp, &callers, &rows).await?;

    worker.kill().await?;
    victim.kill().await?;
    remove_service(&service).await;
    Ok(())
}

/// The host ids a caller sees, over gRPC (the CLI) and HTTP; both must agree.
async fn visible_hosts(cp: &ControlPlane, token: &str) -> anyhow::Result<Vec<String>> {
    let ids = |json: Value| -> Vec<String> {
        let mut ids: Vec<String> = json
            .as_array()
            .map(|hosts| {
                hosts
                    .iter()
                    .filter_map(|h| h["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    };
    let over_grpc = ids(cli_as(cp, token)
        .run(&["hosts", "list", "-o", "json"])
        .await?
        .ok()?
        .json()?);
    let over_http = ids(cp.http_get("/api/v1/hosts", Some(token)).await?.json()?);
    ensure!(
        over_grpc == over_http,
        "the CLI sees {over_grpc:?}, HTTP {over_http:?}"
    );
    Ok(over_grpc)
}

async fn region_scope(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let mut eu = Agent::start(env, &cp.join_string("eu-west", &[], 1).await?, "1s")?;
    let mut us = Agent::start(env, &cp.join_string("us-east", &[], 1).await?, "1s")?;
    let eu_id = eu.wait_enrolled().await?;
    let us_id = us.wait_enrolled().await?;
    cp.wait_online(&eu_id).await?;
    cp.wait_online(&us_id).await?;

    // A bad region is refused when the token is made.
    let bad = cp
        .cli()
        .run(&[
            "token",
            "create",
            "--name",
            "x",
            "--role",
            "operator",
            "--scope-region",
            "eu west",
        ])
        .await?;
    ensure!(
        !bad.status.success() && bad.stderr.contains("scope region \"eu west\" is not valid"),
        "{bad:?}"
    );
    let eu_ops = token(&cp, "eu-ops", "operator", &["--scope-region", "eu-west"]).await?;
    let me = cli_as(&cp, &eu_ops)
        .run(&["whoami", "-o", "json"])
        .await?
        .ok()?
        .json()?;
    ensure!(
        me["actor"] == "token:eu-ops"
            && me["kind"] == "token"
            && me["role"] == "operator"
            && me["scope"]["regions"] == json!(["eu-west"]),
        "whoami: {me}"
    );
    let shown = cli_as(&cp, &eu_ops).run(&["whoami"]).await?.ok()?.stdout;
    ensure!(
        shown.contains("token:eu-ops") && shown.contains("regions eu-west"),
        "{shown}"
    );
    let listed = cp
        .cli()
        .run(&["token", "list", "-o", "json"])
        .await?
        .ok()?
        .json()?;
    ensure!(
        listed.as_array().is_some_and(|tokens| tokens
            .iter()
            .any(|t| t["name"] == "eu-ops" && t["scope"]["regions"] == json!(["eu-west"]))),
        "token list: {listed}"
    );

    // It sees only eu-west, over gRPC and HTTP; an admin sees both.
    ensure!(
        visible_hosts(&cp, &eu_ops).await? == [eu_id.clone()],
        "the eu-west token's hosts"
    );
    ensure!(
        visible_hosts(&cp, &cp.admin_token).await?.len() == 2,
        "the admin's hosts"
    );

    // It may not revoke a us-east host…
    let refused = cp
        .fleet_as(Some(&eu_ops))
        .revoke_host(pb::RevokeHostRequest { id: us_id.clone() })
        .await;
    match refused {
        Err(status) => ensure!(
            status.code() == tonic::Code::PermissionDenied
                && status.message().contains("limited to regions eu-west"),
            "revoking a us-east host: {status:?}"
        ),
        Ok(host) => anyhow::bail!("the eu-west token revoked a us-east host: {host:?}"),
    }
    let out = cli_as(&cp, &eu_ops)
        .run(&["hosts", "revoke", &us_id])
        .await?;
    ensure!(
        !out.status.success() && out.stderr.contains("PermissionDenied"),
        "{out:?}"
    );
    ensure!(
        cp.host(&us_id).await?.status == pb::HostStatus::Online as i32,
        "a refused revoke changed the host"
    );

    // …nor deploy a service that may land outside eu-west.
    let dir = env.new_dir("specs");
    let outside = unique("us-web");
    let anywhere = unique("any-web");
    let inside = unique("eu-web");
    for (service, regions) in [(&outside, &["us-east"][..]), (&anywhere, &[][..])] {
        let spec = write_spec(&dir, service, regions)?;
        let out = cli_as(&cp, &eu_ops).run(&["apply", "-f", &spec]).await?;
        ensure!(
            !out.status.success()
                && out.stderr.contains("PermissionDenied")
                && out
                    .stderr
                    .contains(&format!("does not cover service {service}")),
            "applying {service} placed in {regions:?}: {out:?}"
        );
        let http = cp
            .http_post(
                "/api/v1/services",
                Some(&eu_ops),
                &web_spec(service, regions),
            )
            .await?;
        ensure!(
            http.status == 403,
            "HTTP apply of {service}: {} {}",
            http.status,
            http.text()
        );
    }
    let spec = write_spec(&dir, &inside, &["eu-west"])?;
    cli_as(&cp, &eu_ops)
        .run(&["apply", "-f", &spec])
        .await?
        .ok()?;
    let services = cp
        .cli()
        .run(&["services", "list", "-o", "json"])
        .await?
        .ok()?
        .json()?;
    let names: Vec<&str> = services
        .as_array()
        .map(|s| s.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        names == [inside.as_str()],
        "only the eu-west service was stored: {names:?}"
    );

    // Its own region is its to act on.
    cp.fleet_as(Some(&eu_ops))
        .revoke_host(pb::RevokeHostRequest { id: eu_id.clone() })
        .await
        .context("the eu-west token may revoke an eu-west host")?;
    eu.kill().await?;
    us.kill().await?;
    remove_service(&inside).await;
    Ok(())
}

async fn service_prefix_scope(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let dir = env.new_dir("specs");
    let billing = unique("billing");
    let crm_db = unique("crm-db");
    let crm_web = unique("crm-web");
    for service in [&billing, &crm_db] {
        let spec = write_spec(&dir, service, &[])?;
        cp.cli().run(&["apply", "-f", &spec]).await?.ok()?;
    }
    let crm = token(&cp, "crm-team", "operator", &["--scope-service", "crm"]).await?;

    let spec = write_spec(&dir, &crm_web, &[])?;
    cli_as(&cp, &crm).run(&["apply", "-f", &spec]).await?.ok()?;
    let spec = write_spec(&dir, &billing, &[])?;
    let out = cli_as(&cp, &crm).run(&["apply", "-f", &spec]).await?;
    ensure!(
        !out.status.success()
            && out.stderr.contains("PermissionDenied")
            && out.stderr.contains("limited to names crm*"),
        "applying {billing} with a crm token: {out:?}"
    );
    let out = cli_as(&cp, &crm).run(&["scale", &billing, "3"]).await?;
    ensure!(
        !out.status.success() && out.stderr.contains("PermissionDenied"),
        "{out:?}"
    );

    let names = |json: Value| -> Vec<String> {
        let mut names: Vec<String> = json
            .as_array()
            .map(|s| {
                s.iter()
                    .filter_map(|s| s["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    let mut expected = vec![crm_db.clone(), crm_web.clone()];
    expected.sort();
    let over_grpc = names(
        cli_as(&cp, &crm)
            .run(&["services", "list", "-o", "json"])
            .await?
            .ok()?
            .json()?,
    );
    ensure!(over_grpc == expected, "the crm token lists {over_grpc:?}");
    let over_http = names(cp.http_get("/api/v1/services", Some(&crm)).await?.json()?);
    ensure!(
        over_http == expected,
        "the crm token lists over HTTP {over_http:?}"
    );
    let all = names(
        cp.http_get("/api/v1/services", Some(&cp.admin_token))
            .await?
            .json()?,
    );
    ensure!(all.len() == 3, "the admin lists {all:?}");
    let hidden = cp
        .http_get(&format!("/api/v1/services/{billing}"), Some(&crm))
        .await?;
    ensure!(
        hidden.status == 403 || hidden.status == 404,
        "the crm token reads {billing}: {} {}",
        hidden.status,
        hidden.text()
    );
    Ok(())
}

/// `argosy login --user NAME --password-stdin` with a CLI of its own (no
/// token in the environment, config in `home`).
fn person(cp: &ControlPlane, home: &Path) -> argosy_e2e::Cli {
    argosy_e2e::Cli::bare(home)
        .env("ARGOSY_ADDR", &cp.grpc())
        .env("ARGOSY_CA_FINGERPRINT", &cp.ca_fingerprint.to_string())
}

async fn users_log_in_and_out(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let first = "alice's first passphrase";
    let second = "alice's second passphrase";
    let reset = "reset by an admin, 2024";

    // The rules are checked before anything is stored.
    let short = cp
        .cli()
        .stdin("short\n")
        .run(&[
            "user",
            "add",
            "alice",
            "--role",
            "operator",
            "--password-stdin",
        ])
        .await?;
    ensure!(
        !short.status.success() && short.stderr.contains("at least 12"),
        "{short:?}"
    );
    let http = cp
        .http_post(
            "/api/v1/users",
            Some(&cp.admin_token),
            &json!({"name": "Alice Smith", "role": "operator", "password": first}).to_string(),
        )
        .await?;
    ensure!(
        http.status == 400 && http.text().contains("lowercase"),
        "{} {}",
        http.status,
        http.text()
    );
    let http = cp
        .http_post(
            "/api/v1/users",
            Some(&cp.admin_token),
            &json!({"name": "bob", "role": "viewer", "password": "too short"}).to_string(),
        )
        .await?;
    ensure!(
        http.status == 400 && http.text().contains("at least 12"),
        "{} {}",
        http.status,
        http.text()
    );
    cp.add_user("alice", "operator", first).await?;
    let dup = cp
        .cli()
        .stdin(&format!("{first}\n"))
        .run(&[
            "user",
            "add",
            "alice",
            "--role",
            "viewer",
            "--password-stdin",
        ])
        .await?;
    ensure!(
        !dup.status.success() && dup.stderr.contains("already exists"),
        "{dup:?}"
    );
    let http = cp
        .http_post(
            "/api/v1/users",
            Some(&cp.admin_token),
            &json!({"name": "bob", "role": "viewer", "password": "bob's password here",
                    "scope": {"regions": ["eu-west"]}})
            .to_string(),
        )
        .await?;
    ensure!(http.status == 200, "{} {}", http.status, http.text());

    let users = cp
        .cli()
        .run(&["user", "list", "-o", "json"])
        .await?
        .ok()?
        .json()?;
    ensure!(
        users[0]["name"] == "alice"
            && users[0]["role"] == "operator"
            && users[0]["created_by"] == "token:admin"
            && users[1]["name"] == "bob"
            && users[1]["scope"]["regions"] == json!(["eu-west"]),
        "user list: {users}"
    );
    ensure!(
        !users.to_string().contains("argon2"),
        "user list shows a hash: {users}"
    );
    let table = cp.cli().run(&["user", "list"]).await?.ok()?.stdout;
    ensure!(
        table.contains("regions eu-west") && table.contains("operator"),
        "{table}"
    );

    // Logging in with the CLI saves the session; whoami shows the user.
    let home = env.new_dir("alice");
    let alice = person(&cp, &home);
    let out = alice
        .clone()
        .stdin(&format!("{first}\n"))
        .run(&["login", "--user", "alice", "--password-stdin"])
        .await?
        .ok()?;
    ensure!(
        out.stdout
            .contains("logged in as user:alice (role operator"),
        "{}",
        out.stdout
    );
    let me = alice.run(&["whoami", "-o", "json"]).await?.ok()?.json()?;
    ensure!(
        me["actor"] == "user:alice" && me["kind"] == "user" && me["role"] == "operator",
        "whoami: {me}"
    );
    let shown = alice.run(&["whoami"]).await?.ok()?.stdout;
    ensure!(
        shown.contains("user:alice (session")
            && shown.contains("role:  operator")
            && shown.contains("scope: the whole fleet"),
        "{shown}"
    );
    // The session works like a token of its role: operators may not manage users.
    let denied = alice.run(&["user", "list"]).await?;
    ensure!(
        !denied.status.success() && denied.stderr.contains("user:alice has role operator"),
        "{denied:?}"
    );

    // Logging in over HTTP gives a bearer token for HTTP and gRPC.
    let login = http_login(&cp, "alice", first).await?;
    ensure!(login.status == 200, "{} {}", login.status, login.text());
    let body = login.json()?;
    ensure!(
        body["username"] == "alice" && body["role"] == "operator",
        "{body}"
    );
    let http_session = body["token"].as_str().context("no token")?.to_owned();
    let hosts = cp.http_get("/api/v1/hosts", Some(&http_session)).await?;
    ensure!(hosts.status == 200, "{} {}", hosts.status, hosts.text());
    let who = cp
        .api_tokens_as(Some(&http_session))
        .who_am_i(pb::WhoAmIRequest {})
        .await?
        .into_inner();
    ensure!(
        who.kind == pb::PrincipalKind::User as i32 && who.name == "alice",
        "{who:?}"
    );

    // Wrong password and unknown user get the same answer, naming neither.
    let wrong_password = http_login(&cp, "alice", "not alice's password").await?;
    let unknown_user = http_login(&cp, "mallory", first).await?;
    for refused in [&wrong_password, &unknown_user] {
        ensure!(
            refused.status == 401 && refused.text().contains("wrong user name or password"),
            "{} {}",
            refused.status,
            refused.text()
        );
    }
    ensure!(
        wrong_password.text() == unknown_user.text(),
        "the answers differ"
    );
    let out = person(&cp, &env.new_dir("guess"))
        .stdin("not alice's password\n")
        .run(&["login", "--user", "alice", "--password-stdin"])
        .await?;
    ensure!(
        !out.status.success()
            && out.stderr.contains("wrong user name or password")
            && out.stderr.contains("Unauthenticated"),
        "{out:?}"
    );

    // Alice changes her password: the old one stops working, her other
    // sessions end, the one she used stays.
    let out = alice
        .clone()
        .stdin(&format!("{first}\n{second}\n"))
        .run(&["user", "passwd", "--password-stdin"])
        .await?
        .ok()?;
    ensure!(
        out.stdout.contains("changed the password of alice"),
        "{}",
        out.stdout
    );
    ensure!(
        http_login(&cp, "alice", first).await?.status == 401,
        "the old password still works"
    );
    session(&cp, "alice", second).await?;
    alice.run(&["whoami"]).await?.ok()?;
    let ended = cp.http_get("/api/v1/hosts", Some(&http_session)).await?;
    ensure!(
        ended.status == 401 && error(&ended).contains("login session of \"alice\" ended"),
        "{} {}",
        ended.status,
        ended.text()
    );
    // A wrong current password changes nothing.
    let out = alice
        .clone()
        .stdin(&format!("{first}\nyet another passphrase\n"))
        .run(&["user", "passwd", "--password-stdin"])
        .await?;
    ensure!(
        !out.status.success() && out.stderr.contains("current password is not right"),
        "{out:?}"
    );
    // She may not reset someone else's; an admin may reset hers.
    let out = alice
        .clone()
        .stdin(&format!("{reset}\n"))
        .run(&["user", "passwd", "bob", "--password-stdin"])
        .await?;
    ensure!(
        !out.status.success() && out.stderr.contains("PermissionDenied"),
        "{out:?}"
    );
    let http = cp
        .http_post(
            "/api/v1/users/alice/password",
            Some(&cp.admin_token),
            &json!({ "new_password": reset }).to_string(),
        )
        .await?;
    ensure!(http.status == 200, "{} {}", http.status, http.text());
    ensure!(
        http_login(&cp, "alice", second).await?.status == 401,
        "the reset did not take"
    );

    // Logging out ends the session at once and forgets it.
    let out = alice
        .clone()
        .stdin(&format!("{reset}\n"))
        .run(&["login", "--user", "alice", "--password-stdin"])
        .await?
        .ok()?;
    ensure!(out.status.success(), "{out:?}");
    let saved = std::fs::read_to_string(home.join("cli.toml"))?;
    let token = saved
        .lines()
        .find_map(|l| l.strip_prefix("token = "))
        .context("no saved token")?
        .trim_matches('"')
        .to_owned();
    let out = alice.run(&["logout"]).await?.ok()?;
    ensure!(out.stdout.contains("logged out"), "{}", out.stdout);
    ensure!(
        !std::fs::read_to_string(home.join("cli.toml"))?.contains("token"),
        "the token is still saved"
    );
    let gone = cp.http_get("/api/v1/hosts", Some(&token)).await?;
    ensure!(gone.status == 401, "{} {}", gone.status, gone.text());
    let api_logout = cp
        .http_post("/api/v1/logout", Some(&cp.admin_token), "")
        .await?;
    ensure!(
        api_logout.status == 409 && api_logout.text().contains("not a login session"),
        "{} {}",
        api_logout.status,
        api_logout.text()
    );

    // Removing a user ends their sessions at once, with a clear message.
    let live = session(&cp, "alice", reset).await?;
    let removed = argosy_e2e::api::http_request(
        cp.http_addr,
        http::Method::DELETE,
        "/api/v1/users/alice",
        Some(&cp.admin_token),
        Vec::new(),
    )
    .await?;
    ensure!(
        removed.status == 200,
        "{} {}",
        removed.status,
        removed.text()
    );
    let refused = cp
        .api_tokens_as(Some(&live))
        .who_am_i(pb::WhoAmIRequest {})
        .await;
    match refused {
        Err(status) => ensure!(
            status.code() == tonic::Code::Unauthenticated
                && status.message().contains("was removed"),
            "{status:?}"
        ),
        Ok(me) => anyhow::bail!("a removed user's session still works: {me:?}"),
    }
    ensure!(
        http_login(&cp, "alice", reset).await?.status == 401,
        "a removed user logs in"
    );
    let out = cp.cli().run(&["user", "remove", "alice"]).await?;
    ensure!(
        !out.status.success() && out.stderr.contains("no user named"),
        "{out:?}"
    );

    // Logins are audited, failures with the same words.
    let audit = cp
        .cli()
        .run(&["audit", "list", "--action", "user.login", "-o", "json"])
        .await?
        .ok()?
        .json()?;
    let outcomes: Vec<&str> = audit
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["outcome"].as_str()).collect())
        .unwrap_or_default();
    ensure!(outcomes.contains(&"ok"), "{audit}");
    ensure!(
        outcomes
            .iter()
            .any(|o| o.starts_with("denied: wrong user name or password")),
        "{audit}"
    );
    ensure!(
        audit
            .as_array()
            .is_some_and(|a| a.iter().any(|r| r["target"] == "mallory")),
        "{audit}"
    );

    // No password is stored or logged in plain text.
    let passwords = [first, second, reset, "bob's password here"];
    let rows = cp
        .sql_rows("SELECT name, password_hash, role, scope_json FROM users")
        .await?;
    ensure!(!rows.is_empty(), "no users in the database");
    for row in &rows {
        let hash = row[1].clone().unwrap_or_default();
        ensure!(
            hash.starts_with("$argon2id$v=19$"),
            "not an argon2id hash: {row:?}"
        );
        for password in passwords {
            ensure!(
                !format!("{row:?}").contains(password),
                "a plain password in {row:?}"
            );
        }
    }
    if env.database_url().is_none() {
        for file in ["argosy.db", "argosy.db-wal"] {
            let path = cp.data_dir().join(file);
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            for password in passwords {
                ensure!(
                    !bytes
                        .windows(password.len())
                        .any(|w| w == password.as_bytes()),
                    "{} holds a password in plain text",
                    path.display()
                );
            }
        }
    }
    let log = cp.log();
    for password in passwords {
        ensure!(!log.contains(password), "the server log holds a password");
    }
    Ok(())
}

async fn lockout_after_failed_logins(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let password = "carol's right password";
    cp.add_user("carol", "viewer", password).await?;
    // A success clears earlier failures.
    for _ in 0..4 {
        ensure!(http_login(&cp, "carol", "a wrong guess!!").await?.status == 401);
    }
    session(&cp, "carol", password).await?;
    for attempt in 1..=5 {
        let refused = http_login(&cp, "carol", "a wrong guess!!").await?;
        ensure!(
            refused.status == 401,
            "failure {attempt}: {} {}",
            refused.status,
            refused.text()
        );
    }
    // Now even the right password is refused, with when to try again.
    let locked = http_login(&cp, "carol", password).await?;
    ensure!(
        locked.status == 429
            && error(&locked).contains("too many failed logins for \"carol\"")
            && error(&locked).contains("refused until"),
        "{} {}",
        locked.status,
        locked.text()
    );
    let out = person(&cp, &env.new_dir("carol"))
        .stdin(&format!("{password}\n"))
        .run(&["login", "--user", "carol", "--password-stdin"])
        .await?;
    ensure!(
        !out.status.success()
            && out.stderr.contains("ResourceExhausted")
            && out.stderr.contains("too many failed logins"),
        "{out:?}"
    );
    // Unknown names lock the same way, so a lockout does not reveal a user.
    for _ in 0..5 {
        http_login(&cp, "nobody", "a wrong guess!!").await?;
    }
    ensure!(http_login(&cp, "nobody", "a wrong guess!!").await?.status == 429);
    // An admin's reset lifts the lockout.
    cp.cli()
        .stdin("carol's new password\n")
        .run(&["user", "passwd", "carol", "--password-stdin"])
        .await?
        .ok()?;
    session(&cp, "carol", "carol's new password").await?;
    Ok(())
}
