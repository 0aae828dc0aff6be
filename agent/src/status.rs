//! The agent's live state shared by its tasks: the unacknowledged samples,
//! the latest sample, the current identity (certificate dates) and the
//! counters `/metrics` reports.

use crate::state::Identity;
use crate::unacked::{RateLimit, Unacked};
use argosy_proto::v1::MetricSample;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Monotonic counters, exported as `*_total`.
#[derive(Debug, Default)]
pub struct Counters {
    pub samples_taken: AtomicU64,
    pub samples_sent: AtomicU64,
    pub samples_acked: AtomicU64,
    pub samples_dropped: AtomicU64,
    pub sessions: AtomicU64,
    pub reconnects: AtomicU64,
    pub renewals: AtomicU64,
    pub renewal_failures: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// State shared between the sampler, the session, the renewer and the
/// `/metrics` server.
#[derive(Debug)]
pub struct Shared {
    buffer: Mutex<Unacked>,
    drop_log: Mutex<RateLimit>,
    new_sample: Notify,
    latest: Mutex<Option<MetricSample>>,
    identity: Mutex<Identity>,
    next_seq: AtomicU64,
    connected: AtomicBool,
    pub counters: Counters,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not stop the agent from reporting.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn new(identity: Identity, buffer_capacity: usize) -> Self {
        Self {
            buffer: Mutex::new(Unacked::new(buffer_capacity)),
            drop_log: Mutex::new(RateLimit::new(Duration::from_secs(60))),
            new_sample: Notify::new(),
            latest: Mutex::new(None),
            identity: Mutex::new(identity),
            next_seq: AtomicU64::new(1),
            connected: AtomicBool::new(false),
            counters: Counters::default(),
        }
    }

    /// Records a new sample: it becomes the latest and waits in the buffer
    /// to be sent.
    pub fn push_sample(&self, sample: MetricSample) {
        *lock(&self.latest) = Some(sample.clone());
        let dropped = lock(&self.buffer).push(sample);
        Counters::add(&self.counters.samples_taken, 1);
        if dropped {
            Counters::add(&self.counters.samples_dropped, 1);
            if let Some(suppressed) = lock(&self.drop_log).check(Instant::now()) {
                tracing::warn!(
                    suppressed,
                    total_dropped = Counters::get(&self.counters.samples_dropped),
                    "the unacknowledged sample buffer is full: dropping the oldest sample"
                );
            }
        }
        self.new_sample.notify_one();
    }

    /// Waits until a sample is pushed.
    pub async fn sample_pushed(&self) {
        self.new_sample.notified().await;
    }

    /// The buffer of unacknowledged samples. Never hold it across an await.
    pub fn buffer(&self) -> MutexGuard<'_, Unacked> {
        lock(&self.buffer)
    }

    /// The next message sequence number.
    pub fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    pub fn latest(&self) -> Option<MetricSample> {
        lock(&self.latest).clone()
    }

    pub fn identity(&self) -> Identity {
        lock(&self.identity).clone()
    }

    pub fn set_identity(&self, identity: Identity) {
        *lock(&self.identity) = identity;
    }

    pub fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}
