//! Shared building blocks of the Terminus fuzz targets.
//!
//! The targets do not feed raw bytes to the state machines (except `frame`):
//! they derive structured choices with `arbitrary` and build frames, queries
//! and JSON values from them, so that most inputs are well-formed enough to
//! reach deep states (an acknowledged connection with live operations)
//! while a share of them stay malformed on purpose.

use arbitrary::{Arbitrary, Result as ArbResult, Unstructured};
use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use terminus_core::client::{ClientConnection, ClientEffect, ClientEvent};
use terminus_core::ledger::{ClientLedger, Violation};
use terminus_core::protocol::Subprotocol;

/// Deepest nesting of generated JSON (keeps inputs small and fast).
const MAX_JSON_DEPTH: u32 = 3;

/// An arbitrary JSON value of bounded depth and size.
#[derive(Debug, Clone)]
pub struct ArbJson(pub Value);

fn arb_value(u: &mut Unstructured<'_>, depth: u32) -> ArbResult<Value> {
    let choice = if depth >= MAX_JSON_DEPTH {
        u.int_in_range(0..=5)?
    } else {
        u.int_in_range(0..=7)?
    };
    Ok(match choice {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::Number(Number::from(u.arbitrary::<i64>()?)),
        3 => Number::from_f64(u.arbitrary()?).map_or(Value::Null, Value::Number),
        4 => Value::String(u.arbitrary()?),
        5 => Value::String(pick(u, WORDS)?.to_owned()),
        6 => {
            let n = u.int_in_range(0..=4)?;
            Value::Array(
                (0..n)
                    .map(|_| arb_value(u, depth + 1))
                    .collect::<ArbResult<_>>()?,
            )
        }
        _ => Value::Object(arb_map(u, depth + 1)?),
    })
}

fn arb_map(u: &mut Unstructured<'_>, depth: u32) -> ArbResult<Map<String, Value>> {
    let n = u.int_in_range(0..=4)?;
    let mut map = Map::new();
    for _ in 0..n {
        let key = if u.arbitrary()? {
            pick(u, WORDS)?.to_owned()
        } else {
            u.arbitrary()?
        };
        map.insert(key, arb_value(u, depth)?);
    }
    Ok(map)
}

/// Words that mean something to the schema, the protocols or the shaper.
const WORDS: &[&str] = &[
    "message",
    "seq",
    "data",
    "errors",
    "name",
    "everyMs",
    "limit",
    "failAt",
    "id",
    "type",
    "payload",
    "query",
    "variables",
    "operationName",
    "extensions",
    "path",
    "locations",
    "affectedRows",
    "lastInsertId",
    "text",
    "created_at",
    "__typename",
    "Hello, fuzz!",
];

fn pick<T: Copy>(u: &mut Unstructured<'_>, items: &[T]) -> ArbResult<T> {
    Ok(*u.choose(items)?)
}

impl<'a> Arbitrary<'a> for ArbJson {
    fn arbitrary(u: &mut Unstructured<'a>) -> ArbResult<Self> {
        Ok(ArbJson(arb_value(u, 0)?))
    }
}

/// An arbitrary JSON object of bounded depth and size.
#[derive(Debug, Clone)]
pub struct ArbObject(pub Map<String, Value>);

impl<'a> Arbitrary<'a> for ArbObject {
    fn arbitrary(u: &mut Unstructured<'a>) -> ArbResult<Self> {
        Ok(ArbObject(arb_map(u, 1)?))
    }
}

/// A GraphQL document: mostly assembled from tokens of the demo schemas
/// (so validation and planning are reached), sometimes a known-good query,
/// sometimes arbitrary text.
#[derive(Debug, Clone)]
pub struct ArbQuery(pub String);

/// Whole documents that are valid against the demo schema (or nearly so).
pub const GOOD_QUERIES: &[&str] = &[
    "{ hello(name: \"fuzz\") }",
    "query Q($n: String) { hello(name: $n) __typename }",
    "subscription { ticks(everyMs: 10, limit: 3) { seq } }",
    "subscription S($e: Int!) { ticks(everyMs: $e, failAt: 2) { seq __typename } }",
    "{ a: hello(name: \"x\") b: hello }",
    "{ __schema { queryType { name } types { name kind } } }",
    "{ __type(name: \"Tick\") { name fields { name type { name kind ofType { name } } } } }",
    "query { ...F } fragment F on Query { hello }",
    "{ hello @include(if: true) h2: hello @skip(if: false) }",
    "subscription { ticks(everyMs: 10) { ... on Tick { seq } } }",
    "mutation { postMessage(text: \"hi\") { id text } }",
    "{ messages(limit: 3) { id text } }",
    "subscription { liveMessages { id text } }",
    "{ hello } { hello }",
    "query A { hello } query B { __typename }",
];

