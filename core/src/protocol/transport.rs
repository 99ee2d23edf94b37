//! Messages of `graphql-transport-ws` (the graphql-ws project's protocol).

use super::{
    frame, optional_object_payload, parse_envelope, required_id, ParseError, ResultFrame,
    SubscribePayload,
};
use serde_json::Value;

/// A message the client sends to the server.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// `connection_init` with optional auth parameters.
    ConnectionInit {
        /// The connection parameters (object), if any.
        payload: Option<Value>,
    },
    /// `ping` (answered with `pong`).
    Ping {
        /// Optional payload, echoed in the `pong`.
        payload: Option<Value>,
    },
    /// `pong` (a heartbeat or an answer to the server's `ping`).
    Pong {
        /// Optional payload.
        payload: Option<Value>,
    },
    /// `subscribe`: start an operation.
    Subscribe {
        /// The client's operation id.
        id: String,
        /// The request.
        payload: SubscribePayload,
    },
    /// `complete`: stop an operation.
    Complete {
        /// The client's operation id.
        id: String,
    },
}

impl ClientMessage {
    /// Parses one text frame a client sent. Server-to-client types, unknown
    /// types and bad shapes are errors (close 4400).
    pub fn parse(text: &str) -> Result<ClientMessage, ParseError> {
        let (obj, kind) = parse_envelope(text)?;
        match kind.as_str() {
            "connection_init" => Ok(ClientMessage::ConnectionInit {
                payload: optional_object_payload(&obj, &kind)?,
            }),
            "ping" => Ok(ClientMessage::Ping {
                payload: optional_object_payload(&obj, &kind)?,
            }),
            "pong" => Ok(ClientMessage::Pong {
                payload: optional_object_payload(&obj, &kind)?,
            }),
            "subscribe" => {
                let id = required_id(&obj, &kind)?;
                let payload = SubscribePayload::from_value(obj.get("payload"))
                    .map_err(|m| ParseError::new(format!("Invalid message: subscribe {m}")))?;
                Ok(ClientMessage::Subscribe { id, payload })
            }
            "complete" => Ok(ClientMessage::Complete {
                id: required_id(&obj, &kind)?,
            }),
            "connection_ack" | "next" | "error" => Err(ParseError::new(format!(
                "Invalid message: {kind} is sent by servers only"
            ))),
            _ => Err(ParseError::new("Invalid message: unknown type")),
        }
    }

