//! Backup jobs on the host that holds the data: take a backup as one
//! stream (source → zstd → encrypt → sha256 → every destination), verify
//! one by restoring it into a scratch target, restore one, and delete what
//! retention no longer keeps. Memory stays bounded whatever the size.
//!
//! Map: `runner` (receives `BackupJob`s from the session, runs each at most
//! once per its `journal`, streams `JobUpdate`s back, asks for the secrets a
//! job names), `pipeline` (the streaming backup and restore paths), `seal`
//! (chunked authenticated encryption of the artifact), `destinations`
//! (directory and S3 storage of artifacts), `source` (what produces a dump
//! and what takes a restore, dispatching to `postgres` — `pg_dump`/`psql`
//! on the host or in a container — and `archive` — Docker volumes and host
//! paths as tar — or running any command), `copy_rows` (per-table row
//! counts read off a plain `pg_dump` stream).
//!
//! The types below are the contract between the pipeline and the sources.

pub mod archive;
pub mod copy_rows;
pub mod destinations;
pub mod journal;
pub mod pipeline;
pub mod postgres;
pub mod runner;
pub mod seal;
pub mod source;

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use zeroize::Zeroizing;

/// Rows per table, `schema.table` → rows (names unquoted). Archives
/// (volume and path sources) report [`ARCHIVE_FILES`] and
/// [`ARCHIVE_BYTES`] here, so a verification's table-by-table comparison
/// with the manifest also checks what a restore extracted.
pub type TableRows = BTreeMap<String, u64>;

/// An archive's regular files (hard links to one file count once).
pub const ARCHIVE_FILES: &str = "files";
/// The bytes of an archive's regular files.
pub const ARCHIVE_BYTES: &str = "bytes";

/// What a source needs besides its spec: the secret values its job named
/// and a Docker engine for container sources.
#[derive(Default)]
pub struct SourceContext {
    /// PostgreSQL: the connection URL from the policy's secret.
    pub connection_url: Option<Zeroizing<String>>,
    /// The Docker engine, for `container` and `volume` sources.
    pub docker: Option<crate::docker::Engine>,
    /// Where `Scratch` restores of volumes and paths extract to (on a disk
    /// with room, e.g. under the agent's state directory); the system's
    /// temporary directory when `None`.
    pub scratch_dir: Option<std::path::PathBuf>,
}

/// A dump being produced: read `output` to its end, then `finish` says
/// whether the producer succeeded and what it reported.
pub struct Dump {
    pub output: Pin<Box<dyn AsyncRead + Send>>,
    pub finish: Pin<Box<dyn std::future::Future<Output = Result<DumpReport, SourceError>> + Send>>,
}

/// What a finished dump reports for the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpReport {
    /// Tool → version line (`pg_dump` → `pg_dump (PostgreSQL) 15.18`).
    pub tool_versions: BTreeMap<String, String>,
    /// PostgreSQL: rows per table in the dump.
    pub tables: TableRows,
}

/// Where a restore goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreInto {
    /// A throwaway target for verification (PostgreSQL: a temporary
    /// database, dropped by `finish` whatever happened; paths: a temporary
    /// directory, removed by `finish`).
    Scratch,
    /// A new PostgreSQL database on the source's server (must not exist).
    Database(String),
    /// A new or empty host directory.
    Directory(String),
    /// Over the source itself.
    InPlace,
}

/// A restore being fed: write the decrypted, decompressed dump into
/// `input`, shut it down, then `finish(Fed::Whole)` reports what the
/// target holds. If the target stops reading early (the tool failed),
/// `input` discards the rest rather than failing, so the pipeline reaches
/// `finish`, which says why. When the artifact turns out to be damaged
/// (or the wrong key), drop `input` unshut and call
/// `finish(Fed::Abandoned)`: it returns only once what the restore made
/// is gone again (a created database dropped, a new directory emptied),
/// so a failed job never reports before its cleanup. Dropping a `Restore`
/// without finishing it still cleans up, in the background.
pub struct Restore {
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
    pub finish: FinishRestore,
}

/// The end of a [`Restore`]: told how its input ended.
pub type FinishRestore = Box<
    dyn FnOnce(
            Fed,
        ) -> Pin<
            Box<dyn std::future::Future<Output = Result<RestoreReport, SourceError>> + Send>,
        > + Send,
>;

/// How the pipeline ended a restore's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fed {
    /// The whole artifact was sound and written; the input was shut down.
    Whole,
    /// The artifact failed part-way; the input was dropped unfinished and
    /// nothing of it may stay.
    Abandoned,
}

/// What a finished restore reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// PostgreSQL: rows per table in the restored database.
    pub tables: TableRows,
    /// The verification's SQL assertion: `Some(true)` when it held.
    pub assertion: Option<bool>,
    /// How long the restore itself took (the RTO part the target costs).
    pub elapsed: Duration,
}

/// The step of a dump or restore an error happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Checking the connection and the tools before any byte flows.
    Check,
    Dump,
    /// Making the restore target (a database, a directory).
    Prepare,
    Restore,
    /// Counting what the restored target holds.
    Count,
    /// The verification's SQL assertion.
    Assertion,
    /// Removing a scratch target.
    Cleanup,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Check => "connection check",
            Self::Dump => "dump",
            Self::Prepare => "restore target preparation",
            Self::Restore => "restore",
            Self::Count => "row count",
            Self::Assertion => "SQL assertion",
            Self::Cleanup => "scratch target cleanup",
        })
    }
}

/// Why a source could not dump or restore. Every message starts with the
/// source (`postgres source crm at 127.0.0.1:5432`), names the stage and
/// says what to do; tool output is its bounded tail with the connection's
/// password replaced by `***`, so no message carries a credential.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The job's source or target cannot be used as given.
    #[error("{origin}: {problem}")]
    Invalid { origin: String, problem: String },
    /// A tool could not be started at all.
    #[error("{origin}: the {stage} could not start `{tool}`: {reason}; {hint}")]
    ToolMissing {
        origin: String,
        stage: Stage,
        tool: String,
        reason: String,
        hint: String,
    },
    /// The database server cannot be reached or refused the credentials.
    #[error("{origin}: the {stage} could not connect to PostgreSQL: {stderr}; {hint}")]
    Connect {
        origin: String,
        stage: Stage,
        stderr: String,
        hint: String,
    },
    /// A tool ran and failed.
    #[error("{origin}: the {stage} failed: `{tool}` {status}: {stderr}; {hint}")]
    ToolFailed {
        origin: String,
        stage: Stage,
        tool: String,
        /// `exited with status 1`, `was killed by signal 9`.
        status: String,
        stderr: String,
        hint: String,
    },
    /// Reading or writing a stream, a file or a directory failed.
    #[error("{origin}: the {stage} failed while {doing}: {error}")]
    Io {
        origin: String,
        stage: Stage,
        doing: String,
        #[source]
        error: std::io::Error,
    },
    /// The Docker engine refused or could not be reached.
    #[error("{origin}: the {stage} failed: {error}")]
    Engine {
        origin: String,
        stage: Stage,
        #[source]
        error: crate::docker::EngineError,
    },
    /// The stream or the restored target is not whole: a dump cut short or
    /// not read to its end, a restore that extracted less than it was given.
    #[error("{origin}: the {stage} is incomplete: {problem}")]
    Incomplete {
        origin: String,
        stage: Stage,
        problem: String,
    },
}
