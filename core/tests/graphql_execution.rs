//! Execution with scripted upstream results: shaping, aliases, nulls,
//! non-null propagation, partial failure, serial mutations, cancellation.

mod gql_common;

use gql_common::{outputs, request, schema};
use serde_json::{json, Value};
use terminus_core::graphql::{CallEvent, CallId, Execution, Limits, OperationKind, Schema, Step};
use terminus_core::{CallTimeouts, FailureKind, UpstreamCall, UpstreamEvent, UpstreamFailure};

fn start(query: &str, vars: Value) -> (Execution, Vec<(CallId, UpstreamCall)>) {
    let prepared = schema()
        .prepare(&request(query, vars, None), &Limits::default())
        .unwrap_or_else(|e| panic!("{query}: {e:?}"));
    let mut exec = Execution::new(prepared);
    let calls = std::iter::from_fn(|| exec.poll_call()).collect();
    (exec, calls)
}

fn single_result(exec: &mut Execution) -> Value {
    let out = outputs(exec);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[1], UpstreamEvent::Complete);
    assert!(exec.is_finished());
    match &out[0] {
        UpstreamEvent::Next(v) => v.clone(),
        other => panic!("expected Next, got {other:?}"),
    }
}

#[test]
fn shapes_nested_objects_with_aliases_typename_from_and_camel_case() {
    let (mut exec, calls) = start(
        "{ u: user(id: 1) { __typename id handle: name email seq_no score active color friends { id n: name } } }",
        json!({}),
    );
    assert_eq!(calls.len(), 1);
    exec.handle_call_event(
        calls[0].0,
        CallEvent::Item(json!({
            "id": 1, "name": "Ada", "email_address": "ada@example.com", "seqNo": "12",
            "score": "2.5", "active": 1, "color": "GREEN", "unrelated": [1, 2],
            "friends": [{"id": "2", "name": "Bob", "active": true}]
        })),
    );
    assert_eq!(
        single_result(&mut exec),
        json!({"data": {"u": {
            "__typename": "User", "id": "1", "handle": "Ada", "email": "ada@example.com",
            "seq_no": 12, "score": 2.5, "active": true, "color": "GREEN",
            "friends": [{"id": "2", "n": "Bob"}]
        }}})
    );
}

#[test]
fn partial_failure_nulls_the_failed_field_and_keeps_the_rest() {
    let (mut exec, calls) = start("{ count u: user(id: 1) { id } old }", json!({}));
    assert_eq!(calls.len(), 3, "independent root fields run at once");
    let (count, user, old) = (calls[0].0, calls[1].0, calls[2].0);
    exec.handle_call_event(
        user,
        CallEvent::Failed(UpstreamFailure::new(
            FailureKind::Timeout,
            "deadline of 5s passed",
        )),
    );
    exec.handle_call_event(
        old,
        CallEvent::Failed(UpstreamFailure::new(FailureKind::Busy, "too many calls")),
    );
    assert!(outputs(&mut exec).is_empty(), "waits for every field");
    exec.handle_call_event(count, CallEvent::Item(json!([{"c": 3}])));
    exec.handle_call_event(count, CallEvent::End);
    assert_eq!(
        single_result(&mut exec),
        json!({
            "data": {"count": 3, "u": null, "old": null},
            "errors": [
                {"message": "deadline of 5s passed", "locations": [{"line": 1, "column": 9}], "path": ["u"], "extensions": {"code": "UPSTREAM_TIMEOUT"}},
                {"message": "too many calls", "locations": [{"line": 1, "column": 31}], "path": ["old"], "extensions": {"code": "UPSTREAM_BUSY"}}
            ]
        })
    );
    assert!(exec.poll_cancel().is_none());
}

#[test]
fn a_failed_non_null_root_field_nulls_data_and_cancels_the_rest() {
    let (mut exec, calls) = start("{ u: user(id: 1) { id } count }", json!({}));
    let (user, count) = (calls[0].0, calls[1].0);
    exec.handle_call_event(
        count,
        CallEvent::Failed(UpstreamFailure::new(FailureKind::Unavailable, "db down")),
    );
    let result = single_result(&mut exec);
    assert_eq!(result["data"], Value::Null);
    assert_eq!(result["errors"][0]["path"], json!(["count"]));
    assert_eq!(
        result["errors"][0]["extensions"]["code"],
        "UPSTREAM_UNAVAILABLE"
    );
    assert_eq!(exec.poll_cancel(), Some(user));
    assert_eq!(exec.poll_cancel(), None);
    // The cancelled call's late answer changes nothing.
    exec.handle_call_event(user, CallEvent::Item(json!({"id": 1})));
    assert!(exec.poll_output().is_none());
}

