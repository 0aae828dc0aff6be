//! The control plane's persistent store: one sqlx `Any` code path over SQLite (embedded default)
//! and PostgreSQL (production), with embedded migrations per dialect.
//!
//! Every query uses `$1, $2, …` placeholders, which both drivers accept, and only types the `Any`
//! driver decodes on both dialects (BIGINT, DOUBLE PRECISION, TEXT, BLOB/BYTEA). Times are i64
//! unix milliseconds. Aggregates that PostgreSQL would return as NUMERIC (`SUM(bigint)`,
//! `AVG(bigint)`) are always cast, because the `Any` driver cannot decode NUMERIC.
//!
//! Write transactions go through `Store::begin_write`, which on SQLite takes the write lock up
//! front (`BEGIN IMMEDIATE`): a deferred transaction that reads first and writes later fails with
//! `SQLITE_BUSY` under WAL when another connection committed in between, and `busy_timeout`
//! does not help there.

mod alerts;
mod audit;
pub mod backups;
mod deploy;
mod hosts;
pub mod metric_query;
mod metrics;
mod policies;
mod secrets;
mod settings;
mod tokens;
mod users;

#[cfg(test)]
pub(crate) mod test_support;

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

pub use alerts::{
    AlertEventRow, AlertRound, AlertRow, AlertRuleRow, AlertSeriesRow, ChannelRow, DeliveryResult,
    DeliveryRow, FinishedDeploymentRow, NewDelivery, RunningAllocationRow, SilenceRow,
};
pub use audit::AuditFilter;
pub use backups::{BackupJobRow, BackupPolicyRow, BackupRow};
pub use deploy::{AllocationRow, DeploymentEventRow, DeploymentRow, RevisionRow, ServiceRow};
pub use hosts::HostRow;
pub use metric_query::{
    Metric, MetricPoint, MetricQuery, PlanError, Retention, Source, UnknownMetric, Watermarks,
};
pub use metrics::{MetricSeries, PruneReport, RollupReport, SampleRow};
pub use policies::{NewPolicyVersion, PolicyRow, PolicyVersionRow};
pub use secrets::{
    AddedVersion, NewSecretVersion, RewrappedKey, SealedVersion, SecretRow, SecretVersionRow,
    WrappedKeyRow, versions_to_prune,
};
pub use tokens::{API_ROLES, ApiTokenRow, JoinTokenRow, Redemption};
pub use users::UserRow;

/// Which SQL database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// An embedded SQLite file (the default, `<data-dir>/argosy.db`).
    Sqlite,
    /// A PostgreSQL server (production, several replicas).
    Postgres,
}

impl Dialect {
    /// The lowercase name used in logs and messages.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }

    /// The most bind parameters one statement may carry.
    pub(crate) fn max_bind_params(self) -> usize {
        match self {
            // SQLITE_MAX_VARIABLE_NUMBER of the bundled SQLite (>= 3.32).
            Dialect::Sqlite => 32_766,
            // The wire protocol's 16-bit parameter count.
            Dialect::Postgres => 65_535,
        }
    }

    /// How many rows of `cols` parameters a multi-row INSERT should carry: far below the bind
    /// limit, because bigger is slower. SQLite resolves each named `$n` parameter with a
    /// linear search, so binding costs grow with the square of the parameter count (measured:
    /// 5,000 sample rows took 6 s in statements of 1,820 rows, 0.14 s in statements of 25).
    /// PostgreSQL was fastest at a few hundred rows per statement.
    pub(crate) fn rows_per_statement(self, cols: usize) -> usize {
        let target_params = match self {
            Dialect::Sqlite => 512,
            Dialect::Postgres => 4_000,
        };
        (target_params.min(self.max_bind_params()) / cols.max(1)).max(1)
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything that can go wrong in the store. Messages say what failed and what to do, and
/// never contain a secret (database URLs are shown with their password redacted).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "unsupported database URL `{url}`: use sqlite:///absolute/path/argosy.db, \
         sqlite://relative/path.db or postgres://user@host:5432/dbname"
    )]
    UnsupportedUrl { url: String },

    #[error(
        "cannot open the SQLite database at {path}: {source}; check that the directory exists \
         and is writable by this user, and that no other program holds the file locked"
    )]
    OpenSqlite {
        path: String,
        #[source]
        source: sqlx::Error,
    },

    #[error(
        "cannot create the data directory {path}: {source}; create it yourself or choose \
         another --data-dir"
    )]
    CreateDataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "cannot connect to PostgreSQL at {url}: {source}; is PostgreSQL running and the URL \
         (host, port, database, user, password) right?"
    )]
    ConnectPostgres {
        url: String,
        #[source]
        source: sqlx::Error,
    },

    #[error(
        "cannot apply the {dialect} schema migrations: {source}; if this database was last \
         used by a newer Argosy, run that version (downgrades are not supported)"
    )]
    Migrate {
        dialect: Dialect,
        #[source]
        source: sqlx::migrate::MigrateError,
    },

    #[error(
        "database error while {op}: {source}; check that the database is reachable and healthy"
    )]
    Query {
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },

    #[error("{kind} `{id}` already exists; choose another id")]
    AlreadyExists { kind: &'static str, id: String },

    #[error("{kind} `{id}` does not exist")]
    NotFound { kind: &'static str, id: String },

    #[error("{kind} `{id}` refers to {target} that does not exist; nothing was stored")]
    MissingReference {
        kind: &'static str,
        id: String,
        target: &'static str,
    },

    #[error(
        "stored data is invalid ({what}); the database may have been changed by hand or by a \
         newer Argosy"
    )]
    Corrupt { what: String },

    #[error(
        "metric sample of host `{host_id}` at {ts_ms} is invalid: {problem}; fix the sender, \
         the batch was not stored"
    )]
    InvalidSample {
        host_id: String,
        ts_ms: i64,
        problem: String,
    },

    #[error("API token role `{role}` is not one of admin, operator, viewer")]
    InvalidRole { role: String },

    #[error(transparent)]
    InvalidQuery(#[from] PlanError),
}

