//! Faults confined to where they happen: an upstream that stops mid-stream
//! (clients get GraphQL errors, nothing leaks, a restart on the same port is
//! picked up without restarting the gateway), and a panic inside one
//! connection (closed with 4500, counted, everyone else keeps going).

use std::time::{Duration, Instant};
use terminus::demo_upstream::DemoUpstream;
use terminus_tests::*;

const TICKS: &str = "subscription { ticks(everyMs: 20) { seq } }";

#[test]
fn upstream_stopping_mid_stream_fails_operations_and_a_restart_is_picked_up() {
    smol::block_on(async {
        let mut gateway = DemoGateway::start(|_| {}).await;
        let addr = gateway.addr();
        let upstream_addr = gateway.upstream.local_addr();
        let mut transport = Client::ready(addr, TRANSPORT_WS).await;
        let mut legacy = Client::ready(addr, LEGACY_WS).await;
        transport.send(subscribe("a", TICKS)).await;
        transport.send(subscribe("b", TICKS)).await;
        legacy.send(start("c", TICKS)).await;
        let mut seen = std::collections::BTreeSet::new();
        while seen.len() < 2 {
            seen.insert(transport.recv().await["id"].as_str().unwrap().to_owned());
        }
        assert_eq!(legacy.recv().await["id"], "c");
        assert_eq!(metric(addr, "terminus_upstream_streams").await, 3.0);

        gateway.upstream.stop().await;

        // Every operation ends with a GraphQL error for it.
        let mut failed = std::collections::BTreeSet::new();
        while failed.len() < 2 {
            let message = transport.recv().await;
            if message["type"] == "error" {
                let errors = message["payload"].as_array().expect("errors");
                assert!(!errors.is_empty(), "{message}");
                failed.insert(message["id"].as_str().unwrap().to_owned());
            } else {
                assert_eq!(message["type"], "next", "{message}");
            }
        }
        loop {
            let message = legacy.recv().await;
            if message["type"] == "error" {
                assert_eq!(message["id"], "c");
                break;
            }
            assert_eq!(message["type"], "data", "{message}");
        }
        for series in ["terminus_operations", "terminus_upstream_streams"] {
            let (value, back) = wait_metric(addr, series, WAIT, |v| v == 0.0).await;
            assert!(back, "{series} stayed at {value}");
        }

        // The upstream comes back on the same port; new subscriptions work
        // once the gateway's reconnect backoff lets it try again.
        gateway.upstream = DemoUpstream::start(upstream_addr)
            .await
            .expect("restart on the same port");
        let deadline = Instant::now() + WAIT;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let id = format!("again-{attempt}");
            transport
                .send(subscribe(
                    &id,
                    "subscription { ticks(everyMs: 10, limit: 2) { seq } }",
                ))
                .await;
            let message = transport.recv().await;
            assert_eq!(message["id"], id.as_str(), "{message}");
            if message["type"] == "next" {
                assert_eq!(message["payload"]["data"]["ticks"]["seq"], 1);
                assert_eq!(transport.recv().await["payload"]["data"]["ticks"]["seq"], 2);
                assert_eq!(transport.recv().await["type"], "complete");
                break;
            }
            assert_eq!(message["type"], "error", "{message}");
            assert!(
                Instant::now() < deadline,
                "the restarted upstream was never used: {message}"
            );
            smol::Timer::after(Duration::from_millis(100)).await;
        }
        assert_eq!(metric(addr, "terminus_upstream_connections").await, 1.0);
        let (value, back) = wait_metric(addr, "terminus_operations", WAIT, |v| v == 0.0).await;
        assert!(back, "terminus_operations stayed at {value}");
    });
}

#[test]
fn a_panic_closes_only_its_connection_with_4500() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|config| config.testing.panic_trigger = true).await;
        let addr = gateway.addr();
        let mut bystander = Client::ready(addr, TRANSPORT_WS).await;
        bystander.send(subscribe("live", TICKS)).await;
        assert_eq!(bystander.recv().await["id"], "live");

        let mut victim = Client::ready(addr, LEGACY_WS).await;
        victim.send(start("doomed", TICKS)).await;
        assert_eq!(victim.recv().await["id"], "doomed");
        victim
            .send(serde_json::json!({
                "type": "start", "id": "boom",
                "payload": {"query": "query __terminusPanic { hello }", "operationName": "__terminusPanic"}
            }))
            .await;
        let closed = victim.closed().await;
        assert_eq!(closed.code, 4500, "{closed:?}");

        assert_eq!(metric(addr, "terminus_panics_total").await, 1.0);
        // The victim's operations are gone; the bystander's is untouched.
        let (value, settled) = wait_metric(addr, "terminus_operations", WAIT, |v| v == 1.0).await;
        assert!(
            settled,
            "terminus_operations is {value}, expected the bystander's 1"
        );
        let (value, settled) =
            wait_metric(addr, "terminus_upstream_streams", WAIT, |v| v == 1.0).await;
        assert!(settled, "terminus_upstream_streams is {value}");
        let before = bystander.recv().await["payload"]["data"]["ticks"]["seq"]
            .as_i64()
            .unwrap();
        let after = bystander.recv().await["payload"]["data"]["ticks"]["seq"]
            .as_i64()
            .unwrap();
        assert_eq!(after, before + 1);

        // And the gateway still takes new connections.
        let mut newcomer = Client::ready(addr, TRANSPORT_WS).await;
        newcomer
            .send(subscribe("q", r#"{ hello(name: "again") }"#))
            .await;
        assert_eq!(
            newcomer.recv().await["payload"]["data"]["hello"],
            "Hello, again!"
        );
    });
}

#[test]
fn the_panic_trigger_is_off_by_default() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|_| {}).await;
        let addr = gateway.addr();
        let mut client = Client::ready(addr, TRANSPORT_WS).await;
        client
            .send(serde_json::json!({
                "type": "subscribe", "id": "boom",
                "payload": {"query": "query __terminusPanic { hello(name: \"x\") }", "operationName": "__terminusPanic"}
            }))
            .await;
        assert_eq!(client.recv().await["payload"]["data"]["hello"], "Hello, x!");
        assert_eq!(metric(addr, "terminus_panics_total").await, 0.0);
    });
}

#[test]
fn a_panic_in_an_operation_task_ends_only_that_operation() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|config| config.testing.panic_trigger = true).await;
        let addr = gateway.addr();
        let mut client = Client::ready(addr, TRANSPORT_WS).await;
        client.send(subscribe("live", TICKS)).await;
        assert_eq!(client.recv().await["id"], "live");
        client
            .send(serde_json::json!({
                "type": "subscribe", "id": "boom",
                "payload": {"query": "query __terminusPanicOperation { hello }", "operationName": "__terminusPanicOperation"}
            }))
            .await;
        loop {
            let message = client.recv().await;
            if message["id"] == "boom" {
                assert_eq!(message["type"], "error", "{message}");
                assert_eq!(
                    message["payload"][0]["extensions"]["code"], "INTERNAL_SERVER_ERROR",
                    "{message}"
                );
                break;
            }
            assert_eq!(message["id"], "live", "{message}");
        }
        assert_eq!(metric(addr, "terminus_panics_total").await, 1.0);
        // The connection and its other operation go on.
        let seq = client.recv().await["payload"]["data"]["ticks"]["seq"]
            .as_i64()
            .unwrap();
        assert!(seq >= 2);
        let (value, settled) = wait_metric(addr, "terminus_operations", WAIT, |v| v == 1.0).await;
        assert!(settled, "terminus_operations is {value}");
    });
}
