//! The live mode: M browser WebSockets against a running gateway
//! (`ws://host/graphql`), each driven by the core's [`ClientConnection`]
//! and audited by a [`ClientLedger`]. The page calls
//! [`LiveRun::tick`] every animation frame: it fires the clients' timers and
//! the scheduled actions (early completes and faults); socket events arrive
//! through the WebSocket handlers in between.
//!
//! The knobs that apply to a real browser socket: abrupt disconnects
//! (`ws.close()` without completing anything, the client state machine
//! told the socket died), upstream errors (subscriptions asking the demo
//! service to fail with `failAt`), duplicate ids and malformed frames
//! (injected raw frames). Lost pongs and slow readers do not: the browser
//! answers transport pings and reads the socket itself.

use crate::offline::LogFrame;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::{HashSet, VecDeque};
use std::rc::{Rc, Weak};
use std::time::Duration;
use terminus_core::client::{ClientConfig, ClientConnection, ClientEffect, ClientEvent};
use terminus_core::ledger::ClientLedger;
use terminus_core::protocol::{close, Subprotocol};
use terminus_core::sim::SplitMix64;
use terminus_core::Millis;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{CloseEvent, Event, MessageEvent, WebSocket};

/// Most sockets one page may open (browsers cap connections per origin
/// loosely; the gateway caps them anyway).
pub const MAX_LIVE_CLIENTS: usize = 2_000;

/// Frames kept for the selected client when nobody takes them.
const LOG_CAPACITY: usize = 1_000;

/// The live-mode fault knobs, each a probability per client in `0..=1`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct LiveFaults {
    /// The socket is dropped at a random moment without completing.
    pub abrupt_disconnect: f64,
    /// A subscription asks the demo service to fail at a random tick.
    pub upstream_error: f64,
    /// A `subscribe` reusing an active id is injected.
    pub duplicate_id: f64,
    /// A malformed frame is injected.
    pub malformed_frame: f64,
}

/// What the page asks for (JSON, camelCase; absent fields take defaults).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct LiveOptions {
    /// The gateway's WebSocket URL, `ws://host:port/graphql`.
    pub url: String,
    /// The seed of the random choices.
    pub seed: u64,
    /// Browser WebSockets to open.
    pub clients: usize,
    /// Share of clients speaking legacy `graphql-ws`, `0..=1`.
    pub legacy_share: f64,
    /// Subscriptions each client starts (`ticks`), plus one `hello` query.
    pub subscriptions_per_client: u64,
    /// The tick period asked of the demo service, ms.
    pub tick_every_ms: u64,
    /// Chance that a client completes one of its subscriptions itself.
    pub complete_early: f64,
    /// Faults are scheduled within this many ms of the start.
    pub fault_window_ms: u64,
    /// How long a client waits for `connection_ack`, ms.
    pub ack_timeout_ms: u64,
    /// The fault knobs.
    pub faults: LiveFaults,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            url: String::new(),
            seed: 1,
            clients: 10,
            legacy_share: 0.3,
            subscriptions_per_client: 1,
            tick_every_ms: 500,
            complete_early: 0.0,
            fault_window_ms: 10_000,
            ack_timeout_ms: 10_000,
            faults: LiveFaults::default(),
        }
    }
}

impl LiveOptions {
    /// Parses and checks the page's JSON.
    pub fn from_json(json: &str) -> Result<Self, String> {
        let options: LiveOptions =
            serde_json::from_str(json).map_err(|e| format!("invalid live options: {e}"))?;
        options.check()?;
        Ok(options)
    }

