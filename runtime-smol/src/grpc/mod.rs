//! gRPC upstreams: a client on smol over one shared HTTP/2 connection per
//! endpoint.
//!
//! Every call of an upstream is a stream on the same HTTP/2 connection
//! (hyper's `client::conn::http2`), so the number of upstream sockets stays at
//! one however many operations come and go. The connection is made on the
//! first call, and made again after it dies, with exponential backoff between
//! failed attempts. Messages are dynamic: the request JSON (proto3 JSON
//! mapping) becomes a `prost_reflect::DynamicMessage` of the method's input
//! type, and each response message becomes JSON again, with default values
//! present and lowerCamelCase names.
//!
//! Bounds: the connect (TCP and HTTP/2 handshake) has `connect_timeout`; a
//! unary call has `call_timeout` (sent as `grpc-timeout` and enforced by a
//! local timer); a server-streaming call has `call_timeout` until the
//! response headers arrive (a local timer only: nothing is sent, since a
//! standard server enforces `grpc-timeout` on the whole stream), then no
//! deadline unless `stream_timeout` is set (sent as `grpc-timeout` and
//! enforced locally), an optional `stream_idle_timeout`, and HTTP/2
//! keep-alive pings (`keepalive_interval`, `keepalive_timeout`) that find a
//! dead peer. A schema field may override each of the three timeouts
//! ([`CallTimeouts`], `@grpc(timeout:, streamTimeout:, idleTimeout:)`); at most
//! `max_concurrent_streams` calls are in flight, and the next one fails at
//! once with `UPSTREAM_BUSY`. Dropping a call's future or its [`GrpcStream`]
//! resets its HTTP/2 stream (RST_STREAM CANCEL), so the upstream stops work.

pub mod check;
mod codec;
pub(crate) mod executor;
pub mod metadata;
mod request;
pub mod sdl;

pub(crate) use codec::{
    code, encode_message, frame, parse_timeout_header, take_frame, CONTENT_TYPE,
};

use async_lock::{Mutex, Semaphore, SemaphoreGuardArc};
use bytes::{Bytes, BytesMut};
use executor::OwnedExecutor;
use futures_lite::{FutureExt, Stream};
use http_body::Body as _;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor, SerializeOptions};
use serde::Deserialize;
use serde_json::Value;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use terminus_core::{CallTimeouts, FailureKind, UpstreamFailure};

/// How to reach and bound one gRPC upstream (the `[upstreams.grpc.NAME]`
/// table of the config). Durations are written like `"5s"` or `"250ms"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcUpstreamConfig {
    /// `http://host:port` of the upstream (plaintext HTTP/2, "h2c").
    pub endpoint: String,
    /// The .proto files that define the upstream's services, compiled at
    /// start-up.
    pub protos: Vec<PathBuf>,
    /// Import roots for `protos`; when empty, the folder of each file.
    pub includes: Vec<PathBuf>,
    /// Deadline of a unary call (sent as `grpc-timeout`), and the local bound
    /// on a streaming call's wait for its response headers. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub call_timeout: Duration,
    /// Deadline of a whole server stream, sent as `grpc-timeout` and enforced
    /// locally; the stream then fails with `UPSTREAM_TIMEOUT`. Default:
    /// unset, so a subscription lives as long as its client.
    #[serde(with = "humantime_serde")]
    pub stream_timeout: Option<Duration>,
    /// Bound on the TCP connect plus the HTTP/2 handshake. Default 3 s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Calls in flight at once on this upstream; the next fails at once with
    /// `UPSTREAM_BUSY`. Default 1000.
    pub max_concurrent_streams: usize,
    /// Wait after the first failed connection attempt before the next one;
    /// doubled after each further failure. Default 100 ms.
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    /// The most the wait between connection attempts grows to. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Period of HTTP/2 pings that detect a dead upstream. Default 20 s.
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// A ping not answered within this closes the connection, failing its
    /// streams with `UPSTREAM_UNAVAILABLE`. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// When set, a server stream that sends no message for this long fails
    /// with `UPSTREAM_TIMEOUT`. Default: unset, since a subscription may be
    /// quiet for long; the keep-alive still finds a dead upstream.
    #[serde(with = "humantime_serde")]
    pub stream_idle_timeout: Option<Duration>,
}

