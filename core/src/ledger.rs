//! The auditor of the lifecycle rules of DESIGN.md ("The core contract").
//!
//! A [`Ledger`] observes every input fed to a [`ServerConnection`] and every
//! effect it emits, and records each broken rule as a [`Violation`] (data,
//! never a panic, so a simulator can display it). [`Audited`] runs a
//! connection under a ledger; unit tests, property tests, fuzz targets and the
//! wasm simulator all use it, so "every operation ends" is checked the same
//! way everywhere.

use crate::client::{ClientConnection, ClientEffect, ClientEvent};
use crate::server::{AuthVerdict, ConnectionConfig, Effect, Input, ServerConnection, Subprotocol};
use crate::share::{
    ShareEffect, ShareInput, ShareKey, ShareTable, StreamEnd, StreamId, SubscriberId,
};
use crate::{Millis, OpId, UpstreamEvent};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

/// How an operation ended, as the ledger saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The upstream reported `Error` or `Complete`.
    Upstream,
    /// The connection emitted `Cancel`.
    Cancel,
}

/// One broken lifecycle rule, by the machine whose rule it is.
#[derive(Debug, Clone, PartialEq)]
pub enum Violation {
    /// A rule of the server connection (`core/src/server`), found by [`Ledger`].
    Server(ServerViolation),
    /// A rule of the client connection (`core/src/client`), found by
    /// [`ClientLedger`].
    Client(ClientViolation),
    /// A rule of a whole simulation (`core/src/sim`): the upstream and the
    /// run itself.
    Simulation(SimulationViolation),
    /// A rule of the shared-subscription table (`core/src/share.rs`), found
    /// by [`ShareLedger`].
    Share(ShareViolation),
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Server(v) => v.fmt(f),
            Violation::Client(v) => v.fmt(f),
            Violation::Simulation(v) => v.fmt(f),
            Violation::Share(v) => v.fmt(f),
        }
    }
}

impl std::error::Error for Violation {}

impl From<ServerViolation> for Violation {
    fn from(v: ServerViolation) -> Self {
        Violation::Server(v)
    }
}

impl From<ClientViolation> for Violation {
    fn from(v: ClientViolation) -> Self {
        Violation::Client(v)
    }
}

impl From<ShareViolation> for Violation {
    fn from(v: ShareViolation) -> Self {
        Violation::Share(v)
    }
}

impl From<SimulationViolation> for Violation {
    fn from(v: SimulationViolation) -> Self {
        Violation::Simulation(v)
    }
}

/// A broken rule of a server connection.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerViolation {
    /// A `Start` reused an `OpId` that was started before.
    OpIdReused {
        /// The reused handle.
        op: OpId,
    },
    /// A `Start` for a client id whose previous operation is still live.
    IdStartedWhileLive {
        /// The client's id.
        id: String,
    },
    /// An operation ended twice (e.g. upstream terminal event, then Cancel).
    EndedTwice {
        /// The operation.
        op: OpId,
        /// The first end.
        first: End,
        /// The second end.
        second: End,
    },
    /// `Cancel` for an operation that was never started.
    CancelOfUnknownOperation {
        /// The operation.
        op: OpId,
    },
    /// Something other than `Cancel` was emitted after `Close` or after the
    /// transport closed.
    EffectAfterClose {
        /// The effect, debug-printed.
        effect: String,
    },
    /// A frame was sent for an operation that had already ended.
    SentAfterOperationEnd {
        /// The client's id in the frame.
        id: String,
        /// The frame's `type`.
        kind: String,
    },
    /// A frame carrying results was sent for an id with no live operation.
    ResultForUnknownId {
        /// The client's id in the frame.
        id: String,
        /// The frame's `type`.
        kind: String,
    },
    /// An upstream event for an ended operation produced an effect (it must
    /// be dropped, whatever operation now uses the client's id).
    LateEventNotDropped {
        /// The ended operation.
        op: OpId,
        /// The effect it caused, debug-printed.
        effect: String,
    },
    /// The connection emitted a frame that is not valid JSON with a `type`.
    MalformedFrame {
        /// The frame.
        text: String,
    },
    /// A `Close` reason longer than 123 bytes.
    CloseReasonTooLong {
        /// Its length in bytes.
        bytes: usize,
    },
    /// At the end: an operation was started and never ended.
    NeverEnded {
        /// The operation.
        op: OpId,
        /// Its client id.
        id: String,
    },
    /// At the end: the connection does not report itself terminated.
    NotTerminated,
    /// At the end: the connection still counts live operations.
    LiveOperationsAtEnd {
        /// How many.
        count: usize,
    },
    /// After `Close`, the connection is neither terminated nor bounded: its
    /// linger has no deadline, or one later than `close_linger` after the
    /// close.
    UnboundedLinger {
        /// The deadline it asked for, if any.
        deadline: Option<Millis>,
    },
    /// At the end: the connection still wants a timer.
    TimerAtEnd {
        /// The deadline.
        deadline: Millis,
    },
}

