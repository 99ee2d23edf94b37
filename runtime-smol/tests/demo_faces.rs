//! The demo service's two faces follow one rule set
//! (`core/src/demo_service.rs`): the real gRPC demo upstream
//! (`runtime-smol/src/demo_upstream.rs`, over loopback HTTP/2, run by the
//! gateway's own operation host) and the browser simulator's offline
//! upstream (`wasm/src/upstream.rs`, on a virtual clock) get the same
//! GraphQL operations and must answer with the same events: the same
//! ticks, the same ends, the same errors. The tick periods are checked
//! against the model's bounds on both clocks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use terminus::demo_upstream::{descriptor_pool, DemoUpstream};
use terminus::execute::run_operation;
use terminus::grpc::{GrpcUpstream, GrpcUpstreamConfig};
use terminus::upstreams::Upstreams;
use terminus_core::demo_service::{RoomLimits, MIN_TICK_MS};
use terminus_core::graphql::{demo, Execution, Limits, Schema};
use terminus_core::sim::{OpKey, Upstream};
use terminus_core::{Millis, OpId, OperationRequest, UpstreamEvent};
use terminus_wasm::upstream::{DemoGraphqlUpstream, DemoServiceConfig};

/// Each case: the operation, and the tick period the model gives it (the
/// least time between two of its events on either face).
const CASES: &[(&str, u64)] = &[
    ("{ hello(name: \"Ada\") }", 0),
    ("{ hello }", 0),
    ("{ greeting: hello(name: \"\") __typename }", 0),
    ("subscription { ticks(everyMs: 5, limit: 3) { seq } }", 5),
    (
        "subscription { t: ticks(everyMs: 3, limit: 2) { seq __typename } }",
        3,
    ),
    // The minimum period: everyMs of 0 or less ticks every MIN_TICK_MS.
    (
        "subscription { ticks(everyMs: 0, limit: 4) { seq } }",
        MIN_TICK_MS,
    ),
    (
        "subscription { ticks(everyMs: -20, limit: 2) { seq } }",
        MIN_TICK_MS,
    ),
    // failAt replaces that tick with the failure; past the limit it never comes.
    ("subscription { ticks(everyMs: 4, failAt: 2) { seq } }", 4),
    ("subscription { ticks(everyMs: 4, failAt: 1) { seq } }", 4),
    (
        "subscription { ticks(everyMs: 4, limit: 1, failAt: 2) { seq } }",
        4,
    ),
    // A limit of 0 or less ends at once, whatever the period (int32 bounds).
    (
        "subscription { ticks(everyMs: 2147483647, limit: 0) { seq } }",
        0,
    ),
    (
        "subscription { ticks(everyMs: 5, limit: -1, failAt: 1) { seq } }",
        0,
    ),
    // Beyond int32: the engine refuses it before either face is called.
    ("subscription { ticks(everyMs: 2147483648) { seq } }", 0),
    // The rooms' and the clock's bad input: the model's INVALID_ARGUMENT.
    ("subscription { room(name: \"\") { seq text } }", 0),
    ("mutation { say(room: \"\", text: \"x\") }", 0),
    ("subscription { clock(everyMs: 0) { seq } }", 0),
    ("subscription { clock(everyMs: -5) { seq } }", 0),
    // A room nobody follows: delivered to nobody, still true.
    ("mutation { say(room: \"nobody\", text: \"x\") }", 0),
];

fn request(query: &str) -> OperationRequest {
    OperationRequest {
        id: "1".into(),
        query: query.into(),
        operation_name: None,
        variables: Default::default(),
        extensions: Default::default(),
    }
}

fn schema() -> Schema {
    Schema::parse(demo::SCHEMA_SDL, demo::SCHEMA_FILE).unwrap()
}

/// The real face: the gateway's operation host against the real demo
/// server. Returns the events and the wall time they took.
async fn real_face(upstreams: &Arc<Upstreams>, query: &str) -> (Vec<UpstreamEvent>, Duration) {
    let started = Instant::now();
    let execution = Execution::start(&schema(), &request(query), &Limits::default());
    let (tx, rx) = terminus::events::bounded(16);
    let _task = smol::spawn(run_operation(
        execution,
        upstreams.clone(),
        OpId(1),
        tx,
        None,
    ));
    let mut events = Vec::new();
    loop {
        let event = futures_lite::future::or(async { rx.recv().await.ok() }, async {
            smol::Timer::after(Duration::from_secs(10)).await;
            None
        })
        .await
        .unwrap_or_else(|| panic!("{query}: no terminal event within 10 s: {events:?}"));
        let terminal = event.1.is_terminal();
        events.push(event.1);
        if terminal {
            return (events, started.elapsed());
        }
    }
}

