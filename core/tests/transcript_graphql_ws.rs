//! Transcript tests for legacy `graphql-ws` (subscriptions-transport-ws):
//! what the client sends, the frames and the close code it gets.

mod common;

use common::*;
use serde_json::json;
use terminus_core::protocol::close;
use terminus_core::server::{AuthVerdict, ConnectionConfig, Effect, Input, Subprotocol};
use terminus_core::UpstreamEvent;

fn start(id: &str, query: &str) -> serde_json::Value {
    json!({"type": "start", "id": id, "payload": {"query": query}})
}

#[test]
fn init_is_acknowledged_then_ka_right_after_and_periodically() {
    // Keep-alive transport pings are disabled here to see the ka alone.
    let config = ConnectionConfig {
        keepalive_interval: std::time::Duration::ZERO,
        ..ConnectionConfig::default()
    };
    let mut t = Transcript::with_config(Subprotocol::GraphqlWs, config);
    let effects = t.send(json!({"type": "connection_init", "payload": {"authToken": "t"}}));
    assert_eq!(
        effects,
        vec![Effect::Authenticate {
            payload: Some(json!({"authToken": "t"}))
        }]
    );
    let effects = t.accept(None);
    assert_eq!(
        frames(&effects),
        vec![json!({"type": "connection_ack"}), json!({"type": "ka"})]
    );
    for _ in 0..3 {
        assert!(t.advance(14_999).is_empty());
        let effects = t.advance(1);
        assert_eq!(frames(&effects), vec![json!({"type": "ka"})]);
    }
    t.finish();
}

#[test]
fn starts_sent_before_the_ack_are_queued_until_the_init_is_accepted() {
    let mut t = Transcript::legacy();
    t.send(json!({"type": "connection_init"}));
    assert!(t.send(start("1", "subscription { ticks }")).is_empty());
    assert!(t.send(start("2", "{ hello }")).is_empty());
    let effects = t.accept(None);
    assert_eq!(
        frames(&effects),
        vec![json!({"type": "connection_ack"}), json!({"type": "ka"})]
    );
    let started = starts(&effects);
    assert_eq!(started.len(), 2);
    assert_eq!(started[0].1.id, "1");
    assert_eq!(started[1].1.id, "2");
    t.finish();
}

#[test]
fn a_start_before_any_init_never_runs_without_a_successful_init() {
    // Queued, then the init never comes: closed 4408, nothing ran.
    let mut t = Transcript::legacy();
    assert!(t.send(start("1", "{ hello }")).is_empty());
    let effects = t.advance(3_000);
    assert_eq!(
        close_code(&effects),
        Some(close::CONNECTION_INITIALISATION_TIMEOUT)
    );
    assert!(starts(&effects).is_empty());
    assert_eq!(t.conn.ledger().starts(), 0);
    t.finish();

    // Queued, then the init is rejected: connection_error, close 4403, nothing ran.
    let mut t = Transcript::legacy();
    t.send(start("1", "{ hello }"));
    t.send(json!({"type": "connection_init", "payload": {"authToken": "bad"}}));
    let effects = t.conn.auth(
        t.now,
        AuthVerdict::Reject {
            reason: "bad token".into(),
        },
    );
    assert_eq!(
        frames(&effects),
        vec![json!({"type": "connection_error", "payload": {"message": "bad token"}})]
    );
    assert_eq!(close_code(&effects), Some(close::FORBIDDEN));
    assert_eq!(t.conn.ledger().starts(), 0);
    t.finish();
}

#[test]
fn data_then_complete() {
    let mut t = Transcript::legacy();
    t.init_ok();
    let op = t.subscribe("1", "subscription { ticks { seq } }");
    let mut effects = t.upstream(op, next(json!({"data": {"ticks": {"seq": 1}}})));
    effects.extend(t.upstream(op, UpstreamEvent::Complete));
    assert_eq!(
        frames(&effects),
        vec![
            json!({"type": "data", "id": "1", "payload": {"data": {"ticks": {"seq": 1}}}}),
            json!({"type": "complete", "id": "1"}),
        ]
    );
    t.finish();
}

#[test]
fn error_before_execution_ends_the_operation() {
    let mut t = Transcript::legacy();
    t.init_ok();
    let op = t.subscribe("1", "{ nope }");
    let effects = t.upstream(
        op,
        UpstreamEvent::Error(vec![json!({"message": "invalid"})]),
    );
    assert_eq!(
        frames(&effects),
        vec![json!({"type": "error", "id": "1", "payload": [{"message": "invalid"}]})]
    );
    assert!(t.upstream(op, UpstreamEvent::Complete).is_empty());
    // The id is free again.
    t.subscribe("1", "{ hello }");
    t.finish();
}