impl fmt::Display for ServerViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerViolation::OpIdReused { op } => write!(f, "{op} was started twice"),
            ServerViolation::IdStartedWhileLive { id } => {
                write!(f, "id {id:?} was started while its operation was live")
            }
            ServerViolation::EndedTwice { op, first, second } => {
                write!(f, "{op} ended twice ({first:?}, then {second:?})")
            }
            ServerViolation::CancelOfUnknownOperation { op } => {
                write!(f, "Cancel for {op}, which was never started")
            }
            ServerViolation::EffectAfterClose { effect } => write!(f, "{effect} after Close"),
            ServerViolation::SentAfterOperationEnd { id, kind } => {
                write!(f, "{kind} sent for id {id:?} after its operation ended")
            }
            ServerViolation::ResultForUnknownId { id, kind } => {
                write!(f, "{kind} sent for id {id:?}, which has no live operation")
            }
            ServerViolation::LateEventNotDropped { op, effect } => {
                write!(f, "late upstream event for ended {op} caused {effect}")
            }
            ServerViolation::MalformedFrame { text } => write!(f, "malformed frame sent: {text}"),
            ServerViolation::CloseReasonTooLong { bytes } => {
                write!(f, "close reason of {bytes} bytes (at most 123)")
            }
            ServerViolation::NeverEnded { op, id } => write!(f, "{op} (id {id:?}) never ended"),
            ServerViolation::NotTerminated => write!(f, "connection not terminated at the end"),
            ServerViolation::LiveOperationsAtEnd { count } => {
                write!(f, "{count} live operations at the end")
            }
            ServerViolation::UnboundedLinger { deadline } => match deadline {
                Some(d) => write!(f, "linger after Close lasts until {} ms, too long", d.0),
                None => write!(f, "linger after Close has no deadline"),
            },
            ServerViolation::TimerAtEnd { deadline } => {
                write!(f, "timer still armed at the end ({} ms)", deadline.0)
            }
        }
    }
}

/// A broken rule of a client connection.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientViolation {
    /// Client side: an event for an operation that had already ended (or
    /// that was never requested).
    EventAfterEnd {
        /// The operation id.
        id: String,
        /// The event, debug-printed.
        event: String,
    },
    /// Client side: an event or a frame after `Closed`.
    EffectAfterClosed {
        /// The effect, debug-printed.
        effect: String,
    },
    /// Client side, at the end: the client is not closed.
    NotClosed,
    /// Client side, at the end: operations still active.
    OperationsAtEnd {
        /// How many.
        count: usize,
    },
    /// At the end: the client still wants a timer.
    TimerAtEnd {
        /// The deadline.
        deadline: Millis,
    },
}

impl fmt::Display for ClientViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientViolation::EventAfterEnd { id, event } => {
                write!(f, "client: {event} for id {id:?} after its operation ended")
            }
            ClientViolation::EffectAfterClosed { effect } => {
                write!(f, "client: {effect} after Closed")
            }
            ClientViolation::NotClosed => write!(f, "client not closed at the end"),
            ClientViolation::OperationsAtEnd { count } => {
                write!(f, "client: {count} operations still active at the end")
            }
            ClientViolation::TimerAtEnd { deadline } => {
                write!(f, "timer still armed at the end ({} ms)", deadline.0)
            }
        }
    }
}

/// A broken rule of a simulation as a whole.
#[derive(Debug, Clone, PartialEq)]
pub enum SimulationViolation {
    /// At the end of a simulation: the upstream still runs operations.
    UpstreamOperationsAtEnd {
        /// How many.
        count: usize,
    },
    /// A simulation did not settle within its step budget.
    DidNotSettle {
        /// Steps taken.
        steps: u64,
    },
}

impl fmt::Display for SimulationViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimulationViolation::UpstreamOperationsAtEnd { count } => {
                write!(f, "upstream still runs {count} operations at the end")
            }
            SimulationViolation::DidNotSettle { steps } => {
                write!(f, "simulation did not settle within {steps} steps")
            }
        }
    }
}

#[derive(Debug)]
struct OpRecord {
    id: String,
    end: Option<End>,
}

/// Observes a server connection's inputs and effects; see the module docs.
#[derive(Debug, Default)]
pub struct Ledger {
    ops: BTreeMap<OpId, OpRecord>,
    /// Client id to the latest operation started with it.
    current: HashMap<String, OpId>,
    closed: bool,
    /// What the input of the current step was, for effect attribution.
    step_input_is_text: bool,
    step_late_event: Option<OpId>,
    /// Operations that ended during the current step (their terminal frame
    /// is allowed in the same step).
    ended_this_step: HashSet<OpId>,
    violations: Vec<Violation>,
    starts: usize,
}

impl Ledger {
    /// An empty ledger for a new connection.
    pub fn new() -> Self {
        Ledger::default()
    }

    /// Records an input about to be fed to the connection. Starts a new step:
    /// the effects observed until the next input are attributed to it.
    pub fn observe_input(&mut self, input: &Input) {
        self.step_input_is_text = matches!(input, Input::Text(_));
        self.step_late_event = None;
        self.ended_this_step.clear();
        match input {
            Input::Upstream { op, event } => match self.ops.get_mut(op) {
                Some(record) if record.end.is_none() && !self.closed => {
                    if event.is_terminal() {
                        record.end = Some(End::Upstream);
                        self.ended_this_step.insert(*op);
                    }
                }
                _ => self.step_late_event = Some(*op),
            },
            Input::TransportClosed { .. } => self.closed = true,
            _ => {}
        }
    }

