//! The closes the core decides, over real sockets: 1009 for a frame above
//! `limits.max_frame_bytes` (both subprotocols, from the core's own size
//! rule and from the WebSocket layer's cap, which the core hears as
//! `FrameTooBig`), the bounded linger after the gateway's close frame,
//! drain (readiness false, 1001 to every connection, done with the last
//! connection), and 4500 after a panic in a connection's task.

use std::time::{Duration, Instant};
use terminus_core::protocol::close;
use terminus_tests::*;

const TICKS: &str = "subscription { ticks(everyMs: 20) { seq } }";

fn operation(protocol: &str, id: &str, query: &str) -> serde_json::Value {
    if protocol == TRANSPORT_WS {
        subscribe(id, query)
    } else {
        start(id, query)
    }
}

fn closed_series(code: u16) -> String {
    format!("terminus_connections_closed_total{{code=\"{code}\"}}")
}

#[test]
fn frames_above_the_limit_close_1009_in_both_subprotocols() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|config| {
            config.limits.max_frame_bytes = 4096;
        })
        .await;
        let addr = gateway.addr();
        // Just above the limit: read whole, refused by the core's size rule.
        // Far above it: refused by the WebSocket layer from the frame's
        // header, reported to the core, which decides the same close.
        for size in [5_000, 200_000] {
            for protocol in [TRANSPORT_WS, LEGACY_WS] {
                let mut client = Client::ready(addr, protocol).await;
                let padding = "x".repeat(size);
                let query = format!("{{ hello(name: \"{padding}\") }}");
                client.send(operation(protocol, "big", &query)).await;
                let closed = client.closed().await;
                assert_eq!(
                    (closed.code, closed.reason.as_str()),
                    (close::MESSAGE_TOO_BIG, "Frame too large"),
                    "{protocol}, {size} bytes"
                );
            }
        }
        let (count, all) = wait_metric(addr, &closed_series(close::MESSAGE_TOO_BIG), WAIT, |v| {
            v == 4.0
        })
        .await;
        assert!(all, "{count} connections counted as closed with 1009");
        let (connections, gone) =
            wait_metric(addr, "terminus_connections", WAIT, |v| v == 0.0).await;
        assert!(gone, "terminus_connections stayed at {connections}");
        // A frame at the limit is still served.
        let mut client = Client::ready(addr, LEGACY_WS).await;
        client.send(start("ok", r#"{ hello(name: "Ada") }"#)).await;
        assert_eq!(
            client.recv().await["payload"]["data"]["hello"],
            "Hello, Ada!"
        );
    });
}

#[test]
fn the_linger_after_the_gateways_close_is_bounded() {
    smol::block_on(async {
        let linger = Duration::from_millis(600);
        let gateway = DemoGateway::start(|config| config.timeouts.close_linger = linger).await;
        let addr = gateway.addr();

        // A client that never answers the close frame: the gateway waits
        // close_linger for it, then drops the connection.
        let mut silent = Client::ready(addr, TRANSPORT_WS).await;
        silent.send(subscribe("s", TICKS)).await;
        assert_eq!(silent.recv().await["id"], "s");
        silent.send_text("not json").await;
        let closed = silent.closed().await;
        assert_eq!(closed.code, close::BAD_REQUEST, "{closed:?}");
        let waited = silent.tcp_end(WAIT).await;
        eprintln!("silent client: dropped {waited:?} after the close (close_linger {linger:?})");
        assert!(
            waited >= linger - Duration::from_millis(200),
            "dropped after {waited:?}, before the linger of {linger:?}"
        );
        assert!(
            waited < linger + Duration::from_secs(3),
            "dropped after {waited:?}, the linger is {linger:?}"
        );
        let (operations, cancelled) =
            wait_metric(addr, "terminus_operations", WAIT, |v| v == 0.0).await;
        assert!(cancelled, "terminus_operations stayed at {operations}");

        // The same after a too-big frame, whose rest the gateway cannot parse.
        let mut big = Client::ready(addr, LEGACY_WS).await;
        let padding = "x".repeat(1 << 20);
        big.send(start("big", &format!("{{ hello(name: \"{padding}\") }}")))
            .await;
        assert_eq!(big.closed().await.code, close::MESSAGE_TOO_BIG);
        let waited = big.tcp_end(WAIT).await;
        assert!(
            waited < linger + Duration::from_secs(3),
            "dropped after {waited:?}, the linger is {linger:?}"
        );
    });
}