/// Tokens of GraphQL documents against the demo schemas.
const QUERY_TOKENS: &[&str] = &[
    "{",
    "}",
    "(",
    ")",
    ":",
    "$",
    "!",
    "[",
    "]",
    "...",
    "@",
    "=",
    ",",
    " ",
    "\"",
    "\"\"\"",
    "query",
    "mutation",
    "subscription",
    "fragment",
    "on",
    "hello",
    "ticks",
    "seq",
    "name",
    "everyMs",
    "limit",
    "failAt",
    "Tick",
    "Query",
    "Subscription",
    "Mutation",
    "__typename",
    "__schema",
    "__type",
    "types",
    "fields",
    "kind",
    "ofType",
    "args",
    "String",
    "Int",
    "Boolean",
    "ID",
    "Float",
    "include",
    "skip",
    "if",
    "true",
    "false",
    "null",
    "1",
    "-7",
    "2147483648",
    "1.5",
    "\"x\"",
    "$v",
    "$n",
    "F",
    "a",
    "b",
    "message",
    "messages",
    "postMessage",
    "liveMessages",
    "text",
    "id",
    "queryType",
    "directives",
    "#c\n",
];

impl<'a> Arbitrary<'a> for ArbQuery {
    fn arbitrary(u: &mut Unstructured<'a>) -> ArbResult<Self> {
        Ok(ArbQuery(match u.int_in_range(0..=9)? {
            0..=3 => pick(u, GOOD_QUERIES)?.to_owned(),
            4..=7 => {
                let n = u.int_in_range(0..=48)?;
                let mut text = String::new();
                for _ in 0..n {
                    text.push_str(pick(u, QUERY_TOKENS)?);
                    text.push(' ');
                }
                text
            }
            8 => {
                // A good query with arbitrary text spliced in.
                let base = pick(u, GOOD_QUERIES)?;
                let at = u.int_in_range(0..=base.len())?;
                let at = (0..=at)
                    .rev()
                    .find(|i| base.is_char_boundary(*i))
                    .unwrap_or(0);
                let extra: String = u.arbitrary()?;
                format!("{}{}{}", &base[..at], extra, &base[at..])
            }
            _ => u.arbitrary()?,
        }))
    }
}

/// An operation id as a client could send it: usually one of a small pool
/// (so ids collide and get reused), sometimes empty, non-string or absent.
#[derive(Debug, Clone, Arbitrary)]
pub enum IdSpec {
    /// `"op0"` .. `"op3"`.
    Pool(u8),
    /// `""`.
    Empty,
    /// A JSON number instead of a string.
    Number(i32),
    /// No `id` member.
    Absent,
    /// Any string.
    Text(String),
}

impl IdSpec {
    /// The JSON value of the id, `None` for [`IdSpec::Absent`].
    pub fn to_value(&self) -> Option<Value> {
        match self {
            IdSpec::Pool(n) => Some(Value::String(format!("op{}", n % 4))),
            IdSpec::Empty => Some(Value::String(String::new())),
            IdSpec::Number(n) => Some(Value::Number((*n).into())),
            IdSpec::Absent => None,
            IdSpec::Text(s) => Some(Value::String(s.clone())),
        }
    }
}

/// The `payload` member of a client frame.
#[derive(Debug, Clone, Arbitrary)]
pub enum PayloadSpec {
    /// No `payload` member.
    Absent,
    /// `null`.
    Null,
    /// A well-formed subscribe/start payload.
    Request {
        /// The document.
        query: ArbQuery,
        /// `variables` (omitted when `None`).
        variables: Option<ArbObject>,
        /// `operationName` (omitted when `None`).
        operation_name: Option<String>,
        /// `extensions` (omitted when `None`).
        extensions: Option<ArbObject>,
    },
    /// A subscribe/start payload with one member of the wrong type.
    BadRequest {
        /// Which member is wrong: 0 query, 1 variables, 2 operationName, 3 extensions.
        which: u8,
        /// The wrong value.
        value: ArbJson,
    },
    /// Any JSON.
    Any(ArbJson),
}

