//! The simulated upstream of the offline mode: every operation a simulated
//! server starts runs through the real GraphQL engine (`Schema::parse` of
//! the demo SDL, `Execution::start`), and the engine's gRPC calls are
//! answered by a simulated `terminus.demo.v1.Demo` service on the virtual
//! clock. Its rules are the core's model of the demo service
//! (`core/src/demo_service.rs`), which the embedded demo upstream of
//! `terminus demo` drives too: `Hello` answers `Hello, <name>!`, `Ticks`
//! streams `{seq: 1}, {seq: 2}, ...` every `everyMs`, ends after `limit` and
//! fails at `failAt`; `Clock` ticks on the virtual clock's zero as its
//! epoch; `Rooms.Events` and `Rooms.Say` share one [`Rooms`] across every
//! simulated operation. What is the simulator's own is the fault injection
//! and the latency of accepting a call.

use std::collections::{BTreeMap, VecDeque};
use terminus_core::demo_service::{
    self, Clock, ClockRequest, DemoError, RoomLimits, RoomRequest, RoomStep, Rooms, SayRequest,
    SubscriberId, TickStep, Ticks, TicksRequest,
};
use terminus_core::graphql::{demo, CallEvent, CallId, Execution, Limits, Schema, Step};
use terminus_core::sim::{OpKey, SplitMix64, Upstream};
use terminus_core::{
    FailureKind, Millis, OperationRequest, UpstreamCall, UpstreamEvent, UpstreamFailure,
};

/// How the simulated demo service behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoServiceConfig {
    /// Time the service takes to answer `Hello` and to accept a stream,
    /// inclusive range in ms.
    pub latency_ms: (u64, u64),
    /// Chance that a call fails with `UPSTREAM_UNAVAILABLE` (the "upstream
    /// error" fault): a unary call instead of its answer, a stream at a
    /// random item.
    pub error_probability: f64,
}

impl Default for DemoServiceConfig {
    fn default() -> Self {
        DemoServiceConfig {
            latency_ms: (1, 20),
            error_probability: 0.0,
        }
    }
}

/// One gRPC call in flight on the simulated service.
#[derive(Debug)]
struct SimCall {
    /// When it runs next; `None` for a room subscriber waiting for an event.
    due: Option<Millis>,
    kind: CallKind,
}

#[derive(Debug)]
enum CallKind {
    /// Answers once, then ends.
    Hello { reply: serde_json::Value },
    /// A `Ticks` stream of the core's model; an injected outage replaces
    /// the tick `injected_failure_at`.
    Ticks {
        ticks: Ticks,
        injected_failure_at: Option<i32>,
    },
    /// A `Clock` stream, started when accepted; an injected outage fails
    /// it after `injected_failure_after` ticks.
    Clock {
        request: ClockRequest,
        clock: Option<Clock>,
        injected_failure_after: Option<u32>,
    },
    /// A `Rooms.Events` call: joins room `name` when accepted.
    JoinRoom { name: String },
    /// A subscriber of a room, reading its events.
    Room { id: SubscriberId },
    /// A `Rooms.Say` call, run when accepted.
    Say(SayRequest),
    /// Fails when due.
    Fail(UpstreamFailure),
}

#[derive(Debug)]
struct SimOperation {
    execution: Execution,
    calls: BTreeMap<CallId, SimCall>,
}

/// The demo upstream of the offline simulator; see the module docs.
#[derive(Debug)]
pub struct DemoGraphqlUpstream {
    schema: Schema,
    limits: Limits,
    config: DemoServiceConfig,
    rng: SplitMix64,
    operations: BTreeMap<OpKey, SimOperation>,
    /// Operation events ready now, in order.
    ready: VecDeque<(OpKey, UpstreamEvent)>,
    calls_started: u64,
    calls_cancelled: u64,
    /// The latest instant the driver reported.
    now: Millis,
    /// The rooms service, shared by every operation.
    rooms: Rooms,
    /// Which call each room subscriber is.
    members: BTreeMap<SubscriberId, (OpKey, CallId)>,
}

impl DemoGraphqlUpstream {
    /// The demo upstream with its own seed.
    pub fn new(seed: u64, config: DemoServiceConfig) -> Self {
        let schema = Schema::parse(demo::SCHEMA_SDL, demo::SCHEMA_FILE)
            .expect("the demo schema compiled into the core is valid");
        DemoGraphqlUpstream {
            schema,
            limits: Limits::default(),
            config,
            rng: SplitMix64::new(seed),
            operations: BTreeMap::new(),
            ready: VecDeque::new(),
            calls_started: 0,
            calls_cancelled: 0,
            now: Millis::ZERO,
            rooms: Rooms::new(RoomLimits::default()),
            members: BTreeMap::new(),
        }
    }

