//! In-process tests of the agent against a tiny `AgentService` on
//! 127.0.0.1:0 over real TLS: a CA and server certificate made with rcgen
//! (chain leaf + CA, name `control-plane.argosy.internal`), a server that
//! signs the agent's CSRs, and a test script that plays the control plane's
//! side of the `Session` stream message by message.

use argosy_agent::agent::{AgentError, Options};
use argosy_agent::config::{Config, LogFormat};
use argosy_agent::state::StateDir;
use argosy_proto::join::{CaFingerprint, JoinString};
use argosy_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use argosy_proto::v1::{
    Ack, AgentMessage, ControlMessage, Disconnect, EnrollRequest, EnrollResponse, Inventory,
    RenewCertificateRequest, RenewCertificateResponse, Welcome, agent_message, control_message,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

const TOKEN: &str = "tok1.s3cret";
const PATIENCE: Duration = Duration::from_secs(15);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A CA that signs the server's certificate and the agents' CSRs.
struct Pki {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
    ca_fingerprint: CaFingerprint,
    server_chain_pem: String,
    server_key_pem: String,
}

impl Pki {
    fn new() -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Argosy test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().unwrap();
        let mut server_params =
            CertificateParams::new(vec!["control-plane.argosy.internal".to_owned()]).unwrap();
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
        Self {
            issuer,
            ca_pem: ca_cert.pem(),
            ca_fingerprint: CaFingerprint::of_der(ca_cert.der()),
            server_chain_pem: format!("{}{}", server_cert.pem(), ca_cert.pem()),
            server_key_pem: server_key.serialize_pem(),
        }
    }

    /// Signs a CSR as a client certificate valid for `ttl`.
    fn sign(&self, csr_pem: &str, host_id: &str, ttl: Duration) -> Result<(String, i64), Status> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| Status::invalid_argument(format!("bad CSR: {e}")))?;
        let now = time::OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, host_id);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = now - time::Duration::seconds(1);
        params.not_after = now + ttl;
        csr.params = params;
        let cert = csr.signed_by(&self.issuer).unwrap();
        Ok((cert.pem(), now_ms() + ttl.as_millis() as i64))
    }
}

/// The control plane's half of one `Session` stream, driven by the test.
struct SessionHandle {
    inbound: mpsc::UnboundedReceiver<AgentMessage>,
    outbound: mpsc::UnboundedSender<Result<ControlMessage, Status>>,
    peer_cert: Vec<u8>,
}

impl SessionHandle {
    async fn recv(&mut self) -> AgentMessage {
        tokio::time::timeout(PATIENCE, self.inbound.recv())
            .await
            .expect("the agent sent nothing")
            .expect("the agent closed the stream")
    }

    /// The next message, which must be a metric batch: (seq, timestamps).
    async fn recv_batch(&mut self) -> (u64, Vec<i64>) {
        let mut message = self.recv().await;
        // Allocation reports (this stub runs no workloads) come in between.
        while let Some(agent_message::Body::Allocations(_)) = message.body {
            message = self.recv().await;
        }
        match message.body {
            Some(agent_message::Body::Metrics(batch)) => (
                message.seq,
                batch.samples.iter().map(|s| s.timestamp_ms).collect(),
            ),
            other => panic!("expected a metric batch, got {other:?}"),
        }
    }

    fn send(&self, body: control_message::Body) {
        self.outbound
            .send(Ok(ControlMessage { body: Some(body) }))
            .unwrap();
    }

    fn welcome(&self, host_id: &str) {
        self.send(control_message::Body::Welcome(Welcome {
            host_id: host_id.to_owned(),
            server_time_ms: now_ms(),
        }));
    }

    fn ack(&self, seq: u64) {
        self.send(control_message::Body::Ack(Ack { seq }));
    }
}

/// What the test server saw of renewals: (certificate presented, certificate issued).
type Renewal = (Vec<u8>, String);

#[derive(Clone)]
struct TestControlPlane {
    pki: Arc<Pki>,
    ttl: Duration,
    enrollments: Arc<AtomicU32>,
    sessions: mpsc::UnboundedSender<SessionHandle>,
    renewals: mpsc::UnboundedSender<Renewal>,
}

fn peer_cert<T>(request: &Request<T>) -> Option<Vec<u8>> {
    request
        .peer_certs()
        .and_then(|certs| certs.first().map(|c| c.to_vec()))
}

