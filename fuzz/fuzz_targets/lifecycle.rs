//! `lifecycle`: an arbitrary sequence of inputs applied to a server
//! connection under the core's `Ledger`. After every step the lifecycle
//! rules hold; at the end the transport closes, time runs past every
//! deadline, and the connection is terminated with zero live operations, no
//! timer, and exactly one end for every `Start`.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::time::Duration;
use terminus_core::ledger::Audited;
use terminus_core::protocol::close;
use terminus_core::server::{AuthVerdict, ConnectionConfig, Effect, Input, Subprotocol};
use terminus_core::{Millis, OpId, UpstreamEvent};
use terminus_fuzz::{
    assert_no_violations, ArbJson, ArbObject, ClientFrameSpec, SERVER_CLOSE_CODES,
};

/// Bounds small enough that the fuzzer reaches them.
#[derive(Debug, Arbitrary)]
struct ConfigSpec {
    close_linger_ms: u16,
    init_timeout_ms: u16,
    keepalive_interval_ms: u16,
    keepalive_timeout_ms: u16,
    legacy_ka_interval_ms: u16,
    max_frame_bytes: u16,
    max_operations: u8,
    max_outbound_bytes: u16,
}

impl ConfigSpec {
    fn config(&self) -> ConnectionConfig {
        ConnectionConfig {
            init_timeout: Duration::from_millis(self.init_timeout_ms.into()),
            keepalive_interval: Duration::from_millis(self.keepalive_interval_ms.into()),
            keepalive_timeout: Duration::from_millis(self.keepalive_timeout_ms.into()),
            legacy_ka_interval: Duration::from_millis(self.legacy_ka_interval_ms.into()),
            // At least enough for a connection_init, so deep states stay reachable.
            max_frame_bytes: 64 + usize::from(self.max_frame_bytes),
            max_operations: usize::from(self.max_operations % 8),
            max_outbound_bytes: 256 + usize::from(self.max_outbound_bytes) * 4,
            close_linger: Duration::from_millis(self.close_linger_ms.into()),
        }
    }
}

/// Which operation an upstream event names.
#[derive(Debug, Arbitrary)]
enum OpPick {
    /// The n-th of the operations still live.
    Live(u8),
    /// The n-th of every operation ever started (ended ones are stale).
    Started(u8),
    /// The n-th of the ended operations.
    Stale(u8),
    /// A handle the connection never issued.
    Unknown(u64),
}

#[derive(Debug, Arbitrary)]
enum EventSpec {
    Next(ArbJson),
    NextData(ArbObject),
    Error(Vec<ArbObject>),
    Complete,
}

