//! PostgreSQL sources: dump with `pg_dump`, restore with `psql`, on the
//! host or inside the database's container (`docker exec`, so the server's
//! own tools are used).
//!
//! The connection URL (a secret) is split into `PGHOST`, `PGPORT`,
//! `PGUSER`, `PGPASSWORD` and `PGDATABASE` (plus the libpq options it
//! carries) and given to the tools as environment variables, never as
//! arguments, so no process listing shows it; every message has the
//! password redacted.
//!
//! The dump is `pg_dump --format=plain --clean --if-exists --no-owner`:
//! plain SQL so its rows can be counted as it streams (`copy_rows`) and
//! restored with `psql`; `--clean --if-exists` so the same dump restores
//! over the source itself; `--no-owner` because every target is created
//! and filled by the connection's own user — `ALTER … OWNER TO` another
//! role would need membership in it and stop the restore. Privileges are
//! kept (no `--no-privileges`): all targets are on the source's server,
//! where the granted roles exist, and a restore in place without its
//! `GRANT`s would lock the application out of its own tables.
//!
//! Before any byte is dumped the connection is checked (`psql`), so wrong
//! credentials or an unreachable server fail the job with the server's
//! own message instead of an empty artifact. A restore goes into a
//! `CREATE DATABASE … TEMPLATE template0` with the source's encoding and
//! collation (a scratch `argosy_verify_<random>` for verification, dropped
//! `WITH (FORCE)` whatever happens, or a new named database), or over the
//! source in place, always in one transaction that `psql -v ON_ERROR_STOP=1`
//! runs as `BEGIN;`, the dump, and a `COMMIT;` the pipeline writes only
//! once the whole artifact proved sound ([`EndsOnShutdown`]) — so a failed
//! restore, or an artifact damaged part-way, changes nothing (psql's own
//! `--single-transaction` would commit whatever arrived before the input
//! ended). Then every user
//! table's rows are counted exactly (one statement, `count(*)` per table
//! through `query_to_xml`) and the verification's assertion is run.

use std::time::Instant;

use argosy_proto::v1::PostgresSource;
use tokio::io::AsyncWriteExt;
use zeroize::Zeroizing;

use super::copy_rows::{CopyRows, CopyRowsError};
use super::source::{
    self, Captured, DiscardWhenClosed, EndsOnShutdown, Place, ScannedReader, Tool,
};
use super::{
    Dump, DumpReport, Fed, Restore, RestoreInto, RestoreReport, SourceContext, SourceError, Stage,
    TableRows,
};

/// The `pg_dump` options; see the module documentation for why.
pub const DUMP_ARGS: &[&str] = &["--format=plain", "--clean", "--if-exists", "--no-owner"];

/// The `psql` options of a restore: stop at the first error, quiet. The
/// transaction is the input's own: [`RESTORE_BEGIN`] … [`RESTORE_COMMIT`].
pub const RESTORE_ARGS: &[&str] = &["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"];

/// The first line of a restore's input.
pub const RESTORE_BEGIN: &[u8] = b"BEGIN;\n";
/// The last line of a restore's input, written only when the whole
/// artifact was sound: without it the server rolls everything back.
pub const RESTORE_COMMIT: &[u8] = b"\nCOMMIT;\n";

/// How long a connection attempt may take (unless the URL says).
const CONNECT_TIMEOUT_SECONDS: &str = "10";

/// The most output a query of ours may print (row counts of 100,000+
/// tables fit).
const QUERY_OUTPUT_LIMIT: usize = 16 << 20;

/// Connection variables of the agent's own environment that must not
/// leak into the tools (the URL says everything).
const INHERITED_PG_VARIABLES: &[&str] = &[
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGDATABASE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGSSLMODE",
    "PGCONNECT_TIMEOUT",
    "PGAPPNAME",
];

