//! `@shared` subscriptions on real sockets (docs/schema.md, "`@shared`"):
//! the demo schema with `ticks` marked `@shared`, the gateway in this
//! process in front of the demo gRPC upstream, WebSocket clients of both
//! subprotocols. Many clients share one upstream stream, a joiner gets the
//! stream's messages from then on, the last subscriber leaving resets the
//! stream at once even when the upstream is silent, an upstream failure
//! reaches every subscriber, and a mass disconnect leaves nothing.

use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use terminus_tests::*;

const TICKS: &str = r#"method: "terminus.demo.v1.Demo/Ticks")"#;

async fn gateway() -> DemoGateway {
    DemoGateway::start_with_schema(
        |sdl| {
            assert!(sdl.contains(TICKS));
            sdl.replacen(TICKS, &format!("{TICKS} @shared"), 1)
        },
        |_| {},
    )
    .await
}

/// A ready client of `protocol` with `query` subscribed as `id`.
async fn subscriber(addr: std::net::SocketAddr, protocol: &str, id: &str, query: &str) -> Client {
    let mut client = Client::ready(addr, protocol).await;
    let message = if protocol == TRANSPORT_WS {
        subscribe(id, query)
    } else {
        start(id, query)
    };
    client.send(message).await;
    client
}

fn protocol(i: usize) -> &'static str {
    if i % 2 == 0 {
        TRANSPORT_WS
    } else {
        LEGACY_WS
    }
}

/// The `seq` of a `next`/`data` message at response key `key`.
fn seq(message: &Value, key: &str) -> i64 {
    assert!(
        matches!(message["type"].as_str(), Some("next" | "data")),
        "{message}"
    );
    message["payload"]["data"][key]["seq"]
        .as_i64()
        .unwrap_or_else(|| panic!("no seq in {message}"))
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < WAIT,
            "{what} did not happen within {WAIT:?}"
        );
        smol::Timer::after(Duration::from_millis(5)).await;
    }
}

#[test]
fn many_clients_share_one_upstream_stream_and_a_joiner_gets_the_same_seqs() {
    smol::block_on(async {
        let gw = gateway().await;
        let addr = gw.addr();
        let mut clients = Vec::new();
        for i in 0..40 {
            // Different selections and aliases share the stream.
            let query = if i % 3 == 0 {
                "subscription { t: ticks(everyMs: 40) { seq __typename } }"
            } else {
                "subscription { ticks(everyMs: 40) { seq } }"
            };
            clients.push(subscriber(addr, protocol(i), "s", query).await);
        }
        // A different period is another key, so another stream.
        let mut other = subscriber(
            addr,
            TRANSPORT_WS,
            "o",
            "subscription { ticks(everyMs: 45) { seq } }",
        )
        .await;
        let mut firsts = Vec::new();
        for (i, client) in clients.iter_mut().enumerate() {
            let key = if i % 3 == 0 { "t" } else { "ticks" };
            firsts.push(seq(&within(WAIT, "a tick", client.recv()).await, key));
        }
        assert_eq!(seq(&within(WAIT, "a tick", other.recv()).await, "ticks"), 1);
        assert_eq!(gw.upstream.live_streams(), 2, "one upstream stream per key");
        assert_eq!(metric(addr, "terminus_shared_streams").await, 2.0);
        assert_eq!(metric(addr, "terminus_shared_subscribers").await, 41.0);
        assert_eq!(metric(addr, "terminus_upstream_streams").await, 2.0);
        assert_eq!(metric(addr, "terminus_operations").await, 41.0);
        // The first subscriber saw tick 1; later ones joined a running
        // stream and got what came from then on.
        assert_eq!(firsts[0], 1);
        assert!(firsts.iter().all(|s| *s >= 1));

        // Let the stream run, then join: the joiner's first tick is one the
        // others see too, with the same seq.
        smol::Timer::after(Duration::from_millis(200)).await;
        let mut joiner = subscriber(
            addr,
            LEGACY_WS,
            "j",
            "subscription { ticks(everyMs: 40) { seq } }",
        )
        .await;
        let joined_at = seq(
            &within(WAIT, "the joiner's tick", joiner.recv()).await,
            "ticks",
        );
        assert!(joined_at > 1, "a joiner does not get a stream of its own");
        assert_eq!(gw.upstream.live_streams(), 2);
        let next = seq(
            &within(WAIT, "the joiner's second tick", joiner.recv()).await,
            "ticks",
        );
        assert_eq!(next, joined_at + 1, "no tick skipped");
        // Client 1 (an unaliased subscriber) sees joined_at and joined_at + 1 too, in order.
        let mut seen = Vec::new();
        while seen.last().copied().unwrap_or(0) < next {
            seen.push(seq(
                &within(WAIT, "client 1's ticks", clients[1].recv()).await,
                "ticks",
            ));
        }
        assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "{seen:?}");
        assert!(
            seen.contains(&joined_at) && seen.contains(&next),
            "{seen:?}"
        );
        // Everyone leaves: both streams are reset.
        drop(clients);
        drop(joiner);
        drop(other);
        eventually("every shared stream is reset", || {
            gw.upstream.live_streams() == 0
        })
        .await;
        let (_, ok) = wait_metric(addr, "terminus_shared_streams", WAIT, |v| v == 0.0).await;
        assert!(ok);
        assert_eq!(metric(addr, "terminus_shared_subscribers").await, 0.0);
    });
}