    /// Records an effect the connection emitted.
    pub fn observe_effect(&mut self, effect: &Effect) {
        if let Some(op) = self.step_late_event {
            self.push(ServerViolation::LateEventNotDropped {
                op,
                effect: format!("{effect:?}"),
            });
        }
        if self.closed && !matches!(effect, Effect::Cancel { .. }) {
            self.push(ServerViolation::EffectAfterClose {
                effect: format!("{effect:?}"),
            });
            return;
        }
        match effect {
            Effect::Start { op, request } => {
                self.starts += 1;
                if self.ops.contains_key(op) {
                    self.push(ServerViolation::OpIdReused { op: *op });
                    return;
                }
                if let Some(prev) = self.current.get(&request.id) {
                    if self.ops[prev].end.is_none() {
                        self.push(ServerViolation::IdStartedWhileLive {
                            id: request.id.clone(),
                        });
                    }
                }
                self.ops.insert(
                    *op,
                    OpRecord {
                        id: request.id.clone(),
                        end: None,
                    },
                );
                self.current.insert(request.id.clone(), *op);
            }
            Effect::Cancel { op } => match self.ops.get_mut(op) {
                None => self.push(ServerViolation::CancelOfUnknownOperation { op: *op }),
                Some(record) => match record.end {
                    Some(first) => self.push(ServerViolation::EndedTwice {
                        op: *op,
                        first,
                        second: End::Cancel,
                    }),
                    None => {
                        record.end = Some(End::Cancel);
                        self.ended_this_step.insert(*op);
                    }
                },
            },
            Effect::Close { reason, .. } => {
                if reason.len() > crate::protocol::MAX_CLOSE_REASON_BYTES {
                    self.push(ServerViolation::CloseReasonTooLong {
                        bytes: reason.len(),
                    });
                }
                self.closed = true;
            }
            Effect::SendText(text) => self.check_frame(text),
            Effect::SendPing | Effect::Authenticate { .. } => {}
        }
    }

    fn check_frame(&mut self, text: &str) {
        let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(text) else {
            self.push(ServerViolation::MalformedFrame { text: text.into() });
            return;
        };
        let Some(kind) = obj.get("type").and_then(Value::as_str) else {
            self.push(ServerViolation::MalformedFrame { text: text.into() });
            return;
        };
        let Some(id) = obj.get("id").and_then(Value::as_str) else {
            return;
        };
        let op = self.current.get(id).copied();
        let live = op.is_some_and(|op| self.ops[&op].end.is_none());
        let ended_now = op.is_some_and(|op| self.ended_this_step.contains(&op));
        let ok = match kind {
            "next" | "data" => live,
            "complete" => live || ended_now,
            // An `error` may also reject a start that never ran (too many
            // operations, a bad legacy payload): that is an answer to a frame.
            "error" => live || ended_now || self.step_input_is_text,
            _ => true,
        };
        if !ok {
            let (id, kind) = (id.to_owned(), kind.to_owned());
            self.push(match op {
                Some(_) => ServerViolation::SentAfterOperationEnd { id, kind },
                None => ServerViolation::ResultForUnknownId { id, kind },
            });
        }
    }

    /// Checks the end state: call once the scenario is over (typically after
    /// the transport closed and every effect was drained).
    pub fn check_end(&mut self, conn: &ServerConnection) {
        for (op, record) in &self.ops {
            if record.end.is_none() {
                self.violations
                    .push(Violation::Server(ServerViolation::NeverEnded {
                        op: *op,
                        id: record.id.clone(),
                    }));
            }
        }
        if !conn.is_terminated() {
            self.push(ServerViolation::NotTerminated);
        }
        if conn.live_operations() != 0 {
            self.push(ServerViolation::LiveOperationsAtEnd {
                count: conn.live_operations(),
            });
        }
        if let Some(deadline) = conn.poll_timeout() {
            self.push(ServerViolation::TimerAtEnd { deadline });
        }
    }

    fn push(&mut self, violation: ServerViolation) {
        self.violations.push(violation.into());
    }

    /// Every violation recorded so far.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// No violation recorded.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    /// How many operations were started.
    pub fn starts(&self) -> usize {
        self.starts
    }

    /// Operations started and not ended, as the ledger counts them.
    pub fn live(&self) -> usize {
        self.ops.values().filter(|r| r.end.is_none()).count()
    }

    /// Whether `op` was started and has not ended.
    pub fn is_live(&self, op: OpId) -> bool {
        self.ops.get(&op).is_some_and(|r| r.end.is_none())
    }

    /// Whether a `Close` was emitted or the transport closed.
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

/// A [`ServerConnection`] run under a [`Ledger`]: every input and every
/// effect goes through the ledger. The effects of each input are returned
/// (already drained from the connection).
#[derive(Debug)]
pub struct Audited {
    conn: ServerConnection,
    ledger: Ledger,
    /// When the connection emitted `Close` (the linger bound starts there).
    closed_at: Option<Millis>,
}

impl Audited {
    /// A new audited connection.
    pub fn new(now: Millis, protocol: Subprotocol, config: ConnectionConfig) -> Self {
        Audited {
            conn: ServerConnection::new(now, protocol, config),
            ledger: Ledger::new(),
            closed_at: None,
        }
    }

