//! `pair`: a server connection (under the `Ledger`) and a client connection
//! (under `ClientAudit`) wired together through an in-memory WebSocket,
//! with a scripted upstream, a virtual clock, and faults drawn from the
//! fuzzer's input: lost frames and pongs, duplicated and corrupted frames,
//! rejected auth, slow readers, abrupt closes, shutdown.
//!
//! Two modes, chosen by the input:
//! - `Sim`: the core's simulation driver (`terminus_core::sim`) with a
//!   configuration (clients, faults, timeouts, latency) and an upstream
//!   whose every event and delay come from the input; its findings (the
//!   ledgers of every pair, the end state, the upstream's leftovers) must be
//!   empty.
//! - `Steps`: one pair wired here, step by step, so the fuzzer controls the
//!   order of every delivery and fault (the driver draws those from its
//!   seed). The wire model is the driver's: frames are delivered in order
//!   per direction, a `Close` ends the socket, WebSocket pings are answered
//!   by the peer's WebSocket layer.
//!
//! After every step both auditors are clean and the upstream runs exactly
//! the operations the server counts as live; at the end the server drains,
//! every frame is delivered, time runs past every deadline, and both sides
//! are closed with nothing live, no timer, and no upstream operation left.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;
use terminus_core::client::{ClientConfig, ClientConnection, ClientEffect};
use terminus_core::ledger::Audited;
use terminus_core::protocol::close;
use terminus_core::server::{AuthVerdict, ConnectionConfig, Effect, Input, Subprotocol};
use terminus_core::sim::{Faults, OpKey, ScriptConfig, Sim, SimConfig, Upstream};
use terminus_core::{Millis, OpId, OperationRequest, UpstreamEvent};
use terminus_fuzz::{
    assert_no_violations, ArbJson, ArbObject, ClientAudit, ClientFrameSpec, ServerFrameSpec,
    GOOD_QUERIES, SERVER_CLOSE_CODES,
};

/// What travels on the in-memory socket.
#[derive(Debug, Clone)]
enum Wire {
    Text(String),
    Ping,
    Pong,
    Close(u16, String),
}

#[derive(Debug, Arbitrary)]
enum Step {
    /// The application requests one of the known-good queries (or any text).
    Subscribe(u8, Option<ArbObject>),
    /// The application stops the n-th id it was given.
    ClientComplete(u8),
    /// Deliver the next frame to the server / to the client.
    DeliverToServer,
    DeliverToClient,
    /// Deliver everything in flight, both ways.
    DeliverAll,
    /// Fault: the next frame to the server / client is lost.
    LoseToServer,
    LoseToClient,
    /// Fault: the next frame to the server is delivered twice (a client
    /// reusing an id).
    DuplicateToServer,
    /// Fault: a malformed or unexpected frame is injected.
    InjectToServer(ClientFrameSpec),
    InjectToClient(ServerFrameSpec),
    /// The host decides on the pending init.
    Accept,
    Reject(String),
    /// The upstream emits for the n-th running operation.
    UpstreamNext(u8, ArbJson),
    UpstreamComplete(u8),
    UpstreamError(u8, Vec<ArbObject>),
    /// The host flushed this many bytes (a slow reader flushes little).
    Flush(u16),
    /// Time passes; due timers fire on both sides.
    Advance(u16),
    /// Fault: the socket dies without a close frame.
    AbruptClose,
    /// The server drains.
    Shutdown,
    /// The application closes the client.
    ClientClose,
}

#[derive(Debug, Arbitrary)]
struct Scenario {
    legacy: bool,
    init_timeout_ms: u16,
    keepalive_interval_ms: u16,
    keepalive_timeout_ms: u16,
    max_operations: u8,
    max_outbound: u16,
    ack_timeout_ms: u16,
    ping_interval_ms: u16,
    steps: Vec<Step>,
}

struct Pair {
    now: Millis,
    protocol: Subprotocol,
    server: Audited,
    client: ClientConnection,
    audit: ClientAudit,
    to_server: VecDeque<Wire>,
    to_client: VecDeque<Wire>,
    /// The upstream's running operations (Start..Cancel or its own end).
    upstream: BTreeMap<OpId, u64>,
    auth_pending: bool,
    unflushed: usize,
    ids: Vec<String>,
    socket_dead: bool,
}

