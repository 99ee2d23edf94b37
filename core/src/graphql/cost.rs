//! The cost rule of an operation (step 8 of `Schema::prepare` in
//! `core/src/graphql/prepare.rs`): how many values the answer may hold at
//! most, counted on the planned field tree, so that aliases, fragments and
//! introspection cannot amplify a small document into a huge answer.
//!
//! The rule, documented in `docs/security.md`:
//!
//! - every field selection costs 1;
//! - the selection under a list field costs once per item the list may hold,
//!   assumed to be `Limits::list_cost` (default 10) for a list answered by
//!   an upstream;
//! - an introspection field (`__schema`, `__type`) costs exactly the number
//!   of fields its answer holds: the answer comes from the schema alone, so
//!   it is counted by walking the schema with the selection
//!   (`core/src/graphql/introspection.rs`), nested `fields { type { fields
//!   ... } }` and all, without building it;
//! - aliased copies of a field are separate selections, each costed.
//!
//! So, outside introspection, `cost(f) = 1 + n(f) * sum(cost(children))`,
//! where `n(f)` is 1 for a field that is not a list. An operation costing more than
//! `Limits::max_cost` is refused with `GRAPHQL_VALIDATION_FAILED` before
//! anything runs.
//!
//! The schema's own tree is the cheapest amplifier (no upstream is called,
//! so aliased copies of it cost the client nothing but bytes), so it also
//! has a rule of its own: an operation selects
//! `__schema` at most `Limits::max_schema_fields` times (default 1, aliases
//! counted). Clients that introspect (GraphiQL, codegen, Apollo) select it
//! once.

use super::errors::{self, GraphQLError};
use super::introspection;
use super::plan::PlannedField;
use super::schema::{Schema, TypeRef};
use super::validate::Limits;
use serde_json::Value;

fn is_list(ty: &TypeRef) -> bool {
    matches!(ty.nullable(), TypeRef::List(_))
}

fn cost_of(schema: &Schema, list_cost: u64, fields: &[PlannedField], cap: u64) -> u64 {
    let mut total: u64 = 0;
    for f in fields {
        if matches!(f.name.as_str(), "__schema" | "__type") {
            total = total.saturating_add(introspection::root_cost(schema, f, cap));
            if total > cap {
                return total;
            }
            continue;
        }
        let n = if is_list(&f.ty) { list_cost } else { 1 };
        let children = if f.selection.is_empty() || n == 0 {
            0
        } else {
            cost_of(schema, list_cost, &f.selection, cap)
        };
        total = total
            .saturating_add(1)
            .saturating_add(n.saturating_mul(children));
        if total > cap {
            // Already over the limit: the exact figure does not matter.
            return total;
        }
    }
    total
}

/// The cost of a planned operation under the rule above (saturating; stops
/// counting once it is beyond `cap`).
pub(crate) fn operation_cost(
    schema: &Schema,
    fields: &[PlannedField],
    list_cost: u64,
    cap: u64,
) -> u64 {
    cost_of(schema, list_cost, fields, cap)
}

/// Step 8 of `Schema::prepare`: refuses an operation whose cost is beyond
/// `limits.max_cost`.
pub(crate) fn check_cost(
    schema: &Schema,
    fields: &[PlannedField],
    limits: &Limits,
) -> Result<(), Vec<Value>> {
    let schema_fields = fields.iter().filter(|f| f.name == "__schema").count();
    if schema_fields > limits.max_schema_fields {
        let pos = fields
            .iter()
            .filter(|f| f.name == "__schema")
            .nth(limits.max_schema_fields)
            .map(|f| f.pos);
        let mut e = GraphQLError::new(
            format!(
                "The operation selects __schema {schema_fields} times; at most {} (max_query_schema_fields) is allowed.",
                limits.max_schema_fields
            ),
            errors::VALIDATION_FAILED,
        );
        if let Some(p) = pos {
            e = e.at(p);
        }
        return Err(errors::to_values(&[e]));
    }
    let max = limits.max_cost as u64;
    let cost = operation_cost(schema, fields, limits.list_cost as u64, max);
    if cost > max {
        let pos = fields.first().map(|f| f.pos);
        let mut e = GraphQLError::new(
            format!(
                "The operation costs more than the limit of {max} (max_query_cost): every field counts 1, times the items each list above it may hold. Ask for fewer fields, aliases or nested lists."
            ),
            errors::VALIDATION_FAILED,
        );
        if let Some(p) = pos {
            e = e.at(p);
        }
        return Err(errors::to_values(&[e]));
    }
    Ok(())
}