    /// Feeds one input and returns every effect it caused.
    pub fn handle(&mut self, now: Millis, input: Input) -> Vec<Effect> {
        self.ledger.observe_input(&input);
        self.conn.handle(now, input);
        let mut effects = Vec::new();
        while let Some(effect) = self.conn.poll_effect() {
            self.ledger.observe_effect(&effect);
            if matches!(effect, Effect::Close { .. }) {
                self.closed_at.get_or_insert(now);
            }
            effects.push(effect);
        }
        self.check_linger();
        effects
    }

    /// The closing rule: once `Close` was emitted, the connection is either
    /// terminated or has a deadline no later than `close_linger` after it.
    fn check_linger(&mut self) {
        let Some(closed_at) = self.closed_at else {
            return;
        };
        if self.conn.is_terminated() {
            return;
        }
        let bound = closed_at + self.conn.config().close_linger;
        let deadline = self.conn.poll_timeout();
        if deadline.is_none_or(|d| d > bound) {
            self.ledger
                .violations
                .push(Violation::Server(ServerViolation::UnboundedLinger {
                    deadline,
                }));
        }
    }

    /// Sugar: a text frame.
    pub fn text(&mut self, now: Millis, text: &str) -> Vec<Effect> {
        self.handle(now, Input::Text(text.to_owned()))
    }

    /// Sugar: an auth verdict.
    pub fn auth(&mut self, now: Millis, verdict: AuthVerdict) -> Vec<Effect> {
        self.handle(now, Input::Auth(verdict))
    }

    /// Sugar: an upstream event.
    pub fn upstream(&mut self, now: Millis, op: OpId, event: UpstreamEvent) -> Vec<Effect> {
        self.handle(now, Input::Upstream { op, event })
    }

    /// Sugar: fire the timer if it is due at `now`.
    pub fn timeout(&mut self, now: Millis) -> Vec<Effect> {
        self.handle(now, Input::Timeout)
    }

    /// The connection (read-only: inputs must go through the ledger).
    pub fn connection(&self) -> &ServerConnection {
        &self.conn
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Checks the end state as it is (without closing anything) and returns
    /// every violation of the whole run.
    pub fn check_end(&mut self) -> Vec<Violation> {
        self.ledger.check_end(&self.conn);
        self.ledger.violations().to_vec()
    }

    /// Sugar: the transport closed with the peer's `code`.
    pub fn transport_closed(&mut self, now: Millis, code: u16) -> Vec<Effect> {
        self.handle(now, Input::TransportClosed { code })
    }

    /// Closes the transport (a no-op if already closed; 1006, as a socket
    /// that simply ends), checks the end state, and returns every violation
    /// of the whole run.
    pub fn finish(&mut self, now: Millis) -> Vec<Violation> {
        if !self.conn.is_terminated() {
            self.handle(
                now,
                Input::TransportClosed {
                    code: crate::protocol::close::ABNORMAL_CLOSURE,
                },
            );
        }
        self.ledger.check_end(&self.conn);
        self.ledger.violations().to_vec()
    }
}

/// The client side's auditor: every requested operation gets at most one
/// terminal event (`Error`, `Complete`, or the connection's `Closed`), no
/// event follows an operation's end or the connection's `Closed`, and at the
/// end the client is closed with nothing active.
#[derive(Debug, Default)]
pub struct ClientLedger {
    /// Requested ids and whether they are still active.
    ops: HashMap<String, bool>,
    closed: bool,
    violations: Vec<Violation>,
}

impl ClientLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        ClientLedger::default()
    }

    /// The application requested operation `id`.
    pub fn observe_subscribe(&mut self, id: &str) {
        self.ops.insert(id.to_owned(), !self.closed);
    }

    /// The application stopped operation `id` (no event may follow).
    pub fn observe_complete(&mut self, id: &str) {
        if let Some(active) = self.ops.get_mut(id) {
            *active = false;
        }
    }

    /// An effect the client emitted.
    pub fn observe_effect(&mut self, effect: &ClientEffect) {
        if self.closed {
            self.push(ClientViolation::EffectAfterClosed {
                effect: format!("{effect:?}"),
            });
            return;
        }
        let ClientEffect::Event(event) = effect else {
            return;
        };
        let (id, terminal) = match event {
            ClientEvent::Next { id, .. } => (id, false),
            ClientEvent::Error { id, .. } | ClientEvent::Complete { id } => (id, true),
            ClientEvent::Closed { .. } => {
                self.closed = true;
                self.ops.values_mut().for_each(|active| *active = false);
                return;
            }
            ClientEvent::Acked { .. } => return,
        };
        match self.ops.get_mut(id) {
            Some(active) if *active => *active = !terminal,
            _ => self.push(ClientViolation::EventAfterEnd {
                id: id.clone(),
                event: format!("{event:?}"),
            }),
        }
    }

