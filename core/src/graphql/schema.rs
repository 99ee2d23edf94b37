//! The schema's types: a loaded, checked schema and what it is made of
//! (types, fields, resolvers). Loading from SDL is in
//! `core/src/graphql/load.rs`; see `docs/schema.md` for the directives.

use super::sql::SqlStatement;
use crate::upstream::CallTimeouts;
use graphql_parser::schema as sdl;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A GraphQL literal as the parser returns it (defaults, directive args).
pub(crate) type Literal = graphql_parser::query::Value<'static, String>;

/// A reference to a type: a named type, a list or a non-null wrapper.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TypeRef {
    /// A named type (`String`, `Tick`).
    Named(String),
    /// `[T]`.
    List(Box<TypeRef>),
    /// `T!`.
    NonNull(Box<TypeRef>),
}

impl TypeRef {
    /// The named type under all wrappers.
    pub fn named(&self) -> &str {
        match self {
            TypeRef::Named(n) => n,
            TypeRef::List(t) | TypeRef::NonNull(t) => t.named(),
        }
    }

    /// Whether the outermost wrapper is non-null.
    pub fn is_non_null(&self) -> bool {
        matches!(self, TypeRef::NonNull(_))
    }

    /// The type without its outer non-null wrapper.
    pub fn nullable(&self) -> &TypeRef {
        match self {
            TypeRef::NonNull(t) => t,
            other => other,
        }
    }

    pub(crate) fn from_ast(t: &sdl::Type<'static, String>) -> TypeRef {
        match t {
            sdl::Type::NamedType(n) => TypeRef::Named(n.clone()),
            sdl::Type::ListType(t) => TypeRef::List(Box::new(TypeRef::from_ast(t))),
            sdl::Type::NonNullType(t) => TypeRef::NonNull(Box::new(TypeRef::from_ast(t))),
        }
    }
}

impl fmt::Display for TypeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypeRef::Named(n) => f.write_str(n),
            TypeRef::List(t) => write!(f, "[{t}]"),
            TypeRef::NonNull(t) => write!(f, "{t}!"),
        }
    }
}

/// How a root field is resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolver {
    /// `@grpc(upstream:, method:, result:)`.
    Grpc {
        /// Configured upstream name.
        upstream: String,
        /// `package.Service/Method`.
        method: String,
        /// Path (split on `.`) of the response field that is the field's
        /// value; empty: the whole response message.
        result: Vec<String>,
        /// The field's overrides of the upstream's timeouts.
        timeouts: CallTimeouts,
        /// `@grpc(request:)`: the argument whose input object is the whole
        /// request message (its fields are the request's fields).
        request: Option<String>,
        /// `@shared` (subscription fields only): live operations whose
        /// upstream call would be identical share one upstream stream
        /// (docs/schema.md, "`@shared`").
        shared: bool,
    },
    /// `@sql(db:, query:, reselect:)`.
    Sql {
        /// Configured database name.
        db: String,
        /// The statement.
        statement: SqlStatement,
        /// For a statement that changes rows: a `SELECT` run afterwards whose
        /// rows are the field's value. It may use the field's arguments and
        /// `:lastInsertId` / `:affectedRows` of the first statement.
        reselect: Option<SqlStatement>,
    },
    /// `@live(db:, query:, every:)`.
    Live {
        /// Configured database name.
        db: String,
        /// The polled query.
        statement: SqlStatement,
        /// Polling interval.
        every: Duration,
    },
}

/// A field of an object type.
#[derive(Debug, Clone)]
pub(crate) struct FieldDef {
    pub name: String,
    pub description: Option<String>,
    pub args: Vec<InputValueDef>,
    pub ty: TypeRef,
    pub deprecation: Option<String>,
    pub resolver: Option<Resolver>,
    /// `@from(field:)`: the key of the upstream object this field reads.
    pub source: Option<String>,
}

/// An argument, or a field of an input object.
#[derive(Debug, Clone)]
pub(crate) struct InputValueDef {
    pub name: String,
    pub description: Option<String>,
    pub ty: TypeRef,
    pub default: Option<Literal>,
    pub deprecation: Option<String>,
}

/// A value of an enum type.
#[derive(Debug, Clone)]
pub(crate) struct EnumValueDef {
    pub name: String,
    pub description: Option<String>,
    pub deprecation: Option<String>,
}

