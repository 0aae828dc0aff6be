//! Pooled HTTP/1.1 connections from the ingress to its backends: one idle
//! list per backend address, connections made with hyper's
//! `client::conn::http1` and given back when their response body has been
//! read to the end.
//!
//! Why not hyper-util's pooled client: it formats and parses an absolute
//! URI per request, hashes the scheme and authority to find the pool,
//! and spawns a task per request to wait until the connection is ready
//! again. Here the backend is already a `SocketAddr`, the request keeps
//! its origin-form URI, and a connection goes back to its list when the
//! response body ends ([`PooledBody`]'s drop) — by then hyper's
//! connection task is ready for the next request.
//!
//! A request is never lost on the way: a connection that fails
//! ([`SendError::Connect`]) or a pooled connection found closed before the
//! request was written hands the request back, so it can go to another
//! connection or backend; only a failure after it may have reached the
//! backend consumes it. Which idle connection to take is the pure
//! [`IdleList`] (newest first, closed and expired ones dropped), tested
//! without sockets; [`Upstreams::sweep_loop`] also closes the expired
//! ones of a backend no request goes to any more.
//!
//! Measured and not kept: driving each backend connection from the
//! request's own task instead of a task per connection (no channel hop,
//! two task wake-ups fewer) cost as much user time per request, not less
//! (`docs/benchmarks.md` (f)).

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Idle connections kept per backend; more are closed.
pub const MAX_IDLE_PER_BACKEND: usize = 64;
/// How long a connection may stay idle by default
/// ([`super::IngressTiming::backend_idle_timeout`]).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often idle connections are swept by default while there are any
/// ([`super::IngressTiming::backend_sweep_every`]).
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// The sending half of one backend connection.
pub(crate) type Sender = http1::SendRequest<Incoming>;

/// Why a request did not get a response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// No connection could be made: the backend may be ejected and the
    /// request (never sent) tried elsewhere.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The connection failed; when the request comes back with it, it was
    /// not written and may go elsewhere.
    #[error("{0}")]
    Exchange(String),
}

/// What an idle list needs to know of a connection.
pub(crate) trait Connection {
    fn is_closed(&self) -> bool;
    fn is_ready(&self) -> bool;
}

impl Connection for Sender {
    fn is_closed(&self) -> bool {
        http1::SendRequest::is_closed(self)
    }
    fn is_ready(&self) -> bool {
        http1::SendRequest::is_ready(self)
    }
}

/// The idle connections of one backend, oldest first.
#[derive(Debug)]
pub(crate) struct IdleList<C> {
    idle: Vec<(C, Instant)>,
    /// A connection idle longer than this is closed rather than used.
    timeout: Duration,
}

impl<C: Connection> IdleList<C> {
    pub(crate) fn new(timeout: Duration) -> Self {
        Self {
            idle: Vec::new(),
            timeout,
        }
    }

    /// The newest usable connection: closed ones and those idle longer
    /// than the timeout are dropped; one not ready yet stays.
    pub(crate) fn take(&mut self, now: Instant) -> Option<C> {
        self.drop_expired(now);
        let mut index = self.idle.len();
        while index > 0 {
            index -= 1;
            let connection = &self.idle[index].0;
            if connection.is_closed() {
                self.idle.remove(index);
            } else if connection.is_ready() {
                return Some(self.idle.remove(index).0);
            }
        }
        None
    }

    /// Keeps `connection` for the next request, unless it is closed or
    /// the list is full.
    pub(crate) fn put(&mut self, connection: C, now: Instant) {
        if connection.is_closed() {
            return;
        }
        if self.idle.len() >= MAX_IDLE_PER_BACKEND {
            self.idle.remove(0);
        }
        self.idle.push((connection, now));
    }

    /// Drops the closed connections and those idle longer than the
    /// timeout; returns whether any is left.
    pub(crate) fn sweep(&mut self, now: Instant) -> bool {
        self.drop_expired(now);
        self.idle.retain(|(connection, _)| !connection.is_closed());
        !self.idle.is_empty()
    }

    fn drop_expired(&mut self, now: Instant) {
        // The list is oldest first, so the expired ones are a prefix.
        let fresh_from = self
            .idle
            .iter()
            .position(|(_, since)| now.saturating_duration_since(*since) <= self.timeout)
            .unwrap_or(self.idle.len());
        self.idle.drain(..fresh_from);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.idle.len()
    }
}