impl StoreError {
    /// True when the error is about the caller's input rather than the database.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            StoreError::InvalidSample { .. }
                | StoreError::InvalidRole { .. }
                | StoreError::InvalidQuery(_)
                | StoreError::AlreadyExists { .. }
                | StoreError::NotFound { .. }
                | StoreError::MissingReference { .. }
        )
    }
}

/// Maps a sqlx error to [`StoreError::Query`] naming the operation.
pub(crate) fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { op, source }
}

/// Maps a unique violation to [`StoreError::AlreadyExists`], anything else to [`db`].
pub(crate) fn insert_err(
    op: &'static str,
    kind: &'static str,
    id: &str,
) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| match &source {
        sqlx::Error::Database(e) if e.is_unique_violation() => StoreError::AlreadyExists {
            kind,
            id: id.to_owned(),
        },
        _ => StoreError::Query { op, source },
    }
}

/// Reads one column, reporting a decode failure as [`StoreError::Corrupt`].
pub(crate) fn col<'r, T>(row: &'r AnyRow, name: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(name).map_err(|e| StoreError::Corrupt {
        what: format!("column `{name}`: {e}"),
    })
}

/// Converts a stored BIGINT to u32, reporting out-of-range values as corruption.
pub(crate) fn to_u32(value: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt {
        what: format!("{what} is {value}, outside 0..=4294967295"),
    })
}

