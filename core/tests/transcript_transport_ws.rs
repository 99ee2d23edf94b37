//! Transcript tests for `graphql-transport-ws`: what the client sends, the
//! frames and the close code it gets. One test per rule of PROTOCOL.md.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;
use terminus_core::protocol::close;
use terminus_core::server::{AuthVerdict, ConnectionConfig, Effect, Input, Subprotocol};
use terminus_core::{Millis, UpstreamEvent};

#[test]
fn init_is_authenticated_by_the_host_then_acknowledged() {
    let mut t = Transcript::transport();
    let effects = t.send(json!({"type": "connection_init", "payload": {"token": "s3cret"}}));
    assert_eq!(
        effects,
        vec![Effect::Authenticate {
            payload: Some(json!({"token": "s3cret"}))
        }]
    );
    let effects = t.accept(Some(json!({"server": "terminus"})));
    assert_eq!(
        frames(&effects),
        vec![json!({"type": "connection_ack", "payload": {"server": "terminus"}})]
    );
    t.finish();
}

#[test]
fn ack_without_payload_has_no_payload() {
    let mut t = Transcript::transport();
    let effects = t.init_ok();
    assert_eq!(frames(&effects), vec![json!({"type": "connection_ack"})]);
    t.finish();
}

#[test]
fn no_init_within_the_timeout_closes_4408() {
    let mut t = Transcript::transport();
    assert!(t.advance(2_999).is_empty());
    let effects = t.advance(1);
    assert_eq!(
        close_of(&effects),
        Some((
            close::CONNECTION_INITIALISATION_TIMEOUT,
            "Connection initialisation timeout".into()
        ))
    );
    // Closing: the linger for the client's close frame has begun.
    assert!(t.conn.connection().is_closing());
    assert_eq!(t.conn.connection().poll_timeout(), Some(Millis(4_000)));
    t.finish();
}

#[test]
fn an_auth_decision_that_never_comes_also_times_out() {
    let mut t = Transcript::transport();
    t.send(json!({"type": "connection_init"}));
    let effects = t.advance(3_000);
    assert_eq!(
        close_code(&effects),
        Some(close::CONNECTION_INITIALISATION_TIMEOUT)
    );
    // A verdict arriving after the close changes nothing.
    assert!(t.accept(None).is_empty());
    t.finish();
}

#[test]
fn a_second_init_while_pending_closes_4429() {
    let mut t = Transcript::transport();
    t.send(json!({"type": "connection_init"}));
    let effects = t.send(json!({"type": "connection_init"}));
    assert_eq!(
        close_of(&effects),
        Some((
            close::TOO_MANY_INITIALISATION_REQUESTS,
            "Too many initialisation requests".into()
        ))
    );
    t.finish();
}

#[test]
fn a_second_init_after_the_ack_closes_4429() {
    let mut t = Transcript::transport();
    t.init_ok();
    let op = t.subscribe("1", "subscription { ticks }");
    let effects = t.send(json!({"type": "connection_init"}));
    assert_eq!(
        close_code(&effects),
        Some(close::TOO_MANY_INITIALISATION_REQUESTS)
    );
    assert_eq!(cancels(&effects), vec![op]);
    t.finish();
}

#[test]
fn rejected_init_closes_4403() {
    let mut t = Transcript::transport();
    t.send(json!({"type": "connection_init", "payload": {"token": "bad"}}));
    let effects = t.conn.auth(
        t.now,
        AuthVerdict::Reject {
            reason: "bad token".into(),
        },
    );
    assert!(frames(&effects).is_empty());
    assert_eq!(
        close_of(&effects),
        Some((close::FORBIDDEN, "Forbidden: bad token".into()))
    );
    t.finish();
}

#[test]
fn subscribe_before_the_ack_closes_4401() {
    for pending_init in [false, true] {
        let mut t = Transcript::transport();
        if pending_init {
            t.send(json!({"type": "connection_init"}));
        }
        let effects =
            t.send(json!({"type": "subscribe", "id": "1", "payload": {"query": "{ hello }"}}));
        assert!(starts(&effects).is_empty());
        assert_eq!(
            close_of(&effects),
            Some((close::UNAUTHORIZED, "Unauthorized".into()))
        );
        t.finish();
    }
}

