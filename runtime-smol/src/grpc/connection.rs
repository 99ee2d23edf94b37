//! The HTTP/2 connections of an upstream: a bounded set (`max_connections`),
//! opened as the streams need them, each carrying at most
//! `max_streams_per_connection` streams and never more than the server's
//! `SETTINGS_MAX_CONCURRENT_STREAMS`. A dead connection is dropped from the
//! set and replaced by the next call that needs room, with exponential
//! backoff between failed attempts, each attempt bounded by
//! `connect_timeout`.
//!
//! Flow control: each stream's window is `stream_window_bytes`, so a stream
//! whose reader has stopped (a subscriber that does not read its socket)
//! holds at most that much before the server has to wait: back-pressure on
//! that stream alone. The connection window is the largest HTTP/2 allows,
//! so stalled streams never close it for the others, and h2's budget for
//! small DATA frames (half that window) covers every frame the stream
//! windows let in (config.rs, [`super::config::MAX_HELD_BYTES_PER_CONNECTION`]).

use super::{Gauge, GrpcUpstream};
use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http2::SendRequest;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use terminus_core::{FailureKind, UpstreamFailure};

/// hyper's request dispatcher of one connection.
pub(super) type Dispatcher = hyper::client::conn::http2::Connection<
    smol_hyper::rt::FuturesIo<crate::tls::Conn>,
    Full<Bytes>,
    super::executor::OwnedExecutor,
>;

/// A connection's dispatcher, `None` once it has ended.
pub(super) type SharedDispatcher = Arc<std::sync::Mutex<Option<Dispatcher>>>;

/// The largest HTTP/2 flow-control window (RFC 9113, 6.9.1).
const MAX_WINDOW: u32 = (1 << 31) - 1;

/// One HTTP/2 connection of an upstream.
pub(super) struct Connection {
    /// Numbers the upstream's connections, for `/metrics`.
    pub(super) id: u64,
    pub(super) sender: SendRequest<Full<Bytes>>,
    /// Streams this gateway has on it (a [`StreamSlot`] each).
    pub(super) streams: Arc<AtomicUsize>,
    /// hyper's request dispatcher, shared with the task that drives it
    /// (which takes it out when it ends, closing the request channel): the
    /// server's `SETTINGS_MAX_CONCURRENT_STREAMS` is read from it whenever
    /// the pool looks for room (see [`Connection::stream_limit`]).
    pub(super) dispatcher: SharedDispatcher,
    /// hyper's request dispatcher for this connection; dropping it closes the
    /// connection.
    pub(super) _driver: smol::Task<()>,
}

impl Connection {
    /// The most streams it may carry now: ours, or the server's when lower.
    /// Before the server's SETTINGS arrive h2 assumes 100 (hyper's
    /// `initial_max_send_streams`); a server that sets no limit allows any.
    ///
    /// Read from h2's state at each look, not from a copy: h2 applies the
    /// server's SETTINGS in the connection task hyper spawned, while the
    /// dispatcher is polled only when a request comes. A copy taken after
    /// the dispatcher's polls (as before) stayed at hyper's assumed 100 on
    /// every connection whose first 100 requests went out before the
    /// server's SETTINGS came in: the pool saw those connections full,
    /// opened more of them, up to `max_connections`, and refused the rest
    /// with `UPSTREAM_BUSY` (docs/BENCHMARKS.md, issue 12, "The gRPC pool
    /// under load").
    pub(super) fn stream_limit(&self, ours: usize) -> usize {
        ours.min(self.server_limit().unwrap_or(0))
    }

    /// The server's `SETTINGS_MAX_CONCURRENT_STREAMS` as h2 knows it now;
    /// `None` once the connection's dispatcher has ended.
    fn server_limit(&self) -> Option<usize> {
        self.dispatcher
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .as_ref()
            .map(Dispatcher::current_max_send_streams)
    }

    /// Whether calls may still go out on it.
    pub(super) fn is_open(&self) -> bool {
        !self.sender.is_closed() && self.server_limit().is_some()
    }

    fn claim(&self, pool: &Arc<std::sync::Mutex<Pool>>) -> (SendRequest<Full<Bytes>>, StreamSlot) {
        self.streams.fetch_add(1, Ordering::Relaxed);
        (
            self.sender.clone(),
            StreamSlot {
                connection: self.id,
                streams: self.streams.clone(),
                pool: Arc::downgrade(pool),
            },
        )
    }
}

