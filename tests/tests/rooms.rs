//! The demo's rooms and shared clock on real sockets (issue 12, item 2):
//! the `room`, `say` and `clock` fields of `terminus demo`'s schema, served
//! by the gateway in front of the real demo gRPC upstream, with WebSocket
//! clients and `POST /graphql`. Rules: `docs/schema.md`, "The demo's
//! fields". `room` and `clock` are `@shared`: the gateway holds one
//! upstream stream per room (and per clock period) for all its subscribers.

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use terminus_tests::*;

/// Polls `done` every 5 ms for at most [`WAIT`].
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < WAIT, "timed out waiting for {what}");
        smol::Timer::after(Duration::from_millis(5)).await;
    }
}

/// `POST /graphql` of `query`; the response as JSON.
async fn post(gateway: &DemoGateway, query: &str) -> Value {
    let (status, body) = http(
        gateway.addr(),
        "POST",
        "/graphql",
        &[("Content-Type", "application/json")],
        &json!({ "query": query }).to_string(),
    )
    .await;
    let value: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{status}: {body}"));
    assert!(status == 200 || status == 400, "{status}: {body}");
    value
}

/// Whether a message arrives within `limit` (it is returned).
async fn message_within(client: &mut Client, limit: Duration) -> Option<Value> {
    futures_lite::future::or(async { Some(client.next_message().await) }, async {
        smol::Timer::after(limit).await;
        None
    })
    .await
    .map(|message| message.expect("still open"))
}

#[test]
fn say_reaches_each_member_of_its_room_exactly_once_and_a_mass_disconnect_leaves_no_room() {
    const ROOMS: usize = 10;
    const PER_ROOM: usize = 20;
    const SAYS: usize = 3;
    smol::block_on(async {
        let gateway = DemoGateway::start(|_| {}).await;
        let mut clients = Vec::new();
        for i in 0..ROOMS * PER_ROOM {
            let room = i % ROOMS;
            // Both subprotocols.
            let protocol = if i % 2 == 0 { TRANSPORT_WS } else { LEGACY_WS };
            let mut client = Client::ready(gateway.addr(), protocol).await;
            let query =
                format!("subscription {{ room(name: \"room-{room}\") {{ room seq text }} }}");
            if protocol == TRANSPORT_WS {
                client.send(subscribe("r", &query)).await;
            } else {
                client.send(start("r", &query)).await;
            }
            clients.push((room, client));
        }
        let upstream = &gateway.upstream;
        // Every operation joined its room's shared stream, and each of
        // those streams joined its room upstream: one per room.
        let (subscribers, all) =
            wait_metric(gateway.addr(), "terminus_shared_subscribers", WAIT, |v| {
                v == (ROOMS * PER_ROOM) as f64
            })
            .await;
        assert!(all, "{subscribers} shared subscribers");
        wait_until("one upstream subscriber per room", || {
            upstream.room_subscribers() == ROOMS
        })
        .await;
        assert_eq!(upstream.rooms(), ROOMS);
        assert!(upstream.room_counts().iter().all(|(_, n)| *n == 1));
        assert_eq!(
            metric(gateway.addr(), "terminus_shared_streams").await,
            ROOMS as f64
        );

        for k in 1..=SAYS {
            for room in 0..ROOMS {
                let said = post(
                    &gateway,
                    &format!(
                        "mutation {{ say(room: \"room-{room}\", text: \"m{k} for {room}\") }}"
                    ),
                )
                .await;
                assert_eq!(said, json!({"data": {"say": true}}));
            }
        }
        for (room, client) in clients.iter_mut() {
            for k in 1..=SAYS {
                let message = client.recv().await;
                let data = &message["payload"]["data"]["room"];
                assert_eq!(
                    data,
                    &json!({"room": format!("room-{room}"), "seq": k, "text": format!("m{k} for {room}")}),
                    "{message}"
                );
            }
        }
        // Exactly once: nothing else comes to anybody.
        smol::Timer::after(Duration::from_millis(100)).await;
        for (_, client) in clients.iter_mut().take(ROOMS) {
            assert_eq!(
                message_within(client, Duration::from_millis(20)).await,
                None
            );
        }

        // The mass disconnect: every socket dies at once, without a close.
        for (_, client) in clients {
            client.drop_abruptly();
        }
        wait_until("no room left", || {
            upstream.rooms() == 0 && upstream.room_subscribers() == 0
        })
        .await;
        wait_until("no upstream stream left", || upstream.live_streams() == 0).await;
        for series in [
            "terminus_operations",
            "terminus_shared_streams",
            "terminus_shared_subscribers",
        ] {
            let (left, zero) = wait_metric(gateway.addr(), series, WAIT, |v| v == 0.0).await;
            assert!(zero, "{left} {series} left");
        }
        let report = gateway.running.shutdown().await;
        assert_eq!(report.leaked_operations, 0);
    });
}

