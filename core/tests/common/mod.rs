//! Shared helpers of the transcript tests: a server connection under the
//! ledger, a clock, and readers for the effects.
#![allow(dead_code)]

use serde_json::{json, Value};
use terminus_core::ledger::Audited;
use terminus_core::server::{AuthVerdict, ConnectionConfig, Effect, Input, Subprotocol};
use terminus_core::{Millis, OpId, OperationRequest, UpstreamEvent};

/// One connection under the ledger with its own clock.
pub struct Transcript {
    pub conn: Audited,
    pub now: Millis,
}

impl Transcript {
    pub fn new(protocol: Subprotocol) -> Self {
        Self::with_config(protocol, ConnectionConfig::default())
    }

    pub fn with_config(protocol: Subprotocol, config: ConnectionConfig) -> Self {
        Transcript {
            conn: Audited::new(Millis(0), protocol, config),
            now: Millis(0),
        }
    }

    pub fn transport() -> Self {
        Self::new(Subprotocol::GraphqlTransportWs)
    }

    pub fn legacy() -> Self {
        Self::new(Subprotocol::GraphqlWs)
    }

    pub fn input(&mut self, input: Input) -> Vec<Effect> {
        self.conn.handle(self.now, input)
    }

    pub fn send(&mut self, frame: Value) -> Vec<Effect> {
        self.conn.text(self.now, &frame.to_string())
    }

    pub fn send_raw(&mut self, text: &str) -> Vec<Effect> {
        self.conn.text(self.now, text)
    }

    pub fn accept(&mut self, ack_payload: Option<Value>) -> Vec<Effect> {
        self.conn
            .auth(self.now, AuthVerdict::Accept { ack_payload })
    }

    pub fn upstream(&mut self, op: OpId, event: UpstreamEvent) -> Vec<Effect> {
        self.conn.upstream(self.now, op, event)
    }

    /// Moves the clock forward by `ms`, firing the timer at every deadline
    /// passed on the way (as a host would), and returns all effects.
    pub fn advance(&mut self, ms: u64) -> Vec<Effect> {
        let target = Millis(self.now.0 + ms);
        let mut effects = Vec::new();
        while let Some(deadline) = self.conn.connection().poll_timeout() {
            if deadline > target {
                break;
            }
            self.now = deadline.max(self.now);
            effects.extend(self.conn.timeout(self.now));
        }
        self.now = target;
        effects
    }

    /// `connection_init` then an accepting verdict; returns the ack effects.
    pub fn init_ok(&mut self) -> Vec<Effect> {
        let effects = self.send(json!({"type": "connection_init"}));
        assert_eq!(effects, vec![Effect::Authenticate { payload: None }]);
        self.accept(None)
    }

    /// Subscribes (or legacy-starts) `id` and returns its `OpId`.
    pub fn subscribe(&mut self, id: &str, query: &str) -> OpId {
        let kind = if self.conn.connection().protocol() == Subprotocol::GraphqlWs {
            "start"
        } else {
            "subscribe"
        };
        let effects = self.send(json!({"type": kind, "id": id, "payload": {"query": query}}));
        let starts = starts(&effects);
        assert_eq!(starts.len(), 1, "expected one Start, got {effects:?}");
        assert_eq!(starts[0].1.id, id);
        starts[0].0
    }

    /// Ends the scenario: transport close, then the ledger's verdict must be
    /// clean.
    pub fn finish(mut self) {
        let violations = self.conn.finish(self.now);
        assert!(violations.is_empty(), "ledger violations: {violations:#?}");
        let conn = self.conn.connection();
        assert!(conn.is_terminated());
        assert_eq!(conn.live_operations(), 0);
        assert_eq!(conn.poll_timeout(), None);
    }
}

/// The text frames among `effects`, parsed.
pub fn frames(effects: &[Effect]) -> Vec<Value> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::SendText(t) => Some(serde_json::from_str(t).expect("frames are JSON")),
            _ => None,
        })
        .collect()
}

/// The `Close` among `effects`, if any.
pub fn close_of(effects: &[Effect]) -> Option<(u16, String)> {
    effects.iter().find_map(|e| match e {
        Effect::Close { code, reason } => Some((*code, reason.clone())),
        _ => None,
    })
}

pub fn close_code(effects: &[Effect]) -> Option<u16> {
    close_of(effects).map(|(code, _)| code)
}

pub fn starts(effects: &[Effect]) -> Vec<(OpId, OperationRequest)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Start { op, request } => Some((*op, request.clone())),
            _ => None,
        })
        .collect()
}

pub fn cancels(effects: &[Effect]) -> Vec<OpId> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Cancel { op } => Some(*op),
            _ => None,
        })
        .collect()
}

pub fn next(value: Value) -> UpstreamEvent {
    UpstreamEvent::Next(value)
}