/// The over-long inputs, built from the model's bounds.
fn over_long_cases() -> Vec<String> {
    let limits = RoomLimits::default();
    vec![
        format!(
            "subscription {{ room(name: \"{}\") {{ seq }} }}",
            "r".repeat(limits.max_room_name_bytes + 1)
        ),
        format!(
            "mutation {{ say(room: \"a\", text: \"{}\") }}",
            "t".repeat(limits.max_text_bytes + 1)
        ),
        format!(
            "mutation {{ say(room: \"a\", text: \"{}\") }}",
            "t".repeat(limits.max_text_bytes)
        ),
    ]
}

/// The simulated face on its virtual clock, with no accept latency and no
/// injected faults. Returns the events with the instant of each.
fn simulated_face(query: &str) -> Vec<(u64, UpstreamEvent)> {
    let config = DemoServiceConfig {
        latency_ms: (0, 0),
        error_probability: 0.0,
    };
    let mut upstream = DemoGraphqlUpstream::new(1, config);
    let key = OpKey {
        conn: 0,
        op: OpId(1),
    };
    upstream.start(Millis::ZERO, key, &request(query));
    let mut events = Vec::new();
    let mut steps = 0;
    while let Some(at) = upstream.poll_timeout() {
        steps += 1;
        assert!(
            steps < 1_000,
            "{query}: the simulated upstream never ran dry"
        );
        while let Some((k, event)) = upstream.poll_event(at) {
            assert_eq!(k, key);
            events.push((at.0, event));
        }
    }
    assert_eq!(upstream.live_operations(), 0, "{query}");
    assert_eq!(upstream.open_calls(), 0, "{query}");
    events
}

#[test]
fn the_grpc_demo_upstream_and_the_simulated_one_answer_alike() {
    smol::block_on(async {
        let server = DemoUpstream::start("127.0.0.1:0".parse::<SocketAddr>().unwrap())
            .await
            .unwrap();
        let config = GrpcUpstreamConfig {
            endpoint: server.endpoint(),
            ..GrpcUpstreamConfig::default()
        };
        let client = GrpcUpstream::from_descriptors("demo", &config, descriptor_pool()).unwrap();
        let mut upstreams = Upstreams::default();
        upstreams.insert_grpc("demo", client);
        let upstreams = Arc::new(upstreams);

        let mut failures_seen = 0;
        for (query, period) in CASES {
            let simulated = simulated_face(query);
            let (real, wall) = real_face(&upstreams, query).await;
            let simulated_events: Vec<UpstreamEvent> =
                simulated.iter().map(|(_, e)| e.clone()).collect();
            assert_eq!(real, simulated_events, "{query}: the faces disagree");

            // Same bounds: on the virtual clock each tick comes exactly one
            // period after the previous (the first one period after the
            // start), and the end right after the last tick; on the wall
            // clock the ticks take at least as long.
            let ticks = simulated
                .iter()
                .filter(|(_, e)| matches!(e, UpstreamEvent::Next(v) if v.get("data").is_some_and(|d| d.get("ticks").is_some() || d.get("t").is_some())))
                .count() as u64;
            let times: Vec<u64> = simulated.iter().map(|(at, _)| *at).collect();
            for (i, at) in times.iter().enumerate().take(ticks as usize) {
                assert_eq!(*at, (i as u64 + 1) * period, "{query}: {times:?}");
            }
            let last = *times.last().unwrap();
            let steps_before_end = match simulated.last().unwrap().1 {
                // A failure takes the place of a tick, one period on.
                UpstreamEvent::Error(_) if ticks > 0 || *period > 0 => ticks + 1,
                _ => ticks,
            };
            assert_eq!(last, steps_before_end * period, "{query}: {times:?}");
            assert!(
                wall >= Duration::from_millis(steps_before_end * period),
                "{query}: the real stream ended after {wall:?}, before its {steps_before_end} periods of {period} ms"
            );
            if matches!(real.last(), Some(UpstreamEvent::Error(errors)) if errors[0]["message"].as_str().is_some_and(|m| m.contains("failed on purpose")))
            {
                failures_seen += 1;
            }
        }
        assert_eq!(failures_seen, 2, "the failAt cases reached both faces");
        assert_eq!(server.live_streams(), 0);
    });
}