#[test]
fn stop_cancels_and_answers_complete() {
    let mut t = Transcript::legacy();
    t.init_ok();
    let op = t.subscribe("1", "subscription { ticks }");
    let effects = t.send(json!({"type": "stop", "id": "1"}));
    assert_eq!(effects[0], Effect::Cancel { op });
    assert_eq!(effects.len(), 2);
    assert_eq!(
        frames(&effects),
        vec![json!({"type": "complete", "id": "1"})]
    );
    assert!(t.upstream(op, next(json!({"data": {}}))).is_empty());
    // stop for an unknown id is ignored.
    assert!(t.send(json!({"type": "stop", "id": "zzz"})).is_empty());
    t.finish();
}

#[test]
fn stop_of_a_queued_start_means_it_never_runs() {
    let mut t = Transcript::legacy();
    t.send(json!({"type": "connection_init"}));
    t.send(start("1", "{ hello }"));
    assert!(t.send(json!({"type": "stop", "id": "1"})).is_empty());
    let effects = t.accept(None);
    assert!(starts(&effects).is_empty());
    t.finish();
}

#[test]
fn connection_terminate_closes_1000() {
    let mut t = Transcript::legacy();
    t.init_ok();
    let op = t.subscribe("1", "subscription { ticks }");
    let effects = t.send(json!({"type": "connection_terminate"}));
    assert_eq!(close_code(&effects), Some(close::NORMAL));
    assert_eq!(cancels(&effects), vec![op]);
    t.finish();
}

#[test]
fn unparsable_frames_get_connection_error_and_the_connection_carries_on() {
    let mut t = Transcript::legacy();
    t.init_ok();
    let op = t.subscribe("1", "subscription { ticks }");
    for bad in [
        "{oops",
        r#"{"type":"what"}"#,
        r#"{"type":"data","id":"1","payload":{}}"#,
        r#"{"type":"stop"}"#,
    ] {
        let effects = t.send_raw(bad);
        let sent = frames(&effects);
        assert_eq!(sent.len(), 1, "{bad}");
        assert_eq!(sent[0]["type"], "connection_error", "{bad}");
        assert!(sent[0]["payload"]["message"].is_string());
        assert!(close_of(&effects).is_none());
    }
    // The running operation is unaffected.
    let effects = t.upstream(op, next(json!({"data": {"x": 1}})));
    assert_eq!(frames(&effects)[0]["type"], "data");
    t.finish();
}

#[test]
fn a_start_with_a_bad_payload_gets_an_error_for_its_id() {
    let mut t = Transcript::legacy();
    t.init_ok();
    let effects = t.send(json!({"type": "start", "id": "9", "payload": {"variables": {}}}));
    let sent = frames(&effects);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["type"], "error");
    assert_eq!(sent[0]["id"], "9");
    assert!(starts(&effects).is_empty());
    t.finish();
}

#[test]
fn a_duplicate_active_start_id_gets_an_error_and_the_running_operation_carries_on() {
    let mut t = Transcript::legacy();
    t.init_ok();
    let op = t.subscribe("1", "subscription { ticks }");
    let effects = t.send(start("1", "subscription { other }"));
    assert!(starts(&effects).is_empty());
    assert!(cancels(&effects).is_empty());
    let sent = frames(&effects);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["type"], "error");
    assert_eq!(
        sent[0]["payload"][0]["extensions"]["code"],
        "DUPLICATE_OPERATION_ID"
    );
    let effects = t.upstream(op, next(json!({"data": {"seq": 2}})));
    assert_eq!(
        frames(&effects),
        vec![json!({"type": "data", "id": "1", "payload": {"data": {"seq": 2}}})]
    );
    // Also while queued behind a pending init.
    let mut t = Transcript::legacy();
    t.send(json!({"type": "connection_init"}));
    t.send(start("q", "{ a }"));
    let effects = t.send(start("q", "{ b }"));
    assert_eq!(frames(&effects)[0]["type"], "error");
    let effects = t.accept(None);
    let started = starts(&effects);
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].1.query, "{ a }");
    t.finish();
}

#[test]
fn a_second_init_closes_4429() {
    let mut t = Transcript::legacy();
    t.init_ok();
    let effects = t.send(json!({"type": "connection_init"}));
    assert_eq!(
        close_code(&effects),
        Some(close::TOO_MANY_INITIALISATION_REQUESTS)
    );
    t.finish();
}

#[test]
fn the_operation_limit_counts_queued_starts() {
    let config = ConnectionConfig {
        max_operations: 2,
        ..ConnectionConfig::default()
    };
    let mut t = Transcript::with_config(Subprotocol::GraphqlWs, config);
    t.send(json!({"type": "connection_init"}));
    t.send(start("1", "{ a }"));
    t.send(start("2", "{ a }"));
    let effects = t.send(start("3", "{ a }"));
    let sent = frames(&effects);
    assert_eq!(sent[0]["type"], "error");
    assert_eq!(sent[0]["id"], "3");
    assert_eq!(
        sent[0]["payload"][0]["extensions"]["code"],
        "TOO_MANY_OPERATIONS"
    );
    let effects = t.accept(None);
    assert_eq!(starts(&effects).len(), 2);
    let effects = t.send(start("4", "{ a }"));
    assert_eq!(frames(&effects)[0]["type"], "error");
    t.finish();
}

