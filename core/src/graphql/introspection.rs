//! Introspection (`__schema`, `__type`, `__typename`), answered from the
//! schema alone, without any upstream call.
//!
//! The introspection types are declared in SDL below and loaded into every
//! schema, so operations on them are validated like any other. Terminus's
//! own directives (`@grpc`, `@sql`, `@live`, `@from`) are internal and do not
//! appear: clients see the standard `@skip`, `@include`, `@deprecated` and
//! `@specifiedBy`.
//! The definitions they answer from are in `core/src/graphql/builtins.rs`.

use super::coerce::print_literal;
use super::plan::PlannedField;
use super::schema::{
    DirectiveDef, EnumValueDef, FieldDef, InputValueDef, Schema, TypeDef, TypeKind, TypeRef,
};
use serde_json::{Map, Value};

/// A node of the introspection graph.
#[derive(Clone, Copy)]
enum Node<'s> {
    Schema,
    Type(&'s TypeRef),
    Named(&'s TypeDef),
    Field(&'s FieldDef),
    Input(&'s InputValueDef),
    EnumValue(&'s EnumValueDef),
    Directive(&'s DirectiveDef),
}

/// What a field of a node resolves to.
enum Out<'s> {
    Leaf(Value),
    One(Node<'s>),
    Many(Vec<Node<'s>>),
}

fn opt_str(s: &Option<String>) -> Value {
    s.as_ref().map_or(Value::Null, |s| Value::String(s.clone()))
}

fn include_deprecated(f: &PlannedField) -> bool {
    f.args
        .get("includeDeprecated")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

fn kind_name(t: &TypeDef) -> &'static str {
    match t.kind {
        TypeKind::Scalar { .. } => "SCALAR",
        TypeKind::Object { .. } => "OBJECT",
        TypeKind::Enum { .. } => "ENUM",
        TypeKind::InputObject { .. } => "INPUT_OBJECT",
    }
}

fn resolve<'s>(schema: &'s Schema, node: Node<'s>, f: &PlannedField) -> Out<'s> {
    let inner = &schema.inner;
    let named = |name: &str| -> Out<'s> {
        match schema.get(name) {
            Some(t) => Out::One(Node::Named(t)),
            None => Out::Leaf(Value::Null),
        }
    };
    match node {
        Node::Schema => match f.name.as_str() {
            "description" => Out::Leaf(opt_str(&inner.description)),
            "types" => Out::Many(inner.types.iter().map(Node::Named).collect()),
            "queryType" => named(&inner.query),
            "mutationType" => inner
                .mutation
                .as_deref()
                .map_or(Out::Leaf(Value::Null), named),
            "subscriptionType" => inner
                .subscription
                .as_deref()
                .map_or(Out::Leaf(Value::Null), named),
            "directives" => Out::Many(inner.directives.iter().map(Node::Directive).collect()),
            _ => Out::Leaf(Value::Null),
        },
        Node::Type(TypeRef::Named(n)) => match schema.get(n) {
            Some(t) => resolve(schema, Node::Named(t), f),
            None => Out::Leaf(Value::Null),
        },
        Node::Type(wrapper) => match f.name.as_str() {
            "kind" => Out::Leaf(Value::from(if wrapper.is_non_null() {
                "NON_NULL"
            } else {
                "LIST"
            })),
            "ofType" => match wrapper {
                TypeRef::List(t) | TypeRef::NonNull(t) => Out::One(Node::Type(t)),
                TypeRef::Named(_) => Out::Leaf(Value::Null),
            },
            _ => Out::Leaf(Value::Null),
        },
        Node::Named(t) => match f.name.as_str() {
            "kind" => Out::Leaf(Value::from(kind_name(t))),
            "name" => Out::Leaf(Value::from(t.name.clone())),
            "description" => Out::Leaf(opt_str(&t.description)),
            "specifiedByURL" => match &t.kind {
                TypeKind::Scalar { specified_by } => Out::Leaf(opt_str(specified_by)),
                _ => Out::Leaf(Value::Null),
            },
            "fields" => match &t.kind {
                TypeKind::Object { fields } => Out::Many(
                    fields
                        .iter()
                        .filter(|x| include_deprecated(f) || x.deprecation.is_none())
                        .map(Node::Field)
                        .collect(),
                ),
                _ => Out::Leaf(Value::Null),
            },
            "interfaces" => match &t.kind {
                TypeKind::Object { .. } => Out::Many(Vec::new()),
                _ => Out::Leaf(Value::Null),
            },
            "possibleTypes" => Out::Leaf(Value::Null),
            "enumValues" => match &t.kind {
                TypeKind::Enum { values } => Out::Many(
                    values
                        .iter()
                        .filter(|x| include_deprecated(f) || x.deprecation.is_none())
                        .map(Node::EnumValue)
                        .collect(),
                ),
                _ => Out::Leaf(Value::Null),
            },
            "inputFields" => match &t.kind {
                TypeKind::InputObject { fields, .. } => Out::Many(
                    fields
                        .iter()
                        .filter(|x| include_deprecated(f) || x.deprecation.is_none())
                        .map(Node::Input)
                        .collect(),
                ),
                _ => Out::Leaf(Value::Null),
            },
            "ofType" => Out::Leaf(Value::Null),
            "isOneOf" => match &t.kind {
                TypeKind::InputObject { one_of, .. } => Out::Leaf(Value::Bool(*one_of)),
                _ => Out::Leaf(Value::Null),
            },
            _ => Out::Leaf(Value::Null),
        },
        Node::Field(fd) => match f.name.as_str() {
            "name" => Out::Leaf(Value::from(fd.name.clone())),
            "description" => Out::Leaf(opt_str(&fd.description)),
            "args" => Out::Many(
                fd.args
                    .iter()
                    .filter(|x| include_deprecated(f) || x.deprecation.is_none())
                    .map(Node::Input)
                    .collect(),
            ),
            "type" => Out::One(Node::Type(&fd.ty)),
            "isDeprecated" => Out::Leaf(Value::Bool(fd.deprecation.is_some())),
            "deprecationReason" => Out::Leaf(opt_str(&fd.deprecation)),
            _ => Out::Leaf(Value::Null),
        },
        Node::Input(iv) => match f.name.as_str() {
            "name" => Out::Leaf(Value::from(iv.name.clone())),
            "description" => Out::Leaf(opt_str(&iv.description)),
            "type" => Out::One(Node::Type(&iv.ty)),
            "defaultValue" => Out::Leaf(
                iv.default
                    .as_ref()
                    .map_or(Value::Null, |d| Value::String(print_literal(d))),
            ),
            "isDeprecated" => Out::Leaf(Value::Bool(iv.deprecation.is_some())),
            "deprecationReason" => Out::Leaf(opt_str(&iv.deprecation)),
            _ => Out::Leaf(Value::Null),
        },
        Node::EnumValue(ev) => match f.name.as_str() {
            "name" => Out::Leaf(Value::from(ev.name.clone())),
            "description" => Out::Leaf(opt_str(&ev.description)),
            "isDeprecated" => Out::Leaf(Value::Bool(ev.deprecation.is_some())),
            "deprecationReason" => Out::Leaf(opt_str(&ev.deprecation)),
            _ => Out::Leaf(Value::Null),
        },
        Node::Directive(d) => match f.name.as_str() {
            "name" => Out::Leaf(Value::from(d.name.clone())),
            "description" => Out::Leaf(opt_str(&d.description)),
            "isRepeatable" => Out::Leaf(Value::Bool(d.repeatable)),
            "locations" => Out::Leaf(Value::Array(
                d.locations.iter().map(|l| Value::from(*l)).collect(),
            )),
            "args" => Out::Many(d.args.iter().map(Node::Input).collect()),
            _ => Out::Leaf(Value::Null),
        },
    }
}

/// The `__typename` of a node.
fn typename(node: Node<'_>) -> &'static str {
    match node {
        Node::Schema => "__Schema",
        Node::Type(_) | Node::Named(_) => "__Type",
        Node::Field(_) => "__Field",
        Node::Input(_) => "__InputValue",
        Node::EnumValue(_) => "__EnumValue",
        Node::Directive(_) => "__Directive",
    }
}

fn complete(schema: &Schema, node: Node<'_>, selection: &[PlannedField]) -> Value {
    let mut obj = Map::new();
    for f in selection {
        let v = if f.name == "__typename" {
            Value::from(typename(node))
        } else {
            match resolve(schema, node, f) {
                Out::Leaf(v) => v,
                Out::One(n) => complete(schema, n, &f.selection),
                Out::Many(ns) => Value::Array(
                    ns.into_iter()
                        .map(|n| complete(schema, n, &f.selection))
                        .collect(),
                ),
            }
        };
        obj.insert(f.key.clone(), v);
    }
    Value::Object(obj)
}

/// The value of a root `__schema` or `__type(name:)` field.
pub(crate) fn resolve_root(schema: &Schema, field: &PlannedField) -> Value {
    match field.name.as_str() {
        "__schema" => complete(schema, Node::Schema, &field.selection),
        "__type" => {
            let name = field.args.get("name").and_then(Value::as_str).unwrap_or("");
            match schema.get(name) {
                Some(t) => complete(schema, Node::Named(t), &field.selection),
                None => Value::Null,
            }
        }
        _ => Value::Null,
    }
}