/// URL query parameters passed on, and the variable each becomes.
const URL_OPTIONS: &[(&str, &str)] = &[
    ("host", "PGHOST"),
    ("hostaddr", "PGHOSTADDR"),
    ("port", "PGPORT"),
    ("sslmode", "PGSSLMODE"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("sslcert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
    ("sslcrl", "PGSSLCRL"),
    ("connect_timeout", "PGCONNECT_TIMEOUT"),
    ("application_name", "PGAPPNAME"),
    ("options", "PGOPTIONS"),
    ("target_session_attrs", "PGTARGETSESSIONATTRS"),
    ("gssencmode", "PGGSSENCMODE"),
    ("channel_binding", "PGCHANNELBINDING"),
];

/// Rows of every user table with storage of its own (not partitioned
/// parents, views, foreign tables or extension members), `ONLY` so that
/// inheritance parents count their own rows as `pg_dump` dumps them.
/// Output with `-A -t -z -0`: name NUL count NUL, for each table.
pub const COUNT_ROWS_SQL: &str = "\
select n.nspname || '.' || c.relname,
       (xpath('/row/n/text()', query_to_xml(
           format('select count(*) as n from only %I.%I', n.nspname, c.relname),
           false, true, '')))[1]::text
from pg_catalog.pg_class c
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where c.relkind = 'r'
  and n.nspname <> 'information_schema' and n.nspname !~ '^pg_'
  and not exists (select 1 from pg_catalog.pg_depend d
                  where d.classid = 'pg_catalog.pg_class'::regclass
                    and d.objid = c.oid and d.deptype = 'e')
order by 1";

/// The source database's encoding and collation, for its copies.
const DATABASE_LOCALE_SQL: &str = "select pg_encoding_to_char(encoding), datcollate, datctype \
     from pg_catalog.pg_database where datname = current_database()";

/// Why a connection URL cannot be used. Messages never echo the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    #[error(
        "the connection secret is not a URL ({0}); it must look like postgres://user:password@host:5432/database"
    )]
    NotAUrl(String),
    #[error("the connection URL's scheme is {0:?}; it must be postgres:// or postgresql://")]
    Scheme(String),
    #[error(
        "the connection URL names no database; add it as the path (postgres://user:password@host:5432/DATABASE)"
    )]
    NoDatabase,
    #[error("the connection URL's {0} is not valid UTF-8 after percent-decoding")]
    Encoding(&'static str),
    #[error("the connection URL has the parameter {0:?}, which the agent does not pass on; the ones it knows are {known}", known = known_options())]
    UnknownOption(String),
}

