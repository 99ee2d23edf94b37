use super::*;
use serde_json::{json, Map, Value};
use terminus_core::OpId;

fn request(query: &str) -> OperationRequest {
    OperationRequest {
        id: "1".into(),
        query: query.into(),
        operation_name: None,
        variables: Map::new(),
        extensions: Map::new(),
    }
}

fn key(op: u64) -> OpKey {
    OpKey {
        conn: 0,
        op: OpId(op),
    }
}

/// Runs the upstream on its own clock until nothing is left; returns every
/// event with the instant it was due.
fn drain(upstream: &mut DemoGraphqlUpstream) -> Vec<(u64, UpstreamEvent)> {
    let mut events = Vec::new();
    let mut guard = 0;
    while let Some(at) = upstream.poll_timeout() {
        guard += 1;
        assert!(guard < 10_000, "the upstream never ran dry");
        while let Some((k, event)) = upstream.poll_event(at) {
            assert_eq!(k, key(1));
            events.push((at.0, event));
        }
    }
    events
}

fn started(query: &str, config: DemoServiceConfig) -> DemoGraphqlUpstream {
    let mut upstream = DemoGraphqlUpstream::new(7, config);
    upstream.start(Millis(1_000), key(1), &request(query));
    upstream
}

#[test]
fn hello_runs_through_the_engine_and_the_simulated_service() {
    let mut upstream = started(
        "{ greeting: hello(name: \"wasm\") __typename }",
        DemoServiceConfig::default(),
    );
    assert_eq!(upstream.live_operations(), 1);
    assert_eq!(upstream.open_calls(), 1);
    let events = drain(&mut upstream);
    let events: Vec<_> = events.into_iter().map(|(_, e)| e).collect();
    assert_eq!(
        events,
        vec![
            UpstreamEvent::Next(
                json!({"data": {"greeting": "Hello, wasm!", "__typename": "Query"}})
            ),
            UpstreamEvent::Complete,
        ]
    );
    assert_eq!(upstream.live_operations(), 0);
    assert_eq!(upstream.calls_started(), 1);
}

