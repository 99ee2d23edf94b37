//! The client side of one GraphQL-over-WebSocket connection, sans IO, for
//! both subprotocols: the load tool and the browser simulator drive it.
//!
//! The host calls [`ClientConnection::handle_opened`] once the socket is open,
//! feeds frames and timer expiries, and drains
//! [`ClientConnection::poll_effect`] after every call. Operations requested
//! before the ack wait for it (`graphql-transport-ws`), or are sent right
//! after `connection_init` as deployed legacy clients do (`graphql-ws`).

use crate::protocol::{close, legacy, transport, truncate_reason, Subprotocol, SubscribePayload};
use crate::Millis;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// The client's bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// How long to wait for `connection_ack` after the socket opened before
    /// closing with 4504. Default 10 s.
    pub ack_timeout: Duration,
    /// `graphql-transport-ws` only: period of `ping` messages; if nothing at
    /// all arrived since the previous ping when the next one is due, the
    /// client closes with 1001 `Keep-alive timeout`. Zero (the default)
    /// disables client pings.
    pub ping_interval: Duration,
    /// The `connection_init` payload (auth parameters).
    pub connection_params: Option<Value>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            ack_timeout: Duration::from_secs(10),
            ping_interval: Duration::ZERO,
            connection_params: None,
        }
    }
}

/// What the application learns from the connection.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// The server accepted `connection_init`.
    Acked {
        /// The ack payload, if any.
        payload: Option<Value>,
    },
    /// One result for operation `id`.
    Next {
        /// Operation id.
        id: String,
        /// `{data?, errors?}`.
        payload: Value,
    },
    /// Operation `id` failed; terminal.
    Error {
        /// Operation id.
        id: String,
        /// The GraphQL errors.
        errors: Vec<Value>,
    },
    /// Operation `id` finished; terminal.
    Complete {
        /// Operation id.
        id: String,
    },
    /// The connection is closed; every operation still active ended with it.
    /// Emitted exactly once.
    Closed {
        /// WebSocket close code (1006 when the socket died without one).
        code: u16,
        /// Close reason.
        reason: String,
    },
}

/// What the client asks the host to do.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEffect {
    /// Send a text frame.
    SendText(String),
    /// Close the socket.
    Close {
        /// WebSocket close code.
        code: u16,
        /// Close reason (at most 123 bytes).
        reason: String,
    },
    /// Tell the application.
    Event(ClientEvent),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The socket is not open yet.
    Connecting,
    /// `connection_init` sent; waiting for the ack.
    Initialising,
    /// Acknowledged.
    Ready,
    /// Closed.
    Closed,
}

/// The client side of one connection. See the module docs.
#[derive(Debug)]
pub struct ClientConnection {
    protocol: Subprotocol,
    config: ClientConfig,
    phase: Phase,
    /// Active operations by id; `true` once the subscribe frame went out.
    ops: BTreeMap<String, bool>,
    /// Subscribe frames waiting for the ack, in order.
    waiting: VecDeque<(String, String)>,
    next_id: u64,
    effects: VecDeque<ClientEffect>,
    ack_deadline: Option<Millis>,
    next_ping: Option<Millis>,
    heard_since_ping: bool,
}

impl ClientConnection {
    /// A client for `protocol`; the socket is being opened at `now`.
    pub fn new(_now: Millis, protocol: Subprotocol, config: ClientConfig) -> Self {
        ClientConnection {
            protocol,
            config,
            phase: Phase::Connecting,
            ops: BTreeMap::new(),
            waiting: VecDeque::new(),
            next_id: 1,
            effects: VecDeque::new(),
            ack_deadline: None,
            next_ping: None,
            heard_since_ping: true,
        }
    }

    /// The subprotocol.
    pub fn protocol(&self) -> Subprotocol {
        self.protocol
    }

    /// The socket opened: sends `connection_init` (and, for legacy, any
    /// operation requested so far right behind it).
    pub fn handle_opened(&mut self, now: Millis) {
        if self.phase != Phase::Connecting {
            return;
        }
        self.phase = Phase::Initialising;
        self.ack_deadline = Some(now + self.config.ack_timeout);
        let payload = self.config.connection_params.clone();
        let init = match self.protocol {
            Subprotocol::GraphqlTransportWs => {
                transport::ClientMessage::ConnectionInit { payload }.to_text()
            }
            Subprotocol::GraphqlWs => legacy::ClientMessage::ConnectionInit { payload }.to_text(),
        };
        self.effects.push_back(ClientEffect::SendText(init));
        if self.protocol == Subprotocol::GraphqlWs {
            self.flush_waiting();
        }
    }

