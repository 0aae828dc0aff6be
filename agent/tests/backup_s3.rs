//! The S3 destination against a real S3 API (moto's server on a loopback
//! port): multipart upload, read back and delete; an upload that fails
//! part-way leaves no object and no pending multipart upload (also after a
//! "crash", through the journaled upload id); and a missing bucket or an
//! unreachable endpoint says so.

use argosy_agent::backup::destinations::{
    Destination, DestinationError, InFlight, S3Credentials, S3Spec, SecretName, abort_in_flight,
};
use argosy_agent::backup::pipeline::{self, BackupRun, InFlightLog, PipelineError};
use argosy_agent::backup::{Dump, DumpReport};
use futures_util::StreamExt as _;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, ReadBuf};

const BUCKET: &str = "argosy-test";
const MIB: usize = 1024 * 1024;

/// moto's S3 server on a free loopback port, stopped on drop.
struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("moto_server"))
        .find(|path| path.is_file());
    let venv = PathBuf::from("/var/tmp/argosy-moto/bin/moto_server");
    on_path.or_else(|| venv.is_file().then_some(venv)).expect(
        "moto_server is needed for the S3 tests: python3 -m venv /var/tmp/argosy-moto && /var/tmp/argosy-moto/bin/pip install 'moto[server]' (scripts/test checks this)",
    )
}

fn start_moto() -> Moto {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(moto_binary())
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let moto = Moto { child, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not listen on {port} within 30s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, _) = moto.http("PUT", &format!("/{BUCKET}"));
    assert_eq!(status, 200, "creating the bucket");
    moto
}