    /// Checks the end state of `client`.
    pub fn check_end(&mut self, client: &ClientConnection) {
        if !client.is_closed() || !self.closed {
            self.push(ClientViolation::NotClosed);
        }
        if client.active_operations() != 0 {
            self.push(ClientViolation::OperationsAtEnd {
                count: client.active_operations(),
            });
        }
        if let Some(deadline) = client.poll_timeout() {
            self.push(ClientViolation::TimerAtEnd { deadline });
        }
    }

    fn push(&mut self, violation: ClientViolation) {
        self.violations.push(violation.into());
    }

    /// Every violation recorded so far.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OperationRequest;
    use serde_json::Map;

    fn start(op: u64, id: &str) -> Effect {
        Effect::Start {
            op: OpId(op),
            request: OperationRequest {
                id: id.into(),
                query: "{ a }".into(),
                operation_name: None,
                variables: Map::new(),
                extensions: Map::new(),
            },
        }
    }

    fn text(frame: Value) -> Effect {
        Effect::SendText(frame.to_string())
    }

    /// Feeds a hand-written (wrong) transcript straight into a ledger.
    fn audit(steps: &[(Input, Vec<Effect>)]) -> Vec<Violation> {
        let mut ledger = Ledger::new();
        for (input, effects) in steps {
            ledger.observe_input(input);
            for effect in effects {
                ledger.observe_effect(effect);
            }
        }
        ledger.violations().to_vec()
    }

    fn frame_input() -> Input {
        Input::Text("{}".into())
    }

    #[test]
    fn a_correct_transcript_is_clean() {
        let violations = audit(&[
            (frame_input(), vec![start(0, "a")]),
            (
                Input::Upstream {
                    op: OpId(0),
                    event: UpstreamEvent::Next(serde_json::json!({})),
                },
                vec![text(
                    serde_json::json!({"type": "next", "id": "a", "payload": {}}),
                )],
            ),
            (
                Input::Upstream {
                    op: OpId(0),
                    event: UpstreamEvent::Complete,
                },
                vec![text(serde_json::json!({"type": "complete", "id": "a"}))],
            ),
            (frame_input(), vec![start(1, "a")]),
            (
                Input::Shutdown,
                vec![
                    Effect::Close {
                        code: 1001,
                        reason: "bye".into(),
                    },
                    Effect::Cancel { op: OpId(1) },
                ],
            ),
        ]);
        assert_eq!(violations, vec![]);
    }

    #[test]
    fn broken_rules_are_recorded_as_data() {
        let late = Input::Upstream {
            op: OpId(0),
            event: UpstreamEvent::Next(serde_json::json!({})),
        };
        let violations = audit(&[
            (frame_input(), vec![start(0, "a")]),
            (frame_input(), vec![start(0, "b")]),
            (frame_input(), vec![start(1, "a")]),
            (frame_input(), vec![Effect::Cancel { op: OpId(0) }]),
            (
                late,
                vec![text(
                    serde_json::json!({"type": "next", "id": "a", "payload": {}}),
                )],
            ),
            (
                Input::Upstream {
                    op: OpId(1),
                    event: UpstreamEvent::Complete,
                },
                vec![Effect::Cancel { op: OpId(1) }],
            ),
            (
                Input::Timeout,
                vec![text(
                    serde_json::json!({"type": "next", "id": "a", "payload": {}}),
                )],
            ),
            (Input::Timeout, vec![Effect::Cancel { op: OpId(9) }]),
            (
                Input::Timeout,
                vec![text(
                    serde_json::json!({"type": "next", "id": "zz", "payload": {}}),
                )],
            ),
            (Input::Timeout, vec![Effect::SendText("nope".into())]),
            (
                Input::Shutdown,
                vec![Effect::Close {
                    code: 1001,
                    reason: "x".repeat(200),
                }],
            ),
            (Input::Timeout, vec![Effect::SendPing]),
        ]);
        let kinds: Vec<String> = violations
            .iter()
            .map(|v| {
                let Violation::Server(v) = v else {
                    panic!("not a server violation: {v:?}")
                };
                format!("{v:?}")
                    .split([' ', '{'])
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "OpIdReused",
                "IdStartedWhileLive",
                "LateEventNotDropped",
                "EndedTwice",
                "SentAfterOperationEnd",
                "CancelOfUnknownOperation",
                "ResultForUnknownId",
                "MalformedFrame",
                "CloseReasonTooLong",
                "EffectAfterClose",
            ]
        );
        for violation in &violations {
            assert!(!violation.to_string().is_empty());
        }
    }

    #[test]
    fn the_end_state_is_checked() {
        let mut ledger = Ledger::new();
        ledger.observe_input(&frame_input());
        ledger.observe_effect(&start(0, "a"));
        let conn = ServerConnection::new(
            Millis(0),
            Subprotocol::GraphqlTransportWs,
            ConnectionConfig::default(),
        );
        ledger.check_end(&conn);
        assert_eq!(
            ledger.violations(),
            &[
                Violation::Server(ServerViolation::NeverEnded {
                    op: OpId(0),
                    id: "a".into()
                }),
                Violation::Server(ServerViolation::NotTerminated),
                Violation::Server(ServerViolation::TimerAtEnd {
                    deadline: Millis(3_000)
                }),
            ]
        );
    }