    /// A text frame arrived from the server.
    pub fn handle_text(&mut self, now: Millis, text: &str) {
        if matches!(self.phase, Phase::Closed | Phase::Connecting) {
            return;
        }
        self.heard_since_ping = true;
        match self.protocol {
            Subprotocol::GraphqlTransportWs => self.on_transport_text(now, text),
            Subprotocol::GraphqlWs => self.on_legacy_text(now, text),
        }
    }

    /// The socket closed (`code` 1006 when it died without a close frame).
    pub fn handle_transport_closed(&mut self, _now: Millis, code: u16, reason: &str) {
        if self.phase == Phase::Closed {
            return;
        }
        self.finish(code, reason.to_owned());
    }

    /// The timer armed at [`Self::poll_timeout`] fired.
    pub fn handle_timeout(&mut self, now: Millis) {
        if self.phase == Phase::Closed {
            return;
        }
        if self.ack_deadline.is_some_and(|d| d <= now) {
            return self.close(
                now,
                close::CONNECTION_ACKNOWLEDGEMENT_TIMEOUT,
                "Connection acknowledgement timeout",
            );
        }
        if self.next_ping.is_some_and(|d| d <= now) {
            if !self.heard_since_ping {
                return self.close(now, close::GOING_AWAY, "Keep-alive timeout");
            }
            self.heard_since_ping = false;
            self.next_ping = Some(now + self.config.ping_interval);
            self.send(transport::ClientMessage::Ping { payload: None }.to_text());
        }
    }

    /// Requests an operation; returns its id. Events for it arrive as
    /// [`ClientEvent`]s. Requested before the ack, it is sent once the
    /// connection is ready (legacy: right after `connection_init`). On a
    /// closed connection nothing is sent and no event follows (check
    /// [`Self::is_closed`] first).
    pub fn subscribe(
        &mut self,
        _now: Millis,
        query: &str,
        variables: Option<Map<String, Value>>,
        operation_name: Option<&str>,
    ) -> String {
        let id = self.next_id.to_string();
        self.next_id += 1;
        if self.phase == Phase::Closed {
            // The connection is gone (its `Closed` event was emitted): the
            // operation is dead on arrival and gets no event of its own.
            return id;
        }
        let payload = SubscribePayload {
            query: query.to_owned(),
            operation_name: operation_name.map(str::to_owned),
            variables: variables.unwrap_or_default(),
            extensions: Map::new(),
        };
        let text = match self.protocol {
            Subprotocol::GraphqlTransportWs => transport::ClientMessage::Subscribe {
                id: id.clone(),
                payload,
            }
            .to_text(),
            Subprotocol::GraphqlWs => legacy::ClientMessage::Start {
                id: id.clone(),
                payload,
            }
            .to_text(),
        };
        self.ops.insert(id.clone(), false);
        self.waiting.push_back((id.clone(), text));
        let can_send = match self.protocol {
            Subprotocol::GraphqlTransportWs => self.phase == Phase::Ready,
            Subprotocol::GraphqlWs => self.phase != Phase::Connecting,
        };
        if can_send {
            self.flush_waiting();
        }
        id
    }

    /// Stops operation `id` (no event follows for it).
    pub fn complete(&mut self, _now: Millis, id: &str) {
        let Some(sent) = self.ops.remove(id) else {
            return;
        };
        if !sent {
            self.waiting.retain(|(w, _)| w != id);
            return;
        }
        let text = match self.protocol {
            Subprotocol::GraphqlTransportWs => {
                transport::ClientMessage::Complete { id: id.to_owned() }.to_text()
            }
            Subprotocol::GraphqlWs => legacy::ClientMessage::Stop { id: id.to_owned() }.to_text(),
        };
        self.send(text);
    }

    /// Closes the connection (legacy: `connection_terminate` first).
    pub fn close(&mut self, _now: Millis, code: u16, reason: &str) {
        if self.phase == Phase::Closed {
            return;
        }
        if self.protocol == Subprotocol::GraphqlWs && self.phase != Phase::Connecting {
            self.send(legacy::ClientMessage::ConnectionTerminate.to_text());
        }
        let reason = truncate_reason(reason);
        self.effects.push_back(ClientEffect::Close {
            code,
            reason: reason.clone(),
        });
        self.finish(code, reason);
    }

