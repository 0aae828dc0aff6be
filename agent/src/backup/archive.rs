//! Volume and path sources: a directory archived as one tar stream, and
//! restored by extracting one.
//!
//! The archive is made and extracted by the host's GNU `tar` (`tar
//! --format=gnu --numeric-owner -C DIR -cf - .`, `tar --numeric-owner -C
//! DIR -xf -`) through `tokio::process`, not by a tar crate: GNU tar is
//! on every host the agent supports and handles what a crate tends to
//! get wrong or leave out — long names, hard links, special files,
//! owners kept as numbers (a volume's owners are the container's users,
//! unknown to the host), permissions and times — and it streams, so
//! memory stays bounded. A volume is archived from its mount point on
//! the host, which the engine reports (`docker volume inspect`).
//!
//! As the archive streams past, [`TarStats`] (pure) reads its headers and
//! counts the regular files and their bytes; the dump reports them as
//! [`ARCHIVE_FILES`] and [`ARCHIVE_BYTES`] (see `TableRows`). A restore
//! measures what landed on disk the same way ([`measure`]: regular files,
//! a hard-linked file once), so a verification compares it with the
//! manifest, and a scratch restore also checks it against the archive it
//! was given before removing the scratch directory.

use std::collections::HashSet;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use argosy_proto::v1::{PathSource, VolumeSource};

use super::source::{self, DiscardWhenClosed, Place, ScannedReader, ScannedWriter, Tool};
use super::{
    ARCHIVE_BYTES, ARCHIVE_FILES, Dump, DumpReport, Fed, Restore, RestoreInto, RestoreReport,
    SourceContext, SourceError, Stage, TableRows,
};

/// A tar block: headers and data padding come in these.
const BLOCK: usize = 512;

/// What an archive holds: its regular files and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveStats {
    pub files: u64,
    pub bytes: u64,
}

impl ArchiveStats {
    /// As reported in `TableRows`.
    pub fn rows(self) -> TableRows {
        [
            (ARCHIVE_FILES.to_owned(), self.files),
            (ARCHIVE_BYTES.to_owned(), self.bytes),
        ]
        .into()
    }
}

impl std::fmt::Display for ArchiveStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} files, {} bytes", self.files, self.bytes)
    }
}

/// Why a tar stream cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TarError {
    #[error("the archive has a damaged header at byte {offset} (its checksum does not match)")]
    BadHeader { offset: u64 },
    #[error("the archive has an unreadable size field at byte {offset}")]
    BadSize { offset: u64 },
    #[error(
        "the archive stops before tar's end-of-archive marker (after {stats}): it is truncated"
    )]
    Truncated { stats: ArchiveStats },
}

/// Counts the regular files of a tar stream and their bytes, reading only
/// its 512-byte headers (memory: one header).
#[derive(Debug, Clone)]
pub struct TarStats {
    header: Box<[u8; BLOCK]>,
    filled: usize,
    /// Data (with padding) of the current entry still to pass.
    skip: u64,
    zero_blocks: u8,
    ended: bool,
    offset: u64,
    stats: ArchiveStats,
    error: Option<TarError>,
}

impl Default for TarStats {
    fn default() -> Self {
        Self {
            header: Box::new([0; BLOCK]),
            filled: 0,
            skip: 0,
            zero_blocks: 0,
            ended: false,
            offset: 0,
            stats: ArchiveStats::default(),
            error: None,
        }
    }
}

impl TarStats {
    pub fn feed(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() && !self.ended && self.error.is_none() {
            if self.skip > 0 {
                let n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(chunk.len());
                self.skip -= n as u64;
                self.offset += n as u64;
                chunk = &chunk[n..];
                continue;
            }
            let n = (BLOCK - self.filled).min(chunk.len());
            self.header[self.filled..self.filled + n].copy_from_slice(&chunk[..n]);
            self.filled += n;
            chunk = &chunk[n..];
            if self.filled == BLOCK {
                self.filled = 0;
                self.header_done();
                self.offset += BLOCK as u64;
            }
        }
    }

