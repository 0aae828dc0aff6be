//! In-process tests of the agent's ingress: the real listeners on
//! 127.0.0.1:0 in front of real hyper backends that answer their own
//! name, driven by routing tables as the control plane sends them —
//! routing by host and path, weights, retries past a dead backend,
//! 503 with the route's explanation, draining across a table change,
//! HTTPS over HTTP/2 with per-hostname certificates (self-signed and from
//! a secret) and the per-revision traffic report.

use argosy_agent::ingress::{Ingress, IngressConfig, IngressTiming};
use argosy_agent::secrets::{SecretFiles, Secrets};
use argosy_proto::v1::{
    Route, RouteBackend, RouteTls, RoutingTable, SecretRef, SecretResponse, SecretValue, route_tls,
};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;

const PATIENCE: Duration = Duration::from_secs(15);

/// A backend on 127.0.0.1 answering `name`; `/sleep` answers after 1 s,
/// `/fail` answers 500, and it echoes what the ingress told it in
/// `x-echo-*` headers and the request body's length.
async fn backend(name: &'static str) -> SocketAddr {
    counted_backend(name).await.0
}

/// [`backend`], and how many connections it accepted.
async fn counted_backend(name: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request: Request<Incoming>| async move {
                        let path = request.uri().path().to_owned();
                        let header = |name: &str| {
                            request
                                .headers()
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_owned()
                        };
                        let echoes = [
                            ("x-echo-host", header("host")),
                            ("x-echo-for", header("x-forwarded-for")),
                            ("x-echo-proto", header("x-forwarded-proto")),
                            ("x-echo-forwarded-host", header("x-forwarded-host")),
                            ("x-echo-hop", header("x-hop")),
                        ];
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        if path == "/sleep" {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        let mut response = Response::new(Full::new(Bytes::from(name)));
                        if path == "/fail" {
                            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                        }
                        for (key, value) in echoes {
                            response.headers_mut().insert(key, value.parse().unwrap());
                        }
                        response
                            .headers_mut()
                            .insert("x-echo-length", body.len().into());
                        Ok::<_, Infallible>(response)
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (address, accepted)
}

/// A port nothing listens on.
async fn dead_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

fn to(
    allocation: &str,
    host: &str,
    revision: u64,
    address: SocketAddr,
    weight: u32,
) -> RouteBackend {
    RouteBackend {
        allocation: allocation.into(),
        host: host.into(),
        region: "eu".into(),
        revision,
        address: address.to_string(),
        weight,
        standby: false,
    }
}

fn route(service: &str, hosts: &[&str], paths: &[&str], backends: Vec<RouteBackend>) -> Route {
    Route {
        service: service.into(),
        hostnames: hosts.iter().map(|h| (*h).into()).collect(),
        paths: paths.iter().map(|p| (*p).into()).collect(),
        tls: None,
        backends,
        explanation: format!("{service} has no backend with weight"),
    }
}

fn table(version: u64, routes: Vec<Route>) -> RoutingTable {
    RoutingTable {
        version,
        routes,
        ..RoutingTable::default()
    }
}

/// Version 1: `web.example.com` to one local backend at `address`.
fn web_to(address: SocketAddr) -> RoutingTable {
    table(
        1,
        vec![route(
            "web",
            &["web.example.com"],
            &["/"],
            vec![to("a", "here", 1, address, 1)],
        )],
    )
}

async fn start(https: bool) -> Ingress {
    let https = https.then(|| "127.0.0.1:0".parse().unwrap());
    Ingress::start(IngressConfig::new(
        Some("127.0.0.1:0".parse().unwrap()),
        https,
        "here",
    ))
    .await
    .unwrap()
}

/// An HTTP/1.1 client to the ingress.
struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    ingress: SocketAddr,
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

impl Http {
    fn new(ingress: &Ingress) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            ingress: ingress.http_address().unwrap(),
        }
    }

    async fn send(&self, method: &str, host: &str, path: &str, body: &'static [u8]) -> Answer {
        self.send_bytes(method, host, path, Bytes::from_static(body))
            .await
    }

    async fn send_bytes(&self, method: &str, host: &str, path: &str, body: Bytes) -> Answer {
        let request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.ingress))
            .header("host", host)
            .header("connection", "x-hop")
            .header("x-hop", "must not pass")
            .body(Full::new(body))
            .unwrap();
        let response = tokio::time::timeout(PATIENCE, self.client.request(request))
            .await
            .expect("the ingress did not answer")
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }

    async fn get(&self, host: &str, path: &str) -> Answer {
        self.send("GET", host, path, b"").await
    }
}

