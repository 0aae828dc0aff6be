//! The `argosy` CLI as people use it: `login` saves a private config that
//! later commands use without flags; hosts, metrics and join tokens in
//! tables and JSON; errors are one line on stderr and a non-zero exit.

use anyhow::{Context, ensure};
use argosy_e2e::{Agent, Cli, CliOutput, ControlPlane, TestEnv, both_stores, eventually};

both_stores!(
    login_then_commands,
    join_token_commands,
    errors_are_one_clear_line
);

fn one_line_error(what: &str, out: &CliOutput, words: &[&str]) -> anyhow::Result<()> {
    ensure!(
        !out.status.success(),
        "{what} succeeded; stdout:\n{}",
        out.stdout
    );
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    ensure!(
        lines.len() == 1,
        "{what}: stderr must be one line, got:\n{}",
        out.stderr
    );
    ensure!(lines[0].starts_with("error: "), "{what}: {}", lines[0]);
    for word in words {
        ensure!(
            lines[0].contains(word),
            "{what}: the error does not say {word:?}: {}",
            lines[0]
        );
    }
    ensure!(
        out.stdout.trim().is_empty(),
        "{what}: printed to stdout: {}",
        out.stdout
    );
    Ok(())
}

async fn login_then_commands(env: &TestEnv) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let cp = ControlPlane::start(env, &[]).await?;
    let join = cp.join_string("eu-west", &[("role", "db")], 1).await?;
    let mut agent = Agent::start(env, &join, "1s")?;
    let id = agent.wait_enrolled().await?;
    let host = cp.wait_online(&id).await?;

    let home = env.new_dir("cli-home");
    let cli = Cli::bare(&home);
    let fingerprint = cp.ca_fingerprint.to_string();
    let out = cli
        .run(&[
            "login",
            "--addr",
            &cp.grpc(),
            "--ca-fingerprint",
            &fingerprint,
            "--token",
            &cp.admin_token,
        ])
        .await?
        .ok()?;
    ensure!(
        out.stdout.contains("logged in as \"admin\"") && out.stdout.contains("role admin"),
        "login: {}",
        out.stdout
    );
    let config = cli.config_path();
    let mode = std::fs::metadata(&config)
        .with_context(|| format!("login wrote no {}", config.display()))?
        .permissions()
        .mode();
    ensure!(
        mode & 0o777 == 0o600,
        "the CLI config is mode {:o}, must be 0600",
        mode & 0o777
    );
    let saved = std::fs::read_to_string(&config)?;
    for part in [cp.grpc(), fingerprint.clone(), cp.admin_token.clone()] {
        ensure!(saved.contains(&part), "the config lacks {part}:\n{saved}");
    }

    // From now on: no flags, no environment.
    let table = cli.run(&["hosts", "list"]).await?.ok()?;
    let header = table.stdout.lines().next().unwrap_or_default();
    for column in ["ID", "HOSTNAME", "REGION", "STATUS"] {
        ensure!(header.contains(column), "hosts list header {header:?}");
    }
    let row = table
        .stdout
        .lines()
        .find(|l| l.contains(&id))
        .context("hosts list lacks the host")?;
    ensure!(
        row.contains("eu-west") && row.contains("online") && row.contains(&host.hostname),
        "row {row:?}"
    );

    let json = cli
        .run(&["hosts", "list", "-o", "json"])
        .await?
        .ok()?
        .json()?;
    let hosts = json
        .as_array()
        .context("hosts list -o json is not an array")?;
    ensure!(hosts.len() == 1, "hosts: {json}");
    let listed = &hosts[0];
    ensure!(
        listed["id"] == id.as_str()
            && listed["status"] == "online"
            && listed["region"] == "eu-west",
        "{listed}"
    );
    ensure!(
        listed["labels"]["role"] == "db" && listed["hostname"] == host.hostname.as_str(),
        "{listed}"
    );
    ensure!(
        listed["inventory"]["memory_bytes"].as_u64().unwrap_or(0) > 0,
        "{listed}"
    );
    let filtered = cli
        .run(&["hosts", "list", "--region", "us-east", "-o", "json"])
        .await?
        .ok()?
        .json()?;
    ensure!(
        filtered.as_array().is_some_and(Vec::is_empty),
        "region filter: {filtered}"
    );
    let filtered = cli
        .run(&["hosts", "list", "--label", "role=db", "-o", "json"])
        .await?
        .ok()?
        .json()?;
    ensure!(
        filtered.as_array().map(Vec::len) == Some(1),
        "label filter: {filtered}"
    );

    // By hostname and by id.
    let shown = cli.run(&["hosts", "show", &host.hostname]).await?.ok()?;
    for part in [
        format!("id:            {id}"),
        "region:        eu-west".into(),
        "status:        online".into(),
        "role=db".into(),
    ] {
        ensure!(
            shown.stdout.contains(&part),
            "hosts show lacks {part:?}:\n{}",
            shown.stdout
        );
    }
    let shown = cli
        .run(&["hosts", "show", &id, "-o", "json"])
        .await?
        .ok()?
        .json()?;
    ensure!(
        shown["id"] == id.as_str()
            && shown["latest"]["memory_total_bytes"].as_u64().unwrap_or(0) > 0,
        "{shown}"
    );

    let metrics = eventually("memory_used points from the CLI", || async {
        let json = cli
            .run(&[
                "metrics",
                &host.hostname,
                "--metric",
                "memory_used",
                "--since",
                "5m",
                "-o",
                "json",
            ])
            .await?
            .ok()?
            .json()?;
        ensure!(
            json["points"].as_array().is_some_and(|p| !p.is_empty()),
            "no points yet: {json}"
        );
        Ok(json)
    })
    .await?;
    ensure!(
        metrics["metric"] == "memory_used" && metrics["host_id"] == id.as_str(),
        "{metrics}"
    );
    ensure!(
        metrics["unit"].as_str().is_some_and(|u| !u.is_empty()),
        "no unit: {metrics}"
    );
    let points = metrics["points"].as_array().context("no points")?;
    ensure!(
        points
            .iter()
            .all(|p| p["avg"].as_f64().unwrap_or(0.0) > 0.0),
        "memory_used must be positive: {metrics}"
    );
    let table = cli
        .run(&["metrics", &id, "--metric", "cpu", "--since", "5m"])
        .await?
        .ok()?;
    ensure!(
        table.stdout.starts_with("cpu on ") && table.stdout.contains("AVG"),
        "metrics table:\n{}",
        table.stdout
    );

    let whoami = cli.run(&["token", "whoami"]).await?.ok()?;
    ensure!(
        whoami.stdout.contains("role admin"),
        "whoami: {}",
        whoami.stdout
    );
    Ok(())
}