    /// Rooms that exist now (a room exists while it has subscribers).
    pub fn rooms(&self) -> usize {
        self.rooms.rooms()
    }

    /// Room subscribers (open `Rooms.Events` calls), over all rooms.
    pub fn room_subscribers(&self) -> usize {
        self.rooms.subscribers()
    }

    /// A call is gone (ended, given up, or its operation is): a room
    /// subscriber leaves its room.
    fn release(&mut self, call: &SimCall) {
        if let CallKind::Room { id } = call.kind {
            self.rooms.leave(id);
            self.members.remove(&id);
        }
    }

    /// gRPC calls in flight on the simulated service.
    pub fn open_calls(&self) -> usize {
        self.operations.values().map(|op| op.calls.len()).sum()
    }

    /// gRPC calls the engine started.
    pub fn calls_started(&self) -> u64 {
        self.calls_started
    }

    /// gRPC calls given up before their end (the operation was cancelled,
    /// or the engine no longer needed them).
    pub fn calls_cancelled(&self) -> u64 {
        self.calls_cancelled
    }

    fn latency(&mut self) -> u64 {
        self.rng
            .between(self.config.latency_ms.0, self.config.latency_ms.1)
    }

    /// Turns a planned call into a simulated one.
    fn plan(&mut self, now: Millis, call: UpstreamCall) -> SimCall {
        let due = Millis(now.0 + self.latency());
        let at = |kind| SimCall {
            due: Some(due),
            kind,
        };
        let (method, request) = match call {
            UpstreamCall::Grpc {
                upstream,
                method,
                request,
                ..
            } if upstream == "demo" => (method, request),
            other => {
                let failure = UpstreamFailure::new(
                    FailureKind::Unavailable,
                    format!("the simulator has no upstream for {other:?}"),
                );
                return at(CallKind::Fail(failure));
            }
        };
        let injected = self.rng.chance(self.config.error_probability);
        let kind = match method.as_str() {
            demo_service::HELLO_METHOD if injected => CallKind::Fail(simulated_outage()),
            demo_service::HELLO_METHOD => CallKind::Hello {
                reply: demo_service::hello_reply_json(demo_service::hello_name_from_json(&request)),
            },
            demo_service::TICKS_METHOD => match TicksRequest::from_json(&request) {
                Ok(ticks_request) => {
                    let injected_failure_at = injected.then(|| {
                        let span = ticks_request.limit.unwrap_or(20).max(1) as u64;
                        1 + self.rng.below(span) as i32
                    });
                    // The stream starts once the call is accepted.
                    let ticks = Ticks::start(due, ticks_request);
                    CallKind::Ticks {
                        ticks,
                        injected_failure_at,
                    }
                }
                Err(message) => {
                    CallKind::Fail(UpstreamFailure::new(FailureKind::BadInput, message))
                }
            },
            demo_service::CLOCK_METHOD => match ClockRequest::from_json(&request) {
                Ok(request) => CallKind::Clock {
                    request,
                    clock: None,
                    injected_failure_after: injected.then(|| 1 + self.rng.below(20) as u32),
                },
                Err(error) => CallKind::Fail(failure_of(&error)),
            },
            demo_service::ROOM_EVENTS_METHOD | demo_service::SAY_METHOD if injected => {
                CallKind::Fail(simulated_outage())
            }
            demo_service::ROOM_EVENTS_METHOD => match RoomRequest::from_json(&request) {
                Ok(request) => CallKind::JoinRoom { name: request.name },
                Err(error) => CallKind::Fail(failure_of(&error)),
            },
            demo_service::SAY_METHOD => match SayRequest::from_json(&request) {
                Ok(request) => CallKind::Say(request),
                Err(error) => CallKind::Fail(failure_of(&error)),
            },
            other => CallKind::Fail(UpstreamFailure::new(
                FailureKind::Failed,
                format!("unknown method {other}"),
            )),
        };
        let due = match &kind {
            CallKind::Ticks { ticks, .. } => ticks.poll_timeout().unwrap_or(due),
            _ => due,
        };
        SimCall {
            due: Some(due),
            kind,
        }
    }