#[tokio::test]
async fn requests_go_by_host_and_path_with_forwarded_headers() {
    let ingress = start(false).await;
    let http = Http::new(&ingress);
    // Before any table: nothing is routed.
    let answer = http.get("web.example.com", "/").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);

    let (web, api, wild) = (
        backend("web").await,
        backend("api").await,
        backend("wild").await,
    );
    assert!(ingress.apply(table(
        1,
        vec![
            route(
                "web",
                &["web.example.com"],
                &["/"],
                vec![to("w1", "h1", 1, web, 1_000_000)]
            ),
            route(
                "api",
                &["web.example.com"],
                &["/api"],
                vec![to("a1", "h1", 1, api, 1_000_000)]
            ),
            route(
                "wild",
                &["*.example.com"],
                &["/"],
                vec![to("x1", "h1", 1, wild, 1_000_000)]
            ),
        ],
    )));
    assert_eq!(ingress.applied_version(), Some(1));
    for (host, path, expected) in [
        ("web.example.com", "/", "web"),
        ("WEB.example.com:7480", "/apix", "web"),
        ("web.example.com", "/api", "api"),
        ("web.example.com", "/api/users?id=1", "api"),
        ("shop.example.com", "/api", "wild"),
    ] {
        let answer = http.get(host, path).await;
        assert_eq!(answer.status, StatusCode::OK, "{host}{path}");
        assert_eq!(answer.body, expected, "{host}{path}");
    }
    let answer = http.get("web.example.com", "/").await;
    assert_eq!(answer.headers["x-echo-host"], "web.example.com");
    assert_eq!(answer.headers["x-echo-for"], "127.0.0.1");
    assert_eq!(answer.headers["x-echo-proto"], "http");
    assert_eq!(answer.headers["x-echo-forwarded-host"], "web.example.com");
    assert_eq!(
        answer.headers["x-echo-hop"], "",
        "hop-by-hop headers are stripped"
    );

    let answer = http.get("nope.test", "/x").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(
        answer.body,
        "no route for host \"nope.test\" and path \"/x\"\n"
    );

    // An older or equal table is ignored.
    assert!(!ingress.apply(table(1, vec![])));
    assert_eq!(http.get("web.example.com", "/").await.body, "web");
}

#[tokio::test]
async fn weights_split_requests_and_traffic_is_counted_per_revision() {
    let ingress = start(false).await;
    let http = Http::new(&ingress);
    let (v1, v2) = (backend("v1").await, backend("v2").await);
    ingress.apply(table(
        3,
        vec![route(
            "web",
            &["web.example.com"],
            &["/"],
            vec![
                to("a1", "h1", 1, v1, 900_000),
                to("a2", "h2", 2, v2, 100_000),
            ],
        )],
    ));
    let n = 2_000;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..n {
        let answer = http.get("web.example.com", "/").await;
        assert_eq!(answer.status, StatusCode::OK);
        *counts.entry(answer.body).or_default() += 1;
    }
    // 10% ± 3 points.
    let canary = counts.get("v2").copied().unwrap_or(0);
    assert!((140..=260).contains(&canary), "{counts:?}");
    assert_eq!(counts["v1"] + canary, n);
    // Errors: the backend's 5xx.
    for _ in 0..5 {
        http.get("web.example.com", "/fail").await;
    }

    let report = ingress.traffic().unwrap();
    let by_revision: BTreeMap<u64, _> = report
        .revisions
        .iter()
        .map(|r| (r.revision, r.clone()))
        .collect();
    assert_eq!(by_revision.len(), 2, "{report:?}");
    assert_eq!(by_revision[&1].service, "web");
    assert_eq!(by_revision[&1].requests + by_revision[&2].requests, n + 5);
    assert_eq!(by_revision[&2].requests, canary + by_revision[&2].errors);
    assert_eq!(by_revision[&1].errors + by_revision[&2].errors, 5);
    for revision in by_revision.values() {
        assert!(
            revision.p50_micros > 0 && revision.p50_micros <= revision.p99_micros,
            "{revision:?}"
        );
    }
    // The window was drained: nothing new, nothing to say.
    assert_eq!(ingress.traffic(), None);
}

