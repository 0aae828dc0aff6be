//! The dashboard in a real browser: Debian's Chromium driven by
//! `playwright-core` (the scenarios in `web/e2e/`) against a real control
//! plane serving its embedded dashboard, a real agent and a real Docker
//! engine. One world, the scenarios in turn: log in and see the host;
//! live chart data that grows; apply a service and watch its rollout
//! finish; take and verify a backup; set a secret and find its audit
//! entry; a routed service's weights on the Routing page; a viewer who
//! cannot change anything. Each scenario saves a screenshot under the
//! test output folder (`$CARGO_TARGET_DIR/test-artifacts/dashboard/`).

use anyhow::{Context, ensure};
use argosy_e2e::docker::{remove_service, unique_name, web_spec};
use argosy_e2e::{Agent, ControlPlane, Store, TestEnv};
use std::path::{Path, PathBuf};
use std::time::Duration;

const ADMIN: &str = "ada";
const ADMIN_PASSWORD: &str = "ada-runs-the-whole-fleet";
const VIEWER: &str = "vera";
const VIEWER_PASSWORD: &str = "vera-only-looks-around";

/// `web/` in the repository.
fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../web")
}

/// Where screenshots go: kept after the run, unlike the test folder.
fn artifacts_dir() -> anyhow::Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    let dir = target.join("test-artifacts").join("dashboard");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Runs `node web/e2e/<scenario>.mjs` with `vars`; fails with its output
/// unless it exits 0.
async fn scenario(name: &str, vars: &[(&str, &str)]) -> anyhow::Result<()> {
    let script = web_dir().join("e2e").join(format!("{name}.mjs"));
    let mut command = tokio::process::Command::new("node");
    command
        .arg(&script)
        .env("ARGOSY_SCREENSHOT_DIR", artifacts_dir()?)
        .kill_on_drop(true);
    for (key, value) in vars {
        command.env(key, value);
    }
    let budget = argosy_e2e::patience(Duration::from_secs(400));
    let output = tokio::time::timeout(budget, command.output())
        .await
        .with_context(|| format!("the {name} scenario did not end within {budget:?}"))?
        .with_context(|| {
            format!(
                "cannot run node {}: install Node.js and run `npm ci` in web/",
                script.display()
            )
        })?;
    ensure!(
        output.status.success(),
        "the dashboard scenario {name} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser() {
    let env = TestEnv::new(Store::Sqlite).await;
    let result = dashboard(&env).await;
    env.finish(result);
}

async fn dashboard(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let join = cp.join_string("eu-west", &[("role", "web")], 1).await?;
    let mut agent = Agent::start(env, &join, "1s")?;
    let host_id = agent.wait_enrolled().await?;
    cp.wait_online(&host_id).await?;
    cp.add_user(ADMIN, "admin", ADMIN_PASSWORD).await?;
    cp.add_user(VIEWER, "viewer", VIEWER_PASSWORD).await?;
    let url = cp.http_url();
    let admin = [
        ("ARGOSY_URL", url.as_str()),
        ("ARGOSY_USER", ADMIN),
        ("ARGOSY_PASSWORD", ADMIN_PASSWORD),
    ];
    let with = |extra: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        admin
            .iter()
            .chain(extra)
            .map(|(k, v)| (*k, (*v).to_owned()))
            .collect()
    };
    let run = async |name: &str, vars: Vec<(&'static str, String)>| {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        scenario(name, &vars).await
    };

    run("login", with(&[("ARGOSY_EXPECT_HOSTS", "1")])).await?;
    run("host_charts", with(&[("ARGOSY_HOST_ID", &host_id)])).await?;

    let secret = unique_name("crm/api-key");
    run("secret_audit", with(&[("ARGOSY_SECRET_NAME", &secret)])).await?;

    // A backup policy of a host directory, to a directory, encrypted.
    let source = env.new_dir("app-files");
    std::fs::write(source.join("customers.csv"), "id,name\n1,Ada\n2,Grace\n")?;
    let key = env.root().join("backup-key.txt");
    std::fs::write(&key, format!("backup-key-{:032x}", rand::random::<u128>()))?;
    cp.cli()
        .run(&[
            "secret",
            "set",
            "backup/key",
            "--from-file",
            &key.to_string_lossy(),
        ])
        .await?
        .ok()?;
    let policy = env.root().join("files.yaml");
    std::fs::write(
        &policy,
        format!(
            "name: files\nhost: {host_id}\nsource:\n  path:\n    path: {source}\nschedule: \"0 0 1 1 *\"\n\
             rpo: 9000h\ndestinations:\n  - name: local\n    dir: {dest}\n\
             encryption: {{ key: {{ secret: backup/key }} }}\nretention: {{ keep_last: 5 }}\n",
            source = source.display(),
            dest = env.new_dir("backups").display()
        ),
    )?;
    cp.cli()
        .run(&["backup", "policy", "apply", "-f", &policy.to_string_lossy()])
        .await?
        .ok()?;
    run("backup", with(&[("ARGOSY_BACKUP_POLICY", "files")])).await?;

    let service = unique_name("dash-web");
    let spec = web_spec(&service, "v1", 2);
    let applied = run(
        "apply_service",
        with(&[("ARGOSY_SPEC", &spec), ("ARGOSY_SERVICE", &service)]),
    )
    .await;
    remove_service(&service).await;
    applied?;

    // A routed service deployed through the API, seen on the Routing page.
    let routed = unique_name("dash-routed");
    let spec = format!(
        "{}route:\n  hostnames: [{routed}.apps.test]\n  port: 8080\n",
        web_spec(&routed, "v1", 1)
    );
    let shown = run(
        "routing",
        with(&[
            ("ARGOSY_SPEC", &spec),
            ("ARGOSY_SERVICE", &routed),
            ("ARGOSY_REGION", "eu-west"),
            ("ARGOSY_HOST_ID", &host_id),
        ]),
    )
    .await;
    remove_service(&routed).await;
    shown?;

    run(
        "viewer",
        vec![
            ("ARGOSY_URL", url.clone()),
            ("ARGOSY_VIEWER_USER", VIEWER.to_owned()),
            ("ARGOSY_VIEWER_PASSWORD", VIEWER_PASSWORD.to_owned()),
        ],
    )
    .await?;
    Ok(())
}