    fn header_done(&mut self) {
        let header = &*self.header;
        if header.iter().all(|&b| b == 0) {
            self.zero_blocks += 1;
            self.ended = self.zero_blocks >= 2;
            return;
        }
        self.zero_blocks = 0;
        if !checksum_matches(header) {
            self.error = Some(TarError::BadHeader {
                offset: self.offset,
            });
            return;
        }
        let Some(size) = numeric(&header[124..136]) else {
            self.error = Some(TarError::BadSize {
                offset: self.offset,
            });
            return;
        };
        // Regular files: `0`, old-style `\0`, contiguous `7`. Hard links
        // (`1`) carry no data and are one file on disk.
        if matches!(header[156], b'0' | 0 | b'7') {
            self.stats.files += 1;
            self.stats.bytes += size;
        }
        self.skip = size.div_ceil(BLOCK as u64) * BLOCK as u64;
    }

    pub fn finish(self) -> Result<ArchiveStats, TarError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        if !self.ended {
            return Err(TarError::Truncated { stats: self.stats });
        }
        Ok(self.stats)
    }
}

impl source::StreamScan for TarStats {
    type Report = ArchiveStats;
    type Error = TarError;
    fn feed(&mut self, chunk: &[u8]) {
        Self::feed(self, chunk);
    }
    fn finish(self) -> Result<ArchiveStats, TarError> {
        Self::finish(self)
    }
}

/// A tar number: octal text, or GNU's base-256 (high bit set).
fn numeric(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        if field[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut value: u64 = u64::from(field[0] & 0x3f);
        for &byte in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(byte))?;
        }
        return Some(value);
    }
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// Whether the header's checksum (bytes 148..156, the sum of the header
/// with that field as spaces; some tars sum signed bytes) matches.
fn checksum_matches(header: &[u8; BLOCK]) -> bool {
    let Some(stored) = numeric(&header[148..156]) else {
        return false;
    };
    let field = 148..156;
    let (mut unsigned, mut signed) = (0u64, 0i64);
    for (at, &byte) in header.iter().enumerate() {
        let byte = if field.contains(&at) { b' ' } else { byte };
        unsigned += u64::from(byte);
        signed += i64::from(byte as i8);
    }
    stored == unsigned || i64::try_from(stored).is_ok_and(|stored| stored == signed)
}

/// The regular files under `dir` and their bytes (a file with several
/// hard links once; symbolic links are not followed).
pub fn measure(dir: &Path) -> std::io::Result<ArchiveStats> {
    let mut stats = ArchiveStats::default();
    let mut linked = HashSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let metadata = entry.path().symlink_metadata()?;
            if metadata.is_dir() {
                pending.push(entry.path());
            } else if metadata.is_file()
                && (metadata.nlink() <= 1 || linked.insert((metadata.dev(), metadata.ino())))
            {
                stats.files += 1;
                stats.bytes += metadata.len();
            }
        }
    }
    Ok(stats)
}

/// A directory to archive: a volume's mount point or a host path.
#[derive(Debug, Clone)]
pub struct Archived {
    origin: String,
    dir: PathBuf,
}

impl Archived {
    /// Volume `source.name`, where the engine keeps it on this host.
    pub async fn volume(source: &VolumeSource, ctx: &SourceContext) -> Result<Self, SourceError> {
        let origin = format!("volume source {}", source.name);
        if source.name.is_empty() {
            return Err(SourceError::Invalid {
                origin,
                problem: "the policy names no volume".into(),
            });
        }
        let engine = ctx.docker.as_ref().ok_or_else(|| SourceError::Invalid {
            origin: origin.clone(),
            problem: "a volume source needs the Docker engine, and this agent has none: start \
                      the agent with access to Docker"
                .into(),
        })?;
        let dir = engine
            .volume_mountpoint(&source.name)
            .await
            .map_err(|error| {
                if error.is_not_found() {
                    SourceError::Invalid {
                        origin: origin.clone(),
                        problem: format!(
                            "Docker has no volume {} on this host: check the policy's volume \
                             name and host",
                            source.name
                        ),
                    }
                } else {
                    SourceError::Engine {
                        origin: origin.clone(),
                        stage: Stage::Check,
                        error,
                    }
                }
            })?;
        Ok(Self { origin, dir })
    }

