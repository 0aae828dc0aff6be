//! Policies end to end: Wasm modules uploaded with `argosy policy add`
//! decide admission through `argosy apply` (limits required, no `:latest`,
//! a maintenance window, a verified backup before a service declaring
//! `pre_deploy_backup`), fill in defaults the stored revision keeps,
//! exclude hosts from placement with the reason in the pending message,
//! and gate canary promotions; every change is audited; hostile modules
//! (WAT) are refused at upload or fail closed naming the policy, while the
//! control plane keeps answering. The example policies are built from
//! `policies/` by scripts/test (ARGOSY_TEST_POLICY_DIR).

use anyhow::{Context, ensure};
use argosy_e2e::docker::{registry, remove_service, unique_name as unique};
use argosy_e2e::{Agent, ControlPlane, TestEnv, both_stores, eventually_within};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

both_stores!(
    admission_through_apply,
    defaults_fill_the_stored_revision,
    window_and_backup_age,
    hostile_modules_fail_closed,
    placement_and_canary_analysis
);

/// The folder scripts/test builds the example policies into.
fn policy_dir() -> PathBuf {
    match std::env::var_os("ARGOSY_TEST_POLICY_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => argosy_e2e::binaries()
            .dir()
            .parent()
            .map(|target| target.join("policies/wasm32-unknown-unknown/release"))
            .unwrap_or_default(),
    }
}

/// An example policy's module, e.g. `require-limits`.
fn example(name: &str) -> PathBuf {
    let path = policy_dir().join(format!("policy_{}.wasm", name.replace('-', "_")));
    assert!(
        path.is_file(),
        "{} is missing: build the example policies with `cargo build --manifest-path policies/Cargo.toml --target wasm32-unknown-unknown --release` (scripts/test does) or set ARGOSY_TEST_POLICY_DIR",
        path.display()
    );
    path
}

/// Writes a WAT module as `.wasm` into `dir`.
fn wat_module(dir: &Path, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, wat::parse_str(text)?)?;
    Ok(path)
}

/// A WAT policy with the ABI whose `argosy_evaluate` runs `body`, and
/// whose data segment at 16 holds `answer`.
fn abi_module(answer: &str, body: &str) -> String {
    let escaped = answer.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        r#"(module
             (memory (export "memory") 1)
             (global $next (mut i32) (i32.const 4096))
             (data (i32.const 16) "{escaped}")
             (func (export "argosy_alloc") (param $len i32) (result i32)
               (local $p i32)
               (local.set $p (global.get $next))
               (global.set $next (i32.add (global.get $next) (local.get $len)))
               (local.get $p))
             (func (export "argosy_evaluate") (param i32 i32) (result i64) {body}))"#
    )
}

/// Answers `answer` (no matter the input).
fn constant(answer: &str) -> String {
    abi_module(
        answer,
        &format!(
            "(i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const {}))",
            answer.len()
        ),
    )
}

struct Fixture {
    cp: ControlPlane,
    dir: PathBuf,
}

impl Fixture {
    async fn new(env: &TestEnv) -> anyhow::Result<Self> {
        Ok(Self {
            cp: ControlPlane::start(env, &[]).await?,
            dir: env.new_dir("policies"),
        })
    }

    async fn cli(&self, args: &[&str]) -> anyhow::Result<argosy_e2e::CliOutput> {
        self.cp.cli().run(args).await
    }

    async fn add(
        &self,
        name: &str,
        hook: &str,
        module: &Path,
        config: Option<&str>,
    ) -> anyhow::Result<argosy_e2e::CliOutput> {
        let mut args = vec![
            "policy",
            "add",
            name,
            "--hook",
            hook,
            "--file",
            module.to_str().unwrap(),
        ];
        let config_path = self.dir.join(format!("{name}-config.json"));
        if let Some(config) = config {
            std::fs::write(&config_path, config)?;
            args.extend(["--config", config_path.to_str().unwrap()]);
        }
        self.cli(&args).await
    }

    fn spec(&self, file: &str, text: &str) -> anyhow::Result<String> {
        let path = self.dir.join(file);
        std::fs::write(&path, text)?;
        Ok(path.to_str().context("a UTF-8 path")?.to_owned())
    }

