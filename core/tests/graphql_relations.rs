//! Relations (nested `@sql` fields, `core/src/graphql/batch.rs`): one
//! statement per level for the whole parent set, rows stitched back to their
//! parents, identical statements run once, JSON text parsed where the schema
//! wants structure, snake_case columns read by camelCase fields.

mod gql_common;

use gql_common::{outputs, request};
use serde_json::{json, Value};
use terminus_core::graphql::{CallEvent, CallId, Execution, Limits, Schema};
use terminus_core::{FailureKind, UpstreamCall, UpstreamEvent, UpstreamFailure};

const SDL: &str = r#"
type Query {
  orders(first: Int!): [Order!]! @sql(db: "shop", query: "SELECT id, customer_id, note FROM orders ORDER BY id LIMIT :first")
  order(id: ID!): Order @sql(db: "shop", query: "SELECT id, customer_id, note FROM orders WHERE id = :id")
}
type Order {
  id: ID!
  customerId: ID!
  note: JSON
  customer: Customer @sql(db: "shop", query: "SELECT id, full_name FROM customers WHERE id = :parent.customer_id")
  items(minQty: Int = 0): [Item!]! @sql(db: "shop", query: "SELECT id, order_id, qty FROM items WHERE order_id IN (:parent.id) AND qty >= :minQty ORDER BY id")
  skus: [String!]! @sql(db: "shop", query: "SELECT sku FROM items WHERE order_id = :parent.id ORDER BY sku")
}
type Customer {
  id: ID!
  fullName: String!
  orders: [Order!]! @sql(db: "shop", query: "SELECT id, customer_id FROM orders WHERE customer_id = :parent.id")
}
type Item {
  id: ID!
  qty: Int!
  tags: [String!]
}
"#;

fn start(query: &str) -> (Execution, Vec<(CallId, UpstreamCall)>) {
    let schema = Schema::parse(SDL, "shop.graphql").unwrap();
    let prepared = schema
        .prepare(&request(query, json!({}), None), &Limits::default())
        .unwrap_or_else(|e| panic!("{query}: {e:?}"));
    let mut exec = Execution::new(prepared);
    let calls = poll_calls(&mut exec);
    (exec, calls)
}

fn poll_calls(exec: &mut Execution) -> Vec<(CallId, UpstreamCall)> {
    std::iter::from_fn(|| exec.poll_call()).collect()
}

fn sql(call: &UpstreamCall) -> (&str, &[Value]) {
    match call {
        UpstreamCall::Sql {
            statement, params, ..
        } => (statement.as_str(), params.as_slice()),
        other => panic!("expected SQL, got {other:?}"),
    }
}

fn answer(exec: &mut Execution, call: CallId, rows: Value) {
    exec.handle_call_event(call, CallEvent::Item(rows));
    exec.handle_call_event(call, CallEvent::End);
}

fn result(exec: &mut Execution) -> Value {
    let out = outputs(exec);
    assert_eq!(out.last(), Some(&UpstreamEvent::Complete), "{out:?}");
    match &out[0] {
        UpstreamEvent::Next(v) => v.clone(),
        other => panic!("expected Next, got {other:?}"),
    }
}

