//! Messages of legacy `graphql-ws` (subscriptions-transport-ws).

use super::{frame, parse_envelope, ParseError, ResultFrame, SubscribePayload};
use serde_json::Value;

/// A message the client sends to the server.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// `connection_init` with connection params.
    ConnectionInit {
        /// The params, if any.
        payload: Option<Value>,
    },
    /// `start`: start an operation.
    Start {
        /// The client's operation id.
        id: String,
        /// The request.
        payload: SubscribePayload,
    },
    /// `stop`: unsubscribe.
    Stop {
        /// The client's operation id.
        id: String,
    },
    /// `connection_terminate`: close the connection.
    ConnectionTerminate,
}

fn legacy_id(obj: &serde_json::Map<String, Value>, kind: &str) -> Result<String, ParseError> {
    match obj.get("id") {
        Some(Value::String(id)) if !id.is_empty() => Ok(id.clone()),
        _ => Err(ParseError::new(format!(
            "Invalid message: {kind} needs a non-empty string id"
        ))),
    }
}

impl ClientMessage {
    /// Parses one text frame a client sent. A `start` whose id is usable but
    /// whose payload is not reports the id in the error, so the server can
    /// answer that operation alone.
    pub fn parse(text: &str) -> Result<ClientMessage, ParseError> {
        let (obj, kind) = parse_envelope(text)?;
        match kind.as_str() {
            "connection_init" => Ok(ClientMessage::ConnectionInit {
                // Legacy clients send arbitrary connection params; anything
                // but null is passed to the authenticator as is.
                payload: obj.get("payload").filter(|p| !p.is_null()).cloned(),
            }),
            "start" => {
                let id = legacy_id(&obj, &kind)?;
                match SubscribePayload::from_value(obj.get("payload")) {
                    Ok(payload) => Ok(ClientMessage::Start { id, payload }),
                    Err(m) => Err(ParseError {
                        id: Some(id),
                        message: format!("Invalid message: start {m}"),
                    }),
                }
            }
            "stop" => Ok(ClientMessage::Stop {
                id: legacy_id(&obj, &kind)?,
            }),
            "connection_terminate" => Ok(ClientMessage::ConnectionTerminate),
            "connection_ack" | "connection_error" | "ka" | "data" | "error" | "complete" => Err(
                ParseError::new(format!("Invalid message: {kind} is sent by servers only")),
            ),
            _ => Err(ParseError::new("Invalid message: unknown type")),
        }
    }

    /// Serialises the message as a text frame.
    pub fn to_text(&self) -> String {
        match self {
            ClientMessage::ConnectionInit { payload } => frame(
                "connection_init",
                None,
                Some(
                    &payload
                        .clone()
                        .unwrap_or_else(|| Value::Object(Default::default())),
                ),
            ),
            ClientMessage::Start { id, payload } => {
                frame("start", Some(id), Some(&payload.to_value()))
            }
            ClientMessage::Stop { id } => frame("stop", Some(id), None),
            ClientMessage::ConnectionTerminate => frame("connection_terminate", None, None),
        }
    }
}

/// A message the server sends to the client.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// `connection_ack`.
    ConnectionAck {
        /// Optional payload.
        payload: Option<Value>,
    },
    /// `connection_error`: init rejected, or a frame could not be parsed.
    ConnectionError {
        /// `{"message": ...}`.
        payload: Value,
    },
    /// `ka`: keep-alive.
    Ka,
    /// `data`: one execution result.
    Data {
        /// Operation id.
        id: String,
        /// `{data, errors?}`.
        payload: Value,
    },
    /// `error`: the operation failed before execution; terminal.
    Error {
        /// Operation id.
        id: String,
        /// The GraphQL errors (an array).
        payload: Value,
    },
    /// `complete`: the operation finished (also the answer to `stop`).
    Complete {
        /// Operation id.
        id: String,
    },
}

impl ServerMessage {
    /// Parses one text frame a server sent (the client side's view).
    pub fn parse(text: &str) -> Result<ServerMessage, ParseError> {
        let (mut obj, kind) = parse_envelope(text)?;
        // Taken out of the frame, not copied.
        let payload = obj.remove("payload").unwrap_or(Value::Null);
        match kind.as_str() {
            "connection_ack" => Ok(ServerMessage::ConnectionAck {
                payload: Some(payload).filter(|p| !p.is_null()),
            }),
            "connection_error" => Ok(ServerMessage::ConnectionError { payload }),
            "ka" => Ok(ServerMessage::Ka),
            "data" => Ok(ServerMessage::Data {
                id: legacy_id(&obj, &kind)?,
                payload,
            }),
            "error" => Ok(ServerMessage::Error {
                id: legacy_id(&obj, &kind)?,
                payload,
            }),
            "complete" => Ok(ServerMessage::Complete {
                id: legacy_id(&obj, &kind)?,
            }),
            _ => Err(ParseError::new(format!(
                "Invalid message: {kind} is not a server message"
            ))),
        }
    }

    /// Serialises the message as a text frame.
    pub fn to_text(&self) -> String {
        match self {
            ServerMessage::ConnectionAck { payload } => {
                frame("connection_ack", None, payload.as_ref())
            }
            ServerMessage::ConnectionError { payload } => {
                frame("connection_error", None, Some(payload))
            }
            ServerMessage::Ka => frame("ka", None, None),
            ServerMessage::Data { id, payload } => {
                Self::result_text(id, ResultFrame::Next(payload))
            }
            ServerMessage::Error { id, payload } => {
                Self::result_text(id, ResultFrame::Error(payload))
            }
            ServerMessage::Complete { id } => Self::result_text(id, ResultFrame::Complete),
        }
    }

    /// The text of `id`'s `result`: `data` (also from already encoded
    /// JSON), `error` or `complete`.
    pub(crate) fn result_text(id: &str, result: ResultFrame<'_>) -> String {
        result.text("data", id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_round_trip() {
        let start = ClientMessage::Start {
            id: "1".into(),
            payload: SubscribePayload::from_value(Some(&json!({"query": "{a}"}))).unwrap(),
        };
        assert_eq!(ClientMessage::parse(&start.to_text()).unwrap(), start);
        let stop = ClientMessage::Stop { id: "1".into() };
        assert_eq!(ClientMessage::parse(&stop.to_text()).unwrap(), stop);
        for m in [
            ServerMessage::Ka,
            ServerMessage::Data {
                id: "1".into(),
                payload: json!({"data": null}),
            },
            ServerMessage::Complete { id: "1".into() },
        ] {
            assert_eq!(ServerMessage::parse(&m.to_text()).unwrap(), m);
        }
    }

    #[test]
    fn bad_start_payload_names_the_id() {
        let err = ClientMessage::parse(r#"{"type":"start","id":"7","payload":{}}"#).unwrap_err();
        assert_eq!(err.id.as_deref(), Some("7"));
        let err = ClientMessage::parse(r#"{"type":"nope"}"#).unwrap_err();
        assert_eq!(err.id, None);
    }
}
