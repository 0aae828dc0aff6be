//! What produces a dump and what takes a restore: [`start_dump`] and
//! [`start_restore`] dispatch on the job's source kind to `postgres`
//! (`pg_dump`/`psql`), `archive` (volumes and paths as tar) or a `command`
//! (`sh -c`, here).
//!
//! Also the plumbing those share: running a tool on the host or inside a
//! container ([`Place`], [`run`]) with its stderr kept as a bounded tail
//! ([`OutputTail`]) and passwords redacted ([`redact`]); reading a
//! stream's facts as it flows ([`ScannedReader`], [`ScannedWriter`]); and
//! a restore input that outlives an early-exiting tool
//! ([`DiscardWhenClosed`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use argosy_proto::v1::backup_source::Kind;
use argosy_proto::v1::{BackupSource, CommandSource};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;
use zeroize::Zeroizing;

use super::archive::{self, Archived};
use super::{
    Dump, DumpReport, Fed, Restore, RestoreInto, RestoreReport, SourceContext, SourceError, Stage,
    postgres,
};
use crate::docker::{Engine, ExecStdio};

/// Starts the dump of `source`: read [`Dump::output`] to its end, then
/// await [`Dump::finish`]. Problems found before any byte flows (wrong
/// credentials, a missing directory or tool) are returned here.
pub async fn start_dump(source: &BackupSource, ctx: &SourceContext) -> Result<Dump, SourceError> {
    match &source.kind {
        Some(Kind::Postgres(postgres)) => postgres::start_dump(postgres, ctx).await,
        Some(Kind::Volume(volume)) => {
            archive::start_dump(&Archived::volume(volume, ctx).await?).await
        }
        Some(Kind::Path(path)) => archive::start_dump(&Archived::path(path)?).await,
        Some(Kind::Command(command)) => command_dump(command).await,
        None => Err(no_kind()),
    }
}

/// Starts restoring a dump of `source` into `into`: write the dump into
/// [`Restore::input`], shut it down, then await [`Restore::finish`].
/// `sql_assertion` (PostgreSQL) must hold in the restored database.
pub async fn start_restore(
    source: &BackupSource,
    into: RestoreInto,
    sql_assertion: Option<&str>,
    ctx: &SourceContext,
) -> Result<Restore, SourceError> {
    match &source.kind {
        Some(Kind::Postgres(postgres)) => {
            postgres::start_restore(postgres, into, sql_assertion, ctx).await
        }
        Some(Kind::Volume(volume)) => {
            archive::start_restore(&Archived::volume(volume, ctx).await?, into, ctx).await
        }
        Some(Kind::Path(path)) => archive::start_restore(&Archived::path(path)?, into, ctx).await,
        Some(Kind::Command(command)) => command_restore(command, into).await,
        None => Err(no_kind()),
    }
}

fn no_kind() -> SourceError {
    SourceError::Invalid {
        origin: "backup source".into(),
        problem: "the job names no source kind (postgres, volume, path or command); the \
                  control plane sent an incomplete job: update it or report the bug"
            .into(),
    }
}

// ---- command sources --------------------------------------------------

const COMMAND_ORIGIN: &str = "command source";

/// `sh -c BACKUP`: its stdout is the dump; a non-zero exit fails it.
async fn command_dump(command: &CommandSource) -> Result<Dump, SourceError> {
    if command.backup.trim().is_empty() {
        return Err(SourceError::Invalid {
            origin: COMMAND_ORIGIN.into(),
            problem: "the policy's backup command is empty: set `source.command.backup`".into(),
        });
    }
    let tool = Tool::new("sh", ["-c", command.backup.as_str()]).stdout();
    let running = run(&Place::Host, tool, COMMAND_ORIGIN, Stage::Dump).await?;
    let finish = async move {
        running
            .exit
            .await?
            .check(COMMAND_ORIGIN, Stage::Dump, "sh -c BACKUP", &[], |_| {
                "fix the policy's backup command (it must write the dump to stdout)".into()
            })?;
        Ok(DumpReport::default())
    };
    Ok(Dump {
        output: running.stdout,
        finish: Box::pin(finish),
    })
}

