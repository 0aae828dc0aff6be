//! Things that happen over time: the control plane restarts (agents come
//! back as the same hosts and deliver what they sampled meanwhile), client
//! certificates renew before they expire, and an agent restarts with the
//! identity it enrolled with.

use anyhow::{Context, ensure};
use argosy_e2e::{
    Agent, ControlPlane, TestEnv, both_stores, ensure_online, eventually, eventually_within,
    now_ms, pb,
};
use std::time::Duration;

both_stores!(
    control_plane_restart,
    certificate_renewal,
    agent_restart_keeps_identity
);

async fn control_plane_restart(env: &TestEnv) -> anyhow::Result<()> {
    let mut cp = ControlPlane::start(env, &[]).await?;
    let join = cp.join_string("eu-west", &[("role", "db")], 1).await?;
    let mut agent = Agent::start(env, &join, "1s")?;
    let id = agent.wait_enrolled().await?;
    cp.wait_online(&id).await?;
    // A few seconds of history before the outage.
    eventually("three stored cpu samples", || async {
        let points = cp
            .query_metric(&id, "cpu", now_ms() - 60_000, 0, 1_000)
            .await?
            .points;
        ensure!(points.len() >= 3, "{} points so far", points.len());
        Ok(())
    })
    .await?;

    let down_at = now_ms();
    cp.kill().await?;
    // Down for several agent intervals; the agent keeps sampling.
    tokio::time::sleep(Duration::from_secs(4)).await;
    cp.start_again().await?;
    let up_at = now_ms();

    // The same host, not a new one, online again.
    let host = cp.wait_online(&id).await?;
    let hosts = cp.hosts().await?;
    ensure!(
        hosts.len() == 1 && hosts[0].id == id,
        "after the restart: {hosts:?}"
    );
    ensure!(
        host.region == "eu-west" && host.labels.get("role").map(String::as_str) == Some("db"),
        "{host:?}"
    );
    ensure!(host.inventory.is_some(), "no inventory after the restart");
    ensure!(agent.host_id()? == id, "the agent changed identity");
    ensure!(
        agent.exit_status()?.is_none(),
        "the agent exited during the outage"
    );

    // The samples taken while the control plane was down arrive: no hole in
    // the history beyond the sampling interval (plus slack).
    let window_start = down_at - 3_000;
    let points = eventually("the samples of the outage", || async {
        let points = cp
            .query_metric(&id, "cpu", window_start, 0, 1_000)
            .await?
            .points;
        let last = points.last().map_or(0, |p| p.timestamp_ms);
        ensure!(
            last >= up_at + 2_000,
            "history reaches {last}, not yet past the restart"
        );
        Ok(points)
    })
    .await?;
    let during = points
        .iter()
        .filter(|p| p.timestamp_ms > down_at + 500 && p.timestamp_ms < up_at - 500)
        .count();
    ensure!(
        during >= 2,
        "only {during} samples from the {} ms outage arrived: {points:?}",
        up_at - down_at
    );
    let mut previous = window_start;
    for point in &points {
        let gap = point.timestamp_ms - previous;
        ensure!(
            gap <= 3_500,
            "a {gap} ms hole in the cpu history at {} (outage {down_at}..{up_at}): {points:?}",
            point.timestamp_ms
        );
        previous = point.timestamp_ms;
    }
    // No duplicates: one point per second at most with a 1 s step.
    let mut stamps: Vec<i64> = points.iter().map(|p| p.timestamp_ms).collect();
    stamps.dedup();
    ensure!(
        stamps.len() == points.len(),
        "duplicate buckets: {points:?}"
    );
    Ok(())
}