#[test]
fn subscribe_starts_an_operation_with_the_full_request() {
    let mut t = Transcript::transport();
    t.init_ok();
    let effects = t.send(json!({"type": "subscribe", "id": "q1", "payload": {
        "query": "query Q($n: String) { hello(name: $n) }",
        "operationName": "Q",
        "variables": {"n": "ada"},
        "extensions": {"trace": true}
    }}));
    let started = starts(&effects);
    assert_eq!(started.len(), 1);
    let request = &started[0].1;
    assert_eq!(request.id, "q1");
    assert_eq!(request.operation_name.as_deref(), Some("Q"));
    assert_eq!(request.variables["n"], json!("ada"));
    assert_eq!(request.extensions["trace"], json!(true));
    let info: Vec<_> = t.conn.connection().operations().collect();
    assert_eq!(info.len(), 1);
    assert_eq!((info[0].op, info[0].id), (started[0].0, "q1"));
    t.finish();
}

#[test]
fn a_duplicate_active_id_closes_4409_even_while_being_prepared() {
    let mut t = Transcript::transport();
    t.init_ok();
    // The first operation has been started but produced nothing yet.
    let op = t.subscribe("dup", "{ hello }");
    let effects =
        t.send(json!({"type": "subscribe", "id": "dup", "payload": {"query": "{ hello }"}}));
    assert_eq!(
        close_of(&effects),
        Some((
            close::SUBSCRIBER_ALREADY_EXISTS,
            "Subscriber for dup already exists".into()
        ))
    );
    assert!(starts(&effects).is_empty());
    assert_eq!(cancels(&effects), vec![op]);
    t.finish();
}

#[test]
fn an_id_may_be_reused_once_its_operation_ended_and_gets_a_new_handle() {
    let mut t = Transcript::transport();
    t.init_ok();
    let first = t.subscribe("a", "{ hello }");
    t.upstream(first, UpstreamEvent::Complete);
    let second = t.subscribe("a", "{ hello }");
    assert_ne!(first, second);
    t.send(json!({"type": "complete", "id": "a"}));
    let third = t.subscribe("a", "{ hello }");
    assert!(third != first && third != second);
    t.finish();
}

#[test]
fn a_late_event_for_an_ended_operation_never_reaches_the_new_one() {
    let mut t = Transcript::transport();
    t.init_ok();
    let old = t.subscribe("a", "subscription { ticks }");
    t.send(json!({"type": "complete", "id": "a"}));
    let new = t.subscribe("a", "subscription { ticks }");
    assert!(t
        .upstream(old, next(json!({"data": {"old": 1}})))
        .is_empty());
    assert!(t.upstream(old, UpstreamEvent::Complete).is_empty());
    let effects = t.upstream(new, next(json!({"data": {"new": 1}})));
    assert_eq!(
        frames(&effects),
        vec![json!({"type": "next", "id": "a", "payload": {"data": {"new": 1}}})]
    );
    t.finish();
}

#[test]
fn invalid_messages_close_4400() {
    let cases = [
        "not json",
        "[1,2]",
        r#"{"no":"type"}"#,
        r#"{"type":"unknown"}"#,
        r#"{"type":"connection_ack"}"#,
        r#"{"type":"next","id":"1","payload":{}}"#,
        r#"{"type":"error","id":"1","payload":[]}"#,
        r#"{"type":"subscribe","payload":{"query":"{a}"}}"#,
        r#"{"type":"subscribe","id":"","payload":{"query":"{a}"}}"#,
        r#"{"type":"subscribe","id":"1","payload":{}}"#,
        r#"{"type":"subscribe","id":"1","payload":{"query":"{a}","variables":"x"}}"#,
        r#"{"type":"subscribe","id":"1","payload":{"query":"{a}","extensions":[1]}}"#,
        r#"{"type":"subscribe","id":"1","payload":{"query":"{a}","operationName":7}}"#,
        r#"{"type":"complete"}"#,
        r#"{"type":"connection_init","payload":[1]}"#,
        r#"{"type":"ping","payload":"x"}"#,
    ];
    for case in cases {
        let mut t = Transcript::transport();
        t.init_ok();
        let op = t.subscribe("live", "{ hello }");
        let effects = t.send_raw(case);
        let (code, reason) = close_of(&effects).unwrap_or_else(|| panic!("{case}: no close"));
        assert_eq!(code, close::BAD_REQUEST, "{case}");
        assert!(reason.starts_with("Invalid message"), "{case}: {reason}");
        assert_eq!(cancels(&effects), vec![op], "{case}");
        t.finish();
    }
}

