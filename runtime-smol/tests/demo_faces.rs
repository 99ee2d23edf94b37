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
use terminus_core::demo_service::MIN_TICK_MS;
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
    let (tx, rx) = async_channel::bounded(16);
    let _task = smol::spawn(run_operation(
        execution,
        upstreams.clone(),
        OpId(1),
        16,
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
