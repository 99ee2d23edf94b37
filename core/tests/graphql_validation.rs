//! The validation corpus: operations against the test schema with the
//! errors (code and message) or the planned upstream calls they must give.

mod gql_common;

use gql_common::{request, schema};
use serde_json::{json, Value};
use terminus_core::graphql::{Execution, Limits, Schema};
use terminus_core::UpstreamCall;

/// (query, variables, operationName, expected code, part of the message)
const INVALID: &[(&str, &str, Option<&str>, &str, &str)] = &[
    ("{ nope }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "Cannot query field \"nope\" on type \"Query\"."),
    ("{ user(id: 1) }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "must have a selection of subfields"),
    ("{ user(id: 1) { name { x } } }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "must not have a selection since type \"String\""),
    ("{ user { id } }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "Argument \"id\" of type \"ID!\" is required"),
    ("{ user(id: 1, x: 2) { id } }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "Unknown argument \"x\" on field \"Query.user\"."),
    ("{ user(id: 1, id: 2) { id } }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "only one argument named \"id\""),
    ("{ users(first: \"a\") { id } }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "Int cannot represent a non int value: \"a\""),
    ("{ users(first: 3000000000) { id } }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "non 32-bit signed integer"),
    ("{ users(filter: {color: PURPLE}) { id } }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "not a value of enum Color"),
    ("{ users(filter: {color: \"RED\"}) { id } }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "not a value of enum Color"),
    ("{ users(filter: {nested: {}}) { id } }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "`n` of required type Int! was not provided"),
    ("{ users(filter: {bogus: 1}) { id } }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "field `bogus` is not defined by input type Filter"),
    ("{ user(id: null) { id } }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "expected a value of type ID!, found null"),
    ("query($id: ID) { user(id: $id) { id } }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "Variable \"$id\" of type \"ID\" used in position expecting type \"ID!\"."),
    ("query($c: [Color]) { colors(c: $c) }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "Variable \"$c\" of type \"[Color]\" used in position expecting type \"[Color!]!\"."),
    ("query($n: Int!) { user(id: $n) { id } }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "of type \"Int!\" used in position expecting type \"ID!\""),
    ("query Q { user(id: $x) { id } }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "Variable \"$x\" is not defined by operation \"Q\"."),
    ("query Q($x: Int) { count }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "Variable \"$x\" is never used in operation \"Q\"."),
    ("query($x: Int, $x: Int) { users(first: $x) { id } }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "only one variable named \"$x\""),
    ("query($u: User) { count }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "Variable \"$u\" cannot be non-input type \"User\"."),
    ("query($u: Nope) { count }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "Unknown type \"Nope\"."),
    ("query($n: Int = \"x\") { users(first: $n) { id } }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "invalid default value"),
    ("{ ...F } fragment F on Query { ...G } fragment G on Query { ...F }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "within itself"),
    ("{ ...F } fragment F on Query { count ...F }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "Cannot spread fragment \"F\" within itself."),
    ("{ count } fragment Unused on Query { count }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "Fragment \"Unused\" is never used."),
    ("{ ...Nope }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "Unknown fragment \"Nope\"."),
    ("{ ...F } fragment F on Query { count } fragment F on Query { count }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "only one fragment named \"F\""),
    ("{ user(id: 1) { ... on Query { count } } }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "can never be of type \"Query\""),
    ("{ user(id: 1) { ...Q } } fragment Q on Query { count }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "Fragment \"Q\" cannot be spread here as objects of type \"User\" can never be of type \"Query\"."),
    ("{ user(id: 1) { ... on Int { id } } }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "non composite type \"Int\""),
    ("{ user(id: 1) { ... on Ghost { id } } }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "Unknown type \"Ghost\"."),
    ("{ ...F } fragment F on Color { count }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "non composite type \"Color\""),
    ("subscription { userEvents(id: 1) { id } board { id } }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "Anonymous Subscription must select only one top level field."),
    ("subscription S { ...F } fragment F on Subscription { userEvents(id: 1) { id } b: board { id } }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "Subscription \"S\" must select only one top level field."),
    ("subscription { __typename }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "must not select an introspection top level field"),
    ("query A { count } query A { count }", "{}", Some("A"), "GRAPHQL_VALIDATION_FAILED", "only one operation named \"A\""),
    ("{ count } { count }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "This anonymous operation must be the only defined operation."),
    ("query A { count } query B { old }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "Must provide operation name if query contains multiple operations."),
    ("query A { count } query B { old }", "{}", Some("C"), "GRAPHQL_VALIDATION_FAILED", "Unknown operation named \"C\"."),
    ("{ count", "{}", None, "GRAPHQL_PARSE_FAILED", "Syntax Error"),
    ("", "{}", None, "GRAPHQL_PARSE_FAILED", "Syntax Error"),
    ("fragment F on Query { count }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "no operation"),
    ("query($f: Filter!) { users(filter: $f) { id } }", r#"{"f": {"color": "PINK"}}"#, None, "BAD_USER_INPUT", "Variable \"$f\" got invalid value: $f.color: value \"PINK\" is not a value of enum Color"),
    ("query($f: Filter!) { users(filter: $f) { id } }", r#"{"f": {"nested": {"n": 1.5}}}"#, None, "BAD_USER_INPUT", "$f.nested.n: Int cannot represent 1.5"),
    ("query($f: Filter!) { users(filter: $f) { id } }", r#"{"f": {"extra": 1}}"#, None, "BAD_USER_INPUT", "field `extra` is not defined by input type Filter"),
    ("query($id: ID!) { user(id: $id) { id } }", "{}", None, "BAD_USER_INPUT", "Variable \"$id\" of required type \"ID!\" was not provided."),
    ("query($id: ID!) { user(id: $id) { id } }", r#"{"id": null}"#, None, "BAD_USER_INPUT", "expected a non-null value of type ID!"),
    ("query($id: ID!) { user(id: $id) { id } }", r#"{"id": true}"#, None, "BAD_USER_INPUT", "ID cannot represent true"),
    ("query($c: [Color!]!) { colors(c: $c) }", r#"{"c": ["RED", null]}"#, None, "BAD_USER_INPUT", "$c[1]: expected a non-null value"),
    ("{ a: count a: old }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "Fields \"a\" conflict because \"count\" and \"old\" are different fields."),
    ("{ user(id: 1) { id } user(id: 2) { id } }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "Fields \"user\" conflict because they have differing arguments."),
    ("{ count @foo }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "Unknown directive \"@foo\"."),
    ("{ count @skip }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "Argument \"if\" of type \"Boolean!\" is required"),
    ("{ count @skip(if: true) @skip(if: false) }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "can only be used once at this location"),
    ("query @skip(if: true) { count }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "Directive \"@skip\" may not be used on QUERY."),
    ("{ count @deprecated }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "Directive \"@deprecated\" may not be used on FIELD."),
    ("{ __schema { nope } }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "Cannot query field \"nope\" on type \"__Schema\"."),
    ("{ user(id: 1) { __schema { queryType { name } } } }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "Cannot query field \"__schema\" on type \"User\"."),
    ("{ __type { name } }", "{}", None, "GRAPHQL_VALIDATION_FAILED", "Argument \"name\" of type \"String!\" is required"),
];

fn first_error(query: &str, vars: &str, op: Option<&str>) -> Value {
    first_error_in(&schema(), query, vars, op)
}

fn first_error_in(schema: &Schema, query: &str, vars: &str, op: Option<&str>) -> Value {
    let vars: Value = serde_json::from_str(vars).unwrap();
    match schema.prepare(&request(query, vars, op), &Limits::default()) {
        Ok(_) => panic!("{query}: expected an error, the operation was accepted"),
        Err(errors) => {
            assert!(!errors.is_empty(), "{query}: an empty error list");
            for e in &errors {
                assert!(e["message"].is_string(), "{query}: {e}");
                assert!(e["extensions"]["code"].is_string(), "{query}: {e}");
            }
            Value::Array(errors)
        }
    }
}

#[test]
fn invalid_operations_are_rejected_with_spec_shaped_errors() {
    let schema = schema();
    for (query, vars, op, code, message) in INVALID {
        let errors = first_error_in(&schema, query, vars, *op);
        let found = errors.as_array().unwrap().iter().any(|e| {
            e["extensions"]["code"] == *code && e["message"].as_str().unwrap().contains(message)
        });
        assert!(
            found,
            "{query}: expected {code} containing {message:?}, got {errors:#}"
        );
    }
}

#[test]
fn errors_carry_locations() {
    let errors = first_error("{\n  count\n  nope\n}", "{}", None);
    assert_eq!(
        errors,
        json!([{
            "message": "Cannot query field \"nope\" on type \"Query\".",
            "locations": [{"line": 3, "column": 3}],
            "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}
        }])
    );
    let errors = first_error("{ count", "{}", None);
    assert_eq!(errors[0]["locations"], json!([{"line": 1, "column": 8}]));
    // Every independent mistake is reported, not only the first.
    let errors = first_error("{ a b }", "{}", None);
    assert_eq!(errors.as_array().unwrap().len(), 2);
}

#[test]
fn limits_are_enforced_and_configurable() {
    let schema = schema();
    let small = Limits {
        max_depth: 3,
        max_fields: 5,
        max_aliases: 1,
        max_query_bytes: 200,
        ..Limits::default()
    };
    let deep = "{ user(id: 1) { friends { friends { id } } } }";
    let e = schema
        .prepare(&request(deep, json!({}), None), &small)
        .unwrap_err();
    assert!(
        e[0]["message"]
            .as_str()
            .unwrap()
            .contains("deeper than the limit of 3"),
        "{e:?}"
    );
    assert!(schema
        .prepare(&request(deep, json!({}), None), &Limits::default())
        .is_ok());

    // A fragment bomb: short text, exponential expansion.
    let bomb = "{ ...A } fragment A on Query { ...B ...B } fragment B on Query { ...C ...C } fragment C on Query { count count count }";
    let e = schema
        .prepare(&request(bomb, json!({}), None), &small)
        .unwrap_err();
    assert!(
        e[0]["message"]
            .as_str()
            .unwrap()
            .contains("more than 5 fields"),
        "{e:?}"
    );

    let aliased = "{ a: count b: count }";
    let e = schema
        .prepare(&request(aliased, json!({}), None), &small)
        .unwrap_err();
    assert!(
        e[0]["message"].as_str().unwrap().contains("2 aliases"),
        "{e:?}"
    );

    let long = format!("{{ count {} }}", " ".repeat(300));
    let e = schema
        .prepare(&request(&long, json!({}), None), &small)
        .unwrap_err();
    assert_eq!(e[0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED");
    assert!(e[0]["message"]
        .as_str()
        .unwrap()
        .contains("more than the limit of 200 bytes"));
}

/// The calls a valid operation plans, in order.
fn calls(query: &str, vars: Value, op: Option<&str>) -> Vec<UpstreamCall> {
    let schema = schema();
    let prepared = schema
        .prepare(&request(query, vars, op), &Limits::default())
        .unwrap_or_else(|e| panic!("{query}: {e:?}"));
    let mut exec = Execution::new(prepared);
    std::iter::from_fn(|| exec.poll_call().map(|(_, c)| c)).collect()
}

fn grpc_request(call: &UpstreamCall) -> &Value {
    match call {
        UpstreamCall::Grpc { request, .. } => request,
        other => panic!("expected a gRPC call, got {other:?}"),
    }
}

#[test]
fn arguments_and_variables_coerce_with_defaults_lists_and_input_objects() {
    let c = calls(
        "query($first: Int = 5) { users(first: $first) { id } }",
        json!({}),
        None,
    );
    assert_eq!(grpc_request(&c[0]), &json!({"first": 5}));
    let c = calls(
        "query($first: Int = 5) { users(first: $first) { id } }",
        json!({"first": 7}),
        None,
    );
    assert_eq!(grpc_request(&c[0]), &json!({"first": 7}));
    // An absent variable leaves the argument to its default.
    let c = calls(
        "query($first: Int) { users(first: $first) { id } }",
        json!({}),
        None,
    );
    assert_eq!(grpc_request(&c[0]), &json!({"first": 10}));
    // An explicit null is null (and left out of the proto3 request).
    let c = calls(
        "query($first: Int) { users(first: $first) { id } }",
        json!({"first": null}),
        None,
    );
    assert_eq!(grpc_request(&c[0]), &json!({}));
    // A single value for a list becomes a list; enums are their names.
    let c = calls("{ colors(c: RED) }", json!({}), None);
    assert_eq!(grpc_request(&c[0]), &json!({"c": ["RED"]}));
    let c = calls(
        "query($c: [Color!]!) { colors(c: $c) }",
        json!({"c": "BLUE"}),
        None,
    );
    assert_eq!(grpc_request(&c[0]), &json!({"c": ["BLUE"]}));
    // Input object defaults fill in.
    let c = calls(
        "{ users(filter: {tags: \"x\", nested: {n: 2}}) { id } }",
        json!({}),
        None,
    );
    assert_eq!(
        grpc_request(&c[0]),
        &json!({"filter": {"color": "RED", "tags": ["x"], "nested": {"n": 2}}, "first": 10})
    );
    let c = calls(
        "query($f: Filter) { users(filter: $f) { id } }",
        json!({"f": {"color": "GREEN"}}),
        None,
    );
    assert_eq!(
        grpc_request(&c[0]),
        &json!({"filter": {"color": "GREEN"}, "first": 10})
    );
    // Variables inside input object literals.
    let c = calls(
        "query($n: Int!) { users(filter: {nested: {n: $n}}) { id } }",
        json!({"n": 4}),
        None,
    );
    assert_eq!(
        grpc_request(&c[0]),
        &json!({"filter": {"color": "RED", "nested": {"n": 4}}, "first": 10})
    );
    // A nullable variable with a default may flow into a non-null position.
    let c = calls(
        "query($id: ID = 3) { user(id: $id) { id } }",
        json!({}),
        None,
    );
    assert_eq!(grpc_request(&c[0]), &json!({"id": "3"}));
    // ID accepts an integer and sends a string.
    let c = calls(
        "query($id: ID!) { user(id: $id) { id } }",
        json!({"id": 5}),
        None,
    );
    assert_eq!(grpc_request(&c[0]), &json!({"id": "5"}));
    // Custom scalars pass through.
    let c = calls(
        "{ echo(value: {a: [1, \"x\", null], b: ENUMISH}) }",
        json!({}),
        None,
    );
    assert_eq!(
        grpc_request(&c[0]),
        &json!({"value": {"a": [1, "x", null], "b": "ENUMISH"}})
    );
    let c = calls(
        "query($v: JSON) { echo(value: $v) }",
        json!({"v": {"deep": [true]}}),
        None,
    );
    assert_eq!(grpc_request(&c[0]), &json!({"value": {"deep": [true]}}));
}

#[test]
fn skip_include_fragments_and_operation_name_pick_the_fields() {
    let c = calls(
        "query($s: Boolean!) { count @skip(if: $s) old @include(if: $s) }",
        json!({"s": true}),
        None,
    );
    assert_eq!(c.len(), 1);
    assert!(matches!(&c[0], UpstreamCall::Grpc { method, .. } if method == "echo.v1.Echo/Old"));
    let c = calls(
        "query($s: Boolean!) { count @skip(if: $s) old @include(if: $s) }",
        json!({"s": false}),
        None,
    );
    assert_eq!(c.len(), 1);
    assert!(
        matches!(&c[0], UpstreamCall::Sql { statement, params, returns_rows: true, .. } if statement == "SELECT COUNT(*) AS c FROM users" && params.is_empty())
    );
    let c = calls(
        "query A { count } query B { old ...F } fragment F on Query { byName(name: \"x\") { id } }",
        json!({}),
        Some("B"),
    );
    assert_eq!(c.len(), 2);
    assert!(
        matches!(&c[1], UpstreamCall::Sql { statement, params, .. } if statement.ends_with("WHERE name = ? LIMIT 1") && params == &vec![json!("x")])
    );
    // The same field twice (directly and through a fragment) is one call.
    let c = calls(
        "{ count ... on Query { count } ...F } fragment F on Query { count }",
        json!({}),
        None,
    );
    assert_eq!(c.len(), 1);
}

#[test]
fn parse_errors_read_cleanly() {
    let e = first_error("query { a(x: ) }", "{}", None);
    assert_eq!(
        e[0]["message"],
        "Syntax Error: Unexpected `)`; Expected IntValue, FloatValue, StringValue, BlockString, true, false, null or Name"
    );
    assert_eq!(e[0]["locations"], json!([{"line": 1, "column": 14}]));
}

#[test]
fn deeply_nested_documents_are_refused_by_the_parser_without_overflowing() {
    let n = 300;
    let query = format!(
        "{}{}",
        "{ user(id: 1) { friends ".repeat(n),
        "}".repeat(2 * n)
    );
    let e = first_error(&query, "{}", None);
    assert_eq!(e[0]["extensions"]["code"], "GRAPHQL_PARSE_FAILED");
    let value = format!("{{ echo(value: {}1{}) }}", "[".repeat(n), "]".repeat(n));
    let e = first_error(&value, "{}", None);
    assert_eq!(e[0]["extensions"]["code"], "GRAPHQL_PARSE_FAILED");
}