#[test]
fn bad_room_and_clock_input_gets_the_same_clear_error_on_both_faces() {
    smol::block_on(async {
        let (server, upstreams) = demo().await;
        for query in over_long_cases() {
            let simulated: Vec<UpstreamEvent> =
                simulated_face(&query).into_iter().map(|(_, e)| e).collect();
            let (real, _) = real_face(&upstreams, &query).await;
            assert_eq!(real, simulated, "{query}: the faces disagree");
        }
        let (real, _) = real_face(&upstreams, "mutation { say(room: \"\", text: \"x\") }").await;
        let text = format!("{real:?}");
        assert!(
            text.contains("room name must not be empty") && text.contains("BAD_USER_INPUT"),
            "{text}"
        );
        assert_eq!(server.live_streams(), 0);
    });
}

/// The room scenario both faces run: `(op, query)` started in order.
const ROOM_MEMBERS: &[(u64, &str)] = &[
    (1, "subscription { room(name: \"a\") { seq text } }"),
    (2, "subscription { r: room(name: \"a\") { room seq text } }"),
    (3, "subscription { room(name: \"b\") { seq text } }"),
];
/// Then these are said, in order.
const ROOM_SAYS: &[&str] = &[
    "mutation { say(room: \"a\", text: \"hi\") }",
    "mutation { say(room: \"b\", text: \"yo\") }",
    "mutation { said: say(room: \"a\", text: \"again\") }",
];
/// How many events each member gets.
const ROOM_EXPECTED: &[(u64, usize)] = &[(1, 2), (2, 2), (3, 1)];

/// Each member's events by op, and each say's events in order.
type RoomRun = (Vec<(u64, Vec<UpstreamEvent>)>, Vec<Vec<UpstreamEvent>>);

fn room_simulated() -> RoomRun {
    let config = DemoServiceConfig {
        latency_ms: (0, 0),
        error_probability: 0.0,
    };
    let mut upstream = DemoGraphqlUpstream::new(1, config);
    let key = |op: u64| OpKey {
        conn: 0,
        op: OpId(op),
    };
    let mut members: Vec<(u64, Vec<UpstreamEvent>)> = ROOM_MEMBERS
        .iter()
        .map(|(op, _)| (*op, Vec::new()))
        .collect();
    let mut says = Vec::new();
    let run = |upstream: &mut DemoGraphqlUpstream,
               members: &mut Vec<(u64, Vec<UpstreamEvent>)>,
               says: &mut Vec<Vec<UpstreamEvent>>| {
        while let Some(at) = upstream.poll_timeout() {
            while let Some((k, event)) = upstream.poll_event(at) {
                if let Some((_, events)) = members.iter_mut().find(|(op, _)| k.op == OpId(*op)) {
                    events.push(event);
                } else {
                    let index = (k.op.0 - 100) as usize;
                    if says.len() <= index {
                        says.resize(index + 1, Vec::new());
                    }
                    says[index].push(event);
                }
            }
        }
    };
    for (op, query) in ROOM_MEMBERS {
        upstream.start(Millis::ZERO, key(*op), &request(query));
    }
    run(&mut upstream, &mut members, &mut says);
    assert_eq!((upstream.rooms(), upstream.room_subscribers()), (2, 3));
    for (i, query) in ROOM_SAYS.iter().enumerate() {
        upstream.start(Millis::ZERO, key(100 + i as u64), &request(query));
        run(&mut upstream, &mut members, &mut says);
    }
    for (op, _) in ROOM_MEMBERS {
        upstream.cancel(Millis::ZERO, key(*op));
    }
    assert_eq!((upstream.rooms(), upstream.room_subscribers()), (0, 0));
    assert_eq!(upstream.live_operations(), 0);
    (members, says)
}

