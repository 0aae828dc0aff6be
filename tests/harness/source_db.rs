//! A PostgreSQL database holding real data for the backup tests to dump,
//! verify and restore: created on the server `ARGOSY_TEST_POSTGRES_URL`
//! names (next to, never inside, the control plane's own store), seeded
//! with several tables in two schemas (thousands of rows, a quoted table
//! name with a space and capitals, a `bytea` column, text with tabs,
//! newlines and backslashes, an empty table), and dropped when the value is
//! dropped. It can count every table's rows and fingerprint every table's
//! content, so a restored copy can be compared with the original.

use crate::env::POSTGRES_URL_VAR;
use anyhow::Context;
use sqlx::{Connection as _, Row as _};
use std::collections::BTreeMap;

/// Tables the seed creates, as `schema.table` (quotes removed), the way
/// [`normalize_table`] writes a manifest's table names.
pub const SEEDED_TABLES: [&str; 6] = [
    "crm.notes",
    "public.Order Items",
    "public.attachments",
    "public.audit_empty",
    "public.customers",
    "public.orders",
];

/// A database made for one test; dropped (with `FORCE`) on drop.
#[derive(Debug)]
pub struct SourceDb {
    admin_url: String,
    name: String,
    url: String,
}

/// `schema.table` without the quotes a manifest may keep around quoted
/// identifiers (`public."Order Items"` → `public.Order Items`).
pub fn normalize_table(name: &str) -> String {
    name.replace('"', "")
}

/// The admin URL of the test PostgreSQL server; fails without one.
pub fn admin_url() -> anyhow::Result<String> {
    std::env::var(POSTGRES_URL_VAR).with_context(|| {
        format!("{POSTGRES_URL_VAR} is not set: run scripts/test, which starts PostgreSQL")
    })
}

/// `url` with its path set to `/database`.
pub fn url_for(admin_url: &str, database: &str) -> anyhow::Result<String> {
    let mut url = url::Url::parse(admin_url).context("the PostgreSQL URL is not a URL")?;
    url.set_path(&format!("/{database}"));
    Ok(url.to_string())
}

/// Quotes an identifier for SQL.
fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

impl SourceDb {
    /// A new, empty database `src_<random>` on the test server.
    pub async fn create() -> anyhow::Result<Self> {
        let admin_url = admin_url()?;
        let name = format!("src_{:016x}", rand::random::<u64>());
        execute(&admin_url, &format!("CREATE DATABASE {name}")).await?;
        let url = url_for(&admin_url, &name)?;
        Ok(Self {
            admin_url,
            name,
            url,
        })
    }