    /// Host directory `source.path` (absolute).
    pub fn path(source: &PathSource) -> Result<Self, SourceError> {
        let origin = format!("path source {}", source.path);
        let dir = PathBuf::from(&source.path);
        if !dir.is_absolute() {
            return Err(SourceError::Invalid {
                origin,
                problem: "the path must be absolute".into(),
            });
        }
        Ok(Self { origin, dir })
    }

    fn io(&self, stage: Stage, doing: String) -> impl FnOnce(std::io::Error) -> SourceError {
        let origin = self.origin.clone();
        move |error| SourceError::Io {
            origin,
            stage,
            doing,
            error,
        }
    }

    fn tar_hint(stderr: &str) -> String {
        if stderr.contains("No space left on device") {
            "the target's file system is full: free space or restore elsewhere".into()
        } else if stderr.contains("Permission denied") {
            "the agent lacks permission there: run it as root or restore elsewhere".into()
        } else {
            "see tar's message above".into()
        }
    }
}

async fn tar_version(archived: &Archived) -> Result<String, SourceError> {
    let captured = source::capture(
        &Place::Host,
        Tool::new("tar", ["--version"]),
        &archived.origin,
        Stage::Check,
        64 * 1024,
    )
    .await?;
    captured
        .exit
        .check(&archived.origin, Stage::Check, "tar", &[], |_| {
            "install GNU tar on the host".into()
        })?;
    Ok(String::from_utf8_lossy(&captured.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned())
}

/// Starts archiving the directory; the report carries tar's version and
/// the archive's files and bytes.
pub async fn start_dump(archived: &Archived) -> Result<Dump, SourceError> {
    let metadata = tokio::fs::metadata(&archived.dir)
        .await
        .map_err(archived.io(
            Stage::Check,
            format!("looking at {}", archived.dir.display()),
        ))?;
    if !metadata.is_dir() {
        return Err(SourceError::Invalid {
            origin: archived.origin.clone(),
            problem: format!("{} is not a directory", archived.dir.display()),
        });
    }
    let version = tar_version(archived).await?;
    let tool = Tool::new(
        "tar",
        ["--create", "--file=-", "--format=gnu", "--numeric-owner"],
    )
    .arg(format!("--directory={}", archived.dir.display()))
    .arg(".")
    .stdout();
    let running = source::run(&Place::Host, tool, &archived.origin, Stage::Dump).await?;
    let (output, stats) = ScannedReader::new(running.stdout, TarStats::default());
    let exit = running.exit;
    let archived = archived.clone();
    let finish = async move {
        let exit = exit.await?;
        // GNU tar's 1: some files changed while being read. They are in
        // the archive as they were read; a live directory does that.
        if exit.code == Some(1) {
            tracing::warn!(source = %archived.origin, stderr = %exit.stderr.text(&[]), "files changed while they were archived");
        } else {
            exit.check(
                &archived.origin,
                Stage::Dump,
                "tar",
                &[],
                Archived::tar_hint,
            )?;
        }
        let stats = match stats.await {
            Ok(Ok(stats)) => stats,
            Ok(Err(error)) => {
                return Err(SourceError::Incomplete {
                    origin: archived.origin.clone(),
                    stage: Stage::Dump,
                    problem: error.to_string(),
                });
            }
            Err(_) => {
                return Err(SourceError::Incomplete {
                    origin: archived.origin.clone(),
                    stage: Stage::Dump,
                    problem: "the archive was not read to its end".into(),
                });
            }
        };
        Ok(DumpReport {
            tool_versions: [("tar".to_owned(), version)].into(),
            tables: stats.rows(),
        })
    };
    Ok(Dump {
        output: Box::pin(output),
        finish: Box::pin(finish),
    })
}

/// A scratch directory, removed when the restore is done with it (also
/// when the restore is dropped unfinished).
struct ScratchDir {
    path: Option<PathBuf>,
}

impl ScratchDir {
    fn create(base: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(base)?;
        let path = base.join(format!("argosy-verify-{:016x}", rand::random::<u64>()));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(Self { path: Some(path) })
    }

    fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new("/nonexistent"))
    }

    async fn remove(mut self) -> std::io::Result<()> {
        let Some(path) = self.path.take() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || std::fs::remove_dir_all(path))
            .await
            .map_err(std::io::Error::other)?
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            // Blocking but rare: only for a restore dropped unfinished.
            if let Err(error) = std::fs::remove_dir_all(&path) {
                tracing::warn!(%error, path = %path.display(), "could not remove an abandoned scratch directory; remove it by hand");
            }
        }
    }
}

