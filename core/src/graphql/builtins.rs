//! The built-in definitions every schema carries: the five standard
//! scalars, the introspection types (`__Schema`, `__Type`, ...), the
//! directives clients may see (`@skip`, `@include`, `@deprecated`,
//! `@specifiedBy`, `@oneOf`) and the meta fields (`__typename`, `__schema`, `__type`).
//!
//! The introspection types are declared in SDL below and loaded into every
//! schema (`core/src/graphql/load.rs`), so operations on them are validated
//! like any other; `core/src/graphql/introspection.rs` answers them.

use super::schema::{
    DirectiveDef, EnumValueDef, FieldDef, InputValueDef, TypeDef, TypeKind, TypeRef,
};
use graphql_parser::schema as sdl;
use std::sync::OnceLock;

/// The standard scalars with their descriptions, added to every schema.
pub(crate) const BUILTIN_SCALARS: [(&str, &str); 5] = [
    ("Int", "The `Int` scalar type represents non-fractional signed whole numeric values. Int can represent values between -(2^31) and 2^31 - 1."),
    ("Float", "The `Float` scalar type represents signed double-precision fractional values as specified by [IEEE 754](https://en.wikipedia.org/wiki/IEEE_floating_point)."),
    ("String", "The `String` scalar type represents textual data, represented as UTF-8 character sequences. The String type is most often used by GraphQL to represent free-form human-readable text."),
    ("Boolean", "The `Boolean` scalar type represents `true` or `false`."),
    ("ID", "The `ID` scalar type represents a unique identifier, often used to refetch an object or as key for a cache. The ID type appears in a JSON response as a String; however, it is not intended to be human-readable. When expected as an input type, any string (such as `\"4\"`) or integer (such as `4`) input value will be accepted as an ID."),
];

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

"Indicates exactly one field must be supplied and this field must not be `null`."
directive @oneOf on INPUT_OBJECT
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
