//! The gateway's TOML configuration (`terminus serve --config FILE`).
//!
//! Every bound the gateway enforces is here with a default; `docs/config.md`
//! lists them all. Errors name the file, line and column of the offending
//! key, so a typo in a 200-line config is found at once. Relative paths
//! (the schema, .proto files and their include directories) are resolved
//! against the directory of the config file, not the working directory.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use terminus_core::graphql::persisted::{Manifest, PersistedConfig, PersistedMode};
use terminus_core::share::LagPolicy;

pub use crate::upstream_config::{GrpcUpstreamConfig, MysqlDbConfig};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP/WebSocket listener binds (`127.0.0.1:8080`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The GraphQL SDL file that maps fields to upstreams.
    pub schema: PathBuf,
    /// Size and count bounds.
    #[serde(default)]
    pub limits: Limits,
    /// Time bounds.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// TLS on the listener (`https://`, `wss://`); absent: plaintext.
    #[serde(default)]
    pub tls: Option<crate::tls::ListenerTlsConfig>,
    /// How `connection_init` and POST requests are authenticated.
    #[serde(default)]
    pub auth: AuthConfig,
    /// The `/admin` page.
    #[serde(default)]
    pub admin: AdminConfig,
    /// gRPC upstreams by the name the schema uses in `@grpc(upstream: ...)`.
    #[serde(default)]
    pub grpc: BTreeMap<String, GrpcUpstreamConfig>,
    /// MySQL databases by the name the schema uses in `@sql(db: ...)`.
    #[serde(default)]
    pub mysql: BTreeMap<String, MysqlDbConfig>,
    /// Persisted queries: APQ and trusted documents (docs/transports.md).
    #[serde(default)]
    pub persisted_queries: PersistedQueriesConfig,
    /// Test hooks; all off by default and never needed in production.
    #[serde(default)]
    pub testing: TestingConfig,
    /// The executor: how many threads run the gateway's tasks.
    #[serde(default)]
    pub runtime: RuntimeConfig,
}

/// `[runtime]`: the executor that runs every task of the process
/// (runtime-smol/src/run.rs, `Runtime`). Read at start-up only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Threads running the executor, 1 to [`MAX_RUNTIME_THREADS`].
    #[serde(deserialize_with = "runtime_threads")]
    pub threads: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            threads: default_runtime_threads(),
        }
    }
}

/// The most executor threads `runtime.threads` (and `--threads`) accepts.
pub const MAX_RUNTIME_THREADS: usize = 256;

/// The default of `runtime.threads`: 1. Measured against 2 on the 2-CPU
/// bench machine (docs/BENCHMARKS.md, "Executor threads"): a second thread
/// cost about half as much server CPU again per delivered result, and gave
/// no measurable gain in lateness or reclaim there.
pub fn default_runtime_threads() -> usize {
    1
}

/// Checks an executor thread count: 1 to [`MAX_RUNTIME_THREADS`].
pub fn check_runtime_threads(threads: usize) -> Result<usize, String> {
    if (1..=MAX_RUNTIME_THREADS).contains(&threads) {
        Ok(threads)
    } else {
        Err(format!(
            "runtime.threads (--threads) must be 1 to {MAX_RUNTIME_THREADS}, not {threads}"
        ))
    }
}

/// `runtime.threads`, located at its value when out of range.
fn runtime_threads<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    check_runtime_threads(usize::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// `[persisted_queries]`: Apollo's automatic persisted queries and trusted
/// documents, the rule of core/src/graphql/persisted.rs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PersistedQueriesConfig {
    /// `"automatic"` (default), `"trusted"` or `"off"`.
    pub mode: PersistedMode,
    /// The manifest file: the allow-list in `"trusted"` mode (required
    /// there), pre-registered documents in `"automatic"` mode.
    pub manifest: Option<PathBuf>,
    /// Most documents in the APQ cache (0: nothing is registered).
    pub max_entries: usize,
    /// Most bytes (hashes plus documents) in the APQ cache.
    pub max_bytes: usize,
    /// The parsed manifest, read by `Config::parse`.
    #[serde(skip)]
    pub loaded: Option<Arc<Manifest>>,
}