#[test]
fn ping_is_answered_at_once_even_before_init_and_pong_is_ignored() {
    let mut t = Transcript::transport();
    let effects = t.send(json!({"type": "ping", "payload": {"n": 1}}));
    assert_eq!(
        frames(&effects),
        vec![json!({"type": "pong", "payload": {"n": 1}})]
    );
    assert_eq!(
        frames(&t.send(json!({"type": "ping"}))),
        vec![json!({"type": "pong"})]
    );
    assert!(t.send(json!({"type": "pong"})).is_empty());
    assert!(t.send(json!({"type": "pong", "payload": null})).is_empty());
    t.finish();
}

#[test]
fn a_query_gets_one_next_then_complete() {
    let mut t = Transcript::transport();
    t.init_ok();
    let op = t.subscribe("q", "{ hello }");
    let mut effects = t.upstream(op, next(json!({"data": {"hello": "hi"}})));
    effects.extend(t.upstream(op, UpstreamEvent::Complete));
    assert_eq!(
        frames(&effects),
        vec![
            json!({"type": "next", "id": "q", "payload": {"data": {"hello": "hi"}}}),
            json!({"type": "complete", "id": "q"}),
        ]
    );
    assert!(cancels(&effects).is_empty());
    assert_eq!(t.conn.connection().live_operations(), 0);
    t.finish();
}

#[test]
fn a_stream_gets_many_nexts_then_complete() {
    let mut t = Transcript::transport();
    t.init_ok();
    let op = t.subscribe("s", "subscription { ticks { seq } }");
    for seq in 0..5 {
        let effects = t.upstream(op, next(json!({"data": {"ticks": {"seq": seq}}})));
        assert_eq!(
            frames(&effects),
            vec![json!({"type": "next", "id": "s", "payload": {"data": {"ticks": {"seq": seq}}}})]
        );
    }
    let effects = t.upstream(op, UpstreamEvent::Complete);
    assert_eq!(
        frames(&effects),
        vec![json!({"type": "complete", "id": "s"})]
    );
    t.finish();
}

#[test]
fn error_ends_the_operation_without_complete() {
    let mut t = Transcript::transport();
    t.init_ok();
    let op = t.subscribe("e", "{ nope }");
    let effects = t.upstream(
        op,
        UpstreamEvent::Error(vec![json!({"message": "Cannot query field \"nope\""})]),
    );
    assert_eq!(
        frames(&effects),
        vec![
            json!({"type": "error", "id": "e", "payload": [{"message": "Cannot query field \"nope\""}]})
        ]
    );
    assert!(cancels(&effects).is_empty());
    // Nothing follows for that id, not even complete.
    assert!(t.upstream(op, UpstreamEvent::Complete).is_empty());
    assert!(t.upstream(op, next(json!({"data": {}}))).is_empty());
    t.finish();
}

#[test]
fn an_empty_error_list_still_sends_a_non_empty_error() {
    let mut t = Transcript::transport();
    t.init_ok();
    let op = t.subscribe("e", "{ a }");
    let effects = t.upstream(op, UpstreamEvent::Error(vec![]));
    let sent = frames(&effects);
    assert_eq!(sent[0]["type"], "error");
    assert_eq!(sent[0]["payload"].as_array().map(Vec::len), Some(1));
    t.finish();
}

#[test]
fn client_complete_cancels_without_echo_and_drops_later_results() {
    let mut t = Transcript::transport();
    t.init_ok();
    let op = t.subscribe("s", "subscription { ticks { seq } }");
    let effects = t.send(json!({"type": "complete", "id": "s"}));
    assert_eq!(effects, vec![Effect::Cancel { op }]);
    assert!(t.upstream(op, next(json!({"data": {}}))).is_empty());
    assert!(t.upstream(op, UpstreamEvent::Complete).is_empty());
    t.finish();
}

#[test]
fn messages_for_unknown_or_ended_ids_are_ignored() {
    let mut t = Transcript::transport();
    t.init_ok();
    assert!(t
        .send(json!({"type": "complete", "id": "never"}))
        .is_empty());
    let op = t.subscribe("done", "{ a }");
    t.upstream(op, UpstreamEvent::Complete);
    // The client's complete crossed the server's on the wire.
    assert!(t.send(json!({"type": "complete", "id": "done"})).is_empty());
    t.finish();
}