#[tonic::async_trait]
impl AgentService for TestControlPlane {
    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        assert!(
            peer_cert(&request).is_none(),
            "enrollment must not present a client certificate"
        );
        let request = request.into_inner();
        if request.join_token != TOKEN {
            return Err(Status::permission_denied(
                "join token tok9 expired at 2026-01-01T00:00:00Z; create a new one",
            ));
        }
        let inventory = request.inventory.unwrap_or_default();
        assert!(
            !inventory.hostname.is_empty(),
            "enrollment carries the inventory"
        );
        let n = self.enrollments.fetch_add(1, Ordering::SeqCst) + 1;
        let host_id = format!("host-{n}");
        let (certificate_pem, not_after_ms) =
            self.pki.sign(&request.csr_pem, &host_id, self.ttl)?;
        Ok(Response::new(EnrollResponse {
            host_id,
            certificate_pem,
            ca_certificate_pem: self.pki.ca_pem.clone(),
            not_after_ms,
            region: "eu-west".into(),
            labels: HashMap::from([("role".to_owned(), "db".to_owned())]),
        }))
    }

    async fn renew_certificate(
        &self,
        request: Request<RenewCertificateRequest>,
    ) -> Result<Response<RenewCertificateResponse>, Status> {
        let presented = peer_cert(&request)
            .ok_or_else(|| Status::unauthenticated("renewal needs the client certificate"))?;
        let (certificate_pem, not_after_ms) =
            self.pki
                .sign(&request.into_inner().csr_pem, "host-1", self.ttl)?;
        let _ = self.renewals.send((presented, certificate_pem.clone()));
        Ok(Response::new(RenewCertificateResponse {
            certificate_pem,
            not_after_ms,
        }))
    }

    type SessionStream = UnboundedReceiverStream<Result<ControlMessage, Status>>;

    async fn session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let peer_cert = peer_cert(&request)
            .ok_or_else(|| Status::unauthenticated("a session needs the client certificate"))?;
        let mut stream = request.into_inner();
        let (inbound_tx, inbound) = mpsc::unbounded_channel();
        let (outbound, outbound_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                if inbound_tx.send(message).is_err() {
                    break;
                }
            }
        });
        let _ = self.sessions.send(SessionHandle {
            inbound,
            outbound,
            peer_cert,
        });
        Ok(Response::new(UnboundedReceiverStream::new(outbound_rx)))
    }
}

struct Harness {
    address: String,
    pki: Arc<Pki>,
    sessions: mpsc::UnboundedReceiver<SessionHandle>,
    renewals: mpsc::UnboundedReceiver<Renewal>,
    state: tempfile::TempDir,
}

impl Harness {
    async fn start(ttl: Duration) -> Self {
        let pki = Arc::new(Pki::new());
        let (sessions_tx, sessions) = mpsc::unbounded_channel();
        let (renewals_tx, renewals) = mpsc::unbounded_channel();
        let service = TestControlPlane {
            pki: pki.clone(),
            ttl,
            enrollments: Arc::new(AtomicU32::new(0)),
            sessions: sessions_tx,
            renewals: renewals_tx,
        };
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(
                &pki.server_chain_pem,
                &pki.server_key_pem,
            ))
            .client_ca_root(Certificate::from_pem(&pki.ca_pem))
            .client_auth_optional(true);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(
            Server::builder()
                .tls_config(tls)
                .unwrap()
                .add_service(AgentServiceServer::new(service))
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        Self {
            address,
            pki,
            sessions,
            renewals,
            state: tempfile::tempdir().unwrap(),
        }
    }

    fn join(&self, token: &str, fingerprint: CaFingerprint) -> JoinString {
        format!("argosy://{}/?token={token}&ca={fingerprint}", self.address)
            .parse()
            .unwrap()
    }

    fn config(&self, join: Option<JoinString>) -> Config {
        Config {
            join,
            state_dir: self.state.path().join("state"),
            secrets_dir: self.state.path().join("secrets"),
            interval: Duration::from_millis(200),
            metrics_listen: None,
            ingress_http: None,
            ingress_https: None,
            advertise_address: None,
            log_format: LogFormat::Text,
            log_level: "info".into(),
        }
    }

    fn state_path(&self) -> std::path::PathBuf {
        self.state.path().join("state")
    }

    async fn next_session(&mut self) -> SessionHandle {
        tokio::time::timeout(PATIENCE, self.sessions.recv())
            .await
            .expect("the agent did not open a session")
            .unwrap()
    }
}

