//! Validation of a document against the schema (the steps of
//! `Schema::prepare` in `core/src/graphql/prepare.rs` before planning): the
//! size bound, parsing, the document's rules, the choice of the operation,
//! the limits on the expanded operation and the coercion of its variables.
//!
//! The rules are the GraphQL spec's (section 5) that matter to a gateway
//! over object types (Terminus schemas have no interfaces or unions): see
//! `docs/schema.md`. Error messages follow graphql-js's wording.

use super::coerce::{self, Vars};
use super::errors::{self, GraphQLError, BAD_USER_INPUT};
use super::schema::{InputValueDef, Literal, OperationKind, Schema, TypeKind, TypeRef};
use graphql_parser::query as q;
use graphql_parser::Pos;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

pub(crate) type Doc = q::Document<'static, String>;
pub(crate) type SelSet = q::SelectionSet<'static, String>;
type Directive = q::Directive<'static, String>;

/// Bounds on what one operation may ask for. Every bound is checked before
/// anything runs; a breach is a `GRAPHQL_VALIDATION_FAILED` error.
///
/// Deserializable from configuration (every key optional, defaults below):
/// `max_depth`, `max_fields`, `max_aliases`, `max_query_bytes`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Deepest nesting of selection sets (the root selection is depth 1).
    /// Default 20: the standard introspection query needs 14. Independently
    /// of this limit, the parser refuses documents that nest brackets of any
    /// kind more than 50 deep, so no document can exhaust the stack.
    pub max_depth: usize,
    /// Most field selections, counted with fragments expanded (so a
    /// "fragment bomb" cannot hide behind a short document). Default 1000.
    pub max_fields: usize,
    /// Most aliased fields in the document. Default 50.
    pub max_aliases: usize,
    /// Largest document, in bytes. Default 64 KiB.
    pub max_query_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 20,
            max_fields: 1000,
            max_aliases: 50,
            max_query_bytes: 64 * 1024,
        }
    }
}

/// One operation of a document, whatever its kind.
pub(crate) struct OpView<'d> {
    pub(crate) kind: OperationKind,
    name: Option<&'d str>,
    pos: Pos,
    vars: &'d [q::VariableDefinition<'static, String>],
    directives: &'d [Directive],
    pub(crate) selection: &'d SelSet,
}

fn op_view<'d>(def: &'d q::OperationDefinition<'static, String>) -> OpView<'d> {
    match def {
        q::OperationDefinition::SelectionSet(s) => OpView {
            kind: OperationKind::Query,
            name: None,
            pos: s.span.0,
            vars: &[],
            directives: &[],
            selection: s,
        },
        q::OperationDefinition::Query(o) => OpView {
            kind: OperationKind::Query,
            name: o.name.as_deref(),
            pos: o.position,
            vars: &o.variable_definitions,
            directives: &o.directives,
            selection: &o.selection_set,
        },
        q::OperationDefinition::Mutation(o) => OpView {
            kind: OperationKind::Mutation,
            name: o.name.as_deref(),
            pos: o.position,
            vars: &o.variable_definitions,
            directives: &o.directives,
            selection: &o.selection_set,
        },
        q::OperationDefinition::Subscription(o) => OpView {
            kind: OperationKind::Subscription,
            name: o.name.as_deref(),
            pos: o.position,
            vars: &o.variable_definitions,
            directives: &o.directives,
            selection: &o.selection_set,
        },
    }
}

/// A variable used somewhere, with the type its position expects.
struct VarUsage {
    name: String,
    expected: TypeRef,
    location_has_default: bool,
    pos: Pos,
}

#[derive(Default)]
struct WalkResult {
    usages: Vec<VarUsage>,
    spreads: Vec<(String, Pos)>,
}

struct Validator<'s, 'a> {
    schema: &'s Schema,
    fragments: HashMap<&'a str, &'a q::FragmentDefinition<'static, String>>,
    errors: Vec<GraphQLError>,
}

fn ast_type(t: &q::Type<'static, String>) -> TypeRef {
    match t {
        q::Type::NamedType(n) => TypeRef::Named(n.clone()),
        q::Type::ListType(t) => TypeRef::List(Box::new(ast_type(t))),
        q::Type::NonNullType(t) => TypeRef::NonNull(Box::new(ast_type(t))),
    }
}