#[test]
fn close_reasons_fit_in_123_bytes_on_a_char_boundary() {
    let mut t = Transcript::transport();
    t.init_ok();
    let id = "é".repeat(80);
    t.subscribe(&id, "{ a }");
    let effects = t.send(json!({"type": "subscribe", "id": id, "payload": {"query": "{ a }"}}));
    let (code, reason) = close_of(&effects).expect("closed");
    assert_eq!(code, close::SUBSCRIBER_ALREADY_EXISTS);
    assert!(reason.len() <= 123, "{} bytes", reason.len());
    assert!(reason.starts_with("Subscriber for éé"));
    t.finish();
}

#[test]
fn socket_close_cancels_every_operation_including_ones_in_setup() {
    let mut t = Transcript::transport();
    t.init_ok();
    let a = t.subscribe("a", "subscription { ticks }");
    t.upstream(a, next(json!({"data": {}})));
    let b = t.subscribe("b", "{ hello }"); // still being prepared
    let effects = t.input(Input::TransportClosed {
        code: close::ABNORMAL_CLOSURE,
    });
    assert_eq!(cancels(&effects), vec![a, b]);
    assert!(frames(&effects).is_empty());
    assert!(close_of(&effects).is_none());
    let conn = t.conn.connection();
    assert!(conn.is_terminated());
    assert_eq!(conn.live_operations(), 0);
    assert_eq!(conn.poll_timeout(), None);
    // Calling it again is a no-op.
    assert!(t
        .input(Input::TransportClosed {
            code: close::ABNORMAL_CLOSURE
        })
        .is_empty());
    t.finish();
}

#[test]
fn frames_over_the_limit_close_1009() {
    let config = ConnectionConfig {
        max_frame_bytes: 100,
        ..ConnectionConfig::default()
    };
    let mut t = Transcript::with_config(Subprotocol::GraphqlTransportWs, config.clone());
    t.init_ok();
    let op = t.subscribe("a", "{ a }");
    let big = json!({"type": "subscribe", "id": "b", "payload": {"query": "x".repeat(200)}});
    let effects = t.send(big);
    assert_eq!(
        close_of(&effects),
        Some((close::MESSAGE_TOO_BIG, "Frame too large".into()))
    );
    assert_eq!(cancels(&effects), vec![op]);
    t.finish();

    let mut t = Transcript::with_config(Subprotocol::GraphqlTransportWs, config);
    let effects = t.input(Input::Binary(vec![0; 101]));
    assert_eq!(close_code(&effects), Some(close::MESSAGE_TOO_BIG));
    t.finish();
}

#[test]
fn binary_frames_close_4400() {
    let mut t = Transcript::transport();
    t.init_ok();
    let effects = t.input(Input::Binary(vec![1, 2, 3]));
    assert_eq!(
        close_of(&effects),
        Some((close::BAD_REQUEST, "Binary frames are not supported".into()))
    );
    t.finish();
}

#[test]
fn too_many_operations_is_an_error_for_that_operation_only() {
    let config = ConnectionConfig {
        max_operations: 2,
        ..ConnectionConfig::default()
    };
    let mut t = Transcript::with_config(Subprotocol::GraphqlTransportWs, config);
    t.init_ok();
    let a = t.subscribe("a", "subscription { ticks }");
    let _b = t.subscribe("b", "subscription { ticks }");
    let effects = t.send(json!({"type": "subscribe", "id": "c", "payload": {"query": "{ a }"}}));
    assert!(starts(&effects).is_empty());
    assert!(close_of(&effects).is_none());
    let sent = frames(&effects);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["type"], "error");
    assert_eq!(sent[0]["id"], "c");
    assert_eq!(
        sent[0]["payload"][0]["extensions"]["code"],
        "TOO_MANY_OPERATIONS"
    );
    // The connection carries on, and "c" can run once a slot frees up.
    t.upstream(a, UpstreamEvent::Complete);
    t.subscribe("c", "{ a }");
    t.finish();
}

