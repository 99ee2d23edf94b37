//! A deterministic simulation of many clients talking to many server
//! connections, in the style of quinn-proto's test `Pair`: real
//! [`ClientConnection`]s wired to real [`ServerConnection`]s (each under its
//! [`Ledger`](crate::ledger::Ledger)), a pluggable [`Upstream`], a virtual
//! clock that jumps to the next deadline, and seeded faults. The same seed
//! gives the same run, byte for byte, on every platform (wasm included).
//!
//! A scenario ends by closing every client and letting everything settle;
//! [`Sim::findings`] then reports every broken rule, and the property that
//! matters most: nothing is left alive.

mod rng;
mod shared;
mod upstream;

pub use rng::SplitMix64;
pub use shared::{run_shared, run_shared_ops, run_shared_ops_with, SharedReport};
pub use upstream::{OpKey, ScriptConfig, ScriptedUpstream, Upstream};

use crate::client::{ClientConfig, ClientConnection, ClientEffect, ClientEvent};
use crate::ledger::{Audited, ClientLedger, SimulationViolation, Violation};
use crate::protocol::{close, Subprotocol};
use crate::server::{AuthVerdict, ConnectionConfig, Effect, Input, ServerConnection};
use crate::{Millis, UpstreamEvent};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::time::Duration;

/// Per-client fault probabilities: each client draws its faults once, from
/// the simulation's seed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Faults {
    /// The socket dies at a random moment (no close frame, code 1006).
    pub abrupt_close: f64,
    /// The client's transport never answers the server's pings.
    pub lost_pong: f64,
    /// From a random moment on, the client reads nothing (nothing is
    /// flushed, pings go unanswered).
    pub slow_reader: f64,
    /// A `subscribe`/`start` reusing one of the client's active ids is
    /// injected at a random moment.
    pub duplicate_id: f64,
    /// A malformed frame is injected at a random moment.
    pub malformed_frame: f64,
    /// The host rejects the client's `connection_init`.
    pub reject_auth: f64,
}

impl Faults {
    /// Every fault at probability `p`.
    pub fn all(p: f64) -> Self {
        Faults {
            abrupt_close: p,
            lost_pong: p,
            slow_reader: p,
            duplicate_id: p,
            malformed_frame: p,
            reject_auth: p,
        }
    }
}

/// One simulated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// The seed of everything random.
    pub seed: u64,
    /// How many client/server pairs.
    pub clients: usize,
    /// Share of clients speaking legacy `graphql-ws`.
    pub legacy_share: f64,
    /// Operations each client requests, inclusive range.
    pub ops_per_client: (u64, u64),
    /// Chance that the client completes an operation itself.
    pub complete_early: f64,
    /// One-way network latency, and the host's auth decision time.
    pub latency_ms: u64,
    /// When every client still open closes normally (1000).
    pub duration_ms: u64,
    /// Bound on simulation steps (a run that needs more is reported).
    pub max_steps: u64,
    /// The servers' configuration.
    pub server: ConnectionConfig,
    /// The clients' configuration.
    pub client: ClientConfig,
    /// The scripted upstream's behaviour (including its error rate).
    pub script: ScriptConfig,
    /// Fault probabilities.
    pub faults: Faults,
    /// The documents clients subscribe to, each picked with equal chance
    /// (the first is also the payload of injected duplicate-id frames). The
    /// default suits the [`ScriptedUpstream`]; the browser simulator passes
    /// documents of the demo schema, since it runs the real GraphQL engine.
    pub queries: Vec<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            clients: 8,
            legacy_share: 0.5,
            ops_per_client: (1, 6),
            complete_early: 0.3,
            latency_ms: 5,
            duration_ms: 60_000,
            max_steps: 1_000_000,
            server: ConnectionConfig {
                max_outbound_bytes: 16 * 1024,
                ..ConnectionConfig::default()
            },
            client: ClientConfig::default(),
            script: ScriptConfig::default(),
            faults: Faults::default(),
            queries: QUERIES.iter().map(|q| (*q).to_owned()).collect(),
        }
    }
}

