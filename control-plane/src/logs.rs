//! Relays container logs from agents to API callers: each request gets an
//! id, the agent streams `LogChunk`s tagged with it over its session, and
//! the relay hands them to whoever is reading. Nothing is stored.

use argosy_proto::v1::LogChunk;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// Chunks buffered per reader before the agent's session waits.
const BUFFER: usize = 256;

/// Open log requests.
#[derive(Debug, Default)]
pub struct LogRelay {
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, mpsc::Sender<LogChunk>>>,
}

impl LogRelay {
    /// A new request id and where its chunks arrive.
    pub fn open(&self) -> (u64, mpsc::Receiver<LogChunk>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = mpsc::channel(BUFFER);
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        (id, rx)
    }

    /// Forgets a request.
    pub fn close(&self, id: u64) {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Hands a chunk from an agent to its reader. Returns false when nobody
    /// reads it any more (the caller tells the agent to stop). A slow reader
    /// holds the agent's session for at most a few seconds, then loses the
    /// chunk rather than stalling the host's metrics.
    pub async fn deliver(&self, chunk: LogChunk) -> bool {
        let id = chunk.request_id;
        let end = chunk.end;
        let Some(tx) = self
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
        else {
            return false;
        };
        let delivered = matches!(
            tokio::time::timeout(Duration::from_secs(5), tx.send(chunk)).await,
            Ok(Ok(()))
        );
        if end || !delivered {
            self.close(id);
        }
        delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(id: u64, data: &str, end: bool) -> LogChunk {
        LogChunk {
            request_id: id,
            stderr: false,
            data: data.as_bytes().to_vec(),
            end,
            error: String::new(),
        }
    }

    #[tokio::test]
    async fn chunks_reach_their_reader_until_the_end() {
        let relay = LogRelay::default();
        let (a, mut rx_a) = relay.open();
        let (b, mut rx_b) = relay.open();
        assert_ne!(a, b);
        assert!(relay.deliver(chunk(a, "one", false)).await);
        assert!(relay.deliver(chunk(b, "two", false)).await);
        assert_eq!(rx_a.recv().await.unwrap().data, b"one");
        assert_eq!(rx_b.recv().await.unwrap().data, b"two");
        assert!(relay.deliver(chunk(a, "", true)).await);
        assert!(rx_a.recv().await.unwrap().end);
        // After the end the request is forgotten.
        assert!(!relay.deliver(chunk(a, "late", false)).await);
    }

    #[tokio::test]
    async fn a_gone_reader_is_reported() {
        let relay = LogRelay::default();
        let (id, rx) = relay.open();
        drop(rx);
        assert!(!relay.deliver(chunk(id, "x", false)).await);
        assert!(
            !relay.deliver(chunk(99, "x", false)).await,
            "unknown request"
        );
    }
}