/// What kind of type a named type is.
#[derive(Debug, Clone)]
pub(crate) enum TypeKind {
    Scalar {
        specified_by: Option<String>,
    },
    Object {
        fields: Vec<FieldDef>,
    },
    Enum {
        values: Vec<EnumValueDef>,
    },
    InputObject {
        fields: Vec<InputValueDef>,
        /// `@oneOf`: exactly one field must be given, and not null.
        one_of: bool,
    },
}

/// A named type.
#[derive(Debug, Clone)]
pub(crate) struct TypeDef {
    pub name: String,
    pub description: Option<String>,
    pub kind: TypeKind,
}

impl TypeDef {
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        match &self.kind {
            TypeKind::Object { fields } => fields.iter().find(|f| f.name == name),
            _ => None,
        }
    }
    pub fn is_input(&self) -> bool {
        !matches!(self.kind, TypeKind::Object { .. })
    }
    pub fn is_output(&self) -> bool {
        !matches!(self.kind, TypeKind::InputObject { .. })
    }
    pub fn is_leaf(&self) -> bool {
        matches!(self.kind, TypeKind::Scalar { .. } | TypeKind::Enum { .. })
    }
}

/// A directive definition exposed by introspection.
#[derive(Debug, Clone)]
pub(crate) struct DirectiveDef {
    pub name: String,
    pub description: Option<String>,
    pub args: Vec<InputValueDef>,
    pub locations: Vec<&'static str>,
    pub repeatable: bool,
}

#[derive(Debug)]
pub(crate) struct SchemaInner {
    pub types: Vec<TypeDef>,
    pub index: HashMap<String, usize>,
    pub query: String,
    pub mutation: Option<String>,
    pub subscription: Option<String>,
    pub description: Option<String>,
    pub directives: Vec<DirectiveDef>,
    /// `__typename`, `__schema`, `__type`.
    pub meta_fields: Vec<FieldDef>,
}

/// A loaded, checked schema. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Schema {
    pub(crate) inner: Arc<SchemaInner>,
}

/// A schema that could not be loaded. `Display` is `file:line:col: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    /// The file name given to [`Schema::parse`].
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

impl std::error::Error for SchemaError {}

/// The upstreams a schema refers to, so a configuration can be checked
/// against it before serving.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamNames {
    /// Names used in `@grpc(upstream:)`.
    pub grpc: BTreeSet<String>,
    /// Names used in `@sql(db:)` and `@live(db:)`.
    pub sql: BTreeSet<String>,
}

/// Which root type an operation runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationKind {
    /// `query`.
    Query,
    /// `mutation`.
    Mutation,
    /// `subscription`.
    Subscription,
}

impl Schema {
    /// The gRPC upstreams and SQL databases this schema refers to.
    pub fn upstream_names(&self) -> UpstreamNames {
        let mut names = UpstreamNames::default();
        for t in &self.inner.types {
            if let TypeKind::Object { fields } = &t.kind {
                for f in fields {
                    match &f.resolver {
                        Some(Resolver::Grpc { upstream, .. }) => {
                            names.grpc.insert(upstream.clone());
                        }
                        Some(Resolver::Sql { db, .. }) | Some(Resolver::Live { db, .. }) => {
                            names.sql.insert(db.clone());
                        }
                        None => {}
                    }
                }
            }
        }
        names
    }

    pub(crate) fn get(&self, name: &str) -> Option<&TypeDef> {
        self.inner.index.get(name).map(|i| &self.inner.types[*i])
    }

    /// The definition of field `name` of object type `parent`, including the
    /// meta fields (`__typename` everywhere, `__schema` and `__type` on the
    /// query root).
    pub(crate) fn field(&self, parent: &str, name: &str) -> Option<&FieldDef> {
        if name.starts_with("__") {
            if name != "__typename" && parent != self.inner.query {
                return None;
            }
            return self.inner.meta_fields.iter().find(|f| f.name == name);
        }
        self.get(parent)?.field(name)
    }

    /// The root type name of an operation kind, if the schema has it.
    pub(crate) fn root(&self, kind: OperationKind) -> Option<&str> {
        match kind {
            OperationKind::Query => Some(&self.inner.query),
            OperationKind::Mutation => self.inner.mutation.as_deref(),
            OperationKind::Subscription => self.inner.subscription.as_deref(),
        }
    }
}
