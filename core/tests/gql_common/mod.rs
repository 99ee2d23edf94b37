//! Shared helpers of the GraphQL tests: the test schema and request builders.

#![allow(dead_code)]

use serde_json::{Map, Value};
use terminus_core::graphql::{Execution, Schema};
use terminus_core::{OperationRequest, UpstreamEvent};

/// A schema that uses every feature the validator and the shaper know.
pub const TEST_SDL: &str = r#"
"Any JSON value."
scalar JSON @specifiedBy(url: "https://www.rfc-editor.org/rfc/rfc8259")

"A colour."
enum Color {
  RED
  GREEN
  BLUE
  OLD @deprecated(reason: "use RED")
}

input Filter {
  color: Color = RED
  tags: [String!]
  nested: Inner
}

input Inner {
  n: Int!
}

type Query {
  "One user."
  user(id: ID!): User @grpc(upstream: "users", method: "users.v1.Users/Get")
  users(filter: Filter, first: Int = 10): [User!]!
    @grpc(upstream: "users", method: "users.v1.Users/List", result: "users")
  count: Int! @sql(db: "main", query: "SELECT COUNT(*) AS c FROM users")
  byName(name: String!): User @sql(db: "main", query: "SELECT id, name FROM users WHERE name = :name LIMIT 1")
  echo(value: JSON): JSON @grpc(upstream: "echo", method: "echo.v1.Echo/Echo", result: "value")
  colors(c: [Color!]!): [Color] @grpc(upstream: "echo", method: "echo.v1.Echo/Colors", result: "c")
  old: String @deprecated @grpc(upstream: "echo", method: "echo.v1.Echo/Old", result: "text")
}

type User {
  id: ID!
  name: String
  email: String @from(field: "email_address")
  friends: [User!]
  score: Float
  active: Boolean!
  color: Color
  seq_no: Int
}

type Mutation {
  rename(id: ID!, name: String!): User @grpc(upstream: "users", method: "users.v1.Users/Rename")
  del(id: ID!): Int! @sql(db: "main", query: "DELETE FROM users WHERE id = :id")
}

type Subscription {
  userEvents(id: ID!): User! @grpc(upstream: "users", method: "users.v1.Users/Watch")
  board(min: Int = 0): [User!]! @live(db: "main", query: "SELECT id, name, 1 AS active FROM users WHERE id > :min", every: "2s")
}
"#;

/// The test schema, loaded.
pub fn schema() -> Schema {
    Schema::parse(TEST_SDL, "test.graphql").expect("the test schema loads")
}

/// A request with `query`, `variables` (a JSON object) and `operation_name`.
pub fn request(query: &str, variables: Value, operation_name: Option<&str>) -> OperationRequest {
    OperationRequest {
        id: "1".into(),
        query: query.into(),
        operation_name: operation_name.map(str::to_string),
        variables: match variables {
            Value::Object(m) => m,
            _ => Map::new(),
        },
        extensions: Map::new(),
    }
}

/// Everything the execution has to say right now.
pub fn outputs(exec: &mut Execution) -> Vec<UpstreamEvent> {
    std::iter::from_fn(|| exec.poll_output()).collect()
}
