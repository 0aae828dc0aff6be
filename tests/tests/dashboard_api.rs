//! What the dashboard stands on, end to end over real HTTP: the embedded
//! page and its assets with a strict Content-Security-Policy and gzip;
//! browser sessions in an HttpOnly, SameSite=Strict cookie whose
//! state-changing requests need the session's CSRF token and the same
//! origin, with roles enforced behind them; API and join tokens managed
//! over JSON; and live host metrics as Server-Sent Events from a real
//! agent.

use anyhow::{Context, ensure};
use argosy_e2e::api::{http_request_with, sse_events};
use argosy_e2e::{Agent, ControlPlane, HttpResponse, TestEnv, both_stores};
use http::Method;
use serde_json::{Value, json};
use std::time::Duration;

both_stores!(
    the_page_and_its_assets_are_served_with_a_strict_policy,
    browser_sessions_need_the_csrf_token_to_change_anything,
    tokens_and_join_tokens_over_json,
    live_metrics_stream_as_server_sent_events,
);

const ALICE_PASSWORD: &str = "alice-has-a-long-password";
const VIEWER_PASSWORD: &str = "vera-only-looks-around";

/// A request as a browser on the dashboard's page sends it.
async fn browser(
    cp: &ControlPlane,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> anyhow::Result<HttpResponse> {
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    http_request_with(cp.http_addr, method, path, headers, body).await
}

fn header(response: &HttpResponse, name: &str) -> String {
    response
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

fn error(response: &HttpResponse) -> String {
    response
        .json()
        .ok()
        .and_then(|body| body["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| response.text())
}

/// Logs in through `POST /api/v1/session`: the cookie (`name=value`) and
/// the CSRF token.
async fn log_in(cp: &ControlPlane, user: &str, password: &str) -> anyhow::Result<(String, String)> {
    let response = browser(
        cp,
        Method::POST,
        "/api/v1/session",
        &[("content-type", "application/json")],
        &json!({ "username": user, "password": password }),
    )
    .await?;
    ensure!(
        response.status == 200,
        "login as {user}: {} {}",
        response.status,
        response.text()
    );
    let set_cookie = header(&response, "set-cookie");
    let cookie = set_cookie
        .split(';')
        .next()
        .context("no cookie was set")?
        .to_owned();
    let csrf = response.json()?["csrf_token"]
        .as_str()
        .context("no csrf_token")?
        .to_owned();
    Ok((cookie, csrf))
}

async fn the_page_and_its_assets_are_served_with_a_strict_policy(
    env: &TestEnv,
) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let page = browser(&cp, Method::GET, "/", &[], &Value::Null).await?;
    ensure!(page.status == 200, "GET /: {}", page.status);
    ensure!(header(&page, "content-type").starts_with("text/html"));
    ensure!(header(&page, "cache-control") == "no-cache");
    let policy = header(&page, "content-security-policy");
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        ensure!(
            policy.contains(directive),
            "the policy lacks {directive}: {policy}"
        );
    }
    ensure!(header(&page, "x-content-type-options") == "nosniff");
    ensure!(header(&page, "x-frame-options") == "DENY");
    let html = page.text();
    // Every script and style the page names is served, cached for good,
    // and compressed for a browser that accepts gzip.
    let assets: Vec<&str> = html
        .split('"')
        .filter(|part| part.starts_with("/assets/"))
        .collect();
    for asset in &assets {
        let plain = browser(&cp, Method::GET, asset, &[], &Value::Null).await?;
        ensure!(plain.status == 200, "GET {asset}: {}", plain.status);
        ensure!(
            header(&plain, "cache-control").contains("immutable"),
            "{asset} is not cached for good"
        );
        let zipped = browser(
            &cp,
            Method::GET,
            asset,
            &[("accept-encoding", "gzip")],
            &Value::Null,
        )
        .await?;
        if plain.body.len() > 1024 {
            ensure!(
                header(&zipped, "content-encoding") == "gzip",
                "{asset} is not compressed"
            );
            ensure!(zipped.body.len() < plain.body.len());
        }
    }
    let missing = browser(&cp, Method::GET, "/assets/nope.js", &[], &Value::Null).await?;
    ensure!(missing.status == 404, "a missing asset: {}", missing.status);
    let escape = browser(
        &cp,
        Method::GET,
        "/assets/..%2f..%2fCargo.toml",
        &[],
        &Value::Null,
    )
    .await?;
    ensure!(escape.status == 404, "a path escape: {}", escape.status);
    Ok(())
}

async fn browser_sessions_need_the_csrf_token_to_change_anything(
    env: &TestEnv,
) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    cp.add_user("alice", "operator", ALICE_PASSWORD).await?;
    cp.add_user("vera", "viewer", VIEWER_PASSWORD).await?;
    let json_type = ("content-type", "application/json");

    // A wrong password: refused, and no cookie.
    let wrong = browser(
        &cp,
        Method::POST,
        "/api/v1/session",
        &[json_type],
        &json!({ "username": "alice", "password": "not-her-password-at-all" }),
    )
    .await?;
    ensure!(wrong.status == 401, "a wrong password: {}", wrong.status);
    ensure!(
        header(&wrong, "set-cookie").is_empty(),
        "a cookie for a wrong password"
    );

    // The cookie: HttpOnly, SameSite=Strict, Secure behind a TLS proxy.
    let response = browser(
        &cp,
        Method::POST,
        "/api/v1/session",
        &[json_type],
        &json!({ "username": "alice", "password": ALICE_PASSWORD }),
    )
    .await?;
    let set_cookie = header(&response, "set-cookie");
    ensure!(
        set_cookie.starts_with("argosy_session=argosy_"),
        "{set_cookie}"
    );
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        ensure!(
            set_cookie.contains(part),
            "the cookie lacks {part}: {set_cookie}"
        );
    }
    ensure!(
        !set_cookie.contains("Secure"),
        "Secure over plain loopback HTTP"
    );
    let behind_proxy = browser(
        &cp,
        Method::POST,
        "/api/v1/session",
        &[json_type, ("x-forwarded-proto", "https")],
        &json!({ "username": "alice", "password": ALICE_PASSWORD }),
    )
    .await?;
    ensure!(header(&behind_proxy, "set-cookie").contains("; Secure"));
    // Another site cannot log a browser in.
    let foreign_login = browser(
        &cp,
        Method::POST,
        "/api/v1/session",
        &[json_type, ("origin", "https://evil.example")],
        &json!({ "username": "alice", "password": ALICE_PASSWORD }),
    )
    .await?;
    ensure!(
        foreign_login.status == 403,
        "a cross-origin login: {}",
        foreign_login.status
    );

    let (cookie, csrf) = log_in(&cp, "alice", ALICE_PASSWORD).await?;
    let cookie_header = ("cookie", cookie.as_str());
    let me = browser(
        &cp,
        Method::GET,
        "/api/v1/session",
        &[cookie_header],
        &Value::Null,
    )
    .await?;
    ensure!(
        me.status == 200,
        "GET /api/v1/session: {} {}",
        me.status,
        me.text()
    );
    let me = me.json()?;
    ensure!(
        me["name"] == "alice" && me["role"] == "operator" && me["kind"] == "user",
        "{me}"
    );
    ensure!(
        me["csrf_token"] == csrf.as_str(),
        "the session's CSRF token changed: {me}"
    );
    // Reading needs only the cookie.
    let hosts = browser(
        &cp,
        Method::GET,
        "/api/v1/hosts",
        &[cookie_header],
        &Value::Null,
    )
    .await?;
    ensure!(hosts.status == 200, "GET /api/v1/hosts: {}", hosts.status);

    // Changing needs the token, from the same origin.
    let secret = json!({ "name": "crm/api-key", "value_base64": "c2VjcmV0LXZhbHVl" });
    let no_token = browser(
        &cp,
        Method::POST,
        "/api/v1/secrets",
        &[cookie_header, json_type],
        &secret,
    )
    .await?;
    ensure!(no_token.status == 403, "no CSRF token: {}", no_token.status);
    ensure!(
        error(&no_token).contains("X-CSRF-Token"),
        "{}",
        error(&no_token)
    );
    let other_token = "0".repeat(64);
    let wrong_token = browser(
        &cp,
        Method::POST,
        "/api/v1/secrets",
        &[cookie_header, json_type, ("x-csrf-token", &other_token)],
        &secret,
    )
    .await?;
    ensure!(
        wrong_token.status == 403,
        "a wrong CSRF token: {}",
        wrong_token.status
    );
    let foreign = browser(
        &cp,
        Method::POST,
        "/api/v1/secrets",
        &[
            cookie_header,
            json_type,
            ("x-csrf-token", &csrf),
            ("origin", "https://evil.example"),
        ],
        &secret,
    )
    .await?;
    ensure!(foreign.status == 403, "another origin: {}", foreign.status);
    ensure!(
        error(&foreign).contains("another origin"),
        "{}",
        error(&foreign)
    );
    let origin = format!("http://{}", cp.http_addr);
    let accepted = browser(
        &cp,
        Method::POST,
        "/api/v1/secrets",
        &[
            cookie_header,
            json_type,
            ("x-csrf-token", &csrf),
            ("origin", &origin),
        ],
        &secret,
    )
    .await?;
    ensure!(
        accepted.status == 200,
        "a change with the token: {} {}",
        accepted.status,
        accepted.text()
    );
    // Nothing of the refused attempts was stored: one version, by alice.
    let versions = cp
        .http_get(
            "/api/v1/secrets/crm/api-key/versions",
            Some(&cp.admin_token),
        )
        .await?
        .json()?;
    let versions = versions
        .as_array()
        .or_else(|| versions["versions"].as_array())
        .context("no versions")?
        .clone();
    ensure!(versions.len() == 1, "versions: {versions:?}");
    ensure!(
        versions[0].to_string().contains("user:alice"),
        "the version is not alice's: {versions:?}"
    );

    // Behind the CSRF check, the role still decides.
    let (viewer_cookie, viewer_csrf) = log_in(&cp, "vera", VIEWER_PASSWORD).await?;
    let denied = browser(
        &cp,
        Method::POST,
        "/api/v1/secrets",
        &[
            ("cookie", &viewer_cookie),
            json_type,
            ("x-csrf-token", &viewer_csrf),
        ],
        &json!({ "name": "crm/other", "value_base64": "eA==" }),
    )
    .await?;
    ensure!(denied.status == 403, "a viewer's change: {}", denied.status);
    ensure!(!error(&denied).contains("CSRF"), "{}", error(&denied));
    // And a token of one session does not pass for another.
    let crossed = browser(
        &cp,
        Method::POST,
        "/api/v1/secrets",
        &[
            ("cookie", &viewer_cookie),
            json_type,
            ("x-csrf-token", &csrf),
        ],
        &json!({ "name": "crm/other", "value_base64": "eA==" }),
    )
    .await?;
    ensure!(crossed.status == 403 && error(&crossed).contains("CSRF"));

    // Logging out ends the session and clears the cookie.
    let out = browser(
        &cp,
        Method::DELETE,
        "/api/v1/session",
        &[cookie_header, ("x-csrf-token", &csrf)],
        &Value::Null,
    )
    .await?;
    ensure!(out.status == 200, "logout: {} {}", out.status, out.text());
    ensure!(header(&out, "set-cookie").contains("Max-Age=0"));
    let after = browser(
        &cp,
        Method::GET,
        "/api/v1/session",
        &[cookie_header],
        &Value::Null,
    )
    .await?;
    ensure!(
        after.status == 401,
        "a session after logout: {}",
        after.status
    );
    let anonymous = browser(&cp, Method::GET, "/api/v1/session", &[], &Value::Null).await?;
    ensure!(anonymous.status == 401, "no cookie: {}", anonymous.status);

    // The first admin has a token, not a password: it opens a session too,
    // a wrong one does not, and logging out only forgets it.
    let bad = browser(
        &cp,
        Method::POST,
        "/api/v1/session",
        &[json_type],
        &json!({ "token": "argosy_nothere_notasecret" }),
    )
    .await?;
    ensure!(
        bad.status == 401,
        "a wrong token: {} {}",
        bad.status,
        bad.text()
    );
    let admin = browser(
        &cp,
        Method::POST,
        "/api/v1/session",
        &[json_type],
        &json!({ "token": cp.admin_token }),
    )
    .await?;
    ensure!(
        admin.status == 200,
        "a token login: {} {}",
        admin.status,
        admin.text()
    );
    let admin_json = admin.json()?;
    ensure!(admin_json["role"] == "admin", "{admin_json}");
    let admin_cookie = header(&admin, "set-cookie");
    let admin_cookie = admin_cookie.split(';').next().unwrap_or("").to_owned();
    let admin_csrf = admin_json["csrf_token"].as_str().unwrap_or("").to_owned();
    let out = browser(
        &cp,
        Method::DELETE,
        "/api/v1/session",
        &[("cookie", &admin_cookie), ("x-csrf-token", &admin_csrf)],
        &Value::Null,
    )
    .await?;
    ensure!(
        out.status == 200,
        "forgetting a token: {} {}",
        out.status,
        out.text()
    );
    let still = cp.http_get("/api/v1/hosts", Some(&cp.admin_token)).await?;
    ensure!(still.status == 200, "logging out revoked the admin token");
    Ok(())
}

