//! The demo schema end to end through the public API: prepare, execute with
//! scripted upstream events, check the connection-facing output.

use serde_json::{json, Map, Value};
use std::time::Duration;
use terminus_core::graphql::{demo, CallEvent, Execution, Limits, OperationKind, Schema};
use terminus_core::{
    CallTimeouts, FailureKind, OperationRequest, UpstreamCall, UpstreamEvent, UpstreamFailure,
};

fn request(query: &str, variables: Value) -> OperationRequest {
    OperationRequest {
        id: "1".into(),
        query: query.into(),
        operation_name: None,
        variables: match variables {
            Value::Object(m) => m,
            _ => Map::new(),
        },
        extensions: Map::new(),
    }
}

fn outputs(exec: &mut Execution) -> Vec<UpstreamEvent> {
    std::iter::from_fn(|| exec.poll_output()).collect()
}

#[test]
fn hello_query_calls_the_demo_upstream_and_picks_the_message() {
    let schema = Schema::parse(demo::SCHEMA_SDL, demo::SCHEMA_FILE).unwrap();
    let op = schema
        .prepare(
            &request(
                "query Q($n: String) { greeting: hello(name: $n) __typename }",
                json!({"n": "Ada"}),
            ),
            &Limits::default(),
        )
        .unwrap();
    assert_eq!(op.kind(), OperationKind::Query);
    let mut exec = Execution::new(op);
    let (id, call) = exec.poll_call().expect("one call");
    assert_eq!(
        call,
        UpstreamCall::Grpc {
            upstream: "demo".into(),
            method: "terminus.demo.v1.Demo/Hello".into(),
            request: json!({"name": "Ada"}),
            streaming: false,
            timeouts: CallTimeouts::default(),
            context: Default::default(),
            shared: false,
        }
    );
    assert!(exec.poll_call().is_none());
    assert!(outputs(&mut exec).is_empty());
    exec.handle_call_event(id, CallEvent::Item(json!({"message": "Hello, Ada!"})));
    exec.handle_call_event(id, CallEvent::End);
    assert_eq!(
        outputs(&mut exec),
        vec![
            UpstreamEvent::Next(
                json!({"data": {"greeting": "Hello, Ada!", "__typename": "Query"}})
            ),
            UpstreamEvent::Complete
        ]
    );
    assert!(exec.is_finished());
    // Key order follows the selection.
    let schema_ref = &schema;
    let op = schema_ref
        .prepare(
            &request("{ __typename hello }", json!({})),
            &Limits::default(),
        )
        .unwrap();
    let mut exec = Execution::new(op);
    let (id, call) = exec.poll_call().unwrap();
    let UpstreamCall::Grpc { request, .. } = call else {
        panic!("grpc call expected")
    };
    assert_eq!(request, json!({}));
    exec.handle_call_event(id, CallEvent::Item(json!({"message": "Hello, !"})));
    let UpstreamEvent::Next(v) = exec.poll_output().unwrap() else {
        panic!()
    };
    assert_eq!(
        v.to_string(),
        r#"{"data":{"__typename":"Query","hello":"Hello, !"}}"#
    );
}

#[test]
fn ticks_subscription_streams_and_fails_with_the_failure_code() {
    let schema = Schema::parse(demo::SCHEMA_SDL, demo::SCHEMA_FILE).unwrap();
    let op = schema
        .prepare(
            &request(
                "subscription { ticks(everyMs: 10, limit: 3) { seq n: seq __typename } }",
                json!({}),
            ),
            &Limits::default(),
        )
        .unwrap();
    assert_eq!(op.kind(), OperationKind::Subscription);
    let mut exec = Execution::new(op);
    let (id, call) = exec.poll_call().unwrap();
    assert_eq!(
        call,
        UpstreamCall::Grpc {
            upstream: "demo".into(),
            method: "terminus.demo.v1.Demo/Ticks".into(),
            request: json!({"everyMs": 10, "limit": 3}),
            streaming: true,
            timeouts: CallTimeouts::default(),
            context: Default::default(),
            shared: false,
        }
    );
    exec.handle_call_event(id, CallEvent::Item(json!({"seq": 1})));
    exec.handle_call_event(id, CallEvent::Item(json!({"seq": "2"})));
    assert_eq!(
        outputs(&mut exec),
        vec![
            UpstreamEvent::Next(
                json!({"data": {"ticks": {"seq": 1, "n": 1, "__typename": "Tick"}}})
            ),
            UpstreamEvent::Next(
                json!({"data": {"ticks": {"seq": 2, "n": 2, "__typename": "Tick"}}})
            ),
        ]
    );
    assert!(!exec.is_finished());
    exec.handle_call_event(
        id,
        CallEvent::Failed(UpstreamFailure::new(
            FailureKind::Unavailable,
            "connection reset",
        )),
    );
    let out = outputs(&mut exec);
    assert_eq!(
        out,
        vec![UpstreamEvent::Error(vec![json!({
            "message": "connection reset",
            "locations": [{"line": 1, "column": 16}],
            "path": ["ticks"],
            "extensions": {"code": "UPSTREAM_UNAVAILABLE"}
        })])]
    );
    assert!(exec.is_finished());
    // Late events are ignored.
    exec.handle_call_event(id, CallEvent::End);
    assert!(exec.poll_output().is_none());
}