    #[test]
    fn the_client_ledger_catches_events_after_the_end() {
        let mut ledger = ClientLedger::new();
        ledger.observe_subscribe("1");
        let complete = ClientEffect::Event(ClientEvent::Complete { id: "1".into() });
        ledger.observe_effect(&complete);
        ledger.observe_effect(&complete);
        ledger.observe_effect(&ClientEffect::Event(ClientEvent::Closed {
            code: 1000,
            reason: String::new(),
        }));
        ledger.observe_effect(&ClientEffect::SendText("{}".into()));
        assert_eq!(ledger.violations().len(), 2, "{:?}", ledger.violations());
    }
}

/// A broken rule of the shared-subscription table.
#[derive(Debug, Clone, PartialEq)]
pub enum ShareViolation {
    /// A stream was started twice, or a second stream for a key that has a
    /// live one.
    StartedTwice {
        /// The stream.
        stream: StreamId,
    },
    /// A subscriber of a key without a live stream got no `Start`, or one
    /// of a key with a live stream got a new one.
    WrongStart {
        /// The subscriber.
        subscriber: SubscriberId,
    },
    /// A stream ended twice (reset twice, or reset after its upstream end).
    EndedTwice {
        /// The stream.
        stream: StreamId,
    },
    /// A stream was reset while it still had subscribers.
    ResetWithSubscribers {
        /// The stream.
        stream: StreamId,
        /// How many.
        subscribers: usize,
    },
    /// A stream's last subscriber left and the stream was not reset in the
    /// same step: it outlives its last subscriber.
    OutlivedLastSubscriber {
        /// The stream.
        stream: StreamId,
    },
    /// An item was delivered on a stream that is not live.
    DeliverToEnded {
        /// The stream.
        stream: StreamId,
    },
    /// A subscriber was ended for a stream it is not on, or twice.
    WrongEnd {
        /// The subscriber.
        subscriber: SubscriberId,
    },
    /// The upstream ended a stream and a subscriber of it was not ended in
    /// the same step, or not with the stream's outcome.
    SubscriberNotEnded {
        /// The subscriber.
        subscriber: SubscriberId,
    },
    /// At the end: a stream started and never ended.
    NeverEnded {
        /// The stream.
        stream: StreamId,
    },
    /// A live or ending subscriber fell behind and the table decided nothing
    /// (neither `Skip` nor `Close`) in the same step.
    LagUndecided {
        /// The subscriber.
        subscriber: SubscriberId,
    },
    /// A `Skip` or `Close` for a subscriber not reported behind in that
    /// step, or that is not on that stream.
    WrongLag {
        /// The subscriber.
        subscriber: SubscriberId,
    },
}

impl fmt::Display for ShareViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShareViolation::StartedTwice { stream } => write!(f, "{stream} started twice"),
            ShareViolation::WrongStart { subscriber } => {
                write!(
                    f,
                    "subscriber {} got the wrong start (none, or a second stream for its key)",
                    subscriber.0
                )
            }
            ShareViolation::EndedTwice { stream } => write!(f, "{stream} ended twice"),
            ShareViolation::ResetWithSubscribers {
                stream,
                subscribers,
            } => write!(f, "{stream} reset with {subscribers} subscribers left"),
            ShareViolation::OutlivedLastSubscriber { stream } => {
                write!(f, "{stream} outlives its last subscriber")
            }
            ShareViolation::DeliverToEnded { stream } => {
                write!(f, "an item delivered on {stream}, which is not live")
            }
            ShareViolation::WrongEnd { subscriber } => {
                write!(
                    f,
                    "subscriber {} ended for a stream it is not on",
                    subscriber.0
                )
            }
            ShareViolation::SubscriberNotEnded { subscriber } => write!(
                f,
                "subscriber {} was not ended with its stream's outcome",
                subscriber.0
            ),
            ShareViolation::NeverEnded { stream } => {
                write!(f, "{stream} was started and never ended")
            }
            ShareViolation::LagUndecided { subscriber } => write!(
                f,
                "subscriber {} fell behind and nothing was decided",
                subscriber.0
            ),
            ShareViolation::WrongLag { subscriber } => write!(
                f,
                "subscriber {} was skipped or closed without falling behind on its stream",
                subscriber.0
            ),
        }
    }
}

#[derive(Debug)]
struct ShareStreamRecord {
    key: ShareKey,
    subscribers: BTreeSet<SubscriberId>,
    ended: bool,
}