    /// Checks every bound; the message names the field.
    pub fn check(&self) -> Result<(), String> {
        if !(self.url.starts_with("ws://") || self.url.starts_with("wss://")) {
            return Err(format!(
                "url must be a ws:// or wss:// URL such as ws://127.0.0.1:8080/graphql, not {:?}",
                self.url
            ));
        }
        if self.clients == 0 || self.clients > MAX_LIVE_CLIENTS {
            return Err(format!(
                "clients must be 1..={MAX_LIVE_CLIENTS}, not {}",
                self.clients
            ));
        }
        if self.subscriptions_per_client > 50 {
            return Err(format!(
                "subscriptionsPerClient must be at most 50, not {}",
                self.subscriptions_per_client
            ));
        }
        if !(10..=60_000).contains(&self.tick_every_ms) {
            return Err(format!(
                "tickEveryMs must be 10..=60000, not {}",
                self.tick_every_ms
            ));
        }
        if !(1_000..=600_000).contains(&self.ack_timeout_ms) {
            return Err(format!(
                "ackTimeoutMs must be 1000..=600000, not {}",
                self.ack_timeout_ms
            ));
        }
        let f = &self.faults;
        for (name, p) in [
            ("legacyShare", self.legacy_share),
            ("completeEarly", self.complete_early),
            ("faults.abruptDisconnect", f.abrupt_disconnect),
            ("faults.upstreamError", f.upstream_error),
            ("faults.duplicateId", f.duplicate_id),
            ("faults.malformedFrame", f.malformed_frame),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} must be a probability in 0..=1, not {p}"));
            }
        }
        Ok(())
    }
}

/// What the page shows, read after each frame.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveCounters {
    /// Milliseconds since the run started.
    pub now_ms: u64,
    /// Clients created.
    pub clients: usize,
    /// Sockets open (or opening).
    pub open_clients: usize,
    /// Clients acknowledged by the gateway and still open.
    pub ready_clients: usize,
    /// Operations requested and not ended, over every client.
    pub live_operations: usize,
    /// Operations requested.
    pub started: u64,
    /// Operations ended by the gateway's `complete`.
    pub completed: u64,
    /// Operations ended by an `error`.
    pub errored: u64,
    /// Operations ended by the client: its own `complete`, or its
    /// connection closing or dropping with the operation active.
    pub cancelled: u64,
    /// `next` results received.
    pub results: u64,
    /// Broken rules found by the client ledgers.
    pub violations: usize,
    /// Faults injected.
    pub faults: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Action {
    CompleteOne,
    Drop,
    InjectDuplicate,
    InjectMalformed,
}

/// The handlers attached to one socket; dropped only after they were
/// detached from it.
struct Handlers {
    _open: Closure<dyn FnMut(Event)>,
    _message: Closure<dyn FnMut(MessageEvent)>,
    _close: Closure<dyn FnMut(CloseEvent)>,
}

struct LiveClient {
    client: ClientConnection,
    ledger: ClientLedger,
    /// The ids the application considers active, to count how each ended.
    active: HashSet<String>,
    socket: Option<WebSocket>,
    handlers: Option<Handlers>,
}

struct LiveState {
    options: LiveOptions,
    started_at: f64,
    clients: Vec<LiveClient>,
    /// Scheduled actions, latest first (popped from the end).
    actions: Vec<(u64, usize, Action)>,
    counters: LiveCounters,
    selected: Option<usize>,
    log: VecDeque<LogFrame>,
    rng: SplitMix64,
}

/// The live run; see the module docs. Dropping it drops every socket.
pub struct LiveRun {
    state: Rc<RefCell<LiveState>>,
}

fn wall_clock_ms() -> f64 {
    js_sys::Date::now()
}

impl LiveRun {
    /// Opens `options.clients` sockets to `options.url`.
    pub fn start(options: LiveOptions) -> Result<LiveRun, String> {
        options.check()?;
        let mut rng = SplitMix64::new(options.seed);
        let state = Rc::new(RefCell::new(LiveState {
            started_at: wall_clock_ms(),
            clients: Vec::with_capacity(options.clients),
            actions: Vec::new(),
            counters: LiveCounters::default(),
            selected: None,
            log: VecDeque::new(),
            rng: rng.fork(),
            options,
        }));
        let count = state.borrow().options.clients;
        for i in 0..count {
            let protocol = if rng.chance(state.borrow().options.legacy_share) {
                Subprotocol::GraphqlWs
            } else {
                Subprotocol::GraphqlTransportWs
            };
            if let Err(e) = LiveState::open(&state, i, protocol) {
                // Close what was opened: nothing outlives a failed start.
                drop(LiveRun { state });
                return Err(e);
            }
        }
        state
            .borrow_mut()
            .actions
            .sort_by_key(|a| std::cmp::Reverse((a.0, a.1)));
        Ok(LiveRun { state })
    }

