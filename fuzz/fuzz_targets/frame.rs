//! `frame`: arbitrary bytes as one text frame (and as one binary frame) in
//! every connection state of both subprotocols, server and client side.
//! Never a panic; every effect passes the ledger; bad input gets the close
//! code documented in `terminus_core::protocol::close` (the protocol's own
//! parser is the oracle for what is bad).
#![no_main]

use libfuzzer_sys::fuzz_target;
use terminus_core::client::{ClientConfig, ClientConnection, ClientEffect};
use terminus_core::ledger::Audited;
use terminus_core::protocol::{close, legacy, transport, Subprotocol};
use terminus_core::server::{AuthVerdict, ConnectionConfig, Effect, Input};
use terminus_core::Millis;
use terminus_fuzz::{assert_no_violations, ClientAudit, CLIENT_CLOSE_CODES, SERVER_CLOSE_CODES};

const NOW: Millis = Millis(1_000);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    AwaitingInit,
    Authenticating,
    Ready,
    ReadyWithOperation,
    Closed,
}

const SERVER_STATES: [ServerState; 5] = [
    ServerState::AwaitingInit,
    ServerState::Authenticating,
    ServerState::Ready,
    ServerState::ReadyWithOperation,
    ServerState::Closed,
];

fn server_in(state: ServerState, protocol: Subprotocol, config: &ConnectionConfig) -> Audited {
    let mut conn = Audited::new(NOW, protocol, config.clone());
    let legacy = protocol == Subprotocol::GraphqlWs;
    if state == ServerState::Closed {
        conn.handle(NOW, Input::Shutdown);
        return conn;
    }
    if state != ServerState::AwaitingInit {
        conn.text(NOW, r#"{"type":"connection_init"}"#);
    }
    if matches!(state, ServerState::Ready | ServerState::ReadyWithOperation) {
        conn.auth(NOW, AuthVerdict::Accept { ack_payload: None });
    }
    if state == ServerState::ReadyWithOperation {
        let kind = if legacy { "start" } else { "subscribe" };
        let frame = format!(r#"{{"type":"{kind}","id":"op0","payload":{{"query":"{{hello}}"}}}}"#);
        assert!(frame.len() <= config.max_frame_bytes);
        conn.text(NOW, &frame);
        assert_eq!(conn.connection().live_operations(), 1);
    }
    conn
}

fn check_server(text: &str, binary: &[u8], config: &ConnectionConfig) {
    for protocol in [Subprotocol::GraphqlTransportWs, Subprotocol::GraphqlWs] {
        for state in SERVER_STATES {
            // As a text frame.
            let mut conn = server_in(state, protocol, config);
            let effects = conn.handle(NOW, Input::Text(text.to_owned()));
            let closes: Vec<u16> = effects
                .iter()
                .filter_map(|e| match e {
                    Effect::Close { code, .. } => Some(*code),
                    _ => None,
                })
                .collect();
            for code in &closes {
                assert!(
                    SERVER_CLOSE_CODES.contains(code),
                    "undocumented close code {code}"
                );
            }
            if state == ServerState::Closed {
                assert!(
                    effects.is_empty(),
                    "closed connection answered: {effects:?}"
                );
            } else if text.len() > config.max_frame_bytes {
                assert_eq!(closes, [close::MESSAGE_TOO_BIG], "oversized frame");
            } else {
                match protocol {
                    Subprotocol::GraphqlTransportWs => {
                        match transport::ClientMessage::parse(text) {
                            Err(_) => {
                                assert_eq!(closes, [close::BAD_REQUEST], "{state:?} {text:?}")
                            }
                            Ok(msg) => {
                                let expected: &[u16] = match msg {
                                    transport::ClientMessage::ConnectionInit { .. }
                                        if state != ServerState::AwaitingInit =>
                                    {
                                        &[close::TOO_MANY_INITIALISATION_REQUESTS]
                                    }
                                    transport::ClientMessage::Subscribe { ref id, .. } => {
                                        if !matches!(
                                            state,
                                            ServerState::Ready | ServerState::ReadyWithOperation
                                        ) {
                                            &[close::UNAUTHORIZED]
                                        } else if state == ServerState::ReadyWithOperation
                                            && id == "op0"
                                        {
                                            &[close::SUBSCRIBER_ALREADY_EXISTS]
                                        } else {
                                            &[]
                                        }
                                    }
                                    _ => &[],
                                };
                                assert_eq!(closes, expected, "{state:?} {text:?}");
                            }
                        }
                    }
                    Subprotocol::GraphqlWs => match legacy::ClientMessage::parse(text) {
                        Err(_) => {
                            // Answered with an error frame; the connection carries on.
                            assert!(closes.is_empty(), "{state:?} {text:?}: {closes:?}");
                            assert_eq!(effects.len(), 1, "{effects:?}");
                            let Effect::SendText(reply) = &effects[0] else {
                                panic!("bad legacy frame answered with {effects:?}");
                            };
                            let reply: serde_json::Value = serde_json::from_str(reply).unwrap();
                            let kind = reply["type"].as_str().unwrap_or_default();
                            assert!(
                                kind == "error" || kind == "connection_error",
                                "bad legacy frame answered with {reply}"
                            );
                        }
                        Ok(msg) => {
                            let expected: &[u16] = match msg {
                                legacy::ClientMessage::ConnectionInit { .. }
                                    if state != ServerState::AwaitingInit =>
                                {
                                    &[close::TOO_MANY_INITIALISATION_REQUESTS]
                                }
                                legacy::ClientMessage::ConnectionTerminate => &[close::NORMAL],
                                _ => &[],
                            };
                            assert_eq!(closes, expected, "{state:?} {text:?}");
                        }
                    },
                }
            }
            assert_no_violations("text frame", &conn.finish(NOW));

            // As a binary frame: never supported.
            let mut conn = server_in(state, protocol, config);
            let effects = conn.handle(NOW, Input::Binary(binary.to_vec()));
            if state != ServerState::Closed {
                let expected = if binary.len() > config.max_frame_bytes {
                    close::MESSAGE_TOO_BIG
                } else {
                    close::BAD_REQUEST
                };
                assert!(
                    matches!(effects.first(), Some(Effect::Close { code, .. }) if *code == expected),
                    "binary frame answered with {effects:?}"
                );
            }
            assert_no_violations("binary frame", &conn.finish(NOW));
        }
    }
}

fn check_client(text: &str) {
    for protocol in [Subprotocol::GraphqlTransportWs, Subprotocol::GraphqlWs] {
        // Connecting, initialising, ready, ready with an operation, closed.
        for state in 0..5 {
            let mut client = ClientConnection::new(NOW, protocol, ClientConfig::default());
            let mut audit = ClientAudit::new();
            if state >= 1 {
                client.handle_opened(NOW);
            }
            if state >= 2 {
                client.handle_text(NOW, r#"{"type":"connection_ack"}"#);
            }
            if state >= 3 {
                let id = client.subscribe(NOW, "{ hello }", None, None);
                audit.subscribed(&id);
            }
            if state == 4 {
                client.close(NOW, close::NORMAL, "done");
            }
            audit.drain(&mut client);
            let was_closed = client.is_closed();
            client.handle_text(NOW, text);
            let effects = audit.drain(&mut client);
            audit.check_step(&client);
            audit.assert_clean("client frame");
            let closes: Vec<u16> = effects
                .iter()
                .filter_map(|e| match e {
                    ClientEffect::Close { code, .. } => Some(*code),
                    _ => None,
                })
                .collect();
            for code in &closes {
                assert!(
                    CLIENT_CLOSE_CODES.contains(code),
                    "undocumented close code {code}"
                );
            }
            if state == 0 || was_closed {
                assert!(effects.is_empty(), "{effects:?}");
                continue;
            }
            let bad = match protocol {
                Subprotocol::GraphqlTransportWs => transport::ServerMessage::parse(text).is_err(),
                Subprotocol::GraphqlWs => legacy::ServerMessage::parse(text).is_err(),
            };
            if bad {
                assert_eq!(closes, [close::BAD_RESPONSE], "{text:?}");
            }
            client.handle_transport_closed(NOW, close::ABNORMAL_CLOSURE, "");
            audit.drain(&mut client);
            audit.check_end(&client);
            audit.assert_clean("client end");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check_server(&text, data, &ConnectionConfig::default());
    // A small frame bound, so 1009 is reached too.
    let small = ConnectionConfig {
        // Just enough for the frames that set the states up.
        max_frame_bytes: 64,
        ..ConnectionConfig::default()
    };
    check_server(&text, data, &small);
    check_client(&text);
});