impl PayloadSpec {
    fn to_value(&self) -> Option<Value> {
        match self {
            PayloadSpec::Absent => None,
            PayloadSpec::Null => Some(Value::Null),
            PayloadSpec::Request {
                query,
                variables,
                operation_name,
                extensions,
            } => {
                let mut obj = Map::new();
                obj.insert("query".into(), Value::String(query.0.clone()));
                if let Some(v) = variables {
                    obj.insert("variables".into(), Value::Object(v.0.clone()));
                }
                if let Some(n) = operation_name {
                    obj.insert("operationName".into(), Value::String(n.clone()));
                }
                if let Some(e) = extensions {
                    obj.insert("extensions".into(), Value::Object(e.0.clone()));
                }
                Some(Value::Object(obj))
            }
            PayloadSpec::BadRequest { which, value } => {
                let key =
                    ["query", "variables", "operationName", "extensions"][*which as usize % 4];
                let mut obj = Map::new();
                obj.insert("query".into(), Value::String("{ hello }".into()));
                obj.insert(key.into(), value.0.clone());
                Some(Value::Object(obj))
            }
            PayloadSpec::Any(v) => Some(v.0.clone()),
        }
    }
}

/// The `type` of a client frame. The protocol-relative kinds map to the
/// frame the connection's own subprotocol expects, so the fuzzer reaches
/// deep states quickly; the rest exercise mix-ups and unknown types.
#[derive(Debug, Clone, Arbitrary)]
pub enum KindSpec {
    /// `connection_init`.
    Init,
    /// `subscribe` (transport) / `start` (legacy).
    Start,
    /// `complete` (transport) / `stop` (legacy).
    Stop,
    /// `ping`.
    Ping,
    /// `pong`.
    Pong,
    /// `connection_terminate`.
    Terminate,
    /// A type of the other subprotocol or a server-to-client type.
    Foreign(u8),
    /// Any string.
    Other(String),
    /// No `type` member.
    Absent,
    /// A non-string `type`.
    NonString(i32),
}

const FOREIGN_KINDS: &[&str] = &[
    "subscribe",
    "start",
    "complete",
    "stop",
    "connection_ack",
    "next",
    "data",
    "error",
    "connection_error",
    "ka",
    "connection_keep_alive",
    "ping",
    "pong",
    "connection_terminate",
];

/// One frame a client could send to the server.
#[derive(Debug, Clone, Arbitrary)]
pub enum ClientFrameSpec {
    /// A JSON object assembled from a kind, an id and a payload.
    Object {
        /// The `type`.
        kind: KindSpec,
        /// The `id`.
        id: IdSpec,
        /// The `payload`.
        payload: PayloadSpec,
        /// An extra member with an arbitrary name.
        extra: Option<(String, ArbJson)>,
    },
    /// A JSON value that is not an object.
    NotObject(ArbJson),
    /// Arbitrary text (mostly not JSON).
    Text(String),
    /// A frame larger than any small `max_frame_bytes` the targets use.
    Oversized(u16),
}