/// `sh -c RESTORE` reading the dump on stdin, in place. A command cannot
/// be pointed anywhere else safely, so a scratch restore (verification)
/// reads the dump to its end without running it: the pipeline has then
/// proved that the artifact is intact, decrypts and decompresses.
async fn command_restore(
    command: &CommandSource,
    into: RestoreInto,
) -> Result<Restore, SourceError> {
    let started = Instant::now();
    match into {
        RestoreInto::Scratch => {
            let finish = move |fed: Fed| -> FinishFuture {
                Box::pin(async move {
                    if fed == Fed::Abandoned {
                        return Err(abandoned(COMMAND_ORIGIN));
                    }
                    Ok(RestoreReport {
                        elapsed: started.elapsed(),
                        ..RestoreReport::default()
                    })
                })
            };
            Ok(Restore {
                input: Box::pin(tokio::io::sink()),
                finish: Box::new(finish),
            })
        }
        RestoreInto::InPlace => {
            if command.restore.trim().is_empty() {
                return Err(SourceError::Invalid {
                    origin: COMMAND_ORIGIN.into(),
                    problem: "the policy has no restore command: set `source.command.restore` \
                              to a command that reads the dump on stdin"
                        .into(),
                });
            }
            let tool = Tool::new("sh", ["-c", command.restore.as_str()]).stdin();
            let running = run(&Place::Host, tool, COMMAND_ORIGIN, Stage::Restore).await?;
            let exit = running.exit;
            let finish = move |fed: Fed| -> FinishFuture {
                Box::pin(async move {
                    if fed == Fed::Abandoned {
                        // Stops the command; what it already applied is its
                        // own to undo (a command is opaque to Argosy).
                        drop(exit);
                        return Err(abandoned(COMMAND_ORIGIN));
                    }
                    exit.await?.check(
                        COMMAND_ORIGIN,
                        Stage::Restore,
                        "sh -c RESTORE",
                        &[],
                        |_| "fix the policy's restore command (it reads the dump on stdin)".into(),
                    )?;
                    Ok(RestoreReport {
                        elapsed: started.elapsed(),
                        ..RestoreReport::default()
                    })
                })
            };
            Ok(Restore {
                input: Box::pin(DiscardWhenClosed::new(running.stdin)),
                finish: Box::new(finish),
            })
        }
        RestoreInto::Database(_) | RestoreInto::Directory(_) => Err(SourceError::Invalid {
            origin: COMMAND_ORIGIN.into(),
            problem: "a command source restores only in place (its restore command decides \
                      where the data goes): restore with --in-place"
                .into(),
        }),
    }
}

/// What a restore's `finish` returns.
pub type FinishFuture = Pin<Box<dyn Future<Output = Result<RestoreReport, SourceError>> + Send>>;

/// What an abandoned restore returns (after its cleanup): the pipeline
/// reports the artifact's own error, this one only says why it stopped.
pub fn abandoned(origin: &str) -> SourceError {
    SourceError::Incomplete {
        origin: origin.to_owned(),
        stage: Stage::Restore,
        problem: "the restore was abandoned part-way".into(),
    }
}

// ---- running tools ----------------------------------------------------

/// Where a tool runs.
#[derive(Clone, Debug)]
pub enum Place {
    Host,
    /// `docker exec` into this container.
    Container {
        engine: Engine,
        container: String,
    },
}

/// One invocation of a tool. Arguments never carry secrets: those go in
/// `env`.
pub struct Tool {
    program: String,
    args: Vec<String>,
    env: Vec<(String, Zeroizing<String>)>,
    /// Variables removed from the agent's environment (host only).
    unset: &'static [&'static str],
    stdin: bool,
    stdout: bool,
}

impl Tool {
    pub fn new<'a>(program: &str, args: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            program: program.to_owned(),
            args: args.into_iter().map(str::to_owned).collect(),
            env: Vec::new(),
            unset: &[],
            stdin: false,
            stdout: false,
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, env: Vec<(String, Zeroizing<String>)>) -> Self {
        self.env = env;
        self
    }

    pub fn unset(mut self, names: &'static [&'static str]) -> Self {
        self.unset = names;
        self
    }

    /// Attach stdin (otherwise it reads nothing).
    pub fn stdin(mut self) -> Self {
        self.stdin = true;
        self
    }

    /// Attach stdout (otherwise it is discarded).
    pub fn stdout(mut self) -> Self {
        self.stdout = true;
        self
    }
}

