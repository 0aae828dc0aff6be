//! The streaming paths of a backup and of a restore, with memory bounded
//! by a few chunks whatever the size of the data.
//!
//! Backup: `Dump.output` → zstd → [`seal`](super::seal) → sha256 → every
//! destination at once. The dump is read on the agent's runtime; zstd,
//! sealing and hashing run on one blocking thread (the agent's runtime is
//! a single thread, and zstd at high levels would stall its session and
//! health checks — on a blocking thread it also gets a core of its own);
//! each destination is fed through its own bounded channel, so the slowest
//! one slows the dump and none buffers more than a few chunks. One
//! destination failing fails the backup and the others' partial writes are
//! removed. Only after the whole artifact is stored and `Dump.finish`
//! reports success are the artifacts committed (renamed, multipart upload
//! completed), and the manifest goes next to each of them last.
//!
//! Restore and verification: the artifact is fetched from the first
//! destination that has it (directories first), hashed, opened,
//! decompressed on a blocking thread and written into `Restore.input`.
//! When it is damaged, the rest is still read to name the damage against
//! the manifest (size, then sha256) rather than by its first symptom.
//!
//! The choices are pure functions with tests: [`fetch_order`],
//! [`opener_cipher`], [`judge_artifact`], [`compare_tables`],
//! [`judge_restore`], [`ProgressGate`].

use super::destinations::{
    Destination, DestinationError, InFlight, Stored, Upload, artifact_name, manifest_name,
};
use super::seal::{Cipher, Opener, SealError, Sealer};
use super::{Dump, Fed, Restore, RestoreReport, SourceError, TableRows};
use argosy_proto::v1::{BackupManifest, JobProgress, StoredCopy, TableCheck};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

/// How much is read from a dump at once.
const READ_CHUNK: usize = 64 * 1024;
/// Chunks each channel of the pipeline holds at most.
const CHANNEL_CHUNKS: usize = 4;
/// Artifact or plaintext bytes collected before they are passed on.
const PASS_ON: usize = 64 * 1024;
/// Progress is reported at most this often.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// How long a failed dump's producer gets to exit once its output is closed.
const REAP_WAIT: Duration = Duration::from_secs(30);
/// zstd's window, and so the decoder's memory, stays at most 8 MiB.
const MAX_WINDOW_LOG: u32 = 23;

/// Why a backup, restore or verification failed. Each message names the
/// backup and the stage and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(Box<SourceError>),
    #[error(transparent)]
    Destination(#[from] DestinationError),
    #[error("reading the dump failed after {bytes} bytes: {error}")]
    ReadDump {
        bytes: u64,
        #[source]
        error: std::io::Error,
    },
    #[error("sealing the artifact failed: {0}")]
    Seal(SealError),
    #[error("compressing the dump failed: {0}")]
    Compress(std::io::Error),
    #[error("artifact {artifact} is missing from every destination ({tried})")]
    Missing { artifact: String, tried: String },
    #[error(
        "artifact {location} is truncated: {bytes} bytes, the manifest says {expected}; restore another backup, or another copy of this one"
    )]
    Truncated {
        location: String,
        bytes: u64,
        expected: u64,
    },
    #[error(
        "artifact {location} is corrupted: sha256 {sha256}, manifest says {expected}; restore another backup, or another copy of this one"
    )]
    Corrupted {
        location: String,
        sha256: String,
        expected: String,
    },
    #[error("the encryption key does not open backup {backup_id} ({location}): {error}")]
    Key {
        backup_id: String,
        location: String,
        error: SealError,
    },
    #[error("artifact {location} cannot be opened: {error}")]
    Open { location: String, error: SealError },
    #[error(
        "backup {backup_id} is encrypted ({cipher}) but the job names no encryption key; give the policy the key it was taken with (`encryption: key:`)"
    )]
    NoKey {
        backup_id: String,
        cipher: &'static str,
    },
    #[error(
        "the manifest of backup {backup_id} names an unknown encryption {name:?}; upgrade the agent"
    )]
    UnknownEncryption { backup_id: String, name: String },
    #[error("artifact {location} does not decompress: {error}")]
    Decompress {
        location: String,
        #[source]
        error: std::io::Error,
    },
    #[error("writing into the restore target failed: {0}")]
    RestoreInput(std::io::Error),
    #[error("the pipeline stopped: {0}")]
    Interrupted(&'static str),
}

impl From<SourceError> for PipelineError {
    fn from(error: SourceError) -> Self {
        Self::Source(Box::new(error))
    }
}

// ---- Decisions --------------------------------------------------------

/// Lets progress through at most once per [`PROGRESS_EVERY`].
#[derive(Debug, Clone)]
pub struct ProgressGate {
    every: Duration,
    last: Option<Instant>,
}

impl Default for ProgressGate {
    fn default() -> Self {
        Self::new(PROGRESS_EVERY)
    }
}

impl ProgressGate {
    pub fn new(every: Duration) -> Self {
        Self { every, last: None }
    }

    /// Whether a progress update may go out at `now` (and if so, it counts).
    pub fn due(&mut self, now: Instant) -> bool {
        let due = self
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= self.every);
        if due {
            self.last = Some(now);
        }
        due
    }
}

/// The order to look for an artifact in: directories (local, fast) first,
/// then the others, each group in the policy's order.
pub fn fetch_order(destinations: &[Destination]) -> Vec<&Destination> {
    let (mut dirs, others): (Vec<_>, Vec<_>) = destinations.iter().partition(|d| d.is_dir());
    dirs.extend(others);
    dirs
}

/// The cipher the manifest says the artifact is sealed with, checked
/// against whether the job brought a key.
pub fn opener_cipher(
    backup_id: &str,
    encryption: &str,
    has_key: bool,
) -> Result<Cipher, PipelineError> {
    let cipher = Cipher::from_name(encryption).ok_or_else(|| PipelineError::UnknownEncryption {
        backup_id: backup_id.to_owned(),
        name: encryption.to_owned(),
    })?;
    if cipher == Cipher::XChaCha20Poly1305Stream && !has_key {
        return Err(PipelineError::NoKey {
            backup_id: backup_id.to_owned(),
            cipher: cipher.name(),
        });
    }
    Ok(cipher)
}

/// How opening a fetched artifact went.
#[derive(Debug)]
pub enum OpenFailure {
    Seal(SealError),
    Decompress(std::io::Error),
    /// The restore target stopped taking data (its own error says why).
    TargetGone,
    /// The fetch stopped before the end.
    Interrupted,
}

/// What the fetch, the opening and the restore input each reported.
#[derive(Debug)]
pub struct ArtifactFacts {
    /// Bytes fetched, and whether the fetch read to the end.
    pub fetched: Result<u64, DestinationError>,
    /// The artifact's sha256 when it was read to the end.
    pub sha256: Option<String>,
    pub opened: Result<(), OpenFailure>,
    pub written: Result<(), std::io::Error>,
}