/// Whether a variable of type `var` may flow into a position of type
/// `expected` (spec "IsVariableUsageAllowed" / "AreTypesCompatible").
fn type_fits(var: &TypeRef, expected: &TypeRef) -> bool {
    match (var, expected) {
        (TypeRef::NonNull(v), TypeRef::NonNull(e)) => type_fits(v, e),
        (TypeRef::NonNull(v), e) => type_fits(v, e),
        (_, TypeRef::NonNull(_)) => false,
        (TypeRef::List(v), TypeRef::List(e)) => type_fits(v, e),
        (TypeRef::Named(v), TypeRef::Named(e)) => v == e,
        _ => false,
    }
}

fn collect_var_usages(
    schema: &Schema,
    lit: &Literal,
    ty: &TypeRef,
    has_default: bool,
    pos: Pos,
    out: &mut Vec<VarUsage>,
) {
    use q::Value as L;
    match lit {
        L::Variable(name) => out.push(VarUsage {
            name: name.clone(),
            expected: ty.clone(),
            location_has_default: has_default,
            pos,
        }),
        L::List(items) => {
            let item_ty = match ty.nullable() {
                TypeRef::List(t) => (**t).clone(),
                other => other.clone(),
            };
            for it in items {
                collect_var_usages(schema, it, &item_ty, false, pos, out);
            }
        }
        L::Object(obj) => {
            if let Some(TypeKind::InputObject { fields, .. }) =
                schema.get(ty.named()).map(|t| &t.kind)
            {
                for (k, v) in obj {
                    if let Some(f) = fields.iter().find(|f| &f.name == k) {
                        collect_var_usages(schema, v, &f.ty, f.default.is_some(), pos, out);
                    }
                }
            }
        }
        _ => {}
    }
}