    /// Fires due timers and scheduled actions.
    pub fn tick(&self) {
        self.state.borrow_mut().tick();
    }

    /// The counters now.
    pub fn counters(&self) -> LiveCounters {
        self.state.borrow().counters()
    }

    /// Drops every socket at once, completing nothing.
    pub fn drop_all(&self) {
        let mut state = self.state.borrow_mut();
        for i in 0..state.clients.len() {
            state.drop_client(i, false);
        }
    }

    /// Closes every client normally (1000).
    pub fn close_all(&self) {
        let mut state = self.state.borrow_mut();
        let now = state.now();
        for i in 0..state.clients.len() {
            state.clients[i]
                .client
                .close(now, close::NORMAL, "simulation stopped");
            state.drain(i);
        }
    }

    /// Logs client `index`'s frames from now on (`None`: nobody's).
    pub fn select_client(&self, index: Option<usize>) {
        let mut state = self.state.borrow_mut();
        let index = index.filter(|i| *i < state.clients.len());
        if state.selected != index {
            state.log.clear();
        }
        state.selected = index;
    }

    /// The selected client's frames since the last call.
    pub fn take_log(&self) -> Vec<LogFrame> {
        self.state.borrow_mut().log.drain(..).collect()
    }
}

impl Drop for LiveRun {
    fn drop(&mut self) {
        if let Ok(mut state) = self.state.try_borrow_mut() {
            for i in 0..state.clients.len() {
                state.drop_client(i, false);
            }
        }
    }
}

impl LiveState {
    fn now(&self) -> Millis {
        Millis((wall_clock_ms() - self.started_at).max(0.0) as u64)
    }

    fn record(&mut self, i: usize, from_client: bool, text: impl FnOnce() -> String) {
        if self.selected != Some(i) {
            return;
        }
        if self.log.len() == LOG_CAPACITY {
            self.log.pop_front();
        }
        let at_ms = self.now().0;
        self.log.push_back(LogFrame {
            at_ms,
            from_client,
            text: text(),
        });
    }

    /// Creates client `i`, its socket and its plan.
    fn open(state: &Rc<RefCell<LiveState>>, i: usize, protocol: Subprotocol) -> Result<(), String> {
        let mut this = state.borrow_mut();
        let now = this.now();
        let options = this.options.clone();
        let config = ClientConfig {
            ack_timeout: Duration::from_millis(options.ack_timeout_ms),
            ..ClientConfig::default()
        };
        let mut client = ClientConnection::new(now, protocol, config);
        let mut ledger = ClientLedger::new();
        let mut active = HashSet::new();
        let window = options.fault_window_ms.max(1);
        for _ in 0..options.subscriptions_per_client {
            let fail_at = this
                .rng
                .chance(options.faults.upstream_error)
                .then(|| 2 + this.rng.below(8));
            let query = match fail_at {
                Some(n) => format!(
                    "subscription {{ ticks(everyMs: {}, failAt: {n}) {{ seq }} }}",
                    options.tick_every_ms
                ),
                None => format!(
                    "subscription {{ ticks(everyMs: {}) {{ seq }} }}",
                    options.tick_every_ms
                ),
            };
            let id = client.subscribe(now, &query, None, None);
            ledger.observe_subscribe(&id);
            active.insert(id);
            this.counters.started += 1;
        }
        let id = client.subscribe(now, "query Hello { hello(name: \"browser\") }", None, None);
        ledger.observe_subscribe(&id);
        active.insert(id);
        this.counters.started += 1;
        let plan = [
            (options.complete_early, Action::CompleteOne),
            (options.faults.abrupt_disconnect, Action::Drop),
            (options.faults.duplicate_id, Action::InjectDuplicate),
            (options.faults.malformed_frame, Action::InjectMalformed),
        ];
        for (p, action) in plan {
            if this.rng.chance(p) {
                let at = 500 + this.rng.below(window);
                this.actions.push((at, i, action));
            }
        }
        let socket = WebSocket::new_with_str(&options.url, protocol.name())
            .map_err(|e| format!("cannot open {}: {e:?}", options.url))?;
        let weak = Rc::downgrade(state);
        let handlers = Handlers {
            _open: handler(&weak, move |s: &mut LiveState, _: Event| s.on_open(i)),
            _message: handler(&weak, move |s: &mut LiveState, e: MessageEvent| {
                s.on_message(i, e)
            }),
            _close: handler(&weak, move |s: &mut LiveState, e: CloseEvent| {
                s.on_close(i, e)
            }),
        };
        socket.set_onopen(Some(handlers._open.as_ref().unchecked_ref()));
        socket.set_onmessage(Some(handlers._message.as_ref().unchecked_ref()));
        socket.set_onclose(Some(handlers._close.as_ref().unchecked_ref()));
        this.clients.push(LiveClient {
            client,
            ledger,
            active,
            socket: Some(socket),
            handlers: Some(handlers),
        });
        Ok(())
    }