#[test]
fn the_last_subscriber_leaving_resets_a_silent_stream_at_once() {
    smol::block_on(async {
        let gw = gateway().await;
        let addr = gw.addr();
        let query = "subscription { ticks(everyMs: 60000) { seq } }";
        let mut a = subscriber(addr, TRANSPORT_WS, "a", query).await;
        let mut b = subscriber(addr, LEGACY_WS, "b", query).await;
        let c = subscriber(addr, TRANSPORT_WS, "c", query).await;
        let (_, ok) = wait_metric(addr, "terminus_shared_subscribers", WAIT, |v| v == 3.0).await;
        assert!(ok, "three subscribers");
        eventually("the upstream stream is open", || {
            gw.upstream.live_streams() == 1
        })
        .await;
        let cancelled_before = gw.upstream.cancelled_streams();

        // The first completes, the second's socket vanishes: the stream stays.
        a.send(serde_json::json!({"type": "complete", "id": "a"}))
            .await;
        c.drop_abruptly();
        let (_, ok) = wait_metric(addr, "terminus_shared_subscribers", WAIT, |v| v == 1.0).await;
        assert!(ok, "one subscriber left");
        assert_eq!(gw.upstream.live_streams(), 1);
        assert_eq!(metric(addr, "terminus_shared_streams").await, 1.0);

        // The last one stops: reset at once, although no tick will come for a minute.
        let stopped = Instant::now();
        b.send(serde_json::json!({"type": "stop", "id": "b"})).await;
        eventually("the silent stream is reset", || {
            gw.upstream.live_streams() == 0
        })
        .await;
        let took = stopped.elapsed();
        assert!(took < Duration::from_secs(1), "reset took {took:?}");
        eventually("the upstream saw the cancel", || {
            gw.upstream.cancelled_streams() > cancelled_before
        })
        .await;
        assert_eq!(metric(addr, "terminus_shared_streams").await, 0.0);
        assert_eq!(metric(addr, "terminus_upstream_streams").await, 0.0);
        let (_, ok) = wait_metric(addr, "terminus_operations", WAIT, |v| v == 0.0).await;
        assert!(ok);
    });
}

#[test]
fn an_upstream_failure_reaches_every_subscriber() {
    smol::block_on(async {
        let gw = gateway().await;
        let addr = gw.addr();
        let query = "subscription { ticks(everyMs: 300, failAt: 3) { seq } }";
        let mut clients = Vec::new();
        for i in 0..20 {
            clients.push(subscriber(addr, protocol(i), "f", query).await);
        }
        let mut errors = Vec::new();
        for client in &mut clients {
            loop {
                let message = within(WAIT, "the failure", client.recv()).await;
                match message["type"].as_str() {
                    Some("next" | "data") => continue,
                    // graphql-transport-ws: `error` with the errors;
                    // graphql-ws: `error` with the errors too.
                    Some("error") => {
                        let payload = &message["payload"];
                        let first = if payload.is_array() {
                            &payload[0]
                        } else {
                            payload
                        };
                        errors.push((
                            first["extensions"]["code"].clone(),
                            first["message"].clone(),
                        ));
                        break;
                    }
                    other => panic!("unexpected {other:?}: {message}"),
                }
            }
        }
        assert_eq!(errors.len(), 20);
        assert!(errors.iter().all(|e| e == &errors[0]), "{errors:?}");
        assert_ne!(errors[0].0, Value::Null, "{errors:?}");
        assert_eq!(gw.upstream.live_streams(), 0);
        let (_, ok) = wait_metric(addr, "terminus_shared_streams", WAIT, |v| v == 0.0).await;
        assert!(ok);
        let (_, ok) = wait_metric(addr, "terminus_operations", WAIT, |v| v == 0.0).await;
        assert!(ok);
    });
}