#[test]
fn a_slow_reader_is_closed_1013_and_flushing_keeps_it_open() {
    let config = ConnectionConfig {
        max_outbound_bytes: 1_000,
        ..ConnectionConfig::default()
    };
    // A reader that flushes never hits the bound.
    let mut t = Transcript::with_config(Subprotocol::GraphqlTransportWs, config.clone());
    let ack = t.init_ok();
    let ack_bytes = match &ack[..] {
        [Effect::SendText(s)] => s.len(),
        other => panic!("{other:?}"),
    };
    t.input(Input::Flushed(ack_bytes));
    let op = t.subscribe("s", "subscription { ticks }");
    for _ in 0..100 {
        let effects = t.upstream(op, next(json!({"data": {"pad": "x".repeat(100)}})));
        let bytes: usize = effects
            .iter()
            .map(|e| match e {
                Effect::SendText(s) => s.len(),
                _ => 0,
            })
            .sum();
        assert!(bytes > 0);
        t.input(Input::Flushed(bytes));
    }
    assert_eq!(t.conn.connection().unflushed_bytes(), 0);
    t.finish();

    // One that never flushes is closed once the queue would exceed it.
    let mut t = Transcript::with_config(Subprotocol::GraphqlTransportWs, config);
    t.init_ok();
    let op = t.subscribe("s", "subscription { ticks }");
    let mut closed = None;
    for _ in 0..20 {
        let effects = t.upstream(op, next(json!({"data": {"pad": "x".repeat(100)}})));
        if let Some(close) = close_of(&effects) {
            assert_eq!(cancels(&effects), vec![op]);
            closed = Some(close);
            break;
        }
    }
    assert_eq!(
        closed,
        Some((close::TRY_AGAIN_LATER, "Slow consumer".into()))
    );
    assert!(t.conn.connection().unflushed_bytes() <= 1_000);
    t.finish();
}

#[test]
fn a_peer_that_never_answers_pings_is_closed() {
    let mut t = Transcript::transport();
    t.init_ok();
    let op = t.subscribe("s", "subscription { ticks }");
    assert!(t.advance(14_999).is_empty());
    assert_eq!(t.advance(1), vec![Effect::SendPing]);
    assert_eq!(
        t.conn.connection().poll_timeout().map(|m| m.0),
        Some(25_000)
    );
    let effects = t.advance(10_000);
    assert_eq!(
        close_of(&effects),
        Some((close::GOING_AWAY, "Keep-alive timeout".into()))
    );
    assert_eq!(cancels(&effects), vec![op]);
    t.finish();
}

#[test]
fn pongs_and_any_frame_keep_the_connection_alive() {
    let mut t = Transcript::transport();
    t.init_ok();
    assert_eq!(t.advance(15_000), vec![Effect::SendPing]);
    for round in 0..10 {
        assert!(t.advance(9_999).is_empty(), "round {round}");
        if round % 2 == 0 {
            t.input(Input::TransportPong);
        } else {
            // Any inbound frame proves liveness too.
            t.send(json!({"type": "pong"}));
        }
        // The next ping is due one period after the previous one.
        assert!(t.advance(5_000).is_empty(), "round {round}");
        assert_eq!(t.advance(1), vec![Effect::SendPing], "round {round}");
    }
    assert!(!t.conn.connection().is_terminated());
    t.finish();
}

#[test]
fn keepalive_can_be_disabled() {
    let config = ConnectionConfig {
        keepalive_interval: Duration::ZERO,
        ..ConnectionConfig::default()
    };
    let mut t = Transcript::with_config(Subprotocol::GraphqlTransportWs, config);
    t.init_ok();
    assert_eq!(t.conn.connection().poll_timeout(), None);
    assert!(t.advance(3_600_000).is_empty());
    t.finish();
}

#[test]
fn shutdown_closes_1001_and_cancels_everything() {
    let mut t = Transcript::transport();
    t.init_ok();
    let a = t.subscribe("a", "subscription { ticks }");
    let b = t.subscribe("b", "subscription { ticks }");
    let effects = t.input(Input::Shutdown);
    assert_eq!(
        effects[0],
        Effect::Close {
            code: close::GOING_AWAY,
            reason: "Server shutting down".into()
        }
    );
    assert_eq!(cancels(&effects), vec![a, b]);
    let conn = t.conn.connection();
    assert!(conn.is_closing());
    assert_eq!(conn.live_operations(), 0);
    // The client answers the close frame: the connection ends at once.
    assert!(t.conn.transport_closed(t.now, close::GOING_AWAY).is_empty());
    let conn = t.conn.connection();
    assert!(conn.is_terminated());
    assert_eq!(conn.close_code(), Some(close::GOING_AWAY));
    assert_eq!(conn.poll_timeout(), None);
    t.finish();
}