impl<'a> Validator<'_, 'a> {
    fn err(&mut self, message: impl Into<String>, pos: Pos) {
        self.errors.push(GraphQLError::validation(message, pos));
    }

    fn check_args(
        &mut self,
        defs: &[InputValueDef],
        given: &[(String, Literal)],
        pos: Pos,
        owner: &str,
        out: &mut WalkResult,
    ) {
        let mut seen = HashSet::new();
        for (name, lit) in given {
            if !seen.insert(name.as_str()) {
                self.err(
                    format!("There can be only one argument named \"{name}\"."),
                    pos,
                );
                continue;
            }
            let Some(def) = defs.iter().find(|d| &d.name == name) else {
                self.err(format!("Unknown argument \"{name}\" on {owner}."), pos);
                continue;
            };
            if let Err(e) = coerce::literal_to_json_opt(self.schema, lit, &def.ty, Vars::Unchecked)
            {
                self.err(
                    format!("Argument \"{name}\" of {owner} has an invalid value: {e}"),
                    pos,
                );
            }
            collect_var_usages(
                self.schema,
                lit,
                &def.ty,
                def.default.is_some(),
                pos,
                &mut out.usages,
            );
        }
        for def in defs {
            if def.ty.is_non_null()
                && def.default.is_none()
                && !given.iter().any(|(n, _)| n == &def.name)
            {
                self.err(
                    format!(
                        "Argument \"{}\" of type \"{}\" is required on {owner}, but it was not provided.",
                        def.name, def.ty
                    ),
                    pos,
                );
            }
        }
    }

    fn check_directives(&mut self, directives: &[Directive], location: &str, out: &mut WalkResult) {
        let mut seen = HashSet::new();
        for d in directives {
            let Some(def) = self
                .schema
                .inner
                .directives
                .iter()
                .find(|x| x.name == d.name)
            else {
                self.err(format!("Unknown directive \"@{}\".", d.name), d.position);
                continue;
            };
            if !def.locations.contains(&location) {
                self.err(
                    format!("Directive \"@{}\" may not be used on {location}.", d.name),
                    d.position,
                );
                continue;
            }
            if !seen.insert(d.name.as_str()) && !def.repeatable {
                self.err(
                    format!(
                        "The directive \"@{}\" can only be used once at this location.",
                        d.name
                    ),
                    d.position,
                );
            }
            let args = def.args.clone();
            self.check_args(
                &args,
                &d.arguments,
                d.position,
                &format!("directive \"@{}\"", d.name),
                out,
            );
        }
    }

    fn walk(&mut self, parent: &str, set: &'a SelSet, out: &mut WalkResult) {
        for sel in &set.items {
            match sel {
                q::Selection::Field(f) => {
                    self.check_directives(&f.directives, "FIELD", out);
                    let Some(def) = self.schema.field(parent, &f.name) else {
                        self.err(
                            format!("Cannot query field \"{}\" on type \"{parent}\".", f.name),
                            f.position,
                        );
                        continue;
                    };
                    let (args, ty) = (def.args.clone(), def.ty.clone());
                    self.check_args(
                        &args,
                        &f.arguments,
                        f.position,
                        &format!("field \"{parent}.{}\"", f.name),
                        out,
                    );
                    let named = ty.named();
                    let is_leaf = self.schema.get(named).is_some_and(|t| t.is_leaf());
                    if is_leaf && !f.selection_set.items.is_empty() {
                        self.err(
                            format!(
                                "Field \"{}\" must not have a selection since type \"{ty}\" has no subfields.",
                                f.name
                            ),
                            f.position,
                        );
                    } else if !is_leaf && f.selection_set.items.is_empty() {
                        self.err(
                            format!(
                                "Field \"{}\" of type \"{ty}\" must have a selection of subfields. Did you mean \"{} {{ ... }}\"?",
                                f.name, f.name
                            ),
                            f.position,
                        );
                    } else if !is_leaf {
                        let named = named.to_string();
                        self.walk(&named, &f.selection_set, out);
                    }
                }
                q::Selection::FragmentSpread(s) => {
                    self.check_directives(&s.directives, "FRAGMENT_SPREAD", out);
                    out.spreads.push((s.fragment_name.clone(), s.position));
                    let Some(frag) = self.fragments.get(s.fragment_name.as_str()).copied() else {
                        self.err(
                            format!("Unknown fragment \"{}\".", s.fragment_name),
                            s.position,
                        );
                        continue;
                    };
                    let q::TypeCondition::On(cond) = &frag.type_condition;
                    if self
                        .schema
                        .get(cond)
                        .is_some_and(|t| !t.is_leaf() && !t.is_input())
                        && cond != parent
                    {
                        self.err(
                            format!(
                                "Fragment \"{}\" cannot be spread here as objects of type \"{parent}\" can never be of type \"{cond}\".",
                                s.fragment_name
                            ),
                            s.position,
                        );
                    }
                }
                q::Selection::InlineFragment(i) => {
                    self.check_directives(&i.directives, "INLINE_FRAGMENT", out);
                    let target = match &i.type_condition {
                        Some(q::TypeCondition::On(cond)) => {
                            if !self.check_condition(cond, i.position) {
                                continue;
                            }
                            if cond != parent {
                                self.err(
                                    format!("Fragment cannot be spread here as objects of type \"{parent}\" can never be of type \"{cond}\"."),
                                    i.position,
                                );
                                continue;
                            }
                            cond.as_str()
                        }
                        None => parent,
                    };
                    let target = target.to_string();
                    self.walk(&target, &i.selection_set, out);
                }
            }
        }
    }

    /// A type condition names a known object type.
    fn check_condition(&mut self, cond: &str, pos: Pos) -> bool {
        match self.schema.get(cond) {
            None => {
                self.err(format!("Unknown type \"{cond}\"."), pos);
                false
            }
            Some(t) if t.is_leaf() || t.is_input() => {
                self.err(
                    format!("Fragment cannot condition on non composite type \"{cond}\"."),
                    pos,
                );
                false
            }
            Some(_) => true,
        }
    }
}

/// Counts fields and depth of the chosen operation with fragments expanded,
/// stopping as soon as a limit is passed.
struct Counter<'a> {
    fragments: &'a HashMap<&'a str, &'a q::FragmentDefinition<'static, String>>,
    fields: usize,
    max_depth_seen: usize,
    limits: &'a Limits,
}