async fn certificate_renewal(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &["--agent-cert-ttl", "15s"]).await?;
    let join = cp.join_string("eu-west", &[], 1).await?;
    let mut agent = Agent::start(env, &join, "1s")?;
    let id = agent.wait_enrolled().await?;
    let first = cp.wait_online(&id).await?;
    let first_expiry = first.certificate_not_after_ms;
    let lifetime = first_expiry - first.enrolled_at_ms;
    ensure!(
        (14_000..=16_000).contains(&lifetime),
        "a 15 s certificate lives {lifetime} ms"
    );

    // Renewed before it expires…
    let renewed = eventually_within(
        "the certificate to be renewed",
        Duration::from_secs(40),
        || async {
            let host = cp.host(&id).await?;
            ensure!(
                host.certificate_not_after_ms > first_expiry,
                "not renewed yet (expires {first_expiry})"
            );
            Ok(host)
        },
    )
    .await?;
    ensure!(
        now_ms() < first_expiry,
        "renewed only after the first certificate expired"
    );
    ensure!(
        renewed.certificate_not_after_ms > first_expiry,
        "not_after must advance"
    );

    // …and still online once the first certificate is gone.
    let left = first_expiry - now_ms() + 1_500;
    if left > 0 {
        tokio::time::sleep(Duration::from_millis(left.unsigned_abs())).await;
    }
    let host = cp.wait_online(&id).await?;
    ensure!(
        host.last_seen_ms > first_expiry,
        "not heard from since the first certificate expired"
    );
    // A fresh connection must use the renewed certificate: restart the agent.
    agent.restart().await?;
    eventually("the restarted agent to send a new sample", || async {
        let host = cp.host(&id).await?;
        ensure_online(&host)?;
        let latest = host.latest.as_ref().map_or(0, |s| s.timestamp_ms);
        ensure!(latest > first_expiry + 1_500, "no sample since the restart");
        Ok(())
    })
    .await?;
    ensure!(
        agent.host_id()? == id && cp.hosts().await?.len() == 1,
        "the renewal changed the identity"
    );
    let identity: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        agent.state_dir().join("identity.json"),
    )?)?;
    ensure!(
        identity["not_after_ms"]
            .as_i64()
            .is_some_and(|t| t > first_expiry),
        "identity.json keeps the old expiry: {identity}"
    );
    let metrics = cp.http_get("/metrics", None).await?.text();
    let renewals: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("argosy_certificates_renewed_total "))
        .context("no argosy_certificates_renewed_total")?
        .trim()
        .parse()?;
    ensure!(
        renewals >= 1.0,
        "argosy_certificates_renewed_total is {renewals}"
    );
    ensure!(
        !agent.logs().contains("expired at"),
        "the agent reports an expired certificate:\n{}",
        agent.logs()
    );
    Ok(())
}

async fn agent_restart_keeps_identity(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    // One use only: re-enrolling would be refused, so coming back proves
    // the agent reused its identity.
    let join = cp.join_string("eu-west", &[], 1).await?;
    let mut agent = Agent::start(env, &join, "1s")?;
    let id = agent.wait_enrolled().await?;
    let before = cp.wait_online(&id).await?;
    let identity = std::fs::read_to_string(agent.state_dir().join("identity.json"))?;

    // A graceful stop exits 0 and the host goes offline.
    agent.terminate().await?;
    let (status, _) = agent.wait_exit(Duration::from_secs(10)).await?;
    ensure!(
        status.success(),
        "SIGTERM must stop the agent cleanly, got {status}"
    );
    cp.wait_status(&id, pb::HostStatus::Offline).await?;

    // Killed hard and started again (same command line, join string too).
    agent.restart().await?;
    cp.wait_online(&id).await?;
    agent.kill().await?;
    agent.restart().await?;
    let after = eventually("a sample from the restarted agent", || async {
        let host = cp.host(&id).await?;
        ensure_online(&host)?;
        let latest = host.latest.as_ref().map_or(0, |s| s.timestamp_ms);
        ensure!(
            latest > before.latest.as_ref().map_or(0, |s| s.timestamp_ms),
            "no new sample yet"
        );
        Ok(host)
    })
    .await?;
    ensure!(agent.host_id()? == id, "the agent's host id changed");
    ensure!(
        std::fs::read_to_string(agent.state_dir().join("identity.json"))? == identity,
        "identity.json changed on restart"
    );
    let hosts = cp.hosts().await?;
    ensure!(
        hosts.len() == 1 && hosts[0].id == id,
        "restarts created hosts: {hosts:?}"
    );
    ensure!(
        after.enrolled_at_ms == before.enrolled_at_ms,
        "the host was enrolled again"
    );
    ensure!(
        agent.logs().contains("already enrolled"),
        "the agent does not say it reused its identity"
    );
    let tokens = cp
        .join_tokens()
        .list_join_tokens(pb::ListJoinTokensRequest {})
        .await?
        .into_inner()
        .tokens;
    ensure!(
        tokens.len() == 1 && tokens[0].uses == 1,
        "the join token was redeemed again: {tokens:?}"
    );
    Ok(())
}

