//! The vocabulary shared by the planner (which decides what to call) and the
//! host (which makes the calls): what one upstream call is, and how it fails.

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// One call to an upstream, as planned by the core and executed by the host.
#[derive(Debug, Clone, PartialEq)]
pub enum UpstreamCall {
    /// A gRPC call on a configured upstream.
    Grpc {
        /// The upstream's configured name (`@grpc(upstream: ...)`).
        upstream: String,
        /// Fully qualified method, `package.Service/Method`.
        method: String,
        /// The request message in the proto3 JSON mapping (lowerCamelCase
        /// field names).
        request: Value,
        /// Server-streaming (a subscription field) rather than unary.
        streaming: bool,
        /// The field's own bounds (`@grpc(timeout:, streamTimeout:,
        /// idleTimeout:)`), each overriding the upstream's configured one.
        timeouts: CallTimeouts,
        /// The operation's [`RequestContext`], from which the host picks
        /// the gRPC metadata each upstream is configured to send.
        context: RequestContext,
        /// The field is `@shared`: the host runs one upstream stream per
        /// [`crate::share::ShareKey`] for all the operations whose call
        /// would be identical (docs/schema.md, "`@shared`").
        shared: bool,
    },
    /// One SQL statement on a configured database, run as a prepared
    /// statement. `:name` placeholders of the schema have already become `?`
    /// and `params` holds their values in order: values are never
    /// interpolated into SQL text.
    Sql {
        /// The database's configured name (`@sql(db: ...)`).
        db: String,
        /// The statement with positional `?` placeholders.
        statement: String,
        /// One value per placeholder, in order.
        params: Vec<Value>,
        /// Whether the statement returns rows (`SELECT`) or changes them.
        returns_rows: bool,
    },
    /// A SQL query polled every `every` for a live subscription. The host
    /// reports each poll's rows as an item; the core emits only changes.
    LiveSql {
        /// The database's configured name.
        db: String,
        /// The statement with positional `?` placeholders.
        statement: String,
        /// One value per placeholder, in order.
        params: Vec<Value>,
        /// The polling interval.
        every: Duration,
    },
}

/// What the gateway knows about the request an operation came with, for
/// forwarding as gRPC metadata: values keyed by where they came from,
/// `header:<lowercase name>` (an HTTP request header), `init:<field>` (a
/// `connection_init` payload field) and `claim:<name>` (a verified token's
/// claim). The host fills it with the values its configuration forwards,
/// the core hands it to every gRPC call of the operation, and each upstream
/// sends the entries its `[grpc.<name>]` configuration maps to metadata
/// (docs/config.md, "Metadata"). Shared, cheap to clone.
pub type RequestContext = std::sync::Arc<BTreeMap<String, String>>;

/// A field's overrides of its upstream's call bounds, from
/// `@grpc(timeout:, streamTimeout:, idleTimeout:)`. `None` keeps the
/// upstream's configured value (`call_timeout`, `stream_timeout`,
/// `stream_idle_timeout` in docs/config.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallTimeouts {
    /// Deadline of a unary call, and of a server stream until its response
    /// headers arrive.
    pub call: Option<Duration>,
    /// Deadline of a whole server stream, sent as `grpc-timeout`. A stream
    /// has none unless this (or the upstream's `stream_timeout`) is set.
    pub stream: Option<Duration>,
    /// Longest quiet gap between two messages of a server stream.
    pub idle: Option<Duration>,
}