/// A started tool.
pub struct Running {
    /// Its stdout (empty when not attached).
    pub stdout: Pin<Box<dyn AsyncRead + Send>>,
    /// Its stdin (a sink when not attached).
    pub stdin: Pin<Box<dyn AsyncWrite + Send>>,
    /// How it ended. Dropping this kills a host process.
    pub exit: Pin<Box<dyn Future<Output = Result<Exit, SourceError>> + Send>>,
}

/// How a tool ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i64>,
    pub signal: Option<i32>,
    /// The end of what it wrote to stderr.
    pub stderr: OutputTail,
    /// Where it ran, for hints: `true` inside a container.
    pub in_container: bool,
}

impl Exit {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// `exited with status 1`, `was killed by signal 9`.
    pub fn status(&self) -> String {
        match (self.code, self.signal) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(signal)) => format!("was killed by signal {signal}"),
            (None, None) => "ended without an exit status".into(),
        }
    }

    /// `Ok` if it succeeded, else the error naming the tool, its status,
    /// its stderr (with `secrets` redacted) and `hint(stderr)`.
    pub fn check(
        self,
        origin: &str,
        stage: Stage,
        tool: &str,
        secrets: &[&str],
        hint: impl FnOnce(&str) -> String,
    ) -> Result<Self, SourceError> {
        if self.success() {
            return Ok(self);
        }
        let stderr = self.stderr.text(secrets);
        // 127/126 from a container: the command is not in its image.
        if self.in_container && matches!(self.code, Some(126 | 127)) {
            return Err(SourceError::ToolMissing {
                origin: origin.to_owned(),
                stage,
                tool: tool.to_owned(),
                reason: stderr,
                hint: "the container's image does not have it: use the database's own image \
                       or run the tools on the host (no `container`)"
                    .into(),
            });
        }
        let hint = hint(&stderr);
        Err(SourceError::ToolFailed {
            origin: origin.to_owned(),
            stage,
            tool: tool.to_owned(),
            status: self.status(),
            stderr: if stderr.is_empty() {
                "(no message)".into()
            } else {
                stderr
            },
            hint,
        })
    }
}

/// Starts `tool` at `place`.
pub async fn run(
    place: &Place,
    tool: Tool,
    origin: &str,
    stage: Stage,
) -> Result<Running, SourceError> {
    match place {
        Place::Host => run_on_host(tool, origin, stage),
        Place::Container { engine, container } => {
            run_in_container(engine, container, tool, origin, stage).await
        }
    }
}

fn run_on_host(tool: Tool, origin: &str, stage: Stage) -> Result<Running, SourceError> {
    let piped = |attach: bool| {
        if attach {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        }
    };
    let mut command = tokio::process::Command::new(&tool.program);
    command
        .args(&tool.args)
        .stdin(piped(tool.stdin))
        .stdout(piped(tool.stdout))
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for name in tool.unset {
        command.env_remove(name);
    }
    for (name, value) in &tool.env {
        command.env(name, value.as_str());
    }
    let mut child = command.spawn().map_err(|error| SourceError::ToolMissing {
        origin: origin.to_owned(),
        stage,
        tool: tool.program.clone(),
        reason: error.to_string(),
        hint: format!("install `{}` on the host", tool.program),
    })?;
    let stdout: Pin<Box<dyn AsyncRead + Send>> = match child.stdout.take() {
        Some(stdout) => Box::pin(stdout),
        None => Box::pin(tokio::io::empty()),
    };
    let stdin: Pin<Box<dyn AsyncWrite + Send>> = match child.stdin.take() {
        Some(stdin) => Box::pin(stdin),
        None => Box::pin(tokio::io::sink()),
    };
    let stderr = child.stderr.take().map(collect_tail);
    let origin = origin.to_owned();
    let program = tool.program;
    let exit = async move {
        let status = child.wait().await.map_err(|error| SourceError::Io {
            origin,
            stage,
            doing: format!("waiting for `{program}`"),
            error,
        })?;
        let stderr = match stderr {
            Some(task) => task.await.unwrap_or_default(),
            None => OutputTail::default(),
        };
        Ok(Exit {
            code: status.code().map(i64::from),
            signal: std::os::unix::process::ExitStatusExt::signal(&status),
            stderr,
            in_container: false,
        })
    };
    Ok(Running {
        stdout,
        stdin,
        exit: Box::pin(exit),
    })
}