/// PostgreSQL only: the production store becomes unreachable under a running
/// fleet. The API says so precisely, samples taken meanwhile are not
/// acknowledged, and once the database is back they arrive: nothing the
/// agent sampled is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_loses_no_samples() {
    let env = TestEnv::new(argosy_e2e::Store::Postgres).await;
    let result = database_outage(&env).await;
    env.finish(result);
}

async fn set_database_reachable(env: &TestEnv, reachable: bool) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let url = env
        .database_url()
        .context("a PostgreSQL test has a database URL")?;
    let parsed = url::Url::parse(url)?;
    let name = parsed.path().trim_start_matches('/').to_owned();
    let admin_url = std::env::var(argosy_e2e::env::POSTGRES_URL_VAR)?;
    let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
    sqlx::query(&format!(
        "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS {reachable}"
    ))
    .execute(&mut admin)
    .await?;
    if !reachable {
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(&name)
            .execute(&mut admin)
            .await?;
    }
    Ok(())
}

async fn database_outage(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let join = cp.join_string("eu-west", &[], 1).await?;
    let mut agent = Agent::start(env, &join, "1s")?;
    let id = agent.wait_enrolled().await?;
    cp.wait_online(&id).await?;

    set_database_reachable(env, false).await?;
    let down_at = now_ms();
    let ready = cp.http_get("/readyz", None).await?;
    ensure!(
        ready.status == 503 && ready.text().contains("store"),
        "/readyz during the outage: {} {}",
        ready.status,
        ready.text()
    );
    let refused = cp
        .fleet()
        .query_metrics(pb::QueryMetricsRequest {
            host_id: id.clone(),
            metric: "cpu".into(),
            start_ms: down_at - 60_000,
            end_ms: 0,
            step_ms: 1_000,
        })
        .await
        .err()
        .context("QueryMetrics answered while the database was unreachable")?;
    ensure!(
        refused.code() == tonic::Code::Unavailable && refused.message().contains("store"),
        "QueryMetrics during the outage: {refused:?}"
    );
    // Tokens are checked against the store, so reads fail closed, saying why.
    let refused = cp
        .fleet()
        .list_hosts(pb::ListHostsRequest::default())
        .await
        .err()
        .context("ListHosts answered without checking the token")?;
    ensure!(
        refused.code() == tonic::Code::Unavailable
            && refused
                .message()
                .contains("not currently accepting connections"),
        "ListHosts during the outage: {refused:?}"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    set_database_reachable(env, true).await?;
    let up_at = now_ms();

    // The samples the agent took during the outage arrive once the store is back.
    eventually_within(
        "the outage's samples to be stored",
        Duration::from_secs(90),
        || async {
            let points = cp
                .query_metric(&id, "cpu", down_at - 2_000, up_at, 1_000)
                .await?
                .points;
            let during = points
                .iter()
                .filter(|p| p.timestamp_ms > down_at + 500 && p.timestamp_ms < up_at - 500)
                .count();
            ensure!(
                during >= 3,
                "{during} samples from inside the outage so far"
            );
            Ok(())
        },
    )
    .await?;
    ensure!(
        agent.exit_status()?.is_none(),
        "the agent exited during the outage"
    );
    cp.wait_online(&id).await?;
    Ok(())
}