impl EventSpec {
    fn event(&self) -> UpstreamEvent {
        match self {
            EventSpec::Next(v) => UpstreamEvent::Next(v.0.clone()),
            EventSpec::NextData(d) => UpstreamEvent::Next(serde_json::json!({ "data": d.0 })),
            EventSpec::Error(errs) => {
                UpstreamEvent::Error(errs.iter().map(|e| Value::Object(e.0.clone())).collect())
            }
            EventSpec::Complete => UpstreamEvent::Complete,
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Step {
    /// A text frame built from structured choices.
    Frame(ClientFrameSpec),
    /// A binary frame.
    Binary(Vec<u8>),
    /// A WebSocket pong.
    TransportPong,
    /// `Accept` with an optional ack payload.
    Accept(Option<ArbObject>),
    /// `Reject` with a reason.
    Reject(String),
    /// An upstream event.
    Upstream(OpPick, EventSpec),
    /// The host flushed some bytes.
    Flushed(u16),
    /// The host flushed everything it was given.
    FlushAll,
    /// Time passes by this many ms, then `Timeout` fires (possibly early).
    TimeoutAfter(u16),
    /// Time jumps to the next deadline, which fires.
    FireDue,
    /// Time passes (no input).
    Wait(u16),
    /// The socket closed with the peer's close code (1006: no close frame).
    TransportClosed(u16),
    /// The transport refused a frame of this size as too large.
    FrameTooBig(u32),
    /// The transport found an RFC 6455 violation (index into a fixed list).
    FrameViolation(u8),
    /// The host failed (a caught panic).
    InternalError,
    /// The server drains.
    Shutdown,
}

#[derive(Debug, Arbitrary)]
struct Scenario {
    legacy: bool,
    config: ConfigSpec,
    steps: Vec<Step>,
}

struct Run {
    conn: Audited,
    now: Millis,
    started: Vec<OpId>,
    max_operations: usize,
    max_outbound: usize,
    sent_bytes: usize,
    flushed_bytes: usize,
    close_codes: Vec<u16>,
}

impl Run {
    fn input(&mut self, input: Input) {
        let was_closed = self.conn.ledger().is_closed();
        let effects = self.conn.handle(self.now, input);
        for effect in &effects {
            match effect {
                Effect::Start { op, .. } => self.started.push(*op),
                Effect::SendText(text) => self.sent_bytes += text.len(),
                Effect::Close { code, .. } => {
                    assert!(
                        SERVER_CLOSE_CODES.contains(code),
                        "undocumented close code {code}"
                    );
                    self.close_codes.push(*code);
                }
                _ => {}
            }
        }
        if was_closed {
            assert!(
                effects.iter().all(|e| matches!(e, Effect::Cancel { .. })),
                "effects after close: {effects:?}"
            );
        }
        self.check_step();
    }

    fn check_step(&self) {
        assert_no_violations("step", self.conn.ledger().violations());
        let conn = self.conn.connection();
        assert_eq!(
            conn.live_operations(),
            self.conn.ledger().live(),
            "connection and ledger disagree on live operations"
        );
        assert!(
            conn.live_operations() <= self.max_operations,
            "{} live operations, at most {} allowed",
            conn.live_operations(),
            self.max_operations
        );
        assert!(
            conn.unflushed_bytes() <= self.max_outbound,
            "{} unflushed bytes, at most {} allowed",
            conn.unflushed_bytes(),
            self.max_outbound
        );
        assert!(
            self.close_codes.len() <= 1,
            "closed twice: {:?}",
            self.close_codes
        );
        if self.conn.ledger().is_closed() {
            // Only the linger's deadline (the ledger checks its bound).
            assert!(
                conn.poll_timeout().is_none() || conn.is_closing(),
                "closed connection wants a timer"
            );
            assert_eq!(
                conn.live_operations(),
                0,
                "closed connection has live operations"
            );
        }
    }

    fn pick(&self, pick: &OpPick) -> Option<OpId> {
        let nth = |ops: Vec<OpId>, n: u8| -> Option<OpId> {
            (!ops.is_empty()).then(|| ops[usize::from(n) % ops.len()])
        };
        let ledger = self.conn.ledger();
        match pick {
            OpPick::Live(n) => nth(
                self.started
                    .iter()
                    .copied()
                    .filter(|op| ledger.is_live(*op))
                    .collect(),
                *n,
            ),
            OpPick::Started(n) => nth(self.started.clone(), *n),
            OpPick::Stale(n) => nth(
                self.started
                    .iter()
                    .copied()
                    .filter(|op| !ledger.is_live(*op))
                    .collect(),
                *n,
            ),
            OpPick::Unknown(raw) => Some(OpId(*raw)),
        }
    }

    /// Fires the due timer until nothing is due at `now`; a timer that keeps
    /// being due at the same instant is a livelock.
    fn fire_due(&mut self) {
        for _ in 0..8 {
            match self.conn.connection().poll_timeout() {
                Some(deadline) if deadline <= self.now => self.input(Input::Timeout),
                _ => return,
            }
        }
        panic!(
            "timer still due at {:?} after 8 firings: {:?}",
            self.now,
            self.conn.connection().poll_timeout()
        );
    }
}

fuzz_target!(|scenario: Scenario| {
    let protocol = if scenario.legacy {
        Subprotocol::GraphqlWs
    } else {
        Subprotocol::GraphqlTransportWs
    };
    let config = scenario.config.config();
    let mut run = Run {
        conn: Audited::new(Millis(1_000), protocol, config.clone()),
        now: Millis(1_000),
        started: Vec::new(),
        max_operations: config.max_operations,
        max_outbound: config.max_outbound_bytes,
        sent_bytes: 0,
        flushed_bytes: 0,
        close_codes: Vec::new(),
    };
    for step in scenario.steps.iter().take(256) {
        match step {
            Step::Frame(frame) => run.input(Input::Text(frame.to_text(protocol))),
            Step::Binary(data) => run.input(Input::Binary(data.clone())),
            Step::TransportPong => run.input(Input::TransportPong),
            Step::Accept(payload) => run.input(Input::Auth(AuthVerdict::Accept {
                ack_payload: payload.as_ref().map(|p| Value::Object(p.0.clone())),
            })),
            Step::Reject(reason) => run.input(Input::Auth(AuthVerdict::Reject {
                reason: reason.clone(),
            })),
            Step::Upstream(pick, event) => {
                if let Some(op) = run.pick(pick) {
                    run.input(Input::Upstream {
                        op,
                        event: event.event(),
                    });
                }
            }
            Step::Flushed(n) => {
                let n = usize::from(*n).min(run.sent_bytes - run.flushed_bytes);
                run.flushed_bytes += n;
                run.input(Input::Flushed(n));
            }
            Step::FlushAll => {
                let n = run.sent_bytes - run.flushed_bytes;
                run.flushed_bytes += n;
                run.input(Input::Flushed(n));
            }
            Step::TimeoutAfter(ms) => {
                run.now = run.now + Duration::from_millis((*ms).into());
                run.input(Input::Timeout);
            }
            Step::FireDue => {
                if let Some(deadline) = run.conn.connection().poll_timeout() {
                    run.now = run.now.max(deadline);
                }
                run.fire_due();
            }
            Step::Wait(ms) => run.now = run.now + Duration::from_millis((*ms).into()),
            Step::TransportClosed(code) => run.input(Input::TransportClosed { code: *code }),
            Step::FrameTooBig(bytes) => run.input(Input::FrameTooBig {
                bytes: *bytes as usize,
            }),
            Step::FrameViolation(which) => {
                use terminus_core::server::FrameViolation as V;
                let all = [
                    V::InvalidUtf8,
                    V::Unmasked,
                    V::ReservedBits,
                    V::UnknownOpcode,
                    V::ControlFrameTooBig,
                    V::FragmentedControlFrame,
                    V::BadContinuation,
                    V::Malformed,
                ];
                run.input(Input::FrameViolation(all[usize::from(*which) % all.len()]))
            }
            Step::InternalError => run.input(Input::InternalError),
            Step::Shutdown => run.input(Input::Shutdown),
        }
    }
    // The end: the transport closes, time runs past every deadline.
    run.input(Input::TransportClosed {
        code: close::ABNORMAL_CLOSURE,
    });
    run.now = run.now + Duration::from_secs(24 * 3600);
    run.input(Input::Timeout);
    let violations = run.conn.finish(run.now);
    assert_no_violations("end", &violations);
    let conn = run.conn.connection();
    assert!(conn.is_terminated());
    assert_eq!(conn.live_operations(), 0);
    assert_eq!(conn.poll_timeout(), None);
    assert_eq!(conn.operations().count(), 0);
    assert_eq!(run.conn.ledger().starts(), run.started.len());
    assert_eq!(run.conn.ledger().live(), 0);
});
