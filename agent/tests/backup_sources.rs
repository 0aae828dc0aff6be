//! Backup sources against the real tools: a throwaway PostgreSQL cluster
//! with password authentication (each test starts its own with
//! `initdb`/`pg_ctl`, as `scripts/test` does), host directories with GNU
//! tar, and — for volumes, `docker exec` streaming and PostgreSQL tools
//! run inside a container — the Docker engine `scripts/test` starts
//! (`DOCKER_HOST`; those tests fail, never skip, without one).
//!
//! What is proved: a dump restores into a scratch database with the same
//! rows in every table and the scratch database is gone afterwards; the
//! assertion is run and judged; wrong credentials and an unreachable
//! server fail before any byte is dumped, without echoing the password; a
//! broken dump changes nothing; new-database and in-place restores; tar
//! round trips of paths and volumes with files and bytes checked.

mod support;

use argosy_agent::backup::source::{start_dump, start_restore};
use argosy_agent::backup::{
    ARCHIVE_BYTES, ARCHIVE_FILES, DumpReport, Fed, RestoreInto, RestoreReport, SourceContext,
    SourceError, TableRows,
};
use argosy_agent::docker::{Engine, ExecStdio};
use argosy_proto::v1::backup_source::Kind;
use argosy_proto::v1::{BackupSource, PathSource, PostgresSource, VolumeSource};
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{WEB_V1, docker_cli, docker_cli_quiet, docker_host, free_port, unique};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

/// The superuser's password; it has a space and an `@`, so the URL has
/// to percent-encode it and the agent to decode it.
const PASSWORD: &str = "s3cret p@ss";
const PASSWORD_IN_URL: &str = "s3cret%20p%40ss";

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A PostgreSQL server tool: on PATH, else in Debian's versioned folder.
fn pg_tool(name: &str) -> PathBuf {
    let on_path = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|p| !p.is_empty());
    on_path.map(PathBuf::from).unwrap_or_else(|| {
        let fallback = PathBuf::from("/usr/lib/postgresql/15/bin").join(name);
        assert!(
            fallback.exists(),
            "{name} is not installed: install PostgreSQL 15 (apt-get install postgresql-15)"
        );
        fallback
    })
}

/// Runs a server tool, as the postgres user when we are root (initdb and
/// postgres refuse to run as root).
fn run_as_postgres(tool: &str, args: &[&str]) {
    let mut command = if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(pg_tool(tool));
        command
    } else {
        Command::new(pg_tool(tool))
    };
    let output = command.args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{tool} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A throwaway cluster with scram-sha-256 authentication, stopped and
/// deleted on drop.
struct Cluster {
    root: tempfile::TempDir,
    port: u16,
}