impl Counter<'_> {
    fn count(&mut self, set: &SelSet, depth: usize) -> bool {
        for sel in &set.items {
            match sel {
                q::Selection::Field(f) => {
                    self.fields += 1;
                    self.max_depth_seen = self.max_depth_seen.max(depth);
                    if self.fields > self.limits.max_fields || depth > self.limits.max_depth {
                        return false;
                    }
                    if !self.count(&f.selection_set, depth + 1) {
                        return false;
                    }
                }
                q::Selection::FragmentSpread(s) => {
                    if let Some(frag) = self.fragments.get(s.fragment_name.as_str()) {
                        if !self.count(&frag.selection_set, depth) {
                            return false;
                        }
                    }
                }
                q::Selection::InlineFragment(i) => {
                    if !self.count(&i.selection_set, depth) {
                        return false;
                    }
                }
            }
        }
        true
    }
}

fn count_aliases(set: &SelSet) -> usize {
    set.items
        .iter()
        .map(|sel| match sel {
            q::Selection::Field(f) => {
                usize::from(f.alias.is_some()) + count_aliases(&f.selection_set)
            }
            q::Selection::FragmentSpread(_) => 0,
            q::Selection::InlineFragment(i) => count_aliases(&i.selection_set),
        })
        .sum()
}

fn validation_errors(errors: Vec<GraphQLError>) -> Vec<Value> {
    errors::to_values(&errors)
}

/// A document's fragments by name.
pub(crate) type Fragments<'d> = HashMap<&'d str, &'d q::FragmentDefinition<'static, String>>;

/// A document that passed validation: its operations and its fragments.
pub(crate) struct ValidDocument<'d> {
    ops: Vec<OpView<'d>>,
    fragments: Fragments<'d>,
}

/// The operation chosen to run, with the fragments it may spread.
pub(crate) struct ChosenOperation<'v, 'd> {
    pub(crate) op: &'v OpView<'d>,
    pub(crate) fragments: &'v Fragments<'d>,
}

/// Step 1: the document is no larger than `limits.max_query_bytes`.
pub(crate) fn check_document_size(query: &str, limits: &Limits) -> Result<(), Vec<Value>> {
    if query.len() > limits.max_query_bytes {
        return Err(validation_errors(vec![GraphQLError::new(
            format!(
                "The document is {} bytes, more than the limit of {} bytes.",
                query.len(),
                limits.max_query_bytes
            ),
            errors::VALIDATION_FAILED,
        )]));
    }
    Ok(())
}

/// Step 2: the document parses.
pub(crate) fn parse_document(query: &str) -> Result<Doc, Vec<Value>> {
    match q::parse_query::<String>(query) {
        Ok(d) => Ok(d.into_static()),
        Err(e) => Err(vec![errors::from_parse_error(&e.to_string()).to_value()]),
    }
}

