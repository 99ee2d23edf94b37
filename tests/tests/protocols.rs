//! Both subprotocols on real sockets against the demo gateway: queries,
//! subscriptions with `limit`, client complete/stop, `failAt` errors, the
//! close codes, token auth, the HTTP side of `/graphql`.

use serde_json::json;
use std::time::Duration;
use terminus_tests::*;

const HELLO: &str = r#"{ hello(name: "Ada") }"#;

fn ticks(every_ms: u32, extra: &str) -> String {
    format!("subscription {{ ticks(everyMs: {every_ms}{extra}) {{ seq }} }}")
}

/// After a client ended an operation, a ping round trip proves the socket
/// is alive, and a second one after a pause proves nothing more arrives
/// for the ended operation.
async fn assert_silent_after_end(client: &mut Client, id: &str) {
    for _ in 0..2 {
        smol::Timer::after(Duration::from_millis(150)).await;
        client.send(json!({"type": "ping"})).await;
        loop {
            let message = client.recv().await;
            if message["type"] == "pong" {
                break;
            }
            // Only results that crossed our complete on the wire may come
            // before the first pong; none may come after it.
            assert_eq!(message["id"], id, "{message}");
        }
    }
    client.send(json!({"type": "ping"})).await;
    let next = client.recv().await;
    assert_eq!(
        next["type"], "pong",
        "something arrived after complete: {next}"
    );
}

#[test]
fn transport_ws_query_and_subscriptions() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|_| {}).await;
        let mut client = Client::ready(gateway.addr(), TRANSPORT_WS).await;

        client.send(subscribe("q", HELLO)).await;
        let next = client.recv().await;
        assert_eq!(
            next,
            json!({"type": "next", "id": "q", "payload": {"data": {"hello": "Hello, Ada!"}}})
        );
        assert_eq!(client.recv().await, json!({"type": "complete", "id": "q"}));

        client.send(subscribe("t", &ticks(10, ", limit: 3"))).await;
        for seq in 1..=3 {
            let next = client.recv().await;
            assert_eq!(next["type"], "next", "{next}");
            assert_eq!(next["id"], "t");
            assert_eq!(next["payload"]["data"]["ticks"]["seq"], seq);
        }
        assert_eq!(client.recv().await, json!({"type": "complete", "id": "t"}));

        client.send(subscribe("f", &ticks(10, ", failAt: 2"))).await;
        let first = client.recv().await;
        assert_eq!(first["payload"]["data"]["ticks"]["seq"], 1, "{first}");
        let error = client.recv().await;
        assert_eq!(error["type"], "error", "{error}");
        assert_eq!(error["id"], "f");
        assert!(
            error["payload"].as_array().is_some_and(|e| !e.is_empty()),
            "{error}"
        );

        // The same id may be used again once its operation ended.
        client.send(subscribe("f", HELLO)).await;
        assert_eq!(client.recv().await["type"], "next");
        assert_eq!(client.recv().await, json!({"type": "complete", "id": "f"}));

        client.send(subscribe("c", &ticks(20, ""))).await;
        let first = client.recv().await;
        assert_eq!(first["id"], "c");
        client.send(json!({"type": "complete", "id": "c"})).await;
        assert_silent_after_end(&mut client, "c").await;
        let (operations, back) =
            wait_metric(gateway.addr(), "terminus_operations", WAIT, |v| v == 0.0).await;
        assert!(back, "terminus_operations stayed at {operations}");
        assert!(metric(gateway.addr(), "terminus_operations_cancelled_total").await >= 1.0);
    });
}

