//! The ingress's HTTP adapter: accepts connections (plain, or TLS with
//! ALPN `h2`/`http/1.1` and the SNI certificate resolver), serves HTTP/1.1
//! and HTTP/2 with hyper-util's auto builder, and forwards each request
//! over a pooled HTTP/1.1 connection ([`super::upstream`]) to the backend
//! [`super::routes`] picks.
//!
//! Per request: no route → 404; a route without weight → 503 with its
//! explanation and `Retry-After: 5`; a request that never reached a
//! backend (it could not connect, or a pooled connection was found
//! closed) goes to another backend, bodies of any size included (3
//! attempts in all), and a connect failure ejects the backend; a failure
//! after the request may have reached the backend is not retried; when
//! every attempt failed → 502 naming the service and the last error; a
//! backend that sends no response head within the response timeout →
//! 504 naming the service, the backend and the timeout.
//! `X-Forwarded-For/-Proto/-Host` are set and hop-by-hop headers removed
//! both ways. Latency is measured to the backend's response head.

use super::State;
use super::upstream::{PooledBody, SendError};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// Attempts per request, the first included.
pub const MAX_ATTEMPTS: usize = 3;
/// How long a client has to send a request's head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What goes back to the client: the backend's body or the ingress's own.
pub type ResponseBody = Either<PooledBody, Full<Bytes>>;

/// TLS with the route certificates, ALPN h2 then http/1.1.
pub(crate) fn tls_acceptor(resolver: Arc<super::certs::SniResolver>) -> TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| unreachable!("ring supports the default protocol versions"))
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    TlsAcceptor::from(Arc::new(config))
}

/// Accepts and serves connections until `stop`, then lets the open ones
/// finish their requests (up to the shutdown grace).
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let scheme = if tls.is_some() { "https" } else { "http" };
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: do not spin.
                tracing::warn!(%error, "the ingress cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let handshake = state.timing.handshake_timeout;
        tokio::spawn(async move {
            let client = Arc::new(Client::new(peer, scheme));
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                let client = client.clone();
                async move { Ok::<_, Infallible>(handle(&state, request, &client).await) }
            });
            match tls {
                None => {
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(connection.into_owned()).await;
                }
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(error)) => {
                                tracing::debug!(%peer, %error, "TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        };
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(connection.into_owned()).await;
                }
            }
        });
    }
    drop(listener);
    let grace = state.timing.shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_s = grace.as_secs(),
            "ingress requests still in flight at shutdown were cut"
        );
    }
}