impl Schema {
    /// Step 3: every rule of the document (operations, fragments, variables,
    /// the alias limit), all errors at once.
    pub(crate) fn validate_document<'d>(
        &self,
        doc: &'d Doc,
        limits: &Limits,
    ) -> Result<ValidDocument<'d>, Vec<Value>> {
        let mut v = Validator {
            schema: self,
            fragments: HashMap::new(),
            errors: Vec::new(),
        };
        let mut ops = Vec::new();
        let mut frag_list = Vec::new();
        for def in &doc.definitions {
            match def {
                q::Definition::Operation(o) => ops.push(op_view(o)),
                q::Definition::Fragment(f) => {
                    if v.fragments.insert(f.name.as_str(), f).is_some() {
                        v.err(
                            format!("There can be only one fragment named \"{}\".", f.name),
                            f.position,
                        );
                    }
                    frag_list.push(f);
                }
            }
        }
        if ops.is_empty() {
            return Err(validation_errors(vec![GraphQLError::new(
                "The document contains no operation.",
                errors::VALIDATION_FAILED,
            )]));
        }

        // Aliases, document-wide.
        let aliases: usize = ops
            .iter()
            .map(|o| count_aliases(o.selection))
            .sum::<usize>()
            + frag_list
                .iter()
                .map(|f| count_aliases(&f.selection_set))
                .sum::<usize>();
        if aliases > limits.max_aliases {
            return Err(validation_errors(vec![GraphQLError::new(
                format!(
                    "The document has {aliases} aliases, more than the limit of {}.",
                    limits.max_aliases
                ),
                errors::VALIDATION_FAILED,
            )]));
        }

        // Fragments: each validated once against its type condition.
        let mut frag_walks: HashMap<&str, WalkResult> = HashMap::new();
        for f in &frag_list {
            let mut out = WalkResult::default();
            v.check_directives(&f.directives, "FRAGMENT_DEFINITION", &mut out);
            let q::TypeCondition::On(cond) = &f.type_condition;
            if v.check_condition(cond, f.position) {
                v.walk(cond, &f.selection_set, &mut out);
            }
            frag_walks.insert(f.name.as_str(), out);
        }
        // Cycles among fragments.
        {
            let mut state: HashMap<&str, u8> = HashMap::new(); // 1 = on stack, 2 = done
            fn visit<'x>(
                name: &'x str,
                walks: &'x HashMap<&'x str, WalkResult>,
                state: &mut HashMap<&'x str, u8>,
                errors: &mut Vec<GraphQLError>,
            ) {
                state.insert(name, 1);
                if let Some(w) = walks.get(name) {
                    for (next, pos) in &w.spreads {
                        match state.get(next.as_str()) {
                            Some(1) => errors.push(GraphQLError::validation(
                                format!("Cannot spread fragment \"{next}\" within itself."),
                                *pos,
                            )),
                            Some(_) => {}
                            None => {
                                if walks.contains_key(next.as_str()) {
                                    visit(next.as_str(), walks, state, errors)
                                }
                            }
                        }
                    }
                }
                state.insert(name, 2);
            }
            let mut names: Vec<&str> = frag_walks.keys().copied().collect();
            names.sort_unstable();
            for n in names {
                if !state.contains_key(n) {
                    visit(n, &frag_walks, &mut state, &mut v.errors);
                }
            }
        }

        // Operations.
        let mut used_fragments: HashSet<String> = HashSet::new();
        let mut op_names = HashSet::new();
        for op in &ops {
            v.operation(
                op,
                ops.len(),
                &frag_walks,
                &mut used_fragments,
                &mut op_names,
            );
        }
        for f in &frag_list {
            if !used_fragments.contains(&f.name) {
                v.err(
                    format!("Fragment \"{}\" is never used.", f.name),
                    f.position,
                );
            }
        }
        if !v.errors.is_empty() {
            return Err(validation_errors(v.errors));
        }
        Ok(ValidDocument {
            ops,
            fragments: v.fragments,
        })
    }

    /// Step 6: the variables' values, coerced to their declared types, with
    /// defaults applied.
    pub(crate) fn coerce_variables(
        &self,
        op: &OpView<'_>,
        variables: &Map<String, Value>,
    ) -> Result<Map<String, Value>, Vec<Value>> {
        let mut vars = Map::new();
        let mut input_errors = Vec::new();
        for var in op.vars {
            let ty = ast_type(&var.var_type);
            match variables.get(var.name.as_str()) {
                Some(value) => {
                    match coerce::json_to_input(self, value, &ty, &format!("${}", var.name)) {
                        Ok(c) => {
                            vars.insert(var.name.clone(), c);
                        }
                        Err(e) => input_errors.push(
                            GraphQLError::new(
                                format!("Variable \"${}\" got invalid value: {e}", var.name),
                                BAD_USER_INPUT,
                            )
                            .at(var.position),
                        ),
                    }
                }
                None => match &var.default_value {
                    Some(d) => {
                        if let Ok(c) = coerce::literal_to_json(self, d, &ty, None) {
                            vars.insert(var.name.clone(), c);
                        }
                    }
                    None if ty.is_non_null() => input_errors.push(
                        GraphQLError::new(
                            format!(
                                "Variable \"${}\" of required type \"{ty}\" was not provided.",
                                var.name
                            ),
                            BAD_USER_INPUT,
                        )
                        .at(var.position),
                    ),
                    None => {}
                },
            }
        }
        if !input_errors.is_empty() {
            return Err(errors::to_values(&input_errors));
        }
        Ok(vars)
    }
}