impl Default for PersistedQueriesConfig {
    fn default() -> Self {
        let core = PersistedConfig::default();
        PersistedQueriesConfig {
            mode: core.mode,
            manifest: None,
            max_entries: core.max_entries,
            max_bytes: core.max_bytes,
            loaded: None,
        }
    }
}

impl PersistedQueriesConfig {
    /// The core store's settings.
    pub fn core(&self) -> PersistedConfig {
        PersistedConfig {
            mode: self.mode,
            max_entries: self.max_entries,
            max_bytes: self.max_bytes,
        }
    }

    /// Reads and parses `manifest` (if set) into `loaded`; checks that
    /// `"trusted"` mode has one. Errors name the manifest's line and column.
    pub fn load_manifest(&mut self, config_path: &Path) -> Result<(), ConfigError> {
        let Some(file) = &self.manifest else {
            if self.mode == PersistedMode::Trusted {
                return Err(ConfigError::in_file(
                    config_path,
                    "persisted_queries.mode = \"trusted\" needs persisted_queries.manifest",
                ));
            }
            return Ok(());
        };
        let text = std::fs::read_to_string(file).map_err(|e| {
            ConfigError::in_file(
                config_path,
                format!("persisted_queries.manifest {}: {e}", file.display()),
            )
        })?;
        let manifest = Manifest::parse(&text).map_err(|e| ConfigError {
            file: file.clone(),
            position: Some((e.line, e.column)),
            message: format!("persisted query manifest: {}", e.message),
        })?;
        self.loaded = Some(Arc::new(manifest));
        Ok(())
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

/// Size and count bounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// WebSocket connections served at once; more are refused with HTTP 503.
    pub max_connections: usize,
    /// Largest WebSocket message accepted; larger closes the socket with 1009.
    pub max_frame_bytes: usize,
    /// Live operations per WebSocket connection.
    pub max_operations_per_connection: usize,
    /// Bytes of frames for a client queued or handed to the WebSocket
    /// layer and not yet flushed to its socket (1013 beyond).
    pub max_outbound_bytes: usize,
    /// The kernel send buffer of each accepted socket (`SO_SNDBUF`), so
    /// that what a client does not read waits in the gateway, where
    /// `max_outbound_bytes` counts it; 0 leaves the kernel's autotuning.
    pub socket_send_buffer_bytes: usize,
    /// Largest HTTP POST body accepted on `/graphql` (413 beyond).
    pub max_http_body_bytes: usize,
    /// Upstream events an operation may queue towards its connection before
    /// it waits (backpressure from a slow client reaches the upstream).
    pub operation_queue: usize,
    /// Items of each `@shared` stream kept for its subscribers: how far
    /// behind one may fall before it lags and `shared_lag` decides what
    /// then (runtime-smol/src/share.rs).
    pub shared_subscriber_queue: usize,
    /// What a lagging `@shared` subscriber gets: `"skip"` (the default:
    /// it skips the oldest items and goes on, counted in
    /// `terminus_shared_skipped_total` and told in the next result's
    /// `extensions.skipped`) or `"close"` (it ends with `SLOW_SUBSCRIBER`).
    #[serde(deserialize_with = "lag_policy")]
    pub shared_lag: LagPolicy,
    /// Deepest selection-set nesting of a GraphQL document.
    pub max_query_depth: usize,
    /// Most field selections in a document, fragments expanded.
    pub max_query_fields: usize,
    /// Most aliased fields in a document.
    pub max_query_aliases: usize,
    /// Largest GraphQL document in bytes.
    pub max_query_bytes: usize,
    /// Highest cost of an operation: every field 1, times the items each
    /// list above it may hold (`core/src/graphql/cost.rs`).
    pub max_query_cost: usize,
    /// Items assumed for a list answered by an upstream, in the cost rule.
    pub query_list_cost: usize,
    /// Most `__schema` selections in one operation, aliases counted.
    pub max_query_schema_fields: usize,
    /// Largest result of one operation in bytes of JSON, charged while it
    /// is built; a larger one ends the operation with `RESPONSE_TOO_LARGE`.
    pub max_response_bytes: usize,
    /// Largest value of an argument bound to SQL `LIMIT` / `OFFSET`.
    pub max_sql_row_count: usize,
    /// Streaming HTTP responses (GraphQL over SSE and multipart
    /// subscriptions, docs/transports.md) served at once; more are refused
    /// with HTTP 503.
    pub max_http_streams: usize,
    /// Whether `/readyz` answers 503 while `max_connections` WebSocket
    /// connections are open (the balancer then sends new clients to a
    /// sibling).
    pub unready_at_capacity: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            max_frame_bytes: 64 * 1024,
            max_operations_per_connection: 100,
            max_outbound_bytes: 1024 * 1024,
            socket_send_buffer_bytes: 256 * 1024,
            max_http_body_bytes: 64 * 1024,
            operation_queue: 16,
            shared_subscriber_queue: crate::share::DEFAULT_SUBSCRIBER_QUEUE,
            shared_lag: LagPolicy::default(),
            max_query_depth: 20,
            max_query_fields: 1000,
            max_query_aliases: 50,
            max_query_bytes: 64 * 1024,
            max_query_cost: 100_000,
            query_list_cost: 10,
            max_query_schema_fields: 1,
            max_response_bytes: 1024 * 1024,
            max_sql_row_count: 10_000,
            max_http_streams: 10_000,
            unready_at_capacity: true,
        }
    }
}