#[test]
fn one_statement_per_level_for_all_parents_stitched_back() {
    let (mut exec, calls) = start(
        "{ orders(first: 3) { id customerId customer { fullName orders { id } } items(minQty: 1) { id qty } } }",
    );
    assert_eq!(calls.len(), 1);
    answer(
        &mut exec,
        calls[0].0,
        json!([
            {"id": 1, "customer_id": 10, "note": null},
            {"id": 2, "customer_id": 11, "note": null},
            {"id": 3, "customer_id": 10, "note": null}
        ]),
    );
    let level1 = poll_calls(&mut exec);
    assert_eq!(level1.len(), 2, "customer and items: one statement each");
    let (customer_sql, customer_params) = sql(&level1[0].1);
    assert_eq!(
        customer_sql,
        "SELECT id AS __terminus_key, id, full_name FROM customers WHERE id IN (?, ?)"
    );
    assert_eq!(customer_params, &[json!(10), json!(11)], "distinct keys");
    let (items_sql, items_params) = sql(&level1[1].1);
    assert_eq!(
        items_sql,
        "SELECT order_id AS __terminus_key, id, order_id, qty FROM items WHERE order_id IN (?, ?, ?, ?) AND qty >= ? ORDER BY id"
    );
    assert_eq!(
        items_params,
        &[json!(1), json!(2), json!(3), json!(3), json!(1)],
        "keys padded to a power of two with the last key, then the field's own argument"
    );
    answer(
        &mut exec,
        level1[1].0,
        json!([
            {"__terminus_key": 1, "id": 100, "order_id": 1, "qty": 2},
            {"__terminus_key": 3, "id": 101, "order_id": 3, "qty": 1},
            {"__terminus_key": 1, "id": 102, "order_id": 1, "qty": 5}
        ]),
    );
    assert!(
        outputs(&mut exec).is_empty(),
        "the customers are still missing"
    );
    answer(
        &mut exec,
        level1[0].0,
        json!([
            {"__terminus_key": "10", "id": 10, "full_name": "Ada"},
            {"__terminus_key": "11", "id": 11, "full_name": "Bob"}
        ]),
    );
    let level2 = poll_calls(&mut exec);
    assert_eq!(level2.len(), 1, "the customers' orders: one statement");
    assert_eq!(sql(&level2[0].1).1, &[json!(10), json!(11)]);
    answer(
        &mut exec,
        level2[0].0,
        json!([
            {"__terminus_key": 10, "id": 1, "customer_id": 10},
            {"__terminus_key": 10, "id": 3, "customer_id": 10},
            {"__terminus_key": 11, "id": 2, "customer_id": 11}
        ]),
    );
    assert_eq!(
        result(&mut exec),
        json!({"data": {"orders": [
            {"id": "1", "customerId": "10", "customer": {"fullName": "Ada", "orders": [{"id": "1"}, {"id": "3"}]},
             "items": [{"id": "100", "qty": 2}, {"id": "102", "qty": 5}]},
            {"id": "2", "customerId": "11", "customer": {"fullName": "Bob", "orders": [{"id": "2"}]},
             "items": []},
            {"id": "3", "customerId": "10", "customer": {"fullName": "Ada", "orders": [{"id": "1"}, {"id": "3"}]},
             "items": [{"id": "101", "qty": 1}]}
        ]}})
    );
}

#[test]
fn identical_relation_statements_in_one_document_run_once() {
    let (mut exec, calls) =
        start("{ a: order(id: 1) { customer { fullName } } b: order(id: 2) { customer { id } } }");
    assert_eq!(calls.len(), 2);
    answer(&mut exec, calls[0].0, json!([{"id": 1, "customer_id": 7}]));
    let first = poll_calls(&mut exec);
    assert_eq!(first.len(), 1);
    answer(&mut exec, calls[1].0, json!([{"id": 2, "customer_id": 7}]));
    assert!(
        poll_calls(&mut exec).is_empty(),
        "the same statement with the same key is already running"
    );
    answer(
        &mut exec,
        first[0].0,
        json!([{"__terminus_key": 7, "id": 7, "full_name": "Ada"}]),
    );
    assert_eq!(
        result(&mut exec),
        json!({"data": {"a": {"customer": {"fullName": "Ada"}}, "b": {"customer": {"id": "7"}}}})
    );
}