#[test]
fn a_mass_disconnect_leaves_no_shared_stream_operation_or_upstream_stream() {
    const CLIENTS: usize = 500;
    smol::block_on(async {
        let gw = gateway().await;
        let addr = gw.addr();
        let mut pending = Vec::new();
        for i in 0..CLIENTS {
            pending.push(smol::spawn(async move {
                let query = format!(
                    "subscription {{ ticks(everyMs: {}) {{ seq }} }}",
                    100 + i % 5
                );
                let mut client = subscriber(addr, protocol(i), "m", &query).await;
                let first = within(WAIT, "a tick", client.recv()).await;
                seq(&first, "ticks");
                client
            }));
        }
        let mut clients = Vec::new();
        for task in pending {
            clients.push(within(WAIT * 3, "500 subscriptions", task).await);
        }
        assert_eq!(metric(addr, "terminus_shared_streams").await, 5.0);
        assert_eq!(
            metric(addr, "terminus_shared_subscribers").await,
            CLIENTS as f64
        );
        assert_eq!(
            gw.upstream.live_streams(),
            5,
            "5 keys, 5 upstream streams for 500 clients"
        );
        for client in clients {
            client.drop_abruptly();
        }
        let dropped = Instant::now();
        for series in [
            "terminus_shared_streams",
            "terminus_shared_subscribers",
            "terminus_operations",
            "terminus_upstream_streams",
            "terminus_connections",
        ] {
            let (value, ok) = wait_metric(addr, series, Duration::from_secs(2), |v| v == 0.0).await;
            assert!(ok, "{series} is {value} 2 s after the disconnect");
        }
        eventually("the upstream runs no stream", || {
            gw.upstream.live_streams() == 0
        })
        .await;
        eprintln!("back to zero after {:?}", dropped.elapsed());
        let (status, body) = http(addr, "GET", "/admin/state", &[], "").await;
        assert_eq!(status, 200);
        let state: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(state["shared"], serde_json::json!([]), "{state}");
    });
}

#[test]
fn admin_lists_shared_streams_with_their_subscriber_counts() {
    smol::block_on(async {
        let gw = gateway().await;
        let addr = gw.addr();
        let mut clients = Vec::new();
        for i in 0..3 {
            clients.push(
                subscriber(
                    addr,
                    protocol(i),
                    "x",
                    "subscription { ticks(everyMs: 50, limit: 1000) { seq } }",
                )
                .await,
            );
        }
        for client in &mut clients {
            within(WAIT, "a tick", client.recv()).await;
        }
        let (status, body) = http(addr, "GET", "/admin/state", &[], "").await;
        assert_eq!(status, 200);
        let state: Value = serde_json::from_str(&body).unwrap();
        let shared = state["shared"].as_array().expect("shared list");
        assert_eq!(shared.len(), 1, "{state}");
        assert_eq!(shared[0]["subscribers"], 3);
        let key = shared[0]["key"].as_str().unwrap();
        assert!(
            key.contains("\"everyMs\":50") && key.contains("\"limit\":1000"),
            "{key}"
        );
        assert!(shared[0]["field"].as_str().unwrap().contains("Ticks"));
        assert_eq!(state["now"]["shared_streams"], 1);
        assert_eq!(state["now"]["shared_subscribers"], 3);
    });
}