/// Names what is wrong with a fetched artifact, most telling first: a
/// wrong key (seen in the header), a failed fetch, a size or hash that
/// differs from the manifest, then what opening or decompressing said,
/// then the restore input.
pub fn judge_artifact(
    backup_id: &str,
    location: &str,
    manifest: &BackupManifest,
    facts: ArtifactFacts,
) -> Result<(), PipelineError> {
    let location = location.to_owned();
    if let Err(OpenFailure::Seal(
        error @ (SealError::WrongKey
        | SealError::NotArtifact
        | SealError::UnsupportedVersion(_)
        | SealError::UnknownCipher(_)
        | SealError::CipherMismatch { .. }
        | SealError::HeaderCorrupted),
    )) = &facts.opened
    {
        return Err(if *error == SealError::WrongKey {
            PipelineError::Key {
                backup_id: backup_id.to_owned(),
                location,
                error: error.clone(),
            }
        } else {
            PipelineError::Open {
                location,
                error: error.clone(),
            }
        });
    }
    let bytes = facts.fetched?;
    let expected = manifest.artifact_bytes;
    if expected > 0 && bytes < expected {
        return Err(PipelineError::Truncated {
            location,
            bytes,
            expected,
        });
    }
    if let Some(sha256) = &facts.sha256
        && !manifest.sha256.is_empty()
        && !sha256.eq_ignore_ascii_case(&manifest.sha256)
    {
        return Err(PipelineError::Corrupted {
            location,
            sha256: sha256.clone(),
            expected: manifest.sha256.clone(),
        });
    }
    match facts.opened {
        Ok(()) | Err(OpenFailure::TargetGone) => {}
        Err(OpenFailure::Seal(error)) => return Err(PipelineError::Open { location, error }),
        Err(OpenFailure::Decompress(error)) => {
            return Err(PipelineError::Decompress { location, error });
        }
        Err(OpenFailure::Interrupted) => {
            return Err(PipelineError::Interrupted("the fetch stopped"));
        }
    }
    facts.written.map_err(PipelineError::RestoreInput)
}

/// A table whose restored rows differ from the manifest's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableMismatch {
    Missing {
        table: String,
        expected: u64,
    },
    Extra {
        table: String,
        restored: u64,
    },
    Rows {
        table: String,
        expected: u64,
        restored: u64,
    },
}

impl std::fmt::Display for TableMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing { table, expected } => {
                write!(f, "{table} is missing (the manifest has {expected} rows)")
            }
            Self::Extra { table, restored } => {
                write!(f, "{table} ({restored} rows) is not in the manifest")
            }
            Self::Rows {
                table,
                expected,
                restored,
            } => write!(
                f,
                "{table} has {restored} rows, the manifest says {expected}"
            ),
        }
    }
}

/// Every table of the manifest and of the restore, side by side, and the
/// ones that differ.
pub fn compare_tables(
    expected: &TableRows,
    restored: &TableRows,
) -> (Vec<TableCheck>, Vec<TableMismatch>) {
    let mut checks = Vec::new();
    let mut mismatches = Vec::new();
    let names: std::collections::BTreeSet<&String> =
        expected.keys().chain(restored.keys()).collect();
    for table in names {
        let (want, got) = (expected.get(table), restored.get(table));
        checks.push(TableCheck {
            table: table.clone(),
            expected_rows: want.copied().unwrap_or(0),
            restored_rows: got.copied().unwrap_or(0),
        });
        match (want, got) {
            (Some(&expected), None) => mismatches.push(TableMismatch::Missing {
                table: table.clone(),
                expected,
            }),
            (None, Some(&restored)) => mismatches.push(TableMismatch::Extra {
                table: table.clone(),
                restored,
            }),
            (Some(&expected), Some(&restored)) if expected != restored => {
                mismatches.push(TableMismatch::Rows {
                    table: table.clone(),
                    expected,
                    restored,
                });
            }
            _ => {}
        }
    }
    (checks, mismatches)
}

/// A restore's verdict: the tables compared, and what is wrong (nothing
/// when it proves the backup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub tables: Vec<TableCheck>,
    pub problems: Vec<String>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Compares a restore with the manifest (`expected` rows per table) and
/// checks the SQL assertion, when there is one. A restore `in_place` lands
/// on live data that may have grown since the backup: tables the backup
/// does not hold are left alone (not a problem), and an archive's file and
/// byte totals include files added since, so only the backup's own tables
/// are compared.
pub fn judge_restore(
    expected: &TableRows,
    report: &RestoreReport,
    sql_assertion: Option<&str>,
    in_place: bool,
) -> Verdict {
    let (tables, mut mismatches) = compare_tables(expected, &report.tables);
    if in_place {
        mismatches.retain(|m| match m {
            TableMismatch::Extra { .. } => false,
            TableMismatch::Rows { table, .. } | TableMismatch::Missing { table, .. } => {
                table != super::ARCHIVE_FILES && table != super::ARCHIVE_BYTES
            }
        });
    }
    let mut problems = Vec::new();
    if !mismatches.is_empty() {
        problems.push(format!(
            "the restored data differs from the manifest: {}",
            mismatches
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    if let Some(assertion) = sql_assertion.filter(|a| !a.trim().is_empty()) {
        match report.assertion {
            Some(true) => {}
            Some(false) => problems.push(format!(
                "the SQL assertion `{assertion}` is false on the restored data"
            )),
            None => problems.push(format!(
                "the SQL assertion `{assertion}` was not run (this source cannot run SQL)"
            )),
        }
    }
    Verdict { tables, problems }
}

/// The manifest's tables as a map.
pub fn manifest_tables(manifest: &BackupManifest) -> TableRows {
    manifest
        .tables
        .iter()
        .map(|t| (t.table.clone(), t.rows))
        .collect()
}

// ---- Progress ---------------------------------------------------------

/// Where progress goes (the runner keeps the latest per job).
pub type ProgressSink<'a> = &'a (dyn Fn(JobProgress) + Send + Sync);

struct Progress<'a> {
    sink: ProgressSink<'a>,
    gate: ProgressGate,
}

impl Progress<'_> {
    fn report(&mut self, stage: &str, bytes: u64, total_bytes: u64) {
        if self.gate.due(Instant::now()) {
            (self.sink)(JobProgress {
                stage: stage.to_owned(),
                bytes,
                total_bytes,
            });
        }
    }
}

// ---- Journal hooks ----------------------------------------------------

/// Records what a crash would leave behind, so it can be cleaned after a
/// restart.
pub trait InFlightLog: Send + Sync {
    fn opened(&self, item: &InFlight);
    fn closed(&self, item: &InFlight);
}

// ---- Backup -----------------------------------------------------------

/// What a backup is asked to do.
pub struct BackupRun<'a> {
    pub policy: &'a str,
    pub backup_id: &'a str,
    /// `postgres`, `volume`, `path` or `command`.
    pub source_kind: &'a str,
    pub zstd_level: i32,
    /// The encryption key's value; `None`: cipher `none`.
    pub key: Option<&'a [u8]>,
    /// When the job started (Unix ms) and on the monotonic clock.
    pub started_at_ms: i64,
    pub started: Instant,
}

/// How a backup ended: the manifest as far as it got, and the error.
#[derive(Debug)]
pub struct BackupOutcome {
    pub manifest: BackupManifest,
    pub error: Option<PipelineError>,
}

enum Raw {
    Data(Bytes),
    End,
}

/// What the blocking stage produced.
#[derive(Debug, Default)]
struct Sealed {
    compressed: u64,
    artifact: u64,
    sha256: String,
}

/// The sink zstd writes into: seals, hashes and passes the artifact on.
struct SealingSink {
    sealer: Option<Sealer>,
    hasher: Sha256,
    out: Vec<u8>,
    tx: mpsc::Sender<Bytes>,
    compressed: u64,
    artifact: u64,
}

impl SealingSink {
    fn pass_on(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.hasher.update(&self.out);
        self.artifact += self.out.len() as u64;
        let chunk = std::mem::replace(&mut self.out, Vec::with_capacity(PASS_ON * 2));
        self.tx.blocking_send(Bytes::from(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the destinations stopped")
        })
    }

    fn finish(mut self) -> Result<Sealed, PipelineError> {
        if let Some(sealer) = self.sealer.take() {
            sealer.finish(&mut self.out).map_err(PipelineError::Seal)?;
        }
        self.pass_on()
            .map_err(|_| PipelineError::Interrupted("the destinations stopped"))?;
        Ok(Sealed {
            compressed: self.compressed,
            artifact: self.artifact,
            sha256: hex::encode(self.hasher.finalize()),
        })
    }
}