#[test]
fn leaf_lists_json_text_and_parents_without_keys() {
    let (mut exec, calls) = start("{ order(id: 1) { note skus customer { id } } }");
    answer(
        &mut exec,
        calls[0].0,
        json!([{"id": 1, "customer_id": null, "note": "{\"gift\": true, \"to\": [1, 2]}"}]),
    );
    let level1 = poll_calls(&mut exec);
    assert_eq!(level1.len(), 1, "no customer key: no customer statement");
    answer(
        &mut exec,
        level1[0].0,
        json!([{"__terminus_key": 1, "sku": "A-1"}, {"__terminus_key": 1, "sku": "B-2"}]),
    );
    assert_eq!(
        result(&mut exec),
        json!({"data": {"order": {"note": {"gift": true, "to": [1, 2]}, "skus": ["A-1", "B-2"], "customer": null}}})
    );
}

#[test]
fn a_failed_relation_statement_fails_its_root_field_with_the_code() {
    let (mut exec, calls) = start("{ order(id: 1) { customer { id } } }");
    answer(&mut exec, calls[0].0, json!([{"id": 1, "customer_id": 3}]));
    let level1 = poll_calls(&mut exec);
    exec.handle_call_event(
        level1[0].0,
        CallEvent::Failed(
            UpstreamFailure::new(FailureKind::LockTimeout, "lock wait")
                .with_extension("errno", json!(1205)),
        ),
    );
    let v = result(&mut exec);
    assert_eq!(v["data"], json!({"order": null}));
    assert_eq!(
        v["errors"][0]["extensions"]["code"],
        "UPSTREAM_LOCK_TIMEOUT"
    );
    assert_eq!(v["errors"][0]["extensions"]["errno"], 1205);
    assert!(v["errors"][0]["message"]
        .as_str()
        .unwrap()
        .starts_with("relation Order.customer: "));
}

#[test]
fn relations_that_do_not_fit_are_schema_errors() {
    let bad = SDL.replace(
        "WHERE id = :parent.customer_id",
        "WHERE id > :parent.customer_id",
    );
    let err = Schema::parse(&bad, "shop.graphql").unwrap_err().to_string();
    assert!(err.contains("relation Order.customer"), "{err}");
    let bad = SDL.replace("AND qty >= :minQty", "AND qty >= :maxQty");
    let err = Schema::parse(&bad, "shop.graphql").unwrap_err().to_string();
    assert!(err.contains(":maxQty"), "{err}");
}

#[test]
fn a_subscription_selecting_a_relation_is_refused_before_any_call() {
    let sdl = format!(
        "{SDL}\ntype Subscription {{ board: [Order!]! @live(db: \"shop\", query: \"SELECT id, customer_id FROM orders\", every: \"1s\") }}"
    );
    let schema = Schema::parse(&sdl, "shop.graphql").unwrap();
    let prepared = schema
        .prepare(
            &request(
                "subscription { board { id customer { id } } }",
                json!({}),
                None,
            ),
            &Limits::default(),
        )
        .unwrap();
    let mut exec = Execution::new(prepared);
    assert!(exec.poll_call().is_none());
    let out = outputs(&mut exec);
    let [UpstreamEvent::Error(errors)] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(errors[0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED");
    assert!(exec.is_finished());
}

#[test]
fn a_relation_binds_auth_claims_from_the_token_not_from_arguments() {
    let sdl = SDL.replace(
        "WHERE id = :parent.customer_id\")",
        "WHERE id = :parent.customer_id AND owner = :auth.sub\")",
    );
    let schema = Schema::parse(&sdl, "shop.graphql").unwrap();
    let mut prepared = schema
        .prepare(
            &request("{ order(id: 1) { customer { id } } }", json!({}), None),
            &Limits::default(),
        )
        .unwrap();
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), json!("user-9"));
    prepared.set_claims(claims);
    let mut exec = Execution::new(prepared);
    let root = poll_calls(&mut exec);
    answer(&mut exec, root[0].0, json!([{"id": 1, "customer_id": 4}]));
    let level1 = poll_calls(&mut exec);
    let (statement, params) = sql(&level1[0].1);
    assert!(
        statement.ends_with("WHERE id IN (?) AND owner = ?"),
        "{statement}"
    );
    assert_eq!(params, &[json!(4), json!("user-9")]);
}
