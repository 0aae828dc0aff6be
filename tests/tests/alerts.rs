//! Alerting end to end, on both stores: a real CPU load drives a custom
//! rule to firing and back to resolved, seen by a generic webhook, a
//! Slack-style webhook and a real Prometheus Alertmanager; a killed agent
//! fires the host-offline alert, which resolves when it comes back; a
//! silence holds a notification back until it is lifted; a receiver that
//! answers 500 is retried and its failure is shown in `alert channel
//! list`; a control plane restarted while an alert fires does not notify
//! again; roles apply to the alert API.

use anyhow::{Context, ensure};
use argosy_e2e::alertmanager::Alertmanager;
use argosy_e2e::receiver::{Received, Receiver};
use argosy_e2e::{Agent, ControlPlane, TestEnv, both_stores, eventually, eventually_within};
use serde_json::Value;
use std::time::Duration;

both_stores!(
    cpu_load_fires_and_resolves_through_every_channel,
    host_offline_fires_and_resolves,
    a_silence_holds_the_notification_back_until_lifted,
    a_failing_receiver_is_retried_and_shown,
    a_restart_while_firing_does_not_notify_again,
    rules_are_tuned_listed_and_guarded_by_role,
);

/// Host CPU is shared by every test of this binary: only one drives it at
/// a time, and holds it until its alert has resolved.
static CPU: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn start(env: &TestEnv) -> anyhow::Result<(ControlPlane, Agent, String)> {
    let cp = ControlPlane::start(env, &[]).await?;
    let join = cp.join_string("eu-west", &[("role", "web")], 1).await?;
    let mut agent = Agent::start(env, &join, "1s")?;
    let id = agent.wait_enrolled().await?;
    cp.wait_online(&id).await?;
    Ok((cp, agent, id))
}

/// `argosy ARGS… -o json`, which must succeed.
async fn json(cp: &ControlPlane, args: &[&str]) -> anyhow::Result<Value> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    cp.cli().run(&all).await?.ok()?.json()
}

async fn add_channel(cp: &ControlPlane, name: &str, kind: &str, url: &str) -> anyhow::Result<()> {
    let channel = json(
        cp,
        &[
            "alert",
            "channel",
            "add",
            name,
            "--kind",
            kind,
            "--url",
            url,
            "--min-severity",
            "info",
        ],
    )
    .await?;
    ensure!(
        channel["name"] == name && channel["kind"] == kind,
        "{channel}"
    );
    Ok(())
}

/// A rule that fires as soon as the host reports a sample: it runs
/// processes.
async fn add_always_firing_rule(cp: &ControlPlane, name: &str) -> anyhow::Result<()> {
    json(
        cp,
        &[
            "alert",
            "rule",
            "add",
            "--name",
            name,
            "--metric",
            "processes",
            "--op",
            ">",
            "--threshold",
            "0",
            "--severity",
            "warning",
        ],
    )
    .await?;
    Ok(())
}