#[test]
fn legacy_ws_query_and_subscriptions() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|_| {}).await;
        let mut client = Client::ready(gateway.addr(), LEGACY_WS).await;

        client.send(start("q", HELLO)).await;
        assert_eq!(
            client.recv().await,
            json!({"type": "data", "id": "q", "payload": {"data": {"hello": "Hello, Ada!"}}})
        );
        assert_eq!(client.recv().await, json!({"type": "complete", "id": "q"}));

        client.send(start("t", &ticks(10, ", limit: 2"))).await;
        for seq in 1..=2 {
            let data = client.recv().await;
            assert_eq!(data["type"], "data", "{data}");
            assert_eq!(data["payload"]["data"]["ticks"]["seq"], seq);
        }
        assert_eq!(client.recv().await, json!({"type": "complete", "id": "t"}));

        client.send(start("f", &ticks(10, ", failAt: 2"))).await;
        assert_eq!(client.recv().await["type"], "data");
        let error = client.recv().await;
        assert_eq!(error["type"], "error", "{error}");
        assert_eq!(error["id"], "f");

        // stop: the server stops the operation and answers complete.
        client.send(start("s", &ticks(20, ""))).await;
        assert_eq!(client.recv().await["id"], "s");
        client.send(json!({"type": "stop", "id": "s"})).await;
        loop {
            let message = client.recv().await;
            assert_eq!(message["id"], "s", "{message}");
            if message["type"] == "complete" {
                break;
            }
        }
        let (operations, back) =
            wait_metric(gateway.addr(), "terminus_operations", WAIT, |v| v == 0.0).await;
        assert!(back, "terminus_operations stayed at {operations}");

        client.send(json!({"type": "connection_terminate"})).await;
        let closed = client.closed().await;
        assert!(
            closed.code == 1000 || closed.code == 1005 || closed.code == 1006,
            "{closed:?}"
        );
    });
}

#[test]
fn transport_ws_close_codes() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|config| {
            config.timeouts.init = Duration::from_millis(300);
        })
        .await;
        let addr = gateway.addr();

        let mut client = Client::ready(addr, TRANSPORT_WS).await;
        client.send_text("this is not JSON").await;
        assert_eq!(client.closed().await.code, 4400);

        let mut client = Client::connect(addr, &[TRANSPORT_WS]).await.unwrap();
        client.send(subscribe("1", HELLO)).await;
        let closed = client.closed().await;
        assert_eq!(closed.code, 4401, "{closed:?}");

        let mut client = Client::connect(addr, &[TRANSPORT_WS]).await.unwrap();
        let closed = client.closed().await;
        assert_eq!(closed.code, 4408, "{closed:?}");

        let mut client = Client::ready(addr, TRANSPORT_WS).await;
        client.send(subscribe("dup", &ticks(50, ""))).await;
        client.send(subscribe("dup", &ticks(50, ""))).await;
        let closed = client.closed().await;
        assert_eq!(closed.code, 4409, "{closed:?}");
        assert!(closed.reason.contains("dup"), "{closed:?}");

        let mut client = Client::ready(addr, TRANSPORT_WS).await;
        client.send(json!({"type": "connection_init"})).await;
        assert_eq!(client.closed().await.code, 4429);

        for code in [4400, 4401, 4408, 4409, 4429] {
            let series = format!("terminus_connections_closed_total{{code=\"{code}\"}}");
            let (count, seen) = wait_metric(addr, &series, WAIT, |v| v == 1.0).await;
            assert!(seen, "{series} is {count}");
        }
        let (operations, back) = wait_metric(addr, "terminus_operations", WAIT, |v| v == 0.0).await;
        assert!(back, "terminus_operations stayed at {operations}");
        let (connections, gone) =
            wait_metric(addr, "terminus_connections", WAIT, |v| v == 0.0).await;
        assert!(gone, "terminus_connections stayed at {connections}");
    });
}

#[test]
fn static_tokens_gate_connection_init() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|config| {
            config.auth.tokens = vec!["s3cret".to_owned()];
        })
        .await;
        let addr = gateway.addr();
        let mut client = Client::connect(addr, &[TRANSPORT_WS]).await.unwrap();
        client
            .send(json!({"type": "connection_init", "payload": {"token": "wrong"}}))
            .await;
        assert_eq!(client.closed().await.code, 4403);

        let mut client = Client::connect(addr, &[TRANSPORT_WS]).await.unwrap();
        client
            .send(json!({"type": "connection_init", "payload": {"token": "s3cret"}}))
            .await;
        assert_eq!(client.recv().await["type"], "connection_ack");
        client.send(subscribe("q", HELLO)).await;
        assert_eq!(
            client.recv().await["payload"]["data"]["hello"],
            "Hello, Ada!"
        );

        let mut legacy = Client::connect(addr, &[LEGACY_WS]).await.unwrap();
        legacy
            .send(json!({"type": "connection_init", "payload": {}}))
            .await;
        assert_eq!(legacy.recv().await["type"], "connection_error");
    });
}

