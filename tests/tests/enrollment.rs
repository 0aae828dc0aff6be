//! Enrollment refusals: an agent given an expired, revoked, unknown or used
//! up join token, or a join string with the wrong CA fingerprint, exits
//! non-zero with a log line naming the cause, and no host is created.

use anyhow::{Context, ensure};
use argosy_e2e::{Agent, ControlPlane, TestEnv, both_stores, now_ms, pb};
use std::time::Duration;

both_stores!(
    expired_join_token,
    revoked_join_token,
    unknown_join_token,
    single_use_token_used_twice,
    wrong_ca_fingerprint,
);

/// How long a refused agent may take to give up.
const EXIT_PATIENCE: Duration = Duration::from_secs(60);

/// Runs an agent with `join` and checks it exits non-zero with every
/// `words` in its log; returns the log.
async fn refused(env: &TestEnv, join: &str, words: &[&str]) -> anyhow::Result<String> {
    let mut agent = Agent::start(env, join, "1s")?;
    let (status, log) = agent.wait_exit(EXIT_PATIENCE).await?;
    ensure!(
        !status.success(),
        "the agent exited with {status}, not an error; log:\n{log}"
    );
    for word in words {
        ensure!(
            log.contains(word),
            "the agent's log does not say {word:?}:\n{log}"
        );
    }
    ensure!(
        !agent.state_dir().join("identity.json").exists(),
        "a refused agent must not save an identity"
    );
    Ok(log)
}

async fn no_hosts(cp: &ControlPlane) -> anyhow::Result<()> {
    let hosts = cp.hosts().await?;
    ensure!(hosts.is_empty(), "no host may be enrolled, found {hosts:?}");
    Ok(())
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

async fn expired_join_token(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let created = cp
        .join_tokens()
        .create_join_token(pb::CreateJoinTokenRequest {
            region: "eu-west".into(),
            ttl_seconds: 1,
            max_uses: 0,
            ..Default::default()
        })
        .await?
        .into_inner();
    let token = created.token.context("no token in the answer")?;
    ensure!(
        (900..=1_500).contains(&(token.expires_at_ms - token.created_at_ms)),
        "a 1 s token lives {} ms",
        token.expires_at_ms - token.created_at_ms
    );
    // Wait it out (the only sleep: time itself is what is tested).
    let left = token.expires_at_ms - now_ms() + 200;
    if left > 0 {
        tokio::time::sleep(Duration::from_millis(left.unsigned_abs())).await;
    }
    refused(
        env,
        &created.join_string,
        &["expired", &token.id, "argosy join-token create"],
    )
    .await?;
    no_hosts(&cp).await
}

async fn revoked_join_token(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let created = cp.create_join_token("eu-west", &[], 0).await?;
    let id = created.token.context("no token")?.id;
    let revoked = cp
        .join_tokens()
        .revoke_join_token(pb::RevokeJoinTokenRequest { id: id.clone() })
        .await?
        .into_inner();
    ensure!(revoked.revoked, "RevokeJoinToken answered {revoked:?}");
    refused(env, &created.join_string, &["revoked", &id]).await?;
    no_hosts(&cp).await?;
    let tokens = cp
        .join_tokens()
        .list_join_tokens(pb::ListJoinTokensRequest {})
        .await?
        .into_inner()
        .tokens;
    ensure!(
        tokens.iter().all(|t| t.uses == 0),
        "a revoked token was counted as used: {tokens:?}"
    );
    Ok(())
}

async fn unknown_join_token(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    // A token id the control plane never issued.
    let unknown = format!(
        "argosy://{}/?token={}.{}&ca={}",
        cp.grpc(),
        random_hex(5),
        random_hex(16),
        cp.ca_fingerprint
    );
    refused(
        env,
        &unknown,
        &["not valid", "unknown token or wrong secret"],
    )
    .await?;
    // A real token id with the wrong secret is refused the same way.
    let real = cp.create_join_token("eu-west", &[], 0).await?;
    let id = real.token.context("no token")?.id;
    let wrong_secret = format!(
        "argosy://{}/?token={id}.{}&ca={}",
        cp.grpc(),
        random_hex(16),
        cp.ca_fingerprint
    );
    let log = refused(env, &wrong_secret, &["not valid"]).await?;
    ensure!(
        !log.contains(&real.join_string),
        "the log echoes the join string"
    );
    no_hosts(&cp).await
}

async fn single_use_token_used_twice(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let join = cp.join_string("eu-west", &[], 1).await?;
    let mut first = Agent::start(env, &join, "1s")?;
    let id = first.wait_enrolled().await?;
    cp.wait_online(&id).await?;
    refused(env, &join, &["already been used"]).await?;
    let hosts = cp.hosts().await?;
    ensure!(
        hosts.len() == 1 && hosts[0].id == id,
        "only the first agent is a host: {hosts:?}"
    );
    let tokens = cp
        .join_tokens()
        .list_join_tokens(pb::ListJoinTokensRequest {})
        .await?
        .into_inner()
        .tokens;
    ensure!(
        tokens.len() == 1 && tokens[0].uses == 1,
        "the token counts one use: {tokens:?}"
    );
    // The first agent is unaffected.
    ensure!(first.exit_status()?.is_none(), "the enrolled agent exited");
    cp.wait_online(&id).await?;
    Ok(())
}

async fn wrong_ca_fingerprint(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let join = cp.join_string("eu-west", &[], 0).await?;
    let right = cp.ca_fingerprint.to_string();
    let wrong = format!("sha256:{}", random_hex(32));
    ensure!(
        join.contains(&right),
        "the join string {join} does not carry the CA fingerprint {right}"
    );
    let forged = join.replace(&right, &wrong);
    refused(env, &forged, &["pinned fingerprint", &wrong]).await?;
    no_hosts(&cp).await?;
    // The token was never redeemed: the agent stopped at the TLS handshake.
    let tokens = cp
        .join_tokens()
        .list_join_tokens(pb::ListJoinTokensRequest {})
        .await?
        .into_inner()
        .tokens;
    ensure!(
        tokens.iter().all(|t| t.uses == 0),
        "the token was used: {tokens:?}"
    );
    // The same token with the right fingerprint still works.
    let mut agent = Agent::start(env, &join, "1s")?;
    let id = agent.wait_enrolled().await?;
    cp.wait_online(&id).await?;
    Ok(())
}