impl Cluster {
    fn start() -> Self {
        let root = tempfile::Builder::new()
            .prefix("argosy-pg-")
            .tempdir_in("/tmp")
            .unwrap();
        let password_file = root.path().join("password");
        std::fs::write(&password_file, PASSWORD).unwrap();
        if running_as_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(root.path())
                .status()
                .unwrap();
            assert!(status.success());
        }
        let data = root.path().join("data");
        run_as_postgres(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                &format!("--pwfile={}", password_file.display()),
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let port = free_port();
        let log = root.path().join("postgres.log");
        run_as_postgres(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
                "-o",
                &format!(
                    "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                    root.path().display()
                ),
            ],
        );
        Self { root, port }
    }

    fn url_with(&self, password: &str, database: &str) -> String {
        format!(
            "postgres://postgres:{password}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    fn url(&self, database: &str) -> String {
        self.url_with(PASSWORD_IN_URL, database)
    }

    fn context(&self, database: &str) -> SourceContext {
        SourceContext {
            connection_url: Some(Zeroizing::new(self.url(database))),
            ..SourceContext::default()
        }
    }

    /// Runs SQL through the host's psql; returns its unaligned output.
    fn psql(&self, database: &str, sql: &str) -> String {
        let output = Command::new("psql")
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", "postgres")
            .env("PGPASSWORD", PASSWORD)
            .env("PGDATABASE", database)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    fn databases(&self) -> Vec<String> {
        self.psql("postgres", "select datname from pg_database order by 1")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// A database holding the awkward cases: quoted names, a dot in a
    /// name, escaped newlines, empty tables, a table without columns,
    /// empty-string rows, partitions, inheritance, a function whose body
    /// holds a `COPY … FROM stdin;` line, a materialized view, a grant.
    fn seed(&self, database: &str) {
        self.psql("postgres", &format!("create database {database}"));
        for statement in [
            "create table customers(id serial primary key, name text, note text)",
            "insert into customers(name, note) select 'c' || g, E'line\\nbreak\\\\x\\ttab' from generate_series(1, 5) g",
            "create table \"Order Items\"(id int, \"weird \"\"col\"\"\" text)",
            "insert into \"Order Items\" values (1, 'a'), (2, ''), (3, null)",
            "create table empty_t(a int)",
            "create table nocols()",
            "insert into nocols default values",
            "insert into nocols default values",
            "create table onecol(t text)",
            "insert into onecol values (''), (''), ('x'), ('\\.')",
            "create schema \"My Schema\"",
            "create table \"My Schema\".\"t.x\"(a int)",
            "insert into \"My Schema\".\"t.x\" select generate_series(1, 1000)",
            "create function f() returns int language plpgsql as $body$\nbegin\nCOPY customers FROM stdin;\nreturn 1;\nend $body$",
            "create table parted(a int) partition by range(a)",
            "create table parted_1 partition of parted for values from (0) to (10)",
            "insert into parted values (1), (2)",
            "create table inh_parent(a int)",
            "create table inh_child() inherits (inh_parent)",
            "insert into inh_parent values (1)",
            "insert into inh_child values (2), (3)",
            "create materialized view mv as select * from customers",
            "do $$ begin if not exists (select 1 from pg_roles where rolname = 'app') then create role app; end if; end $$",
            "grant select on customers to app",
        ] {
            self.psql(database, statement);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.root.path().join("data");
        let mut command = if running_as_root() {
            let mut command = Command::new("runuser");
            command
                .args(["-u", "postgres", "--"])
                .arg(pg_tool("pg_ctl"));
            command
        } else {
            Command::new(pg_tool("pg_ctl"))
        };
        let _ = command
            .args([
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .output();
    }
}

fn seeded_rows() -> TableRows {
    [
        ("My Schema.t.x", 1000),
        ("public.Order Items", 3),
        ("public.customers", 5),
        ("public.empty_t", 0),
        ("public.inh_child", 2),
        ("public.inh_parent", 1),
        ("public.nocols", 2),
        ("public.onecol", 4),
        ("public.parted_1", 2),
    ]
    .into_iter()
    .map(|(table, rows)| (table.to_owned(), rows))
    .collect()
}

fn postgres_source(container: &str) -> BackupSource {
    BackupSource {
        kind: Some(Kind::Postgres(PostgresSource {
            connection: None,
            container: container.to_owned(),
        })),
    }
}

async fn dump(source: &BackupSource, ctx: &SourceContext) -> (Vec<u8>, DumpReport) {
    let mut dump = start_dump(source, ctx).await.unwrap();
    let mut bytes = Vec::new();
    dump.output.read_to_end(&mut bytes).await.unwrap();
    let report = dump.finish.await.unwrap();
    (bytes, report)
}

async fn restore(
    source: &BackupSource,
    into: RestoreInto,
    assertion: Option<&str>,
    ctx: &SourceContext,
    bytes: &[u8],
) -> Result<RestoreReport, SourceError> {
    let mut restore = start_restore(source, into, assertion, ctx).await?;
    // In pieces, as the pipeline writes.
    for chunk in bytes.chunks(7919) {
        restore.input.write_all(chunk).await.unwrap();
    }
    restore.input.shutdown().await.unwrap();
    (restore.finish)(Fed::Whole).await
}

/// Feeds `bytes` (a dump cut short: every statement in it is valid) and
/// abandons the restore, as the pipeline does when the artifact turns out
/// damaged part-way.
async fn abandon_restore(
    source: &BackupSource,
    into: RestoreInto,
    ctx: &SourceContext,
    bytes: &[u8],
) -> SourceError {
    let mut restore = start_restore(source, into, None, ctx).await.unwrap();
    for chunk in bytes.chunks(7919) {
        restore.input.write_all(chunk).await.unwrap();
    }
    restore.input.flush().await.unwrap();
    drop(restore.input);
    (restore.finish)(Fed::Abandoned).await.unwrap_err()
}

fn no_scratch_databases(cluster: &Cluster) {
    let left: Vec<String> = cluster
        .databases()
        .into_iter()
        .filter(|name| name.starts_with("argosy_verify_"))
        .collect();
    assert!(left.is_empty(), "scratch databases left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_dump_restores_into_a_scratch_database_with_every_row() {
    let cluster = Cluster::start();
    cluster.seed("crm");
    let source = postgres_source("");
    let ctx = cluster.context("crm");

    let (bytes, report) = dump(&source, &ctx).await;
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("COPY public.customers (id, name, note) FROM stdin;"));
    assert!(
        text.contains("DROP TABLE IF EXISTS public.customers;"),
        "--clean --if-exists"
    );
    assert!(!text.contains("OWNER TO"), "--no-owner");
    assert!(text.contains("GRANT SELECT ON TABLE public.customers TO app;"));
    assert_eq!(report.tables, seeded_rows());
    assert!(
        report.tool_versions["pg_dump"].starts_with("pg_dump (PostgreSQL) "),
        "{:?}",
        report.tool_versions
    );
    assert!(
        report.tool_versions["postgres"]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit()),
        "{:?}",
        report.tool_versions
    );

    let restored = restore(
        &source,
        RestoreInto::Scratch,
        Some("select count(*) = 5 from public.customers"),
        &ctx,
        &bytes,
    )
    .await
    .unwrap();
    assert_eq!(restored.tables, report.tables);
    assert_eq!(restored.assertion, Some(true));
    assert!(restored.elapsed.as_nanos() > 0);
    no_scratch_databases(&cluster);
    // The source is untouched.
    assert_eq!(cluster.psql("crm", "select count(*) from customers"), "5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_assertions_are_judged_and_the_scratch_database_always_goes() {
    let cluster = Cluster::start();
    cluster.seed("crm");
    let source = postgres_source("");
    let ctx = cluster.context("crm");
    let (bytes, _) = dump(&source, &ctx).await;

    let restored = restore(
        &source,
        RestoreInto::Scratch,
        Some("select count(*) > 100 from public.customers"),
        &ctx,
        &bytes,
    )
    .await
    .unwrap();
    assert_eq!(restored.assertion, Some(false));
    no_scratch_databases(&cluster);

    let error = restore(
        &source,
        RestoreInto::Scratch,
        Some("select id from public.customers"),
        &ctx,
        &bytes,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("must return exactly one row with one boolean"),
        "{error}"
    );
    no_scratch_databases(&cluster);

    let error = restore(
        &source,
        RestoreInto::Scratch,
        Some("select count(*) > 0 from no_such_table"),
        &ctx,
        &bytes,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(error.contains("SQL assertion failed"), "{error}");
    assert!(error.contains("no_such_table"), "{error}");
    assert!(error.contains("verify.sql_assertion"), "{error}");
    no_scratch_databases(&cluster);

    // A restore dropped before it finished still removes its database.
    let mut abandoned = start_restore(&source, RestoreInto::Scratch, None, &ctx)
        .await
        .unwrap();
    abandoned.input.write_all(&bytes[..1000]).await.unwrap();
    drop(abandoned);
    let deadline =
        std::time::Instant::now() + support::patience(std::time::Duration::from_secs(20));
    while cluster
        .databases()
        .iter()
        .any(|name| name.starts_with("argosy_verify_"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the abandoned scratch database was not dropped"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_wrong_credentials_or_server_fail_before_any_byte() {
    let cluster = Cluster::start();
    cluster.seed("crm");
    let source = postgres_source("");

    let wrong = SourceContext {
        connection_url: Some(Zeroizing::new(
            cluster.url_with("not-the-password-xyzzy", "crm"),
        )),
        ..SourceContext::default()
    };
    let error = start_dump(&source, &wrong).await.err().unwrap();
    assert!(matches!(error, SourceError::Connect { .. }), "{error}");
    let text = error.to_string();
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(text.contains("check the user and password"), "{text}");
    assert!(
        text.starts_with("postgres source crm at 127.0.0.1:"),
        "{text}"
    );
    assert!(!text.contains("xyzzy"), "{text}");
    // A restore with the wrong password creates nothing.
    let error = start_restore(&source, RestoreInto::Scratch, None, &wrong)
        .await
        .err()
        .unwrap();
    assert!(matches!(error, SourceError::Connect { .. }), "{error}");
    no_scratch_databases(&cluster);

    let unreachable = SourceContext {
        connection_url: Some(Zeroizing::new(format!(
            "postgres://postgres:{PASSWORD_IN_URL}@127.0.0.1:{}/crm",
            free_port()
        ))),
        ..SourceContext::default()
    };
    let error = start_dump(&source, &unreachable).await.err().unwrap();
    let text = error.to_string();
    assert!(matches!(error, SourceError::Connect { .. }), "{text}");
    assert!(text.contains("check that PostgreSQL is running"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");

    let missing = cluster.context("no_such_db");
    let text = start_dump(&source, &missing)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(text.contains("check the database name"), "{text}");

    // A user who may connect but not read the tables: the check passes,
    // the dump itself fails (a failed job, not an empty artifact).
    cluster.psql(
        "postgres",
        "create role reader login password 'reader-pw-plugh'",
    );
    let reader = SourceContext {
        connection_url: Some(Zeroizing::new(format!(
            "postgres://reader:reader-pw-plugh@127.0.0.1:{}/crm",
            cluster.port
        ))),
        ..SourceContext::default()
    };
    let mut denied = start_dump(&source, &reader).await.unwrap();
    let mut partial = Vec::new();
    denied.output.read_to_end(&mut partial).await.unwrap();
    let text = denied.finish.await.unwrap_err().to_string();
    assert!(
        text.contains("the dump failed: `pg_dump` exited with status 1"),
        "{text}"
    );
    assert!(text.contains("permission denied"), "{text}");
    assert!(text.contains("database owner or a superuser"), "{text}");
    // Nor may it create the scratch database a verification needs.
    let text = start_restore(&source, RestoreInto::Scratch, None, &reader)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(text.contains("restore target preparation failed"), "{text}");
    assert!(text.contains("ALTER ROLE reader CREATEDB"), "{text}");
    assert!(!text.contains("plugh"), "{text}");
    no_scratch_databases(&cluster);

    // No secret delivered at all.
    let text = start_dump(&source, &SourceContext::default())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        text.contains("connection secret was not delivered"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restores_into_a_new_database_and_in_place() {
    let cluster = Cluster::start();
    cluster.seed("crm");
    let source = postgres_source("");
    let ctx = cluster.context("crm");
    let (bytes, report) = dump(&source, &ctx).await;

    let restored = restore(
        &source,
        RestoreInto::Database("crm_copy".into()),
        None,
        &ctx,
        &bytes,
    )
    .await
    .unwrap();
    assert_eq!(restored.tables, report.tables);
    assert_eq!(restored.assertion, None);
    assert!(cluster.databases().contains(&"crm_copy".to_owned()));
    assert_eq!(
        cluster.psql("crm_copy", "select note from customers where id = 1"),
        "line\nbreak\\x\ttab"
    );
    assert_eq!(
        cluster.psql(
            "crm_copy",
            "select has_table_privilege('app', 'public.customers', 'select')"
        ),
        "t",
        "grants are restored"
    );

    // It must be new.
    let error = restore(
        &source,
        RestoreInto::Database("crm_copy".into()),
        None,
        &ctx,
        &bytes,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("database crm_copy already exists"),
        "{error}"
    );
    let error = start_restore(
        &source,
        RestoreInto::Database("bad name;".into()),
        None,
        &ctx,
    )
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(error.contains("use letters, digits"), "{error}");

    // In place: the damage since the backup is undone.
    cluster.psql("crm", "delete from customers where id > 2");
    cluster.psql("crm", "create table added_later(a int)");
    let restored = restore(&source, RestoreInto::InPlace, None, &ctx, &bytes)
        .await
        .unwrap();
    assert_eq!(restored.tables["public.customers"], 5);
    assert_eq!(cluster.psql("crm", "select count(*) from customers"), "5");
    no_scratch_databases(&cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_broken_dump_changes_nothing() {
    let cluster = Cluster::start();
    cluster.seed("crm");
    let source = postgres_source("");
    let ctx = cluster.context("crm");
    let (bytes, _) = dump(&source, &ctx).await;
    // Cut inside the customers' data, then garbage: psql stops on the error.
    let cut = String::from_utf8_lossy(&bytes).find("3\tc3").unwrap();
    let mut broken = bytes[..cut].to_vec();
    broken.extend_from_slice(b"not a row\n\\.\nthis is not sql;\n");
    broken.extend(std::iter::repeat_n(b'-', 4 << 20));

    let error = restore(&source, RestoreInto::Scratch, None, &ctx, &broken)
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, SourceError::ToolFailed { .. }), "{text}");
    assert!(
        text.contains("the restore failed: `psql` exited with status 3"),
        "{text}"
    );
    no_scratch_databases(&cluster);

    let error = restore(
        &source,
        RestoreInto::Database("crm_broken".into()),
        None,
        &ctx,
        &broken,
    )
    .await
    .unwrap_err();
    assert!(matches!(error, SourceError::ToolFailed { .. }), "{error}");
    assert!(
        !cluster.databases().contains(&"crm_broken".to_owned()),
        "a failed restore leaves no new database behind"
    );

    // In place, in one transaction: the source keeps what it had.
    cluster.psql("crm", "delete from customers where id = 5");
    restore(&source, RestoreInto::InPlace, None, &ctx, &broken)
        .await
        .unwrap_err();
    assert_eq!(cluster.psql("crm", "select count(*) from customers"), "4");
    assert_eq!(
        cluster.psql("crm", "select count(*) from \"My Schema\".\"t.x\""),
        "1000"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_restore_abandoned_part_way_keeps_nothing() {
    let cluster = Cluster::start();
    cluster.seed("crm");
    let source = postgres_source("");
    let ctx = cluster.context("crm");
    let (bytes, _) = dump(&source, &ctx).await;
    // Cut right after the customers' data: everything before is valid SQL
    // that psql runs; only the missing end says the artifact was damaged.
    let text = String::from_utf8_lossy(&bytes);
    let customers = text.find("COPY public.customers").unwrap();
    let cut = customers + text[customers..].find("\\.\n").unwrap() + 3;
    let cut_short = &bytes[..cut];

    // A new database: gone by the time the restore's end returns.
    let error = abandon_restore(
        &source,
        RestoreInto::Database("crm_abandoned".into()),
        &ctx,
        cut_short,
    )
    .await;
    assert!(error.to_string().contains("abandoned part-way"), "{error}");
    assert!(
        !cluster.databases().contains(&"crm_abandoned".to_owned()),
        "the database of an abandoned restore is dropped before it reports"
    );
    abandon_restore(&source, RestoreInto::Scratch, &ctx, cut_short).await;
    no_scratch_databases(&cluster);

    // In place: the statements that arrived (the schema dropped and
    // recreated, customers copied) are rolled back, not committed.
    cluster.psql("crm", "delete from customers where id = 5");
    abandon_restore(&source, RestoreInto::InPlace, &ctx, cut_short).await;
    assert_eq!(
        cluster.psql("crm", "select count(*) from customers"),
        "4",
        "the cut dump's customers (5 rows) were not committed"
    );
    assert_eq!(
        cluster.psql("crm", "select count(*) from \"My Schema\".\"t.x\""),
        "1000"
    );
}

fn write_tree(root: &Path) {
    std::fs::create_dir_all(root.join("uploads/2024/01")).unwrap();
    std::fs::write(
        root.join("uploads/2024/01/invoice.pdf"),
        vec![42u8; 100_000],
    )
    .unwrap();
    std::fs::write(root.join("uploads/empty"), "").unwrap();
    std::fs::write(root.join("README"), "files of the crm\n").unwrap();
    std::fs::hard_link(root.join("README"), root.join("README.link")).unwrap();
    std::os::unix::fs::symlink("README", root.join("latest")).unwrap();
}

fn archive_rows(files: u64, bytes: u64) -> TableRows {
    [
        (ARCHIVE_FILES.to_owned(), files),
        (ARCHIVE_BYTES.to_owned(), bytes),
    ]
    .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_round_trips_as_tar() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_tree(&data);
    let source = BackupSource {
        kind: Some(Kind::Path(PathSource {
            path: data.display().to_string(),
        })),
    };
    let scratch = dir.path().join("scratch");
    let ctx = SourceContext {
        scratch_dir: Some(scratch.clone()),
        ..SourceContext::default()
    };
    let (bytes, report) = dump(&source, &ctx).await;
    let expected = archive_rows(3, 100_000 + 17);
    assert_eq!(report.tables, expected);
    assert!(
        report.tool_versions["tar"].contains("tar"),
        "{:?}",
        report.tool_versions
    );

    let restored = restore(&source, RestoreInto::Scratch, None, &ctx, &bytes)
        .await
        .unwrap();
    assert_eq!(restored.tables, expected);
    assert_eq!(
        std::fs::read_dir(&scratch).unwrap().count(),
        0,
        "scratch removed"
    );

    // A truncated archive fails the scratch restore, and is cleaned up.
    let error = restore(
        &source,
        RestoreInto::Scratch,
        None,
        &ctx,
        &bytes[..bytes.len() / 2],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            error,
            SourceError::ToolFailed { .. } | SourceError::Incomplete { .. }
        ),
        "{error}"
    );
    assert_eq!(
        std::fs::read_dir(&scratch).unwrap().count(),
        0,
        "scratch removed"
    );

    let target = dir.path().join("restored/here");
    let restored = restore(
        &source,
        RestoreInto::Directory(target.display().to_string()),
        None,
        &ctx,
        &bytes,
    )
    .await
    .unwrap();
    assert_eq!(restored.tables, expected);
    assert_eq!(
        std::fs::read(target.join("uploads/2024/01/invoice.pdf")).unwrap(),
        vec![42u8; 100_000]
    );
    assert_eq!(
        std::fs::read_link(target.join("latest")).unwrap(),
        PathBuf::from("README")
    );
    let error = restore(
        &source,
        RestoreInto::Directory(target.display().to_string()),
        None,
        &ctx,
        &bytes,
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("is not empty"), "{error}");

    std::fs::remove_file(data.join("README")).unwrap();
    std::fs::remove_file(data.join("README.link")).unwrap();
    restore(&source, RestoreInto::InPlace, None, &ctx, &bytes)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(data.join("README")).unwrap(),
        "files of the crm\n"
    );

    let missing = BackupSource {
        kind: Some(Kind::Path(PathSource {
            path: dir.path().join("nope").display().to_string(),
        })),
    };
    let error = start_dump(&missing, &ctx).await.err().unwrap().to_string();
    assert!(error.contains("No such file or directory"), "{error}");
}

async fn engine() -> Engine {
    Engine::connect(Some(&docker_host())).await.unwrap()
}

/// A container of the test image, removed on drop.
struct TestContainer {
    host: String,
    name: String,
}

impl TestContainer {
    fn run(extra: &[&str]) -> Self {
        let host = docker_host();
        let name = unique("argosy-backup-src");
        let mut args = vec!["run", "-d", "--name", &name];
        args.extend_from_slice(extra);
        args.push(WEB_V1);
        docker_cli(&host, &args);
        Self { host, name }
    }
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        docker_cli_quiet(&self.host, &["rm", "-f", &self.name]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_exec_streams_stdin_stdout_stderr_and_the_exit_code() {
    let container = TestContainer::run(&[]);
    let engine = engine().await;
    let command = |script: &str| vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()];

    let mut streams = engine
        .exec_streaming(
            &container.name,
            &command("cat; echo \"done $GREETING\" >&2; exit 3"),
            vec!["GREETING=hello".into()],
            ExecStdio {
                stdin: true,
                stdout: true,
            },
        )
        .await
        .unwrap();
    // More than the pipes hold, written while it is read.
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut stdin = streams.stdin;
    let written = data.clone();
    let writer = tokio::spawn(async move {
        stdin.write_all(&written).await.unwrap();
        stdin.shutdown().await.unwrap();
    });
    let mut stdout = Vec::new();
    streams.stdout.read_to_end(&mut stdout).await.unwrap();
    let mut stderr = String::new();
    streams.stderr.read_to_string(&mut stderr).await.unwrap();
    writer.await.unwrap();
    assert_eq!(stdout.len(), data.len());
    assert!(stdout == data, "stdout differs from stdin");
    assert_eq!(stderr, "done hello\n");
    assert_eq!(streams.exit_code.await.unwrap(), 3);

    // Without stdout: its output is discarded, the exit code still comes.
    let mut streams = engine
        .exec_streaming(
            &container.name,
            &command("yes | head -c 1000000; exit 0"),
            Vec::new(),
            ExecStdio::default(),
        )
        .await
        .unwrap();
    let mut nothing = Vec::new();
    streams.stdout.read_to_end(&mut nothing).await.unwrap();
    assert!(nothing.is_empty());
    drop(streams.stderr);
    assert_eq!(streams.exit_code.await.unwrap(), 0);

    let error = engine
        .exec_streaming(
            "argosy-no-such-container",
            &command("true"),
            Vec::new(),
            ExecStdio::default(),
        )
        .await
        .err()
        .unwrap();
    assert!(error.is_not_found(), "{error}");
}

/// A Docker volume, removed on drop.
struct TestVolume {
    host: String,
    name: String,
}

impl Drop for TestVolume {
    fn drop(&mut self) {
        docker_cli_quiet(&self.host, &["volume", "rm", "-f", &self.name]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_a_volume_round_trips_as_tar() {
    let host = docker_host();
    let volume = TestVolume {
        host: host.clone(),
        name: unique("argosy-backup-vol"),
    };
    docker_cli(&host, &["volume", "create", &volume.name]);
    let mount = format!("{}:/data", volume.name);
    docker_cli(
        &host,
        &[
            "run",
            "--rm",
            "-v",
            &mount,
            WEB_V1,
            "sh",
            "-c",
            "mkdir -p /data/db && head -c 70000 /dev/zero > /data/db/blob && echo hi > /data/a \
             && chown 1234:5678 /data/a",
        ],
    );
    let engine = engine().await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = SourceContext {
        docker: Some(engine.clone()),
        scratch_dir: Some(dir.path().join("scratch")),
        ..SourceContext::default()
    };
    let source = BackupSource {
        kind: Some(Kind::Volume(VolumeSource {
            name: volume.name.clone(),
        })),
    };
    let (bytes, report) = dump(&source, &ctx).await;
    let expected = archive_rows(2, 70_003);
    assert_eq!(report.tables, expected);
    let restored = restore(&source, RestoreInto::Scratch, None, &ctx, &bytes)
        .await
        .unwrap();
    assert_eq!(restored.tables, expected);

    // In place after losing a file: back, with its numeric owner.
    docker_cli(
        &host,
        &["run", "--rm", "-v", &mount, WEB_V1, "rm", "/data/a"],
    );
    restore(&source, RestoreInto::InPlace, None, &ctx, &bytes)
        .await
        .unwrap();
    let owner = docker_cli(
        &host,
        &[
            "run", "--rm", "-v", &mount, WEB_V1, "stat", "-c", "%u:%g %s", "/data/a",
        ],
    );
    assert_eq!(owner, "1234:5678 3");

    let missing = BackupSource {
        kind: Some(Kind::Volume(VolumeSource {
            name: "argosy-no-such-volume".into(),
        })),
    };
    let error = start_dump(&missing, &ctx).await.err().unwrap().to_string();
    assert!(
        error.contains("Docker has no volume argosy-no-such-volume"),
        "{error}"
    );
    let no_engine = start_dump(&source, &SourceContext::default())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(no_engine.contains("needs the Docker engine"), "{no_engine}");
}

/// PostgreSQL's tools inside a container: the test image is busybox, so
/// the host's PostgreSQL client (and its libraries) are mounted into it
/// read-only, and it shares the host's network to reach the cluster —
/// what a database container with its own tools looks like to the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_postgres_tools_run_inside_the_container() {
    let cluster = Cluster::start();
    cluster.seed("crm");
    let bin = pg_tool("pg_ctl");
    let bin_dir = bin.parent().unwrap().display().to_string();
    let path = format!("PATH=/usr/lib/postgresql/15/bin:{bin_dir}:/usr/bin:/bin");
    let container = TestContainer::run(&[
        "--network",
        "host",
        "-v",
        "/usr:/usr:ro",
        "-v",
        "/usr/lib:/lib:ro",
        "-v",
        "/usr/lib64:/lib64:ro",
        "-e",
        &path,
    ]);
    let ctx = SourceContext {
        connection_url: Some(Zeroizing::new(cluster.url("crm"))),
        docker: Some(engine().await),
        ..SourceContext::default()
    };
    let source = postgres_source(&container.name);
    let (bytes, report) = dump(&source, &ctx).await;
    assert_eq!(report.tables, seeded_rows());
    let restored = restore(
        &source,
        RestoreInto::Scratch,
        Some("select count(*) = 1000 from \"My Schema\".\"t.x\""),
        &ctx,
        &bytes,
    )
    .await
    .unwrap();
    assert_eq!(restored.tables, report.tables);
    assert_eq!(restored.assertion, Some(true));
    no_scratch_databases(&cluster);

    // A container without the tools says so.
    let bare = TestContainer::run(&[]);
    let error = start_dump(&postgres_source(&bare.name), &ctx)
        .await
        .err()
        .unwrap();
    assert!(matches!(error, SourceError::ToolMissing { .. }), "{error}");
    assert!(error.to_string().contains("does not have it"), "{error}");
}