/// Where a restore extracts to.
enum Target {
    Scratch(ScratchDir),
    Directory(PathBuf),
    InPlace(PathBuf),
}

impl Target {
    fn dir(&self) -> &Path {
        match self {
            Self::Scratch(scratch) => scratch.path(),
            Self::Directory(dir) | Self::InPlace(dir) => dir,
        }
    }
}

/// Checks a `Directory` target (absolute, new or empty) and makes it.
fn prepare_directory(archived: &Archived, directory: &str) -> Result<PathBuf, SourceError> {
    let dir = PathBuf::from(directory);
    let invalid = |problem: String| SourceError::Invalid {
        origin: archived.origin.clone(),
        problem,
    };
    if !dir.is_absolute() {
        return Err(invalid(format!(
            "the target directory {directory} must be an absolute path"
        )));
    }
    match std::fs::read_dir(&dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(invalid(format!(
                    "the target directory {directory} is not empty; restore into a new or \
                     empty directory (or in place)"
                )));
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&dir)
                .map_err(archived.io(Stage::Prepare, format!("creating {directory}")))?;
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(invalid(format!(
                "the target {directory} exists and is not a directory"
            )));
        }
        Err(error) => {
            return Err(archived.io(Stage::Prepare, format!("reading {directory}"))(
                error,
            ));
        }
    }
    Ok(dir)
}