async fn run_in_container(
    engine: &Engine,
    container: &str,
    tool: Tool,
    origin: &str,
    stage: Stage,
) -> Result<Running, SourceError> {
    let mut command = vec![tool.program.clone()];
    command.extend(tool.args);
    let env = tool
        .env
        .iter()
        .map(|(name, value)| format!("{name}={}", value.as_str()))
        .collect();
    let streams = engine
        .exec_streaming(
            container,
            &command,
            env,
            ExecStdio {
                stdin: tool.stdin,
                stdout: tool.stdout,
            },
        )
        .await
        .map_err(|error| SourceError::Engine {
            origin: origin.to_owned(),
            stage,
            error,
        })?;
    let stderr = collect_tail(streams.stderr);
    let origin = origin.to_owned();
    let exit_code = streams.exit_code;
    let exit = async move {
        let code = exit_code.await.map_err(|error| SourceError::Engine {
            origin,
            stage,
            error,
        })?;
        Ok(Exit {
            code: Some(code),
            signal: None,
            stderr: stderr.await.unwrap_or_default(),
            in_container: true,
        })
    };
    Ok(Running {
        stdout: streams.stdout,
        stdin: streams.stdin,
        exit: Box::pin(exit),
    })
}

/// Reads `stderr` to its end in the background, keeping its tail.
fn collect_tail(
    mut stderr: impl AsyncRead + Unpin + Send + 'static,
) -> tokio::task::JoinHandle<OutputTail> {
    tokio::spawn(async move {
        let mut tail = OutputTail::default();
        let mut buffer = vec![0; 8192];
        while let Ok(n) = stderr.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            tail.push(&buffer[..n]);
        }
        tail
    })
}

/// What a tool printed, read to its end: the first `limit` bytes, and
/// whether there was more.
pub struct Captured {
    pub exit: Exit,
    pub stdout: Vec<u8>,
    pub truncated: bool,
}

/// Runs `tool` (stdout attached) to its end.
pub async fn capture(
    place: &Place,
    tool: Tool,
    origin: &str,
    stage: Stage,
    limit: usize,
) -> Result<Captured, SourceError> {
    let mut running = run(place, tool.stdout(), origin, stage).await?;
    let mut stdout = Vec::new();
    let mut truncated = false;
    let mut buffer = vec![0; 8192];
    loop {
        let n = running
            .stdout
            .read(&mut buffer)
            .await
            .map_err(|error| SourceError::Io {
                origin: origin.to_owned(),
                stage,
                doing: "reading a tool's output".into(),
                error,
            })?;
        if n == 0 {
            break;
        }
        let room = limit.saturating_sub(stdout.len());
        stdout.extend_from_slice(&buffer[..n.min(room)]);
        truncated |= n > room;
    }
    drop(running.stdin);
    let exit = running.exit.await?;
    Ok(Captured {
        exit,
        stdout,
        truncated,
    })
}

// ---- stderr tails and redaction ---------------------------------------

/// How much of a tool's stderr an error message shows.
pub const TAIL_BYTES: usize = 2048;

/// The last [`TAIL_BYTES`] of a stream (memory stays under twice that).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputTail {
    bytes: Vec<u8>,
    /// Bytes were dropped from the front.
    cut: bool,
}