#[test]
fn two_thousand_clients_in_twenty_rooms_each_get_their_rooms_say_once_and_leave_no_room() {
    const ROOMS: usize = 20;
    const CLIENTS: usize = 2_000;
    smol::block_on(async {
        let gw = DemoGateway::start(|_| {}).await;
        let addr = gw.addr();
        let mut pending = Vec::with_capacity(CLIENTS);
        for i in 0..CLIENTS {
            pending.push(smol::spawn(async move {
                let room = i % ROOMS;
                let query =
                    format!("subscription {{ room(name: \"r{room}\") {{ room seq text }} }}");
                (room, subscriber(addr, protocol(i), "r", &query).await)
            }));
        }
        let mut clients = Vec::with_capacity(CLIENTS);
        for task in pending {
            clients.push(within(WAIT * 6, "2,000 subscriptions", task).await);
        }
        let (n, all) = wait_metric(addr, "terminus_shared_subscribers", WAIT * 6, |v| {
            v == CLIENTS as f64
        })
        .await;
        assert!(all, "{n} shared subscribers");
        eventually("one upstream stream per room", || {
            gw.upstream.rooms() == ROOMS
        })
        .await;
        assert_eq!(metric(addr, "terminus_shared_streams").await, ROOMS as f64);
        assert_eq!(gw.upstream.live_streams(), ROOMS);

        for room in 0..ROOMS {
            let body = serde_json::json!({
                "query": format!("mutation {{ say(room: \"r{room}\", text: \"hello {room}\") }}")
            })
            .to_string();
            let (status, answer) = http(
                addr,
                "POST",
                "/graphql",
                &[("Content-Type", "application/json")],
                &body,
            )
            .await;
            assert_eq!(status, 200, "{answer}");
            assert!(answer.contains("\"say\":true"), "{answer}");
        }
        // Each member gets its room's message, once, and nothing else.
        let mut checks = Vec::with_capacity(CLIENTS);
        for (room, mut client) in clients {
            checks.push(smol::spawn(async move {
                let message = within(WAIT * 3, "the room's message", client.recv()).await;
                let data = &message["payload"]["data"]["room"];
                assert_eq!(data["room"], format!("r{room}"), "{message}");
                assert_eq!(data["text"], format!("hello {room}"), "{message}");
                assert_eq!(data["seq"], 1, "{message}");
                let more =
                    futures_lite::future::or(async { Some(client.next_message().await) }, async {
                        smol::Timer::after(Duration::from_millis(300)).await;
                        None
                    })
                    .await;
                assert!(more.is_none(), "a second message: {more:?}");
                client
            }));
        }
        let mut clients = Vec::with_capacity(CLIENTS);
        for check in checks {
            clients.push(within(WAIT * 6, "every member's message", check).await);
        }
        for client in clients {
            client.drop_abruptly();
        }
        let dropped = Instant::now();
        eventually("no room left", || {
            gw.upstream.rooms() == 0 && gw.upstream.room_subscribers() == 0
        })
        .await;
        eventually("no upstream stream left", || {
            gw.upstream.live_streams() == 0
        })
        .await;
        for series in [
            "terminus_shared_streams",
            "terminus_shared_subscribers",
            "terminus_operations",
            "terminus_upstream_streams",
        ] {
            let (left, zero) = wait_metric(addr, series, WAIT, |v| v == 0.0).await;
            assert!(zero, "{left} {series} left");
        }
        eprintln!("2,000 clients gone, 0 rooms after {:?}", dropped.elapsed());
    });
}

/// Says `count` messages in `room` over `publisher` (graphql-transport-ws),
/// `window` mutations in flight at a time.
async fn say_many(publisher: &mut Client, room: &str, count: usize, window: usize) {
    let text = "x".repeat(1000);
    let mut sent = 0;
    while sent < count {
        let batch = window.min(count - sent);
        for k in 0..batch {
            let query = format!("mutation {{ say(room: \"{room}\", text: \"{text}\") }}");
            publisher
                .send(subscribe(&format!("p{}", sent + k), &query))
                .await;
        }
        let mut completed = 0;
        while completed < batch {
            let message = within(WAIT, "a say's answer", publisher.recv()).await;
            match message["type"].as_str() {
                Some("next") => assert_eq!(message["payload"]["data"]["say"], true, "{message}"),
                Some("complete") => completed += 1,
                _ => panic!("say failed: {message}"),
            }
        }
        sent += batch;
    }
}

/// What one operation of a room subscriber received: (seq, the
/// `extensions.skipped` of that result), or its error code.
#[derive(Debug, Default, Clone)]
struct Seen {
    results: Vec<(i64, u64)>,
    error: Option<String>,
}

impl Seen {
    fn last(&self) -> i64 {
        self.results.last().map_or(0, |r| r.0)
    }

    fn skipped(&self) -> u64 {
        self.results.iter().map(|r| r.1).sum()
    }