/// Counters of one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimStats {
    /// Simulation steps (distinct instants processed).
    pub steps: u64,
    /// `Start` effects.
    pub starts: u64,
    /// `Cancel` effects.
    pub cancels: u64,
    /// Operations ended by the upstream's `Complete` (as the server's ledger
    /// counts them: late events do not count).
    pub ended_by_complete: u64,
    /// Operations ended by the upstream's `Error`.
    pub ended_by_error: u64,
    /// Events the upstream produced (including late ones the server dropped).
    pub upstream_events: u64,
    /// Upstream events that arrived after their operation had ended (the
    /// cancel was still on its way): the server must drop them.
    pub late_upstream_events: u64,
    /// Frames clients sent (injected ones included).
    pub frames_to_server: u64,
    /// Frames servers sent.
    pub frames_to_client: u64,
    /// `Next` events clients received.
    pub client_nexts: u64,
    /// `Complete` events clients received.
    pub client_completes: u64,
    /// `Error` events clients received.
    pub client_errors: u64,
    /// Server `Close` codes, counted.
    pub server_closes: BTreeMap<u16, u64>,
    /// Client `Closed` codes, counted.
    pub client_closed: BTreeMap<u16, u64>,
    /// Faults injected.
    pub faults: u64,
}

/// A broken rule found by a simulation, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The pair it happened on, if it belongs to one.
    pub conn: Option<usize>,
    /// What was wrong.
    pub violation: Violation,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.conn {
            Some(conn) => write!(f, "connection {conn}: {}", self.violation),
            None => write!(f, "{}", self.violation),
        }
    }
}

/// One frame (or socket event) on the wire of the traced pair; see
/// [`Sim::trace_pair`].
#[derive(Debug, Clone, PartialEq)]
pub struct TraceFrame {
    /// When it was sent.
    pub at: Millis,
    /// Sent by the client (else by the server).
    pub from_client: bool,
    /// The frame's text, or a bracketed description of a socket event
    /// (`[ping]`, `[close 1000 reason]`, `[socket died]`).
    pub text: String,
}

/// How many frames the trace keeps when nobody takes them.
const TRACE_CAPACITY: usize = 1_000;

/// Records the frames of at most one pair, for a person to read.
#[derive(Debug, Default)]
struct Tracer {
    conn: Option<usize>,
    frames: VecDeque<TraceFrame>,
}