    async fn apply(
        &self,
        file: &str,
        text: &str,
        extra: &[&str],
    ) -> anyhow::Result<argosy_e2e::CliOutput> {
        let path = self.spec(file, text)?;
        let mut args = vec!["apply", "-f", path.as_str()];
        args.extend_from_slice(extra);
        self.cli(&args).await
    }
}

fn ensure_refused(out: &argosy_e2e::CliOutput, words: &[&str]) -> anyhow::Result<()> {
    ensure!(
        !out.status.success(),
        "accepted but must be refused: {out:?}"
    );
    for word in words {
        ensure!(
            out.stderr.contains(word),
            "the refusal does not say {word:?}: {}",
            out.stderr
        );
    }
    Ok(())
}

async fn admission_through_apply(env: &TestEnv) -> anyhow::Result<()> {
    let f = Fixture::new(env).await?;
    f.add(
        "require-limits",
        "deployment.admit",
        &example("require-limits"),
        None,
    )
    .await?
    .ok()?;
    f.add("no-latest", "deployment.admit", &example("no-latest"), None)
        .await?
        .ok()?;

    // Both policies refuse, each reason naming its policy; a dry run too.
    let bare = "name: web\nimage: nginx\n";
    for extra in [&[][..], &["--dry-run"][..]] {
        let refused = f.apply("bare.yaml", bare, extra).await?;
        ensure_refused(
            &refused,
            &[
                "policies refused web",
                "policy require-limits: set resources.memory",
                "policy require-limits: set resources.cpu",
                "policy no-latest: image nginx is not pinned",
            ],
        )?;
    }
    let services = f
        .cli(&["services", "list", "-o", "json"])
        .await?
        .ok()?
        .json()?;
    ensure!(
        services.as_array().is_some_and(Vec::is_empty),
        "a denied spec was stored: {services}"
    );

    // A compliant spec goes through.
    let good = "name: web\nimage: nginx:1.25\nresources: {cpu: 0.1, memory: 64MiB}\n";
    let applied = f
        .apply("good.yaml", good, &["-o", "json"])
        .await?
        .ok()?
        .json()?;
    ensure!(applied["revision"] == 1, "{applied}");

    // Disabled, a policy no longer decides; enabled again, it does.
    f.cli(&["policy", "disable", "require-limits"])
        .await?
        .ok()?;
    f.cli(&["policy", "disable", "no-latest"]).await?.ok()?;
    f.apply("bare.yaml", bare, &["--dry-run"]).await?.ok()?;
    f.cli(&["policy", "enable", "no-latest"]).await?.ok()?;
    ensure_refused(
        &f.apply("bare.yaml", bare, &["--dry-run"]).await?,
        &["policy no-latest"],
    )?;

    // list and show, versions by sha256.
    let list = f
        .cli(&["policy", "list", "-o", "json"])
        .await?
        .ok()?
        .json()?;
    let names: Vec<&str> = list
        .as_array()
        .context("a list")?
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    ensure!(names == ["no-latest", "require-limits"], "{list}");
    ensure!(
        list[1]["enabled"] == false && list[0]["enabled"] == true,
        "{list}"
    );
    let sha = list[0]["sha256"].as_str().unwrap_or_default().to_owned();
    ensure!(sha.len() == 64, "{list}");

    // `policy test` decides on a given input, with no side effect, and says how long it took.
    let input = f.dir.join("input.json");
    std::fs::write(
        &input,
        r#"{"spec": {"name": "x", "image": "redis:latest", "image_tag": "latest"}}"#,
    )?;
    let tested = f
        .cli(&[
            "policy",
            "test",
            "no-latest",
            "--input",
            input.to_str().unwrap(),
        ])
        .await?
        .ok()?;
    ensure!(
        tested
            .stdout
            .contains("no-latest (deployment.admit version 1): deny in ")
            && tested.stdout.contains(" µs")
            && tested.stdout.contains("redis:latest is not pinned"),
        "{tested:?}"
    );
    let tested = f
        .cli(&[
            "policy",
            "test",
            "no-latest",
            "--input",
            input.to_str().unwrap(),
            "-o",
            "json",
        ])
        .await?
        .ok()?
        .json()?;
    ensure!(
        tested["decision"] == "deny" && tested["elapsed_us"].as_u64().is_some(),
        "{tested}"
    );

    // Only admins change policies; viewers read them, operators test them.
    let viewer = f
        .cli(&[
            "token", "create", "--name", "v", "--role", "viewer", "-o", "json",
        ])
        .await?
        .ok()?
        .json()?;
    let operator = f
        .cli(&[
            "token", "create", "--name", "o", "--role", "operator", "-o", "json",
        ])
        .await?
        .ok()?
        .json()?;
    let viewer = viewer["secret"].as_str().context("secret")?.to_owned();
    let operator = operator["secret"].as_str().context("secret")?.to_owned();
    let as_operator = f.cp.cli().env("ARGOSY_TOKEN", &operator);
    let denied = as_operator.run(&["policy", "disable", "no-latest"]).await?;
    ensure!(
        !denied.status.success() && denied.stderr.contains("role admin"),
        "{denied:?}"
    );
    as_operator
        .run(&[
            "policy",
            "test",
            "no-latest",
            "--input",
            input.to_str().unwrap(),
        ])
        .await?
        .ok()?;
    let as_viewer = f.cp.cli().env("ARGOSY_TOKEN", &viewer);
    as_viewer
        .run(&["policy", "show", "no-latest"])
        .await?
        .ok()?;
    let denied = as_viewer
        .run(&[
            "policy",
            "test",
            "no-latest",
            "--input",
            input.to_str().unwrap(),
        ])
        .await?;
    ensure!(
        !denied.status.success(),
        "a viewer tested a policy: {denied:?}"
    );

    // Over HTTP for the dashboard, through the same handlers.
    let listed = f.cp.http_get("/api/v1/policies", Some(&viewer)).await?;
    ensure!(
        listed.status == 200 && listed.json()?.as_array().map(Vec::len) == Some(2),
        "{}",
        listed.text()
    );
    let refused =
        f.cp.http_post("/api/v1/policies/no-latest/disable", Some(&viewer), "")
            .await?;
    ensure!(
        refused.status == 403,
        "{} {}",
        refused.status,
        refused.text()
    );
    let tested =
        f.cp.http_post(
            "/api/v1/policies/no-latest/test",
            Some(&operator),
            r#"{"spec": {"image": "redis:7", "image_tag": "7"}}"#,
        )
        .await?;
    ensure!(
        tested.status == 200 && tested.json()?["decision"] == "allow",
        "{}",
        tested.text()
    );

    // Removing is audited like every other change, with the module's sha256.
    f.cli(&["policy", "remove", "require-limits"]).await?.ok()?;
    let audit = f
        .cli(&["audit", "list", "-o", "json"])
        .await?
        .ok()?
        .json()?;
    let records = audit.as_array().context("a list")?;
    let has = |action: &str, target: &str, outcome: &str| {
        records.iter().any(|r| {
            r["action"] == action
                && r["target"].as_str().is_some_and(|t| t.starts_with(target))
                && r["outcome"]
                    .as_str()
                    .is_some_and(|o| o.starts_with(outcome))
        })
    };
    for (action, target) in [
        ("policy.add", "require-limits deployment.admit sha256:"),
        ("policy.add", "no-latest deployment.admit sha256:"),
        ("policy.disable", "require-limits"),
        ("policy.enable", "no-latest"),
        ("policy.remove", "require-limits"),
    ] {
        ensure!(
            has(action, target, "started") && has(action, target, "ok"),
            "no {action} {target} in {audit}"
        );
    }
    ensure!(
        has("policy.disable", "no-latest", "denied:"),
        "the operator's refused change is recorded"
    );
    ensure!(
        records
            .iter()
            .any(|r| r["target"].as_str().is_some_and(|t| t.contains(&sha))),
        "the sha256 is in the audit log"
    );
    Ok(())
}