    fn on_open(&mut self, i: usize) {
        let now = self.now();
        let Some(socket) = self.clients[i].socket.clone() else {
            return;
        };
        let expected = self.clients[i].client.protocol().name();
        if socket.protocol() != expected {
            // The gateway did not echo the subprotocol: nothing it says can
            // be trusted to follow either protocol.
            let reason = format!("server chose subprotocol {:?}", socket.protocol());
            self.clients[i]
                .client
                .close(now, close::BAD_RESPONSE, &reason);
        } else {
            self.clients[i].client.handle_opened(now);
        }
        self.drain(i);
    }

    fn on_message(&mut self, i: usize, event: MessageEvent) {
        let Some(text) = event.data().as_string() else {
            // The gateway sends text frames only; a binary frame is ignored
            // (and logged) rather than fed to the text parser.
            self.record(i, false, || "[binary frame]".to_owned());
            return;
        };
        let now = self.now();
        self.record(i, false, || text.clone());
        self.clients[i].client.handle_text(now, &text);
        self.drain(i);
    }

    fn on_close(&mut self, i: usize, event: CloseEvent) {
        let now = self.now();
        let (code, reason) = (event.code(), event.reason());
        self.record(i, false, || format!("[close {code} {reason}]"));
        self.clients[i]
            .client
            .handle_transport_closed(now, code, &reason);
        self.drain(i);
        self.detach(i);
    }

    /// Carries out the client's effects.
    fn drain(&mut self, i: usize) {
        while let Some(effect) = self.clients[i].client.poll_effect() {
            self.clients[i].ledger.observe_effect(&effect);
            match effect {
                ClientEffect::SendText(text) => {
                    self.record(i, true, || text.clone());
                    if let Some(socket) = &self.clients[i].socket {
                        // A send on a socket that is closing is dropped by
                        // the browser, which is what a real client sees.
                        let _ = socket.send_with_str(&text);
                    }
                }
                ClientEffect::Close { code, reason } => {
                    self.record(i, true, || format!("[close {code} {reason}]"));
                    if let Some(socket) = &self.clients[i].socket {
                        // Browsers accept only 1000 and 3000..=4999 from a
                        // script; other codes travel in the reason.
                        let result = if close::browser_may_send(code) {
                            socket.close_with_code_and_reason(code, &reason)
                        } else {
                            socket.close_with_code_and_reason(
                                close::NORMAL,
                                &format!("{code} {reason}"),
                            )
                        };
                        if result.is_err() {
                            let _ = socket.close();
                        }
                    }
                }
                ClientEffect::Event(event) => {
                    let active = &mut self.clients[i].active;
                    match event {
                        ClientEvent::Next { .. } => self.counters.results += 1,
                        ClientEvent::Complete { id } => {
                            if active.remove(&id) {
                                self.counters.completed += 1;
                            }
                        }
                        ClientEvent::Error { id, .. } => {
                            if active.remove(&id) {
                                self.counters.errored += 1;
                            }
                        }
                        // Whatever was active ends with the connection.
                        ClientEvent::Closed { .. } => {
                            self.counters.cancelled += active.len() as u64;
                            active.clear();
                        }
                        ClientEvent::Acked { .. } => {}
                    }
                }
            }
        }
    }