#[tokio::test]
async fn a_dead_backend_costs_no_failed_request() {
    let ingress = start(false).await;
    let http = Http::new(&ingress);
    let (live, dead) = (backend("live").await, dead_address().await);
    ingress.apply(table(
        1,
        vec![route(
            "web",
            &["web.example.com"],
            &["/"],
            vec![
                to("dead", "h1", 1, dead, 500_000),
                to("live", "h2", 1, live, 500_000),
            ],
        )],
    ));
    for i in 0..200 {
        let answer = if i % 4 == 0 {
            // A request with a body is retried too.
            http.send("POST", "web.example.com", "/submit", b"hello")
                .await
        } else {
            http.get("web.example.com", "/").await
        };
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "request {i}: {}",
            answer.body
        );
        assert_eq!(answer.body, "live");
        if i % 4 == 0 {
            assert_eq!(answer.headers["x-echo-length"], "5");
        }
    }
    let report = ingress.traffic().unwrap();
    assert_eq!(report.revisions.len(), 1);
    assert_eq!(
        (report.revisions[0].requests, report.revisions[0].errors),
        (200, 0)
    );

    // With only dead backends: 502 naming the service and the error.
    ingress.apply(table(
        2,
        vec![route(
            "web",
            &["web.example.com"],
            &["/"],
            vec![to("dead", "h1", 1, dead, 1)],
        )],
    ));
    let answer = http.get("web.example.com", "/").await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert!(
        answer
            .body
            .starts_with("service web: no backend answered: "),
        "{}",
        answer.body
    );
    assert!(
        answer.body.to_lowercase().contains("connect"),
        "{}",
        answer.body
    );
    let report = ingress.traffic().unwrap();
    assert_eq!(
        (report.revisions[0].requests, report.revisions[0].errors),
        (1, 1)
    );
}

#[tokio::test]
async fn a_large_body_goes_to_another_backend_when_the_first_refuses() {
    let ingress = start(false).await;
    let http = Http::new(&ingress);
    let live = backend("live").await;
    // Two megabytes: nothing is buffered, the request is handed back
    // unsent when a connect fails.
    let body = Bytes::from(vec![b'x'; 2 << 20]);
    for version in 1..=3 {
        // A new dead backend each time (the last one is ejected), with
        // nearly all the weight, so the first attempt goes to it.
        let dead = dead_address().await;
        ingress.apply(table(
            version,
            vec![route(
                "web",
                &["web.example.com"],
                &["/"],
                vec![
                    to("dead", "h1", 1, dead, 999_999),
                    to("live", "h2", 1, live, 1),
                ],
            )],
        ));
        let answer = http
            .send_bytes("PUT", "web.example.com", "/upload", body.clone())
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert_eq!(answer.body, "live");
        assert_eq!(answer.headers["x-echo-length"], (2 << 20).to_string());
    }
}

#[tokio::test]
async fn backend_connections_are_reused() {
    let ingress = start(false).await;
    let http = Http::new(&ingress);
    let (address, accepted) = counted_backend("web").await;
    ingress.apply(web_to(address));
    for i in 0..50 {
        let answer = if i % 2 == 0 {
            http.get("web.example.com", "/").await
        } else {
            http.send("POST", "web.example.com", "/form", b"a=1").await
        };
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (StatusCode::OK, "web")
        );
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "50 requests one after another need one backend connection"
    );
}