    /// Hands the engine's new calls to the service, drops the calls it gave
    /// up, and collects its outputs; forgets the operation once finished.
    fn pump(&mut self, now: Millis, key: OpKey) {
        let Some(mut op) = self.operations.remove(&key) else {
            return;
        };
        while let Some(step) = op.execution.poll() {
            match step {
                Step::Call(id, call) => {
                    self.calls_started += 1;
                    let call = self.plan(now, call);
                    op.calls.insert(id, call);
                }
                Step::Cancel(id) => {
                    if let Some(call) = op.calls.remove(&id) {
                        self.release(&call);
                        self.calls_cancelled += 1;
                    }
                }
                Step::Output(event) => self.ready.push_back((key, event)),
            }
        }
        if op.execution.is_finished() {
            self.calls_cancelled += op.calls.len() as u64;
            for call in op.calls.values() {
                self.release(call);
            }
        } else {
            self.operations.insert(key, op);
        }
    }

    /// Runs the earliest due call of `key` one step.
    fn run_call(&mut self, now: Millis, key: OpKey, id: CallId) {
        let Some(op) = self.operations.get_mut(&key) else {
            return;
        };
        let Some(call) = op.calls.get_mut(&id) else {
            return;
        };
        let mut events = Vec::new();
        let mut finished = false;
        // Room subscribers with something new to read after a `Say`.
        let mut notify = Vec::new();
        match &mut call.kind {
            CallKind::Hello { reply } => {
                events.push(CallEvent::Item(reply.clone()));
                events.push(CallEvent::End);
                finished = true;
            }
            CallKind::Fail(failure) => {
                events.push(CallEvent::Failed(failure.clone()));
                finished = true;
            }
            CallKind::Ticks {
                ticks,
                injected_failure_at,
            } => {
                match ticks.poll(now) {
                    Some(TickStep::Tick(seq)) if *injected_failure_at == Some(seq) => {
                        events.push(CallEvent::Failed(simulated_outage()));
                        finished = true;
                    }
                    Some(TickStep::Tick(seq)) => {
                        events.push(CallEvent::Item(demo_service::tick_json(seq)));
                    }
                    Some(TickStep::End) => {
                        events.push(CallEvent::End);
                        finished = true;
                    }
                    Some(TickStep::Failed(message)) => {
                        // What the gateway makes of the gRPC status.
                        events.push(CallEvent::Failed(
                            UpstreamFailure::new(FailureKind::Failed, message).with_extension(
                                "grpcStatus",
                                demo_service::FAILED_TICK_STATUS.into(),
                            ),
                        ));
                        finished = true;
                    }
                    None => {}
                }
                if let Some(due) = ticks.poll_timeout() {
                    call.due = Some(due);
                }
            }
            CallKind::Clock {
                request,
                clock,
                injected_failure_after,
            } => {
                // The stream starts once the call is accepted.
                let clock = match clock {
                    Some(clock) => clock,
                    None => match Clock::start(now, *request) {
                        Ok(started) => clock.insert(started),
                        Err(error) => {
                            events.push(CallEvent::Failed(failure_of(&error)));
                            finished = true;
                            call.due = None;
                            return self.deliver(now, key, id, events, finished, notify);
                        }
                    },
                };
                match clock.poll(now) {
                    Some(TickStep::Tick(_)) if *injected_failure_after == Some(0) => {
                        events.push(CallEvent::Failed(simulated_outage()));
                        finished = true;
                    }
                    Some(TickStep::Tick(seq)) => {
                        if let Some(left) = injected_failure_after.as_mut() {
                            *left -= 1;
                        }
                        events.push(CallEvent::Item(demo_service::tick_json(seq)));
                    }
                    Some(TickStep::End) => {
                        events.push(CallEvent::End);
                        finished = true;
                    }
                    Some(TickStep::Failed(message)) => {
                        events.push(CallEvent::Failed(UpstreamFailure::new(
                            FailureKind::Failed,
                            message,
                        )));
                        finished = true;
                    }
                    None => {}
                }
                call.due = clock.poll_timeout();
            }
            CallKind::JoinRoom { name } => match self.rooms.join(name) {
                Ok(member) => {
                    call.kind = CallKind::Room { id: member };
                    call.due = None;
                    self.members.insert(member, (key, id));
                }
                Err(error) => {
                    events.push(CallEvent::Failed(failure_of(&error)));
                    finished = true;
                }
            },
            CallKind::Room { id: member } => match self.rooms.poll(*member) {
                Some(RoomStep::Event(event)) => {
                    events.push(CallEvent::Item(event.to_json()));
                }
                Some(RoomStep::Failed(error)) => {
                    events.push(CallEvent::Failed(failure_of(&error)));
                    finished = true;
                }
                None => call.due = None,
            },
            CallKind::Say(request) => {
                match self.rooms.say(&request.room, &request.text) {
                    Ok(said) => {
                        events.push(CallEvent::Item(said.reply_json()));
                        events.push(CallEvent::End);
                        notify = said.notify;
                    }
                    Err(error) => events.push(CallEvent::Failed(failure_of(&error))),
                }
                finished = true;
            }
        }
        self.deliver(now, key, id, events, finished, notify);
    }

