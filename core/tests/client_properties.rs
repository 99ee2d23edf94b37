//! Property tests of the client state machine: random server frames (valid,
//! crossing, or garbage), random application calls and timer expiries, then
//! the transport closes. The client ledger must stay clean: at most one
//! terminal event per operation, nothing after `Closed`, and at the end the
//! client is closed with nothing active and no timer.

use proptest::prelude::*;
use serde_json::json;
use std::time::Duration;
use terminus_core::client::{ClientConfig, ClientConnection};
use terminus_core::ledger::ClientLedger;
use terminus_core::protocol::Subprotocol;
use terminus_core::Millis;

#[derive(Debug, Clone)]
enum Move {
    Open,
    Subscribe,
    Complete(u8),
    Close,
    Ack,
    ServerPing,
    Next(u8),
    Error(u8),
    Done(u8),
    Ka,
    Garbage,
    Advance(u32),
}

fn moves() -> impl Strategy<Value = Move> {
    prop_oneof![
        1 => Just(Move::Open),
        4 => Just(Move::Subscribe),
        2 => any::<u8>().prop_map(Move::Complete),
        1 => Just(Move::Close),
        2 => Just(Move::Ack),
        1 => Just(Move::ServerPing),
        5 => any::<u8>().prop_map(Move::Next),
        2 => any::<u8>().prop_map(Move::Error),
        2 => any::<u8>().prop_map(Move::Done),
        1 => Just(Move::Ka),
        1 => Just(Move::Garbage),
        2 => (0u32..15_000).prop_map(Move::Advance),
    ]
}

fn run(protocol: Subprotocol, script: Vec<Move>) {
    let legacy = protocol == Subprotocol::GraphqlWs;
    let config = ClientConfig {
        ping_interval: Duration::from_secs(5),
        ..ClientConfig::default()
    };
    let mut now = Millis(0);
    let mut client = ClientConnection::new(now, protocol, config);
    let mut ledger = ClientLedger::new();
    let mut ids: Vec<String> = Vec::new();
    let id_of = |ids: &[String], n: u8| -> String {
        if ids.is_empty() {
            "1".to_owned()
        } else {
            ids[n as usize % ids.len()].clone()
        }
    };
    for step in script {
        match step {
            Move::Open => client.handle_opened(now),
            Move::Subscribe => {
                let id = client.subscribe(now, "subscription { t }", None, None);
                ledger.observe_subscribe(&id);
                ids.push(id);
            }
            Move::Complete(n) => {
                let id = id_of(&ids, n);
                ledger.observe_complete(&id);
                client.complete(now, &id);
            }
            Move::Close => client.close(now, 1000, "bye"),
            Move::Ack => client.handle_text(now, r#"{"type":"connection_ack"}"#),
            Move::ServerPing => client.handle_text(now, r#"{"type":"ping"}"#),
            Move::Next(n) => {
                let kind = if legacy { "data" } else { "next" };
                let frame = json!({"type": kind, "id": id_of(&ids, n), "payload": {"data": {}}});
                client.handle_text(now, &frame.to_string());
            }
            Move::Error(n) => {
                let frame =
                    json!({"type": "error", "id": id_of(&ids, n), "payload": [{"message": "x"}]});
                client.handle_text(now, &frame.to_string());
            }
            Move::Done(n) => {
                let frame = json!({"type": "complete", "id": id_of(&ids, n)});
                client.handle_text(now, &frame.to_string());
            }
            Move::Ka => client.handle_text(now, r#"{"type":"ka"}"#),
            Move::Garbage => client.handle_text(now, "{\"type\":"),
            Move::Advance(ms) => {
                now = Millis(now.0 + u64::from(ms));
                if client.poll_timeout().is_some_and(|d| d <= now) {
                    client.handle_timeout(now);
                }
            }
        }
        while let Some(effect) = client.poll_effect() {
            ledger.observe_effect(&effect);
        }
    }
    client.handle_transport_closed(now, 1006, "");
    while let Some(effect) = client.poll_effect() {
        ledger.observe_effect(&effect);
    }
    ledger.check_end(&client);
    assert!(ledger.violations().is_empty(), "{:#?}", ledger.violations());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn transport_ws_client_events_are_well_formed(script in prop::collection::vec(moves(), 0..60)) {
        run(Subprotocol::GraphqlTransportWs, script);
    }

    #[test]
    fn legacy_client_events_are_well_formed(script in prop::collection::vec(moves(), 0..60)) {
        run(Subprotocol::GraphqlWs, script);
    }
}