/// Observes the shared-subscription table's inputs and effects and checks
/// its rules: every stream started is ended exactly once (a `Reset`, or the
/// upstream's end), a stream is reset in the very step its subscriber count
/// reaches 0 (it never outlives its last subscriber) and never while it has
/// subscribers, an upstream end ends every subscriber with the same outcome,
/// and nothing is delivered on a stream that is not live. Its model of who
/// is subscribed where is its own, built from the inputs.
#[derive(Debug, Default)]
pub struct ShareLedger {
    streams: BTreeMap<StreamId, ShareStreamRecord>,
    live_by_key: HashMap<ShareKey, StreamId>,
    on: HashMap<SubscriberId, StreamId>,
    /// Subscribers whose stream ended (their `End` came) that have not
    /// unsubscribed: the table still decides for them when they lag.
    ending: HashMap<SubscriberId, StreamId>,
    /// This step: a subscriber waiting for its `Start` (its key had no
    /// live stream).
    awaiting_start: Option<(SubscriberId, ShareKey)>,
    /// This step: a stream whose last subscriber left, waiting for its
    /// `Reset`.
    awaiting_reset: Option<StreamId>,
    /// This step: the subscribers of an upstream-ended stream waiting for
    /// their `End`, with the outcome.
    awaiting_end: BTreeSet<SubscriberId>,
    end_outcome: Option<StreamEnd>,
    /// This step: a live or ending subscriber that fell behind, waiting
    /// for the table's `Skip` or `Close`.
    awaiting_lag: Option<SubscriberId>,
    violations: Vec<Violation>,
    starts: usize,
}

impl ShareLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        ShareLedger::default()
    }

    fn violation(&mut self, v: ShareViolation) {
        self.violations.push(Violation::Share(v));
    }

    /// Closes the current step: whatever was due in it and did not come is
    /// a violation.
    fn end_step(&mut self) {
        if let Some((subscriber, _)) = self.awaiting_start.take() {
            self.violation(ShareViolation::WrongStart { subscriber });
        }
        if let Some(stream) = self.awaiting_reset.take() {
            self.violation(ShareViolation::OutlivedLastSubscriber { stream });
        }
        for subscriber in std::mem::take(&mut self.awaiting_end) {
            self.on.remove(&subscriber);
            self.violation(ShareViolation::SubscriberNotEnded { subscriber });
        }
        if let Some(subscriber) = self.awaiting_lag.take() {
            self.violation(ShareViolation::LagUndecided { subscriber });
        }
        self.end_outcome = None;
    }

    /// `subscriber` leaves the stream it is live on (an unsubscribe, or a
    /// `Close` for lagging); its stream's `Reset` is due in this step when
    /// it was the last subscriber of a stream still running.
    fn leave(&mut self, subscriber: SubscriberId) {
        let Some(stream) = self.on.remove(&subscriber) else {
            return;
        };
        if let Some(r) = self.streams.get_mut(&stream) {
            r.subscribers.remove(&subscriber);
            if r.subscribers.is_empty() && !r.ended {
                self.awaiting_reset = Some(stream);
            }
        }
    }

    /// A `Skip` or `Close` for `subscriber` on `stream`: whether it was due
    /// (the subscriber fell behind in this step, and is live or ending on
    /// that stream); a violation when not.
    fn lag_decided(&mut self, subscriber: SubscriberId, stream: StreamId) -> bool {
        let on = self
            .on
            .get(&subscriber)
            .or_else(|| self.ending.get(&subscriber));
        let expected = self.awaiting_lag == Some(subscriber) && on == Some(&stream);
        self.awaiting_lag = None;
        if !expected {
            self.violation(ShareViolation::WrongLag { subscriber });
        }
        expected
    }

    /// Records an input about to be fed to the table (`accepted`: the
    /// table did not refuse it). Starts a new step.
    pub fn observe_input(&mut self, input: &ShareInput, accepted: bool) {
        self.end_step();
        if !accepted {
            return;
        }
        match input {
            ShareInput::Subscribe { subscriber, key } => match self.live_by_key.get(key) {
                Some(stream) => {
                    let stream = *stream;
                    self.on.insert(*subscriber, stream);
                    if let Some(r) = self.streams.get_mut(&stream) {
                        r.subscribers.insert(*subscriber);
                    }
                }
                None => self.awaiting_start = Some((*subscriber, key.clone())),
            },
            ShareInput::Unsubscribe { subscriber } => {
                self.ending.remove(subscriber);
                self.leave(*subscriber);
            }
            ShareInput::Item { .. } => {}
            ShareInput::Full { subscriber, .. } => {
                if self.on.contains_key(subscriber) || self.ending.contains_key(subscriber) {
                    self.awaiting_lag = Some(*subscriber);
                }
            }
            ShareInput::StreamEnd { stream, outcome } => {
                if let Some(r) = self.streams.get_mut(stream) {
                    if !r.ended {
                        r.ended = true;
                        self.live_by_key.remove(&r.key);
                        self.awaiting_end = r.subscribers.clone();
                        self.end_outcome = Some(outcome.clone());
                    }
                }
            }
        }
    }

    /// Records an effect the table emitted.
    pub fn observe_effect(&mut self, effect: &ShareEffect) {
        match effect {
            ShareEffect::Start { stream, key } => {
                self.starts += 1;
                if self.streams.contains_key(stream) || self.live_by_key.contains_key(key) {
                    self.violation(ShareViolation::StartedTwice { stream: *stream });
                    return;
                }
                let mut subscribers = BTreeSet::new();
                match self.awaiting_start.take() {
                    Some((subscriber, k)) if &k == key => {
                        subscribers.insert(subscriber);
                        self.on.insert(subscriber, *stream);
                    }
                    other => {
                        self.awaiting_start = other;
                        self.violation(ShareViolation::StartedTwice { stream: *stream });
                    }
                }
                self.live_by_key.insert(key.clone(), *stream);
                self.streams.insert(
                    *stream,
                    ShareStreamRecord {
                        key: key.clone(),
                        subscribers,
                        ended: false,
                    },
                );
            }
            ShareEffect::Reset { stream } => {
                if self.awaiting_reset == Some(*stream) {
                    self.awaiting_reset = None;
                }
                let Some(r) = self.streams.get_mut(stream) else {
                    self.violation(ShareViolation::EndedTwice { stream: *stream });
                    return;
                };
                if r.ended {
                    self.violation(ShareViolation::EndedTwice { stream: *stream });
                    return;
                }
                r.ended = true;
                let left = r.subscribers.len();
                let key = r.key.clone();
                self.live_by_key.remove(&key);
                if left > 0 {
                    self.violation(ShareViolation::ResetWithSubscribers {
                        stream: *stream,
                        subscribers: left,
                    });
                }
            }
            ShareEffect::Deliver { stream } => {
                if self.streams.get(stream).is_none_or(|r| r.ended) {
                    self.violation(ShareViolation::DeliverToEnded { stream: *stream });
                }
            }
            ShareEffect::Skip {
                subscriber, stream, ..
            } => {
                self.lag_decided(*subscriber, *stream);
            }
            ShareEffect::Close { subscriber, stream } => {
                if self.lag_decided(*subscriber, *stream) {
                    // It leaves its stream, as with an unsubscribe.
                    self.ending.remove(subscriber);
                    self.leave(*subscriber);
                }
            }
            ShareEffect::End {
                subscriber,
                stream,
                outcome,
            } => {
                let expected = self.awaiting_end.remove(subscriber)
                    && self.on.get(subscriber) == Some(stream)
                    && self.end_outcome.as_ref() == Some(outcome);
                self.on.remove(subscriber);
                if expected {
                    // It still reads the stream's last items until it
                    // unsubscribes.
                    self.ending.insert(*subscriber, *stream);
                } else {
                    self.violation(ShareViolation::WrongEnd {
                        subscriber: *subscriber,
                    });
                }
            }
        }
    }

    /// Checks the end state: every stream started has ended. Call when the
    /// host believes nothing is live (every subscriber gone).
    pub fn check_end(&mut self) {
        self.end_step();
        let open: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, r)| !r.ended)
            .map(|(id, _)| *id)
            .collect();
        for stream in open {
            self.violation(ShareViolation::NeverEnded { stream });
        }
    }

    /// Every violation so far.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Streams started so far.
    pub fn starts(&self) -> usize {
        self.starts
    }

    /// Streams started and not ended.
    pub fn live_streams(&self) -> usize {
        self.streams.values().filter(|r| !r.ended).count()
    }
}

