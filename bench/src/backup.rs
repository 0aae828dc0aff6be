//! Backup throughput and restore time: a PostgreSQL database of at least
//! 1 GiB (`pgbench -i -s SCALE`, plus a table of random bytes so that
//! compression and encryption have work to do) backed up by `argosy backup run --wait`
//! through a real control plane and agent to a `dir` destination, side by
//! side with the plain pipeline `pg_dump -Fc -Z0 | zstd -3 > file` on the
//! same data in the same run; the agent's resident memory is sampled from
//! /proc every 50 ms during the backup. Then `argosy backup verify --wait`
//! (fetch, hash, decrypt, decompress, restore into a scratch database,
//! count every table, drop it) against `zstd -dc file | pg_restore -d NEW`.
//!
//! The plain side compresses once, with zstd, like Argosy does
//! (`-Z0`: pg_dump's own gzip would make it slower, not fairer). Argosy's
//! side also encrypts (XChaCha20-Poly1305) and hashes the stream.

use crate::procfs::{mib, rss_bytes};
use crate::spawn::{binary, control_plane};
use anyhow::{Context, bail, ensure};
use argosy_proto::v1::{CreateJoinTokenRequest, join_token_service_client::JoinTokenServiceClient};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::process::Command;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// An admin URL of a PostgreSQL server to create the benchmark
    /// databases on, e.g. postgres://postgres@127.0.0.1:55432/postgres.
    #[arg(long, env = "ARGOSY_BENCH_POSTGRES_URL")]
    postgres_url: String,
    /// `pgbench -i` scale: about 15 MiB per unit (70 ≈ 1.05 GiB).
    #[arg(long, default_value_t = 70)]
    scale: u32,
    /// MiB of random bytes added in a table `bench_random` (pgbench's data
    /// compresses about 150:1, which would leave compression and
    /// encryption out of the measurement).
    #[arg(long, default_value_t = 256)]
    random_mib: u32,
    /// Rounds of both sides (alternating which goes first); the table
    /// shows medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// zstd level on both sides.
    #[arg(long, default_value_t = 3)]
    level: i32,
    /// Keep the benchmark database afterwards (to run again without
    /// `pgbench -i`): pass its name to `--reuse` next time.
    #[arg(long)]
    keep: bool,
    /// Use this existing database instead of creating one.
    #[arg(long)]
    reuse: Option<String>,
    /// The agent's log level (to stderr).
    #[arg(long, default_value = "warn")]
    agent_log_level: String,
}

/// How often the agent's RSS is read during a backup.
const RSS_SAMPLE: Duration = Duration::from_millis(50);

/// `url` with its database set to `database`.
fn database_url(admin: &str, database: &str) -> anyhow::Result<String> {
    let (base, _) = admin
        .rsplit_once('/')
        .context("the PostgreSQL URL has no /database part")?;
    Ok(format!("{base}/{database}"))
}

