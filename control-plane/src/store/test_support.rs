//! Test harness: runs the same test body against SQLite (a temp file) and PostgreSQL (a fresh
//! database per test on the server named by `ARGOSY_TEST_POSTGRES_URL`).
//!
//! `store_test!(name);` next to `async fn name(db: TestDb) -> anyhow::Result<()>` defines a
//! module `name` with two tests, `name::sqlite` and `name::postgres`, each running the body on a
//! fresh database. The PostgreSQL variant fails — never skips — when the variable is not set.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;

use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, Connection};

use super::Store;

/// The variable naming the PostgreSQL server the `_postgres` tests use.
pub(crate) const POSTGRES_URL_VAR: &str = "ARGOSY_TEST_POSTGRES_URL";

/// One test's database and an open store on it.
#[derive(Clone)]
pub(crate) struct TestDb {
    store: Store,
    url: String,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Sqlite { _dir: Arc<tempfile::TempDir> },
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    pub(crate) fn store(&self) -> Store {
        self.store.clone()
    }

    /// Opens a second, independent store on the same database (runs migrations again).
    pub(crate) async fn reopen(&self) -> Result<Store, super::StoreError> {
        Store::open(&self.url).await
    }

    async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let path = dir.path().join("argosy.db");
        let url = format!("sqlite://{}", path.display());
        let store = Store::open_sqlite_file(&path)
            .await
            .expect("open the test SQLite database");
        TestDb {
            store,
            url,
            kind: Kind::Sqlite {
                _dir: Arc::new(dir),
            },
        }
    }

    async fn postgres() -> TestDb {
        let admin_url = std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| {
            panic!(
                "{POSTGRES_URL_VAR} is not set: run scripts/test (it starts a throwaway \
                 PostgreSQL and sets it), or set it yourself, e.g. \
                 {POSTGRES_URL_VAR}=postgres://postgres@127.0.0.1:55432/postgres"
            )
        });
        sqlx::any::install_default_drivers();
        let name = format!("t_{:016x}", rand::random::<u64>());
        let mut admin = connect(&admin_url).await;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        admin.close().await.ok();
        let mut url = url::Url::parse(&admin_url).expect("parse ARGOSY_TEST_POSTGRES_URL");
        url.set_path(&format!("/{name}"));
        let url = url.to_string();
        let store = Store::open(&url).await.expect("open the test database");
        TestDb {
            store,
            url,
            kind: Kind::Postgres { admin_url, name },
        }
    }

    /// Closes the store and, on PostgreSQL, drops the test database.
    async fn finish(self) {
        self.store.close().await;
        if let Kind::Postgres { admin_url, name } = &self.kind {
            let mut admin = connect(admin_url).await;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .expect("drop the test database");
            admin.close().await.ok();
        }
    }
}

async fn connect(url: &str) -> AnyConnection {
    let options = AnyConnectOptions::from_str(url).expect("parse the PostgreSQL URL");
    AnyConnection::connect_with(&options)
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", super::redact_url(url)))
}

pub(crate) async fn run_sqlite<F, Fut>(body: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    run(TestDb::sqlite().await, body).await;
}

pub(crate) async fn run_postgres<F, Fut>(body: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    run(TestDb::postgres().await, body).await;
}

/// Runs the body in its own task so that the database is dropped even when it panics.
async fn run<F, Fut>(db: TestDb, body: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let outcome = tokio::spawn(body(db.clone())).await;
    db.finish().await;
    match outcome {
        Ok(result) => result.expect("test body failed"),
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}

/// Defines `name::sqlite` and `name::postgres` tests running `async fn name(db: TestDb)`.
macro_rules! store_test {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $crate::store::test_support::run_sqlite(super::$name).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $crate::store::test_support::run_postgres(super::$name).await;
            }
        }
    };
}
pub(crate) use store_test;