impl Default for GrpcUpstreamConfig {
    fn default() -> Self {
        GrpcUpstreamConfig {
            endpoint: String::new(),
            protos: Vec::new(),
            includes: Vec::new(),
            call_timeout: Duration::from_secs(10),
            stream_timeout: None,
            connect_timeout: Duration::from_secs(3),
            max_concurrent_streams: 1000,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(10),
            stream_idle_timeout: None,
        }
    }
}

/// A gRPC upstream's configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The endpoint is not an `http://host:port` URL.
    #[error("upstream {upstream}: endpoint {endpoint:?} is not an http://host:port URL: {reason}")]
    Endpoint {
        /// The upstream's name.
        upstream: String,
        /// The configured endpoint.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The .proto files did not compile; protox's message names the file and
    /// line.
    #[error("upstream {upstream}: {message}")]
    Protos {
        /// The upstream's name.
        upstream: String,
        /// protox's diagnostic, with file and line.
        message: String,
    },
    /// A bound in the configuration is out of range.
    #[error("upstream {upstream}: {message}")]
    Limit {
        /// The upstream's name.
        upstream: String,
        /// Which bound, and why.
        message: String,
    },
}

/// Compiles `protos` (with `includes` as import roots, or the folder of each
/// file when empty) into a descriptor pool.
pub fn compile_protos(
    upstream: &str,
    protos: &[PathBuf],
    includes: &[PathBuf],
) -> Result<DescriptorPool, ConfigError> {
    let protos_error = |message: String| ConfigError::Protos {
        upstream: upstream.to_owned(),
        message,
    };
    if protos.is_empty() {
        return Err(protos_error(
            "no .proto files are configured (protos = [...])".into(),
        ));
    }
    let mut roots: Vec<PathBuf> = includes.to_vec();
    if roots.is_empty() {
        for proto in protos {
            let parent = proto
                .parent()
                .filter(|parent| !parent.as_os_str().is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."));
            if !roots.contains(&parent) {
                roots.push(parent);
            }
        }
    }
    let mut compiler = protox::Compiler::new(&roots)
        .map_err(|error| protos_error(describe_protox_error(&error)))?;
    compiler.include_imports(true);
    compiler
        .open_files(protos)
        .map_err(|error| protos_error(describe_protox_error(&error)))?;
    Ok(compiler.descriptor_pool())
}

/// protox's `Debug` form is its one-line diagnostic, `file:line:col: message`
/// for parse and check errors; `Display` alone drops the location.
fn describe_protox_error(error: &protox::Error) -> String {
    let described = format!("{error:?}");
    match error.file() {
        Some(file) if !described.contains(file) => format!("{file}: {described}"),
        _ => described,
    }
}

/// Increments a gauge while alive.
struct Gauge(Arc<AtomicUsize>);

impl Gauge {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Gauge(count.clone())
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The one HTTP/2 connection of an upstream.
struct Connection {
    sender: SendRequest<Full<Bytes>>,
    /// hyper's request dispatcher for this connection; dropping it closes the
    /// connection.
    _driver: smol::Task<()>,
}

/// Connection state, behind an async mutex so concurrent first calls make
/// one connection, not many.
struct ConnectionState {
    current: Option<Connection>,
    /// When the last attempt failed: no new attempt before this.
    retry_at: Option<Instant>,
    /// The wait after the next failure.
    next_backoff: Duration,
    /// Why the last attempt failed.
    last_error: String,
}

/// A gRPC upstream: one lazily made, shared HTTP/2 connection, the
/// descriptors of its services, and its bounds. Share it as `Arc`.
pub struct GrpcUpstream {
    name: String,
    config: GrpcUpstreamConfig,
    host: String,
    port: u16,
    authority: String,
    pool: DescriptorPool,
    state: Mutex<ConnectionState>,
    executor: OwnedExecutor,
    permits: Arc<Semaphore>,
    open_streams: Arc<AtomicUsize>,
    open_connections: Arc<AtomicUsize>,
}

impl std::fmt::Debug for GrpcUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcUpstream")
            .field("name", &self.name)
            .field("endpoint", &self.config.endpoint)
            .finish_non_exhaustive()
    }
}