#[test]
fn nulls_propagate_to_the_nearest_nullable_parent() {
    // User.id is ID!: a null id makes the (nullable) user null.
    let (mut exec, calls) = start("{ byName(name: \"x\") { id name } }", json!({}));
    exec.handle_call_event(
        calls[0].0,
        CallEvent::Item(json!([{"id": null, "name": "x"}])),
    );
    assert_eq!(
        single_result(&mut exec),
        json!({
            "data": {"byName": null},
            "errors": [{"message": "Cannot return null for non-nullable field User.id.", "locations": [{"line": 1, "column": 23}], "path": ["byName", "id"], "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]
        })
    );
    // [User!]! with a null item: the list is null, and so is data (the
    // field is non-null).
    let (mut exec, calls) = start("{ users { id } }", json!({}));
    exec.handle_call_event(
        calls[0].0,
        CallEvent::Item(json!({"users": [{"id": 1}, null]})),
    );
    let r = single_result(&mut exec);
    assert_eq!(r["data"], Value::Null);
    assert_eq!(r["errors"][0]["path"], json!(["users", 1]));
    // A value of the wrong type is an error on that field only.
    let (mut exec, calls) = start("{ user(id: 1) { id score friends { id } } }", json!({}));
    exec.handle_call_event(
        calls[0].0,
        CallEvent::Item(json!({"id": 1, "score": "fast", "friends": {"id": 2}})),
    );
    let r = single_result(&mut exec);
    assert_eq!(
        r["data"],
        json!({"user": {"id": "1", "score": null, "friends": null}})
    );
    let paths: Vec<&Value> = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["path"])
        .collect();
    assert_eq!(
        paths,
        vec![&json!(["user", "score"]), &json!(["user", "friends"])]
    );
}

#[test]
fn proto3_defaults_fill_omitted_grpc_fields() {
    let (mut exec, calls) = start(
        "{ user(id: 1) { id active name friends { id } } }",
        json!({}),
    );
    exec.handle_call_event(calls[0].0, CallEvent::Item(json!({})));
    assert_eq!(
        single_result(&mut exec),
        json!({"data": {"user": {"id": "", "active": false, "name": null, "friends": null}}})
    );
}

#[test]
fn a_call_that_ends_without_a_result_is_an_upstream_error() {
    let (mut exec, calls) = start("{ old }", json!({}));
    exec.handle_call_event(calls[0].0, CallEvent::End);
    let r = single_result(&mut exec);
    assert_eq!(r["data"], json!({"old": null}));
    assert_eq!(r["errors"][0]["extensions"]["code"], "UPSTREAM_ERROR");
}

#[test]
fn mutation_fields_run_one_after_another() {
    let (mut exec, calls) = start(
        "mutation { a: rename(id: 1, name: \"x\") { name } b: del(id: 2) }",
        json!({}),
    );
    assert_eq!(calls.len(), 1, "only the first mutation field starts");
    assert_eq!(
        calls[0].1,
        UpstreamCall::Grpc {
            upstream: "users".into(),
            method: "users.v1.Users/Rename".into(),
            request: json!({"id": "1", "name": "x"}),
            streaming: false,
            timeouts: CallTimeouts::default(),
            context: Default::default(),
            shared: false,
        }
    );
    exec.handle_call_event(calls[0].0, CallEvent::Item(json!({"name": "x"})));
    let (del, call) = exec
        .poll_call()
        .expect("the second field starts after the first");
    assert_eq!(
        call,
        UpstreamCall::Sql {
            db: "main".into(),
            statement: "DELETE FROM users WHERE id = ?".into(),
            params: vec![json!("2")],
            returns_rows: false
        }
    );
    exec.handle_call_event(
        del,
        CallEvent::Item(json!({"affectedRows": 1, "lastInsertId": 0})),
    );
    assert_eq!(
        single_result(&mut exec),
        json!({"data": {"a": {"name": "x"}, "b": 1}})
    );
}

#[test]
fn introspection_only_operations_finish_without_calls() {
    let (mut exec, calls) = start(
        "{ __typename t: __type(name: \"Color\") { kind enumValues { name } } }",
        json!({}),
    );
    assert!(calls.is_empty());
    assert_eq!(
        single_result(&mut exec),
        json!({"data": {"__typename": "Query", "t": {"kind": "ENUM", "enumValues": [{"name": "RED"}, {"name": "GREEN"}, {"name": "BLUE"}]}}})
    );
}

#[test]
fn subscription_items_become_nexts_and_live_sql_emits_only_changes() {
    let (mut exec, calls) = start(
        "subscription { e: userEvents(id: 7) { id name } }",
        json!({}),
    );
    let id = calls[0].0;
    assert!(
        matches!(&calls[0].1, UpstreamCall::Grpc { streaming: true, request, .. } if request == &json!({"id": "7"}))
    );
    exec.handle_call_event(id, CallEvent::Item(json!({"id": 7, "name": "a"})));
    exec.handle_call_event(id, CallEvent::Item(json!({"id": 7, "name": "a"})));
    exec.handle_call_event(id, CallEvent::Item(json!({"id": null})));
    exec.handle_call_event(id, CallEvent::End);
    let out = outputs(&mut exec);
    assert_eq!(
        out.len(),
        4,
        "every stream item is a Next (even repeats), then Complete"
    );
    assert_eq!(
        out[0],
        UpstreamEvent::Next(json!({"data": {"e": {"id": "7", "name": "a"}}}))
    );
    assert_eq!(out[1], out[0]);
    let UpstreamEvent::Next(third) = &out[2] else {
        panic!()
    };
    assert_eq!(third["data"], Value::Null);
    assert_eq!(third["errors"][0]["path"], json!(["e", "id"]));
    assert_eq!(out[3], UpstreamEvent::Complete);
    assert!(exec.is_finished());

    let (mut exec, calls) = start("subscription { board(min: 1) { id active } }", json!({}));
    let id = calls[0].0;
    assert!(
        matches!(&calls[0].1, UpstreamCall::LiveSql { params, .. } if params == &vec![json!(1)])
    );
    let rows = json!([{"id": 2, "name": "b", "active": 1}]);
    exec.handle_call_event(id, CallEvent::Item(rows.clone()));
    exec.handle_call_event(id, CallEvent::Item(rows.clone()));
    exec.handle_call_event(id, CallEvent::Item(rows));
    exec.handle_call_event(id, CallEvent::Item(json!([])));
    exec.handle_call_event(
        id,
        CallEvent::Failed(UpstreamFailure::new(FailureKind::Failed, "table dropped")),
    );
    let out = outputs(&mut exec);
    assert_eq!(
        out,
        vec![
            UpstreamEvent::Next(json!({"data": {"board": [{"id": "2", "active": true}]}})),
            UpstreamEvent::Next(json!({"data": {"board": []}})),
            UpstreamEvent::Error(vec![
                json!({"message": "table dropped", "locations": [{"line": 1, "column": 16}], "path": ["board"], "extensions": {"code": "UPSTREAM_ERROR"}})
            ]),
        ]
    );
    assert!(exec.is_finished());
}

#[test]
fn a_subscription_whose_field_is_skipped_completes_at_once() {
    let (mut exec, calls) = start(
        "subscription($s: Boolean!) { board @skip(if: $s) { id } }",
        json!({"s": true}),
    );
    assert!(calls.is_empty());
    assert_eq!(outputs(&mut exec), vec![UpstreamEvent::Complete]);
    assert!(exec.is_finished());
}

#[test]
fn the_api_types_can_move_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<terminus_core::graphql::Schema>();
    send_sync::<terminus_core::graphql::PreparedOperation>();
    send_sync::<Execution>();
}

