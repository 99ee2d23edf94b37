//! The configuration of one gRPC upstream (`[grpc.<name>]`, docs/config.md)
//! and the compiling of its .proto files.

use prost_reflect::DescriptorPool;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// How to reach and bound one gRPC upstream (the `[upstreams.grpc.NAME]`
/// table of the config). Durations are written like `"5s"` or `"250ms"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcUpstreamConfig {
    /// `http://host:port` of the upstream (plaintext HTTP/2, "h2c"), or
    /// `https://host[:port]` for HTTP/2 over TLS (ALPN `h2`; port 443 by
    /// default), verified against the system roots or `tls.ca_file`.
    pub endpoint: String,
    /// TLS of an `https://` endpoint (`[grpc.<name>.tls]`): CA bundle,
    /// client certificate for mutual TLS, server name override.
    pub tls: crate::tls::ClientTlsConfig,
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
    /// Calls in flight at once on this upstream, over all its connections;
    /// the next fails at once with `UPSTREAM_BUSY`. Default 16384.
    pub max_concurrent_streams: usize,
    /// HTTP/2 connections the upstream's calls are spread over, opened as
    /// the streams need them. Default 16.
    pub max_connections: usize,
    /// Streams one connection carries at most (fewer when the server's
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` is lower). Default 1024.
    pub max_streams_per_connection: usize,
    /// The HTTP/2 flow-control window of each stream, in bytes: the most a
    /// stream whose reader has stopped holds before the server must wait.
    /// Default 4096. `max_streams_per_connection * stream_window_bytes`
    /// is at most [`MAX_HELD_BYTES_PER_CONNECTION`].
    pub stream_window_bytes: u32,
    /// Streams a connection remembers after resetting them (a cancelled
    /// call), so that the messages the server had already sent on them are
    /// dropped quietly; a stream reset beyond this number is forgotten at
    /// once, and each later DATA frame of it costs an RST_STREAM both
    /// ways. Default 1024.
    pub max_remembered_resets: usize,
    /// How long a reset stream is remembered (see `max_remembered_resets`).
    /// Default 1 s.
    #[serde(with = "humantime_serde")]
    pub remember_resets_for: Duration,
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
    /// Static metadata sent on every call: name -> value (docs/config.md,
    /// "Metadata"). Default: none.
    pub metadata: BTreeMap<String, String>,
    /// HTTP request headers (of a POST, or of a WebSocket's upgrade
    /// request) forwarded as metadata of the same name. Default: none.
    pub forward_headers: Vec<String>,
    /// `connection_init` payload fields forwarded as metadata: field ->
    /// metadata name. Default: none.
    pub forward_init: BTreeMap<String, String>,
    /// Any request-context value forwarded as metadata: `source:name` ->
    /// metadata name, the sources being `header:`, `init:` and `claim:`
    /// (a verified token's claim). Default: none.
    pub forward_context: BTreeMap<String, String>,
}

impl Default for GrpcUpstreamConfig {
    fn default() -> Self {
        GrpcUpstreamConfig {
            endpoint: String::new(),
            tls: crate::tls::ClientTlsConfig::default(),
            protos: Vec::new(),
            includes: Vec::new(),
            call_timeout: Duration::from_secs(10),
            stream_timeout: None,
            connect_timeout: Duration::from_secs(3),
            max_concurrent_streams: 16_384,
            max_connections: 16,
            max_streams_per_connection: 1024,
            stream_window_bytes: 4096,
            max_remembered_resets: 1024,
            remember_resets_for: Duration::from_secs(1),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(10),
            stream_idle_timeout: None,
            metadata: BTreeMap::new(),
            forward_headers: Vec::new(),
            forward_init: BTreeMap::new(),
            forward_context: BTreeMap::new(),
        }
    }
}

/// The most payload the streams of one connection may hold unread
/// (`max_streams_per_connection * stream_window_bytes`): 4,210,752 bytes.
///
/// h2 (0.4.20, `proto/streams/counts.rs`) charges every received DATA frame
/// shorter than 256 bytes `256 - len` against a connection-wide budget until
/// the application reads it, and sends `GOAWAY ENHANCE_YOUR_CALM
/// "too_many_data_frames"` when the budget is spent. hyper does not expose
/// the budget; h2 sets it to half the connection window. The connection
/// window is therefore the largest HTTP/2 allows (2^31 - 1), giving a budget
/// of 1,073,741,823, and the unread payload is bounded by the stream windows
/// so that even one-byte frames (charged 255 each) cannot spend it:
/// 1,073,741,823 / 255 = 4,210,752.
pub const MAX_HELD_BYTES_PER_CONNECTION: u64 = ((1 << 31) - 1) / 2 / 255;

/// A gRPC upstream's configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The endpoint is not an `http://` or `https://` `host:port` URL.
    #[error(
        "upstream {upstream}: endpoint {endpoint:?} is not an http(s)://host:port URL: {reason}"
    )]
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
    /// A metadata name or value cannot be sent (docs/config.md, "Metadata").
    #[error("{message}")]
    Metadata {
        /// The upstream's name.
        upstream: String,
        /// What is wrong, naming the upstream.
        message: String,
    },
    /// The TLS settings cannot be used (a CA or certificate file).
    #[error("upstream {upstream}: tls: {message}")]
    Tls {
        /// The upstream's name.
        upstream: String,
        /// What is wrong, naming the file.
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