#[test]
fn a_room_goes_with_its_last_subscriber_at_once_even_without_events() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|_| {}).await;
        let upstream = &gateway.upstream;
        let query = "subscription { room(name: \"quiet\") { seq text } }";
        let mut first = Client::ready(gateway.addr(), TRANSPORT_WS).await;
        first.send(subscribe("q", query)).await;
        let mut second = Client::ready(gateway.addr(), TRANSPORT_WS).await;
        second.send(subscribe("q", query)).await;
        let shared = |n: f64| {
            let addr = gateway.addr();
            async move {
                let (value, ok) =
                    wait_metric(addr, "terminus_shared_subscribers", WAIT, |v| v == n).await;
                assert!(ok, "{value} shared subscribers, not {n}");
            }
        };
        shared(2.0).await;
        // Both share one upstream stream.
        wait_until("the room upstream", || upstream.room_subscribers() == 1).await;
        assert_eq!(upstream.room_counts(), vec![("quiet".to_owned(), 1)]);

        first.send(json!({"type": "complete", "id": "q"})).await;
        shared(1.0).await;
        assert_eq!(upstream.rooms(), 1);
        // The other still gets what is said, numbered on.
        let said = post(
            &gateway,
            "mutation { say(room: \"quiet\", text: \"still here\") }",
        )
        .await;
        assert_eq!(said["data"]["say"], true);
        let message = second.recv().await;
        assert_eq!(
            message["payload"]["data"]["room"],
            json!({"seq": 1, "text": "still here"})
        );
        assert_eq!(
            message_within(&mut first, Duration::from_millis(50)).await,
            None
        );

        // The last one leaves with no event in flight: the room is gone now.
        second.send(json!({"type": "complete", "id": "q"})).await;
        wait_until("no room", || upstream.rooms() == 0).await;
        assert_eq!(upstream.room_subscribers(), 0);
        // A new room of the same name starts over at seq 1.
        second.send(subscribe("q2", query)).await;
        shared(1.0).await;
        wait_until("the room again", || upstream.room_subscribers() == 1).await;
        post(
            &gateway,
            "mutation { say(room: \"quiet\", text: \"again\") }",
        )
        .await;
        assert_eq!(
            second.recv().await["payload"]["data"]["room"],
            json!({"seq": 1, "text": "again"})
        );
    });
}

#[test]
fn two_clock_subscribers_see_the_same_seq_at_the_same_time() {
    const PERIOD_MS: u64 = 50;
    smol::block_on(async {
        let gateway = DemoGateway::start(|_| {}).await;
        let query = "subscription { clock(everyMs: 50) { seq } }";
        let mut a = Client::ready(gateway.addr(), TRANSPORT_WS).await;
        let mut b = Client::ready(gateway.addr(), LEGACY_WS).await;
        a.send(subscribe("c", query)).await;
        b.send(start("c", query)).await;
        // Read both for a while; each tick with when it came.
        let started = Instant::now();
        let mut seen: [Vec<(u64, Instant)>; 2] = [Vec::new(), Vec::new()];
        let seq_of = |message: &Value| message["payload"]["data"]["clock"]["seq"].as_u64().unwrap();
        while started.elapsed() < Duration::from_millis(12 * PERIOD_MS) {
            let (side, message) = futures_lite::future::or(async { (0, a.recv().await) }, async {
                (1, b.recv().await)
            })
            .await;
            let seq = seq_of(&message);
            // The seq is the periods since the upstream's epoch.
            let now = gateway.upstream.clock_now().0 / PERIOD_MS;
            assert!(seq <= now && seq + 3 >= now, "seq {seq} at period {now}");
            seen[side].push((seq, Instant::now()));
        }
        for side in &seen {
            assert!(side.len() >= 5, "{seen:?}");
            assert!(side.windows(2).all(|w| w[1].0 > w[0].0), "{seen:?}");
        }
        // Both saw the same seqs, each at the same time (within a period).
        let mut common = 0;
        for (seq, at) in &seen[0] {
            if let Some((_, other)) = seen[1].iter().find(|(s, _)| s == seq) {
                common += 1;
                let apart = if at > other {
                    *at - *other
                } else {
                    *other - *at
                };
                assert!(
                    apart < Duration::from_millis(PERIOD_MS),
                    "seq {seq} came {apart:?} apart"
                );
            }
        }
        assert!(common >= 5, "{seen:?}");
        // Different periods are different clocks.
        a.send(subscribe(
            "slow",
            "subscription { clock(everyMs: 1000000) { seq } }",
        ))
        .await;
        a.send(json!({"type": "complete", "id": "c"})).await;
        a.send(json!({"type": "complete", "id": "slow"})).await;
    });
}

#[test]
fn bad_room_say_and_clock_input_gets_a_clear_graphql_error() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|_| {}).await;
        let mut client = Client::ready(gateway.addr(), TRANSPORT_WS).await;
        for (query, message) in [
            (
                "subscription { room(name: \"\") { seq } }".to_owned(),
                "room name must not be empty",
            ),
            (
                format!(
                    "subscription {{ room(name: \"{}\") {{ seq }} }}",
                    "r".repeat(65)
                ),
                "room name is 65 bytes, more than the 64 allowed",
            ),
            (
                "subscription { clock(everyMs: 0) { seq } }".to_owned(),
                "clock everyMs must be at least 1, got 0",
            ),
        ] {
            client.send(subscribe("bad", &query)).await;
            let answer = client.recv().await;
            assert_eq!(answer["type"], "error", "{answer}");
            assert_eq!(answer["payload"][0]["message"], message, "{answer}");
            assert_eq!(answer["payload"][0]["extensions"]["code"], "BAD_USER_INPUT");
        }
        for (query, message) in [
            (
                "mutation { say(room: \"\", text: \"x\") }".to_owned(),
                "room name must not be empty",
            ),
            (
                format!(
                    "mutation {{ say(room: \"a\", text: \"{}\") }}",
                    "t".repeat(1025)
                ),
                "text is 1025 bytes, more than the 1024 allowed",
            ),
        ] {
            let answer = post(&gateway, &query).await;
            assert_eq!(answer["errors"][0]["message"], message, "{answer}");
            assert_eq!(answer["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
            assert_eq!(
                answer["errors"][0]["extensions"]["grpcStatus"],
                "INVALID_ARGUMENT"
            );
        }
        // The room and clock errors left nothing behind.
        assert_eq!(gateway.upstream.rooms(), 0);
        wait_until("no stream", || gateway.upstream.live_streams() == 0).await;
    });
}