impl Pair {
    fn server_input(&mut self, input: Input) {
        let effects = self.server.handle(self.now, input);
        for effect in effects {
            match effect {
                Effect::SendText(text) => {
                    self.unflushed += text.len();
                    if !self.socket_dead {
                        self.to_client.push_back(Wire::Text(text));
                    }
                }
                Effect::SendPing => {
                    if !self.socket_dead {
                        self.to_client.push_back(Wire::Ping);
                    }
                }
                Effect::Authenticate { .. } => self.auth_pending = true,
                Effect::Start { op, .. } => {
                    assert!(self.upstream.insert(op, 0).is_none(), "{op} started twice");
                }
                Effect::Cancel { op } => {
                    assert!(
                        self.upstream.remove(&op).is_some(),
                        "Cancel for {op}, not running"
                    );
                }
                Effect::Close { code, reason } => {
                    assert!(
                        SERVER_CLOSE_CODES.contains(&code),
                        "undocumented close code {code}"
                    );
                    if !self.socket_dead {
                        self.to_client.push_back(Wire::Close(code, reason));
                    }
                }
            }
        }
        self.check();
    }

    fn client_drain(&mut self) {
        for effect in self.audit.drain(&mut self.client) {
            match effect {
                ClientEffect::SendText(text) => {
                    if !self.socket_dead {
                        self.to_server.push_back(Wire::Text(text));
                    }
                }
                ClientEffect::Close { code, reason } => {
                    if !self.socket_dead {
                        self.to_server.push_back(Wire::Close(code, reason));
                    }
                }
                ClientEffect::Event(_) => {}
            }
        }
        self.audit.check_step(&self.client);
        self.audit.assert_clean("client");
    }

    fn check(&self) {
        assert_no_violations("server", self.server.ledger().violations());
        assert_eq!(
            self.upstream.len(),
            self.server.connection().live_operations(),
            "the upstream runs a different number of operations than the server counts"
        );
    }

    fn deliver_to_server(&mut self) {
        match self.to_server.pop_front() {
            Some(Wire::Text(text)) => self.server_input(Input::Text(text)),
            Some(Wire::Pong) => self.server_input(Input::TransportPong),
            Some(Wire::Close(code, _)) => {
                self.socket_dead = true;
                self.to_client.clear();
                self.server_input(Input::TransportClosed { code });
            }
            Some(Wire::Ping) | None => {}
        }
    }

    fn deliver_to_client(&mut self) {
        match self.to_client.pop_front() {
            Some(Wire::Text(text)) => {
                // Delivering a frame means the host wrote it.
                let flushed = text.len().min(self.unflushed);
                self.unflushed -= flushed;
                self.server_input(Input::Flushed(flushed));
                self.client.handle_text(self.now, &text);
                self.client_drain();
            }
            Some(Wire::Ping) => {
                // The client's WebSocket layer answers pings by itself.
                if !self.socket_dead {
                    self.to_server.push_back(Wire::Pong);
                }
            }
            Some(Wire::Close(code, reason)) => {
                self.socket_dead = true;
                self.to_server.clear();
                self.client.handle_transport_closed(self.now, code, &reason);
                self.client_drain();
                // The client's WebSocket layer answers the close frame,
                // which ends the server's linger.
                self.server_input(Input::TransportClosed { code });
            }
            Some(Wire::Pong) | None => {}
        }
    }

    /// Delivers until both directions are empty. Whatever is in flight
    /// (thousands of pings after a long wait with a 1 ms keep-alive) takes
    /// one round per frame; a budget beyond that means the two sides keep
    /// answering each other: a livelock.
    fn deliver_all(&mut self) {
        let budget = 10_000 + self.to_server.len() + self.to_client.len();
        for _ in 0..budget {
            if self.to_server.is_empty() && self.to_client.is_empty() {
                return;
            }
            self.deliver_to_server();
            self.deliver_to_client();
        }
        panic!("the pair keeps talking after {budget} rounds");
    }

    fn running(&self, n: u8) -> Option<OpId> {
        let ops: Vec<OpId> = self.upstream.keys().copied().collect();
        (!ops.is_empty()).then(|| ops[usize::from(n) % ops.len()])
    }

    fn fire_timers(&mut self) {
        for _ in 0..8 {
            let mut fired = false;
            if self
                .server
                .connection()
                .poll_timeout()
                .is_some_and(|d| d <= self.now)
            {
                self.server_input(Input::Timeout);
                fired = true;
            }
            if self.client.poll_timeout().is_some_and(|d| d <= self.now) {
                self.client.handle_timeout(self.now);
                self.client_drain();
                fired = true;
            }
            if !fired {
                return;
            }
        }
        panic!("timers still due after 8 firings at {:?}", self.now);
    }