/// Returns `url` with any password (in the userinfo or as a query parameter) replaced by
/// `REDACTED`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        // Not a URL we can take apart: show only the scheme, the rest may hold a password.
        return match url.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://…"),
            None => "(unparseable URL)".to_owned(),
        };
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("REDACTED"));
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let secret = k.to_ascii_lowercase().contains("password");
                let v = if secret {
                    "REDACTED".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Connection-pool settings for [`Store::open_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// How long to wait for a connection (including retrying an unreachable server at start)
    /// before failing. Default 30 s.
    pub acquire_timeout: Duration,
    /// Pool size; default 8 for SQLite (one writer at a time anyway), 16 for PostgreSQL.
    pub max_connections: Option<u32>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            acquire_timeout: Duration::from_secs(30),
            max_connections: None,
        }
    }
}

/// Connects once to PostgreSQL, retrying network failures (the server may be starting) until
/// `timeout`, and returns the last error if it never succeeds.
async fn probe_postgres(options: &AnyConnectOptions, timeout: Duration) -> Result<(), sqlx::Error> {
    use sqlx::{ConnectOptions, Connection};
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(100);
    loop {
        let attempt = tokio::time::timeout_at(deadline, options.connect()).await;
        let error = match attempt {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                return Ok(());
            }
            Ok(Err(error)) => error,
            Err(_) => return Err(sqlx::Error::PoolTimedOut),
        };
        let retriable = matches!(error, sqlx::Error::Io(_) | sqlx::Error::Tls(_));
        if !retriable || tokio::time::Instant::now() + pause >= deadline {
            return Err(error);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// A handle on the database: a connection pool plus its dialect. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("dialect", &self.dialect)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the database named by `url` and applies pending migrations.
    ///
    /// Accepted: `sqlite:///abs/path.db`, `sqlite://rel/path.db` (created if missing), and
    /// `postgres://…` / `postgresql://…`.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Self::open_with(url, &StoreOptions::default()).await
    }

    /// [`Store::open`] with explicit pool settings.
    pub async fn open_with(url: &str, options: &StoreOptions) -> Result<Store, StoreError> {
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("sqlite:") {
            let with_mode = if url.contains("mode=") {
                url.to_owned()
            } else if url.contains('?') {
                format!("{url}&mode=rwc")
            } else {
                format!("{url}?mode=rwc")
            };
            let shown = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:")
                .split('?')
                .next()
                .unwrap_or_default()
                .to_owned();
            Self::open_sqlite_url(&with_mode, shown, options).await
        } else if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            Self::open_postgres(url, options).await
        } else {
            Err(StoreError::UnsupportedUrl {
                url: redact_url(url),
            })
        }
    }

    /// Opens (creating if missing) the SQLite database file at `path` and applies pending
    /// migrations. The parent directory is created if it does not exist.
    pub async fn open_sqlite_file(path: &Path) -> Result<Store, StoreError> {
        let shown = path.display().to_string();
        let absolute = std::path::absolute(path).map_err(|source| StoreError::CreateDataDir {
            path: shown.clone(),
            source,
        })?;
        if let Some(parent) = absolute.parent() {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDataDir {
                path: parent.display().to_string(),
                source,
            })?;
        }
        // A file URL percent-encodes the path (spaces, `?`, `#`), which the SQLite driver
        // decodes again.
        let file_url =
            url::Url::from_file_path(&absolute).map_err(|()| StoreError::OpenSqlite {
                path: shown.clone(),
                source: sqlx::Error::Configuration("the path cannot be expressed as a URL".into()),
            })?;
        let url = format!("sqlite://{}?mode=rwc", file_url.path());
        Self::open_sqlite_url(&url, shown, &StoreOptions::default()).await
    }

    async fn open_sqlite_url(
        url: &str,
        shown: String,
        pool: &StoreOptions,
    ) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let fail = |source| StoreError::OpenSqlite {
            path: shown.clone(),
            source,
        };
        let options = AnyConnectOptions::from_str(url).map_err(fail)?;
        let pool = AnyPoolOptions::new()
            .max_connections(pool.max_connections.unwrap_or(8))
            .acquire_timeout(pool.acquire_timeout)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; \
                         PRAGMA synchronous = NORMAL; \
                         PRAGMA busy_timeout = 5000; \
                         PRAGMA foreign_keys = ON;",
                    )
                    .await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(fail)?;
        let store = Store {
            pool,
            dialect: Dialect::Sqlite,
        };
        store.migrate().await?;
        tracing::info!(dialect = "sqlite", path = %shown, "store opened");
        Ok(store)
    }

    async fn open_postgres(url: &str, pool: &StoreOptions) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let shown = redact_url(url);
        let fail = |source| StoreError::ConnectPostgres {
            url: shown.clone(),
            source,
        };
        let options = AnyConnectOptions::from_str(url).map_err(fail)?;
        // One probe connection first, so that an unreachable server is reported with its
        // real cause ("connection refused") rather than the pool's "timed out".
        probe_postgres(&options, pool.acquire_timeout)
            .await
            .map_err(fail)?;
        let pool = AnyPoolOptions::new()
            .max_connections(pool.max_connections.unwrap_or(16))
            .acquire_timeout(pool.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(fail)?;
        let store = Store {
            pool,
            dialect: Dialect::Postgres,
        };
        store.migrate().await?;
        tracing::info!(dialect = "postgres", url = %shown, "store opened");
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.dialect {
            Dialect::Sqlite => &SQLITE_MIGRATOR,
            Dialect::Postgres => &POSTGRES_MIGRATOR,
        };
        migrator
            .run(&self.pool)
            .await
            .map_err(|source| StoreError::Migrate {
                dialect: self.dialect,
                source,
            })
    }

    /// Which database this store talks to.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The underlying pool, for adapters that need a query this module does not offer.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Checks that the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db("checking the database connection"))?;
        Ok(())
    }

    /// Closes every pooled connection; later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Begins a transaction that will write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`, waiting up to `busy_timeout`), so a read followed by a write inside
    /// it cannot fail with a stale snapshot.
    pub(crate) async fn begin_write(
        &self,
        op: &'static str,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Dialect::Postgres => self.pool.begin().await,
        }
        .map_err(db(op))
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn redact_url_hides_passwords() {
        assert_eq!(
            redact_url("postgres://argosy:s3cret@db.example:5432/argosy"),
            "postgres://argosy:REDACTED@db.example:5432/argosy"
        );
        assert_eq!(
            redact_url("postgres://db/argosy?user=a&password=s3cret&sslmode=require"),
            "postgres://db/argosy?user=a&password=REDACTED&sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://argosy@db/argosy"),
            "postgres://argosy@db/argosy"
        );
        assert_eq!(redact_url("post gres://a:b@c d"), "post gres://…");
    }

    #[tokio::test]
    async fn unsupported_url_is_rejected_with_examples() {
        let err = Store::open("mysql://root:pw@localhost/x")
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unsupported database URL"), "{msg}");
        assert!(msg.contains("postgres://user@host"), "{msg}");
        assert!(!msg.contains(":pw@"), "{msg}");
    }

    #[tokio::test]
    async fn unreachable_postgres_names_the_redacted_url() {
        // Port 1 on loopback: nothing listens there, the connection is refused at once.
        let options = StoreOptions {
            acquire_timeout: Duration::from_secs(1),
            max_connections: None,
        };
        let err = Store::open_with("postgres://argosy:hunter2@127.0.0.1:1/argosy", &options)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("argosy:REDACTED@127.0.0.1:1"), "{msg}");
        assert!(
            msg.contains("refused"),
            "the real cause, not a pool timeout: {msg}"
        );
        assert!(msg.contains("is PostgreSQL running"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[tokio::test]
    async fn sqlite_open_in_a_missing_directory_creates_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new dir").join("argosy #1.db");
        let store = Store::open_sqlite_file(&path).await.unwrap();
        assert_eq!(store.dialect(), Dialect::Sqlite);
        store.ping().await.unwrap();
        store.close().await;
        assert!(path.is_file());
    }

    #[tokio::test]
    async fn sqlite_url_forms_open_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("argosy.db");
        let url = format!("sqlite://{}", path.display());
        let store = Store::open(&url).await.unwrap();
        store.insert_setting_if_absent("k", "v").await.unwrap();
        store.close().await;
        let again = Store::open_sqlite_file(&path).await.unwrap();
        assert_eq!(again.setting("k").await.unwrap().as_deref(), Some("v"));
        again.close().await;
    }

    #[tokio::test]
    async fn sqlite_pragmas_are_applied_on_every_connection() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite_file(&dir.path().join("a.db"))
            .await
            .unwrap();
        let mut conns = Vec::new();
        for _ in 0..3 {
            conns.push(store.pool().acquire().await.unwrap());
        }
        for conn in &mut conns {
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            assert_eq!(mode, "wal");
            let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            assert_eq!(sync, 1, "NORMAL is 1");
            let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            assert_eq!(busy, 5000);
            let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            assert_eq!(fk, 1);
        }
    }

    store_test!(migrations_apply_twice_cleanly);
    async fn migrations_apply_twice_cleanly(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        store.insert_setting_if_absent("kept", "yes").await?;
        let again = db.reopen().await?;
        assert_eq!(again.setting("kept").await?.as_deref(), Some("yes"));
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(again.pool())
            .await?;
        // Every embedded migration once (both dialects have the same set).
        assert_eq!(applied, i64::try_from(SQLITE_MIGRATOR.iter().count())?);
        assert_eq!(
            SQLITE_MIGRATOR.iter().count(),
            POSTGRES_MIGRATOR.iter().count()
        );
        again.ping().await?;
        Ok(())
    }

    store_test!(dollar_placeholders_and_integer_division_match);
    async fn dollar_placeholders_and_integer_division_match(db: TestDb) -> anyhow::Result<()> {
        let store = db.store();
        // Reused and out-of-order placeholders, and BIGINT division truncating.
        let row = sqlx::query(
            "SELECT CAST($2 AS BIGINT) / $1 AS q, ($2 / $1) * $1 AS b, $3 AS t, \
             CAST($4 AS DOUBLE PRECISION) AS d",
        )
        .bind(60_000_i64)
        .bind(1_700_000_059_999_i64)
        .bind("text")
        .bind(1.5_f64)
        .fetch_one(store.pool())
        .await?;
        assert_eq!(row.try_get::<i64, _>("q")?, 28_333_334);
        assert_eq!(row.try_get::<i64, _>("b")?, 1_700_000_040_000);
        assert_eq!(row.try_get::<String, _>("t")?, "text");
        assert_eq!(row.try_get::<f64, _>("d")?, 1.5);
        Ok(())
    }
}