impl Tracer {
    fn record(
        &mut self,
        conn: usize,
        at: Millis,
        from_client: bool,
        text: impl FnOnce() -> String,
    ) {
        if self.conn != Some(conn) {
            return;
        }
        if self.frames.len() == TRACE_CAPACITY {
            self.frames.pop_front();
        }
        self.frames.push_back(TraceFrame {
            at,
            from_client,
            text: text(),
        });
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Action {
    Open,
    /// `query` indexes [`SimConfig::queries`].
    Subscribe {
        tag: usize,
        query: usize,
    },
    Complete {
        tag: usize,
    },
    Close,
    AbruptClose,
    InjectDuplicate,
    InjectMalformed,
    StartSlowReading,
}

#[derive(Debug)]
enum ToServer {
    Text(String),
    Pong,
    /// The client's close frame (its own close, or its answer to the
    /// server's).
    Closed {
        code: u16,
    },
}

#[derive(Debug)]
enum ToClient {
    Text(String),
    Ping,
    Closed { code: u16, reason: String },
}

/// One client wired to one server connection.
#[derive(Debug)]
pub struct SimPair {
    protocol: Subprotocol,
    client: ClientConnection,
    client_ledger: ClientLedger,
    server: Audited,
    to_server: VecDeque<(Millis, ToServer)>,
    to_client: VecDeque<(Millis, ToClient)>,
    pending_auth: Option<Millis>,
    lose_pongs: bool,
    slow_reader: bool,
    reject_auth: bool,
    aborted: bool,
    tags: HashMap<usize, String>,
}

impl SimPair {
    /// The subprotocol of this pair.
    pub fn protocol(&self) -> Subprotocol {
        self.protocol
    }

    /// The client state machine.
    pub fn client(&self) -> &ClientConnection {
        &self.client
    }

    /// The server state machine.
    pub fn server(&self) -> &ServerConnection {
        self.server.connection()
    }

    /// The server's ledger violations so far.
    pub fn server_violations(&self) -> &[Violation] {
        self.server.ledger().violations()
    }

    /// The client's ledger violations so far.
    pub fn client_violations(&self) -> &[Violation] {
        self.client_ledger.violations()
    }
}

const QUERIES: [&str; 4] = [
    "subscription { ticks { seq } }",
    "subscription { ticks { seq } }",
    "{ hello(name: \"sim\") { message } }",
    "mutation { poke }",
];

/// The simulation; see the module docs.
pub struct Sim<U: Upstream = ScriptedUpstream> {
    config: SimConfig,
    now: Millis,
    pairs: Vec<SimPair>,
    upstream: U,
    /// Scripted actions, latest first (popped from the end).
    actions: Vec<(Millis, usize, usize, Action)>,
    cancels: VecDeque<(Millis, OpKey)>,
    stats: SimStats,
    settled: bool,
    tracer: Tracer,
}

impl Sim<ScriptedUpstream> {
    /// A simulation with the scripted upstream.
    pub fn new(config: SimConfig) -> Self {
        let upstream = ScriptedUpstream::new(config.seed ^ 0x5EED, config.script.clone());
        Sim::with_upstream(config, upstream)
    }
}

impl<U: Upstream> Sim<U> {
    /// A simulation whose operations are answered by `upstream`.
    pub fn with_upstream(config: SimConfig, upstream: U) -> Self {
        let mut rng = SplitMix64::new(config.seed);
        let mut pairs = Vec::with_capacity(config.clients);
        let mut actions = Vec::new();
        let mut seq = 0usize;
        let mut push = |actions: &mut Vec<_>, at: u64, i: usize, action: Action| {
            actions.push((Millis(at), seq, i, action));
            seq += 1;
        };
        let duration = config.duration_ms.max(1);
        for i in 0..config.clients {
            let protocol = if rng.chance(config.legacy_share) {
                Subprotocol::GraphqlWs
            } else {
                Subprotocol::GraphqlTransportWs
            };
            let faults = &config.faults;
            let open_at = rng.below(100.min(duration));
            push(&mut actions, open_at, i, Action::Open);
            let ops = rng.between(config.ops_per_client.0, config.ops_per_client.1);
            for tag in 0..ops as usize {
                let at = open_at + rng.below(duration * 3 / 4);
                let query = rng.below(config.queries.len() as u64) as usize;
                push(&mut actions, at, i, Action::Subscribe { tag, query });
                if rng.chance(config.complete_early) {
                    let later = at + rng.below(2_000);
                    push(&mut actions, later, i, Action::Complete { tag });
                }
            }
            let lose_pongs = rng.chance(faults.lost_pong);
            let reject_auth = rng.chance(faults.reject_auth);
            let fault_at =
                |rng: &mut SplitMix64, p: f64| rng.chance(p).then(|| open_at + rng.below(duration));
            let timed = [
                (fault_at(&mut rng, faults.abrupt_close), Action::AbruptClose),
                (
                    fault_at(&mut rng, faults.slow_reader),
                    Action::StartSlowReading,
                ),
                (
                    fault_at(&mut rng, faults.duplicate_id),
                    Action::InjectDuplicate,
                ),
                (
                    fault_at(&mut rng, faults.malformed_frame),
                    Action::InjectMalformed,
                ),
            ];
            for (at, action) in timed {
                if let Some(at) = at {
                    push(&mut actions, at, i, action);
                }
            }
            push(&mut actions, duration, i, Action::Close);
            pairs.push(SimPair {
                protocol,
                client: ClientConnection::new(Millis::ZERO, protocol, config.client.clone()),
                client_ledger: ClientLedger::new(),
                server: Audited::new(Millis::ZERO, protocol, config.server.clone()),
                to_server: VecDeque::new(),
                to_client: VecDeque::new(),
                pending_auth: None,
                lose_pongs,
                slow_reader: false,
                reject_auth,
                aborted: false,
                tags: HashMap::new(),
            });
        }
        // Latest first, so the next action is popped from the end.
        actions.sort_by_key(|a| std::cmp::Reverse((a.0, a.1)));
        Sim {
            config,
            now: Millis::ZERO,
            pairs,
            upstream,
            actions,
            cancels: VecDeque::new(),
            stats: SimStats::default(),
            settled: false,
            tracer: Tracer::default(),
        }
    }

    /// The virtual clock.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// The pairs, for display and checks.
    pub fn pairs(&self) -> &[SimPair] {
        &self.pairs
    }

    /// The upstream.
    pub fn upstream(&self) -> &U {
        &self.upstream
    }

    /// The counters so far.
    pub fn stats(&self) -> &SimStats {
        &self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Records the frames of pair `conn` from now on (`None`: of no pair),
    /// dropping what was recorded for another pair.
    pub fn trace_pair(&mut self, conn: Option<usize>) {
        if self.tracer.conn != conn {
            self.tracer.frames.clear();
        }
        self.tracer.conn = conn;
    }

    /// The traced frames recorded since the last call (at most the latest
    /// 1,000).
    pub fn take_trace(&mut self) -> Vec<TraceFrame> {
        self.tracer.frames.drain(..).collect()
    }

    /// The next instant at which anything happens; `None` once settled.
    pub fn next_deadline(&self) -> Option<Millis> {
        let global = [
            self.actions.last().map(|a| a.0),
            self.cancels.front().map(|c| c.0),
            self.upstream.poll_timeout(),
        ];
        let per_pair = self.pairs.iter().flat_map(|pair| {
            [
                pair.to_server.front().map(|m| m.0),
                pair.to_client.front().map(|m| m.0),
                pair.pending_auth,
                pair.client.poll_timeout(),
                pair.server.connection().poll_timeout(),
            ]
        });
        global.into_iter().chain(per_pair).flatten().min()
    }

    /// Jumps the clock to the next deadline and processes everything due
    /// then. Returns `false` when nothing is left to happen.
    pub fn step(&mut self) -> bool {
        let Some(next) = self.next_deadline() else {
            self.settled = true;
            return false;
        };
        self.now = self.now.max(next);
        self.stats.steps += 1;
        // Processing can make more things due now (zero latency): repeat.
        while self.next_deadline().is_some_and(|d| d <= self.now) {
            self.process_due();
        }
        true
    }

    /// Runs until nothing is left to happen (or `max_steps`).
    pub fn run(&mut self) {
        while self.stats.steps < self.config.max_steps {
            if !self.step() {
                return;
            }
        }
    }

    /// Every broken rule: the ledgers' findings during the run, then the end
    /// state (call after [`Self::run`]): every server terminated with no
    /// operation and no timer, every client closed with nothing active, the
    /// upstream running nothing. Empty means nothing is left alive.
    pub fn findings(&mut self) -> Vec<Finding> {
        let mut findings = Vec::new();
        if !self.settled {
            findings.push(Finding {
                conn: None,
                violation: SimulationViolation::DidNotSettle {
                    steps: self.stats.steps,
                }
                .into(),
            });
        }
        for (i, pair) in self.pairs.iter_mut().enumerate() {
            pair.client_ledger.check_end(&pair.client);
            let server = pair.server.check_end();
            let client = pair.client_ledger.violations().iter().cloned();
            findings.extend(server.into_iter().chain(client).map(|violation| Finding {
                conn: Some(i),
                violation,
            }));
        }
        let count = self.upstream.live_operations();
        if count != 0 {
            findings.push(Finding {
                conn: None,
                violation: SimulationViolation::UpstreamOperationsAtEnd { count }.into(),
            });
        }
        findings
    }

    // ---- internals ----

    fn at(&self, delay: u64) -> Millis {
        self.now + Duration::from_millis(delay)
    }

    fn process_due(&mut self) {
        let now = self.now;
        while self.actions.last().is_some_and(|a| a.0 <= now) {
            let (_, _, i, action) = self.actions.pop().expect("checked");
            self.act(i, action);
        }
        for i in 0..self.pairs.len() {
            if self.pairs[i].pending_auth.is_some_and(|d| d <= now) {
                self.pairs[i].pending_auth = None;
                let verdict = if self.pairs[i].reject_auth {
                    AuthVerdict::Reject {
                        reason: "simulated rejection".into(),
                    }
                } else {
                    AuthVerdict::Accept {
                        ack_payload: Some(json!({"sim": true})),
                    }
                };
                self.server_input(i, Input::Auth(verdict));
            }
            while let Some((_, msg)) = pop_due(&mut self.pairs[i].to_server, now) {
                let input = match msg {
                    ToServer::Text(text) => Input::Text(text),
                    ToServer::Pong => Input::TransportPong,
                    ToServer::Closed { code } => Input::TransportClosed { code },
                };
                self.server_input(i, input);
            }
            while let Some((_, msg)) = pop_due(&mut self.pairs[i].to_client, now) {
                self.deliver_to_client(i, msg);
            }
        }
        while self.cancels.front().is_some_and(|c| c.0 <= now) {
            let (_, key) = self.cancels.pop_front().expect("checked");
            self.upstream.cancel(now, key);
        }
        while let Some((key, event)) = self.upstream.poll_event(now) {
            self.stats.upstream_events += 1;
            if !self.pairs[key.conn].server.ledger().is_live(key.op) {
                self.stats.late_upstream_events += 1;
            }
            self.server_input(key.conn, Input::Upstream { op: key.op, event });
        }
        for i in 0..self.pairs.len() {
            if self.pairs[i]
                .server
                .connection()
                .poll_timeout()
                .is_some_and(|d| d <= now)
            {
                self.server_input(i, Input::Timeout);
            }
            if self.pairs[i]
                .client
                .poll_timeout()
                .is_some_and(|d| d <= now)
            {
                self.pairs[i].client.handle_timeout(now);
                self.drain_client(i);
            }
        }
    }

    fn act(&mut self, i: usize, action: Action) {
        let now = self.now;
        let pair = &mut self.pairs[i];
        match action {
            Action::Open => pair.client.handle_opened(now),
            Action::Subscribe { tag, query } => {
                if !pair.client.is_closed() {
                    let query = self.config.queries.get(query).map_or("", String::as_str);
                    let id = pair.client.subscribe(now, query, None, None);
                    pair.client_ledger.observe_subscribe(&id);
                    pair.tags.insert(tag, id);
                }
            }
            Action::Complete { tag } => {
                if let Some(id) = pair.tags.get(&tag).cloned() {
                    pair.client_ledger.observe_complete(&id);
                    pair.client.complete(now, &id);
                }
            }
            Action::Close => pair.client.close(now, close::NORMAL, "scenario over"),
            Action::AbruptClose => {
                if !pair.aborted {
                    self.stats.faults += 1;
                    pair.aborted = true;
                    pair.to_server.clear();
                    pair.to_client.clear();
                    pair.client
                        .handle_transport_closed(now, close::ABNORMAL_CLOSURE, "");
                    self.tracer
                        .record(i, now, true, || "[socket died]".to_owned());
                    self.server_input(
                        i,
                        Input::TransportClosed {
                            code: close::ABNORMAL_CLOSURE,
                        },
                    );
                }
            }
            Action::StartSlowReading => {
                self.stats.faults += 1;
                pair.slow_reader = true;
            }
            Action::InjectDuplicate => {
                if pair.client.is_closed() {
                    return;
                }
                let Some(id) = pair.client.active_ids().next().map(str::to_owned) else {
                    return;
                };
                self.stats.faults += 1;
                let kind = match pair.protocol {
                    Subprotocol::GraphqlTransportWs => "subscribe",
                    Subprotocol::GraphqlWs => "start",
                };
                let query = self.config.queries.first().map_or("", String::as_str);
                let frame = json!({"type": kind, "id": id, "payload": {"query": query}});
                let at = self.at(self.config.latency_ms);
                let pair = &mut self.pairs[i];
                let frame = frame.to_string();
                self.tracer.record(i, now, true, || frame.clone());
                pair.to_server.push_back((at, ToServer::Text(frame)));
                self.stats.frames_to_server += 1;
            }
            Action::InjectMalformed => {
                if pair.client.is_closed() {
                    return;
                }
                self.stats.faults += 1;
                let at = self.at(self.config.latency_ms);
                let pair = &mut self.pairs[i];
                let frame = r#"{"type":"subscribe","id":"#.to_owned();
                self.tracer.record(i, now, true, || frame.clone());
                pair.to_server.push_back((at, ToServer::Text(frame)));
                self.stats.frames_to_server += 1;
            }
        }
        self.drain_client(i);
    }

    fn deliver_to_client(&mut self, i: usize, msg: ToClient) {
        let now = self.now;
        let pair = &mut self.pairs[i];
        match msg {
            ToClient::Text(text) => {
                if pair.slow_reader {
                    // Not read, so never flushed: the server's queue grows.
                    return;
                }
                pair.client.handle_text(now, &text);
                self.server_input(i, Input::Flushed(text.len()));
            }
            ToClient::Ping => {
                if !pair.slow_reader && !pair.lose_pongs && !pair.client.is_closed() {
                    let at = self.at(self.config.latency_ms);
                    self.tracer.record(i, now, true, || "[pong]".to_owned());
                    self.pairs[i].to_server.push_back((at, ToServer::Pong));
                }
            }
            ToClient::Closed { code, reason } => {
                // A client that reads answers the server's close frame (the
                // server lingers for it); a slow reader never sees it, so
                // the server's linger deadline ends the connection.
                if !pair.slow_reader && !pair.aborted {
                    let at = self.at(self.config.latency_ms);
                    self.tracer
                        .record(i, now, true, || format!("[close {code}]"));
                    self.pairs[i]
                        .to_server
                        .push_back((at, ToServer::Closed { code }));
                }
                self.pairs[i]
                    .client
                    .handle_transport_closed(now, code, &reason)
            }
        }
        self.drain_client(i);
    }

    fn server_input(&mut self, i: usize, input: Input) {
        let now = self.now;
        if let Input::Upstream { op, event } = &input {
            let ledger = self.pairs[i].server.ledger();
            // The same rule the ledger applies: a terminal event ends a live
            // operation of an open connection; anything else is late.
            if ledger.is_live(*op) && !ledger.is_closed() {
                match event {
                    UpstreamEvent::Complete => self.stats.ended_by_complete += 1,
                    UpstreamEvent::Error(_) => self.stats.ended_by_error += 1,
                    UpstreamEvent::Next(_) | UpstreamEvent::NextEncoded(_) => {}
                }
            }
        }
        let effects = self.pairs[i].server.handle(now, input);
        let at = self.at(self.config.latency_ms);
        for effect in effects {
            let pair = &mut self.pairs[i];
            match effect {
                Effect::SendText(text) => {
                    self.stats.frames_to_client += 1;
                    self.tracer.record(i, now, false, || text.clone());
                    pair.to_client.push_back((at, ToClient::Text(text)));
                }
                Effect::SendPing => {
                    self.tracer.record(i, now, false, || "[ping]".to_owned());
                    pair.to_client.push_back((at, ToClient::Ping));
                }
                Effect::Authenticate { .. } => pair.pending_auth = Some(at),
                Effect::Start { op, request } => {
                    self.stats.starts += 1;
                    self.upstream.start(now, OpKey { conn: i, op }, &request);
                }
                Effect::Cancel { op } => {
                    self.stats.cancels += 1;
                    // The cancel takes a moment to reach the upstream, so
                    // late events really happen and must be dropped.
                    self.cancels.push_back((at, OpKey { conn: i, op }));
                }
                Effect::Close { code, reason } => {
                    *self.stats.server_closes.entry(code).or_default() += 1;
                    self.tracer
                        .record(i, now, false, || format!("[close {code} {reason}]"));
                    if !pair.aborted {
                        pair.to_client
                            .push_back((at, ToClient::Closed { code, reason }));
                    }
                }
            }
        }
    }

    fn drain_client(&mut self, i: usize) {
        let now = self.now;
        let at = self.at(self.config.latency_ms);
        let pair = &mut self.pairs[i];
        while let Some(effect) = pair.client.poll_effect() {
            pair.client_ledger.observe_effect(&effect);
            match effect {
                ClientEffect::SendText(text) => {
                    if !pair.aborted {
                        self.stats.frames_to_server += 1;
                        self.tracer.record(i, now, true, || text.clone());
                        pair.to_server.push_back((at, ToServer::Text(text)));
                    }
                }
                ClientEffect::Close { code, reason } => {
                    if !pair.aborted {
                        self.tracer
                            .record(i, now, true, || format!("[close {code} {reason}]"));
                        pair.to_server.push_back((at, ToServer::Closed { code }));
                    }
                }
                ClientEffect::Event(event) => match event {
                    ClientEvent::Next { .. } => self.stats.client_nexts += 1,
                    ClientEvent::Complete { .. } => self.stats.client_completes += 1,
                    ClientEvent::Error { .. } => self.stats.client_errors += 1,
                    ClientEvent::Closed { code, .. } => {
                        *self.stats.client_closed.entry(code).or_default() += 1
                    }
                    ClientEvent::Acked { .. } => {}
                },
            }
        }
    }
}

fn pop_due<T>(queue: &mut VecDeque<(Millis, T)>, now: Millis) -> Option<(Millis, T)> {
    if queue.front().is_some_and(|m| m.0 <= now) {
        queue.pop_front()
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
