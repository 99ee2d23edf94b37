//! The cost rule of an operation (step 8 of `Schema::prepare` in
//! `core/src/graphql/prepare.rs`): how many values the answer may hold at
//! most, counted on the planned field tree, so that aliases, fragments and
//! introspection cannot amplify a small document into a huge answer.
//!
//! The rule, documented in `docs/security.md`:
//!
//! - every field selection costs 1;
//! - the selection under a list field costs once per item the list may hold:
//!   for the introspection lists (`types`, `fields`, `args`, `enumValues`,
//!   `inputFields`, `directives`, ...) the largest such list this schema has;
//!   for any other list, `Limits::list_cost` (default 10);
//! - aliased copies of a field are separate selections, each costed.
//!
//! So `cost(f) = 1 + n(f) * sum(cost(children))`, where `n(f)` is 1 for a
//! field that is not a list. An operation costing more than
//! `Limits::max_cost` is refused with `GRAPHQL_VALIDATION_FAILED` before
//! anything runs.
//!
//! The schema's own tree is the cheapest amplifier (no upstream is called,
//! and one standard introspection query of the demo schema already costs
//! about 27,000), so it has a rule of its own: an operation selects
//! `__schema` at most `Limits::max_schema_fields` times (default 1, aliases
//! counted). Clients that introspect (GraphiQL, codegen, Apollo) select it
//! once.

use super::errors::{self, GraphQLError};
use super::plan::PlannedField;
use super::schema::{Schema, TypeKind, TypeRef};
use super::validate::Limits;
use serde_json::Value;

/// The largest lists the introspection of one schema can answer.
struct IntrospectionSizes {
    types: u64,
    fields: u64,
    args: u64,
    enum_values: u64,
    input_fields: u64,
    directives: u64,
    locations: u64,
}

impl IntrospectionSizes {
    fn of(schema: &Schema) -> Self {
        let inner = &schema.inner;
        let mut s = IntrospectionSizes {
            types: inner.types.len() as u64,
            fields: 0,
            args: 0,
            enum_values: 0,
            input_fields: 0,
            directives: inner.directives.len() as u64,
            locations: 0,
        };
        for t in &inner.types {
            match &t.kind {
                TypeKind::Object { fields } => {
                    s.fields = s.fields.max(fields.len() as u64);
                    for f in fields {
                        s.args = s.args.max(f.args.len() as u64);
                    }
                }
                TypeKind::Enum { values } => s.enum_values = s.enum_values.max(values.len() as u64),
                TypeKind::InputObject { fields } => {
                    s.input_fields = s.input_fields.max(fields.len() as u64)
                }
                TypeKind::Scalar { .. } => {}
            }
        }
        for d in &inner.directives {
            s.args = s.args.max(d.args.len() as u64);
            s.locations = s.locations.max(d.locations.len() as u64);
        }
        s
    }

    /// The most items of introspection list field `name` of type `parent`.
    fn list(&self, parent: &str, name: &str) -> Option<u64> {
        Some(match (parent, name) {
            ("__Schema", "types") => self.types,
            ("__Schema", "directives") => self.directives,
            ("__Type", "fields") => self.fields,
            ("__Type", "enumValues") => self.enum_values,
            ("__Type", "inputFields") => self.input_fields,
            // Terminus schemas have no interfaces or unions: always empty.
            ("__Type", "interfaces" | "possibleTypes") => 0,
            ("__Field" | "__Directive", "args") => self.args,
            ("__Directive", "locations") => self.locations,
            _ => return None,
        })
    }
}

fn is_list(ty: &TypeRef) -> bool {
    matches!(ty.nullable(), TypeRef::List(_))
}

fn cost_of(sizes: &IntrospectionSizes, list_cost: u64, fields: &[PlannedField], cap: u64) -> u64 {
    let mut total: u64 = 0;
    for f in fields {
        let n = if is_list(&f.ty) {
            sizes.list(&f.parent, &f.name).unwrap_or(list_cost)
        } else {
            1
        };
        let children = if f.selection.is_empty() || n == 0 {
            0
        } else {
            cost_of(sizes, list_cost, &f.selection, cap)
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
    cost_of(&IntrospectionSizes::of(schema), list_cost, fields, cap)
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