/// A stream's place on its connection, held as long as h2 may hold data of
/// the stream (until its response body is read to the end or dropped).
pub(super) struct StreamSlot {
    pub(super) connection: u64,
    streams: Arc<AtomicUsize>,
    pool: std::sync::Weak<std::sync::Mutex<Pool>>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let Some(pool) = self.pool.upgrade() else {
            self.streams.fetch_sub(1, Ordering::Relaxed);
            return;
        };
        // Under the pool's lock, so no call claims a place on a connection
        // being closed here.
        let mut pool = pool.lock().unwrap_or_else(|poison| poison.into_inner());
        if self.streams.fetch_sub(1, Ordering::Relaxed) == 1 && pool.connections.len() > 1 {
            // The last stream of a connection beside others: close it, so
            // the pool shrinks back after load (the first one stays).
            let id = self.connection;
            if pool.connections.first().is_some_and(|first| first.id != id) {
                pool.connections.retain(|connection| connection.id != id);
            }
        }
    }
}

/// The set of connections and the reconnect backoff, behind a blocking
/// mutex never held across an await (metrics read it too).
#[derive(Default)]
pub(super) struct Pool {
    pub(super) connections: Vec<Connection>,
    pub(super) next_id: u64,
    /// Connections opened since start, for `/metrics`.
    pub(super) opened_total: u64,
    /// Calls refused because every connection was full, for `/metrics`.
    pub(super) busy_total: u64,
    /// When the last attempt failed: no new attempt before this.
    pub(super) retry_at: Option<Instant>,
    /// The wait after the next failure; zero means `backoff_initial`.
    pub(super) next_backoff: Duration,
    /// Why the last attempt failed.
    pub(super) last_error: String,
    /// Connection attempts under way; with the open connections, at most
    /// `max_connections`.
    pub(super) connecting: usize,
    /// Calls waiting for an attempt under way to give them room.
    pub(super) waiting: usize,
}

/// A connection attempt under way; its end, however it ends (the caller
/// may drop it at its deadline), wakes the calls that waited for it.
struct Attempt<'a>(&'a GrpcUpstream);

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        self.0.connection_pool().connecting -= 1;
        self.0.connected.notify(usize::MAX);
    }
}

/// A call counted in [`Pool::waiting`] while it waits, however the wait
/// ends (the caller may drop it at its deadline).
struct Waiting<'a>(&'a GrpcUpstream);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.connection_pool().waiting -= 1;
    }
}

/// What a look at the pool found.
enum Found {
    Room(SendRequest<Full<Bytes>>, StreamSlot),
    Full(usize),
    Grow,
}

impl GrpcUpstream {
    pub(super) fn transport_failure(&self, error: &hyper::Error) -> UpstreamFailure {
        tracing::debug!(upstream = %self.name, %error, "gRPC request failed in transport");
        self.failure(
            FailureKind::Unavailable,
            &format!("is unreachable: {error}"),
        )
    }

    pub(super) fn connection_pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        // Every update of the pool leaves it valid, even one cut short.
        self.connection_pool
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Drops closed connections, then claims room on the first connection
    /// that has some (filling connections in order keeps their number as
    /// low as the streams allow).
    fn find_room(&self, pool: &mut Pool) -> Found {
        pool.connections.retain(|connection| {
            let open = connection.is_open();
            if !open {
                tracing::info!(upstream = %self.name, connection = connection.id, "gRPC connection closed; dropped from the pool");
            }
            open
        });
        let ours = self.config.max_streams_per_connection;
        if let Some(connection) = pool
            .connections
            .iter()
            .find(|c| c.streams.load(Ordering::Relaxed) < c.stream_limit(ours))
        {
            let (sender, slot) = connection.claim(&self.connection_pool);
            return Found::Room(sender, slot);
        }
        if pool.connections.len() >= self.config.max_connections {
            pool.busy_total += 1;
            return Found::Full(pool.connections.len());
        }
        Found::Grow
    }