async fn tokens_and_join_tokens_over_json(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let admin = Some(cp.admin_token.as_str());
    let created = cp
        .http_post(
            "/api/v1/tokens",
            admin,
            &json!({ "name": "grafana", "role": "viewer", "ttl_seconds": 3600 }).to_string(),
        )
        .await?;
    ensure!(
        created.status == 200,
        "create: {} {}",
        created.status,
        created.text()
    );
    let created = created.json()?;
    let secret = created["secret"].as_str().context("no secret")?.to_owned();
    let id = created["token"]["id"].as_str().context("no id")?.to_owned();
    ensure!(created["token"]["role"] == "viewer", "{created}");
    let hosts = cp.http_get("/api/v1/hosts", Some(&secret)).await?;
    ensure!(hosts.status == 200, "the new token reads: {}", hosts.status);
    let list = cp.http_get("/api/v1/tokens", admin).await?.json()?;
    ensure!(
        list.as_array().is_some_and(|l| l
            .iter()
            .any(|t| t["id"] == id.as_str() && t["name"] == "grafana")),
        "{list}"
    );
    ensure!(
        !list.to_string().contains(&secret),
        "the list shows a secret"
    );
    // A viewer manages no tokens.
    let refused = cp.http_get("/api/v1/tokens", Some(&secret)).await?;
    ensure!(
        refused.status == 403,
        "a viewer lists tokens: {}",
        refused.status
    );
    let bad_role = cp
        .http_post(
            "/api/v1/tokens",
            admin,
            &json!({ "name": "x", "role": "superuser" }).to_string(),
        )
        .await?;
    ensure!(
        bad_role.status == 400,
        "an unknown role: {} {}",
        bad_role.status,
        bad_role.text()
    );
    let revoked = cp
        .http_delete(&format!("/api/v1/tokens/{id}"), admin)
        .await?;
    ensure!(
        revoked.status == 200,
        "revoke: {} {}",
        revoked.status,
        revoked.text()
    );
    let after = cp.http_get("/api/v1/hosts", Some(&secret)).await?;
    ensure!(
        after.status == 401,
        "a revoked token still reads: {}",
        after.status
    );

    let join = cp
        .http_post(
            "/api/v1/join-tokens",
            admin,
            &json!({ "region": "eu-west", "labels": { "role": "db" }, "ttl_seconds": 600, "max_uses": 2 })
                .to_string(),
        )
        .await?;
    ensure!(
        join.status == 200,
        "join token: {} {}",
        join.status,
        join.text()
    );
    let join = join.json()?;
    let join_string = join["join_string"].as_str().context("no join string")?;
    ensure!(join_string.starts_with("argosy://"), "{join}");
    ensure!(
        join["install_command"]
            .as_str()
            .is_some_and(|c| c.contains("install.sh") && c.contains(join_string)),
        "{join}"
    );
    let join_id = join["token"]["id"].as_str().context("no id")?.to_owned();
    let list = cp.http_get("/api/v1/join-tokens", admin).await?.json()?;
    ensure!(
        list.as_array().is_some_and(|l| l
            .iter()
            .any(|t| t["id"] == join_id.as_str() && t["region"] == "eu-west")),
        "{list}"
    );
    let bad = cp
        .http_post(
            "/api/v1/join-tokens",
            admin,
            &json!({ "region": "Not A Region!", "ttl_seconds": 600 }).to_string(),
        )
        .await?;
    ensure!(
        bad.status == 400,
        "a bad region: {} {}",
        bad.status,
        bad.text()
    );
    let revoked = cp
        .http_delete(&format!("/api/v1/join-tokens/{join_id}"), admin)
        .await?;
    ensure!(
        revoked.status == 200,
        "revoke join token: {}",
        revoked.status
    );
    ensure!(revoked.json()?["revoked"] == true, "{}", revoked.text());
    Ok(())
}