/// Runs `bash -c script` with `pipefail`; fails with its stderr.
async fn sh(script: &str) -> anyhow::Result<String> {
    let output = Command::new("bash")
        .args(["-o", "pipefail", "-c", script])
        .output()
        .await
        .with_context(|| format!("cannot run bash -c {script}"))?;
    ensure!(
        output.status.success(),
        "`{script}` failed with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `psql -Atc sql` against `url`; its output, trimmed.
async fn psql(url: &str, sql: &str) -> anyhow::Result<String> {
    let output = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .output()
        .await
        .context("cannot run psql: install the PostgreSQL client tools")?;
    ensure!(
        output.status.success(),
        "psql {sql:?} failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Quotes `text` for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The real CLI pointed at the benchmark's control plane.
struct Cli {
    argosy: std::path::PathBuf,
    env: Vec<(String, String)>,
    home: tempfile::TempDir,
}

impl Cli {
    async fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new(&self.argosy)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("HOME", self.home.path())
            .env(
                "ARGOSY_CLI_CONFIG",
                self.home.path().join("cli.toml").as_os_str(),
            )
            .output()
            .await?;
        ensure!(
            output.status.success(),
            "argosy {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    async fn json(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        Ok(serde_json::from_str(&self.run(&all).await?)?)
    }
}

fn num(value: &serde_json::Value) -> u64 {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

/// Samples the RSS of `pid` until `stop`; the peak lands in `peak`.
fn sample_rss(
    pid: u32,
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            if let Some(rss) = rss_bytes(pid) {
                peak.fetch_max(rss, Ordering::SeqCst);
            }
            tokio::time::sleep(RSS_SAMPLE).await;
        }
    })
}

/// Megabytes (10^6) of database per second.
fn rate(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9)
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let admin = args.postgres_url.clone();
    let source = match &args.reuse {
        Some(name) => name.clone(),
        None => {
            let name = format!("bench_backup_{}", std::process::id());
            psql(&admin, &format!("CREATE DATABASE {name}")).await?;
            let url = database_url(&admin, &name)?;
            println!("creating {name}: pgbench -i -s {} …", args.scale);
            let started = Instant::now();
            sh(&format!(
                "pgbench -i -q -s {} {} 2>&1",
                args.scale,
                shell_quote(&url)
            ))
            .await?;
            if args.random_mib > 0 {
                psql(
                    &url,
                    &format!(
                        "CREATE EXTENSION IF NOT EXISTS pgcrypto; \
                         CREATE TABLE bench_random (id integer PRIMARY KEY, payload bytea NOT NULL); \
                         INSERT INTO bench_random SELECT g, gen_random_bytes(1024) \
                         FROM generate_series(1, {}) g; \
                         DROP EXTENSION pgcrypto;",
                        args.random_mib * 1024
                    ),
                )
                .await?;
            }
            println!("  loaded in {:.0} s", started.elapsed().as_secs_f64());
            name
        }
    };
    let source_url = database_url(&admin, &source)?;
    let db_bytes: u64 = psql(&source_url, "select pg_database_size(current_database())")
        .await?
        .parse()?;
    println!(
        "database {source}: {:.2} GiB",
        db_bytes as f64 / (1u64 << 30) as f64
    );
    let work = tempfile::Builder::new()
        .prefix("argosy-bench-backup-")
        .tempdir_in("/var/tmp")?;
    let result = measure(&args, &admin, &source_url, db_bytes, work.path()).await;
    if args.keep || args.reuse.is_some() {
        println!("kept the database {source}");
    } else {
        psql(
            &admin,
            &format!("DROP DATABASE IF EXISTS {source} WITH (FORCE)"),
        )
        .await?;
    }
    result
}

/// A control plane, an agent on this machine and the policy `bench`.
struct Setup {
    _cp: crate::spawn::ControlPlane,
    agent: tokio::process::Child,
    agent_pid: u32,
    cli: Cli,
}

async fn start_argosy(args: &Args, source_url: &str, work: &Path) -> anyhow::Result<Setup> {
    let cp = control_plane(&[]).await?;
    let (channel, bearer) = cp.api()?;
    let join = JoinTokenServiceClient::with_interceptor(channel, bearer)
        .create_join_token(CreateJoinTokenRequest {
            region: "bench".into(),
            labels: Default::default(),
            ttl_seconds: 600,
            max_uses: 1,
        })
        .await?
        .into_inner()
        .join_string;
    let state = work.join("agent-state");
    let agent = Command::new(binary("argosy-agent")?)
        .args(["run", "--join", &join, "--interval", "10s"])
        .arg("--state-dir")
        .arg(&state)
        .env("ARGOSY_LOG_LEVEL", &args.agent_log_level)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the agent")?;
    let agent_pid = agent.id().context("the agent exited at once")?;
    let host_id = wait_host_id(&state).await?;
    let cli = Cli {
        argosy: binary("argosy")?,
        env: vec![
            ("ARGOSY_ADDR".into(), cp.grpc.clone()),
            ("ARGOSY_TOKEN".into(), cp.token.clone()),
            ("ARGOSY_CA_FINGERPRINT".into(), cp.fingerprint.clone()),
        ],
        home: tempfile::tempdir()?,
    };
    let secrets = work.join("secrets");
    std::fs::create_dir_all(&secrets)?;
    for (name, value) in [
        ("bench/pg-url", source_url.to_owned()),
        (
            "bench/key",
            format!("{:032x}", u128::from(std::process::id()) * 7919),
        ),
    ] {
        let file = secrets.join(name.replace('/', "_"));
        std::fs::write(&file, value)?;
        cli.run(&[
            "secret",
            "set",
            name,
            "--from-file",
            &file.display().to_string(),
        ])
        .await?;
    }
    let policy = work.join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "name: bench\nhost: {host_id}\nsource:\n  postgres:\n    connection: {{ secret: bench/pg-url }}\n\
             schedule: \"0 0 1 1 *\"\nrpo: 9000h\nretention: {{ keep_last: 1 }}\n\
             destinations:\n  - name: local\n    dir: {}\n\
             compression: {{ level: {} }}\nencryption: {{ key: {{ secret: bench/key }} }}\n",
            work.join("argosy-dir").display(),
            args.level
        ),
    )?;
    cli.run(&[
        "backup",
        "policy",
        "apply",
        "-f",
        &policy.display().to_string(),
    ])
    .await?;
    // The host must be online before the first run.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(Setup {
        _cp: cp,
        agent,
        agent_pid,
        cli,
    })
}