/// Why an upstream call failed, as a stable GraphQL `extensions.code`.
///
/// gRPC status codes map onto these one to one where the meaning differs
/// for a client (the table is in `docs/schema.md`, "Errors").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The upstream could not be reached (connection refused, reset, gone);
    /// gRPC `UNAVAILABLE`.
    Unavailable,
    /// The call's deadline passed; gRPC `DEADLINE_EXCEEDED`.
    Timeout,
    /// The upstream's concurrency bound or pool was exhausted; gRPC
    /// `RESOURCE_EXHAUSTED`.
    Busy,
    /// The upstream answered with an error of its own; gRPC `UNKNOWN` and
    /// `INTERNAL`.
    Failed,
    /// The arguments could not be turned into an upstream request, or the
    /// upstream refused them (gRPC `INVALID_ARGUMENT`).
    BadInput,
    /// gRPC `CANCELLED`: the upstream cancelled the call.
    Cancelled,
    /// gRPC `NOT_FOUND`.
    NotFound,
    /// gRPC `ALREADY_EXISTS`.
    AlreadyExists,
    /// gRPC `PERMISSION_DENIED`.
    PermissionDenied,
    /// gRPC `UNAUTHENTICATED`.
    Unauthenticated,
    /// gRPC `FAILED_PRECONDITION`.
    FailedPrecondition,
    /// gRPC `ABORTED`.
    Aborted,
    /// gRPC `OUT_OF_RANGE`.
    OutOfRange,
    /// gRPC `UNIMPLEMENTED`.
    Unimplemented,
    /// gRPC `DATA_LOSS`.
    DataLoss,
    /// SQL: the statement broke a constraint (duplicate key, foreign key,
    /// check, not null; SQLSTATE class 23).
    Conflict,
    /// SQL: a row lock was not granted in time (`innodb_lock_wait_timeout`).
    LockTimeout,
    /// SQL: the statement was chosen as a deadlock victim and rolled back.
    Deadlock,
    /// SQL: a value does not fit its column (out of range, too long,
    /// malformed; SQLSTATE class 22).
    DataError,
    /// A subscriber of a `@shared` stream could not keep up: its own
    /// queue overflowed, so the gateway ended it while the stream goes on
    /// for the others.
    SlowSubscriber,
}

impl FailureKind {
    /// The `extensions.code` a client sees.
    pub fn code(self) -> &'static str {
        match self {
            FailureKind::Unavailable => "UPSTREAM_UNAVAILABLE",
            FailureKind::Timeout => "UPSTREAM_TIMEOUT",
            FailureKind::Busy => "UPSTREAM_BUSY",
            FailureKind::Failed => "UPSTREAM_ERROR",
            FailureKind::BadInput => "BAD_USER_INPUT",
            FailureKind::Cancelled => "UPSTREAM_CANCELLED",
            FailureKind::NotFound => "NOT_FOUND",
            FailureKind::AlreadyExists => "ALREADY_EXISTS",
            FailureKind::PermissionDenied => "FORBIDDEN",
            FailureKind::Unauthenticated => "UNAUTHENTICATED",
            FailureKind::FailedPrecondition => "FAILED_PRECONDITION",
            FailureKind::Aborted => "ABORTED",
            FailureKind::OutOfRange => "OUT_OF_RANGE",
            FailureKind::Unimplemented => "UPSTREAM_UNIMPLEMENTED",
            FailureKind::DataLoss => "UPSTREAM_DATA_LOSS",
            FailureKind::Conflict => "UPSTREAM_CONFLICT",
            FailureKind::LockTimeout => "UPSTREAM_LOCK_TIMEOUT",
            FailureKind::Deadlock => "UPSTREAM_DEADLOCK",
            FailureKind::DataError => "UPSTREAM_DATA_ERROR",
            FailureKind::SlowSubscriber => "SLOW_SUBSCRIBER",
        }
    }
}

/// A failed upstream call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamFailure {
    /// The class of failure.
    pub kind: FailureKind,
    /// A message safe to show to the client.
    pub message: String,
    /// More `extensions` entries for the client's error, next to `code`:
    /// for a gRPC status, `grpcStatus` (its name, `NOT_FOUND`) and
    /// `details` (the decoded `google.rpc.Status` details). Empty for most
    /// failures.
    pub extensions: Map<String, Value>,
}

impl UpstreamFailure {
    /// A failure of `kind` with `message`.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        UpstreamFailure {
            kind,
            message: message.into(),
            extensions: Map::new(),
        }
    }

    /// The same failure with one more `extensions` entry.
    pub fn with_extension(mut self, key: impl Into<String>, value: Value) -> Self {
        self.extensions.insert(key.into(), value);
        self
    }
}

impl fmt::Display for UpstreamFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.message)
    }
}

impl std::error::Error for UpstreamFailure {}