async fn live_metrics_stream_as_server_sent_events(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let join = cp.join_string("eu-west", &[], 1).await?;
    let mut agent = Agent::start(env, &join, "1s")?;
    let host_id = agent.wait_enrolled().await?;
    cp.wait_online(&host_id).await?;
    let bearer = format!("Bearer {}", cp.admin_token);
    let path = format!("/api/v1/hosts/{host_id}/metrics/live?metric=cpu,memory_percent");
    let (status, events) = sse_events(
        cp.http_addr,
        &path,
        &[("authorization", &bearer)],
        4,
        argosy_e2e::patience(Duration::from_secs(20)),
    )
    .await?;
    ensure!(status == 200, "the stream: {status}");
    ensure!(events.len() >= 4, "too few live points in time: {events:?}");
    let mut seen = std::collections::BTreeSet::new();
    let mut last: std::collections::HashMap<String, i64> = Default::default();
    for (event, data) in &events {
        ensure!(event == "point", "an event {event}: {data}");
        let point: Value = serde_json::from_str(data)?;
        let metric = point["metric"].as_str().context("no metric")?.to_owned();
        let at = point["timestamp_ms"].as_i64().context("no timestamp")?;
        ensure!(point["avg"].is_number(), "{point}");
        if let Some(before) = last.insert(metric.clone(), at) {
            ensure!(at > before, "points out of order: {events:?}");
        }
        seen.insert(metric);
    }
    ensure!(
        seen.contains("cpu") && seen.contains("memory_percent"),
        "{seen:?}"
    );
    // An unknown metric or host is a plain error, not an empty stream.
    let unknown = cp
        .http_get(
            &format!("/api/v1/hosts/{host_id}/metrics/live?metric=nope"),
            Some(&cp.admin_token),
        )
        .await?;
    ensure!(
        unknown.status == 400,
        "an unknown metric: {}",
        unknown.status
    );
    let nobody = cp
        .http_get(
            "/api/v1/hosts/h-nobody/metrics/live?metric=cpu",
            Some(&cp.admin_token),
        )
        .await?;
    ensure!(nobody.status == 404, "an unknown host: {}", nobody.status);
    let anonymous = cp
        .http_get(
            &format!("/api/v1/hosts/{host_id}/metrics/live?metric=cpu"),
            None,
        )
        .await?;
    ensure!(anonymous.status == 401, "no token: {}", anonymous.status);
    Ok(())
}