    /// Drops client `i`'s socket without completing anything; `fault` counts
    /// it as an injected fault.
    fn drop_client(&mut self, i: usize, fault: bool) {
        if self.clients[i].client.is_closed() {
            self.detach(i);
            return;
        }
        if fault {
            self.counters.faults += 1;
        }
        let now = self.now();
        self.record(i, true, || "[socket dropped]".to_owned());
        if let Some(socket) = &self.clients[i].socket {
            let _ = socket.close();
        }
        self.clients[i]
            .client
            .handle_transport_closed(now, close::ABNORMAL_CLOSURE, "dropped");
        self.drain(i);
        self.detach(i);
    }

    /// Detaches the handlers before dropping them, so the browser never
    /// calls a freed closure.
    fn detach(&mut self, i: usize) {
        if let Some(socket) = self.clients[i].socket.take() {
            socket.set_onopen(None);
            socket.set_onmessage(None);
            socket.set_onclose(None);
        }
        self.clients[i].handlers = None;
    }

    fn tick(&mut self) {
        let now = self.now();
        while self.actions.last().is_some_and(|a| a.0 <= now.0) {
            let (_, i, action) = self.actions.pop().expect("checked");
            self.act(i, action);
        }
        for i in 0..self.clients.len() {
            if self.clients[i]
                .client
                .poll_timeout()
                .is_some_and(|d| d <= now)
            {
                self.clients[i].client.handle_timeout(now);
                self.drain(i);
            }
        }
    }

    fn act(&mut self, i: usize, action: Action) {
        let now = self.now();
        if self.clients[i].client.is_closed() {
            return;
        }
        match action {
            Action::CompleteOne => {
                let Some(id) = self.clients[i]
                    .client
                    .active_ids()
                    .next()
                    .map(str::to_owned)
                else {
                    return;
                };
                self.clients[i].ledger.observe_complete(&id);
                self.clients[i].client.complete(now, &id);
                self.clients[i].active.remove(&id);
                self.counters.cancelled += 1;
                self.drain(i);
            }
            Action::Drop => self.drop_client(i, true),
            Action::InjectDuplicate | Action::InjectMalformed => {
                if !self.clients[i].client.is_ready() {
                    return;
                }
                let frame = if action == Action::InjectMalformed {
                    r#"{"type":"subscribe","id":"#.to_owned()
                } else {
                    let Some(id) = self.clients[i]
                        .client
                        .active_ids()
                        .next()
                        .map(str::to_owned)
                    else {
                        return;
                    };
                    let kind = match self.clients[i].client.protocol() {
                        Subprotocol::GraphqlTransportWs => "subscribe",
                        Subprotocol::GraphqlWs => "start",
                    };
                    serde_json::json!({
                        "type": kind,
                        "id": id,
                        "payload": {"query": "subscription { ticks(everyMs: 1000) { seq } }"},
                    })
                    .to_string()
                };
                self.counters.faults += 1;
                self.record(i, true, || frame.clone());
                if let Some(socket) = &self.clients[i].socket {
                    let _ = socket.send_with_str(&frame);
                }
            }
        }
    }

    fn counters(&self) -> LiveCounters {
        let mut counters = self.counters.clone();
        counters.now_ms = self.now().0;
        counters.clients = self.clients.len();
        counters.open_clients = self
            .clients
            .iter()
            .filter(|c| !c.client.is_closed())
            .count();
        counters.ready_clients = self.clients.iter().filter(|c| c.client.is_ready()).count();
        counters.live_operations = self
            .clients
            .iter()
            .map(|c| c.client.active_operations())
            .sum();
        counters.violations = self
            .clients
            .iter()
            .map(|c| c.ledger.violations().len())
            .sum();
        counters
    }
}

/// A socket handler that forwards to the run while it exists. Socket events
/// arrive from the browser's event loop, never while the run is borrowed.
fn handler<E>(
    weak: &Weak<RefCell<LiveState>>,
    mut f: impl FnMut(&mut LiveState, E) + 'static,
) -> Closure<dyn FnMut(E)>
where
    E: wasm_bindgen::convert::FromWasmAbi + 'static,
{
    let weak = weak.clone();
    Closure::new(move |event: E| {
        if let Some(state) = weak.upgrade() {
            if let Ok(mut state) = state.try_borrow_mut() {
                f(&mut state, event);
            }
        }
    })
}