#[test]
fn nothing_is_sent_after_close() {
    let mut t = Transcript::transport();
    t.init_ok();
    let op = t.subscribe("a", "subscription { ticks }");
    t.send_raw("garbage");
    assert!(t.upstream(op, next(json!({"data": {}}))).is_empty());
    assert!(t.send(json!({"type": "ping"})).is_empty());
    assert!(t.advance(60_000).is_empty());
    assert!(t.input(Input::Shutdown).is_empty());
    t.finish();
}

#[test]
fn state_machines_can_move_between_threads() {
    // The runtime drives each connection from its own task on a
    // multi-threaded executor.
    fn assert_send<T: Send + 'static>() {}
    assert_send::<terminus_core::server::ServerConnection>();
    assert_send::<terminus_core::client::ClientConnection>();
    assert_send::<terminus_core::ledger::Audited>();
}

#[test]
fn operations_lists_the_live_ones_oldest_first() {
    let mut t = Transcript::transport();
    t.init_ok();
    let a = t.subscribe("a", "subscription { ticks }");
    t.now = terminus_core::Millis(500);
    let b = t.subscribe("b", "subscription { ticks }");
    let listed: Vec<_> = t
        .conn
        .connection()
        .operations()
        .map(|o| (o.op, o.id.to_owned(), o.started.0))
        .collect();
    assert_eq!(listed, vec![(a, "a".into(), 0), (b, "b".into(), 500)]);
    t.upstream(a, UpstreamEvent::Complete);
    let ids: Vec<_> = t.conn.connection().operations().map(|o| o.op).collect();
    assert_eq!(ids, vec![b]);
    t.finish();
}

#[test]
fn an_expiring_credential_closes_4403_at_its_expiry_and_cancels_everything() {
    // Transport pings off: this client never answers them.
    let config = ConnectionConfig {
        keepalive_interval: Duration::ZERO,
        ..ConnectionConfig::default()
    };
    let mut t = Transcript::with_config(Subprotocol::GraphqlTransportWs, config);
    t.send(json!({"type": "connection_init", "payload": {"token": "jwt"}}));
    let effects = t.conn.auth(
        t.now,
        AuthVerdict::AcceptUntil {
            ack_payload: None,
            expires: terminus_core::Millis(60_000),
        },
    );
    assert_eq!(frames(&effects), vec![json!({"type": "connection_ack"})]);
    assert_eq!(
        t.conn.connection().auth_expires(),
        Some(terminus_core::Millis(60_000))
    );
    let a = t.subscribe("a", "subscription { ticks }");
    let b = t.subscribe("b", "subscription { ticks }");
    // The expiry is a deadline of the machine, whatever else is armed.
    assert!(t.conn.connection().poll_timeout() <= Some(terminus_core::Millis(60_000)));
    let before = t.advance(59_999);
    assert_eq!(close_of(&before), None, "closed early: {before:?}");
    let effects = t.advance(1);
    assert_eq!(
        close_of(&effects),
        Some((close::FORBIDDEN, "Forbidden: token expired".into()))
    );
    let mut cancelled = cancels(&effects);
    cancelled.sort();
    assert_eq!(cancelled, vec![a, b]);
    assert_eq!(t.conn.connection().live_operations(), 0);
    // Only the close's linger is left (close_linger, 1 s by default).
    assert_eq!(
        t.conn.connection().poll_timeout(),
        Some(terminus_core::Millis(61_000))
    );
    t.finish();
}

#[test]
fn an_already_expired_credential_closes_4403_without_an_ack() {
    let mut t = Transcript::transport();
    t.now = terminus_core::Millis(5_000);
    t.send(json!({"type": "connection_init"}));
    let effects = t.conn.auth(
        t.now,
        AuthVerdict::AcceptUntil {
            ack_payload: None,
            expires: terminus_core::Millis(5_000),
        },
    );
    assert!(frames(&effects).is_empty(), "{effects:?}");
    assert_eq!(
        close_of(&effects),
        Some((close::FORBIDDEN, "Forbidden: token expired".into()))
    );
    t.finish();
}