    /// Hands a call's events to its operation (forgetting the call when
    /// `finished`), wakes the room subscribers in `notify`, and pumps.
    fn deliver(
        &mut self,
        now: Millis,
        key: OpKey,
        id: CallId,
        events: Vec<CallEvent>,
        finished: bool,
        notify: Vec<SubscriberId>,
    ) {
        for member in notify {
            if let Some((op_key, call_id)) = self.members.get(&member).copied() {
                if let Some(call) = self
                    .operations
                    .get_mut(&op_key)
                    .and_then(|op| op.calls.get_mut(&call_id))
                {
                    call.due = Some(now);
                }
            }
        }
        let Some(op) = self.operations.get_mut(&key) else {
            return;
        };
        if finished {
            if let Some(call) = op.calls.remove(&id) {
                self.release(&call);
            }
        }
        let Some(op) = self.operations.get_mut(&key) else {
            return;
        };
        for event in events {
            op.execution.handle_call_event(id, event);
        }
        self.pump(now, key);
    }
}

/// What the gateway makes of the model's error status.
fn failure_of(error: &DemoError) -> UpstreamFailure {
    UpstreamFailure::new(error.failure_kind(), error.message.clone())
        .with_extension("grpcStatus", error.status_name().into())
}

fn simulated_outage() -> UpstreamFailure {
    UpstreamFailure::new(FailureKind::Unavailable, "simulated upstream outage")
        .with_extension("grpcStatus", "UNAVAILABLE".into())
}

impl Upstream for DemoGraphqlUpstream {
    fn start(&mut self, now: Millis, key: OpKey, request: &OperationRequest) {
        self.now = self.now.max(now);
        // A request that is not valid GraphQL ends with its errors, as in
        // the gateway: `Execution::start` makes them its first output.
        let execution = Execution::start(&self.schema, request, &self.limits);
        self.operations.insert(
            key,
            SimOperation {
                execution,
                calls: BTreeMap::new(),
            },
        );
        self.pump(now, key);
    }

    fn cancel(&mut self, now: Millis, key: OpKey) {
        self.now = self.now.max(now);
        self.ready.retain(|(k, _)| *k != key);
        if let Some(op) = self.operations.remove(&key) {
            self.calls_cancelled += op.calls.len() as u64;
            for call in op.calls.values() {
                self.release(call);
            }
        }
    }

    fn poll_timeout(&self) -> Option<Millis> {
        if !self.ready.is_empty() {
            // Events that are ready were produced at the latest instant seen.
            return Some(self.now);
        }
        self.operations
            .values()
            .flat_map(|op| op.calls.values().filter_map(|c| c.due))
            .min()
    }

    fn poll_event(&mut self, now: Millis) -> Option<(OpKey, UpstreamEvent)> {
        self.now = self.now.max(now);
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            let (key, id) = self
                .operations
                .iter()
                .flat_map(|(key, op)| {
                    op.calls
                        .iter()
                        .filter_map(move |(id, c)| c.due.map(|due| (due, *key, *id)))
                })
                .filter(|(due, _, _)| *due <= now)
                .min()
                .map(|(_, key, id)| (key, id))?;
            self.run_call(now, key, id);
        }
    }

    fn live_operations(&self) -> usize {
        // An operation whose terminal event is ready but not yet taken is
        // still live: the server has not heard of its end.
        let ending = self
            .ready
            .iter()
            .filter(|(key, event)| event.is_terminal() && !self.operations.contains_key(key))
            .count();
        self.operations.len() + ending
    }
}

#[cfg(test)]
mod tests;