    /// Moves time to `until`, stopping at every deadline on the way.
    fn advance(&mut self, until: Millis) {
        loop {
            let next = [
                self.server.connection().poll_timeout(),
                self.client.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .filter(|d| *d <= until)
            .min();
            match next {
                Some(deadline) => {
                    self.now = self.now.max(deadline);
                    self.fire_timers();
                }
                None => break,
            }
        }
        self.now = self.now.max(until);
    }

    fn abrupt_close(&mut self) {
        self.socket_dead = true;
        self.to_server.clear();
        self.to_client.clear();
        self.server_input(Input::TransportClosed {
            code: close::ABNORMAL_CLOSURE,
        });
        self.client
            .handle_transport_closed(self.now, close::ABNORMAL_CLOSURE, "");
        self.client_drain();
    }
}

fn run_steps(scenario: &Scenario) {
    let protocol = if scenario.legacy {
        Subprotocol::GraphqlWs
    } else {
        Subprotocol::GraphqlTransportWs
    };
    let server_config = ConnectionConfig {
        init_timeout: Duration::from_millis(scenario.init_timeout_ms.into()),
        keepalive_interval: Duration::from_millis(scenario.keepalive_interval_ms.into()),
        keepalive_timeout: Duration::from_millis(scenario.keepalive_timeout_ms.into()),
        legacy_ka_interval: Duration::from_millis(u64::from(scenario.keepalive_interval_ms) / 2),
        max_frame_bytes: 64 * 1024,
        max_operations: 1 + usize::from(scenario.max_operations % 8),
        max_outbound_bytes: 512 + usize::from(scenario.max_outbound) * 8,
        // The pair answers close frames; the linger bound is the lifecycle
        // target's to vary.
        close_linger: Duration::from_millis(u64::from(scenario.keepalive_timeout_ms)),
    };
    let client_config = ClientConfig {
        ack_timeout: Duration::from_millis(scenario.ack_timeout_ms.into()),
        ping_interval: Duration::from_millis(scenario.ping_interval_ms.into()),
        connection_params: Some(json!({ "token": "fuzz" })),
    };
    let now = Millis(1_000);
    let mut pair = Pair {
        now,
        protocol,
        server: Audited::new(now, protocol, server_config),
        client: ClientConnection::new(now, protocol, client_config),
        audit: ClientAudit::new(),
        to_server: VecDeque::new(),
        to_client: VecDeque::new(),
        upstream: BTreeMap::new(),
        auth_pending: false,
        unflushed: 0,
        ids: Vec::new(),
        socket_dead: false,
    };
    pair.client.handle_opened(now);
    pair.client_drain();

    for step in scenario.steps.iter().take(256) {
        match step {
            Step::Subscribe(n, variables) => {
                let query = GOOD_QUERIES[usize::from(*n) % GOOD_QUERIES.len()];
                let id = pair.client.subscribe(
                    pair.now,
                    query,
                    variables.as_ref().map(|v| v.0.clone()),
                    None,
                );
                pair.audit.subscribed(&id);
                pair.ids.push(id);
                pair.client_drain();
            }
            Step::ClientComplete(n) => {
                if !pair.ids.is_empty() {
                    let id = pair.ids[usize::from(*n) % pair.ids.len()].clone();
                    pair.client.complete(pair.now, &id);
                    pair.audit.completed(&id);
                    pair.client_drain();
                }
            }
            Step::DeliverToServer => pair.deliver_to_server(),
            Step::DeliverToClient => pair.deliver_to_client(),
            Step::DeliverAll => pair.deliver_all(),
            Step::LoseToServer => {
                if matches!(pair.to_server.front(), Some(Wire::Text(_) | Wire::Pong)) {
                    pair.to_server.pop_front();
                }
            }
            Step::LoseToClient => {
                if let Some(Wire::Text(_) | Wire::Ping) = pair.to_client.front() {
                    if let Some(Wire::Text(text)) = pair.to_client.pop_front() {
                        // Lost after the host wrote it.
                        let n = text.len().min(pair.unflushed);
                        pair.unflushed -= n;
                        pair.server_input(Input::Flushed(n));
                    }
                }
            }
            Step::DuplicateToServer => {
                if let Some(Wire::Text(text)) = pair.to_server.front().cloned() {
                    pair.to_server.push_front(Wire::Text(text));
                }
            }
            Step::InjectToServer(frame) => {
                if !pair.socket_dead {
                    pair.to_server
                        .push_back(Wire::Text(frame.to_text(pair.protocol)));
                }
            }
            Step::InjectToClient(frame) => {
                if !pair.socket_dead {
                    pair.to_client
                        .push_back(Wire::Text(frame.to_text(pair.protocol)));
                }
            }
            Step::Accept => {
                if std::mem::take(&mut pair.auth_pending) {
                    pair.server_input(Input::Auth(AuthVerdict::Accept { ack_payload: None }));
                }
            }
            Step::Reject(reason) => {
                if std::mem::take(&mut pair.auth_pending) {
                    pair.server_input(Input::Auth(AuthVerdict::Reject {
                        reason: reason.clone(),
                    }));
                }
            }
            Step::UpstreamNext(n, payload) => {
                if let Some(op) = pair.running(*n) {
                    *pair.upstream.get_mut(&op).expect("running") += 1;
                    let event = UpstreamEvent::Next(json!({ "data": payload.0 }));
                    pair.server_input(Input::Upstream { op, event });
                }
            }
            Step::UpstreamComplete(n) => {
                if let Some(op) = pair.running(*n) {
                    pair.upstream.remove(&op);
                    pair.server_input(Input::Upstream {
                        op,
                        event: UpstreamEvent::Complete,
                    });
                }
            }
            Step::UpstreamError(n, errors) => {
                if let Some(op) = pair.running(*n) {
                    pair.upstream.remove(&op);
                    let errors = errors.iter().map(|e| Value::Object(e.0.clone())).collect();
                    pair.server_input(Input::Upstream {
                        op,
                        event: UpstreamEvent::Error(errors),
                    });
                }
            }
            Step::Flush(n) => {
                let n = usize::from(*n).min(pair.unflushed);
                pair.unflushed -= n;
                pair.server_input(Input::Flushed(n));
            }
            Step::Advance(ms) => {
                let until = pair.now + Duration::from_millis((*ms).into());
                pair.advance(until);
            }
            Step::AbruptClose => pair.abrupt_close(),
            Step::Shutdown => pair.server_input(Input::Shutdown),
            Step::ClientClose => {
                pair.client.close(pair.now, 1000, "bye");
                pair.client_drain();
            }
        }
    }

    // The end: the server drains, everything in flight is delivered, time
    // runs past every deadline.
    pair.server_input(Input::Shutdown);
    pair.deliver_all();
    let far = pair.now + Duration::from_secs(24 * 3600);
    pair.advance(far);
    pair.deliver_all();
    // The socket is gone by now; telling both sides again is a no-op.
    pair.abrupt_close();
    let violations = pair.server.finish(pair.now);
    assert_no_violations("server end", &violations);
    assert!(
        pair.upstream.is_empty(),
        "upstream still runs {:?}",
        pair.upstream
    );
    assert_eq!(pair.server.connection().poll_timeout(), None);
    pair.audit.check_end(&pair.client);
    pair.audit.assert_clean("client end");
    assert_eq!(pair.client.poll_timeout(), None);
}

/// What the fuzzed upstream does next for an operation.
#[derive(Debug, Clone, Copy, Arbitrary)]
enum UpstreamMove {
    Next(u16),
    Complete(u16),
    Error(u16),
    /// Nothing for a long time (the operation hangs until cancelled).
    Hang,
}

/// An upstream whose every event and delay come from the input: each
/// operation plays the script from where the previous one left off; after
/// 16 results an operation completes, so every run settles.
#[derive(Debug)]
struct FuzzUpstream {
    script: Vec<UpstreamMove>,
    cursor: usize,
    ops: BTreeMap<OpKey, (Millis, u32)>,
}

impl FuzzUpstream {
    fn next_move(&mut self) -> UpstreamMove {
        if self.script.is_empty() {
            return UpstreamMove::Complete(1);
        }
        let m = self.script[self.cursor % self.script.len()];
        self.cursor += 1;
        m
    }