#[test]
fn ticks_follow_every_ms_and_end_after_limit() {
    let mut upstream = started(
        "subscription { ticks(everyMs: 100, limit: 3) { seq } }",
        DemoServiceConfig::default(),
    );
    let events = drain(&mut upstream);
    let seqs: Vec<Value> = events
        .iter()
        .filter_map(|(_, e)| match e {
            UpstreamEvent::Next(v) => Some(v["data"]["ticks"]["seq"].clone()),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, vec![json!(1), json!(2), json!(3)]);
    assert_eq!(events.last().unwrap().1, UpstreamEvent::Complete);
    let times: Vec<u64> = events.iter().map(|(at, _)| *at).collect();
    assert_eq!(times[1] - times[0], 100, "{times:?}");
    assert_eq!(times[2] - times[1], 100, "{times:?}");
    // The stream ends right after its last tick, as the real service does.
    assert_eq!(times[3], times[2], "{times:?}");
    assert_eq!(upstream.open_calls(), 0);
}

#[test]
fn fail_at_ends_the_subscription_with_an_upstream_error() {
    let mut upstream = started(
        "subscription { ticks(everyMs: 10, failAt: 2) { seq } }",
        DemoServiceConfig::default(),
    );
    let events = drain(&mut upstream);
    assert_eq!(events.len(), 2, "{events:?}");
    let UpstreamEvent::Error(errors) = &events[1].1 else {
        panic!("{events:?}");
    };
    assert_eq!(errors[0]["extensions"]["code"], "UPSTREAM_ERROR");
    assert!(errors[0]["message"]
        .as_str()
        .unwrap()
        .contains("tick 2 failed on purpose"));
    assert_eq!(upstream.live_operations(), 0);
}

#[test]
fn invalid_documents_are_answered_with_the_engines_errors() {
    let mut upstream = started("{ ticks { seq } }", DemoServiceConfig::default());
    let events = drain(&mut upstream);
    assert_eq!(events.len(), 1);
    let UpstreamEvent::Error(errors) = &events[0].1 else {
        panic!("{events:?}");
    };
    assert_eq!(errors[0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED");
    assert_eq!(upstream.calls_started(), 0);
    assert_eq!(upstream.live_operations(), 0);
}

#[test]
fn injected_outages_reach_the_result_with_their_code() {
    let config = DemoServiceConfig {
        error_probability: 1.0,
        ..DemoServiceConfig::default()
    };
    let mut upstream = started("{ hello(name: \"x\") }", config.clone());
    let events = drain(&mut upstream);
    let UpstreamEvent::Next(result) = &events[0].1 else {
        panic!("{events:?}");
    };
    assert_eq!(result["data"], Value::Null);
    assert_eq!(
        result["errors"][0]["extensions"]["code"],
        "UPSTREAM_UNAVAILABLE"
    );
    assert_eq!(events[1].1, UpstreamEvent::Complete);

    let mut upstream = started("subscription { ticks(everyMs: 10) { seq } }", config);
    let events = drain(&mut upstream);
    let UpstreamEvent::Error(errors) = &events.last().unwrap().1 else {
        panic!("{events:?}");
    };
    assert_eq!(errors[0]["extensions"]["code"], "UPSTREAM_UNAVAILABLE");
}

#[test]
fn cancel_releases_the_stream_and_nothing_follows() {
    let mut upstream = started(
        "subscription { ticks(everyMs: 10) { seq } }",
        DemoServiceConfig::default(),
    );
    let tick = upstream.poll_timeout().unwrap();
    assert!(matches!(
        upstream.poll_event(tick),
        Some((_, UpstreamEvent::Next(_)))
    ));
    upstream.cancel(tick, key(1));
    assert_eq!(upstream.live_operations(), 0);
    assert_eq!(upstream.open_calls(), 0);
    assert_eq!(upstream.calls_cancelled(), 1);
    assert_eq!(upstream.poll_timeout(), None);
    assert!(upstream.poll_event(Millis(u64::MAX)).is_none());
}

/// Runs every operation of the upstream up to `until`: the events by key.
fn run_until(upstream: &mut DemoGraphqlUpstream, until: u64) -> Vec<(OpKey, UpstreamEvent)> {
    let mut events = Vec::new();
    while let Some(at) = upstream.poll_timeout().filter(|at| at.0 <= until) {
        while let Some(event) = upstream.poll_event(at) {
            events.push(event);
        }
    }
    events
}

#[test]
fn say_reaches_each_member_of_the_room_once_and_the_room_goes_with_its_last_member() {
    let config = DemoServiceConfig {
        latency_ms: (0, 0),
        error_probability: 0.0,
    };
    let mut upstream = DemoGraphqlUpstream::new(7, config);
    for op in 1..=2 {
        upstream.start(
            Millis(0),
            key(op),
            &request("subscription { room(name: \"a\") { seq text } }"),
        );
    }
    upstream.start(
        Millis(0),
        key(3),
        &request("subscription { room(name: \"b\") { seq } }"),
    );
    assert!(run_until(&mut upstream, 0).is_empty());
    assert_eq!((upstream.rooms(), upstream.room_subscribers()), (2, 3));
    upstream.start(
        Millis(5),
        key(4),
        &request("mutation { say(room: \"a\", text: \"hi\") }"),
    );
    let mut events = run_until(&mut upstream, 5);
    events.sort_by_key(|(k, _)| k.op);
    let next = |text: Value| UpstreamEvent::Next(json!({"data": text}));
    assert_eq!(
        events,
        vec![
            (key(1), next(json!({"room": {"seq": 1, "text": "hi"}}))),
            (key(2), next(json!({"room": {"seq": 1, "text": "hi"}}))),
            (key(4), next(json!({"say": true}))),
            (key(4), UpstreamEvent::Complete),
        ]
    );
    for op in 1..=3 {
        upstream.cancel(Millis(6), key(op));
    }
    assert_eq!((upstream.rooms(), upstream.room_subscribers()), (0, 0));
    assert_eq!(upstream.poll_timeout(), None);
}

#[test]
fn clocks_of_one_period_tick_together_and_bad_input_is_refused() {
    let config = DemoServiceConfig {
        latency_ms: (0, 0),
        error_probability: 0.0,
    };
    let mut upstream = DemoGraphqlUpstream::new(7, config);
    upstream.start(
        Millis(10),
        key(1),
        &request("subscription { clock(everyMs: 50) { seq } }"),
    );
    upstream.start(
        Millis(70),
        key(2),
        &request("subscription { clock(everyMs: 50) { seq } }"),
    );
    upstream.start(
        Millis(70),
        key(3),
        &request("subscription { clock(everyMs: 0) { seq } }"),
    );
    upstream.start(
        Millis(70),
        key(4),
        &request("mutation { say(room: \"\", text: \"x\") }"),
    );
    let events = run_until(&mut upstream, 150);
    let of = |op: u64| -> Vec<UpstreamEvent> {
        events
            .iter()
            .filter(|(k, _)| *k == key(op))
            .map(|(_, e)| e.clone())
            .collect()
    };
    let tick = |seq: i32| UpstreamEvent::Next(json!({"data": {"clock": {"seq": seq}}}));
    assert_eq!(of(1), vec![tick(1), tick(2), tick(3)]);
    assert_eq!(of(2), vec![tick(2), tick(3)]);
    for (op, message) in [
        (3, "clock everyMs must be at least 1, got 0"),
        (4, "room name must not be empty"),
    ] {
        let errors = match of(op).as_slice() {
            [UpstreamEvent::Error(errors)] => errors.clone(),
            [UpstreamEvent::Next(result), UpstreamEvent::Complete] => {
                result["errors"].as_array().unwrap().clone()
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(errors[0]["message"], message);
        assert_eq!(errors[0]["extensions"]["code"], "BAD_USER_INPUT");
    }
}