    /// Every result follows the one before it, except right after a skip,
    /// where the gap is exactly what the result says it skipped.
    fn check_gaps(&self, what: &str) {
        let mut before = 0;
        for &(seq, skipped) in &self.results {
            assert_eq!(
                seq - before - 1,
                skipped as i64,
                "{what}: seq {seq} after {before} says it skipped {skipped}: {:?}",
                self.results
            );
            before = seq;
        }
    }
}

/// Reads `client`'s results for operations `ids` until each has `seq`
/// `until` or ended with an error.
async fn read_room(
    mut client: Client,
    ids: Vec<String>,
    key: impl Fn(&str) -> String,
    until: i64,
) -> (Client, HashMap<String, Seen>) {
    let mut seen: HashMap<String, Seen> =
        ids.iter().map(|id| (id.clone(), Seen::default())).collect();
    let done = |seen: &HashMap<String, Seen>| {
        seen.values()
            .all(|s| s.error.is_some() || s.last() >= until)
    };
    while !done(&seen) {
        let message = within(WAIT * 6, "a room result", client.recv()).await;
        let id = message["id"].as_str().unwrap_or_default().to_owned();
        let Some(entry) = seen.get_mut(&id) else {
            panic!("unexpected {message}");
        };
        match message["type"].as_str() {
            Some("next" | "data") => {
                let payload = &message["payload"];
                let seq = payload["data"][key(&id)]["seq"]
                    .as_i64()
                    .unwrap_or_else(|| panic!("no seq in {message}"));
                let skipped = payload["extensions"]["skipped"].as_u64().unwrap_or(0);
                if skipped == 0 {
                    assert!(payload.get("extensions").is_none(), "{message}");
                }
                entry.results.push((seq, skipped));
            }
            Some("error") => {
                let payload = &message["payload"];
                let first = if payload.is_array() {
                    &payload[0]
                } else {
                    payload
                };
                entry.error = Some(
                    first["extensions"]["code"]
                        .as_str()
                        .unwrap_or("?")
                        .to_owned(),
                );
            }
            _ => panic!("unexpected {message}"),
        }
    }
    (client, seen)
}