    /// A request handle on a connection with room for one more stream, and
    /// the stream's slot there; opens a connection when every open one is
    /// full and the bound and the backoff allow it.
    pub(super) async fn sender(
        &self,
    ) -> Result<(SendRequest<Full<Bytes>>, StreamSlot), UpstreamFailure> {
        let busy = |connections: usize| {
            UpstreamFailure::new(
                FailureKind::Busy,
                format!(
                    "upstream {} has every one of its {connections} connections at its stream limit",
                    self.name
                ),
            )
        };
        // Connection attempts run side by side, as many as the calls
        // waiting for room need (each attempt counted as room for
        // `max_streams_per_connection` calls), up to `max_connections`
        // with the open ones. A call that the attempts under way cover
        // waits for the end of one of them, and then all such calls look
        // again at once. (One attempt at a time, as before, opened the
        // connections of a burst of calls one after another: on a loaded
        // gateway each attempt took 1 to 4 s, the ones opened last came
        // too late, and every call placed on them hit `call_timeout`;
        // docs/BENCHMARKS.md, issue 12, "The late connection, measured".
        // Before that, calls queued on an async mutex passed it on one by
        // one, each hand-over a trip through the executor's run queue,
        // and admitted about 50 streams a second.) The caller's deadline
        // (`call_timeout`) bounds the wait; each attempt is bounded by
        // `connect_timeout`.
        let per_connection = self.config.max_streams_per_connection.max(1);
        loop {
            let ended = {
                let mut pool = self.connection_pool();
                match self.find_room(&mut pool) {
                    Found::Room(sender, slot) => return Ok((sender, slot)),
                    Found::Full(connections) => return Err(busy(connections)),
                    Found::Grow => {}
                }
                let covered = pool.connecting.saturating_mul(per_connection);
                let may_open =
                    pool.connections.len() + pool.connecting < self.config.max_connections;
                // The calls needing room: the attempts' own, the waiting
                // ones, and this one.
                if may_open && pool.connecting + pool.waiting >= covered {
                    // What is left of the reconnect backoff, if any.
                    let backoff = pool
                        .retry_at
                        .and_then(|retry_at| retry_at.checked_duration_since(Instant::now()))
                        .filter(|left| !left.is_zero());
                    match backoff {
                        None => {
                            pool.connecting += 1;
                            break;
                        }
                        Some(left) if pool.connecting == 0 => {
                            return Err(self.failure(
                                FailureKind::Unavailable,
                                &format!(
                                    "is unreachable ({}); next connection attempt in {} ms",
                                    pool.last_error,
                                    left.as_millis()
                                ),
                            ));
                        }
                        // Backing off while attempts are under way: wait
                        // for their end.
                        Some(_) => {}
                    }
                }
                pool.waiting += 1;
                // Listening under the pool's lock: the attempt's end (which
                // takes the lock) cannot slip by unseen.
                (Waiting(self), self.connected.listen())
            };
            let (_waiting, ended) = ended;
            ended.await;
        }
        let _attempt = Attempt(self);
        let connected = self.connect().await;
        let mut pool = self.connection_pool();
        match connected {
            Ok((sender, dispatcher, driver)) => {
                pool.next_id += 1;
                pool.opened_total += 1;
                let connection = Connection {
                    id: pool.next_id,
                    sender,
                    streams: Arc::new(AtomicUsize::new(0)),
                    dispatcher,
                    _driver: driver,
                };
                tracing::info!(upstream = %self.name, endpoint = %self.config.endpoint, connection = connection.id, open = pool.connections.len() + 1, "gRPC connection open");
                let claimed = connection.claim(&self.connection_pool);
                pool.connections.push(connection);
                pool.retry_at = None;
                pool.next_backoff = Duration::ZERO;
                pool.last_error.clear();
                Ok(claimed)
            }
            Err(error) => {
                let wait = if pool.next_backoff.is_zero() {
                    self.config.backoff_initial
                } else {
                    pool.next_backoff
                };
                tracing::warn!(upstream = %self.name, %error, backoff_ms = wait.as_millis() as u64, "gRPC connect failed");
                pool.retry_at = Some(Instant::now() + wait);
                pool.next_backoff = (wait * 2).min(self.config.backoff_max);
                pool.last_error = error.clone();
                Err(self.failure(
                    FailureKind::Unavailable,
                    &format!("is unreachable: {error}"),
                ))
            }
        }
    }

    /// Takes connection `id` out of the pool after a request on it failed
    /// in transport (it may be going away without being closed yet), so
    /// the next call opens another. Its streams end on their own.
    pub(super) fn forget_connection(&self, id: u64) {
        self.connection_pool()
            .connections
            .retain(|connection| connection.id != id);
    }