fn known_options() -> String {
    URL_OPTIONS
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A connection, parsed from the policy's URL.
#[derive(Clone, PartialEq, Eq)]
pub struct Connection {
    host: String,
    port: Option<u16>,
    user: String,
    password: Option<Zeroizing<String>>,
    database: String,
    /// Further libpq variables from the URL's query.
    options: Vec<(&'static str, String)>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("database", &self.database)
            .field("options", &self.options)
            .finish()
    }
}

fn decode(text: &str, what: &'static str) -> Result<String, ConnectionError> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| ConnectionError::Encoding(what))
}

impl Connection {
    /// Parses `postgres[ql]://[user[:password]@][host][:port]/database[?param=value…]`.
    pub fn parse(url: &str) -> Result<Self, ConnectionError> {
        let parsed = url::Url::parse(url).map_err(|e| ConnectionError::NotAUrl(e.to_string()))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(ConnectionError::Scheme(parsed.scheme().to_owned()));
        }
        let database = decode(parsed.path().trim_start_matches('/'), "database")?;
        let mut connection = Self {
            host: parsed
                .host_str()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: parsed.port(),
            user: decode(parsed.username(), "user")?,
            password: parsed
                .password()
                .map(|p| decode(p, "password").map(Zeroizing::new))
                .transpose()?,
            database,
            options: Vec::new(),
        };
        for (name, value) in parsed.query_pairs() {
            match name.as_ref() {
                "user" => connection.user = value.into_owned(),
                "password" => connection.password = Some(Zeroizing::new(value.into_owned())),
                "dbname" => connection.database = value.into_owned(),
                other => {
                    let variable = URL_OPTIONS
                        .iter()
                        .find(|(option, _)| *option == other)
                        .map(|(_, variable)| *variable)
                        .ok_or_else(|| ConnectionError::UnknownOption(other.to_owned()))?;
                    connection.options.push((variable, value.into_owned()));
                }
            }
        }
        if connection.database.is_empty() {
            return Err(ConnectionError::NoDatabase);
        }
        Ok(connection)
    }

    /// The database the URL names.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// `crm at 127.0.0.1:5432` (no user, no password).
    pub fn describe(&self) -> String {
        let host = match (self.host.as_str(), self.port) {
            ("", None) => "the local socket".to_owned(),
            ("", Some(port)) => format!("the local socket, port {port}"),
            (host, None) => host.to_owned(),
            (host, Some(port)) if host.contains(':') => format!("[{host}]:{port}"),
            (host, Some(port)) => format!("{host}:{port}"),
        };
        format!("{} at {host}", self.database)
    }

    /// The environment that connects the tools to `database`.
    pub fn env(&self, database: &str) -> Vec<(String, Zeroizing<String>)> {
        let mut env: Vec<(String, Zeroizing<String>)> = Vec::new();
        let mut set = |name: &str, value: &str| {
            env.retain(|(existing, _)| existing != name);
            env.push((name.to_owned(), Zeroizing::new(value.to_owned())));
        };
        set("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT_SECONDS);
        set("PGAPPNAME", "argosy-backup");
        if !self.host.is_empty() {
            set("PGHOST", &self.host);
        }
        if let Some(port) = self.port {
            set("PGPORT", &port.to_string());
        }
        if !self.user.is_empty() {
            set("PGUSER", &self.user);
        }
        if let Some(password) = &self.password {
            set("PGPASSWORD", password);
        }
        for (variable, value) in &self.options {
            set(variable, value);
        }
        set("PGDATABASE", database);
        env
    }

    /// What must never appear in a message: the password, raw and as
    /// the URL spells it.
    pub fn secrets(&self) -> Vec<String> {
        let Some(password) = &self.password else {
            return Vec::new();
        };
        let encoded =
            percent_encoding::utf8_percent_encode(password, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        vec![password.to_string(), encoded]
    }
}

/// A PostgreSQL source made ready: where its tools run, how they connect,
/// and what messages call it.
#[derive(Clone)]
struct Database {
    place: Place,
    connection: Connection,
    origin: String,
    secrets: Vec<String>,
}

impl Database {
    fn new(source: &PostgresSource, ctx: &SourceContext) -> Result<Self, SourceError> {
        let unnamed = || {
            if source.container.is_empty() {
                "postgres source".to_owned()
            } else {
                format!("postgres source in container {}", source.container)
            }
        };
        let url = ctx
            .connection_url
            .as_ref()
            .ok_or_else(|| SourceError::Invalid {
                origin: unnamed(),
                problem: "the job's connection secret was not delivered to the agent; check \
                          that the secret exists and the job may read it"
                    .into(),
            })?;
        let connection = Connection::parse(url).map_err(|e| SourceError::Invalid {
            origin: unnamed(),
            problem: e.to_string(),
        })?;
        let place = if source.container.is_empty() {
            Place::Host
        } else {
            let engine = ctx.docker.clone().ok_or_else(|| SourceError::Invalid {
                origin: unnamed(),
                problem: "the policy runs the tools in a container but this agent has no \
                          Docker engine; start the agent with access to Docker or drop \
                          `container`"
                    .into(),
            })?;
            Place::Container {
                engine,
                container: source.container.clone(),
            }
        };
        let origin = match &place {
            Place::Host => format!("postgres source {}", connection.describe()),
            Place::Container { container, .. } => format!(
                "postgres source {} in container {container}",
                connection.describe()
            ),
        };
        let secrets = connection.secrets();
        Ok(Self {
            place,
            connection,
            origin,
            secrets,
        })
    }

    fn secret_refs(&self) -> Vec<&str> {
        self.secrets.iter().map(String::as_str).collect()
    }

    fn psql(&self, database: &str) -> Tool {
        Tool::new("psql", ["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .env(self.connection.env(database))
            .unset(INHERITED_PG_VARIABLES)
    }

    /// Runs one SQL statement in `database` and returns its output; a
    /// failure to connect is a [`SourceError::Connect`].
    async fn query(
        &self,
        database: &str,
        sql: &str,
        stage: Stage,
        separators: Separators,
    ) -> Result<Vec<u8>, SourceError> {
        let mut tool = self.psql(database);
        if separators == Separators::Nul {
            tool = tool.arg("-z").arg("-0");
        }
        let Captured {
            exit,
            stdout,
            truncated,
        } = source::capture(
            &self.place,
            tool.arg("-c").arg(sql),
            &self.origin,
            stage,
            QUERY_OUTPUT_LIMIT,
        )
        .await
        .map_err(|e| self.tool_missing_hint(e))?;
        if !exit.success() && could_not_connect(&exit.stderr.text(&[])) {
            let stderr = exit.stderr.text(&self.secret_refs());
            return Err(SourceError::Connect {
                origin: self.origin.clone(),
                stage,
                hint: hint(&stderr, &self.connection),
                stderr,
            });
        }
        let connection = &self.connection;
        exit.check(&self.origin, stage, "psql", &self.secret_refs(), |stderr| {
            hint(stderr, connection)
        })?;
        if truncated {
            return Err(SourceError::Incomplete {
                origin: self.origin.clone(),
                stage,
                problem: format!(
                    "psql printed more than {} MiB for one query",
                    QUERY_OUTPUT_LIMIT >> 20
                ),
            });
        }
        Ok(stdout)
    }

    /// A missing tool on the host: say to install it or use the container.
    fn tool_missing_hint(&self, error: SourceError) -> SourceError {
        match error {
            SourceError::ToolMissing {
                origin,
                stage,
                tool,
                reason,
                ..
            } if matches!(self.place, Place::Host) => SourceError::ToolMissing {
                origin,
                stage,
                tool,
                reason,
                hint: "install the PostgreSQL client tools on the host (apt-get install \
                       postgresql-client) or set `container` to run the server's own"
                    .into(),
            },
            other => other,
        }
    }

    /// The first line `tool --version` prints.
    async fn tool_version(&self, tool: &str, stage: Stage) -> Result<String, SourceError> {
        let captured = source::capture(
            &self.place,
            Tool::new(tool, ["--version"]),
            &self.origin,
            stage,
            64 * 1024,
        )
        .await
        .map_err(|e| self.tool_missing_hint(e))?;
        let exit = captured.exit.check(&self.origin, stage, tool, &[], |_| {
            format!("check the `{tool}` installation")
        })?;
        drop(exit);
        Ok(first_line(&captured.stdout))
    }

    /// Connects to the source database: its server's version, or why not.
    async fn check_connection(&self, stage: Stage) -> Result<String, SourceError> {
        let output = self
            .query(
                self.connection.database(),
                "show server_version",
                stage,
                Separators::Lines,
            )
            .await?;
        Ok(first_line(&output))
    }

    /// Creates `name` as an empty copy-ready database (template0, the
    /// source's encoding and collation).
    async fn create_database(&self, name: &str) -> Result<(), SourceError> {
        let source_db = self.connection.database();
        let locale = self
            .query(
                source_db,
                DATABASE_LOCALE_SQL,
                Stage::Prepare,
                Separators::Nul,
            )
            .await?;
        let statement = create_database_sql(name, &locale);
        self.query(source_db, &statement, Stage::Prepare, Separators::Lines)
            .await?;
        Ok(())
    }

    async fn database_exists(&self, name: &str) -> Result<bool, SourceError> {
        let output = self
            .query(
                self.connection.database(),
                &format!(
                    "select count(*) from pg_catalog.pg_database where datname = {}",
                    quote_literal(name)
                ),
                Stage::Prepare,
                Separators::Lines,
            )
            .await?;
        Ok(first_line(&output) != "0")
    }

    async fn drop_database(&self, name: &str) -> Result<(), SourceError> {
        self.query(
            self.connection.database(),
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name)),
            Stage::Cleanup,
            Separators::Lines,
        )
        .await
        .map(drop)
    }

    async fn count_rows(&self, database: &str) -> Result<TableRows, SourceError> {
        let output = self
            .query(database, COUNT_ROWS_SQL, Stage::Count, Separators::Nul)
            .await?;
        parse_counts(&output).map_err(|problem| SourceError::Incomplete {
            origin: self.origin.clone(),
            stage: Stage::Count,
            problem,
        })
    }

    async fn assert(&self, database: &str, sql: &str) -> Result<bool, SourceError> {
        let output = self
            .query(database, sql, Stage::Assertion, Separators::Lines)
            .await
            .map_err(|error| match error {
                SourceError::ToolFailed {
                    origin,
                    stage,
                    tool,
                    status,
                    stderr,
                    ..
                } => SourceError::ToolFailed {
                    origin,
                    stage,
                    tool,
                    status,
                    stderr,
                    hint: "fix the policy's `verify.sql_assertion` (it runs in the restored \
                           database and must return one boolean)"
                        .into(),
                },
                other => other,
            })?;
        parse_assertion(&output).map_err(|problem| SourceError::Invalid {
            origin: self.origin.clone(),
            problem: format!("the verification's SQL assertion {problem}"),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Separators {
    /// Rows on lines, columns `|`-separated.
    Lines,
    /// Fields and rows NUL-terminated (names may hold anything else).
    Nul,
}

fn first_line(output: &[u8]) -> String {
    String::from_utf8_lossy(output)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Starts `pg_dump` after checking the connection; the report carries
/// the tool's and the server's versions and the rows of every table.
pub async fn start_dump(source: &PostgresSource, ctx: &SourceContext) -> Result<Dump, SourceError> {
    let database = Database::new(source, ctx)?;
    let pg_dump_version = database.tool_version("pg_dump", Stage::Check).await?;
    let server_version = database.check_connection(Stage::Check).await?;
    let tool = Tool::new("pg_dump", DUMP_ARGS.iter().copied())
        .env(database.connection.env(database.connection.database()))
        .unset(INHERITED_PG_VARIABLES)
        .stdout();
    let running = source::run(&database.place, tool, &database.origin, Stage::Dump)
        .await
        .map_err(|e| database.tool_missing_hint(e))?;
    let (output, rows) = ScannedReader::new(running.stdout, CopyRows::new());
    let exit = running.exit;
    let finish = async move {
        let connection = &database.connection;
        exit.await?.check(
            &database.origin,
            Stage::Dump,
            "pg_dump",
            &database.secret_refs(),
            |stderr| hint(stderr, connection),
        )?;
        let tables = match rows.await {
            Ok(Ok(tables)) => tables,
            Ok(Err(truncated @ CopyRowsError::Truncated { .. })) => {
                return Err(SourceError::Incomplete {
                    origin: database.origin.clone(),
                    stage: Stage::Dump,
                    problem: truncated.to_string(),
                });
            }
            Err(_) => {
                return Err(SourceError::Incomplete {
                    origin: database.origin.clone(),
                    stage: Stage::Dump,
                    problem: "the dump's output was not read to its end".into(),
                });
            }
        };
        Ok(DumpReport {
            tool_versions: [
                ("pg_dump".to_owned(), pg_dump_version),
                ("postgres".to_owned(), server_version),
            ]
            .into(),
            tables,
        })
    };
    Ok(Dump {
        output: Box::pin(output),
        finish: Box::pin(finish),
    })
}

/// A database this restore created: dropped when the restore fails (or,
/// for a scratch database, always), also if the [`Restore`] is dropped
/// unfinished.
struct CreatedDatabase {
    name: String,
    /// Drop it even when the restore succeeds.
    scratch: bool,
    database: Option<Database>,
}

impl CreatedDatabase {
    /// Drops it now if it is to go; `succeeded` says how the restore went.
    async fn settle(mut self, succeeded: bool) -> Result<(), SourceError> {
        let database = self.database.take();
        match database {
            Some(database) if self.scratch || !succeeded => {
                database.drop_database(&self.name).await
            }
            _ => Ok(()),
        }
    }
}

impl Drop for CreatedDatabase {
    fn drop(&mut self) {
        let Some(database) = self.database.take() else {
            return;
        };
        let name = std::mem::take(&mut self.name);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = database.drop_database(&name).await {
                    tracing::warn!(%error, database = %name, "could not drop the database of an abandoned restore; drop it by hand");
                }
            });
        } else {
            tracing::warn!(database = %name, "an abandoned restore left its database behind; drop it by hand");
        }
    }
}

/// Starts a restore into `into` after checking the connection (and
/// creating the target database); `finish` waits for `psql`, counts the
/// rows of every table, runs `sql_assertion` and drops a scratch
/// database.
pub async fn start_restore(
    source: &PostgresSource,
    into: RestoreInto,
    sql_assertion: Option<&str>,
    ctx: &SourceContext,
) -> Result<Restore, SourceError> {
    let started = Instant::now();
    let database = Database::new(source, ctx)?;
    database.check_connection(Stage::Check).await?;
    let (target, created) = match into {
        RestoreInto::Scratch => {
            let name = scratch_database_name(rand::random());
            database.create_database(&name).await?;
            (name.clone(), Some((name, true)))
        }
        RestoreInto::Database(name) => {
            validate_database_name(&name).map_err(|problem| SourceError::Invalid {
                origin: database.origin.clone(),
                problem,
            })?;
            if database.database_exists(&name).await? {
                return Err(SourceError::Invalid {
                    origin: database.origin.clone(),
                    problem: format!(
                        "database {name} already exists; a restore goes into a new database: \
                         choose another name, or drop it first"
                    ),
                });
            }
            database.create_database(&name).await?;
            (name.clone(), Some((name, false)))
        }
        RestoreInto::InPlace => (database.connection.database().to_owned(), None),
        RestoreInto::Directory(directory) => {
            return Err(SourceError::Invalid {
                origin: database.origin.clone(),
                problem: format!(
                    "a PostgreSQL backup restores into a database, not a directory \
                     ({directory}): restore with --to-database NAME or --in-place"
                ),
            });
        }
    };
    // From here on a database made for this restore goes away with it.
    let mut created = created.map(|(name, scratch)| CreatedDatabase {
        name,
        scratch,
        database: Some(database.clone()),
    });
    let tool = Tool::new("psql", RESTORE_ARGS.iter().copied())
        .env(database.connection.env(&target))
        .unset(INHERITED_PG_VARIABLES)
        .stdin();
    let running = match source::run(&database.place, tool, &database.origin, Stage::Restore).await {
        Ok(running) => running,
        Err(error) => {
            if let Some(created) = created.take() {
                let _ = created.settle(false).await;
            }
            return Err(database.tool_missing_hint(error));
        }
    };
    let assertion = sql_assertion
        .map(str::trim)
        .filter(|sql| !sql.is_empty())
        .map(str::to_owned);
    let mut input = DiscardWhenClosed::new(running.stdin);
    if let Err(error) = input.write_all(RESTORE_BEGIN).await {
        if let Some(created) = created.take() {
            let _ = created.settle(false).await;
        }
        return Err(SourceError::Incomplete {
            origin: database.origin.clone(),
            stage: Stage::Restore,
            problem: format!("cannot write to psql: {error}"),
        });
    }
    let exit = running.exit;
    let finish = move |fed: Fed| -> source::FinishFuture {
        Box::pin(async move {
            if fed == Fed::Abandoned {
                // psql saw its input end without `COMMIT;`: nothing it ran
                // stays. Stop it, and drop a database made for this restore
                // before the job reports.
                drop(exit);
                if let Some(created) = created {
                    created.settle(false).await?;
                }
                return Err(source::abandoned(&database.origin));
            }
            let outcome = async {
                let connection = &database.connection;
                exit.await?.check(
                    &database.origin,
                    Stage::Restore,
                    "psql",
                    &database.secret_refs(),
                    |stderr| hint(stderr, connection),
                )?;
                let elapsed = started.elapsed();
                let tables = database.count_rows(&target).await?;
                let assertion = match &assertion {
                    Some(sql) => Some(database.assert(&target, sql).await?),
                    None => None,
                };
                Ok(RestoreReport {
                    tables,
                    assertion,
                    elapsed,
                })
            }
            .await;
            let settled = match created {
                Some(created) => created.settle(outcome.is_ok()).await,
                None => Ok(()),
            };
            let report = outcome?;
            settled?;
            Ok(report)
        })
    };
    Ok(Restore {
        input: Box::pin(EndsOnShutdown::new(input, RESTORE_COMMIT)),
        finish: Box::new(finish),
    })
}

/// `argosy_verify_<16 hex digits>`.
pub fn scratch_database_name(random: u64) -> String {
    format!("argosy_verify_{random:016x}")
}

/// A restore target's name: 1–63 bytes of letters, digits, `_` and `-`
/// (no quoting surprises in the tools or in people's shells).
pub fn validate_database_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 {
        return Err(format!(
            "the target database name {name:?} must be 1 to 63 characters long"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-')))
    {
        return Err(format!(
            "the target database name {name:?} has {bad:?}; use letters, digits, `_` and `-`"
        ));
    }
    Ok(())
}

/// `name` as a SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as a SQL string literal (with `standard_conforming_strings`,
/// on since PostgreSQL 9.1; backslashes are then plain characters).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `CREATE DATABASE` for a copy of the source, given the output of
/// [`DATABASE_LOCALE_SQL`] (encoding, collate, ctype; NUL-separated). An
/// unreadable answer falls back to the server's defaults.
pub fn create_database_sql(name: &str, locale: &[u8]) -> String {
    let mut statement = format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(name));
    let fields: Vec<&[u8]> = locale.split(|&b| b == 0).collect();
    if let [encoding, collate, ctype, ..] = fields.as_slice()
        && let (Ok(encoding), Ok(collate), Ok(ctype)) = (
            std::str::from_utf8(encoding),
            std::str::from_utf8(collate),
            std::str::from_utf8(ctype),
        )
        && !encoding.is_empty()
    {
        statement.push_str(&format!(
            " ENCODING {} LC_COLLATE {} LC_CTYPE {}",
            quote_literal(encoding),
            quote_literal(collate),
            quote_literal(ctype)
        ));
    }
    statement
}

/// The output of [`COUNT_ROWS_SQL`] (`-A -t -z -0`) as rows per table.
pub fn parse_counts(output: &[u8]) -> Result<TableRows, String> {
    let mut fields: Vec<&[u8]> = output.split(|&b| b == 0).collect();
    // Every field ends with NUL: the last piece is empty.
    if fields.last().is_some_and(|last| last.is_empty()) {
        fields.pop();
    }
    if !fields.len().is_multiple_of(2) {
        return Err(format!(
            "the row count query returned {} fields, not name/count pairs",
            fields.len()
        ));
    }
    let mut tables = TableRows::new();
    for pair in fields.chunks(2) {
        let name = String::from_utf8_lossy(pair[0]).into_owned();
        let count = std::str::from_utf8(pair[1])
            .ok()
            .and_then(|count| count.parse::<u64>().ok())
            .ok_or_else(|| {
                format!(
                    "the row count of {name} is {:?}, not a number",
                    String::from_utf8_lossy(pair[1])
                )
            })?;
        tables.insert(name, count);
    }
    Ok(tables)
}

/// The output of the verification's assertion (`-A -t`): exactly one
/// row with one boolean.
pub fn parse_assertion(output: &[u8]) -> Result<bool, String> {
    let text = String::from_utf8_lossy(output);
    match text.as_ref() {
        "t\n" => Ok(true),
        "f\n" => Ok(false),
        other => {
            let shown: String = other.trim_end().chars().take(80).collect();
            Err(format!(
                "must return exactly one row with one boolean; it returned {}",
                if shown.is_empty() {
                    "no rows (or a null)".to_owned()
                } else {
                    format!("{shown:?}")
                }
            ))
        }
    }
}

/// Whether `psql`'s message means it never got a working session.
fn could_not_connect(stderr: &str) -> bool {
    [
        "connection to server",
        "could not connect",
        "password authentication failed",
        "no password supplied",
        "authentication failed",
        "pg_hba.conf",
        "could not translate host name",
        "timeout expired",
        "the database system is starting up",
        "the database system is shutting down",
    ]
    .iter()
    .any(|needle| stderr.contains(needle))
        || (stderr.contains("FATAL:") && stderr.contains("does not exist"))
}

/// What to do about a tool's failure, from its message.
pub fn hint(stderr: &str, connection: &Connection) -> String {
    let server = connection.describe();
    if stderr.contains("password authentication failed")
        || stderr.contains("no password supplied")
        || stderr.contains("authentication failed")
    {
        return "check the user and password in the connection secret (and the server's \
                pg_hba.conf)"
            .into();
    }
    if stderr.contains("pg_hba.conf") {
        return "the server's pg_hba.conf does not let this user in from where the tools run: \
                allow it there"
            .into();
    }
    if stderr.contains("FATAL:") && stderr.contains("database") && stderr.contains("does not exist")
    {
        return format!("check the database name in the connection secret ({server})");
    }
    if stderr.contains("role") && stderr.contains("does not exist") {
        return "check the user in the connection secret".into();
    }
    if stderr.contains("connection to server")
        || stderr.contains("could not connect")
        || stderr.contains("could not translate host name")
        || stderr.contains("timeout expired")
    {
        return format!(
            "check that PostgreSQL is running and reachable as {server} from where the tools \
             run (the host, or the container when the policy names one)"
        );
    }
    if stderr.contains("server version mismatch")
        || stderr.contains("aborting because of server version")
    {
        return "pg_dump is older than the server: install a newer client on the host or set \
                `container` to use the server's own tools"
            .into();
    }
    if stderr.contains("permission denied to create database") {
        return format!(
            "the connection's user needs CREATEDB to restore into a new or scratch database \
             (ALTER ROLE {} CREATEDB)",
            if connection.user.is_empty() {
                "<user>"
            } else {
                &connection.user
            }
        );
    }
    if stderr.contains("permission denied") || stderr.contains("must be owner") {
        return "the connection's user lacks a privilege the dump or restore needs: use the \
                database owner or a superuser"
            .into();
    }
    if stderr.contains("No space left on device") {
        return "the server ran out of disk space: free some or restore elsewhere".into();
    }
    "see the tool's message above".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_map(connection: &Connection, database: &str) -> Vec<(String, String)> {
        connection
            .env(database)
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect()
    }

    #[test]
    fn a_url_becomes_environment_variables() {
        let connection =
            Connection::parse("postgres://crm:p%40ss%20w0rd@db.internal:6543/crm_prod").unwrap();
        assert_eq!(
            env_map(&connection, "crm_prod"),
            [
                ("PGCONNECT_TIMEOUT", "10"),
                ("PGAPPNAME", "argosy-backup"),
                ("PGHOST", "db.internal"),
                ("PGPORT", "6543"),
                ("PGUSER", "crm"),
                ("PGPASSWORD", "p@ss w0rd"),
                ("PGDATABASE", "crm_prod"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_eq!(connection.describe(), "crm_prod at db.internal:6543");
        assert_eq!(connection.secrets(), ["p@ss w0rd", "p%40ss%20w0rd"]);
        // Another database on the same server.
        assert!(
            env_map(&connection, "argosy_verify_1")
                .contains(&("PGDATABASE".into(), "argosy_verify_1".into()))
        );
    }

    #[test]
    fn url_options_pass_on_and_unknown_ones_are_refused() {
        let connection = Connection::parse(
            "postgresql://u@[::1]/db?sslmode=require&connect_timeout=3&application_name=x",
        )
        .unwrap();
        let env = env_map(&connection, "db");
        assert!(env.contains(&("PGHOST".into(), "::1".into())), "{env:?}");
        assert!(env.contains(&("PGSSLMODE".into(), "require".into())));
        assert!(env.contains(&("PGCONNECT_TIMEOUT".into(), "3".into())));
        assert!(env.contains(&("PGAPPNAME".into(), "x".into())));
        assert_eq!(
            env.iter().filter(|(k, _)| k == "PGCONNECT_TIMEOUT").count(),
            1
        );
        assert!(!env.iter().any(|(k, _)| k == "PGPASSWORD"));
        assert!(connection.secrets().is_empty());

        // A socket directory instead of a host.
        let socket =
            Connection::parse("postgres:///crm?host=/var/run/postgresql&user=postgres").unwrap();
        assert!(env_map(&socket, "crm").contains(&("PGHOST".into(), "/var/run/postgresql".into())));
        assert_eq!(socket.describe(), "crm at the local socket");

        assert_eq!(
            Connection::parse("postgres://u:secret@h/db?sslmodee=x").unwrap_err(),
            ConnectionError::UnknownOption("sslmodee".into())
        );
    }

    #[test]
    fn bad_urls_say_what_is_wrong_without_echoing_them() {
        let cases = [
            ("mysql://u:hunter2@h/db", "scheme is \"mysql\""),
            ("postgres://u:hunter2@h/", "names no database"),
            ("postgres://u:hunter2@h", "names no database"),
            ("not a url hunter2", "is not a URL"),
            ("postgres://u:%ff%fe@h/db", "password is not valid UTF-8"),
        ];
        for (url, expected) in cases {
            let error = Connection::parse(url).unwrap_err().to_string();
            assert!(error.contains(expected), "{url}: {error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
        let debug = format!(
            "{:?}",
            Connection::parse("postgres://u:hunter2@h/db").unwrap()
        );
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn dump_and_restore_options_are_what_the_restore_needs() {
        assert_eq!(
            DUMP_ARGS,
            ["--format=plain", "--clean", "--if-exists", "--no-owner"]
        );
        assert!(!RESTORE_ARGS.contains(&"--single-transaction"));
        assert!(RESTORE_BEGIN.starts_with(b"BEGIN;"));
        assert!(RESTORE_COMMIT.ends_with(b"COMMIT;\n"));
        assert!(RESTORE_ARGS.contains(&"ON_ERROR_STOP=1"));
        assert!(RESTORE_ARGS.ends_with(&["-f", "-"]));
    }

    #[test]
    fn scratch_names_and_target_names() {
        assert_eq!(
            scratch_database_name(0xab),
            "argosy_verify_00000000000000ab"
        );
        assert!(validate_database_name(&scratch_database_name(u64::MAX)).is_ok());
        assert!(validate_database_name("crm_restore-2024").is_ok());
        for bad in ["", "a b", "x;drop", "quote\"d", &"x".repeat(64)] {
            assert!(validate_database_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn a_copy_of_the_source_keeps_its_encoding_and_collation() {
        assert_eq!(
            create_database_sql("x", b"UTF8\0C.UTF-8\0C.UTF-8\0"),
            "CREATE DATABASE \"x\" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' \
             LC_CTYPE 'C.UTF-8'"
        );
        assert_eq!(
            create_database_sql("x", b""),
            "CREATE DATABASE \"x\" TEMPLATE template0"
        );
    }

    #[test]
    fn row_counts_parse_from_nul_separated_pairs() {
        let output = b"My Schema.t.x\x001\x00public.Order Items\x003\x00public.empty\x000\x00";
        let tables = parse_counts(output).unwrap();
        assert_eq!(
            tables.into_iter().collect::<Vec<_>>(),
            [
                ("My Schema.t.x".to_owned(), 1),
                ("public.Order Items".to_owned(), 3),
                ("public.empty".to_owned(), 0),
            ]
        );
        assert_eq!(parse_counts(b"").unwrap(), TableRows::new());
        assert!(parse_counts(b"a\x001\x00b\x00").is_err());
        assert!(
            parse_counts(b"a\x00many\x00")
                .unwrap_err()
                .contains("not a number")
        );
    }

    #[test]
    fn an_assertion_is_one_boolean() {
        assert_eq!(parse_assertion(b"t\n"), Ok(true));
        assert_eq!(parse_assertion(b"f\n"), Ok(false));
        for (output, shown) in [
            (&b""[..], "no rows (or a null)"),
            (b"\n", "no rows (or a null)"),
            (b"t\nt\n", "\"t\\nt\""),
            (b"1|t\n", "\"1|t\""),
            (b"42\n", "\"42\""),
        ] {
            let error = parse_assertion(output).unwrap_err();
            assert!(error.contains(shown), "{error}");
            assert!(error.starts_with("must return exactly one row"), "{error}");
        }
    }

    #[test]
    fn failures_get_hints_a_person_can_act_on() {
        let connection = Connection::parse("postgres://crm:x@127.0.0.1:5432/crm").unwrap();
        let cases = [
            (
                "psql: error: connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  password authentication failed for user \"crm\"",
                "check the user and password",
            ),
            (
                "psql: error: connection to server at \"127.0.0.1\", port 5432 failed: Connection refused Is the server running on that host and accepting TCP/IP connections?",
                "check that PostgreSQL is running and reachable as crm at 127.0.0.1:5432",
            ),
            (
                "psql: error: connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  database \"crm\" does not exist",
                "check the database name",
            ),
            (
                "pg_dump: error: aborting because of server version mismatch",
                "set `container`",
            ),
            (
                "ERROR:  permission denied to create database",
                "ALTER ROLE crm CREATEDB",
            ),
            (
                "ERROR:  permission denied for table t",
                "database owner or a superuser",
            ),
            ("ERROR:  syntax error", "see the tool's message"),
        ];
        for (stderr, expected) in cases {
            assert!(hint(stderr, &connection).contains(expected), "{stderr}");
        }
        assert!(could_not_connect(cases[0].0));
        assert!(could_not_connect(cases[1].0));
        assert!(could_not_connect(cases[2].0));
        assert!(!could_not_connect("ERROR:  relation \"x\" does not exist"));
    }

    #[test]
    fn the_count_query_counts_only_tables_with_their_own_rows() {
        assert!(COUNT_ROWS_SQL.contains("relkind = 'r'"));
        assert!(COUNT_ROWS_SQL.contains("from only %I.%I"));
        assert!(COUNT_ROWS_SQL.contains("deptype = 'e'"));
    }
}