/// The alerts of the generic webhook's payloads with `alertname`, as
/// (notification kind, alert).
fn webhook_alerts(received: &[Received], alertname: &str) -> Vec<(String, Value)> {
    received
        .iter()
        .filter(|r| r.status == 200)
        .flat_map(|r| {
            let kind = r.body["kind"].as_str().unwrap_or_default().to_owned();
            r.body["alerts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(move |a| a["alertname"] == alertname)
                .map(move |a| (kind.clone(), a))
        })
        .collect()
}

/// Alerts with `alertname` in `state`, from `argosy alert list`.
async fn listed(cp: &ControlPlane, alertname: &str, state: &str) -> anyhow::Result<Vec<Value>> {
    let all = json(cp, &["alert", "list", "--state", state]).await?;
    Ok(all
        .as_array()
        .context("alert list is not a list")?
        .iter()
        .filter(|a| a["alertname"] == alertname)
        .cloned()
        .collect())
}

async fn wait_listed(cp: &ControlPlane, alertname: &str, state: &str) -> anyhow::Result<Value> {
    eventually_within(
        &format!("{alertname} to be {state}"),
        Duration::from_secs(60),
        || async {
            let found = listed(cp, alertname, state).await?;
            found
                .into_iter()
                .next()
                .with_context(|| format!("no {state} {alertname} yet"))
        },
    )
    .await
}

async fn promtool_check(text: &str) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot run promtool: install it (`apt-get install prometheus`)")?;
    let mut stdin = child.stdin.take().context("no stdin")?;
    stdin.write_all(text.as_bytes()).await?;
    drop(stdin);
    let output = child.wait_with_output().await?;
    ensure!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// Busy loops on every core, killed when dropped.
struct CpuLoad(Vec<tokio::process::Child>);

impl CpuLoad {
    fn start() -> anyhow::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let children = (0..cores)
            .map(|_| {
                tokio::process::Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .kill_on_drop(true)
                    .spawn()
                    .context("cannot start a busy loop")
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self(children))
    }

    async fn stop(mut self) {
        for child in &mut self.0 {
            let _ = child.kill().await;
        }
    }
}

/// A custom CPU rule (> 90 % for 3 s) fires under a real load on every
/// core and resolves when the load stops: the generic webhook, the
/// Slack-style webhook and Alertmanager all hear both; `/metrics` counts
/// it while it fires.
async fn cpu_load_fires_and_resolves_through_every_channel(env: &TestEnv) -> anyhow::Result<()> {
    let (cp, _agent, host) = start(env).await?;
    let am = Alertmanager::start(env).await?;
    let hook = Receiver::start().await?;
    let slack = Receiver::start().await?;
    add_channel(&cp, "ops-hook", "webhook", &hook.url()).await?;
    add_channel(&cp, "ops-chat", "slack", &slack.url()).await?;
    add_channel(&cp, "alertmanager", "alertmanager", &am.url()).await?;
    let rule = json(
        &cp,
        &[
            "alert",
            "rule",
            "add",
            "--name",
            "TestCpuBusy",
            "--metric",
            "cpu",
            "--op",
            ">",
            "--threshold",
            "90",
            "--for",
            "3s",
            "--severity",
            "critical",
            "--region",
            "eu-west",
            "--label",
            "role=web",
        ],
    )
    .await?;
    ensure!(rule["condition"] == "cpu > 90 % for 3s", "{rule}");

    let _exclusive = CPU.lock().await;
    let load = CpuLoad::start()?;
    // On any early return the busy loops die with `load`.
    let firing = wait_listed(&cp, "TestCpuBusy", "firing").await?;
    ensure!(
        firing["labels"]["host"] == host.as_str()
            && firing["labels"]["region"] == "eu-west"
            && firing["severity"] == "critical"
            && firing["value"].as_f64().unwrap_or_default() > 90.0,
        "{firing}"
    );
    let id = firing["id"].as_str().context("no alert id")?.to_owned();
    let metrics =
        eventually("every channel to hear it fire", || async {
            let to_hook = webhook_alerts(&hook.received(), "TestCpuBusy");
            ensure!(
                to_hook
                    .iter()
                    .any(|(kind, a)| kind == "firing" && a["status"] == "firing"),
                "the webhook got {to_hook:?}"
            );
            let texts: Vec<String> = slack
                .received()
                .iter()
                .filter_map(|r| r.body["text"].as_str().map(str::to_owned))
                .collect();
            ensure!(
                texts
                    .iter()
                    .any(|t| t.contains("[FIRING] TestCpuBusy") && t.contains(&id)),
                "the Slack webhook got {texts:?}"
            );
            let in_am = am.active("TestCpuBusy").await?;
            ensure!(
                in_am.iter().any(|a| a["labels"]["host"] == host.as_str()
                    && a["labels"]["severity"] == "critical"
                    && a["annotations"]["argosy_alert_id"] == id.as_str()),
                "Alertmanager holds {in_am:?}"
            );
            let metrics = cp.http_get("/metrics", None).await?.text();
            ensure!(
                metrics.lines().any(|l| l
                    == "argosy_alerts_firing{alertname=\"TestCpuBusy\",severity=\"critical\"} 1"),
                "/metrics does not count it"
            );
            Ok(metrics)
        })
        .await?;
    promtool_check(&metrics).await?;
    ensure!(
        metrics.contains("argosy_alert_evaluation_duration_seconds_count")
            && metrics.contains("argosy_alert_notifications_total{channel=\"ops-hook\"}"),
        "alerting's health is missing from /metrics"
    );

    load.stop().await;
    // Other work on the machine may keep the CPU busy for a while.
    eventually_within(
        "the CPU alert to resolve",
        Duration::from_secs(180),
        || async {
            let resolved = listed(&cp, "TestCpuBusy", "resolved").await?;
            ensure!(
                resolved.iter().any(|a| a["id"] == id.as_str()),
                "still firing"
            );
            Ok(())
        },
    )
    .await?;
    drop(_exclusive);
    eventually("every channel to hear it resolve", || async {
        let to_hook = webhook_alerts(&hook.received(), "TestCpuBusy");
        ensure!(
            to_hook.iter().any(|(kind, a)| kind == "resolved"
                && a["status"] == "resolved"
                && a["id"] == id.as_str()),
            "the webhook got {to_hook:?}"
        );
        ensure!(
            slack.received().iter().any(|r| r.body["text"]
                .as_str()
                .is_some_and(|t| t.contains("[RESOLVED] TestCpuBusy"))),
            "the Slack webhook heard no resolution"
        );
        let in_am = am.active("TestCpuBusy").await?;
        ensure!(in_am.is_empty(), "Alertmanager still holds {in_am:?}");
        Ok(())
    })
    .await?;
    let shown = json(&cp, &["alert", "show", &id]).await?;
    let history: Vec<&str> = shown["history"]
        .as_array()
        .context("no history")?
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    ensure!(
        history.first().is_some_and(|m| m.starts_with("pending"))
            && history.contains(&"firing")
            && history.contains(&"resolved"),
        "history: {history:?}"
    );
    Ok(())
}

/// The built-in HostOffline rule, tuned to 3 s, fires when the agent is
/// killed and resolves when it is back.
async fn host_offline_fires_and_resolves(env: &TestEnv) -> anyhow::Result<()> {
    let (cp, mut agent, host) = start(env).await?;
    let hook = Receiver::start().await?;
    add_channel(&cp, "ops", "webhook", &hook.url()).await?;
    let tuned = json(
        &cp,
        &["alert", "rule", "set", "HostOffline", "--threshold", "3"],
    )
    .await?;
    ensure!(
        tuned["builtin"] == true && tuned["threshold"] == 3.0,
        "{tuned}"
    );

    agent.kill().await?;
    let firing = wait_listed(&cp, "HostOffline", "firing").await?;
    ensure!(firing["labels"]["host"] == host.as_str(), "{firing}");
    eventually("the webhook to hear the host is offline", || async {
        let heard = webhook_alerts(&hook.received(), "HostOffline");
        ensure!(
            heard.iter().any(|(kind, a)| kind == "firing"
                && a["labels"]["host"] == host.as_str()
                && a["severity"] == "critical"),
            "heard {heard:?}"
        );
        Ok(())
    })
    .await?;

    agent.restart().await?;
    cp.wait_online(&host).await?;
    eventually("the webhook to hear the host is back", || async {
        let heard = webhook_alerts(&hook.received(), "HostOffline");
        ensure!(
            heard
                .iter()
                .any(|(kind, a)| kind == "resolved" && a["id"] == firing["id"]),
            "heard {heard:?}"
        );
        Ok(())
    })
    .await?;
    ensure!(listed(&cp, "HostOffline", "firing").await?.is_empty());
    let heard = webhook_alerts(&hook.received(), "HostOffline");
    ensure!(
        heard.len() == 2,
        "one firing and one resolved notification: {heard:?}"
    );
    Ok(())
}

/// A silence on the host's offline alert: it fires but nobody is told
/// until the silence is lifted.
async fn a_silence_holds_the_notification_back_until_lifted(env: &TestEnv) -> anyhow::Result<()> {
    let (cp, mut agent, host) = start(env).await?;
    let hook = Receiver::start().await?;
    add_channel(&cp, "ops", "webhook", &hook.url()).await?;
    json(
        &cp,
        &["alert", "rule", "set", "HostOffline", "--threshold", "2"],
    )
    .await?;
    let matcher = format!("host={host}");
    let silence = json(
        &cp,
        &[
            "alert",
            "silence",
            "--matcher",
            "alertname=HostOffline",
            "--matcher",
            &matcher,
            "--for",
            "2h",
            "--comment",
            "planned maintenance",
        ],
    )
    .await?;
    let silence_id = silence["id"].as_str().context("no silence id")?.to_owned();
    ensure!(silence["active"] == true, "{silence}");
    let listed_silences = json(&cp, &["alert", "silences"]).await?;
    ensure!(
        listed_silences
            .as_array()
            .is_some_and(|s| s.iter().any(|x| x["id"] == silence_id.as_str())),
        "{listed_silences}"
    );

    agent.kill().await?;
    let firing = wait_listed(&cp, "HostOffline", "firing").await?;
    let id = firing["id"].as_str().context("no id")?.to_owned();
    eventually("the silence to show in the alert's history", || async {
        let shown = json(&cp, &["alert", "show", &id]).await?;
        ensure!(
            shown["history"]
                .as_array()
                .is_some_and(|h| h.iter().any(|e| e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(&silence_id)))),
            "{shown}"
        );
        Ok(())
    })
    .await?;
    // Several evaluations and delivery rounds pass: nothing is sent.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let heard = webhook_alerts(&hook.received(), "HostOffline");
    ensure!(heard.is_empty(), "the silence let through {heard:?}");

    json(&cp, &["alert", "unsilence", &silence_id]).await?;
    eventually("the notification held back to be sent", || async {
        let heard = webhook_alerts(&hook.received(), "HostOffline");
        ensure!(
            heard
                .iter()
                .any(|(kind, a)| kind == "firing" && a["id"] == id.as_str()),
            "heard {heard:?}"
        );
        Ok(())
    })
    .await?;
    Ok(())
}

