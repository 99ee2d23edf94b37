//! `client_lifecycle`: an arbitrary sequence of application calls, server
//! frames (valid and malformed, for live, ended and unknown ids), timer
//! firings and transport closes applied to a `ClientConnection`, audited
//! after every step; at the end the transport closes, time runs past every
//! deadline, and the client is closed with nothing active and no timer.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::time::Duration;
use terminus_core::client::{ClientConfig, ClientConnection, ClientEffect};
use terminus_core::protocol::{close, Subprotocol};
use terminus_core::Millis;
use terminus_fuzz::{ArbObject, ArbQuery, ClientAudit, ServerFrameSpec, CLIENT_CLOSE_CODES};

#[derive(Debug, Arbitrary)]
enum Step {
    /// The socket opened.
    Opened,
    /// The application requests an operation.
    Subscribe {
        query: ArbQuery,
        variables: Option<ArbObject>,
        operation_name: Option<String>,
    },
    /// The application stops the n-th id it was given (live or not).
    Complete(u8),
    /// The application stops an id it was never given.
    CompleteUnknown(String),
    /// The application closes the connection.
    Close(u16, String),
    /// A frame from the server.
    Frame(ServerFrameSpec),
    /// Time passes by this many ms, then the timer fires (possibly early).
    TimeoutAfter(u16),
    /// Time jumps to the next deadline, which fires.
    FireDue,
    /// The socket closed with this code.
    TransportClosed(u16, String),
}

#[derive(Debug, Arbitrary)]
struct Scenario {
    legacy: bool,
    ack_timeout_ms: u16,
    ping_interval_ms: u16,
    connection_params: Option<ArbObject>,
    steps: Vec<Step>,
}

/// Drains the client's effects through the auditor and checks them; a
/// `Close` carries either the code the application asked for or one the
/// client picks on its own (documented).
fn drain(audit: &mut ClientAudit, client: &mut ClientConnection, app_code: Option<u16>) {
    let was_closed = audit.is_closed();
    for effect in audit.drain(client) {
        match effect {
            ClientEffect::Close { code, reason } => {
                assert!(
                    reason.len() <= 123,
                    "close reason of {} bytes",
                    reason.len()
                );
                assert!(!was_closed, "Close after the connection closed");
                assert!(
                    Some(code) == app_code || CLIENT_CLOSE_CODES.contains(&code),
                    "undocumented close code {code}"
                );
            }
            ClientEffect::SendText(text) => {
                let frame: Value = serde_json::from_str(&text).expect("client sent non-JSON");
                assert!(
                    frame.get("type").is_some_and(Value::is_string),
                    "client frame without a type: {text}"
                );
            }
            ClientEffect::Event(_) => {}
        }
    }
    audit.check_step(client);
    audit.assert_clean("step");
}

fuzz_target!(|scenario: Scenario| {
    let protocol = if scenario.legacy {
        Subprotocol::GraphqlWs
    } else {
        Subprotocol::GraphqlTransportWs
    };
    let config = ClientConfig {
        ack_timeout: Duration::from_millis(scenario.ack_timeout_ms.into()),
        ping_interval: Duration::from_millis(scenario.ping_interval_ms.into()),
        connection_params: scenario
            .connection_params
            .as_ref()
            .map(|p| Value::Object(p.0.clone())),
    };
    let mut now = Millis(1_000);
    let mut client = ClientConnection::new(now, protocol, config);
    let mut audit = ClientAudit::new();
    let mut ids: Vec<String> = Vec::new();
    for step in scenario.steps.iter().take(256) {
        match step {
            Step::Opened => client.handle_opened(now),
            Step::Subscribe {
                query,
                variables,
                operation_name,
            } => {
                let id = client.subscribe(
                    now,
                    &query.0,
                    variables.as_ref().map(|v| v.0.clone()),
                    operation_name.as_deref(),
                );
                audit.subscribed(&id);
                ids.push(id);
            }
            Step::Complete(n) => {
                if !ids.is_empty() {
                    let id = ids[usize::from(*n) % ids.len()].clone();
                    client.complete(now, &id);
                    audit.completed(&id);
                }
            }
            Step::CompleteUnknown(id) => {
                if !ids.contains(id) {
                    client.complete(now, id);
                }
            }
            Step::Close(code, reason) => client.close(now, *code, reason),
            Step::Frame(frame) => client.handle_text(now, &frame.to_text(protocol)),
            Step::TimeoutAfter(ms) => {
                now = now + Duration::from_millis((*ms).into());
                client.handle_timeout(now);
            }
            Step::FireDue => {
                for _ in 0..8 {
                    match client.poll_timeout() {
                        Some(deadline) => {
                            now = now.max(deadline);
                            client.handle_timeout(now);
                            drain(&mut audit, &mut client, None);
                        }
                        None => break,
                    }
                    if client.poll_timeout().is_none_or(|d| d > now) {
                        break;
                    }
                }
                assert!(
                    client.poll_timeout().is_none_or(|d| d > now),
                    "client timer still due after 8 firings"
                );
            }
            Step::TransportClosed(code, reason) => {
                client.handle_transport_closed(now, *code, reason)
            }
        }
        let app_code = match step {
            Step::Close(code, _) => Some(*code),
            _ => None,
        };
        drain(&mut audit, &mut client, app_code);
    }
    // The end: time runs past every deadline, then the transport closes.
    now = now + Duration::from_secs(24 * 3600);
    client.handle_timeout(now);
    drain(&mut audit, &mut client, None);
    client.handle_transport_closed(now, close::ABNORMAL_CLOSURE, "");
    drain(&mut audit, &mut client, None);
    audit.check_end(&client);
    audit.assert_clean("end");
    assert_eq!(client.poll_timeout(), None);
});
