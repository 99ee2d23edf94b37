//! The GraphQL side of the protobuf mapping (docs/schema.md, "Types between
//! GraphQL and protobuf"): Terminus's built-in scalars, `@oneOf` input
//! objects and `@grpc(request:)`.

use serde_json::{json, Value};
use terminus_core::graphql::{Execution, Limits, Schema};
use terminus_core::{OperationRequest, UpstreamCall};

const SDL: &str = r#"
type Query {
  product(id: Int64!, size: UInt64, since: Timestamp, ttl: Duration, blob: Bytes, extra: JSON): Product
    @grpc(upstream: "shop", method: "shop.v1.Catalog/GetProduct")
}
type Mutation {
  createOrder(input: CreateOrderInput!, dryRun: Boolean): Product
    @grpc(upstream: "shop", method: "shop.v1.Orders/CreateOrder", request: "input")
}
type Product { id: Int64! sold: UInt64! blob: Bytes at: Timestamp meta: JSON }
input CardInput { token: String! }
input PaymentInput @oneOf { card: CardInput  iban: String }
input CreateOrderInput { customerId: String!  payment: PaymentInput }
"#;

fn schema() -> Schema {
    Schema::parse(SDL, "proto_types.graphql").unwrap()
}

fn prepare(query: &str, variables: Value) -> Result<Execution, Vec<Value>> {
    let request = OperationRequest {
        id: "1".into(),
        query: query.into(),
        operation_name: None,
        variables: variables.as_object().cloned().unwrap_or_default(),
        extensions: Default::default(),
    };
    schema()
        .prepare(&request, &Limits::default())
        .map(Execution::new)
}

fn request_of(query: &str, variables: Value) -> Value {
    let mut exec = prepare(query, variables).unwrap_or_else(|e| panic!("{e:?}"));
    match exec.poll_call() {
        Some((_, UpstreamCall::Grpc { request, .. })) => request,
        other => panic!("{other:?}"),
    }
}

fn error_of(query: &str, variables: Value) -> String {
    let errors = prepare(query, variables).expect_err("refused");
    errors[0]["message"].as_str().unwrap().to_owned()
}

#[test]
fn the_scalars_are_built_in_and_check_their_values() {
    let request = request_of(
        "{ product(id: 9007199254740993, size: \"18446744073709551615\", since: \"2024-05-01T12:30:00Z\", ttl: \"1.5s\", blob: \"aGk=\", extra: {a: [1, true]}) { id } }",
        json!({}),
    );
    assert_eq!(
        request,
        json!({"id": "9007199254740993", "size": "18446744073709551615", "since": "2024-05-01T12:30:00Z",
               "ttl": "1.5s", "blob": "aGk=", "extra": {"a": [1, true]}})
    );
    let request = request_of(
        "query($id: Int64!) { product(id: $id) { id } }",
        json!({"id": "-42"}),
    );
    assert_eq!(request, json!({"id": "-42"}));
    assert!(error_of("{ product(id: \"x\") { id } }", json!({})).contains("Int64 cannot represent"));
    assert!(error_of(
        "query($t: Timestamp) { product(id: 1, since: $t) { id } }",
        json!({"t": "yesterday"})
    )
    .contains("RFC 3339"));
    assert!(error_of("{ product(id: 1, ttl: \"5m\") { id } }", json!({})).contains("Duration"));
    assert!(error_of("{ product(id: 1, blob: \"%%\") { id } }", json!({})).contains("base64"));
    // A schema may still declare them (as before they were built in).
    Schema::parse(
        &format!("scalar Int64\nscalar JSON\n{SDL}"),
        "declared.graphql",
    )
    .unwrap();
}

#[test]
fn one_of_inputs_take_exactly_one_field() {
    let request = request_of(
        "mutation { createOrder(input: {customerId: \"c\", payment: {card: {token: \"t\"}}}) { id } }",
        json!({}),
    );
    assert_eq!(
        request,
        json!({"customerId": "c", "payment": {"card": {"token": "t"}}})
    );
    let message = error_of(
        "mutation { createOrder(input: {customerId: \"c\", payment: {card: {token: \"t\"}, iban: \"x\"}}) { id } }",
        json!({}),
    );
    assert!(message.contains("PaymentInput is @oneOf"), "{message}");
    let message = error_of(
        "mutation($p: PaymentInput) { createOrder(input: {customerId: \"c\", payment: $p}) { id } }",
        json!({"p": {}}),
    );
    assert!(message.contains("PaymentInput is @oneOf"), "{message}");
    let message = error_of(
        "mutation($i: CreateOrderInput!) { createOrder(input: $i) { id } }",
        json!({"i": {"customerId": "c", "payment": {"iban": null}}}),
    );
    assert!(message.contains("PaymentInput is @oneOf"), "{message}");
    let refused = Schema::parse(
        &SDL.replace(
            "input PaymentInput @oneOf { card: CardInput  iban: String }",
            "input PaymentInput @oneOf { card: CardInput  iban: String! }",
        ),
        "bad.graphql",
    )
    .unwrap_err();
    assert!(
        refused.message.contains("@oneOf input are nullable"),
        "{refused}"
    );
}

#[test]
fn request_maps_one_argument_onto_the_whole_message() {
    let request = request_of(
        "mutation { createOrder(input: {customerId: \"c\"}, dryRun: true) { id } }",
        json!({}),
    );
    assert_eq!(request, json!({"customerId": "c", "dryRun": true}));
    for (from, to) in [
        ("request: \"input\"", "request: \"order\""),
        (
            "createOrder(input: CreateOrderInput!, dryRun: Boolean)",
            "createOrder(input: String, dryRun: Boolean)",
        ),
    ] {
        let error = Schema::parse(&SDL.replace(from, to), "bad.graphql").unwrap_err();
        assert!(error.message.contains("@grpc request"), "{error}");
        assert_eq!(error.line, 8, "{error}");
    }
}

#[test]
fn a_grpc_value_that_does_not_fit_names_its_message_field() {
    use terminus_core::graphql::CallEvent;
    use terminus_core::UpstreamEvent;
    let mut exec = prepare("{ product(id: 1) { id sold } }", json!({})).unwrap();
    let (call, _) = exec.poll_call().unwrap();
    exec.handle_call_event(call, CallEvent::Item(json!({"id": "7", "sold": "lots"})));
    exec.handle_call_event(call, CallEvent::End);
    let Some(UpstreamEvent::Next(result)) = exec.poll_output() else {
        panic!("one result")
    };
    assert_eq!(result["data"], json!({"product": null}), "{result}");
    let error = &result["errors"][0];
    assert_eq!(error["path"], json!(["product", "sold"]));
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("(read from the upstream message field `sold`)"),
        "{result}"
    );
}