/// A receiver answering 500 is retried with backoff; `alert channel list`
/// shows the failures, the last error and the pending retry; once it
/// answers again, the notification is delivered.
async fn a_failing_receiver_is_retried_and_shown(env: &TestEnv) -> anyhow::Result<()> {
    let (cp, _agent, _host) = start(env).await?;
    let hook = Receiver::start().await?;
    hook.answer_with(500);
    add_channel(&cp, "flaky", "webhook", &hook.url()).await?;
    add_always_firing_rule(&cp, "TestProcesses").await?;

    let channel = eventually_within("the failures to show", Duration::from_secs(60), || async {
        let channels = json(&cp, &["alert", "channel", "list"]).await?;
        let flaky = channels
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == "flaky"))
            .cloned()
            .context("no channel flaky")?;
        ensure!(flaky["failures"].as_u64() >= Some(2), "{flaky}");
        ensure!(flaky["retrying"].as_u64() >= Some(1), "{flaky}");
        ensure!(flaky["delivered"] == 0, "{flaky}");
        // Built-in rules may fire on this machine too (a disk over 90 %)
        // and go to the same channel: the test's own notification is the
        // one that must have been tried again.
        let tried: Vec<_> = hook
            .received()
            .into_iter()
            .filter(|r| r.body["alerts"][0]["alertname"] == "TestProcesses")
            .collect();
        ensure!(
            tried.len() >= 2,
            "the same notification is retried: {tried:?}"
        );
        Ok(flaky)
    })
    .await?;
    let error = channel["last_error"].as_str().unwrap_or_default();
    ensure!(error.contains("HTTP 500"), "last error: {channel}");
    ensure!(
        !error.contains("secret-path"),
        "the webhook's path (a credential for many chats) leaked: {error}"
    );
    ensure!(
        channel["url"]
            .as_str()
            .is_some_and(|u| !u.contains("secret-path")),
        "{channel}"
    );
    let table = cp.cli().run(&["alert", "channel", "list"]).await?.ok()?;
    ensure!(table.stdout.contains("HTTP 500"), "{}", table.stdout);

    // The alert over HTTP, acknowledged there.
    let firing = wait_listed(&cp, "TestProcesses", "firing").await?;
    let id = firing["id"].as_str().context("no id")?;
    let path = format!("/api/v1/alerts/{id}/ack");
    let acked = cp
        .http_post(
            &path,
            Some(&cp.admin_token),
            r#"{"comment": "receiver down"}"#,
        )
        .await?;
    ensure!(acked.status == 200, "{} {}", acked.status, acked.text());
    let shown = cp
        .http_get(&format!("/api/v1/alerts/{id}"), Some(&cp.admin_token))
        .await?
        .json()?;
    ensure!(
        shown["acknowledged"]["comment"] == "receiver down"
            && shown["history"]
                .as_array()
                .is_some_and(|h| h.iter().any(|e| e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("acknowledged by")))),
        "{shown}"
    );

    hook.answer_with(200);
    eventually_within(
        "the retry to get through",
        Duration::from_secs(60),
        || async {
            let channels = json(&cp, &["alert", "channel", "list"]).await?;
            let flaky = &channels[0];
            ensure!(flaky["delivered"].as_u64() >= Some(1), "{flaky}");
            ensure!(flaky["pending"] == 0, "{flaky}");
            Ok(())
        },
    )
    .await?;
    ensure!(
        !webhook_alerts(&hook.received(), "TestProcesses").is_empty(),
        "the delivered notification carries the alert"
    );
    let metrics = cp.http_get("/metrics", None).await?.text();
    ensure!(
        metrics.lines().any(|l| l
            .starts_with("argosy_alert_notification_failures_total{channel=\"flaky\"} ")
            && !l.ends_with(" 0")),
        "/metrics counts no failures"
    );
    Ok(())
}