fn options() -> Options {
    let mut options = Options::new(Duration::from_millis(200));
    options.session.reconnect_base = Duration::from_millis(50);
    options.session.reconnect_cap = Duration::from_millis(200);
    options.session.welcome_timeout = Duration::from_secs(5);
    options.session.docker_timeout = Duration::from_millis(200);
    options.renew.check_every = Duration::from_millis(200);
    options.renew.retry_base = Duration::from_millis(50);
    options.renew.retry_cap = Duration::from_millis(200);
    options.enroll_timeout = Duration::from_secs(10);
    options
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn der_of(pem: &str) -> Vec<u8> {
    argosy_proto::tls::certificates_from_pem(pem.as_bytes(), "test")
        .unwrap()
        .remove(0)
        .to_vec()
}

/// Runs the agent next to `script`; fails if the agent stops first.
async fn with_agent(config: Config, options: Options, script: impl Future<Output = ()>) {
    let agent = pin!(argosy_agent::run(&config, options, std::future::pending()));
    tokio::select! {
        result = agent => panic!("the agent stopped: {:?}", result.map_err(|e| e.to_string())),
        () = script => {}
    }
}

#[tokio::test]
async fn a_wrong_ca_fingerprint_fails_with_the_pin_message() {
    let harness = Harness::start(Duration::from_secs(60)).await;
    let wrong = CaFingerprint([7; 32]);
    let config = harness.config(Some(harness.join(TOKEN, wrong)));
    let error = argosy_agent::run(&config, options(), std::future::pending())
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, AgentError::Enroll(_)), "{text}");
    assert!(
        text.contains("does not match the pinned fingerprint"),
        "the pin failure must reach the user: {text}"
    );
    assert!(text.contains(&harness.address), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    assert!(!StateDir::open(harness.state_path()).unwrap().has_identity());
}

#[tokio::test]
async fn a_refused_token_shows_the_servers_message() {
    let harness = Harness::start(Duration::from_secs(60)).await;
    let config = harness.config(Some(harness.join("tok9.wrong", harness.pki.ca_fingerprint)));
    let error = argosy_agent::run(&config, options(), std::future::pending())
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "enrollment failed: the control plane refused to enroll this host: \
         join token tok9 expired at 2026-01-01T00:00:00Z; create a new one"
    );
    assert!(!StateDir::open(harness.state_path()).unwrap().has_identity());
}

#[tokio::test]
async fn without_identity_or_join_string_it_says_how_to_enroll() {
    let harness = Harness::start(Duration::from_secs(60)).await;
    let error = argosy_agent::run(&harness.config(None), options(), std::future::pending())
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "this host is not enrolled: pass --join (from `argosy join-token create`)"
    );
}

#[tokio::test]
async fn an_expired_certificate_asks_to_enroll_again() {
    let harness = Harness::start(Duration::from_secs(60)).await;
    let config = harness.config(Some(harness.join(TOKEN, harness.pki.ca_fingerprint)));
    let state = StateDir::open(harness.state_path()).unwrap();
    let stored = argosy_agent::agent::load_or_enroll(&state, config.join.as_ref(), &options())
        .await
        .unwrap();
    // Two hours later, the certificate has expired.
    let mut later = options();
    let not_after = stored.identity.not_after_ms;
    later.clock = Arc::new(move || not_after + 7_200_000);
    let error = argosy_agent::run(&config, later, std::future::pending())
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(error, AgentError::CertificateExpired { .. }),
        "{text}"
    );
    assert!(text.contains("delete the state directory"), "{text}");
}