/// The lag scenario of the two tests below: one client holding 100
/// operations on room `lag`, each with its own selection (so each encodes
/// every message itself and its connection carries 100 frames of 1 KB per
/// message), falls behind a burst of `say`s that four one-operation
/// clients follow easily. Returns the lagging client's operations, the
/// others', and the gateway.
async fn lag_scenario(
    lag: terminus_core::share::LagPolicy,
) -> (
    DemoGateway,
    HashMap<String, Seen>,
    Vec<Seen>,
    Vec<Client>,
    Client,
) {
    const MESSAGES: i64 = 300;
    let gw = DemoGateway::start(|config| {
        config.limits.shared_subscriber_queue = 32;
        config.limits.shared_lag = lag;
        // The lagging client's 100 frames per message are read as fast as
        // the test can; its socket is not what this is about.
        config.limits.max_outbound_bytes = 256 << 20;
    })
    .await;
    let addr = gw.addr();
    let mut lagger = Client::ready(addr, TRANSPORT_WS).await;
    let ids: Vec<String> = (0..100).map(|i| format!("l{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let query = format!("subscription {{ r{i}: room(name: \"lag\") {{ t{i}: text seq }} }}");
        lagger.send(subscribe(id, &query)).await;
    }
    let mut others = Vec::new();
    for i in 0..4 {
        others.push(
            subscriber(
                addr,
                protocol(i),
                "o",
                "subscription { room(name: \"lag\") { seq } }",
            )
            .await,
        );
    }
    let (_, all) = wait_metric(addr, "terminus_shared_subscribers", WAIT, |v| v == 104.0).await;
    assert!(all, "104 subscribers on the room");
    let lagging = smol::spawn(read_room(
        lagger,
        ids,
        |id| format!("r{}", &id[1..]),
        MESSAGES,
    ));
    let following: Vec<_> = others
        .into_iter()
        .map(|client| {
            smol::spawn(read_room(
                client,
                vec!["o".into()],
                |_| "room".into(),
                MESSAGES,
            ))
        })
        .collect();
    let mut publisher = Client::ready(addr, TRANSPORT_WS).await;
    say_many(&mut publisher, "lag", MESSAGES as usize, 10).await;
    let (lagger, lagged) = within(WAIT * 6, "the lagging client catches up", lagging).await;
    let mut others = Vec::new();
    let mut clients = Vec::new();
    for task in following {
        let (client, mut seen) = within(WAIT * 6, "the others get everything", task).await;
        others.push(seen.remove("o").unwrap());
        clients.push(client);
    }
    (gw, lagged, others, clients, lagger)
}

#[test]
fn a_lagging_subscriber_skips_the_oldest_and_catches_up_while_the_others_get_everything() {
    smol::block_on(async {
        let (gw, lagged, others, mut clients, mut lagger) =
            lag_scenario(terminus_core::share::LagPolicy::default()).await;
        let addr = gw.addr();
        // The others got every message, in order, and none says it skipped.
        for seen in &others {
            assert_eq!(seen.error, None);
            assert_eq!(
                seen.results,
                (1..=300).map(|seq| (seq, 0)).collect::<Vec<_>>(),
                "a follower skipped"
            );
        }
        // The lagging operations skipped (the oldest: each kept the latest
        // message, 300), said so exactly, and were never ended.
        let skipped: u64 = lagged.values().map(Seen::skipped).sum();
        assert!(skipped > 0, "the 100-operation client never lagged");
        for (id, seen) in &lagged {
            assert_eq!(seen.error, None, "{id}");
            assert_eq!(seen.last(), 300, "{id}");
            seen.check_gaps(id);
        }
        let (total, counted) = wait_metric(addr, "terminus_shared_skipped_total", WAIT, |v| {
            v == skipped as f64
        })
        .await;
        assert!(
            counted,
            "terminus_shared_skipped_total {total}, the results say {skipped}"
        );
        let (status, body) = http(addr, "GET", "/admin/state", &[], "").await;
        assert_eq!(status, 200);
        let state: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(state["shared"][0]["skipped"], skipped, "{state}");
        // Caught up, everyone gets the next message, without a skip.
        let mut publisher = Client::ready(addr, TRANSPORT_WS).await;
        say_many(&mut publisher, "lag", 1, 1).await;
        for client in &mut clients {
            let message = within(WAIT, "message 301", client.recv()).await;
            assert_eq!(seq(&message, "room"), 301);
            assert!(message["payload"].get("extensions").is_none(), "{message}");
        }
        let mut after = HashMap::new();
        for _ in 0..100 {
            let message = within(WAIT, "message 301", lagger.recv()).await;
            let id = message["id"].as_str().unwrap().to_owned();
            assert_eq!(seq(&message, &format!("r{}", &id[1..])), 301, "{message}");
            assert!(message["payload"].get("extensions").is_none(), "{message}");
            after.insert(id, ());
        }
        assert_eq!(after.len(), 100);
        assert_eq!(metric(addr, "terminus_shared_subscribers").await, 104.0);
        assert_eq!(metric(addr, "terminus_operations").await, 104.0);
    });
}

#[test]
fn with_shared_lag_close_a_lagging_subscriber_ends_slow_subscriber_and_the_others_go_on() {
    smol::block_on(async {
        let (gw, lagged, others, mut clients, _lagger) =
            lag_scenario(terminus_core::share::LagPolicy::Close).await;
        let addr = gw.addr();
        for seen in &others {
            assert_eq!(seen.error, None);
            assert_eq!(
                seen.results,
                (1..=300).map(|seq| (seq, 0)).collect::<Vec<_>>(),
                "a follower skipped"
            );
        }
        // The lagging operations that fell a queue behind ended with
        // SLOW_SUBSCRIBER after what they had queued, without a gap; none
        // skipped.
        let closed = lagged.values().filter(|s| s.error.is_some()).count();
        assert!(closed > 0, "the 100-operation client never lagged");
        for (id, seen) in &lagged {
            if let Some(code) = &seen.error {
                assert_eq!(code, "SLOW_SUBSCRIBER", "{id}");
            }
            assert_eq!(seen.skipped(), 0, "{id}");
            seen.check_gaps(id);
        }
        assert_eq!(metric(addr, "terminus_shared_skipped_total").await, 0.0);
        let (left, ok) = wait_metric(addr, "terminus_shared_subscribers", WAIT, |v| {
            v == (104 - closed) as f64
        })
        .await;
        assert!(ok, "{left} subscribers, {closed} closed");
        // The stream goes on for the others.
        let mut publisher = Client::ready(addr, TRANSPORT_WS).await;
        say_many(&mut publisher, "lag", 1, 1).await;
        for client in &mut clients {
            let message = within(WAIT, "message 301", client.recv()).await;
            assert_eq!(seq(&message, "room"), 301);
        }
    });
}
