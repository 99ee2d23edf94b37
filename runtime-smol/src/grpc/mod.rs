//! gRPC upstreams: a client on smol over a bounded set of shared HTTP/2
//! connections per endpoint.
//!
//! Every call of an upstream is a stream on one of its HTTP/2 connections
//! (hyper's `client::conn::http2`): at most `max_connections` of them, each
//! carrying up to `max_streams_per_connection` streams (or the server's
//! `SETTINGS_MAX_CONCURRENT_STREAMS`, when lower), opened as the streams need
//! them and replaced after they die, with exponential backoff between failed
//! attempts (connection.rs). A stream whose reader stops is back-pressured
//! by its own flow-control window and never fails its connection. Messages are dynamic: the request JSON (proto3 JSON
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
//! once with `UPSTREAM_BUSY`, as it does when every connection is full. Dropping a call's future or its [`GrpcStream`]
//! resets its HTTP/2 stream (RST_STREAM CANCEL), so the upstream stops work.

mod call;
pub mod check;
mod codec;
mod config;
mod connection;
pub(crate) mod executor;
mod json;
pub mod metadata;
mod metrics;
mod request;
pub mod sdl;

pub use call::GrpcStream;
pub(crate) use codec::{
    code, encode_message, frame, parse_timeout_header, take_frame, CONTENT_TYPE,
};
pub use config::{compile_protos, ConfigError, GrpcUpstreamConfig, MAX_HELD_BYTES_PER_CONNECTION};
pub use metrics::write_prometheus;

use async_lock::Semaphore;
use connection::Pool;
use executor::OwnedExecutor;
use prost_reflect::DescriptorPool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Increments a gauge while alive.
pub(super) struct Gauge(Arc<AtomicUsize>);