#[test]
fn subprotocol_negotiation_and_http() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|_| {}).await;
        let addr = gateway.addr();

        let refused = Client::connect(addr, &[])
            .await
            .err()
            .expect("no subprotocol is refused");
        assert!(refused.contains("400"), "{refused}");
        let refused = Client::connect(addr, &["mqtt"])
            .await
            .err()
            .expect("unknown subprotocol is refused");
        assert!(refused.contains("400"), "{refused}");
        let both = Client::connect(addr, &["graphql-ws", "graphql-transport-ws"])
            .await
            .unwrap();
        assert!(
            both.protocol == LEGACY_WS || both.protocol == TRANSPORT_WS,
            "{}",
            both.protocol
        );

        let json_type = [("Content-Type", "application/json")];
        let (status, body) = http(
            addr,
            "POST",
            "/graphql",
            &json_type,
            &json!({"query": HELLO}).to_string(),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap(),
            json!({"data": {"hello": "Hello, Ada!"}})
        );

        let (status, body) = http(
            addr,
            "POST",
            "/graphql",
            &json_type,
            &json!({"query": ticks(10, "")}).to_string(),
        )
        .await;
        assert_eq!(status, 405, "{body}");
        assert!(body.contains("WebSocket"), "{body}");

        let (status, body) = http(addr, "POST", "/graphql", &json_type, "{not json").await;
        assert_eq!(status, 400, "{body}");
        let (status, body) = http(
            addr,
            "POST",
            "/graphql",
            &json_type,
            &json!({"query": "{ nope }"}).to_string(),
        )
        .await;
        assert_eq!(status, 200);
        assert!(body.contains("errors"), "{body}");

        assert_eq!(http(addr, "GET", "/healthz", &[], "").await.0, 200);
        assert_eq!(http(addr, "GET", "/readyz", &[], "").await.0, 200);
        let (status, page) = http(addr, "GET", "/admin", &[], "").await;
        assert_eq!(status, 200);
        assert!(
            page.contains("<svg") && !page.contains("src=\"http"),
            "the page has no external assets"
        );
        let (status, state) = http(addr, "GET", "/admin/state", &[], "").await;
        assert_eq!(status, 200);
        let state: serde_json::Value = serde_json::from_str(&state).unwrap();
        assert!(state["now"]["connections"].is_number(), "{state}");
    });
}

#[test]
fn admin_lists_live_operations() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|_| {}).await;
        let addr = gateway.addr();
        let mut client = Client::ready(addr, TRANSPORT_WS).await;
        client.send(subscribe("live-1", &ticks(50, ""))).await;
        assert_eq!(client.recv().await["id"], "live-1");
        let (_, state) = http(addr, "GET", "/admin/state", &[], "").await;
        let state: serde_json::Value = serde_json::from_str(&state).unwrap();
        let operations = state["operations"].as_array().unwrap();
        assert_eq!(operations.len(), 1, "{state}");
        assert_eq!(operations[0]["id"], "live-1");
        assert_eq!(operations[0]["field"], "ticks");
        assert_eq!(state["now"]["operations"], 1);
    });
}

#[test]
fn oversized_frames_and_the_connection_cap() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|config| {
            config.limits.max_frame_bytes = 4096;
            config.limits.max_connections = 2;
        })
        .await;
        let addr = gateway.addr();

        let mut big = Client::ready(addr, TRANSPORT_WS).await;
        let padding = "x".repeat(5000);
        big.send(subscribe(
            "big",
            &format!("{{ hello(name: \"{padding}\") }}"),
        ))
        .await;
        assert_eq!(big.closed().await.code, 1009);
        drop(big);
        let (connections, gone) =
            wait_metric(addr, "terminus_connections", WAIT, |v| v == 0.0).await;
        assert!(gone, "terminus_connections stayed at {connections}");

        let _first = Client::ready(addr, TRANSPORT_WS).await;
        let _second = Client::ready(addr, LEGACY_WS).await;
        let refused = Client::connect(addr, &[TRANSPORT_WS])
            .await
            .err()
            .expect("a third connection is refused");
        assert!(refused.contains("503"), "{refused}");
        drop(_second);
        let (connections, freed) =
            wait_metric(addr, "terminus_connections", WAIT, |v| v == 1.0).await;
        assert!(freed, "terminus_connections stayed at {connections}");
        let mut third = Client::ready(addr, TRANSPORT_WS).await;
        third.send(subscribe("q", HELLO)).await;
        assert_eq!(
            third.recv().await["payload"]["data"]["hello"],
            "Hello, Ada!"
        );
    });
}
