//! One test's world: its store (SQLite in the control plane's data folder,
//! or a fresh PostgreSQL database), a temporary folder for every process it
//! starts, and the list of their logs, printed when the test fails.

use anyhow::Context;
use sqlx::Connection;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The variable naming the PostgreSQL server PostgreSQL tests use.
pub const POSTGRES_URL_VAR: &str = "ARGOSY_TEST_POSTGRES_URL";

/// Which store the control plane runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// The embedded default: SQLite in the control plane's data folder.
    Sqlite,
    /// A fresh database on the server named by `ARGOSY_TEST_POSTGRES_URL`.
    Postgres,
}

/// A PostgreSQL database made for one test.
#[derive(Debug)]
struct Database {
    admin_url: String,
    name: String,
    url: String,
}

/// Everything one scenario owns; see the crate docs.
pub struct TestEnv {
    store: Store,
    root: Option<tempfile::TempDir>,
    database: Option<Database>,
    logs: Mutex<Vec<(String, PathBuf)>>,
    next_dir: AtomicUsize,
}

impl std::fmt::Debug for TestEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestEnv")
            .field("store", &self.store)
            .field("root", &self.root())
            .finish_non_exhaustive()
    }
}

fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

async fn create_database() -> anyhow::Result<Database> {
    let admin_url = std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| {
        panic!(
            "{POSTGRES_URL_VAR} is not set: run scripts/test or set ARGOSY_TEST_POSTGRES_URL \
             (e.g. postgres://postgres@127.0.0.1:55432/postgres); PostgreSQL tests never skip"
        )
    });
    let name = format!("e2e_{:016x}", rand::random::<u64>());
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .with_context(|| format!("cannot connect to {}", redact(&admin_url)))?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .with_context(|| format!("cannot create the test database {name}"))?;
    let _ = admin.close().await;
    let mut url = url::Url::parse(&admin_url).context("ARGOSY_TEST_POSTGRES_URL is not a URL")?;
    url.set_path(&format!("/{name}"));
    Ok(Database {
        admin_url,
        name,
        url: url.to_string(),
    })
}

/// Drops the database from a thread of its own: this runs in `Drop`, inside
/// the test's runtime, where blocking on that runtime is not possible.
fn drop_database(database: &Database) {
    let admin_url = database.admin_url.clone();
    let name = database.name.clone();
    let result = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await?;
            let _ = admin.close().await;
            anyhow::Ok(())
        })
    })
    .join();
    if let Ok(Err(error)) = result {
        eprintln!(
            "warning: could not drop the test database {}: {error:#}",
            database.name
        );
    }
}

impl TestEnv {
    /// A new world on `store`. Panics when PostgreSQL is asked for but not
    /// configured: a PostgreSQL test never skips silently.
    pub async fn new(store: Store) -> Self {
        // Fail early, with the build hint, if the binaries are missing.
        crate::binaries();
        let root = tempfile::Builder::new()
            .prefix("argosy-e2e-")
            .tempdir()
            .expect("cannot create a temporary folder for the test");
        let database =
            match store {
                Store::Sqlite => None,
                Store::Postgres => Some(create_database().await.unwrap_or_else(|e| {
                    panic!("cannot prepare the PostgreSQL test database: {e:#}")
                })),
            };
        Self {
            store,
            root: Some(root),
            database,
            logs: Mutex::new(Vec::new()),
            next_dir: AtomicUsize::new(1),
        }
    }

    /// The store this test runs on.
    pub fn store(&self) -> Store {
        self.store
    }

    /// The PostgreSQL URL of this test's database, when on PostgreSQL.
    pub fn database_url(&self) -> Option<&str> {
        self.database.as_ref().map(|d| d.url.as_str())
    }

    /// The test's temporary folder.
    pub fn root(&self) -> &Path {
        self.root
            .as_ref()
            .map_or_else(|| Path::new("/nonexistent"), |r| r.path())
    }

    /// A new, empty folder `<root>/<prefix>-<n>`.
    pub fn new_dir(&self, prefix: &str) -> PathBuf {
        let n = self.next_dir.fetch_add(1, Ordering::Relaxed);
        let dir = self.root().join(format!("{prefix}-{n}"));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        dir
    }

    /// Remembers a log file to print if the test fails.
    pub fn register_log(&self, name: &str, path: &Path) {
        self.logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((name.to_owned(), path.to_owned()));
    }

    /// Prints every registered log to standard error (the test harness
    /// shows it with the failure).
    pub fn dump_logs(&self) {
        let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner()).clone();
        eprintln!(
            "==== test folder: {} (store: {:?})",
            self.root().display(),
            self.store
        );
        for (name, path) in logs {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()));
            eprintln!("==== {name} ({})", path.display());
            eprintln!("{}", text.trim_end());
        }
        eprintln!("==== end of logs");
    }

    /// Ends the scenario: on error, panics with the error's whole chain
    /// (and `Drop`, seeing the panic, prints the logs).
    pub fn finish(self, result: anyhow::Result<()>) {
        if let Err(error) = result {
            panic!("scenario failed on {:?}: {error:#}", self.store);
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        if let Some(database) = &self.database {
            drop_database(database);
        }
        if std::env::var_os("ARGOSY_TEST_KEEP").is_some_and(|v| v == "1")
            && let Some(root) = self.root.take()
        {
            let kept = root.keep();
            eprintln!("kept the test folder {}", kept.display());
        }
    }
}
