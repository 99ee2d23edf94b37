//! The server side of one GraphQL-over-WebSocket connection, sans IO.
//!
//! The host feeds inputs (`handle_*`, each sugar for [`ServerConnection::handle`])
//! and drains [`ServerConnection::poll_effect`] after every input until it
//! returns `None`; it arms one timer at [`ServerConnection::poll_timeout`].
//! The rules are those of docs/protocol.md.
//!
//! Every close is decided here, and every close has the same shape (like
//! quinn-proto's close timer): `Close { code, reason }` is emitted with one
//! `Cancel` per live operation, then the connection *lingers*: it waits for
//! the peer's close frame (the host reports it with
//! [`ServerConnection::handle_transport_closed`]) with a deadline of
//! `close_linger` in [`ServerConnection::poll_timeout`]; whichever comes
//! first ends it, and [`ServerConnection::is_terminated`] turns true. The
//! server-wide drain is the small machine in [`drain`].

mod config;
pub mod drain;

pub use crate::protocol::Subprotocol;
pub use config::ConnectionConfig;
pub use drain::{Admission, Drain, DrainConfig, DrainEffect};

use crate::protocol::{close, legacy, transport, truncate_reason, ResultFrame, SubscribePayload};
use crate::{Millis, OpId, OperationRequest, UpstreamEvent};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

/// The host's decision on a `connection_init`.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthVerdict {
    /// Accept; `ack_payload` goes into `connection_ack`.
    Accept {
        /// Optional payload of the ack.
        ack_payload: Option<Value>,
    },
    /// Accept until `expires` (the credential's expiry, plus any leeway,
    /// on the connection's clock): at that instant the connection is
    /// closed with 4403 `Forbidden: token expired` and every operation is
    /// cancelled. An `expires` already passed closes at once, with no ack.
    AcceptUntil {
        /// Optional payload of the ack.
        ack_payload: Option<Value>,
        /// When the credential stops being valid.
        expires: Millis,
    },
    /// Reject: close 4403 (legacy: `connection_error` first).
    Reject {
        /// Why, for the client (becomes part of the close reason).
        reason: String,
    },
}

/// Everything that can happen to a connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A text frame arrived.
    Text(String),
    /// A binary frame arrived.
    Binary(Vec<u8>),
    /// A WebSocket pong arrived.
    TransportPong,
    /// The host decided on the pending `connection_init`.
    Auth(AuthVerdict),
    /// The upstream reported an event for an operation.
    Upstream {
        /// The operation.
        op: OpId,
        /// What happened.
        event: UpstreamEvent,
    },
    /// The host wrote this many bytes of `SendText` to the socket.
    Flushed(usize),
    /// The socket closed: the peer's close frame arrived (with its code,
    /// [`close::NO_STATUS_RECEIVED`] when it had none), or the socket ended
    /// or failed without one ([`close::ABNORMAL_CLOSURE`]).
    TransportClosed {
        /// The peer's close code, or 1005 / 1006 as above.
        code: u16,
    },
    /// The transport refused an inbound frame or message larger than its
    /// own cap (the host sets that cap at or above `max_frame_bytes`, so this
    /// and the connection's own size rule agree): close 1009.
    FrameTooBig {
        /// The size the transport reported, in bytes.
        bytes: usize,
    },
    /// The transport found a frame that breaks RFC 6455: close 1007 for
    /// invalid UTF-8 in a text message, 1002 for the rest. The host cannot
    /// parse the stream after it, so the linger ends at its deadline.
    FrameViolation(FrameViolation),
    /// The host failed while serving this connection (a panic it caught):
    /// close 4500.
    InternalError,
    /// The timer armed at `poll_timeout()` fired.
    Timeout,
    /// The server is draining.
    Shutdown,
}

/// A WebSocket framing rule the peer broke (RFC 6455), as the host's
/// WebSocket layer reports it; [`FrameViolation::close_code`] is the
/// close it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameViolation {
    /// A text message (or the reassembled fragments of one) that is not
    /// valid UTF-8.
    InvalidUtf8,
    /// A client frame without a mask (RFC 6455 5.1).
    Unmasked,
    /// RSV1, RSV2 or RSV3 set with no extension negotiated (5.2).
    ReservedBits,
    /// An opcode RFC 6455 does not define (5.2).
    UnknownOpcode,
    /// A control frame with more than 125 bytes of payload (5.5).
    ControlFrameTooBig,
    /// A control frame without FIN (5.5).
    FragmentedControlFrame,
    /// A continuation frame with no message to continue, or a new data
    /// frame while a fragmented message is unfinished (5.4).
    BadContinuation,
    /// Any other malformed frame (a bad close payload, for example).
    Malformed,
}

