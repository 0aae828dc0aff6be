//! A validated backup policy: what to back up on which host, when, how long
//! to keep it, where to store it and how to protect it. Produced only by
//! `backup::spec::parse`, so everything here has been checked.

use std::time::Duration;

use crate::deploy::model::SecretRef as SecretReference;

/// A backup policy, as `argosy backup policy apply -f FILE` defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupPolicySpec {
    pub name: String,
    pub runs_on: RunsOn,
    pub source: Source,
    /// A five-field cron expression (UTC), e.g. `0 */2 * * *`.
    pub schedule: String,
    /// The newest successful backup must never be older than this.
    pub rpo: Duration,
    pub retention: Retention,
    pub destinations: Vec<Destination>,
    /// zstd level, 1..=19 (default 3).
    pub compression_level: i32,
    /// Client-side encryption key; `None` stores artifacts unencrypted
    /// (validation warns, and only `allow_unencrypted: true` permits it).
    pub encryption_key: Option<SecretReference>,
    pub verify: Verify,
}

/// Which host runs the backups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunsOn {
    /// A host id or hostname.
    Host(String),
    /// The host running this service's allocation; a `postgres` source
    /// without `container` then runs its tools in that allocation's container.
    Service(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Postgres {
        /// A secret holding `postgres://user:password@host:port/database`.
        connection: SecretReference,
        /// Run `pg_dump`/`psql` inside this container (`docker exec`);
        /// `None`: on the host, or in the service's container with `service:`.
        container: Option<String>,
    },
    Volume {
        name: String,
    },
    Path {
        path: String,
    },
    Command {
        backup: String,
        restore: String,
    },
}

impl Source {
    /// `postgres`, `volume`, `path` or `command`.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Postgres { .. } => "postgres",
            Source::Volume { .. } => "volume",
            Source::Path { .. } => "path",
            Source::Command { .. } => "command",
        }
    }
}

/// Grandfather-father-son retention: the newest `keep_last` backups, plus
/// the newest backup of each of the last `hourly` hours, `daily` days,
/// `weekly` ISO weeks and `monthly` months. Zero keeps none of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub keep_last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Unique within the policy (`local`, `offsite`).
    pub name: String,
    pub kind: DestinationKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationKind {
    /// An absolute directory on the host.
    Dir { path: String },
    S3 {
        /// `https://s3.eu-west-1.amazonaws.com` or `http://127.0.0.1:9000`.
        endpoint: String,
        bucket: String,
        /// Key prefix, empty or ending in `/`.
        prefix: String,
        region: String,
        access_key_id: SecretReference,
        secret_access_key: SecretReference,
    },
}

/// Verification by restoring.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verify {
    /// A cron expression for verifying the newest backup; `None`: only on demand.
    pub schedule: Option<String>,
    /// PostgreSQL: SQL returning one boolean, run in the scratch database.
    pub sql_assertion: Option<String>,
}