    /// A new database seeded with `customers` customers (and 2× orders,
    /// 3× order items, a tenth as many attachments and notes).
    pub async fn seeded(customers: u32) -> anyhow::Result<Self> {
        let db = Self::create().await?;
        db.seed(customers).await?;
        Ok(db)
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `postgres://…/<name>`: what the connection secret holds.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL of another database on the same server (a restore target).
    pub fn sibling_url(&self, database: &str) -> anyhow::Result<String> {
        url_for(&self.admin_url, database)
    }

    /// This database's URL with the user changed to `user` (a login that
    /// does not exist: wrong credentials).
    pub fn url_as(&self, user: &str, password: &str) -> anyhow::Result<String> {
        let mut url = url::Url::parse(&self.url)?;
        url.set_username(user)
            .map_err(|()| anyhow::anyhow!("cannot set a user on {}", self.name))?;
        url.set_password(Some(password))
            .map_err(|()| anyhow::anyhow!("cannot set a password on {}", self.name))?;
        Ok(url.to_string())
    }

    /// Creates and fills the tables (see the module docs).
    pub async fn seed(&self, customers: u32) -> anyhow::Result<()> {
        let n = customers.max(10);
        execute(
            &self.url,
            &format!(
                r#"
CREATE SCHEMA crm;
CREATE TABLE customers (
    id integer PRIMARY KEY,
    name text NOT NULL,
    email text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL
);
CREATE TABLE orders (
    id bigint PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES customers (id),
    amount numeric(12, 2) NOT NULL,
    note text
);
CREATE TABLE "Order Items" (
    order_id bigint NOT NULL REFERENCES orders (id),
    sku text NOT NULL,
    "Quantity" integer NOT NULL
);
CREATE TABLE attachments (
    id integer PRIMARY KEY,
    payload bytea NOT NULL
);
CREATE TABLE audit_empty (x integer);
CREATE TABLE crm.notes (
    id integer PRIMARY KEY,
    body text NOT NULL
);
INSERT INTO customers
    SELECT g, 'customer ' || g, 'c' || g || '@example.test',
           timestamptz '2026-01-01 00:00:00+00' + g * interval '1 minute'
    FROM generate_series(1, {n}) g;
INSERT INTO orders
    SELECT g, 1 + (g % {n}), (g * 7 % 10000) / 100.0,
           CASE WHEN g % 5 = 0 THEN NULL ELSE E'tab\there\nnewline \\ backslash ' || g END
    FROM generate_series(1, {orders}) g;
INSERT INTO "Order Items"
    SELECT 1 + (g % {orders}), 'SKU-' || (g % 97), 1 + g % 9
    FROM generate_series(1, {items}) g;
INSERT INTO attachments
    SELECT g, decode(repeat(md5(g::text), 1 + g % 16), 'hex') || '\x0a5c09000d'::bytea
    FROM generate_series(1, {tenth}) g;
INSERT INTO crm.notes
    SELECT g, 'note ' || g || E'\r\nwith a CR and "quotes"'
    FROM generate_series(1, {tenth}) g;
"#,
                orders = 2 * n,
                items = 3 * n,
                tenth = n / 10,
            ),
        )
        .await
        .with_context(|| format!("cannot seed the database {}", self.name))
    }

    /// Adds a table `big` holding about `mib` MiB of random (incompressible)
    /// bytes, so a backup of the database takes a while.
    pub async fn add_big_table(&self, mib: u32) -> anyhow::Result<()> {
        // 1 KiB of random bytes per row (pgcrypto's limit per call).
        let rows = mib * 1024;
        execute(
            &self.url,
            &format!(
                "CREATE EXTENSION IF NOT EXISTS pgcrypto;
                 CREATE TABLE big (id integer PRIMARY KEY, payload bytea NOT NULL);
                 INSERT INTO big SELECT g, gen_random_bytes(1024) FROM generate_series(1, {rows}) g;
                 DROP EXTENSION pgcrypto;"
            ),
        )
        .await
        .with_context(|| format!("cannot add {mib} MiB to {}", self.name))
    }

    /// Rows of every user table, `schema.table` → rows (exact counts).
    pub async fn row_counts(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        row_counts(&self.url).await
    }

    /// A digest of every user table's whole content, `schema.table` →
    /// md5 of its rows in a fixed order.
    pub async fn fingerprint(&self) -> anyhow::Result<BTreeMap<String, String>> {
        fingerprint(&self.url).await
    }

    /// Runs SQL on this database.
    pub async fn execute(&self, sql: &str) -> anyhow::Result<()> {
        execute(&self.url, sql).await
    }
}

impl Drop for SourceDb {
    fn drop(&mut self) {
        drop_database(&self.admin_url, &self.name);
    }
}

/// Runs `sql` (several statements allowed) on the database at `url`.
pub async fn execute(url: &str, sql: &str) -> anyhow::Result<()> {
    let mut db = sqlx::PgConnection::connect(url)
        .await
        .context("cannot connect to the test PostgreSQL server")?;
    sqlx::raw_sql(sql).execute(&mut db).await?;
    db.close().await?;
    Ok(())
}

/// Whether a database `name` exists on the test server.
pub async fn database_exists(name: &str) -> anyhow::Result<bool> {
    let mut db = sqlx::PgConnection::connect(&admin_url()?).await?;
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut db)
        .await?;
    db.close().await?;
    Ok(found.is_some())
}

/// Databases on the test server whose name starts with `prefix`.
pub async fn databases_like(prefix: &str) -> anyhow::Result<Vec<String>> {
    let mut db = sqlx::PgConnection::connect(&admin_url()?).await?;
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
            .bind(prefix)
            .fetch_all(&mut db)
            .await?;
    db.close().await?;
    Ok(names)
}

/// User tables of the database at `url`, as (schema, table).
async fn tables(db: &mut sqlx::PgConnection) -> anyhow::Result<Vec<(String, String)>> {
    let rows = sqlx::query(
        "SELECT schemaname::text, tablename::text FROM pg_tables
         WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
         ORDER BY 1, 2",
    )
    .fetch_all(&mut *db)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

/// Rows of every user table of the database at `url`.
pub async fn row_counts(url: &str) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut db = sqlx::PgConnection::connect(url).await?;
    let mut counts = BTreeMap::new();
    for (schema, table) in tables(&mut db).await? {
        let rows: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {}.{}",
            quote(&schema),
            quote(&table)
        ))
        .fetch_one(&mut db)
        .await?;
        counts.insert(format!("{schema}.{table}"), u64::try_from(rows)?);
    }
    db.close().await?;
    Ok(counts)
}

/// A digest of every user table's content in the database at `url`.
pub async fn fingerprint(url: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut db = sqlx::PgConnection::connect(url).await?;
    let mut digests = BTreeMap::new();
    for (schema, table) in tables(&mut db).await? {
        let digest: String = sqlx::query_scalar(&format!(
            "SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {}.{} t",
            quote(&schema),
            quote(&table)
        ))
        .fetch_one(&mut db)
        .await?;
        digests.insert(format!("{schema}.{table}"), digest);
    }
    db.close().await?;
    Ok(digests)
}

/// Drops `name` from a thread of its own (this runs in `Drop`, inside the
/// test's runtime).
pub fn drop_database(admin_url: &str, name: &str) {
    let admin_url = admin_url.to_owned();
    let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote(name));
    let result = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(execute(&admin_url, &statement))
    })
    .join();
    if let Ok(Err(error)) = result {
        eprintln!("warning: could not drop the test database {name}: {error:#}");
    }
}