impl OutputTail {
    pub fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > 2 * TAIL_BYTES {
            let excess = self.bytes.len() - TAIL_BYTES;
            self.bytes.drain(..excess);
            self.cut = true;
        }
    }

    /// One line of text for an error message: the tail's lines joined
    /// with spaces, `secrets` replaced by `***`, starting at a line
    /// boundary when the front was cut (`… ` marks it).
    pub fn text(&self, secrets: &[&str]) -> String {
        let mut text = redact(&String::from_utf8_lossy(&self.bytes), secrets);
        let mut cut = self.cut;
        if text.len() > TAIL_BYTES {
            let mut start = text.len() - TAIL_BYTES;
            while !text.is_char_boundary(start) {
                start += 1;
            }
            text.drain(..start);
            cut = true;
        }
        if cut {
            match text.find('\n') {
                // Drop the partial first line.
                Some(newline) if newline + 1 < text.len() => {
                    text.drain(..=newline);
                }
                // One long line: whatever a secret's end looks like at
                // its start could be the rest of one.
                _ => text = redact_secret_ends(&text, secrets),
            }
        }
        let joined = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if cut { format!("… {joined}") } else { joined }
    }
}

/// `text` with every occurrence of each non-empty secret replaced by `***`.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret, "***");
    }
    text
}

/// `text` with a leading proper suffix of a secret replaced by `***`.
fn redact_secret_ends(text: &str, secrets: &[&str]) -> String {
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        for (start, _) in secret.char_indices().skip(1) {
            let end = &secret[start..];
            if let Some(rest) = text.strip_prefix(end) {
                return format!("***{rest}");
            }
        }
    }
    text.to_owned()
}

// ---- reading facts off a stream ---------------------------------------

/// A pure scanner of a byte stream: fed every chunk in order, then asked
/// for what it found.
pub trait StreamScan: Send + Unpin + 'static {
    type Report: Send + 'static;
    type Error: Send + 'static;
    fn feed(&mut self, chunk: &[u8]);
    fn finish(self) -> Result<Self::Report, Self::Error>;
}

impl StreamScan for super::copy_rows::CopyRows {
    type Report = super::TableRows;
    type Error = super::copy_rows::CopyRowsError;
    fn feed(&mut self, chunk: &[u8]) {
        Self::feed(self, chunk);
    }
    fn finish(self) -> Result<Self::Report, Self::Error> {
        Self::finish(self)
    }
}

/// What a scanner found, once its stream ended; a dropped sender (the
/// stream was not read or written to its end) is a `RecvError`.
pub type ScanResult<S> =
    oneshot::Receiver<Result<<S as StreamScan>::Report, <S as StreamScan>::Error>>;

/// A reader that shows every byte it passes on to a scanner, and sends
/// the scanner's result when the stream ends.
pub struct ScannedReader<R, S: StreamScan> {
    inner: R,
    scanner: Option<S>,
    report: Option<oneshot::Sender<Result<S::Report, S::Error>>>,
}

impl<R, S: StreamScan> ScannedReader<R, S> {
    pub fn new(inner: R, scanner: S) -> (Self, ScanResult<S>) {
        let (report, result) = oneshot::channel();
        (
            Self {
                inner,
                scanner: Some(scanner),
                report: Some(report),
            },
            result,
        )
    }
}

impl<R: AsyncRead + Unpin, S: StreamScan> AsyncRead for ScannedReader<R, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        if read.is_empty() {
            if let (Some(scanner), Some(report)) = (this.scanner.take(), this.report.take()) {
                let _ = report.send(scanner.finish());
            }
        } else if let Some(scanner) = &mut this.scanner {
            scanner.feed(read);
        }
        Poll::Ready(Ok(()))
    }
}

/// A writer that shows every byte it passes on to a scanner, and sends
/// the scanner's result when it is shut down.
pub struct ScannedWriter<W, S: StreamScan> {
    inner: W,
    scanner: Option<S>,
    report: Option<oneshot::Sender<Result<S::Report, S::Error>>>,
}

impl<W, S: StreamScan> ScannedWriter<W, S> {
    pub fn new(inner: W, scanner: S) -> (Self, ScanResult<S>) {
        let (report, result) = oneshot::channel();
        (
            Self {
                inner,
                scanner: Some(scanner),
                report: Some(report),
            },
            result,
        )
    }
}

impl<W: AsyncWrite + Unpin, S: StreamScan> AsyncWrite for ScannedWriter<W, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        if let Some(scanner) = &mut this.scanner {
            scanner.feed(&buf[..written]);
        }
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
        if let (Some(scanner), Some(report)) = (this.scanner.take(), this.report.take()) {
            let _ = report.send(scanner.finish());
        }
        Poll::Ready(Ok(()))
    }
}