#[test]
fn mysql_demo_plans_sql_with_positional_params() {
    let schema = Schema::parse(demo::SCHEMA_WITH_MYSQL_SDL, "demo_mysql.graphql").unwrap();
    let op = schema
        .prepare(
            &request(
                "mutation { postMessage(text: \"hi\") { id text createdAt } }",
                json!({}),
            ),
            &Limits::default(),
        )
        .unwrap();
    let mut exec = Execution::new(op);
    let (id, call) = exec.poll_call().unwrap();
    let UpstreamCall::Sql {
        db,
        statement,
        params,
        returns_rows,
    } = call
    else {
        panic!("sql expected")
    };
    assert_eq!(db, "main");
    assert_eq!(
        statement,
        "INSERT INTO terminus_demo_messages (text, created_at) VALUES (?, UTC_TIMESTAMP())"
    );
    assert_eq!(params, vec![json!("hi")]);
    assert!(!returns_rows);
    exec.handle_call_event(
        id,
        CallEvent::Item(json!({"affectedRows": 1, "lastInsertId": 7})),
    );
    let (id2, call) = exec.poll_call().unwrap();
    let UpstreamCall::Sql {
        statement,
        params,
        returns_rows,
        ..
    } = call
    else {
        panic!("sql expected")
    };
    assert!(statement.ends_with("WHERE id = ?"));
    assert_eq!(params, vec![json!(7)]);
    assert!(returns_rows);
    exec.handle_call_event(id, CallEvent::End); // late End of the first call: ignored
    exec.handle_call_event(
        id2,
        CallEvent::Item(json!([{"id": 7, "text": "hi", "created_at": "2026-01-01T00:00:00Z"}])),
    );
    assert_eq!(
        outputs(&mut exec),
        vec![
            UpstreamEvent::Next(
                json!({"data": {"postMessage": {"id": "7", "text": "hi", "createdAt": "2026-01-01T00:00:00Z"}}})
            ),
            UpstreamEvent::Complete
        ]
    );

    let op = schema
        .prepare(
            &request("subscription { messageBoard(limit: 2) { id } }", json!({})),
            &Limits::default(),
        )
        .unwrap();
    let mut exec = Execution::new(op);
    let (id, call) = exec.poll_call().unwrap();
    let UpstreamCall::LiveSql { every, params, .. } = call else {
        panic!("live expected")
    };
    assert_eq!(every, Duration::from_secs(1));
    assert_eq!(params, vec![json!(2)]);
    exec.handle_call_event(
        id,
        CallEvent::Item(json!([{"id": 1, "text": "a", "created_at": "x"}])),
    );
    exec.handle_call_event(
        id,
        CallEvent::Item(json!([{"id": 1, "text": "a", "created_at": "x"}])),
    );
    exec.handle_call_event(id, CallEvent::Item(json!([{"id": 2, "text": "b", "created_at": "y"}, {"id": 1, "text": "a", "created_at": "x"}])));
    assert_eq!(
        outputs(&mut exec),
        vec![
            UpstreamEvent::Next(json!({"data": {"messageBoard": [{"id": "1"}]}})),
            UpstreamEvent::Next(json!({"data": {"messageBoard": [{"id": "2"}, {"id": "1"}]}})),
        ]
    );
}

