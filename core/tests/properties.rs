//! Property tests: random input sequences against a server connection under
//! the ledger, ending with the transport closing; and random seeds of the
//! whole simulation. Each case asserts: zero live operations, no pending
//! timer, exactly one end for every Start, nothing sent after Close or after
//! an operation's end (the ledger's rules).

use proptest::prelude::*;
use serde_json::json;
use std::time::Duration;
use terminus_core::ledger::Audited;
use terminus_core::server::{AuthVerdict, ConnectionConfig, Effect, Input, Subprotocol};
use terminus_core::sim::{Faults, Sim, SimConfig};
use terminus_core::{Millis, OpId, UpstreamEvent};

#[derive(Debug, Clone)]
enum Move {
    Init {
        with_payload: bool,
    },
    Accept,
    AcceptUntil {
        in_ms: u32,
    },
    Reject,
    Subscribe {
        id: u8,
        stream: bool,
    },
    Complete {
        id: u8,
    },
    Terminate,
    Ping,
    Pong,
    Garbage(u8),
    Binary,
    BigFrame,
    Next {
        which: u8,
    },
    Error {
        which: u8,
    },
    Done {
        which: u8,
    },
    Flushed(u16),
    Advance(u32),
    TransportPong,
    Shutdown,
    /// The transport refused a frame as too large.
    TooBig,
    /// The host failed (a caught panic).
    HostFailed,
    /// The peer's close frame (or the socket's end) with this code.
    PeerClosed(u16),
}

fn moves() -> impl Strategy<Value = Move> {
    prop_oneof![
        2 => any::<bool>().prop_map(|with_payload| Move::Init { with_payload }),
        3 => Just(Move::Accept),
        2 => (0u32..40_000).prop_map(|in_ms| Move::AcceptUntil { in_ms }),
        1 => Just(Move::Reject),
        8 => (0u8..5, any::<bool>()).prop_map(|(id, stream)| Move::Subscribe { id, stream }),
        3 => (0u8..5).prop_map(|id| Move::Complete { id }),
        1 => Just(Move::Terminate),
        1 => Just(Move::Ping),
        1 => Just(Move::Pong),
        1 => any::<u8>().prop_map(Move::Garbage),
        1 => Just(Move::Binary),
        1 => Just(Move::BigFrame),
        8 => any::<u8>().prop_map(|which| Move::Next { which }),
        2 => any::<u8>().prop_map(|which| Move::Error { which }),
        3 => any::<u8>().prop_map(|which| Move::Done { which }),
        3 => any::<u16>().prop_map(Move::Flushed),
        4 => (0u32..30_000).prop_map(Move::Advance),
        2 => Just(Move::TransportPong),
        1 => Just(Move::Shutdown),
        1 => Just(Move::TooBig),
        1 => Just(Move::HostFailed),
        1 => prop_oneof![Just(1000u16), Just(1001), Just(1005), Just(1006), Just(4400)]
            .prop_map(Move::PeerClosed),
    ]
}

fn garbage(n: u8) -> String {
    match n % 6 {
        0 => "not json".into(),
        1 => r#"{"type":"next","id":"1","payload":{}}"#.into(),
        2 => r#"{"type":"subscribe","id":"","payload":{"query":"{a}"}}"#.into(),
        3 => r#"{"type":"start","payload":{}}"#.into(),
        4 => r#"{"type":"start","id":"2","payload":{"variables":1}}"#.into(),
        _ => r#"{"type":"zzz"}"#.into(),
    }
}