/// What one round measured, both sides.
struct Round {
    plain_dump: Duration,
    plain_bytes: u64,
    argosy_dump: Duration,
    pipeline_ms: u64,
    artifact_bytes: u64,
    backup_peak_rss: u64,
    plain_restore: Duration,
    argosy_verify: Duration,
    restore_ms: u64,
    verify_peak_rss: u64,
}

/// `pg_dump -Fc -Z0 | zstd` into `file`; how long it took.
async fn plain_dump(args: &Args, source_url: &str, file: &Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    sh(&format!(
        "pg_dump -Fc -Z0 -d {} | zstd -q -f -{} -o {}",
        shell_quote(source_url),
        args.level,
        shell_quote(&file.display().to_string())
    ))
    .await?;
    Ok(started.elapsed())
}

/// `zstd -dc file | pg_restore` into a new database, dropped afterwards.
async fn plain_restore(admin: &str, file: &Path) -> anyhow::Result<Duration> {
    let target = format!("bench_restore_{}", std::process::id());
    psql(admin, &format!("CREATE DATABASE {target}")).await?;
    let started = Instant::now();
    let restored = sh(&format!(
        "zstd -dc {} | pg_restore -d {}",
        shell_quote(&file.display().to_string()),
        shell_quote(&database_url(admin, &target)?)
    ))
    .await;
    let elapsed = started.elapsed();
    psql(
        admin,
        &format!("DROP DATABASE IF EXISTS {target} WITH (FORCE)"),
    )
    .await?;
    restored?;
    Ok(elapsed)
}

/// `argosy ARGS` while the agent's RSS is sampled; (time, peak RSS).
async fn sampled(setup: &Setup, args: &[&str]) -> anyhow::Result<(Duration, u64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = sample_rss(setup.agent_pid, stop.clone(), peak.clone());
    let started = Instant::now();
    let ran = setup.cli.run(args).await;
    let elapsed = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    sampler.await?;
    ran?;
    Ok((elapsed, peak.load(Ordering::SeqCst)))
}

async fn round(
    args: &Args,
    admin: &str,
    source_url: &str,
    plain_file: &Path,
    setup: &Setup,
    plain_first: bool,
) -> anyhow::Result<Round> {
    let (plain_dump, (argosy_dump, backup_peak_rss)) = if plain_first {
        let plain = plain_dump(args, source_url, plain_file).await?;
        (
            plain,
            sampled(setup, &["backup", "run", "bench", "--wait"]).await?,
        )
    } else {
        let argosy = sampled(setup, &["backup", "run", "bench", "--wait"]).await?;
        (plain_dump(args, source_url, plain_file).await?, argosy)
    };
    let backups = setup.cli.json(&["backup", "list", "bench"]).await?;
    let backup = backups
        .as_array()
        .and_then(|b| b.iter().find(|b| b["state"] == "ok"))
        .cloned()
        .context("no successful backup after `backup run --wait`")?;
    let id = backup["id"].as_str().unwrap_or_default().to_owned();
    let (argosy_verify, verify_peak_rss) =
        sampled(setup, &["backup", "verify", &id, "--wait"]).await?;
    let shown = setup.cli.json(&["backup", "show", &id]).await?;
    if shown["verify_state"] != "ok" {
        bail!("the verification did not succeed: {shown}");
    }
    Ok(Round {
        plain_dump,
        plain_bytes: file_size(plain_file),
        argosy_dump,
        pipeline_ms: num(&backup["manifest"]["total_ms"]),
        artifact_bytes: num(&backup["manifest"]["artifact_bytes"]),
        backup_peak_rss,
        plain_restore: plain_restore(admin, plain_file).await?,
        argosy_verify,
        restore_ms: num(&shown["restore_ms"]),
        verify_peak_rss,
    })
}

