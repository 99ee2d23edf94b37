//! The wire vocabulary of GraphQL over WebSocket: subprotocol negotiation,
//! the close codes Terminus uses, and the messages of both subprotocols
//! (parsing and serialising, in both directions, so the server and the client
//! state machines share one definition).

pub mod legacy;
pub mod transport;

use serde_json::{Map, Value};

/// The GraphQL-over-WebSocket subprotocols Terminus speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subprotocol {
    /// `graphql-transport-ws`: the current protocol of the graphql-ws project.
    GraphqlTransportWs,
    /// `graphql-ws`: the legacy protocol of subscriptions-transport-ws.
    GraphqlWs,
}

impl Subprotocol {
    /// Picks the subprotocol to use from the ones a client offered in
    /// `Sec-WebSocket-Protocol`, preferring `graphql-transport-ws` when both
    /// are offered. `None` means the handshake must be refused (HTTP 400, or
    /// close [`close::SUBPROTOCOL_NOT_ACCEPTABLE`]).
    pub fn negotiate<'a>(offered: impl IntoIterator<Item = &'a str>) -> Option<Subprotocol> {
        let mut legacy = false;
        for name in offered {
            match name.trim() {
                "graphql-transport-ws" => return Some(Subprotocol::GraphqlTransportWs),
                "graphql-ws" => legacy = true,
                _ => {}
            }
        }
        legacy.then_some(Subprotocol::GraphqlWs)
    }

    /// The name as it appears in `Sec-WebSocket-Protocol`.
    pub fn name(self) -> &'static str {
        match self {
            Subprotocol::GraphqlTransportWs => "graphql-transport-ws",
            Subprotocol::GraphqlWs => "graphql-ws",
        }
    }
}

/// WebSocket close codes used by Terminus (see docs/protocol.md).
pub mod close {
    /// Normal closure (legacy `connection_terminate`, client-initiated close).
    pub const NORMAL: u16 = 1000;
    /// Going away: the server is draining, or the peer stopped answering
    /// keep-alive pings (graphql-ws clients retry on it).
    pub const GOING_AWAY: u16 = 1001;
    /// Never sent: a close frame that carried no code (RFC 6455, 7.1.5).
    /// Hosts pass it to `handle_transport_closed` when the peer's close
    /// frame was empty.
    pub const NO_STATUS_RECEIVED: u16 = 1005;
    /// Never sent: the socket ended without a close frame (RFC 6455,
    /// 7.1.5). Hosts pass it to `handle_transport_closed` when the socket
    /// died or a read or write failed.
    pub const ABNORMAL_CLOSURE: u16 = 1006;
    /// The peer broke the WebSocket framing rules (RFC 6455 7.4.1): an
    /// unmasked client frame, reserved bits set, an unknown opcode, a
    /// control frame over 125 bytes or fragmented, an orphan continuation.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text message that is not valid UTF-8 (RFC 6455 8.1).
    pub const INVALID_FRAME_PAYLOAD_DATA: u16 = 1007;
    /// A frame exceeded `max_frame_bytes`.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// Try again later: connection cap reached, or the client reads too slowly
    /// (more than `max_outbound_bytes` unflushed).
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// Invalid message.
    pub const BAD_REQUEST: u16 = 4400;
    /// `subscribe` before `connection_ack`.
    pub const UNAUTHORIZED: u16 = 4401;
    /// `connection_init` rejected.
    pub const FORBIDDEN: u16 = 4403;
    /// No supported subprotocol offered.
    pub const SUBPROTOCOL_NOT_ACCEPTABLE: u16 = 4406;
    /// No `connection_init` (or no verdict on it) within `init_timeout`.
    pub const CONNECTION_INITIALISATION_TIMEOUT: u16 = 4408;
    /// `subscribe` with an id that is still active.
    pub const SUBSCRIBER_ALREADY_EXISTS: u16 = 4409;
    /// A second `connection_init`.
    pub const TOO_MANY_INITIALISATION_REQUESTS: u16 = 4429;
    /// Internal server error (a panic in the connection's task).
    pub const INTERNAL_SERVER_ERROR: u16 = 4500;
    /// Client side: the server sent something the client cannot understand
    /// (graphql-ws uses the same code).
    pub const BAD_RESPONSE: u16 = 4004;
    /// Client side: the server did not acknowledge `connection_init` in time
    /// (graphql-ws uses the same code).
    pub const CONNECTION_ACKNOWLEDGEMENT_TIMEOUT: u16 = 4504;

    /// Whether a script in a browser may pass `code` to `WebSocket.close`:
    /// the WebSocket API allows [`NORMAL`] and the application range
    /// 3000..=4999 only (other codes have to travel in the reason).
    pub fn browser_may_send(code: u16) -> bool {
        code == NORMAL || (3000..=4999).contains(&code)
    }
}

/// The largest close reason a WebSocket close frame can carry (125 bytes of
/// payload minus the 2-byte code).
pub const MAX_CLOSE_REASON_BYTES: usize = 123;

