//! Transcripts of the closing rules (docs/protocol.md, "Closing"): every
//! close is a core decision with a bounded linger for the peer's close
//! frame; the peer's close code is an input; a frame the transport refused
//! as too large and a failure of the host are inputs that close with 1009
//! and 4500. Every transcript runs under the ledger, which also checks that
//! the linger after `Close` is bounded by `close_linger`.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;
use terminus_core::protocol::close;
use terminus_core::server::{ConnectionConfig, Effect, Input, Subprotocol};
use terminus_core::Millis;

const BOTH: [Subprotocol; 2] = [Subprotocol::GraphqlTransportWs, Subprotocol::GraphqlWs];

fn linger(ms: u64) -> ConnectionConfig {
    ConnectionConfig {
        close_linger: Duration::from_millis(ms),
        ..ConnectionConfig::default()
    }
}

#[test]
fn the_linger_ends_at_its_deadline_when_the_peer_never_answers() {
    for protocol in BOTH {
        let mut t = Transcript::with_config(protocol, linger(250));
        t.init_ok();
        let op = t.subscribe("a", "subscription { ticks }");
        t.now = Millis(1_000);
        let effects = t.input(Input::Shutdown);
        assert_eq!(close_code(&effects), Some(close::GOING_AWAY));
        assert_eq!(cancels(&effects), vec![op]);
        let conn = t.conn.connection();
        assert!(conn.is_closing() && !conn.is_open() && !conn.is_terminated());
        assert_eq!(conn.poll_timeout(), Some(Millis(1_250)));
        // An early timer is harmless.
        t.now = Millis(1_249);
        assert!(t.conn.timeout(t.now).is_empty());
        assert!(t.conn.connection().is_closing());
        // Nothing else happens until the deadline, which ends it.
        let effects = t.advance(1);
        assert!(effects.is_empty(), "{effects:?}");
        let conn = t.conn.connection();
        assert!(conn.is_terminated());
        assert_eq!(conn.poll_timeout(), None);
        assert_eq!(conn.close_code(), Some(close::GOING_AWAY));
        t.finish();
    }
}

#[test]
fn the_peers_close_frame_ends_the_linger_at_once() {
    for protocol in BOTH {
        let mut t = Transcript::with_config(protocol, linger(10_000));
        t.init_ok();
        t.input(Input::Shutdown);
        t.now = Millis(5);
        assert!(t.conn.transport_closed(t.now, close::GOING_AWAY).is_empty());
        assert!(t.conn.connection().is_terminated());
        // Our code is the one that counts: we closed first.
        assert_eq!(t.conn.connection().close_code(), Some(close::GOING_AWAY));
        t.finish();
    }
}

#[test]
fn while_closing_frames_events_and_inputs_change_nothing() {
    let mut t = Transcript::with_config(Subprotocol::GraphqlTransportWs, linger(1_000));
    t.init_ok();
    let op = t.subscribe("a", "subscription { ticks }");
    t.send_raw("not json");
    assert!(t.conn.connection().is_closing());
    assert!(t.send(json!({"type": "ping"})).is_empty());
    assert!(t.send_raw(&"x".repeat(1 << 20)).is_empty());
    assert!(t.input(Input::Binary(vec![1, 2, 3])).is_empty());
    assert!(t.upstream(op, next(json!({"data": {}}))).is_empty());
    assert!(t.input(Input::Shutdown).is_empty());
    assert!(t.input(Input::InternalError).is_empty());
    assert!(t.input(Input::FrameTooBig { bytes: 1 << 30 }).is_empty());
    assert!(t.input(Input::TransportPong).is_empty());
    assert!(t.input(Input::Flushed(10)).is_empty());
    assert_eq!(t.conn.connection().close_code(), Some(close::BAD_REQUEST));
    // No keep-alive ping or ka is due while closing: only the linger.
    assert_eq!(t.conn.connection().poll_timeout(), Some(Millis(1_000)));
    assert!(t.advance(1_000).is_empty());
    assert!(t.conn.connection().is_terminated());
    t.finish();
}

#[test]
fn a_frame_the_transport_refused_as_too_big_closes_1009() {
    for protocol in BOTH {
        let mut t = Transcript::new(protocol);
        t.init_ok();
        let op = t.subscribe("a", "subscription { ticks }");
        let effects = t.input(Input::FrameTooBig { bytes: 10 << 20 });
        assert_eq!(
            close_of(&effects),
            Some((close::MESSAGE_TOO_BIG, "Frame too large".into()))
        );
        assert_eq!(cancels(&effects), vec![op]);
        assert!(frames(&effects).is_empty());
        assert!(t.conn.connection().is_closing());
        t.finish();
    }
    // Before init too.
    let mut t = Transcript::legacy();
    let effects = t.input(Input::FrameTooBig { bytes: 70_000 });
    assert_eq!(close_code(&effects), Some(close::MESSAGE_TOO_BIG));
    t.finish();
}

