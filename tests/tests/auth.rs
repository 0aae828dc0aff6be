//! API authentication and roles: missing, malformed, unknown and revoked
//! tokens are Unauthenticated with a reason; a viewer reads but may not
//! revoke hosts or mint join tokens; an operator may revoke hosts but not
//! manage tokens; `argosy token whoami` tells who the CLI is.

use anyhow::{Context, ensure};
use argosy_e2e::{Agent, ControlPlane, TestEnv, both_stores, pb};

both_stores!(
    missing_and_wrong_tokens,
    roles_are_enforced,
    revoked_api_token,
    whoami
);

/// Checks `result` failed with `code` and a message holding every `words`.
fn refused<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, tonic::Status>,
    code: tonic::Code,
    words: &[&str],
) -> anyhow::Result<()> {
    let status = match result {
        Ok(value) => anyhow::bail!("{what} succeeded but must be refused: {value:?}"),
        Err(status) => status,
    };
    ensure!(
        status.code() == code,
        "{what}: expected {code:?}, got {:?}: {}",
        status.code(),
        status.message()
    );
    for word in words {
        ensure!(
            status.message().contains(word),
            "{what}: the message does not say {word:?}: {}",
            status.message()
        );
    }
    Ok(())
}

/// `argosy token create --role ROLE -o json` → (id, secret).
async fn create_token(
    cp: &ControlPlane,
    name: &str,
    role: &str,
) -> anyhow::Result<(String, String)> {
    let out = cp
        .cli()
        .run(&[
            "token", "create", "--name", name, "--role", role, "-o", "json",
        ])
        .await?
        .ok()?;
    let json = out.json()?;
    ensure!(
        json["token"]["role"] == role && json["token"]["name"] == name,
        "created {json}"
    );
    let id = json["token"]["id"]
        .as_str()
        .context("no token id")?
        .to_owned();
    let secret = json["secret"].as_str().context("no secret")?.to_owned();
    ensure!(
        secret.starts_with("argosy_"),
        "a token secret looks like argosy_…, got {secret:?}"
    );
    Ok((id, secret))
}

async fn missing_and_wrong_tokens(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let list = |token: Option<&str>| {
        let mut fleet = cp.fleet_as(token);
        async move { fleet.list_hosts(pb::ListHostsRequest::default()).await }
    };
    refused(
        "no token",
        list(None).await,
        tonic::Code::Unauthenticated,
        &["no API token", "authorization: Bearer", "--token"],
    )?;
    refused(
        "a malformed token",
        list(Some("hunter2")).await,
        tonic::Code::Unauthenticated,
        &["malformed"],
    )?;
    refused(
        "an unknown token",
        list(Some("argosy_nosuchtoken_0123456789abcdef")).await,
        tonic::Code::Unauthenticated,
        &["not valid"],
    )?;
    // The admin token with a wrong secret is refused too.
    let (id_part, _) = cp
        .admin_token
        .rsplit_once('_')
        .context("admin token shape")?;
    let wrong_secret = format!("{id_part}_wrongsecret");
    refused(
        "a wrong secret",
        list(Some(&wrong_secret)).await,
        tonic::Code::Unauthenticated,
        &["not valid"],
    )?;
    // Every service checks.
    refused(
        "CreateJoinToken without a token",
        cp.join_tokens_as(None)
            .create_join_token(pb::CreateJoinTokenRequest::default())
            .await,
        tonic::Code::Unauthenticated,
        &["no API token"],
    )?;
    refused(
        "WhoAmI without a token",
        cp.api_tokens_as(None).who_am_i(pb::WhoAmIRequest {}).await,
        tonic::Code::Unauthenticated,
        &["no API token"],
    )?;
    // The admin token works, so the refusals above are about the token.
    list(Some(&cp.admin_token))
        .await
        .context("the admin token must work")?;

    // The CLI says the same in one line.
    let out = cp
        .cli()
        .without("ARGOSY_TOKEN")
        .run(&["hosts", "list"])
        .await?;
    ensure!(
        !out.status.success(),
        "hosts list without a token succeeded: {}",
        out.stdout
    );
    ensure!(
        out.stderr.trim().lines().count() == 1
            && out.stderr.contains("no API token")
            && out.stderr.contains("Unauthenticated"),
        "stderr: {}",
        out.stderr
    );
    // /metrics counts the refusals.
    let metrics = cp.http_get("/metrics", None).await?.text();
    let failures: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("argosy_auth_failures_total "))
        .context("no argosy_auth_failures_total")?
        .trim()
        .parse()?;
    ensure!(
        failures >= 7.0,
        "argosy_auth_failures_total is {failures}, at least 7 calls were refused"
    );
    Ok(())
}