impl<'d> ValidDocument<'d> {
    /// Step 4: the operation named by `operation_name`, or the only one.
    pub(crate) fn choose_operation(
        &self,
        operation_name: Option<&str>,
    ) -> Result<ChosenOperation<'_, 'd>, Vec<Value>> {
        let ops = &self.ops;
        let op = match operation_name {
            Some(name) => match ops.iter().find(|o| o.name == Some(name)) {
                Some(o) => o,
                None => {
                    return Err(validation_errors(vec![GraphQLError::new(
                        format!("Unknown operation named \"{name}\"."),
                        errors::VALIDATION_FAILED,
                    )]))
                }
            },
            None if ops.len() == 1 => &ops[0],
            None => {
                return Err(validation_errors(vec![GraphQLError::new(
                    "Must provide operation name if query contains multiple operations.",
                    errors::VALIDATION_FAILED,
                )]))
            }
        };
        Ok(ChosenOperation {
            op,
            fragments: &self.fragments,
        })
    }
}

impl ChosenOperation<'_, '_> {
    /// Step 5: the operation, fragments expanded, is within the field and
    /// depth limits.
    pub(crate) fn check_limits(&self, limits: &Limits) -> Result<(), Vec<Value>> {
        let op = self.op;
        let mut counter = Counter {
            fragments: self.fragments,
            fields: 0,
            max_depth_seen: 0,
            limits,
        };
        if !counter.count(op.selection, 1) {
            let msg = if counter.fields > limits.max_fields {
                format!(
                    "The operation selects more than {} fields (fragments expanded), the limit.",
                    limits.max_fields
                )
            } else {
                format!(
                    "The operation is nested deeper than the limit of {} levels.",
                    limits.max_depth
                )
            };
            return Err(validation_errors(vec![GraphQLError::validation(
                msg, op.pos,
            )]));
        }
        Ok(())
    }
}