impl FrameViolation {
    /// The close code of this violation: 1007 for invalid UTF-8, else 1002.
    pub fn close_code(self) -> u16 {
        match self {
            FrameViolation::InvalidUtf8 => close::INVALID_FRAME_PAYLOAD_DATA,
            _ => close::PROTOCOL_ERROR,
        }
    }

    /// The close reason sent with [`Self::close_code`].
    pub fn reason(self) -> &'static str {
        match self {
            FrameViolation::InvalidUtf8 => "Invalid UTF-8 in a text message",
            FrameViolation::Unmasked => "Client frame not masked",
            FrameViolation::ReservedBits => "Reserved bits set",
            FrameViolation::UnknownOpcode => "Unknown opcode",
            FrameViolation::ControlFrameTooBig => "Control frame over 125 bytes",
            FrameViolation::FragmentedControlFrame => "Fragmented control frame",
            FrameViolation::BadContinuation => "Unexpected continuation frame",
            FrameViolation::Malformed => "Malformed frame",
        }
    }
}

/// Everything the connection asks the host to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send a text frame.
    SendText(String),
    /// Send a WebSocket ping.
    SendPing,
    /// Decide on this `connection_init` payload and answer with
    /// [`ServerConnection::handle_auth`].
    Authenticate {
        /// The init payload.
        payload: Option<Value>,
    },
    /// Start executing an operation; report its events with
    /// [`ServerConnection::handle_upstream`].
    Start {
        /// The never-reused handle of the operation.
        op: OpId,
        /// What to execute.
        request: OperationRequest,
    },
    /// Stop an operation and release everything it holds. No event for it
    /// is wanted any more (one that arrives anyway is dropped).
    Cancel {
        /// The operation.
        op: OpId,
    },
    /// Close the socket with this code and reason (at most 123 bytes).
    Close {
        /// WebSocket close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
}

/// One live operation, for the admin page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperationInfo<'a> {
    /// The internal handle.
    pub op: OpId,
    /// The client's id.
    pub id: &'a str,
    /// When its `Start` was emitted.
    pub started: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for `connection_init`.
    AwaitingInit,
    /// `connection_init` received; waiting for the host's verdict.
    Authenticating,
    /// Acknowledged: operations may run.
    Ready,
    /// We sent `Close` and wait, until `until` at the latest, for the peer's
    /// close frame. Nothing is sent; every operation was cancelled.
    Closing {
        /// The end of the linger.
        until: Millis,
    },
    /// Closed (by us or by the transport); only Cancels may still be queued.
    Closed,
}

#[derive(Debug)]
struct LiveOp {
    id: String,
    started: Millis,
}

/// The server side of one connection. See the module docs.
#[derive(Debug)]
pub struct ServerConnection {
    protocol: Subprotocol,
    config: ConnectionConfig,
    phase: Phase,
    init_deadline: Millis,
    live: BTreeMap<OpId, LiveOp>,
    by_id: HashMap<String, OpId>,
    /// Legacy starts that arrived before the ack, in order.
    queued: VecDeque<(String, SubscribePayload)>,
    next_op: u64,
    effects: VecDeque<Effect>,
    unflushed: usize,
    next_ping: Option<Millis>,
    pong_deadline: Option<Millis>,
    next_ka: Option<Millis>,
    /// The code of the close: ours if we closed first, else the peer's.
    close_code: Option<u16>,
    /// The `now` of the input being handled.
    now: Millis,
    /// When the accepted credential expires (`AuthVerdict::AcceptUntil`).
    auth_expires: Option<Millis>,
}

/// The close reason when the credential of a live connection expires.
pub const TOKEN_EXPIRED_REASON: &str = "Forbidden: token expired";

fn after(now: Millis, period: Duration) -> Option<Millis> {
    (!period.is_zero()).then(|| now + period)
}