impl ClientFrameSpec {
    /// The frame's text for a connection speaking `protocol`.
    pub fn to_text(&self, protocol: Subprotocol) -> String {
        let legacy = protocol == Subprotocol::GraphqlWs;
        match self {
            ClientFrameSpec::Object {
                kind,
                id,
                payload,
                extra,
            } => {
                let mut obj = Map::new();
                let kind_value = match kind {
                    KindSpec::Init => Some(Value::from("connection_init")),
                    KindSpec::Start => {
                        Some(Value::from(if legacy { "start" } else { "subscribe" }))
                    }
                    KindSpec::Stop => Some(Value::from(if legacy { "stop" } else { "complete" })),
                    KindSpec::Ping => Some(Value::from("ping")),
                    KindSpec::Pong => Some(Value::from("pong")),
                    KindSpec::Terminate => Some(Value::from("connection_terminate")),
                    KindSpec::Foreign(n) => Some(Value::from(
                        FOREIGN_KINDS[*n as usize % FOREIGN_KINDS.len()],
                    )),
                    KindSpec::Other(s) => Some(Value::String(s.clone())),
                    KindSpec::Absent => None,
                    KindSpec::NonString(n) => Some(Value::from(*n)),
                };
                if let Some(k) = kind_value {
                    obj.insert("type".into(), k);
                }
                if let Some(id) = id.to_value() {
                    obj.insert("id".into(), id);
                }
                if let Some(p) = payload.to_value() {
                    obj.insert("payload".into(), p);
                }
                if let Some((k, v)) = extra {
                    obj.insert(k.clone(), v.0.clone());
                }
                Value::Object(obj).to_string()
            }
            ClientFrameSpec::NotObject(v) => v.0.to_string(),
            ClientFrameSpec::Text(s) => s.clone(),
            ClientFrameSpec::Oversized(n) => {
                let filler = "x".repeat(1024 + *n as usize % 4096);
                format!(r#"{{"type":"ping","payload":{{"pad":"{filler}"}}}}"#)
            }
        }
    }
}

/// The `type` of a server frame, for the client state machine.
#[derive(Debug, Clone, Arbitrary)]
pub enum ServerKindSpec {
    /// `connection_ack`.
    Ack,
    /// `next` (transport) / `data` (legacy).
    Next,
    /// `error`.
    Error,
    /// `complete`.
    Complete,
    /// `ping`.
    Ping,
    /// `pong`.
    Pong,
    /// `ka` (legacy keep-alive).
    Ka,
    /// `connection_error` (legacy).
    ConnectionError,
    /// A type of the other direction or subprotocol.
    Foreign(u8),
    /// Any string.
    Other(String),
    /// No `type`.
    Absent,
}

/// An id in a server frame: one the client issued (ids are `"1"`, `"2"`,
/// ...), so events reach live and ended operations alike, or anything else.
#[derive(Debug, Clone, Arbitrary)]
pub enum ServerIdSpec {
    /// `"1"` .. `"8"`: the client's first ids.
    Issued(u8),
    /// No `id`.
    Absent,
    /// A non-string id.
    Number(i32),
    /// Any string.
    Text(String),
}

/// The payload of a server frame.
#[derive(Debug, Clone, Arbitrary)]
pub enum ServerPayloadSpec {
    /// No `payload`.
    Absent,
    /// `{"data": ...}`.
    Data(ArbJson),
    /// A list of GraphQL errors.
    Errors(Vec<ArbObject>),
    /// `[]`.
    EmptyErrors,
    /// Any JSON.
    Any(ArbJson),
}

/// One frame a server could send to the client.
#[derive(Debug, Clone, Arbitrary)]
pub enum ServerFrameSpec {
    /// A JSON object assembled from parts.
    Object {
        /// The `type`.
        kind: ServerKindSpec,
        /// The `id`.
        id: ServerIdSpec,
        /// The `payload`.
        payload: ServerPayloadSpec,
    },
    /// Arbitrary text.
    Text(String),
}

impl ServerFrameSpec {
    /// The frame's text for a client speaking `protocol`.
    pub fn to_text(&self, protocol: Subprotocol) -> String {
        let legacy = protocol == Subprotocol::GraphqlWs;
        match self {
            ServerFrameSpec::Object { kind, id, payload } => {
                let mut obj = Map::new();
                let kind = match kind {
                    ServerKindSpec::Ack => Some("connection_ack".to_owned()),
                    ServerKindSpec::Next => Some(if legacy { "data" } else { "next" }.to_owned()),
                    ServerKindSpec::Error => Some("error".to_owned()),
                    ServerKindSpec::Complete => Some("complete".to_owned()),
                    ServerKindSpec::Ping => Some("ping".to_owned()),
                    ServerKindSpec::Pong => Some("pong".to_owned()),
                    ServerKindSpec::Ka => Some("ka".to_owned()),
                    ServerKindSpec::ConnectionError => Some("connection_error".to_owned()),
                    ServerKindSpec::Foreign(n) => {
                        Some(FOREIGN_KINDS[*n as usize % FOREIGN_KINDS.len()].to_owned())
                    }
                    ServerKindSpec::Other(s) => Some(s.clone()),
                    ServerKindSpec::Absent => None,
                };
                if let Some(k) = kind {
                    obj.insert("type".into(), Value::String(k));
                }
                match id {
                    ServerIdSpec::Issued(n) => {
                        obj.insert("id".into(), Value::String((1 + n % 8).to_string()));
                    }
                    ServerIdSpec::Absent => {}
                    ServerIdSpec::Number(n) => {
                        obj.insert("id".into(), Value::from(*n));
                    }
                    ServerIdSpec::Text(s) => {
                        obj.insert("id".into(), Value::String(s.clone()));
                    }
                }
                let payload = match payload {
                    ServerPayloadSpec::Absent => None,
                    ServerPayloadSpec::Data(d) => Some(serde_json::json!({ "data": d.0 })),
                    ServerPayloadSpec::Errors(errs) => Some(Value::Array(
                        errs.iter().map(|e| Value::Object(e.0.clone())).collect(),
                    )),
                    ServerPayloadSpec::EmptyErrors => Some(Value::Array(Vec::new())),
                    ServerPayloadSpec::Any(v) => Some(v.0.clone()),
                };
                if let Some(p) = payload {
                    obj.insert("payload".into(), p);
                }
                Value::Object(obj).to_string()
            }
            ServerFrameSpec::Text(s) => s.clone(),
        }
    }
}

/// Panics (so libFuzzer records a crash) if `violations` is not empty.
pub fn assert_no_violations(context: &str, violations: &[Violation]) {
    if !violations.is_empty() {
        let list: Vec<String> = violations.iter().map(ToString::to_string).collect();
        panic!("{context}: lifecycle violations:\n  {}", list.join("\n  "));
    }
}

/// Checks that `error` is a spec-shaped GraphQL error: an object with a
/// string `message`, `path` (if any) a list of strings and integers,
/// `locations` (if any) a list of `{line, column}`, `extensions` (if any) an
/// object. Returns what is wrong.
pub fn check_graphql_error(error: &Value) -> Result<(), String> {
    let Value::Object(obj) = error else {
        return Err(format!("error is not an object: {error}"));
    };
    if !obj.get("message").is_some_and(Value::is_string) {
        return Err(format!("error without a string message: {error}"));
    }
    if let Some(path) = obj.get("path") {
        let ok = path
            .as_array()
            .is_some_and(|segs| segs.iter().all(|s| s.is_string() || s.is_u64()));
        if !ok {
            return Err(format!(
                "error path is not a list of keys and indices: {error}"
            ));
        }
    }
    if let Some(locations) = obj.get("locations") {
        let ok = locations.as_array().is_some_and(|locs| {
            locs.iter().all(|l| {
                l.get("line").is_some_and(Value::is_u64)
                    && l.get("column").is_some_and(Value::is_u64)
            })
        });
        if !ok {
            return Err(format!("error locations are not {{line, column}}: {error}"));
        }
    }
    if obj.get("extensions").is_some_and(|e| !e.is_object()) {
        return Err(format!("error extensions is not an object: {error}"));
    }
    Ok(())
}

/// Checks a non-empty list of spec-shaped errors.
pub fn check_graphql_errors(errors: &[Value]) -> Result<(), String> {
    if errors.is_empty() {
        return Err("empty error list".into());
    }
    errors.iter().try_for_each(check_graphql_error)
}

/// Checks an execution result `{data?, errors?}`.
pub fn check_execution_result(result: &Value) -> Result<(), String> {
    let Value::Object(obj) = result else {
        return Err(format!("result is not an object: {result}"));
    };
    if !obj.contains_key("data") && !obj.contains_key("errors") {
        return Err(format!("result has neither data nor errors: {result}"));
    }
    if let Some(data) = obj.get("data") {
        if !(data.is_object() || data.is_null()) {
            return Err(format!("data is neither an object nor null: {result}"));
        }
    }
    if let Some(errors) = obj.get("errors") {
        let Some(errors) = errors.as_array() else {
            return Err(format!("errors is not a list: {result}"));
        };
        check_graphql_errors(errors)?;
    }
    Ok(())
}

/// The client side's auditor: the core's [`ClientLedger`] plus stricter
/// checks of the fuzz targets' own. Each operation
/// the application requested gets at most one terminal event (`Error`,
/// `Complete`, or the connection's `Closed`), nothing follows its end (or the
/// application's `complete`), `Closed` comes exactly once and nothing but a
/// dead-on-arrival answer to a late `subscribe` follows it.
#[derive(Debug, Default)]
pub struct ClientAudit {
    /// Requested ids: whether still active, and whether requested after
    /// `Closed` (such an id may get one terminal event or none).
    ops: HashMap<String, (bool, bool)>,
    closed: bool,
    problems: Vec<String>,
    /// The core's auditor, fed the same observations.
    ledger: ClientLedger,
}

impl ClientAudit {
    /// An empty auditor.
    pub fn new() -> Self {
        ClientAudit::default()
    }

