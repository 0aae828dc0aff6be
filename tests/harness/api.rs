//! Talking to a control plane: a gRPC channel that pins its CA the way the
//! CLI and agent do, a bearer-token interceptor, and plain HTTP/1.1
//! requests (with a browser's headers, and Server-Sent Events).

use anyhow::Context;
use argosy_proto::join::CaFingerprint;
use argosy_proto::tls::{self, ReloadableIdentity, ServerTrust};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Adds `authorization: Bearer <token>` to every call (or nothing).
#[derive(Clone, Debug)]
pub struct Bearer(Option<AsciiMetadataValue>);

impl Bearer {
    /// A bearer for `token`, or one that sends no header.
    pub fn new(token: Option<&str>) -> Self {
        Self(token.map(|t| {
            AsciiMetadataValue::try_from(format!("Bearer {t}")).expect("a token is ASCII")
        }))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel with a bearer token attached.
pub type Authed = InterceptedService<Channel, Bearer>;

/// A lazily connecting TLS channel to `addr` that trusts only the CA with
/// `fingerprint`, optionally presenting a client certificate.
pub fn pinned_channel(
    addr: SocketAddr,
    fingerprint: CaFingerprint,
    identity: Option<Arc<ReloadableIdentity>>,
) -> anyhow::Result<Channel> {
    let config = tls::client_config(ServerTrust::Pinned(fingerprint), identity)?;
    Ok(tls::channel(&addr.to_string(), config)?)
}

/// Opens a raw TLS connection to the gRPC listener the way the agent does
/// (pinned CA, optional client certificate), sends the HTTP/2 preface and
/// reads the server's first bytes. `Ok` means the server accepted the
/// handshake and speaks; `Err` carries the TLS failure (e.g. the alert the
/// server sent about a client certificate).
pub async fn tls_probe(
    addr: SocketAddr,
    fingerprint: CaFingerprint,
    identity: Option<Arc<ReloadableIdentity>>,
) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let config = tls::client_config(ServerTrust::Pinned(fingerprint), identity)?;
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from(tls::SERVER_NAME)?;
    let exchange = async {
        let mut stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await?;
        stream.flush().await?;
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::other(
                "the server closed the connection without a word",
            ));
        }
        Ok(())
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), exchange)
        .await
        .context("the TLS exchange timed out")?
        .map_err(|e| anyhow::anyhow!("TLS failed: {}", tls::error_chain(&e)))
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "the body is not JSON (status {}): {}",
                self.status,
                self.text()
            )
        })
    }
}

/// `GET path` on `addr` over plain HTTP/1.1, with an optional bearer token.
pub async fn http_get(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<HttpResponse> {
    http_request(addr, http::Method::GET, path, token, Vec::new()).await
}

/// `METHOD path` on `addr` over plain HTTP/1.1 with `body`, with an
/// optional bearer token.
pub async fn http_request(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> anyhow::Result<HttpResponse> {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .as_deref()
        .map(|b| vec![("authorization", b)])
        .unwrap_or_default();
    http_request_with(addr, method, path, &headers, body).await
}

/// Sends one request with `headers` (besides `Host`) and returns the
/// response with its body still streaming.
async fn send(
    addr: SocketAddr,
    method: &http::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> anyhow::Result<http::Response<hyper::body::Incoming>> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to http://{addr}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut request = http::Request::builder().method(method.clone()).uri(path);
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        request = request.header(http::header::HOST, addr.to_string());
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        sender.send_request(request.body(Full::new(Bytes::from(body)))?),
    )
    .await
    .with_context(|| format!("{method} http://{addr}{path} timed out"))?
    .with_context(|| format!("{method} http://{addr}{path} failed"))
}

/// `METHOD path` on `addr` over plain HTTP/1.1 with `body` and `headers`
/// (cookies, CSRF tokens, origins: what a browser would send).
pub async fn http_request_with(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> anyhow::Result<HttpResponse> {
    let response = send(addr, &method, path, headers, body).await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await?.to_bytes().to_vec();
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// `GET path` as a Server-Sent Events stream: the `(event, data)` pairs
/// that arrive until `count` of them came or `within` passed, with the
/// response's status.
pub async fn sse_events(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    count: usize,
    within: std::time::Duration,
) -> anyhow::Result<(u16, Vec<(String, String)>)> {
    let response = send(addr, &http::Method::GET, path, headers, Vec::new()).await?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut text = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while events.len() < count {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(frame)) => frame?,
        };
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let mut event = String::from("message");
            let mut data = String::new();
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event:") {
                    event = name.trim().to_owned();
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim_start());
                }
            }
            if !data.is_empty() {
                events.push((event, data));
            }
        }
    }
    Ok((status, events))
}

/// Renders a gRPC status with its whole cause chain, for assertions on
/// transport failures.
pub fn status_text(status: &tonic::Status) -> String {
    use std::error::Error as _;
    let mut text = format!("{:?}: {}", status.code(), status.message());
    if let Some(source) = status.source() {
        text.push_str(" (");
        text.push_str(&tls::error_chain(source));
        text.push(')');
    }
    text
}