async fn defaults_fill_the_stored_revision(env: &TestEnv) -> anyhow::Result<()> {
    let f = Fixture::new(env).await?;
    f.add(
        "require-limits",
        "deployment.admit",
        &example("require-limits"),
        Some(r#"{"default_memory": "128MiB", "require_cpu": false}"#),
    )
    .await?
    .ok()?;
    let spec = "# comments are kept unless defaults apply\nname: api\nimage: nginx:1.25\n";
    let applied = f
        .apply("api.yaml", spec, &["-o", "json"])
        .await?
        .ok()?
        .json()?;
    ensure!(
        applied["defaults_applied"]
            == serde_json::json!(["resources.memory (policy require-limits)"])
            && applied["warnings"]
                == serde_json::json!([
                    "policy require-limits: no memory limit set: 128MiB filled in"
                ]),
        "{applied}"
    );
    // A dry run reports the same, in words.
    let out = f.apply("api.yaml", spec, &["--dry-run"]).await?.ok()?;
    ensure!(
        out.stdout
            .contains("default filled in: resources.memory (policy require-limits)")
            && out
                .stdout
                .contains("warning: policy require-limits: no memory limit set"),
        "{out:?}"
    );
    let revisions = f
        .cli(&["revisions", "api", "-o", "json"])
        .await?
        .ok()?
        .json()?;
    let text = revisions.to_string();
    ensure!(
        text.contains("128MiB"),
        "the stored revision has the default: {revisions}"
    );
    let show = f
        .cli(&["services", "show", "api", "-o", "json"])
        .await?
        .ok()?
        .json()?;
    ensure!(show["current_revision"] == 1, "{show}");

    // TOML keeps its format.
    let toml = "name = \"worker\"\nimage = \"nginx:1.25\"\n";
    let path = f.spec("worker.toml", toml)?;
    let applied = f
        .cli(&["apply", "-f", &path, "-o", "json"])
        .await?
        .ok()?
        .json()?;
    ensure!(
        applied["defaults_applied"].as_array().map(Vec::len) == Some(1),
        "{applied}"
    );

    // A default that makes the spec invalid is refused, naming the policy.
    f.add(
        "bad-default",
        "deployment.admit",
        &wat_module(
            &f.dir,
            "bad-default",
            &constant(r#"{"allow":true,"defaults":{"replicas":"lots"}}"#),
        )?,
        None,
    )
    .await?
    .ok()?;
    let refused = f
        .apply("other.yaml", "name: other\nimage: nginx:1\n", &[])
        .await?;
    ensure_refused(
        &refused,
        &[
            "replicas (policy bad-default)",
            "make the spec invalid",
            "spec.replicas",
        ],
    )?;
    Ok(())
}

async fn window_and_backup_age(env: &TestEnv) -> anyhow::Result<()> {
    let f = Fixture::new(env).await?;
    // A window that is never now: every production deploy is refused.
    let hour = (argosy_e2e::now_ms() / 3_600_000) % 24;
    let closed = format!(
        r#"{{"production_prefixes": ["prod-"], "days": ["mon","tue","wed","thu","fri","sat","sun"], "start_hour": {s}, "end_hour": {e}}}"#,
        s = (hour + 2) % 24,
        e = (hour + 2) % 24 + 1
    );
    f.add(
        "window",
        "deployment.admit",
        &example("maintenance-window"),
        Some(&closed),
    )
    .await?
    .ok()?;
    let refused = f
        .apply("prod.yaml", "name: prod-web\nimage: nginx:1\n", &[])
        .await?;
    ensure_refused(
        &refused,
        &[
            "policy window: prod-web is a production service: deploy it during the maintenance window",
        ],
    )?;
    f.apply("dev.yaml", "name: dev-web\nimage: nginx:1\n", &[])
        .await?
        .ok()?;
    // A window that is open now lets it through.
    let open = r#"{"production_prefixes": ["prod-"], "days": ["mon","tue","wed","thu","fri","sat","sun"], "start_hour": 0, "end_hour": 24}"#;
    let path = f.dir.join("open.json");
    std::fs::write(&path, open)?;
    f.cli(&[
        "policy",
        "add",
        "window",
        "--hook",
        "deployment.admit",
        "--replace",
        "--file",
        example("maintenance-window").to_str().unwrap(),
        "--config",
        path.to_str().unwrap(),
    ])
    .await?
    .ok()?;
    f.apply("prod.yaml", "name: prod-web\nimage: nginx:1\n", &[])
        .await?
        .ok()?;
    let show = f
        .cli(&["policy", "show", "window", "-o", "json"])
        .await?
        .ok()?
        .json()?;
    ensure!(
        show["version"] == 2 && show["versions"].as_array().map(Vec::len) == Some(2),
        "{show}"
    );

    // A service declaring pre_deploy_backup needs a verified backup
    // younger than 6h; its backup policy exists, but no backup does yet.
    let join = f.cp.join_string("eu-west", &[], 1).await?;
    let mut agent = Agent::start(env, &join, "1s")?;
    let host = agent.wait_enrolled().await?;
    f.cp.wait_online(&host).await?;
    let key = f.dir.join("backup-key");
    std::fs::write(&key, format!("{:032x}", rand::random::<u128>()))?;
    f.cli(&[
        "secret",
        "set",
        "backup/key",
        "--from-file",
        key.to_str().unwrap(),
    ])
    .await?
    .ok()?;
    let source = env.new_dir("backup-source");
    let target = env.new_dir("backup-target");
    let backup_policy = f.spec(
        "crm-nightly.yaml",
        &format!(
            "name: crm-nightly\nhost: {host}\nsource:\n  path:\n    path: {}\nschedule: \"0 0 1 1 *\"\nrpo: 9000h\n\
             destinations:\n  - name: local\n    dir: {}\nencryption: {{ key: {{ secret: backup/key }} }}\nretention: {{ keep_last: 3 }}\n",
            source.display(),
            target.display()
        ),
    )?;
    f.cli(&["backup", "policy", "apply", "-f", &backup_policy])
        .await?
        .ok()?;
    f.add(
        "backup-age",
        "deployment.admit",
        &example("backup-age"),
        Some(r#"{"max_age_hours": 6}"#),
    )
    .await?
    .ok()?;
    let refused = f
        .apply(
            "db.yaml",
            "name: crm-db\nimage: postgres:15\npre_deploy_backup: crm-nightly\n",
            &[],
        )
        .await?;
    ensure_refused(
        &refused,
        &[
            "policy backup-age: crm-db needs a verified backup of crm-nightly before it deploys, and there is none",
        ],
    )?;
    agent.kill().await?;
    // The fact is what decides: a backup 2h old passes, 7h old does not.
    let input = f.dir.join("backup.json");
    for (age, decision) in [(7_200, "allow"), (25_200, "deny")] {
        std::fs::write(
            &input,
            format!(
                r#"{{"spec": {{"name": "crm-db", "pre_deploy_backup": "crm-nightly"}}, "facts": {{"backups": {{"crm-nightly": {{"last_verified_at_ms": 1, "age_seconds": {age}}}}}}}}}"#
            ),
        )?;
        let tested = f
            .cli(&[
                "policy",
                "test",
                "backup-age",
                "--input",
                input.to_str().unwrap(),
                "-o",
                "json",
            ])
            .await?
            .ok()?
            .json()?;
        ensure!(tested["decision"] == decision, "age {age}: {tested}");
    }
    Ok(())
}

async fn hostile_modules_fail_closed(env: &TestEnv) -> anyhow::Result<()> {
    let f = Fixture::new(env).await?;
    let admit = "deployment.admit";
    // Refused at upload: WASI/filesystem/clock imports, the wrong exports, not Wasm.
    for (name, text, words) in [
        (
            "wasi",
            r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
                 (memory (export "memory") 1)
                 (func (export "argosy_alloc") (param i32) (result i32) (i32.const 0))
                 (func (export "argosy_evaluate") (param i32 i32) (result i64) (i64.const 0)))"#,
            &[
                "imports wasi_snapshot_preview1::fd_write",
                "no host functions",
            ][..],
        ),
        (
            "clock",
            r#"(module (import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i64 i32) (result i32)))
                 (memory (export "memory") 1)
                 (func (export "argosy_alloc") (param i32) (result i32) (i32.const 0))
                 (func (export "argosy_evaluate") (param i32 i32) (result i64) (i64.const 0)))"#,
            &["imports wasi_snapshot_preview1::clock_time_get"][..],
        ),
        (
            "wrong-exports",
            r#"(module (memory (export "memory") 1) (func (export "evaluate") (param i32 i32) (result i64) (i64.const 0)))"#,
            &["does not export argosy_alloc"][..],
        ),
    ] {
        let module = wat_module(&f.dir, name, text)?;
        let refused = f.add(name, admit, &module, None).await?;
        ensure_refused(&refused, words)?;
    }
    let junk = f.dir.join("junk.wasm");
    std::fs::write(&junk, b"not a module")?;
    ensure_refused(
        &f.add("junk", admit, &junk, None).await?,
        &["not a valid WebAssembly module"],
    )?;
    let list = f
        .cli(&["policy", "list", "-o", "json"])
        .await?
        .ok()?
        .json()?;
    ensure!(
        list.as_array().is_some_and(Vec::is_empty),
        "a refused module was stored: {list}"
    );

    // Accepted at upload, fail closed when they run, naming the policy and the cause.
    let cases = [
        (
            "spin",
            abi_module("", "(loop $forever (br $forever)) (unreachable)"),
            "policy spin failed: it ran longer than its 10 ms CPU budget (fail closed)",
        ),
        (
            "hog",
            abi_module(
                "",
                "(loop $more (drop (memory.grow (i32.const 16))) (br $more)) (unreachable)",
            ),
            "policy hog failed: it tried to use more than its 16 MiB memory cap (fail closed)",
        ),
        (
            "crash",
            abi_module("", "(unreachable)"),
            "policy crash failed: it trapped: wasm trap: wasm `unreachable` instruction executed (fail closed)",
        ),
        (
            "garbled",
            constant(r#"{"allow":"#),
            "policy garbled failed: its answer is malformed",
        ),
    ];
    for (name, text, _) in &cases {
        f.add(name, admit, &wat_module(&f.dir, name, text)?, None)
            .await?
            .ok()?;
    }
    let spec = "name: web\nimage: nginx:1\n";
    let refused = f.apply("web.yaml", spec, &[]).await?;
    let words: Vec<&str> = cases.iter().map(|(_, _, words)| *words).collect();
    ensure_refused(&refused, &words)?;

    // The control plane stays responsive while a looping policy is
    // evaluated over and over: reads answer promptly throughout.
    for (name, _, _) in &cases[1..] {
        f.cli(&["policy", "disable", name]).await?.ok()?;
    }
    let spec_path = f.spec("web.yaml", spec)?;
    let hammer: Vec<_> = (0..4)
        .map(|_| {
            let cli = f.cp.cli();
            let spec_path = spec_path.clone();
            tokio::spawn(async move {
                for _ in 0..5 {
                    let out = cli.run(&["apply", "-f", &spec_path]).await?;
                    ensure!(
                        !out.status.success() && out.stderr.contains("policy spin failed"),
                        "{out:?}"
                    );
                }
                anyhow::Ok(())
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let started = Instant::now();
        let response =
            f.cp.http_get("/api/v1/policies", Some(&f.cp.admin_token))
                .await?;
        ensure!(response.status == 200, "{}", response.text());
        slowest = slowest.max(started.elapsed());
    }
    for task in hammer {
        task.await??;
    }
    ensure!(
        slowest < Duration::from_secs(1),
        "an API read took {slowest:?} while policies looped"
    );
    Ok(())
}

async fn placement_and_canary_analysis(env: &TestEnv) -> anyhow::Result<()> {
    let f = Fixture::new(env).await?;
    let join = f.cp.join_string("eu-west", &[], 1).await?;
    let mut agent = Agent::start(env, &join, "1s")?;
    let host = agent.wait_enrolled().await?;
    f.cp.wait_online(&host).await?;

    // Placement: a policy excluding every host leaves the allocation pending with its reason.
    f.add(
        "maintenance",
        "placement.filter",
        &wat_module(
            &f.dir,
            "maintenance",
            &constant(r#"{"eligible":false,"reason":"host is in maintenance"}"#),
        )?,
        None,
    )
    .await?
    .ok()?;
    let service = unique("canary");
    let spec = |version: &str, update: &str| {
        format!(
            "name: {service}\nimage: {}/argosy-test/web:{version}\nreplicas: 2\n\
             resources:\n  cpu: 0.05\n  memory: 32MiB\n\
             health_check:\n  http:\n    path: /version\n    port: 8080\n  interval: 1s\n  timeout: 500ms\n  retries: 2\n\
             update:\n{update}",
            registry()
        )
    };
    let rolling =
        "  strategy: rolling\n  max_parallel: 2\n  min_healthy_time: 1s\n  healthy_deadline: 60s\n";
    f.apply("v1.yaml", &spec("v1", rolling), &[]).await?.ok()?;
    let pending = eventually_within("the pending reason", Duration::from_secs(20), || async {
        let show = f
            .cli(&["services", "show", &service, "-o", "json"])
            .await?
            .ok()?
            .json()?;
        let message = show["allocations"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        ensure!(message.contains("excluded by placement policies"), "{show}");
        Ok(message)
    })
    .await?;
    ensure!(
        pending.contains(&format!(
            "{host} (policy maintenance: host is in maintenance)"
        )),
        "{pending}"
    );
    // Without the policy the next placement attempt succeeds.
    f.cli(&["policy", "disable", "maintenance"]).await?.ok()?;
    let deployment = |show: &Value| show["history"].to_string();
    eventually_within("v1 healthy", Duration::from_secs(90), || async {
        let show = f
            .cli(&["services", "show", &service, "-o", "json"])
            .await?
            .ok()?
            .json()?;
        ensure!(show["healthy"] == 2, "{}", deployment(&show));
        Ok(())
    })
    .await?;

    // Canary analysis: the example policy promotes healthy canaries.
    f.add(
        "canary-health",
        "rollout.analyze",
        &example("canary-health"),
        None,
    )
    .await?
    .ok()?;
    let canary = "  strategy: canary\n  canaries: 1\n  steps: [50, 100]\n  min_healthy_time: 1s\n  healthy_deadline: 60s\n  auto_promote: true\n";
    let second = f
        .apply("v2.yaml", &spec("v2", canary), &["-o", "json"])
        .await?
        .ok()?
        .json()?;
    let second_id = second["deployment"]["id"]
        .as_str()
        .context("a deployment")?
        .to_owned();
    eventually_within(
        "the analysed canary succeeded",
        Duration::from_secs(120),
        || async {
            let d = f
                .cli(&["deployments", "show", &second_id, "-o", "json"])
                .await?
                .ok()?
                .json()?;
            ensure!(d["phase"] == "succeeded", "phase {}", d["phase"]);
            Ok(())
        },
    )
    .await?;
    let show = f
        .cli(&["services", "show", &service, "-o", "json"])
        .await?
        .ok()?
        .json()?;
    let history = deployment(&show);
    ensure!(
        history.contains("canary analysis of the canaries: promote (policy canary-health: 1/1 healthy, 0 restart(s))")
            && history.contains("canary analysis of step 1: promote"),
        "{history}"
    );

    // A policy saying roll back reverts the canary, naming itself.
    f.add(
        "veto",
        "rollout.analyze",
        &wat_module(
            &f.dir,
            "veto",
            &constant(r#"{"action":"rollback","reason":"error rate 7%"}"#),
        )?,
        None,
    )
    .await?
    .ok()?;
    let third = f
        .apply("v1-again.yaml", &spec("v1", canary), &["-o", "json"])
        .await?
        .ok()?
        .json()?;
    let third_id = third["deployment"]["id"]
        .as_str()
        .context("a deployment")?
        .to_owned();
    eventually_within(
        "the vetoed canary reverted",
        Duration::from_secs(120),
        || async {
            let d = f
                .cli(&["deployments", "show", &third_id, "-o", "json"])
                .await?
                .ok()?
                .json()?;
            ensure!(d["phase"] == "reverted", "phase {}", d["phase"]);
            Ok(())
        },
    )
    .await?;
    let show = f
        .cli(&["services", "show", &service, "-o", "json"])
        .await?
        .ok()?
        .json()?;
    ensure!(
        deployment(&show)
            .contains("canary analysis of the canaries said roll back: policy veto: error rate 7%"),
        "{}",
        deployment(&show)
    );
    agent.kill().await?;
    remove_service(&service).await;
    Ok(())
}