    /// The application requested `id`.
    pub fn subscribed(&mut self, id: &str) {
        if self.ops.contains_key(id) {
            self.problems.push(format!("id {id:?} handed out twice"));
        }
        self.ledger.observe_subscribe(id);
        self.ops.insert(id.to_owned(), (!self.closed, self.closed));
    }

    /// The application stopped `id`.
    pub fn completed(&mut self, id: &str) {
        if let Some(op) = self.ops.get_mut(id) {
            op.0 = false;
        }
        self.ledger.observe_complete(id);
    }

    /// Drains every effect of `client` through the auditor and returns them.
    pub fn drain(&mut self, client: &mut ClientConnection) -> Vec<ClientEffect> {
        let mut effects = Vec::new();
        while let Some(effect) = client.poll_effect() {
            self.observe(&effect);
            effects.push(effect);
        }
        effects
    }

    fn observe(&mut self, effect: &ClientEffect) {
        self.ledger.observe_effect(effect);
        let event = match effect {
            ClientEffect::Event(event) => event,
            other => {
                if self.closed {
                    self.problems.push(format!("{other:?} after Closed"));
                }
                return;
            }
        };
        let (id, terminal) = match event {
            ClientEvent::Closed { .. } => {
                if self.closed {
                    self.problems.push("Closed twice".into());
                }
                self.closed = true;
                self.ops.values_mut().for_each(|op| op.0 = false);
                return;
            }
            ClientEvent::Acked { .. } => {
                if self.closed {
                    self.problems.push("Acked after Closed".into());
                }
                return;
            }
            ClientEvent::Next { id, .. } => (id, false),
            ClientEvent::Error { id, .. } | ClientEvent::Complete { id } => (id, true),
        };
        match self.ops.get_mut(id) {
            Some((active, false)) if *active && !self.closed => *active = !terminal,
            Some((_, late @ true)) if terminal => *late = false,
            _ => self
                .problems
                .push(format!("{event:?} for an operation that is not active")),
        }
    }