impl ServerConnection {
    /// A connection whose socket opened at `now` with the negotiated
    /// `protocol`.
    pub fn new(now: Millis, protocol: Subprotocol, config: ConnectionConfig) -> Self {
        ServerConnection {
            protocol,
            init_deadline: now + config.init_timeout,
            next_ping: after(now, config.keepalive_interval),
            config,
            phase: Phase::AwaitingInit,
            live: BTreeMap::new(),
            by_id: HashMap::new(),
            queued: VecDeque::new(),
            next_op: 0,
            effects: VecDeque::new(),
            unflushed: 0,
            pong_deadline: None,
            next_ka: None,
            close_code: None,
            now,
            auth_expires: None,
        }
    }

    /// The negotiated subprotocol.
    pub fn protocol(&self) -> Subprotocol {
        self.protocol
    }

    /// The connection's bounds.
    pub fn config(&self) -> &ConnectionConfig {
        &self.config
    }

    /// Feeds one input.
    pub fn handle(&mut self, now: Millis, input: Input) {
        self.now = self.now.max(now);
        match self.phase {
            // After the transport closed nothing more happens.
            Phase::Closed => return,
            // After our Close: only the end of the linger matters. Late
            // upstream events are dropped, frames are ignored.
            Phase::Closing { until } => {
                match input {
                    Input::TransportClosed { .. } => self.phase = Phase::Closed,
                    Input::Timeout if until <= now => self.phase = Phase::Closed,
                    _ => {}
                }
                return;
            }
            _ => {}
        }
        match input {
            Input::Text(text) => self.on_text(now, &text),
            Input::Binary(data) => {
                self.pong_deadline = None;
                if data.len() > self.config.max_frame_bytes {
                    self.close(close::MESSAGE_TOO_BIG, "Frame too large");
                } else {
                    self.close(close::BAD_REQUEST, "Binary frames are not supported");
                }
            }
            Input::TransportPong => self.pong_deadline = None,
            Input::Auth(verdict) => self.on_auth(now, verdict),
            Input::Upstream { op, event } => self.on_upstream(op, event),
            Input::Flushed(bytes) => self.unflushed = self.unflushed.saturating_sub(bytes),
            Input::TransportClosed { code } => {
                self.phase = Phase::Closed;
                self.close_code.get_or_insert(code);
                self.cancel_all();
            }
            Input::FrameTooBig { .. } => {
                self.pong_deadline = None;
                self.close(close::MESSAGE_TOO_BIG, "Frame too large");
            }
            Input::FrameViolation(violation) => {
                self.pong_deadline = None;
                self.close(violation.close_code(), violation.reason());
            }
            Input::InternalError => {
                self.close(close::INTERNAL_SERVER_ERROR, "Internal server error")
            }
            Input::Timeout => self.on_timeout(now),
            Input::Shutdown => self.close(close::GOING_AWAY, "Server shutting down"),
        }
    }

    /// A text frame arrived.
    pub fn handle_text(&mut self, now: Millis, text: &str) {
        if self.is_open() {
            self.now = self.now.max(now);
            self.on_text(now, text);
        }
    }

    /// A binary frame arrived (always closes: 4400, or 1009 when too large).
    pub fn handle_binary(&mut self, now: Millis, data: &[u8]) {
        self.handle(now, Input::Binary(data.to_vec()));
    }

    /// A WebSocket pong arrived.
    pub fn handle_transport_pong(&mut self, now: Millis) {
        self.handle(now, Input::TransportPong);
    }

    /// The host's verdict on the pending `connection_init`.
    pub fn handle_auth(&mut self, now: Millis, verdict: AuthVerdict) {
        self.handle(now, Input::Auth(verdict));
    }

    /// An upstream event for `op`; dropped if `op` has ended.
    pub fn handle_upstream(&mut self, now: Millis, op: OpId, event: UpstreamEvent) {
        self.handle(now, Input::Upstream { op, event });
    }

    /// The host wrote `bytes` bytes of `SendText` to the socket.
    pub fn handle_flushed(&mut self, now: Millis, bytes: usize) {
        self.handle(now, Input::Flushed(bytes));
    }

    /// The socket closed with the peer's `code` (1005 for a close frame
    /// without one, 1006 when there was no close frame at all): every live
    /// operation is cancelled, and a linger ends.
    pub fn handle_transport_closed(&mut self, now: Millis, code: u16) {
        self.handle(now, Input::TransportClosed { code });
    }

    /// The transport refused a frame of `bytes` bytes as too large: close 1009.
    pub fn handle_frame_too_big(&mut self, now: Millis, bytes: usize) {
        self.handle(now, Input::FrameTooBig { bytes });
    }