/// Starts extracting into `into`; `finish` reports the files and bytes
/// that landed, and for a scratch restore checks them against the archive
/// and removes the directory.
pub async fn start_restore(
    archived: &Archived,
    into: RestoreInto,
    ctx: &SourceContext,
) -> Result<Restore, SourceError> {
    let started = Instant::now();
    let target = match into {
        RestoreInto::Scratch => {
            let base = ctx.scratch_dir.clone().unwrap_or_else(std::env::temp_dir);
            let scratch = ScratchDir::create(&base).map_err(archived.io(
                Stage::Prepare,
                format!("making a scratch directory in {}", base.display()),
            ))?;
            Target::Scratch(scratch)
        }
        RestoreInto::Directory(directory) => {
            Target::Directory(prepare_directory(archived, &directory)?)
        }
        RestoreInto::InPlace => {
            tokio::fs::create_dir_all(&archived.dir).await.map_err(
                archived.io(Stage::Prepare, format!("making {}", archived.dir.display())),
            )?;
            Target::InPlace(archived.dir.clone())
        }
        RestoreInto::Database(name) => {
            return Err(SourceError::Invalid {
                origin: archived.origin.clone(),
                problem: format!(
                    "a {} restores into a directory, not a database ({name}): restore with \
                     --to-directory DIR or --in-place",
                    archived.origin.split(' ').next().unwrap_or("directory")
                ),
            });
        }
    };
    let tool = Tool::new("tar", ["--extract", "--file=-", "--numeric-owner"])
        .arg(format!("--directory={}", target.dir().display()))
        .stdin();
    let running = source::run(&Place::Host, tool, &archived.origin, Stage::Restore).await?;
    let (input, given) =
        ScannedWriter::new(DiscardWhenClosed::new(running.stdin), TarStats::default());
    let exit = running.exit;
    let archived = archived.clone();
    let finish = move |fed: Fed| -> source::FinishFuture {
        Box::pin(async move {
            if fed == Fed::Abandoned {
                // Stops tar, and takes away what it extracted where that is
                // ours to take: a scratch directory, a new (or empty) target
                // directory. In place, the files it already wrote stay.
                drop(exit);
                let cleaned = match target {
                    Target::Scratch(scratch) => scratch.remove().await,
                    Target::Directory(dir) => empty_directory(dir).await,
                    Target::InPlace(_) => Ok(()),
                };
                cleaned
                    .map_err(archived.io(Stage::Cleanup, "removing an abandoned restore".into()))?;
                return Err(source::abandoned(&archived.origin));
            }
            let outcome = async {
                exit.await?.check(
                    &archived.origin,
                    Stage::Restore,
                    "tar",
                    &[],
                    Archived::tar_hint,
                )?;
                let elapsed = started.elapsed();
                let dir = target.dir().to_path_buf();
                let landed = tokio::task::spawn_blocking(move || measure(&dir))
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|measured| measured)
                    .map_err(archived.io(
                        Stage::Count,
                        format!("measuring {}", target.dir().display()),
                    ))?;
                if let Target::Scratch(_) = target {
                    let given = match given.await {
                        Ok(Ok(given)) => given,
                        Ok(Err(error)) => {
                            return Err(SourceError::Incomplete {
                                origin: archived.origin.clone(),
                                stage: Stage::Restore,
                                problem: error.to_string(),
                            });
                        }
                        Err(_) => {
                            return Err(SourceError::Incomplete {
                                origin: archived.origin.clone(),
                                stage: Stage::Restore,
                                problem: "the archive was not written to its end (the input was \
                                      not shut down)"
                                    .into(),
                            });
                        }
                    };
                    if given != landed {
                        return Err(SourceError::Incomplete {
                            origin: archived.origin.clone(),
                            stage: Stage::Restore,
                            problem: format!(
                                "the archive holds {given} but {landed} were extracted"
                            ),
                        });
                    }
                }
                Ok(RestoreReport {
                    tables: landed.rows(),
                    assertion: None,
                    elapsed,
                })
            }
            .await;
            let removed = match target {
                Target::Scratch(scratch) => {
                    let path = scratch.path().display().to_string();
                    scratch
                        .remove()
                        .await
                        .map_err(archived.io(Stage::Cleanup, format!("removing {path}")))
                }
                Target::Directory(_) | Target::InPlace(_) => Ok(()),
            };
            let report = outcome?;
            removed?;
            Ok(report)
        })
    };
    Ok(Restore {
        input: Box::pin(input),
        finish: Box::new(finish),
    })
}