    /// Serialises the message as a text frame.
    pub fn to_text(&self) -> String {
        match self {
            ClientMessage::ConnectionInit { payload } => {
                frame("connection_init", None, payload.as_ref())
            }
            ClientMessage::Ping { payload } => frame("ping", None, payload.as_ref()),
            ClientMessage::Pong { payload } => frame("pong", None, payload.as_ref()),
            ClientMessage::Subscribe { id, payload } => {
                frame("subscribe", Some(id), Some(&payload.to_value()))
            }
            ClientMessage::Complete { id } => frame("complete", Some(id), None),
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
    /// `ping`.
    Ping {
        /// Optional payload.
        payload: Option<Value>,
    },
    /// `pong`.
    Pong {
        /// Optional payload.
        payload: Option<Value>,
    },
    /// `next`: one execution result.
    Next {
        /// Operation id.
        id: String,
        /// `{data?, errors?}`.
        payload: Value,
    },
    /// `error`: the operation failed; terminal.
    Error {
        /// Operation id.
        id: String,
        /// Non-empty list of GraphQL errors.
        payload: Vec<Value>,
    },
    /// `complete`: the operation finished.
    Complete {
        /// Operation id.
        id: String,
    },
}

impl ServerMessage {
    /// Parses one text frame a server sent (the client side's view).
    pub fn parse(text: &str) -> Result<ServerMessage, ParseError> {
        let (mut obj, kind) = parse_envelope(text)?;
        match kind.as_str() {
            "connection_ack" => Ok(ServerMessage::ConnectionAck {
                payload: optional_object_payload(&obj, &kind)?,
            }),
            "ping" => Ok(ServerMessage::Ping {
                payload: optional_object_payload(&obj, &kind)?,
            }),
            "pong" => Ok(ServerMessage::Pong {
                payload: optional_object_payload(&obj, &kind)?,
            }),
            "next" => {
                let id = required_id(&obj, &kind)?;
                // Taken out of the frame, not copied.
                match obj.remove("payload") {
                    Some(payload @ Value::Object(_)) => Ok(ServerMessage::Next { id, payload }),
                    _ => Err(ParseError::new(
                        "Invalid message: next payload must be an object",
                    )),
                }
            }
            "error" => {
                let id = required_id(&obj, &kind)?;
                match obj.remove("payload") {
                    Some(Value::Array(errors)) if !errors.is_empty() => Ok(ServerMessage::Error {
                        id,
                        payload: errors,
                    }),
                    _ => Err(ParseError::new(
                        "Invalid message: error payload must be a non-empty array",
                    )),
                }
            }
            "complete" => Ok(ServerMessage::Complete {
                id: required_id(&obj, &kind)?,
            }),
            "connection_init" | "subscribe" => Err(ParseError::new(format!(
                "Invalid message: {kind} is sent by clients only"
            ))),
            _ => Err(ParseError::new("Invalid message: unknown type")),
        }
    }

    /// Serialises the message as a text frame.
    pub fn to_text(&self) -> String {
        match self {
            ServerMessage::ConnectionAck { payload } => {
                frame("connection_ack", None, payload.as_ref())
            }
            ServerMessage::Ping { payload } => frame("ping", None, payload.as_ref()),
            ServerMessage::Pong { payload } => frame("pong", None, payload.as_ref()),
            ServerMessage::Next { id, payload } => {
                Self::result_text(id, ResultFrame::Next(payload))
            }
            ServerMessage::Error { id, payload } => {
                Self::result_text(id, ResultFrame::Error(&Value::Array(payload.clone())))
            }
            ServerMessage::Complete { id } => Self::result_text(id, ResultFrame::Complete),
        }
    }

    /// The text of `id`'s `result`: `next` (also from already encoded
    /// JSON), `error` or `complete`.
    pub(crate) fn result_text(id: &str, result: ResultFrame<'_>) -> String {
        result.text("next", id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn client_messages_round_trip() {
        let msgs = [
            ClientMessage::ConnectionInit {
                payload: Some(json!({"token": "t"})),
            },
            ClientMessage::Ping { payload: None },
            ClientMessage::Pong {
                payload: Some(json!({})),
            },
            ClientMessage::Subscribe {
                id: "1".into(),
                payload: SubscribePayload::from_value(Some(
                    &json!({"query": "{a}", "operationName": "A", "variables": {"x": 1}}),
                ))
                .unwrap(),
            },
            ClientMessage::Complete { id: "1".into() },
        ];
        for m in msgs {
            assert_eq!(ClientMessage::parse(&m.to_text()).unwrap(), m);
        }
    }

    #[test]
    fn server_messages_round_trip() {
        let msgs = [
            ServerMessage::ConnectionAck { payload: None },
            ServerMessage::Ping { payload: None },
            ServerMessage::Pong { payload: None },
            ServerMessage::Next {
                id: "a".into(),
                payload: json!({"data": {"x": 1}}),
            },
            ServerMessage::Error {
                id: "a".into(),
                payload: vec![json!({"message": "no"})],
            },
            ServerMessage::Complete { id: "a".into() },
        ];
        for m in msgs {
            assert_eq!(ServerMessage::parse(&m.to_text()).unwrap(), m);
        }
    }

    #[test]
    fn bad_shapes_are_rejected() {
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"type":"next","id":"1","payload":{}}"#,
            r#"{"type":"subscribe","id":"","payload":{"query":"{a}"}}"#,
            r#"{"type":"subscribe","id":"1","payload":{"query":1}}"#,
            r#"{"type":"subscribe","id":"1","payload":{"query":"{a}","variables":[]}}"#,
            r#"{"type":"subscribe","id":"1"}"#,
            r#"{"type":"subscribe","id":"1","payload":{"extensions":{}}}"#,
            r#"{"type":"subscribe","id":"1","payload":{"extensions":{"persistedQuery":{}},"query":1}}"#,
            r#"{"type":"connection_init","payload":"x"}"#,
            r#"{"type":"complete"}"#,
            r#"{"type":"what"}"#,
        ] {
            assert!(ClientMessage::parse(bad).is_err(), "{bad}");
        }
        assert!(ClientMessage::parse(
            r#"{"type":"subscribe","id":"1","payload":{"query":"{a}","variables":null,"operationName":null,"extensions":null}}"#
        )
        .is_ok());
        // A persisted query by hash: no query (core/src/graphql/persisted.rs
        // resolves it before the operation starts).
        assert!(ClientMessage::parse(
            r#"{"type":"subscribe","id":"1","payload":{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"ab"}}}}"#
        )
        .is_ok());
    }
}