impl GrpcUpstream {
    /// An upstream whose services are described by the configured .proto
    /// files, compiled now. No connection is made until the first call.
    pub fn new(name: &str, config: &GrpcUpstreamConfig) -> Result<Arc<GrpcUpstream>, ConfigError> {
        let pool = compile_protos(name, &config.protos, &config.includes)?;
        Self::from_descriptors(name, config, pool)
    }

    /// An upstream whose services are described by `pool` (for example the
    /// demo's, from `terminus_proto::FILE_DESCRIPTOR_SET`).
    pub fn from_descriptors(
        name: &str,
        config: &GrpcUpstreamConfig,
        pool: DescriptorPool,
    ) -> Result<Arc<GrpcUpstream>, ConfigError> {
        let endpoint_error = |reason: &str| ConfigError::Endpoint {
            upstream: name.to_owned(),
            endpoint: config.endpoint.clone(),
            reason: reason.to_owned(),
        };
        let uri: http::Uri = config
            .endpoint
            .parse()
            .map_err(|error: http::uri::InvalidUri| endpoint_error(&error.to_string()))?;
        if uri.scheme_str() != Some("http") {
            return Err(endpoint_error(
                "the scheme must be http (TLS is not supported)",
            ));
        }
        let host = uri.host().ok_or_else(|| endpoint_error("no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(80);
        let authority = uri
            .authority()
            .map(|authority| authority.as_str().to_owned())
            .ok_or_else(|| endpoint_error("no host"))?;
        let limit_error = |message: &str| ConfigError::Limit {
            upstream: name.to_owned(),
            message: message.to_owned(),
        };
        if config.max_concurrent_streams == 0 {
            return Err(limit_error("max_concurrent_streams must be at least 1"));
        }
        if config.call_timeout.is_zero()
            || config.connect_timeout.is_zero()
            || config.stream_timeout.is_some_and(|d| d.is_zero())
            || config.stream_idle_timeout.is_some_and(|d| d.is_zero())
        {
            return Err(limit_error(
                "call_timeout and connect_timeout must be above zero",
            ));
        }
        if config.backoff_initial.is_zero() || config.backoff_max < config.backoff_initial {
            return Err(limit_error(
                "backoff_initial must be above zero and at most backoff_max",
            ));
        }
        Ok(Arc::new(GrpcUpstream {
            name: name.to_owned(),
            host,
            port,
            authority,
            pool,
            state: Mutex::new(ConnectionState {
                current: None,
                retry_at: None,
                next_backoff: config.backoff_initial,
                last_error: String::new(),
            }),
            executor: OwnedExecutor::new(),
            permits: Arc::new(Semaphore::new(config.max_concurrent_streams)),
            open_streams: Arc::new(AtomicUsize::new(0)),
            open_connections: Arc::new(AtomicUsize::new(0)),
            config: config.clone(),
        }))
    }

    /// The upstream's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The descriptors of the upstream's services.
    pub fn descriptors(&self) -> &DescriptorPool {
        &self.pool
    }

    /// Calls in flight (unary calls and live streams), for `/metrics`.
    pub fn open_streams(&self) -> usize {
        self.open_streams.load(Ordering::Relaxed)
    }

    /// Open HTTP/2 connections to the upstream: 0 or 1.
    pub fn open_connections(&self) -> usize {
        self.open_connections.load(Ordering::Relaxed)
    }

    /// Calls the unary `method` (`package.Service/Method`) with `request` in
    /// the proto3 JSON mapping, and returns the response message as JSON.
    /// Bounded by `call_timeout`; dropping the future resets the stream.
    pub async fn unary(&self, method: &str, request: Value) -> Result<Value, UpstreamFailure> {
        self.unary_with(method, request, CallTimeouts::default())
            .await
    }

    /// [`GrpcUpstream::unary`] with a field's own deadline (`timeouts.call`)
    /// in place of the upstream's `call_timeout`.
    pub async fn unary_with(
        &self,
        method: &str,
        request: Value,
        timeouts: CallTimeouts,
    ) -> Result<Value, UpstreamFailure> {
        let method = self.method(method, false)?;
        let body = encode_request(&method, request)?;
        let admitted = self.admit()?;
        let deadline = timeouts.call.unwrap_or(self.config.call_timeout);
        let call = async {
            let mut reader = match self.start(&method, body, Some(deadline)).await? {
                Started::Streaming(reader) => reader,
                Started::TrailersOnly => {
                    return Err(self.failure(
                        FailureKind::Failed,
                        "answered a unary call with no response message",
                    ))
                }
            };
            let message = match futures_lite::future::poll_fn(|cx| reader.poll_message(cx)).await {
                Some(message) => message?,
                None => {
                    return Err(self.failure(
                        FailureKind::Failed,
                        "answered a unary call with no response message",
                    ))
                }
            };
            // A unary response ends with its trailers; read them, since an
            // error status may follow the message.
            if let Some(extra) = futures_lite::future::poll_fn(|cx| reader.poll_message(cx)).await {
                extra?;
                return Err(self.failure(
                    FailureKind::Failed,
                    "answered a unary call with more than one message",
                ));
            }
            decode_response(&self.name, &method, &message)
        };
        let timeout = async {
            smol::Timer::after(deadline).await;
            Err(UpstreamFailure::new(
                FailureKind::Timeout,
                format!(
                    "upstream {} did not answer {} within {} ms",
                    self.name,
                    method.full_name(),
                    deadline.as_millis()
                ),
            ))
        };
        let result = call.or(timeout).await;
        drop(admitted);
        result
    }

    /// Starts the server-streaming `method` with `request` in the proto3
    /// JSON mapping. Returns once the upstream has answered with response
    /// headers (bounded locally by `call_timeout`, which is not sent); each
    /// stream item is one response message as JSON. The stream has no
    /// deadline unless `stream_timeout` is configured. Dropping the stream
    /// resets it.
    pub async fn server_streaming(
        self: &Arc<Self>,
        method: &str,
        request: Value,
    ) -> Result<GrpcStream, UpstreamFailure> {
        self.server_streaming_with(method, request, CallTimeouts::default())
            .await
    }

    /// [`GrpcUpstream::server_streaming`] with a field's own bounds, each
    /// `Some` in `timeouts` replacing the upstream's configured one.
    pub async fn server_streaming_with(
        self: &Arc<Self>,
        method: &str,
        request: Value,
        timeouts: CallTimeouts,
    ) -> Result<GrpcStream, UpstreamFailure> {
        let method = self.method(method, true)?;
        let body = encode_request(&method, request)?;
        let admitted = self.admit()?;
        let deadline = timeouts.call.unwrap_or(self.config.call_timeout);
        let lifetime = timeouts.stream.or(self.config.stream_timeout);
        // The whole stream's deadline starts with the call, as the server
        // counts `grpc-timeout` from the request's arrival.
        let ends_at = lifetime.map(|bound| (bound, Instant::now() + bound));
        let start = async {
            let started = self.start(&method, body, lifetime).await?;
            Ok(match started {
                Started::Streaming(reader) => Some(reader),
                Started::TrailersOnly => None,
            })
        };
        let timeout = async {
            smol::Timer::after(deadline).await;
            Err(UpstreamFailure::new(
                FailureKind::Timeout,
                format!(
                    "upstream {} did not start {} within {} ms",
                    self.name,
                    method.full_name(),
                    deadline.as_millis()
                ),
            ))
        };
        let reader = start.or(timeout).await?;
        Ok(GrpcStream {
            reader,
            upstream: self.name.clone(),
            method,
            admitted: Some(admitted),
            idle: timeouts
                .idle
                .or(self.config.stream_idle_timeout)
                .map(|bound| (bound, smol::Timer::after(bound))),
            deadline: ends_at.map(|(bound, at)| (bound, smol::Timer::at(at))),
        })
    }

    /// Finds `method` (`package.Service/Method`, a leading `/` allowed) and
    /// checks it is of the expected kind.
    fn method(&self, method: &str, streaming: bool) -> Result<MethodDescriptor, UpstreamFailure> {
        let path = method.trim_start_matches('/');
        let Some((service_name, method_name)) = path.rsplit_once('/') else {
            return Err(UpstreamFailure::new(
                FailureKind::BadInput,
                format!("gRPC method {method:?} is not of the form package.Service/Method"),
            ));
        };
        let service = self.pool.get_service_by_name(service_name).ok_or_else(|| {
            UpstreamFailure::new(
                FailureKind::BadInput,
                format!("upstream {} has no service {service_name}", self.name),
            )
        })?;
        let found = service
            .methods()
            .find(|candidate| candidate.name() == method_name)
            .ok_or_else(|| {
                UpstreamFailure::new(
                    FailureKind::BadInput,
                    format!(
                        "service {service_name} of upstream {} has no method {method_name}",
                        self.name
                    ),
                )
            })?;
        if found.is_client_streaming() {
            return Err(UpstreamFailure::new(
                FailureKind::BadInput,
                format!("{path} is client-streaming, which Terminus does not call"),
            ));
        }
        if found.is_server_streaming() != streaming {
            let kind = if streaming {
                "unary"
            } else {
                "server-streaming"
            };
            return Err(UpstreamFailure::new(
                FailureKind::BadInput,
                format!("{path} is {kind}, and was called as the other kind"),
            ));
        }
        Ok(found)
    }

    /// Takes a concurrency permit, or fails at once when none is left.
    fn admit(&self) -> Result<Admitted, UpstreamFailure> {
        let permit = self.permits.try_acquire_arc().ok_or_else(|| {
            UpstreamFailure::new(
                FailureKind::Busy,
                format!(
                    "upstream {} is at its concurrency limit ({})",
                    self.name, self.config.max_concurrent_streams
                ),
            )
        })?;
        Ok(Admitted {
            _permit: permit,
            _open: Gauge::new(&self.open_streams),
        })
    }

    fn failure(&self, kind: FailureKind, what: &str) -> UpstreamFailure {
        UpstreamFailure::new(kind, format!("upstream {} {what}", self.name))
    }

    /// Sends the request on the shared connection and reads the response
    /// headers. `grpc_timeout` is the deadline the server is told of, if
    /// any.
    async fn start(
        &self,
        method: &MethodDescriptor,
        body: Bytes,
        grpc_timeout: Option<Duration>,
    ) -> Result<Started, UpstreamFailure> {
        let mut sender = self.sender().await?;
        let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
        let mut request = http::Request::post(format!("http://{}{}", self.authority, path))
            .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
            .header(http::header::TE, "trailers");
        if let Some(deadline) = grpc_timeout {
            request = request.header("grpc-timeout", codec::timeout_header(deadline));
        }
        let request = request
            .header(
                http::header::USER_AGENT,
                concat!("terminus/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(body))
            .map_err(|error| {
                UpstreamFailure::new(
                    FailureKind::BadInput,
                    format!("building the request for {path}: {error}"),
                )
            })?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| self.transport_failure(&error))?;
        if let Some(status) = codec::Status::from_headers(response.headers()) {
            // A trailers-only response: the status came with the headers.
            let status = status.map_err(|message| self.failure(FailureKind::Failed, &message))?;
            if status.code != code::OK {
                return Err(status.into_failure(&self.name));
            }
            return Ok(Started::TrailersOnly);
        }
        if response.status() != http::StatusCode::OK {
            let kind = match response.status().as_u16() {
                429 => FailureKind::Busy,
                502..=504 => FailureKind::Unavailable,
                _ => FailureKind::Failed,
            };
            return Err(self.failure(
                kind,
                &format!("answered with HTTP status {}", response.status()),
            ));
        }
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        if !content_type.starts_with(CONTENT_TYPE) {
            return Err(self.failure(
                FailureKind::Failed,
                &format!("answered with content-type {content_type:?}, not {CONTENT_TYPE}"),
            ));
        }
        Ok(Started::Streaming(ResponseReader {
            body: response.into_body(),
            buffer: BytesMut::new(),
            finished: false,
            upstream: self.name.clone(),
        }))
    }

    fn transport_failure(&self, error: &hyper::Error) -> UpstreamFailure {
        tracing::debug!(upstream = %self.name, %error, "gRPC request failed in transport");
        self.failure(
            FailureKind::Unavailable,
            &format!("is unreachable: {error}"),
        )
    }

    /// The shared connection's request handle, connecting first when there
    /// is no live connection and the backoff allows an attempt.
    async fn sender(&self) -> Result<SendRequest<Full<Bytes>>, UpstreamFailure> {
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
    async fn connect(&self) -> Result<Connection, String> {
        let timeout = self.config.connect_timeout;
        let handshake = async {
            let stream = smol::net::TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|error| format!("connecting to {}: {error}", self.config.endpoint))?;
            // Small gRPC frames must not wait for Nagle's algorithm.
            let _ = stream.set_nodelay(true);
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
        let expired = async {
            smol::Timer::after(timeout).await;
            Err(format!(
                "connecting to {} took longer than {} ms",
                self.config.endpoint,
                timeout.as_millis()
            ))
        };
        let (sender, dispatcher) = handshake.or(expired).await?;
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

impl Drop for GrpcUpstream {
    fn drop(&mut self) {
        // hyper keeps clones of the executor inside the tasks it spawned, so
        // the task list would keep itself alive: cancel the tasks explicitly.
        self.executor.cancel_all_now();
    }
}

/// A call's concurrency permit and its place in `open_streams`.
struct Admitted {
    _permit: SemaphoreGuardArc,
    _open: Gauge,
}

/// What the response headers said.
enum Started {
    /// Messages follow, then trailers.
    Streaming(ResponseReader),
    /// An OK status with no messages (errors are returned as failures).
    TrailersOnly,
}

/// Reads gRPC messages and the final status from a response body.
struct ResponseReader {
    body: Incoming,
    buffer: BytesMut,
    finished: bool,
    upstream: String,
}

impl ResponseReader {
    /// The next message, a failure (after which the reader is finished), or
    /// `None` when the upstream ended the call with an OK status.
    fn poll_message(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, UpstreamFailure>>> {
        loop {
            if self.finished {
                return Poll::Ready(None);
            }
            match take_frame(&mut self.buffer) {
                Ok(Some(message)) => return Poll::Ready(Some(Ok(message))),
                Ok(None) => {}
                Err(message) => {
                    return Poll::Ready(Some(Err(self.finish(FailureKind::Failed, message))))
                }
            }
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.buffer.extend_from_slice(&data),
                    Err(frame) => {
                        let Ok(trailers) = frame.into_trailers() else {
                            continue;
                        };
                        self.finished = true;
                        return Poll::Ready(self.end(codec::Status::from_headers(&trailers)));
                    }
                },
                Some(Err(error)) => {
                    tracing::debug!(upstream = %self.upstream, %error, "gRPC stream failed in transport");
                    let message = format!("upstream {} is unreachable: {error}", self.upstream);
                    return Poll::Ready(Some(Err(self.finish(FailureKind::Unavailable, message))));
                }
                None => {
                    self.finished = true;
                    return Poll::Ready(self.end(None));
                }
            }
        }
    }

    /// The outcome of a call that ended with `status` in its trailers.
    fn end(
        &mut self,
        status: Option<Result<codec::Status, String>>,
    ) -> Option<Result<Bytes, UpstreamFailure>> {
        let failure =
            |message: String| Some(Err(UpstreamFailure::new(FailureKind::Failed, message)));
        match status {
            None => failure(format!(
                "upstream {} ended a call without a grpc-status",
                self.upstream
            )),
            Some(Err(message)) => failure(format!("upstream {}: {message}", self.upstream)),
            Some(Ok(status)) if status.code != code::OK => {
                Some(Err(status.into_failure(&self.upstream)))
            }
            Some(Ok(_)) if !self.buffer.is_empty() => failure(format!(
                "upstream {} ended a call in the middle of a message",
                self.upstream
            )),
            Some(Ok(_)) => None,
        }
    }

    fn finish(&mut self, kind: FailureKind, message: String) -> UpstreamFailure {
        self.finished = true;
        UpstreamFailure::new(kind, message)
    }
}

/// The messages of a server-streaming call, as JSON. Ends after the
/// upstream's OK status, or after one `Err` item. Dropping it resets the
/// HTTP/2 stream and frees its concurrency permit.
pub struct GrpcStream {
    /// `None` when the upstream answered with no messages at all.
    reader: Option<ResponseReader>,
    upstream: String,
    method: MethodDescriptor,
    /// Released as soon as the call has ended on the wire, so a finished
    /// stream that is not dropped yet neither counts nor holds a permit.
    admitted: Option<Admitted>,
    /// The idle bound and its timer, restarted by each message.
    idle: Option<(Duration, smol::Timer)>,
    /// The whole stream's deadline (`stream_timeout`) and its timer.
    deadline: Option<(Duration, smol::Timer)>,
}

impl std::fmt::Debug for GrpcStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcStream")
            .field("upstream", &self.upstream)
            .field("method", &self.method.full_name())
            .finish_non_exhaustive()
    }
}

impl Stream for GrpcStream {
    type Item = Result<Value, UpstreamFailure>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(reader) = this.reader.as_mut() else {
            this.admitted = None;
            return Poll::Ready(None);
        };
        let item = match reader.poll_message(cx) {
            Poll::Ready(item) => {
                if let Some((bound, timer)) = this.idle.as_mut() {
                    timer.set_after(*bound);
                }
                item
            }
            Poll::Pending => {
                let expired = if let Some((bound, timer)) = this.deadline.as_mut() {
                    Pin::new(timer)
                        .poll(cx)
                        .is_ready()
                        .then(|| format!("lasted its deadline of {} ms", bound.as_millis()))
                } else {
                    None
                };
                let expired = expired.or_else(|| {
                    let (bound, timer) = this.idle.as_mut()?;
                    Pin::new(timer)
                        .poll(cx)
                        .is_ready()
                        .then(|| format!("sent nothing for {} ms", bound.as_millis()))
                });
                let Some(what) = expired else {
                    return Poll::Pending;
                };
                let failure = UpstreamFailure::new(
                    FailureKind::Timeout,
                    format!(
                        "stream {} of upstream {} {what}",
                        this.method.full_name(),
                        this.upstream,
                    ),
                );
                this.reader = None;
                this.admitted = None;
                return Poll::Ready(Some(Err(failure)));
            }
        };
        let item = item.map(|message| {
            let message = message?;
            decode_response(&this.upstream, &this.method, &message)
                .inspect_err(|_| reader.finished = true)
        });
        if reader.finished {
            // Dropping the body resets the stream if the upstream has not
            // ended it (a message that did not decode).
            this.reader = None;
            this.admitted = None;
        }
        Poll::Ready(item)
    }
}

/// The request JSON as an encoded message of the method's input type.
fn encode_request(method: &MethodDescriptor, request: Value) -> Result<Bytes, UpstreamFailure> {
    let request = if request.is_null() {
        Value::Object(Default::default())
    } else {
        request
    };
    let message = DynamicMessage::deserialize(method.input(), request).map_err(|error| {
        UpstreamFailure::new(
            FailureKind::BadInput,
            format!(
                "invalid {} for {}: {error}",
                method.input().full_name(),
                method.full_name()
            ),
        )
    })?;
    Ok(frame(&message.encode_to_vec()))
}

/// A response message as proto3 JSON, with default values present.
fn decode_response(
    upstream: &str,
    method: &MethodDescriptor,
    message: &[u8],
) -> Result<Value, UpstreamFailure> {
    let failed = |what: String| {
        UpstreamFailure::new(
            FailureKind::Failed,
            format!(
                "upstream {upstream} sent an invalid {}: {what}",
                method.output().full_name()
            ),
        )
    };
    let decoded = DynamicMessage::decode(method.output(), message)
        .map_err(|error| failed(error.to_string()))?;
    let options = SerializeOptions::new().skip_default_fields(false);
    decoded
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|error| failed(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo_pool() -> DescriptorPool {
        DescriptorPool::decode(terminus_proto::FILE_DESCRIPTOR_SET).unwrap()
    }

    fn config(endpoint: &str) -> GrpcUpstreamConfig {
        GrpcUpstreamConfig {
            endpoint: endpoint.into(),
            ..GrpcUpstreamConfig::default()
        }
    }

    #[test]
    fn config_is_read_with_defaults_and_durations() {
        let config: GrpcUpstreamConfig = serde_json::from_value(
            serde_json::json!({"endpoint": "http://127.0.0.1:1", "call_timeout": "250ms"}),
        )
        .unwrap();
        assert_eq!(config.call_timeout, Duration::from_millis(250));
        assert_eq!(config.connect_timeout, Duration::from_secs(3));
        assert_eq!(config.stream_idle_timeout, None);
        let config: GrpcUpstreamConfig =
            serde_json::from_value(serde_json::json!({"stream_idle_timeout": "1m 30s"})).unwrap();
        assert_eq!(config.stream_idle_timeout, Some(Duration::from_secs(90)));
        let unknown =
            serde_json::from_value::<GrpcUpstreamConfig>(serde_json::json!({"endpont": "x"}));
        assert!(unknown.unwrap_err().to_string().contains("endpont"));
    }

    #[test]
    fn bad_endpoints_are_refused_with_the_reason() {
        for endpoint in ["https://x:1", "not a url", ""] {
            let error =
                GrpcUpstream::from_descriptors("demo", &config(endpoint), demo_pool()).unwrap_err();
            assert!(error.to_string().contains("upstream demo"), "{error}");
        }
    }

    #[test]
    fn requests_are_checked_against_the_descriptors() {
        let upstream =
            GrpcUpstream::from_descriptors("demo", &config("http://127.0.0.1:9"), demo_pool())
                .unwrap();
        let bad = |method: &str, request: Value, streaming: bool| {
            smol::block_on(async {
                if streaming {
                    upstream
                        .server_streaming(method, request)
                        .await
                        .unwrap_err()
                } else {
                    upstream.unary(method, request).await.unwrap_err()
                }
            })
        };
        let failure = bad("terminus.demo.v1.Demo/Nope", Value::Null, false);
        assert_eq!(failure.kind, FailureKind::BadInput);
        assert!(
            failure.message.contains("no method Nope"),
            "{}",
            failure.message
        );
        let failure = bad(
            "terminus.demo.v1.Demo/Hello",
            serde_json::json!({"nmae": "x"}),
            false,
        );
        assert_eq!(failure.kind, FailureKind::BadInput);
        assert!(failure.message.contains("nmae"), "{}", failure.message);
        let failure = bad("terminus.demo.v1.Demo/Ticks", serde_json::json!({}), false);
        assert_eq!(failure.kind, FailureKind::BadInput);
        let failure = bad(
            "terminus.demo.v1.Demo/Ticks",
            serde_json::json!({"everyMs": "soon"}),
            true,
        );
        assert_eq!(failure.kind, FailureKind::BadInput);
        let failure = bad("Hello", Value::Null, false);
        assert_eq!(failure.kind, FailureKind::BadInput);
        assert_eq!(upstream.open_streams(), 0);
        assert_eq!(upstream.open_connections(), 0);
    }

    #[test]
    fn refused_connections_fail_unavailable_then_back_off() {
        // Bind then drop a listener to find a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let upstream = GrpcUpstream::from_descriptors(
            "demo",
            &config(&format!("http://127.0.0.1:{port}")),
            demo_pool(),
        )
        .unwrap();
        smol::block_on(async {
            let first = upstream
                .unary("terminus.demo.v1.Demo/Hello", Value::Null)
                .await
                .unwrap_err();
            assert_eq!(first.kind, FailureKind::Unavailable);
            let second = upstream
                .unary("terminus.demo.v1.Demo/Hello", Value::Null)
                .await
                .unwrap_err();
            assert_eq!(second.kind, FailureKind::Unavailable);
            assert!(
                second.message.contains("next connection attempt"),
                "{}",
                second.message
            );
        });
        assert_eq!(upstream.open_streams(), 0);
    }

    #[test]
    fn proto_errors_name_the_file_and_line() {
        let dir = std::env::temp_dir().join(format!("terminus-proto-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("broken.proto");
        std::fs::write(
            &file,
            "syntax = \"proto3\";\n\nmessage A {\n  strin name = 1;\n}\n",
        )
        .unwrap();
        let error = compile_protos("demo", &[file], &[])
            .unwrap_err()
            .to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(error.contains("broken.proto:4:"), "{error}");
    }
}
