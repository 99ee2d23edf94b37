//! The client against the real server state machine, and alone for the
//! rules only it enforces.

use super::*;
use crate::server::{AuthVerdict, ConnectionConfig, Effect, ServerConnection};
use crate::{OpId, UpstreamEvent};
use serde_json::json;

/// Moves frames both ways until neither side has anything to say; accepts
/// every init; returns the client's events and the server's Starts.
fn pump(
    now: Millis,
    client: &mut ClientConnection,
    server: &mut ServerConnection,
) -> (Vec<ClientEvent>, Vec<OpId>) {
    let mut events = Vec::new();
    let mut started = Vec::new();
    loop {
        let mut progressed = false;
        while let Some(effect) = client.poll_effect() {
            progressed = true;
            match effect {
                ClientEffect::SendText(text) => server.handle_text(now, &text),
                ClientEffect::Close { code, .. } => server.handle_transport_closed(now, code),
                ClientEffect::Event(event) => events.push(event),
            }
        }
        while let Some(effect) = server.poll_effect() {
            progressed = true;
            match effect {
                Effect::SendText(text) => client.handle_text(now, &text),
                Effect::Authenticate { .. } => server.handle_auth(
                    now,
                    AuthVerdict::Accept {
                        ack_payload: Some(json!({"hello": 1})),
                    },
                ),
                Effect::Start { op, .. } => started.push(op),
                Effect::Close { code, reason } => {
                    client.handle_transport_closed(now, code, &reason);
                    // The client's transport answers the close frame.
                    server.handle_transport_closed(now, code);
                }
                Effect::SendPing | Effect::Cancel { .. } => {}
            }
        }
        if !progressed {
            return (events, started);
        }
    }
}

fn pair(protocol: Subprotocol) -> (ClientConnection, ServerConnection) {
    (
        ClientConnection::new(Millis(0), protocol, ClientConfig::default()),
        ServerConnection::new(Millis(0), protocol, ConnectionConfig::default()),
    )
}

#[test]
fn transport_ws_round_trip() {
    let now = Millis(0);
    let (mut client, mut server) = pair(Subprotocol::GraphqlTransportWs);
    // Requested before the socket opened: waits for the ack.
    let id = client.subscribe(now, "subscription { ticks }", None, None);
    client.handle_opened(now);
    let (events, started) = pump(now, &mut client, &mut server);
    assert_eq!(
        events,
        vec![ClientEvent::Acked {
            payload: Some(json!({"hello": 1}))
        }]
    );
    assert_eq!(started.len(), 1);
    let op = started[0];
    server.handle_upstream(now, op, UpstreamEvent::Next(json!({"data": {"seq": 1}})));
    server.handle_upstream(now, op, UpstreamEvent::Complete);
    let (events, _) = pump(now, &mut client, &mut server);
    assert_eq!(
        events,
        vec![
            ClientEvent::Next {
                id: id.clone(),
                payload: json!({"data": {"seq": 1}})
            },
            ClientEvent::Complete { id }
        ]
    );
    assert_eq!(client.active_operations(), 0);

    let id = client.subscribe(now, "{ hello }", None, Some("Q"));
    let (_, started) = pump(now, &mut client, &mut server);
    server.handle_upstream(
        now,
        started[0],
        UpstreamEvent::Error(vec![json!({"message": "no"})]),
    );
    let (events, _) = pump(now, &mut client, &mut server);
    assert_eq!(
        events,
        vec![ClientEvent::Error {
            id,
            errors: vec![json!({"message": "no"})]
        }]
    );

    // complete(): the server cancels, and nothing more arrives for it.
    let id = client.subscribe(now, "subscription { ticks }", None, None);
    let (_, started) = pump(now, &mut client, &mut server);
    client.complete(now, &id);
    pump(now, &mut client, &mut server);
    assert_eq!(server.live_operations(), 0);
    server.handle_upstream(now, started[0], UpstreamEvent::Next(json!({})));
    assert!(pump(now, &mut client, &mut server).0.is_empty());

    client.close(now, 1000, "bye");
    let (events, _) = pump(now, &mut client, &mut server);
    assert_eq!(
        events,
        vec![ClientEvent::Closed {
            code: 1000,
            reason: "bye".into()
        }]
    );
    assert!(server.is_terminated());
}