impl std::io::Write for SealingSink {
    fn write(&mut self, compressed: &[u8]) -> std::io::Result<usize> {
        self.compressed += compressed.len() as u64;
        if let Some(sealer) = &mut self.sealer {
            sealer
                .push(compressed, &mut self.out)
                .map_err(std::io::Error::other)?;
        }
        if self.out.len() >= PASS_ON {
            self.pass_on()?;
        }
        Ok(compressed.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A zstd encoder at `level` whose tables stay within about 16 MiB (the
/// defaults of levels 10 and up reach 90 MiB).
fn bounded_encoder<W: std::io::Write>(
    sink: W,
    level: i32,
) -> std::io::Result<zstd::stream::write::Encoder<'static, W>> {
    use zstd::zstd_safe::CParameter;
    let mut encoder = zstd::stream::write::Encoder::new(sink, level)?;
    encoder.include_checksum(true)?;
    if level >= 10 {
        encoder.set_parameter(CParameter::WindowLog(22))?;
        encoder.set_parameter(CParameter::ChainLog(20))?;
        encoder.set_parameter(CParameter::HashLog(20))?;
    }
    Ok(encoder)
}

/// The blocking stage of a backup: raw chunks in, artifact chunks out.
fn compress_and_seal(
    mut raw: mpsc::Receiver<Raw>,
    sink: SealingSink,
    level: i32,
) -> Result<Sealed, PipelineError> {
    let seal_error =
        |error: std::io::Error| match error.get_ref().and_then(|e| e.downcast_ref::<SealError>()) {
            Some(seal) => PipelineError::Seal(seal.clone()),
            None if error.kind() == std::io::ErrorKind::BrokenPipe => {
                PipelineError::Interrupted("the destinations stopped")
            }
            None => PipelineError::Compress(error),
        };
    let mut encoder = bounded_encoder(sink, level).map_err(PipelineError::Compress)?;
    loop {
        match raw.blocking_recv() {
            Some(Raw::Data(chunk)) => encoder.write_all(&chunk).map_err(seal_error)?,
            Some(Raw::End) => break,
            None => return Err(PipelineError::Interrupted("the dump stopped")),
        }
    }
    encoder.finish().map_err(seal_error)?.finish()
}

async fn read_dump(
    mut output: std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>,
    raw: mpsc::Sender<Raw>,
    progress: &mut Progress<'_>,
) -> Result<u64, PipelineError> {
    let mut bytes = 0u64;
    loop {
        let mut buffer = BytesMut::with_capacity(READ_CHUNK);
        let read = output
            .read_buf(&mut buffer)
            .await
            .map_err(|error| PipelineError::ReadDump { bytes, error })?;
        if read == 0 {
            break;
        }
        bytes += read as u64;
        progress.report("dump", bytes, 0);
        raw.send(Raw::Data(buffer.freeze()))
            .await
            .map_err(|_| PipelineError::Interrupted("compression stopped"))?;
    }
    raw.send(Raw::End)
        .await
        .map_err(|_| PipelineError::Interrupted("compression stopped"))?;
    Ok(bytes)
}

async fn tee(
    mut artifact: mpsc::Receiver<Bytes>,
    outs: Vec<mpsc::Sender<Bytes>>,
) -> Result<(), PipelineError> {
    while let Some(chunk) = artifact.recv().await {
        for out in &outs {
            out.send(chunk.clone())
                .await
                .map_err(|_| PipelineError::Interrupted("a destination stopped"))?;
        }
    }
    Ok(())
}

async fn write_upload(
    upload: &mut Upload,
    mut chunks: mpsc::Receiver<Bytes>,
) -> Result<(), PipelineError> {
    while let Some(chunk) = chunks.recv().await {
        upload.write(&chunk).await?;
    }
    Ok(())
}

/// The first error that is a cause rather than a consequence: a stage
/// that stopped because another did reports [`PipelineError::Interrupted`].
fn root_cause(errors: impl IntoIterator<Item = PipelineError>) -> Option<PipelineError> {
    let mut consequence = None;
    for error in errors {
        match error {
            PipelineError::Interrupted(_) => {
                consequence.get_or_insert(error);
            }
            cause => return Some(cause),
        }
    }
    consequence
}

/// Opens an upload at every destination; on failure aborts those opened.
async fn begin_uploads(
    destinations: &[Destination],
    run: &BackupRun<'_>,
    log: &dyn InFlightLog,
) -> Result<Vec<Upload>, PipelineError> {
    let begun = futures_util::future::join_all(
        destinations
            .iter()
            .map(|d| d.begin(run.policy, run.backup_id)),
    )
    .await;
    let mut uploads = Vec::new();
    let mut failure = None;
    for result in begun {
        match result {
            Ok(upload) => {
                log.opened(&upload.in_flight());
                uploads.push(upload);
            }
            Err(error) => {
                failure.get_or_insert(error);
            }
        }
    }
    if let Some(error) = failure {
        abort_all(&mut uploads, log).await;
        return Err(error.into());
    }
    Ok(uploads)
}

async fn abort_all(uploads: &mut [Upload], log: &dyn InFlightLog) {
    let results = futures_util::future::join_all(uploads.iter_mut().map(|u| async {
        let result = u.abort().await;
        (u.in_flight(), result)
    }))
    .await;
    for (item, result) in results {
        match result {
            Ok(()) => log.closed(&item),
            // Left in the journal; cleaned up after the next restart.
            Err(error) => {
                tracing::warn!(%error, upload = %item.describe(), "cannot clean up a failed upload")
            }
        }
    }
}

/// Takes a backup of `dump` to every destination. Never leaves a partial
/// or uncommitted artifact behind on failure (what cannot be removed stays
/// in the journal for the next start).
pub async fn backup(
    dump: Dump,
    destinations: &[Destination],
    run: &BackupRun<'_>,
    log: &dyn InFlightLog,
    progress: ProgressSink<'_>,
    now_ms: &(dyn Fn() -> i64 + Send + Sync),
) -> BackupOutcome {
    let mut manifest = BackupManifest {
        backup_id: run.backup_id.to_owned(),
        policy: run.policy.to_owned(),
        source_kind: run.source_kind.to_owned(),
        started_at_ms: run.started_at_ms,
        artifact: artifact_name(run.policy, run.backup_id),
        ..BackupManifest::default()
    };
    let mut progress = Progress {
        sink: progress,
        gate: ProgressGate::default(),
    };
    let result = backup_inner(
        dump,
        destinations,
        run,
        log,
        &mut progress,
        &mut manifest,
        now_ms,
    )
    .await;
    manifest.total_ms = elapsed_ms(run.started);
    manifest.finished_at_ms = now_ms();
    BackupOutcome {
        manifest,
        error: result.err(),
    }
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

async fn backup_inner(
    dump: Dump,
    destinations: &[Destination],
    run: &BackupRun<'_>,
    log: &dyn InFlightLog,
    progress: &mut Progress<'_>,
    manifest: &mut BackupManifest,
    now_ms: &(dyn Fn() -> i64 + Send + Sync),
) -> Result<(), PipelineError> {
    let Dump { output, finish } = dump;
    let reap = |finish| async move {
        // Its output is closed: the producer stops; its result no longer matters.
        let _ = tokio::time::timeout(REAP_WAIT, finish).await;
    };
    let sealer = match Sealer::new(run.key) {
        Ok(sealer) => sealer,
        Err(error) => {
            drop(output);
            reap(finish).await;
            return Err(PipelineError::Seal(error));
        }
    };
    manifest.encryption = sealer.cipher().name().to_owned();
    let mut uploads = match begin_uploads(destinations, run, log).await {
        Ok(uploads) => uploads,
        Err(error) => {
            drop(output);
            reap(finish).await;
            return Err(error);
        }
    };

    let (raw_tx, raw_rx) = mpsc::channel(CHANNEL_CHUNKS);
    let (artifact_tx, artifact_rx) = mpsc::channel(CHANNEL_CHUNKS);
    let (outs, ins): (Vec<_>, Vec<_>) = uploads
        .iter()
        .map(|_| mpsc::channel(CHANNEL_CHUNKS))
        .unzip();
    let sink = SealingSink {
        sealer: Some(sealer),
        hasher: Sha256::new(),
        out: Vec::with_capacity(PASS_ON * 2),
        tx: artifact_tx,
        compressed: 0,
        artifact: 0,
    };
    let level = run.zstd_level;
    let sealing = async {
        tokio::task::spawn_blocking(move || compress_and_seal(raw_rx, sink, level))
            .await
            .unwrap_or(Err(PipelineError::Interrupted(
                "the compression thread ended",
            )))
    };
    let writers = futures_util::future::join_all(
        uploads
            .iter_mut()
            .zip(ins)
            .map(|(upload, chunks)| write_upload(upload, chunks)),
    );
    let (read, sealed, teed, written) = tokio::join!(
        read_dump(output, raw_tx, progress),
        sealing,
        tee(artifact_rx, outs),
        writers
    );
    let (read, sealed) = match (read, sealed, teed) {
        (Ok(read), Ok(sealed), Ok(())) if written.iter().all(Result::is_ok) => (read, sealed),
        (read, sealed, teed) => {
            // Destinations first: a stage that stopped because one did says so.
            let errors = written.into_iter().filter_map(Result::err);
            let cause = root_cause(
                errors
                    .chain(sealed.err())
                    .chain(read.err())
                    .chain(teed.err()),
            )
            .unwrap_or(PipelineError::Interrupted("a stage stopped"));
            abort_all(&mut uploads, log).await;
            reap(finish).await;
            return Err(cause);
        }
    };
    manifest.raw_bytes = read;
    manifest.compressed_bytes = sealed.compressed;
    manifest.artifact_bytes = sealed.artifact;
    manifest.sha256 = sealed.sha256;

    let report = match finish.await {
        Ok(report) => report,
        Err(error) => {
            manifest.dump_ms = elapsed_ms(run.started);
            abort_all(&mut uploads, log).await;
            return Err(error.into());
        }
    };
    manifest.dump_ms = elapsed_ms(run.started);
    manifest.tool_versions = report.tool_versions.into_iter().collect();
    manifest.tool_versions.insert("zstd".into(), zstd_version());
    manifest.tool_versions.insert(
        "argosy-agent".into(),
        crate::inventory::AGENT_VERSION.into(),
    );
    manifest.tables = report
        .tables
        .into_iter()
        .map(|(table, rows)| argosy_proto::v1::TableRows { table, rows })
        .collect();

    progress.report("upload", manifest.artifact_bytes, manifest.artifact_bytes);
    commit_all(destinations, &mut uploads, run, log, manifest).await?;
    manifest.finished_at_ms = now_ms();
    manifest.total_ms = elapsed_ms(run.started);
    let json = Bytes::from(manifest_json(manifest));
    let name = manifest_name(run.policy, run.backup_id);
    let written = futures_util::future::join_all(
        destinations
            .iter()
            .map(|d| d.put_small(&name, json.clone())),
    )
    .await;
    if let Some(error) = written.into_iter().find_map(Result::err) {
        remove_everywhere(destinations, run).await;
        return Err(error.into());
    }
    Ok(())
}

/// Commits every upload; if one cannot be, removes what the others stored.
async fn commit_all(
    destinations: &[Destination],
    uploads: &mut [Upload],
    run: &BackupRun<'_>,
    log: &dyn InFlightLog,
    manifest: &mut BackupManifest,
) -> Result<(), PipelineError> {
    let committed = futures_util::future::join_all(uploads.iter_mut().map(|u| async {
        let result = u.commit().await;
        (u.destination().to_owned(), u.in_flight(), result)
    }))
    .await;
    let mut failure = None;
    for (destination, item, result) in committed {
        match result {
            Ok((location, bytes)) => {
                log.closed(&item);
                manifest.copies.push(StoredCopy {
                    destination,
                    location,
                    bytes,
                });
            }
            Err(error) => {
                failure.get_or_insert(error);
            }
        }
    }
    let Some(error) = failure else {
        return Ok(());
    };
    // The failed ones are still open: abort them, then delete the others.
    let open: Vec<usize> = uploads
        .iter()
        .enumerate()
        .filter(|(_, u)| {
            !manifest
                .copies
                .iter()
                .any(|c| c.destination == u.destination())
        })
        .map(|(i, _)| i)
        .collect();
    for index in open {
        abort_all(&mut uploads[index..=index], log).await;
    }
    remove_everywhere(destinations, run).await;
    manifest.copies.clear();
    Err(error.into())
}

async fn remove_everywhere(destinations: &[Destination], run: &BackupRun<'_>) {
    for destination in destinations {
        if let Err(error) = destination.delete(run.policy, run.backup_id).await {
            tracing::warn!(%error, backup = run.backup_id, "cannot remove the artifact of a failed backup");
        }
    }
}

fn zstd_version() -> String {
    let n = zstd::zstd_safe::version_number();
    format!("{}.{}.{}", n / 10_000, n / 100 % 100, n % 100)
}

/// The manifest as stored next to an artifact.
#[derive(Serialize)]
struct ManifestFile<'a> {
    format: &'static str,
    backup_id: &'a str,
    policy: &'a str,
    source_kind: &'a str,
    artifact: &'a str,
    encryption: &'a str,
    raw_bytes: u64,
    compressed_bytes: u64,
    artifact_bytes: u64,
    sha256: &'a str,
    started_at_ms: i64,
    finished_at_ms: i64,
    dump_ms: u64,
    total_ms: u64,
    tool_versions: BTreeMap<&'a str, &'a str>,
    tables: BTreeMap<&'a str, u64>,
    copies: Vec<CopyFile<'a>>,
}

#[derive(Serialize)]
struct CopyFile<'a> {
    destination: &'a str,
    location: &'a str,
    bytes: u64,
}

/// The manifest's JSON, as written beside each artifact.
pub fn manifest_json(manifest: &BackupManifest) -> Vec<u8> {
    let file = ManifestFile {
        format: "argosy-backup-manifest/1",
        backup_id: &manifest.backup_id,
        policy: &manifest.policy,
        source_kind: &manifest.source_kind,
        artifact: &manifest.artifact,
        encryption: &manifest.encryption,
        raw_bytes: manifest.raw_bytes,
        compressed_bytes: manifest.compressed_bytes,
        artifact_bytes: manifest.artifact_bytes,
        sha256: &manifest.sha256,
        started_at_ms: manifest.started_at_ms,
        finished_at_ms: manifest.finished_at_ms,
        dump_ms: manifest.dump_ms,
        total_ms: manifest.total_ms,
        tool_versions: manifest
            .tool_versions
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
        tables: manifest
            .tables
            .iter()
            .map(|t| (t.table.as_str(), t.rows))
            .collect(),
        copies: manifest
            .copies
            .iter()
            .map(|c| CopyFile {
                destination: &c.destination,
                location: &c.location,
                bytes: c.bytes,
            })
            .collect(),
    };
    let mut json = serde_json::to_vec_pretty(&file).unwrap_or_default();
    json.push(b'\n');
    json
}

// ---- Restore ----------------------------------------------------------

/// Finds the artifact: the first destination (directories first) that has
/// it, with where it is.
pub async fn fetch(
    destinations: &[Destination],
    policy: &str,
    backup_id: &str,
) -> Result<(Stored, String), PipelineError> {
    let name = artifact_name(policy, backup_id);
    let mut tried = Vec::new();
    for destination in fetch_order(destinations) {
        let location = destination.location(&name);
        match destination.open(policy, backup_id).await {
            Ok(Some(stored)) => return Ok((stored, location)),
            Ok(None) => tried.push(format!("{}: no {location}", destination.name())),
            Err(error) => tried.push(error.to_string()),
        }
    }
    if tried.is_empty() {
        tried.push("the job names no destination".into());
    }
    Err(PipelineError::Missing {
        artifact: name,
        tried: tried.join("; "),
    })
}

enum Fetched {
    Data(Bytes),
    End,
}

/// The sink the decoder writes into: passes plaintext on in chunks.
struct PlainSink {
    out: Vec<u8>,
    tx: mpsc::Sender<Bytes>,
}

impl PlainSink {
    fn pass_on(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.out, Vec::with_capacity(PASS_ON * 2));
        self.tx.blocking_send(Bytes::from(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the restore target stopped")
        })
    }
}

impl std::io::Write for PlainSink {
    fn write(&mut self, plain: &[u8]) -> std::io::Result<usize> {
        self.out.extend_from_slice(plain);
        if self.out.len() >= PASS_ON {
            self.pass_on()?;
        }
        Ok(plain.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What the blocking stage of a restore found.
struct Opened {
    sha256: Option<String>,
    result: Result<(), OpenFailure>,
}

fn decompress_error(error: std::io::Error) -> OpenFailure {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        OpenFailure::TargetGone
    } else {
        OpenFailure::Decompress(error)
    }
}

/// The blocking stage of a restore: artifact chunks in (hashed, opened,
/// decompressed), plaintext chunks out. After a failure in the body it
/// keeps hashing to the end, so the damage can be named.
fn open_and_decompress(
    mut fetched: mpsc::Receiver<Fetched>,
    plain: mpsc::Sender<Bytes>,
    key: Option<Vec<u8>>,
) -> Opened {
    let key = key.map(zeroize::Zeroizing::new);
    let mut hasher = Sha256::new();
    let mut opener = Opener::new(key.as_deref().map(Vec::as_slice));
    let mut compressed = Vec::with_capacity(PASS_ON * 2);
    let decoder = zstd::stream::write::Decoder::new(PlainSink {
        out: Vec::with_capacity(PASS_ON * 2),
        tx: plain,
    })
    .and_then(|mut d| d.window_log_max(MAX_WINDOW_LOG).map(|()| d));
    let mut decoder = match decoder {
        Ok(decoder) => Some(decoder),
        Err(error) => {
            return Opened {
                sha256: None,
                result: Err(OpenFailure::Decompress(error)),
            };
        }
    };
    let mut failure: Option<OpenFailure> = None;
    loop {
        let chunk = match fetched.blocking_recv() {
            Some(Fetched::Data(chunk)) => chunk,
            Some(Fetched::End) => break,
            None => {
                return Opened {
                    sha256: None,
                    result: Err(failure.unwrap_or(OpenFailure::Interrupted)),
                };
            }
        };
        hasher.update(&chunk);
        if failure.is_some() {
            continue;
        }
        compressed.clear();
        let step = opener
            .push(&chunk, &mut compressed)
            .map_err(OpenFailure::Seal)
            .and_then(|()| match &mut decoder {
                Some(decoder) => decoder.write_all(&compressed).map_err(decompress_error),
                None => Ok(()),
            });
        if let Err(error) = step {
            let header = matches!(&error, OpenFailure::Seal(e) if !matches!(e, SealError::CorruptedChunk { .. } | SealError::Truncated { .. } | SealError::TooLong));
            // Closes the plaintext channel: the restore input is not finished.
            decoder = None;
            if header || matches!(error, OpenFailure::TargetGone) {
                return Opened {
                    sha256: None,
                    result: Err(error),
                };
            }
            failure = Some(error);
        }
    }
    let sha256 = Some(hex::encode(hasher.finalize()));
    if let Some(error) = failure {
        return Opened {
            sha256,
            result: Err(error),
        };
    }
    compressed.clear();
    let result = opener
        .finish(&mut compressed)
        .map_err(OpenFailure::Seal)
        .and_then(|()| {
            let Some(mut decoder) = decoder else {
                return Ok(());
            };
            decoder.write_all(&compressed).map_err(decompress_error)?;
            let mut sink = decoder.finish().map_err(decompress_error)?;
            sink.pass_on().map_err(decompress_error)
        });
    Opened { sha256, result }
}

async fn pull(
    mut stored: futures_util::stream::BoxStream<'static, Result<Bytes, DestinationError>>,
    size: u64,
    tx: mpsc::Sender<Fetched>,
    progress: &mut Progress<'_>,
) -> Result<u64, DestinationError> {
    let mut bytes = 0u64;
    while let Some(chunk) = stored.next().await {
        let chunk = chunk?;
        bytes += chunk.len() as u64;
        progress.report("restore", bytes, size);
        if tx.send(Fetched::Data(chunk)).await.is_err() {
            // The opener stopped early (a header it cannot open); its error says why.
            return Ok(bytes);
        }
    }
    let _ = tx.send(Fetched::End).await;
    Ok(bytes)
}

async fn feed(
    input: &mut std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    mut plain: mpsc::Receiver<Bytes>,
) -> Result<bool, std::io::Error> {
    while let Some(chunk) = plain.recv().await {
        input.write_all(&chunk).await?;
    }
    Ok(true)
}

/// What a restore is asked to do.
pub struct RestoreRun<'a> {
    pub backup_id: &'a str,
    pub manifest: &'a BackupManifest,
    /// The encryption key's value, if the job names one.
    pub key: Option<&'a [u8]>,
}

/// Streams the fetched artifact into `restore` and returns what the
/// target reports. The target is finished only when the whole artifact
/// was sound; otherwise it is abandoned, and cleaned up before this
/// returns.
pub async fn restore(
    stored: Stored,
    location: &str,
    restore: Restore,
    run: &RestoreRun<'_>,
    progress: ProgressSink<'_>,
) -> Result<RestoreReport, PipelineError> {
    let cipher = opener_cipher(run.backup_id, &run.manifest.encryption, run.key.is_some())?;
    let key = match cipher {
        Cipher::None => None,
        Cipher::XChaCha20Poly1305Stream => run.key.map(<[u8]>::to_vec),
    };
    let mut progress = Progress {
        sink: progress,
        gate: ProgressGate::default(),
    };
    let Restore { mut input, finish } = restore;
    let (fetched_tx, fetched_rx) = mpsc::channel(CHANNEL_CHUNKS);
    let (plain_tx, plain_rx) = mpsc::channel(CHANNEL_CHUNKS);
    let opening = async {
        tokio::task::spawn_blocking(move || open_and_decompress(fetched_rx, plain_tx, key))
            .await
            .unwrap_or(Opened {
                sha256: None,
                result: Err(OpenFailure::Interrupted),
            })
    };
    let size = stored.size;
    let (fetched, opened, fed) = tokio::join!(
        pull(stored.bytes, size, fetched_tx, &mut progress),
        opening,
        feed(&mut input, plain_rx)
    );
    let facts = ArtifactFacts {
        fetched,
        sha256: opened.sha256,
        opened: opened.result,
        written: fed.map(drop),
    };
    if let Err(error) = judge_artifact(run.backup_id, location, run.manifest, facts) {
        // The input ends unshut, so the target keeps nothing of it; the
        // job reports only once the target's cleanup is done.
        drop(input);
        let _ = finish(Fed::Abandoned).await;
        return Err(error);
    }
    if let Err(error) = input.shutdown().await {
        drop(input);
        let _ = finish(Fed::Abandoned).await;
        return Err(PipelineError::RestoreInput(error));
    }
    drop(input);
    progress.report("compare", size, size);
    Ok(finish(Fed::Whole).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(pairs: &[(&str, u64)]) -> TableRows {
        pairs.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect()
    }

    #[test]
    fn progress_goes_out_at_most_every_half_second() {
        let mut gate = ProgressGate::default();
        let start = Instant::now();
        assert!(gate.due(start));
        assert!(!gate.due(start + Duration::from_millis(499)));
        assert!(gate.due(start + Duration::from_millis(500)));
        assert!(!gate.due(start + Duration::from_millis(999)));
        assert!(gate.due(start + Duration::from_secs(5)));
    }

    #[test]
    fn directories_are_read_before_buckets() {
        let s3 = |name: &str| {
            Destination::s3(
                name,
                super::super::destinations::S3Spec {
                    endpoint: "http://127.0.0.1:9".into(),
                    bucket: "b-1".into(),
                    prefix: String::new(),
                    region: String::new(),
                    access_key_id: super::super::destinations::SecretName {
                        name: "k".into(),
                        version: 1,
                    },
                    secret_access_key: super::super::destinations::SecretName {
                        name: "s".into(),
                        version: 1,
                    },
                },
                super::super::destinations::S3Credentials {
                    access_key_id: "id".to_owned().into(),
                    secret_access_key: "secret".to_owned().into(),
                },
            )
            .unwrap()
        };
        let destinations = vec![
            s3("offsite"),
            Destination::dir("local", "/backups").unwrap(),
            s3("second"),
            Destination::dir("usb", "/mnt/usb").unwrap(),
        ];
        let order: Vec<&str> = fetch_order(&destinations)
            .iter()
            .map(|d| d.name())
            .collect();
        assert_eq!(order, ["local", "usb", "offsite", "second"]);
    }

    #[test]
    fn the_manifest_decides_the_cipher() {
        assert_eq!(opener_cipher("b", "none", true).unwrap(), Cipher::None);
        assert_eq!(opener_cipher("b", "", false).unwrap(), Cipher::None);
        assert_eq!(
            opener_cipher("b", "xchacha20poly1305-stream", true).unwrap(),
            Cipher::XChaCha20Poly1305Stream
        );
        assert_eq!(
            opener_cipher("b-7", "xchacha20poly1305-stream", false)
                .unwrap_err()
                .to_string(),
            "backup b-7 is encrypted (xchacha20poly1305-stream) but the job names no encryption key; give the policy the key it was taken with (`encryption: key:`)"
        );
        assert!(matches!(
            opener_cipher("b", "aes-gcm-siv", true),
            Err(PipelineError::UnknownEncryption { .. })
        ));
    }

    fn manifest(bytes: u64, sha: &str) -> BackupManifest {
        BackupManifest {
            artifact_bytes: bytes,
            sha256: sha.into(),
            ..BackupManifest::default()
        }
    }

    fn facts(
        fetched: Result<u64, DestinationError>,
        sha: Option<&str>,
        opened: Result<(), OpenFailure>,
    ) -> ArtifactFacts {
        ArtifactFacts {
            fetched,
            sha256: sha.map(str::to_owned),
            opened,
            written: Ok(()),
        }
    }

    #[test]
    fn artifact_damage_is_named_by_its_cause() {
        let judge = |facts| {
            judge_artifact("b-1", "/backups/p/b-1.argosy", &manifest(1000, "aa"), facts)
                .err()
                .map(|e| e.to_string())
        };
        assert_eq!(judge(facts(Ok(1000), Some("AA"), Ok(()))), None);
        assert_eq!(
            judge(facts(
                Ok(600),
                Some("bb"),
                Err(OpenFailure::Seal(SealError::Truncated { bytes: 600 }))
            ))
            .unwrap(),
            "artifact /backups/p/b-1.argosy is truncated: 600 bytes, the manifest says 1000; restore another backup, or another copy of this one"
        );
        assert_eq!(
            judge(facts(
                Ok(1000),
                Some("bb"),
                Err(OpenFailure::Seal(SealError::CorruptedChunk {
                    index: 0,
                    offset: 67,
                    last: true
                }))
            ))
            .unwrap(),
            "artifact /backups/p/b-1.argosy is corrupted: sha256 bb, manifest says aa; restore another backup, or another copy of this one"
        );
        // The key is judged on the header, before the rest is read.
        assert_eq!(
            judge(facts(
                Ok(200),
                None,
                Err(OpenFailure::Seal(SealError::WrongKey))
            ))
            .unwrap(),
            "the encryption key does not open backup b-1 (/backups/p/b-1.argosy): the encryption key does not open this artifact (its key check differs): use the key the backup was taken with"
        );
        assert!(
            judge(facts(
                Ok(1000),
                None,
                Err(OpenFailure::Seal(SealError::NotArtifact))
            ))
            .unwrap()
            .contains("not an Argosy backup artifact")
        );
        // A sound hash with a failing body (a manifest without a hash).
        let no_hash = judge_artifact(
            "b-1",
            "x",
            &manifest(0, ""),
            facts(
                Ok(5),
                Some("cc"),
                Err(OpenFailure::Decompress(std::io::Error::other(
                    "Unknown frame descriptor",
                ))),
            ),
        )
        .unwrap_err();
        assert_eq!(
            no_hash.to_string(),
            "artifact x does not decompress: Unknown frame descriptor"
        );
        let fetch_failed = judge(facts(
            Err(DestinationError::Unreachable {
                destination: "offsite".into(),
                endpoint: "http://127.0.0.1:9".into(),
                reason: "connection refused".into(),
            }),
            None,
            Err(OpenFailure::Interrupted),
        ))
        .unwrap();
        assert!(
            fetch_failed.starts_with("destination offsite: cannot reach"),
            "{fetch_failed}"
        );
        let target = judge(ArtifactFacts {
            fetched: Ok(1000),
            sha256: Some("aa".into()),
            opened: Err(OpenFailure::TargetGone),
            written: Err(std::io::Error::other("psql exited")),
        })
        .unwrap();
        assert_eq!(
            target,
            "writing into the restore target failed: psql exited"
        );
    }

    #[test]
    fn tables_are_compared_one_by_one() {
        let expected = rows(&[
            ("public.customers", 3),
            ("public.orders", 12),
            ("public.audit", 0),
        ]);
        let restored = rows(&[
            ("public.customers", 3),
            ("public.orders", 10),
            ("public.extra", 1),
        ]);
        let (checks, mismatches) = compare_tables(&expected, &restored);
        let check = |table: &str, expected_rows, restored_rows| TableCheck {
            table: table.into(),
            expected_rows,
            restored_rows,
        };
        assert_eq!(
            checks,
            [
                check("public.audit", 0, 0),
                check("public.customers", 3, 3),
                check("public.extra", 0, 1),
                check("public.orders", 12, 10),
            ]
        );
        assert_eq!(
            mismatches
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            [
                "public.audit is missing (the manifest has 0 rows)",
                "public.extra (1 rows) is not in the manifest",
                "public.orders has 10 rows, the manifest says 12",
            ]
        );
        let (checks, mismatches) = compare_tables(&expected, &expected);
        assert_eq!(checks.len(), 3);
        assert!(mismatches.is_empty());
        assert_eq!(
            compare_tables(&TableRows::new(), &TableRows::new()),
            (vec![], vec![])
        );
    }

    #[test]
    fn a_restore_is_judged_by_its_tables_and_assertion() {
        let expected = rows(&[("public.customers", 3)]);
        let report = |tables: TableRows, assertion| RestoreReport {
            tables,
            assertion,
            elapsed: Duration::from_millis(5),
        };
        let good = judge_restore(
            &expected,
            &report(expected.clone(), Some(true)),
            Some("select true"),
            false,
        );
        assert!(good.ok());
        assert_eq!(good.tables.len(), 1);
        assert!(judge_restore(&expected, &report(expected.clone(), None), None, false).ok());
        assert!(
            judge_restore(
                &expected,
                &report(expected.clone(), None),
                Some("  "),
                false
            )
            .ok()
        );

        let bad = judge_restore(
            &expected,
            &report(rows(&[("public.customers", 2)]), Some(false)),
            Some("select count(*) > 0 from customers"),
            false,
        );
        assert_eq!(
            bad.problems,
            [
                "the restored data differs from the manifest: public.customers has 2 rows, the manifest says 3",
                "the SQL assertion `select count(*) > 0 from customers` is false on the restored data",
            ]
        );
        let not_run = judge_restore(
            &expected,
            &report(expected.clone(), None),
            Some("select 1"),
            false,
        );
        assert_eq!(
            not_run.problems,
            ["the SQL assertion `select 1` was not run (this source cannot run SQL)"]
        );

        // In place, tables and files added since the backup are left alone.
        let live = rows(&[("public.customers", 3), ("public.added_later", 7)]);
        assert!(!judge_restore(&expected, &report(live.clone(), None), None, false).ok());
        assert!(judge_restore(&expected, &report(live, None), None, true).ok());
        let archive = rows(&[
            (super::super::ARCHIVE_FILES, 10),
            (super::super::ARCHIVE_BYTES, 4096),
        ]);
        let grown = rows(&[
            (super::super::ARCHIVE_FILES, 12),
            (super::super::ARCHIVE_BYTES, 5000),
        ]);
        assert!(!judge_restore(&archive, &report(grown.clone(), None), None, false).ok());
        assert!(judge_restore(&archive, &report(grown, None), None, true).ok());
        // ... but a table of the backup that came back short is still wrong.
        let short = rows(&[("public.customers", 1)]);
        assert!(!judge_restore(&expected, &report(short, None), None, true).ok());
    }

    #[test]
    fn the_first_cause_wins_over_its_consequences() {
        let cause = root_cause([
            PipelineError::Interrupted("a destination stopped"),
            PipelineError::Destination(DestinationError::DiskFull {
                destination: "local".into(),
                dir: "/b".into(),
                written: 5,
            }),
            PipelineError::Interrupted("the dump stopped"),
        ])
        .unwrap();
        assert!(matches!(cause, PipelineError::Destination(_)));
        assert!(matches!(
            root_cause([PipelineError::Interrupted("x")]),
            Some(PipelineError::Interrupted("x"))
        ));
        assert!(root_cause([]).is_none());
    }

    #[test]
    fn the_manifest_file_is_plain_json() {
        let manifest = BackupManifest {
            backup_id: "b-1".into(),
            policy: "crm-db".into(),
            source_kind: "postgres".into(),
            sha256: "ab".into(),
            artifact: "crm-db/b-1.argosy".into(),
            encryption: "none".into(),
            tables: vec![argosy_proto::v1::TableRows {
                table: "public.t".into(),
                rows: 4,
            }],
            copies: vec![StoredCopy {
                destination: "local".into(),
                location: "/b/crm-db/b-1.argosy".into(),
                bytes: 9,
            }],
            ..BackupManifest::default()
        };
        let json: serde_json::Value = serde_json::from_slice(&manifest_json(&manifest)).unwrap();
        assert_eq!(json["format"], "argosy-backup-manifest/1");
        assert_eq!(json["tables"]["public.t"], 4);
        assert_eq!(json["copies"][0]["location"], "/b/crm-db/b-1.argosy");
        assert_eq!(json["sha256"], "ab");
        assert!(zstd_version().starts_with("1."));
    }

    // ---- The streaming paths, with in-memory sources and directories.

    use super::super::DumpReport;
    use std::path::Path;
    use std::sync::Mutex;

    const KEY: &[u8] = b"a backup key of thirty-two bytes";

    #[derive(Default)]
    struct Recorded(Mutex<Vec<(bool, InFlight)>>);

    impl InFlightLog for Recorded {
        fn opened(&self, item: &InFlight) {
            self.0.lock().unwrap().push((true, item.clone()));
        }
        fn closed(&self, item: &InFlight) {
            self.0.lock().unwrap().push((false, item.clone()));
        }
    }

    impl Recorded {
        /// Every upload opened was closed again.
        fn balanced(&self) -> bool {
            let events = self.0.lock().unwrap();
            let opened = events.iter().filter(|(open, _)| *open).count();
            opened > 0 && events.iter().filter(|(open, _)| !*open).count() == opened
        }
    }

    fn dump_of(data: Vec<u8>, finish: Result<DumpReport, SourceError>) -> Dump {
        Dump {
            output: Box::pin(std::io::Cursor::new(data)),
            finish: Box::pin(async move { finish }),
        }
    }

    fn dump_report() -> DumpReport {
        DumpReport {
            tool_versions: BTreeMap::from([(
                "pg_dump".into(),
                "pg_dump (PostgreSQL) 15.18".into(),
            )]),
            tables: rows(&[("public.customers", 3)]),
        }
    }

    /// A restore target that keeps what it is given.
    fn collecting(tables: TableRows) -> (Restore, tokio::task::JoinHandle<Vec<u8>>) {
        let (input, mut output) = tokio::io::duplex(64 * 1024);
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            output.read_to_end(&mut all).await.unwrap();
            all
        });
        let restore = Restore {
            input: Box::pin(input),
            finish: Box::new(move |fed| {
                Box::pin(async move {
                    if fed == Fed::Abandoned {
                        return Err(crate::backup::source::abandoned("collecting"));
                    }
                    Ok(RestoreReport {
                        tables,
                        assertion: Some(true),
                        elapsed: Duration::from_millis(1),
                    })
                })
            }),
        };
        (restore, reader)
    }