#[test]
fn a_text_frame_over_the_limit_closes_1009_in_both_subprotocols() {
    let config = ConnectionConfig {
        max_frame_bytes: 64,
        ..ConnectionConfig::default()
    };
    for protocol in BOTH {
        let mut t = Transcript::with_config(protocol, config.clone());
        t.init_ok();
        let effects = t.send_raw(&format!("{{\"type\":\"{}\"}}", "x".repeat(60)));
        assert_eq!(close_code(&effects), Some(close::MESSAGE_TOO_BIG));
        t.finish();
    }
}

#[test]
fn a_host_failure_closes_4500_and_cancels_every_operation() {
    for protocol in BOTH {
        let mut t = Transcript::new(protocol);
        t.init_ok();
        let a = t.subscribe("a", "subscription { ticks }");
        let b = t.subscribe("b", "{ hello }");
        let effects = t.input(Input::InternalError);
        assert_eq!(
            effects[0],
            Effect::Close {
                code: close::INTERNAL_SERVER_ERROR,
                reason: "Internal server error".into()
            }
        );
        assert_eq!(cancels(&effects), vec![a, b]);
        assert_eq!(effects.len(), 3);
        assert_eq!(t.conn.connection().live_operations(), 0);
        t.finish();
    }
}

#[test]
fn the_peers_close_code_is_recorded_when_the_peer_closes_first() {
    for code in [
        close::NORMAL,
        close::NO_STATUS_RECEIVED,
        close::ABNORMAL_CLOSURE,
        4321,
    ] {
        let mut t = Transcript::transport();
        t.init_ok();
        let op = t.subscribe("a", "subscription { ticks }");
        let effects = t.conn.transport_closed(t.now, code);
        // No close frame of ours: the transport is gone.
        assert_eq!(effects, vec![Effect::Cancel { op }]);
        let conn = t.conn.connection();
        assert!(conn.is_terminated());
        assert_eq!(conn.close_code(), Some(code));
        t.finish();
    }
    let t = Transcript::transport();
    assert_eq!(t.conn.connection().close_code(), None);
    assert!(t.conn.connection().is_open());
}

#[test]
fn a_zero_linger_ends_at_the_next_timer() {
    let mut t = Transcript::with_config(Subprotocol::GraphqlTransportWs, linger(0));
    t.init_ok();
    t.now = Millis(42);
    t.input(Input::Shutdown);
    assert_eq!(t.conn.connection().poll_timeout(), Some(Millis(42)));
    assert!(t.conn.timeout(t.now).is_empty());
    assert!(t.conn.connection().is_terminated());
    t.finish();
}

#[test]
fn a_frame_violation_closes_1007_or_1002_and_cancels_every_operation() {
    use terminus_core::server::FrameViolation;
    let cases = [
        (
            FrameViolation::InvalidUtf8,
            close::INVALID_FRAME_PAYLOAD_DATA,
        ),
        (FrameViolation::Unmasked, close::PROTOCOL_ERROR),
        (FrameViolation::ReservedBits, close::PROTOCOL_ERROR),
        (FrameViolation::UnknownOpcode, close::PROTOCOL_ERROR),
        (FrameViolation::ControlFrameTooBig, close::PROTOCOL_ERROR),
        (
            FrameViolation::FragmentedControlFrame,
            close::PROTOCOL_ERROR,
        ),
        (FrameViolation::BadContinuation, close::PROTOCOL_ERROR),
        (FrameViolation::Malformed, close::PROTOCOL_ERROR),
    ];
    for protocol in BOTH {
        for (violation, code) in cases {
            let mut t = Transcript::new(protocol);
            t.init_ok();
            let op = t.subscribe("a", "subscription { ticks }");
            let effects = t.input(Input::FrameViolation(violation));
            assert_eq!(
                close_of(&effects),
                Some((code, violation.reason().to_owned()))
            );
            assert_eq!(cancels(&effects), vec![op]);
            assert!(frames(&effects).is_empty());
            assert!(t.conn.connection().is_closing());
            t.finish();
        }
    }
    // Before init too, and a second violation while closing changes nothing.
    let mut t = Transcript::legacy();
    let effects = t.input(Input::FrameViolation(FrameViolation::Unmasked));
    assert_eq!(close_code(&effects), Some(close::PROTOCOL_ERROR));
    assert!(t
        .input(Input::FrameViolation(FrameViolation::InvalidUtf8))
        .is_empty());
    t.finish();
}
