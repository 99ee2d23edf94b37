//! Introspection (`__schema`, `__type`, `__typename`), answered from the
//! schema alone, without any upstream call.
//!
//! The introspection types are declared in SDL below and loaded into every
//! schema, so operations on them are validated like any other. Terminus's
//! own directives (`@grpc`, `@sql`, `@live`, `@from`) are internal and do not
//! appear: clients see the standard `@skip`, `@include`, `@deprecated` and
//! `@specifiedBy`.

use super::coerce::print_literal;
use super::schema::{
    DirectiveDef, EnumValueDef, FieldDef, InputValueDef, Schema, TypeDef, TypeKind, TypeRef,
};
use super::validate::PlannedField;
use graphql_parser::schema as sdl;
use serde_json::{Map, Value};
use std::sync::OnceLock;

const INTROSPECTION_SDL: &str = r#"
"A GraphQL Schema defines the capabilities of a GraphQL server. It exposes all available types and directives on the server, as well as the entry points for query, mutation, and subscription operations."
type __Schema {
  description: String
  "A list of all types supported by this server."
  types: [__Type!]!
  "The type that query operations will be rooted at."
  queryType: __Type!
  "If this server supports mutation, the type that mutation operations will be rooted at."
  mutationType: __Type
  "If this server support subscription, the type that subscription operations will be rooted at."
  subscriptionType: __Type
  "A list of all directives supported by this server."
  directives: [__Directive!]!
}

"The fundamental unit of any GraphQL Schema is the type. There are many kinds of types in GraphQL as represented by the `__TypeKind` enum."
type __Type {
  kind: __TypeKind!
  name: String
  description: String
  specifiedByURL: String
  fields(includeDeprecated: Boolean = false): [__Field!]
  interfaces: [__Type!]
  possibleTypes: [__Type!]
  enumValues(includeDeprecated: Boolean = false): [__EnumValue!]
  inputFields(includeDeprecated: Boolean = false): [__InputValue!]
  ofType: __Type
  isOneOf: Boolean
}

"An enum describing what kind of type a given `__Type` is."
enum __TypeKind {
  "Indicates this type is a scalar."
  SCALAR
  "Indicates this type is an object. `fields` and `interfaces` are valid fields."
  OBJECT
  "Indicates this type is an interface. `fields`, `interfaces`, and `possibleTypes` are valid fields."
  INTERFACE
  "Indicates this type is a union. `possibleTypes` is a valid field."
  UNION
  "Indicates this type is an enum. `enumValues` is a valid field."
  ENUM
  "Indicates this type is an input object. `inputFields` is a valid field."
  INPUT_OBJECT
  "Indicates this type is a list. `ofType` is a valid field."
  LIST
  "Indicates this type is a non-null. `ofType` is a valid field."
  NON_NULL
}

"Object and Interface types are described by a list of Fields, each of which has a name, potentially a list of arguments, and a return type."
type __Field {
  name: String!
  description: String
  args(includeDeprecated: Boolean = false): [__InputValue!]!
  type: __Type!
  isDeprecated: Boolean!
  deprecationReason: String
}

"Arguments provided to Fields or Directives and the input fields of an InputObject are represented as Input Values which describe their type and optionally a default value."
type __InputValue {
  name: String!
  description: String
  type: __Type!
  "A GraphQL-formatted string representing the default value for this input value."
  defaultValue: String
  isDeprecated: Boolean!
  deprecationReason: String
}

"One possible value for a given Enum. Enum values are unique values, not a placeholder for a string or numeric value. However an Enum value is returned in a JSON response as a string."
type __EnumValue {
  name: String!
  description: String
  isDeprecated: Boolean!
  deprecationReason: String
}

"A Directive provides a way to describe alternate runtime execution and type validation behavior in a GraphQL document."
type __Directive {
  name: String!
  description: String
  isRepeatable: Boolean!
  locations: [__DirectiveLocation!]!
  args(includeDeprecated: Boolean = false): [__InputValue!]!
}

"A Directive can be adjacent to many parts of the GraphQL language, a __DirectiveLocation describes one such possible adjacencies."
enum __DirectiveLocation {
  QUERY
  MUTATION
  SUBSCRIPTION
  FIELD
  FRAGMENT_DEFINITION
  FRAGMENT_SPREAD
  INLINE_FRAGMENT
  VARIABLE_DEFINITION
  SCHEMA
  SCALAR
  OBJECT
  FIELD_DEFINITION
  ARGUMENT_DEFINITION
  INTERFACE
  UNION
  ENUM
  ENUM_VALUE
  INPUT_OBJECT
  INPUT_FIELD_DEFINITION
}