/// Killed and restarted while an alert fires, the control plane restores
/// its state from the store: the alert keeps its id and nobody is told
/// twice.
async fn a_restart_while_firing_does_not_notify_again(env: &TestEnv) -> anyhow::Result<()> {
    let (mut cp, _agent, host) = start(env).await?;
    let hook = Receiver::start().await?;
    add_channel(&cp, "ops", "webhook", &hook.url()).await?;
    add_always_firing_rule(&cp, "TestProcesses").await?;
    let firing = wait_listed(&cp, "TestProcesses", "firing").await?;
    eventually("the first notification", || async {
        ensure!(!webhook_alerts(&hook.received(), "TestProcesses").is_empty());
        Ok(())
    })
    .await?;
    let acked = json(
        &cp,
        &[
            "alert",
            "ack",
            firing["id"].as_str().context("no id")?,
            "--comment",
            "on it",
        ],
    )
    .await?;
    ensure!(acked["acknowledged"]["comment"] == "on it", "{acked}");

    cp.restart().await?;
    cp.wait_online(&host).await?;
    // Many evaluations after the restart, with the host reporting again.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let again = wait_listed(&cp, "TestProcesses", "firing").await?;
    ensure!(
        again["id"] == firing["id"],
        "the same alert, not a new one: {again}"
    );
    ensure!(again["acknowledged"]["by"].is_string(), "{again}");
    let heard = webhook_alerts(&hook.received(), "TestProcesses");
    ensure!(
        heard.len() == 1,
        "notified again after the restart: {heard:?}"
    );
    Ok(())
}