/// Truncates a close reason to [`MAX_CLOSE_REASON_BYTES`] on a character
/// boundary, so the close frame is always valid UTF-8 and within size.
pub fn truncate_reason(reason: &str) -> String {
    if reason.len() <= MAX_CLOSE_REASON_BYTES {
        return reason.to_owned();
    }
    let mut end = MAX_CLOSE_REASON_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

/// A message that could not be understood: what was wrong, for the close
/// reason or the error payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The operation id, when the message carried a usable one (legacy
    /// `start` with a bad payload is answered per id).
    pub id: Option<String>,
    /// A short description of the problem.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ParseError {
            id: None,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}

/// The request part of `subscribe` / legacy `start`.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscribePayload {
    /// The GraphQL document.
    pub query: String,
    /// The operation to run, if named.
    pub operation_name: Option<String>,
    /// Variables (empty when absent or null).
    pub variables: Map<String, Value>,
    /// Extensions (empty when absent or null).
    pub extensions: Map<String, Value>,
}

impl SubscribePayload {
    /// Reads a payload object, checking the shape PROTOCOL.md requires.
    pub fn from_value(value: Option<&Value>) -> Result<SubscribePayload, String> {
        let Some(Value::Object(obj)) = value else {
            return Err("payload must be an object".into());
        };
        // A persisted query (core/src/graphql/persisted.rs) may come as
        // its hash alone: the query is then empty until it is resolved.
        let persisted = matches!(
            obj.get("extensions").and_then(|e| e.get("persistedQuery")),
            Some(Value::Object(_))
        );
        let query = match obj.get("query") {
            Some(Value::String(q)) => q.clone(),
            None | Some(Value::Null) if persisted => String::new(),
            _ => return Err("payload.query must be a string".into()),
        };
        let operation_name = match obj.get("operationName") {
            None | Some(Value::Null) => None,
            Some(Value::String(n)) => Some(n.clone()),
            Some(_) => return Err("payload.operationName must be a string or null".into()),
        };
        let variables = optional_object(obj, "variables")?;
        let extensions = optional_object(obj, "extensions")?;
        Ok(SubscribePayload {
            query,
            operation_name,
            variables,
            extensions,
        })
    }

    /// The payload as JSON (optional members omitted when empty).
    pub fn to_value(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("query".into(), Value::String(self.query.clone()));
        if let Some(name) = &self.operation_name {
            obj.insert("operationName".into(), Value::String(name.clone()));
        }
        if !self.variables.is_empty() {
            obj.insert("variables".into(), Value::Object(self.variables.clone()));
        }
        if !self.extensions.is_empty() {
            obj.insert("extensions".into(), Value::Object(self.extensions.clone()));
        }
        Value::Object(obj)
    }

    /// Turns the payload into the request the host executes.
    pub fn into_request(self, id: String) -> crate::OperationRequest {
        crate::OperationRequest {
            id,
            query: self.query,
            operation_name: self.operation_name,
            variables: self.variables,
            extensions: self.extensions,
        }
    }
}

fn optional_object(obj: &Map<String, Value>, key: &str) -> Result<Map<String, Value>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(format!("payload.{key} must be an object or null")),
    }
}

/// Parses a frame into a JSON object and its `type`.
pub(crate) fn parse_envelope(text: &str) -> Result<(Map<String, Value>, String), ParseError> {
    let value: Value =
        serde_json::from_str(text).map_err(|_| ParseError::new("Invalid message: not JSON"))?;
    let Value::Object(obj) = value else {
        return Err(ParseError::new("Invalid message: not a JSON object"));
    };
    let kind = match obj.get("type") {
        Some(Value::String(t)) => t.clone(),
        _ => return Err(ParseError::new("Invalid message: missing type")),
    };
    Ok((obj, kind))
}

/// The optional payload of init/ack/ping/pong: an object or null.
pub(crate) fn optional_object_payload(
    obj: &Map<String, Value>,
    kind: &str,
) -> Result<Option<Value>, ParseError> {
    match obj.get("payload") {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
        Some(_) => Err(ParseError::new(format!(
            "Invalid message: {kind} payload must be an object or null"
        ))),
    }
}

/// A required non-empty string `id`.
pub(crate) fn required_id(obj: &Map<String, Value>, kind: &str) -> Result<String, ParseError> {
    match obj.get("id") {
        Some(Value::String(id)) if !id.is_empty() => Ok(id.clone()),
        _ => Err(ParseError::new(format!(
            "Invalid message: {kind} needs a non-empty string id"
        ))),
    }
}