#[test]
fn rooms_deliver_alike_on_both_faces_and_leave_nothing_behind() {
    smol::block_on(async {
        let (server, upstreams) = demo().await;
        let mut members = Vec::new();
        for (op, query) in ROOM_MEMBERS {
            let execution = Execution::start(&schema(), &request(query), &Limits::default());
            let (tx, rx) = terminus::events::bounded(16);
            let task = smol::spawn(run_operation(
                execution,
                upstreams.clone(),
                OpId(*op),
                tx,
                None,
            ));
            members.push((*op, task, rx));
        }
        // `room` is @shared: ops 1 and 2 share room a's upstream stream.
        wait_until("2 room subscribers", || server.room_subscribers() == 2).await;
        assert_eq!(server.rooms(), 2);
        let mut says = Vec::new();
        for query in ROOM_SAYS {
            says.push(real_face(&upstreams, query).await.0);
        }
        let mut real_members = Vec::new();
        for ((op, _task, rx), (_, count)) in members.iter().zip(ROOM_EXPECTED) {
            let mut events = Vec::new();
            for _ in 0..*count {
                let event = futures_lite::future::or(async { rx.recv().await.ok() }, async {
                    smol::Timer::after(Duration::from_secs(10)).await;
                    None
                })
                .await
                .unwrap_or_else(|| panic!("op {op}: no event within 10 s: {events:?}"));
                // A shared message arrives encoded once (NextEncoded);
                // compare its value.
                events.push(match &event.1 {
                    UpstreamEvent::NextEncoded(_) => {
                        UpstreamEvent::Next(event.1.next_value().expect("JSON"))
                    }
                    _ => event.1,
                });
            }
            // Exactly once: nothing more is coming.
            smol::Timer::after(Duration::from_millis(50)).await;
            assert!(
                rx.try_recv().is_err(),
                "op {op} got more than {count} events"
            );
            real_members.push((*op, events));
        }
        let (simulated_members, simulated_says) = room_simulated();
        assert_eq!(
            real_members, simulated_members,
            "the faces disagree on the rooms"
        );
        assert_eq!(says, simulated_says, "the faces disagree on say");
        drop(members);
        wait_until("no room left", || {
            server.rooms() == 0 && server.room_subscribers() == 0
        })
        .await;
        wait_until("no stream left", || server.live_streams() == 0).await;
    });
}

#[test]
fn clocks_tick_on_the_epoch_on_both_faces() {
    smol::block_on(async {
        let (server, upstreams) = demo().await;
        let query = "subscription { clock(everyMs: 20) { seq } }";
        // The simulated face, started at 45 ms of its epoch: seqs 3, 4, 5 at 60, 80, 100.
        let config = DemoServiceConfig {
            latency_ms: (0, 0),
            error_probability: 0.0,
        };
        let mut upstream = DemoGraphqlUpstream::new(1, config);
        let key = OpKey {
            conn: 0,
            op: OpId(1),
        };
        upstream.start(Millis(45), key, &request(query));
        let mut simulated = Vec::new();
        while simulated.len() < 3 {
            let at = upstream.poll_timeout().unwrap();
            while let Some((_, event)) = upstream.poll_event(at) {
                simulated.push((at.0, event));
            }
        }
        let seq = |e: &UpstreamEvent| match e.next_value() {
            Some(v) => v["data"]["clock"]["seq"].as_u64().unwrap(),
            None => panic!("{e:?}"),
        };
        assert_eq!(
            simulated
                .iter()
                .map(|(at, e)| (*at, seq(e)))
                .collect::<Vec<_>>(),
            vec![(60, 3), (80, 4), (100, 5)]
        );
        // The real face: seq = periods since the server's start, so the
        // first one comes right after the instant the stream started.
        let before = server.clock_now().0 / 20;
        let execution = Execution::start(&schema(), &request(query), &Limits::default());
        let (tx, rx) = terminus::events::bounded(16);
        let task = smol::spawn(run_operation(
            execution,
            upstreams.clone(),
            OpId(1),
            tx,
            None,
        ));
        let mut seqs = Vec::new();
        while seqs.len() < 3 {
            let event = futures_lite::future::or(async { rx.recv().await.ok() }, async {
                smol::Timer::after(Duration::from_secs(10)).await;
                None
            })
            .await
            .expect("a clock tick within 10 s");
            seqs.push(seq(&event.1));
            // Its seq is the period it was sent in.
            assert!(seqs.last().unwrap() <= &(server.clock_now().0 / 20));
        }
        assert!(seqs[0] > before, "{seqs:?} after {before}");
        assert!(seqs.windows(2).all(|w| w[1] > w[0]), "{seqs:?}");
        drop(task);
        wait_until("no stream left", || server.live_streams() == 0).await;
    });
}

/// The real demo server and the gateway's upstreams in front of it.
async fn demo() -> (DemoUpstream, Arc<Upstreams>) {
    let server = DemoUpstream::start("127.0.0.1:0".parse::<SocketAddr>().unwrap())
        .await
        .unwrap();
    let config = GrpcUpstreamConfig {
        endpoint: server.endpoint(),
        ..GrpcUpstreamConfig::default()
    };
    let client = GrpcUpstream::from_descriptors("demo", &config, descriptor_pool()).unwrap();
    let mut upstreams = Upstreams::default();
    upstreams.insert_grpc("demo", client);
    (server, Arc::new(upstreams))
}

/// Waits up to 10 s for `done`.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        smol::Timer::after(Duration::from_millis(5)).await;
    }
}