/// Built-in rules are listed and can be tuned and disabled but not
/// removed; rules come from a file; viewers read, operators change.
async fn rules_are_tuned_listed_and_guarded_by_role(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let rules = json(&cp, &["alert", "rule", "list"]).await?;
    let names: Vec<&str> = rules
        .as_array()
        .context("not a list")?
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    for builtin in [
        "HostCpuHigh",
        "HostMemoryHigh",
        "HostDiskFull",
        "HostOffline",
        "AllocationUnhealthy",
        "AllocationRestartLoop",
        "AllocationOomKilled",
        "DeploymentFailed",
        "RouteUnserved",
        "AgentCertificateExpiring",
    ] {
        ensure!(names.contains(&builtin), "{builtin} missing from {names:?}");
    }
    let removed = cp
        .cli()
        .run(&["alert", "rule", "remove", "HostCpuHigh"])
        .await?;
    ensure!(
        !removed.status.success() && removed.stderr.contains("disable it"),
        "{}",
        removed.stderr
    );
    let disabled = json(&cp, &["alert", "rule", "disable", "HostCpuHigh"]).await?;
    ensure!(disabled["enabled"] == false, "{disabled}");

    let dir = env.new_dir("rules");
    let file = dir.join("rules.yaml");
    std::fs::write(
        &file,
        "rules:\n  - name: WebLoad\n    metric: load\n    op: '>'\n    threshold: 8\n    for: 10m\n    labels: {role: web}\n  - name: HostDiskFull\n    metric: disk\n    op: '>'\n    threshold: 95\n    severity: critical\n",
    )?;
    let applied = json(
        &cp,
        &[
            "alert",
            "rule",
            "apply",
            "-f",
            file.to_str().context("path")?,
        ],
    )
    .await?;
    ensure!(
        applied["created"][0]["name"] == "WebLoad"
            && applied["updated"][0]["name"] == "HostDiskFull",
        "{applied}"
    );
    ensure!(
        applied["updated"][0]["builtin"] == true && applied["updated"][0]["threshold"] == 95.0,
        "{applied}"
    );
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "rules:\n  - name: X\n    metric: temperature\n    threshold: 1\n",
    )?;
    let refused = cp
        .cli()
        .run(&[
            "alert",
            "rule",
            "apply",
            "-f",
            bad.to_str().context("path")?,
        ])
        .await?;
    ensure!(
        !refused.status.success() && refused.stderr.contains("unknown metric \"temperature\""),
        "{}",
        refused.stderr
    );

    let viewer = json(
        &cp,
        &["token", "create", "--name", "grafana", "--role", "viewer"],
    )
    .await?;
    let secret = viewer["secret"].as_str().context("no secret")?;
    let listed = cp.http_get("/api/v1/alerts/rules", Some(secret)).await?;
    ensure!(
        listed.status == 200,
        "a viewer reads rules: {}",
        listed.status
    );
    let denied = cp
        .http_post(
            "/api/v1/alerts/rules",
            Some(secret),
            r#"{"name": "Nope", "metric": "cpu", "threshold": 1}"#,
        )
        .await?;
    ensure!(
        denied.status == 403,
        "a viewer may not add rules: {} {}",
        denied.status,
        denied.text()
    );
    let added = cp
        .http_post(
            "/api/v1/alerts/rules",
            Some(&cp.admin_token),
            r#"{"name": "ViaHttp", "metric": "memory", "op": ">=", "threshold": 95, "for": "1m"}"#,
        )
        .await?;
    ensure!(added.status == 200, "{} {}", added.status, added.text());
    ensure!(
        added.json()?["condition"] == "memory_percent >= 95 % for 1m",
        "{}",
        added.text()
    );
    let anonymous = cp.http_get("/api/v1/alerts", None).await?;
    ensure!(anonymous.status == 401, "{}", anonymous.status);
    let enabled = argosy_e2e::api::http_request(
        cp.http_addr,
        http::Method::PATCH,
        "/api/v1/alerts/rules/HostCpuHigh",
        Some(&cp.admin_token),
        br#"{"enabled": true, "for": "10m"}"#.to_vec(),
    )
    .await?;
    ensure!(
        enabled.status == 200,
        "{} {}",
        enabled.status,
        enabled.text()
    );
    let enabled = enabled.json()?;
    ensure!(
        enabled["enabled"] == true && enabled["for_seconds"] == 600,
        "{enabled}"
    );
    Ok(())
}