#[test]
fn legacy_starts_right_after_init_and_stop_is_answered() {
    let now = Millis(0);
    let (mut client, mut server) = pair(Subprotocol::GraphqlWs);
    client.handle_opened(now);
    let id = client.subscribe(now, "subscription { ticks }", None, None);
    // Both frames go out before any answer: init then start.
    let first = client.poll_effect();
    let second = client.poll_effect();
    assert!(matches!(first, Some(ClientEffect::SendText(t)) if t.contains("connection_init")));
    assert!(matches!(second, Some(ClientEffect::SendText(t)) if t.contains("\"start\"")));
    server.handle_text(
        now,
        &legacy::ClientMessage::ConnectionInit { payload: None }.to_text(),
    );
    server.handle_text(
        now,
        &legacy::ClientMessage::Start {
            id: id.clone(),
            payload: SubscribePayload::from_value(Some(
                &json!({"query": "subscription { ticks }"}),
            ))
            .unwrap(),
        }
        .to_text(),
    );
    let (events, started) = pump(now, &mut client, &mut server);
    assert!(matches!(events[0], ClientEvent::Acked { .. }));
    assert_eq!(started.len(), 1);
    server.handle_upstream(now, started[0], UpstreamEvent::Next(json!({"data": 1})));
    let (events, _) = pump(now, &mut client, &mut server);
    assert_eq!(
        events,
        vec![ClientEvent::Next {
            id: id.clone(),
            payload: json!({"data": 1})
        }]
    );
    client.complete(now, &id);
    let (events, _) = pump(now, &mut client, &mut server);
    assert!(events.is_empty(), "no event after our own complete");
    assert_eq!(server.live_operations(), 0);
    client.close(now, 1000, "done");
    pump(now, &mut client, &mut server);
    assert!(server.is_terminated());
}

#[test]
fn no_ack_in_time_closes_4504() {
    let mut client = ClientConnection::new(
        Millis(0),
        Subprotocol::GraphqlTransportWs,
        ClientConfig::default(),
    );
    client.handle_opened(Millis(0));
    client.poll_effect();
    assert_eq!(client.poll_timeout(), Some(Millis(10_000)));
    client.handle_timeout(Millis(10_000));
    assert_eq!(
        client.poll_effect(),
        Some(ClientEffect::Close {
            code: close::CONNECTION_ACKNOWLEDGEMENT_TIMEOUT,
            reason: "Connection acknowledgement timeout".into()
        })
    );
    assert!(matches!(
        client.poll_effect(),
        Some(ClientEffect::Event(ClientEvent::Closed { code: 4504, .. }))
    ));
    assert_eq!(client.poll_timeout(), None);
}

#[test]
fn server_pings_are_answered_and_garbage_closes_4004() {
    let now = Millis(0);
    let (mut client, mut server) = pair(Subprotocol::GraphqlTransportWs);
    client.handle_opened(now);
    pump(now, &mut client, &mut server);
    client.handle_text(now, r#"{"type":"ping","payload":{"x":1}}"#);
    let Some(ClientEffect::SendText(pong)) = client.poll_effect() else {
        panic!("no pong");
    };
    assert_eq!(
        serde_json::from_str::<Value>(&pong).unwrap(),
        json!({"type": "pong", "payload": {"x": 1}})
    );
    client.handle_text(now, "nonsense");
    assert!(matches!(
        client.poll_effect(),
        Some(ClientEffect::Close { code: 4004, .. })
    ));
}

#[test]
fn client_pings_detect_a_silent_server() {
    let config = ClientConfig {
        ping_interval: Duration::from_secs(5),
        ..ClientConfig::default()
    };
    let mut client = ClientConnection::new(Millis(0), Subprotocol::GraphqlTransportWs, config);
    client.handle_opened(Millis(0));
    client.handle_text(Millis(1), r#"{"type":"connection_ack"}"#);
    while client.poll_effect().is_some() {}
    client.handle_timeout(Millis(5_001));
    assert_eq!(
        client.poll_effect(),
        Some(ClientEffect::SendText(r#"{"type":"ping"}"#.into()))
    );
    client.handle_timeout(Millis(10_001));
    assert!(matches!(
        client.poll_effect(),
        Some(ClientEffect::Close { code: 1001, .. })
    ));
}

#[test]
fn transport_close_ends_everything_once() {
    let now = Millis(0);
    let (mut client, mut server) = pair(Subprotocol::GraphqlTransportWs);
    client.handle_opened(now);
    client.subscribe(now, "subscription { ticks }", None, None);
    pump(now, &mut client, &mut server);
    client.handle_transport_closed(now, 1006, "");
    client.handle_transport_closed(now, 1006, "");
    let mut closed = 0;
    while let Some(effect) = client.poll_effect() {
        if matches!(effect, ClientEffect::Event(ClientEvent::Closed { .. })) {
            closed += 1;
        }
    }
    assert_eq!(closed, 1);
    assert_eq!(client.active_operations(), 0);
    assert!(client.is_closed());
}