    /// Makes the TCP connection and the HTTP/2 handshake, bounded by
    /// `connect_timeout`, and spawns the connection's dispatcher.
    #[allow(clippy::type_complexity)]
    async fn connect(
        &self,
    ) -> Result<(SendRequest<Full<Bytes>>, SharedDispatcher, smol::Task<()>), String> {
        let timeout = self.config.connect_timeout;
        let handshake = async {
            let stream = smol::net::TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|error| format!("connecting to {}: {error}", self.config.endpoint))?;
            // Small gRPC frames must not wait for Nagle's algorithm.
            let _ = stream.set_nodelay(true);
            let stream = match &self.tls {
                None => crate::tls::Conn::Plain(stream),
                Some((config, server_name)) => {
                    let stream = crate::tls::connect(config.clone(), server_name.clone(), stream)
                        .await
                        .map_err(|error| format!("{}: {error}", self.config.endpoint))?;
                    if stream.alpn() != Some(b"h2") {
                        return Err(format!(
                            "{} did not agree on HTTP/2 over TLS (ALPN h2)",
                            self.config.endpoint
                        ));
                    }
                    stream
                }
            };
            let mut builder = hyper::client::conn::http2::Builder::new(self.executor.clone());
            builder
                .timer(smol_hyper::rt::SmolTimer::new())
                .keep_alive_interval(self.config.keepalive_interval)
                .keep_alive_timeout(self.config.keepalive_timeout)
                .keep_alive_while_idle(false)
                // Per-stream back-pressure: a stream nobody reads holds at
                // most its window. The connection window is the largest
                // there is, so stalled streams never starve the others, and
                // h2's small-DATA-frame budget (half of it) outlasts every
                // frame the stream windows admit (module doc).
                .initial_stream_window_size(self.config.stream_window_bytes)
                .initial_connection_window_size(MAX_WINDOW)
                .adaptive_window(false)
                // h2 counts the RST_STREAMs it sends because DATA arrived
                // for a stream already reset locally, and sends GOAWAY past
                // 1,024 of them. Every cancelled subscription whose upstream
                // had ticks in flight adds one, so churn tripped it and
                // failed every operation on the connection
                // (docs/BENCHMARKS.md). The upstream is configured, not an
                // arbitrary peer, and its streams are bounded by
                // `max_streams_per_connection`.
                .max_local_error_reset_streams(None)
                // A cancelled subscription's stream stays known for a
                // while, so the ticks already on the wire for it are
                // dropped, not each answered with an RST_STREAM
                // (h2 remembers 10 by default; churn cancels thousands a
                // second).
                .max_concurrent_reset_streams(self.config.max_remembered_resets)
                .reset_stream_duration(self.config.remember_resets_for);
            builder
                .handshake(smol_hyper::rt::FuturesIo::new(stream))
                .await
                .map_err(|error| format!("HTTP/2 handshake with {}: {error}", self.config.endpoint))
        };
        let (sender, dispatcher) = crate::timeout::timeout(timeout, handshake)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "connecting to {} took longer than {} ms",
                    self.config.endpoint,
                    timeout.as_millis()
                ))
            })?;
        let open = Gauge::new(&self.open_connections);
        let name = self.name.clone();
        let limit_seen = dispatcher.current_max_send_streams();
        let dispatcher: SharedDispatcher = Arc::new(std::sync::Mutex::new(Some(dispatcher)));
        let driven = dispatcher.clone();
        let changed = self.connected.clone();
        let driver = crate::tasks::spawn(async move {
            let _open = open;
            let mut limit_seen = limit_seen;
            let ended = std::future::poll_fn(|cx| {
                let mut shared = driven.lock().unwrap_or_else(|poison| poison.into_inner());
                let Some(dispatcher) = shared.as_mut() else {
                    return std::task::Poll::Ready(Ok(()));
                };
                let polled = std::pin::Pin::new(&mut *dispatcher).poll(cx);
                let now = dispatcher.current_max_send_streams();
                if polled.is_ready() {
                    // Dropped here: its request channel closes, so the
                    // pool sees the connection closed and calls on it fail.
                    *shared = None;
                }
                if now != limit_seen || polled.is_ready() {
                    limit_seen = now;
                    // The calls waiting for a connection attempt may fit
                    // now (the pool reads the limit itself at each look).
                    changed.notify(usize::MAX);
                }
                polled
            })
            .await;
            if let Err(error) = ended {
                tracing::info!(upstream = %name, %error, "gRPC connection ended");
            }
        });
        Ok((sender, dispatcher, driver))
    }
}
