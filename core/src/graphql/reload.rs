//! The rule of a hot reload for live operations: which keep running on
//! the new schema and configuration, and which end.
//!
//! A live operation keeps running when every root field it selects still
//! exists on the new schema's root type of its kind and every upstream its
//! root fields resolve from (in the schema it started with and in the new
//! one) is still configured. Otherwise it ends with one GraphQL error, code
//! [`SCHEMA_RELOADED`], that names the field or the upstream. The host
//! (runtime-smol `execute.rs`) hands every live [`super::Execution`] the
//! new schema through [`super::Execution::handle_reload`].

use super::plan::PreparedOperation;
use super::schema::{Resolver, Schema, UpstreamNames};
use super::GraphQLError;

/// `extensions.code` of an operation ended by a reload that removed its
/// field or its upstream.
pub const SCHEMA_RELOADED: &str = "SCHEMA_RELOADED";

/// The upstream a field resolves from: `("gRPC upstream", name)` or
/// `("database", name)`.
fn upstream_of(resolver: Option<&Resolver>) -> Option<(&'static str, &str)> {
    match resolver? {
        Resolver::Grpc { upstream, .. } => Some(("gRPC upstream", upstream)),
        Resolver::Sql { db, .. } | Resolver::Live { db, .. } => Some(("database", db)),
    }
}

fn configured(names: &UpstreamNames, kind: &str, name: &str) -> bool {
    if kind == "database" {
        names.sql.contains(name)
    } else {
        names.grpc.contains(name)
    }
}

/// Whether `op` may keep running once `new` (with the upstreams `upstreams`
/// configured) replaces the schema it was prepared against; the error that
/// ends it when not.
pub(crate) fn verdict(
    op: &PreparedOperation,
    new: &Schema,
    upstreams: &UpstreamNames,
) -> Result<(), GraphQLError> {
    let ended = |why: String| {
        Err(GraphQLError::new(
            format!("{why}; the operation ended (subscribe again to use the new schema)"),
            SCHEMA_RELOADED,
        ))
    };
    for field in &op.fields {
        if field.name.starts_with("__") {
            continue;
        }
        let Some(root) = new.root(op.kind) else {
            return ended(format!(
                "the schema was reloaded without a root type for {:?} operations",
                op.kind
            ));
        };
        let Some(def) = new.field(root, &field.name) else {
            return ended(format!(
                "the schema was reloaded without the field {}.{}",
                op.root_type, field.name
            ));
        };
        let old = op.schema.field(&op.root_type, &field.name);
        for (kind, name) in [
            upstream_of(old.and_then(|f| f.resolver.as_ref())),
            upstream_of(def.resolver.as_ref()),
        ]
        .into_iter()
        .flatten()
        {
            if !configured(upstreams, kind, name) {
                return ended(format!(
                    "the configuration was reloaded without the {kind} {name:?} of the field {}.{}",
                    op.root_type, field.name
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graphql::{Execution, Limits, Step};
    use crate::operation::OperationRequest;
    use crate::UpstreamEvent;

    const OLD: &str = r#"
type Query { hello(name: String): String @grpc(upstream: "demo", method: "d.v1.Demo/Hello", result: "message") }
type Subscription {
  ticks(everyMs: Int!): Tick! @grpc(upstream: "demo", method: "d.v1.Demo/Ticks")
  clock: Tick! @grpc(upstream: "other", method: "d.v1.Demo/Ticks")
}
type Tick { seq: Int! }
"#;

    fn schema(sdl: &str) -> Schema {
        Schema::parse(sdl, "test.graphql").unwrap()
    }

    fn names(grpc: &[&str]) -> UpstreamNames {
        UpstreamNames {
            grpc: grpc.iter().map(|s| (*s).to_owned()).collect(),
            sql: Default::default(),
        }
    }

    fn started(query: &str) -> Execution {
        let request = OperationRequest {
            id: "1".to_owned(),
            query: query.to_owned(),
            operation_name: None,
            variables: Default::default(),
            extensions: Default::default(),
        };
        let mut execution = Execution::start(&schema(OLD), &request, &Limits::default());
        // Hand out the first call, as the host does.
        assert!(matches!(execution.poll(), Some(Step::Call(..))));
        execution
    }

    fn drain(execution: &mut Execution) -> Vec<Step> {
        std::iter::from_fn(|| execution.poll()).collect()
    }

    #[test]
    fn an_operation_whose_field_and_upstream_remain_keeps_running() {
        let mut execution = started("subscription { ticks(everyMs: 10) { seq } }");
        let new = schema(&OLD.replace("clock: Tick!", "clock2: Tick!"));
        execution.handle_reload(&new, &names(&["demo", "other"]));
        assert!(drain(&mut execution).is_empty());
        assert!(!execution.is_finished());
    }

    #[test]
    fn an_operation_whose_field_was_removed_ends_with_a_clear_error() {
        let mut execution = started("subscription { t: ticks(everyMs: 10) { seq } }");
        let new = schema(&OLD.replace(
            "ticks(everyMs: Int!): Tick! @grpc(upstream: \"demo\", method: \"d.v1.Demo/Ticks\")",
            "",
        ));
        execution.handle_reload(&new, &names(&["demo", "other"]));
        let steps = drain(&mut execution);
        assert!(matches!(steps[0], Step::Cancel(_)), "{steps:?}");
        let Step::Output(UpstreamEvent::Error(errors)) = &steps[1] else {
            panic!("{steps:?}");
        };
        assert_eq!(errors[0]["extensions"]["code"], SCHEMA_RELOADED);
        let message = errors[0]["message"].as_str().unwrap();
        assert!(message.contains("Subscription.ticks"), "{message}");
        assert!(execution.is_finished());
    }

    #[test]
    fn an_operation_whose_upstream_was_removed_ends() {
        let mut execution = started("subscription { clock { seq } }");
        execution.handle_reload(&schema(OLD), &names(&["demo"]));
        let steps = drain(&mut execution);
        let Some(Step::Output(UpstreamEvent::Error(errors))) = steps.last() else {
            panic!("{steps:?}");
        };
        let message = errors[0]["message"].as_str().unwrap();
        assert!(message.contains("\"other\""), "{message}");
        // Another operation on the kept upstream runs on.
        let mut execution = started("subscription { ticks(everyMs: 5) { seq } }");
        execution.handle_reload(&schema(OLD), &names(&["demo"]));
        assert!(drain(&mut execution).is_empty());
    }
}