/// `limits.shared_lag`: `"skip"` or `"close"`.
fn lag_policy<'de, D: serde::Deserializer<'de>>(d: D) -> Result<LagPolicy, D::Error> {
    let name = String::deserialize(d)?;
    LagPolicy::from_name(&name).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "limits.shared_lag: unknown policy {name:?} (expected \"skip\" or \"close\")"
        ))
    })
}

/// Time bounds, written as humantime strings (`"3s"`, `"250ms"`, `"1m"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// `connection_init` must arrive within this (close 4408).
    #[serde(with = "humantime_serde")]
    pub init: Duration,
    /// Period of WebSocket transport pings; `"0s"` disables them.
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// No pong within this after a ping closes the connection.
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// Period of the legacy protocol's `ka` messages after the first one
    /// (which follows the ack); `"0s"` disables the periodic ones.
    #[serde(with = "humantime_serde")]
    pub legacy_ka_interval: Duration,
    /// One write to a client socket; a client that reads nothing for this
    /// long is treated as gone.
    #[serde(with = "humantime_serde")]
    pub write: Duration,
    /// After the gateway sends a close frame, how long it waits for the
    /// client's close frame before dropping the socket.
    #[serde(with = "humantime_serde")]
    pub close_linger: Duration,
    /// Reading an HTTP request's headers.
    #[serde(with = "humantime_serde")]
    pub http_header_read: Duration,
    /// A whole HTTP POST GraphQL request, execution included.
    #[serde(with = "humantime_serde")]
    pub http_request: Duration,
    /// Drain on SIGTERM/SIGINT: live connections get this long to close
    /// before the gateway drops them and exits.
    #[serde(with = "humantime_serde")]
    pub drain: Duration,
    /// Drain: how long `/readyz` answers 503 before the connections are
    /// closed with 1001 (at least the balancer's check interval times its
    /// fall count, so it stops sending new clients first); `"0s"` closes
    /// them at once. The `drain` bound counts from its end.
    #[serde(with = "humantime_serde")]
    pub drain_unready: Duration,
    /// Period of keep-alives on a streaming HTTP response: an SSE comment
    /// (`:`) or an empty multipart part (`{}`), docs/transports.md.
    #[serde(with = "humantime_serde")]
    pub stream_keepalive: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            init: Duration::from_secs(3),
            keepalive_interval: Duration::from_secs(15),
            keepalive_timeout: Duration::from_secs(10),
            legacy_ka_interval: Duration::from_secs(15),
            write: Duration::from_secs(10),
            close_linger: Duration::from_secs(1),
            http_header_read: Duration::from_secs(10),
            http_request: Duration::from_secs(30),
            drain: Duration::from_secs(10),
            drain_unready: Duration::ZERO,
            stream_keepalive: Duration::from_secs(12),
        }
    }
}