type __Meta {
  "The name of the current Object type at runtime."
  __typename: String!
  "Access the current type schema of this server."
  __schema: __Schema!
  "Request the type information of a single type."
  __type(name: String!): __Type
}

"Directs the executor to include this field or fragment only when the `if` argument is true."
directive @include("Included when true." if: Boolean!) on FIELD | FRAGMENT_SPREAD | INLINE_FRAGMENT

"Directs the executor to skip this field or fragment when the `if` argument is true."
directive @skip("Skipped when true." if: Boolean!) on FIELD | FRAGMENT_SPREAD | INLINE_FRAGMENT

"Marks an element of a GraphQL schema as no longer supported."
directive @deprecated("Explains why this element was deprecated, usually also including a suggestion for how to access supported similar data. Formatted using the Markdown syntax, as specified by [CommonMark](https://commonmark.org/)." reason: String = "No longer supported") on FIELD_DEFINITION | ARGUMENT_DEFINITION | INPUT_FIELD_DEFINITION | ENUM_VALUE

"Exposes a URL that specifies the behavior of this scalar."
directive @specifiedBy("The URL that specifies the behavior of this scalar." url: String!) on SCALAR
"#;

fn input_value(v: &sdl::InputValue<'static, String>) -> InputValueDef {
    InputValueDef {
        name: v.name.clone(),
        description: v.description.clone(),
        ty: TypeRef::from_ast(&v.value_type),
        default: v.default_value.clone(),
        deprecation: None,
    }
}

/// The introspection types, the directives clients may see, and the meta
/// fields (`__typename`, `__schema`, `__type`).
pub(crate) fn builtin_definitions() -> (Vec<TypeDef>, Vec<DirectiveDef>, Vec<FieldDef>) {
    // Parsed once per process: every schema gets a copy.
    static BUILTIN: OnceLock<Builtin> = OnceLock::new();
    BUILTIN.get_or_init(parse_builtin_definitions).clone()
}

type Builtin = (Vec<TypeDef>, Vec<DirectiveDef>, Vec<FieldDef>);

fn parse_builtin_definitions() -> Builtin {
    let doc = sdl::parse_schema::<String>(INTROSPECTION_SDL)
        .expect("the built-in introspection SDL parses")
        .into_static();
    let mut types = Vec::new();
    let mut directives = Vec::new();
    let mut meta = Vec::new();
    for def in doc.definitions {
        match def {
            sdl::Definition::TypeDefinition(sdl::TypeDefinition::Object(o)) => {
                let fields: Vec<FieldDef> = o
                    .fields
                    .iter()
                    .map(|f| FieldDef {
                        name: f.name.clone(),
                        description: f.description.clone(),
                        args: f.arguments.iter().map(input_value).collect(),
                        ty: TypeRef::from_ast(&f.field_type),
                        deprecation: None,
                        resolver: None,
                        source: None,
                    })
                    .collect();
                if o.name == "__Meta" {
                    meta = fields;
                } else {
                    types.push(TypeDef {
                        name: o.name.clone(),
                        description: o.description.clone(),
                        kind: TypeKind::Object { fields },
                    });
                }
            }
            sdl::Definition::TypeDefinition(sdl::TypeDefinition::Enum(e)) => types.push(TypeDef {
                name: e.name.clone(),
                description: e.description.clone(),
                kind: TypeKind::Enum {
                    values: e
                        .values
                        .iter()
                        .map(|v| EnumValueDef {
                            name: v.name.clone(),
                            description: v.description.clone(),
                            deprecation: None,
                        })
                        .collect(),
                },
            }),
            sdl::Definition::DirectiveDefinition(d) => directives.push(DirectiveDef {
                name: d.name.clone(),
                description: d.description.clone(),
                args: d.arguments.iter().map(input_value).collect(),
                locations: d.locations.iter().map(|l| l.as_str()).collect(),
                repeatable: d.repeatable,
            }),
            _ => {}
        }
    }
    (types, directives, meta)
}

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
                TypeKind::InputObject { fields } => Out::Many(
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
                TypeKind::InputObject { .. } => Out::Leaf(Value::Bool(false)),
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
