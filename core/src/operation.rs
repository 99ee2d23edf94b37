//! What an operation is, as seen from both sides of the core: the request a
//! client sent, the internal handle that names it, and the events an upstream
//! reports for it.

use serde_json::{Map, Value};
use std::fmt;

/// Internal handle of one operation.
///
/// Handles are allocated from a counter and never reused within a
/// connection, so a late upstream event for an ended operation can never reach
/// a newer operation that reuses the client's string id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u64);

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op#{}", self.0)
    }
}

/// A GraphQL request as a client sent it (`subscribe` or legacy `start`).
#[derive(Debug, Clone, PartialEq)]
pub struct OperationRequest {
    /// The client's id for the operation (unique among its live operations).
    pub id: String,
    /// The GraphQL document.
    pub query: String,
    /// Which operation of the document to run, if it has several.
    pub operation_name: Option<String>,
    /// Variable values (an empty map when the client sent none or null).
    pub variables: Map<String, Value>,
    /// Protocol extensions, passed through untouched.
    pub extensions: Map<String, Value>,
}

/// What the upstream side reports for an operation; the host feeds these to
/// the connection state machine.
#[derive(Debug, Clone, PartialEq)]
pub enum UpstreamEvent {
    /// One execution result (`{"data": ..., "errors": [...]}`).
    Next(Value),
    /// One execution result already serialised as JSON text, shared with
    /// other operations that selected the same (a `@shared` stream's
    /// message is encoded once per distinct selection,
    /// `core/src/share.rs`): the connection copies the bytes into its frame
    /// around the operation's id instead of encoding again.
    NextEncoded(EncodedPayload),
    /// The operation failed before or instead of producing results: a
    /// non-empty list of GraphQL errors. Terminal.
    Error(Vec<Value>),
    /// The operation produced all of its results. Terminal.
    Complete,
}

impl UpstreamEvent {
    /// Whether this event ends the operation.
    pub fn is_terminal(&self) -> bool {
        !matches!(self, UpstreamEvent::Next(_) | UpstreamEvent::NextEncoded(_))
    }

    /// The result of a `Next` or `NextEncoded` as a value (parsing the
    /// encoded text), for hosts that do not write it out as it is.
    pub fn next_value(&self) -> Option<Value> {
        match self {
            UpstreamEvent::Next(v) => Some(v.clone()),
            UpstreamEvent::NextEncoded(p) => serde_json::from_str(p.as_str()).ok(),
            _ => None,
        }
    }
}

/// A serialised execution result (`{"data": ...}` as JSON text), shared by
/// every operation whose result it is. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPayload(std::sync::Arc<str>);

impl EncodedPayload {
    /// Serialises `result` once.
    pub fn encode(result: &Value) -> Self {
        EncodedPayload(std::sync::Arc::from(result.to_string()))
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `other` holds the very same bytes (not a copy).
    pub fn same_bytes(&self, other: &EncodedPayload) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }

    /// This result with `"extensions":{"skipped":skipped}` added (a lagging
    /// `@shared` subscriber's own copy, core/src/share.rs), without
    /// encoding it again: the text is an object without `extensions` (a
    /// result with errors is never encoded), so the member goes before its
    /// closing brace.
    pub fn with_skipped(&self, skipped: u64) -> EncodedPayload {
        let text = self.as_str();
        match text.strip_suffix('}') {
            Some(head) if !text.contains("\"extensions\"") => {
                let separator = if head.trim_end().ends_with('{') {
                    ""
                } else {
                    ","
                };
                EncodedPayload(std::sync::Arc::from(format!(
                    "{head}{separator}\"extensions\":{{\"skipped\":{skipped}}}}}"
                )))
            }
            // Not the shape above: parse and add it properly.
            _ => {
                let mut value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
                if let Value::Object(map) = &mut value {
                    let extensions = map
                        .entry("extensions")
                        .or_insert_with(|| Value::Object(Default::default()));
                    if let Value::Object(extensions) = extensions {
                        extensions.insert("skipped".into(), Value::from(skipped));
                    }
                }
                EncodedPayload::encode(&value)
            }
        }
    }
}