/// How `connection_init` is authenticated.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// When non-empty, `connection_init` must carry `{"token": "<one of these>"}`;
    /// anything else closes the connection with 4403 (graphql-transport-ws)
    /// or answers `connection_error` (graphql-ws). Empty accepts every init.
    pub tokens: Vec<String>,
    /// JWT authentication (`[auth.jwt]`, see docs/security.md). When set,
    /// `tokens` must be empty.
    pub jwt: Option<crate::jwt::JwtConfig>,
    /// When non-empty, a WebSocket upgrade that carries an `Origin` header
    /// must name one of these origins exactly (`https://app.example.com`,
    /// scheme, host and port as browsers send them), else HTTP 403. An
    /// upgrade without `Origin` (not from a browser) is not affected.
    /// Empty (the default) accepts any origin.
    pub allowed_origins: Vec<String>,
}

/// The `/admin` page.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// How much history the page's chart keeps (sampled once a second).
    #[serde(with = "humantime_serde")]
    pub history: Duration,
    /// A separate address for `/admin`, `/admin/state` and `/metrics` (with
    /// `/healthz` and `/readyz`). When set, the main listener no longer
    /// serves them. Default: unset.
    pub listen: Option<SocketAddr>,
    /// When set, `/admin`, `/admin/state` and `/metrics` need
    /// `Authorization: Bearer <token>` or `?token=<token>`.
    pub token: Option<String>,
    /// A file holding the token (trimmed); read at start-up.
    pub token_file: Option<PathBuf>,
    /// Connections served at once on `listen`. Default 64.
    pub max_connections: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            history: Duration::from_secs(300),
            listen: None,
            token: None,
            token_file: None,
            max_connections: 64,
        }
    }
}

impl AdminConfig {
    /// Whether the main listener may serve the admin surface without a
    /// token: only when it is bound to loopback and no separate admin
    /// listener is configured. A non-loopback listen address with neither
    /// `admin.listen` nor `admin.token` answers 403 (docs/security.md).
    pub fn open_on_main(&self, main: SocketAddr) -> bool {
        self.listen.is_none() && (self.token.is_some() || main.ip().is_loopback())
    }
}

/// Test hooks. Off by default; a production config never sets them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TestingConfig {
    /// When true, an operation whose `operationName` is `__terminusPanic`
    /// makes its connection's task panic, and one named
    /// `__terminusPanicOperation` makes its operation's task panic. This
    /// exists to prove that a panic is confined to one connection (closed
    /// with 4500) or one operation (ended with an `INTERNAL_SERVER_ERROR`
    /// error), counted in `terminus_panics_total`, while the gateway keeps
    /// serving.
    pub panic_trigger: bool,
}

/// The `operationName` that makes its connection's task panic when
/// `testing.panic_trigger` is on.
pub const PANIC_TRIGGER_OPERATION: &str = "__terminusPanic";

/// The `operationName` that makes its operation's task (not the
/// connection's) panic when `testing.panic_trigger` is on.
pub const PANIC_TRIGGER_OPERATION_TASK: &str = "__terminusPanicOperation";