#[test]
fn a_result_past_max_response_bytes_ends_the_operation_and_its_call() {
    let schema = Schema::parse(demo::SCHEMA_WITH_MYSQL_SDL, demo::SCHEMA_FILE).unwrap();
    let limits = Limits {
        max_response_bytes: 4096,
        ..Limits::default()
    };
    let rows = |n: usize| {
        Value::Array(
            (0..n)
                .map(|i| json!({"id": i, "text": "x".repeat(100), "created_at": "2026-01-01T00:00:00Z"}))
                .collect(),
        )
    };
    // A query: 10 rows fit, 100 do not.
    for (n, fits) in [(10, true), (100, false)] {
        let op = schema
            .prepare(
                &request("{ messages(limit: 100) { id text createdAt } }", json!({})),
                &limits,
            )
            .unwrap();
        let mut exec = Execution::new(op);
        let (id, _) = exec.poll_call().unwrap();
        exec.handle_call_event(id, CallEvent::Item(rows(n)));
        let out = outputs(&mut exec);
        if fits {
            assert!(matches!(out[0], UpstreamEvent::Next(_)), "{out:?}");
        } else {
            assert_eq!(out.len(), 1, "{out:?}");
            let UpstreamEvent::Error(e) = &out[0] else {
                panic!("{out:?}")
            };
            assert_eq!(e[0]["extensions"]["code"], "RESPONSE_TOO_LARGE");
            assert!(exec.is_finished());
        }
    }
    // A live subscription: a small poll is delivered, a large one ends the
    // operation with the error and gives up the upstream call.
    let op = schema
        .prepare(
            &request(
                "subscription { messageBoard(limit: 100) { id text } }",
                json!({}),
            ),
            &limits,
        )
        .unwrap();
    let mut exec = Execution::new(op);
    let (id, _) = exec.poll_call().unwrap();
    exec.handle_call_event(id, CallEvent::Item(rows(2)));
    assert!(matches!(outputs(&mut exec)[..], [UpstreamEvent::Next(_)]));
    exec.handle_call_event(id, CallEvent::Item(rows(200)));
    let out = outputs(&mut exec);
    assert!(
        matches!(&out[..], [UpstreamEvent::Error(e)] if e[0]["extensions"]["code"] == "RESPONSE_TOO_LARGE"),
        "{out:?}"
    );
    assert_eq!(exec.poll_cancel(), Some(id));
    assert!(exec.is_finished());
    exec.handle_call_event(id, CallEvent::Item(rows(1)));
    assert!(outputs(&mut exec).is_empty());
}

#[test]
fn arguments_bound_to_limit_must_be_row_counts() {
    let schema = Schema::parse(demo::SCHEMA_WITH_MYSQL_SDL, demo::SCHEMA_FILE).unwrap();
    let prepare =
        |query: &str, vars: Value| schema.prepare(&request(query, vars), &Limits::default());
    for (query, vars) in [
        ("{ messages(limit: -1) { id } }", json!({})),
        ("{ messages(limit: 10001) { id } }", json!({})),
        (
            "query($n: Int) { messages(limit: $n) { id } }",
            json!({"n": -5}),
        ),
        (
            "query($n: Int) { messages(limit: $n) { id } }",
            json!({"n": null}),
        ),
        ("subscription { messageBoard(limit: -1) { id } }", json!({})),
    ] {
        let errors = prepare(query, vars).expect_err(query);
        assert_eq!(errors[0]["extensions"]["code"], "BAD_USER_INPUT", "{query}");
        let message = errors[0]["message"].as_str().unwrap();
        assert!(
            message.contains("bound to SQL LIMIT") && message.contains("max_sql_row_count"),
            "{message}"
        );
    }
    for (query, vars) in [
        ("{ messages { id } }", json!({})),
        ("{ messages(limit: 0) { id } }", json!({})),
        ("{ messages(limit: 10000) { id } }", json!({})),
        (
            "query($n: Int) { messages(limit: $n) { id } }",
            json!({"n": 3}),
        ),
        ("subscription { messageBoard { id } }", json!({})),
    ] {
        assert!(prepare(query, vars).is_ok(), "{query}");
    }
    // The bound is configurable.
    let small = Limits {
        max_sql_row_count: 50,
        ..Limits::default()
    };
    assert!(schema
        .prepare(
            &request("{ messages(limit: 51) { id } }", json!({})),
            &small
        )
        .is_err());
}