impl Moto {
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A plain HTTP request (moto does not check signatures).
    fn http(&self, method: &str, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// Multipart uploads not completed nor aborted.
    fn pending_uploads(&self) -> usize {
        let (status, body) = self.http("GET", &format!("/{BUCKET}?uploads"));
        assert_eq!(status, 200, "{body}");
        body.matches("<UploadId>").count()
    }

    fn spec(&self, bucket: &str) -> S3Spec {
        spec(&self.endpoint(), bucket)
    }
}

fn spec(endpoint: &str, bucket: &str) -> S3Spec {
    S3Spec {
        endpoint: endpoint.into(),
        bucket: bucket.into(),
        prefix: "prod/".into(),
        region: "us-east-1".into(),
        access_key_id: SecretName {
            name: "s3/key-id".into(),
            version: 1,
        },
        secret_access_key: SecretName {
            name: "s3/secret-key".into(),
            version: 1,
        },
    }
}

fn credentials() -> S3Credentials {
    S3Credentials {
        access_key_id: "testing-key-id".to_owned().into(),
        secret_access_key: "testing-secret-key-value".to_owned().into(),
    }
}

fn destination(spec: S3Spec) -> Destination {
    Destination::s3("offsite", spec, credentials()).unwrap()
}

fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

async fn read_back(destination: &Destination) -> Option<Vec<u8>> {
    let stored = destination.open("crm-db", "b-1").await.unwrap()?;
    let mut bytes = Vec::with_capacity(stored.size as usize);
    let mut stream = stored.bytes;
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(bytes.len() as u64, stored.size);
    Some(bytes)
}

#[tokio::test]
async fn s3_uploads_read_back_delete_and_leave_nothing_when_they_fail() {
    let moto = start_moto();
    let s3 = destination(moto.spec(BUCKET));
    assert!(read_back(&s3).await.is_none());

    // 20 MiB in 64 KiB writes: parts of 8, 8 and 4 MiB.
    let data = noise(20 * MIB + 123);
    let mut upload = s3.begin("crm-db", "b-1").await.unwrap();
    let InFlight::Multipart { key, upload_id, .. } = upload.in_flight() else {
        panic!("an S3 upload is multipart");
    };
    assert_eq!(key, "prod/crm-db/b-1.argosy");
    assert!(!upload_id.is_empty());
    for chunk in data.chunks(64 * 1024) {
        upload.write(chunk).await.unwrap();
    }
    assert!(
        read_back(&s3).await.is_none(),
        "nothing visible before it is completed"
    );
    let (location, bytes) = upload.commit().await.unwrap();
    assert_eq!(location, format!("s3://{BUCKET}/prod/crm-db/b-1.argosy"));
    assert_eq!(bytes, data.len() as u64);
    assert!(read_back(&s3).await.unwrap() == data);
    assert_eq!(moto.pending_uploads(), 0);

    s3.delete("crm-db", "b-1").await.unwrap();
    s3.delete("crm-db", "b-1").await.unwrap();
    assert!(read_back(&s3).await.is_none());

    // Failing part-way: aborted, no object, no pending upload.
    let mut upload = s3.begin("crm-db", "b-1").await.unwrap();
    for chunk in data.chunks(MIB) {
        upload.write(chunk).await.unwrap();
    }
    assert_eq!(moto.pending_uploads(), 1);
    upload.abort().await.unwrap();
    assert_eq!(moto.pending_uploads(), 0);
    assert!(read_back(&s3).await.is_none());

    // A crash: the upload is dropped, and aborted after the restart from
    // what the journal kept.
    let mut upload = s3.begin("crm-db", "b-1").await.unwrap();
    upload.write(&data[..9 * MIB]).await.unwrap();
    let journaled = upload.in_flight();
    drop(upload);
    assert_eq!(moto.pending_uploads(), 1);
    let json = serde_json::to_string(&journaled).unwrap();
    assert!(!json.contains("testing-secret"), "{json}");
    let reloaded: InFlight = serde_json::from_str(&json).unwrap();
    abort_in_flight(&reloaded, Some(credentials()))
        .await
        .unwrap();
    assert_eq!(moto.pending_uploads(), 0);
    assert!(read_back(&s3).await.is_none());
}

/// A dump that fails after `good` bytes.
struct FailingReader {
    data: Vec<u8>,
    at: usize,
}

impl AsyncRead for FailingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.at >= self.data.len() {
            return Poll::Ready(Err(std::io::Error::other(
                "pg_dump: connection to server lost",
            )));
        }
        let n = buf
            .remaining()
            .min(self.data.len() - self.at)
            .min(64 * 1024);
        let at = self.at;
        buf.put_slice(&self.data[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

struct NoLog;

impl InFlightLog for NoLog {
    fn opened(&self, _: &InFlight) {}
    fn closed(&self, _: &InFlight) {}
}

#[tokio::test]
async fn a_backup_whose_dump_fails_after_20_mib_leaves_no_object() {
    let moto = start_moto();
    let destinations = vec![destination(moto.spec(BUCKET))];
    let dump = Dump {
        output: Box::pin(FailingReader {
            data: noise(20 * MIB),
            at: 0,
        }),
        finish: Box::pin(async { Ok(DumpReport::default()) }),
    };
    let run = BackupRun {
        policy: "crm-db",
        backup_id: "b-1",
        source_kind: "command",
        zstd_level: 3,
        key: Some(b"a backup key of thirty-two bytes"),
        started_at_ms: 0,
        started: Instant::now(),
    };
    let outcome = pipeline::backup(dump, &destinations, &run, &NoLog, &|_| {}, &|| 0).await;
    match outcome.error {
        Some(PipelineError::ReadDump { bytes, .. }) => assert_eq!(bytes, 20 * MIB as u64),
        other => panic!("expected the dump's read error, got {other:?}"),
    }
    assert_eq!(moto.pending_uploads(), 0);
    assert!(read_back(&destinations[0]).await.is_none());
    let (_, listing) = moto.http("GET", &format!("/{BUCKET}?list-type=2"));
    assert!(!listing.contains("<Key>"), "{listing}");
}

#[tokio::test]
async fn a_missing_bucket_or_an_unreachable_endpoint_says_so() {
    let moto = start_moto();
    let missing = destination(moto.spec("no-such-bucket"));
    let error = missing.begin("crm-db", "b-1").await.unwrap_err();
    assert!(
        matches!(error, DestinationError::NoBucket { .. }),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "destination offsite: bucket no-such-bucket does not exist at {}; create it, or correct `bucket:` in the policy",
            moto.endpoint()
        )
    );

    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = destination(spec(&format!("http://127.0.0.1:{closed}"), BUCKET));
    let error = unreachable.begin("crm-db", "b-1").await.unwrap_err();
    assert!(
        matches!(error, DestinationError::Unreachable { .. }),
        "{error}"
    );
    let text = error.to_string();
    assert!(
        text.starts_with(&format!(
            "destination offsite: cannot reach the S3 endpoint http://127.0.0.1:{closed} ("
        )),
        "{text}"
    );
    assert!(!text.contains("testing-secret"));
}