/// A backend that answers one request per connection without saying so
/// (`Connection: close` is not sent) and then closes it, as a backend
/// with a short keep-alive timeout does; counts its connections.
/// Reads a request's head (a raw backend's); `false` when the connection
/// ended first.
async fn read_head(stream: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt as _;
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
    }
    true
}

async fn closing_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::AsyncWriteExt as _;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if !read_head(&mut stream).await {
                    return;
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nonce")
                    .await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (address, accepted)
}

#[tokio::test]
async fn a_backend_closing_idle_connections_costs_no_failed_request() {
    let ingress = start(false).await;
    let http = Http::new(&ingress);
    let (address, accepted) = closing_backend().await;
    ingress.apply(web_to(address));
    for i in 0..10 {
        let answer = http.get("web.example.com", "/").await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (StatusCode::OK, "once"),
            "request {i}"
        );
        // The backend closes the idle connection meanwhile.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 10);
}

/// A raw-TCP backend that answers one keep-alive request per connection,
/// shuts its side down after `close_after` (`None`: never), and reports
/// when the ingress closed its side (the backend reads end of stream).
async fn watched_backend(
    close_after: Option<Duration>,
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<()>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (closed, closings) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let closed = closed.clone();
            tokio::spawn(async move {
                if !read_head(&mut stream).await {
                    return;
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nkept")
                    .await;
                if let Some(after) = close_after {
                    tokio::time::sleep(after).await;
                    let _ = stream.shutdown().await;
                }
                // The ingress sends nothing more on an idle connection:
                // the next read ends when it closes its side.
                if let Ok(0) = stream.read(&mut [0u8; 64]).await {
                    let _ = closed.send(());
                }
            });
        }
    });
    (address, closings)
}

async fn start_with(timing: IngressTiming) -> Ingress {
    let mut config = IngressConfig::new(Some("127.0.0.1:0".parse().unwrap()), None, "here");
    config.timing = timing;
    Ingress::start(config).await.unwrap()
}

#[tokio::test]
async fn a_backend_connection_idle_too_long_is_closed() {
    let ingress = start_with(IngressTiming {
        backend_idle_timeout: Duration::from_millis(300),
        backend_sweep_every: Duration::from_millis(100),
        ..IngressTiming::default()
    })
    .await;
    let http = Http::new(&ingress);
    let (address, mut closings) = watched_backend(None).await;
    ingress.apply(web_to(address));
    let answer = http.get("web.example.com", "/").await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "kept")
    );
    tokio::time::timeout(PATIENCE, closings.recv())
        .await
        .expect("the idle backend connection was never closed")
        .unwrap();
}

#[tokio::test]
async fn a_backend_connection_the_backend_closed_while_idle_is_let_go() {
    // Idle connections are kept long but looked at often; the connection
    // notices the close itself, so this guards against a pool that would
    // keep a dead connection and hand it to the next request.
    let ingress = start_with(IngressTiming {
        backend_sweep_every: Duration::from_millis(100),
        ..IngressTiming::default()
    })
    .await;
    let http = Http::new(&ingress);
    let (address, mut closings) = watched_backend(Some(Duration::from_millis(50))).await;
    ingress.apply(web_to(address));
    let answer = http.get("web.example.com", "/").await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "kept")
    );
    tokio::time::timeout(PATIENCE, closings.recv())
        .await
        .expect("the ingress kept its half of a connection the backend had closed")
        .unwrap();
    // And the next request gets a new connection, not the dead one.
    let answer = http.get("web.example.com", "/").await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "kept")
    );
}

#[tokio::test]
async fn a_backend_that_never_answers_gets_504_and_counts_as_an_error() {
    let ingress = start_with(IngressTiming {
        backend_response_timeout: Duration::from_millis(300),
        ..IngressTiming::default()
    })
    .await;
    let http = Http::new(&ingress);
    // Accepts connections and reads requests, never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    ingress.apply(web_to(silent));
    let answer = http.get("web.example.com", "/").await;
    assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        answer.body,
        format!("service web: backend {silent} sent no response within 300 ms\n")
    );
    let report = ingress.traffic().unwrap();
    assert_eq!(
        (report.revisions[0].requests, report.revisions[0].errors),
        (1, 1)
    );
}