#[tokio::test]
async fn enrolls_streams_and_resends_what_was_not_acknowledged() {
    let mut harness = Harness::start(Duration::from_secs(3600)).await;
    let config = harness.config(Some(harness.join(TOKEN, harness.pki.ca_fingerprint)));
    let state_path = harness.state_path();
    let script = async {
        // Enrollment wrote the state with private modes.
        let mut s1 = harness.next_session().await;
        let stored = StateDir::open(&state_path)
            .unwrap()
            .load()
            .unwrap()
            .unwrap();
        assert_eq!(stored.identity.host_id, "host-1");
        assert_eq!(stored.identity.region, "eu-west");
        assert_eq!(stored.identity.address, harness.address);
        assert_eq!(
            stored.identity.ca_fingerprint,
            harness.pki.ca_fingerprint.to_string()
        );
        assert!(stored.identity.issued_at_ms <= now_ms());
        assert_eq!(mode(&state_path), 0o700);
        assert_eq!(mode(&state_path.join("key.pem")), 0o600);
        assert_eq!(mode(&state_path.join("cert.pem")), 0o600);
        // The session uses the enrolled client certificate.
        assert_eq!(s1.peer_cert, der_of(&stored.cert_pem));

        // Hello first, with the inventory and the control plane's region.
        let hello = s1.recv().await;
        let Some(agent_message::Body::Hello(body)) = hello.body else {
            panic!("expected Hello first, got {hello:?}");
        };
        let inventory: Inventory = body.inventory.unwrap();
        assert!(!inventory.hostname.is_empty());
        assert_eq!(inventory.region, "eu-west");
        assert_eq!(inventory.labels.get("role").map(String::as_str), Some("db"));
        assert_eq!(body.interval_seconds, 1);
        // Nothing else comes before Welcome.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            s1.inbound.try_recv().is_err(),
            "the agent must wait for Welcome"
        );
        s1.welcome("host-1");

        // Samples flow; acknowledge only the first batch.
        let (seq1, acked) = s1.recv_batch().await;
        assert!(seq1 > hello.seq);
        assert!(!acked.is_empty());
        s1.ack(seq1);
        let mut unacked = Vec::new();
        let mut last_seq = seq1;
        while unacked.len() < 3 {
            let (seq, stamps) = s1.recv_batch().await;
            assert!(seq > last_seq, "seqs grow: {seq} after {last_seq}");
            last_seq = seq;
            unacked.extend(stamps);
        }
        // The control plane "restarts": the stream breaks.
        s1.outbound
            .send(Err(Status::unavailable("control plane restarting")))
            .unwrap();
        drop(s1);

        // The next session resends exactly the unacknowledged samples first,
        // oldest first, with fresh sequence numbers.
        let mut s2 = harness.next_session().await;
        let hello2 = s2.recv().await;
        assert!(matches!(hello2.body, Some(agent_message::Body::Hello(_))));
        assert!(
            hello2.seq > last_seq,
            "Hello gets a new number: {} <= {last_seq}",
            hello2.seq
        );
        s2.welcome("host-1");
        let mut resent = Vec::new();
        let mut seq_prev = hello2.seq;
        while resent.len() < unacked.len() + 2 {
            let (seq, stamps) = s2.recv_batch().await;
            assert!(seq > seq_prev);
            seq_prev = seq;
            s2.ack(seq);
            resent.extend(stamps);
        }
        assert_eq!(&resent[..unacked.len()], &unacked[..], "resent in order");
        for stamp in &acked {
            assert!(
                !resent.contains(stamp),
                "acknowledged sample {stamp} was resent"
            );
        }
        assert!(
            resent.windows(2).all(|w| w[0] < w[1]),
            "no duplicates, in time order: {resent:?}"
        );

        // Disconnect: the agent logs it and comes back.
        s2.send(control_message::Body::Disconnect(Disconnect {
            reason: "draining".into(),
        }));
        let mut s3 = harness.next_session().await;
        assert!(matches!(
            s3.recv().await.body,
            Some(agent_message::Body::Hello(_))
        ));
        s3.welcome("host-1");
        let (_, stamps) = s3.recv_batch().await;
        // What s2 acknowledged before the disconnect never comes again;
        // only what was still in flight may.
        for stamp in &stamps {
            assert!(
                !acked.contains(stamp) && !resent.contains(stamp),
                "{stamp} resent after its ack"
            );
        }
    };
    with_agent(config, options(), script).await;
}

