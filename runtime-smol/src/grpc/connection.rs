//! The one shared HTTP/2 connection of an upstream: made on the first call,
//! made again after it dies, with exponential backoff between failed
//! attempts, each attempt bounded by `connect_timeout`.

use super::{Gauge, GrpcUpstream};
use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http2::SendRequest;
use std::time::{Duration, Instant};
use terminus_core::{FailureKind, UpstreamFailure};

/// The one HTTP/2 connection of an upstream.
pub(super) struct Connection {
    pub(super) sender: SendRequest<Full<Bytes>>,
    /// hyper's request dispatcher for this connection; dropping it closes the
    /// connection.
    pub(super) _driver: smol::Task<()>,
}

/// Connection state, behind an async mutex so concurrent first calls make
/// one connection, not many.
pub(super) struct ConnectionState {
    pub(super) current: Option<Connection>,
    /// When the last attempt failed: no new attempt before this.
    pub(super) retry_at: Option<Instant>,
    /// The wait after the next failure.
    pub(super) next_backoff: Duration,
    /// Why the last attempt failed.
    pub(super) last_error: String,
}

impl GrpcUpstream {
    pub(super) fn transport_failure(&self, error: &hyper::Error) -> UpstreamFailure {
        tracing::debug!(upstream = %self.name, %error, "gRPC request failed in transport");
        self.failure(
            FailureKind::Unavailable,
            &format!("is unreachable: {error}"),
        )
    }

    /// The shared connection's request handle, connecting first when there
    /// is no live connection and the backoff allows an attempt.
    pub(super) async fn sender(&self) -> Result<SendRequest<Full<Bytes>>, UpstreamFailure> {
        let mut state = self.state.lock().await;
        if let Some(connection) = &state.current {
            if !connection.sender.is_closed() {
                return Ok(connection.sender.clone());
            }
            tracing::info!(upstream = %self.name, "gRPC connection closed; reconnecting");
            state.current = None;
        }
        if let Some(retry_at) = state.retry_at {
            let now = Instant::now();
            if now < retry_at {
                return Err(self.failure(
                    FailureKind::Unavailable,
                    &format!(
                        "is unreachable ({}); next connection attempt in {} ms",
                        state.last_error,
                        (retry_at - now).as_millis()
                    ),
                ));
            }
        }
        match self.connect().await {
            Ok(connection) => {
                let sender = connection.sender.clone();
                state.current = Some(connection);
                state.retry_at = None;
                state.next_backoff = self.config.backoff_initial;
                state.last_error.clear();
                Ok(sender)
            }
            Err(error) => {
                let wait = state.next_backoff;
                tracing::warn!(upstream = %self.name, %error, backoff_ms = wait.as_millis() as u64, "gRPC connect failed");
                state.retry_at = Some(Instant::now() + wait);
                state.next_backoff = (wait * 2).min(self.config.backoff_max);
                state.last_error = error.clone();
                Err(self.failure(
                    FailureKind::Unavailable,
                    &format!("is unreachable: {error}"),
                ))
            }
        }
    }

    /// Makes the TCP connection and the HTTP/2 handshake, bounded by
    /// `connect_timeout`.
    pub(super) async fn connect(&self) -> Result<Connection, String> {
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
                // h2 counts the RST_STREAMs it sends because DATA arrived
                // for a stream already reset locally, and sends GOAWAY past
                // 1,024 of them. Every cancelled subscription whose upstream
                // had ticks in flight adds one, so churn on the one shared
                // connection tripped it and failed every operation on it
                // (docs/BENCHMARKS.md). The upstream is configured, not an
                // arbitrary peer, and its streams are bounded by
                // `max_concurrent_streams`.
                .max_local_error_reset_streams(None);
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
        let driver = crate::tasks::spawn(async move {
            let _open = open;
            if let Err(error) = dispatcher.await {
                tracing::info!(upstream = %name, %error, "gRPC connection ended");
            }
        });
        tracing::info!(upstream = %self.name, endpoint = %self.config.endpoint, "gRPC connection open");
        Ok(Connection {
            sender,
            _driver: driver,
        })
    }
}