    /// The peer broke RFC 6455's framing rules: close 1007 or 1002
    /// ([`FrameViolation::close_code`]).
    pub fn handle_frame_violation(&mut self, now: Millis, violation: FrameViolation) {
        self.handle(now, Input::FrameViolation(violation));
    }

    /// The host failed (caught a panic) serving this connection: close 4500.
    pub fn handle_internal_error(&mut self, now: Millis) {
        self.handle(now, Input::InternalError);
    }

    /// The timer fired (calling it early is harmless).
    pub fn handle_timeout(&mut self, now: Millis) {
        self.handle(now, Input::Timeout);
    }

    /// The server is draining: close 1001 and cancel everything.
    pub fn handle_shutdown(&mut self, now: Millis) {
        self.handle(now, Input::Shutdown);
    }

    /// The next thing the host must do.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        let effect = self.effects.pop_front();
        if effect.is_none() && self.effects.capacity() > 0 {
            // Drained: an idle connection holds no queue.
            self.effects = VecDeque::new();
        }
        effect
    }

    /// When to call [`Self::handle_timeout`] next: the end of the linger
    /// while closing, `None` once closed.
    pub fn poll_timeout(&self) -> Option<Millis> {
        match self.phase {
            Phase::Closed => return None,
            Phase::Closing { until } => return Some(until),
            _ => {}
        }
        let init = matches!(self.phase, Phase::AwaitingInit | Phase::Authenticating)
            .then_some(self.init_deadline);
        let expiry = (self.phase == Phase::Ready)
            .then_some(self.auth_expires)
            .flatten();
        [
            init,
            expiry,
            self.pong_deadline,
            self.next_ping,
            self.next_ka,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Closed, and every remaining effect (the Cancels) drained: the host
    /// drops the socket.
    pub fn is_terminated(&self) -> bool {
        self.phase == Phase::Closed && self.effects.is_empty()
    }

    /// Neither closing nor closed: frames may still be sent and received.
    pub fn is_open(&self) -> bool {
        !matches!(self.phase, Phase::Closing { .. } | Phase::Closed)
    }

    /// Close sent, waiting (boundedly) for the peer's close frame.
    pub fn is_closing(&self) -> bool {
        matches!(self.phase, Phase::Closing { .. })
    }

    /// How the connection closed: the code we sent if we closed first, else
    /// the peer's (1005 / 1006 as the host reported them). `None` while open.
    pub fn close_code(&self) -> Option<u16> {
        self.close_code
    }

    /// When the accepted credential expires, if it does.
    pub fn auth_expires(&self) -> Option<Millis> {
        self.auth_expires
    }

    /// Operations started and not yet ended.
    pub fn live_operations(&self) -> usize {
        self.live.len()
    }

    /// Operations this connection holds: the live ones plus the legacy
    /// `start`s queued until the init is accepted (what
    /// `terminus_operations` counts; a queued start has no `OpId` yet, so
    /// it is not in [`Self::live_operations`]).
    pub fn held_operations(&self) -> usize {
        self.live.len() + self.queued.len()
    }

    /// Bytes of `SendText` not yet reported flushed.
    pub fn unflushed_bytes(&self) -> usize {
        self.unflushed
    }

    /// The live operations, oldest first.
    pub fn operations(&self) -> impl Iterator<Item = OperationInfo<'_>> {
        self.live.iter().map(|(op, live)| OperationInfo {
            op: *op,
            id: &live.id,
            started: live.started,
        })
    }

    // ---- internals ----

    fn on_text(&mut self, now: Millis, text: &str) {
        // Any frame proves the peer is alive.
        self.pong_deadline = None;
        if text.len() > self.config.max_frame_bytes {
            self.close(close::MESSAGE_TOO_BIG, "Frame too large");
            return;
        }
        match self.protocol {
            Subprotocol::GraphqlTransportWs => self.on_transport_text(now, text),
            Subprotocol::GraphqlWs => self.on_legacy_text(now, text),
        }
    }

    fn on_transport_text(&mut self, now: Millis, text: &str) {
        use transport::{ClientMessage, ServerMessage};
        let msg = match ClientMessage::parse(text) {
            Ok(msg) => msg,
            Err(e) => return self.close(close::BAD_REQUEST, &e.message),
        };
        match msg {
            ClientMessage::ConnectionInit { payload } => self.on_init(payload),
            ClientMessage::Ping { payload } => self.send(ServerMessage::Pong { payload }.to_text()),
            ClientMessage::Pong { .. } => {}
            ClientMessage::Subscribe { id, payload } => {
                if self.phase != Phase::Ready {
                    return self.close(close::UNAUTHORIZED, "Unauthorized");
                }
                if self.by_id.contains_key(&id) {
                    let reason = format!("Subscriber for {id} already exists");
                    return self.close(close::SUBSCRIBER_ALREADY_EXISTS, &reason);
                }
                if self.live.len() >= self.config.max_operations {
                    let errors = vec![self.too_many_operations()];
                    return self.send(
                        ServerMessage::Error {
                            id,
                            payload: errors,
                        }
                        .to_text(),
                    );
                }
                self.start(now, id, payload);
            }
            ClientMessage::Complete { id } => {
                // Not echoed; unknown or ended ids are ignored (completions
                // cross on the wire).
                if let Some(op) = self.by_id.remove(&id) {
                    self.live.remove(&op);
                    self.effects.push_back(Effect::Cancel { op });
                }
            }
        }
    }

    fn on_legacy_text(&mut self, now: Millis, text: &str) {
        use legacy::{ClientMessage, ServerMessage};
        let msg = match ClientMessage::parse(text) {
            Ok(msg) => msg,
            Err(e) => {
                // subscriptions-transport-ws semantics: an unparsable frame
                // is answered, the connection carries on.
                let payload = json!({ "message": e.message });
                let reply = match e.id {
                    Some(id) => ServerMessage::Error {
                        id,
                        payload: Value::Array(vec![payload]),
                    },
                    None => ServerMessage::ConnectionError { payload },
                };
                return self.send(reply.to_text());
            }
        };
        match msg {
            ClientMessage::ConnectionInit { payload } => self.on_init(payload),
            ClientMessage::Start { id, payload } => {
                let duplicate =
                    self.by_id.contains_key(&id) || self.queued.iter().any(|(q, _)| *q == id);
                if duplicate {
                    // Documented choice: an error for the new start; the
                    // running operation is unaffected.
                    let error = json!({
                        "message": format!("Operation id {id} is already active"),
                        "extensions": {"code": "DUPLICATE_OPERATION_ID"},
                    });
                    let reply = ServerMessage::Error {
                        id,
                        payload: Value::Array(vec![error]),
                    };
                    return self.send(reply.to_text());
                }
                if self.live.len() + self.queued.len() >= self.config.max_operations {
                    let reply = ServerMessage::Error {
                        id,
                        payload: Value::Array(vec![self.too_many_operations()]),
                    };
                    return self.send(reply.to_text());
                }
                if self.phase == Phase::Ready {
                    self.start(now, id, payload);
                } else {
                    // Deployed clients send start without waiting for the
                    // ack: hold it until the init is accepted, never run it
                    // before.
                    self.queued.push_back((id, payload));
                }
            }
            ClientMessage::Stop { id } => {
                if let Some(op) = self.by_id.remove(&id) {
                    self.live.remove(&op);
                    self.effects.push_back(Effect::Cancel { op });
                    self.send(ServerMessage::Complete { id }.to_text());
                } else {
                    self.queued.retain(|(q, _)| *q != id);
                }
            }
            ClientMessage::ConnectionTerminate => self.close(close::NORMAL, "connection_terminate"),
        }
    }

    fn on_init(&mut self, payload: Option<Value>) {
        if self.phase == Phase::AwaitingInit {
            self.phase = Phase::Authenticating;
            self.effects.push_back(Effect::Authenticate { payload });
        } else {
            self.close(
                close::TOO_MANY_INITIALISATION_REQUESTS,
                "Too many initialisation requests",
            );
        }
    }

    fn on_auth(&mut self, now: Millis, verdict: AuthVerdict) {
        if self.phase != Phase::Authenticating {
            // No init pending: a stale or duplicate verdict changes nothing.
            return;
        }
        let (ack_payload, expires) = match verdict {
            AuthVerdict::Accept { ack_payload } => (ack_payload, None),
            AuthVerdict::AcceptUntil {
                ack_payload,
                expires,
            } => (ack_payload, Some(expires)),
            AuthVerdict::Reject { reason } => {
                if self.protocol == Subprotocol::GraphqlWs {
                    let payload = json!({ "message": reason });
                    self.send(legacy::ServerMessage::ConnectionError { payload }.to_text());
                }
                let full = if reason.is_empty() {
                    "Forbidden".to_owned()
                } else {
                    format!("Forbidden: {reason}")
                };
                return self.close(close::FORBIDDEN, &full);
            }
        };
        if expires.is_some_and(|at| at <= now) {
            if self.protocol == Subprotocol::GraphqlWs {
                let payload = json!({ "message": "token expired" });
                self.send(legacy::ServerMessage::ConnectionError { payload }.to_text());
            }
            return self.close(close::FORBIDDEN, TOKEN_EXPIRED_REASON);
        }
        self.auth_expires = expires;
        self.phase = Phase::Ready;
        match self.protocol {
            Subprotocol::GraphqlTransportWs => self.send(
                transport::ServerMessage::ConnectionAck {
                    payload: ack_payload,
                }
                .to_text(),
            ),
            Subprotocol::GraphqlWs => {
                self.send(
                    legacy::ServerMessage::ConnectionAck {
                        payload: ack_payload,
                    }
                    .to_text(),
                );
                self.send(legacy::ServerMessage::Ka.to_text());
                self.next_ka = after(now, self.config.legacy_ka_interval);
            }
        }
        while let Some((id, payload)) = self.queued.pop_front() {
            if self.phase != Phase::Ready {
                break;
            }
            self.start(now, id, payload);
        }
    }

    fn on_upstream(&mut self, op: OpId, event: UpstreamEvent) {
        let Some(live) = self.live.get(&op) else {
            // Late event for an ended (or unknown) operation: dropped, so it
            // can never reach a newer operation reusing the client's id.
            return;
        };
        let terminal = event.is_terminal();
        let text = Self::event_text(self.protocol, &live.id, event);
        if terminal {
            if let Some(live) = self.live.remove(&op) {
                self.by_id.remove(&live.id);
            }
        }
        self.send(text);
    }

    /// The frame that carries `event` of the operation the client calls
    /// `id`, in the protocol's own message, written from the event (its
    /// payload is not copied).
    fn event_text(protocol: Subprotocol, id: &str, event: UpstreamEvent) -> String {
        // The event's payload, owned here for the frame to borrow.
        let (value, encoded);
        let result = match event {
            UpstreamEvent::Next(payload) => {
                value = payload;
                ResultFrame::Next(&value)
            }
            UpstreamEvent::NextEncoded(payload) => {
                encoded = payload;
                ResultFrame::NextEncoded(encoded.as_str())
            }
            UpstreamEvent::Error(errors) => {
                value = Value::Array(non_empty(errors));
                ResultFrame::Error(&value)
            }
            UpstreamEvent::Complete => ResultFrame::Complete,
        };
        match protocol {
            Subprotocol::GraphqlTransportWs => transport::ServerMessage::result_text(id, result),
            Subprotocol::GraphqlWs => legacy::ServerMessage::result_text(id, result),
        }
    }

    fn on_timeout(&mut self, now: Millis) {
        if self.phase == Phase::Ready && self.auth_expires.is_some_and(|d| d <= now) {
            return self.close(close::FORBIDDEN, TOKEN_EXPIRED_REASON);
        }
        if self.pong_deadline.is_some_and(|d| d <= now) {
            return self.close(close::GOING_AWAY, "Keep-alive timeout");
        }
        if matches!(self.phase, Phase::AwaitingInit | Phase::Authenticating)
            && self.init_deadline <= now
        {
            return self.close(
                close::CONNECTION_INITIALISATION_TIMEOUT,
                "Connection initialisation timeout",
            );
        }
        if self.next_ping.is_some_and(|d| d <= now) {
            self.effects.push_back(Effect::SendPing);
            self.next_ping = after(now, self.config.keepalive_interval);
            if self.pong_deadline.is_none() {
                self.pong_deadline = Some(now + self.config.keepalive_timeout);
            }
        }
        if self.next_ka.is_some_and(|d| d <= now) {
            self.next_ka = after(now, self.config.legacy_ka_interval);
            self.send(legacy::ServerMessage::Ka.to_text());
        }
    }

    fn start(&mut self, now: Millis, id: String, payload: SubscribePayload) {
        let op = OpId(self.next_op);
        self.next_op += 1;
        self.by_id.insert(id.clone(), op);
        self.live.insert(
            op,
            LiveOp {
                id: id.clone(),
                started: now,
            },
        );
        let request = payload.into_request(id);
        self.effects.push_back(Effect::Start { op, request });
    }

    fn too_many_operations(&self) -> Value {
        json!({
            "message": format!(
                "Too many operations on this connection (at most {})",
                self.config.max_operations
            ),
            "extensions": {"code": "TOO_MANY_OPERATIONS"},
        })
    }

    /// Queues a text frame, or closes 1013 if the client has not read enough
    /// of what was already sent.
    fn send(&mut self, text: String) {
        if !self.is_open() {
            return;
        }
        let total = self.unflushed.saturating_add(text.len());
        if total > self.config.max_outbound_bytes {
            return self.close(close::TRY_AGAIN_LATER, "Slow consumer");
        }
        self.unflushed = total;
        self.effects.push_back(Effect::SendText(text));
    }

    /// Sends `Close`, cancels everything, and starts the linger.
    fn close(&mut self, code: u16, reason: &str) {
        if !self.is_open() {
            return;
        }
        self.phase = Phase::Closing {
            until: self.now + self.config.close_linger,
        };
        self.close_code = Some(code);
        self.effects.push_back(Effect::Close {
            code,
            reason: truncate_reason(reason),
        });
        self.cancel_all();
    }

    fn cancel_all(&mut self) {
        for op in std::mem::take(&mut self.live).into_keys() {
            self.effects.push_back(Effect::Cancel { op });
        }
        self.by_id.clear();
        self.queued.clear();
        self.next_ping = None;
        self.pong_deadline = None;
        self.next_ka = None;
        self.auth_expires = None;
    }
}