async fn join_token_commands(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let cli = cp.cli();
    let created = cli
        .run(&[
            "join-token",
            "create",
            "--region",
            "ap-south",
            "--label",
            "tier=edge",
            "--uses",
            "2",
            "--ttl",
            "10m",
            "-o",
            "json",
        ])
        .await?
        .ok()?
        .json()?;
    let token = &created["token"];
    let id = token["id"].as_str().context("no token id")?.to_owned();
    ensure!(
        token["region"] == "ap-south" && token["labels"]["tier"] == "edge",
        "{created}"
    );
    ensure!(
        token["max_uses"] == 2 && token["uses"] == 0 && token["revoked"] == false,
        "{created}"
    );
    let lifetime =
        token["expires_at_ms"].as_i64().unwrap_or(0) - token["created_at_ms"].as_i64().unwrap_or(0);
    ensure!(lifetime == 600_000, "a 10m token lives {lifetime} ms");
    let join = created["join_string"].as_str().context("no join string")?;
    ensure!(
        join.starts_with(&format!("argosy://{}/?token={id}.", cp.grpc()))
            && join.ends_with(&format!("&ca={}", cp.ca_fingerprint)),
        "join string {join}"
    );
    let install = created["install_command"]
        .as_str()
        .context("no install command")?;
    ensure!(
        install.contains(&format!("{}/install.sh", cp.http_url())) && install.contains(join),
        "install command {install}"
    );

    // The human form shows the join string and how to use it.
    let table = cli
        .run(&["join-token", "create", "--region", "eu-west"])
        .await?
        .ok()?;
    ensure!(
        table.stdout.contains("join string (shown once)")
            && table.stdout.contains("argosy://")
            && table.stdout.contains("argosy-agent run --join"),
        "join-token create:\n{}",
        table.stdout
    );

    // The join string works.
    let mut agent = Agent::start(env, join, "1s")?;
    let host_id = agent.wait_enrolled().await?;
    let host = cp.wait_online(&host_id).await?;
    ensure!(
        host.region == "ap-south" && host.labels.get("tier").map(String::as_str) == Some("edge"),
        "{host:?}"
    );

    let list = cli
        .run(&["join-token", "list", "-o", "json"])
        .await?
        .ok()?
        .json()?;
    let tokens = list.as_array().context("join-token list is not an array")?;
    ensure!(tokens.len() == 2, "two tokens: {list}");
    let listed = tokens
        .iter()
        .find(|t| t["id"] == id.as_str())
        .context("the token is not listed")?;
    ensure!(
        listed["uses"] == 1 && listed["created_by"] == "token:admin",
        "{listed}"
    );
    ensure!(
        !list.to_string().contains(join),
        "join-token list shows the secret"
    );

    let out = cli.run(&["join-token", "revoke", &id]).await?.ok()?;
    ensure!(
        out.stdout.contains(&format!("revoked join token {id}")),
        "{}",
        out.stdout
    );
    let table = cli.run(&["join-token", "list"]).await?.ok()?;
    let row = table
        .stdout
        .lines()
        .find(|l| l.contains(&id))
        .context("the revoked token is not listed")?;
    ensure!(
        row.contains("revoked") && row.contains("1/2"),
        "row {row:?}"
    );
    let list = cli
        .run(&["join-token", "list", "-o", "json"])
        .await?
        .ok()?
        .json()?;
    ensure!(
        list.as_array().is_some_and(|t| t
            .iter()
            .any(|t| t["id"] == id.as_str() && t["revoked"] == true)),
        "{list}"
    );

    // Revoked: the second use is refused.
    let mut late = Agent::start(env, join, "1s")?;
    let (status, log) = late.wait_exit(std::time::Duration::from_secs(60)).await?;
    ensure!(
        !status.success() && log.contains("revoked"),
        "a revoked token enrolled a host:\n{log}"
    );

    let unknown = cli.run(&["join-token", "revoke", "nosuchtoken"]).await?;
    one_line_error(
        "revoking an unknown join token",
        &unknown,
        &["no join token", "NotFound"],
    )?;
    let bad = cli
        .run(&["join-token", "create", "--region", "Not A Region!"])
        .await?;
    one_line_error("an invalid region", &bad, &["region", "InvalidArgument"])?;
    Ok(())
}

