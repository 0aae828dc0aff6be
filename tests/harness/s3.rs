//! A real S3-compatible object store on loopback for the backup tests:
//! `moto_server` (Python, `pip install 'moto[server]'`) on a free port, with
//! the few S3 calls a test needs to look behind the agent's back — create a
//! bucket, list objects and pending multipart uploads, read, overwrite
//! (corrupt, truncate) and delete an object — and a [`QuotaProxy`] that
//! stands in front of it and refuses upload parts once a byte budget is
//! spent, the way a bucket quota (`403 QuotaExceeded`) does, so an upload
//! fails part-way through.
//!
//! moto does not check request signatures, but it wants an `Authorization`
//! header to tell who is asking, so every request carries a syntactically
//! valid, unsigned AWS v4 header for the [`ACCESS_KEY_ID`] the tests give
//! the agent.

use crate::env::TestEnv;
use crate::process::{Process, Spec};
use crate::wait::patience;
use anyhow::{Context, bail, ensure};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The access key id tests store as the S3 key secret (moto accepts any).
pub const ACCESS_KEY_ID: &str = "AKIAARGOSYTEST000001";
/// The secret access key tests store (moto does not check signatures).
pub const SECRET_ACCESS_KEY: &str = "argosy-test-secret-access-key-0000000001";
/// The region every bucket is created in.
pub const REGION: &str = "us-east-1";

/// The program that serves the S3 API.
const MOTO: &str = "moto_server";

/// How long moto may take to answer its first request, before scaling.
const START_PATIENCE: Duration = Duration::from_secs(60);

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub key: String,
    pub size: u64,
}

/// One multipart upload that was started and neither completed nor aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    pub key: String,
    pub upload_id: String,
}

/// A running `moto_server`; killed when dropped.
#[derive(Debug)]
pub struct S3 {
    process: Process,
    addr: SocketAddr,
}

/// A loopback port nobody listens on right now.
pub async fn free_port() -> anyhow::Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    Ok(listener.local_addr()?.port())
}