async fn roles_are_enforced(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let join = cp.join_string("eu-west", &[], 1).await?;
    let mut agent = Agent::start(env, &join, "1s")?;
    let host_id = agent.wait_enrolled().await?;
    cp.wait_online(&host_id).await?;

    let (_, viewer) = create_token(&cp, "ci-viewer", "viewer").await?;
    // A viewer reads the fleet and metrics…
    let hosts = cp
        .fleet_as(Some(&viewer))
        .list_hosts(pb::ListHostsRequest::default())
        .await?
        .into_inner()
        .hosts;
    ensure!(
        hosts.len() == 1 && hosts[0].id == host_id,
        "the viewer sees {hosts:?}"
    );
    cp.fleet_as(Some(&viewer))
        .query_metrics(pb::QueryMetricsRequest {
            host_id: host_id.clone(),
            metric: "cpu".into(),
            start_ms: argosy_e2e::now_ms() - 60_000,
            ..Default::default()
        })
        .await
        .context("a viewer may query metrics")?;
    let http = cp.http_get("/api/v1/hosts", Some(&viewer)).await?;
    ensure!(
        http.status == 200,
        "the viewer over HTTP: {} {}",
        http.status,
        http.text()
    );
    let me = cp
        .api_tokens_as(Some(&viewer))
        .who_am_i(pb::WhoAmIRequest {})
        .await?
        .into_inner();
    ensure!(
        me.name == "ci-viewer" && me.role == pb::Role::Viewer as i32,
        "viewer whoami {me:?}"
    );

    // …but may not revoke hosts, mint join tokens or manage API tokens.
    refused(
        "RevokeHost as viewer",
        cp.fleet_as(Some(&viewer))
            .revoke_host(pb::RevokeHostRequest {
                id: host_id.clone(),
            })
            .await,
        tonic::Code::PermissionDenied,
        &["ci-viewer", "role viewer", "revoke hosts", "operator"],
    )?;
    refused(
        "CreateJoinToken as viewer",
        cp.join_tokens_as(Some(&viewer))
            .create_join_token(pb::CreateJoinTokenRequest {
                region: "eu-west".into(),
                ..Default::default()
            })
            .await,
        tonic::Code::PermissionDenied,
        &["role viewer", "manage join tokens", "admin"],
    )?;
    refused(
        "ListJoinTokens as viewer",
        cp.join_tokens_as(Some(&viewer))
            .list_join_tokens(pb::ListJoinTokensRequest {})
            .await,
        tonic::Code::PermissionDenied,
        &["admin"],
    )?;
    refused(
        "CreateApiToken as viewer",
        cp.api_tokens_as(Some(&viewer))
            .create_api_token(pb::CreateApiTokenRequest {
                name: "escalate".into(),
                role: pb::Role::Admin as i32,
                ttl_seconds: 0,
                scope: None,
            })
            .await,
        tonic::Code::PermissionDenied,
        &["manage API tokens", "admin"],
    )?;
    ensure!(
        cp.host(&host_id).await?.status == pb::HostStatus::Online as i32,
        "the refused revoke changed the host"
    );
    let out = cp
        .cli()
        .env("ARGOSY_TOKEN", &viewer)
        .run(&["join-token", "create", "--region", "x"])
        .await?;
    ensure!(
        !out.status.success()
            && out.stderr.contains("PermissionDenied")
            && out.stderr.contains("admin"),
        "the CLI as viewer: {out:?}"
    );

    // An operator may revoke hosts, still not mint join tokens.
    let (_, operator) = create_token(&cp, "oncall", "operator").await?;
    refused(
        "CreateJoinToken as operator",
        cp.join_tokens_as(Some(&operator))
            .create_join_token(pb::CreateJoinTokenRequest {
                region: "eu-west".into(),
                ..Default::default()
            })
            .await,
        tonic::Code::PermissionDenied,
        &["role operator", "admin"],
    )?;
    let revoked = cp
        .fleet_as(Some(&operator))
        .revoke_host(pb::RevokeHostRequest {
            id: host_id.clone(),
        })
        .await
        .context("an operator may revoke hosts")?
        .into_inner();
    ensure!(
        revoked.status == pb::HostStatus::Revoked as i32,
        "RevokeHost answered {revoked:?}"
    );
    Ok(())
}