#[test]
fn limits_deserialize_with_defaults() {
    let l: Limits = serde_json::from_value(json!({"max_depth": 5})).unwrap();
    assert_eq!(
        l,
        Limits {
            max_depth: 5,
            ..Limits::default()
        }
    );
    assert!(serde_json::from_value::<Limits>(json!({"max_dept": 5})).is_err());
}

#[test]
fn start_turns_prepare_errors_into_the_first_and_terminal_output() {
    let s = schema();
    let limits = Limits::default();
    for (query, code) in [
        ("{ user(id: ", "GRAPHQL_PARSE_FAILED"),
        ("{ nope }", "GRAPHQL_VALIDATION_FAILED"),
        (
            "query Q($id: ID!) { user(id: $id) { id } }",
            "BAD_USER_INPUT",
        ),
    ] {
        let req = request(query, json!({}), None);
        let expected = s.prepare(&req, &limits).expect_err(query);
        let mut exec = Execution::start(&s, &req, &limits);
        assert_eq!(exec.kind(), None, "{query}");
        assert!(exec.root_keys().is_empty());
        assert!(!exec.is_finished(), "the errors are not taken yet");
        let step = exec.poll();
        assert_eq!(
            step,
            Some(Step::Output(UpstreamEvent::Error(expected.clone())))
        );
        assert_eq!(expected[0]["extensions"]["code"], code, "{query}");
        assert_eq!(exec.poll(), None);
        assert!(exec.is_finished());
        // A rejected execution ignores call events: it never made a call.
        exec.handle_call_event(CallId(0), CallEvent::End);
        assert_eq!(exec.poll(), None);
    }
}