    /// Per-step invariants: the client's own count of active operations
    /// agrees with the auditor's, and a closed client wants no timer.
    pub fn check_step(&mut self, client: &ClientConnection) {
        let active = self.ops.values().filter(|op| op.0).count();
        if client.active_operations() != active {
            self.problems.push(format!(
                "client counts {} active operations, the auditor {active}",
                client.active_operations()
            ));
        }
        if client.is_closed() && client.poll_timeout().is_some() {
            self.problems.push("closed client wants a timer".into());
        }
        if client.is_closed() != self.closed {
            self.problems
                .push("client closed without a Closed event (or the reverse)".into());
        }
    }

    /// End state: closed, nothing active, no timer.
    pub fn check_end(&mut self, client: &ClientConnection) {
        self.check_step(client);
        self.ledger.check_end(client);
        if !self.closed {
            self.problems.push("client not closed at the end".into());
        }
        if client.active_operations() != 0 {
            self.problems.push(format!(
                "{} client operations active at the end",
                client.active_operations()
            ));
        }
    }

    /// Panics if any rule was broken.
    pub fn assert_clean(&self, context: &str) {
        let core = self.ledger.violations().iter().map(ToString::to_string);
        let all: Vec<String> = self.problems.iter().cloned().chain(core).collect();
        if !all.is_empty() {
            panic!("{context}: client violations:\n  {}", all.join("\n  "));
        }
    }

    /// Whether `Closed` was seen.
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

/// The close codes a server connection may emit (docs/protocol.md; 1002
/// and 1007 for RFC 6455 violations the host reports; 4500 after a host
/// failure).
pub const SERVER_CLOSE_CODES: &[u16] = &[
    1000, 1001, 1002, 1007, 1009, 1013, 4400, 4401, 4403, 4408, 4409, 4429, 4500,
];

/// The close codes a client connection may emit on its own.
pub const CLIENT_CLOSE_CODES: &[u16] = &[1001, 4004, 4504];