/// Removes everything inside `dir` (a restore target that was new or
/// empty before the restore), keeping `dir` itself.
async fn empty_directory(dir: PathBuf) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(())
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A GNU tar archive of a small tree, made by the real tool: nested
    /// directories, an empty file, a long name, a hard link, a symbolic
    /// link and a file larger than one block.
    fn sample_archive() -> (tempfile::TempDir, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b/c")).unwrap();
        std::fs::write(root.join("a/one"), "1").unwrap();
        std::fs::write(root.join("a/b/empty"), "").unwrap();
        std::fs::write(root.join("a/b/c/big"), vec![7u8; 5000]).unwrap();
        let long = format!("a/{}", "n".repeat(150));
        std::fs::write(root.join(&long), "long").unwrap();
        std::fs::hard_link(root.join("a/one"), root.join("a/one-again")).unwrap();
        std::os::unix::fs::symlink("one", root.join("a/link")).unwrap();
        let output = Command::new("tar")
            .args([
                "--create",
                "--file=-",
                "--format=gnu",
                "--numeric-owner",
                "-C",
            ])
            .arg(root)
            .arg(".")
            .output()
            .unwrap();
        assert!(output.status.success());
        (dir, output.stdout)
    }

    fn stats_of(chunks: &[&[u8]]) -> Result<ArchiveStats, TarError> {
        let mut stats = TarStats::default();
        for chunk in chunks {
            stats.feed(chunk);
        }
        stats.finish()
    }

    #[test]
    fn the_archive_and_the_tree_agree() {
        let (dir, archive) = sample_archive();
        let expected = ArchiveStats {
            files: 4,
            bytes: 1 + 5000 + 4,
        };
        assert_eq!(measure(dir.path()).unwrap(), expected);
        assert_eq!(stats_of(&[&archive]).unwrap(), expected);
        assert_eq!(
            expected.rows(),
            TableRows::from([("bytes".into(), 5005), ("files".into(), 4)])
        );
    }

    #[test]
    fn any_chunking_reads_the_same() {
        let (_dir, archive) = sample_archive();
        let whole = stats_of(&[&archive]).unwrap();
        for at in (0..archive.len()).step_by(37) {
            let (a, b) = archive.split_at(at);
            assert_eq!(stats_of(&[a, b]).unwrap(), whole, "split at {at}");
        }
        let mut stats = TarStats::default();
        for byte in archive.chunks(1) {
            stats.feed(byte);
        }
        assert_eq!(stats.finish().unwrap(), whole);
    }

    #[test]
    fn a_cut_or_damaged_archive_is_refused() {
        let (_dir, archive) = sample_archive();
        let cut = &archive[..archive.len() / 2];
        assert!(matches!(stats_of(&[cut]), Err(TarError::Truncated { .. })));
        assert!(matches!(stats_of(&[]), Err(TarError::Truncated { .. })));
        let mut damaged = archive.clone();
        damaged[10] ^= 0x55; // inside the first header's name
        assert_eq!(
            stats_of(&[&damaged]),
            Err(TarError::BadHeader { offset: 0 })
        );
        let error = stats_of(&[b"definitely not tar".repeat(100).as_slice()]).unwrap_err();
        assert!(
            error.to_string().contains("damaged header at byte 0"),
            "{error}"
        );
    }

    #[test]
    fn numbers_are_octal_or_base_256() {
        assert_eq!(numeric(b"00000001750\0"), Some(0o1750));
        assert_eq!(numeric(b"     1750 \0\0"), Some(0o1750));
        assert_eq!(numeric(b"\0\0\0\0\0\0\0\0\0\0\0\0"), Some(0));
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[7] = 0x02; // 2 << 32
        assert_eq!(numeric(&big), Some(2 << 32));
        big[0] = 0xff;
        assert_eq!(numeric(&big), None);
        assert_eq!(numeric(b"12x4\0\0\0\0\0\0\0\0"), None);
    }

    #[test]
    fn a_directory_target_must_be_new_or_empty() {
        let archived = Archived::path(&PathSource {
            path: "/srv/data".into(),
        })
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("x/y");
        assert_eq!(
            prepare_directory(&archived, new.to_str().unwrap()).unwrap(),
            new
        );
        assert!(new.is_dir());
        // Empty: fine.
        prepare_directory(&archived, new.to_str().unwrap()).unwrap();
        std::fs::write(new.join("f"), "x").unwrap();
        let error = prepare_directory(&archived, new.to_str().unwrap()).unwrap_err();
        assert!(error.to_string().contains("is not empty"), "{error}");
        let error = prepare_directory(&archived, new.join("f").to_str().unwrap()).unwrap_err();
        assert!(error.to_string().contains("not a directory"), "{error}");
        let error = prepare_directory(&archived, "relative/dir").unwrap_err();
        assert!(error.to_string().contains("absolute"), "{error}");
        assert!(
            Archived::path(&PathSource {
                path: "relative".into()
            })
            .is_err()
        );
    }
}