    fn sample(len: usize) -> Vec<u8> {
        // Like a SQL dump with binary columns: text that compresses well,
        // every other 64 KiB noise that does not, so the artifact spans
        // many chunks.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        (0..len)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                if (i / 65_536) % 2 == 0 {
                    b"INSERT INTO customers VALUES (42, 'Ada Lovelace');\n"[i % 51]
                } else {
                    state as u8
                }
            })
            .collect()
    }

    fn files_under(root: &Path) -> Vec<String> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(root).unwrap().flatten() {
            if entry.path().is_dir() {
                names.extend(files_under(&entry.path()));
            } else {
                names.push(
                    entry
                        .path()
                        .strip_prefix(root.parent().unwrap())
                        .unwrap()
                        .display()
                        .to_string(),
                );
            }
        }
        names.sort();
        names
    }

    async fn take_backup(
        destinations: &[Destination],
        data: Vec<u8>,
        key: Option<&[u8]>,
        log: &Recorded,
        finish: Result<DumpReport, SourceError>,
    ) -> BackupOutcome {
        let run = BackupRun {
            policy: "crm-db",
            backup_id: "b-1",
            source_kind: "postgres",
            zstd_level: 3,
            key,
            started_at_ms: 1_000,
            started: Instant::now(),
        };
        backup(
            dump_of(data, finish),
            destinations,
            &run,
            log,
            &|_| {},
            &|| 2_000,
        )
        .await
    }

    async fn restore_from(
        destinations: &[Destination],
        manifest: &BackupManifest,
        key: Option<&[u8]>,
    ) -> Result<(RestoreReport, Vec<u8>), PipelineError> {
        let (stored, location) = fetch(destinations, "crm-db", "b-1").await?;
        let (target, reader) = collecting(rows(&[("public.customers", 3)]));
        let run = RestoreRun {
            backup_id: "b-1",
            manifest,
            key,
        };
        let result = restore(stored, &location, target, &run, &|_| {}).await;
        let restored = reader.await.unwrap();
        result.map(|report| (report, restored))
    }

    #[tokio::test]
    async fn a_backup_goes_to_every_destination_and_restores_byte_for_byte() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let destinations = vec![
            Destination::dir("local", a.path().to_str().unwrap()).unwrap(),
            Destination::dir("usb", b.path().to_str().unwrap()).unwrap(),
        ];
        let data = sample(3 * 1024 * 1024 + 5);
        let log = Recorded::default();
        let outcome = take_backup(
            &destinations,
            data.clone(),
            Some(KEY),
            &log,
            Ok(dump_report()),
        )
        .await;
        assert!(outcome.error.is_none(), "{:?}", outcome.error);
        let manifest = outcome.manifest;
        assert!(log.balanced());

        let artifact = std::fs::read(a.path().join("crm-db/b-1.argosy")).unwrap();
        assert_eq!(
            artifact,
            std::fs::read(b.path().join("crm-db/b-1.argosy")).unwrap()
        );
        assert_eq!(manifest.raw_bytes, data.len() as u64);
        assert!(
            manifest.compressed_bytes < manifest.raw_bytes * 3 / 5,
            "{manifest:?}"
        );
        assert!(artifact.len() > 20 * super::super::seal::SEALED_CHUNK);
        assert_eq!(manifest.artifact_bytes, artifact.len() as u64);
        assert_eq!(manifest.sha256, hex::encode(Sha256::digest(&artifact)));
        assert_eq!(manifest.encryption, "xchacha20poly1305-stream");
        assert_eq!(manifest.artifact, "crm-db/b-1.argosy");
        assert_eq!(manifest.tables.len(), 1);
        assert_eq!(
            manifest.tool_versions["pg_dump"],
            "pg_dump (PostgreSQL) 15.18"
        );
        assert!(manifest.tool_versions.contains_key("zstd"));
        assert_eq!(
            (manifest.started_at_ms, manifest.finished_at_ms),
            (1_000, 2_000)
        );
        assert_eq!(manifest.copies.len(), 2);
        assert_eq!(manifest.copies[1].destination, "usb");
        assert_eq!(manifest.copies[1].bytes, artifact.len() as u64);
        for root in [a.path(), b.path()] {
            let json: serde_json::Value = serde_json::from_slice(
                &std::fs::read(root.join("crm-db/b-1.manifest.json")).unwrap(),
            )
            .unwrap();
            assert_eq!(json["sha256"], manifest.sha256.as_str());
            assert_eq!(
                files_under(root).len(),
                2,
                "artifact and manifest, no partial file"
            );
        }

        let (report, restored) = restore_from(&destinations, &manifest, Some(KEY))
            .await
            .unwrap();
        assert!(
            restored == data,
            "the restore got {} bytes of {}",
            restored.len(),
            data.len()
        );
        assert!(judge_restore(&manifest_tables(&manifest), &report, None, false).ok());

        // Unencrypted, it still round-trips (and says so).
        let plain = take_backup(
            &destinations[..1],
            data.clone(),
            None,
            &Recorded::default(),
            Ok(dump_report()),
        )
        .await;
        assert!(plain.error.is_none());
        assert_eq!(plain.manifest.encryption, "none");
        let (_, restored) = restore_from(&destinations[..1], &plain.manifest, Some(KEY))
            .await
            .unwrap();
        assert!(restored == data);
    }

    #[tokio::test]
    async fn damage_to_a_stored_artifact_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let destinations = vec![Destination::dir("local", dir.path().to_str().unwrap()).unwrap()];
        let data = sample(1024 * 1024);
        let outcome = take_backup(
            &destinations,
            data,
            Some(KEY),
            &Recorded::default(),
            Ok(dump_report()),
        )
        .await;
        let manifest = outcome.manifest;
        let path = dir.path().join("crm-db/b-1.argosy");
        let good = std::fs::read(&path).unwrap();

        let wrong_key = restore_from(
            &destinations,
            &manifest,
            Some(b"not the key it was taken with!!"),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(wrong_key, PipelineError::Key { .. }),
            "{wrong_key}"
        );
        assert!(matches!(
            restore_from(&destinations, &manifest, None)
                .await
                .unwrap_err(),
            PipelineError::NoKey { .. }
        ));

        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 0x40;
        std::fs::write(&path, &flipped).unwrap();
        let corrupted = restore_from(&destinations, &manifest, Some(KEY))
            .await
            .unwrap_err();
        assert!(
            corrupted.to_string().starts_with(&format!(
                "artifact {} is corrupted: sha256 ",
                path.display()
            )),
            "{corrupted}"
        );
        assert!(
            corrupted
                .to_string()
                .contains(&format!("manifest says {}", manifest.sha256))
        );

        let cut = good.len() / 2;
        std::fs::write(&path, &good[..cut]).unwrap();
        let truncated = restore_from(&destinations, &manifest, Some(KEY))
            .await
            .unwrap_err();
        assert_eq!(
            truncated.to_string(),
            format!(
                "artifact {} is truncated: {} bytes, the manifest says {}; restore another backup, or another copy of this one",
                path.display(),
                cut,
                good.len()
            )
        );

        std::fs::remove_file(&path).unwrap();
        let missing = restore_from(&destinations, &manifest, Some(KEY))
            .await
            .unwrap_err();
        assert_eq!(
            missing.to_string(),
            format!(
                "artifact crm-db/b-1.argosy is missing from every destination (local: no {})",
                path.display()
            )
        );
    }

    #[tokio::test]
    async fn a_failing_destination_or_dump_leaves_nothing_behind() {
        let (good, full) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // Every write to this destination's partial file lands on /dev/full.
        std::fs::create_dir_all(full.path().join("crm-db")).unwrap();
        std::os::unix::fs::symlink("/dev/full", full.path().join("crm-db/b-1.argosy.partial"))
            .unwrap();
        let destinations = vec![
            Destination::dir("local", good.path().to_str().unwrap()).unwrap(),
            Destination::dir("small", full.path().to_str().unwrap()).unwrap(),
        ];
        let log = Recorded::default();
        let outcome = take_backup(
            &destinations,
            sample(2 * 1024 * 1024),
            Some(KEY),
            &log,
            Ok(dump_report()),
        )
        .await;
        let error = outcome.error.unwrap().to_string();
        assert!(
            error.starts_with(&format!(
                "destination small: the filesystem holding {} is full (",
                full.path().join("crm-db").display()
            )),
            "{error}"
        );
        assert!(
            files_under(good.path()).is_empty(),
            "{:?}",
            files_under(good.path())
        );
        assert!(files_under(full.path()).is_empty());
        assert!(log.balanced());

        // A dump that fails after its output ended: nothing is committed.
        let failed = take_backup(
            &destinations[..1],
            sample(100_000),
            None,
            &Recorded::default(),
            Err(SourceError::Invalid {
                origin: "postgres source crm".into(),
                problem: "pg_dump exited with status 1: permission denied for table secrets".into(),
            }),
        )
        .await;
        assert!(
            failed
                .error
                .unwrap()
                .to_string()
                .contains("permission denied for table secrets")
        );
        assert!(failed.manifest.raw_bytes == 100_000);
        assert!(files_under(good.path()).is_empty());

        // A key too short to seal with fails before anything is written.
        let weak = take_backup(
            &destinations[..1],
            sample(10),
            Some(b"short"),
            &Recorded::default(),
            Ok(dump_report()),
        )
        .await;
        assert!(
            weak.error
                .unwrap()
                .to_string()
                .contains("at least 16 bytes")
        );
        assert!(files_under(good.path()).is_empty());
    }
}