fn non_empty(errors: Vec<Value>) -> Vec<Value> {
    if errors.is_empty() {
        vec![json!({"message": "Operation failed"})]
    } else {
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::EncodedPayload;

    /// The text of the protocol's message for `event` (with the `Next`
    /// payload `payload`), built as the message type.
    fn message_text(
        protocol: Subprotocol,
        id: &str,
        event: &UpstreamEvent,
        payload: &Value,
    ) -> String {
        let id = id.to_owned();
        match protocol {
            Subprotocol::GraphqlTransportWs => match event {
                UpstreamEvent::Next(_) | UpstreamEvent::NextEncoded(_) => {
                    transport::ServerMessage::Next {
                        id,
                        payload: payload.clone(),
                    }
                }
                UpstreamEvent::Error(e) => transport::ServerMessage::Error {
                    id,
                    payload: non_empty(e.clone()),
                },
                UpstreamEvent::Complete => transport::ServerMessage::Complete { id },
            }
            .to_text(),
            Subprotocol::GraphqlWs => match event {
                UpstreamEvent::Next(_) | UpstreamEvent::NextEncoded(_) => {
                    legacy::ServerMessage::Data {
                        id,
                        payload: payload.clone(),
                    }
                }
                UpstreamEvent::Error(e) => legacy::ServerMessage::Error {
                    id,
                    payload: Value::Array(non_empty(e.clone())),
                },
                UpstreamEvent::Complete => legacy::ServerMessage::Complete { id },
            }
            .to_text(),
        }
    }

    /// Each event's frame, serialised straight from the event, is byte for
    /// byte the frame of the protocol's message type.
    #[test]
    fn event_frames_are_the_protocols_messages() {
        let payload =
            json!({"data": {"ticks": {"seq": 3, "s": "é\"\n<"}}, "extensions": {"k": [1, null]}});
        let errors = vec![json!({"message": "boom", "path": ["a", 0]})];
        for id in ["1", "quote\"d", "back\\slash", "ünï\u{1}code"] {
            let events = || {
                [
                    UpstreamEvent::Next(payload.clone()),
                    UpstreamEvent::NextEncoded(EncodedPayload::encode(&payload)),
                    UpstreamEvent::Error(errors.clone()),
                    UpstreamEvent::Error(Vec::new()),
                    UpstreamEvent::Complete,
                ]
            };
            let id = id.to_owned();
            for protocol in [Subprotocol::GraphqlTransportWs, Subprotocol::GraphqlWs] {
                for event in events() {
                    let expected = message_text(protocol, &id, &event, &payload);
                    let text = ServerConnection::event_text(protocol, &id, event);
                    assert_eq!(text, expected, "{protocol:?}");
                }
            }
        }
    }
}