impl<'a> Validator<'_, 'a> {
    /// The rules of one operation of the document; errors go to `self.errors`.
    fn operation(
        &mut self,
        op: &OpView<'a>,
        op_count: usize,
        frag_walks: &HashMap<&str, WalkResult>,
        used_fragments: &mut HashSet<String>,
        op_names: &mut HashSet<&'a str>,
    ) {
        if let Some(n) = op.name {
            if !op_names.insert(n) {
                self.err(
                    format!("There can be only one operation named \"{n}\"."),
                    op.pos,
                );
            }
        } else if op_count > 1 {
            self.err(
                "This anonymous operation must be the only defined operation.",
                op.pos,
            );
        }
        let location = match op.kind {
            OperationKind::Query => "QUERY",
            OperationKind::Mutation => "MUTATION",
            OperationKind::Subscription => "SUBSCRIPTION",
        };
        let mut out = WalkResult::default();
        self.check_directives(op.directives, location, &mut out);
        let Some(root) = self.schema.root(op.kind) else {
            let what = match op.kind {
                OperationKind::Mutation => "mutations",
                _ => "subscriptions",
            };
            self.err(
                format!("Schema is not configured to execute {what}."),
                op.pos,
            );
            return;
        };
        self.walk(root, op.selection, &mut out);

        // Fragments reachable from this operation.
        let mut reach: Vec<&str> = Vec::new();
        let mut stack: Vec<&str> = out.spreads.iter().map(|(n, _)| n.as_str()).collect();
        while let Some(n) = stack.pop() {
            if reach.contains(&n) || !frag_walks.contains_key(n) {
                continue;
            }
            reach.push(n);
            stack.extend(frag_walks[n].spreads.iter().map(|(s, _)| s.as_str()));
        }
        used_fragments.extend(reach.iter().map(|s| s.to_string()));

        // Variables.
        let op_label = op
            .name
            .map(|n| format!(" by operation \"{n}\""))
            .unwrap_or_default();
        let mut defined: HashMap<&str, (TypeRef, bool)> = HashMap::new();
        for var in op.vars {
            let ty = ast_type(&var.var_type);
            if defined.contains_key(var.name.as_str()) {
                self.err(
                    format!("There can be only one variable named \"${}\".", var.name),
                    var.position,
                );
                continue;
            }
            match self.schema.get(ty.named()) {
                None => self.err(format!("Unknown type \"{}\".", ty.named()), var.position),
                Some(t) if !t.is_input() => self.err(
                    format!(
                        "Variable \"${}\" cannot be non-input type \"{ty}\".",
                        var.name
                    ),
                    var.position,
                ),
                Some(_) => {
                    if let Some(d) = &var.default_value {
                        if let Err(e) = coerce::literal_to_json(self.schema, d, &ty, None) {
                            self.err(
                                format!(
                                    "Variable \"${}\" has an invalid default value: {e}",
                                    var.name
                                ),
                                var.position,
                            );
                        }
                    }
                }
            }
            let has_default = var
                .default_value
                .as_ref()
                .is_some_and(|d| !matches!(d, q::Value::Null));
            defined.insert(var.name.as_str(), (ty, has_default));
        }
        let mut used: HashSet<&str> = HashSet::new();
        let all_usages = out
            .usages
            .iter()
            .chain(reach.iter().flat_map(|f| frag_walks[f].usages.iter()));
        for u in all_usages {
            used.insert(u.name.as_str());
            match defined.get(u.name.as_str()) {
                None => self.err(
                    format!("Variable \"${}\" is not defined{op_label}.", u.name),
                    u.pos,
                ),
                Some((ty, has_default)) => {
                    let effective = if !ty.is_non_null()
                        && u.expected.is_non_null()
                        && (*has_default || u.location_has_default)
                    {
                        TypeRef::NonNull(Box::new(ty.clone()))
                    } else {
                        ty.clone()
                    };
                    if !type_fits(&effective, &u.expected) {
                        self.err(
                            format!(
                                "Variable \"${}\" of type \"{ty}\" used in position expecting type \"{}\".",
                                u.name, u.expected
                            ),
                            u.pos,
                        );
                    }
                }
            }
        }
        for var in op.vars {
            if !used.contains(var.name.as_str()) {
                let label = op
                    .name
                    .map(|n| format!(" in operation \"{n}\""))
                    .unwrap_or_default();
                self.err(
                    format!("Variable \"${}\" is never used{label}.", var.name),
                    var.position,
                );
            }
        }

        // A subscription selects exactly one root field.
        if op.kind == OperationKind::Subscription {
            let mut keys: Vec<(String, String, Pos)> = Vec::new();
            root_keys(
                op.selection,
                &self.fragments,
                &mut keys,
                &mut HashSet::new(),
            );
            let label = op
                .name
                .map(|n| format!("Subscription \"{n}\""))
                .unwrap_or_else(|| "Anonymous Subscription".into());
            let mut distinct: Vec<&str> = keys.iter().map(|(k, _, _)| k.as_str()).collect();
            distinct.dedup();
            distinct.sort_unstable();
            distinct.dedup();
            if distinct.len() > 1 {
                self.err(
                    format!("{label} must select only one top level field."),
                    keys[1].2,
                );
            }
            if let Some((_, name, pos)) = keys.iter().find(|(_, n, _)| n.starts_with("__")) {
                self.err(
                    format!(
                        "{label} must not select an introspection top level field (\"{name}\")."
                    ),
                    *pos,
                );
            }
        }
    }
}

/// The root response keys of an operation (for the subscription rule),
/// ignoring `@skip`/`@include` like graphql-js does.
fn root_keys<'d>(
    set: &'d SelSet,
    fragments: &HashMap<&'d str, &'d q::FragmentDefinition<'static, String>>,
    out: &mut Vec<(String, String, Pos)>,
    visited: &mut HashSet<&'d str>,
) {
    for sel in &set.items {
        match sel {
            q::Selection::Field(f) => out.push((
                f.alias.clone().unwrap_or_else(|| f.name.clone()),
                f.name.clone(),
                f.position,
            )),
            q::Selection::FragmentSpread(s) => {
                if visited.insert(s.fragment_name.as_str()) {
                    if let Some(frag) = fragments.get(s.fragment_name.as_str()) {
                        root_keys(&frag.selection_set, fragments, out, visited);
                    }
                }
            }
            q::Selection::InlineFragment(i) => root_keys(&i.selection_set, fragments, out, visited),
        }
    }
}