#[tokio::test]
async fn renews_the_certificate_and_uses_it_for_new_connections() {
    // A 3 s certificate renews after 2 s.
    let mut harness = Harness::start(Duration::from_secs(3)).await;
    let config = harness.config(Some(harness.join(TOKEN, harness.pki.ca_fingerprint)));
    let state_path = harness.state_path();
    let script = async {
        let mut s1 = harness.next_session().await;
        let enrolled = StateDir::open(&state_path)
            .unwrap()
            .load()
            .unwrap()
            .unwrap();
        assert_eq!(s1.peer_cert, der_of(&enrolled.cert_pem));
        s1.recv().await;
        s1.welcome("host-1");

        let (presented, issued) = tokio::time::timeout(PATIENCE, harness.renewals.recv())
            .await
            .expect("no renewal")
            .unwrap();
        // Renewal is made over mutual TLS with the current certificate.
        assert_eq!(presented, der_of(&enrolled.cert_pem));
        // The renewed key and certificate are saved, privately.
        let mut renewed = None;
        for _ in 0..50 {
            let stored = StateDir::open(&state_path)
                .unwrap()
                .load()
                .unwrap()
                .unwrap();
            if stored.cert_pem == issued {
                renewed = Some(stored);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let renewed = renewed.expect("the renewed certificate was not saved");
        assert_ne!(renewed.key_pem, enrolled.key_pem, "renewal uses a new key");
        assert!(renewed.identity.not_after_ms > enrolled.identity.not_after_ms);
        assert!(renewed.identity.issued_at_ms > enrolled.identity.issued_at_ms);
        assert_eq!(renewed.identity.host_id, enrolled.identity.host_id);
        assert_eq!(mode(&state_path.join("key.pem")), 0o600);

        // The next connection presents the new certificate, without a restart.
        drop(s1);
        let mut s2 = harness.next_session().await;
        assert_eq!(s2.peer_cert, der_of(&issued));
        s2.recv().await;
        s2.welcome("host-1");
        s2.recv_batch().await;

        // And it keeps renewing before each certificate expires.
        let (presented, _) = tokio::time::timeout(PATIENCE, harness.renewals.recv())
            .await
            .expect("no second renewal")
            .unwrap();
        assert_eq!(presented, der_of(&issued));
    };
    with_agent(config, options(), script).await;
}

/// A plain HTTP/1.1 server on 127.0.0.1 answering `name` to everything.
async fn named_backend(name: &'static str) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(move |_request| async move {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from(name),
                )))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    address
}

#[tokio::test]
async fn the_session_announces_the_ingress_applies_tables_and_reports_traffic() {
    use argosy_proto::v1::{Route, RouteBackend, RoutingTable};
    use http_body_util::BodyExt as _;

    let mut harness = Harness::start(Duration::from_secs(3600)).await;
    let mut config = harness.config(Some(harness.join(TOKEN, harness.pki.ca_fingerprint)));
    config.ingress_http = Some("127.0.0.1:0".parse().unwrap());
    let backend = named_backend("web-1").await;
    let script = async {
        let mut s1 = harness.next_session().await;
        let hello = s1.recv().await;
        let Some(agent_message::Body::Hello(body)) = hello.body else {
            panic!("expected Hello first, got {hello:?}");
        };
        let inventory = body.inventory.unwrap();
        // The control plane is on loopback, so is the advertise address.
        assert_eq!(inventory.advertise_address, "127.0.0.1");
        assert_ne!(inventory.ingress_http_port, 0);
        assert_eq!(inventory.ingress_https_port, 0);
        s1.welcome("host-1");
        s1.send(control_message::Body::Routing(RoutingTable {
            version: 4,
            routes: vec![Route {
                service: "web".into(),
                hostnames: vec!["web.example.com".into()],
                paths: vec!["/".into()],
                tls: None,
                backends: vec![RouteBackend {
                    allocation: "a1".into(),
                    host: "host-1".into(),
                    region: "eu-west".into(),
                    revision: 2,
                    address: backend.to_string(),
                    weight: 1_000_000,
                    standby: false,
                }],
                explanation: String::new(),
            }],
            ..RoutingTable::default()
        }));
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<bytes::Bytes>>();
        let uri: hyper::Uri = format!("http://127.0.0.1:{}/", inventory.ingress_http_port)
            .parse()
            .unwrap();
        // The table arrives asynchronously: ask until it is applied.
        let body = tokio::time::timeout(PATIENCE, async {
            loop {
                let request = hyper::Request::get(uri.clone())
                    .header("host", "web.example.com")
                    .body(http_body_util::Empty::new())
                    .unwrap();
                let response = client.request(request).await.unwrap();
                if response.status() == hyper::StatusCode::OK {
                    let body = response.into_body().collect().await.unwrap().to_bytes();
                    return String::from_utf8(body.to_vec()).unwrap();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the routing table was not applied");
        assert_eq!(body, "web-1");
        // Within an interval or two, the traffic goes up.
        let traffic = loop {
            let message = s1.recv().await;
            if let Some(agent_message::Body::Traffic(traffic)) = message.body {
                break traffic;
            }
        };
        assert_eq!(traffic.revisions.len(), 1);
        assert_eq!(
            (
                traffic.revisions[0].service.as_str(),
                traffic.revisions[0].revision
            ),
            ("web", 2)
        );
        assert_eq!(traffic.revisions[0].requests, 1);
        assert_eq!(traffic.revisions[0].errors, 0);
    };
    with_agent(config, options(), script).await;
}