    /// The next thing the host must do.
    pub fn poll_effect(&mut self) -> Option<ClientEffect> {
        self.effects.pop_front()
    }

    /// When to call [`Self::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Millis> {
        if self.phase == Phase::Closed {
            return None;
        }
        [self.ack_deadline, self.next_ping]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether the connection was acknowledged and is still open.
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// Whether the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Operations requested and not yet ended.
    pub fn active_operations(&self) -> usize {
        self.ops.len()
    }

    /// The ids of the active operations.
    pub fn active_ids(&self) -> impl Iterator<Item = &str> {
        self.ops.keys().map(String::as_str)
    }

    // ---- internals ----

    fn on_transport_text(&mut self, now: Millis, text: &str) {
        use transport::{ClientMessage, ServerMessage};
        let msg = match ServerMessage::parse(text) {
            Ok(msg) => msg,
            Err(e) => return self.close(now, close::BAD_RESPONSE, &e.message),
        };
        match msg {
            ServerMessage::ConnectionAck { payload } => {
                if self.phase != Phase::Initialising {
                    return self.close(now, close::BAD_RESPONSE, "Unexpected connection_ack");
                }
                self.on_ack(now, payload);
                self.flush_waiting();
            }
            ServerMessage::Ping { payload } => self.send(ClientMessage::Pong { payload }.to_text()),
            ServerMessage::Pong { .. } => {}
            ServerMessage::Next { id, payload } => {
                if self.ops.contains_key(&id) {
                    self.event(ClientEvent::Next { id, payload });
                }
            }
            ServerMessage::Error { id, payload } => {
                if self.ops.remove(&id).is_some() {
                    self.event(ClientEvent::Error {
                        id,
                        errors: payload,
                    });
                }
            }
            ServerMessage::Complete { id } => {
                if self.ops.remove(&id).is_some() {
                    self.event(ClientEvent::Complete { id });
                }
            }
        }
    }

    fn on_legacy_text(&mut self, now: Millis, text: &str) {
        use legacy::ServerMessage;
        let msg = match ServerMessage::parse(text) {
            Ok(msg) => msg,
            Err(e) => return self.close(now, close::BAD_RESPONSE, &e.message),
        };
        match msg {
            ServerMessage::ConnectionAck { payload } => {
                if self.phase == Phase::Initialising {
                    self.on_ack(now, payload);
                }
            }
            // The server reports a rejected init or a frame it could not
            // parse; a rejection is followed by its close, which ends
            // everything.
            ServerMessage::ConnectionError { .. } | ServerMessage::Ka => {}
            ServerMessage::Data { id, payload } => {
                if self.ops.contains_key(&id) {
                    self.event(ClientEvent::Next { id, payload });
                }
            }
            ServerMessage::Error { id, payload } => {
                if self.ops.remove(&id).is_some() {
                    let errors = match payload {
                        Value::Array(errors) => errors,
                        other => vec![other],
                    };
                    self.event(ClientEvent::Error { id, errors });
                }
            }
            ServerMessage::Complete { id } => {
                if self.ops.remove(&id).is_some() {
                    self.event(ClientEvent::Complete { id });
                }
            }
        }
    }

    fn on_ack(&mut self, now: Millis, payload: Option<Value>) {
        self.phase = Phase::Ready;
        self.ack_deadline = None;
        if self.protocol == Subprotocol::GraphqlTransportWs && !self.config.ping_interval.is_zero()
        {
            self.next_ping = Some(now + self.config.ping_interval);
        }
        self.event(ClientEvent::Acked { payload });
    }

    fn flush_waiting(&mut self) {
        while let Some((id, text)) = self.waiting.pop_front() {
            if let Some(sent) = self.ops.get_mut(&id) {
                *sent = true;
                self.effects.push_back(ClientEffect::SendText(text));
            }
        }
    }

    fn send(&mut self, text: String) {
        if !matches!(self.phase, Phase::Closed | Phase::Connecting) {
            self.effects.push_back(ClientEffect::SendText(text));
        }
    }

    fn event(&mut self, event: ClientEvent) {
        self.effects.push_back(ClientEffect::Event(event));
    }

    fn finish(&mut self, code: u16, reason: String) {
        self.phase = Phase::Closed;
        self.ops.clear();
        self.waiting.clear();
        self.ack_deadline = None;
        self.next_ping = None;
        self.event(ClientEvent::Closed { code, reason });
    }
}

#[cfg(test)]
mod tests;