impl Gauge {
    pub(super) fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Gauge(count.clone())
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A gRPC upstream: its lazily made, shared HTTP/2 connections, the
/// descriptors of its services, and its bounds. Share it as `Arc`.
pub struct GrpcUpstream {
    name: String,
    config: GrpcUpstreamConfig,
    host: String,
    port: u16,
    authority: String,
    /// `http` or `https`, for the requests' `:scheme`.
    scheme: &'static str,
    /// The TLS client and the name to verify, for `https://` endpoints.
    tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls_pki_types::ServerName<'static>,
    )>,
    pool: DescriptorPool,
    /// The connections and the reconnect backoff (connection.rs).
    connection_pool: Arc<std::sync::Mutex<Pool>>,
    /// Told when a connection attempt ends (`Pool::connecting` counted down)
    /// and when a connection's stream limit changes (the server's
    /// SETTINGS): the calls that found every connection full while
    /// attempts were under way all look again at once (connection.rs).
    connected: Arc<event_listener::Event>,
    executor: OwnedExecutor,
    permits: Arc<Semaphore>,
    open_streams: Arc<AtomicUsize>,
    open_connections: Arc<AtomicUsize>,
    /// The metadata sent on each call (grpc/metadata.rs).
    metadata: metadata::UpstreamMetadata,
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
        let scheme = match uri.scheme_str() {
            Some("http") => "http",
            Some("https") => "https",
            _ => return Err(endpoint_error("the scheme must be http or https")),
        };
        let host = uri.host().ok_or_else(|| endpoint_error("no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let tls_error = |message: String| ConfigError::Tls {
            upstream: name.to_owned(),
            message,
        };
        let tls = if scheme == "https" {
            let client = crate::tls::client_config(&config.tls, crate::tls::Verify::Full, &[b"h2"])
                .map_err(tls_error)?;
            let server = crate::tls::server_name(&config.tls, &host).map_err(tls_error)?;
            Some((client, server))
        } else {
            if config.tls != crate::tls::ClientTlsConfig::default() {
                return Err(tls_error(
                    "[tls] is set but the endpoint is http://; use https://".to_owned(),
                ));
            }
            None
        };
        let authority = uri
            .authority()
            .map(|authority| authority.as_str().to_owned())
            .ok_or_else(|| endpoint_error("no host"))?;
        let limit_error = |message: &str| ConfigError::Limit {
            upstream: name.to_owned(),
            message: message.to_owned(),
        };
        if config.max_concurrent_streams == 0
            || config.max_connections == 0
            || config.max_streams_per_connection == 0
        {
            return Err(limit_error(
                "max_concurrent_streams, max_connections and max_streams_per_connection must be at least 1",
            ));
        }
        if config.stream_window_bytes < 64 {
            return Err(limit_error("stream_window_bytes must be at least 64"));
        }
        let held = (config.max_streams_per_connection as u64)
            .saturating_mul(u64::from(config.stream_window_bytes));
        if held > MAX_HELD_BYTES_PER_CONNECTION {
            return Err(limit_error(&format!(
                "max_streams_per_connection ({}) * stream_window_bytes ({}) is {held}, above \
                 {MAX_HELD_BYTES_PER_CONNECTION}: h2 would fail the whole connection \
                 (GOAWAY ENHANCE_YOUR_CALM) when that many bytes of small frames wait \
                 unread (docs/config.md)",
                config.max_streams_per_connection, config.stream_window_bytes
            )));
        }
        if config.call_timeout.is_zero()
            || config.connect_timeout.is_zero()
            || config.stream_timeout.is_some_and(|d| d.is_zero())
            || config.stream_idle_timeout.is_some_and(|d| d.is_zero())
        {
            return Err(limit_error(
                "call_timeout, connect_timeout, stream_timeout and stream_idle_timeout must be above zero",
            ));
        }
        if config.backoff_initial.is_zero() || config.backoff_max < config.backoff_initial {
            return Err(limit_error(
                "backoff_initial must be above zero and at most backoff_max",
            ));
        }
        let metadata = metadata::UpstreamMetadata::new(
            name,
            &config.metadata,
            &config.forward_headers,
            &config.forward_init,
            &config.forward_context,
        )
        .map_err(|message| ConfigError::Metadata {
            upstream: name.to_owned(),
            message,
        })?;
        Ok(Arc::new(GrpcUpstream {
            metadata,
            name: name.to_owned(),
            host,
            port,
            authority,
            scheme,
            tls,
            pool,
            connection_pool: Arc::new(std::sync::Mutex::new(Pool::default())),
            connected: Arc::new(event_listener::Event::new()),
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

    /// The request-context keys (`header:x`, `init:y`, `claim:z`) this
    /// upstream forwards as metadata.
    pub fn context_keys(&self) -> impl Iterator<Item = &str> {
        self.metadata.context_keys()
    }

    /// Calls in flight (unary calls and live streams), for `/metrics`.
    pub fn open_streams(&self) -> usize {
        self.open_streams.load(Ordering::Relaxed)
    }

    /// Open HTTP/2 connections to the upstream: at most `max_connections`.
    pub fn open_connections(&self) -> usize {
        self.open_connections.load(Ordering::Relaxed)
    }

    /// The pool's numbers, for `/metrics`: each pooled connection's id,
    /// streams and stream limit, and the counters.
    pub fn pool_stats(&self) -> PoolStats {
        let pool = self.connection_pool();
        let ours = self.config.max_streams_per_connection;
        PoolStats {
            connections: pool
                .connections
                .iter()
                .filter(|connection| connection.is_open())
                .map(|connection| ConnectionStats {
                    id: connection.id,
                    streams: connection.streams.load(Ordering::Relaxed),
                    stream_limit: connection.stream_limit(ours),
                })
                .collect(),
            max_connections: self.config.max_connections,
            streams: self.open_streams(),
            max_streams: self.config.max_concurrent_streams,
            opened_total: pool.opened_total,
            busy_total: pool.busy_total,
            connecting: pool.connecting,
            waiting: pool.waiting,
        }
    }
}

/// One pooled connection, for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionStats {
    /// The connection's number within its upstream (1 for the first made).
    pub id: u64,
    /// Streams this gateway has on it.
    pub streams: usize,
    /// The most it may carry now: `max_streams_per_connection`, or the
    /// server's `SETTINGS_MAX_CONCURRENT_STREAMS` when lower.
    pub stream_limit: usize,
}

/// An upstream's connection pool, for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStats {
    /// The pooled connections that are open.
    pub connections: Vec<ConnectionStats>,
    /// `max_connections`.
    pub max_connections: usize,
    /// Calls in flight (unary calls and live streams).
    pub streams: usize,
    /// `max_concurrent_streams`.
    pub max_streams: usize,
    /// Connections opened since start.
    pub opened_total: u64,
    /// Calls refused with `UPSTREAM_BUSY`: `max_concurrent_streams` reached,
    /// or every connection full.
    pub busy_total: u64,
    /// Connection attempts under way.
    pub connecting: usize,
    /// Calls waiting for an attempt under way to give them room.
    pub waiting: usize,
}

impl Drop for GrpcUpstream {
    fn drop(&mut self) {
        // hyper keeps clones of the executor inside the tasks it spawned, so
        // the task list would keep itself alive: cancel the tasks explicitly.
        self.executor.cancel_all_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::time::Duration;
    use terminus_core::FailureKind;

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
        for endpoint in ["ftp://x:1", "not a url", ""] {
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