async fn errors_are_one_clear_line(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let home = env.new_dir("cli-home");
    let bare = Cli::bare(&home);

    let out = bare.run(&["hosts", "list"]).await?;
    one_line_error(
        "no address",
        &out,
        &["no control-plane address", "--addr", "argosy login"],
    )?;

    let out = bare
        .clone()
        .env("ARGOSY_ADDR", &cp.grpc())
        .run(&["hosts", "list"])
        .await?;
    one_line_error(
        "no CA",
        &out,
        &["no way to verify the control plane", "--ca-fingerprint"],
    )?;

    let wrong = format!("sha256:{}", "ab".repeat(32));
    let out = cp
        .cli()
        .env("ARGOSY_CA_FINGERPRINT", &wrong)
        .run(&["hosts", "list"])
        .await?;
    one_line_error("a wrong CA fingerprint", &out, &["pinned fingerprint"])?;

    let out = cp
        .cli()
        .env("ARGOSY_CA_FINGERPRINT", "sha256:xyz")
        .run(&["hosts", "list"])
        .await?;
    one_line_error("a malformed CA fingerprint", &out, &["sha256:xyz"])?;

    let out = cp.cli().run(&["hosts", "show", "nosuchhost"]).await?;
    one_line_error(
        "an unknown host",
        &out,
        &["no host with id or hostname \"nosuchhost\""],
    )?;

    let out = cp.cli().run(&["metrics", "nosuchhost"]).await?;
    one_line_error("metrics of an unknown host", &out, &["nosuchhost"])?;

    // A closed port: connection refused, said in one line.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let out = cp
        .cli()
        .env("ARGOSY_ADDR", &closed.to_string())
        .run(&["hosts", "list"])
        .await?;
    one_line_error("an unreachable control plane", &out, &[])?;

    let out = cp
        .cli()
        .env("ARGOSY_TOKEN", "argosy_nosuch_token")
        .run(&["hosts", "list"])
        .await?;
    one_line_error("a wrong token", &out, &["not valid", "Unauthenticated"])?;

    // A bad login saves nothing.
    let out = bare
        .run(&[
            "login",
            "--addr",
            &cp.grpc(),
            "--ca-fingerprint",
            &cp.ca_fingerprint.to_string(),
            "--token",
            "argosy_bad_token",
        ])
        .await?;
    one_line_error("login with a wrong token", &out, &["not valid"])?;
    ensure!(
        !bare.config_path().exists(),
        "a failed login wrote {}",
        bare.config_path().display()
    );
    Ok(())
}
