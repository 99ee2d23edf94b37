//! Schema loading: every mistake is reported with file:line:col and what is
//! wrong.

use std::time::Duration;
use terminus_core::graphql::{parse_every, Schema};

const G: &str = r#"@grpc(upstream: "u", method: "p.S/M")"#;

fn error(sdl: &str) -> String {
    match Schema::parse(sdl, "s.graphql") {
        Ok(_) => panic!("expected a schema error for:\n{sdl}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn schema_errors_name_file_line_column_and_the_problem() {
    let cases: Vec<(String, &str)> = vec![
        ("type Query {\n  a: String @grpc(upstream: \"u\", method: \"p.S/M\", stream: \"x\")\n}".into(),
         "s.graphql:2:13: unknown argument `stream` of @grpc; expected one of: upstream, method, result, timeout, streamTimeout, idleTimeout"),
        ("type Query {\n  a: String @grpc(upstream: \"u\", method: \"p.S/M\", timeout: \"soon\")\n}".into(), "s.graphql:2:13: @grpc timeout: `soon` is not a duration"),
        ("type Query {\n  a: String @grpc(upstream: \"u\", method: \"p.S/M\", streamTimeout: \"0s\")\n}".into(), "s.graphql:2:13: @grpc streamTimeout: `0s` must be above zero"),
        ("type Query {\n  a: String @grpc(upstream: \"u\", method: \"p.S/M\", idleTimeout: \"3 days\")\n}".into(), "@grpc idleTimeout: `3 days` has no known unit"),
        ("type Query {\n  a: String @grpc(method: \"p.S/M\")\n}".into(), "s.graphql:2:13: @grpc needs the argument `upstream`"),
        ("type Query {\n  a: String @grpc(upstream: \"u\", method: \"Hello\")\n}".into(), "s.graphql:2:13: @grpc method `Hello` must look like `package.Service/Method`"),
        ("type Query {\n  a: String @grpc(upstream: 1, method: \"p.S/M\")\n}".into(), "s.graphql:2:13: argument `upstream` of @grpc must be a string"),
        ("type Query {\n  a: String\n}".into(), "s.graphql:2:3: root field Query.a has no resolver: add @grpc, @sql"),
        (format!("type Query {{ a: Nope {G} }}"), "s.graphql:1:14: field Query.a: unknown type Nope"),
        (format!("type Query {{ a(x: Nope): Int {G} }}"), "s.graphql:1:16: argument Query.a(x): unknown type Nope"),
        (format!("type Query {{ a(x: T): Int {G} }}\ntype T {{ b: Int }}"), "argument Query.a(x): T is an object type and cannot be an input"),
        (format!("input I {{ b: Int }}\ntype Query {{ a: I {G} }}"), "s.graphql:2:14: field Query.a: I is an input type"),
        (format!("type Query {{ a: T {G} }}\ntype T {{ b: Int {G} }}"), "s.graphql:2:17: field T.b: @grpc, @sql and @live belong on fields of the root types"),
        (format!("type Query {{ a: Int {G} @from(field: \"x\") }}"), "@from is for fields of nested object types"),
        (format!("type Query {{ a: Int {G} @sql(db: \"m\", query: \"SELECT 1\") }}"), "has more than one of @grpc, @sql, @live"),
        (format!("type Query {{ a: Int {G} @cache }}"), "unknown directive @cache on field Query.a"),
        ("type Query { a: Int @sql(db: \"m\", query: \"DELETE FROM t\") }".into(), "the @sql statement must return rows"),
        ("type Query { a(id: Int): Int @sql(db: \"m\", query: \"SELECT x FROM t WHERE id = :idd\") }".into(), "SQL parameter :idd is not an argument of the field (arguments: id)"),
        ("type Query { a: Int @sql(db: \"m\", query: \"SELECT x FROM t WHERE id = ?\") }".into(), "not positional `?` placeholders"),
        ("type Query { a: Int @sql(db: \"m\", query: \"SELECT 'x FROM t\") }".into(), "unterminated '-quoted text"),
        ("type Query { a: Int @sql(db: \"m\", query: \"SELECT 1\", reselect: \"SELECT 2\") }".into(), "reselect is for statements that change rows"),
        (format!("type Query {{ a: Int {G} }}\ntype Mutation {{ m(t: String): Int @sql(db: \"m\", query: \"INSERT INTO t VALUES (:t)\", reselect: \"DELETE FROM t\") }}"), "@sql reselect must be a SELECT"),
        (format!("type Query {{ a: Int {G} }}\ntype Subscription {{ s: Int @live(db: \"m\", query: \"SELECT 1\", every: \"soon\") }}"), "s.graphql:2:28: @live every: `soon` is not a duration"),
        (format!("type Query {{ a: Int {G} }}\ntype Subscription {{ s: Int @live(db: \"m\", query: \"SELECT 1\", every: \"5 parsecs\") }}"), "has no known unit"),
        (format!("type Query {{ a: Int {G} }}\ntype Subscription {{ s: Int @live(db: \"m\", query: \"SELECT 1\", every: \"1ms\") }}"), "shorter than the minimum polling interval of 50 ms"),
        (format!("type Query {{ a: Int {G} }}\ntype Subscription {{ s: Int @live(db: \"m\", query: \"UPDATE t SET a = 1\", every: \"1s\") }}"), "@live query must be a SELECT"),
        (format!("type Query {{ a: Int {G} }}\ntype Subscription {{ s: Int @sql(db: \"m\", query: \"SELECT 1\") }}"), "subscription field Subscription.s: use @live"),
        ("type Query { a: Int @live(db: \"m\", query: \"SELECT 1\", every: \"1s\") }".into(), "@live is for subscription fields"),
        (format!("type Query {{ a: Int {G} }}\ninterface Node {{ id: ID }}"), "s.graphql:2:1: interface Node: interfaces are not supported"),
        (format!("type Query {{ a: Int {G} }}\nunion U = Query"), "unions are not supported"),
        (format!("type Query {{ a: Int {G} }}\ntype Query {{ b: Int {G} }}"), "s.graphql:2:1: type Query is declared twice"),
        (format!("type Query {{ a: Int {G} a: Int {G} }}"), "field Query.a declared twice"),
        (format!("type Query {{ a: Int {G} }}\nscalar String"), "type String is declared twice"),
        (format!("type Query {{ a: Int {G} }}\ntype __Mine {{ a: Int }}"), "reserved for introspection"),
        (format!("type Query {{ a: Int {G} }}\nextend type Nope {{ b: Int }}"), "there is no object type Nope to extend"),
        (format!("type Query {{ a: Int {G} }}\nextend type Query {{ a: Int {G} }}"), "field Query.a declared twice"),
        (format!("type Query {{ a(n: Int = \"x\"): Int {G} }}"), "default of argument Query.a(n): Int cannot represent a non int value"),
        (format!("type Mutation {{ a: Int {G} }}"), "the root type Query is not declared"),
        (format!("schema {{ query: Q }}\ntype Query {{ a: Int {G} }}"), "s.graphql:1:1: the root type Q is not declared"),
        (format!("type Query {{ a: Int {G} }}\ndirective @cache on FIELD_DEFINITION"), "custom directive @cache is not supported"),
        ("type Query {\n  a: Int @grpc(upstream: \"u\", method: \"p.S/M\"\n}".into(), "s.graphql:3:1: syntax error"),
    ];
    for (sdl, expected) in cases {
        let e = error(&sdl);
        assert!(
            e.contains(expected),
            "for\n{sdl}\nexpected {expected:?}\ngot      {e:?}"
        );
        assert!(e.starts_with("s.graphql:"), "{e}");
    }
}

#[test]
fn valid_schemas_load_with_schema_blocks_extensions_and_editor_definitions() {
    let sdl = format!(
        "directive @grpc(upstream: String!, method: String!, result: String) on FIELD_DEFINITION\n\
         schema {{ query: Q mutation: M }}\n\
         type Q {{ a: Int {G} }}\n\
         extend type Q {{ b(limit: Int = 5): [Int!]! @sql(db: \"d\", query: \"SELECT x FROM t LIMIT :limit\") }}\n\
         type M {{ c(t: String!): Int @sql(db: \"d\", query: \"UPDATE t SET x = :t\") }}"
    );
    let s = Schema::parse(&sdl, "ok.graphql").unwrap();
    let names = s.upstream_names();
    assert_eq!(names.grpc.into_iter().collect::<Vec<_>>(), vec!["u"]);
    assert_eq!(names.sql.into_iter().collect::<Vec<_>>(), vec!["d"]);
}

#[test]
fn every_accepts_units() {
    assert_eq!(parse_every("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_every("2s"), Ok(Duration::from_secs(2)));
    assert_eq!(parse_every("3m"), Ok(Duration::from_secs(180)));
    assert_eq!(parse_every("1h"), Ok(Duration::from_secs(3600)));
    assert!(parse_every("-1s").is_err());
    assert!(parse_every("1.5s").is_err());
    assert!(parse_every("").is_err());
}

#[test]
fn grpc_timeouts_are_read_per_field_and_reach_the_call() {
    use terminus_core::graphql::{Execution, Limits};
    use terminus_core::{CallTimeouts, OperationRequest, UpstreamCall};
    let schema = Schema::parse(
        r#"type Query { a: Int @grpc(upstream: "u", method: "p.S/M") }
type Subscription {
  s: Int @grpc(upstream: "u", method: "p.S/N", timeout: "250ms", streamTimeout: "2h", idleTimeout: "30s")
}"#,
        "s.graphql",
    )
    .unwrap();
    let timeouts = |query: &str| {
        let request = OperationRequest {
            id: "1".into(),
            query: query.into(),
            operation_name: None,
            variables: Default::default(),
            extensions: Default::default(),
        };
        let op = schema.prepare(&request, &Limits::default()).unwrap();
        match Execution::new(op).poll_call() {
            Some((_, UpstreamCall::Grpc { timeouts, .. })) => timeouts,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(timeouts("{ a }"), CallTimeouts::default());
    assert_eq!(
        timeouts("subscription { s }"),
        CallTimeouts {
            call: Some(Duration::from_millis(250)),
            stream: Some(Duration::from_secs(7200)),
            idle: Some(Duration::from_secs(30)),
        }
    );
}

#[test]
fn shared_is_read_on_grpc_subscription_fields_and_misuse_names_the_line() {
    use terminus_core::graphql::{Execution, Limits};
    use terminus_core::{OperationRequest, UpstreamCall};
    let cases: Vec<(String, &str)> = vec![
        (format!("type Query {{ a: Int {G} @shared }}"), "s.graphql:1:59: @shared on field Query.a: only subscription fields can be shared"),
        (format!("type Query {{ a: Int {G} }}\ntype Mutation {{\n  m: Int {G} @shared\n}}"), "s.graphql:3:48: @shared on field Mutation.m: only subscription fields can be shared"),
        (format!("type Query {{ a: Int {G} }}\ntype Subscription {{\n  s: Int @live(db: \"m\", query: \"SELECT 1\", every: \"1s\") @shared\n}}"), "s.graphql:3:57: @shared on field Subscription.s: @shared is for @grpc server streams"),
        (format!("type Query {{ a: Int {G} }}\ntype Subscription {{ s: Int @shared }}"), "s.graphql:2:28: @shared on field Subscription.s: @shared needs @grpc"),
        (format!("type Query {{ a: Int {G} }}\ntype Subscription {{ s: Int {G} @shared @shared }}"), "@shared given twice on field Subscription.s"),
        (format!("type Query {{ a: Int {G} }}\ntype Subscription {{ s: Int {G} @shared(key: \"x\") }}"), "unknown argument `key` of @shared"),
        (format!("type Query {{ a: Int {G} }}\ntype T {{ b: Int @shared }}"), "s.graphql:2:17: @shared on field T.b: @shared needs @grpc"),
    ];
    for (sdl, want) in cases {
        let got = error(&sdl);
        assert!(got.contains(want), "for:\n{sdl}\nwant: {want}\ngot:  {got}");
    }
    let schema = Schema::parse(
        &format!("directive @shared on FIELD_DEFINITION\ntype Query {{ a: Int {G} }}\ntype Subscription {{\n  s(n: Int): Int @shared {G}\n  t(n: Int): Int {G}\n}}"),
        "s.graphql",
    )
    .unwrap();
    let shared = |query: &str| {
        let request = OperationRequest {
            id: "1".into(),
            query: query.into(),
            operation_name: None,
            variables: Default::default(),
            extensions: Default::default(),
        };
        let op = schema.prepare(&request, &Limits::default()).unwrap();
        match Execution::new(op).poll_call() {
            Some((
                _,
                UpstreamCall::Grpc {
                    shared,
                    streaming: true,
                    ..
                },
            )) => shared,
            other => panic!("{other:?}"),
        }
    };
    assert!(shared("subscription { s(n: 1) }"));
    assert!(!shared("subscription { t(n: 1) }"));
}