    fn delay(m: UpstreamMove) -> Duration {
        match m {
            UpstreamMove::Next(ms) | UpstreamMove::Complete(ms) | UpstreamMove::Error(ms) => {
                Duration::from_millis(u64::from(ms % 2_000))
            }
            UpstreamMove::Hang => Duration::from_secs(3_600),
        }
    }
}

impl Upstream for FuzzUpstream {
    fn start(&mut self, now: Millis, key: OpKey, _request: &OperationRequest) {
        let first = self
            .script
            .get(self.cursor % self.script.len().max(1))
            .copied();
        let due = now + first.map_or(Duration::from_millis(1), Self::delay);
        self.ops.insert(key, (due, 0));
    }

    fn cancel(&mut self, _now: Millis, key: OpKey) {
        self.ops.remove(&key);
    }

    fn poll_timeout(&self) -> Option<Millis> {
        self.ops.values().map(|(due, _)| *due).min()
    }

    fn poll_event(&mut self, now: Millis) -> Option<(OpKey, UpstreamEvent)> {
        let key = *self.ops.iter().find(|(_, (due, _))| *due <= now)?.0;
        let sent = self.ops[&key].1;
        let m = if sent >= 16 {
            UpstreamMove::Complete(0)
        } else {
            self.next_move()
        };
        let event = match m {
            UpstreamMove::Next(_) => UpstreamEvent::Next(json!({ "data": { "seq": sent } })),
            UpstreamMove::Complete(_) | UpstreamMove::Hang => UpstreamEvent::Complete,
            UpstreamMove::Error(_) => {
                UpstreamEvent::Error(vec![json!({ "message": "upstream failed" })])
            }
        };
        if event.is_terminal() {
            self.ops.remove(&key);
        } else {
            let peek = self
                .script
                .get(self.cursor % self.script.len().max(1))
                .copied();
            let due = now + peek.map_or(Duration::from_millis(1), Self::delay);
            self.ops.insert(key, (due, sent + 1));
        }
        Some((key, event))
    }