async fn revoked_api_token(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let (id, secret) = create_token(&cp, "deploy-bot", "operator").await?;
    cp.fleet_as(Some(&secret))
        .list_hosts(pb::ListHostsRequest::default())
        .await
        .context("a fresh token must work")?;
    let out = cp.cli().run(&["token", "revoke", &id]).await?.ok()?;
    ensure!(
        out.stdout.contains(&format!("revoked API token {id}")),
        "token revoke printed {}",
        out.stdout
    );
    refused(
        "a revoked token",
        cp.fleet_as(Some(&secret))
            .list_hosts(pb::ListHostsRequest::default())
            .await,
        tonic::Code::Unauthenticated,
        &["deploy-bot", "revoked"],
    )?;
    let http = cp.http_get("/api/v1/hosts", Some(&secret)).await?;
    ensure!(
        http.status == 401 && http.text().contains("revoked"),
        "HTTP with a revoked token: {} {}",
        http.status,
        http.text()
    );
    let list = cp
        .cli()
        .run(&["token", "list", "-o", "json"])
        .await?
        .ok()?
        .json()?;
    let tokens = list.as_array().context("token list is not an array")?;
    let entry = tokens
        .iter()
        .find(|t| t["id"] == id.as_str())
        .context("the revoked token is not listed")?;
    ensure!(
        entry["revoked"] == true && entry["role"] == "operator",
        "listed as {entry}"
    );
    ensure!(
        tokens
            .iter()
            .any(|t| t["name"] == "admin" && t["revoked"] == false),
        "the admin token: {list}"
    );
    // Listing never shows secrets.
    ensure!(
        !list.to_string().contains(&secret),
        "token list shows a secret"
    );
    let table = cp.cli().run(&["token", "list"]).await?.ok()?;
    ensure!(
        table.stdout.contains("deploy-bot") && table.stdout.contains("revoked"),
        "token list: {}",
        table.stdout
    );
    Ok(())
}

async fn whoami(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let out = cp.cli().run(&["token", "whoami"]).await?.ok()?;
    ensure!(
        out.stdout.trim().starts_with("admin (") && out.stdout.trim().ends_with("role admin"),
        "whoami printed {:?}",
        out.stdout
    );
    let json = cp
        .cli()
        .run(&["token", "whoami", "-o", "json"])
        .await?
        .ok()?
        .json()?;
    ensure!(
        json["name"] == "admin" && json["role"] == "admin",
        "whoami -o json: {json}"
    );
    let token_id = json["token_id"].as_str().context("no token_id")?;
    ensure!(
        cp.admin_token.starts_with(&format!("argosy_{token_id}_")),
        "token id {token_id} is not the admin token's"
    );

    let (id, viewer) = create_token(&cp, "grafana", "viewer").await?;
    let json = cp
        .cli()
        .env("ARGOSY_TOKEN", &viewer)
        .run(&["token", "whoami", "-o", "json"])
        .await?
        .ok()?
        .json()?;
    ensure!(
        json["name"] == "grafana" && json["role"] == "viewer" && json["token_id"] == id.as_str(),
        "viewer whoami: {json}"
    );
    Ok(())
}