#[test]
fn binary_frames_and_big_frames_close_the_connection() {
    let mut t = Transcript::legacy();
    t.init_ok();
    let effects = t.input(Input::Binary(b"\x00".to_vec()));
    assert_eq!(close_code(&effects), Some(close::BAD_REQUEST));
    t.finish();

    let config = ConnectionConfig {
        max_frame_bytes: 64,
        ..ConnectionConfig::default()
    };
    let mut t = Transcript::with_config(Subprotocol::GraphqlWs, config);
    t.init_ok();
    let effects = t.send(start("1", &"x".repeat(100)));
    assert_eq!(close_code(&effects), Some(close::MESSAGE_TOO_BIG));
    t.finish();
}

#[test]
fn shutdown_and_socket_close_cancel_everything() {
    let mut t = Transcript::legacy();
    t.init_ok();
    let a = t.subscribe("a", "subscription { ticks }");
    let effects = t.input(Input::Shutdown);
    assert_eq!(close_code(&effects), Some(close::GOING_AWAY));
    assert_eq!(cancels(&effects), vec![a]);
    t.finish();

    let mut t = Transcript::legacy();
    t.init_ok();
    let a = t.subscribe("a", "subscription { ticks }");
    let b = t.subscribe("b", "{ hello }");
    let effects = t.input(Input::TransportClosed {
        code: close::ABNORMAL_CLOSURE,
    });
    assert_eq!(cancels(&effects), vec![a, b]);
    assert!(frames(&effects).is_empty());
    t.finish();
}

#[test]
fn keepalive_pings_apply_to_legacy_too() {
    let mut t = Transcript::legacy();
    t.init_ok();
    let effects = t.advance(15_000);
    assert!(effects.contains(&Effect::SendPing));
    let effects = t.advance(10_000);
    assert_eq!(close_code(&effects), Some(close::GOING_AWAY));
    t.finish();
}

#[test]
fn an_expiring_credential_closes_4403_at_its_expiry_even_with_queued_starts() {
    let config = ConnectionConfig {
        keepalive_interval: std::time::Duration::ZERO,
        legacy_ka_interval: std::time::Duration::ZERO,
        ..ConnectionConfig::default()
    };
    let mut t = Transcript::with_config(Subprotocol::GraphqlWs, config);
    t.send(json!({"type": "connection_init", "payload": {"authToken": "jwt"}}));
    // Deployed clients start before the ack: it runs once accepted.
    assert!(starts(&t.send(start("1", "subscription { ticks }"))).is_empty());
    let effects = t.conn.auth(
        t.now,
        AuthVerdict::AcceptUntil {
            ack_payload: None,
            expires: terminus_core::Millis(1_500),
        },
    );
    let started = starts(&effects);
    assert_eq!(started.len(), 1);
    let effects = t.advance(1_500);
    assert_eq!(
        close_of(&effects),
        Some((close::FORBIDDEN, "Forbidden: token expired".into()))
    );
    assert_eq!(cancels(&effects), vec![started[0].0]);
    t.finish();
}

#[test]
fn an_already_expired_credential_answers_connection_error_then_closes() {
    let mut t = Transcript::legacy();
    t.send(json!({"type": "connection_init"}));
    let effects = t.conn.auth(
        t.now,
        AuthVerdict::AcceptUntil {
            ack_payload: None,
            expires: t.now,
        },
    );
    assert_eq!(
        frames(&effects),
        vec![json!({"type": "connection_error", "payload": {"message": "token expired"}})]
    );
    assert_eq!(close_code(&effects), Some(close::FORBIDDEN));
    t.finish();
}

#[test]
fn queued_starts_are_held_operations() {
    // Before any init, and behind a pending init: held (what
    // `terminus_operations` counts) but not live until the init is accepted.
    let mut t = Transcript::legacy();
    t.send(start("1", "{ hello }"));
    assert_eq!(t.conn.connection().held_operations(), 1);
    t.send(json!({"type": "connection_init"}));
    t.send(start("2", "subscription { ticks }"));
    assert_eq!(t.conn.connection().held_operations(), 2);
    assert_eq!(t.conn.connection().live_operations(), 0);
    t.send(json!({"type": "stop", "id": "1"}));
    assert_eq!(t.conn.connection().held_operations(), 1);
    let effects = t.accept(None);
    assert_eq!(starts(&effects).len(), 1);
    assert_eq!(t.conn.connection().held_operations(), 1);
    assert_eq!(t.conn.connection().live_operations(), 1);
    t.finish();
}