    fn live_operations(&self) -> usize {
        self.ops.len()
    }
}

/// The simulation driver's configuration, from the input.
#[derive(Debug, Arbitrary)]
struct SimSpec {
    seed: u64,
    clients: u8,
    legacy_share: u8,
    ops: (u8, u8),
    complete_early: u8,
    latency_ms: u8,
    duration_ms: u16,
    init_timeout_ms: u16,
    keepalive_interval_ms: u16,
    keepalive_timeout_ms: u16,
    max_operations: u8,
    max_outbound: u16,
    ack_timeout_ms: u16,
    ping_interval_ms: u16,
    faults: [u8; 6],
    script: Vec<UpstreamMove>,
}

fn probability(byte: u8) -> f64 {
    f64::from(byte) / 255.0
}

fn run_sim(spec: &SimSpec) {
    let (low, high) = (u64::from(spec.ops.0 % 6), u64::from(spec.ops.1 % 6));
    let [abrupt, pong, slow, duplicate, malformed, reject] = spec.faults;
    let config = SimConfig {
        seed: spec.seed,
        clients: 1 + usize::from(spec.clients % 3),
        legacy_share: probability(spec.legacy_share),
        ops_per_client: (low.min(high), low.max(high)),
        complete_early: probability(spec.complete_early),
        latency_ms: u64::from(spec.latency_ms % 50),
        duration_ms: u64::from(spec.duration_ms % 20_000),
        max_steps: 20_000,
        server: ConnectionConfig {
            init_timeout: Duration::from_millis(u64::from(spec.init_timeout_ms % 5_000)),
            keepalive_interval: Duration::from_millis(u64::from(
                spec.keepalive_interval_ms % 5_000,
            )),
            keepalive_timeout: Duration::from_millis(u64::from(spec.keepalive_timeout_ms % 5_000)),
            legacy_ka_interval: Duration::from_millis(u64::from(
                spec.keepalive_interval_ms % 3_000,
            )),
            max_frame_bytes: 64 * 1024,
            max_operations: 1 + usize::from(spec.max_operations % 8),
            max_outbound_bytes: 512 + usize::from(spec.max_outbound) * 8,
            close_linger: Duration::from_millis(u64::from(spec.keepalive_timeout_ms % 5_000)),
        },
        client: ClientConfig {
            ack_timeout: Duration::from_millis(u64::from(spec.ack_timeout_ms % 10_000)),
            ping_interval: Duration::from_millis(u64::from(spec.ping_interval_ms % 5_000)),
            connection_params: None,
        },
        script: ScriptConfig::default(),
        faults: Faults {
            abrupt_close: probability(abrupt),
            lost_pong: probability(pong),
            slow_reader: probability(slow),
            duplicate_id: probability(duplicate),
            malformed_frame: probability(malformed),
            reject_auth: probability(reject),
        },
        ..SimConfig::default()
    };
    let upstream = FuzzUpstream {
        script: spec.script.iter().take(64).copied().collect(),
        cursor: 0,
        ops: BTreeMap::new(),
    };
    let mut sim = Sim::with_upstream(config, upstream);
    sim.run();
    let findings = sim.findings();
    if !findings.is_empty() {
        let list: Vec<String> = findings.iter().map(ToString::to_string).collect();
        panic!("simulation findings:\n  {}", list.join("\n  "));
    }
}

#[derive(Debug, Arbitrary)]
enum Mode {
    Sim(SimSpec),
    Steps(Scenario),
}

fuzz_target!(|mode: Mode| match &mode {
    Mode::Sim(spec) => run_sim(spec),
    Mode::Steps(scenario) => run_steps(scenario),
});
