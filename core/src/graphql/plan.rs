//! Planning: a validated operation, with its variables coerced, becomes one
//! plain tree of fields per response key (`@skip`/`@include` applied,
//! fragments merged, arguments coerced): the [`PreparedOperation`] that
//! `core/src/graphql/execution.rs` runs.

use super::coerce;
use super::errors::{GraphQLError, BAD_USER_INPUT};
use super::schema::{OperationKind, Schema, TypeRef};
use super::validate::{ChosenOperation, Fragments, SelSet};
use graphql_parser::query as q;
use graphql_parser::Pos;
use serde_json::{Map, Value};
use std::collections::HashSet;

type Directive = q::Directive<'static, String>;

/// One field of a prepared operation: a response key with everything needed
/// to resolve and shape it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PlannedField {
    /// The alias, or the field name.
    pub key: String,
    /// The field name in the schema.
    pub name: String,
    /// The object type the field belongs to.
    pub parent: String,
    /// The field's declared type.
    pub ty: TypeRef,
    /// Coerced argument values (absent arguments without default omitted).
    pub args: Map<String, Value>,
    /// The merged sub-selection (empty for leaves).
    pub selection: Vec<PlannedField>,
    /// Where the field (its first occurrence) is in the document.
    pub pos: Pos,
}

/// A validated operation, ready for [`super::Execution::new`].
#[derive(Debug, Clone)]
pub struct PreparedOperation {
    pub(crate) schema: Schema,
    pub(crate) kind: OperationKind,
    pub(crate) root_type: String,
    pub(crate) fields: Vec<PlannedField>,
    /// The caller's verified token claims, for `:auth.<claim>` SQL
    /// parameters (empty when unauthenticated).
    pub(crate) claims: Map<String, Value>,
}

impl PreparedOperation {
    /// The caller's claims (empty when unauthenticated).
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// Sets the claims that `:auth.<claim>` SQL parameters bind.
    pub fn set_claims(&mut self, claims: Map<String, Value>) {
        self.claims = claims;
    }

    /// Query, mutation or subscription.
    pub fn kind(&self) -> OperationKind {
        self.kind
    }

    /// The response keys of the root fields, in order.
    pub fn root_keys(&self) -> Vec<&str> {
        self.fields.iter().map(|f| f.key.as_str()).collect()
    }
}
/// Step 7 of `Schema::prepare`: the chosen operation's field tree.
pub(crate) fn plan_operation(
    schema: &Schema,
    chosen: &ChosenOperation<'_, '_>,
    vars: &Map<String, Value>,
) -> Result<PreparedOperation, Vec<Value>> {
    let op = chosen.op;
    let root = schema.root(op.kind).expect("validated above").to_string();
    let mut planner = Planner {
        schema,
        fragments: chosen.fragments,
        vars,
    };
    let fields = planner
        .plan(&root, &[op.selection])
        .map_err(|e| super::errors::to_values(&[e]))?;
    Ok(PreparedOperation {
        schema: schema.clone(),
        kind: op.kind,
        root_type: root,
        fields,
        claims: Map::new(),
    })
}

struct Planner<'a> {
    schema: &'a Schema,
    fragments: &'a Fragments<'a>,
    vars: &'a Map<String, Value>,
}

type Field = q::Field<'static, String>;

impl<'a> Planner<'a> {
    /// `@skip(if:)` / `@include(if:)`: whether the selection is included.
    fn included(&self, directives: &[Directive]) -> Result<bool, GraphQLError> {
        for d in directives {
            let Some((_, lit)) = d.arguments.iter().find(|(n, _)| n == "if") else {
                continue;
            };
            let v = coerce::literal_to_json(
                self.schema,
                lit,
                &TypeRef::NonNull(Box::new(TypeRef::Named("Boolean".into()))),
                Some(self.vars),
            )
            .map_err(|e| {
                GraphQLError::new(format!("@{}: {e}", d.name), BAD_USER_INPUT).at(d.position)
            })?;
            let flag = v.as_bool().unwrap_or(false);
            if (d.name == "skip" && flag) || (d.name == "include" && !flag) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Spec CollectFields over several selection sets of the same object type.
    fn collect(
        &self,
        sets: &[&'a SelSet],
        groups: &mut Vec<(String, Vec<&'a Field>)>,
        visited: &mut HashSet<&'a str>,
    ) -> Result<(), GraphQLError> {
        for set in sets {
            for sel in &set.items {
                match sel {
                    q::Selection::Field(f) => {
                        if !self.included(&f.directives)? {
                            continue;
                        }
                        let key = f.alias.as_ref().unwrap_or(&f.name);
                        match groups.iter_mut().find(|(k, _)| k == key) {
                            Some((_, list)) => list.push(f),
                            None => groups.push((key.clone(), vec![f])),
                        }
                    }
                    q::Selection::FragmentSpread(s) => {
                        if !self.included(&s.directives)?
                            || !visited.insert(s.fragment_name.as_str())
                        {
                            continue;
                        }
                        if let Some(frag) = self.fragments.get(s.fragment_name.as_str()) {
                            self.collect(&[&frag.selection_set], groups, visited)?;
                        }
                    }
                    q::Selection::InlineFragment(i) => {
                        if self.included(&i.directives)? {
                            self.collect(&[&i.selection_set], groups, visited)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn plan(
        &mut self,
        parent: &str,
        sets: &[&'a SelSet],
    ) -> Result<Vec<PlannedField>, GraphQLError> {
        let mut groups = Vec::new();
        self.collect(sets, &mut groups, &mut HashSet::new())?;
        let mut out = Vec::with_capacity(groups.len());
        for (key, fields) in groups {
            let first = fields[0];
            for other in &fields[1..] {
                if other.name != first.name {
                    return Err(GraphQLError::validation(
                        format!(
                            "Fields \"{key}\" conflict because \"{}\" and \"{}\" are different fields. Use different aliases on the fields to fetch both if this was intentional.",
                            first.name, other.name
                        ),
                        first.position,
                    )
                    .at(other.position));
                }
                let mut a = first.arguments.clone();
                let mut b = other.arguments.clone();
                a.sort_by(|x, y| x.0.cmp(&y.0));
                b.sort_by(|x, y| x.0.cmp(&y.0));
                if a != b {
                    return Err(GraphQLError::validation(
                        format!(
                            "Fields \"{key}\" conflict because they have differing arguments. Use different aliases on the fields to fetch both if this was intentional."
                        ),
                        first.position,
                    )
                    .at(other.position));
                }
            }
            let def = self
                .schema
                .field(parent, &first.name)
                .expect("validated field");
            let args = coerce::coerce_arguments(
                self.schema,
                &def.args,
                &first.arguments,
                self.vars,
                &format!("field \"{parent}.{}\"", first.name),
            )
            .map_err(|e| GraphQLError::new(e, BAD_USER_INPUT).at(first.position))?;
            let ty = def.ty.clone();
            let is_leaf = self.schema.get(ty.named()).is_some_and(|t| t.is_leaf());
            let selection = if is_leaf {
                Vec::new()
            } else {
                let subsets: Vec<&'a SelSet> = fields.iter().map(|f| &f.selection_set).collect();
                let named = ty.named().to_string();
                self.plan(&named, &subsets)?
            };
            out.push(PlannedField {
                key,
                name: first.name.clone(),
                parent: parent.to_string(),
                ty,
                args,
                selection,
                pos: first.position,
            });
        }
        Ok(out)
    }
}