#[test]
fn start_runs_a_request_that_prepares_like_new_and_poll_orders_calls_cancels_outputs() {
    let s = schema();
    let limits = Limits::default();
    let req = request("{ count u: user(id: 1) { id } }", json!({}), None);
    let mut exec = Execution::start(&s, &req, &limits);
    let mut reference = Execution::new(s.prepare(&req, &limits).unwrap());
    assert_eq!(exec.kind(), Some(OperationKind::Query));
    assert_eq!(exec.root_keys(), vec!["count", "u"]);
    let mut calls = Vec::new();
    while let Some(step) = exec.poll() {
        match step {
            Step::Call(id, call) => {
                assert_eq!(reference.poll_call(), Some((id, call.clone())));
                calls.push(id);
            }
            other => panic!("only calls at first, got {other:?}"),
        }
    }
    assert_eq!(calls.len(), 2);
    // `count` is `Int!`: its failure nulls `data`, so the other call is
    // dropped (a Cancel) before the result is delivered.
    exec.handle_call_event(
        calls[0],
        CallEvent::Failed(UpstreamFailure::new(FailureKind::Failed, "boom")),
    );
    let steps: Vec<Step> = std::iter::from_fn(|| exec.poll()).collect();
    assert_eq!(steps.len(), 3, "{steps:?}");
    assert_eq!(steps[0], Step::Cancel(calls[1]));
    assert!(matches!(&steps[1], Step::Output(UpstreamEvent::Next(v)) if v["data"].is_null()));
    assert_eq!(steps[2], Step::Output(UpstreamEvent::Complete));
    assert!(exec.is_finished());
}

#[test]
fn grpc_calls_carry_the_request_context() {
    let schema = Schema::parse(
        "type Query { a: String @grpc(upstream: \"u\", method: \"p.S/A\") b: String @grpc(upstream: \"u\", method: \"p.S/B\") }",
        "ctx.graphql",
    )
    .unwrap();
    let op = schema
        .prepare(&request("{ a b }", json!({}), None), &Limits::default())
        .unwrap();
    let context: terminus_core::RequestContext = std::sync::Arc::new(
        [("header:authorization".to_owned(), "Bearer t".to_owned())]
            .into_iter()
            .collect(),
    );
    let mut exec = Execution::with_context(op, context.clone());
    let mut seen = 0;
    while let Some((_, call)) = exec.poll_call() {
        let UpstreamCall::Grpc {
            context: carried, ..
        } = call
        else {
            panic!("a gRPC call")
        };
        assert_eq!(carried, context);
        seen += 1;
    }
    assert_eq!(seen, 2);
}

#[test]
fn auth_claims_bind_as_sql_parameters_and_never_come_from_arguments() {
    let sdl = r#"
type Query {
  mine(limit: Int = 5): [Row!]! @sql(db: "main", query: "SELECT id FROM t WHERE owner = :auth.sub AND org = :auth.org LIMIT :limit")
}
type Row { id: ID! }
"#;
    let schema = terminus_core::graphql::Schema::parse(sdl, "claims.graphql").unwrap();
    let params = |claims: serde_json::Map<String, Value>| {
        let mut prepared = schema
            .prepare(
                &request("{ mine(limit: 2) { id } }", json!({}), None),
                &Limits::default(),
            )
            .unwrap();
        prepared.set_claims(claims);
        let mut exec = Execution::new(prepared);
        match exec.poll_call() {
            Some((
                _,
                UpstreamCall::Sql {
                    params, statement, ..
                },
            )) => {
                assert_eq!(
                    statement,
                    "SELECT id FROM t WHERE owner = ? AND org = ? LIMIT ?"
                );
                params
            }
            other => panic!("expected an SQL call, got {other:?}"),
        }
    };
    let claims = json!({"sub": "user-1' OR 1=1 --", "org": 7});
    assert_eq!(
        params(claims.as_object().unwrap().clone()),
        vec![json!("user-1' OR 1=1 --"), json!(7), json!(2)]
    );
    // No token: the claims bind NULL (which matches no row).
    assert_eq!(
        params(serde_json::Map::new()),
        vec![Value::Null, Value::Null, json!(2)]
    );
    // A field argument cannot stand in for a claim: `auth` alone is an
    // ordinary parameter name and must be an argument.
    let bad = "type Query { f: Int @sql(db: \"main\", query: \"SELECT :auth\") }";
    let error = terminus_core::graphql::Schema::parse(bad, "bad.graphql").unwrap_err();
    assert!(
        error.to_string().contains(":auth is not an argument"),
        "{error}"
    );
}