/// The idle connections of every backend.
pub(crate) struct Upstreams {
    idle: Mutex<HashMap<SocketAddr, IdleList<Sender>>>,
    /// Wakes the sweep: a connection went idle.
    pooled: tokio::sync::Notify,
    connect_timeout: Duration,
    idle_timeout: Duration,
    sweep_every: Duration,
}

impl Upstreams {
    pub(crate) fn new(timing: &super::IngressTiming) -> Arc<Self> {
        Arc::new(Self {
            idle: Mutex::new(HashMap::new()),
            pooled: tokio::sync::Notify::new(),
            connect_timeout: timing.connect_timeout,
            idle_timeout: timing.backend_idle_timeout,
            sweep_every: timing.backend_sweep_every,
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, IdleList<Sender>>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Closes the idle connections of backends not in `keep`.
    pub(crate) fn retain(&self, keep: impl Fn(&SocketAddr) -> bool) {
        self.idle().retain(|address, _| keep(address));
    }

    /// Closes idle connections that are closed or expired; returns
    /// whether any is left.
    fn sweep(&self, now: Instant) -> bool {
        let mut idle = self.idle();
        idle.retain(|_, list| list.sweep(now));
        !idle.is_empty()
    }

    /// Sweeps every `sweep_every` while there are idle connections, and
    /// sleeps while there are none (an idle agent wakes for nothing).
    pub(crate) async fn sweep_loop(self: Arc<Self>) {
        loop {
            self.pooled.notified().await;
            while self.sweep(Instant::now()) {
                tokio::time::sleep(self.sweep_every).await;
            }
        }
    }

    fn checkout(&self, address: SocketAddr, now: Instant) -> Option<Sender> {
        self.idle().get_mut(&address)?.take(now)
    }

    fn give_back(&self, address: SocketAddr, sender: Sender, since: Instant) {
        self.idle()
            .entry(address)
            .or_insert_with(|| IdleList::new(self.idle_timeout))
            .put(sender, since);
        self.pooled.notify_one();
    }

    async fn connect(&self, address: SocketAddr) -> Result<Sender, SendError> {
        let stream = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect(address),
        )
        .await
        .map_err(|_| {
            SendError::Connect(format!(
                "no answer within {} ms",
                self.connect_timeout.as_millis()
            ))
        })?
        .map_err(|error| SendError::Connect(error.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| SendError::Connect(error.to_string()))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(backend = %address, %error, "backend connection ended");
            }
        });
        Ok(sender)
    }

    /// Sends `request` (origin-form URI, `Host` set) to `address` over an
    /// idle connection or a new one; `now` is about now (the request's
    /// start: it ages idle connections, and the connection counts as idle
    /// from then when it comes back, which errs on the safe side). On
    /// failure, the request comes back when it was not written.
    pub(crate) async fn send(
        self: &Arc<Self>,
        address: SocketAddr,
        mut request: Request<Incoming>,
        now: Instant,
    ) -> Result<Response<PooledBody>, (SendError, Option<Request<Incoming>>)> {
        loop {
            let (mut sender, pooled) = match self.checkout(address, now) {
                Some(sender) => (sender, true),
                None => match self.connect(address).await {
                    Ok(sender) => (sender, false),
                    Err(error) => return Err((error, Some(request))),
                },
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let pool = Some((self.clone(), address, sender, now));
                    return Ok(response.map(|body| PooledBody {
                        body,
                        ended: false,
                        pool,
                    }));
                }
                Err(mut error) => match error.take_message() {
                    // An idle connection the backend had closed: the
                    // request was not written; a new connection may do.
                    Some(unsent) if pooled => request = unsent,
                    unsent => {
                        return Err((SendError::Exchange(error.into_error().to_string()), unsent));
                    }
                },
            }
        }
    }
}