/// An operation's result as a frame carries it, borrowed: what each
/// protocol's `result_text` (transport.rs, legacy.rs) writes, and what the
/// gateway frames each upstream event as without copying its payload or id.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ResultFrame<'a> {
    /// A result.
    Next(&'a Value),
    /// A result already JSON text (a shared event, encoded once).
    NextEncoded(&'a str),
    /// The operation failed; the payload as the protocol sends it.
    Error(&'a Value),
    /// The operation ended.
    Complete,
}

impl ResultFrame<'_> {
    /// The frame's text for the operation `id`; `next` is the protocol's
    /// name for a result's message (`next`, or the legacy `data`).
    pub(crate) fn text(self, next: &str, id: &str) -> String {
        match self {
            ResultFrame::Next(payload) => frame(next, Some(id), Some(payload)),
            ResultFrame::NextEncoded(payload) => frame_encoded(next, id, payload),
            ResultFrame::Error(payload) => frame("error", Some(id), Some(payload)),
            ResultFrame::Complete => frame("complete", Some(id), None),
        }
    }
}

/// Builds `{"type": kind, "id"?: id, "payload"?: payload}` as text,
/// serialised straight into the frame (no copy of the payload, no map).
pub(crate) fn frame(kind: &str, id: Option<&str>, payload: Option<&Value>) -> String {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"{\"type\":");
    push_json_string(&mut out, kind);
    if let Some(id) = id {
        out.extend_from_slice(b",\"id\":");
        push_json_string(&mut out, id);
    }
    if let Some(payload) = payload {
        out.extend_from_slice(b",\"payload\":");
        // Writing JSON to a `Vec` cannot fail: `Value`'s keys are strings.
        let _ = serde_json::to_writer(&mut out, payload);
    }
    out.push(b'}');
    into_text(out)
}

/// The frame `{"type":kind,"id":id,"payload":payload}` with `payload`
/// already JSON text: built by concatenation around the JSON-escaped id,
/// byte for byte what [`frame`] gives for the parsed payload.
pub(crate) fn frame_encoded(kind: &str, id: &str, payload: &str) -> String {
    let mut out = Vec::with_capacity(payload.len() + id.len() + kind.len() + 32);
    out.extend_from_slice(b"{\"type\":");
    push_json_string(&mut out, kind);
    out.extend_from_slice(b",\"id\":");
    push_json_string(&mut out, id);
    out.extend_from_slice(b",\"payload\":");
    out.extend_from_slice(payload.as_bytes());
    out.push(b'}');
    into_text(out)
}

/// Appends `text` as a JSON string, escaped as `serde_json` escapes it.
fn push_json_string(out: &mut Vec<u8>, text: &str) {
    // Writing a `&str` to a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// The frame's bytes as text: JSON written from `&str`s and `Value`s is
/// UTF-8 (checked, not assumed).
fn into_text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes)
        .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoded_frame_is_byte_for_byte_the_encoded_one() {
        let payload = serde_json::json!({"data": {"t": {"seq": 3, "s": "é\"\n<"}}});
        for id in ["1", "quote\"d", "back\\slash", "ünï\u{1}code", ""] {
            for kind in ["next", "data"] {
                assert_eq!(
                    frame_encoded(kind, id, &payload.to_string()),
                    frame(kind, Some(id), Some(&payload))
                );
            }
        }
    }

    /// The frame written field by field is the JSON object of its fields,
    /// as `serde_json` writes one (keys in insertion order).
    #[test]
    fn a_frame_is_its_object_serialised() {
        let payloads = [
            None,
            Some(serde_json::json!({"data": {"t": {"seq": 3, "s": "é\"\n<\u{7f}\u{2028}"}}})),
            Some(serde_json::json!([{"message": "m", "path": ["a", 1]}])),
            Some(serde_json::json!({})),
            Some(Value::Null),
            Some(serde_json::json!(1.5e300)),
        ];
        for id in [
            None,
            Some("1"),
            Some("quote\"d"),
            Some("back\\slash"),
            Some("ünï\u{1}code"),
            Some(""),
        ] {
            for payload in &payloads {
                for kind in ["next", "connection_ack", "ka"] {
                    let mut obj = Map::new();
                    obj.insert("type".into(), Value::String(kind.to_owned()));
                    if let Some(id) = id {
                        obj.insert("id".into(), Value::String(id.to_owned()));
                    }
                    if let Some(payload) = payload {
                        obj.insert("payload".into(), payload.clone());
                    }
                    assert_eq!(
                        frame(kind, id, payload.as_ref()),
                        Value::Object(obj).to_string()
                    );
                }
            }
        }
    }

    #[test]
    fn negotiation_prefers_the_current_protocol() {
        assert_eq!(
            Subprotocol::negotiate(["graphql-ws", "graphql-transport-ws"]),
            Some(Subprotocol::GraphqlTransportWs)
        );
        assert_eq!(
            Subprotocol::negotiate(["graphql-ws"]),
            Some(Subprotocol::GraphqlWs)
        );
        assert_eq!(Subprotocol::negotiate(["chat", "mqtt"]), None);
        assert_eq!(Subprotocol::negotiate([]), None);
        assert_eq!(Subprotocol::GraphqlWs.name(), "graphql-ws");
    }

    #[test]
    fn reasons_are_truncated_on_a_char_boundary() {
        let long = "é".repeat(100); // 200 bytes
        let cut = truncate_reason(&long);
        assert!(cut.len() <= MAX_CLOSE_REASON_BYTES);
        assert_eq!(cut.len(), 122);
        assert_eq!(truncate_reason("short"), "short");
        let exact = "a".repeat(123);
        assert_eq!(truncate_reason(&exact), exact);
    }
}