impl S3 {
    /// Starts `moto_server -H 127.0.0.1 -p <free port>` and waits until it
    /// answers. Fails (never skips) when moto is not installed.
    pub async fn start(env: &TestEnv) -> anyhow::Result<Self> {
        let dir = env.new_dir("s3");
        let log = dir.join("moto.log");
        env.register_log("moto_server (S3)", &log);
        let mut attempts = 0;
        loop {
            let port = free_port().await?;
            let spec = Spec {
                name: "moto_server".into(),
                program: PathBuf::from(MOTO),
                args: vec![
                    "-H".into(),
                    "127.0.0.1".into(),
                    "-p".into(),
                    port.to_string().into(),
                ],
                env: Vec::new(),
                log: log.clone(),
            };
            let process = Process::spawn(spec).with_context(|| {
                format!(
                    "cannot start {MOTO}: install it with `pip install 'moto[server]'` \
                     (.ci/run does, into /var/tmp/argosy-moto; scripts/test puts it on PATH)"
                )
            })?;
            let mut s3 = Self {
                process,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
            };
            match s3.wait_ready().await {
                Ok(()) => return Ok(s3),
                Err(error) if attempts < 3 && s3.process.log().contains("in use") => {
                    attempts += 1;
                    eprintln!("moto_server: port {port} was taken ({error:#}); retrying");
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let limit = patience(START_PATIENCE);
        let started = Instant::now();
        loop {
            if let Some(status) = self.process.try_exit_status()? {
                bail!(
                    "moto_server exited with {status} while starting; its log:\n{}",
                    self.process.log()
                );
            }
            match request(self.addr, "GET", "/", Vec::new()).await {
                Ok(response) if response.status == 200 => return Ok(()),
                Ok(response) => {
                    if started.elapsed() > limit {
                        bail!("moto_server answers {} to GET /", response.status);
                    }
                }
                Err(error) if started.elapsed() > limit => {
                    return Err(error.context(format!(
                        "moto_server did not answer within {:.0}s; its log:\n{}",
                        limit.as_secs_f64(),
                        self.process.log()
                    )));
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `http://127.0.0.1:PORT`, the endpoint to put in a policy.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Kills moto (SIGKILL): the endpoint stops answering. Its objects are
    /// in memory and gone.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.process.kill().await
    }

    /// Creates `bucket` (3–63 characters, S3 rules).
    pub async fn create_bucket(&self, bucket: &str) -> anyhow::Result<()> {
        let response = request(self.addr, "PUT", &format!("/{bucket}"), Vec::new()).await?;
        ensure!(
            response.status == 200,
            "CreateBucket {bucket} answered {}: {}",
            response.status,
            response.text()
        );
        Ok(())
    }

    /// Every object in `bucket` whose key starts with `prefix`.
    pub async fn list(&self, bucket: &str, prefix: &str) -> anyhow::Result<Vec<Object>> {
        let response = request(
            self.addr,
            "GET",
            &format!(
                "/{bucket}?list-type=2&max-keys=1000&prefix={}",
                escape(prefix)
            ),
            Vec::new(),
        )
        .await?;
        ensure!(
            response.status == 200,
            "ListObjectsV2 {bucket} answered {}: {}",
            response.status,
            response.text()
        );
        let text = response.text();
        ensure!(
            !text.contains("<IsTruncated>true</IsTruncated>"),
            "more than 1000 objects under {bucket}/{prefix}: the harness lists one page"
        );
        elements(&text, "Contents")
            .into_iter()
            .map(|contents| {
                let key = element(contents, "Key").context("an object without <Key>")?;
                let size = element(contents, "Size")
                    .context("an object without <Size>")?
                    .parse()
                    .context("a <Size> that is not a number")?;
                Ok(Object {
                    key: unescape(key),
                    size,
                })
            })
            .collect()
    }

    /// The keys of every object under `prefix`, sorted.
    pub async fn keys(&self, bucket: &str, prefix: &str) -> anyhow::Result<Vec<String>> {
        let mut keys: Vec<String> = self
            .list(bucket, prefix)
            .await?
            .into_iter()
            .map(|o| o.key)
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// Multipart uploads started in `bucket` and neither completed nor
    /// aborted.
    pub async fn pending_uploads(&self, bucket: &str) -> anyhow::Result<Vec<PendingUpload>> {
        let response = request(self.addr, "GET", &format!("/{bucket}?uploads"), Vec::new()).await?;
        ensure!(
            response.status == 200,
            "ListMultipartUploads {bucket} answered {}: {}",
            response.status,
            response.text()
        );
        let text = response.text();
        elements(&text, "Upload")
            .into_iter()
            .map(|upload| {
                Ok(PendingUpload {
                    key: unescape(element(upload, "Key").context("an upload without <Key>")?),
                    upload_id: element(upload, "UploadId")
                        .context("an upload without <UploadId>")?
                        .to_owned(),
                })
            })
            .collect()
    }

    /// The object's bytes, or `None` when there is no such object.
    pub async fn get(&self, bucket: &str, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let response = request(self.addr, "GET", &object_path(bucket, key), Vec::new()).await?;
        match response.status {
            200 => Ok(Some(response.body)),
            404 => Ok(None),
            status => bail!(
                "GetObject {bucket}/{key} answered {status}: {}",
                response.text()
            ),
        }
    }

    /// Writes `bytes` as the object (replacing it): how a test corrupts or
    /// truncates a stored artifact.
    pub async fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        let response = request(self.addr, "PUT", &object_path(bucket, key), bytes).await?;
        ensure!(
            response.status == 200,
            "PutObject {bucket}/{key} answered {}: {}",
            response.status,
            response.text()
        );
        Ok(())
    }

    /// Deletes the object (no error when it is not there).
    pub async fn delete(&self, bucket: &str, key: &str) -> anyhow::Result<()> {
        let response = request(self.addr, "DELETE", &object_path(bucket, key), Vec::new()).await?;
        ensure!(
            matches!(response.status, 200 | 204),
            "DeleteObject {bucket}/{key} answered {}: {}",
            response.status,
            response.text()
        );
        Ok(())
    }
}

/// An S3 answer.
#[derive(Debug)]
struct Response {
    status: u16,
    body: Vec<u8>,
}

impl Response {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `METHOD path` on `addr` with an unsigned AWS v4 `Authorization` header.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> anyhow::Result<Response> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to the S3 endpoint http://{addr}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, addr.to_string())
        .header(
            http::header::AUTHORIZATION,
            format!(
                "AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/20260101/{REGION}/s3/aws4_request, \
                 SignedHeaders=host, Signature=0"
            ),
        )
        // Without it moto (werkzeug) reads a body as a form and stores nothing.
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .body(Full::new(Bytes::from(body)))?;
    let response = tokio::time::timeout(Duration::from_secs(60), sender.send_request(request))
        .await
        .with_context(|| format!("{method} http://{addr}{path} timed out"))?
        .with_context(|| format!("{method} http://{addr}{path} failed"))?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes().to_vec();
    Ok(Response { status, body })
}

fn object_path(bucket: &str, key: &str) -> String {
    format!(
        "/{bucket}/{}",
        key.split('/').map(escape).collect::<Vec<_>>().join("/")
    )
}

/// Percent-encodes everything but S3's unreserved characters.
fn escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The text inside every `<tag>…</tag>` of `xml` (not nested in itself).
fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else {
            break;
        };
        found.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    found
}

/// The text of the first `<tag>…</tag>` in `xml`.
fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    elements(xml, tag).into_iter().next()
}

/// Undoes XML's five predefined entities.
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// A reverse proxy in front of an [`S3`] that forwards every request,
/// except that once `budget` bytes of object data were accepted it answers
/// each further upload (`PUT` of an object or a part) with `403
/// QuotaExceeded`, as a bucket quota does (Ceph RGW, MinIO). Aborting an
/// upload and everything else still goes through, so what the uploader
/// leaves behind can be checked on the real store. Stops when dropped.
#[derive(Debug)]
pub struct QuotaProxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct ProxyState {
    upstream: SocketAddr,
    budget: u64,
    accepted: AtomicU64,
    refused: AtomicU64,
}

impl QuotaProxy {
    /// Starts a proxy to `s3` on a free loopback port.
    pub async fn start(s3: &S3, budget: u64) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind the S3 quota proxy")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(ProxyState {
            upstream: s3.addr,
            budget,
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, state, task })
    }

    /// `http://127.0.0.1:PORT`, the endpoint to put in a policy.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Bytes of object data forwarded so far.
    pub fn accepted_bytes(&self) -> u64 {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Uploads refused so far.
    pub fn refused_uploads(&self) -> u64 {
        self.state.refused.load(Ordering::SeqCst)
    }
}

impl Drop for QuotaProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const QUOTA_EXCEEDED: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>QuotaExceeded</Code>\
<Message>The bucket quota is used up</Message></Error>";

async fn forward(
    axum::extract::State(state): axum::extract::State<Arc<ProxyState>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    match forward_inner(&state, request).await {
        Ok(response) => response,
        Err(error) => axum::response::Response::builder()
            .status(502)
            .body(axum::body::Body::from(format!("quota proxy: {error:#}")))
            .unwrap_or_default(),
    }
}

async fn forward_inner(
    state: &ProxyState,
    request: axum::extract::Request,
) -> anyhow::Result<axum::response::Response> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await?;
    let query = parts.uri.query().unwrap_or_default();
    let is_upload = parts.method == http::Method::PUT
        && parts.uri.path().trim_matches('/').contains('/')
        && !query.contains("tagging")
        && !query.contains("acl");
    if is_upload {
        if state.accepted.load(Ordering::SeqCst) >= state.budget {
            state.refused.fetch_add(1, Ordering::SeqCst);
            return Ok(axum::response::Response::builder()
                .status(403)
                .header(http::header::CONTENT_TYPE, "application/xml")
                .body(axum::body::Body::from(QUOTA_EXCEEDED))?);
        }
        state
            .accepted
            .fetch_add(u64::try_from(body.len())?, Ordering::SeqCst);
    }
    let stream = tokio::net::TcpStream::connect(state.upstream).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut upstream = http::Request::builder()
        .method(parts.method.clone())
        .uri(parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    for (name, value) in parts
        .headers
        .iter()
        .filter(|(name, _)| !is_hop_header(name))
    {
        upstream = upstream.header(name, value);
    }
    let response = sender.send_request(upstream.body(Full::new(body))?).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    let mut answer = axum::response::Response::builder().status(parts.status);
    for (name, value) in parts
        .headers
        .iter()
        .filter(|(name, _)| !is_hop_header(name))
    {
        answer = answer.header(name, value);
    }
    Ok(answer.body(axum::body::Body::from(body))?)
}

/// Headers that describe one connection or one body's framing, which the
/// proxy sets afresh for each side.
fn is_hop_header(name: &http::HeaderName) -> bool {
    [
        http::header::CONNECTION,
        http::header::TRANSFER_ENCODING,
        http::header::CONTENT_LENGTH,
    ]
    .contains(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_xml_is_read() {
        let xml = "<ListBucketResult><Contents><Key>a/b&amp;c</Key><Size>5</Size></Contents>\
                   <Contents><Key>d</Key><Size>0</Size></Contents></ListBucketResult>";
        let found = elements(xml, "Contents");
        assert_eq!(found.len(), 2);
        assert_eq!(element(found[0], "Key").map(unescape), Some("a/b&c".into()));
        assert_eq!(element(found[1], "Size"), Some("0"));
    }

    #[test]
    fn keys_are_escaped_per_segment() {
        assert_eq!(object_path("b", "p/x y.argosy"), "/b/p/x%20y.argosy");
        assert_eq!(escape("prod/"), "prod%2F");
    }
}