#[tokio::test]
async fn a_route_without_weight_answers_503_with_its_explanation() {
    let ingress = start(false).await;
    let http = Http::new(&ingress);
    let web = backend("web").await;
    let mut draining = route(
        "web",
        &["web.example.com"],
        &["/"],
        vec![to("a1", "h1", 1, web, 0)],
    );
    draining.explanation = "revision 1 is draining and revision 2 is not healthy yet".into();
    let mut empty = route("empty", &["empty.example.com"], &["/"], vec![]);
    empty.explanation = "service empty has no healthy allocation in region eu".into();
    ingress.apply(table(1, vec![draining, empty]));
    let answer = http.get("web.example.com", "/").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        answer.body,
        "revision 1 is draining and revision 2 is not healthy yet\n"
    );
    assert_eq!(answer.headers["retry-after"], "5");
    let answer = http.get("empty.example.com", "/").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        answer.body,
        "service empty has no healthy allocation in region eu\n"
    );
}

#[tokio::test]
async fn a_request_in_flight_finishes_on_the_backend_a_new_table_removed() {
    let ingress = start(false).await;
    let http = Arc::new(Http::new(&ingress));
    let (old, new) = (backend("old").await, backend("new").await);
    ingress.apply(table(
        1,
        vec![route(
            "web",
            &["web.example.com"],
            &["/"],
            vec![to("a1", "h1", 1, old, 1_000_000)],
        )],
    ));
    let slow = tokio::spawn({
        let http = http.clone();
        async move { http.get("web.example.com", "/sleep").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    ingress.apply(table(
        2,
        vec![route(
            "web",
            &["web.example.com"],
            &["/"],
            vec![to("a2", "h1", 2, new, 1_000_000)],
        )],
    ));
    assert_eq!(http.get("web.example.com", "/").await.body, "new");
    let answer = slow.await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "old");
    // Both revisions are reported: the old one's request finished after
    // its table was replaced.
    let report = ingress.traffic().unwrap();
    let revisions: Vec<(u64, u64)> = report
        .revisions
        .iter()
        .map(|r| (r.revision, r.requests))
        .collect();
    assert_eq!(revisions, [(1, 1), (2, 1)]);
}

/// Accepts any server certificate (the test checks which one it got).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// An HTTPS request over HTTP/2 with SNI `server_name`: the negotiated
/// ALPN, the server's certificate (DER) and the answer.
async fn https_get(
    ingress: SocketAddr,
    server_name: &str,
    path: &str,
) -> (Vec<u8>, Vec<u8>, String) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(ingress).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from(server_name.to_owned()).unwrap(), tcp)
        .await
        .unwrap();
    let (_, session) = tls.get_ref();
    let alpn = session.alpn_protocol().unwrap_or_default().to_vec();
    let leaf = session.peer_certificates().unwrap()[0].clone();
    let leaf = leaf.to_vec();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::builder()
        .uri(format!("https://{server_name}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = tokio::time::timeout(PATIENCE, sender.send_request(request))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    let proto = response.headers()["x-echo-proto"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(proto, "https");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (alpn, leaf, String::from_utf8(body.to_vec()).unwrap())
}

/// Whether a DER certificate names `dns` (a DNS name in the SAN is its
/// ASCII bytes).
fn names(der: &[u8], dns: &str) -> bool {
    der.windows(dns.len()).any(|w| w == dns.as_bytes())
}

#[tokio::test]
async fn https_serves_http2_with_the_certificate_of_each_hostname() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = Secrets::new(SecretFiles::unchecked(dir.path()), Duration::from_secs(10));
    let mut config = IngressConfig::new(
        Some("127.0.0.1:0".parse().unwrap()),
        Some("127.0.0.1:0".parse().unwrap()),
        "here",
    );
    config.secrets = Some(secrets.clone());
    let ingress = Ingress::start(config).await.unwrap();
    let https = ingress.https_address().unwrap();
    let (a, b, c) = (backend("a").await, backend("b").await, backend("c").await);
    let self_signed = || {
        Some(RouteTls {
            source: Some(route_tls::Source::SelfSigned(true)),
        })
    };
    let mut route_a = route(
        "a",
        &["a.example.com"],
        &["/"],
        vec![to("a1", "h", 1, a, 1)],
    );
    route_a.tls = self_signed();
    let mut route_b = route(
        "b",
        &["*.example.org"],
        &["/"],
        vec![to("b1", "h", 1, b, 1)],
    );
    route_b.tls = self_signed();
    let certificate = SecretRef {
        name: "certs/c".into(),
        version: 2,
    };
    let mut route_c = route(
        "c",
        &["c.example.net"],
        &["/"],
        vec![to("c1", "h", 1, c, 1)],
    );
    route_c.tls = Some(RouteTls {
        source: Some(route_tls::Source::Certificate(certificate.clone())),
    });
    ingress.apply(table(1, vec![route_a, route_b, route_c]));

    let (alpn, cert_a, body) = https_get(https, "a.example.com", "/").await;
    assert_eq!(alpn, b"h2");
    assert!(names(&cert_a, "a.example.com"));
    assert_eq!(body, "a");
    let (alpn, cert_b, body) = https_get(https, "www.example.org", "/").await;
    assert_eq!(alpn, b"h2");
    assert!(names(&cert_b, "*.example.org") && !names(&cert_b, "a.example.com"));
    assert_eq!(body, "b");
    // The same certificate again (made once per table, not per handshake).
    assert_eq!(https_get(https, "a.example.com", "/").await.1, cert_a);

    // The secret's certificate is asked for like an allocation's secret
    // (the session would send this SecretRequest), then served.
    tokio::time::timeout(PATIENCE, async {
        while secrets.outstanding().is_empty() {
            secrets.asked().await;
        }
    })
    .await
    .expect("the ingress did not ask for its certificate");
    assert_eq!(secrets.outstanding(), std::slice::from_ref(&certificate));
    let made = rcgen::generate_simple_self_signed(vec!["c.example.net".to_owned()]).unwrap();
    secrets.deliver(SecretResponse {
        values: vec![SecretValue {
            secret: Some(certificate),
            value: format!("{}{}", made.cert.pem(), made.signing_key.serialize_pem()).into_bytes(),
        }],
        denied: vec![],
    });
    let served = tokio::time::timeout(PATIENCE, async {
        loop {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .unwrap()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            let tcp = tokio::net::TcpStream::connect(https).await.unwrap();
            let connected = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(ServerName::try_from("c.example.net").unwrap(), tcp)
                .await;
            if connected.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(served.is_ok(), "the secret's certificate was never served");
    let (alpn, cert_c, body) = https_get(https, "c.example.net", "/").await;
    assert_eq!((alpn.as_slice(), body.as_str()), (&b"h2"[..], "c"));
    assert_eq!(cert_c, made.cert.der().to_vec());
    ingress.shutdown().await;
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish() {
    let ingress = start(false).await;
    let http = Arc::new(Http::new(&ingress));
    let slow = backend("slow").await;
    ingress.apply(table(
        1,
        vec![route(
            "web",
            &["web.example.com"],
            &["/"],
            vec![to("a1", "h1", 1, slow, 1)],
        )],
    ));
    let request = tokio::spawn({
        let http = http.clone();
        async move { http.get("web.example.com", "/sleep").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::time::timeout(PATIENCE, ingress.shutdown())
        .await
        .expect("shutdown did not finish");
    let answer = request.await.unwrap();
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "slow")
    );
    // New connections are refused.
    assert!(
        tokio::net::TcpStream::connect(ingress.http_address().unwrap())
            .await
            .is_err()
    );
}