/// A backend's response body; its connection goes back to the pool when
/// the body was read to the end, and is closed when it was not.
pub struct PooledBody {
    body: Incoming,
    /// The body's last frame was read (a chunked body does not say so
    /// through `is_end_stream`).
    ended: bool,
    /// Where the connection goes back, and since when it counts as idle.
    pool: Option<(Arc<Upstreams>, SocketAddr, Sender, Instant)>,
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = std::task::ready!(Pin::new(&mut self.body).poll_frame(cx));
        match &frame {
            None => self.ended = true,
            Some(Ok(frame)) if frame.is_trailers() => self.ended = true,
            Some(_) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if let Some((pool, address, sender, since)) = self.pool.take()
            && (self.ended || self.body.is_end_stream())
        {
            pool.give_back(address, sender, since);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    /// A connection whose state the test sets.
    #[derive(Debug, Clone)]
    struct Fake {
        name: &'static str,
        closed: Rc<Cell<bool>>,
        ready: Rc<Cell<bool>>,
    }

    fn fake(name: &'static str) -> Fake {
        Fake {
            name,
            closed: Rc::new(Cell::new(false)),
            ready: Rc::new(Cell::new(true)),
        }
    }

    impl Connection for Fake {
        fn is_closed(&self) -> bool {
            self.closed.get()
        }
        fn is_ready(&self) -> bool {
            self.ready.get()
        }
    }

    #[test]
    fn the_newest_idle_connection_is_taken_first() {
        let now = Instant::now();
        let mut list = IdleList::new(IDLE_TIMEOUT);
        list.put(fake("old"), now);
        list.put(fake("new"), now + Duration::from_secs(1));
        let now = now + Duration::from_secs(2);
        assert_eq!(list.take(now).map(|c| c.name), Some("new"));
        assert_eq!(list.take(now).map(|c| c.name), Some("old"));
        assert!(list.take(now).is_none());
    }

    #[test]
    fn closed_connections_are_dropped_and_never_kept() {
        let now = Instant::now();
        let mut list = IdleList::new(IDLE_TIMEOUT);
        let (a, b) = (fake("a"), fake("b"));
        list.put(a.clone(), now);
        list.put(b.clone(), now);
        b.closed.set(true);
        assert_eq!(list.take(now).map(|c| c.name), Some("a"));
        assert_eq!(list.len(), 0, "the closed one is gone");
        let c = fake("c");
        c.closed.set(true);
        list.put(c, now);
        assert_eq!(list.len(), 0);
    }

    #[test]
    fn a_connection_not_ready_yet_stays_for_later() {
        let now = Instant::now();
        let mut list = IdleList::new(IDLE_TIMEOUT);
        let busy = fake("busy");
        busy.ready.set(false);
        list.put(busy.clone(), now);
        assert!(list.take(now).is_none());
        assert_eq!(list.len(), 1);
        busy.ready.set(true);
        assert_eq!(list.take(now).map(|c| c.name), Some("busy"));
    }

    #[test]
    fn connections_idle_too_long_are_dropped() {
        let start = Instant::now();
        let mut list = IdleList::new(IDLE_TIMEOUT);
        list.put(fake("stale"), start);
        list.put(fake("fresh"), start + IDLE_TIMEOUT);
        let now = start + IDLE_TIMEOUT + Duration::from_millis(1);
        assert_eq!(list.take(now).map(|c| c.name), Some("fresh"));
        assert!(list.take(now).is_none(), "the stale one was closed");
        assert_eq!(list.len(), 0);
    }

    #[test]
    fn a_sweep_drops_expired_and_closed_connections() {
        let start = Instant::now();
        let mut list = IdleList::new(IDLE_TIMEOUT);
        list.put(fake("stale"), start);
        let closed = fake("closed");
        list.put(closed.clone(), start + IDLE_TIMEOUT);
        list.put(fake("kept"), start + IDLE_TIMEOUT);
        closed.closed.set(true);
        let now = start + IDLE_TIMEOUT + Duration::from_millis(1);
        assert!(list.sweep(now));
        assert_eq!(list.len(), 1);
        assert_eq!(list.take(now).map(|c| c.name), Some("kept"));
        assert!(!list.sweep(now), "nothing is left");
    }

    #[test]
    fn a_full_list_lets_its_oldest_connection_go() {
        let now = Instant::now();
        let mut list = IdleList::new(IDLE_TIMEOUT);
        let first = fake("first");
        list.put(first.clone(), now);
        for _ in 1..MAX_IDLE_PER_BACKEND {
            list.put(fake("other"), now);
        }
        list.put(fake("last"), now);
        assert_eq!(list.len(), MAX_IDLE_PER_BACKEND);
        assert_eq!(Rc::strong_count(&first.closed), 1, "the first was dropped");
        assert_eq!(list.take(now).map(|c| c.name), Some("last"));
    }
}
