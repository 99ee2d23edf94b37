//! The crate's error types are `std::error::Error`s whose text says what is
//! wrong, so a host can box them, chain them and print them.

use std::error::Error;
use terminus_core::graphql::{sql::rewrite_named_params, GraphQLError, Schema, VALIDATION_FAILED};
use terminus_core::protocol::{legacy, transport};

fn boxed<E: Error + 'static>(e: E) -> Box<dyn Error> {
    Box::new(e)
}

#[test]
fn parse_errors_are_std_errors_with_their_message() {
    let e = boxed(transport::ClientMessage::parse("not json").unwrap_err());
    assert_eq!(e.to_string(), "Invalid message: not JSON");
    let e = boxed(legacy::ClientMessage::parse("{}").unwrap_err());
    assert_eq!(e.to_string(), "Invalid message: missing type");

    let e = boxed(Schema::parse("type Query {", "broken.graphql").unwrap_err());
    assert!(e.to_string().starts_with("broken.graphql:"), "{e}");

    let e = boxed(rewrite_named_params("SELECT 'open").unwrap_err());
    assert_eq!(e.to_string(), "unterminated '-quoted text");

    let e = boxed(GraphQLError::validation(
        "Cannot query field \"x\" on type \"Query\".",
        graphql_parser::Pos { line: 1, column: 3 },
    ));
    assert_eq!(
        e.to_string(),
        format!("Cannot query field \"x\" on type \"Query\". (1:3) [{VALIDATION_FAILED}]")
    );
}