/// A restore tool's stdin that, once the tool has stopped reading (it
/// exited, usually on an error), accepts and discards the rest: the
/// pipeline then reaches `finish`, which reports the tool's own message
/// instead of a bare "broken pipe". Shutting it down closes the tool's
/// stdin for real (a process pipe closes only when dropped).
pub struct DiscardWhenClosed<W> {
    /// `None` once the tool stopped reading or the input was shut down.
    inner: Option<W>,
}

impl<W> DiscardWhenClosed<W> {
    pub fn new(inner: W) -> Self {
        Self { inner: Some(inner) }
    }
}

/// Whether a write error means the reader has gone away.
fn reader_gone(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
    )
}

impl<W: AsyncWrite + Unpin> DiscardWhenClosed<W> {
    /// `result`, or `gone_value` (and the writer closed) when the reader
    /// has gone away.
    fn settle<T>(&mut self, result: io::Result<T>, gone_value: T) -> io::Result<T> {
        match result {
            Err(error) if reader_gone(&error) => {
                self.inner = None;
                Ok(gone_value)
            }
            other => other,
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for DiscardWhenClosed<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(inner) = &mut this.inner else {
            return Poll::Ready(Ok(buf.len()));
        };
        let result = ready!(Pin::new(inner).poll_write(cx, buf));
        Poll::Ready(this.settle(result, buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(inner) = &mut this.inner else {
            return Poll::Ready(Ok(()));
        };
        let result = ready!(Pin::new(inner).poll_flush(cx));
        Poll::Ready(this.settle(result, ()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(inner) = &mut this.inner else {
            return Poll::Ready(Ok(()));
        };
        let result = ready!(Pin::new(inner).poll_shutdown(cx));
        let result = this.settle(result, ());
        // Dropping the writer closes the pipe: the tool sees the end.
        this.inner = None;
        Poll::Ready(result)
    }
}

/// A restore input that writes `ending` (say `COMMIT;`) only when it is
/// shut down: an input dropped part-way — a damaged artifact, a wrong key
/// — never carries it, so a target that applies its input only on that
/// last line keeps nothing of a broken restore.
pub struct EndsOnShutdown<W> {
    inner: W,
    ending: &'static [u8],
    written: usize,
}

impl<W> EndsOnShutdown<W> {
    pub fn new(inner: W, ending: &'static [u8]) -> Self {
        Self {
            inner,
            ending,
            written: 0,
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for EndsOnShutdown<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.written < this.ending.len() {
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &this.ending[this.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            this.written += n;
        }
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn the_ending_is_written_only_on_shutdown() {
        let (writer, mut reader) = tokio::io::duplex(1024);
        let mut whole = EndsOnShutdown::new(writer, b"COMMIT;\n");
        whole.write_all(b"INSERT 1;\n").await.unwrap();
        whole.shutdown().await.unwrap();
        drop(whole);
        let mut got = String::new();
        reader.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "INSERT 1;\nCOMMIT;\n");

        let (writer, mut reader) = tokio::io::duplex(1024);
        let mut dropped = EndsOnShutdown::new(writer, b"COMMIT;\n");
        dropped.write_all(b"INSERT 1;\n").await.unwrap();
        drop(dropped);
        let mut got = String::new();
        reader.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "INSERT 1;\n");
    }

    #[test]
    fn a_short_tail_is_all_of_it_on_one_line() {
        let mut tail = OutputTail::default();
        tail.push(b"pg_dump: error: connection failed\n");
        tail.push(b"\tIs the server running?\n");
        assert_eq!(
            tail.text(&[]),
            "pg_dump: error: connection failed Is the server running?"
        );
        assert_eq!(OutputTail::default().text(&[]), "");
    }

    #[test]
    fn a_long_tail_keeps_the_last_whole_lines() {
        let mut tail = OutputTail::default();
        for i in 0..10_000 {
            tail.push(format!("line {i}\n").as_bytes());
        }
        assert!(tail.bytes.len() <= 2 * TAIL_BYTES);
        let text = tail.text(&[]);
        assert!(text.starts_with("… line "), "{text}");
        assert!(text.ends_with("line 9999"), "{text}");
        assert!(text.len() <= TAIL_BYTES + 8, "{}", text.len());
        // Whole lines only: the first shown line is complete.
        let first: u32 = text["… line ".len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(first > 9000);
    }

    #[test]
    fn secrets_are_redacted_wherever_they_are() {
        let mut tail = OutputTail::default();
        tail.push(b"FATAL: password hunter2 rejected for postgres://u:hunter2@h/db\n");
        let text = tail.text(&["hunter2", ""]);
        assert_eq!(
            text,
            "FATAL: password *** rejected for postgres://u:***@h/db"
        );
        assert_eq!(redact("no secret here", &["hunter2"]), "no secret here");
    }

    #[test]
    fn a_secret_cut_by_the_tail_does_not_leak_its_end() {
        let secret = "correct-horse-battery-staple";
        // One long line whose cut falls inside the secret.
        let mut line = "x".repeat(5000);
        line.push_str(secret);
        line.push_str(&"y".repeat(TAIL_BYTES - 10));
        let mut tail = OutputTail::default();
        tail.push(line.as_bytes());
        let text = tail.text(&[secret]);
        assert!(!text.contains("staple"), "{text}");
        assert!(text.starts_with("… ***"), "{}", &text[..20]);
        // A cut on a line boundary shows only whole lines.
        let mut tail = OutputTail::default();
        tail.push("a".repeat(3 * TAIL_BYTES).as_bytes());
        tail.push(format!("\npassword {secret} here\n").as_bytes());
        assert_eq!(tail.text(&[secret]), "… password *** here");
    }

    #[test]
    fn exits_describe_themselves() {
        let exit = |code, signal| Exit {
            code,
            signal,
            stderr: OutputTail::default(),
            in_container: false,
        };
        assert!(exit(Some(0), None).success());
        assert_eq!(exit(Some(2), None).status(), "exited with status 2");
        assert_eq!(exit(None, Some(9)).status(), "was killed by signal 9");
        let error = exit(Some(1), None)
            .check("command source", Stage::Dump, "sh", &[], |_| {
                "fix it".into()
            })
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "command source: the dump failed: `sh` exited with status 1: (no message); fix it"
        );
        let mut missing = exit(Some(127), None);
        missing.in_container = true;
        let error = missing
            .check("postgres source", Stage::Dump, "pg_dump", &[], |_| {
                String::new()
            })
            .unwrap_err();
        assert!(matches!(error, SourceError::ToolMissing { .. }), "{error}");
    }

    #[derive(Default)]
    struct CountBytes(u64);

    impl StreamScan for CountBytes {
        type Report = u64;
        type Error = ();
        fn feed(&mut self, chunk: &[u8]) {
            self.0 += chunk.len() as u64;
        }
        fn finish(self) -> Result<u64, ()> {
            Ok(self.0)
        }
    }

    #[tokio::test]
    async fn a_scanned_reader_reports_at_the_end_only() {
        let data = vec![7u8; 100_000];
        let (mut reader, result) = ScannedReader::new(&data[..], CountBytes::default());
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, data);
        assert_eq!(result.await.unwrap(), Ok(100_000));

        // Not read to its end: no report.
        let (mut reader, result) = ScannedReader::new(&data[..], CountBytes::default());
        let mut some = [0; 10];
        reader.read_exact(&mut some).await.unwrap();
        drop(reader);
        assert!(result.await.is_err());
    }

    #[tokio::test]
    async fn a_scanned_writer_reports_on_shutdown() {
        let (writer, result) = ScannedWriter::new(Vec::new(), CountBytes::default());
        let mut writer = writer;
        writer.write_all(b"hello ").await.unwrap();
        writer.write_all(b"world").await.unwrap();
        writer.shutdown().await.unwrap();
        assert_eq!(writer.inner, b"hello world");
        assert_eq!(result.await.unwrap(), Ok(11));
    }

    #[tokio::test]
    async fn a_closed_restore_input_discards_the_rest() {
        let (writer, reader) = tokio::io::duplex(16);
        drop(reader);
        let mut input = DiscardWhenClosed::new(writer);
        input.write_all(&[1; 1000]).await.unwrap();
        input.flush().await.unwrap();
        input.shutdown().await.unwrap();
        assert!(input.inner.is_none());
    }

    #[tokio::test]
    async fn a_command_dump_streams_its_stdout_and_fails_on_a_bad_exit() {
        let source = BackupSource {
            kind: Some(Kind::Command(CommandSource {
                backup: "printf 'a\\nb\\n'; echo note >&2".into(),
                restore: String::new(),
            })),
        };
        let ctx = SourceContext::default();
        let mut dump = start_dump(&source, &ctx).await.unwrap();
        let mut out = Vec::new();
        dump.output.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"a\nb\n");
        assert_eq!(dump.finish.await.unwrap(), DumpReport::default());

        let failing = BackupSource {
            kind: Some(Kind::Command(CommandSource {
                backup: "echo partial; echo 'disk on fire' >&2; exit 3".into(),
                restore: String::new(),
            })),
        };
        let mut dump = start_dump(&failing, &ctx).await.unwrap();
        let mut out = Vec::new();
        dump.output.read_to_end(&mut out).await.unwrap();
        let error = dump.finish.await.unwrap_err().to_string();
        assert_eq!(
            error,
            "command source: the dump failed: `sh -c BACKUP` exited with status 3: disk on \
             fire; fix the policy's backup command (it must write the dump to stdout)"
        );
    }

    #[tokio::test]
    async fn a_command_restore_feeds_stdin_in_place_and_reports_failures() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("restored");
        let source = BackupSource {
            kind: Some(Kind::Command(CommandSource {
                backup: "true".into(),
                restore: format!("cat > '{}'", target.display()),
            })),
        };
        let ctx = SourceContext::default();
        let mut restore = start_restore(&source, RestoreInto::InPlace, None, &ctx)
            .await
            .unwrap();
        restore.input.write_all(b"the dump").await.unwrap();
        restore.input.shutdown().await.unwrap();
        (restore.finish)(Fed::Whole).await.unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"the dump");

        // A restore command that fails early: the input takes the rest,
        // `finish` says why.
        let failing = BackupSource {
            kind: Some(Kind::Command(CommandSource {
                backup: "true".into(),
                restore: "echo 'refusing' >&2; exit 4".into(),
            })),
        };
        let mut restore = start_restore(&failing, RestoreInto::InPlace, None, &ctx)
            .await
            .unwrap();
        for _ in 0..64 {
            restore.input.write_all(&[0; 65536]).await.unwrap();
        }
        restore.input.shutdown().await.unwrap();
        let error = (restore.finish)(Fed::Whole).await.unwrap_err().to_string();
        assert!(error.contains("exited with status 4: refusing"), "{error}");

        // Scratch runs nothing: it reads the dump to its end.
        let mut restore = start_restore(&failing, RestoreInto::Scratch, None, &ctx)
            .await
            .unwrap();
        restore.input.write_all(b"anything").await.unwrap();
        restore.input.shutdown().await.unwrap();
        (restore.finish)(Fed::Whole).await.unwrap();

        for into in [
            RestoreInto::Database("x".into()),
            RestoreInto::Directory("/tmp/x".into()),
        ] {
            let error = start_restore(&source, into, None, &ctx)
                .await
                .err()
                .unwrap();
            assert!(
                error.to_string().contains("restores only in place"),
                "{error}"
            );
        }
    }

    #[tokio::test]
    async fn a_job_without_a_source_kind_is_refused() {
        let error = start_dump(&BackupSource { kind: None }, &SourceContext::default())
            .await
            .err()
            .unwrap();
        assert!(matches!(error, SourceError::Invalid { .. }), "{error}");
    }

    #[tokio::test]
    async fn a_missing_tool_says_what_to_install() {
        let tool = Tool::new("argosy-no-such-tool", []);
        let error = run(&Place::Host, tool, "test source", Stage::Dump)
            .await
            .err()
            .unwrap();
        assert_eq!(
            error.to_string(),
            "test source: the dump could not start `argosy-no-such-tool`: No such file or \
             directory (os error 2); install `argosy-no-such-tool` on the host"
        );
    }
}