/// A [`ShareTable`] under a [`ShareLedger`]: every input and effect goes
/// through the ledger. The effects of each input are returned.
#[derive(Debug, Default)]
pub struct AuditedShare {
    table: ShareTable,
    ledger: ShareLedger,
}

impl AuditedShare {
    /// An empty audited table.
    pub fn new() -> Self {
        AuditedShare::default()
    }

    /// An empty audited table whose lagging subscribers follow `policy`.
    pub fn with_policy(policy: crate::share::LagPolicy) -> Self {
        AuditedShare {
            table: ShareTable::with_policy(policy),
            ledger: ShareLedger::default(),
        }
    }

    /// Feeds one input and returns every effect it caused.
    pub fn handle(&mut self, now: Millis, input: ShareInput) -> Vec<ShareEffect> {
        let accepted = !matches!(&input, ShareInput::Subscribe { subscriber, .. } if self.table.stream_of(*subscriber).is_some());
        self.ledger.observe_input(&input, accepted);
        let _ = self.table.handle(now, input);
        let mut effects = Vec::new();
        while let Some(effect) = self.table.poll_effect() {
            self.ledger.observe_effect(&effect);
            effects.push(effect);
        }
        effects
    }

    /// The table (read-only: inputs must go through the ledger).
    pub fn table(&self) -> &ShareTable {
        &self.table
    }

    /// The ledger.
    pub fn ledger(&self) -> &ShareLedger {
        &self.ledger
    }

    /// Checks the end state and returns every violation of the whole run.
    pub fn check_end(&mut self) -> Vec<Violation> {
        self.ledger.check_end();
        self.ledger.violations().to_vec()
    }

    /// Unsubscribes every live and ending subscriber (a mass disconnect),
    /// checks that nothing is left, and returns every violation of the
    /// whole run.
    pub fn finish(&mut self, now: Millis) -> Vec<Violation> {
        let mut subscribers: Vec<SubscriberId> = self
            .table
            .streams()
            .iter()
            .flat_map(|s| self.table.subscribers(s.stream).collect::<Vec<_>>())
            .chain(self.table.ending())
            .collect();
        subscribers.sort();
        for subscriber in subscribers {
            self.handle(now, ShareInput::Unsubscribe { subscriber });
        }
        self.check_end()
    }
}