fn run_moves(protocol: Subprotocol, config: ConnectionConfig, script: Vec<Move>) {
    let legacy = protocol == Subprotocol::GraphqlWs;
    let mut now = Millis(0);
    let mut conn = Audited::new(now, protocol, config);
    let mut started: Vec<OpId> = Vec::new();
    let record = |effects: Vec<Effect>, started: &mut Vec<OpId>| {
        for effect in effects {
            if let Effect::Start { op, .. } = effect {
                started.push(op);
            }
        }
    };
    let pick = |started: &[OpId], which: u8| -> Option<OpId> {
        (!started.is_empty()).then(|| started[which as usize % started.len()])
    };
    for step in script {
        let effects = match step {
            Move::Init { with_payload } => {
                let frame = if with_payload {
                    json!({"type": "connection_init", "payload": {"token": "t"}})
                } else {
                    json!({"type": "connection_init"})
                };
                conn.text(now, &frame.to_string())
            }
            Move::Accept => conn.auth(now, AuthVerdict::Accept { ack_payload: None }),
            Move::AcceptUntil { in_ms } => conn.auth(
                now,
                AuthVerdict::AcceptUntil {
                    ack_payload: None,
                    expires: now + Duration::from_millis(u64::from(in_ms)),
                },
            ),
            Move::Reject => conn.auth(
                now,
                AuthVerdict::Reject {
                    reason: "no".into(),
                },
            ),
            Move::Subscribe { id, stream } => {
                let query = if stream {
                    "subscription { t }"
                } else {
                    "{ q }"
                };
                let kind = if legacy { "start" } else { "subscribe" };
                let frame =
                    json!({"type": kind, "id": id.to_string(), "payload": {"query": query}});
                conn.text(now, &frame.to_string())
            }
            Move::Complete { id } => {
                let kind = if legacy { "stop" } else { "complete" };
                conn.text(
                    now,
                    &json!({"type": kind, "id": id.to_string()}).to_string(),
                )
            }
            Move::Terminate => conn.text(now, r#"{"type":"connection_terminate"}"#),
            Move::Ping => conn.text(now, r#"{"type":"ping"}"#),
            Move::Pong => conn.text(now, r#"{"type":"pong"}"#),
            Move::Garbage(n) => conn.text(now, &garbage(n)),
            Move::Binary => conn.handle(now, Input::Binary(vec![1, 2])),
            Move::BigFrame => conn.text(now, &"x".repeat(5_000)),
            Move::Next { which } => match pick(&started, which) {
                Some(op) => conn.upstream(now, op, UpstreamEvent::Next(json!({"data": {"n": 1}}))),
                None => Vec::new(),
            },
            Move::Error { which } => match pick(&started, which) {
                Some(op) => conn.upstream(
                    now,
                    op,
                    UpstreamEvent::Error(vec![json!({"message": "boom"})]),
                ),
                None => Vec::new(),
            },
            Move::Done { which } => match pick(&started, which) {
                Some(op) => conn.upstream(now, op, UpstreamEvent::Complete),
                None => Vec::new(),
            },
            Move::Flushed(bytes) => conn.handle(now, Input::Flushed(bytes as usize)),
            Move::Advance(ms) => {
                let target = Millis(now.0 + u64::from(ms));
                let mut effects = Vec::new();
                while let Some(deadline) = conn.connection().poll_timeout() {
                    if deadline > target {
                        break;
                    }
                    now = deadline.max(now);
                    effects.extend(conn.timeout(now));
                }
                now = target;
                effects
            }
            Move::TransportPong => conn.handle(now, Input::TransportPong),
            Move::Shutdown => conn.handle(now, Input::Shutdown),
            Move::TooBig => conn.handle(now, Input::FrameTooBig { bytes: 1 << 20 }),
            Move::HostFailed => conn.handle(now, Input::InternalError),
            Move::PeerClosed(code) => conn.handle(now, Input::TransportClosed { code }),
        };
        record(effects, &mut started);
        // The ledger's live count and the connection's agree at every step.
        assert_eq!(
            conn.ledger().live(),
            conn.connection().live_operations(),
            "live count diverged"
        );
        assert!(
            conn.connection().unflushed_bytes() <= conn.connection().config().max_outbound_bytes
        );
    }
    let violations = conn.finish(now);
    assert!(violations.is_empty(), "{violations:#?}");
    let server = conn.connection();
    assert!(server.is_terminated());
    assert_eq!(server.live_operations(), 0);
    assert_eq!(server.poll_timeout(), None);
    // OpIds are never reused.
    let mut unique = started.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), started.len());
}

fn configs() -> impl Strategy<Value = ConnectionConfig> {
    (
        1usize..6,
        200usize..4_000,
        prop_oneof![Just(0u64), Just(15_000)],
    )
        .prop_map(
            |(max_operations, max_outbound_bytes, keepalive)| ConnectionConfig {
                max_operations,
                max_outbound_bytes,
                max_frame_bytes: 1_000,
                keepalive_interval: Duration::from_millis(keepalive),
                ..ConnectionConfig::default()
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn transport_ws_every_operation_ends(
        config in configs(),
        script in prop::collection::vec(moves(), 0..80),
    ) {
        run_moves(Subprotocol::GraphqlTransportWs, config, script);
    }

    #[test]
    fn legacy_graphql_ws_every_operation_ends(
        config in configs(),
        script in prop::collection::vec(moves(), 0..80),
    ) {
        run_moves(Subprotocol::GraphqlWs, config, script);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn simulations_leave_nothing_alive(seed in any::<u64>(), p in 0.0f64..0.6, latency in 0u64..20) {
        let mut config = SimConfig {
            seed,
            clients: 6,
            latency_ms: latency,
            faults: Faults::all(p),
            ..SimConfig::default()
        };
        config.script.error_probability = p / 2.0;
        let mut sim = Sim::new(config);
        sim.run();
        let findings = sim.findings();
        prop_assert!(findings.is_empty(), "{:?}", findings.iter().map(ToString::to_string).collect::<Vec<_>>());
    }
}