/// A configuration error, located in its file when possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the error is in.
    pub file: PathBuf,
    /// 1-based line and column, when the error points into the file.
    pub position: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => {
                write!(f, "{}:{line}:{col}: {}", self.file.display(), self.message)
            }
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// An error about `file` as a whole.
    pub fn in_file(file: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            position: None,
            message: message.into(),
        }
    }
}

/// 1-based line and column of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary_compat(offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// `str::floor_char_boundary` is unstable; this is the same on stable.
trait FloorCharBoundary {
    fn floor_char_boundary_compat(&self, index: usize) -> usize;
}

impl FloorCharBoundary for str {
    fn floor_char_boundary_compat(&self, mut index: usize) -> usize {
        while index > 0 && !self.is_char_boundary(index) {
            index -= 1;
        }
        index
    }
}

impl Config {
    /// Reads and parses the config at `path`, then resolves its relative
    /// paths against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::in_file(path, format!("cannot read the config: {e}")))?;
        Config::parse(&text, path)
    }

    /// Parses `text` as the config file `path` (used for error positions and
    /// for resolving relative paths).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            position: e.span().map(|span| line_col(text, span.start)),
            message: e.message().trim().to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        config.resolve_paths(base);
        if let Some(file) = config.admin.token_file.clone() {
            if config.admin.token.is_some() {
                return Err(ConfigError::in_file(
                    path,
                    "admin.token and admin.token_file cannot both be set",
                ));
            }
            let token = std::fs::read_to_string(&file).map_err(|e| {
                ConfigError::in_file(path, format!("admin.token_file {}: {e}", file.display()))
            })?;
            config.admin.token = Some(token.trim().to_owned());
        }
        config.validate(path)?;
        config.check_mysql(text, path)?;
        config.persisted_queries.load_manifest(path)?;
        Ok(config)
    }

    /// Checks each `[mysql.<name>]` (url, zero bounds) as the pool would at
    /// start-up, located at the section's header line.
    fn check_mysql(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        for (name, db) in &self.mysql {
            if let Err(message) = db.check() {
                let header = [format!("[mysql.{name}]"), format!("[mysql.\"{name}\"]")];
                let position = header
                    .iter()
                    .find_map(|h| text.find(h.as_str()))
                    .map(|offset| line_col(text, offset));
                return Err(ConfigError {
                    file: path.to_path_buf(),
                    position,
                    message: format!("mysql.{name}: {message}"),
                });
            }
        }
        Ok(())
    }

    /// A config with every default and the given schema, as the demo uses.
    pub fn with_schema(schema: PathBuf) -> Config {
        Config {
            listen: default_listen(),
            schema,
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            tls: None,
            auth: AuthConfig::default(),
            admin: AdminConfig::default(),
            grpc: BTreeMap::new(),
            mysql: BTreeMap::new(),
            persisted_queries: PersistedQueriesConfig::default(),
            testing: TestingConfig::default(),
            runtime: RuntimeConfig::default(),
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.schema);
        if let Some(tls) = &mut self.tls {
            tls.resolve_paths(base);
        }
        if let Some(jwt) = &mut self.auth.jwt {
            jwt.resolve_paths(base);
        }
        if let Some(file) = &mut self.admin.token_file {
            resolve(file);
        }
        if let Some(file) = &mut self.persisted_queries.manifest {
            resolve(file);
        }
        for db in self.mysql.values_mut() {
            db.tls.resolve_paths(base);
        }
        for upstream in self.grpc.values_mut() {
            upstream.tls.resolve_paths(base);
            upstream.protos.iter_mut().for_each(resolve);
            upstream.includes.iter_mut().for_each(resolve);
        }
    }

    /// Checks the bounds that serde cannot: zero where zero makes no sense.
    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let nonzero = [
            ("limits.max_connections", self.limits.max_connections),
            ("limits.max_frame_bytes", self.limits.max_frame_bytes),
            (
                "limits.max_operations_per_connection",
                self.limits.max_operations_per_connection,
            ),
            ("limits.max_outbound_bytes", self.limits.max_outbound_bytes),
            (
                "limits.max_http_body_bytes",
                self.limits.max_http_body_bytes,
            ),
            ("limits.operation_queue", self.limits.operation_queue),
            (
                "limits.shared_subscriber_queue",
                self.limits.shared_subscriber_queue,
            ),
            ("limits.max_query_depth", self.limits.max_query_depth),
            ("limits.max_query_fields", self.limits.max_query_fields),
            ("limits.max_query_bytes", self.limits.max_query_bytes),
            ("limits.max_query_cost", self.limits.max_query_cost),
            ("limits.max_response_bytes", self.limits.max_response_bytes),
            ("limits.max_http_streams", self.limits.max_http_streams),
        ];
        for (key, value) in nonzero {
            if value == 0 {
                return Err(ConfigError::in_file(
                    path,
                    format!("{key} must be at least 1"),
                ));
            }
        }
        let timeouts = [
            ("timeouts.init", self.timeouts.init),
            (
                "timeouts.keepalive_timeout",
                self.timeouts.keepalive_timeout,
            ),
            ("timeouts.write", self.timeouts.write),
            ("timeouts.http_header_read", self.timeouts.http_header_read),
            ("timeouts.http_request", self.timeouts.http_request),
            ("timeouts.drain", self.timeouts.drain),
            ("timeouts.stream_keepalive", self.timeouts.stream_keepalive),
        ];
        for (key, value) in timeouts {
            if value.is_zero() {
                return Err(ConfigError::in_file(
                    path,
                    format!("{key} must be longer than 0s"),
                ));
            }
        }
        if self.admin.max_connections == 0 {
            return Err(ConfigError::in_file(
                path,
                "admin.max_connections must be at least 1",
            ));
        }
        if self.admin.token.as_deref() == Some("") {
            return Err(ConfigError::in_file(path, "admin.token must not be empty"));
        }
        if let Some(jwt) = &self.auth.jwt {
            if !self.auth.tokens.is_empty() {
                return Err(ConfigError::in_file(
                    path,
                    "auth.tokens and [auth.jwt] cannot both be set",
                ));
            }
            crate::jwt::check(jwt).map_err(|e| ConfigError::in_file(path, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_every_default() {
        let config = Config::parse(
            "schema = \"s.graphql\"\n",
            Path::new("/etc/t/terminus.toml"),
        )
        .unwrap();
        assert_eq!(config.listen, default_listen());
        assert_eq!(config.schema, PathBuf::from("/etc/t/s.graphql"));
        assert_eq!(config.limits.max_frame_bytes, 65536);
        assert_eq!(config.timeouts.init, Duration::from_secs(3));
        assert!(config.auth.tokens.is_empty());
        assert!(!config.testing.panic_trigger);
    }

    #[test]
    fn humantime_and_overrides() {
        let text = "listen = \"0.0.0.0:9000\"\nschema = \"/abs.graphql\"\n[timeouts]\ninit = \"250ms\"\ndrain = \"1m\"\n[limits]\nmax_connections = 7\n[auth]\ntokens = [\"a\", \"b\"]\n";
        let config = Config::parse(text, Path::new("t.toml")).unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.schema, PathBuf::from("/abs.graphql"));
        assert_eq!(config.timeouts.init, Duration::from_millis(250));
        assert_eq!(config.timeouts.drain, Duration::from_secs(60));
        assert_eq!(config.limits.max_connections, 7);
        assert_eq!(config.auth.tokens, vec!["a", "b"]);
    }

    #[test]
    fn unknown_key_names_file_line_and_column() {
        let text = "schema = \"s.graphql\"\n\n[limits]\nmax_conections = 5\n";
        let err = Config::parse(text, Path::new("conf/terminus.toml")).unwrap_err();
        assert_eq!(err.position, Some((4, 1)), "{err}");
        let shown = err.to_string();
        assert!(shown.starts_with("conf/terminus.toml:4:1: "), "{shown}");
        assert!(shown.contains("max_conections"), "{shown}");
    }

    #[test]
    fn bad_duration_is_located() {
        let text = "schema = \"s.graphql\"\n[timeouts]\ninit = \"soon\"\n";
        let err = Config::parse(text, Path::new("t.toml")).unwrap_err();
        assert_eq!(err.position.map(|p| p.0), Some(3), "{err}");
    }

    #[test]
    fn zero_bounds_are_refused() {
        let text = "schema = \"s.graphql\"\n[limits]\nmax_frame_bytes = 0\n";
        let err = Config::parse(text, Path::new("t.toml")).unwrap_err();
        assert!(err.to_string().contains("limits.max_frame_bytes"), "{err}");
    }

    #[test]
    fn mysql_sections_parse_and_bad_ones_are_located() {
        let text = "schema = \"s.graphql\"\n\n[mysql.main]\nurl = \"mysql://app@db:3307/shop\"\nstatement_timeout = \"2s\"\n";
        let config = Config::parse(text, Path::new("t.toml")).unwrap();
        let main = &config.mysql["main"];
        assert_eq!(main.statement_timeout, Duration::from_secs(2));
        assert_eq!(main.max_connections, 10);
        assert_eq!(main.connect_timeout, Duration::from_secs(5));

        let text = "schema = \"s.graphql\"\n\n[mysql.main]\nurl = \"postgres://app@db/shop\"\n";
        let err = Config::parse(text, Path::new("t.toml")).unwrap_err();
        assert_eq!(err.position, Some((3, 1)), "{err}");
        assert!(err.to_string().contains("mysql://"), "{err}");

        let text =
            "schema = \"s.graphql\"\n[mysql.main]\nurl = \"mysql://a@b/c\"\nmax_connections = 0\n";
        let err = Config::parse(text, Path::new("t.toml")).unwrap_err();
        assert_eq!(err.position, Some((2, 1)), "{err}");
        assert!(err.to_string().contains("max_connections"), "{err}");

        let text = "schema = \"s.graphql\"\n[mysql.main]\nurl = \"mysql://a@b/c\"\npool = 3\n";
        let err = Config::parse(text, Path::new("t.toml")).unwrap_err();
        assert_eq!(err.position.map(|p| p.0), Some(4), "{err}");
    }

    #[test]
    fn runtime_threads_default_and_bad_values_are_located() {
        let config = Config::parse("schema = \"s.graphql\"\n", Path::new("t.toml")).unwrap();
        assert_eq!(config.runtime.threads, default_runtime_threads());
        assert!(config.runtime.threads >= 1);
        let text = "schema = \"s.graphql\"\n[runtime]\nthreads = 2\n";
        let config = Config::parse(text, Path::new("t.toml")).unwrap();
        assert_eq!(config.runtime.threads, 2);
        for bad in ["0", "257", "-1", "\"many\""] {
            let text = format!("schema = \"s.graphql\"\n\n[runtime]\nthreads = {bad}\n");
            let err = Config::parse(&text, Path::new("conf/t.toml")).unwrap_err();
            assert_eq!(err.position.map(|p| p.0), Some(4), "{bad}: {err}");
            assert!(err.to_string().starts_with("conf/t.toml:4:"), "{err}");
        }
        let text = "schema = \"s.graphql\"\n[runtime]\nthreads = 0\n";
        let err = Config::parse(text, Path::new("t.toml")).unwrap_err();
        assert!(
            err.to_string()
                .contains("runtime.threads (--threads) must be 1 to 256"),
            "{err}"
        );
        let text = "schema = \"s.graphql\"\n[runtime]\nthread = 2\n";
        let err = Config::parse(text, Path::new("t.toml")).unwrap_err();
        assert_eq!(err.position, Some((3, 1)), "{err}");
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncé d", 7), (2, 4));
        assert_eq!(line_col("", 3), (1, 1));
    }
}