#[test]
fn a_client_that_answers_the_close_ends_the_linger_at_once() {
    smol::block_on(async {
        let linger = Duration::from_secs(20);
        let gateway = DemoGateway::start(|config| config.timeouts.close_linger = linger).await;
        let addr = gateway.addr();
        let mut client = Client::ready(addr, LEGACY_WS).await;
        client
            .send(serde_json::json!({"type": "connection_terminate"}))
            .await;
        let closed = client.closed().await;
        assert_eq!(closed.code, close::NORMAL, "{closed:?}");
        let started = Instant::now();
        client.answer_close().await;
        let (connections, gone) =
            wait_metric(addr, "terminus_connections", WAIT, |v| v == 0.0).await;
        assert!(gone, "terminus_connections stayed at {connections}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the gateway waited {:?} although the client answered",
            started.elapsed()
        );
        assert_eq!(metric(addr, &closed_series(close::NORMAL)).await, 1.0);
    });
}

#[test]
fn drain_turns_readiness_false_closes_every_connection_with_1001_and_ends_with_the_last() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|config| {
            // Neither bound is reached: the clients answer the close frames,
            // and the drain ends when the last connection has.
            config.timeouts.close_linger = Duration::from_secs(20);
            config.timeouts.drain = Duration::from_secs(30);
        })
        .await;
        let addr = gateway.addr();
        let mut clients = Vec::new();
        for (i, protocol) in [TRANSPORT_WS, LEGACY_WS, TRANSPORT_WS, LEGACY_WS]
            .into_iter()
            .enumerate()
        {
            let mut client = Client::ready(addr, protocol).await;
            let id = format!("s{i}");
            client.send(operation(protocol, &id, TICKS)).await;
            assert_eq!(client.recv().await["id"], id);
            clients.push(client);
        }
        assert_eq!(http(addr, "GET", "/readyz", &[], "").await.0, 200);
        assert_eq!(metric(addr, "terminus_connections").await, 4.0);

        let DemoGateway { running, upstream } = gateway;
        let started = Instant::now();
        let drain = smol::spawn(running.shutdown());
        for client in &mut clients {
            let closed = client.closed().await;
            assert_eq!(
                (closed.code, closed.reason.as_str()),
                (close::GOING_AWAY, "Server shutting down")
            );
            // Readiness turned false before the connections were closed.
            assert_eq!(http(addr, "GET", "/readyz", &[], "").await.0, 503);
        }
        for client in &mut clients {
            client.answer_close().await;
        }
        let report = within(WAIT, "the drain", drain).await;
        eprintln!("drain of 4 answering connections took {:?}", report.took);
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "the drain took {:?}; it should end with the last connection",
            report.took
        );
        assert_eq!(report.forced_connections, 0, "{report:?}");
        assert_eq!(report.leaked_operations, 0, "{report:?}");
        drop(upstream);
    });
}

#[test]
fn a_panic_in_a_connections_task_closes_it_with_4500_from_the_core() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|config| config.testing.panic_trigger = true).await;
        let addr = gateway.addr();
        for (i, protocol) in [TRANSPORT_WS, LEGACY_WS].into_iter().enumerate() {
            let mut victim = Client::ready(addr, protocol).await;
            victim.send(operation(protocol, "live", TICKS)).await;
            assert_eq!(victim.recv().await["id"], "live");
            let mut boom = operation(protocol, "boom", "query __terminusPanic { hello }");
            boom["payload"]["operationName"] = "__terminusPanic".into();
            victim.send(boom).await;
            let closed = victim.closed().await;
            assert_eq!(
                (closed.code, closed.reason.as_str()),
                (close::INTERNAL_SERVER_ERROR, "Internal server error"),
                "{protocol}"
            );
            victim.answer_close().await;
            let count = (i + 1) as f64;
            assert_eq!(metric(addr, "terminus_panics_total").await, count);
            let (value, counted) = wait_metric(
                addr,
                &closed_series(close::INTERNAL_SERVER_ERROR),
                WAIT,
                |v| v == count,
            )
            .await;
            assert!(counted, "{value} closes with 4500 counted");
            // Its live operation was cancelled by the core's close.
            let (value, gone) = wait_metric(addr, "terminus_operations", WAIT, |v| v == 0.0).await;
            assert!(gone, "terminus_operations stayed at {value}");
            let (value, gone) = wait_metric(addr, "terminus_connections", WAIT, |v| v == 0.0).await;
            assert!(gone, "terminus_connections stayed at {value}");
        }
    });
}