/// A plain-text answer of the ingress itself.
fn text(status: StatusCode, body: String) -> Response<ResponseBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Headers that describe one connection, not the request (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Whether `name` is hop-by-hop by itself (not counting those a
/// `Connection` header names).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name == header::UPGRADE
}

/// Removes hop-by-hop headers, those `Connection` names included, and
/// `Upgrade` (upgrades are not proxied).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages have none: one pass over the names, no lookups.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// Who is at the other end of a client connection, as the forwarded
/// headers say it; made once per connection.
#[derive(Debug, Clone)]
pub struct Client {
    /// The client's address (IPv4-mapped IPv6 shown as IPv4).
    pub ip: HeaderValue,
    /// `http` or `https`.
    pub scheme: &'static str,
}

impl Client {
    pub fn new(peer: SocketAddr, scheme: &'static str) -> Self {
        let ip = HeaderValue::try_from(peer.ip().to_canonical().to_string())
            .unwrap_or_else(|_| unreachable!("an IP address is a valid header value"));
        Self { ip, scheme }
    }
}

/// Sets `X-Forwarded-For` (appended), `-Proto` and `-Host`.
pub fn set_forwarded(headers: &mut HeaderMap, client: &Client, host: &HeaderValue) {
    const FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    const PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    const HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
    let appended = match headers.get(&FOR).and_then(|v| v.to_str().ok()) {
        Some(before) if !before.trim().is_empty() => {
            let ip = client.ip.to_str().unwrap_or_default();
            HeaderValue::try_from(format!("{before}, {ip}")).ok()
        }
        _ => None,
    };
    headers.insert(FOR, appended.unwrap_or_else(|| client.ip.clone()));
    headers.insert(PROTO, HeaderValue::from_static(client.scheme));
    headers.insert(HOST, host.clone());
}

/// Serves one request.
async fn handle(
    state: &State,
    request: Request<Incoming>,
    client: &Client,
) -> Response<ResponseBody> {
    let started = Instant::now();
    let active = state.active();
    let (mut parts, body) = request.into_parts();
    // HTTP/2 carries the host in :authority, HTTP/1.1 in Host.
    let host = match parts.uri.authority() {
        Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
        None => parts.headers.get(header::HOST).cloned(),
    }
    .unwrap_or_else(|| HeaderValue::from_static(""));
    let host_text = host.to_str().unwrap_or("");
    let path = parts.uri.path();
    let Some(route) = active.table.lookup(host_text, path) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("no route for host {host_text:?} and path {path:?}\n"),
        );
    };
    if !route.has_weight() {
        let mut response = text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}\n", route.explanation),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return response;
    }

    // Backends get origin-form (`/path?query`) over HTTP/1.1.
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        parts.uri = parts
            .uri
            .path_and_query()
            .cloned()
            .map_or_else(|| Uri::from_static("/"), Uri::from);
    }
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    set_forwarded(&mut parts.headers, client, &host);
    if !parts.headers.contains_key(header::HOST) {
        parts.headers.insert(header::HOST, host);
    }
    let mut request = Some(Request::from_parts(parts, body));

    let mut tried: [Option<SocketAddr>; MAX_ATTEMPTS] = [None; MAX_ATTEMPTS];
    let mut last: Option<(usize, String)> = None;
    for attempt in 0..MAX_ATTEMPTS {
        let Some(upstream) = request.take() else {
            break;
        };
        let Some(pick) = choose(state, route, &tried, started) else {
            break;
        };
        let address = pick.backend.address;
        tried[attempt] = Some(address);
        let slot = pick.group.slot;
        let timeout = state.timing.backend_response_timeout;
        let sent =
            tokio::time::timeout(timeout, state.upstreams().send(address, upstream, started));
        let Ok(sent) = sent.await else {
            // Not retried: the request may have reached the backend.
            active.stats[slot].record(started.elapsed(), true);
            tracing::warn!(service = %route.service, backend = %address, timeout_ms = timeout.as_millis(), "a backend did not answer in time");
            return text(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "service {}: backend {address} sent no response within {} ms\n",
                    route.service,
                    timeout.as_millis()
                ),
            );
        };
        match sent {
            Ok(mut response) => {
                state.connect_succeeded(address);
                let error = response.status().is_server_error();
                active.stats[slot].record(started.elapsed(), error);
                strip_hop_by_hop(response.headers_mut());
                return response.map(Either::Left);
            }
            Err((error, unsent)) => {
                if let SendError::Connect(_) = error {
                    state.connect_failed(address, &route.service);
                }
                tracing::debug!(service = %route.service, backend = %address, attempt, %error, "proxying failed");
                last = Some((slot, error.to_string()));
                // Only a request that never reached a backend may go to
                // another; `unsent` is `None` otherwise.
                request = unsent;
            }
        }
    }
    let (slot, error) =
        last.unwrap_or_else(|| (usize::MAX, "no backend can be reached".to_owned()));
    if let Some(stats) = active.stats.get(slot) {
        stats.record(started.elapsed(), true);
    }
    text(
        StatusCode::BAD_GATEWAY,
        format!("service {}: no backend answered: {error}\n", route.service),
    )
}

/// Picks a backend not tried yet, avoiding ejected ones; when no backend
/// with weight is left, a standby (a failover region's allocation); when
/// everything is ejected, one anyway rather than failing.
fn choose<'a>(
    state: &State,
    route: &'a super::routes::Route,
    tried: &[Option<SocketAddr>; MAX_ATTEMPTS],
    now: Instant,
) -> Option<super::routes::Pick<'a>> {
    let random = rand::random::<u64>();
    let fresh = |address: SocketAddr| !tried.contains(&Some(address));
    let ejections = state.ejections();
    let healthy =
        |b: &super::routes::Backend| fresh(b.address) && !ejections.is_ejected(b.address, now);
    route
        .pick(random, healthy)
        .or_else(|| route.pick_standby(random, healthy))
        .or_else(|| route.pick(random, |b| fresh(b.address)))
        .or_else(|| route.pick_standby(random, |b| fresh(b.address)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_and_named_ones_too() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret-Hop"),
        );
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key(header::ACCEPT));
    }

    #[test]
    fn each_hop_by_hop_header_alone_is_found() {
        for name in HOP_BY_HOP.iter().chain([&header::UPGRADE]) {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
            headers.insert(name.clone(), HeaderValue::from_static("x"));
            strip_hop_by_hop(&mut headers);
            assert_eq!(headers.len(), 1, "{name} stayed: {headers:?}");
        }
        let mut plain = HeaderMap::new();
        plain.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        plain.insert("x-keep", HeaderValue::from_static("1"));
        let before = plain.clone();
        strip_hop_by_hop(&mut plain);
        assert_eq!(plain, before);
    }

    #[test]
    fn forwarded_headers_append_the_client() {
        let host = HeaderValue::from_static("web.example.com");
        let mut headers = HeaderMap::new();
        let client = Client::new("10.1.2.3:5555".parse().unwrap(), "http");
        set_forwarded(&mut headers, &client, &host);
        assert_eq!(headers["x-forwarded-for"], "10.1.2.3");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-host"], "web.example.com");
        headers.insert("x-forwarded-proto", HeaderValue::from_static("spoofed"));
        let client = Client::new("[::ffff:10.9.9.9]:1".parse().unwrap(), "https");
        set_forwarded(&mut headers, &client, &host);
        assert_eq!(headers["x-forwarded-for"], "10.1.2.3, 10.9.9.9");
        assert_eq!(headers["x-forwarded-proto"], "https");
    }
}