fn median_of(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

async fn measure(
    args: &Args,
    admin: &str,
    source_url: &str,
    db_bytes: u64,
    work: &Path,
) -> anyhow::Result<()> {
    let mut setup = start_argosy(args, source_url, work).await?;
    let idle_rss = rss_bytes(setup.agent_pid).unwrap_or(0);
    let plain_file = work.join("plain.dump.zst");
    let mut rounds = Vec::new();
    for n in 0..args.rounds {
        // Alternating which side goes first evens out a machine whose load
        // drifts.
        let r = round(args, admin, source_url, &plain_file, &setup, n % 2 == 0).await?;
        println!(
            "round {}: backup plain {:.1} s, argosy {:.1} s (peak RSS {:.1} MiB); restore plain {:.1} s, verify {:.1} s",
            n + 1,
            r.plain_dump.as_secs_f64(),
            r.argosy_dump.as_secs_f64(),
            mib(r.backup_peak_rss),
            r.plain_restore.as_secs_f64(),
            r.argosy_verify.as_secs_f64()
        );
        rounds.push(r);
    }
    let _ = setup.agent.kill().await;

    let med = |f: &dyn Fn(&Round) -> f64| median_of(rounds.iter().map(f).collect());
    let secs = |d: Duration| d.as_secs_f64();
    let plain_s = med(&|r| secs(r.plain_dump));
    let argosy_s = med(&|r| secs(r.argosy_dump));
    let ratio = med(&|r| secs(r.plain_dump) / secs(r.argosy_dump).max(1e-9));
    let restore_ratio = med(&|r| secs(r.argosy_verify) / secs(r.plain_restore).max(1e-9));
    let peak = rounds.iter().map(|r| r.backup_peak_rss).max().unwrap_or(0);
    let verify_peak = rounds.iter().map(|r| r.verify_peak_rss).max().unwrap_or(0);
    println!();
    println!(
        "database: {:.2} GiB (pg_database_size), zstd level {}, {} cores, median of {} rounds",
        db_bytes as f64 / (1u64 << 30) as f64,
        args.level,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        rounds.len()
    );
    println!();
    println!(
        "| | plain `pg_dump -Fc -Z0 \\| zstd` | `argosy backup run --wait` (dir, encrypted) | Argosy / plain |"
    );
    println!("| --- | --- | --- | --- |");
    println!(
        "| backup time | {plain_s:.1} s | {argosy_s:.1} s (agent pipeline {:.1} s) | |",
        med(&|r| r.pipeline_ms as f64 / 1000.0)
    );
    println!(
        "| throughput (database bytes / s) | {:.1} MB/s | {:.1} MB/s | {ratio:.2}× |",
        rate(db_bytes, Duration::from_secs_f64(plain_s)),
        rate(db_bytes, Duration::from_secs_f64(argosy_s))
    );
    println!(
        "| stored size | {:.0} MB | {:.0} MB | |",
        med(&|r| r.plain_bytes as f64 / 1e6),
        med(&|r| r.artifact_bytes as f64 / 1e6)
    );
    println!(
        "| agent RSS during the backups (idle before) | | peak {:.1} MiB ({:.1} MiB) | |",
        mib(peak),
        mib(idle_rss)
    );
    println!(
        "| restore | `zstd -dc \\| pg_restore -d NEW`: {:.1} s | `argosy backup verify --wait`: {:.1} s (restore {:.1} s) | {restore_ratio:.2}× time |",
        med(&|r| secs(r.plain_restore)),
        med(&|r| secs(r.argosy_verify)),
        med(&|r| r.restore_ms as f64 / 1000.0)
    );
    println!(
        "| agent RSS during the verifications | | peak {:.1} MiB | |",
        mib(verify_peak)
    );
    Ok(())
}

/// Waits for the agent to enroll; its host id.
async fn wait_host_id(state: &Path) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(state.join("identity.json")) {
            let identity: serde_json::Value = serde_json::from_str(&text)?;
            if let Some(id) = identity["host_id"].as_str() {
                return Ok(id.to_owned());
            }
        }
        if Instant::now() > deadline {
            bail!("the agent did not enroll within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
